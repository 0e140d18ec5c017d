"""vggx checkpoints: ``.safetensors`` weights with the config and model metadata in the file's metadata.

Loading never unpickles. Every backend publishes the same metadata: ``scale``, ``window``,
``size_multiple``, ``min_size``, ``max_size``, ``name``, ``version``.

PyTorch is imported as the weights are first loaded, not with this module: :func:`read_checkpoint_config` reads and
checks a checkpoint's config from the file's header alone (an in-process ONNX Runtime run whose graph is already
exported needs no more: opening its runner took 2.1 s and 0.32 GiB with PyTorch, 0.37 s and 0.09 GiB without).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vggx.errors import CheckpointError, ConfigError
from vggx.generator.config import GeneratorConfig

if TYPE_CHECKING:
    import torch

    from vggx.generator import Generator

__all__ = [
    "DEFAULT_CHECKPOINT",
    "FORMAT",
    "Checkpoint",
    "file_sha256",
    "load_checkpoint",
    "model_metadata",
    "read_checkpoint",
    "read_checkpoint_config",
    "save_checkpoint",
    "write_safetensors",
]

FORMAT = "vggx-generator/1"
DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "vggx-tiny-x4.safetensors"


def __getattr__(name: str):
    """``Generator``, imported (with PyTorch) as it is first used: load_checkpoint builds it through this module's
    name, which a test may replace."""
    if name != "Generator":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from vggx.generator import Generator

    globals()["Generator"] = Generator
    return Generator


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
    path = Path(path)
    meta = {"format": FORMAT, "config": generator.cfg.to_json(), **model_metadata(generator.cfg, version)}
    for key, value in (extra or {}).items():
        meta[f"extra.{key}"] = str(value)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in generator.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(tensors, path, meta)
    return path


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str],
                      tmp: str | Path | None = None) -> Path:
    """Write a ``.safetensors`` file atomically (``tmp``, default ``path`` + ``.tmp``, then renamed over ``path``),
    with the permissions a plain ``open()`` would give it (``0o666`` less the umask).

    ``safetensors``' ``save_file`` creates its file mode 0600 whatever the umask, which leaves a checkpoint
    unreadable to the other users of a shared install or a server running as another user: the mode is taken
    from ``tmp`` created by ``open()`` first (the umask, and a directory's default ACL, applied as for any file).
    """
    from safetensors.torch import save_file

    path = Path(path)
    tmp = Path(tmp) if tmp is not None else path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a stale one keeps its own mode through open()
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))
    try:
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, mode)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (a full disk) leaves no half file; the old one stays whole
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(tensors, metadata)`` of a vggx checkpoint, or raise ``CheckpointError``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file" if path.is_dir()
                              else f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    _check_format(path, meta)
    return tensors, meta


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{path} is not a vggx checkpoint (not a readable .safetensors file: {exc})")


def _check_format(path: Path, meta: dict[str, str]) -> None:
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vggx checkpoint (metadata format={meta.get('format')!r}, "
                              f"expected {FORMAT!r})")


def _config_of(path: Path, meta: dict[str, str]) -> tuple[GeneratorConfig, dict[str, str]]:
    """The generator config in a checkpoint's metadata and the metadata it publishes, or ``CheckpointError``."""
    try:
        cfg = GeneratorConfig.from_json(meta["config"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{path}: bad generator config in metadata ({exc})") from None
    # save_checkpoint writes the published metadata from the config (only ``version`` is free), and the runners
    # take window, scale and sizes from the metadata while the generator follows the config: they must agree
    published = model_metadata(cfg)
    for key in ("scale", "window", "size_multiple", "min_size", "max_size", "name"):
        if key in meta and meta[key] != (value := published[key]):
            raise CheckpointError(f"{path}: metadata {key} {meta[key]} contradicts its generator config's {value} "
                                  f"(not a consistent vggx checkpoint)")
    return cfg, published


def read_checkpoint_config(path: str | Path | None = None) -> GeneratorConfig:
    """The generator config of a checkpoint (default: the shipped one), from the file's header alone: without
    PyTorch, and without reading the weights.

    The checks :func:`load_checkpoint` makes on the metadata, with its errors: the file exists and is a
    ``.safetensors`` file whose header reads, of vggx's format, with a valid config that its published metadata
    agrees with. Not those on the weights (names, shapes, finite values): a caller that uses no weights but an
    export of them (keyed by the file's sha256) relies on the load that made the export.

    Raises:
        CheckpointError: as :func:`load_checkpoint` does for the metadata.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file" if path.is_dir()
                              else f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:  # the header only: "pt" would import PyTorch
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    _check_format(path, meta)
    return _config_of(path, meta)[0]


def load_checkpoint(path: str | Path | None = None, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint (default: the shipped one) into an eval-mode ``Generator``.

    Raises:
        CheckpointError: not a vggx checkpoint, its metadata contradicts its config, the weights do not fit the
            stored config, or some are not finite.
    """
    import torch

    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    tensors, meta = read_checkpoint(path)
    cfg, published = _config_of(path, meta)
    generator_class = globals().get("Generator") or __getattr__("Generator")
    try:
        generator = generator_class(cfg)
    except Exception as exc:  # any failure to build the stored config is this file's fault, told in one line
        raise CheckpointError(f"{path}: cannot build the generator of its config "
                              f"({type(exc).__name__}: {exc})".replace("\n", " ")) from None
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
    for k in expected:
        t = tensors[k]
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"{path}: weights are not finite ({k} has {bad} NaN/inf of {t.numel()} values)")
    generator.load_state_dict(tensors)
    generator.eval().to(device)
    extra = {k[len("extra."):]: v for k, v in meta.items() if k.startswith("extra.")}
    metadata = {k: v for k, v in meta.items() if k not in ("format", "config") and not k.startswith("extra.")}
    # keys a file lacks (none that save_checkpoint wrote) are its config's, as every backend publishes them
    metadata = {**published, **metadata}
    return Checkpoint(generator=generator, config=cfg, metadata=metadata, path=path, extra=extra)
