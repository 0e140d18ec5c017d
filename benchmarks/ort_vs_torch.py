"""ONNX Runtime (CPU) vs PyTorch eager (CPU) on the same model and the same uint8 window.

    python -m vggx.benchmarks.ort_vs_torch [--checkpoint P] [--onnx M.onnx] [--lr-size 180x320]
                                           [--threads 2] [--iters 5] [--json PATH]

Both run the full exported contract (uint8 ``[N, T, H, W, 3]`` in, uint8 out, pad/crop included):
ONNX Runtime the portable graph of :func:`vggx.export.export_onnx` (exported here unless ``--onnx``
is given), PyTorch ``UInt8Upscaler`` in eager mode with the plain op compositions (the same
graph the portable ONNX is traced from), both with the same thread count. The runs are
interleaved (ORT, torch, ORT, torch, ...) after a warm-up of each, so drift in the machine's load
hits both alike. Reported: median and p90 seconds per window, output frames/s, and the ratio of
the medians (PyTorch time / ORT time; > 1 = ORT faster). Each run's process CPU time is reported
too: on a shared machine it is the load-independent cost (ONNX Runtime's idle spinning is switched
off so that its CPU time is work, not waiting).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["BackendTiming", "main", "run_ort_vs_torch"]


@dataclass(frozen=True)
class BackendTiming:
    backend: str
    seconds: tuple[float, ...]  # per window, in run order
    cpu_seconds: tuple[float, ...]  # process CPU time per window (all threads)
    median_s: float
    p90_s: float
    frames_per_s: float  # output frames per second at the median
    median_cpu_s: float


def _timing(name: str, seconds: list[float], cpu: list[float], frames: int) -> BackendTiming:
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, int(np.ceil(0.9 * len(ordered))) - 1)]
    med = statistics.median(seconds)
    return BackendTiming(name, tuple(seconds), tuple(cpu), med, p90, frames / med, statistics.median(cpu))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_ort_vs_torch(
    checkpoint: Path | None, onnx_path: Path | None, lr_size: tuple[int, int], *, batch: int = 1,
    threads: int = 2, iters: int = 5, seed: int = 0,
) -> dict:
    """Time both backends on one random window; return a JSON-able report."""
    import onnxruntime as ort
    import torch

    from vggx.checkpoint import load_checkpoint
    from vggx.errors import ConfigError
    from vggx.export import ExportConfig, export_onnx
    from vggx.generator import UInt8Upscaler
    from vggx.plugins import reference_ops

    torch.set_num_threads(threads)
    ckpt = load_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_path is None:
            onnx_path = export_onnx(ckpt, Path(tmp) / "model.onnx", ExportConfig())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime's own (not an ONNX file, a graph it cannot run): one line
            raise ConfigError(f"ONNX Runtime cannot load {onnx_path}: {' '.join(str(exc).split())}") from None
    window = int(session.get_modelmeta().custom_metadata_map.get("window", ckpt.config.window))
    frames = np.random.default_rng(seed).integers(0, 256, (batch, window, *lr_size, 3), dtype=np.uint8)
    model = UInt8Upscaler(ckpt.generator).eval()
    x = torch.from_numpy(frames)

    def run_ort() -> np.ndarray:
        return session.run(None, {"lr": frames})[0]

    def run_torch() -> np.ndarray:
        with torch.no_grad(), reference_ops():
            return model(x).numpy()

    a, b = run_ort(), run_torch()  # warm-up, and the outputs must agree
    max_diff = int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
    times: dict[str, list[float]] = {"onnxruntime": [], "torch": []}
    cpu: dict[str, list[float]] = {"onnxruntime": [], "torch": []}
    for _ in range(iters):
        for name, fn in (("onnxruntime", run_ort), ("torch", run_torch)):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    out_frames = batch * window
    ort_t, torch_t = (_timing(n, times[n], cpu[n], out_frames) for n in ("onnxruntime", "torch"))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
                    "python": platform.python_version()},
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
        "input": {"shape": list(frames.shape), "dtype": "uint8", "threads": threads, "iters": iters},
        "model": ckpt.metadata.get("name", ckpt.config.name),
        "max_abs_diff_levels": max_diff,
        "onnxruntime": asdict(ort_t),
        "torch": asdict(torch_t),
        "ratio_torch_over_ort": torch_t.median_s / ort_t.median_s,
        "cpu_ratio_torch_over_ort": torch_t.median_cpu_s / ort_t.median_cpu_s,
    }


def main(argv: list[str] | None = None) -> int:
    from vggx.errors import ConfigError, VggxError
    from vggx.shapes import parse_size

    ap = argparse.ArgumentParser(prog="python -m vggx.benchmarks.ort_vs_torch", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, help="default: the shipped checkpoint")
    ap.add_argument("--onnx", type=Path, help="portable ONNX of that checkpoint (default: export one)")
    ap.add_argument("--lr-size", default="180x320")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    from vggx.cli import check_json_path

    try:
        # checked before any work (--iters 0, --threads 0 and --batch 0 were tracebacks from torch or numpy, a
        # missing --onnx one from ONNX Runtime after the checkpoint had loaded)
        for flag, value in (("--batch", a.batch), ("--threads", a.threads), ("--iters", a.iters)):
            if value < 1:
                raise ConfigError(f"{flag} must be >= 1, got {value}")
        if a.onnx is not None and not a.onnx.is_file():
            raise ConfigError(f"--onnx {a.onnx}: no such file")
        check_json_path(a.json)
        report = run_ort_vs_torch(a.checkpoint, a.onnx, parse_size(a.lr_size), batch=a.batch,
                                  threads=a.threads, iters=a.iters)
    except VggxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # the arguments given (a caller's, not the process's: sys.argv is pytest's under a test)
    report = {"command": "python -m vggx.benchmarks.ort_vs_torch " + " ".join(argv if argv is not None
                                                                             else sys.argv[1:]), **report}
    for name in ("onnxruntime", "torch"):
        t = report[name]
        print(f"{name:12s} median {t['median_s']:.3f} s/window  p90 {t['p90_s']:.3f}  "
              f"{t['frames_per_s']:.2f} output frames/s  CPU {t['median_cpu_s']:.2f} s/window")
    print(f"ratio (torch / onnxruntime): wall {report['ratio_torch_over_ort']:.2f}x, "
          f"CPU {report['cpu_ratio_torch_over_ort']:.2f}x   max |diff| {report['max_abs_diff_levels']} levels")
    print(json.dumps({k: report[k] for k in ("date", "machine", "versions", "input")}))
    if a.json:
        from vggx.paths import json_text

        a.json.write_text(json_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
