"""``vggx::flow_warp``: bilinear backward warping of a feature map by a dense flow field.

Semantics (DESIGN.md): ``out[b, c, y, x] = bilinear(x[b, c], y + flow[b, 1, y, x], x + flow[b, 0, y, x])``
with zeros outside the image, i.e. ``grid_sample(align_corners=True, padding_mode="zeros")`` on the
pixel grid. ``flow[:, 0]`` is the horizontal offset, ``flow[:, 1]`` the vertical one, in pixels.

This file holds the three forms of the op (STYLE.md): the OpenAI Triton kernel
(:func:`flow_warp_kernel`), its launcher (:func:`launch_flow_warp`) and the PyTorch reference
(:func:`flow_warp_reference`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

from ._triton import TritonKernel
from .launch import KernelLaunch, flow_warp_config, flow_warp_nhwc_config

try:  # the kernel body needs triton.language only when it is compiled or interpreted
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    tl = None

__all__ = [
    "FLOW_WARP_KERNEL",
    "check_flow_warp_inputs",
    "flow_warp_kernel",
    "flow_warp_nhwc_kernel",
    "flow_warp_reference",
    "flow_warp_triton",
    "is_channels_last",
    "launch_flow_warp",
    "triton_output_layout",
]

KERNEL_DTYPES = (torch.float32, torch.float16)


def check_flow_warp_inputs(x: torch.Tensor, flow: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is [B, C, H, W] and ``flow`` is [B, 2, H, W]."""
    if x.dim() != 4:
        raise ValueError(f"flow_warp: x must be [B, C, H, W], got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    if tuple(flow.shape) != (b, 2, h, w):
        raise ValueError(f"flow_warp: flow must be [{b}, 2, {h}, {w}], got shape {tuple(flow.shape)}")
    for name, t in (("x", x), ("flow", flow)):
        if not t.is_floating_point():  # an integer image would come back truncated: 127 for 127.5
            raise ValueError(f"flow_warp: {name} must be a float tensor, got {t.dtype}")


def flow_warp_reference(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """PyTorch reference of ``vggx::flow_warp`` (the ground truth for kernels and exports).

    Args:
        x: features ``(b, c, h, w)``, any float dtype.
        flow: per-pixel offsets ``(b, 2, h, w)`` in pixels, channel 0 = x, channel 1 = y.

    Returns:
        ``(b, c, h, w)`` in ``x.dtype``. The arithmetic is done in float32 (float64 for float64 ``x``) even
        for float16 inputs: float16 spacing is 0.5 px above 512, enough to misplace a warp.
    """
    check_flow_warp_inputs(x, flow)
    _, _, h, w = x.shape
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32  # float64 in: float64 math
    flow_acc = flow.to(acc)
    ys = torch.arange(h, device=x.device, dtype=acc).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=acc).view(1, 1, w)
    px = xs + flow_acc[:, 0]
    py = ys + flow_acc[:, 1]
    # align_corners=True maps -1 -> pixel 0 and +1 -> pixel (size - 1); a size of 1 has only one pixel.
    gx = px * (2.0 / max(w - 1, 1)) - 1.0
    gy = py * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    out = F.grid_sample(x.to(acc), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.to(x.dtype)


def _bilinear_taps(offs, flow_base, flow_sc, flow_sp, H, W, hw):
    """The bilinear taps of pixels ``offs`` (a block of flat indices into one H x W image) displaced by the
    flow at ``flow_base`` (element (k, p) at ``k * flow_sc + p * flow_sp``), in float32 as the reference.

    Returns ``inside`` (the pixel exists), the top-left tap ``x0, y0``, its weights ``wx, ex = 1 - wx``,
    ``wy, ey = 1 - wy`` and which tap columns / rows lie in the image (``in_y0``/``in_y1`` also mean
    ``inside``). A helper of both flow_warp kernels (``TritonKernel(..., helpers=...)``, inlined).
    """
    inside = offs < hw
    yy = offs // W
    xx = offs - yy * W
    fx = tl.load(flow_base + offs * flow_sp, mask=inside, other=0.0).to(tl.float32)
    fy = tl.load(flow_base + flow_sc + offs * flow_sp, mask=inside, other=0.0).to(tl.float32)
    # (written so that H or W == 1, which Triton may specialise into a constant, still compiles)
    wm1 = tl.full((), 0.0, tl.float32) + (W - 1)
    hm1 = tl.full((), 0.0, tl.float32) + (H - 1)
    # normalise as the reference does (a size of 1 maps every coordinate to pixel 0) ...
    gx = (xx.to(tl.float32) + fx) * tl.math.div_rn(2.0, tl.maximum(wm1, 1.0)) - 1.0
    gy = (yy.to(tl.float32) + fy) * tl.math.div_rn(2.0, tl.maximum(hm1, 1.0)) - 1.0
    # ... and back, as grid_sample does; clamp so far-away samples stay far away as int32.
    ix = tl.minimum(tl.maximum((gx + 1.0) * (wm1 * 0.5), -2.0), wm1 + 2.0)
    iy = tl.minimum(tl.maximum((gy + 1.0) * (hm1 * 0.5), -2.0), hm1 + 2.0)
    x0f = tl.floor(ix)
    y0f = tl.floor(iy)
    wx = ix - x0f
    wy = iy - y0f
    x0 = x0f.to(tl.int32)
    y0 = y0f.to(tl.int32)
    in_x0 = (x0 >= 0) & (x0 < W)
    in_x1 = (x0 + 1 >= 0) & (x0 + 1 < W)
    in_y0 = inside & (y0 >= 0) & (y0 < H)
    in_y1 = inside & (y0 + 1 >= 0) & (y0 + 1 < H)
    return inside, x0, y0, wx, 1.0 - wx, wy, 1.0 - wy, in_x0, in_x1, in_y0, in_y1


def flow_warp_kernel(x_ptr, flow_ptr, C, H, W, out_ptr, BLOCK: tl.constexpr, C_BLOCK: tl.constexpr,
                     C_UNROLL: tl.constexpr = 1, C_STAGES: tl.constexpr = 1):
    """Triton kernel of ``vggx::flow_warp`` (contiguous NCHW; FP32 or FP16 I/O, FP32 math).

    Grid ``(cdiv(H*W, BLOCK), B, cdiv(C, C_BLOCK))``: a program reads the flow of ``BLOCK`` pixels
    once, turns it into the four bilinear taps, weights and zero-padding masks once, then gathers
    and writes ``C_BLOCK`` channels with them. Argument order = inputs, int32 scalars, outputs:
    the order TensorRT's AOT plugin launch passes them in.

    The coordinate arithmetic repeats ``grid_sample(align_corners=True)``'s float32 steps
    (pixel -> [-1, 1] -> pixel), so FP32 results equal the reference to rounding; compile with
    ``enable_fp_fusion=False`` to keep it that way on the GPU.

    ``C_UNROLL`` / ``C_STAGES``: the channel loop unrolled that many times / software-pipelined that many
    stages (its gathers issued ahead of the blends that use them); 1 and 1 (shipped): one channel's four
    gathers, then its blend and store, then the next channel's.
    """
    pid_p = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    pid_c = tl.program_id(2)
    hw = H * W
    offs = pid_p * BLOCK + tl.arange(0, BLOCK)
    inside, x0, y0, wx, ex, wy, ey, in_x0, in_x1, in_y0, in_y1 = _bilinear_taps(
        offs, flow_ptr + b * 2 * hw, hw, 1, H, W, hw)
    w_nw = ey * ex
    w_ne = ey * wx
    w_sw = wy * ex
    w_se = wy * wx
    m_nw = in_y0 & in_x0
    m_ne = in_y0 & in_x1
    m_sw = in_y1 & in_x0
    m_se = in_y1 & in_x1
    o_nw = y0 * W + x0
    o_ne = o_nw + 1
    o_sw = o_nw + W
    o_se = o_sw + 1

    c_start = pid_c * C_BLOCK
    c_end = tl.minimum(c_start + C_BLOCK, C)
    for c in tl.range(c_start, c_end, loop_unroll_factor=C_UNROLL, num_stages=C_STAGES):
        plane = (b * C + c) * hw
        src = x_ptr + plane
        v_nw = tl.load(src + o_nw, mask=m_nw, other=0.0).to(tl.float32)
        v_ne = tl.load(src + o_ne, mask=m_ne, other=0.0).to(tl.float32)
        v_sw = tl.load(src + o_sw, mask=m_sw, other=0.0).to(tl.float32)
        v_se = tl.load(src + o_se, mask=m_se, other=0.0).to(tl.float32)
        val = v_nw * w_nw + v_ne * w_ne + v_sw * w_sw + v_se * w_se
        tl.store(out_ptr + plane + offs, val.to(out_ptr.dtype.element_ty), mask=inside)


FLOW_WARP_KERNEL = TritonKernel(flow_warp_kernel, helpers=(_bilinear_taps,))
# The same kernel without Triton's value specialisation: run 9 timed the TensorRT plugin's (unspecialised) PTX
# of this kernel faster than the JIT's, through another launcher; the benchmark compares the two directly.
FLOW_WARP_KERNEL_UNSPECIALIZED = TritonKernel(flow_warp_kernel, specialize=False, helpers=(_bilinear_taps,))


def flow_warp_nhwc_kernel(
    x_ptr, flow_ptr, C, H, W, XS, flow_sb, flow_sc, flow_sp, out_ptr, P_BLOCK: tl.constexpr, C_BLOCK: tl.constexpr,
    WALK: tl.constexpr = 1,
):
    """Triton kernel of ``vggx::flow_warp`` for channels-last ``x`` and ``out`` ([B, H, W, XS] in memory:
    ``XS`` elements per pixel, the first ``C`` of them channels; ``XS == C`` for PyTorch's channels_last,
    ``C`` rounded up to a multiple of 8 for TensorRT's HWC8, whose padding channels it writes as zeros).

    Grid ``(cdiv(H*W, P_BLOCK), B, cdiv(XS, C_BLOCK))``: a program turns the flow of ``P_BLOCK``
    pixels into bilinear taps once (the same float32 steps as :func:`flow_warp_kernel`) and gathers
    each tap as a ``[P_BLOCK, C_BLOCK]`` tile whose channels are contiguous in memory, so a tap is
    one vector load per pixel instead of one scalar load per channel plane. ``flow`` may be in
    either layout: its element (b, k, pixel p) is at ``b * flow_sb + k * flow_sc + p * flow_sp``.
    This is the kernel of PyTorch's ``channels_last`` models (the CUDA fast path) and of the TensorRT
    plugin where TensorRT hands it HWC8 (FP16) or HWC (FP32) features; LINEAR gets the NCHW kernel.

    ``WALK``: pixel blocks per program (``WALK`` consecutive ones, unrolled at compile time, so one block's
    taps can be in flight while another's are blended); the grid's x then counts programs, not blocks.
    1 (shipped) is the single block above, the same code as before the option existed.
    """
    b = tl.program_id(1).to(tl.int64)
    pid_c = tl.program_id(2)
    hw = H * W
    # A tap is a vector load where each pixel's channels start 16-byte aligned. Triton's JIT knows that from
    # its specialisation (pointers, XS and C divisible by 16); the TensorRT plugin's PTX knows only what it is
    # compiled with, so the check runs here and the aligned copy of the body (VEC = 1) says so with hints.
    vec_ok = (((x_ptr.to(tl.int64) | out_ptr.to(tl.int64)) % 16) == 0) & ((XS % 8) == 0) & ((C % 8) == 0)
    SUB: tl.constexpr = min(8, C_BLOCK)  # channels per step of the plain copy
    for VEC in tl.static_range(2):
        if vec_ok == (VEC == 1):
            xs = XS
            cs = C
            if VEC == 1:  # the same values here, known divisible by 8 (pixel rows of whole 16-byte vectors)
                xs = XS // 8 * 8
                cs = C // 8 * 8
            for step in tl.static_range(WALK):
                pid_p = tl.program_id(0) * WALK + step
                offs = pid_p * P_BLOCK + tl.arange(0, P_BLOCK)
                inside, x0, y0, wx, ex, wy, ey, in_x0, in_x1, in_y0, in_y1 = _bilinear_taps(
                    offs, flow_ptr + b * flow_sb, flow_sc, flow_sp, H, W, hw)

                plane = x_ptr + b * hw * xs
                o_nw = (y0 * W + x0).to(tl.int64) * xs
                o_sw = o_nw + W * xs
                dst = out_ptr + b * hw * xs + (offs.to(tl.int64) * xs)[:, None]
                m_nw, m_ne, m_sw, m_se = in_y0 & in_x0, in_y0 & in_x1, in_y1 & in_x0, in_y1 & in_x1
                w_nw, w_ne, w_sw, w_se = ey * ex, ey * wx, wy * ex, wy * wx
                if VEC == 1:  # all C_BLOCK channels of a tap at once, as 16-byte vectors
                    _warp_channels(plane, o_nw, o_sw, xs, dst, pid_c * C_BLOCK, cs, inside,
                                   m_nw, m_ne, m_sw, m_se, w_nw, w_ne, w_sw, w_se, C_BLOCK, True)
                else:
                    # 8 channels at a time: all C_BLOCK of them at once, the scalar loads and their 64-bit addresses
                    # set the registers of the whole kernel (134 in the plugin's FP16 PTX against the aligned
                    # copy's 48, by ptxas: three times fewer warps per SM, for both copies).
                    for c0 in range(0, C_BLOCK, SUB):
                        _warp_channels(plane, o_nw, o_sw, xs, dst, pid_c * C_BLOCK + c0, cs,
                                       inside, m_nw, m_ne, m_sw, m_se, w_nw, w_ne, w_sw, w_se, SUB, False)


def _warp_channels(plane, o_nw, o_sw, xs, dst, c_first, cs, inside, m_nw, m_ne, m_sw, m_se, w_nw, w_ne, w_sw, w_se,
                   N: tl.constexpr, VEC: tl.constexpr):
    """Gather channels ``c_first`` .. ``c_first + N - 1`` of the four taps of a block of pixels (tap offsets
    ``o_nw``, ``o_sw`` in elements from ``plane``, pixel stride ``xs``), blend them with the bilinear weights
    and store them at ``dst`` (the pixels' [P, 1] output offsets); channels at or past ``cs`` are zeros.
    ``VEC``: the rows are 16-byte aligned and contiguous (the aligned copy's hints). A helper of
    :func:`flow_warp_nhwc_kernel`."""
    chans = c_first + tl.arange(0, N)
    c_ok = (chans < cs)[None, :]
    cols = chans[None, :]
    p_nw = plane + o_nw[:, None] + cols
    p_ne = plane + (o_nw + xs)[:, None] + cols
    p_sw = plane + o_sw[:, None] + cols
    p_se = plane + (o_sw + xs)[:, None] + cols
    out = dst + cols
    if VEC:
        p_nw = tl.max_contiguous(tl.multiple_of(p_nw, [16, 16]), [1, N])
        p_ne = tl.max_contiguous(tl.multiple_of(p_ne, [16, 16]), [1, N])
        p_sw = tl.max_contiguous(tl.multiple_of(p_sw, [16, 16]), [1, N])
        p_se = tl.max_contiguous(tl.multiple_of(p_se, [16, 16]), [1, N])
        out = tl.max_contiguous(tl.multiple_of(out, [16, 16]), [1, N])
    v_nw = tl.load(p_nw, mask=m_nw[:, None] & c_ok, other=0.0)
    v_ne = tl.load(p_ne, mask=m_ne[:, None] & c_ok, other=0.0)
    v_sw = tl.load(p_sw, mask=m_sw[:, None] & c_ok, other=0.0)
    v_se = tl.load(p_se, mask=m_se[:, None] & c_ok, other=0.0)
    val = (
        v_nw.to(tl.float32) * w_nw[:, None]
        + v_ne.to(tl.float32) * w_ne[:, None]
        + v_sw.to(tl.float32) * w_sw[:, None]
        + v_se.to(tl.float32) * w_se[:, None]
    )
    val = tl.where(c_ok, val, 0.0)  # padding channels (XS > C) are written as zeros
    tl.store(out, val.to(out.dtype.element_ty), mask=inside[:, None] & (chans < xs)[None, :])


FLOW_WARP_NHWC_KERNEL = TritonKernel(flow_warp_nhwc_kernel, helpers=(_bilinear_taps, _warp_channels))


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a 4-D tensor laid out [B, H, W, C] in memory that is not also plain contiguous."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def triton_output_layout(x: torch.Tensor) -> torch.memory_format:
    """Layout of :func:`flow_warp_triton`'s output for ``x``: channels_last where the channels-last kernel
    runs (a kernel dtype laid out channels-last), else contiguous. The op's fake implementation uses
    it too, so compilers see the layout the real one returns."""
    if x.dtype in KERNEL_DTYPES and is_channels_last(x):
        return torch.channels_last
    return torch.contiguous_format


def launch_flow_warp(
    x: torch.Tensor, flow: torch.Tensor, out: torch.Tensor | None = None, stream: Any = None,
    config: KernelLaunch | None = None, specialize: bool = True,
) -> torch.Tensor:
    """Run the Triton kernel: ``x`` ``(b, c, h, w)``, ``flow`` ``(b, 2, h, w)`` -> ``out``.

    Tensors must be contiguous or channels_last (``x`` channels_last runs the channels-last kernel,
    :func:`flow_warp_nhwc_kernel`), on one device, FP32 or FP16 (``flow`` may differ from ``x``);
    ``out`` (allocated when None) has ``x``'s dtype and layout. CUDA tensors run the compiled kernel on
    ``stream`` (a ``torch.cuda.Stream``, a raw ``cudaStream_t`` int, or None for the current
    stream); CPU tensors run Triton's interpreter. ``config`` overrides the shipped launch geometry
    (:func:`~vggx.plugins.launch.flow_warp_config` with other block sizes; the benchmark's sweep).
    ``specialize=False`` runs the NCHW kernel compiled without value specialisation (the benchmark).
    """
    check_flow_warp_inputs(x, flow)
    nhwc = is_channels_last(x)
    for name, t in (("x", x), ("flow", flow)):
        if t.dtype not in KERNEL_DTYPES:
            raise ValueError(f"flow_warp kernel: {name} must be float32 or float16, got {t.dtype}")
    if not (x.is_contiguous() or nhwc):
        raise ValueError("flow_warp kernel: x must be contiguous or channels_last")
    if not (flow.is_contiguous() or (nhwc and is_channels_last(flow))):  # the NCHW kernel reads flow as NCHW
        raise ValueError("flow_warp kernel: flow must be contiguous (or channels_last with a channels_last x)")
    if flow.device != x.device:
        raise ValueError(f"flow_warp kernel: x is on {x.device}, flow on {flow.device}")
    layout = torch.channels_last if nhwc else torch.contiguous_format
    if out is None:
        out = torch.empty_like(x, memory_format=layout)
    elif (out.shape != x.shape or out.dtype != x.dtype or out.device != x.device
          or not out.is_contiguous(memory_format=layout)):
        raise ValueError(f"flow_warp kernel: out must be a {x.dtype} {tuple(x.shape)} laid out like x")
    b, c, h, w = x.shape
    if x.numel() == 0:
        return out
    with _on_stream(x.device, stream):
        if nhwc:
            cfg = config or flow_warp_nhwc_config(b, c, h, w, half=x.dtype == torch.float16)
            kernel = FLOW_WARP_NHWC_KERNEL.for_device(x.device)
            # the kernel steps from pixel to pixel by the W stride, which torch leaves arbitrary where W == 1 (a
            # contiguous view may say 5): there the pixels are the rows, one H stride apart
            pixel = flow.stride(3) if w > 1 else flow.stride(2)
            kernel[cfg.grid](
                x, flow, c, h, w, c, flow.stride(0), flow.stride(1), pixel, out,
                num_warps=cfg.num_warps, enable_fp_fusion=False, **cfg.constexprs,
            )
        else:
            cfg = config or flow_warp_config(b, c, h, w)
            kernel = (FLOW_WARP_KERNEL if specialize else FLOW_WARP_KERNEL_UNSPECIALIZED).for_device(x.device)
            kernel[cfg.grid](
                x, flow, c, h, w, out, num_warps=cfg.num_warps, enable_fp_fusion=False, **cfg.constexprs
            )
    return out


def flow_warp_triton(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The CUDA implementation of ``vggx::flow_warp``: :func:`launch_flow_warp` on ``x`` as laid out
    (NCHW or channels_last; other strides are copied to NCHW first); the output keeps that layout."""
    if x.dtype not in KERNEL_DTYPES:
        return flow_warp_reference(x, flow).contiguous()
    if flow.dtype not in KERNEL_DTYPES:
        flow = flow.float()
    if triton_output_layout(x) == torch.channels_last:  # the channels-last kernel takes flow in either layout
        return launch_flow_warp(x, flow if is_channels_last(flow) else flow.contiguous())
    return launch_flow_warp(x.contiguous(), flow.contiguous())


def _on_stream(device: torch.device, stream: Any) -> contextlib.AbstractContextManager:
    """Context for a CUDA launch: the tensors' GPU current (Triton launches on the current device, so a
    tensor on ``cuda:1`` while ``cuda:0`` is current would be read from the wrong GPU), and ``stream``
    current if given. A no-op on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    context = contextlib.ExitStack()
    context.enter_context(torch.cuda.device(device))
    if stream is not None:
        if isinstance(stream, int):
            stream = torch.cuda.ExternalStream(stream, device=device)
        context.enter_context(torch.cuda.stream(stream))
    return context
