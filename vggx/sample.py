"""Write a sample clip to try vggx on: a held-out photograph under a moving camera, with a tone.

``python -m vggx.sample OUT.mp4 [--frames N] [--size HxW]`` — H.264 video at 24 fps plus an AAC audio
stream, made from a scikit-image photograph that training never sees (the same renderer as the
training data, BI-downscaled ×4, so the clip looks like real low-resolution footage).
"""

from __future__ import annotations

import argparse
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["write_sample_clip"]


def write_sample_clip(path: str | Path, frames: int = 48, size: tuple[int, int] = (144, 256),
                      fps: int = 24, seed: int = 7) -> Path:
    """Render and encode the sample clip; returns ``path``."""
    import av
    import torch

    from vggx.training.data import VAL_IMAGES, ClipSpec, load_images, make_clip

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = load_images(VAL_IMAGES[:1])[0]
    spec = ClipSpec(frames=frames, lr_size=size, max_speed=2.0, max_rotation=0.004, max_zoom=0.003)
    with torch.no_grad():
        clip = make_clip(image, spec, np.random.default_rng(seed), None)
    video = (clip.lr.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()
    rate = 48000
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[1], size[0], "yuv420p"
        vs.options = {"crf": "16"}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="144x256", help="HxW")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    print(write_sample_clip(args.out, args.frames, (h, w)))


if __name__ == "__main__":
    main()
