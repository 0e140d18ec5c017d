"""What ``vggx upscale --tonemap`` costs a frame, and how far its tables are from the curves computed exactly.

    python -m vggx.benchmarks.tonemap [--size HxW] [--repeats N] [--json PATH]

For PQ and HLG: milliseconds a frame of random 16-bit codes (every code as likely: no cache luck), the best of
``--repeats``; and the error of :class:`vggx.video.tonemap.ToneMap` (tables of the EOTF, the gain and the encoding,
float32) against the same steps in float64 without tables, in 8-bit levels (what the model sees) and 16-bit ones.

The reader: frames/s of ``VideoReader`` over a 10-bit HEVC PQ clip of ``--size`` (``--reader-frames`` frames),
tone-mapped, with 1 and 2 threads converting frames ahead (on many-core machines the default is one per four cores,
1..4), side by side.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from vggx.paths import json_text

from .bench import stamp

__all__ = ["exact", "main", "measure_tonemap"]


def exact(tm, rgb: np.ndarray) -> np.ndarray:
    """The mapping of ``tm`` computed in float64 without tables: the reference (float R'G'B' in [0, 1])."""
    from vggx.video.tonemap import BT2020_TO_BT709, HLG_PEAK, SDR_PEAK, bt2390, hlg_inverse_oetf, pq_eotf

    e = rgb.astype(np.float64) / 65535
    if tm.transfer == "PQ":
        light = pq_eotf(e)
    else:
        scene = hlg_inverse_oetf(e)
        luma = scene @ np.array([0.2627, 0.6780, 0.0593])
        light = HLG_PEAK * np.power(luma, 0.2)[..., None] * scene
    top = light.max(axis=-1)
    gain = np.where(top > 0, bt2390(top, tm.peak) / np.where(top > 0, top, 1), 1.0)
    light = light * gain[..., None]
    linear = np.clip(light @ BT2020_TO_BT709.astype(np.float64).T / SDR_PEAK, 0, 1)
    return np.power(linear, 1 / 2.4)


def measure_reader(size: tuple[int, int], frames: int, threads: tuple[int, ...] = (1, 2)) -> list[dict]:
    """Frames/s of the reader over a 10-bit HEVC PQ clip, tone-mapped, per number of converting threads."""
    import tempfile
    from fractions import Fraction

    import av

    from vggx.video import open_video

    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:size[0], 0:size[1]]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pq.mkv"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx265", rate=24)
            s.width, s.height, s.pix_fmt = size[1], size[0], "yuv420p10le"
            cc = s.codec_context
            cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = 9, 16, 9, 1
            s.options = {"x265-params": "log-level=error", "preset": "ultrafast", "crf": "20"}
            for i in range(frames):
                image = (20000 + 40 * ((x + 7 * i) % 600) + 20 * y + rng.integers(0, 300, size)).astype(np.uint16)
                frame = av.VideoFrame.from_ndarray(np.stack([image, image // 2, image // 3], -1), format="rgb48le")
                frame.pts, frame.time_base = i, Fraction(1, 24)
                for p in s.encode(frame):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        rows = []
        for n in threads:
            best = float("inf")
            for _ in range(2):
                with open_video(path, tonemap=True) as r:
                    r.convert_threads = n
                    t0 = time.perf_counter()
                    count = sum(1 for _ in r)
                    best = min(best, time.perf_counter() - t0)
            rows.append({"threads": n, "frames": count, "fps": round(count / best, 2)})
    return rows


def measure_tonemap(size: tuple[int, int] = (1080, 1920), repeats: int = 5) -> dict:
    from vggx.video.tonemap import ToneMap

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 65536, (*size, 3), dtype=np.uint16)
    sample = frame[:256, :256]
    rows = []
    for transfer, peak in (("PQ", 1000.0), ("PQ", 4000.0), ("HLG", 1000.0)):
        tm = ToneMap(transfer, peak)
        tm(frame[:8])  # first touch
        seconds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            tm(frame)
            seconds.append(time.perf_counter() - t0)
        got = tm(sample).astype(np.float64) / 65535
        want = exact(tm, sample)
        err8 = np.abs(np.rint(got * 255) - np.rint(want * 255))
        rows.append({"transfer": transfer, "peak": peak, "ms_per_frame": round(min(seconds) * 1e3, 2),
                     "max_error_16bit_levels": round(float(np.abs(got - want).max() * 65535), 2),
                     "mean_error_16bit_levels": round(float(np.abs(got - want).mean() * 65535), 3),
                     "max_error_8bit_levels": int(err8.max()),
                     "share_8bit_differing": round(float((err8 > 0).mean()), 5)})
    return {"size": list(size), "repeats": repeats, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.tonemap", description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1080x1920", help="HxW")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--reader-frames", type=int, default=24)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    result = measure_tonemap((h, w), args.repeats)
    result["reader"] = measure_reader((h, w), args.reader_frames)
    stamp(result, "tonemap", argv)
    print(f"tone mapping a {w}x{h} frame of random 16-bit codes, best of {args.repeats}; error against float64 "
          f"without tables")
    for r in result["rows"]:
        print(f"{r['transfer']:<4} peak {r['peak']:>6g}: {r['ms_per_frame']:>7.2f} ms   16-bit levels: max "
              f"{r['max_error_16bit_levels']:.2f}, mean {r['mean_error_16bit_levels']:.3f}   8-bit: max "
              f"{r['max_error_8bit_levels']}, {100 * r['share_8bit_differing']:.3f} % of values differ")
    one = result["reader"][0]["fps"]
    print("reader, 10-bit HEVC PQ tone-mapped: " + ", ".join(
        f"{r['threads']} thread{'s' if r['threads'] > 1 else ''} {r['fps']:.1f} fps ({r['fps'] / one:.2f}x)"
        for r in result["reader"]))
    if args.json:
        args.json.write_text(json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
