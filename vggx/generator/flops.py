"""Parameter and FLOP counts of the generator, computed on the meta device (no real compute)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import GeneratorConfig
from .model import Generator

__all__ = ["ModelCost", "measure_cost"]


@dataclass(frozen=True)
class ModelCost:
    params: int
    flops_per_window: int  # multiply-add = 2 FLOPs
    frames: int

    @property
    def gflops_per_frame(self) -> float:
        return self.flops_per_window / self.frames / 1e9


def _flow_warp_flops(x_shape, flow_shape, *args, out_shape=None, **kwargs) -> int:
    b, c, h, w = x_shape
    return b * h * w * (c * 8 + 10)  # 4 taps × (mul + add) per channel + coordinate math


def _attention_flops(qkv_shape, *args, out_shape=None, **kwargs) -> int:
    n, t, c3, h, w = qkv_shape
    c = c3 // 3
    return n * h * w * 4 * t * t * c  # q·k and p·v, 2 FLOPs per MAC each


def measure_cost(cfg: GeneratorConfig, lr_size: tuple[int, int], window: int | None = None) -> ModelCost:
    """Count parameters and FLOPs of one window at LR size ``(h, w)`` (padded to ``size_multiple``)."""
    t = window or cfg.window
    m = cfg.size_multiple
    h, w = (-(-s // m) * m for s in lr_size)
    with torch.device("meta"):
        model = Generator(cfg).eval()
        lr = torch.empty(1, t, 3, h, w)
    params = sum(p.numel() for p in model.parameters())
    mapping = {
        torch.ops.vggx.flow_warp.default: _flow_warp_flops,
        torch.ops.vggx.temporal_attention.default: _attention_flops,
    }
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter, torch.no_grad():
        model(lr)
    return ModelCost(params=params, flops_per_window=counter.get_total_flops(), frames=t)
