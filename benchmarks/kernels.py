"""Kernel benchmark: the vggx Triton kernels against the PyTorch compositions they replace.

    python -m vggx.benchmarks.kernels [--json PATH] [--iters N] [--sweep] [--warm N]

For each case it reports milliseconds, effective bandwidth (ideal bytes read + written / time)
and that bandwidth as a share of the GPU's copy bandwidth, which it measures first (a
``clone`` of a 1 GiB tensor: read + write). The compositions are the obvious PyTorch code:

- flow_warp: build the sampling grid (in the input dtype, as FP16 code would) + ``grid_sample``, on
  NCHW and channels_last features (the layout of the CUDA fast path's convolutions), with a smooth
  flow (as optical flow is) and with per-pixel noise (the gathers' worst case);
- temporal attention: transposes to (pixels, heads, T, d) + ``scaled_dot_product_attention``
  + the transpose back to [N, T, C, H, W].

Times are medians per call over batches of back-to-back launches between two CUDA events (at least
2 ms of GPU work per batch), each batch captured once in a CUDA graph and replayed: the GPU's time alone, as
TensorRT's runtime or a model's CUDA graph launches the kernels (runs 1-9 timed one launch per event pair,
run 10 batches of Python launches, which a 0.05 ms kernel cannot keep up with; see ``benchmarks/RESULTS.md``).
Rows marked ``eager`` time the shipped launches from Python instead, back to back: what a caller without
graphs pays where the host sets the pace.
Every case also checks the kernel against the FP32 reference on the same inputs (``max_err``). Beside
each shipped kernel, a row marked ``aot`` times the PTX the TensorRT plugin embeds for the same tensors
(:func:`~vggx.plugins.tensorrt.compile_aot`, launched through CuPy as the engine launches it; skipped
without CuPy): compiled for dynamic shapes, without the runtime specialisation (arguments divisible by 16,
aligned pointers) that lets Triton's JIT vectorise loads (the kernels check alignment at run time and
carry a hinted copy for it). Other rows time launches not shipped, beside the shipped one, so the next tuning
can be chosen from one run: flow_warp ``unspecialized`` (NCHW, no value specialisation), ``cu4``/``cs3`` (NCHW,
its channel loop unrolled 4 times / pipelined 3 stages), ``p32,w4`` (runs 3-9's
channels-last geometry) and ``fp16-geometry``/``fp32-geometry`` (the other dtype's); attention ``fma``/``mma``
(the other form), ``fma,s1,i64`` (runs 3-9's plain per-thread tile), ``fma,sN`` (the other dtype's pipeline
depth), ``fma,i64`` (int64 offsets, as the TensorRT plugin keeps them), ``fma,u2`` (its head-dim loops unrolled by 2,
TensorRT's tactic 8) or by 4 with 2 stages (``fma,u4,s2``, tactic 9), ``mma,half-warps`` and, above 8 frames,
``mma,loopN,sM`` (the tensor-core tile looping over N pixel blocks per program, software-pipelined M stages);
``aot,r128`` is the plugin's per-thread PTX with its registers capped at 128 (TensorRT's tactic 7);
``fma,runtime-t`` (T = 12) reads T at run time instead of compiling it in; where T leaves a short last query
block, ``fma,ragged``/``aot,ragged`` (that block computing only its own rows) or ``fma,full-last``/``aot,full-last``
(all of its rows, where the shipped tile's is ragged: FP16 at 9-10 frames) have the other choice for it than the
shipped tile's (TensorRT's tactic 10).
``--sweep`` also times other launch geometries of each kernel (flow_warp block sizes and warps,
attention tiles, warps and pipeline depths) in both dtypes, so the shipped tuning in
``plugins/launch.py`` can be checked against its neighbours from one run.
``--warm N`` first compiles every row's kernels in N processes side by side, each launching its share of the
rows once (Triton's cache then serves the timed run): the benchmark's time is otherwise mostly Triton compiling
its hundreds of launches one after the other.
CUDA only: on a machine without a GPU it exits with a message and status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vggx.paths import json_text

__all__ = ["KernelResult", "main", "measure_copy_bandwidth", "run_kernel_bench", "warm_shard", "warm_up"]

DEVICE = "cuda"  # the benchmark's tensors (a CPU smoke test runs its code paths in Triton's interpreter)
# (shape, dtype, memory layout of x and out, flow field). "noise": i.i.d. N(0, 8 px) per pixel, the worst
# case for the gathers' locality; "smooth": the same magnitude varying over ~16 px, as optical flow does.
FLOW_WARP_CASES = [
    ((8, 64, 180, 320), dtype, layout, kind)
    for layout, kind in (("nchw", "noise"), ("nchw", "smooth"), ("channels_last", "smooth"), ("channels_last", "noise"))
    for dtype in (torch.float16, torch.float32)
]
# (pixels, warps) per program of the tensor-core form, timed beside the shipped kernel with --sweep (runs 5-10
# chose 32 pixels on 8 warps in FP16, 16 on 4 in FP32).
ATTENTION_MMA_TILES = ((8, 4), (16, 4), (32, 4), (32, 8), (64, 8))
ATTENTION_CASES = [
    ((1, t, 64, 360, 640), heads, dtype)
    for t in (8, 12, 16)
    for heads in (4,)
    for dtype in (torch.float16, torch.float32)
]


@dataclass(frozen=True)
class KernelResult:
    """One case, kernel and composition timed side by side on the same inputs."""

    op: str
    shape: tuple[int, ...]
    dtype: str
    ideal_bytes: int
    kernel_ms: float
    torch_ms: float
    kernel_gbps: float
    torch_gbps: float
    kernel_pct_of_copy: float
    torch_pct_of_copy: float
    speedup: float
    max_err: float


# (shard, shards) in a ``--warm`` worker: it only compiles its share of the rows' kernels (each launched once) into
# Triton's cache, for the timed run that follows; None in the timed run itself.
_WARM: tuple[int, int] | None = None
_WARM_ROWS = itertools.count()


def _warm_row_is_mine() -> bool:
    """In a ``--warm`` worker: count one row, and say whether it is this worker's to compile."""
    assert _WARM is not None
    return next(_WARM_ROWS) % _WARM[1] == _WARM[0]


def _time_ms(fn: Callable[[], Any], iters: int, warmup: int = 5, batch_ms: float = 2.0, graph: bool = True) -> float:
    """Median milliseconds per call of ``fn``, over ``iters`` CUDA-event-timed batches of back-to-back calls.

    A batch holds enough calls for ``batch_ms`` of GPU time (one call when a call takes longer), captured once in
    a CUDA graph and replayed (``graph``, the default): the GPU's time alone, as TensorRT's C++ runtime or a
    model's CUDA graph launches the kernel. From Python, a launch costs the host tens of microseconds (Triton's
    launcher, CuPy's for the ``aot`` rows), which back-to-back calls hide only while each call keeps the GPU busy
    longer than that: run 10 timed the channels-last flow_warp's plugin PTX (a 0.05 ms kernel, through CuPy) at
    0.072-0.075 ms whatever the flow, as if its launches set the pace. ``graph=False`` (the ``eager`` rows, and
    where ``fn`` cannot be captured: said on stderr) times the Python launches themselves, back to back.
    In a ``--warm`` worker it launches ``fn`` once if the row is the worker's, and times nothing.
    """
    if _WARM is not None:
        if _warm_row_is_mine():
            fn()
        return 1.0
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    batch = max(1, min(100, math.ceil(batch_ms / max(start.elapsed_time(end), 1e-3))))
    captured = _capture(fn, batch) if graph else None

    def run() -> None:
        if captured is not None:
            captured.replay()
        else:
            for _ in range(batch):
                fn()

    run()  # a graph's first replay uploads it
    times = []
    for _ in range(iters):
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / batch)
    return statistics.median(times)


def _capture(fn: Callable[[], Any], calls: int) -> torch.cuda.CUDAGraph | None:
    """A CUDA graph of ``calls`` back-to-back calls of ``fn`` (each launches on the current stream), or None where
    capturing fails (the reason on stderr: the caller then times eager launches)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # a call on a side stream first, as capturing some libraries' work requires
        fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
    except Exception as err:  # CUDA, CuPy and Triton each raise their own types
        torch.cuda.synchronize()
        _progress(f"  (not captured in a CUDA graph, timed as eager launches: {str(err).splitlines()[0]})")
        return None
    return graph


def _max_err(fn: Callable[[], torch.Tensor], expected: torch.Tensor | None) -> float:
    """Largest absolute difference of ``fn()`` from ``expected`` (0.0 in a ``--warm`` worker, which checks
    nothing: its launches only compile)."""
    if _WARM is not None:
        return 0.0
    return (fn().float() - expected).abs().max().item()


def measure_copy_bandwidth(nbytes: int = 1 << 30, iters: int = 20) -> float:
    """Device copy bandwidth in GB/s: ``clone`` of an ``nbytes`` tensor counts 2 * nbytes."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=DEVICE).uniform_()
    # Launched from Python, not replayed: a captured clone is a graph memcpy node, which the copy engines run
    # (H200 run 11: 2,709 GB/s against 4,220 for the copy kernel); a 1 GiB copy hides a launch anyway.
    ms = _time_ms(lambda: src.clone(), iters, graph=False)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def _flow_field(b: int, h: int, w: int, kind: str, gen: torch.Generator, pixels: float = 8.0) -> torch.Tensor:
    """A float32 flow ``(b, 2, h, w)``: i.i.d. noise, or smooth (bicubic from a 1/16-resolution field)."""
    if kind == "noise":
        return torch.randn((b, 2, h, w), device=DEVICE, generator=gen) * pixels
    coarse = torch.randn((b, 2, -(-h // 16) + 1, -(-w // 16) + 1), device=DEVICE, generator=gen) * pixels
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)


def _flow_warp_torch(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The plain PyTorch composition, all in the input dtype."""
    _, _, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=flow.dtype).view(1, 1, w)
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _attention_torch(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Transposes + scaled_dot_product_attention + transpose back."""
    n, t, c3, h, w = qkv.shape
    c = c3 // 3
    d = c // heads
    x = qkv.view(n, t, 3, heads, d, h * w).permute(2, 0, 5, 3, 1, 4)  # (3, n, hw, heads, t, d)
    out = F.scaled_dot_product_attention(x[0], x[1], x[2])  # (n, hw, heads, t, d)
    return out.permute(0, 3, 2, 4, 1).reshape(n, t, c, h, w)


def _pct_of_copy(nbytes: int, ms: float, copy_gbps: float) -> float:
    """Effective bandwidth (``nbytes`` moved in ``ms``) as a percentage of the copy bandwidth."""
    return round(100 * nbytes / (ms * 1e-3) / 1e9 / copy_gbps, 1)


def _progress(line: str) -> None:
    """Each row on stderr as it is measured: a run cut short by a time limit (``gpu_check.sh``'s steps) keeps what
    it measured in its log, where the table and the JSON come only at the end. Silent in a ``--warm`` worker."""
    if _WARM is None:
        print(line, file=sys.stderr, flush=True)


def _sweep_line(row: dict) -> str:
    geometry = {k: v for k, v in row.items() if k not in ("op", "shape", "dtype", "ms", "pct_of_copy")}
    return (f"sweep {row['op']:<24}{'x'.join(map(str, row['shape'])):<22}{row['dtype']:<9}{geometry} "
            f"{row['ms']:.3f} ms {row['pct_of_copy']:.1f}% of copy")


def _sweep_row(rows: list[dict], row: dict) -> None:
    """Keep a sweep row and report it as measured (see :func:`_progress`)."""
    rows.append(row)
    _progress(_sweep_line(row))


def _result(op, shape, dtype, nbytes, k_ms, t_ms, copy_gbps, err) -> KernelResult:
    k_gbps, t_gbps = nbytes / (k_ms * 1e-3) / 1e9, nbytes / (t_ms * 1e-3) / 1e9
    _progress(f"{op} {'x'.join(map(str, shape))} {str(dtype).removeprefix('torch.')}: kernel {k_ms:.3f} ms "
              f"({_pct_of_copy(nbytes, k_ms, copy_gbps):.1f}% of copy), torch {t_ms:.3f} ms, max err {float(err):.1e}")
    return KernelResult(
        op=op,
        shape=tuple(shape),
        dtype=str(dtype).removeprefix("torch."),
        ideal_bytes=nbytes,
        kernel_ms=round(k_ms, 4),
        torch_ms=round(t_ms, 4),
        kernel_gbps=round(k_gbps, 1),
        torch_gbps=round(t_gbps, 1),
        kernel_pct_of_copy=_pct_of_copy(nbytes, k_ms, copy_gbps),
        torch_pct_of_copy=_pct_of_copy(nbytes, t_ms, copy_gbps),
        speedup=round(t_ms / k_ms, 2),
        max_err=float(err),
    )


def _aot_ms(compile_kernel: Callable[[], Any], inputs: tuple, out: torch.Tensor, expected: torch.Tensor | None,
            iters: int) -> tuple[float, float] | None:
    """Milliseconds and max error of an AOT kernel (the PTX TensorRT embeds; ``compile_kernel`` returns it)
    launched through CuPy on the current stream; None without CuPy. That PTX is compiled without Triton's runtime
    specialisation (the engine's shapes are dynamic: nothing known divisible by 16), so its loads are not
    vectorised. In a ``--warm`` worker: compiled if the row is the worker's (Triton's cache keeps it), not run."""
    if _WARM is not None:
        if _warm_row_is_mine():
            compile_kernel()
        return 1.0, 0.0
    try:
        from vggx.plugins.tensorrt import cupy_launch

        launch = cupy_launch(compile_kernel(), inputs, (out,))
    except ImportError:
        return None
    def on_stream() -> None:  # torch's current stream: the one a graph being captured records
        launch(torch.cuda.current_stream().cuda_stream)

    ms = _time_ms(on_stream, iters)

    def checked() -> torch.Tensor:
        out.fill_(float("nan"))
        on_stream()
        torch.cuda.synchronize()
        return out

    return ms, _max_err(checked, expected)


def run_kernel_bench(iters: int = 20, copy_gbps: float | None = None, sweep: bool = False,
                     frames: Sequence[int] | None = None, shipped_only: bool = False,
                     dtypes: Sequence[torch.dtype] = (torch.float16, torch.float32), tactics: bool = False,
                     ) -> tuple[float, list[KernelResult]]:
    """Time every case; returns (copy bandwidth in GB/s, results). Needs CUDA and Triton. ``sweep``: also the
    tensor-core form's other tiles (``ATTENTION_MMA_TILES``). ``frames``: only attention, at these T (each
    ``ATTENTION_CASES`` shape and dtype); ``shipped_only``: only the shipped kernel's rows (JIT, eager, the
    plugin's PTX and its register-capped tactic) and the other choice of last query block (``fma,ragged`` or
    ``fma,full-last``, where T leaves a short one), none of the other tiles; ``dtypes``: only these; ``tactics``:
    also every TensorRT tactic's attention PTX (``aot,tN``: tactic N's tile where no other plugin row has it), which
    the engine builder times to keep the fastest."""
    from vggx.plugins.flow_warp import flow_warp_reference, launch_flow_warp
    from vggx.plugins.launch import (
        ATTENTION_TACTICS,
        attention_tactic_tile,
        attention_tile,
        flow_warp_config,
        flow_warp_nhwc_tactic,
    )
    from vggx.plugins.temporal_attention import launch_temporal_attention, temporal_attention_reference
    from vggx.plugins.tensorrt import compile_aot, device_cc

    copy_gbps = copy_gbps or measure_copy_bandwidth()
    _progress(f"kernels on {torch.cuda.get_device_name() if DEVICE == 'cuda' else DEVICE}: copy bandwidth "
              f"{copy_gbps:.1f} GB/s")
    cc = device_cc()
    results = []
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    for shape, dtype, layout, kind in FLOW_WARP_CASES if frames is None else ():
        if dtype not in dtypes:
            continue
        b, c, h, w = shape
        x = torch.randn(shape, device=DEVICE, generator=gen).to(dtype)
        if layout == "channels_last":
            x = x.to(memory_format=torch.channels_last)
        flow = _flow_field(b, h, w, kind, gen).to(dtype)
        out = torch.empty_like(x)
        nbytes = 2 * x.numel() * x.element_size() + flow.numel() * flow.element_size()
        k_ms = _time_ms(lambda x=x, flow=flow, out=out: launch_flow_warp(x, flow, out=out), iters)
        t_ms = _time_ms(lambda x=x, flow=flow: _flow_warp_torch(x, flow), iters)
        expected = None if _WARM else flow_warp_reference(x.float(), flow.float())
        err = _max_err(lambda x=x, flow=flow: launch_flow_warp(x, flow), expected)
        results.append(_result(f"flow_warp[{layout},{kind}]", shape, dtype, nbytes, k_ms, t_ms, copy_gbps, err))
        e_ms = _time_ms(lambda x=x, flow=flow, out=out: launch_flow_warp(x, flow, out=out), iters, graph=False)
        results.append(_result(f"flow_warp[{layout},{kind},eager]", shape, dtype, nbytes, e_ms, t_ms, copy_gbps,
                               err))  # the same launches from Python, no graph: the host's share
        variants = {}  # launch options not shipped, timed beside the shipped launch
        if layout == "nchw":  # the same kernel compiled without value specialisation (as the AOT PTX is) ...
            variants["unspecialized"] = {"specialize": False}
            # ... and its channel loop unrolled 4 times / software-pipelined 3 stages (TensorRT's tactics 2, 3)
            variants["cu4"] = {"config": flow_warp_config(*shape, c_unroll=4)}
            variants["cs3"] = {"config": flow_warp_config(*shape, c_stages=3)}
        else:  # the other dtype's geometry and runs 3-9's (TensorRT's tactics 2 and 3)
            half = dtype == torch.float16
            variants[f"fp{32 if half else 16}-geometry"] = {"config": flow_warp_nhwc_tactic(2, c, half, b, h, w)}
            variants["p32,w4"] = {"config": flow_warp_nhwc_tactic(3, c, half, b, h, w)}
        for name, options in variants.items():
            v_ms = _time_ms(lambda x=x, flow=flow, out=out, o=options: launch_flow_warp(x, flow, out=out, **o), iters)
            v_err = _max_err(lambda x=x, flow=flow, o=options: launch_flow_warp(x, flow, **o), expected)
            results.append(_result(f"flow_warp[{layout},{kind},{name}]", shape, dtype, nbytes, v_ms, t_ms, copy_gbps,
                                   v_err))
        # The TensorRT plugin's kernel for the same tensors: LINEAR -> NCHW kernel; channels-last = HWC8
        # (FP16, C = 64 needs no padding) or HWC (FP32) -> the channels-last kernel.
        trt_layout = "linear" if layout == "nchw" else ("hwc8" if dtype == torch.float16 else "hwc")
        if expected is not None and layout == "channels_last":
            expected = expected.to(memory_format=torch.channels_last)
        aot = _aot_ms(lambda shape=shape, dtype=dtype, trt_layout=trt_layout: compile_aot(
            "flow_warp", shape, dtype, cc=cc, layout=trt_layout), (x, flow), out, expected, iters)
        if aot is not None:
            results.append(_result(f"flow_warp[{layout},{kind},aot]", shape, dtype, nbytes, aot[0], t_ms, copy_gbps,
                                   aot[1]))
        del x, flow, out
    cases = ATTENTION_CASES
    if frames is not None:  # each case's shape and dtype once, at every T asked for
        kinds = dict.fromkeys(((n, c, h, w), heads, dtype) for (n, _, c, h, w), heads, dtype in ATTENTION_CASES)
        cases = [((n, t, c, h, w), heads, dtype) for t in frames for (n, c, h, w), heads, dtype in kinds]
    for (n, t, c, h, w), heads, dtype in cases:
        if dtype not in dtypes:
            continue
        qkv = torch.randn((n, t, 3 * c, h, w), device=DEVICE, generator=gen).to(dtype)
        out = qkv.new_empty((n, t, c, h, w))
        nbytes = (qkv.numel() + out.numel()) * qkv.element_size()
        k_ms = _time_ms(
            lambda qkv=qkv, out=out, heads=heads: launch_temporal_attention(qkv, heads, out=out), iters
        )
        t_ms = _time_ms(lambda qkv=qkv, heads=heads: _attention_torch(qkv, heads), iters)
        # every row's reference (the same inputs); none in a --warm worker, which checks nothing
        expected = None if _WARM else temporal_attention_reference(qkv, heads).float()
        err = _max_err(lambda qkv=qkv, heads=heads: launch_temporal_attention(qkv, heads), expected)
        shape = (n, t, 3 * c, h, w)
        results.append(_result(f"temporal_attention[h={heads}]", shape, dtype, nbytes, k_ms, t_ms, copy_gbps, err))
        e_ms = _time_ms(lambda qkv=qkv, out=out, heads=heads: launch_temporal_attention(qkv, heads, out=out), iters,
                        graph=False)
        results.append(_result(f"temporal_attention[h={heads},eager]", shape, dtype, nbytes, e_ms, t_ms, copy_gbps,
                               err))
        half = dtype == torch.float16
        shipped = attention_tile(t, c // heads, half=half)
        # The per-thread tile with the other choice of last query block where T leaves a short one (TensorRT's
        # tactic 10): ragged, or full where the shipped tile's is ragged (FP16 at 9-10 frames).
        other_last = attention_tactic_tile(10, t, c // heads, half)
        last = ",ragged" if other_last.ragged else ",full-last"
        fma = attention_tile(t, c // heads, mma=False, half=half)  # the per-thread form as shipped for the dtype
        # The shipped tile's PTX as the TensorRT plugin embeds it and, beside the per-thread one, that PTX with its
        # registers capped at 128 (TensorRT's tactic 7) and with the other last query block (tactic 10).
        plugin_tiles = {"aot": shipped}
        if not shipped.mma:
            plugin_tiles["aot,r128"] = attention_tactic_tile(7, t, c // heads, half)
            if other_last != fma:
                plugin_tiles["aot" + last] = other_last
        if tactics:  # every TensorRT tactic's PTX, as the engine builder times them (each distinct tile once)
            for k in ATTENTION_TACTICS:
                tile = attention_tactic_tile(k, t, c // heads, half)
                if tile not in plugin_tiles.values():
                    plugin_tiles[f"aot,t{k}"] = tile
        for form, tile in plugin_tiles.items():
            aot = _aot_ms(lambda shape=shape, dtype=dtype, heads=heads, tile=tile: compile_aot(
                "temporal_attention", shape, dtype, heads=heads, cc=cc, tile=tile), (qkv,), out, expected, iters)
            if aot is None:  # no CuPy: no plugin rows
                break
            results.append(_result(f"temporal_attention[h={heads},{form}]", shape, dtype, nbytes, aot[0], t_ms,
                                   copy_gbps, aot[1]))
        mma = attention_tile(t, c // heads, mma=True, half=half)
        other_depth = attention_tactic_tile(6, t, c // heads, half)
        others = {
            "fma": fma, "mma": mma,
            "fma,s1,i64": dataclasses.replace(fma, stages=1, int32=False),  # runs 3-9's plain per-thread tile
            f"fma,s{other_depth.stages}": other_depth,  # the other dtype's pipeline depth (tactic 6)
            "fma,i64": dataclasses.replace(fma, int32=False),  # the TensorRT plugin's offsets (dynamic H, W)
            "fma,u2": attention_tactic_tile(8, t, c // heads, half),  # head-dim loops unrolled by 2 (tactic 8)
            "fma,u4,s2": attention_tactic_tile(9, t, c // heads, half),  # by 4, pipelined 2 stages (tactic 9)
        }
        if t & (t - 1):  # T not a power of two: read at run time instead of compiled in (the masked keys' work)
            others["fma,runtime-t"] = dataclasses.replace(fma, fixed_t=False)
        if other_last != fma:  # the last query block computing only its own rows (Q_LAST) or all (tactic 10)
            others["fma" + last] = other_last
        if 8 < t <= 11:  # every query in one program: T compiled in, the padding queries' rows fold away (SASS,
            # FP16 T = 9: 8,735 instructions per pixel and head, 10,550 in 2 programs of 8; 205 registers, not 118)
            others["fma,q-all"] = attention_tile(t, c // heads, half=half, mma=False, scores_per_thread=256)
        if mma.num_warps >= 8:  # the same pixels on half the warps
            others["mma,half-warps"] = dataclasses.replace(mma, num_warps=mma.num_warps // 2)
        if t > 8:  # the tensor-core tile looping over N pixel blocks per program, software-pipelined (M stages)
            others.update({f"mma,loop{n},s{m}": dataclasses.replace(mma, walk=n, stages=m)
                           for n, m in ((4, 2), (4, 3), (8, 3))})
        for p_block, warps in ATTENTION_MMA_TILES if sweep else ():
            others[f"mma,p{p_block}" + (f",w{warps}" if warps != 4 else "")] = dataclasses.replace(
                attention_tile(t, c // heads, mma=True), p_block=p_block, num_warps=warps)
        if shipped_only:  # of the other tiles only the other last query block (tactic 10): FP16's ragged block at
            others = {k: v for k, v in others.items() if k == "fma" + last}  # 9-10 frames was shipped untimed
        for form, tile in others.items():  # the other forms, against the same torch
            if tile == shipped:
                continue
            m_ms = _time_ms(
                lambda qkv=qkv, out=out, heads=heads, tile=tile: launch_temporal_attention(
                    qkv, heads, out=out, tile=tile), iters
            )
            err = _max_err(lambda qkv=qkv, heads=heads, tile=tile: launch_temporal_attention(qkv, heads, tile=tile),
                           expected)
            results.append(_result(f"temporal_attention[h={heads},{form}]", shape, dtype, nbytes, m_ms,
                                   t_ms, copy_gbps, err))
        del qkv, out, expected
        torch.cuda.empty_cache()
    return copy_gbps, results


SWEEP_FLOW_WARP_SHAPE = (8, 64, 180, 320)
SWEEP_ATTENTION_SIZE = (360, 640)  # H, W of the sweep's attention cases (T = 8, 12, 16; C = 64, 4 heads)
SWEEP_ATTENTION_HEADS = 4  # of 16 channels each (the tests' interpreter runs fewer: its time goes by programs)
SWEEP_FLOW_WARP = [(512, 16, 4), (512, 8, 8), (1024, 8, 4)]  # (pixels, channels, warps) per program
# Channels-last launches walking consecutive pixel blocks: (pixels per block, warps, blocks per program).
SWEEP_FLOW_WARP_WALK = [(32, 4, 8), (16, 2, 2), (16, 2, 4), (16, 4, 4), (64, 4, 2)]
SWEEP_FLOW_WARP_NHWC = [(64, 64, 4), (32, 64, 4), (128, 64, 4), (128, 64, 8), (256, 64, 8), (64, 32, 4), (16, 64, 2)]
# (scores per thread, warps, pixels per thread, pipeline stages, int32 offsets, unroll) of the per-thread form: the
# shipped tile (64, 4, 1, 4 in FP16 / 3 in FP32, int32, 1) and its neighbours. Runs 7-8: two pixels per thread and
# unrolling lost at every T, before pipelining; run 10: pipelining won (FP16 T = 8: 1-4 stages 43, 56, 78, 92 % of
# copy). SASS of the shipped FP16 T = 16 tile (nvdisasm): per head-dim step 157 instructions for 64 FFMA in the
# score loop, about 50 of them the pipeline's bookkeeping, which unrolling by 2 would halve (and by 4 on 2 stages,
# four dims in flight as with 4-5 stages of one, quarter); unroll 4 on 1, 3 stages and on 8 warps beside it.
SWEEP_ATTENTION = [
    (64, 4, 1, 1, True, 1), (64, 4, 1, 2, True, 1), (64, 4, 1, 3, True, 1), (64, 4, 1, 4, True, 1),
    (64, 4, 1, 5, True, 1), (64, 4, 1, 4, False, 1), (32, 4, 1, 4, True, 1), (128, 4, 1, 4, True, 1),
    (64, 2, 1, 4, True, 1), (64, 8, 1, 4, True, 1), (128, 8, 1, 4, True, 1), (64, 4, 1, 4, True, 2),
    (64, 4, 1, 3, True, 2), (128, 4, 1, 4, True, 2), (64, 4, 1, 2, True, 2), (64, 4, 1, 2, True, 4),
    (128, 4, 1, 2, True, 4), (64, 4, 1, 1, True, 4), (64, 4, 1, 3, True, 4), (64, 8, 1, 2, True, 4),
    (128, 4, 1, 3, True, 2), (128, 4, 1, 3, True, 1), (128, 4, 1, 5, True, 1),
]


def run_sweep(copy_gbps: float, iters: int = 20, frames: Sequence[int] | None = None,
              dtypes: Sequence[torch.dtype] = (torch.float16, torch.float32)) -> list[dict]:
    """Other launch geometries of both kernels (flow_warp in FP16 and FP32, attention too): ms and % of
    copy for each. ``frames``: only attention's, at these T (8, 12, 16 otherwise); ``dtypes``: only these."""
    from vggx.plugins.flow_warp import launch_flow_warp
    from vggx.plugins.launch import attention_tile, flow_warp_config, flow_warp_nhwc_config
    from vggx.plugins.temporal_attention import launch_temporal_attention

    rows: list[dict] = []
    gen = torch.Generator(device=DEVICE).manual_seed(1)
    shape = SWEEP_FLOW_WARP_SHAPE
    for dtype in dtypes if frames is None else ():  # flow_warp in both: its FP32 islands warp too
        x = torch.randn(shape, device=DEVICE, generator=gen).to(dtype)
        flow = _flow_field(shape[0], *shape[2:], "smooth", gen).to(dtype)
        nbytes = (2 * x.numel() + flow.numel()) * x.element_size()
        for layout, geometries in (("nchw", SWEEP_FLOW_WARP), ("channels_last", SWEEP_FLOW_WARP_NHWC)):
            xl = x.to(memory_format=torch.channels_last) if layout == "channels_last" else x
            out = torch.empty_like(xl)
            for block, c_block, warps in geometries:
                make = flow_warp_nhwc_config if layout == "channels_last" else flow_warp_config
                cfg = make(*shape, block, c_block, warps)
                ms = _time_ms(
                    lambda cfg=cfg, x=xl, out=out, flow=flow: launch_flow_warp(x, flow, out=out, config=cfg), iters
                )
                _sweep_row(rows, {"op": f"flow_warp[{layout},smooth]", "shape": shape,
                                  "dtype": str(dtype).removeprefix("torch."), "block": block, "c_block": c_block,
                                  "num_warps": warps, "ms": round(ms, 4),
                                  "pct_of_copy": _pct_of_copy(nbytes, ms, copy_gbps)})
        xl = x.to(memory_format=torch.channels_last)
        out = torch.empty_like(xl)
        for p_block, warps, walk in SWEEP_FLOW_WARP_WALK:
            cfg = flow_warp_nhwc_config(*shape, p_block=p_block, num_warps=warps, walk=walk)
            ms = _time_ms(lambda cfg=cfg, x=xl, out=out, flow=flow: launch_flow_warp(x, flow, out=out, config=cfg),
                          iters)
            _sweep_row(rows, {"op": "flow_warp[channels_last,smooth]", "shape": shape,
                              "dtype": str(dtype).removeprefix("torch."), "block": p_block, "num_warps": warps,
                              "walk": walk, "ms": round(ms, 4), "pct_of_copy": _pct_of_copy(nbytes, ms, copy_gbps)})
        del x, flow, out, xl
    (h, w), heads = SWEEP_ATTENTION_SIZE, SWEEP_ATTENTION_HEADS
    for dtype in dtypes:
        for t in frames or (8, 12, 16):
            qkv = torch.randn((1, t, 3 * 16 * heads, h, w), device=DEVICE, generator=gen).to(dtype)
            out = qkv.new_empty((1, t, 16 * heads, h, w))
            nbytes = (qkv.numel() + out.numel()) * qkv.element_size()
            for spt, warps, ppt, stages, int32, unroll in SWEEP_ATTENTION:
                tile = dataclasses.replace(attention_tile(t, 16, scores_per_thread=spt, num_warps=warps,
                                                          pixels_per_thread=ppt, mma=False, stages=stages,
                                                          unroll=unroll), int32=int32)
                ms = _time_ms(
                    lambda tile=tile, qkv=qkv, out=out: launch_temporal_attention(qkv, heads, out=out, tile=tile),
                    iters,
                )
                _sweep_row(rows, {"op": f"temporal_attention[h={heads}]", "shape": tuple(qkv.shape),
                                  "dtype": str(dtype).removeprefix("torch."), "q_block": tile.q_block,
                                  "p_block": tile.p_block, "num_warps": warps, "stages": stages, "int32": int32,
                                  "unroll": unroll, "ms": round(ms, 4),
                                  "pct_of_copy": _pct_of_copy(nbytes, ms, copy_gbps)})
            del qkv, out
            torch.cuda.empty_cache()
    return rows


def warm_shard(shard: int, shards: int, sweep: bool = False, frames: Sequence[int] | None = None,
               shipped_only: bool = False, dtypes: Sequence[torch.dtype] = (torch.float16, torch.float32),
               tactics: bool = False) -> None:
    """Launch once each kernel of every ``shards``-th row, starting at ``shard`` (the rows of
    :func:`run_kernel_bench` and, with ``sweep``, :func:`run_sweep`, in their order): a ``--warm`` worker. It times
    and checks nothing; what it leaves is Triton's cache of the compiled kernels."""
    global _WARM, _WARM_ROWS
    _WARM, _WARM_ROWS = (shard, shards), itertools.count()
    try:
        run_kernel_bench(iters=1, copy_gbps=1.0, sweep=sweep, frames=frames, shipped_only=shipped_only,
                         dtypes=dtypes, tactics=tactics)
        if sweep:
            run_sweep(copy_gbps=1.0, iters=1, frames=frames, dtypes=dtypes)
    finally:
        _WARM = None


def warm_up(workers: int, sweep: bool = False, extra: Sequence[str] = ()) -> None:
    """Compile every row's kernels in ``workers`` processes side by side (``--warm``): most of the benchmark's
    time is Triton compiling its hundreds of launches on one core, one after the other. A worker that fails only
    leaves its kernels to the timed run, which compiles what is missing. ``extra``: the run's row-choosing
    arguments (``--frames``, ``--shipped-only``), passed on."""
    import subprocess
    import tempfile
    import time

    start = time.perf_counter()
    command = [sys.executable, "-m", "vggx.benchmarks.kernels", *(["--sweep"] if sweep else []), *extra]
    with tempfile.TemporaryDirectory() as tmp:  # each worker's stderr in a file: a full pipe would stall it
        logs = [open(os.path.join(tmp, f"{i}.log"), "w+") for i in range(workers)]  # noqa: SIM115 - closed below
        procs = [subprocess.Popen([*command, "--shard", f"{i}/{workers}"], stdout=subprocess.DEVNULL, stderr=log)
                 for i, log in enumerate(logs)]
        failed = []
        for i, (proc, log) in enumerate(zip(procs, logs, strict=True)):
            proc.wait()
            log.seek(0)
            tail = log.read().strip().splitlines()[-1:]
            log.close()
            if proc.returncode:
                failed.append(f"; worker {i} failed: {tail[0] if tail else f'status {proc.returncode}'}")
    _progress(f"kernels compiled in {workers} processes in {time.perf_counter() - start:.0f} s" + "".join(failed))


def _print_table(copy_gbps: float, results: list[KernelResult]) -> None:
    print(f"GPU: {torch.cuda.get_device_name()}  copy bandwidth: {copy_gbps:,.0f} GB/s")
    head = f"{'op':<24}{'shape':<24}{'dtype':<9}{'kernel ms':>10}{'torch ms':>10}{'kernel %copy':>14}"
    print(head + f"{'torch %copy':>13}{'speedup':>9}{'max err':>10}")
    for r in results:
        print(
            f"{r.op:<24}{'x'.join(map(str, r.shape)):<24}{r.dtype:<9}{r.kernel_ms:>10.3f}{r.torch_ms:>10.3f}"
            f"{r.kernel_pct_of_copy:>13.1f}%{r.torch_pct_of_copy:>12.1f}%{r.speedup:>8.1f}x{r.max_err:>10.1e}"
        )


def _frames(text: str) -> tuple[int, ...]:
    """``--frames``: comma-separated frame counts and inclusive ranges (``8-16``, ``8,12,16``)."""
    frames: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            frames.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected frame counts such as 8-16 or 8,12,16, got {text!r}") from None
    if not frames or min(frames) < 1:
        raise argparse.ArgumentTypeError(f"expected frame counts of 1 or more, got {text!r}")
    return tuple(frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vggx.benchmarks.kernels", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--iters", type=int, default=20,
                        help="timed batches of back-to-back calls per case (median per call reported)")
    parser.add_argument("--sweep", action="store_true", help="also time other launch geometries")
    parser.add_argument("--warm", type=int, default=0, metavar="N",
                        help="first compile every row's kernels in N processes side by side (Triton's cache then "
                             "serves the timed run; a row's compile otherwise waits for the one before)")
    parser.add_argument("--frames", type=_frames, metavar="T,T-T",
                        help="only temporal attention, at these frame counts (e.g. 8-16: every T the goal names)")
    parser.add_argument("--dtype", choices=("float16", "float32"), help="only this dtype's rows")
    parser.add_argument("--shipped-only", action="store_true",
                        help="only the shipped kernels' rows (JIT, eager, the TensorRT plugin's PTX) and the other "
                             "choice of last query block where T leaves a short one, no other tiles")
    parser.add_argument("--tactics", action="store_true",
                        help="also every TensorRT tactic's attention PTX (rows aot,tN), as the engine builder times "
                             "them")
    parser.add_argument("--shard", metavar="I/N", help=argparse.SUPPRESS)  # one --warm worker
    args = parser.parse_args(argv)
    dtypes = (getattr(torch, args.dtype),) if args.dtype else (torch.float16, torch.float32)
    rows = {"frames": args.frames, "shipped_only": args.shipped_only, "dtypes": dtypes, "tactics": args.tactics}
    extra = [*(["--frames", ",".join(map(str, args.frames))] if args.frames else []),
             *(["--shipped-only"] if args.shipped_only else []), *(["--dtype", args.dtype] if args.dtype else []),
             *(["--tactics"] if args.tactics else [])]
    if not torch.cuda.is_available():
        print("vggx kernel benchmark: needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    if args.shard:
        warm_shard(*(int(v) for v in args.shard.split("/")), sweep=args.sweep, **rows)
        return 0
    if args.warm > 1:
        warm_up(args.warm, args.sweep, extra)
    copy_gbps, results = run_kernel_bench(args.iters, sweep=args.sweep, **rows)
    _print_table(copy_gbps, results)
    sweep = run_sweep(copy_gbps, frames=args.frames, dtypes=dtypes) if args.sweep else []
    for row in sweep:
        print(_sweep_line(row))
    if args.json:
        import triton

        payload = {
            "gpu": torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "triton": triton.__version__,
            "python": platform.python_version(),
            "copy_gbps": round(copy_gbps, 1),
            # how kernel_ms was taken (run 10 and before: Python launches back to back; the eager rows still are)
            "timing": "median per call of CUDA-graph replays of back-to-back launches",
            "results": [asdict(r) for r in results],
            "sweep": sweep,
        }
        Path(args.json).write_text(json_text(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
