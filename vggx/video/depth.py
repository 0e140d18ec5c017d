"""More than 8 bits a component, and wide-gamut / HDR colour, through a model that reads and writes 8.

**Fine bits.** The model's contract is uint8 RGB. A 10-, 12- or 16-bit input rounded to 8 bits loses the levels
between two 8-bit ones, which shows as bands in smooth gradients (skies, fades, vignettes) once the output has the
bits to show them. :func:`split_fine` rounds a 16-bit frame for the model and keeps the rest (the *residual*: at most
half an 8-bit level either way); :func:`join_fine` enlarges the residual with bicubic and adds it to the model's
output, in 16 bits. Bicubic is linear, so that is ``bicubic(input) + (model - bicubic(rounded input))``: the model's
detail on top of the input's own fine levels. The output never leaves the model's 8-bit output by more than the
enlarged residual: two thirds of an 8-bit level (bicubic, a = -0.75, gains up to 1.32 on a checkerboard).

**Colour.** Wide-gamut and HDR inputs (BT.2020 primaries; PQ or HLG transfer) keep their colour description: the
model upscales the signal as coded (PQ values, say) and the output is coded and tagged alike (BT.2020 matrix,
primaries, transfer), with the HDR10 metadata (mastering display, content light levels) passed on to x264, x265 and
SVT-AV1. The rest (BT.709, BT.601, untagged) is written as BT.709, as before (see :mod:`vggx.video.encode`).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

__all__ = ["ColorInfo", "component_depth", "join_fine", "round_to_8", "split_fine"]

# FFmpeg's enums (AVColorPrimaries, AVColorTransferCharacteristic, AVColorSpace)
AVCOL_PRI_BT2020 = 9
AVCOL_TRC_BT2020_10, AVCOL_TRC_BT2020_12 = 14, 15
AVCOL_TRC_SMPTE2084, AVCOL_TRC_ARIB_STD_B67 = 16, 18
AVCOL_SPC_BT2020_NCL = 9
HDR_TRANSFERS = {AVCOL_TRC_SMPTE2084: "PQ (SMPTE ST 2084)", AVCOL_TRC_ARIB_STD_B67: "HLG (ARIB STD-B67)"}
_WIDE_TRANSFERS = {AVCOL_TRC_BT2020_10, AVCOL_TRC_BT2020_12, *HDR_TRANSFERS}


def component_depth(pix_fmt: str | None) -> int:
    """Bits of the deepest colour component of FFmpeg's pixel format (``yuv420p10le``: 10, ``rgb48be``: 16); 8 for
    unknown names."""
    import av

    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components if not c.is_alpha)
    except (ValueError, TypeError):
        return 8


def round_to_8(rgb16: np.ndarray) -> np.ndarray:
    """uint16 values -> uint8, each the nearest 8-bit level (``round(v / 257)``, exactly: ``(255 v + 32895) >> 16``
    equals it for every 16-bit value; a quarter of the time of a division)."""
    wide = rgb16.astype(np.uint32)
    wide *= 255
    wide += 32895
    wide >>= 16
    return wide.astype(np.uint8)


def split_fine(rgb16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint16 values (RGB ``(..., 3)``, or a matte) -> (uint8 values rounded to the nearest 8-bit level, int16
    residual in 16-bit units, ``rgb16 - 257 * rounded``, within -128..128)."""
    rounded = round_to_8(rgb16)
    # in 16 bits, wrapping: the residual's two's complement, read back as int16
    residual = (rgb16 - rounded.astype(np.uint16) * np.uint16(257)).view(np.int16)
    return rounded, residual


def join_fine(sr: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """uint8 model output ``(k, s·h, s·w, 3)`` + int16 residuals of its input frames ``(k, h, w, 3)`` -> uint16
    ``(k, s·h, s·w, 3)``: the residuals enlarged ``s`` times with bicubic (PyTorch's, a = -0.75) and added in 16 bits.
    """
    import torch

    _, out_h, out_w, _ = sr.shape
    x = torch.from_numpy(np.ascontiguousarray(residual)).permute(0, 3, 1, 2).float()
    up = torch.nn.functional.interpolate(x, size=(out_h, out_w), mode="bicubic", align_corners=False)
    out = torch.from_numpy(np.ascontiguousarray(sr)).to(torch.int32).mul_(257)
    out += up.round_().to(torch.int32).permute(0, 2, 3, 1)
    return out.clamp_(0, 65535).numpy().astype(np.uint16)


@dataclass(frozen=True)
class ColorInfo:
    """An input's colour description (FFmpeg's enum values) and HDR10 metadata, as the output keeps it."""

    primaries: int
    trc: int
    matrix: int
    mastering: str | None = None  # x265's master-display string: G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)
    light: tuple[int, int] | None = None  # MaxCLL, MaxFALL (cd/m²)

    @property
    def mastering_values(self) -> list[int]:
        """The numbers of ``mastering``: the chromaticities G, B, R, white point (x, y; in 0.00002), then the
        luminance max and min (in 0.0001 cd/m²); [] without it."""
        return [int(n) for n in re.findall(r"\d+", self.mastering)] if self.mastering else []

    @property
    def hdr(self) -> str | None:
        """The HDR transfer's name (PQ, HLG), or None."""
        return HDR_TRANSFERS.get(self.trc)

    @property
    def kept(self) -> bool:
        """Whether the output keeps this description (wide gamut or HDR) rather than becoming BT.709."""
        return self.primaries == AVCOL_PRI_BT2020 or self.trc in _WIDE_TRANSFERS

    @classmethod
    def of_context(cls, cc) -> ColorInfo:
        """The tags of a PyAV stream's codec context (or of a frame); a BT.2020 or HDR stream whose matrix is
        untagged gets BT.2020's."""
        primaries, trc, matrix = cc.color_primaries, cc.color_trc, cc.colorspace
        if (primaries == AVCOL_PRI_BT2020 or trc in HDR_TRANSFERS) and matrix in (0, 2):  # RGB or unspecified
            matrix = AVCOL_SPC_BT2020_NCL
        return cls(primaries, trc, matrix)

    @classmethod
    def of_frame(cls, frame) -> ColorInfo:
        """The description a decoded PyAV frame carries: its tags and, for HDR, its HDR10 side data."""
        tags = cls.of_context(frame)
        if tags.hdr is None:
            return tags
        mastering = light = None
        try:
            side_data = list(frame.side_data)
        except ValueError:  # a kind of side data this PyAV does not know (an ICC profile, ...): none read
            side_data = []
        for data in side_data:
            name = getattr(data.type, "name", str(data.type))
            if name == "MASTERING_DISPLAY_METADATA":
                mastering = parse_mastering(bytes(data))
            elif name == "CONTENT_LIGHT_LEVEL":
                light = parse_light(bytes(data))
        return cls(tags.primaries, tags.trc, tags.matrix, mastering, light)

    def encoder_options(self, codec: str) -> dict[str, str]:
        """x264/x265/SVT-AV1 options that write the HDR10 metadata into the stream (SEI, AV1 metadata OBUs); {} for
        other codecs or none."""
        if not self.hdr or not (self.mastering or self.light):
            return {}
        if codec == "libx265":
            params = ["hdr10=1"] + ([f"master-display={self.mastering}"] if self.mastering else [])
            params += [f"max-cll={self.light[0]},{self.light[1]}"] if self.light else []
            return {"x265-params": ":".join(params)}
        if codec == "libx264":
            params = [f"mastering-display={self.mastering}"] if self.mastering else []
            params += [f"cll={self.light[0]},{self.light[1]}"] if self.light else []
            return {"x264-params": ":".join(params)}
        if codec == "libsvtav1":  # the same values as decimals: chromaticities, then cd/m²
            params = []
            if self.mastering:
                v = self.mastering_values
                xy = [f"{n / 50000:.5f}" for n in v[:8]]
                params.append(f"mastering-display=G({xy[0]},{xy[1]})B({xy[2]},{xy[3]})R({xy[4]},{xy[5]})"
                              f"WP({xy[6]},{xy[7]})L({v[8] / 10000:.4f},{v[9] / 10000:.4f})")
            params += [f"content-light={self.light[0]},{self.light[1]}"] if self.light else []
            return {"svtav1-params": ":".join(params)}
        return {}


def parse_mastering(data: bytes) -> str | None:
    """FFmpeg's ``AVMasteringDisplayMetadata`` (primaries R, G, B and white point as rationals, luminance min and max,
    two has-flags) -> x265's ``G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)`` (chromaticities in 0.00002, luminance in
    0.0001 cd/m²); None without primaries and luminance."""
    if len(data) < 88:
        return None
    v = struct.unpack("<20i2i", data[:88])
    ratio = [v[2 * i] / v[2 * i + 1] if v[2 * i + 1] else 0.0 for i in range(10)]
    has_primaries, has_luminance = v[20], v[21]
    if not (has_primaries and has_luminance):
        return None
    (rx, ry, gx, gy, bx, by, wx, wy), (lo, hi) = ratio[:8], ratio[8:]
    c = [round(x * 50000) for x in (gx, gy, bx, by, rx, ry, wx, wy)]
    return (f"G({c[0]},{c[1]})B({c[2]},{c[3]})R({c[4]},{c[5]})WP({c[6]},{c[7]})"
            f"L({round(hi * 10000)},{round(lo * 10000)})")


def parse_light(data: bytes) -> tuple[int, int] | None:
    """FFmpeg's ``AVContentLightMetadata`` -> (MaxCLL, MaxFALL)."""
    if len(data) < 8:
        return None
    max_cll, max_fall = struct.unpack("<2I", data[:8])
    return max_cll, max_fall
