"""What ``vggx upscale --fine-bits`` keeps of a 10-bit source: banding and error in smooth gradients, against the
model's 8 bits widened, through the whole file pipeline.

    python -m vggx.benchmarks.fine_bits [--frames N] [--backend onnxruntime|torch] [--device cpu|cuda]
        [--checkpoint P] [--threads N] [--json PATH]

The clips are skies: a smooth 16-bit field (a shallow vertical ramp, soft clouds, a faint texture of about a 10-bit
level), panned under the camera; the input is its ×4 BI downscale quantised to 10 bits. Two ways in and out:
``png``, 16-bit PNG frames holding the 10-bit values into 16-bit PNG frames (lossless, so the codecs add nothing),
and ``x265``, the same as 10-bit 4:2:0 HEVC (CRF 6) into 10-bit HEVC (CRF 12), what a 10-bit film would go through.
Each is upscaled by ``vggx.client.upscale`` with ``fine_bits`` on and off and compared with the 16-bit original: the
RMS error in 8-bit levels, and the banding — the mean length of the runs of equal values along a row of the green
channel (a gradient rendered with 8 bits is flat for several pixels, then steps by a whole level; the original's runs
are about one pixel). Timing: ms per frame of each run, and of its encoding stage (PNG's compression of real 16-bit
data costs more than of 8 bits widened, whose two bytes repeat).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vggx.errors import VggxError
from vggx.paths import json_text

from .bench import add_runner_options, runner_config, stamp

__all__ = ["flat_run", "main", "measure_fine_bits", "sky_clip"]

HR = (256, 384)
# (name, seed, pan velocity in HR pixels a frame (x, y), ramp from top to bottom as RGB 0..1): skies as they band,
# a few 8-bit levels from top to bottom (a step every 10-40 rows)
SKIES = (("dusk", 1, (1.3, 0.2), ((0.42, 0.40, 0.55), (0.47, 0.43, 0.52))),
         ("noon", 2, (-0.9, 0.4), ((0.35, 0.52, 0.80), (0.40, 0.57, 0.83))),
         ("haze", 3, (0.6, -0.3), ((0.62, 0.63, 0.65), (0.65, 0.65, 0.66))))


def sky_clip(seed: int, frames: int, velocity: tuple[float, float],
             ramp: tuple[tuple[float, float, float], tuple[float, float, float]],
             hr: tuple[int, int] = HR) -> tuple[np.ndarray, np.ndarray]:
    """``(lr, hr)`` uint16 ``(frames, h, w, 3)``: a smooth sky panned ``velocity`` HR pixels a frame, and its BI ×4
    downscale quantised to 10 bits (values ``round(v * 1023) * 65535 / 1023``)."""
    import torch
    import torch.nn.functional as F

    from vggx.training.data import _render, bicubic_downscale

    rng = np.random.default_rng(seed)
    vx, vy = velocity
    H, W = hr[0] + 16 + int(abs(vy) * frames), hr[1] + 16 + int(abs(vx) * frames)
    y = np.linspace(0.0, 1.0, H)[:, None, None]
    top, bottom = np.array(ramp[0]), np.array(ramp[1])
    sky = top + (bottom - top) * y + np.zeros((1, W, 1))
    yy, xx = np.mgrid[0:H, 0:W]
    for _ in range(4):  # soft clouds: wide, faint Gaussians
        cy, cx, r = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(30, 80)
        sky += 0.02 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
    grain = torch.from_numpy(rng.normal(0, 1, (1, 1, H // 8, W // 8)))  # a faint, smooth texture
    grain = F.interpolate(grain, size=(H, W), mode="bicubic", align_corners=False)[0, 0].numpy()
    sky += (1 / 1023) * grain[..., None]  # about a 10-bit level
    image = torch.from_numpy(np.clip(sky, 0, 1)).permute(2, 0, 1).float()
    x0, y0 = 4 + max(0.0, -vx) * frames, 4 + max(0.0, -vy) * frames
    mats = [np.array([[1.0, 0, x0 + vx * i], [0, 1.0, y0 + vy * i], [0, 0, 1.0]]) for i in range(frames)]
    with torch.no_grad():
        high = _render(image, mats, hr).clamp(0, 1)
        low = bicubic_downscale(high, 4).clamp(0, 1)

    def u16(t, levels: int = 65535):
        v = (t.permute(0, 2, 3, 1).numpy() * levels).round()
        return (v * 65535 / levels).round().astype(np.uint16)

    return u16(low, 1023), u16(high)


def flat_run(images: np.ndarray) -> float:
    """Mean length (pixels) of the runs of equal values along the rows of the green channel of uint16
    ``(..., h, w, 3)`` images, quantised to 10 bits (so that a 10-bit codec's rounding does not count)."""
    rows = np.rint(images[..., 1].reshape(-1, images.shape[-2]) / 64.0)
    changes = np.count_nonzero(np.diff(rows.astype(np.int32), axis=-1), axis=-1) + 1  # runs per row
    return float(rows.shape[-1] * rows.shape[0] / changes.sum())


def _write_pngs(frames: np.ndarray, folder: Path) -> Path:
    import av

    folder.mkdir(parents=True)
    for i, frame in enumerate(frames, start=1):
        out = av.open(str(folder / f"{i:04d}.png"), "w", format="image2")
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "rgb48be"
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb48le")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        out.close()
    return folder / "%04d.png"


def _write_x265(frames: np.ndarray, path: Path) -> Path:
    """10-bit 4:2:0 HEVC (CRF 6, BT.709 tagged) of uint16 RGB frames."""
    from fractions import Fraction

    from vggx.video import EncodeConfig, VideoWriter

    h, w = frames.shape[1:3]
    config = EncodeConfig("libx265", crf=6, pix_fmt="yuv420p10le", options={"x265-params": "log-level=error"})
    with VideoWriter(path, w, h, Fraction(24), Fraction(1, 24), config) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, i)
    return path


def _read16(path: Path) -> np.ndarray:
    """Every frame of a video or an image sequence as uint16 RGB, by FFmpeg."""
    import av

    with av.open(str(path), format="image2" if "%" in path.name else None) as c:
        return np.stack([f.to_ndarray(format="rgb48le") for f in c.decode(video=0)])


def measure_fine_bits(runner, frames: int = 24) -> dict:
    from vggx.client import UpscaleConfig, upscale
    from vggx.video import EncodeConfig

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, seed, velocity, ramp in SKIES:
            lr, hr = sky_clip(seed, frames, velocity, ramp)
            for way in ("png", "x265"):
                folder = Path(tmp) / name / way
                folder.mkdir(parents=True)
                if way == "png":
                    source, encode = _write_pngs(lr, folder / "in"), EncodeConfig()
                else:
                    source = _write_x265(lr, folder / "in.mkv")
                    encode = EncodeConfig("libx265", crf=12, pix_fmt="yuv420p10le",
                                          options={"x265-params": "log-level=error"})
                row = {"clip": name, "way": way, "flat_run_original": round(flat_run(hr), 2)}
                for fine in (True, False):
                    key = "fine" if fine else "8bit"
                    out = folder / key / "%04d.png" if way == "png" else folder / f"{key}.mkv"
                    out.parent.mkdir(exist_ok=True)
                    t0 = time.perf_counter()
                    result = upscale(UpscaleConfig(source, out, encode=encode, fine_bits=fine, scene_threshold=None),
                                     runner=runner)
                    seconds = time.perf_counter() - t0
                    if result.fine_bits != fine or result.output_bits <= 8:
                        raise VggxError(f"the {way} run did not do what it was asked")
                    sr = _read16(out)
                    err = (sr.astype(np.float64) - hr) / 257.0  # 8-bit levels
                    row[f"rms_levels_{key}"] = round(float(np.sqrt(np.mean(err**2))), 4)
                    row[f"flat_run_{key}"] = round(flat_run(sr), 2)
                    row[f"ms_per_frame_{key}"] = round(seconds / frames * 1e3, 1)
                    row[f"encode_ms_per_frame_{key}"] = round(result.stage_seconds["encode"] / frames * 1e3, 1)
                rows.append(row)
    mean = {}
    for way in ("png", "x265"):
        some = [r for r in rows if r["way"] == way]
        mean[way] = {k: round(statistics.mean(r[k] for r in some), 4) for k in some[0] if k not in ("clip", "way")}
    return {"backend": runner.description, "frames": frames, "lr_size": [HR[0] // 4, HR[1] // 4], "rows": rows,
            "mean": mean}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.fine_bits", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=24)
    add_runner_options(p)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from vggx.client import open_runner

    try:
        with open_runner(runner_config(args)) as runner:
            result = measure_fine_bits(runner, args.frames)
    except (VggxError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stamp(result, "fine_bits", argv)
    print(f"{result['backend']}, 10-bit LR {result['lr_size'][0]}x{result['lr_size'][1]}, {result['frames']} frames "
          f"x {len(SKIES)} skies; png: 16-bit PNG in and out, x265: 10-bit HEVC in and out")
    print("clip  way    RMS error (8-bit levels): fine / 8-bit   flat runs (px): fine / 8-bit / original"
          "   ms/frame (encoding): fine / 8-bit")
    means = [{"clip": "mean", "way": way, **m} for way, m in result["mean"].items()]
    for r in [*result["rows"], *means]:
        print(f"{r['clip']:<5} {r['way']:<5} {r['rms_levels_fine']:>22.3f} / {r['rms_levels_8bit']:.3f}"
              f"{r['flat_run_fine']:>22.2f} / {r['flat_run_8bit']:.2f} / {r['flat_run_original']:.2f}"
              f"{r['ms_per_frame_fine']:>16.1f} ({r['encode_ms_per_frame_fine']:.1f}) / {r['ms_per_frame_8bit']:.1f} "
              f"({r['encode_ms_per_frame_8bit']:.1f})")
    if args.json:
        args.json.write_text(json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
