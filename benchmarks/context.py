"""What ``vggx upscale --context`` trades: frames of temporal context each window keeps on each side, against the
time per output frame and the seams between windows.

    python -m vggx.benchmarks.context [--contexts 0,1,2,3] [--frames N] [--backend onnxruntime|torch]
        [--device cpu|cuda] [--checkpoint P] [--threads N] [--json PATH]

A window of T frames keeps its centre ``T - 2c`` frames, so more context means more windows (time) and frames that
see more of their neighbours. Consecutive output frames that come from two windows are a seam: the temporal error
(``vggx.training.metrics.temporal_error``: how far the frame-to-frame change is from the original's, in levels) of
those pairs against the pairs inside a window shows how much the seams flicker. The clips are scikit-image's
held-out photographs panned (as ``benchmarks/scene_cuts.py``), BI-downscaled ×4, with their originals.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from vggx.errors import VggxError
from vggx.paths import json_text

from .bench import add_runner_options, runner_config, stamp
from .scene_cuts import pan_clip

__all__ = ["main", "measure_context"]

CLIPS = (("rocket", (1.2, 0.3)), ("coffee", (-1.0, 0.4)), ("camera", (0.7, -0.2)))


def _pair_errors(out: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """Mean absolute error (levels) of each consecutive pair's change against the original's."""
    return np.abs(np.diff(out.astype(np.float64), axis=0) - np.diff(hr.astype(np.float64), axis=0)).mean(
        axis=(1, 2, 3))


def measure_context(runner, contexts: tuple[int, ...], frames: int = 32) -> dict:
    from vggx.client import upscale_clip
    from vggx.client.windows import windows_needed

    window = runner.info.window
    clips = [pan_clip(name, frames, velocity) for name, velocity in CLIPS]
    rows = []
    for c in contexts:
        stride = window - 2 * c
        seam, inner, psnr, seconds = [], [], [], []
        for lr, hr in clips:
            t0 = time.perf_counter()
            out = np.stack(list(upscale_clip(runner, lr, context=c, scene_threshold=None)))
            seconds.append(time.perf_counter() - t0)
            errors = _pair_errors(out, hr)
            starts = {k * stride for k in range(1, windows_needed(frames, window, c))}  # frames that start a window
            seam += [e for i, e in enumerate(errors) if i + 1 in starts]
            inner += [e for i, e in enumerate(errors) if i + 1 not in starts]
            mse = float(np.mean((out.astype(np.float64) - hr) ** 2))
            psnr.append(10 * np.log10(255.0**2 / mse))
        rows.append({
            "context": c, "kept_per_window": stride, "windows": windows_needed(frames, window, c),
            "ms_per_frame": round(statistics.median(seconds) / frames * 1e3, 1),
            "temporal_error_seam": round(float(np.mean(seam)), 4) if seam else None,
            "temporal_error_inside": round(float(np.mean(inner)), 4),
            "psnr_db": round(float(np.mean(psnr)), 3),
        })
    base = next((r for r in rows if r["context"] == window // 4), rows[0])
    for r in rows:
        r["time_ratio"] = round(r["ms_per_frame"] / base["ms_per_frame"], 2)
        if r["temporal_error_seam"] is not None:
            r["seam_excess"] = round(r["temporal_error_seam"] / r["temporal_error_inside"] - 1, 4)
    return {"backend": runner.description, "window": window, "frames": frames,
            "lr_size": list(clips[0][0].shape[1:3]), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.context", description=__doc__.splitlines()[0])
    p.add_argument("--contexts", default="0,1,2,3", help="comma-separated frames of context per side")
    p.add_argument("--frames", type=int, default=32)
    add_runner_options(p)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from vggx.client import open_runner

    try:
        contexts = tuple(int(c) for c in args.contexts.split(","))
        config = runner_config(args)
        with open_runner(config) as runner:
            limit = (runner.info.window - 1) // 2
            if not all(0 <= c <= limit for c in contexts):
                raise VggxError(f"--contexts must be in 0..{limit} for window {runner.info.window}, got "
                                f"{args.contexts}")
            result = measure_context(runner, contexts, args.frames)
    except (VggxError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stamp(result, "context", argv)
    print(f"{result['backend']}, LR {result['lr_size'][0]}x{result['lr_size'][1]}, window {result['window']}, "
          f"{result['frames']} frames x {len(CLIPS)} clips")
    print("context  kept  ms/frame   time   temporal error: seams / inside (excess)   PSNR")
    for r in result["rows"]:
        seam = "-" if r["temporal_error_seam"] is None else f"{r['temporal_error_seam']:.3f}"
        excess = f"{100 * r['seam_excess']:+.1f}%" if "seam_excess" in r else ""
        print(f"{r['context']:>7} {r['kept_per_window']:>5} {r['ms_per_frame']:>9.1f} {r['time_ratio']:>6.2f}x"
              f"   {seam:>6} / {r['temporal_error_inside']:.3f} ({excess})"
              f"{r['psnr_db']:>20.2f}")
    if args.json:
        args.json.write_text(json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
