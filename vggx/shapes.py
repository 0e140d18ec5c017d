"""Pure shape arithmetic shared by export, serving and the client (no torch, no TensorRT)."""

from __future__ import annotations

import re

from vggx.errors import ConfigError

__all__ = ["check_profile", "clamp_size", "format_size", "pad_to_multiple", "parse_size", "profile_shapes"]

_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str, flag: str = "size") -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``"180x320"``) into ``(h, w)``; raise ``ConfigError`` naming ``flag`` otherwise."""
    m = _SIZE.match(text or "")
    if not m:
        raise ConfigError(f"{flag} must look like HxW (e.g. 180x320), got {text!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if h < 1 or w < 1:
        raise ConfigError(f"{flag} must be positive, got {text!r}")
    return h, w


def format_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def pad_to_multiple(n: int, multiple: int) -> int:
    """Smallest value >= ``n`` divisible by ``multiple``."""
    return -(-n // multiple) * multiple


def check_profile(
    min_size: tuple[int, int],
    opt_size: tuple[int, int],
    max_size: tuple[int, int],
    *,
    opt_batch: int = 1,
    max_batch: int = 1,
) -> None:
    """Raise ``ConfigError`` unless ``min <= opt <= max`` in H and W, and ``1 <= opt_batch <= max_batch``.

    Sizes are LR ``(h, w)``; TensorRT needs every dynamic dimension ordered this way.
    """
    for name, size in (("min", min_size), ("opt", opt_size), ("max", max_size)):
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"{name} size must be a positive HxW, got {size}")
    for axis, i in (("height", 0), ("width", 1)):
        lo, opt, hi = min_size[i], opt_size[i], max_size[i]
        if not lo <= opt <= hi:
            raise ConfigError(
                f"profile {axis}s must satisfy min <= opt <= max, got {lo} / {opt} / {hi} "
                f"(min {format_size(min_size)}, opt {format_size(opt_size)}, max {format_size(max_size)})"
            )
    if max_batch < 1:
        raise ConfigError(f"max batch must be >= 1, got {max_batch}")
    if not 1 <= opt_batch <= max_batch:
        raise ConfigError(f"opt batch must be in 1..{max_batch} (the max batch), got {opt_batch}")


def profile_shapes(
    window: int,
    min_size: tuple[int, int],
    opt_size: tuple[int, int],
    max_size: tuple[int, int],
    *,
    opt_batch: int = 1,
    max_batch: int = 1,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``(min, opt, max)`` shapes of the uint8 input ``[N, T, H, W, 3]`` for an optimisation profile.

    N runs from 1 to ``max_batch`` (``opt_batch`` at opt), T is the fixed ``window``.
    """
    if window < 1:
        raise ConfigError(f"window must be >= 1, got {window}")
    check_profile(min_size, opt_size, max_size, opt_batch=opt_batch, max_batch=max_batch)
    return (
        (1, window, *min_size, 3),
        (opt_batch, window, *opt_size, 3),
        (max_batch, window, *max_size, 3),
    )


def clamp_size(size: tuple[int, int], lo: tuple[int, int], hi: tuple[int, int]) -> tuple[int, int]:
    """``size`` clamped into ``[lo, hi]`` per axis."""
    return (min(max(size[0], lo[0]), hi[0]), min(max(size[1], lo[1]), hi[1]))
