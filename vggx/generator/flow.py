"""SpyNet-style coarse-to-fine optical flow between neighbouring LR frames (Ranjan & Black 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vggx.plugins import flow_warp

__all__ = ["FlowEstimator"]


class _BasicModule(nn.Module):
    """One pyramid level: (ref, warped supp, upsampled flow) -> flow residual."""

    def __init__(self, hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 8
        for c in hidden:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.LeakyReLU(0.1, inplace=True)]
            c_in = c
        last = nn.Conv2d(c_in, 2, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FlowEstimator(nn.Module):
    """Flow that warps ``supp`` onto ``ref``: ``flow_warp(supp, flow) ≈ ref``.

    Args of ``forward``: ``ref``, ``supp`` ``(b, 3, h, w)`` in [0, 1], h and w multiples of
    ``2 ** (levels - 1)``. Returns ``(b, 2, h, w)`` in LR pixels (channel 0 = x, 1 = y).
    """

    def __init__(self, levels: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = levels
        self.basic = nn.ModuleList(_BasicModule(hidden) for _ in range(levels))

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        refs, supps = [ref * 2 - 1], [supp * 2 - 1]
        for _ in range(self.levels - 1):
            refs.append(F.avg_pool2d(refs[-1], 2))
            supps.append(F.avg_pool2d(supps[-1], 2))
        flow = torch.zeros_like(refs[-1][:, :2])
        for level in range(self.levels):
            r, s = refs[-1 - level], supps[-1 - level]
            if level > 0:
                flow = F.interpolate(flow, scale_factor=2.0, mode="bilinear", align_corners=False) * 2.0
            warped = flow_warp(s, flow) if level > 0 else s
            flow = flow + self.basic[level](torch.cat((r, warped, flow), dim=1))
        return flow
