"""TensorRT plugins ``vggx::flow_warp`` and ``vggx::temporal_attention`` (``tensorrt.plugin``, QDP).

Two layers:

- :func:`compile_aot` and :class:`AotKernel` need only OpenAI Triton (no TensorRT, no GPU): they
  compile a kernel for a CUDA target to PTX and give its launch parameters for concrete shapes.
  This is what the plugin's AOT implementation embeds in the engine, and what the tests check.
- :func:`register_plugins` registers the QDPs (defined in ``_tensorrt_qdp.py``) with TensorRT:
  shape/type descriptor, FP32/FP16 format combinations, and an ``@trtp.aot_impl`` that returns
  the PTX of :func:`compile_launch` plus symbolic launch parameters, so the serialized engine runs
  without Python (trtexec, Triton's ``tensorrt_plan`` backend). Only the AOT implementation is
  registered, so no ``PREFER_AOT_PYTHON_PLUGINS`` network flag is needed. Without TensorRT it
  raises :class:`~vggx.errors.TensorRTNotInstalledError`.

An ONNX node reaches these plugins through TensorRT's ONNX parser by ``op_type`` plus the string
attributes ``plugin_namespace="vggx"`` / ``plugin_version="1"`` (see :mod:`vggx.plugins.onnx`).

Kernel argument order is inputs, int32 scalars, outputs: TensorRT's AOT launch passes exactly
that. Triton >= 3.3 appends two pointer parameters (global and profile scratch) to every kernel;
our kernels use neither, so :func:`compile_aot` removes them from the PTX entry, which then
takes exactly the arguments TensorRT passes.
"""

from __future__ import annotations

import functools
import importlib
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vggx.errors import PluginError, TensorRTNotInstalledError

from ._triton import compiler_usable, require_triton
from .launch import (
    AttentionTile,
    KernelLaunch,
    attention_config,
    flow_warp_nhwc_scalars,
    flow_warp_nhwc_tactic,
    flow_warp_tactic,
    hwc8_channels,
)

__all__ = [
    "OPS",
    "AotKernel",
    "CompiledPtx",
    "compile_aot",
    "compile_launch",
    "compile_ptx",
    "constexpr_key",
    "cupy_launch",
    "device_cc",
    "register_plugins",
    "strip_unused_params",
]

OPS = ("flow_warp", "temporal_attention")
PORTABLE_SHARED_MEM = 48 * 1024  # bytes of dynamic shared memory a kernel launch gets without opting in
_DTYPES = {"float32": "fp32", "float16": "fp16", "fp32": "fp32", "fp16": "fp16"}
_lock = threading.Lock()
_registered = False


@dataclass(frozen=True)
class CompiledPtx:
    """A kernel compiled for one CUDA target: entry ``name``, ``ptx`` text and its resources."""

    name: str
    ptx: str
    num_warps: int
    shared_mem: int  # bytes of dynamic shared memory the launch must provide
    num_params: int  # parameters of the PTX entry (inputs + scalars + outputs)


@dataclass(frozen=True)
class AotKernel:
    """PTX plus the launch of one op for concrete shapes: what TensorRT embeds and launches.

    Launch as ``name<<<grid, block, shared_mem>>>(*inputs, *scalar_args, *outputs)``.
    """

    name: str
    ptx: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int
    scalar_args: tuple[int, ...]


def _triton_dtype(dtype: Any) -> str:
    key = str(dtype).removeprefix("torch.").removeprefix("DataType.").lower()
    key = {"float": "float32", "half": "float16"}.get(key, key)
    if key not in _DTYPES:
        raise PluginError(f"vggx kernels take float32 or float16 tensors, got {dtype}")
    return _DTYPES[key]


def strip_unused_params(ptx: str, name: str, keep: int) -> str:
    """Drop the PTX entry parameters of ``name`` after the first ``keep`` when the body never uses them.

    Raises :class:`PluginError` if one of them is used (the kernel would need scratch memory).
    """
    header = re.search(rf"\.entry\s+{re.escape(name)}\s*\((.*?)\)", ptx, re.DOTALL)
    if header is None:
        raise PluginError(f"no .entry {name} in the PTX")
    params = [p.strip() for p in header.group(1).split(",") if p.strip()]
    if len(params) <= keep:
        return ptx
    body = ptx[header.end() :]
    for param in params[keep:]:
        pname = param.split()[-1]
        if re.search(rf"\b{re.escape(pname)}\b", body):
            raise PluginError(f"kernel {name} uses its parameter {pname}; TensorRT cannot pass it")
    new_header = "(\n\t" + ",\n\t".join(params[:keep]) + "\n)"
    start, end = header.span(1)
    return ptx[: start - 1] + new_header + ptx[end + 1 :]


def _signature(op: str, dtype: str, flow_dtype: str) -> tuple[Any, dict[str, str], int]:
    if op == "flow_warp":
        from .flow_warp import FLOW_WARP_KERNEL as kernel

        sig = {"x_ptr": f"*{dtype}", "flow_ptr": f"*{flow_dtype}", "C": "i32", "H": "i32", "W": "i32"}
        sig["out_ptr"] = f"*{dtype}"
        return kernel, sig, 6
    if op == "flow_warp_nhwc":
        from .flow_warp import FLOW_WARP_NHWC_KERNEL as kernel

        sig = {"x_ptr": f"*{dtype}", "flow_ptr": f"*{flow_dtype}", "C": "i32", "H": "i32", "W": "i32", "XS": "i32",
               "flow_sb": "i32", "flow_sc": "i32", "flow_sp": "i32", "out_ptr": f"*{dtype}"}
        return kernel, sig, 10
    if op == "temporal_attention":
        from .temporal_attention import TEMPORAL_ATTENTION_KERNEL as kernel

        sig = {"qkv_ptr": f"*{dtype}", "T": "i32", "C": "i32", "HW": "i32", "out_ptr": f"*{dtype}"}
        return kernel, sig, 5
    raise PluginError(f"unknown vggx op {op!r}; expected one of {OPS}")


@functools.lru_cache(maxsize=64)
def compile_ptx(
    op: str, dtype: str, constexprs: tuple[tuple[str, Any], ...], cc: int = 90, flow_dtype: str = ""
) -> CompiledPtx:
    """Compile ``op``'s Triton kernel for ``sm_<cc>`` (no GPU needed) and return its PTX.

    ``dtype`` is the I/O type (``"fp32"``/``"fp16"``, or a torch dtype name); ``flow_dtype``
    (flow_warp only) defaults to ``dtype``; ``constexprs`` are the kernel's compile-time values
    as sorted ``(name, value)`` pairs (from :mod:`vggx.plugins.launch`).
    """
    require_triton()
    import triton
    from triton.backends.compiler import GPUTarget

    if not compiler_usable():
        raise PluginError(
            "cannot compile kernels for CUDA: TRITON_INTERPRET=1 was set when Triton was imported; unset it"
        )
    dtype = _triton_dtype(dtype)
    flow_dtype = _triton_dtype(flow_dtype or dtype)
    kernel, signature, num_params = _signature(op, dtype, flow_dtype)
    values = dict(constexprs)
    options: dict[str, Any] = {"num_warps": values.pop("num_warps", 4)}
    if values.get("maxnreg") is not None:  # a register cap for ptxas (the PTX's .maxnreg)
        options["maxnreg"] = values.pop("maxnreg")
    if op.startswith("flow_warp"):
        options["enable_fp_fusion"] = False  # keep the reference's coordinate rounding
    src = kernel.ast_source(signature, values)
    try:
        compiled = triton.compile(src, target=GPUTarget("cuda", cc, 32), options=options)
    except Exception as err:  # triton raises many types; one message for the user
        raise PluginError(f"Triton could not compile {op} for sm_{cc}: {err}") from err
    meta = compiled.metadata
    if getattr(meta, "global_scratch_size", 0) or getattr(meta, "profile_scratch_size", 0):
        raise PluginError(f"{op} kernel needs Triton scratch memory, which TensorRT plugins cannot provide")
    ptx = strip_unused_params(compiled.asm["ptx"], meta.name, num_params)
    return CompiledPtx(meta.name, ptx, meta.num_warps, meta.shared, num_params)


def constexpr_key(constexprs: dict[str, Any], num_warps: int, max_registers: int | None = None,
                  ) -> tuple[tuple[str, Any], ...]:
    """The compile key of a launch: its constexprs, warps and (where set) register cap, sorted."""
    cap = {} if max_registers is None else {"maxnreg": max_registers}
    return tuple(sorted({**constexprs, "num_warps": num_warps, **cap}.items()))


def compile_launch(op: str, dtype: Any, cfg: KernelLaunch, cc: int = 90, flow_dtype: str = "") -> CompiledPtx:
    """Compile the kernel of launch ``cfg`` (:func:`compile_ptx`), held to the portable 48 KiB of shared memory.

    TensorRT launches an AOT kernel with the shared memory it is given, and nothing in its documentation says it
    opts the kernel in to more than the portable 48 KiB (``cuFuncSetAttribute``), without which such a launch
    fails: a pipelined attention tile that needs more compiles with fewer stages (a pipeline's buffers are its
    shared memory), lowering ``cfg.constexprs["STAGES"]`` in place (the grid does not change). What still needs
    more raises :class:`~vggx.errors.PluginError`. Both :func:`compile_aot` and the plugins' AOT implementations
    compile through here, so the PTX the tests launch is the PTX TensorRT embeds.
    """
    while True:
        ptx = compile_ptx(op, _triton_dtype(dtype), constexpr_key(cfg.constexprs, cfg.num_warps, cfg.max_registers),
                          cc, flow_dtype)
        if ptx.shared_mem <= PORTABLE_SHARED_MEM or op != "temporal_attention" or cfg.constexprs["STAGES"] == 1:
            break
        cfg.constexprs["STAGES"] -= 1
    if ptx.shared_mem > PORTABLE_SHARED_MEM:
        raise PluginError(f"{op} kernel needs {ptx.shared_mem} bytes of shared memory, above the "
                          f"{PORTABLE_SHARED_MEM} a TensorRT plugin launch gets")
    return ptx


def compile_aot(
    op: str,
    shape: tuple[int, ...],
    dtype: Any = "fp32",
    *,
    heads: int | None = None,
    flow_dtype: Any = None,
    cc: int = 90,
    tile: AttentionTile | None = None,
    layout: str = "linear",
    tactic: int | None = None,
) -> AotKernel:
    """PTX and launch parameters of ``op`` for an input of ``shape``, as the TensorRT plugin uses them.

    Args:
        op: ``"flow_warp"`` (``shape`` = x's ``(b, c, h, w)``) or ``"temporal_attention"``
            (``shape`` = qkv's ``(n, t, 3c, h, w)``, ``heads`` required).
        dtype: I/O dtype, ``"fp32"``/``"fp16"`` or a torch dtype.
        flow_dtype: flow_warp's flow dtype (default: ``dtype``).
        cc: CUDA compute capability of the target (90 = Hopper).
        tile: temporal_attention's tiling (default: the shipped one, :func:`~vggx.plugins.launch.attention_tile`).
        layout: flow_warp's feature format in TensorRT's terms: ``"linear"`` (NCHW, the NCHW kernel),
            ``"hwc8"`` (FP16 channels-last, C padded to a multiple of 8) or ``"hwc"`` (channels-last,
            unpadded); the last two run the channels-last kernel. The flow is LINEAR in all three.
        tactic: flow_warp's TensorRT tactic (:func:`~vggx.plugins.launch.flow_warp_nhwc_tactic` for the
            channels-last kernel's launch geometries, :func:`~vggx.plugins.launch.flow_warp_tactic` for the NCHW
            kernel's channel loop; default: the shipped launch).
    """
    if op == "flow_warp" and layout != "linear":
        if layout not in ("hwc8", "hwc"):
            raise PluginError(f"flow_warp layout must be linear, hwc8 or hwc, got {layout!r}")
        b, c, h, w = shape
        xs = hwc8_channels(c) if layout == "hwc8" else c
        half = _triton_dtype(dtype) == "fp16"
        try:
            cfg = flow_warp_nhwc_tactic(tactic, xs, half, b, h, w)
        except ValueError as err:
            raise PluginError(str(err)) from err
        scalars: tuple[int, ...] = flow_warp_nhwc_scalars(c, h, w, xs)
        fdt = _triton_dtype(flow_dtype if flow_dtype is not None else dtype)
        op = "flow_warp_nhwc"
    elif op == "flow_warp":
        b, c, h, w = shape
        try:
            cfg = flow_warp_tactic(tactic, b, c, h, w)
        except ValueError as err:
            raise PluginError(str(err)) from err
        scalars = (c, h, w)
        fdt = _triton_dtype(flow_dtype if flow_dtype is not None else dtype)
    elif op == "temporal_attention":
        if heads is None:
            raise PluginError("temporal_attention needs heads")
        n, t, c3, h, w = shape
        if c3 % 3:
            raise PluginError(f"temporal_attention: qkv channel count must be 3*C, got {c3}")
        try:
            cfg = attention_config(n, t, c3 // 3, h, w, heads, tile=tile, half=_triton_dtype(dtype) == "fp16",
                                   sizes_known=False)  # as the plugin compiles it: H and W dynamic
        except ValueError as err:
            raise PluginError(str(err)) from err
        scalars = (t, c3 // 3, h * w)
        fdt = ""
    else:
        raise PluginError(f"unknown vggx op {op!r}; expected one of {OPS}")
    ptx = compile_launch(op, dtype, cfg, cc, fdt)
    return AotKernel(
        name=ptx.name,
        ptx=ptx.ptx,
        grid=tuple(int(g) for g in cfg.grid),
        block=(ptx.num_warps * 32, 1, 1),
        shared_mem=ptx.shared_mem,
        scalar_args=scalars,
    )


def cupy_launch(kernel: AotKernel, inputs: Sequence[Any], outputs: Sequence[Any]) -> Callable[..., None]:
    """Load ``kernel``'s PTX with CuPy and bind it to CUDA tensors (anything with
    ``__cuda_array_interface__``): the returned function launches it as TensorRT's AOT plugin does
    (inputs, the int32 scalars, outputs; ``kernel``'s grid, block and shared memory), asynchronously, on
    ``stream`` (a raw ``cudaStream_t``, e.g. ``torch.cuda.current_stream().cuda_stream``, which a CUDA graph
    being captured there records) or, where None, on CuPy's current stream. The very artefact an engine
    embeds, run without TensorRT: for the GPU tests and the kernel benchmark. Needs CuPy (``ImportError``
    otherwise).
    """
    import os
    import tempfile

    import cupy
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{kernel.name}.ptx")
        with open(path, "w") as f:
            f.write(kernel.ptx)
        function = cupy.RawModule(path=path).get_function(kernel.name)  # loaded here, before the folder goes
    args = (*(cupy.asarray(t) for t in inputs), *(np.int32(v) for v in kernel.scalar_args),
            *(cupy.asarray(t) for t in outputs))

    def launch(stream: int | None = None) -> None:
        if stream is None:
            function(kernel.grid, kernel.block, args, shared_mem=kernel.shared_mem)
        else:
            function(kernel.grid, kernel.block, args, shared_mem=kernel.shared_mem,
                     stream=cupy.cuda.ExternalStream(stream))

    return launch


def device_cc() -> int:
    """Compute capability of the GPU TensorRT builds for (the current CUDA device)."""
    import torch

    if not torch.cuda.is_available():
        raise PluginError("building a vggx TensorRT plugin needs a CUDA GPU visible to PyTorch")
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


MIN_TENSORRT = (10, 9)  # tensorrt.plugin came in 10.6 (JIT plugins, Python at run time); its AOT API in 10.9


def register_plugins() -> None:
    """Register both QDPs with TensorRT's plugin registry (idempotent, thread-safe).

    Raises :class:`~vggx.errors.TensorRTNotInstalledError` when ``tensorrt`` (with
    ``tensorrt.plugin``) is not importable, and :class:`~vggx.errors.PluginError` when its AOT plugin API
    (TensorRT >= 10.9) or OpenAI Triton is missing.
    """
    global _registered
    try:
        import tensorrt
        import tensorrt.plugin
    except ImportError as err:
        raise TensorRTNotInstalledError(
            f"cannot register the vggx::flow_warp / vggx::temporal_attention plugins ({err})"
        ) from err
    if not hasattr(tensorrt, "QuickPluginCreationRequest") or not hasattr(tensorrt.plugin, "KernelLaunchParams"):
        raise PluginError(f"TensorRT {getattr(tensorrt, '__version__', '?')} has no ahead-of-time plugins "
                          f"(tensorrt.plugin.aot_impl, TensorRT {'.'.join(map(str, MIN_TENSORRT))} or later), "
                          f"which vggx's plugins need so that "
                          f"engines run without Python: upgrade TensorRT, or export --flavor portable")
    require_triton()
    with _lock:
        if _registered:
            return
        importlib.import_module(f"{__package__}._tensorrt_qdp")  # its decorators register the plugins

        _registered = True
