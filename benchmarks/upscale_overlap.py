"""Pipeline overlap: ``vggx upscale`` end to end against pure inference of the same windows.

    python -m vggx.benchmarks.upscale_overlap [--backend torch|onnxruntime|triton] [--url HOST:PORT]
        [--frames N] [--size HxW] [--input VIDEO] [--threads N] [--concurrency N] [--repeats R] [--json PATH]

Both measurements use one already-open runner (model loaded and warmed up) and the same windows:

- **inference**: the frames are decoded into memory first (not timed), then every window of the clip
  (same window plan, same tiles, same concurrency) goes through the runner;
- **end to end**: ``upscale()`` from the file to a renamed H.264 output: decode, windows, inference,
  stitching, encoding and the audio copy, with the pipeline's threads.

The ratio end-to-end / inference is the pipeline's overhead (goal <= 1.15: decode and encode hide behind
inference). Each is repeated ``--repeats`` times, alternating; the medians and p90 are reported with the
machine and library versions. Without ``--input`` a synthetic clip is encoded with PyAV first.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vggx.client import Backend, BackendConfig, Runner, TritonProtocol, UpscaleConfig, open_runner, upscale
from vggx.client.pipeline import upscale_frames
from vggx.client.windows import default_context, plan_tiles, plan_windows
from vggx.errors import ConfigError, VggxError
from vggx.shapes import parse_size
from vggx.video import open_video
from vggx.video.encode import EncodeConfig, VideoWriter, output_pix_fmt

__all__ = ["OverlapResult", "main", "measure_overlap", "untrained_checkpoint"]


@dataclass(frozen=True)
class OverlapResult:
    backend: str
    frames: int
    lr_size: tuple[int, int]
    window: int
    windows: int
    tiles_per_window: int
    concurrency: int
    inference_s: list[float]
    end_to_end_s: list[float]
    preset: str = "medium"
    encoders: int = 1
    encode_only_s: list[float] = ()  # encoding the upscaled frames alone: the encoder's ceiling
    encode_serial_s: list[float] = ()  # the same with the conversion to yuv420p done serially by PyAV's encoder
    busy: dict[str, float] = field(default_factory=dict)  # end to end: each stage's busy share of the wall time
    end_to_end_rgb_s: list[float] = ()  # end to end with RGB to the writer, where the runner could give yuv420p
    decode_only_s: list[float] = ()  # decoding the clip to RGB alone (the reader): the decoder's ceiling
    decode_per_frame_context_s: list[float] = ()  # the same with a new swscale context per frame (the old reader)
    warmup_s: float = 0.0  # the runner's first window per output format (kernel compilation, graph capture), untimed

    @property
    def ratio(self) -> float:
        return statistics.median(self.end_to_end_s) / statistics.median(self.inference_s)

    @property
    def slowest_stage(self) -> tuple[str, float]:
        """The stage that alone takes longest (inference, encoding or decoding the clip) and its median seconds:
        a pipeline cannot run faster than it, whichever it is."""
        stages = {"inference": self.inference_s, "encode": self.encode_only_s, "decode": self.decode_only_s}
        return max(((k, statistics.median(v)) for k, v in stages.items() if v), key=lambda kv: kv[1])

    @property
    def stage_ratio(self) -> float:
        """End to end / the slowest stage alone: the pipeline's own overhead (1.0: the other stages hide
        completely behind the slowest), the ratio that stays meaningful where the encoder, not the model,
        sets the pace."""
        return statistics.median(self.end_to_end_s) / self.slowest_stage[1]

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "slowest_stage": self.slowest_stage[0],
                "stage_ratio": self.stage_ratio,
                "inference_median_s": statistics.median(self.inference_s),
                "end_to_end_median_s": statistics.median(self.end_to_end_s)}


def _synthetic_clip(path: Path, frames: int, size: tuple[int, int], rate: int = 24) -> Path:
    """A textured moving clip (H.264 yuv420p if the size is even, else yuv444p) with an AAC tone."""
    import av

    h, w = size
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h + frames, w + 2 * frames, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=rate)
        v.width, v.height = w, h
        v.pix_fmt = "yuv420p" if h % 2 == 0 and w % 2 == 0 else "yuv444p"
        a = c.add_stream("aac", rate=48000)
        for i in range(frames):
            img = np.ascontiguousarray(base[i // 2: i // 2 + h, 2 * i: 2 * i + w])
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        n = 48000 * frames // rate
        step = a.codec_context.frame_size or 1024
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 48000)).astype(np.float32)
        for off in range(0, n, step):
            fr = av.AudioFrame.from_ndarray(np.tile(tone[off:off + step][None], (2, 1)), format="fltp",
                                            layout="stereo")
            fr.sample_rate, fr.pts = 48000, off
            for p in a.encode(fr):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def _time_inference(runner: Runner, frames: list[np.ndarray], concurrency: int,
                    yuv420p: bool = False) -> tuple[float, list[np.ndarray]]:
    """Seconds to run every window of the clip; also the upscaled windows (for the encode-only timing).
    ``yuv420p``: in the format the pipeline asks for (the runner converts on its device)."""
    info = runner.info
    context = default_context(info.window)
    windows = plan_windows(len(frames), info.window, context)
    stacks = [np.stack([frames[i] for i in w.sources]) for w in windows]  # built before the clock starts
    keeps = [slice(w.offset, w.offset + w.keep_count) for w in windows]
    t0 = time.perf_counter()
    if concurrency == 1:
        outputs = [upscale_frames(runner, stack, keep, yuv420p=yuv420p)
                   for stack, keep in zip(stacks, keeps, strict=True)]
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            outputs = list(pool.map(lambda sk: upscale_frames(runner, *sk, yuv420p=yuv420p),
                                    zip(stacks, keeps, strict=True)))
    return time.perf_counter() - t0, outputs


def untrained_checkpoint(config: str, path: Path, seed: int = 0) -> Path:
    """A checkpoint of configuration ``config`` (seeded weights) whose RGB head is zero: the model runs its
    full compute, and its output is exactly the bicubic upscale (content an encoder treats like a real
    clip's, unlike an untrained model's noise). For timing the pipeline around a model as slow as ``base``
    without training one."""
    import torch

    from vggx.checkpoint import save_checkpoint
    from vggx.generator import Generator, get_config

    torch.manual_seed(seed)
    generator = Generator(get_config(config))
    with torch.no_grad():
        for p in generator.upsampler.to_rgb.parameters():
            p.zero_()
    return save_checkpoint(generator, path, extra={"untrained": "rgb head zeroed (benchmarks only)"})


def _time_decode(video: Path, per_frame_context: bool = False) -> float:
    """Seconds to decode ``video`` to RGB alone: the reader, or (``per_frame_context``) PyAV's
    ``frame.to_ndarray(format="rgb24")``, which builds a swscale context for every frame (the old reader)."""
    import av

    t0 = time.perf_counter()
    if per_frame_context:
        with av.open(str(video)) as c:
            c.streams.video[0].thread_type = "AUTO"
            for frame in c.decode(video=0):
                frame.to_ndarray(format="rgb24")
    else:
        with open_video(video) as reader:
            for _ in reader:
                pass
    return time.perf_counter() - t0


def _time_encode(outputs: list[np.ndarray], path: Path, encode: EncodeConfig) -> float:
    """Seconds to encode the upscaled frames alone (the pipeline's encoder settings): the encoder's ceiling."""
    from fractions import Fraction

    w = outputs[0].shape[2]
    h = outputs[0].shape[1] * 2 // 3 if outputs[0].ndim == 3 else outputs[0].shape[1]  # yuv420p planes: 3h/2 rows
    t0 = time.perf_counter()
    with VideoWriter(path, w, h, Fraction(24), Fraction(1, 24), encode) as writer:
        pts = 0
        for window in outputs:
            for image in window:
                writer.write(image, pts)
                pts += 1
    return time.perf_counter() - t0


def measure_overlap(runner: Runner, video: Path, *, concurrency: int = 1, repeats: int = 3,
                    workdir: Path | None = None, encode: EncodeConfig | None = None) -> OverlapResult:
    """Time pure inference and end-to-end upscaling of ``video`` with ``runner`` (see the module doc)."""
    encode = encode or EncodeConfig()
    with open_video(video) as reader:
        frames = [f.image for f in reader]
    info = runner.info
    h, w = frames[0].shape[:2]
    # The pipeline's own choice: yuv420p from the runner's device when it converts and the encoder takes it.
    yuv420p = getattr(runner, "yuv420p_output", False) and output_pix_fmt(encode) == "yuv420p"
    t0 = time.perf_counter()
    for fmt in {yuv420p, False}:  # warm-up (lazy init, graph capture) of each output format timed below
        upscale_frames(runner, np.stack([frames[0]] * info.window), yuv420p=fmt)
    warmup = time.perf_counter() - t0
    inference, end_to_end, end_to_end_rgb = [], [], []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        out = Path(tmp) / "out.mp4"
        for _ in range(repeats):
            seconds, outputs = _time_inference(runner, frames, concurrency, yuv420p)
            inference.append(seconds)
            t0 = time.perf_counter()
            e2e = upscale(UpscaleConfig(video, out, concurrency=concurrency, encode=encode), runner=runner)
            end_to_end.append(time.perf_counter() - t0)
            busy = e2e.utilisation
            if yuv420p:  # the same with the writer converting RGB, side by side
                t0 = time.perf_counter()
                upscale(UpscaleConfig(video, out, concurrency=concurrency, encode=encode, device_yuv420p=False),
                        runner=runner)
                end_to_end_rgb.append(time.perf_counter() - t0)
        encode_only = [_time_encode(outputs, Path(tmp) / "encode_only.mp4", encode)]
        decode_only = [_time_decode(video) for _ in range(repeats)]
        decode_old = [_time_decode(video, per_frame_context=True) for _ in range(repeats)]
        serial_cfg = dataclasses.replace(encode, convert_threads=0)
        serial = [_time_encode(outputs, Path(tmp) / "encode_serial.mp4", serial_cfg)]
    return OverlapResult(
        backend=runner.description, frames=len(frames), lr_size=(h, w), window=info.window,
        windows=len(plan_windows(len(frames), info.window)), concurrency=concurrency,
        tiles_per_window=plan_tiles((h, w), info.max_size, info.size_multiple, info.scale).count,
        inference_s=inference, end_to_end_s=end_to_end, encode_only_s=encode_only, encode_serial_s=serial,
        preset=encode.preset or "medium", encoders=encode.encoders, busy=busy, end_to_end_rgb_s=end_to_end_rgb,
        decode_only_s=decode_only, decode_per_frame_context_s=decode_old, warmup_s=warmup,
    )


def _environment() -> dict[str, str]:
    import av
    import onnxruntime
    import torch

    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpu": platform.processor() or platform.machine(), "cpus": str(os.cpu_count()),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "pyav": av.__version__,
            "ffmpeg": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="torch", choices=[b.value for b in Backend])
    p.add_argument("--url", help="Triton HOST:PORT (with --backend triton)")
    p.add_argument("--protocol", default="grpc", choices=["grpc", "http"])
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--config", help="an untrained model of this configuration instead of a checkpoint (e.g. base): "
                   "its RGB head zeroed, so it costs the configuration's full compute while its output is the "
                   "bicubic upscale, which the encoder sees as a real clip's smooth content")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fp16", action="store_true", help="FP16 (torch backend on cuda)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (torch backend on cuda)")
    p.add_argument("--input", type=Path, help="video to use (default: a synthetic clip)")
    p.add_argument("--frames", type=int, default=96, help="synthetic clip length")
    p.add_argument("--size", default="72x128", help="synthetic clip LR size HxW")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of in-process backends")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--preset", help="x264 speed preset of the output (default: the encoder's, medium)")
    p.add_argument("--encoders", type=int, default=1, help="x264 encoders at once on consecutive segments")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from vggx.cli import check_json_path

    tmp_ckpt = tempfile.TemporaryDirectory()
    try:
        # checked before any work: --repeats 0, --concurrency 0 and --threads 0 were tracebacks (the first two after
        # the model had loaded and run), --frames 0 a misleading "input not found" for the clip it did not write
        for flag, value in (("--repeats", args.repeats), ("--concurrency", args.concurrency),
                            ("--threads", args.threads), ("--frames", args.frames)):
            if value < 1:
                raise ConfigError(f"{flag} must be >= 1, got {value}")
        check_json_path(args.json)
        if args.backend == "torch":
            import torch

            torch.set_num_threads(args.threads)
        checkpoint = args.checkpoint
        if args.config:
            checkpoint = untrained_checkpoint(args.config, Path(tmp_ckpt.name) / f"{args.config}.safetensors")
        backend = BackendConfig(Backend(args.backend), checkpoint=checkpoint, device=args.device,
                                fp16=args.fp16, compile=args.compile,
                                threads=None if args.backend == "triton" else args.threads, url=args.url,
                                protocol=TritonProtocol(args.protocol))
        encode = EncodeConfig(preset=args.preset, encoders=args.encoders)
        with tempfile.TemporaryDirectory() as tmp, open_runner(backend) as runner:
            video = args.input or _synthetic_clip(Path(tmp) / "clip.mp4", args.frames, parse_size(args.size))
            result = measure_overlap(runner, video, concurrency=args.concurrency, repeats=args.repeats,
                                     encode=encode)
    except VggxError as exc:  # one line, as the CLI does
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        tmp_ckpt.cleanup()
    env = _environment()
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    inf, e2e = sorted(result.inference_s), sorted(result.end_to_end_s)
    p90 = lambda xs: xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    print(f"{result.backend}: {result.frames} frames {result.lr_size[0]}x{result.lr_size[1]} -> x4, window "
          f"{result.window}, {result.windows} windows x {result.tiles_per_window} tile(s), concurrency "
          f"{result.concurrency}, x264 preset {result.preset}"
          + (f", {result.encoders} encoders on segments" if result.encoders > 1 else ""))
    print(f"warm-up         {result.warmup_s:.2f} s (first window of each output format: compilation, capture; "
          "not in the timings below)")
    print(f"pure inference  median {statistics.median(inf):.2f} s  p90 {p90(inf):.2f} s  "
          f"({result.frames / statistics.median(inf):.2f} fps)")
    print(f"end to end      median {statistics.median(e2e):.2f} s  p90 {p90(e2e):.2f} s  "
          f"({result.frames / statistics.median(e2e):.2f} fps)")
    if result.decode_only_s:
        dec, old = statistics.median(result.decode_only_s), statistics.median(result.decode_per_frame_context_s)
        print(f"decode only     median {dec:.2f} s  ({result.frames / dec:.2f} fps: the reader's ceiling; "
              f"{result.frames / old:.2f} fps with a swscale context per frame)")
    if result.encode_only_s:
        enc = statistics.median(result.encode_only_s)
        print(f"encode only     median {enc:.2f} s  ({result.frames / enc:.2f} fps: the encoder's ceiling)")
    if result.encode_serial_s:
        ser = statistics.median(result.encode_serial_s)
        print(f"encode, serial conversion {ser:.2f} s  ({result.frames / ser:.2f} fps: frames converted to yuv420p "
              "by PyAV's encoder, not ahead in worker threads)")
    if result.end_to_end_rgb_s:
        rgb = statistics.median(result.end_to_end_rgb_s)
        print(f"end to end, RGB to the writer {rgb:.2f} s  ({result.frames / rgb:.2f} fps: without the device's "
              "yuv420p conversion)")
    if result.busy:
        print("end to end, busy share of the wall time (last run): "
              + ", ".join(f"{k} {100 * v:.0f}%" for k, v in result.busy.items()))
    print(f"ratio end-to-end / inference = {result.ratio:.3f} (goal <= 1.15); end-to-end / the slowest stage "
          f"alone ({result.slowest_stage[0]}) = {result.stage_ratio:.3f}")
    if args.json:
        from vggx.paths import json_text

        from .bench import stamp

        args.json.write_text(json_text(stamp({"environment": env, **result.as_dict()}, "upscale_overlap", argv)))
    return 0 if result.ratio <= 1.15 else 1


if __name__ == "__main__":
    sys.exit(main())
