"""RGB -> yuv420p in PyTorch, on whatever device the frames are (the CUDA fast path converts on the GPU).

It reproduces what the writer's swscale conversion (bilinear) makes of uint8 RGB, to within one
level: BT.709 coefficients, limited range (Y 16-235, U/V 16-240), as the writer converts and tags YUV
output; chroma averaged over the two pixels of each pair horizontally and filtered 1-3-3-1 over four
rows vertically (edge rows repeated), which is how swscale's bilinear 2:1 chroma reduction weighs them.
The result is laid out as PyAV's ``yuv420p`` ndarray: ``(H * 3 / 2, W)`` uint8, the Y plane, then the U
and the V plane (each ``H/2 x W/2``) flattened behind it.

On the GPU this removes the per-frame colour conversion from the CPU threads feeding the encoder and
halves the bytes copied to the host (1.5 instead of 3 per pixel).
"""

from __future__ import annotations

import torch

__all__ = ["rgb_to_yuv420p", "yuv420p_shape"]

# BT.709 (ITU-R BT.709: Kr 0.2126, Kb 0.0722), limited range, for 8-bit values.
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB
_Y = tuple(219 / 255 * k for k in (_KR, _KG, _KB))
_U = tuple(224 / 255 * k / (2 * (1 - _KB)) for k in (-_KR, -_KG, 1 - _KB))
_V = tuple(224 / 255 * k / (2 * (1 - _KR)) for k in (1 - _KR, -_KG, -_KB))


def yuv420p_shape(height: int, width: int) -> tuple[int, int]:
    """Shape of one ``yuv420p`` frame as an ndarray (PyAV's layout); ``ValueError`` for odd sizes."""
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {width}x{height}")
    return height * 3 // 2, width


def _planes(rgb: torch.Tensor, coefficients: tuple[float, float, float], offset: float) -> torch.Tensor:
    r, g, b = rgb.unbind(-1)
    return offset + coefficients[0] * r + coefficients[1] * g + coefficients[2] * b


def _chroma(c: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` full-resolution chroma -> ``(..., H/2, W/2)``: pairs averaged across, 1-3-3-1 down."""
    c = (c[..., 0::2] + c[..., 1::2]) * 0.5
    up = torch.cat((c[..., :1, :], c[..., 1:-1:2, :]), dim=-2)  # row 2i-1 (row 0 repeated at the top)
    down = torch.cat((c[..., 2::2, :], c[..., -1:, :]), dim=-2)  # row 2i+2 (last row repeated)
    return (up + 3 * c[..., 0::2, :] + 3 * c[..., 1::2, :] + down) * 0.125


def rgb_to_yuv420p(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` RGB -> uint8 ``(..., H * 3 / 2, W)`` yuv420p (see the module doc).

    ``H`` and ``W`` must be even. Computed in float32 on ``rgb``'s device; rounding to nearest.
    """
    if rgb.dtype != torch.uint8 or rgb.ndim < 3 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_yuv420p: expected uint8 (..., H, W, 3), got {rgb.dtype} {tuple(rgb.shape)}")
    h, w = rgb.shape[-3], rgb.shape[-2]
    yuv_h, _ = yuv420p_shape(h, w)
    x = rgb.float()
    y = _planes(x, _Y, 16.0)
    u = _chroma(_planes(x, _U, 128.0))
    v = _chroma(_planes(x, _V, 128.0))
    lead = rgb.shape[:-3]
    flat = torch.cat((y.reshape(*lead, -1), u.reshape(*lead, -1), v.reshape(*lead, -1)), dim=-1)
    return flat.round_().clamp_(0, 255).to(torch.uint8).reshape(*lead, yuv_h, w)
