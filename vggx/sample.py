"""Write a sample clip to try vggx on: a held-out photograph under a panning camera, with a tone.

``python -m vggx.sample OUT.mp4 [--frames N] [--size HxW]`` — H.264 video at 24 fps plus an AAC audio
stream, made from a scikit-image photograph that training never sees, panned at its native
resolution and BI-downscaled ×4 (the evaluation protocol), so the clip looks like real
low-resolution footage with a known ×4 original.
"""

from __future__ import annotations

import argparse
import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["write_h264_with_tone", "write_sample_clip"]


def write_sample_clip(path: str | Path, frames: int = 48, size: tuple[int, int] = (96, 144),
                      fps: int = 24, ground_truth: bool = False) -> Path:
    """Render and encode the sample clip; returns ``path``.

    ``ground_truth``: write the ×4 original instead (lossless FFV1 in a ``.mkv``), the reference that
    ``vggx evaluate`` downscales itself.
    """
    import torch

    from vggx.training.data import _render, bicubic_downscale, load_images

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # "rocket" is held out of training. The camera pans across it at its native resolution (no
    # resampling blur beyond the sub-pixel shift), drifting down a little; LR = the BI degradation.
    image = load_images(("rocket",))[0]
    hr_h, hr_w = size[0] * 4, size[1] * 4
    src_h, src_w = image.shape[-2:]
    if hr_h + 16 > src_h or hr_w + 16 > src_w:
        raise ValueError(f"sample size {size} is too large for the {src_h}x{src_w} source")
    vx = min(1.3, (src_w - hr_w - 8) / frames)
    vy = min(0.3, (src_h - hr_h - 8) / frames)
    mats = [np.array([[1.0, 0, 4 + vx * i], [0, 1.0, 4 + vy * i], [0, 0, 1.0]]) for i in range(frames)]
    with torch.no_grad():
        hr = _render(image, mats, (hr_h, hr_w))
        frames_out = hr if ground_truth else bicubic_downscale(hr, 4).clamp(0, 1)
    video = (frames_out.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    if ground_truth:
        return _write_lossless(path, video, fps)
    return write_h264_with_tone(path, video, fps, crf=16)


def write_h264_with_tone(path: str | Path, video: np.ndarray, fps: int = 24, crf: int = 16) -> Path:
    """``video`` (uint8 RGB ``(n, h, w, 3)``) as H.264 (CRF ``crf``) in MP4 with as long an AAC tone (440 Hz, mono);
    written under a temporary name and renamed."""
    import av

    path = Path(path)
    frames = len(video)
    rate = 48000
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
        vs.options = {"crf": str(crf)}
        aus = out.add_stream("aac", rate=rate)
        aus.layout = "mono"
        for frame in video:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        samples = int(rate * frames / fps)
        t = np.arange(samples) / rate
        tone = (0.2 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
        step = 1024
        for i in range(0, samples, step):
            chunk = tone[i:i + step][None]
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            af.sample_rate = rate
            af.pts = i
            af.time_base = Fraction(1, rate)
            for pkt in aus.encode(af):
                out.mux(pkt)
        for pkt in aus.encode():
            out.mux(pkt)
    tmp.replace(path)
    return path


def _write_lossless(path: Path, video: np.ndarray, fps: int) -> Path:
    import av

    if path.suffix != ".mkv":
        raise ValueError("the ground truth is written losslessly (FFV1): use a .mkv path")
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="matroska") as out:
        vs = out.add_stream("ffv1", rate=fps)
        vs.width, vs.height, vs.pix_fmt = video.shape[2], video.shape[1], "bgr0"
        for frame in video:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    tmp.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="96x144", help="LR HxW (at most 100x152: the source is 427x640)")
    parser.add_argument("--ground-truth", action="store_true",
                        help="write the x4 original (lossless .mkv) instead, for `vggx evaluate`")
    args = parser.parse_args()
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size {args.size}: give HxW, e.g. 96x144")
    from vggx.errors import VggxError

    try:
        print(write_sample_clip(args.out, args.frames, (h, w), ground_truth=args.ground_truth))
    except (VggxError, ValueError, OSError) as exc:  # one line, as the vggx command says its errors
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
