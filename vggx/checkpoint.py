"""vggx checkpoints: ``.safetensors`` weights with the config and model metadata in the file's metadata.

Loading never unpickles. Every backend publishes the same metadata: ``scale``, ``window``,
``size_multiple``, ``min_size``, ``max_size``, ``name``, ``version``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vggx.errors import CheckpointError, ConfigError
from vggx.generator import Generator, GeneratorConfig

__all__ = [
    "DEFAULT_CHECKPOINT",
    "FORMAT",
    "Checkpoint",
    "file_sha256",
    "load_checkpoint",
    "model_metadata",
    "read_checkpoint",
    "save_checkpoint",
]

FORMAT = "vggx-generator/1"
DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "vggx-tiny-x4.safetensors"


def model_metadata(cfg: GeneratorConfig, version: str = "1") -> dict[str, str]:
    """The metadata every backend publishes, as strings (ONNX props, Triton parameters)."""
    return {
        "name": f"vggx-{cfg.name}-x{cfg.scale}",
        "version": str(version),
        "scale": str(cfg.scale),
        "window": str(cfg.window),
        "size_multiple": str(cfg.size_multiple),
        "min_size": f"{cfg.min_size[0]}x{cfg.min_size[1]}",
        "max_size": f"{cfg.max_size[0]}x{cfg.max_size[1]}",
    }


@dataclass
class Checkpoint:
    """A loaded checkpoint: the generator (eval mode), its config, metadata and extra fields."""

    generator: Generator
    config: GeneratorConfig
    metadata: dict[str, str]
    path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return file_sha256(self.path) if self.path else ""


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (checkpoints, engines and ONNX files are keyed by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    generator: Generator, path: str | Path, *, version: str = "1", extra: dict[str, str] | None = None
) -> Path:
    """Write ``generator`` to ``path`` (.safetensors) atomically, with config and metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": FORMAT, "config": generator.cfg.to_json(), **model_metadata(generator.cfg, version)}
    for key, value in (extra or {}).items():
        meta[f"extra.{key}"] = str(value)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in generator.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(tensors, metadata)`` of a vggx checkpoint, or raise ``CheckpointError``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a vggx checkpoint (not a readable .safetensors file: {exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vggx checkpoint (metadata format={meta.get('format')!r}, "
                              f"expected {FORMAT!r})")
    return tensors, meta


def load_checkpoint(path: str | Path | None = None, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint (default: the shipped one) into an eval-mode ``Generator``.

    Raises:
        CheckpointError: not a vggx checkpoint, or the weights do not fit the stored config.
    """
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    tensors, meta = read_checkpoint(path)
    try:
        cfg = GeneratorConfig.from_json(meta["config"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{path}: bad generator config in metadata ({exc})") from None
    generator = Generator(cfg)
    expected = generator.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with wrong shapes (e.g. {k}: file {tuple(tensors[k].shape)}, "
                         f"model {tuple(expected[k].shape)})")
        raise CheckpointError(f"{path}: weights do not fit config {cfg.name!r}: " + "; ".join(parts))
    generator.load_state_dict(tensors)
    generator.eval().to(device)
    extra = {k[len("extra."):]: v for k, v in meta.items() if k.startswith("extra.")}
    metadata = {k: v for k, v in meta.items() if k not in ("format", "config") and not k.startswith("extra.")}
    return Checkpoint(generator=generator, config=cfg, metadata=metadata, path=path, extra=extra)
