"""The QDP definitions proper, imported by :func:`vggx.plugins.tensorrt.register_plugins` only.

No ``from __future__ import annotations`` here: ``tensorrt.plugin`` validates the functions'
annotations as live classes (``issubclass(annotation, TensorDesc)``), and requires the return
annotation of an ``aot_impl``.
"""

import tensorrt as trt
import tensorrt.plugin as trtp

from vggx.errors import PluginError

from .launch import (
    ATTENTION_TACTICS,
    FLOW_WARP_NHWC_TACTICS,
    FLOW_WARP_TACTICS,
    attention_config,
    attention_grid,
    attention_tactic_tile,
    check_attention_limits,
    flow_warp_grid,
    flow_warp_nhwc_grid,
    flow_warp_nhwc_scalars,
    flow_warp_nhwc_tactic,
    flow_warp_tactic,
    hwc8_channels,
)
from .tensorrt import compile_launch, device_cc

AotResult = tuple[bytes, bytes, trtp.KernelLaunchParams, trtp.SymIntExprs]

_DTYPE_NAMES = {trt.float32: "fp32", trt.float16: "fp16"}


def _dtype_name(desc: trtp.TensorDesc) -> str:
    if desc.dtype not in _DTYPE_NAMES:
        raise PluginError(f"vggx plugins take FP32 or FP16 tensors, got {desc.dtype}")
    return _DTYPE_NAMES[desc.dtype]


def _scalars(values) -> trtp.SymIntExprs:
    return trtp.SymIntExprs.from_tuple([trtp.SymInt32(v) for v in values])


def _launch_params(grid, block: int, shared_mem: int) -> trtp.KernelLaunchParams:
    params = trtp.KernelLaunchParams()
    params.grid_x, params.grid_y, params.grid_z = grid
    params.block_x = block
    params.shared_mem = shared_mem
    return params


def _constant(expr, what: str, op: str = "temporal_attention") -> int:
    if expr.is_fake or not expr.is_constant:
        raise PluginError(f"the {op} plugin needs a build-time constant {what}")
    return int(expr.constant_value())


@trtp.register("vggx::flow_warp")
def flow_warp_desc(x: trtp.TensorDesc, flow: trtp.TensorDesc) -> trtp.TensorDesc:
    return x.like()


@trtp.autotune("vggx::flow_warp")
def flow_warp_autotune(x: trtp.TensorDesc, flow: trtp.TensorDesc, outputs) -> list[trtp.AutoTuneCombination]:
    # positions: x, flow, out; FP16 features may come with an FP32 flow (an FP32 island). LINEAR features
    # run the NCHW kernel; the channels-last formats TensorRT keeps between its own FP16/FP32 convolutions
    # (HWC8: C padded to 8; HWC) run the channels-last kernel, 2.5-3x faster on an H200, and spare the
    # engine a reformat on each side. The flow stays LINEAR.
    # The channels-last kernel also offers custom tactics (launch geometries, flow_warp_nhwc_tactic): TensorRT
    # times them with the formats and keeps the fastest on the engine's GPU.
    # The NCHW kernel's tactics (FLOW_WARP_TACTICS, flow_warp_tactic): its channel loop unrolled or pipelined.
    tactics = list(FLOW_WARP_NHWC_TACTICS)
    linear = list(FLOW_WARP_TACTICS)
    return [
        trtp.AutoTuneCombination("FP32|FP16, FP32|FP16, FP32|FP16", "LINEAR", linear),
        trtp.AutoTuneCombination("FP16, FP32, FP16", "LINEAR", linear),
        trtp.AutoTuneCombination("FP16, FP16*FP32, FP16", "HWC8, LINEAR, HWC8", tactics),
        trtp.AutoTuneCombination("FP32, FP32, FP32", "HWC, LINEAR, HWC", tactics),
    ]


@trtp.aot_impl("vggx::flow_warp")
def flow_warp_aot(x: trtp.TensorDesc, flow: trtp.TensorDesc, outputs, tactic: int) -> AotResult:
    b, c, h, w = x.shape_expr
    if x.format in (trt.TensorFormat.HWC8, trt.TensorFormat.HWC):
        channels = _constant(c, "channel count", "flow_warp")
        xs = hwc8_channels(channels) if x.format == trt.TensorFormat.HWC8 else channels
        try:  # constexprs and warps depend on the channels and the tactic only
            cfg = flow_warp_nhwc_tactic(tactic, xs, _dtype_name(x) == "fp16")
        except ValueError as err:
            raise PluginError(str(err)) from err
        ptx = compile_launch("flow_warp_nhwc", _dtype_name(x), cfg, device_cc(), _dtype_name(flow))
        pixels = cfg.constexprs["P_BLOCK"] * cfg.constexprs["WALK"]
        grid = flow_warp_nhwc_grid(b, xs, h, w, cdiv=trtp.cdiv, p_block=pixels, c_block=cfg.constexprs["C_BLOCK"])
        params = _launch_params(grid, ptx.num_warps * 32, ptx.shared_mem)
        return ptx.name.encode(), ptx.ptx.encode(), params, _scalars(flow_warp_nhwc_scalars(channels, h, w, xs))
    try:  # constexprs and warps do not depend on the shape
        cfg = flow_warp_tactic(tactic)
    except ValueError as err:
        raise PluginError(str(err)) from err
    ptx = compile_launch("flow_warp", _dtype_name(x), cfg, device_cc(), _dtype_name(flow))
    grid = flow_warp_grid(b, c, h, w, cdiv=trtp.cdiv)
    params = _launch_params(grid, ptx.num_warps * 32, ptx.shared_mem)
    return ptx.name.encode(), ptx.ptx.encode(), params, _scalars((c, h, w))


@trtp.register("vggx::temporal_attention")
def temporal_attention_desc(qkv: trtp.TensorDesc, heads: int) -> trtp.TensorDesc:
    n, t, c3, h, w = qkv.shape_expr
    return trtp.from_shape_expr((n, t, c3 // 3, h, w), dtype=qkv.dtype)


@trtp.autotune("vggx::temporal_attention")
def temporal_attention_autotune(qkv: trtp.TensorDesc, heads: int, outputs) -> list[trtp.AutoTuneCombination]:
    # Custom tactics (attention_tactic_tile: the shipped tile, the other form, tensor-core and per-thread variants);
    # TensorRT times them on the engine's GPU and keeps the fastest.
    return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP16", "LINEAR", list(ATTENTION_TACTICS))]


@trtp.aot_impl("vggx::temporal_attention")
def temporal_attention_aot(qkv: trtp.TensorDesc, heads: int, outputs, tactic: int) -> AotResult:
    n, t_expr, c3_expr, h, w = qkv.shape_expr
    t = _constant(t_expr, "T (frames)")
    c3 = _constant(c3_expr, "channel count")
    if c3 % 3:  # the kernel would step frames 3 * (c3 // 3) planes apart: wrong output, no error
        raise PluginError(f"temporal_attention plugin: qkv has {c3} channels, not 3 x C (q, k and v stacked)")
    c = c3 // 3
    if heads < 1 or c % heads:
        raise PluginError(f"temporal_attention plugin: heads={heads} must divide C={c}")
    try:
        check_attention_limits(t, c // heads)
    except ValueError as err:
        raise PluginError(str(err)) from err
    half = _dtype_name(qkv) == "fp16"
    try:
        tile = attention_tactic_tile(tactic, t, c // heads, half)
    except ValueError as err:
        raise PluginError(str(err)) from err
    cfg = attention_config(1, t, c, 1, 1, heads, tile=tile, half=half, sizes_known=False)  # H, W: dynamic
    ptx = compile_launch("temporal_attention", _dtype_name(qkv), cfg, device_cc())  # within 48 KiB
    grid = attention_grid(n, t, h, w, heads, cdiv=trtp.cdiv, d=c // heads, tile=tile)
    params = _launch_params(grid, ptx.num_warps * 32, ptx.shared_mem)
    return ptx.name.encode(), ptx.ptx.encode(), params, _scalars((t, c, h * w))
