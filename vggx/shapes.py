"""Pure shape arithmetic shared by export, serving and the client (no torch, no TensorRT)."""

from __future__ import annotations

import re

from vggx.errors import ConfigError

__all__ = ["format_size", "pad_to_multiple", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``"180x320"``) into ``(h, w)``; raise ``ConfigError`` otherwise."""
    m = _SIZE.match(text or "")
    if not m:
        raise ConfigError(f"size must look like HxW (e.g. 180x320), got {text!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if h < 1 or w < 1:
        raise ConfigError(f"size must be positive, got {text!r}")
    return h, w


def format_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def pad_to_multiple(n: int, multiple: int) -> int:
    """Smallest value >= ``n`` divisible by ``multiple``."""
    return -(-n // multiple) * multiple
