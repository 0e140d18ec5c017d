"""``vggx::temporal_attention``: self-attention along the time axis at every pixel.

Semantics (DESIGN.md): ``qkv`` is [N, T, 3C, H, W]; channels [0, C) are q, [C, 2C) k, [2C, 3C) v, and
inside each block channel ``head * d + j`` with ``d = C / heads``. For every (n, y, x, head) the output
is ``softmax(q kᵀ / √d) v`` over the T frames, written as [N, T, C, H, W].

Kernel (:func:`temporal_attention_kernel`), launcher (:func:`launch_temporal_attention`) and PyTorch
reference (:func:`temporal_attention_reference`) live here together (STYLE.md).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from ._triton import TritonKernel
from .flow_warp import KERNEL_DTYPES, _on_stream
from .launch import ATTENTION_MAX_HEAD_DIM, ATTENTION_MAX_T, AttentionTile, attention_config

try:  # the kernel body needs triton.language only when it is compiled or interpreted
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    tl = None

__all__ = [
    "TEMPORAL_ATTENTION_KERNEL",
    "check_temporal_attention_inputs",
    "launch_temporal_attention",
    "temporal_attention_kernel",
    "temporal_attention_reference",
    "temporal_attention_triton",
]


def check_temporal_attention_inputs(qkv: torch.Tensor, heads: int) -> tuple[int, int, int, int, int, int]:
    """Validate ``qkv`` and ``heads``; return ``(n, t, c, h, w, d)``."""
    if qkv.dim() != 5:
        raise ValueError(f"temporal_attention: qkv must be [N, T, 3C, H, W], got shape {tuple(qkv.shape)}")
    n, t, c3, h, w = qkv.shape
    if not qkv.is_floating_point():  # integer q, k, v would come back truncated
        raise ValueError(f"temporal_attention: qkv must be a float tensor, got {qkv.dtype}")
    if c3 % 3 or not c3:
        raise ValueError(f"temporal_attention: qkv channel count must be 3*C with C >= 1, got {c3}")
    c = c3 // 3
    if isinstance(heads, bool) or not isinstance(heads, numbers.Integral):  # True was 1; 2.0 failed in a reshape
        raise ValueError(f"temporal_attention: heads must be an int, got {heads!r}")
    if heads < 1 or c % heads:
        raise ValueError(f"temporal_attention: heads={heads} must divide C={c}")
    return n, t, c, h, w, c // heads


def temporal_attention_reference(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """PyTorch reference of ``vggx::temporal_attention``.

    Args:
        qkv: ``(n, t, 3c, h, w)`` float; q, k, v stacked along channels.
        heads: number of heads; must divide ``c``.

    Returns:
        ``(n, t, c, h, w)`` in ``qkv.dtype``; scores, softmax and accumulation in float32 (float64 for float64).

    Written with matmul + softmax only, so the portable ONNX export is MatMul/Softmax.
    """
    n, t, c, h, w, d = check_temporal_attention_inputs(qkv, heads)
    acc = torch.float64 if qkv.dtype == torch.float64 else torch.float32  # float64 in: float64 math
    q, k, v = qkv.to(acc).reshape(n, t, 3 * c, h * w).split(c, dim=2)

    def per_pixel(a: torch.Tensor) -> torch.Tensor:  # (n, t, c, hw) -> (n, hw, heads, t, d)
        return a.permute(0, 3, 1, 2).reshape(n, h * w, t, heads, d).transpose(2, 3)

    # One tiny attention problem per (n, pixel, head). This layout (split first, 4-D permutes) runs
    # 35-45 % faster in ONNX Runtime than one 6-D permute of qkv, with identical results.
    scores = torch.matmul(per_pixel(q), per_pixel(k).transpose(-1, -2)) * (1.0 / math.sqrt(d))
    out = torch.matmul(torch.softmax(scores, dim=-1), per_pixel(v))  # (n, hw, heads, t, d)
    out = out.transpose(2, 3).reshape(n, h * w, t * c).permute(0, 2, 1).reshape(n, t, c, h, w)
    return out.to(qkv.dtype)


def temporal_attention_kernel(
    qkv_ptr,
    T,
    C,
    HW,
    out_ptr,
    D: tl.constexpr,
    T_BLOCK: tl.constexpr,
    Q_BLOCK: tl.constexpr,
    P_BLOCK: tl.constexpr,
    SCALE: tl.constexpr,
    UNROLL: tl.constexpr,
    MMA: tl.constexpr = False,
    D_BLOCK: tl.constexpr = 16,
    STAGES: tl.constexpr = 1,
    WALK: tl.constexpr = 1,
    OFF32: tl.constexpr = False,
    ALIGN_CHECK: tl.constexpr = False,
    FRAMES: tl.constexpr = 0,
    Q_LAST: tl.constexpr = 0,
):
    """Triton kernel of ``vggx::temporal_attention`` (contiguous NTCHW; FP32/FP16 I/O, FP32 math).

    Grid ``(cdiv(T, Q_BLOCK) * cdiv(H*W, P_BLOCK), heads, N)``. A program owns ``P_BLOCK`` pixels
    of one (n, head), ``Q_BLOCK`` query frames and all ``T <= T_BLOCK`` key frames: it reads its
    q, k, v straight from the [N, T, 3C, H, W] layout (channel ``head*D + j`` of the q/k/v block),
    keeps the ``[Q_BLOCK, T_BLOCK, P_BLOCK]`` scores in registers, and writes its part of
    [N, T, C, H, W] once. With ``Q_BLOCK == T_BLOCK`` every input element is read exactly once.
    ``UNROLL`` unrolls the loops over the head dim (shipped: 1; an H200 sweep found full unrolling
    at d = 16 slower at every T, 8-16, before the loads were pipelined: it raises register use, which costs
    occupancy and spills; TensorRT's tactics 8 and 9 unroll by 2 and 4, pipelined). With ``ALIGN_CHECK`` only the
    aligned copy unrolls.
    ``STAGES`` software-pipelines those loops (Triton's ``num_stages``: ``cp.async`` copies of the next
    iterations' tiles into shared memory; 1: plain loads; see :class:`~vggx.plugins.launch.AttentionTile`).
    ``WALK`` (tensor-core form): consecutive pixel blocks per program (1, shipped: one), a loop that Triton
    software-pipelines where ``STAGES`` >= 2 (``cp.async`` copies of the next blocks' q, k, v tiles into shared
    memory while this block's dots run).
    ``OFF32`` (per-thread form): element offsets within a batch item in int32 (the launcher sets it only
    where ``T * 3C * H * W < 2**31``; never in the TensorRT plugin, whose H and W are dynamic).
    ``FRAMES``: T itself where the launch compiles it in (0: read from ``T`` at run time); the masks on keys and
    queries are then known, and the padding keys' work folds away (see ``AttentionTile.fixed_t``).
    ``ALIGN_CHECK`` (per-thread form; the TensorRT plugin's PTX): check at run time that the tensors start
    16-byte aligned, H*W is a multiple of 8 and a batch item's offsets fit int32, and then run a copy of the
    body whose hints let the loads (and their ``cp.async`` copies) move 16 bytes at a time, with int32
    offsets; the JIT learns the same from its specialisation and its launcher.

    ``MMA``: the tensor-core form instead (shipped above 12 frames in FP16 and 16 in FP32, see
    :func:`~vggx.plugins.launch.attention_tile`). A program owns ``P_BLOCK`` pixels and all T queries and keys
    (``Q_BLOCK == T_BLOCK``, both at least 16, the smallest dot); it loads q, k, v of its pixels as
    ``[P_BLOCK, T_BLOCK, D_BLOCK]`` tiles (pixels contiguous in memory, so the loads coalesce; masked
    past T and d) and computes the pixels' scores and outputs as two batched ``tl.dot`` (FP16 operands
    with FP32 accumulation; FP32 inputs as three-pass TF32, accurate to FP32 rounding). Every input
    element is read once whatever T is. The softmax is the same FP32 one; the probabilities enter the
    second dot in the I/O dtype.
    Argument order = inputs, int32 scalars, outputs (TensorRT's AOT launch order).
    """
    # The softmax in base 2 with the 1/sqrt(d) scale folded in: exp(s*SCALE - m*SCALE) = exp2(s*E - m*E), one FMA
    # and one ex2 per score (three multiplies, a subtraction and ex2 as written with exp); its sum inverted once per
    # query, the scores multiplied by it (a division per score cost ptxas three instructions more).
    EXP2_SCALE: tl.constexpr = SCALE * 1.4426950408889634  # log2(e)
    head = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    hw = tl.full((), 0, tl.int64) + HW  # int64 offsets; HW == 1 may arrive as a constant
    in_frame = 3 * C * hw  # elements per input frame
    out_frame = C * hw
    # Vector loads need rows of pixels that start 16-byte aligned. Triton's JIT knows that from its
    # specialisation (pointers, HW divisible by 16); the TensorRT plugin's PTX (dynamic shapes) does not,
    # so the check runs here and the aligned copy of the body (VEC = 1) says so with hints (both forms).
    vec_ok = (((qkv_ptr.to(tl.int64) | out_ptr.to(tl.int64)) % 16) == 0) & ((HW % 8) == 0)
    nt = T  # frames: the argument, or FRAMES where the launch fixes them at compile time
    if FRAMES:
        nt = FRAMES
    if MMA:
        # rows start 16-byte aligned there, or at a multiple of their own size where they are shorter
        # (the tensor-core tiles of 2-4 pixels at T = 32, d = 64)
        row_bytes: tl.constexpr = min(16, P_BLOCK * (qkv_ptr.dtype.element_ty.primitive_bitwidth // 8))
        for VEC in tl.static_range(2):
            if vec_ok == (VEC == 1):
                for step in tl.range(0, WALK, num_stages=STAGES):  # WALK consecutive pixel blocks (1 shipped)
                    offs_p = (tl.program_id(0) * WALK + step) * P_BLOCK + tl.arange(0, P_BLOCK)
                    frames = tl.arange(0, T_BLOCK)
                    dims = tl.arange(0, D_BLOCK)
                    hw_end = HW
                    if VEC == 1:  # = HW here; the compiler then knows it divisible by 8 (the mask's runs)
                        hw_end = HW // 8 * 8
                    in_ptr = qkv_ptr + n * nt * in_frame + (head * D) * hw + (
                        offs_p[:, None, None] + frames.to(tl.int64)[None, :, None] * in_frame
                        + dims.to(tl.int64)[None, None, :] * hw)  # [P, T, d]: pixel p, frame t, channel j
                    o_ptr = out_ptr + n * nt * out_frame + (head * D) * hw + (
                        offs_p[:, None, None] + frames.to(tl.int64)[None, :, None] * out_frame
                        + dims.to(tl.int64)[None, None, :] * hw)
                    k_ptr = in_ptr + C * hw
                    v_ptr = k_ptr + C * hw
                    if VEC == 1:  # each row of P_BLOCK pixels: contiguous, its start aligned to `row_bytes`
                        in_ptr = tl.max_contiguous(tl.multiple_of(in_ptr, [row_bytes, row_bytes, row_bytes]),
                                                   [P_BLOCK, 1, 1])
                        k_ptr = tl.max_contiguous(tl.multiple_of(k_ptr, [row_bytes, row_bytes, row_bytes]),
                                                   [P_BLOCK, 1, 1])
                        v_ptr = tl.max_contiguous(tl.multiple_of(v_ptr, [row_bytes, row_bytes, row_bytes]),
                                                   [P_BLOCK, 1, 1])
                        o_ptr = tl.max_contiguous(tl.multiple_of(o_ptr, [row_bytes, row_bytes, row_bytes]),
                                                   [P_BLOCK, 1, 1])
                    mask3 = ((offs_p < hw_end)[:, None, None] & (frames < nt)[None, :, None]
                             & (dims < D)[None, None, :])
                    q3 = tl.load(in_ptr, mask=mask3, other=0.0)
                    k3 = tl.load(k_ptr, mask=mask3, other=0.0)
                    v3 = tl.load(v_ptr, mask=mask3, other=0.0)
                    s3 = tl.dot(q3, tl.permute(k3, (0, 2, 1)), input_precision="tf32x3", out_dtype=tl.float32)
                    s3 = tl.where((frames < nt)[None, None, :], s3, float("-inf"))
                    peak3 = tl.reduce(s3, 2, tl.standard._elementwise_max)
                    pr = tl.exp2(s3 * EXP2_SCALE - (peak3 * EXP2_SCALE)[:, :, None])
                    pr = pr * (1.0 / tl.reduce(pr, 2, tl.standard._sum_combine))[:, :, None]
                    o3 = tl.dot(pr.to(v3.dtype), v3, input_precision="tf32x3", out_dtype=tl.float32)
                    tl.store(o_ptr, o3.to(out_ptr.dtype.element_ty), mask=mask3)
    else:
        pid = tl.program_id(0)
        q_blocks = (nt + Q_BLOCK - 1) // Q_BLOCK
        pid_q = pid % q_blocks  # query blocks of one pixel block run side by side: k, v reuse hits L2
        pid_p = pid // q_blocks
        offs_p = pid_p * P_BLOCK + tl.arange(0, P_BLOCK)
        keys = tl.arange(0, T_BLOCK)
        # Runs of 8 pixels that start 16-byte aligned let the loads (and with STAGES >= 2 their cp.async copies,
        # 4 bytes at least) move 16 bytes at a time. ALIGN_CHECK (the plugin's PTX) compiles both copies; the JIT
        # (False) the plain one, which its specialisation vectorises where the arguments allow.
        if ALIGN_CHECK:  # the aligned copy also takes int32 offsets: one batch item must fit them
            vec_ok = vec_ok & (nt * 3 * C * hw < 2**31)
        for VEC in tl.static_range(2 if ALIGN_CHECK else 1):
            if (vec_ok == (VEC == 1)) | (not ALIGN_CHECK):
                hw_end = HW
                hw_v = hw
                if VEC == 1:  # = HW and hw here; the compiler then knows them divisible by 8
                    hw_end = HW // 8 * 8
                    hw_v = hw // 8 * 8
                # the plugin's plain copy (misaligned tensors, rare) keeps its loops rolled and unpipelined, and takes
                # its queries 2 at a time (k re-read from L2 for each 2): its registers are the whole kernel's
                # (unrolled by 4 it needed 190-232; with 8 queries of 16 frames its score tile alone held 128)
                full: tl.constexpr = VEC == 1 or not ALIGN_CHECK
                unroll: tl.constexpr = UNROLL if full else 1
                stages: tl.constexpr = STAGES if full else 1
                pixel_ok = (offs_p < hw_end)[None, :]
                k_mask = (keys < nt)[:, None] & pixel_ok  # [T_BLOCK, P_BLOCK]
                q_ptr = qkv_ptr + n * nt * (3 * C * hw_v) + (head * D) * hw_v
                k_ptr = q_ptr + C * hw_v
                v_ptr = k_ptr + C * hw_v
                o_ptr = out_ptr + n * nt * (C * hw_v) + (head * D) * hw_v
                row, out_row, plane = 3 * C * hw_v, C * hw_v, hw_v  # int64 strides
                if OFF32 or (ALIGN_CHECK and VEC == 1):  # a batch item's offsets fit int32 (checked): fewer registers
                    row, out_row, plane = 3 * C * hw_end, C * hw_end, hw_end
                k_rows = keys[:, None] * row + offs_p[None, :]
                # Q_LAST (T compiled in, not a multiple of Q_BLOCK): the last query block's program takes only the
                # rows it has (T = 9 in blocks of 8: 1 of 8), in a copy of the body of its own.
                for LAST in tl.static_range(2 if Q_LAST else 1):
                    if ((pid_q == q_blocks - 1) == (LAST == 1)) | (not Q_LAST):
                        n_rows: tl.constexpr = Q_LAST if LAST == 1 else Q_BLOCK
                        q_sub: tl.constexpr = n_rows if full else (2 if n_rows > 2 else n_rows)
                        for qs in tl.static_range(n_rows // q_sub):
                            queries = pid_q * Q_BLOCK + qs * q_sub + tl.arange(0, q_sub)
                            q_mask = (queries < nt)[:, None] & pixel_ok  # [q_sub, P_BLOCK]
                            q_rows = queries[:, None] * row + offs_p[None, :]
                            out_rows = queries[:, None] * out_row + offs_p[None, :]

                            # Only builtins and the standard combine functions below (no ``tl.zeros``/``tl.sum``,
                            # which are ``@jit`` helpers): the same source then runs in Triton's interpreter on CPU
                            # tensors and compiles for CUDA in one process, whatever TRITON_INTERPRET said at import.
                            scores = tl.full((q_sub, T_BLOCK, P_BLOCK), 0.0, tl.float32)
                            for j in tl.range(0, D, loop_unroll_factor=unroll, num_stages=stages):
                                qp = q_ptr + j * plane + q_rows
                                kp = k_ptr + j * plane + k_rows
                                if VEC == 1:  # rows of pixels: contiguous, 16-byte aligned every 8 pixels
                                    qp = tl.max_contiguous(tl.multiple_of(qp, [16, 16]), [1, P_BLOCK])
                                    kp = tl.max_contiguous(tl.multiple_of(kp, [16, 16]), [1, P_BLOCK])
                                q = tl.load(qp, mask=q_mask, other=0.0).to(tl.float32)
                                k = tl.load(kp, mask=k_mask, other=0.0).to(tl.float32)
                                scores += q[:, None, :] * k[None, :, :]
                            scores = tl.where((keys < nt)[None, :, None], scores, float("-inf"))
                            peak = tl.reduce(scores, 1, tl.standard._elementwise_max)
                            p = tl.exp2(scores * EXP2_SCALE - (peak * EXP2_SCALE)[:, None, :])
                            p = p * (1.0 / tl.reduce(p, 1, tl.standard._sum_combine))[:, None, :]
                            if FRAMES:  # keys past T: exact zeros, which with T known fold away with their products
                                p = tl.where((keys < nt)[None, :, None], p, -0.0)

                            for j in tl.range(0, D, loop_unroll_factor=unroll, num_stages=stages):
                                vp = v_ptr + j * plane + k_rows
                                op = o_ptr + j * plane + out_rows
                                if VEC == 1:
                                    vp = tl.max_contiguous(tl.multiple_of(vp, [16, 16]), [1, P_BLOCK])
                                    op = tl.max_contiguous(tl.multiple_of(op, [16, 16]), [1, P_BLOCK])
                                v = tl.load(vp, mask=k_mask, other=0.0).to(tl.float32)
                                if FRAMES:  # a constant zero for keys past T (its product with p's -0.0 folds away)
                                    v = tl.where((keys < nt)[:, None], v, 0.0)
                                o = tl.reduce(p * v[None, :, :], 1, tl.standard._sum_combine)
                                tl.store(op, o.to(out_ptr.dtype.element_ty), mask=q_mask)


TEMPORAL_ATTENTION_KERNEL = TritonKernel(temporal_attention_kernel)


def launch_temporal_attention(
    qkv: torch.Tensor, heads: int, out: torch.Tensor | None = None, stream: Any = None,
    tile: AttentionTile | None = None,
) -> torch.Tensor:
    """Run the Triton kernel: ``qkv`` ``(n, t, 3c, h, w)`` -> ``out`` ``(n, t, c, h, w)``.

    ``qkv`` must be contiguous FP32 or FP16; T <= 32 and ``c / heads`` <= 64, else ``ValueError``
    with the limit. CUDA tensors run the compiled kernel on ``stream`` (``torch.cuda.Stream``, raw
    ``cudaStream_t`` int, or None for the current stream); CPU tensors run Triton's interpreter.
    ``tile`` overrides the shipped tiling (:func:`~vggx.plugins.launch.attention_tile`; the
    benchmark's sweep).
    """
    n, t, c, h, w, _ = check_temporal_attention_inputs(qkv, heads)
    if qkv.dtype not in KERNEL_DTYPES:
        raise ValueError(f"temporal_attention kernel: qkv must be float32 or float16, got {qkv.dtype}")
    if not qkv.is_contiguous():
        raise ValueError("temporal_attention kernel: qkv must be contiguous")
    cfg = attention_config(n, t, c, h, w, heads, tile=tile, half=qkv.dtype == torch.float16)
    shape = (n, t, c, h, w)
    if out is None:
        out = qkv.new_empty(shape)
    elif (tuple(out.shape) != shape or out.dtype != qkv.dtype or out.device != qkv.device
          or not out.is_contiguous()):  # another GPU's out: an illegal address that ruins the CUDA context
        raise ValueError(f"temporal_attention kernel: out must be a contiguous {qkv.dtype} {shape} on {qkv.device}")
    if out.numel() == 0:
        return out
    kernel = TEMPORAL_ATTENTION_KERNEL.for_device(qkv.device)
    with _on_stream(qkv.device, stream):
        cap = {} if cfg.max_registers is None else {"maxnreg": cfg.max_registers}
        kernel[cfg.grid](qkv, t, c, h * w, out, num_warps=cfg.num_warps, **cap, **cfg.constexprs)
    return out


def temporal_attention_triton(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """CUDA implementation of ``vggx::temporal_attention``: the NCHW kernel on a contiguous ``qkv``.

    A channels-last ``qkv`` (the view of a channels-last convolution's output) is copied first: a
    kernel reading that layout in place measured 3x slower than the copy plus this kernel on an H200
    (per-channel loads strided by 3C across a warp). Falls back to the reference for dtypes other
    than FP32/FP16 and for T > 32 or head dims > 64, so the op stays usable for any shape the
    reference accepts. The output is contiguous either way (as the op's fake implementation says).
    """
    _, t, _, _, _, d = check_temporal_attention_inputs(qkv, heads)
    if qkv.dtype not in KERNEL_DTYPES or not (1 <= t <= ATTENTION_MAX_T and d <= ATTENTION_MAX_HEAD_DIM):
        return temporal_attention_reference(qkv, heads).contiguous()
    return launch_temporal_attention(qkv.contiguous(), heads)
