"""``torch.library`` registration of the two vggx ops.

``torch.ops.vggx.flow_warp`` and ``torch.ops.vggx.temporal_attention`` are single graph nodes for
``torch.compile`` / ``torch.export`` / the ONNX exporter. The default implementation is the PyTorch
reference; the OpenAI Triton kernels are registered on top as the CUDA implementation when Triton is
installed (``flow_warp_triton`` / ``temporal_attention_triton``, which fall back to the reference for
dtypes and sizes the kernels do not take). Backward recomputes the reference under autograd, so the
ops can be trained through.

``flow_warp`` / ``temporal_attention`` below are what the generator calls. Inside
:func:`reference_ops` they call the reference compositions directly instead of the custom ops: that
is how the ``portable`` ONNX flavour (GridSample, MatMul, Softmax) is traced, and how training avoids
the recompute in backward.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

from ._triton import triton_available
from .flow_warp import check_flow_warp_inputs, flow_warp_reference, flow_warp_triton, triton_output_layout
from .temporal_attention import (
    check_temporal_attention_inputs,
    temporal_attention_reference,
    temporal_attention_triton,
)

__all__ = ["flow_warp", "reference_ops", "temporal_attention", "using_reference_ops"]

_state = threading.local()


@torch.library.custom_op("vggx::flow_warp", mutates_args=())
def _flow_warp_op(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    return flow_warp_reference(x, flow).contiguous()


@_flow_warp_op.register_fake
def _(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    check_flow_warp_inputs(x, flow)
    # The layout the real implementation returns (torch.compile checks): the Triton one on CUDA, else NCHW.
    on_kernel = x.device.type == "cuda" and triton_available()
    return torch.empty_like(x, memory_format=triton_output_layout(x) if on_kernel else torch.contiguous_format)


def _flow_warp_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _flow_warp_backward(ctx, grad):
    x, flow = ctx.saved_tensors
    with torch.enable_grad():
        xr = x.detach().requires_grad_(ctx.needs_input_grad[0])
        fr = flow.detach().requires_grad_(ctx.needs_input_grad[1])
        out = flow_warp_reference(xr, fr)
        wanted = [t for t in (xr, fr) if t.requires_grad]
        grads = iter(torch.autograd.grad(out, wanted, grad, allow_unused=True)) if wanted else iter(())
    return tuple(next(grads) if t.requires_grad else None for t in (xr, fr))


_flow_warp_op.register_autograd(_flow_warp_backward, setup_context=_flow_warp_setup)

if triton_available():
    _flow_warp_op.register_kernel("cuda")(flow_warp_triton)


@torch.library.custom_op("vggx::temporal_attention", mutates_args=())
def _temporal_attention_op(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    return temporal_attention_reference(qkv, heads).contiguous()  # as the fake: contiguous


@_temporal_attention_op.register_fake
def _(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    n, t, c, h, w, _ = check_temporal_attention_inputs(qkv, heads)
    return qkv.new_empty((n, t, c, h, w))


def _attention_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0])
    ctx.heads = inputs[1]


def _attention_backward(ctx, grad):
    (qkv,) = ctx.saved_tensors
    with torch.enable_grad():
        qr = qkv.detach().requires_grad_(True)
        out = temporal_attention_reference(qr, ctx.heads)
        (g,) = torch.autograd.grad(out, (qr,), grad)
    return g, None


_temporal_attention_op.register_autograd(_attention_backward, setup_context=_attention_setup)

if triton_available():
    _temporal_attention_op.register_kernel("cuda")(temporal_attention_triton)


def using_reference_ops() -> bool:
    """True inside :func:`reference_ops` on this thread."""
    return getattr(_state, "reference", False)


@contextlib.contextmanager
def reference_ops(enabled: bool = True) -> Iterator[None]:
    """Make :func:`flow_warp` / :func:`temporal_attention` call the plain PyTorch compositions."""
    previous = using_reference_ops()
    _state.reference = enabled
    try:
        yield
    finally:
        _state.reference = previous


def flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Warp ``x`` ``(b, c, h, w)`` by ``flow`` ``(b, 2, h, w)`` (pixels; see ``flow_warp_reference``)."""
    if using_reference_ops():
        return flow_warp_reference(x, flow)
    return torch.ops.vggx.flow_warp(x, flow)


def temporal_attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Attention along T at every pixel: ``(n, t, 3c, h, w)`` -> ``(n, t, c, h, w)``."""
    if using_reference_ops():
        return temporal_attention_reference(qkv, heads)
    return torch.ops.vggx.temporal_attention(qkv, heads)
