"""Resumable, deterministic training of the generator on synthetic clips (``vggx train``).

The run directory holds ``state.safetensors`` (weights, their moving average, optimiser moments and
step: everything needed to resume, no pickles), ``latest.safetensors`` / ``best.safetensors`` (plain
vggx checkpoints) and ``log.jsonl`` (one line per logged step and per validation).

With ``ema_decay`` > 0 (the default) the trainer keeps an exponential moving average of the generator's
weights; that average is what is validated and written as ``latest``/``best`` (the shipped file): it
follows the same trajectory without the step-to-step noise of the last Adam updates, which moved the
validation gain of the raw weights by ±0.15 dB from one checkpoint to the next.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vggx.checkpoint import save_checkpoint
from vggx.errors import CheckpointError, ConfigError, VggxError
from vggx.generator import Generator, GeneratorConfig, bicubic_upscale, get_config
from vggx.paths import write_atomic
from vggx.plugins import reference_ops

from .data import TRAIN_IMAGES, VAL_IMAGES, ClipSpec, Degradation, load_images, make_batch, make_clip
from .losses import Discriminator, charbonnier, feature_matching, flow_loss, hinge_d_loss, hinge_g_loss
from .metrics import psnr

__all__ = ["TrainConfig", "Trainer", "validation_clips"]

log = logging.getLogger(__name__)

STATE_FORMAT = "vggx-train-state/1"
# What a resumed run may change: how often it validates, saves and logs, and the weight average kept beside the
# weights (a state from before it starts it there), not what the weights learn (every other field of TrainConfig
# shapes the batches, the losses or the schedule, so resuming with another is not resuming)
_RESUMABLE_WITH_OTHER = frozenset({"val_every", "ckpt_every", "log_every", "ema_decay"})
# The CLI's name for each field it sets
_FLAGS = {"model": "--config", "seed": "--seed", "batch": "--batch", "frames": "--frames", "lr_patch": "--patch"}


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (weights and schedules of every loss live here)."""

    model: str = "tiny"
    steps: int = 40000  # schedule length; a run may stop (and resume) anywhere before
    batch: int = 4
    frames: int = 7  # T of training clips
    lr_patch: int = 32  # LR crop size (HR = 4×)
    lr: float = 5e-4
    min_lr: float = 2e-5
    warmup: int = 200
    flow_weight: float = 0.05  # L1 on flows (LR px), supervised by the exact synthetic flow
    flow_weight_end: float = 0.01  # linearly reached at the end of the schedule
    adv_weight: float = 0.0  # hinge GAN; 0 = the fidelity-oriented default model
    fm_weight: float = 0.0  # discriminator feature matching (the perceptual term)
    d_lr: float = 2e-4
    grad_clip: float = 1.0
    seed: int = 0
    val_every: int = 250
    ckpt_every: int = 50
    log_every: int = 10
    ema_decay: float = 0.999  # weight moving average (about 1,000 steps); 0 = off

    def __post_init__(self) -> None:
        for flag, value in (("--steps", self.steps), ("--batch", self.batch)):
            if value < 1:
                raise ConfigError(f"{flag} must be >= 1, got {value}")
        if self.frames < 2:  # the flow between neighbours is what the model learns to warp with
            raise ConfigError(f"--frames must be >= 2 (a clip's frames and the flow between them), got {self.frames}")
        if self.lr_patch < 8 or self.lr_patch % 8:
            raise ConfigError(f"--patch must be a positive multiple of 8, got {self.lr_patch}")
        if self.val_every < 1:
            raise ConfigError(f"--val-every must be >= 1 steps, got {self.val_every}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")

    @classmethod
    def stored(cls, state_path: str | Path) -> TrainConfig | None:
        """The config a training state was saved with (its fields this version knows), or None where there is no
        state (or it predates the record)."""
        from safetensors import SafetensorError, safe_open

        path = Path(state_path)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path} is not a vggx training state ({exc})") from None
        return cls.from_metadata(meta)

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> TrainConfig | None:
        """The config recorded in a training state's metadata (its fields this version knows), or None."""
        if "train_config" not in meta:
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(meta["train_config"]).items() if k in known})

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        p = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * p))

    def flow_weight_at(self, step: int) -> float:
        p = min(1.0, step / self.steps)
        return self.flow_weight + (self.flow_weight_end - self.flow_weight) * p


def validation_clips(frames: int = 8, lr_size: tuple[int, int] = (48, 64), per_image: int = 2, seed: int = 1234,
                     scale: int = 4):
    """Held-out clips (images never trained on), clean BI degradation ×``scale``, fixed seed."""
    rng = np.random.default_rng(seed)
    spec = ClipSpec(frames=frames, lr_size=lr_size, scale=scale)
    images = load_images(VAL_IMAGES)
    return [make_clip(img, spec, rng, None) for img in images for _ in range(per_image)]


class Trainer:
    """Owns the model, optimiser(s) and the run directory; ``run()`` trains until ``until`` steps."""

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, model_cfg: GeneratorConfig | None = None) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.model_cfg = model_cfg or get_config(cfg.model)
        torch.manual_seed(cfg.seed)
        self.model = Generator(self.model_cfg)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.disc: Discriminator | None = None
        self.d_opt = None
        if cfg.adv_weight > 0 or cfg.fm_weight > 0:
            self.disc = Discriminator()
            self.d_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.d_lr, betas=(0.0, 0.99))
        self.ema: Generator | None = None
        if cfg.ema_decay > 0:
            self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.step = 0
        self._saved_step: int | None = None  # the step of the state on disk, where a failed write leaves the run
        self.best_psnr = -1.0
        self._images = None
        self._val = None

    @property
    def shipped(self) -> Generator:
        """The weights that are validated and written as checkpoints: the moving average when kept."""
        return self.ema if self.ema is not None else self.model

    @torch.no_grad()
    def _update_ema(self) -> None:
        # The average warms up (1 + step) / (10 + step) so that early weights do not linger.
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        torch._foreach_lerp_(list(self.ema.parameters()), list(self.model.parameters()), 1.0 - decay)

    # -- state -------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.out / "state.safetensors"

    def save_state(self) -> None:
        from vggx.checkpoint import write_safetensors

        tensors = {}
        for prefix, module, opt in (("g", self.model, self.opt), ("d", self.disc, self.d_opt)):
            if module is None:
                continue
            names = {id(p): n for n, p in module.named_parameters()}
            for k, v in module.state_dict().items():
                tensors[f"{prefix}.model.{k}"] = v.detach().contiguous()
            if prefix == "g" and self.ema is not None:
                for k, v in self.ema.state_dict().items():
                    tensors[f"ema.model.{k}"] = v.detach().contiguous()
            for group in opt.param_groups:
                for p in group["params"]:
                    st = opt.state.get(p)
                    if st:
                        tensors[f"{prefix}.opt.{names[id(p)]}.exp_avg"] = st["exp_avg"].contiguous()
                        tensors[f"{prefix}.opt.{names[id(p)]}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
                        tensors[f"{prefix}.opt.{names[id(p)]}.step"] = st["step"].reshape(1).float()
        meta = {
            "format": STATE_FORMAT,
            "step": str(self.step),
            "best_psnr": repr(self.best_psnr),
            "validated": "ema" if self.ema is not None else "model",
            "train_config": json.dumps(dataclasses.asdict(self.cfg)),
            "model_config": self.model_cfg.to_json(),
        }
        self.out.mkdir(parents=True, exist_ok=True)
        # atomically, mode 0666 less the umask like the run's other files (save_file alone makes it 0600)
        write_safetensors(tensors, self.state_path, meta, tmp=self.state_path.with_suffix(".tmp"))
        self._saved_step = self.step

    def load_state(self) -> bool:
        """Resume from ``state.safetensors`` if present; return whether it did."""
        from safetensors.torch import load_file, safe_open

        if not self.state_path.exists():
            return False
        with safe_open(str(self.state_path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{self.state_path} is not a vggx training state")
        stored = TrainConfig.from_metadata(meta)
        if stored is not None and (changed := _changed(stored, self.cfg)):
            raise ConfigError(f"{self.state_path} was trained with {changed}: a resumed run goes on with its own "
                              f"settings (leave them out, or give a new --out for a run with others)")
        if GeneratorConfig.from_json(meta["model_config"]) != self.model_cfg:
            raise CheckpointError(f"{self.state_path} was trained with another model config; use a new --out")
        tensors = load_file(str(self.state_path))
        for prefix, module, opt in (("g", self.model, self.opt), ("d", self.disc, self.d_opt)):
            if module is None:
                continue
            sd = {k[len(prefix) + 7:]: v for k, v in tensors.items() if k.startswith(f"{prefix}.model.")}
            if not sd:
                continue
            module.load_state_dict(sd)
            for n, p in module.named_parameters():
                key = f"{prefix}.opt.{n}"
                if f"{key}.exp_avg" in tensors:
                    opt.state[p] = {
                        "exp_avg": tensors[f"{key}.exp_avg"].clone(),
                        "exp_avg_sq": tensors[f"{key}.exp_avg_sq"].clone(),
                        "step": tensors[f"{key}.step"].reshape(()).clone(),
                    }
        if self.ema is not None:
            ema = {k[len("ema.model."):]: v for k, v in tensors.items() if k.startswith("ema.model.")}
            # A state from before the average existed starts it at the current weights.
            self.ema.load_state_dict(ema or self.model.state_dict())
        self.step = self._saved_step = int(meta["step"])
        self._trim_log()
        self.best_psnr = float(meta.get("best_psnr", "-1"))
        if self.ema is not None and meta.get("validated", "model") != "ema":
            self.best_psnr = -1.0  # best of the raw weights is not comparable: the average's first validation wins
        return True

    # -- training ----------------------------------------------------------------------------------
    def _batch(self, step: int):
        if self._images is None:
            self._images = load_images(TRAIN_IMAGES)
        rng = np.random.default_rng([self.cfg.seed, step])  # per-step stream: resume is exact
        spec = ClipSpec(frames=self.cfg.frames, lr_size=(self.cfg.lr_patch, self.cfg.lr_patch))
        return make_batch(self._images, self.cfg.batch, spec, rng, Degradation())

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        clip = self._batch(self.step)
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr_at(self.step)
        with reference_ops():
            sr, flow_fwd, flow_bwd = self.model.forward_with_flows(clip.lr)
        rec = charbonnier(sr, clip.hr)
        fl = sr.new_zeros(())
        if cfg.frames > 1:
            fl = flow_loss(flow_fwd, clip.flow_fwd) + flow_loss(flow_bwd, clip.flow_bwd)
        loss = rec + cfg.flow_weight_at(self.step) * fl
        stats = {"rec": rec.item(), "flow": fl.item()}
        if self.disc is not None:
            fake_logits, fake_feats = self.disc(sr)
            with torch.no_grad():
                _, real_feats = self.disc(clip.hr)
            g_adv = hinge_g_loss(fake_logits)
            fm = feature_matching(fake_feats, real_feats)
            loss = loss + cfg.adv_weight * g_adv + cfg.fm_weight * fm
            stats.update(g_adv=g_adv.item(), fm=fm.item())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        if self.ema is not None:
            self._update_ema()
        if self.disc is not None:
            real_logits, _ = self.disc(clip.hr)
            fake_logits, _ = self.disc(sr.detach())
            d_loss = hinge_d_loss(real_logits, fake_logits)
            self.d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_opt.step()
            stats["d"] = d_loss.item()
        stats["loss"] = loss.item()
        self.step += 1
        return stats

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if self._val is None:
            self._val = validation_clips(scale=self.model_cfg.scale)
        model = self.shipped.eval()
        p_model, p_bic = [], []
        with reference_ops():
            for clip in self._val:
                sr = model(clip.lr[None])[0]
                bic = bicubic_upscale(clip.lr, self.model_cfg.scale)
                p_model.append(psnr(sr, clip.hr))
                p_bic.append(psnr(bic, clip.hr))
        m, b = float(np.mean(p_model)), float(np.mean(p_bic))
        return {"psnr": m, "psnr_bicubic": b, "gain_db": m - b}

    def _trim_log(self) -> None:
        """Drop the log's records past the resumed step: steps a stopped run made after its last save are made again,
        and logged again (they were twice in the log)."""
        path = self.out / "log.jsonl"
        if not path.is_file():
            return
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if _logged_step(line) <= self.step]
        if len(kept) != len(lines):
            with self._writing():
                write_atomic(path, "".join(kept).encode())

    def check_out(self) -> None:
        """Make the run folder and open its log for append now, before the first step: a real write (``os.access``
        says yes to root under /proc, on a read-only mount, over a quota), so a run that could not save its work
        fails at once (``ConfigError``), not after its steps."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "log.jsonl", "a"):
                pass
        except OSError as exc:
            raise ConfigError(f"--out {self.out} cannot be written ({exc.strerror or exc})") from None

    @contextlib.contextmanager
    def _writing(self):
        """A failed write of the run's files (a full disk, a folder gone or read-only) as one ``VggxError`` line
        saying what is kept: the state and checkpoints are written through temporary files and renames, so the
        last ones saved stay whole."""
        from safetensors import SafetensorError

        try:
            yield
        except (OSError, SafetensorError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
            kept = (f"the state saved at step {self._saved_step} is kept: free the space or fix the folder, then "
                    f"rerun with --resume" if self._saved_step is not None else "no state had been saved yet")
            raise VggxError(f"cannot write the run's files in {self.out} ({reason}); {kept}") from None

    def _log(self, record: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _save_checkpoints(self, val: dict | None) -> None:
        extra = {"step": str(self.step), "train_config": json.dumps(dataclasses.asdict(self.cfg))}
        if val:
            extra.update({k: f"{v:.4f}" for k, v in val.items()})
        if self.ema is not None:
            extra["weights"] = f"ema {self.cfg.ema_decay}"
        save_checkpoint(self.shipped, self.out / "latest.safetensors", extra=extra)
        if val and val["psnr"] > self.best_psnr:
            self.best_psnr = val["psnr"]
            save_checkpoint(self.shipped, self.out / "best.safetensors", extra=extra)

    def run(self, until: int | None = None, on_step: Callable[[int, dict], None] | None = None) -> dict:
        """Train up to step ``until`` (default: the schedule's end); checkpoint and validate on the way."""
        until = min(until or self.cfg.steps, self.cfg.steps)
        last_val: dict = {}
        t0 = time.time()
        with _stop_between_steps() as stopped:
            while self.step < until and not stopped:
                stats = self.train_step()
                if on_step:
                    on_step(self.step, stats)
                if self.step % self.cfg.log_every == 0:
                    with self._writing():
                        self._log({"step": self.step, "time": round(time.time() - t0, 1), **stats})
                val = None
                if self.step % self.cfg.val_every == 0 or self.step == until:
                    val = last_val = self.validate()
                    with self._writing():
                        self._log({"step": self.step, "val": val,
                                   "weights": "ema" if self.ema is not None else "model"})
                if val is not None or self.step % self.cfg.ckpt_every == 0 or stopped:
                    with self._writing():
                        self._save_checkpoints(val)
                        self.save_state()
        if stopped:  # saved at the step it finished: the stop goes on as it came (130 / 143 from the CLI)
            signal.raise_signal(stopped[0])
        return last_val


def _logged_step(line: str) -> float:
    """The step of one log.jsonl record; a line that is not one (a torn last line) counts as past every step."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


@contextlib.contextmanager
def _stop_between_steps():
    """Ctrl-C or SIGTERM during training: noted (the list yielded gets the signal), the step under way finished and
    the state saved by the caller, which then raises the signal again with the usual handlers back, so a stopped
    run resumes at the step it reached, not at its last periodic save (up to ``ckpt_every`` steps lost). A second
    signal stops at once. Off the main thread (no signal handlers there) nothing is deferred."""
    stopped: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signals}

    def note(signum, frame) -> None:
        stopped.append(signum)
        for s, handler in previous.items():  # the next one is not deferred
            signal.signal(s, handler)

    for s in signals:
        signal.signal(s, note)
    try:
        yield stopped
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _changed(stored: TrainConfig, cfg: TrainConfig) -> str:
    """The settings ``cfg`` changes from ``stored`` that a resumed run may not change, as the flags that set them
    with their stored values ("--batch 1, --adversarial"); "" where none."""
    said = []
    for f in dataclasses.fields(TrainConfig):
        a, b = getattr(stored, f.name), getattr(cfg, f.name)
        if f.name in _RESUMABLE_WITH_OTHER or a == b:
            continue
        if f.name in ("adv_weight", "fm_weight"):
            flag = "--adversarial" if stored.adv_weight > 0 or stored.fm_weight > 0 else "--no-adversarial"
        else:
            flag = f"{_FLAGS[f.name]} {a}" if f.name in _FLAGS else f"{f.name} = {a}"
        if flag not in said:
            said.append(flag)
    return ", ".join(said)
