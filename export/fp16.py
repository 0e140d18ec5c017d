"""The FP16 form of the exported model: FP16 weights and activations with explicit FP32 islands.

FP16 lives in the graph itself (DESIGN.md): TensorRT builds it as a strongly typed network (TensorRT 11's
only kind; on TensorRT 10 ``vggx.export.engine`` asks for one for an FP16 graph), so the islands stay FP32.
TensorRT's FP16 builder flag is never set: an FP32 graph builds an FP32 engine (TF32 where TensorRT picks it),
and an FP16 engine is built from this graph alone. The islands are plain casts in the PyTorch graph, which the
exporter writes as ``Cast`` nodes:

- **normalisation** — ``ChannelNorm`` (``vggx/generator/layers.py``) computes in float32;
- **softmax** — ``temporal_attention_reference`` computes scores, softmax and accumulation in
  float32 (the ``trt`` flavour's plugin does the same inside its kernel);
- **coordinate arithmetic** — ``flow_warp_reference`` (and the plugin kernel) forms the sampling
  grid in float32: FP16 spacing is 0.5 px above 512;
- **flow** — the whole SpyNet-style flow estimator runs in float32 (:class:`Float32Island`): its
  coarse-to-fine accumulation ``flow = 2·up(flow) + residual`` compounds rounding, and its output
  feeds every warp. It is a small share of the FLOPs of the tiny and base configs.

Pre- and post-processing (uint8 -> [0, 1], pad, the final ×255, clamp and round) stay in float32.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vggx.generator import Generator, UInt8Upscaler

__all__ = ["Float32Island", "half_upscaler"]


class Float32Island(nn.Module):
    """Run ``module`` in float32 whatever its inputs' dtype; the output stays float32.

    ``module`` is converted to float32 here (its weights keep full precision in the graph).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.float()

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.module(*(a.float() for a in args))


def half_upscaler(generator: Generator) -> UInt8Upscaler:
    """A float16 copy of ``generator`` (the original is untouched) inside the uint8 wrapper.

    Returns an eval-mode module: uint8 ``(n, t, h, w, 3)`` -> uint8 ``(n, t, s*h, s*w, 3)``.
    """
    gen = copy.deepcopy(generator)
    flow = gen.flow.module if isinstance(gen.flow, Float32Island) else gen.flow  # idempotent
    gen.flow = nn.Identity()  # kept out of .half(): its weights go to float32 at full precision
    gen = gen.half().eval()
    gen.flow = Float32Island(flow).eval()
    # The compute dtype is explicit: the first parameter belongs to the float32 flow island.
    return UInt8Upscaler(gen, dtype=torch.float16).eval()
