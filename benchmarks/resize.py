"""What ``vggx upscale --outscale/--height`` costs the encoder's conversion: the writer's own per-frame conversion
(the one its threads run ahead of the encoder) with and without a resize, side by side.

    python -m vggx.benchmarks.resize [--lr-size HxW] [--outscale F] [--frames N] [--repeats R] [--json PATH]

For a model output of 4 x ``--lr-size`` (a textured, moving test frame), times per frame on one thread:
RGB -> yuv420p at the model's size (what a plain run does), RGB -> yuv420p resized to ``--outscale`` x the LR
size (Lanczos, one swscale pass), and yuv420p planes resized (the CUDA path, whose GPU converts to yuv420p).
The encoder itself then encodes ``outscale^2 / 16`` of the pixels, which this does not time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from vggx.errors import VggxError
from vggx.paths import json_text
from vggx.shapes import parse_size
from vggx.video import EncodeConfig, VideoWriter
from vggx.video.color import rgb_to_yuv420p

from .bench import stamp

__all__ = ["main", "measure_resize"]


def _frame(h: int, w: int, seed: int) -> np.ndarray:
    """A textured RGB frame (smooth gradients, edges and noise: swscale's cost does not depend on content)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x // 16 + y // 16) % 2) * 200], -1)
    return np.clip(base + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)


def _ms_per_frame(writer: VideoWriter, frames: list[np.ndarray], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for f in frames:
            writer._convert(f)  # the writer's own conversion, as its threads run it
        times.append((time.perf_counter() - t0) / len(frames) * 1e3)
    return statistics.median(times)


def measure_resize(lr_size: tuple[int, int], outscale: float, frames: int = 8, repeats: int = 3) -> dict:
    """ms per frame of the three conversions (see the module doc), and the resized ones' ratio to the plain one."""
    import torch

    h, w = 4 * lr_size[0], 4 * lr_size[1]
    oh, ow = 2 * round(lr_size[0] * outscale / 2), 2 * round(lr_size[1] * outscale / 2)
    rgb = [_frame(h, w, i) for i in range(frames)]
    yuv = [rgb_to_yuv420p(torch.from_numpy(f)[None]).numpy()[0] for f in rgb]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, size, images in (("rgb_plain", (h, w), rgb), ("rgb_resized", (oh, ow), rgb),
                                   ("yuv420p_resized", (oh, ow), yuv)):
            writer = VideoWriter(Path(tmp) / f"{name}.mp4", size[1], size[0], Fraction(24), Fraction(1, 24),
                                 EncodeConfig(convert_threads=0))
            try:
                rows[name] = round(_ms_per_frame(writer, images, repeats), 3)
            finally:
                writer.abort()
    return {
        "model_output": [h, w], "written": [oh, ow], "ms_per_frame": rows,
        "ratio_to_plain": {k: round(v / rows["rgb_plain"], 3) for k, v in rows.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.resize", description=__doc__.splitlines()[0])
    p.add_argument("--lr-size", default="540x960", help="HxW of the model's input (its output is 4x)")
    p.add_argument("--outscale", type=float, default=2.0)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    try:
        result = measure_resize(parse_size(args.lr_size), args.outscale, args.frames, args.repeats)
    except VggxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stamp(result, "resize", argv)
    h, w = result["model_output"]
    oh, ow = result["written"]
    for name, ms in result["ms_per_frame"].items():
        size = f"{w}x{h}" if name == "rgb_plain" else f"{w}x{h} -> {ow}x{oh}"
        print(f"{name:<17}{size:<24}{ms:>9.2f} ms/frame  x{result['ratio_to_plain'][name]:.2f}")
    if args.json:
        args.json.write_text(json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
