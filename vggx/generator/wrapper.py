"""Pre- and post-processing around the generator: uint8 NTHWC frames in and out, any H, W.

This is the graph every backend runs (ONNX export, the torch backend): frames arrive as
``(n, t, h, w, 3)`` uint8 RGB, are padded (edge replication) up to ``size_multiple``, upscaled and
cropped back, and leave as ``(n, t, s*h, s*w, 3)`` uint8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .model import Generator

__all__ = ["UInt8Upscaler"]


class UInt8Upscaler(nn.Module):
    """``lr`` uint8 ``(n, t, h, w, 3)`` -> ``sr`` uint8 ``(n, t, s*h, s*w, 3)``."""

    def __init__(self, generator: Generator, dtype: torch.dtype | None = None) -> None:
        """``dtype``: what the generator computes in (default: its first parameter's dtype, read at each
        call so ``.half()`` on the wrapper just works); FP16 graphs with FP32 islands pass it explicitly."""
        super().__init__()
        self.generator = generator
        self.dtype = dtype
        self.scale = generator.cfg.scale
        self.multiple = generator.cfg.size_multiple

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        n, t, h, w, c = lr.shape
        dtype = self.dtype or next(self.generator.parameters()).dtype
        # Cast first and last: TensorRT takes a uint8 network input or output only straight into or out of a
        # Cast (no Transpose or Reshape on uint8), so the layout changes happen in float.
        x = lr.to(torch.float32).permute(0, 1, 4, 2, 3).reshape(n * t, c, h, w) * (1.0 / 255.0)
        m = self.multiple
        # m*ceil(h/m) as one floor division of a positive number: simpler for export's symbolic sizes than
        # h + (m - h % m) % m, and not vggx.shapes.pad_to_multiple's -(-h // m), which the exported graph's Div
        # would round toward zero
        hp, wp = (h + m - 1) // m * m, (w + m - 1) // m * m
        x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
        x = x.reshape(n, t, c, hp, wp).to(dtype)
        y = self.generator(x)[..., : self.scale * h, : self.scale * w]
        y = torch.clamp(y.to(torch.float32) * 255.0, 0.0, 255.0)
        return torch.round(y).permute(0, 1, 3, 4, 2).to(torch.uint8)
