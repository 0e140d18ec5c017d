"""What ``vggx upscale --crop auto`` saves on a letterboxed film, what it finds, and what it costs to find.

    python -m vggx.benchmarks.crop [--frames N] [--backend onnxruntime|torch] [--device cpu|cuda]
        [--checkpoint P] [--threads N] [--json PATH]

The clip: the sample clip's panning photograph (``vggx.sample``, 152x64) as a 2.38:1 film inside a 152x88 frame (12
black rows above and below: 27 % of the frame, as a 2.39:1 film in 16:9 has 25 %), H.264 CRF 18 as films are
delivered. It is upscaled three ways by the same
runner, one after the other: the whole frame, ``--crop auto`` (the picture alone) and ``--crop auto --keep-bars``
(the input's frame, the bars black again), into lossless FFV1 so that the encoder adds nothing. Reported: frames/s of
each and the ratios, the rectangle found against the true one, and what the model painted into the bars of the
whole-frame run (their mean and largest luma, the share of pixels above 2 levels: black in, black is right).

The cost of looking at film length: a 60-second 1080p letterboxed H.264 clip with a keyframe every 10 seconds, and
the seconds ``VideoReader.sample`` (24 frames spread over it) and ``find_picture`` take.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vggx.errors import VggxError
from vggx.paths import json_text

from .bench import add_runner_options, runner_config, stamp

__all__ = ["letterboxed_clip", "main", "measure_crop", "measure_detection"]

FRAME = (88, 152)  # 1.73:1 (the sample photograph holds no wider film: 152 x4 + a margin is its 640 columns)
PICTURE = (64, 152)  # 2.38:1
BARS = (FRAME[0] - PICTURE[0]) // 2


def _encode(path: Path, frames, size: tuple[int, int], keyint: int | None = None, preset: str | None = None) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.height, s.width = size
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "18", **({"g": str(keyint)} if keyint else {}), **({"preset": preset} if preset else {})}
        for image in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def letterboxed_clip(folder: Path, frames: int) -> Path:
    """The sample clip's picture inside black bars, H.264 (see the module doc)."""
    import av

    from vggx.sample import write_sample_clip

    picture = write_sample_clip(folder / "picture.mp4", frames=frames, size=PICTURE)
    with av.open(str(picture)) as c:
        pictures = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    boxed = []
    for p in pictures:
        image = np.zeros((*FRAME, 3), np.uint8)
        image[BARS:BARS + PICTURE[0]] = p
        boxed.append(image)
    return _encode(folder / "letterboxed.mp4", boxed, FRAME)


def _luma(images: np.ndarray) -> np.ndarray:
    return images[..., :3].astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32)


def measure_crop(runner, frames: int = 24) -> dict:
    import av

    from vggx.client import UpscaleConfig, upscale
    from vggx.video import EncodeConfig
    from vggx.video.crop import Crop

    truth = Crop(PICTURE[1], PICTURE[0], 0, BARS)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = letterboxed_clip(Path(tmp), frames)
        for name, crop, keep in (("whole", None, False), ("crop", "auto", False), ("crop_keep_bars", "auto", True)):
            out = Path(tmp) / f"{name}.mkv"
            t0 = time.perf_counter()
            result = upscale(UpscaleConfig(clip, out, encode=EncodeConfig("ffv1"), crop=crop, keep_bars=keep,
                                           scene_threshold=None), runner=runner)
            seconds = time.perf_counter() - t0
            rows[name] = {"seconds": round(seconds, 3), "fps": round(frames / seconds, 3),
                          "infer_seconds": round(result.stage_seconds["infer"], 3),
                          "output_size": list(result.output_size),
                          "crop": None if result.crop is None else str(result.crop)}
            if name == "crop" and result.crop != truth:
                raise VggxError(f"--crop auto found {result.crop}, not the picture's {truth}")
            if name == "whole":
                with av.open(str(out)) as c:
                    sr = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
                scale = sr.shape[1] // FRAME[0]
                bars = _luma(np.concatenate([sr[:, :BARS * scale], sr[:, (BARS + PICTURE[0]) * scale:]], axis=1))
                rows[name]["painted_bars"] = {"mean_luma": round(float(bars.mean()), 3),
                                              "max_luma": round(float(bars.max()), 1),
                                              "share_above_2_levels": round(float((bars > 2).mean()), 4)}
    whole = rows["whole"]
    return {"backend": runner.description, "frames": frames, "frame": list(FRAME), "picture": list(PICTURE),
            "found": rows["crop"]["crop"], "truth": str(truth), "runs": rows,
            "speedup_crop": round(whole["seconds"] / rows["crop"]["seconds"], 3),
            "speedup_crop_keep_bars": round(whole["seconds"] / rows["crop_keep_bars"]["seconds"], 3),
            "infer_ratio_crop": round(rows["crop"]["infer_seconds"] / whole["infer_seconds"], 3),
            "pixel_ratio": round(PICTURE[0] / FRAME[0], 3)}


def measure_detection(seconds: int = 60) -> dict:
    """The cost of ``--crop auto``'s look over a long 1080p clip (see the module doc)."""
    from vggx.video import open_video
    from vggx.video.crop import Crop, find_picture

    h, w, picture = 1080, 1920, 800
    bars = (h - picture) // 2
    y, x = np.mgrid[0:picture, 0:w]

    def frames():
        for i in range(seconds * 24):
            image = np.zeros((h, w, 3), np.uint8)
            image[bars:bars + picture] = np.stack([(x + 3 * i) % 256, (y + i) % 256, (x + y) % 200 + 40], -1)
            yield image

    with tempfile.TemporaryDirectory() as tmp:
        clip = _encode(Path(tmp) / "film.mp4", frames(), (h, w), keyint=240, preset="ultrafast")
        t0 = time.perf_counter()
        with open_video(clip) as reader:
            samples = reader.sample()
        t1 = time.perf_counter()
        found = find_picture(samples)
        t2 = time.perf_counter()
    truth = Crop(w, picture, 0, bars)
    if found != truth:
        raise VggxError(f"found {found} in the 1080p clip, not {truth}")
    return {"clip": f"{seconds} s 1080p H.264, keyframe every 10 s", "samples": len(samples),
            "sample_seconds": round(t1 - t0, 3), "find_seconds": round(t2 - t1, 3), "found": str(found)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.crop", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--film-seconds", type=int, default=60, help="length of the 1080p clip looked over")
    add_runner_options(p)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from vggx.client import open_runner

    try:
        with open_runner(runner_config(args)) as runner:
            result = measure_crop(runner, args.frames)
        result["detection"] = measure_detection(args.film_seconds)
    except (VggxError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stamp(result, "crop", argv)
    runs = result["runs"]
    print(f"{result['backend']}, {result['frames']} frames of {FRAME[1]}x{FRAME[0]} holding a {PICTURE[1]}x"
          f"{PICTURE[0]} picture; found {result['found']} (truth {result['truth']})")
    for name, r in runs.items():
        print(f"{name:<15} {r['seconds']:>7.2f} s  {r['fps']:>6.2f} fps  inference {r['infer_seconds']:.2f} s  "
              f"-> {r['output_size'][1]}x{r['output_size'][0]}")
    print(f"speed-up: {result['speedup_crop']:.2f}x cropped, {result['speedup_crop_keep_bars']:.2f}x with the bars "
          f"put back; inference {result['infer_ratio_crop']:.2f} of the whole frame's (pixels: "
          f"{result['pixel_ratio']:.2f})")
    painted = runs["whole"]["painted_bars"]
    print(f"the whole-frame run's bars: mean luma {painted['mean_luma']:.2f}, max {painted['max_luma']:.0f}, "
          f"{100 * painted['share_above_2_levels']:.1f} % above 2 levels")
    d = result["detection"]
    print(f"looking over {d['clip']}: {d['samples']} frames in {d['sample_seconds']:.2f} s, found in "
          f"{d['find_seconds']:.2f} s: {d['found']}")
    if args.json:
        args.json.write_text(json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
