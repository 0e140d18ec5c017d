"""Where vggx keeps files between runs (no torch, no clients: importable from every part)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "cache_folder", "json_text", "unwritable_folder", "write_atomic"]


def cache_dir() -> Path:
    """vggx's cache folder: ``$VGGX_CACHE_DIR``, else ``$XDG_CACHE_HOME/vggx``, else ``~/.cache/vggx``.

    Holds the ONNX exports of checkpoints (``onnx/``), the prepared Triton Python backend
    (``triton-backends/``), server logs (``logs/``) and fetched tools.
    """
    if os.environ.get("VGGX_CACHE_DIR"):
        return Path(os.environ["VGGX_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vggx"


def cache_folder(folder: Path) -> Path:
    """``folder`` (in vggx's cache), made with its parents; ``ConfigError`` naming ``VGGX_CACHE_DIR`` where it cannot
    be (a container's read-only home, a cache path under a file)."""
    from vggx.errors import ConfigError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make vggx's cache folder {folder}: {exc.strerror or exc}; set VGGX_CACHE_DIR to a "
                          f"writable folder") from None
    return folder


def json_text(data) -> str:
    """``data`` as standard JSON text, indented: NaN and infinities become null (``JSON.parse``, Go, serde and jq
    refuse Python's ``NaN`` and ``Infinity``; where vggx has one, e.g. a peak it does not know, it means "no
    value")."""
    import json
    import math

    def finite(x):
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: finite(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [finite(v) for v in x]
        return x

    return json.dumps(finite(data), indent=2, allow_nan=False) + "\n"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename: readers see
    the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def unwritable_folder(folder: Path) -> str | None:
    """Why ``folder`` (made later, with its parents) could not be made or written in, or None where it can: the
    nearest part of it that exists must be a folder this process may write in. Checked before long work."""
    probe = Path(folder)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None
