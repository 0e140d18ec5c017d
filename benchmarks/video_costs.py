"""What the small per-frame and per-run steps around the model cost, measured: the figures the README quotes for them.

    python -m vggx.benchmarks.video_costs [--size 1080x1920] [--repeats 5] [--json PATH]

- ``--vf`` probe: what a chain does to the frames is found by made-up frames of the input's kind through it before any
  work (``FilterChain.probe``); timed for a fast chain (``scale=960:-2``) and a slow one (``nlmeans=s=3``).
- PNG's ``compression_level=1`` against FFmpeg's default (zlib level 6), one frame of ``--size`` (scikit-image's
  ``coffee`` photograph resized to it, Lanczos), 8-bit (rgb24) and 16-bit (rgb48be): encode time and bytes.
- The interlacing check (FFmpeg's ``idet`` on each of the first frames decoded, ``_FieldCheck``): time a frame.
- The scene-cut detector at half ``--size`` each way (what ``vggx upscale`` runs on its input's frames): a frame
  scdet scores, and a repeat (within 1 % of the last frame scored: the ``mafd`` test alone).
- x265's and SVT-AV1's banners: the lines each prints on standard error as one encoder opens and closes, in a fresh
  process with their own default log levels (what vggx keeps off standard error).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from vggx.errors import ConfigError, VggxError
from vggx.paths import json_text

from .bench import stamp

__all__ = ["banner_lines", "main", "measure_idet", "measure_png", "measure_probe", "measure_scene_detector"]

PROBE_CHAINS = ("scale=960:-2", "nlmeans=s=3")


def _timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _photo(width: int, height: int) -> np.ndarray:
    """scikit-image's ``coffee`` resized to ``width`` x ``height`` (Lanczos), uint8 RGB."""
    import av
    from skimage import data

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(data.coffee()), format="rgb24")
    return frame.reformat(width=width, height=height, interpolation="LANCZOS").to_ndarray()


def measure_probe(width: int, height: int, chains: tuple[str, ...] = PROBE_CHAINS, repeats: int = 3) -> list[dict]:
    """Seconds each ``--vf`` chain's probe takes on frames of ``width`` x ``height`` yuv420p at 25 fps (median)."""
    from vggx.video.filters import FilterChain

    rows = []
    for text in chains:
        chain = FilterChain.parse(text)
        seconds = _timed(lambda c=chain: c.probe(width, height, "yuv420p", Fraction(1, 25), Fraction(25)), repeats)
        rows.append({"chain": text, "seconds": round(seconds, 3)})
    return rows


def _png_bytes_and_time(image: np.ndarray, options: dict[str, str], repeats: int) -> tuple[int, float]:
    import av

    if image.dtype == np.uint16:  # PNG stores 16-bit samples big-endian, as vggx's 16-bit PNG frames are given
        frame, pix_fmt = av.VideoFrame.from_ndarray(image, format="rgb48le").reformat(format="rgb48be"), "rgb48be"
    else:
        frame, pix_fmt = av.VideoFrame.from_ndarray(image, format="rgb24"), "rgb24"
    sizes = []

    def encode():
        ctx = av.CodecContext.create("png", "w")
        ctx.width, ctx.height, ctx.pix_fmt = image.shape[1], image.shape[0], pix_fmt
        ctx.time_base = Fraction(1, 25)
        ctx.options = dict(options)
        ctx.open()
        packets = ctx.encode(frame) + ctx.encode(None)
        sizes.append(sum(p.size for p in packets))

    seconds = _timed(encode, repeats)
    return sizes[-1], seconds


def measure_png(width: int, height: int, repeats: int = 5) -> list[dict]:
    """One row per bit depth: PNG bytes and encode ms of one frame at FFmpeg's default and at compression_level=1."""
    image8 = _photo(width, height)
    rng = np.random.default_rng(0)  # 16-bit: the photo's levels x 257 plus the low bits a 10-bit source would fill
    image16 = (image8.astype(np.uint16) * 257 + rng.integers(0, 64, image8.shape, dtype=np.uint16) * 4)
    rows = []
    for depth, image in ((8, image8), (16, image16)):
        default_bytes, default_s = _png_bytes_and_time(image, {}, repeats)
        fast_bytes, fast_s = _png_bytes_and_time(image, {"compression_level": "1"}, repeats)
        rows.append({"bits": depth, "default": {"bytes": default_bytes, "ms": round(default_s * 1e3, 1)},
                     "compression_level_1": {"bytes": fast_bytes, "ms": round(fast_s * 1e3, 1)},
                     "speedup": round(default_s / fast_s, 2),
                     "more_bytes_percent": round((fast_bytes / default_bytes - 1) * 100, 1)})
    return rows


def measure_idet(width: int, height: int, frames: int = 40) -> float:
    """Milliseconds ``_FieldCheck`` (FFmpeg's idet) takes a decoded frame of ``width`` x ``height`` (median)."""
    import tempfile

    import av

    from vggx.video.decode import _FieldCheck

    image = _photo(width, height)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.nut"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("rawvideo", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(frames):
                shifted = np.roll(image, 3 * i, axis=1)  # moving, so idet has motion to judge
                out.mux(stream.encode(av.VideoFrame.from_ndarray(shifted, format="rgb24").reformat(format="yuv420p")))
            out.mux(stream.encode(None))
        with av.open(str(path)) as src:
            stream = src.streams.video[0]
            check = _FieldCheck(stream)
            times = []
            for frame in src.decode(stream):
                t0 = time.perf_counter()
                check.push(frame)
                times.append(time.perf_counter() - t0)
    if check.frames != frames:
        raise RuntimeError(f"idet looked at {check.frames} of {frames} frames")
    return round(statistics.median(times) * 1e3, 3)


def measure_scene_detector(width: int, height: int, frames: int = 50) -> dict:
    """Milliseconds the scene-cut detector takes a ``width`` x ``height`` frame: one scdet scores (``scene_cuts``'
    timing), and a repeat (the same frame again: the 1 % test alone)."""
    from vggx.video.scenes import SceneCuts

    from .scene_cuts import detector_ms

    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    detect = SceneCuts()
    detect(frame)
    t0 = time.perf_counter()
    for _ in range(frames):
        detect(frame)
    repeat = (time.perf_counter() - t0) / frames
    if len(detect.held) != frames:
        raise RuntimeError("the repeated frames were not all taken for repeats")
    return {"scored_ms": round(detector_ms((height, width), frames), 3), "repeat_ms": round(repeat * 1e3, 3)}


_BANNER_SCRIPT = """
import sys
from fractions import Fraction
import av
import numpy as np
ctx = av.CodecContext.create(sys.argv[1], "w")
ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 64, "yuv420p", Fraction(1, 25)
ctx.open()
image = np.zeros((64, 64, 3), np.uint8)
for i in range(8):
    frame = av.VideoFrame.from_ndarray(image + i, format="rgb24").reformat(format="yuv420p")
    frame.pts = i
    ctx.encode(frame)
ctx.encode(None)
"""


def banner_lines(codec: str) -> int:
    """Lines ``codec``'s library prints on standard error as one encoder opens, encodes 8 frames and closes, in a fresh
    process at its default log level (SVT-AV1 reads ``SVT_LOG`` once a process; x265 logs at its ``info``)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "SVT_LOG"}
    done = subprocess.run([sys.executable, "-c", _BANNER_SCRIPT, codec], capture_output=True, text=True, env=env,
                          timeout=120)
    if done.returncode != 0:
        raise VggxError(f"{codec}: the banner count's encoder failed: {done.stderr.strip().splitlines()[-1:]}")
    return len([line for line in done.stderr.splitlines() if line.strip()])


def _size(text: str) -> tuple[int, int]:
    """``--size``'s ``HxW`` (the CLI's form: ``parse_size``), held to what the steps can take."""
    from vggx.shapes import parse_size

    height, width = parse_size(text)
    if width < 64 or height < 64 or width % 4 or height % 4:
        raise ConfigError(f"--size: at least 64x64 and a multiple of 4 each way, got {text!r}")
    return height, width


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.video_costs", description=__doc__.split("\n")[0])
    p.add_argument("--size", default="1080x1920", help="HxW of the frames (the scene detector: half each way)")
    p.add_argument("--repeats", type=int, default=5, help="timings a figure is the median of (the probes: 3 at most)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from vggx.cli import check_json_path

    try:
        height, width = _size(args.size)
        if args.repeats < 1:
            raise ConfigError(f"--repeats: at least 1, got {args.repeats}")
        check_json_path(args.json)
        result = {
            "size": [height, width],
            "vf_probe": measure_probe(width, height, repeats=min(args.repeats, 3)),
            "png": measure_png(width, height, args.repeats),
            "idet_ms_per_frame": measure_idet(width, height),
            "scene_detector": {"size": [height // 2, width // 2], **measure_scene_detector(width // 2, height // 2)},
            "banner_lines": {codec: banner_lines(codec) for codec in ("libx265", "libsvtav1")},
        }
    except VggxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"frames {height}x{width}")
    for row in result["vf_probe"]:
        print(f"--vf probe {row['chain']}: {row['seconds']:.2f} s")
    for row in result["png"]:
        print(f"PNG {row['bits']}-bit: default {row['default']['ms']:.0f} ms {row['default']['bytes']} B, "
              f"compression_level=1 {row['compression_level_1']['ms']:.0f} ms {row['compression_level_1']['bytes']} B "
              f"({row['speedup']:.1f}x faster, {row['more_bytes_percent']:+.1f} % bytes)")
    print(f"idet: {result['idet_ms_per_frame']:.2f} ms a frame")
    scenes = result["scene_detector"]
    print(f"scene detector {scenes['size'][0]}x{scenes['size'][1]}: {scenes['scored_ms']:.2f} ms a frame scored, "
          f"{scenes['repeat_ms']:.2f} ms a repeat")
    print("banners: " + ", ".join(f"{k} {v} lines" for k, v in result["banner_lines"].items()))
    if args.json:
        args.json.write_text(json_text(stamp(result, "video_costs", argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
