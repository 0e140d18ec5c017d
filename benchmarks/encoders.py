"""Parallel segment encoding: one encoder against several on consecutive segments, same frames, same settings.

    python -m vggx.benchmarks.encoders [--input VIDEO] [--size HxW] [--frames N] [--encoders 1,2,4]
        [--codec libx264|libx265|libsvtav1|libvpx-vp9|prores_ks|ffv1] [--preset P] [--crf N] [--repeats R]
        [--json PATH]

The frames (default: the README's sample clip, a photograph under a panning camera, resized to
``--size``, 720p by default) are decoded, resized and converted to yuv420p before the clock starts;
each run then times ``VideoWriter`` alone from the first frame to the renamed file. Reported per
encoder count: frames/s (median of ``--repeats``, interleaved), the file size against one encoder's
(each segment starts with a keyframe), and the luma PSNR of the decoded output against its input (the
quality CRF holds; ProRes and FFV1 take no CRF).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vggx.errors import ConfigError, VggxError, VideoError
from vggx.shapes import parse_size
from vggx.video import EncodeConfig, VideoWriter
from vggx.video.encode import check_encoder, check_frame_encodable

__all__ = ["EncoderResult", "encode_config", "main", "measure_encoders"]


@dataclass(frozen=True)
class EncoderResult:
    encoders: int
    segment_frames: int | None
    seconds: list[float]
    bytes: int
    psnr_y: float


def _frames(video: Path, size: tuple[int, int], count: int) -> list[np.ndarray]:
    """``count`` yuv420p planes of ``video`` resized to ``size`` (looping the clip if it is shorter)."""
    import av
    from av.video.reformatter import Colorspace, Interpolation, VideoReformatter

    h, w = size
    reformatter = VideoReformatter()
    out: list[np.ndarray] = []
    while len(out) < count:
        before = len(out)
        try:
            with av.open(str(video)) as c:
                if not c.streams.video:
                    raise VideoError(f"--input {video} has no video stream")
                for frame in c.decode(video=0):
                    yuv = reformatter.reformat(frame, w, h, "yuv420p", interpolation=Interpolation.BICUBIC,
                                               dst_colorspace=Colorspace.ITU709)
                    out.append(yuv.to_ndarray())
                    if len(out) == count:
                        break
        except av.FFmpegError as exc:
            raise VideoError(f"cannot decode --input {video}: {exc}") from None
        if len(out) == before:  # no frame at all: looping the clip would never end
            raise VideoError(f"--input {video} has no frames to decode")
    return out


def _psnr_y(path: Path, frames: list[np.ndarray]) -> float:
    import av

    h = frames[0].shape[0] * 2 // 3
    se, n = 0.0, 0
    with av.open(str(path)) as c:
        for decoded, ref in zip(c.decode(video=0), frames, strict=False):
            y = decoded.to_ndarray(format="yuv420p")[:h].astype(np.float64)
            se += float(((y - ref[:h]) ** 2).sum())
            n += y.size
    mse = se / max(n, 1)
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


_EXTENSIONS = {"libvpx-vp9": ".webm", "prores_ks": ".mov", "ffv1": ".mkv"}  # others: .mp4


def encode_config(codec: str, *, preset: str | None, crf: int, encoders: int,
                  segment_frames: int | None) -> EncodeConfig:
    """The settings one run encodes with (ProRes and FFV1 take no CRF); ``VideoError`` for a bad combination."""
    return EncodeConfig(codec, crf=None if codec in ("prores_ks", "ffv1") else crf, preset=preset,
                        encoders=encoders, segment_frames=segment_frames)


def measure_encoders(frames: list[np.ndarray], counts: tuple[int, ...], *, preset: str | None = None,
                     crf: int = 18, repeats: int = 3, segment_frames: int | None = None,
                     workdir: Path | None = None, codec: str = "libx264") -> list[EncoderResult]:
    """Encode ``frames`` (yuv420p planes) with each encoder count, runs interleaved (see the module doc)."""
    h, w = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
    seconds: dict[int, list[float]] = {n: [] for n in counts}
    sizes: dict[int, int] = {}
    psnr: dict[int, float] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for r in range(repeats):
            for n in counts:
                path = Path(tmp) / f"e{n}{_EXTENSIONS.get(codec, '.mp4')}"
                cfg = encode_config(codec, preset=preset, crf=crf, encoders=n, segment_frames=segment_frames)
                t0 = time.perf_counter()
                with VideoWriter(path, w, h, Fraction(24), Fraction(1, 24), cfg) as writer:
                    for i, image in enumerate(frames):
                        writer.write(image, i)
                seconds[n].append(time.perf_counter() - t0)
                if r == 0:
                    sizes[n], psnr[n] = path.stat().st_size, _psnr_y(path, frames)
    return [EncoderResult(n, segment_frames if n > 1 else None, seconds[n], sizes[n], psnr[n]) for n in counts]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", type=Path, help="video to take frames from (default: the README's sample clip)")
    p.add_argument("--size", default="720x1280", help="output HxW the frames are resized to")
    p.add_argument("--frames", type=int, default=192)
    p.add_argument("--encoders", default="1,2,4", help="encoder counts to compare, e.g. 1,2,4")
    p.add_argument("--segment-frames", type=int, help="frames per segment (default: two seconds, 48)")
    p.add_argument("--codec", default="libx264", help="the encoder (one of vggx.video.encode.SEGMENT_CODECS)")
    p.add_argument("--preset", help="x264/x265 preset (default: medium)")
    p.add_argument("--crf", type=int, default=18)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from vggx.cli import check_json_path, int_list

    try:
        counts = int_list(args.encoders, "--encoders")
        size = parse_size(args.size)
        # every argument is checked before the frames are decoded (a bad one was a traceback, or an error only
        # after the decoding; --frames 0 and --repeats 0 failed in the timing code)
        for flag, value in (("--frames", args.frames), ("--repeats", args.repeats)):
            if value < 1:
                raise ConfigError(f"{flag} must be >= 1, got {value}")
        for n in (1, *counts):  # one encoder first: an unknown codec is named as such
            cfg = encode_config(args.codec, preset=args.preset, crf=args.crf, encoders=n,
                                segment_frames=args.segment_frames)
            if n == 1:
                check_encoder(cfg)
                check_frame_encodable(cfg, size[1], size[0])
        if args.input is not None and not args.input.is_file():
            raise ConfigError(f"--input {args.input}: no such file")
        check_json_path(args.json)
        with tempfile.TemporaryDirectory() as tmp:
            video = args.input
            if video is None:
                from vggx.sample import write_sample_clip

                video = write_sample_clip(Path(tmp) / "sample.mp4", frames=96)
            frames = _frames(video, size, args.frames)
        results = measure_encoders(frames, counts, preset=args.preset, crf=args.crf, repeats=args.repeats,
                                   segment_frames=args.segment_frames, codec=args.codec)
    except (VggxError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import av

    print(f"cpus={os.cpu_count()} pyav={av.__version__} {len(frames)} frames {size[1]}x{size[0]} yuv420p, "
          f"{args.codec}, preset {args.preset or 'the encoder default'}, "
          + ("no CRF" if args.codec in ("prores_ks", "ffv1") else f"crf {args.crf}"))
    base = results[0]
    for r in results:
        fps = len(frames) / statistics.median(r.seconds)
        speedup = statistics.median(base.seconds) / statistics.median(r.seconds)
        print(f"encoders {r.encoders}: {fps:7.1f} fps (x{speedup:.2f})"
              f"  {r.bytes / 1e6:7.2f} MB (x{r.bytes / base.bytes:.3f})  PSNR-Y {r.psnr_y:.2f} dB")
    if args.json:
        from vggx.paths import json_text

        from .bench import stamp

        result = stamp({
            "cpus": os.cpu_count(), "frames": len(frames), "size": list(size), "codec": args.codec,
            "preset": args.preset,  # null: the encoder's own default (x264/x265: medium; others have none)
            "crf": None if args.codec in ("prores_ks", "ffv1") else args.crf,
            "results": [asdict(r) | {"fps": len(frames) / statistics.median(r.seconds)} for r in results],
            "notes": {"preset": "null: none given, the encoder's own default (libx264/libx265: medium; the other "
                                "codecs have no such preset)",
                      "crf": "null: the codec takes none (ProRes, FFV1)",
                      "psnr_y": "null: the decoded frames are the input's exactly (lossless: an infinite PSNR)"},
        }, "encoders", argv)
        result["machine"].update(
            pyav=av.__version__, ffmpeg=str(getattr(av, "ffmpeg_version_info", "unknown")),
            **{lib: ".".join(map(str, v)) for lib, v in av.library_versions.items()})
        args.json.write_text(json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
