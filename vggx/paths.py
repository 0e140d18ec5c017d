"""Where vggx keeps files between runs (no torch, no clients: importable from every part)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """vggx's cache folder: ``$VGGX_CACHE_DIR``, else ``$XDG_CACHE_HOME/vggx``, else ``~/.cache/vggx``.

    Holds the ONNX exports of checkpoints (``onnx/``), the prepared Triton Python backend
    (``triton-backends/``), server logs (``logs/``) and fetched tools.
    """
    if os.environ.get("VGGX_CACHE_DIR"):
        return Path(os.environ["VGGX_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vggx"
