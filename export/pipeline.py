"""``vggx export`` as one library call: checkpoint -> ONNX -> parity check -> engine -> model repository.

:func:`export_to_repository` runs the steps of the other ``export`` modules in order and places
the result in ``<repo>/vggx/<version>/`` through :func:`vggx.export.repository.write_model_repository`.
Everything is produced in a temporary folder first and the version folder is renamed into place
at the end, so a failure leaves the repository as it was. Inputs are checked before the slow
export (about 40 s per graph on a 2-core CPU): the checkpoint, the profile, that the repository is writable
and takes the new version (the folder, a backend switch, the contract of versions still served).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vggx.checkpoint import load_checkpoint, model_metadata
from vggx.errors import ConfigError, ExportError
from vggx.paths import unwritable_folder
from vggx.shapes import clamp_size

from .engine import (
    EngineConfig,
    ShapeProfile,
    build_engine,
    checked_comparison,
    compare_engine_with_onnx,
    engine_unavailable,
    finish_command,
    keep_timing_cache,
    timing_cache_name,
)
from .onnx import ExportConfig, Flavor, Precision, export_onnx
from .repository import MODEL_NAME, Backend, ServingConfig, _versions, write_model_repository
from .verify import ParityResult, verify_onnx

__all__ = ["DEFAULT_OPT_SIZE", "ENGINE_ACTIVATION_BUDGET", "ExportJob", "ExportResult", "export_to_repository"]

log = logging.getLogger(__name__)

DEFAULT_OPT_SIZE = (180, 320)  # LR size the engine is tuned for (the benchmark size); clamped to the model's
# A TensorRT engine's default profile max: the largest of these (and the model's max) whose activations fit the
# budget, which leaves room on a 24 GB GPU for the weights, the workspace and the I/O
ENGINE_MAX_SIZES = ((720, 1280), (540, 960), (360, 640), (270, 480), (180, 320), (90, 160))
ENGINE_ACTIVATION_BUDGET = 16 * 2**30
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class ExportJob:
    """One ``vggx export``. Sizes are LR ``(h, w)``; ``None`` = the checkpoint's value."""

    checkpoint: Path | None = None  # None = the shipped checkpoint
    repo: Path = Path("model_repository")
    backend: Backend = Backend.ONNXRUNTIME
    flavor: Flavor | None = None  # None: trt for the tensorrt backend, portable otherwise
    precision: Precision = Precision.FP32
    window: int | None = None
    min_size: tuple[int, int] | None = None
    opt_size: tuple[int, int] | None = None
    max_size: tuple[int, int] | None = None
    max_batch: int = 4  # Triton max_batch_size and the engine profile's max N
    version: int | None = None  # None = next free version folder
    force: bool = False
    verify: bool = True
    optimization_level: int | None = None  # TensorRT builder optimisation level; None = EngineConfig's default
    workspace_mib: int | None = None  # TensorRT workspace limit, MiB; None = EngineConfig's default
    threads: int = 2  # CPU threads of the parity check
    compile: bool = False  # torch backend: the served model is torch.compile'd on GPU instances
    serving: ServingConfig = field(default_factory=ServingConfig)  # instances, GPUs, batching delay, ...
    name: str = MODEL_NAME  # the served model's name: its folder in the repository, what clients call

    def __post_init__(self) -> None:
        if not isinstance(self.backend, Backend):
            raise ConfigError(f"backend must be a Backend, got {self.backend!r}")
        if self.compile and self.backend is not Backend.TORCH:
            raise ConfigError(f"--compile applies to --backend torch (PyTorch serving the checkpoint), not "
                              f"{self.backend.value}")
        if self.flavor is Flavor.TRT and self.backend is not Backend.TENSORRT:
            raise ConfigError(f"the trt flavour (plugin nodes) runs only in TensorRT; use --flavor portable "
                              f"with --backend {self.backend.value}")
        if self.backend is Backend.TORCH and (self.flavor is not None or not self.verify):
            flag = "--flavor/--no-plugins choose" if self.flavor is not None else "--no-verify skips the check of"
            raise ConfigError(f"{flag} the exported ONNX graph; --backend torch serves the checkpoint itself "
                              f"(no ONNX: the vggx kernels run in PyTorch)")
        if self.backend is Backend.TORCH and self.precision is Precision.FP16:
            raise ConfigError("--fp16 exports an FP16 graph; --backend torch serves the checkpoint itself, in FP16 "
                              "on GPU instances and FP32 on CPU ones")
        if self.opt_size is not None and self.backend is not Backend.TENSORRT:
            raise ConfigError(f"--opt-size tunes a TensorRT engine; --backend {self.backend.value} builds none")
        for flag, value in (("--opt-level", self.optimization_level), ("--workspace-mib", self.workspace_mib)):
            if value is not None and self.backend is not Backend.TENSORRT:  # in range: checked by EngineConfig
                raise ConfigError(f"{flag} tunes the TensorRT engine build; --backend {self.backend.value} builds none")
        if self.max_batch < 1:
            raise ConfigError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.version is not None and self.version < 1:
            raise ConfigError(f"--version must be >= 1, got {self.version}")
        if self.window is not None and self.window < 1:
            raise ConfigError(f"--window must be >= 1 frames, got {self.window}")
        self.serving.check(self.backend)
        if not _MODEL_NAME.fullmatch(self.name):
            raise ConfigError(f"--name must be letters, digits, '.', '_' or '-' (a folder of the repository), "
                              f"got {self.name!r}")

    @property
    def resolved_flavor(self) -> Flavor:
        if self.flavor is not None:
            return self.flavor
        return Flavor.TRT if self.backend is Backend.TENSORRT else Flavor.PORTABLE


@dataclass
class ExportResult:
    """What an export produced."""

    version_dir: Path
    onnx: Path | None  # the ONNX inside the version folder (None when the backend serves only the plan)
    engine: Path | None  # model.plan, when TensorRT built it here
    parity: list[ParityResult] = field(default_factory=list)
    engine_pending: str | None = None  # no engine buildable here: the command that finishes the build
    engine_unavailable: str | None = None  # why not ("TensorRT is not installed here", "no CUDA GPU ...")
    profile: ShapeProfile | None = None  # a TensorRT engine's optimisation profile
    activations: int | None = None  # bytes of activations that engine holds at its profile's max shapes


def _check_writable(repo: Path) -> None:
    why = unwritable_folder(repo)
    if why is not None:
        raise ExportError(f"the model repository {repo} cannot be written: {why}; choose another --repo")


def _profile(job: ExportJob, cfg, window: int) -> ShapeProfile:
    lo = job.min_size or cfg.min_size
    hi = job.max_size or (_engine_max_size(job, cfg, window, lo) if job.backend is Backend.TENSORRT else cfg.max_size)
    opt = job.opt_size or clamp_size(DEFAULT_OPT_SIZE, lo, hi)
    return ShapeProfile.within(window, lo, opt, hi, model_min=cfg.min_size, model_max=cfg.max_size,
                               max_batch=job.max_batch)


def _engine_activations(job: ExportJob, cfg, window: int, size: tuple[int, int]) -> int:
    """Bytes of activations an engine holds at ``size`` (its profile's max) with ``job.max_batch`` windows."""
    import torch

    from vggx.generator.flops import activation_bytes

    dtype = torch.float16 if job.precision is Precision.FP16 else torch.float32
    return activation_bytes(cfg, size, batch=job.max_batch, window=window, dtype=dtype)


def _gpu_memory() -> int | None:
    """Total memory of the GPU an engine would be built on here (CUDA device 0), or None without one."""
    try:
        import torch

        return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None
    except (ImportError, RuntimeError):
        return None


def _warn_if_too_big(activations: int, profile: ShapeProfile) -> None:
    """A profile whose activations exceed the budget, or this machine's GPU: said before the slow export (the
    estimate is PyTorch's peak; TensorRT's is of that order, so a warning rather than a refusal)."""
    gpu = _gpu_memory()
    limit, where = (gpu, "this GPU's") if gpu is not None and activations > gpu else (ENGINE_ACTIVATION_BUDGET,
                                                                                       "the default budget of")
    if activations > limit:
        log.warning("the engine's profile at its max (%d windows of %dx%d) holds about %.1f GiB of activations, "
                    "above %s %.0f GiB: it may not build, or load beside another model; lower --max-size or "
                    "--max-batch (frames above the profile are tiled)", profile.max_batch, *profile.max_size,
                    activations / 2**30, where, limit / 2**30)


def _engine_max_size(job: ExportJob, cfg, window: int, lo: tuple[int, int]) -> tuple[int, int]:
    """The default max LR size of a TensorRT engine's profile: the largest of the model's max and the usual sizes
    below it whose activations at ``--max-batch`` fit :data:`ENGINE_ACTIVATION_BUDGET`. TensorRT keeps memory for
    the profile's max shapes; the model's own max (1088x1920, batch 4: about 97 GiB in FP16) fits no GPU. Frames
    above the profile are tiled by the client. Never below ``--min-size`` or ``--opt-size``."""
    floor = tuple(max(a, b) for a, b in zip(lo, job.opt_size or lo, strict=True))
    sizes = [cfg.max_size, *(s for s in ENGINE_MAX_SIZES if s[0] < cfg.max_size[0] and s[1] <= cfg.max_size[1])]
    sizes = [s for s in sizes if s[0] >= floor[0] and s[1] >= floor[1]] or [cfg.max_size]
    for size in sizes:
        if _engine_activations(job, cfg, window, size) <= ENGINE_ACTIVATION_BUDGET:
            return size
    return sizes[-1]


def export_to_repository(job: ExportJob) -> ExportResult:
    """Run ``job``: export, verify, build the engine where possible, write the model repository.

    Returns:
        The :class:`ExportResult`; ``engine_pending`` holds the build command when TensorRT is absent.

    Raises:
        CheckpointError: not a vggx checkpoint.
        ConfigError: bad profile or flag combination.
        ExportError: export, verification (``VerificationError``) or repository writing failed.
        EngineBuildError: TensorRT is installed but the build failed.
    """
    ckpt = load_checkpoint(job.checkpoint)
    cfg = ckpt.config
    window = cfg.window if job.window is None else job.window
    profile = _profile(job, cfg, window)
    flavor = job.resolved_flavor
    model_dir = job.repo / job.name
    _check_writable(job.repo)
    # the model metadata the export will publish (ONNX props or the torch model's parameters)
    published = model_metadata(cfg.replace(window=window, min_size=profile.min_size, max_size=profile.max_size),
                               ckpt.metadata.get("version", "1"))
    if job.backend is not Backend.TORCH:  # as the graph will: under --trt-accelerator a served version's must agree
        published.update(precision=job.precision.value, flavor=flavor.value)
    serving = dataclasses.replace(job.serving, compile=job.compile) if job.backend is Backend.TORCH else job.serving
    unavailable = engine_unavailable() if job.backend is Backend.TENSORRT else None
    if unavailable is not None:  # before the repository's refusals, whose advice (--force) would not help here
        _check_no_served_model(model_dir, unavailable, force=job.force)
    # what the repository writer would refuse after the slow export, refused before it: an existing version, a
    # backend switch, a changed contract beside versions still served
    write_model_repository(job.repo, backend=job.backend, artefact=None, metadata=published, window=window,
                           max_batch=job.max_batch, version=job.version, force=job.force, serving=serving,
                           name=job.name, check_only=True)
    if job.backend is Backend.TORCH:  # the checkpoint itself is served: no ONNX, nothing to verify
        metadata = {k: v for k, v in ckpt.metadata.items() if not k.startswith("extra.")}
        # the sizes asked for bound the served model's requests, as an export's bound its graph; the generator
        # runs any T, and the served model checks what --window says
        metadata.update({k: published[k] for k in ("window", "min_size", "max_size")})
        version_dir = write_model_repository(
            job.repo, backend=job.backend, artefact=ckpt.path, metadata=metadata, window=window,
            max_batch=job.max_batch, version=job.version, force=job.force, serving=serving, name=job.name,
        )
        return ExportResult(version_dir=version_dir, onnx=None, engine=None)

    engine_cfg = None
    activations = None
    if job.backend is Backend.TENSORRT:  # its flags checked now, not after the slow export
        given = {"optimization_level": job.optimization_level, "workspace_mib": job.workspace_mib}
        # the model's timing cache, keyed by the plugin kernels whose timings it holds
        engine_cfg = EngineConfig(profile, job.precision, timing_cache=model_dir / timing_cache_name(),
                                  force=job.force, **{k: v for k, v in given.items() if v is not None})
        activations = _engine_activations(job, cfg, window, profile.max_size)
        _warn_if_too_big(activations, profile)
    export_cfg = ExportConfig(flavor=flavor, precision=job.precision, window=window,
                              max_batch=max(64, job.max_batch), min_size=profile.min_size,
                              max_size=profile.max_size)
    with tempfile.TemporaryDirectory(prefix="vggx-export-") as tmp:
        onnx_path = export_onnx(ckpt, Path(tmp) / "model.onnx", export_cfg)
        parity = verify_onnx(onnx_path, ckpt, threads=job.threads) if job.verify else []
        metadata = _onnx_metadata(onnx_path)
        plan = None
        if engine_cfg is not None and unavailable is None:
            # an explicit --version's engine, if another GPU or TensorRT built it, is refused before the build
            replaces = model_dir / str(job.version) / "model.plan" if job.version else Path(tmp) / "none"
            plan = build_engine(onnx_path, Path(tmp) / "model.plan", engine_cfg, replaces=replaces)
            if job.verify:  # the engine that will be served, on the GPU, against ONNX Runtime
                parity += checked_comparison(plan, onnx_path, profile.check_sizes(), compare=compare_engine_with_onnx)
        artefact = plan if job.backend is Backend.TENSORRT else onnx_path
        extra = {}
        if job.backend is Backend.TENSORRT:  # the ONNX the engine is built from, and the plan's sidecar, beside it
            extra["model.onnx"] = onnx_path
            if plan is not None:
                extra["model.plan.json"] = plan.with_name(plan.name + ".json")
        version_dir = write_model_repository(
            job.repo, backend=job.backend, artefact=artefact, metadata=metadata, window=window,
            max_batch=job.max_batch, version=job.version, force=job.force, serving=job.serving, name=job.name,
            extra_files=extra,
        )
        if plan is not None:  # its timings kept once the engine is served: a failed export leaves no model folder
            keep_timing_cache(plan, engine_cfg)
        result = ExportResult(version_dir=version_dir, onnx=None, engine=None, parity=parity,
                              profile=profile if engine_cfg is not None else None, activations=activations)
        if job.backend is Backend.TENSORRT:
            result.onnx = version_dir / "model.onnx"
            if plan is not None:
                result.engine = version_dir / "model.plan"
            elif engine_cfg is not None:
                result.engine_pending = finish_command(result.onnx, version_dir / "model.plan", engine_cfg,
                                                       verify=job.verify)
                result.engine_unavailable = unavailable
        else:
            result.onnx = version_dir / "model.onnx"
    return result


def _check_no_served_model(model_dir: Path, unavailable: str, *, force: bool) -> None:
    """Without an engine the export writes a version holding the ONNX alone, for the engine to be built into where
    TensorRT and a GPU are. Where the model already serves an engine, that version would become the newest (or,
    with --force, take the engine's place), and Triton cannot load it: a working model would go down. Where it
    serves another backend's model, the switch (--force) would leave the tensorrt config.pbtxt no version it can
    load. Both refused before the export, naming the way that works. (A repository that serves nothing yet, e.g. the
    checked-in placeholder, is written as asked.)"""
    from .repository import CONFIG_FILE, _kind_of, _read_existing, served_versions

    plan = Backend.TENSORRT.artefact_name
    engines = sorted(v for v in _versions(model_dir) if (model_dir / str(v) / plan).is_file())
    config = _read_existing(model_dir / CONFIG_FILE, force)
    served = sorted(served_versions(model_dir, config)) if config is not None else []
    if served and config.platform != "tensorrt_plan":
        raise ExportError(
            f"{unavailable}, so no engine would be built, and {model_dir} serves a {_kind_of(config)} model (version "
            f"{served[-1]}): switched to tensorrt it would serve a version without model.plan, which Triton cannot "
            f"load. Export into a new --repo here (the ONNX, config.pbtxt and the command that builds the engine where "
            f"TensorRT and a GPU are), build it, then replace {model_dir} with that model folder; or run vggx export "
            f"on the GPU machine")
    if engines:
        raise ExportError(
            f"{unavailable}, so no engine would be built, and {model_dir} serves version {engines[-1]}'s engine: a "
            f"version without model.plan would take its place for Triton, which cannot load one. Export into a new "
            f"--repo here (the ONNX, config.pbtxt and the command that builds the engine where TensorRT and a GPU "
            f"are), then move the finished version over; or run vggx export on the GPU machine")


def _onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
