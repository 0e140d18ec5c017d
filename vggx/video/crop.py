"""Black bars: find the picture inside a letterboxed (or pillarboxed, or windowboxed) frame, crop to it, and put the
bars back around the upscaled picture where the output must keep the input's frame.

A 2.39:1 film in a 16:9 frame is a quarter black bars: upscaling them costs a quarter of the inference, and a GAN
can paint faint texture into their noise. ``vggx upscale --crop auto`` looks at frames spread over the whole run
(:func:`vggx.video.decode.sample_frames`), takes the union of the picture each shows (:func:`find_picture`), and
upscales that alone; ``--keep-bars`` pads the result with black back to the input's frame ×4.

The rule for a bar's row (or column) follows FFmpeg's ``cropdetect``: its mean luma is at most
:data:`BLACK_LIMIT` (cropdetect's default 24 on limited-range Y is 9.3 on full-range RGB) — and, unlike cropdetect,
hardly any pixel in it is bright (:data:`BRIGHT`, :data:`BRIGHT_SHARE`), so a subtitle burnt into a bar keeps the
rows it is drawn on. A row lit in any sampled frame is picture: the union never cuts what one shot shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from vggx.errors import ConfigError

__all__ = ["BLACK_LIMIT", "Crop", "find_picture", "pad_bars"]

BLACK_LIMIT = 10.0  # mean luma (0..255) of a row or column of a bar, at most
BRIGHT = 48  # a pixel at least this bright (luma 0..255) ...
BRIGHT_SHARE = 0.002  # ... in more than this share of a row or column makes it picture, whatever its mean
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # BT.709, on the RGB the model sees


@dataclass(frozen=True)
class Crop:
    """The rectangle of the stored frame that is upscaled: ``width``x``height`` at (``x``, ``y``) from the top-left
    (FFmpeg's ``crop=w:h:x:y``; before any display rotation)."""

    width: int
    height: int
    x: int = 0
    y: int = 0

    @classmethod
    def parse(cls, text: str) -> Crop:
        """``W:H:X:Y`` (FFmpeg's crop filter's order) or ``W:H`` (centred: X and Y worked out by :meth:`fit`)."""
        found = re.fullmatch(r"\s*(\d+):(\d+)(?::(\d+):(\d+))?\s*", text)
        if not found:
            raise ConfigError(f"--crop takes auto, none, or W:H:X:Y in the input's pixels (FFmpeg's crop filter's "
                              f"order, e.g. 1920:800:0:140), got {text!r}")
        w, h, x, y = (int(v) if v is not None else -1 for v in found.groups())
        return cls(w, h, x, y)

    def fit(self, size: tuple[int, int]) -> Crop:
        """This rectangle checked against a frame of ``size`` (h, w), a ``W:H`` one centred in it; ``ConfigError``
        where it does not fit."""
        h, w = size
        x = (w - self.width) // 2 if self.x < 0 else self.x
        y = (h - self.height) // 2 if self.y < 0 else self.y
        if self.width < 1 or self.height < 1 or x < 0 or y < 0 or x + self.width > w or y + self.height > h:
            raise ConfigError(f"--crop {self.width}:{self.height}:{max(x, 0)}:{max(y, 0)} does not fit in the "
                              f"input's {w}x{h} frame")
        return Crop(self.width, self.height, x, y)

    def bars(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The bars around it in a frame of ``size`` (h, w): top, bottom, left, right, in pixels."""
        h, w = size
        return self.y, h - self.y - self.height, self.x, w - self.x - self.width

    def covers(self, size: tuple[int, int]) -> bool:
        """Whether it is the whole frame of ``size`` (h, w): nothing cropped."""
        return (self.height, self.width) == tuple(size) and self.x == self.y == 0

    def __call__(self, image: np.ndarray | None) -> np.ndarray | None:
        """The rectangle of ``image`` (``(h, w, ...)``: a frame, an alpha plane, a residual), as a view."""
        if image is None:
            return None
        return image[self.y:self.y + self.height, self.x:self.x + self.width]

    def describe(self, size: tuple[int, int]) -> str:
        """``1920x800 at 0,140 (bars: 140 top, 140 bottom)``."""
        named = [f"{n} {side}" for n, side in zip(self.bars(size), ("top", "bottom", "left", "right"), strict=True)
                 if n]
        return f"{self.width}x{self.height} at {self.x},{self.y} (bars: {', '.join(named) or 'none'})"

    def __str__(self) -> str:
        return f"{self.width}:{self.height}:{self.x}:{self.y}"


def _lit(luma: np.ndarray, axis: int) -> np.ndarray:
    """Per row (``axis=1``) or column (``axis=0``) of ``luma``: whether it is picture rather than bar."""
    return (luma.mean(axis=axis) > BLACK_LIMIT) | ((luma >= BRIGHT).mean(axis=axis) > BRIGHT_SHARE)


def find_picture(images: Iterable[np.ndarray]) -> Crop | None:
    """The smallest rectangle holding the picture of every image (RGB or RGBA, uint8 or uint16, one size): the rows
    and columns inside the black bars of each, united. None where every image is black (nothing to go by)."""
    top = left = bottom = right = None
    size = None
    for image in images:
        if size is None:
            size = image.shape[:2]
        elif image.shape[:2] != size:
            raise ValueError(f"images of sizes {size} and {image.shape[:2]}")
        rgb = image[..., :3].astype(np.float32)
        if image.dtype == np.uint16:
            rgb *= 255 / 65535
        luma = rgb @ _LUMA
        rows = np.flatnonzero(_lit(luma, axis=1))
        if rows.size == 0:  # a black frame (a fade, a title's gap): says nothing
            continue
        r0, r1 = rows[0], rows[-1] + 1
        cols = np.flatnonzero(_lit(luma[r0:r1], axis=0))  # within the picture's rows: the bars above do not dim them
        if cols.size == 0:
            continue
        c0, c1 = cols[0], cols[-1] + 1
        top, bottom = (r0, r1) if top is None else (min(top, r0), max(bottom, r1))
        left, right = (c0, c1) if left is None else (min(left, c0), max(right, c1))
    if top is None:
        return None
    return Crop(int(right - left), int(bottom - top), int(left), int(top))


def pad_bars(images: np.ndarray, crop: Crop, size: tuple[int, int], scale: int) -> np.ndarray:
    """Upscaled pictures ``images`` ``(k, scale·crop.height, scale·crop.width, C)`` put back in black frames of the
    input's ``size`` (h, w) × ``scale``, where the crop took them from (alpha, if any, 0 in the bars)."""
    k, ph, pw = images.shape[:3]
    if (ph, pw) != (crop.height * scale, crop.width * scale):
        raise ValueError(f"pictures of {pw}x{ph} are not {crop.width}x{crop.height} x{scale}")
    out = np.zeros((k, size[0] * scale, size[1] * scale, *images.shape[3:]), images.dtype)
    out[:, crop.y * scale:crop.y * scale + ph, crop.x * scale:crop.x * scale + pw] = images
    return out
