"""The VideoGigaGAN-style generator: flow -> bidirectional propagation -> U-Net upsampler -> + bicubic."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import GeneratorConfig
from .flow import FlowEstimator
from .propagation import BidirectionalPropagation
from .unet import UNetUpsampler

__all__ = ["Generator", "bicubic_upscale"]


def bicubic_upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic ×``scale`` of ``(b, c, h, w)`` (a = -0.75, half-pixel centres, as ONNX Resize cubic)."""
    return F.interpolate(x, scale_factor=float(scale), mode="bicubic", align_corners=False)


class Generator(nn.Module):
    """Video super-resolution generator.

    ``forward(lr)``: ``lr`` ``(n, t, 3, h, w)`` float in [0, 1], h and w multiples of
    ``cfg.size_multiple`` -> ``(n, t, 3, s*h, s*w)`` (not clamped). ``t`` may be any value >= 1;
    exported graphs fix it to ``cfg.window``. With ``t == 1`` propagation and attention are inert
    (the "frame by frame" run of the evaluation).
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.flow = FlowEstimator(cfg.flow_levels, cfg.flow_channels)
        self.propagation = BidirectionalPropagation(cfg.prop_channels, cfg.prop_blocks)
        self.upsampler = UNetUpsampler(cfg)

    def check_input(self, lr: torch.Tensor) -> None:
        if lr.dim() != 5 or lr.shape[2] != 3:
            raise ValueError(f"generator input must be (n, t, 3, h, w), got {tuple(lr.shape)}")
        m = self.cfg.size_multiple
        h, w = lr.shape[-2:]
        if isinstance(h, int) and isinstance(w, int) and (h % m or w % m):
            raise ValueError(f"generator input h, w must be multiples of {m}, got {h}x{w}")

    def estimate_flows(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(flow_fwd, flow_bwd)``, each ``(n, t-1, 2, h, w)``.

        ``flow_bwd[:, i]`` warps frame i+1 onto frame i; ``flow_fwd[:, i]`` warps frame i onto i+1.
        """
        n, t, c, h, w = lr.shape
        a = lr[:, :-1].reshape(n * (t - 1), c, h, w)
        b = lr[:, 1:].reshape(n * (t - 1), c, h, w)
        flows = self.flow(torch.cat((a, b)), torch.cat((b, a))).reshape(2, n, t - 1, 2, h, w)
        return flows[1], flows[0]

    def forward_with_flows(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like ``forward`` but also return ``(flow_fwd, flow_bwd)`` (for flow supervision)."""
        self.check_input(lr)
        n, t, c, h, w = lr.shape
        if t > 1:
            flow_fwd, flow_bwd = self.estimate_flows(lr)
        else:
            flow_fwd = flow_bwd = lr.new_zeros(n, 0, 2, h, w)
        feats = self.propagation(lr, flow_fwd, flow_bwd)
        s = self.cfg.scale
        frames = lr.reshape(n * t, c, h, w)
        out = self.upsampler(feats, t) + bicubic_upscale(frames, s)
        return out.reshape(n, t, c, s * h, s * w), flow_fwd, flow_bwd

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.forward_with_flows(lr)[0]
