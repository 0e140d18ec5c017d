"""What windows across a scene cut cost, and what finding the cuts costs: the shipped model on two-shot clips with a
known ×4 original, upscaled with the cuts found (each shot windowed on its own) and without (windows across them).

    python -m vggx.benchmarks.scene_cuts [--frames N] [--cuts 9,10,11,12] [--backend onnxruntime|torch]
        [--device cpu|cuda] [--checkpoint P] [--threads N] [--json PATH]

Each clip: a photograph panned one way, then a hard cut to another panned another way (scikit-image's held-out
"coffee", "rocket" and "camera", in the three orders), BI-downscaled ×4 as in training. The cut is put at each
frame of ``--cuts`` (every phase of the window stride, so that it falls at each place in a window). For each clip
and mode: the PSNR against the original of the two frames either side of the cut and of the whole clip, and the
largest difference between the two modes' frames. Then whether the detector found exactly the cut (and nothing in
the same pans without one), and its time per frame at two frame sizes.
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

__all__ = ["detector_ms", "main", "measure_scene_cuts", "pan_clip"]

PAIRS = (("coffee", "rocket"), ("rocket", "camera"), ("camera", "coffee"))
HR = (320, 448)  # fits every one of the three photographs with the pan


def pan_clip(name: str, frames: int, velocity: tuple[float, float], hr: tuple[int, int] = HR):
    """``(lr, hr)`` uint8 ``(frames, h, w, 3)``: photograph ``name`` panned ``velocity`` (x, y) HR pixels a frame,
    and its BI ×4 downscale."""
    import torch

    from vggx.training.data import _render, bicubic_downscale, load_images

    image = load_images((name,))[0]
    vx, vy = velocity
    x0 = 4 + max(0.0, -vx) * frames
    mats = [np.array([[1.0, 0, x0 + vx * i], [0, 1.0, 4 + vy * i], [0, 0, 1.0]]) for i in range(frames)]
    with torch.no_grad():
        high = _render(image, mats, hr)
        low = bicubic_downscale(high, 4).clamp(0, 1)

    def u8(t):
        return (t.permute(0, 2, 3, 1) * 255).round().byte().numpy()

    return u8(low), u8(high)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def detector_ms(size: tuple[int, int], frames: int = 50) -> float:
    """Milliseconds the scene-cut detector takes a frame of ``size`` scdet scores (a new frame each time)."""
    from vggx.video.scenes import SceneCuts

    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (8, *size, 3), dtype=np.uint8)
    detect = SceneCuts()
    detect(clip[0])
    t0 = time.perf_counter()
    for i in range(frames):
        detect(clip[i % 8])
    return (time.perf_counter() - t0) / frames * 1e3


def measure_scene_cuts(runner, frames: int = 24, cuts: tuple[int, ...] = (9, 10, 11, 12)) -> dict:
    from vggx.client import upscale_clip
    from vggx.video.scenes import SceneCuts

    rows = []
    false_cuts = 0
    for first, second in PAIRS:
        lr_a, hr_a = pan_clip(first, frames, (1.2, 0.3))
        lr_b, hr_b = pan_clip(second, frames, (-1.0, 0.2))
        for clip in (lr_a, lr_b):  # one shot each: no cut to find
            detect = SceneCuts()
            false_cuts += sum(detect(f) for f in clip)
        for cut in cuts:
            lr = np.concatenate([lr_a[:cut], lr_b[cut:]])
            hr = np.concatenate([hr_a[:cut], hr_b[cut:]])
            detect = SceneCuts()
            found = [i for i, f in enumerate(lr) if detect(f)]
            shots = np.stack(list(upscale_clip(runner, lr)))
            across = np.stack(list(upscale_clip(runner, lr, scene_threshold=None)))
            near = slice(cut - 2, cut + 2)
            rows.append({
                "clip": f"{first}->{second}", "cut": cut, "found": found, "score": round(detect.scores[cut], 2),
                "psnr_near_cut_db": {"shots": round(_psnr(shots[near], hr[near]), 3),
                                     "across": round(_psnr(across[near], hr[near]), 3)},
                "psnr_clip_db": {"shots": round(_psnr(shots, hr), 3), "across": round(_psnr(across, hr), 3)},
                "max_diff_near_cut": int(np.abs(shots[near].astype(np.int16) - across[near]).max()),
                "frames_that_differ": [int(i) for i in np.flatnonzero((shots != across).any(axis=(1, 2, 3)))],
            })
    gain = [r["psnr_near_cut_db"]["shots"] - r["psnr_near_cut_db"]["across"] for r in rows]
    gain_clip = [r["psnr_clip_db"]["shots"] - r["psnr_clip_db"]["across"] for r in rows]
    return {
        "backend": runner.description, "window": runner.info.window, "frames": frames,
        "lr_size": [HR[0] // 4, HR[1] // 4],
        "rows": rows,
        "summary": {
            "cuts_found_exactly": sum(r["found"] == [r["cut"]] for r in rows), "clips": len(rows),
            "false_cuts_in_single_shots": int(false_cuts),
            "psnr_gain_near_cut_db": {"mean": round(statistics.mean(gain), 3), "min": round(min(gain), 3),
                                      "max": round(max(gain), 3)},
            "psnr_gain_clip_db": {"mean": round(statistics.mean(gain_clip), 3)},
            "detector_ms_per_frame": {"180x320": round(detector_ms((180, 320)), 3),
                                      "540x960": round(detector_ms((540, 960)), 3)},
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.scene_cuts", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--cuts", default="9,10,11,12", help="comma-separated frames the second shot starts at")
    add_runner_options(p)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from vggx.client import open_runner

    try:
        cuts = tuple(int(c) for c in args.cuts.split(","))
        if not all(2 <= c < args.frames - 1 for c in cuts):
            raise VggxError(f"--cuts must be in 2..{args.frames - 2} for {args.frames} frames, got {args.cuts}")
        config = runner_config(args)
        with open_runner(config) as runner:
            result = measure_scene_cuts(runner, args.frames, cuts)
    except VggxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stamp(result, "scene_cuts", argv)
    print(f"{result['backend']}, LR {result['lr_size'][0]}x{result['lr_size'][1]}, window {result['window']}, "
          f"{result['frames']} frames a clip")
    print(f"{'clip':<18}{'cut':>4}  {'found':<8}{'score':>7}   PSNR at the cut: shots / across   clip: shots / across"
          "   max diff")
    for r in result["rows"]:
        near, whole = r["psnr_near_cut_db"], r["psnr_clip_db"]
        print(f"{r['clip']:<18}{r['cut']:>4}  {','.join(map(str, r['found'])) or '-':<8}{r['score']:>7.1f}   "
              f"{near['shots']:>8.2f} / {near['across']:<8.2f}          "
              f"{whole['shots']:>6.2f} / {whole['across']:<8.2f}"
              f"{r['max_diff_near_cut']:>6}")
    s = result["summary"]
    g = s["psnr_gain_near_cut_db"]
    print(f"cuts found exactly: {s['cuts_found_exactly']}/{s['clips']}; false cuts in single shots: "
          f"{s['false_cuts_in_single_shots']}")
    print(f"PSNR gain of the frames either side of the cut: mean {g['mean']:+.2f} dB (min {g['min']:+.2f}, max "
          f"{g['max']:+.2f}); whole clip {s['psnr_gain_clip_db']['mean']:+.3f} dB")
    print("detector: " + ", ".join(f"{k} {v:.2f} ms/frame" for k, v in s["detector_ms_per_frame"].items()))
    if args.json:
        args.json.write_text(json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
