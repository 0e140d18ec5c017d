"""A folder of short clips one at a time against several at once (``vggx upscale FOLDER OUT --jobs N``).

    python -m vggx.benchmarks.jobs [--clips 8] [--frames 48] [--size 180x320] [--jobs 1,2,4] [--model free|backend]
        [--preset P] [--repeats 2] [--backend onnxruntime|torch] [--device cpu|cuda] [--fp16] [--checkpoint P]
        [--threads N] [--json PATH]

The clips: ``--clips`` copies of the README's sample clip (a photograph under a panning camera) resized to
``--size``, ``--frames`` long, H.264 with AAC audio, as a folder of short social-media clips is. Each folder run goes
through ``upscale_many`` (what the CLI runs) into H.264 (x264 at ``--preset``, the encoder's default if not given)
with the audio copied, for each ``--jobs`` count, repeats interleaved; reported: the wall time of the folder
(median), clips and frames a second, and the ratio to one at a time; one clip goes through first, not timed
(the first window compiles and captures on a GPU).

``--model free`` stands in for a model that costs nearly nothing next to decoding and encoding (nearest-neighbour
×4: a GPU upscales the tiny model at 250-300 frames/s of 720p, `benchmarks/RESULTS.md`), so what is measured is
what a file costs around its windows, which is what running files at once can hide; ``--model backend`` runs the
shipped checkpoint on the in-process backend (on a CPU the model is the cost, and files at once only share it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from vggx.errors import VggxError
from vggx.paths import json_text

from .bench import add_runner_options, runner_config, stamp

__all__ = ["main", "measure_jobs"]


class _Free:
    """Nearest-neighbour ×4 with a model's window and sizes: a model that costs (nearly) nothing."""

    def __init__(self, info) -> None:
        self.info, self.description = info, "nearest-neighbour x4 (a model that costs nothing)"

    def infer(self, lr):
        return lr.repeat(self.info.scale, axis=2).repeat(self.info.scale, axis=3)

    def close(self) -> None:
        pass


def _folder(folder: Path, clips: int, frames: int, size: tuple[int, int]) -> Path:
    """``clips`` copies of one clip: the sample clip's frames resized to ``size`` (bicubic), H.264 CRF 18 with a
    second of AAC tone a second of video."""
    import shutil

    import av
    import numpy as np

    from vggx.sample import write_h264_with_tone, write_sample_clip

    folder.mkdir()
    sample = write_sample_clip(folder.parent / "sample.mp4", frames=frames)
    h, w = size
    with av.open(str(sample)) as c:
        images = [f.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()
                  for f in c.decode(video=0)]
    first = write_h264_with_tone(folder / "clip00.mp4", np.stack(images), crf=18)
    for i in range(1, clips):
        shutil.copy(first, folder / f"clip{i:02d}.mp4")
    return folder


def measure_jobs(runner, clips: int = 8, frames: int = 48, size: tuple[int, int] = (180, 320),
                 counts: tuple[int, ...] = (1, 2, 4), preset: str | None = None, repeats: int = 2) -> dict:
    from vggx.client import UpscaleConfig, upscale_many
    from vggx.video import EncodeConfig

    seconds: dict[int, list[float]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as tmp:
        folder = _folder(Path(tmp) / "in", clips, frames, size)
        inputs = sorted(folder.iterdir())
        # One clip first, not timed: the runner's first window compiles and captures (CUDA graphs, Triton JIT;
        # 7-10 s on an H200, run 10 counted it in --jobs 1's time), which every count after it would skip.
        (Path(tmp) / "warm-up").mkdir()
        t0 = time.perf_counter()
        upscale_many([UpscaleConfig(inputs[0], Path(tmp) / "warm-up" / inputs[0].name,
                                    encode=EncodeConfig(preset=preset))], runner, 1)
        warm_up = time.perf_counter() - t0
        for r in range(repeats):
            for n in counts:
                out = Path(tmp) / f"out{n}-{r}"
                out.mkdir()
                configs = [UpscaleConfig(p, out / p.name, encode=EncodeConfig(preset=preset)) for p in inputs]
                t0 = time.perf_counter()
                outcomes = upscale_many(configs, runner, n)
                seconds[n].append(time.perf_counter() - t0)
                bad = [str(o) for o in outcomes if isinstance(o, VggxError)]
                if bad:
                    raise VggxError(bad[0])
                if any(o.frames != frames for o in outcomes):
                    raise VggxError(f"a clip came out with other than {frames} frames")
    base = statistics.median(seconds[counts[0]])
    rows = []
    for n in counts:
        wall = statistics.median(seconds[n])
        rows.append({"jobs": n, "seconds": [round(s, 3) for s in seconds[n]], "median_seconds": round(wall, 3),
                     "clips_per_second": round(clips / wall, 3), "fps": round(clips * frames / wall, 2),
                     "speedup": round(base / wall, 3)})
    return {"backend": runner.description, "clips": clips, "frames": frames, "size": list(size),
            "preset": preset or "the encoder's default (medium)", "warm_up_seconds": round(warm_up, 3), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.jobs", description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", default="180x320", help="HxW of the clips (before the x4)")
    p.add_argument("--jobs", default="1,2,4", help="jobs counts compared, the first the baseline")
    p.add_argument("--model", choices=["free", "backend"], default="free")
    p.add_argument("--preset", help="x264 preset (default: the encoder's, medium)")
    p.add_argument("--repeats", type=int, default=2)
    add_runner_options(p, fp16=True)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from vggx.client import open_runner
    from vggx.shapes import parse_size

    try:
        counts = tuple(int(v) for v in args.jobs.split(","))
        size = parse_size(args.size)
        with open_runner(runner_config(args)) as backend:
            runner = _Free(backend.info) if args.model == "free" else backend
            result = measure_jobs(runner, args.clips, args.frames, size, counts, args.preset, args.repeats)
    except (VggxError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stamp(result, "jobs", argv)
    print(f"{result['backend']}: {result['clips']} clips of {result['frames']} frames, {size[1]}x{size[0]} x4, "
          f"x264 {result['preset']} (warm-up clip, not timed: {result['warm_up_seconds']:.2f} s)")
    for row in result["rows"]:
        print(f"--jobs {row['jobs']}: {row['median_seconds']:7.2f} s  {row['clips_per_second']:6.2f} clips/s  "
              f"{row['fps']:7.1f} frames/s  ({row['speedup']:.2f}x)")
    if args.json:
        args.json.write_text(json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
