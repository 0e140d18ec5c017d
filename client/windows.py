"""Pure arithmetic of the upscale pipeline: time windows and spatial tiles (no torch, no PyAV).

**Windows.** The model sees ``window`` (T) frames at a time. Window ``k`` covers source frames
``[k·S - c, k·S - c + T)`` with ``c`` frames of context on each side and stride ``S = T - 2c``; only
its centre frames ``[k·S, k·S + S)`` are kept, so every output frame has ``c`` frames of context on
both sides and there are no seams between windows. Indices outside the clip are mirrored
(``-1 -> 1``, ``n -> n - 2``), which gives the first and last frames context too. Exactly: output
frame ``i`` equals the frame at position ``i - k·S + c`` of one model run on the T (mirrored) source
frames of window ``k = i // S``. At a scene cut the clip is cut into shots, each windowed as a clip of its own
(:class:`WindowStream`): no window reads frames of two shots.

**Tiles.** Frames larger than the model's maximum size are cut into tiles that start on multiples
of ``size_multiple`` (so every tile sees the same down-sampling grid as the whole frame), overlap by
``overlap`` pixels and are blended with linear (feathered) weights that sum to one at every output
pixel. Output pixels covered by one tile only equal that tile's model output exactly; a model that
is local per pixel (e.g. nearest-neighbour upscaling) gives the untiled result exactly. The largest
tile is the model's maximum size, or less where asked (``--tile``), where a window of larger ones would hold more
host memory than an in-process CPU run may use (:func:`memory_tile`), or where the device ran out of memory
(:func:`smaller_tile`: the longer side halved, down to :func:`smallest_tile`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

__all__ = [
    "MIN_TILE",
    "TilePlan",
    "TimeWindow",
    "WindowStream",
    "balanced_tiles_1d",
    "cut_windows",
    "default_context",
    "last_source_needed",
    "memory_tile",
    "mirror_index",
    "plan_tiles",
    "plan_tiles_1d",
    "plan_windows",
    "smaller_tile",
    "smallest_tile",
    "time_window",
    "windows_needed",
]

T = TypeVar("T")
MIN_TILE = 16  # LR pixels: the smallest tile side (at 16 a tile is mostly overlap; smaller ones are no use)


@dataclass(frozen=True)
class TimeWindow:
    """Window ``k``: the T source indices it runs on and the range of frames it keeps."""

    index: int
    sources: tuple[int, ...]  # T source frame indices (mirrored into [0, n))
    keep_start: int  # first kept source frame (inclusive)
    keep_end: int  # last kept source frame (exclusive)
    offset: int  # position of frame ``keep_start`` inside the window (= context)

    @property
    def keep_count(self) -> int:
        return self.keep_end - self.keep_start


def default_context(window: int) -> int:
    """Frames of context kept on each side of a window: a quarter of it (T=8 -> 2, keeps 4)."""
    return window // 4


def _stride(window: int, context: int) -> int:
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if context < 0 or window - 2 * context < 1:
        raise ValueError(f"context must be in 0..{(window - 1) // 2} for window {window}, got {context}")
    return window - 2 * context


def mirror_index(i: int, n: int) -> int:
    """Reflect ``i`` into ``[0, n)`` without repeating the edge frame (``-1 -> 1``, ``n -> n-2``)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i %= period
    return i if i < n else period - i


def windows_needed(n: int, window: int, context: int) -> int:
    """Number of windows for a clip of ``n`` frames."""
    return -(-n // _stride(window, context))


def time_window(k: int, n: int, window: int, context: int) -> TimeWindow:
    """Window ``k`` of a clip of ``n`` frames (see the module docstring)."""
    stride = _stride(window, context)
    first = k * stride - context
    return TimeWindow(
        index=k,
        sources=tuple(mirror_index(first + j, n) for j in range(window)),
        keep_start=k * stride,
        keep_end=min(k * stride + stride, n),
        offset=context,
    )


def last_source_needed(k: int, window: int, context: int) -> int:
    """Highest source index window ``k`` reads when the clip is long enough (no mirroring at the end)."""
    return k * _stride(window, context) - context + window - 1


def plan_windows(n: int, window: int, context: int | None = None) -> list[TimeWindow]:
    """All windows of a clip of ``n`` frames, in order; their kept ranges tile ``[0, n)`` exactly."""
    if context is None:
        context = default_context(window)
    return [time_window(k, n, window, context) for k in range(windows_needed(n, window, context))]


class WindowStream(Generic[T]):
    """The windows of a stream of frames (any items) whose length is known only at its end, each as soon as the
    frames it reads have come: iterating gives ``(window, its T items in order)``.

    Without cuts these are the windows :func:`plan_windows` gives for the whole clip (a window before the end reads
    no mirrored frame; the last ones follow the end). ``cut(item)``, called on every item in order, says where a new
    shot starts (a scene cut): the shot before it ends there, as a clip would, and each shot is cut into windows of
    its own (window ``k`` of a shot starting at frame ``a`` keeps frames ``a + k·S ..``), so that no window reads
    frames of two shots. Every output frame then equals the same frame of the shot upscaled as a clip on its own.

    ``first_frame``: the frames before it are done (a resumed run): windows that keep none of the frames after it are
    skipped, and the one keeping some of each keeps only the later ones (its ``keep_start`` and ``offset`` moved; it
    runs on the same frames, so its output is unchanged). About two windows' worth of items are held at a time.

    After (or during) the iteration: ``windows``, the windows of the clip so far (skipped ones included), and
    ``cuts``, the first frame of every shot but the first.
    """

    def __init__(self, items: Iterable[T], window: int, context: int, first_frame: int = 0,
                 cut: Callable[[T], bool] | None = None) -> None:
        self.stride = _stride(window, context)
        self.items, self.window, self.context = items, window, context
        self.first_frame, self.cut = first_frame, cut
        self.windows = 0
        self.cuts: list[int] = []

    def __iter__(self) -> Iterator[tuple[TimeWindow, list[T]]]:
        window, context, stride = self.window, self.context, self.stride
        buffer: dict[int, T] = {}
        shot, k, n = 0, 0, 0  # the current shot's first frame, its next window, the frames so far

        def emit(k: int, length: int) -> Iterator[tuple[TimeWindow, list[T]]]:
            """Window ``k`` of the current shot, ``length`` frames known of it (all of them at its end)."""
            win = time_window(k, length, window, context)
            win = dataclasses.replace(win, index=self.windows, sources=tuple(shot + i for i in win.sources),
                                      keep_start=shot + win.keep_start, keep_end=shot + win.keep_end)
            self.windows += 1
            if win.keep_end <= self.first_frame:
                return
            if win.keep_start < self.first_frame:  # a resumed run: keep only the frames not done yet
                win = dataclasses.replace(win, keep_start=self.first_frame,
                                          offset=win.offset + self.first_frame - win.keep_start)
            yield win, [buffer[i] for i in win.sources]

        def forget(keep_from: int) -> None:
            for i in [i for i in buffer if i < keep_from]:
                del buffer[i]

        for n, item in enumerate(self.items, start=1):
            i = n - 1
            if self.cut is not None and self.cut(item) and i > shot:  # frame i starts a shot: the last one ends
                for last in range(k, windows_needed(i - shot, window, context)):
                    yield from emit(last, i - shot)
                forget(i)
                self.cuts.append(i)
                shot, k = i, 0
            buffer[i] = item
            while last_source_needed(k, window, context) < n - shot:
                yield from emit(k, n - shot)
                k += 1
                # Keep what window k still reads, and the shot's last T frames (mirrored into by its last windows).
                forget(shot + min(k * stride - context, n - shot - window))
        for last in range(k, windows_needed(n - shot, window, context)):
            yield from emit(last, n - shot)


def cut_windows(items: Iterable[T], window: int, context: int, first_frame: int = 0,
                cut: Callable[[T], bool] | None = None) -> Iterator[tuple[TimeWindow, list[T]]]:
    """Iterate a :class:`WindowStream` (the windows of a stream of frames, as they come)."""
    return iter(WindowStream(items, window, context, first_frame, cut))


def plan_tiles_1d(length: int, max_tile: int, multiple: int, overlap: int) -> list[tuple[int, int]]:
    """Cut ``[0, length)`` into tiles ``[start, end)`` of at most ``max_tile``.

    Starts are multiples of ``multiple``; neighbours overlap by at least ``overlap``; the last tile
    ends at ``length``.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    max_tile = max_tile // multiple * multiple
    if max_tile < multiple:
        raise ValueError(f"max tile {max_tile} is smaller than the size multiple {multiple}")
    if length <= max_tile:
        return [(0, length)]
    overlap = -(-overlap // multiple) * multiple
    if not 0 <= overlap <= max_tile - multiple:
        raise ValueError(f"overlap {overlap} must be in 0..{max_tile - multiple} for tiles of {max_tile}")
    stride = max_tile - overlap
    last = -(-(length - max_tile) // multiple) * multiple
    starts = []
    s = 0
    while s < last:
        starts.append(s)
        s += stride
    starts.append(last)
    return [(s, min(s + max_tile, length)) for s in starts]


def _feather_1d(tiles: list[tuple[int, int]], scale: int) -> list[np.ndarray]:
    """Per-tile weights over its output span ``[scale·start, scale·end)``; they sum to 1 everywhere."""
    length = tiles[-1][1] * scale
    raw = []
    for i, (a, b) in enumerate(tiles):
        x = np.arange(a * scale, b * scale, dtype=np.float64) + 0.5
        w = np.ones_like(x)
        if i > 0 and tiles[i - 1][1] > a:  # ramp up across the overlap with the previous tile
            w = np.minimum(w, (x - a * scale) / ((tiles[i - 1][1] - a) * scale))
        if i + 1 < len(tiles) and tiles[i + 1][0] < b:  # ramp down across the overlap with the next one
            w = np.minimum(w, (b * scale - x) / ((b - tiles[i + 1][0]) * scale))
        raw.append(w)
    total = np.zeros(length)
    for (a, _), w in zip(tiles, raw, strict=True):
        total[a * scale: a * scale + len(w)] += w
    return [(w / total[a * scale: a * scale + len(w)]).astype(np.float32)
            for (a, _), w in zip(tiles, raw, strict=True)]


@dataclass(frozen=True)
class TilePlan:
    """Tiles of an ``(h, w)`` frame: row and column spans (input pixels) and blending weights."""

    rows: tuple[tuple[int, int], ...]
    cols: tuple[tuple[int, int], ...]
    scale: int

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def largest(self) -> tuple[int, int]:
        """``(h, w)`` of the largest tile (what the device must hold)."""
        return max(b - a for a, b in self.rows), max(b - a for a, b in self.cols)

    def tiles(self):
        """Yield ``(y0, y1, x0, x1, weight)``: input spans and the ``(s·(y1-y0), s·(x1-x0), 1)`` weight."""
        wy = _feather_1d(list(self.rows), self.scale)
        wx = _feather_1d(list(self.cols), self.scale)
        for (y0, y1), row_w in zip(self.rows, wy, strict=True):
            for (x0, x1), col_w in zip(self.cols, wx, strict=True):
                yield y0, y1, x0, x1, (row_w[:, None] * col_w[None, :])[..., None]


def balanced_tiles_1d(length: int, max_tile: int, multiple: int, overlap: int) -> list[tuple[int, int]]:
    """:func:`plan_tiles_1d` with its fewest tiles made as small as they can be: the same number of tiles, each
    at most the smallest size that still covers ``[0, length)`` with them (so the overlaps, computed twice, are
    no larger than ``overlap`` needs). 180 rows in tiles of at most 128 with 16 overlapping: two of 104 rather
    than two of 128."""
    tiles = plan_tiles_1d(length, max_tile, multiple, overlap)
    n = len(tiles)
    if n == 1:
        return tiles
    step = -(-overlap // multiple) * multiple
    low = -(-(length + (n - 1) * step) // n // multiple) * multiple  # n tiles of less cannot cover the length
    for size in range(max(low, step + multiple), max_tile // multiple * multiple, multiple):
        smaller = plan_tiles_1d(length, size, multiple, overlap)
        if len(smaller) <= n:
            return smaller
    return tiles


def plan_tiles(
    size: tuple[int, int], max_size: tuple[int, int], multiple: int, scale: int, overlap: int | None = None,
    balanced: bool = True,
) -> TilePlan:
    """Tile an ``(h, w)`` frame for a model taking at most ``max_size`` (LR pixels): as few tiles as
    ``max_size`` allows, each as small as that number allows (:func:`balanced_tiles_1d`; ``balanced=False``:
    tiles of ``max_size``, the last one shorter, for comparison).

    ``overlap`` defaults to an eighth of the largest tile, at least two size multiples, at most half a tile.
    """
    spans = []
    for length, limit in zip(size, max_size, strict=True):
        ov = overlap if overlap is not None else max(2 * multiple, limit // 8)
        ov = min(ov, limit // 2 // multiple * multiple)  # stride >= half a tile
        spans.append(tuple((balanced_tiles_1d if balanced else plan_tiles_1d)(length, limit, multiple, ov)))
    return TilePlan(rows=spans[0], cols=spans[1], scale=scale)


def smallest_tile(min_size: tuple[int, int], max_size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The smallest tile worth sending to a model: :data:`MIN_TILE` a side or its ``min_size``, whichever is
    larger, rounded up to a ``multiple`` (never above ``max_size``)."""
    return tuple(min(hi, -(-max(lo, MIN_TILE) // multiple) * multiple)
                 for lo, hi in zip(min_size, max_size, strict=True))


def smaller_tile(tile: tuple[int, int], floor: tuple[int, int], multiple: int) -> tuple[int, int] | None:
    """The tile to try after ``tile`` ran out of device memory: its longer side halved (the other side if the
    longer one is at ``floor`` already), rounded down to a ``multiple`` and not below ``floor``; None when both
    sides are at ``floor``. Halving one side halves the activations, whichever side it is."""
    order = sorted(range(2), key=lambda i: -tile[i])  # the longer side first
    for i in order:
        side = max(floor[i], tile[i] // 2 // multiple * multiple)
        if side < tile[i]:
            new = list(tile)
            new[i] = side
            return new[0], new[1]
    return None


# The tile sizes :func:`memory_tile` picks from (LR h, w), largest first: a fixed ladder, so that a small change in
# the memory available does not change the tiles (and the output's bits) from one run to the next.
MEMORY_TILES = ((1088, 1920), (720, 1280), (540, 960), (360, 640), (270, 480), (180, 320), (135, 240), (90, 160),
                (64, 112), (48, 80), (32, 48))


def memory_tile(budget: float, bytes_per_pixel: float, limit: tuple[int, int], floor: tuple[int, int],
                multiple: int, frame: tuple[int, int] | None = None) -> tuple[int, int]:
    """The largest tile of :data:`MEMORY_TILES` (each side rounded down to a ``multiple`` and at most ``limit``'s)
    whose window holds at most ``budget`` bytes at ``bytes_per_pixel`` per LR pixel; ``floor`` where none does.
    For a ``frame`` (h, w): each size no larger than the frame (what a tile of it holds is what is weighed), and
    turned where that cuts the frame into fewer tiles (a phone's portrait video)."""
    def sized(h: int, w: int) -> tuple[int, int]:
        h, w = min(h, limit[0]), min(w, limit[1])
        if frame is not None:
            h, w = min(h, -(-frame[0] // multiple) * multiple), min(w, -(-frame[1] // multiple) * multiple)
        return max(floor[0], h // multiple * multiple), max(floor[1], w // multiple * multiple)

    for h, w in MEMORY_TILES:
        fitting = [t for t in dict.fromkeys((sized(h, w), sized(w, h)) if frame is not None else (sized(h, w),))
                   if t[0] * t[1] * bytes_per_pixel <= budget]
        if fitting:
            return min(fitting, key=lambda t: plan_tiles(frame, t, multiple, 1).count if frame is not None else 0)
    return floor
