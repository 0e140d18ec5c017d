"""The generator on a CUDA GPU: FP32 eager vs FP16 eager vs FP16 + vggx kernels vs + CUDA graphs.

    python -m vggx.benchmarks.gpu_model --config base --lr-size 180x320 --window 8 --json out.json

Every variant runs the same uint8 graph (pre/post-processing on the GPU) on the same input, interleaved
round by round; timings are CUDA-event medians per window. FLOPs come from ``vggx info``'s counter, the
peak from the card's data sheet (dense FP16 tensor cores, no sparsity).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from vggx.paths import json_text

__all__ = ["run_gpu_model_bench"]


def _fresh_upscaler(cfg_name: str, seed: int):
    """The FP32 uint8 model with seeded, non-trivial weights in every layer (the same for every call)."""
    import torch

    from vggx.generator import Generator, UInt8Upscaler, get_config

    torch.manual_seed(seed)
    g = Generator(get_config(cfg_name))
    with torch.no_grad():
        for p in g.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return UInt8Upscaler(g)


def _variants(cfg_name: str, seed: int):
    from vggx.client.cuda import CudaUpscaler
    from vggx.export.fp16 import half_upscaler

    def module(fp16: bool):
        m = _fresh_upscaler(cfg_name, seed)
        m = half_upscaler(m.generator) if fp16 else m  # FP16 = the FP16 ONNX graph's FP32 islands
        return m.eval().cuda()  # NCHW, PyTorch's default

    return {
        "fp32 eager": (module(False), True),
        "fp16 eager": (module(True), True),
        "fp16 + kernels": (module(True), False),
        "fp16 + kernels + graphs": (CudaUpscaler(_fresh_upscaler(cfg_name, seed), fp16=True), False),
        "fp16 + kernels + graphs, channels_last": (
            CudaUpscaler(_fresh_upscaler(cfg_name, seed), fp16=True, channels_last=True), False),
    }


def _profile(run, rows: int) -> list[dict]:
    """GPU time per kernel (self time, summed over two calls of ``run``), the largest ``rows`` of them."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(2):
            run()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if getattr(e, "self_device_time_total", 0) > 0]
    total = sum(e.self_device_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_device_time_total, reverse=True)
    return [{"kernel": e.key[:120], "ms_per_window": e.self_device_time_total / 2e3, "calls_per_window": e.count // 2,
             "share": e.self_device_time_total / total} for e in events[:rows]]


def run_gpu_model_bench(config: str = "base", lr_size: tuple[int, int] = (180, 320), window: int = 8,
                        iters: int = 10, seed: int = 0, profile_rows: int = 0, compile_variant: bool = False,
                        on_partial=None, compile_channels_last: bool = False,
                        compile_no_freezing: bool = False, compile_extra: dict | None = None) -> dict:
    """Time the variants (see the module doc). ``compile_variant`` adds ``torch.compile`` in a second
    phase, after ``on_partial`` has been given the first phase's results; ``compile_channels_last`` also
    compiles the channels-last model (slower in runs 4-6: 35 vs 30 ms; another ~35 s of compilation);
    ``compile_no_freezing`` also compiles without Inductor's ``freezing`` (the shipped compile folds the weights
    as constants: :data:`vggx.client.cuda.COMPILE_OPTIONS`); ``compile_extra`` also compiles with these
    Inductor options added to the shipped ones (e.g. ``{"max_autotune": True}``), to try them side by side."""
    import torch

    from vggx.benchmarks.bench import device_peak_gflops
    from vggx.client.cuda import CudaUpscaler, require_cuda
    from vggx.generator import get_config
    from vggx.generator.flops import measure_cost
    from vggx.plugins import reference_ops

    require_cuda()
    torch.backends.cudnn.benchmark = True
    h, w = lr_size
    cost = measure_cost(get_config(config), lr_size, window)
    peak_gflops, peak_source = device_peak_gflops("cuda")
    lr_host = np.random.default_rng(seed).integers(0, 256, size=(1, window, h, w, 3), dtype=np.uint8)
    lr_dev = torch.from_numpy(lr_host).cuda()
    variants = _variants(config, seed)
    times: dict[str, list[float]] = {k: [] for k in variants}

    def run_once(name: str) -> float:
        model, reference = variants[name]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with reference_ops(reference), torch.inference_mode():
            if isinstance(model, CudaUpscaler):
                # Host staging included: this is what a client of the fast path pays per window.
                start.record()
                model(lr_host)
                end.record()
            else:
                start.record()
                model(lr_dev)
                end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)

    def warm_up(names: list[str]) -> None:
        for name in names:  # kernel compilation, cuDNN autotuning, graph capture (timed)
            t0 = time.perf_counter()
            for _ in range(2):
                run_once(name)
            warmup_s[name] = time.perf_counter() - t0

    def measure(names: list[str]) -> None:
        for _ in range(iters):
            for name in names:  # interleaved rounds
                times[name].append(run_once(name))

    def rows() -> dict:
        out = {}
        for name, ts in times.items():
            if not ts:
                continue
            ms = float(np.median(ts))
            tflops = cost.flops_per_window / (ms / 1e3) / 1e12
            out[name] = {
                "ms_per_window": ms, "p90_ms": float(np.percentile(ts, 90)), "frames_per_s": window / (ms / 1e3),
                "tflops": tflops, "share_of_peak": tflops * 1e3 / peak_gflops, "warmup_s": warmup_s[name],
            }
        eager16 = out["fp16 eager"]["ms_per_window"]
        for r in out.values():
            r["speedup_vs_fp16_eager"] = eager16 / r["ms_per_window"]
        return out

    def result(profiles: dict, errors: dict) -> dict:
        return {
            "device": torch.cuda.get_device_name(), "torch": torch.__version__, "config": config,
            "lr_size": [h, w], "window": window, "gflops_per_frame": cost.gflops_per_frame,
            "peak_tflops": peak_gflops / 1e3, "peak_source": peak_source, "variants": rows(),
            "profiles": profiles, "errors": errors,
        }

    warmup_s: dict[str, float] = {}
    warm_up(list(variants))
    measure(list(variants))
    profiles = {}
    if profile_rows:  # where the time goes, per kernel (eager: a replayed graph hides its kernels)
        for name in ("fp16 eager", "fp16 + kernels"):
            model, reference = variants[name]

            def run(model=model, reference=reference):
                with reference_ops(reference), torch.inference_mode():
                    model(lr_dev)

            profiles[name] = _profile(run, profile_rows)
    errors: dict[str, str] = {}
    if on_partial is not None:
        on_partial(result(profiles, errors))
    if compile_variant:  # second phase, so a failing or slow compilation cannot cost the results above
        compiled = []
        chosen = [("fp16 + kernels + compile + graphs", False, None)]
        if compile_channels_last:
            chosen.append(("fp16 + kernels + compile + graphs, channels_last", True, None))
        if compile_no_freezing:  # the shipped compile uses Inductor's freezing; beside it, no options
            chosen.append(("fp16 + kernels + compile (no freezing) + graphs", False, {}))
        if compile_extra:
            from vggx.client.cuda import COMPILE_OPTIONS

            extra = ", ".join(f"{k}={v}" for k, v in compile_extra.items())
            chosen.append((f"fp16 + kernels + compile ({extra}) + graphs", False, {**COMPILE_OPTIONS, **compile_extra}))
        for name, channels_last, options in chosen:
            try:
                variants[name] = (CudaUpscaler(_fresh_upscaler(config, seed), fp16=True, compile=True,
                                               channels_last=channels_last, compile_options=options), False)
                times[name] = []
                warm_up([name])  # = compilation + capture
                compiled.append(name)
            except Exception as exc:  # report it, keep the rest
                errors[name] = f"{type(exc).__name__}: {str(exc)[:500]}"
                times.pop(name, None)
            if on_partial is not None:
                on_partial(result(profiles, errors))
        if compiled:  # interleaved with the eager ones once more (their medians then span both phases)
            measure([*compiled, "fp16 eager", "fp16 + kernels + graphs"])
            if profile_rows:  # what is left after Inductor's fusion: the compiled module run without its graph
                compiled_module = variants[compiled[0]][0].module

                def run_compiled():
                    with torch.inference_mode():
                        compiled_module(lr_dev)

                try:
                    profiles["fp16 + kernels + compile"] = _profile(run_compiled, profile_rows)
                except Exception as exc:  # a profile is a bonus: keep the timings
                    errors["profile of the compiled model"] = f"{type(exc).__name__}: {str(exc)[:500]}"
    return result(profiles, errors)


def _inductor_options(text: str) -> dict:
    """``"max_autotune=1,mode=x"`` -> ``{"max_autotune": 1, "mode": "x"}`` (the type of ``--compile-extra``)."""
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
        value: object = {"true": True, "false": False}.get(raw.lower(), raw)
        if isinstance(value, str):
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    pass
        options[key.strip()] = value
    return options


def main(argv: list[str] | None = None) -> int:
    from vggx.errors import VggxError
    from vggx.shapes import parse_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="base")
    parser.add_argument("--lr-size", default="180x320")
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="also list the ROWS kernels that take the most GPU time (FP16 eager, + kernels)")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile + CUDA graphs (second phase, after the JSON is written once)")
    parser.add_argument("--compile-channels-last", action="store_true",
                        help="with --compile: also the channels-last model (another ~35 s of compilation)")
    parser.add_argument("--compile-no-freezing", action="store_true",
                        help="with --compile: also compile without Inductor's freezing (the shipped compile folds "
                             "the weights as constants; ~45 s)")
    parser.add_argument("--compile-extra", metavar="KEY=VALUE[,KEY=VALUE]", type=_inductor_options,
                        help="with --compile: also compile with these Inductor options added to the shipped ones "
                             "(e.g. max_autotune=1; values parse as int, float or True/False, else stay strings)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    def write(result: dict) -> None:
        if args.json:
            args.json.write_text(json_text(result))

    try:
        result = run_gpu_model_bench(args.config, parse_size(args.lr_size), args.window, args.iters,
                                     profile_rows=args.profile, compile_variant=args.compile,
                                     on_partial=write, compile_channels_last=args.compile_channels_last,
                                     compile_no_freezing=args.compile_no_freezing,
                                     compile_extra=args.compile_extra)
    except VggxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, r in result["variants"].items():
        print(f"{name:26s} {r['ms_per_window']:8.2f} ms/window {r['frames_per_s']:8.1f} frames/s "
              f"{r['tflops']:7.1f} TFLOP/s ({100 * r['share_of_peak']:.1f}% of peak) "
              f"×{r['speedup_vs_fp16_eager']:.2f} vs fp16 eager (warm-up {r['warmup_s']:.1f} s)")
    for name, table in result["profiles"].items():
        print(f"-- {name}: kernels by GPU time per window")
        for r in table:
            print(f"  {r['ms_per_window']:8.3f} ms {100 * r['share']:5.1f}% x{r['calls_per_window']:<4d} {r['kernel']}")
    for name, error in result["errors"].items():
        print(f"{name}: failed: {error}")
    write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
