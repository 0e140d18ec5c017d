"""Parameter and FLOP counts and activation memory of the generator, computed on the meta device (no real compute)."""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from .config import GeneratorConfig
from .model import Generator

__all__ = ["ModelCost", "activation_bytes", "measure_cost"]


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


def _on_meta(cfg: GeneratorConfig, lr_size: tuple[int, int], batch: int, window: int | None,
             dtype: torch.dtype) -> tuple[Generator, torch.Tensor]:
    """The generator and an input of ``batch`` windows at LR size ``(h, w)`` (padded to ``size_multiple``, as the
    exported graph pads) on the meta device, in ``dtype``."""
    m = cfg.size_multiple
    h, w = (-(-s // m) * m for s in lr_size)
    with torch.device("meta"):
        return Generator(cfg).eval().to(dtype), torch.empty(batch, window or cfg.window, 3, h, w, dtype=dtype)


def measure_cost(cfg: GeneratorConfig, lr_size: tuple[int, int], window: int | None = None) -> ModelCost:
    """Count parameters and FLOPs of one window at LR size ``(h, w)`` (padded to ``size_multiple``)."""
    model, lr = _on_meta(cfg, lr_size, 1, window, torch.float32)
    params = sum(p.numel() for p in model.parameters())
    # FlopCounterMode looks ops up by their overload packet (``func._overloadpacket``), not by the overload: keyed
    # by ``.default`` the formulas would never apply and the count would be the convolutions' alone
    mapping = {
        torch.ops.vggx.flow_warp: _flow_warp_flops,
        torch.ops.vggx.temporal_attention: _attention_flops,
    }
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter, torch.no_grad():
        model(lr)
    return ModelCost(params=params, flops_per_window=counter.get_total_flops(), frames=lr.shape[1])


class _PeakMemory(TorchDispatchMode):
    """The most bytes of tensors alive at once while a module runs (views share their base's; in-place outputs
    are their input)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t._base is None and id(t) not in self._tracked:
                size = t.numel() * t.element_size()
                self._tracked.add(id(t))
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, id(t), size)
        return out

    def _free(self, key: int, size: int) -> None:
        self._tracked.discard(key)
        self.live -= size


@functools.lru_cache(maxsize=64)  # the export asks again for the profile it picked; the config is frozen
def activation_bytes(cfg: GeneratorConfig, lr_size: tuple[int, int], batch: int = 1, window: int | None = None,
                     dtype: torch.dtype = torch.float16) -> int:
    """The most bytes of activations alive at once in one forward pass of ``batch`` windows at LR ``(h, w)`` (padded
    to ``size_multiple``) in ``dtype``: PyTorch's peak, freeing each tensor when its last use is done, as an
    inference runtime's memory planner does (TensorRT's, for the engine's profile at its max shapes, is of that
    order; fused layers make it somewhat lower). The inputs and weights are not counted."""
    model, lr = _on_meta(cfg, lr_size, batch, window, dtype)
    tracker = _PeakMemory()
    with torch.inference_mode(), tracker:
        out = model(lr)
    del out
    return tracker.peak
