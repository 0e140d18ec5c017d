"""The FP16 form of the exported model: FP16 weights and activations with explicit FP32 islands.

FP16 lives in the graph itself (DESIGN.md), so TensorRT 11's always strongly typed networks and
TensorRT 10's weakly typed ones with the FP16 flag build the same engine. The islands are plain
casts in the PyTorch graph, which the exporter writes as ``Cast`` nodes:

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
import torch.nn.functional as F
from torch import nn

from vggx.generator import Generator, UInt8Upscaler

__all__ = ["Float32Island", "HalfUInt8Upscaler", "half_upscaler"]


class Float32Island(nn.Module):
    """Run ``module`` in float32 whatever its inputs' dtype; the output stays float32.

    ``module`` is converted to float32 here (its weights keep full precision in the graph).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.float()

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.module(*(a.float() for a in args))


class HalfUInt8Upscaler(UInt8Upscaler):
    """:class:`UInt8Upscaler` whose generator computes in float16 apart from its FP32 islands.

    ``UInt8Upscaler`` picks its compute dtype from the generator's first parameter, which here
    belongs to the float32 flow island; this subclass fixes it to float16 and is otherwise the
    same pre- and post-processing (the parity tests compare it with the float32 wrapper).
    """

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        n, t, h, w, c = lr.shape
        x = lr.permute(0, 1, 4, 2, 3).reshape(n * t, c, h, w).to(torch.float32) * (1.0 / 255.0)
        pad_h = (self.multiple - h % self.multiple) % self.multiple
        pad_w = (self.multiple - w % self.multiple) % self.multiple
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = x.reshape(n, t, c, h + pad_h, w + pad_w).to(torch.float16)
        y = self.generator(x)[..., : self.scale * h, : self.scale * w]
        y = torch.clamp(y.to(torch.float32) * 255.0, 0.0, 255.0)
        return torch.round(y).to(torch.uint8).permute(0, 1, 3, 4, 2)


def half_upscaler(generator: Generator) -> HalfUInt8Upscaler:
    """A float16 copy of ``generator`` (the original is untouched) inside the uint8 wrapper.

    Returns an eval-mode module: uint8 ``(n, t, h, w, 3)`` -> uint8 ``(n, t, s*h, s*w, 3)``.
    """
    gen = copy.deepcopy(generator).half().eval()
    gen.flow = Float32Island(gen.flow)
    return HalfUInt8Upscaler(gen).eval()
