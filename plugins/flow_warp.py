"""``vggx::flow_warp``: bilinear backward warping of a feature map by a dense flow field.

Semantics (DESIGN.md): ``out[b, c, y, x] = bilinear(x[b, c], y + flow[b, 1, y, x], x + flow[b, 0, y, x])``
with zeros outside the image, i.e. ``grid_sample(align_corners=True, padding_mode="zeros")`` on the
pixel grid. ``flow[:, 0]`` is the horizontal offset, ``flow[:, 1]`` the vertical one, in pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["check_flow_warp_inputs", "flow_warp_reference"]


def check_flow_warp_inputs(x: torch.Tensor, flow: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is [B, C, H, W] and ``flow`` is [B, 2, H, W]."""
    if x.dim() != 4:
        raise ValueError(f"flow_warp: x must be [B, C, H, W], got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    if tuple(flow.shape) != (b, 2, h, w):
        raise ValueError(f"flow_warp: flow must be [{b}, 2, {h}, {w}], got shape {tuple(flow.shape)}")


def flow_warp_reference(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """PyTorch reference of ``vggx::flow_warp`` (the ground truth for kernels and exports).

    Args:
        x: features ``(b, c, h, w)``, any float dtype.
        flow: per-pixel offsets ``(b, 2, h, w)`` in pixels, channel 0 = x, channel 1 = y.

    Returns:
        ``(b, c, h, w)`` in ``x.dtype``. The coordinate arithmetic is done in float32 even for
        float16 inputs: float16 spacing is 0.5 px above 512, enough to misplace a warp.
    """
    check_flow_warp_inputs(x, flow)
    _, _, h, w = x.shape
    flow32 = flow.float()
    ys = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
    px = xs + flow32[:, 0]
    py = ys + flow32[:, 1]
    # align_corners=True maps -1 -> pixel 0 and +1 -> pixel (size - 1); a size of 1 has only one pixel.
    gx = px * (2.0 / max(w - 1, 1)) - 1.0
    gy = py * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.to(x.dtype)
