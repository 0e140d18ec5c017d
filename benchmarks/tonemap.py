"""What ``vggx upscale --tonemap`` costs a frame, and how far its tables are from the curves computed exactly.

    python -m vggx.benchmarks.tonemap [--size HxW] [--repeats N] [--json PATH]

For PQ and HLG: milliseconds a frame of random 16-bit codes (every code as likely: no cache luck), the best of
``--repeats``; and the error of :class:`vggx.video.tonemap.ToneMap` (tables of the EOTF, the gain and the encoding,
float32) against the same steps in float64 without tables, in 8-bit levels (what the model sees) and 16-bit ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

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
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    result = stamp(measure_tonemap((h, w), args.repeats), "tonemap", argv)
    print(f"tone mapping a {w}x{h} frame of random 16-bit codes, best of {args.repeats}; error against float64 "
          f"without tables")
    for r in result["rows"]:
        print(f"{r['transfer']:<4} peak {r['peak']:>6g}: {r['ms_per_frame']:>7.2f} ms   16-bit levels: max "
              f"{r['max_error_16bit_levels']:.2f}, mean {r['mean_error_16bit_levels']:.3f}   8-bit: max "
              f"{r['max_error_8bit_levels']}, {100 * r['share_8bit_differing']:.3f} % of values differ")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
