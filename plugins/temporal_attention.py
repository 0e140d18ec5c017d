"""``vggx::temporal_attention``: self-attention along the time axis at every pixel.

Semantics (DESIGN.md): ``qkv`` is [N, T, 3C, H, W]; channels [0, C) are q, [C, 2C) k, [2C, 3C) v, and
inside each block channel ``head * d + j`` with ``d = C / heads``. For every (n, y, x, head) the output
is ``softmax(q kᵀ / √d) v`` over the T frames, written as [N, T, C, H, W].
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_temporal_attention_inputs", "temporal_attention_reference"]


def check_temporal_attention_inputs(qkv: torch.Tensor, heads: int) -> tuple[int, int, int, int, int, int]:
    """Validate ``qkv`` and ``heads``; return ``(n, t, c, h, w, d)``."""
    if qkv.dim() != 5:
        raise ValueError(f"temporal_attention: qkv must be [N, T, 3C, H, W], got shape {tuple(qkv.shape)}")
    n, t, c3, h, w = qkv.shape
    if c3 % 3:
        raise ValueError(f"temporal_attention: qkv channel count must be 3*C, got {c3}")
    c = c3 // 3
    if heads < 1 or c % heads:
        raise ValueError(f"temporal_attention: heads={heads} must divide C={c}")
    return n, t, c, h, w, c // heads


def temporal_attention_reference(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """PyTorch reference of ``vggx::temporal_attention``.

    Args:
        qkv: ``(n, t, 3c, h, w)`` float; q, k, v stacked along channels.
        heads: number of heads; must divide ``c``.

    Returns:
        ``(n, t, c, h, w)`` in ``qkv.dtype``; scores, softmax and accumulation in float32.

    Written with matmul + softmax only, so the portable ONNX export is MatMul/Softmax.
    """
    n, t, c, h, w, d = check_temporal_attention_inputs(qkv, heads)
    x = qkv.float().reshape(n, t, 3, heads, d, h * w)
    # -> (3, n, heads, h*w, t, d): one tiny attention problem per (n, head, pixel).
    x = x.permute(2, 0, 3, 5, 1, 4)
    q, k, v = x[0], x[1], x[2]
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
    out = torch.matmul(torch.softmax(scores, dim=-1), v)  # (n, heads, h*w, t, d)
    out = out.permute(0, 3, 1, 4, 2).reshape(n, t, c, h, w)
    return out.to(qkv.dtype)
