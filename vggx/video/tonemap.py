"""HDR to SDR: tone mapping a PQ or HLG BT.2020 picture into BT.709 SDR (``vggx upscale --tonemap``).

An HDR10 film upscaled for an SDR screen or site needs its light fitted into SDR's hundred nits, and a model trained
on SDR pictures sees PQ-coded frames as flat, dim ones. FFmpeg's way (``zscale`` to linear light, ``tonemap``,
``zscale`` back) needs the zimg library, which the FFmpeg in PyAV's wheels lacks, so the standard steps are done here
on the 16-bit RGB the reader decodes, before the model:

1. the transfer's EOTF to display light in cd/m² (SMPTE ST 2084 for PQ; for HLG, BT.2100's inverse OETF and its
   OOTF for a 1000 cd/m² display, system gamma 1.2);
2. ITU-R BT.2390's EETF (a Hermite knee in the PQ domain from the source's peak to :data:`SDR_PEAK`) on the largest
   of R, G and B, each pixel's three scaled alike, so that hues stay;
3. BT.2020 primaries to BT.709's in linear light (BT.2087's matrix), what falls outside clipped;
4. SDR's encoding, BT.1886's inverse EOTF (a pure 1/2.4 power), as 16-bit R'G'B'.

The source's peak is its MaxCLL where the HDR10 metadata has one, else its mastering display's peak, else 1000
cd/m². Costs: look-up tables for the EOTF, the gain and the encoding, a few vector operations (see
``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SDR_PEAK", "ToneMap", "bt2390", "pq_eotf", "pq_inverse"]

SDR_PEAK = 100.0  # cd/m²: SDR's reference white, where the tone curve's top lands
HLG_PEAK = 1000.0  # cd/m²: the display HLG's OOTF is taken for (BT.2100's reference, system gamma 1.2)
DEFAULT_PEAK = 1000.0  # cd/m²: an HDR10 source's peak where its metadata says none

_M1, _M2 = 2610 / 16384, 2523 / 4096 * 128
_C1, _C2, _C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
_HLG_A = 0.17883277
_HLG_B = 1 - 4 * _HLG_A
_HLG_C = 0.5 - _HLG_A * np.log(4 * _HLG_A)


def _rgb_to_xyz(primaries: tuple[tuple[float, float], ...], white: tuple[float, float]) -> np.ndarray:
    """The RGB -> XYZ matrix of primaries (x, y) R, G, B and a white point (SMPTE RP 177)."""
    xyz = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    w = np.array([white[0] / white[1], 1.0, (1 - white[0] - white[1]) / white[1]])
    return xyz * np.linalg.solve(xyz, w)


_D65 = (0.3127, 0.3290)
# linear BT.2020 RGB -> linear BT.709 RGB (BT.2087's matrix, 1.6605 -0.5876 -0.0728 ... to four places): a grey stays
# exactly grey
BT2020_TO_BT709 = (np.linalg.inv(_rgb_to_xyz(((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), _D65))
                   @ _rgb_to_xyz(((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)), _D65)).astype(np.float32)
_LUMA_2020 = np.array([0.2627, 0.6780, 0.0593], np.float32)


def pq_eotf(e: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084: PQ signal in [0, 1] -> display light in cd/m²."""
    p = np.power(np.clip(e, 0.0, 1.0), 1 / _M2)
    return 10000.0 * np.power(np.maximum(p - _C1, 0.0) / (_C2 - _C3 * p), 1 / _M1)


def pq_inverse(nits: np.ndarray) -> np.ndarray:
    """ST 2084's inverse: cd/m² -> PQ signal in [0, 1]."""
    y = np.power(np.clip(np.asarray(nits, np.float64) / 10000.0, 0.0, 1.0), _M1)
    return np.power((_C1 + _C2 * y) / (1 + _C3 * y), _M2)


def hlg_inverse_oetf(e: np.ndarray) -> np.ndarray:
    """BT.2100 HLG: signal in [0, 1] -> scene light in [0, 1]."""
    e = np.clip(e, 0.0, 1.0)
    return np.where(e <= 0.5, e * e / 3, (np.exp((e - _HLG_C) / _HLG_A) + _HLG_B) / 12)


def bt2390(nits: np.ndarray, source_peak: float, target_peak: float = SDR_PEAK) -> np.ndarray:
    """ITU-R BT.2390's EETF: light from a source mastered up to ``source_peak`` cd/m², fitted under ``target_peak``
    (black at 0 on both sides): unchanged below a knee, a Hermite spline above it that reaches ``target_peak`` at the
    source's peak; above that peak, ``target_peak``. Identity where the source's peak is under the target's."""
    nits = np.asarray(nits, np.float64)
    if source_peak <= target_peak:
        return np.minimum(nits, target_peak)
    top = pq_inverse(source_peak)
    e = np.clip(pq_inverse(nits) / top, 0.0, 1.0)
    max_lum = pq_inverse(target_peak) / top
    knee = 1.5 * max_lum - 0.5
    t = (e - knee) / (1 - knee)
    spline = ((2 * t**3 - 3 * t**2 + 1) * knee + (t**3 - 2 * t**2 + t) * (1 - knee) + (-2 * t**3 + 3 * t**2) * max_lum)
    return pq_eotf(np.where(e < knee, e, spline) * top)


@dataclass(frozen=True)
class ToneMap:
    """The tone mapping of one source: ``transfer`` "PQ" or "HLG", its ``peak`` in cd/m² (see the module doc)."""

    transfer: str
    peak: float

    def __post_init__(self) -> None:
        if self.transfer not in ("PQ", "HLG"):
            raise ValueError(f"tone mapping takes PQ or HLG, not {self.transfer}")
        # 16-bit code -> light: cd/m² (PQ) or scene light (HLG), by table
        codes = np.arange(65536, dtype=np.float64) / 65535
        light = pq_eotf(codes) if self.transfer == "PQ" else hlg_inverse_oetf(codes)
        object.__setattr__(self, "_light", light.astype(np.float32))
        root = codes  # tables "over the square root" of a value in [0, 1]: fine steps near black
        if self.transfer == "PQ":  # the EETF as a gain on the largest channel, by its code (PQ is monotonic)
            object.__setattr__(self, "_code_gain", _gain(light, self.peak).astype(np.float32))
        else:  # the OOTF's gain over scene luminance, the EETF's over display light / 1000
            object.__setattr__(self, "_ootf", (HLG_PEAK * np.power(root * root, 0.2)).astype(np.float32))
            object.__setattr__(self, "_root_gain", _gain(root * root * HLG_PEAK, self.peak).astype(np.float32))
        # SDR's encoding (BT.1886's inverse EOTF) over linear light in [0, 1]
        object.__setattr__(self, "_encode", np.round(np.power(root * root, 1 / 2.4) * 65535).astype(np.uint16))

    @classmethod
    def of(cls, color) -> ToneMap | None:
        """The tone mapping of a source described by ``color`` (a :class:`vggx.video.depth.ColorInfo`), or None
        where it is not HDR."""
        if color is None or color.hdr is None:
            return None
        transfer = "PQ" if "PQ" in color.hdr else "HLG"
        peak = DEFAULT_PEAK if transfer == "PQ" else HLG_PEAK
        if transfer == "PQ" and color.light and color.light[0] > 0:
            peak = float(color.light[0])  # MaxCLL: the brightest pixel there is
        elif transfer == "PQ" and color.mastering:
            peak = color.mastering_values[8] / 10000  # the display's luminance max, in 0.0001 cd/m²
        return cls(transfer, peak)

    def describe(self) -> str:
        return f"{self.transfer} HDR (peak {self.peak:g} cd/m²) tone-mapped to SDR BT.709 ({SDR_PEAK:g} cd/m²)"

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """uint16 R'G'B' ``(..., 3)`` in the source's transfer and BT.2020 primaries -> uint16 BT.709 SDR R'G'B'."""
        light = self._light[rgb]  # (..., 3) float32
        if self.transfer == "PQ":  # PQ is monotonic: the largest code is the largest light; its gain by table
            top = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
            light *= self._code_gain[top][..., None]
        else:  # BT.2100's OOTF (scene light to display light), then the gain of the largest channel: by tables
            light *= self._ootf[_root_index(light @ _LUMA_2020)][..., None]
            top = np.maximum(np.maximum(light[..., 0], light[..., 1]), light[..., 2])
            light *= self._root_gain[_root_index(top / np.float32(HLG_PEAK))][..., None]
        light = light @ (BT2020_TO_BT709.T / np.float32(SDR_PEAK))
        return self._encode[_root_index(light)]


def _gain(nits: np.ndarray, peak: float) -> np.ndarray:
    """BT.2390's EETF as a factor on ``nits`` (1 at 0)."""
    out = np.ones_like(nits)
    lit = nits > 0
    out[lit] = bt2390(nits[lit], peak) / nits[lit]
    return out


def _root_index(x: np.ndarray) -> np.ndarray:
    """Indices of tables over ``sqrt(x)`` for ``x`` in [0, 1] (clipped): 65536 steps, fine near 0. Overwrites
    ``x``."""
    np.clip(x, 0.0, 1.0, out=x)
    np.sqrt(x, out=x)
    x *= np.float32(65535)
    x += np.float32(0.5)
    return x.astype(np.int32)
