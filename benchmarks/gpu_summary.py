"""Merge the outputs of ``benchmarks/gpu_check.sh`` into ``gpu_check.json`` and ``summary.txt``."""

from __future__ import annotations

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from vggx.paths import json_text

_E2E = ("upscale_e2e_base_long", "upscale_e2e_long", "upscale_e2e", "upscale_e2e_veryfast", "upscale_e2e_veryfast_c2",
        "upscale_e2e_encoders4", "upscale_e2e_veryfast_encoders4", "upscale_e2e_base", "upscale_e2e_base_veryfast",
        "upscale_e2e_compile", "upscale_e2e_sample")


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def fastest_variants(results: list[dict]) -> list[str]:
    """One line per kernel case (op, shape, dtype) where a launch option not shipped (a ``[...,variant]`` row of
    the kernel benchmark, the TensorRT plugin's ``aot`` PTX and the ``eager`` timing of the shipped launch aside)
    beat the shipped kernel in the same run."""
    def extends(op: str, base: str) -> bool:  # flow_warp[nchw,noise,walk2] extends flow_warp[nchw,noise]
        return op.startswith(base[:-1] + ",")

    shipped = [r for r in results if not any(extends(r["op"], b["op"]) for b in results)]
    lines = []
    for base in shipped:
        rivals = [r for r in results if extends(r["op"], base["op"]) and ",aot" not in r["op"]
                  and not r["op"].endswith(",eager]") and r["shape"] == base["shape"] and r["dtype"] == base["dtype"]]
        best = min(rivals, key=lambda r: r["kernel_ms"], default=None)
        if best is not None and best["kernel_ms"] < base["kernel_ms"]:
            lines.append(f"  faster than shipped: {best['op']} {'x'.join(map(str, base['shape']))} {base['dtype']} "
                         f"{best['kernel_ms']:.3f} vs {base['kernel_ms']:.3f} ms ({best['kernel_pct_of_copy']:.1f}% "
                         f"vs {base['kernel_pct_of_copy']:.1f}% of copy)")
    return lines


_ROW = re.compile(r"(?P<op>\S+\]) (?P<shape>[\dx]+) (?P<dtype>\w+): kernel (?P<k>[\d.]+) ms "
                  r"\((?P<pct>[\d.]+)% of copy\), torch (?P<t>[\d.]+) ms, max err (?P<err>\S+)$")
_SWEEP = re.compile(r"sweep (?P<op>\S+?\])\s*(?P<shape>[\dx]+)\s+(?P<dtype>\w+)\s*(?P<geometry>\{.*\}) "
                    r"(?P<ms>[\d.]+) ms (?P<pct>[\d.]+)% of copy$")


def kernels_from_log(path: Path) -> dict | None:
    """The kernel benchmark's results as its log has them, row by row as measured: for a run its time limit cut
    short (no JSON then). ``partial`` marks them; None without a log or its first line (the copy bandwidth)."""
    try:
        text = path.read_text().splitlines()
    except OSError:
        return None
    head = next((m for line in text if (m := re.match(r"kernels on (.+): copy bandwidth ([\d.]+) GB/s$", line))),
                None)
    if head is None:
        return None
    results, sweep = [], []
    for line in text:
        if m := _ROW.match(line):
            k, t, pct = float(m["k"]), float(m["t"]), float(m["pct"])
            results.append({"op": m["op"], "shape": [int(v) for v in m["shape"].split("x")], "dtype": m["dtype"],
                            "kernel_ms": k, "torch_ms": t, "kernel_pct_of_copy": pct,
                            "torch_pct_of_copy": round(pct * k / t, 1), "speedup": round(t / k, 2),
                            "max_err": float(m["err"])})
        elif m := _SWEEP.match(line):
            sweep.append({"op": m["op"], "shape": [int(v) for v in m["shape"].split("x")], "dtype": m["dtype"],
                          **ast.literal_eval(m["geometry"]), "ms": float(m["ms"]), "pct_of_copy": float(m["pct"])})
    return {"gpu": head[1], "copy_gbps": float(head[2]), "results": results, "sweep": sweep, "partial": True}


def host_bound(results: list[dict], ratio: float = 1.15) -> list[str]:
    """One line per kernel case whose Python launches, back to back (``eager``), took ``ratio`` times the graph
    replay's time or more: there the host, not the kernel, set the pace of a caller without CUDA graphs."""
    timed = {(r["op"], tuple(r["shape"]), r["dtype"]): r for r in results}
    lines = []
    for r in results:
        if not r["op"].endswith(",eager]"):
            continue
        base = timed.get((r["op"].removesuffix(",eager]") + "]", tuple(r["shape"]), r["dtype"]))
        if base is not None and r["kernel_ms"] >= ratio * base["kernel_ms"]:
            lines.append(f"  host-bound from Python: {base['op']} {'x'.join(map(str, r['shape']))} {r['dtype']} "
                         f"{r['kernel_ms']:.3f} ms per eager launch vs {base['kernel_ms']:.3f} ms replayed")
    return lines


def every_t(results: list[dict], goal: float = 70.0) -> list[str]:
    """The shipped attention rows at every T (``kernels --frames``): one line per dtype and form (JIT, the
    plugin's PTX) with % of copy by T, and the T below the custom-op goal. Where other plugin PTX was timed
    (``aot,...`` rows: TensorRT's tactics, which an engine build times to keep the fastest), a line with the
    fastest of them at each T too."""
    table: dict = {}
    forms = {"": "JIT", "aot": "plugin PTX"}  # temporal_attention[h=N] and temporal_attention[h=N,aot]
    best = "plugin PTX, fastest tactic timed"
    for r in results:
        op, _, variant = r["op"].removesuffix("]").partition(",")
        if not op.startswith("temporal_attention["):
            continue
        if variant in forms:
            table.setdefault((r["dtype"], forms[variant]), {})[r["shape"][1]] = r["kernel_pct_of_copy"]
        if variant == "aot" or variant.startswith("aot,"):
            by_t = table.setdefault((r["dtype"], best), {})
            by_t[r["shape"][1]] = max(by_t.get(r["shape"][1], 0.0), r["kernel_pct_of_copy"])
    for dtype in {dtype for dtype, _ in table}:  # no other tactic timed: the shipped PTX's line says it all
        if table.get((dtype, best)) == table.get((dtype, forms["aot"])):
            table.pop((dtype, best), None)
    lines = []
    for (dtype, form), by_t in table.items():
        below = ", ".join(str(t) for t, pct in sorted(by_t.items()) if pct < goal)
        lines.append(f"  every T, {dtype} {form}: " + " ".join(f"{t}:{pct:.1f}" for t, pct in sorted(by_t.items()))
                     + (f"  below {goal:.0f}% at T = {below}" if below else f"  all >= {goal:.0f}%"))
    return lines


def summarise(out: Path) -> dict:
    result: dict = {"steps": (out / "steps.txt").read_text().splitlines() if (out / "steps.txt").exists() else []}
    tests = {}
    if (out / "gpu_tests.xml").exists():
        root = ET.parse(out / "gpu_tests.xml").getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        tests = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        tests["failed"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                           if c.find("failure") is not None or c.find("error") is not None]
    result["tests"] = tests
    for name in ("kernels", "kernels_frames", "gpu_model", "encoders", "tiles", "jobs", *_E2E):
        result[name] = _load(out / f"{name}.json")
    for name in ("kernels", "kernels_frames"):
        if result[name] is None:  # cut short by its time limit: the rows it measured, from its log
            result[name] = kernels_from_log(out / f"{name}.log")
    (out / "gpu_check.json").write_text(json_text(result))
    lines = [*result["steps"]]
    if tests:
        lines.append(f"tests: {tests['tests']} run, {tests['failures']} failed, {tests['errors']} errors, "
                     f"{tests['skipped']} skipped {' '.join(tests['failed'])}")
    model = result["gpu_model"]
    if model:
        lines.append(f"model {model['config']} LR {model['lr_size']} T={model['window']} on {model['device']}:")
        for k, r in model["variants"].items():
            lines.append(f"  {k:48s} {r['ms_per_window']:8.2f} ms/window {r['frames_per_s']:7.1f} fps "
                         f"{r['tflops']:6.1f} TFLOP/s ({100 * r['share_of_peak']:.1f}% of peak) "
                         f"x{r['speedup_vs_fp16_eager']:.2f} vs fp16 eager")
        for k, error in model.get("errors", {}).items():
            lines.append(f"  {k}: failed: {error}")
    kernels = result["kernels"]
    if kernels:
        lines.append(f"kernels on {kernels['gpu']} (copy {kernels['copy_gbps']:.0f} GB/s), % of copy bandwidth"
                     + (" (cut short: the rows its log has)" if kernels.get("partial") else "") + ":")
        for r in kernels["results"]:
            lines.append(f"  {r['op']:<30} {'x'.join(map(str, r['shape'])):<20} {r['dtype']:<8} kernel "
                         f"{r['kernel_ms']:7.3f} ms {r['kernel_pct_of_copy']:5.1f}%  torch {r['torch_ms']:7.3f} ms "
                         f"{r['torch_pct_of_copy']:5.1f}%  x{r['speedup']:.2f}  max err {r['max_err']:.1e}")
        lines.extend(fastest_variants(kernels["results"]))
        lines.extend(host_bound(kernels["results"]))
        best: dict = {}
        for r in kernels.get("sweep", []):
            key = (r["op"], tuple(r["shape"]), r.get("dtype", "float16"))
            if key not in best or r["ms"] < best[key]["ms"]:
                best[key] = r
        for (op, shape, dtype), r in best.items():
            geometry = {k: v for k, v in r.items() if k not in ("op", "shape", "dtype", "ms", "pct_of_copy")}
            lines.append(f"  sweep best {op} {'x'.join(map(str, shape))} {dtype}: {r['ms']:.3f} ms "
                         f"{r['pct_of_copy']:.1f}% of copy with {geometry}")
    frames = result["kernels_frames"]
    if frames:
        lines.append(f"attention at every T on {frames['gpu']} (copy {frames['copy_gbps']:.0f} GB/s), % of copy"
                     + (" (cut short)" if frames.get("partial") else "") + ":")
        lines.extend(every_t(frames["results"]))
    tiles = result["tiles"]
    if tiles:
        lines.append(f"tiles ({tiles['backend']}, LR {'x'.join(map(str, tiles['lr_size']))}, one window):")
        for r in tiles["rows"]:
            name = "untiled" if r["tile"] is None else "x".join(map(str, r["tile"]))
            name += "" if r["balanced"] else " plain"
            psnr = r["psnr_vs_untiled_db"]  # null: the frames equal the untiled ones (an infinite PSNR)
            lines.append(f"  {name:<16} {r['tiles_per_frame']:3d} tiles {r['ms_per_window']:9.2f} ms "
                         f"x{r['time_ratio']:.2f}  PSNR vs untiled {float('inf') if psnr is None else psnr:.1f} dB")
    jobs = result["jobs"]
    if jobs:
        lines.append(f"folder of {jobs['clips']} clips x {jobs['frames']} frames ({jobs['backend']}, x264 "
                     f"{jobs['preset']}): " + "; ".join(
                         f"--jobs {r['jobs']}: {r['fps']:.1f} fps x{r['speedup']:.2f}" for r in jobs["rows"]))
    encoders = result["encoders"]
    if encoders:
        lines.append(f"encoders ({encoders['cpus']} cpus, {encoders['frames']} frames {encoders['size']}, "
                     f"preset {encoders['preset']}): " + "; ".join(
                         f"{r['encoders']}: {r['fps']:.1f} fps {r['bytes'] / 1e6:.2f} MB PSNR-Y {r['psnr_y']:.2f}"
                         for r in encoders["results"]))
    for name in _E2E:
        e2e = result[name]
        if e2e:
            n, enc = e2e["frames"], (e2e.get("encode_only_s") or [float("nan")])[0]
            ser = (e2e.get("encode_serial_s") or [float("nan")])[0]
            rgb = e2e.get("end_to_end_rgb_s") or []
            lines.append(f"{name}: {e2e['backend']} {n} frames {e2e['lr_size']} preset {e2e.get('preset')}, "
                         f"concurrency {e2e.get('concurrency', 1)}, encoders {e2e.get('encoders', 1)}: "
                         f"inference {n / e2e['inference_median_s']:.1f} fps, end to end "
                         f"{n / e2e['end_to_end_median_s']:.1f} fps, encode alone {n / enc:.1f} "
                         f"fps (serial conversion {n / ser:.1f}), ratio {e2e['ratio']:.3f}"
                         + (f" (to the slowest stage alone, {e2e['slowest_stage']}: {e2e['stage_ratio']:.3f})"
                            if "stage_ratio" in e2e else "")
                         + (f"; RGB to the writer {n / sorted(rgb)[len(rgb) // 2]:.1f} fps" if rgb else "")
                         + (f"; decode alone {n / sorted(dec)[len(dec) // 2]:.1f} fps"
                            if (dec := e2e.get("decode_only_s")) else "")
                         + (f"; warm-up {e2e['warmup_s']:.1f} s" if e2e.get("warmup_s") else "")
                         + ("; busy " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in e2e["busy"].items())
                            if e2e.get("busy") else ""))
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    summarise(Path(sys.argv[1]))
