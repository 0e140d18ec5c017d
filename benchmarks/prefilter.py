"""What a denoiser before the model (``vggx upscale --vf``) does for a noisy source, measured against the truth.

    python -m vggx.benchmarks.prefilter [--frames N] [--noise 0,4,8,12] [--filters 'atadenoise;nlmeans=s=3']
        [--cost-frames 12] [--backend onnxruntime|torch] [--device cpu|cuda] [--checkpoint P] [--threads N]
        [--json PATH]

The clips: the validation photographs (``vggx.training.data.VAL_IMAGES``) moving as the training clips move, rendered
at 4x (the truth) and downscaled with bicubic to 72x128, with Gaussian noise of each ``--noise`` level (8-bit levels,
standard deviation; the shipped model was trained with up to 5), stored lossless (FFV1) so that no encoder adds its
own. Each is upscaled by the same runner without filters and through each ``--filters`` chain (FFmpeg's, as
``--vf`` takes it), into lossless FFV1. Reported: the PSNR of each output against the truth (RGB, all frames) and its
gain over the unfiltered run; and what each chain costs a frame of 1080p (12 frames of H.264 read through it by
``vggx.video.open_video``, less the same read without it; the model's time is the same either way).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vggx.errors import VggxError
from vggx.paths import json_text

from .bench import add_runner_options, runner_config, stamp

__all__ = ["main", "measure_prefilter", "noisy_clips"]

LR = (72, 128)
DEFAULT_FILTERS = ("atadenoise", "nlmeans=s=3", "nlmeans=s=6", "fftdnoiz=sigma=6", "fftdnoiz=sigma=10")


def noisy_clips(folder: Path, frames: int, levels: tuple[float, ...]) -> tuple[np.ndarray, dict[float, Path]]:
    """The truth (uint8 ``(n, 4h, 4w, 3)``, the clips of every validation image one after the other) and, by noise
    level, the FFV1 file of its bicubic downscale with that much noise (see the module doc)."""
    import av
    import torch

    from vggx.training.data import VAL_IMAGES, ClipSpec, load_images, make_clip

    rng = np.random.default_rng(0)
    spec = ClipSpec(frames=frames, lr_size=LR)
    hr, lr = [], []
    for image in load_images(VAL_IMAGES):
        clip = make_clip(image, spec, rng)
        hr.append(clip.hr)
        lr.append(clip.lr)
    def to_u8(clips: list) -> np.ndarray:
        return (torch.cat(clips).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()

    truth, clean = to_u8(hr), to_u8(lr)
    files = {}
    for level in levels:
        noise = np.random.default_rng(1).normal(0, level, clean.shape) if level else 0
        frames_ = np.clip(clean + noise, 0, 255).round().astype(np.uint8)
        path = folder / f"noise{level:g}.mkv"
        with av.open(str(path), "w") as c:
            s = c.add_stream("ffv1", rate=24)
            s.height, s.width, s.pix_fmt = *LR, "bgr0"
            for f in frames_:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        files[level] = path
    return truth, files


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255 ** 2 / mse) if mse > 0 else float("inf")


def measure_prefilter(runner, frames: int = 16, levels: tuple[float, ...] = (0, 4, 8, 12),
                      filters: tuple[str, ...] = DEFAULT_FILTERS, cost_frames: int = 12) -> dict:
    import av

    from vggx.client import UpscaleConfig, upscale
    from vggx.video import EncodeConfig

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        truth, files = noisy_clips(Path(tmp), frames, levels)
        for level, clip in files.items():
            base = None
            for chain in (None, *filters):
                out = Path(tmp) / "out.mkv"
                t0 = time.perf_counter()
                upscale(UpscaleConfig(clip, out, encode=EncodeConfig("ffv1"), filters=chain), runner=runner)
                seconds = time.perf_counter() - t0
                with av.open(str(out)) as c:
                    sr = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
                out.unlink()
                if sr.shape != truth.shape:
                    raise VggxError(f"{chain}: {sr.shape} frames out, not the truth's {truth.shape}")
                row = {"noise": level, "filters": chain, "psnr": round(_psnr(sr, truth), 3),
                       "seconds": round(seconds, 3)}
                if base is None:
                    base = row
                else:
                    row["gain_db"] = round(row["psnr"] - base["psnr"], 3)
                rows.append(row)
        cost = _cost_1080p(Path(tmp), filters, cost_frames)
    return {"backend": runner.description, "frames": len(truth), "lr": list(LR), "rows": rows,
            "ms_per_1080p_frame": cost}


def _cost_1080p(folder: Path, filters: tuple[str, ...], frames: int = 12) -> dict[str, float]:
    """Milliseconds each chain adds to reading a frame of 1080p H.264 (see the module doc)."""
    import av

    from vggx.video import open_video

    clip = folder / "1080p.mp4"
    rng = np.random.default_rng(2)
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.height, s.width, s.pix_fmt, s.options = 1080, 1920, "yuv420p", {"preset": "ultrafast"}
        base = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
        for i in range(frames):
            for p in s.encode(av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)

    def read(chain: str | None) -> float:
        t0 = time.perf_counter()
        with open_video(clip, filters=chain) as reader:
            for _ in reader:
                pass
        return time.perf_counter() - t0

    plain = min(read(None) for _ in range(2))
    return {chain: round(1000 * (read(chain) - plain) / frames, 1) for chain in filters}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.prefilter", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=16, help="frames a validation image moves for")
    p.add_argument("--noise", default="0,4,8,12", help="noise levels (8-bit levels, standard deviation)")
    p.add_argument("--cost-frames", type=int, default=12, help="1080p frames read through each chain")
    p.add_argument("--filters", default=";".join(DEFAULT_FILTERS),
                   help="the --vf chains compared, separated by semicolons")
    add_runner_options(p)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from vggx.client import open_runner

    try:
        levels = tuple(float(v) for v in args.noise.split(","))
        filters = tuple(f for f in args.filters.split(";") if f.strip())
        with open_runner(runner_config(args)) as runner:
            result = measure_prefilter(runner, args.frames, levels, filters, args.cost_frames)
    except (VggxError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stamp(result, "prefilter", argv)
    print(f"{result['backend']}, {result['frames']} frames of {LR[1]}x{LR[0]} x4, PSNR against the truth")
    for row in result["rows"]:
        name = row["filters"] or "(no filter)"
        gain = f"  {row['gain_db']:+.2f} dB" if "gain_db" in row else ""
        print(f"noise {row['noise']:>4g}  {name:<22} {row['psnr']:6.2f} dB{gain}")
    for chain, ms in result["ms_per_1080p_frame"].items():
        print(f"{chain:<22} {ms:8.1f} ms a 1080p frame (on reading it)")
    if args.json:
        args.json.write_text(json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
