"""The upscale pipeline: decode ► windows ► tiles ► infer ► stitch ► encode (+ audio), overlapped.

Three kinds of thread run at once, joined by bounded queues: one decodes and cuts windows, ``concurrency``
workers run the model (each window's tiles in turn), and the calling thread puts windows back in order
and encodes them. A semaphore caps the windows between "decoded" and "encoded" at ``concurrency + 2``,
so memory depends on the window and frame size, never on the video's length. The first error in any
thread stops the others; the output is then deleted (Ctrl-C included). With ``resume`` the finished
segments of the output are kept (:class:`~vggx.video.SegmentStore`) and a second run with the same
settings starts at the window that keeps the first frame after them (keeping only the frames after them), with
the frames before it decoded for context and scene cuts only. Scene cuts (``scene_threshold``) end a shot as the
end of a clip would: each shot is windowed on its own (:class:`~vggx.client.windows.WindowStream`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import numbers
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np

from vggx.errors import (
    SIGNAL_POLL_S,
    ConfigError,
    DeviceOutOfMemoryError,
    InferenceError,
    VideoError,
    deferred_signals,
    raise_if_terminating,
    result_of,
)
from vggx.video import (
    EncodeConfig,
    VideoInfo,
    VideoReader,
    VideoWriter,
    check_output_path,
    display_source,
    is_url,
    open_video,
)
from vggx.video.crop import Crop, find_picture, pad_bars
from vggx.video.decode import FIELD_CHECK_FRAMES, guess_pattern, is_pipe, thread_reformatter
from vggx.video.depth import component_depth, join_fine, split_fine
from vggx.video.encode import (
    EXTRAS,
    SEGMENT_CODECS,
    STDOUT_RAW_CODEC,
    Y4M_PIX_FMT,
    alpha_pix_fmt,
    check_container,
    check_copy,
    check_encoder_starts,
    check_frame_encodable,
    check_image_codec,
    check_keeps_input,
    check_stdout,
    deeper_pix_fmt,
    describe_encoder,
    image_codec,
    is_single_image,
    is_stdout,
    output_pix_fmt,
    video_stream_tags,
    writes_y4m,
)
from vggx.video.filters import FilterChain
from vggx.video.scenes import DEFAULT_SCENE_THRESHOLD, SceneCuts

from .runners import Backend, BackendConfig, Runner, in_scope, open_runner
from .windows import (
    TilePlan,
    TimeWindow,
    WindowStream,
    cut_windows,
    default_context,
    memory_tile,
    plan_tiles,
    smaller_tile,
    smallest_tile,
    windows_needed,
)

__all__ = ["ALPHA_MODES", "MAX_JOBS", "MAX_OUTSCALE", "VIDEO_SUFFIXES", "Cancelled", "UpscaleConfig", "UpscaleProgress",
           "UpscaleResult", "output_frame_size", "plan_folder", "upscale", "upscale_clip", "upscale_frames",
           "upscale_many"]

# What a folder run takes as videos (by extension; FFmpeg reads many more, named one by one).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg",
                            ".mpeg", ".flv", ".wmv", ".3gp", ".y4m"})

log = logging.getLogger(__name__)

_POLL_S = 0.1  # how often blocked threads look at the stop flag
# how long a stopped run waits for its threads (windows in flight on a backend that cannot cancel them: Triton)
_STOP_WAIT_S = 5.0
_HALT_WAIT_S = 60.0  # ... and for those of a backend that stops its runs (ONNX Runtime, PyTorch on the CPU): ms
_NOTHING = object()  # no finished window within a poll
MAX_JOBS = 64  # files at once (upscale_many)
MAX_OUTSCALE = 16.0  # --outscale beyond this is a typo, not a use: a 1080p frame x16 is 1.6 GB of RGB
MIN_OUTSCALE = 0.25  # below it the model's work is thrown away (and 1e-9 wrote a 2x2 video)
MAX_SIDE = 16384  # pixels: the largest frame side FFmpeg's image checks let through
ALPHA_MODES = ("bicubic", "model")  # how an alpha channel is enlarged (UpscaleConfig.alpha)
_LOSSLESS_CODECS = frozenset({"ffv1", "png", "tiff", "libx264rgb"})  # a deep input's default: its depth kept


def parse_copy(text: str) -> tuple[str, ...] | None:
    """``--copy``: ``all`` (None), ``none`` (()), or a comma-separated list of what goes along."""
    words = tuple(w.strip().lower() for w in text.split(",") if w.strip())
    if words in (("all",), ()):
        return None
    return () if words == ("none",) else words


@dataclass(frozen=True)
class UpscaleConfig:
    """One ``vggx upscale`` run."""

    input: Path | str  # a file, a URL FFmpeg reads (http://, https://: vggx.video.is_url), or "-": standard input
    output: Path
    backend: BackendConfig = field(default_factory=BackendConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    # windows in flight: Triton requests at once; on the CUDA fast path a second window runs on the GPU while the
    # first is copied out (the CLI's defaults: 4 and 2); other in-process runs share the cores (1)
    concurrency: int = 1
    start: float = 0.0  # seconds into the input
    frames: int | None = None  # stop after this many frames (a preview)
    compare: bool = False  # write bicubic | vggx side by side
    context: int | None = None  # frames of temporal context on each side of a window; None = window // 4
    # The largest tile (h, w) sent to the model, LR pixels: frames larger are tiled. None: the model's max size. A
    # device that runs out of memory on a tile halves it for the rest of the run either way (a warning says so).
    tile: tuple[int, int] | None = None
    tile_overlap: int | None = None  # LR pixels; None = an eighth of the tile (>= 2 size multiples)
    # Take yuv420p frames from runners that convert on their device when the encoder encodes yuv420p
    # (False: RGB to the writer, which converts; the benchmark's side-by-side baseline).
    device_yuv420p: bool = True
    deinterlace: bool = False  # interlaced input through FFmpeg's bwdif before upscaling
    # Inverse telecine (vggx.video.VideoReader's ``ivtc``): film telecined to 29.97 fps back to its 23.976 frames
    ivtc: bool = False
    # An HDR (PQ, HLG) input tone-mapped to SDR BT.709 as it is read (vggx.video.tonemap), before the model
    tonemap: bool = False
    # FFmpeg filters run on the frames before the model (vggx.video.filters, --vf): a chain as ffmpeg's -vf takes
    # one, after any deinterlacing, before the crop and the tone mapping; None: none
    filters: str | None = None
    # Keep each finished segment of the output beside it (".OUTPUT.vggx-resume/"), so that a run stopped by an
    # error, Ctrl-C or SIGTERM and started again with the same settings goes on after them (SEGMENT_CODECS:
    # x264, x265, SVT-AV1, VP9, ProRes, FFV1)
    resume: bool = False
    # The written frames' size, other than the model's own (scale x input): ``outscale`` times the input (e.g. 2
    # for 1080p -> 4K with a x4 model), or ``height`` pixels high as displayed (the width keeps the aspect
    # ratio); the model's output is resized by FFmpeg's swscale (Lanczos) on its way to the encoder. Sizes are
    # rounded to even numbers (what 4:2:0 chroma needs). None, None: the model's size.
    outscale: float | None = None
    height: int | None = None
    fps: Fraction | None = None  # frame rate of an image-sequence input (frames/%06d.png); None: 25, FFmpeg's
    # How an input's alpha channel is enlarged, where the output keeps it: "bicubic" (the matte as it was, enlarged),
    # or "model" (the matte through the model as a grey clip, as Real-ESRGAN's default does: edges as sharp as the
    # colour's, at twice the inference)
    alpha: str = "bicubic"
    # Scene cuts (vggx.video.scenes: FFmpeg's scdet, a frame scoring this percentage or more starts a shot) end the
    # shot before them as the end of a clip would, so that no window reads frames of two shots. None: no detection
    # (windows run across cuts).
    scene_threshold: float | None = DEFAULT_SCENE_THRESHOLD
    # Check everything a run checks (input, output, encoder, the backend and its model: a Triton server reached and
    # its model ready) and report what it would do, without running the model or writing anything
    dry_run: bool = False
    # An input of more than 8 bits a component into an output that has them: the bits below the model's 8 are
    # carried past it (vggx.video.depth: the rounding residual enlarged with bicubic and added), so gradients keep
    # their levels instead of banding. False: the output is the model's 8 bits, widened.
    fine_bits: bool = True
    # What goes along with the video, of vggx.video.encode.EXTRAS ("audio", "subtitles", "chapters", "attachments",
    # "cover"): None for all the input has and the output holds; () for none
    copy: tuple[str, ...] | None = None
    # The video stream to upscale, by its index in the input (as ffprobe numbers them); None: the one FFmpeg picks
    video_stream: int | None = None
    # The part of each frame that is upscaled (vggx.video.crop): a Crop (FFmpeg's w:h:x:y, or w:h centred), "auto"
    # (the picture inside the black bars of frames spread over the run), or None (the whole frame). The output is
    # the picture alone, or with ``keep_bars`` the input's frame x scale, the bars black again.
    crop: Crop | str | None = None
    keep_bars: bool = False
    # An anamorphic input (non-square pixels: DVDs, HDV) written with square pixels: the output's width resized by the
    # pixel shape (Lanczos), so the video displays alike everywhere (web players and editors that ignore the shape)
    square_pixels: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.backend, BackendConfig):  # (a str was an AttributeError as the run opened it)
            raise ConfigError(f"backend is a BackendConfig (e.g. BackendConfig(Backend.TORCH)), got {self.backend!r}")
        # as a caller writes them: a str output, a --copy list as the command line gives it, a tile of N x N
        if isinstance(self.output, str):
            object.__setattr__(self, "output", Path(self.output))
        if isinstance(self.copy, str):
            object.__setattr__(self, "copy", parse_copy(self.copy))
        if isinstance(self.tile, numbers.Integral):
            object.__setattr__(self, "tile", (int(self.tile), int(self.tile)))
        if self.tile is not None and not (isinstance(self.tile, tuple | list) and len(self.tile) == 2
                                          and all(isinstance(n, numbers.Integral) for n in self.tile)):
            raise ConfigError(f"tile is (height, width) in input pixels, or N for N x N; got {self.tile!r}")
        if self.tile is not None:
            object.__setattr__(self, "tile", (int(self.tile[0]), int(self.tile[1])))
        if not isinstance(self.start, numbers.Real):
            raise ConfigError(f"start is seconds (a number; the command line's --start also takes HH:MM:SS), got "
                              f"{self.start!r}")
        _check_concurrency(self.concurrency, "--concurrency")
        if self.video_stream is not None and self.video_stream < 0:
            raise ConfigError(f"--video-stream must be >= 0 (a stream's index as ffprobe lists them), got "
                              f"{self.video_stream}")
        if self.start < 0:
            raise ConfigError(f"--start must be >= 0 seconds, got {self.start}")
        if self.frames is not None and self.frames < 1:
            raise ConfigError(f"--frames must be >= 1, got {self.frames}")
        if self.resume and self.encode.codec not in SEGMENT_CODECS:
            raise ConfigError(f"--resume applies to {', '.join(sorted(SEGMENT_CODECS))}, not {self.encode.codec}")
        if self.resume and is_pipe(self.input):
            raise ConfigError("--resume needs an input it can read again; standard input (-) cannot be")
        if self.resume and is_stdout(self.output):
            raise ConfigError("--resume needs an output file; a stream on standard output (-) cannot be resumed")
        if self.outscale is not None and self.height is not None:
            raise ConfigError("give --outscale or --height, not both")
        if self.outscale is not None and not MIN_OUTSCALE <= self.outscale <= MAX_OUTSCALE:
            raise ConfigError(f"--outscale must be in [{MIN_OUTSCALE:g}, {MAX_OUTSCALE:g}], got {self.outscale:g}")
        if self.height is not None and self.height < 2:
            raise ConfigError(f"--height must be >= 2 pixels, got {self.height}")
        if self.alpha not in ALPHA_MODES:
            raise ConfigError(f"--alpha must be {' or '.join(ALPHA_MODES)}, got {self.alpha!r}")
        if self.tile is not None and min(self.tile) < 1:
            raise ConfigError(f"--tile must be positive, got {self.tile[0]}x{self.tile[1]}")
        if self.scene_threshold is not None:
            SceneCuts(self.scene_threshold)  # checks it
        unknown = [k for k in self.copy or () if k not in EXTRAS]
        if unknown:
            raise ConfigError(f"--copy takes {', '.join(EXTRAS)}, all or none; not {', '.join(unknown)}")
        if self.ivtc and self.deinterlace:
            raise ConfigError("--ivtc deinterlaces the frames it cannot match itself; give --ivtc or --deinterlace, "
                              "not both")
        if self.filters is not None:
            try:
                FilterChain.parse(self.filters)
            except VideoError as exc:
                raise ConfigError(str(exc)) from None
        if isinstance(self.crop, str) and self.crop != "auto":
            raise ConfigError(f"crop is a Crop, 'auto' or None, got {self.crop!r}")
        if self.crop == "auto" and is_pipe(self.input):
            raise ConfigError("--crop auto looks over the input before upscaling it, which standard input (-) cannot "
                              "be; give the picture's rectangle: --crop W:H:X:Y")
        if self.keep_bars and self.crop is None:
            raise ConfigError("--keep-bars puts back the bars --crop took off: give --crop auto (or W:H:X:Y) too")


@dataclass(frozen=True)
class UpscaleResult:
    output: Path
    frames: int
    seconds: float  # wall time from the first decoded frame to the renamed output
    output_bytes: int
    input_size: tuple[int, int]  # (h, w)
    output_size: tuple[int, int]  # (h, w) of the written frames
    windows: int
    tiles_per_window: int
    backend: str
    # Seconds each stage was busy (not waiting on the others): "decode" (reading and stacking windows),
    # "infer" (the model, summed over the concurrent workers), "encode" (conversion, x264, muxing, audio).
    stage_seconds: dict[str, float] = field(default_factory=dict)
    concurrency: int = 1
    # Wall time until the first window was upscaled, and its frames: it carries the backend's one-off
    # warm-up (kernel compilation, cuDNN's algorithm search, CUDA-graph capture, ONNX Runtime's first run).
    first_window_seconds: float = 0.0
    first_window_frames: int = 0
    input: Path | None = None
    resumed_frames: int = 0  # of ``frames``, those a stopped run had encoded already (``resume``)
    # Several Triton replicas: the windows each one returned, by address (how the load was spread); else empty.
    windows_per_server: dict[str, int] = field(default_factory=dict)
    # The largest tile (h, w) the run ended with, where frames were tiled (``--tile``, or smaller after the device
    # ran out of memory: the --tile to start the next run with); None where frames went whole.
    tile: tuple[int, int] | None = None
    # The frames that start a new shot (scene cuts, counted from the run's first frame; ``scene_threshold``), where
    # the windows started afresh; empty where none were found or looked for.
    scene_cuts: tuple[int, ...] = ()
    # A dry run (``UpscaleConfig.dry_run``): nothing ran; ``frames`` and ``windows`` are what the input announces
    # (an estimate; 0 where it does not say), ``windows`` as if there were no scene cuts.
    dry_run: bool = False
    # what goes along with the video: "audio", "subtitles", "chapters", "attachments", "cover"
    copied: tuple[str, ...] = ()
    audio_codec: str | None = None  # the audio's encoder where it was re-encoded (``--audio-codec``), else copied as is
    # Bits a component: the input's, and the output's (its pixel format's); whether the input's levels below the
    # model's 8 bits were carried into the output (``fine_bits``).
    input_bits: int = 8
    output_bits: int = 8
    fine_bits: bool = False
    hdr: str | None = None  # the HDR transfer (PQ, HLG) the output keeps, tagged as the input's
    # The rectangle of the input upscaled (``UpscaleConfig.crop``), None where it was the whole frame; with
    # ``keep_bars`` the output is the input's frame, the bars black
    crop: Crop | None = None
    keep_bars: bool = False
    rate: Fraction | None = None  # frames per second of the output (the input's; the film's after ``ivtc``)
    damaged_packets: int = 0  # packets of the input the decoder refused, skipped (their frames missing or concealed)
    tonemap: str | None = None  # the HDR-to-SDR mapping done (``UpscaleConfig.tonemap``), in words
    filters: str | None = None  # the FFmpeg filters run before the model (``UpscaleConfig.filters``)
    # A dry run without ``crop``: the picture inside the black bars it found (what ``crop="auto"`` would upscale)
    bars: Crop | None = None
    # The video encoder as it was opened: codec, pixel format and options (vggx's and the user's), e.g.
    # ``libx264 yuv420p (crf=18 preset=veryfast)``
    encoder: str = ""

    @property
    def fps(self) -> float:
        """Frames upscaled in this run per second (a resumed run's stored frames are not counted)."""
        made = self.frames - self.resumed_frames
        return made / self.seconds if self.seconds > 0 else float("inf")

    @property
    def steady_fps(self) -> float | None:
        """Frames/s after the first window (the pace a longer clip approaches); None with a single window."""
        rest = self.seconds - self.first_window_seconds
        later = self.frames - self.resumed_frames - self.first_window_frames
        if later <= 0 or rest <= 0:
            return None
        return later / rest

    @property
    def utilisation(self) -> dict[str, float]:
        """Busy share of the wall time per stage (inference: per worker), 0..1."""
        if self.seconds <= 0:
            return {}
        return {name: busy / self.seconds / (self.concurrency if name == "infer" else 1)
                for name, busy in self.stage_seconds.items()}

    @property
    def bottleneck(self) -> str | None:
        """The busiest stage: the one that sets the pace (``None`` before any timing)."""
        use = self.utilisation
        return max(use, key=use.get) if use else None


class UpscaleProgress(Protocol):
    """Receives progress from :func:`upscale` (the CLI draws a bar from it)."""

    def start(self, total: int | None, description: str) -> None: ...

    def advance(self, frames: int) -> None: ...


class Cancelled(Exception):
    """An :func:`upscale` stopped by its ``cancel`` event (:func:`upscale_many` stopping the files in flight)."""


def upscale_many(configs: Sequence[UpscaleConfig], runner: Runner, jobs: int = 1, *,
                 progress: Callable[[UpscaleConfig], UpscaleProgress | None] | None = None,
                 done: Callable[[UpscaleConfig, UpscaleResult | VideoError], None] | None = None,
                 ) -> list[UpscaleResult | VideoError]:
    """Upscale every config with the one open ``runner``, ``jobs`` files at once (a folder run).

    Several at once keep the backend busy through what a file does around its windows (opening it, the first
    window's wait, the encoder's flush, the audio and the final mux), and overlap one file's decoding and encoding with
    another's: what short clips spend most of their time on once the model is fast (a GPU, a Triton server). Each
    file runs as :func:`upscale` runs it alone (its own windows in flight, ``config.concurrency``), in a thread of its
    own; the runner is shared (every runner is thread-safe).

    Returns, in the order of ``configs``, each file's :class:`UpscaleResult` or the :class:`VideoError` it met (the
    others go on). Any other error (the backend gone), Ctrl-C or SIGTERM stops the files in flight, each cleaning up as
    a run stopped alone does (nothing at its output; ``resume``'s segments kept), and is raised. ``progress(config)``:
    that file's :class:`UpscaleProgress`; ``done(config, outcome)``: called as each file ends, one call at a time.
    """
    check_jobs(jobs)
    outcomes: list[UpscaleResult | VideoError | None] = [None] * len(configs)
    told = threading.Lock()

    def run(i: int, cancel: threading.Event | None) -> None:
        config = configs[i]
        try:
            outcome = upscale(config, progress=progress(config) if progress else None, runner=runner, cancel=cancel,
                              files=jobs)
        except VideoError as exc:  # this file; the others go on
            outcome = exc
        outcomes[i] = outcome
        if done is not None:
            with told:
                done(config, outcome)

    if jobs == 1:  # in this thread: Ctrl-C and SIGTERM land in the run itself, as with one file
        for i in range(len(configs)):
            run(i, None)
        return outcomes
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    cancel = threading.Event()
    fatal: list[BaseException] = []

    def one(i: int) -> None:
        if cancel.is_set():
            return
        try:
            run(i, cancel)
        except Cancelled:
            pass
        except BaseException as exc:  # the backend gone, a bug: the others stop, and this is raised
            fatal.append(exc)
            cancel.set()

    pool = ThreadPoolExecutor(jobs, thread_name_prefix="vggx-job")
    try:
        # Ctrl-C and SIGTERM are raised here, between waits, not inside one (where they can leave a future's lock
        # held, and the pool's shutdown waiting for it forever)
        with deferred_signals() as received:
            futures = [pool.submit(one, i) for i in range(len(configs))]
            while not all(f.done() for f in futures):
                wait(futures, timeout=SIGNAL_POLL_S, return_when=FIRST_EXCEPTION)
                received.raise_if_any()
                raise_if_terminating()  # a SIGTERM whose exception a finalizer swallowed
    except BaseException:  # Ctrl-C, SIGTERM (raised here, in the main thread): the files in flight stop too
        cancel.set()
        _cancel_runs(runner)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if cancel.is_set():
            _cancel_runs(runner, resume=True)
    if fatal:
        raise fatal[0]
    return outcomes


def _cancel_runs(runner: Runner, resume: bool = False) -> None:
    """Stop the runner's inferences in flight, and those its workers start until ``resume``, where it can (ONNX
    Runtime: at their next node), so that a run stopped by Ctrl-C or SIGTERM does not leave one going inside the
    library as the process exits; ``resume``: runs go as usual again."""
    call = getattr(runner, "resume" if resume else "cancel", None)
    if call is not None:
        call()


def plan_folder(input_dir: Path, output_dir: Path, recursive: bool = False) -> list[tuple[Path, Path]]:
    """The (input, output) pairs of a folder run: each video in ``input_dir`` (by extension, sorted) to the same name
    in ``output_dir`` (which the caller creates where missing); with ``recursive``, those in its subfolders too, to the
    same place in ``output_dir``'s (a library's seasons and episodes), hidden folders and the output folder (where it
    is inside the input folder) left out.

    Raises:
        ConfigError: ``output_dir`` is a file or ``input_dir`` itself, or there are no videos.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"{input_dir} is a folder, so the output must be one too; {output_dir} is a file")
    if not output_dir.exists() and output_dir.suffix.lower() in VIDEO_SUFFIXES:  # made a folder named like a file
        raise ConfigError(f"{input_dir} is a folder, so the output is a folder of videos; {output_dir} is named like a "
                          f"video file: name a folder (it is created)")
    if output_dir.exists() and output_dir.resolve() == input_dir.resolve():
        raise ConfigError(f"the output folder is the input folder {input_dir}: the outputs would replace the "
                          "inputs; choose another folder")
    videos = sorted(p for p in _folder_files(input_dir, output_dir, recursive) if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        pattern = guess_pattern(input_dir)
        hint = f"; for its images as one sequence, name their pattern: {pattern}" if pattern else ""
        where = f"{input_dir} or its subfolders" if recursive else str(input_dir)
        raise ConfigError(f"no videos in {where} (looked for {', '.join(sorted(VIDEO_SUFFIXES))}){hint}")
    if not output_dir.exists() and not output_dir.parent.is_dir():
        raise ConfigError(f"cannot create {output_dir}: directory {output_dir.parent} does not exist")
    return [(video, output_dir / video.relative_to(input_dir)) for video in videos]


def _folder_files(folder: Path, skip: Path, recursive: bool) -> Iterator[Path]:
    """The files in ``folder`` (``recursive``: and below it, but not in hidden folders or in ``skip``)."""
    if not recursive:
        yield from (p for p in folder.iterdir() if p.is_file())
        return
    skip = skip.resolve()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(root) / d).resolve() != skip)
        yield from (Path(root) / f for f in files)


def output_frame_size(input_size: tuple[int, int], scale: int, outscale: float | None = None,
                      height: int | None = None, rotation: int = 0, square: Fraction | None = None) -> tuple[int, int]:
    """(h, w) of the written frames for an input of ``input_size`` (h, w) as stored.

    The model's own size (``scale`` times the input) unless ``outscale`` (times the input) or ``height`` (pixels
    high as players show the video: with a display rotation of 90 or 270 degrees that is the stored width) asks
    for another; the other side then keeps the input's aspect ratio. ``square``: the input's pixel shape (sample
    aspect ratio), to be made square: the width is multiplied by it (an NTSC DVD's 16:9 pixels, 32/27, widen 720
    columns to 853 as displayed). Resized sides are rounded to the nearest even number (4:2:0 chroma needs even
    sides), 2 at least.

    Raises:
        ConfigError: the size would be 0, or ``outscale``/``height`` are both given.
    """
    h, w = input_size
    if outscale is not None and height is not None:
        raise ConfigError("give --outscale or --height, not both")
    if outscale is None and height is None and not square:
        return scale * h, scale * w
    if outscale is None and height is None:
        outscale = scale
    elif outscale is None:
        sideways = rotation % 180 == 90  # stored sideways, shown upright: the shown height is the stored width
        outscale = height / (w * (square or 1) if sideways else h)

    def even(x: float) -> int:
        return max(2, 2 * round(x / 2))

    return _check_frame_size(even(h * outscale), even(w * outscale * (square or 1)))


def _check_frame_size(h: int, w: int) -> tuple[int, int]:
    """``(h, w)`` if FFmpeg's encoders can take frames that large (``av_image_check_size``: 16384 a side at most and
    ``(w + 128)(h + 128)`` under 2**28), else ``ConfigError``."""
    if max(h, w) > MAX_SIDE or (h + 128) * (w + 128) >= 2**28:
        raise ConfigError(f"the output would be {w}x{h}: larger than FFmpeg encodes (at most {MAX_SIDE} a side and "
                          f"about 16384x16000 in all); lower --outscale/--height")
    return h, w


def upscale_frames(runner: Runner, frames: np.ndarray, keep: slice = slice(None),
                   tile_overlap: int | None = None, yuv420p: bool = False,
                   max_tile: tuple[int, int] | None = None, balanced: bool = True) -> np.ndarray:
    """Run one window: ``frames`` uint8 ``(T, h, w, 3)`` -> uint8 ``(k, s·h, s·w, 3)`` for ``frames[keep]``.

    Frames larger than ``max_tile`` (default: the model's max size) are tiled (feathered overlaps, see
    ``windows.py``; ``balanced``: see :func:`~vggx.client.windows.plan_tiles`); frames smaller than its min size
    are edge-padded and cropped back. ``yuv420p``: where the
    runner converts on its device (``runner.yuv420p_output``) and the frames need neither tiles nor padding,
    return the ``(k, 3/2·s·h, s·w)`` yuv420p planes the H.264 writer encodes instead (RGB otherwise).
    """
    info = runner.info
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3 \
            or 0 in frames.shape:
        raise ConfigError(f"frames must be uint8 (T, h, w, 3) RGB, got {getattr(frames, 'dtype', type(frames))} "
                          f"{getattr(frames, 'shape', '')}")
    _, h, w, _ = frames.shape
    s = info.scale
    plan = plan_tiles((h, w), max_tile or info.max_size, info.size_multiple, s, tile_overlap, balanced)
    if plan.count == 1:
        return _infer_padded(runner, frames, keep, yuv420p)
    kept = len(range(*keep.indices(frames.shape[0])))
    acc = np.zeros((kept, s * h, s * w, 3), np.float32)
    for y0, y1, x0, x1, weight in plan.tiles():
        tile = _infer_padded(runner, frames[:, y0:y1, x0:x1], keep)
        acc[:, s * y0: s * y1, s * x0: s * x1] += tile * weight
    return np.clip(np.rint(acc), 0, 255).astype(np.uint8)


def upscale_clip(runner: Runner, frames: Iterable[np.ndarray], *, tile: tuple[int, int] | None = None,
                 tile_overlap: int | None = None, context: int | None = None,
                 alpha: str = "bicubic", scene_threshold: float | None = DEFAULT_SCENE_THRESHOLD,
                 concurrency: int = 1) -> Iterator[np.ndarray]:
    """Upscale a clip given as frames, yielding its upscaled frames in order: ``vggx upscale`` for frames that come
    from your own decoder, a camera or a renderer rather than a file.

    ``frames``: uint8 RGB ``(h, w, 3)`` (or RGBA ``(h, w, 4)``, or uint16 RGB) arrays of one size and kind, from
    any iterable; a generator is read as the windows need it (the clip's length need not be known; about two windows
    of frames are held at a time). Each frame that comes back is uint8 ``(s·h, s·w, 3)`` (RGBA: ``4``; uint16 RGB
    for uint16 frames, their levels below the model's 8 bits carried as ``fine_bits`` does), what ``vggx upscale``
    encodes: the same overlapping windows (``context`` frames each side, a quarter of the window by default), the
    same tiles (``tile`` caps them, as ``--tile``), the same halving of the tiles when the device runs out of
    memory, and the same alpha (enlarged with bicubic beside the model's colour, or through the model with
    ``alpha="model"``, as :attr:`UpscaleConfig.alpha`), and the same scene cuts (a frame scoring ``scene_threshold``
    or more starts a new shot, windowed on its own; None: none looked for).

    ``concurrency``: windows in flight at once (as ``--concurrency``: 4 keeps a Triton server busy), run in worker
    threads while the calling thread cuts the next ones; the frames still come back in order, and about
    ``concurrency + 1`` windows of frames are held. 1: one window at a time, in the calling thread. A generator
    that is closed early (``break``) lets the windows in flight finish and drops the rest.

    Raises:
        ConfigError: a frame that is not uint8 RGB/RGBA, or not the shape of the first; ``tile`` below the smallest.
        InferenceError, ServerError: the backend failed.
    """
    info = runner.info
    if alpha not in ALPHA_MODES:
        raise ConfigError(f"alpha must be {' or '.join(ALPHA_MODES)}, got {alpha!r}")
    context = _context(context, info.window)
    _check_concurrency(concurrency, "concurrency")
    tiles = _Tiles(runner, tile, tile_overlap, concurrency)
    scenes = SceneCuts(scene_threshold) if scene_threshold is not None else None

    def checked() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Each frame as (what the model reads: uint8 RGB/RGBA; a uint16 frame's int16 residual, else None)."""
        kind = None
        for i, frame in enumerate(frames):
            frame = np.asarray(frame)
            deep = frame.dtype == np.uint16 and frame.ndim == 3 and frame.shape[2] == 3
            if (not deep and (frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (3, 4))) or \
                    0 in frame.shape[:2]:
                raise ConfigError(f"frame {i} must be uint8 RGB (h, w, 3) or RGBA (h, w, 4), or uint16 RGB, of at "
                                  f"least 1x1 pixels, got "
                                  f"{frame.dtype} {frame.shape}")
            if kind is None:
                kind = (frame.shape, frame.dtype)
            elif (frame.shape, frame.dtype) != kind:
                size, dtype = kind
                this, first = f"{frame.shape[1]}x{frame.shape[0]}x{frame.shape[2]}", f"{size[1]}x{size[0]}x{size[2]}"
                if frame.dtype != dtype:
                    this, first = f"{this} {frame.dtype}", f"{first} {dtype}"
                raise ConfigError(f"frame {i} is {this}, frame 0 {first}: a clip's frames have one size and kind")
            yield split_fine(frame) if deep else (frame, None)

    def upscale_window(win: TimeWindow, window: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
        keep = slice(win.offset, win.offset + win.keep_count)
        stacked = np.stack([image for image, _ in window])
        images = tiles.upscale(runner, np.ascontiguousarray(stacked[..., :3]), keep)
        if window[0][1] is not None:  # uint16 frames: their residuals back on the model's output
            return join_fine(images, np.stack([fine for _, fine in window[keep]]))
        if stacked.shape[3] == 4:
            model = None if alpha == "bicubic" else (lambda grey, keep=keep: tiles.upscale(runner, grey, keep))
            images = _with_alpha(images, stacked[..., 3], keep, info.scale, model)
        return images

    windows = ((win, [item for item, _ in pairs]) for win, pairs in
               cut_windows(_flagged(checked(), scenes, lambda item: item[0]), info.window, context,
                           cut=lambda pair: pair[1]))
    if concurrency == 1:
        for win, window in windows:
            yield from upscale_window(win, window)
        return
    from concurrent.futures import ThreadPoolExecutor

    pending: collections.deque = collections.deque()
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="vggx-clip")
    try:
        for win, window in windows:
            pending.append(pool.submit(upscale_window, win, window))
            if len(pending) > concurrency:  # one more cut and waiting: the workers never wait for the caller
                yield from result_of(pending.popleft())
        while pending:
            yield from result_of(pending.popleft())
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


def _flagged(items: Iterable, scenes: SceneCuts | None, image: Callable) -> Iterator[tuple[object, bool]]:
    """``(item, starts a shot)`` for each of ``items``: the scene cuts :meth:`SceneCuts.flagged` finds in
    ``image(item)`` (one item late), or none where ``scenes`` is None."""
    return ((item, False) for item in items) if scenes is None else scenes.flagged(items, image=image)


def check_jobs(jobs: int) -> None:
    """``--jobs``, files at once: 1..:data:`MAX_JOBS` (``ConfigError`` else)."""
    if not 1 <= jobs <= MAX_JOBS:
        raise ConfigError(f"--jobs must be in 1..{MAX_JOBS}, got {jobs}")


def _check_concurrency(value: int, name: str) -> None:
    """Windows in flight, as ``--concurrency`` (the CLI) or ``concurrency`` (the API) names them: 1..64."""
    if not 1 <= value <= 64:
        raise ConfigError(f"{name} must be in 1..64, got {value}")


def _context(context: int | None, window: int) -> int:
    """Frames of context each side of a window: ``context``, or a quarter of the window; ``ConfigError`` where the
    window cannot keep a frame with it."""
    context = default_context(window) if context is None else context
    if not 0 <= context <= (window - 1) // 2:
        raise ConfigError(f"--context must be in 0..{(window - 1) // 2} for the model's window of {window} frames "
                          f"(each window keeps window - 2 x context frames), got {context}")
    return context


def _infer_padded(runner: Runner, frames: np.ndarray, keep: slice, yuv420p: bool = False) -> np.ndarray:
    """The frames ``keep`` selects, upscaled; not a view of the whole window's output (whose other frames are
    freed now rather than when the window is encoded)."""
    info = runner.info
    _, h, w, _ = frames.shape
    ph, pw = max(0, info.min_size[0] - h), max(0, info.min_size[1] - w)
    if yuv420p and not (ph or pw) and getattr(runner, "yuv420p_output", False):  # padding crops in RGB
        return runner.infer_yuv420p(np.ascontiguousarray(frames)[None], keep)[0]  # only the kept frames come back
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    if getattr(runner, "infers_kept", False):  # only the kept frames come back
        kept = runner.infer(np.ascontiguousarray(frames)[None], keep=keep)[0]
        return kept[:, : info.scale * h, : info.scale * w] if ph or pw else kept
    sr = runner.infer(np.ascontiguousarray(frames)[None])[0]
    kept = sr[keep, : info.scale * h, : info.scale * w]
    return kept.copy() if kept.shape[0] < sr.shape[0] else kept


def _bicubic(image: np.ndarray, scale: int) -> np.ndarray:
    """``image`` (RGB ``(h, w, 3)``, or one ``(h, w)`` plane such as an alpha matte; uint8 or uint16) ``scale`` times
    larger, bicubic (swscale)."""
    import av

    if image.dtype == np.uint16:
        fmt = "gray16le" if image.ndim == 2 else "rgb48le"
    else:
        fmt = "gray" if image.ndim == 2 else "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
    h, w = image.shape[:2]
    return thread_reformatter().reformat(frame, width=w * scale, height=h * scale, format=fmt,
                                         interpolation="BICUBIC").to_ndarray()


def _with_alpha(images: np.ndarray, alphas: np.ndarray, keep: slice, scale: int, model=None) -> np.ndarray:
    """RGBA ``(k, s·h, s·w, 4)``: the model's RGB with the kept frames' alpha (``alphas``: the window's ``(T, h, w)``
    planes) enlarged to it. ``model``: None for bicubic (the matte is the input's, enlarged), else a callable
    running RGB frames ``(T, h, w, 3)`` through the model for ``keep`` (the alpha as a grey clip; the mean of the
    three channels it returns). 16-bit RGB and alpha (fine bits) make 16-bit RGBA, the matte's own fine levels carried
    past the model as the colour's are."""
    out = np.empty((*images.shape[:3], 4), images.dtype)
    out[..., :3] = images
    if model is not None:
        grey = np.ascontiguousarray(np.repeat(alphas[..., None], 3, axis=-1))
        if grey.dtype == np.uint16:
            rounded, residual = split_fine(grey)
            sr = join_fine(model(rounded), residual[keep])
        else:
            sr = model(grey)
        out[..., 3] = np.rint(sr.mean(axis=-1, dtype=np.float32)).astype(out.dtype)
        return out
    for frame, alpha in zip(out, alphas[keep], strict=True):
        frame[..., 3] = _bicubic(alpha, scale)
    return out


_GROW_AFTER = 16  # windows that fit in smaller tiles before the larger ones are tried again
_GROW_AFTER_MAX = 1024  # the wait doubles each time the larger tiles still do not fit, up to this


class _Tiles:
    """The largest tile a run sends (LR pixels): the model's max size, or ``--tile`` below it, halved each time the
    device runs out of memory on a tile (shared by the workers: a window that failed is run again with the smaller
    tiles, and so are the windows after it). Memory that another process held may come free: after
    :data:`_GROW_AFTER` windows that fit, the size before the last halving is tried again (the wait doubling each
    time it still does not fit), so a long run on a shared GPU does not stay on small tiles for one bad moment."""

    def __init__(self, runner: Runner, tile: tuple[int, int] | None, overlap: int | None, in_flight: int = 1) -> None:
        info = runner.info
        self.multiple, self.scale, self.overlap = info.size_multiple, info.scale, overlap
        self.floor = smallest_tile(info.min_size, info.max_size, info.size_multiple)
        if tile is not None and (tile[0] < self.floor[0] or tile[1] < self.floor[1]):
            raise ConfigError(f"--tile {tile[0]}x{tile[1]} is below the smallest tile this model takes, "
                              f"{self.floor[0]}x{self.floor[1]}")
        limit = info.max_size if tile is None else (min(tile[0], info.max_size[0]), min(tile[1], info.max_size[1]))
        # An in-process CPU run: windows that fit this machine's memory, sized at the first frame (out of memory on
        # the host is the kernel's OOM killer more often than an error to halve the tiles on).
        per_pixel, budget = getattr(runner, "host_bytes_per_pixel", None), getattr(runner, "host_budget", None)
        self._memory = (per_pixel, budget / in_flight) if tile is None and per_pixel and budget else None
        self.size = (limit[0] // info.size_multiple * info.size_multiple,
                     limit[1] // info.size_multiple * info.size_multiple)
        self.device = getattr(runner, "device_name", None) or "the device"
        self._lock = threading.Lock()
        self._larger: list[tuple[int, int]] = []  # sizes given up, the last one given up last
        self._fitted = 0  # windows that fitted since the size last changed
        self._wait = _GROW_AFTER
        self._grown: tuple[int, int] | None = None  # the size last tried again, until a window fits in it
        self._warned: set[tuple[int, int]] = set()  # sizes whose halving was warned of

    def plan(self, size: tuple[int, int]) -> TilePlan:
        self._fit_memory(size)
        return plan_tiles(size, self.size, self.multiple, self.scale, self.overlap)

    def _fit_memory(self, frame: tuple[int, int]) -> None:
        """At the first frame of a run with a host memory budget: tiles whose windows fit it, where a window of whole
        frames would not (:func:`memory_tile`)."""
        with self._lock:
            if self._memory is None:
                return
            (per_pixel, budget), self._memory = self._memory, None
            if frame[0] * frame[1] * per_pixel <= budget:
                return
            fits = memory_tile(budget, per_pixel, self.size, self.floor, self.multiple, frame)
            if fits != self.size:
                log.info("tiles of at most %dx%d: a window of %dx%d frames would hold more than the %.1f GiB of memory "
                         "this run takes (--tile sets the size)", *fits, *frame, budget / 2**30)
                self.size = fits

    def upscale(self, runner: Runner, frames: np.ndarray, keep: slice, yuv420p: bool = False) -> np.ndarray:
        """:func:`upscale_frames` in these tiles, run again in smaller ones each time the device runs out of
        memory."""
        self._fit_memory(frames.shape[1:3])
        while True:
            tried = self.size
            try:
                out = upscale_frames(runner, frames, keep, self.overlap, yuv420p=yuv420p, max_tile=tried)
            except DeviceOutOfMemoryError as exc:
                self.shrink(tried, frames.shape[1:3], exc)
                continue
            self.fitted(tried)
            return out

    def fitted(self, tried: tuple[int, int]) -> None:
        """A window fitted in tiles of ``tried``: after enough of them, try the size given up last again."""
        with self._lock:
            if self.size != tried:
                return
            if self._grown == tried:
                self._grown, self._wait = None, _GROW_AFTER  # the larger tiles fit again
            if not self._larger:
                return
            self._fitted += 1
            if self._fitted >= self._wait:
                self.size = self._grown = self._larger.pop()
                self._fitted = 0
                log.info("trying tiles of at most %dx%d again on %s", *self.size, self.device)

    def shrink(self, tried: tuple[int, int], frame: tuple[int, int], exc: DeviceOutOfMemoryError) -> None:
        """``tried`` (the limit a window ran with) ran out of memory on ``frame``-sized frames: halve the tiles,
        unless another worker did already; ``InferenceError`` when they cannot get smaller."""
        with self._lock:
            if self.size != tried:  # another window failed on the same tiles and shrank them
                return
            used = plan_tiles(frame, tried, self.multiple, self.scale, self.overlap).largest  # the tiles sent
            new = smaller_tile(used, self.floor, self.multiple)
            # where the device said how many pixels fit, halve here until they do, not one refused window a halving
            while new is not None and exc.fits is not None and new[0] * new[1] > exc.fits:
                if (smaller := smaller_tile(new, self.floor, self.multiple)) is None:
                    break
                new = smaller
            if new is None:
                raise InferenceError(f"{exc} even in tiles of {used[0]}x{used[1]}, the smallest this model takes: "
                                     f"free memory on {self.device} (other processes?) or use a smaller model")
            if self._grown == tried:  # tried again and still too large: wait longer before the next try
                self._wait = min(2 * self._wait, _GROW_AFTER_MAX)
            (log.info if tried in self._warned else log.warning)(
                "%s ran out of memory on %dx%d tiles; going on with tiles of at most %dx%d (--tile %dx%d starts "
                "there)", self.device, used[0], used[1], *new, *new)
            self._warned.add(tried)
            self._larger.append(tried)
            self._grown, self._fitted = None, 0
            self.size = new


@dataclass
class _Work:
    index: int  # the window's place in the order they are encoded in (from 0; a resumed run's first is 0)
    frames: np.ndarray  # (T, h, w, 3)
    keep: slice  # positions of the kept frames in ``frames``
    pts: list[int]  # pts of the kept frames
    alphas: np.ndarray | None = None  # the window's alpha planes (T, h, w), where the output keeps alpha
    fines: np.ndarray | None = None  # the kept frames' fine residuals (k, h, w, 3) int16, where the output keeps them


@dataclass
class _Done:
    index: int
    images: np.ndarray  # (k, H, W, 3), ready to encode
    pts: list[int]


class _Run:
    """The threads of one upscale run and their shared stop flag / first error."""

    def __init__(self, cfg: UpscaleConfig, runner: Runner, reader: VideoReader, context: int,
                 frames_done: int = 0, alpha: bool = False, fine: bool = False,
                 cancel: threading.Event | None = None, files: int = 1) -> None:
        self.cfg, self.runner, self.reader = cfg, runner, reader
        self.alpha = alpha  # the input's alpha goes to the output (RGBA frames to the writer)
        self.fine = reader.fine = fine  # the input's fine levels go to the output (uint16 frames to the writer)
        self.window, self.context = runner.info.window, context
        self.slots = threading.Semaphore(cfg.concurrency + 2)
        self.todo: queue.Queue[_Work | None] = queue.Queue(maxsize=cfg.concurrency)
        self.done: queue.Queue[_Done | None] = queue.Queue()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._error_lock = threading.Lock()
        self.frames_decoded = 0
        self.windows = 0
        self.busy = {"decode": 0.0, "infer": 0.0, "encode": 0.0}
        self._busy_lock = threading.Lock()  # inference workers add to busy["infer"] concurrently
        # The rectangle upscaled (None: the whole frame), its size, and the size of the frames written (before any
        # resizing: x scale): the picture alone, or the input's frame with the bars put back (keep_bars).
        size = (reader.info.height, reader.info.width)
        self.crop, self.picture, self.canvas = _framing(cfg, size)
        scale = runner.info.scale
        self.bars = (lambda images: pad_bars(images, self.crop, size, scale)) \
            if self.crop is not None and cfg.keep_bars else None
        # The model's device converts to what the encoder takes (the CUDA fast path and H.264's yuv420p).
        color = reader.info.color
        self.yuv420p = (cfg.device_yuv420p and getattr(runner, "yuv420p_output", False) and not cfg.compare
                        and output_pix_fmt(cfg.encode) == "yuv420p" and not (color is not None and color.kept)
                        and self.bars is None)
        self._decode_waiting = 0.0  # seconds the decode thread spent blocked on a full queue
        self.tiles = _Tiles(runner, cfg.tile, cfg.tile_overlap, cfg.concurrency * files)
        # A resumed run: the frames before ``frames_done`` are in the output already; windows keep those after them.
        self.first_frame = frames_done
        self.scenes = SceneCuts(cfg.scene_threshold) if cfg.scene_threshold is not None else None
        self.cuts: list[int] = []  # the frames that started a shot (read once the decode thread is done)
        self._emitted = 0  # windows handed to the workers, numbered in order
        self.first_pts: int | None = None  # source pts of frame 0 (the output's time zero)
        self.last_pts = 0  # source pts of the last frame decoded
        self.cancel = cancel  # set from outside: stop (upscale's ``cancel``)

    def fail(self, exc: BaseException) -> None:
        with self._error_lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def _put(self, q: queue.Queue, item) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _acquire_slot(self) -> bool:
        while not self.stop.is_set():
            if self.slots.acquire(timeout=_POLL_S):
                return True
        return False

    # -------------------------------------------------------------------------------- decode thread

    def decode(self) -> None:
        try:
            t0 = time.perf_counter()
            self._decode()
            self.busy["decode"] = time.perf_counter() - t0 - self._decode_waiting
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.reader.close()
            for _ in range(self.cfg.concurrency):  # one end marker per worker (gives up once stopped)
                if not self._put(self.todo, None):
                    break

    def _decode(self) -> None:
        stream = WindowStream(_flagged(self._frames(), self.scenes, lambda item: item[1]), self.window, self.context,
                              self.first_frame, cut=lambda pair: pair[1])
        for win, pairs in stream:
            if not self._emit(win, [item for item, _ in pairs]):
                return
        if not self.stop.is_set():
            self.windows, self.cuts = stream.windows, stream.cuts

    def _frames(self) -> Iterator[tuple[int, np.ndarray, np.ndarray | None, np.ndarray | None]]:
        """The reader's frames as ``(pts, image, alpha, fine)``, ending early once the run stops (the windows then
        emitted are refused by ``_emit``; the reader gives every frame the stream's first size)."""
        for frame in self.reader:
            if self.stop.is_set():
                return
            if frame.index == 0:
                self.first_pts = frame.pts
            self.last_pts = frame.pts
            self.frames_decoded = frame.index + 1
            crop = self.crop
            if crop is None:
                yield frame.pts, frame.image, frame.alpha if self.alpha else None, frame.fine
            else:  # the picture alone (contiguous: the scene-cut filter takes it as a frame)
                yield (frame.pts, np.ascontiguousarray(crop(frame.image)), crop(frame.alpha) if self.alpha else None,
                       crop(frame.fine))

    def _emit(self, win: TimeWindow, frames: list[tuple[int, np.ndarray, np.ndarray | None, np.ndarray | None]]
              ) -> bool:
        offset = win.keep_start - win.offset  # the first source's index, before any mirroring
        kept = [frames[i - offset] for i in range(win.keep_start, win.keep_end)]
        work = _Work(self._emitted, np.stack([image for _, image, _, _ in frames]),
                     slice(win.offset, win.offset + win.keep_count), [pts for pts, _, _, _ in kept],
                     np.stack([alpha for _, _, alpha, _ in frames]) if self.alpha else None,
                     np.stack([fine for _, _, _, fine in kept]) if self.fine else None)
        self._emitted += 1
        t0 = time.perf_counter()
        try:
            return self._acquire_slot() and self._put(self.todo, work)
        finally:
            self._decode_waiting += time.perf_counter() - t0

    # ------------------------------------------------------------------------------- worker threads

    def work(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    item = self.todo.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is None:
                    break
                t0 = time.perf_counter()
                images = self.tiles.upscale(self.runner, item.frames, item.keep, self.yuv420p)
                if item.fines is not None:
                    images = join_fine(images, item.fines)
                if item.alphas is not None:
                    model = None if self.cfg.alpha == "bicubic" else (
                        lambda grey, keep=item.keep: self.tiles.upscale(self.runner, grey, keep))
                    images = _with_alpha(images, item.alphas, item.keep, self.runner.info.scale, model)
                if self.bars is not None:  # the picture back in the input's frame
                    images = self.bars(images)
                if self.cfg.compare:
                    lr = item.frames[item.keep]
                    scale = self.runner.info.scale
                    bicubic = np.stack([_bicubic(a, scale) for a in lr])
                    bicubic = bicubic if self.bars is None else self.bars(bicubic)
                    images = np.concatenate([bicubic, images], axis=2)
                with self._busy_lock:
                    self.busy["infer"] += time.perf_counter() - t0
                self.done.put(_Done(item.index, images, item.pts))
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.done.put(None)

    # ------------------------------------------------------------------------------ ordered output

    def results(self) -> Iterator[_Done]:
        """Yield finished windows in order (in the calling thread); raise the first thread error."""
        pending: dict[int, _Done] = {}
        next_k = 0
        workers_left = self.cfg.concurrency
        while True:
            if self.error is not None:
                raise self.error
            raise_if_terminating()  # a SIGTERM whose exception a finalizer swallowed
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled(f"{self.reader.path}: stopped")
            # Ctrl-C and SIGTERM are raised after the get, not inside its Condition.wait (where one can land with the
            # queue's lock let go, and its release on the way out fail: a traceback, not the clean stop)
            with deferred_signals():
                try:
                    item = self.done.get(timeout=_POLL_S)
                except queue.Empty:
                    item = _NOTHING
            if item is _NOTHING:
                continue
            if item is None:
                workers_left -= 1
                if workers_left == 0:
                    break
                continue
            pending[item.index] = item
            while next_k in pending:
                yield pending.pop(next_k)
                next_k += 1
                self.slots.release()
        if self.error is not None:
            raise self.error
        if pending:  # pragma: no cover - a window went missing: a bug, not a user error
            raise RuntimeError(f"windows {sorted(pending)} finished but window {next_k} never did")


def upscale(config: UpscaleConfig, *, progress: UpscaleProgress | None = None,
            runner: Runner | None = None, cancel: threading.Event | None = None, files: int = 1) -> UpscaleResult:
    """Upscale ``config.input`` into ``config.output`` (see the module docstring).

    ``runner``: an open runner to use (the caller keeps ownership); default: open ``config.backend``
    and close it at the end. ``cancel``: set (from another thread) to stop the run as an error would (nothing left
    at the output, ``resume``'s segments kept): it raises :class:`Cancelled`. ``files``: how many runs share
    ``runner`` at once (:func:`upscale_many`'s ``jobs``): an in-process CPU runner's memory is theirs together.

    Raises:
        VideoError: unreadable input, unwritable output, encoding failure.
        InferenceError, ServerError: the backend failed.
        KeyboardInterrupt: passed on after cleaning up. No file is left at the output on any error.
    """
    output = check_output_path(config.output, config.input)
    codec = image_codec(output)
    if codec is not None and config.encode.codec == EncodeConfig().codec:  # the default: the sequence's format
        config = dataclasses.replace(config, encode=dataclasses.replace(config.encode, codec=codec))
    if output.suffix.lower() == ".gif" and config.encode.codec == EncodeConfig().codec:  # GIF holds GIF only
        config = dataclasses.replace(config, encode=dataclasses.replace(config.encode, codec="gif"))
    if output.suffix.lower() == ".y4m" and config.encode.codec != STDOUT_RAW_CODEC:  # y4m holds raw frames only
        if config.encode.codec != EncodeConfig().codec:
            raise VideoError(f"{output.name}: y4m holds uncompressed frames; --codec {config.encode.codec} needs "
                             f"another container (.mkv, .mp4)")
        config = dataclasses.replace(config, encode=dataclasses.replace(config.encode, codec=STDOUT_RAW_CODEC))
    if writes_y4m(output, config.encode.codec) and config.encode.pix_fmt is None:  # said, for the checks below
        config = dataclasses.replace(config, encode=dataclasses.replace(config.encode, pix_fmt=Y4M_PIX_FMT))
    check_image_codec(output, config.encode.codec)
    check_encoder_starts(config.encode)
    if is_stdout(output):
        check_stdout(config.encode)
    elif codec is None:
        check_container(output, config.encode.codec)
    reader = open_video(config.input, start=config.start, max_frames=config.frames, deinterlace=config.deinterlace,
                        rate=config.fps, stream=config.video_stream, ivtc=config.ivtc,
                        tonemap=config.tonemap, filters=config.filters,
                        # outputs that cannot say they are shown turned, and --compare, whose halves go side by
                        # side as shown (turned after, a phone clip's would be stacked)
                        upright=codec is not None or writes_y4m(output, config.encode.codec) or config.compare)
    frames = reader.expected_frames()
    try:
        # The numbers an image-sequence output gets: the input sequence's own from its --start frame (the first
        # shown from half a frame before it on, as the reader picks it), from 1 otherwise; a --vf filter may retime
        # the frames, so then any number.
        first = None
        if not reader.filters:
            skipped = max(0, math.ceil(Fraction(reader.start) * reader.info.rate - Fraction(1, 2)))
            first = reader.sequence.start + skipped if reader.sequence is not None else 1
        check_keeps_input(output, config.input, first, frames if first is not None else None)
    except BaseException:
        reader.close()
        raise
    if is_single_image(output) and frames is not None and frames > 1:
        reader.close()
        raise ConfigError(f"{output.name} holds one image, but {reader.path} has {frames} frames: write a sequence "
                          f"({output.stem}_%04d{output.suffix}), a video, or pass --frames 1")
    own_runner = runner is None
    try:
        if runner is None:
            runner = open_runner(config.backend)
    except BaseException:
        reader.close()
        raise
    try:
        return _upscale(config, output, runner, reader, progress, cancel=cancel, files=files)
    finally:
        if own_runner:
            runner.close()


def _windows_per_server(runner: Runner) -> dict[str, int]:
    """A Triton pool's windows by server address (only where there were several); {} for other runners."""
    urls, windows = getattr(runner, "urls", None), getattr(runner, "windows", None)
    if not urls or windows is None or len(urls) < 2:
        return {}
    return dict(zip(urls, windows, strict=True))


def _resume_store(config: UpscaleConfig, output: Path, runner: Runner, reader: VideoReader, context: int,
                  fine: bool):
    """The segment store of a ``resume`` run and the encoder settings with its segment length (about two seconds,
    a whole number of window strides where no scene cut moves the windows; a window that straddles the stored
    frames is run again for the frames after them), or ``(None, config.encode)``."""
    import av

    from vggx.video import SegmentStore

    if not config.resume:
        kept = output.with_name(f".{output.name}.vggx-resume")
        with contextlib.suppress(OSError):  # a name as long as the file system takes has no longer neighbour
            if not is_stdout(output) and kept.is_dir():
                log.warning("%s holds the segments of a stopped run of %s; --resume goes on after them, and this run "
                            "without it leaves them: delete the folder if they are not wanted", kept, output.name)
        return None, config.encode
    info = runner.info
    stride = info.window - 2 * context
    encode = config.encode
    if encode.segment_frames is None:
        encode = dataclasses.replace(encode, segment_frames=stride * max(2, round(2 * reader.info.rate / stride)))

    def identity(path: Path | str | None) -> list | None:
        if is_url(path):  # without its query (a presigned URL's signature changes from run to run)
            return [display_source(path)]
        if reader.sequence is not None and path == config.input:  # the numbers and the last file
            seq = reader.sequence
            return [str(Path(path).resolve()), seq.start, seq.count, *identity(seq.file(seq.start + seq.count - 1))]
        if path is None or not Path(path).exists():
            return None
        st = Path(path).stat()
        return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]

    from vggx.checkpoint import DEFAULT_CHECKPOINT

    settings = {
        # the backend as it computes (a Triton run's server addresses may change between runs: pods restart)
        "input": identity(config.input), "backend": getattr(runner, "resume_identity", runner.description),
        "model": repr(info),
        # (a served model's weights are in its "backend": this machine's checkpoint is not what ran)
        "checkpoint": None if config.backend.backend is Backend.TRITON
        else identity(config.backend.checkpoint or DEFAULT_CHECKPOINT),
        # the encoder's settings that make the bits (not how many encoders run at once, nor conversion threads)
        "encode": {f.name: repr(getattr(encode, f.name)) for f in dataclasses.fields(encode)
                   if f.name not in ("encoders", "convert_threads")},
        "window": info.window, "context": context, "tile": config.tile,
        "tile_overlap": config.tile_overlap,
        "start": config.start, "frames": config.frames, "compare": config.compare,
        "deinterlace": config.deinterlace, "ivtc": config.ivtc, "tonemap": config.tonemap, "filters": config.filters,
        "outscale": config.outscale, "height": config.height,
        "fps": str(config.fps) if config.fps else None, "alpha": config.alpha,
        "scene_threshold": config.scene_threshold, "fine_bits": fine, "color": repr(reader.info.color),
        "copy": None if config.copy is None else sorted(config.copy), "video_stream": config.video_stream,
        "crop": None if config.crop is None else str(config.crop), "keep_bars": config.keep_bars,
        "square_pixels": config.square_pixels,
        "ffmpeg": [av.__version__, ".".join(map(str, av.library_versions.get("libavcodec", ())))],
    }
    return SegmentStore(output.with_name(f".{output.name}.vggx-resume"), settings), encode


def _alpha_output(config: UpscaleConfig, reader: VideoReader) -> tuple[UpscaleConfig, bool]:
    """Whether the input's alpha channel goes to the output, and the config that encodes it (the codec's pixel
    format with alpha, where ``--pix-fmt`` chose none); a warning where the input has alpha the output drops."""
    if not reader.info.has_alpha:
        if config.alpha != "bicubic":  # asked for by name: say it found nothing to use it on
            log.warning("%s has no alpha channel; --alpha %s has nothing to enlarge", reader.path, config.alpha)
        return config, False
    fmt = None if config.compare else alpha_pix_fmt(config.encode)
    if fmt is None:
        y4m = writes_y4m(config.output, config.encode.codec)
        why = "--compare writes none" if config.compare else (
            f"y4m in {config.encode.pix_fmt} keeps none (--pix-fmt yuva444p does)" if y4m else
            f"{config.encode.codec}" + (f" in {config.encode.pix_fmt}" if config.encode.pix_fmt else "")
            + " keeps none")
        log.warning("%s has an alpha channel; %s, so it is dropped (PNG/TIFF images, --codec ffv1 in .mkv, "
                    "prores_ks in .mov, libvpx-vp9 in .webm or .gif as 1-bit transparency keep it)", reader.path, why)
        return config, False
    if config.encode.pix_fmt is None and _keeps_depth(config, reader):  # a deep matte into a lossless output
        fmt = deeper_pix_fmt(config.encode, fmt) or fmt
    return dataclasses.replace(config, encode=dataclasses.replace(config.encode, pix_fmt=fmt)), True


def _keeps_depth(config: UpscaleConfig, reader: VideoReader) -> bool:
    """Whether the output's default format follows a deep input's depth: images and lossless codecs."""
    return reader.info.bit_depth > 8 and (image_codec(config.output) is not None
                                          or config.encode.codec in _LOSSLESS_CODECS)


def _depth_output(config: UpscaleConfig, output: Path, reader: VideoReader, alpha: bool) -> tuple[UpscaleConfig, bool]:
    """The output's pixel format where the input's depth or colour asks for another default (where ``--pix-fmt``
    chose none: an HDR input's codec's 10-bit format; a deep input's 16-bit one for PNG/TIFF images and FFV1, which
    are lossless; :func:`_alpha_output` chose it where the alpha goes along), and whether the input's fine levels go
    to the output (:attr:`UpscaleConfig.fine_bits`; not with ``--compare``). Warns where an HDR input's output cannot
    show it as it is."""
    vinfo = reader.info
    color, encode = vinfo.color, config.encode
    hdr = color is not None and color.hdr is not None
    if encode.pix_fmt is None and not alpha and (hdr or _keeps_depth(config, reader)):
        deeper = deeper_pix_fmt(encode)
        if deeper is not None:
            encode = dataclasses.replace(encode, pix_fmt=deeper)
            config = dataclasses.replace(config, encode=encode)
    bits = component_depth(output_pix_fmt(encode))
    if hdr and writes_y4m(output, encode.codec):
        log.warning("%s is HDR (%s, BT.2020): y4m cannot say so; tag it where the stream is encoded (ffmpeg: "
                    "-color_primaries bt2020 -color_trc %s -colorspace bt2020nc)", reader.path, color.hdr,
                    "smpte2084" if "PQ" in color.hdr else "arib-std-b67")
    elif hdr and image_codec(output) not in (None, "png"):  # PNG says it in its cICP chunk
        log.warning("%s is HDR (%s, BT.2020): %s images carry no such tags (PNG's do); their RGB is the input's, as "
                    "coded", reader.path, color.hdr, image_codec(output))
    if hdr and encode.codec == "libx264" and bits > 8 and not is_stdout(output):
        log.warning("%s is HDR (%s): 10-bit H.264 plays on few devices (most TVs and phones decode it in software "
                    "or not at all); --codec libx265 is HDR10's usual codec", reader.path, color.hdr)
    if hdr and bits <= 8:
        log.warning("%s is HDR (%s): %d bits a component band its gradients; give --pix-fmt yuv420p10le (x264, "
                    "x265, SVT-AV1)", reader.path, color.hdr, bits)
    return config, config.fine_bits and vinfo.bit_depth > 8 and bits > 8 and not config.compare


def _copied(config: UpscaleConfig, output: Path, reader: VideoReader) -> tuple[str, ...]:
    """What goes along with the video into ``output``: what the input has of the audio, subtitles, chapters,
    attachments and cover (those ``config.copy`` names), unless the output holds none (images, y4m, GIF) or the input
    cannot be read twice (a pipe), which a warning says."""
    vinfo = reader.info
    wanted = tuple(k for k in EXTRAS if getattr(vinfo, f"has_{k}") and (config.copy is None or k in config.copy))
    if not wanted:
        return ()
    if image_codec(output) is not None:
        log.warning("%s: images hold no audio, subtitles or chapters; those of %s are not copied", output, reader.path)
    elif is_pipe(config.input):
        log.warning("what goes along with the video on standard input (%s) is not copied (it is copied by reading "
                    "the input a second time, which a pipe does not allow): pass the file itself to keep it",
                    ", ".join(wanted))
    elif writes_y4m(output, config.encode.codec):
        if is_stdout(output):
            log.warning("y4m on standard output carries the video only: the program reading it can take the audio "
                        "from %s itself (ffmpeg -i - -i IN -map 0:v -map 1:a ...), or give --codec (Matroska with "
                        "the audio)", display_source(reader.path))
        else:
            log.warning("%s: y4m carries the video only; the audio of %s is not copied (an .mkv output keeps it)",
                        output, display_source(reader.path))
    elif output.suffix.lower() == ".gif":
        log.warning("%s: a GIF holds pictures only; the audio, subtitles and chapters of %s are not copied", output,
                    display_source(reader.path))
    else:
        return wanted
    return ()


def _dry_run(config: UpscaleConfig, output: Path, runner: Runner, reader: VideoReader, run: _Run,
             copied: tuple[str, ...]) -> UpscaleResult:
    """What the run would do (see :attr:`UpscaleConfig.dry_run`), and what the input looks like it needs: the first
    frames are decoded (frame 0 for the display rotation that ``--height`` goes by; the interlacing check's 120, whose
    warning says --deinterlace or --ivtc), and, without a ``crop``, frames spread over the run are looked at for
    black bars (``UpscaleResult.bars``). Closes the reader."""
    info, vinfo = runner.info, reader.info
    bars = None
    try:
        frames = iter(reader)
        for _ in zip(range(FIELD_CHECK_FRAMES), frames, strict=False):
            pass
        frames.close()  # the check says what it saw, however few frames there were
        expected = reader.expected_frames() or 0
        if config.crop is None and not is_pipe(config.input):
            try:
                found = find_picture(reader.sample())
            except VideoError:  # an input that cannot be looked over (a live stream): nothing said
                found = None
            bars = found if found is not None and not found.covers((vinfo.height, vinfo.width)) else None
    finally:
        reader.close()
    out_h, out_w = output_frame_size(run.canvas, info.scale, config.outscale, config.height, reader.rotation,
                                     _square(config, vinfo))
    out_w *= 2 if config.compare else 1
    _check_frame_size(out_h, out_w)
    plan = run.tiles.plan(run.picture)
    return UpscaleResult(
        output=output, frames=expected, seconds=0.0, output_bytes=0, input_size=(vinfo.height, vinfo.width),
        rate=vinfo.rate, output_size=(out_h, out_w),
        windows=windows_needed(expected, info.window, run.context) if expected else 0,
        tiles_per_window=plan.count, backend=runner.description, tile=run.tiles.size if plan.count > 1 else None,
        concurrency=config.concurrency, input=config.input, resumed_frames=run.first_frame, dry_run=True,
        **_carried(config, copied), crop=run.crop, keep_bars=run.bars is not None, bars=bars,
        **_depths(config, reader, run.fine))


def _upscale(config: UpscaleConfig, output: Path, runner: Runner, reader: VideoReader,
             progress: UpscaleProgress | None, cancel: threading.Event | None = None, files: int = 1) -> UpscaleResult:
    info, vinfo = runner.info, reader.info
    try:  # the settings the model's facts check, before the decode thread (which closes the reader) starts
        context = _context(config.context, info.window)
        config = _resolved_crop(config, reader)
        # The written size, before any work (the display rotation, which --height goes by, is known only once
        # frame 0 is decoded: open_writer checks again with it).
        _, _, canvas = _framing(config, (vinfo.height, vinfo.width))
        early_h, early_w = output_frame_size(canvas, info.scale, config.outscale, config.height,
                                             square=_square(config, vinfo))
        early_w *= 2 if config.compare else 1
        _check_frame_size(early_h, early_w)
        checked = config.encode.pix_fmt
        config, alpha = _alpha_output(config, reader)
        config, fine = _depth_output(config, output, reader, alpha)
        if config.encode.pix_fmt != checked:  # the input chose a deeper format or one with alpha: options again
            check_encoder_starts(config.encode)
        check_frame_encodable(config.encode, early_w, early_h)
        store, encode = _resume_store(config, output, runner, reader, context, fine)
        frames_done = store.frames_done if store is not None else 0
        run = _Run(config, runner, reader, context, frames_done, alpha, fine, cancel, files)
        copied = _copied(config, output, reader)
        check_copy(output, vinfo.path, copied, config.encode)
        if config.dry_run:
            return _dry_run(config, output, runner, reader, run, copied)
    except BaseException:
        reader.close()
        raise
    scope = object()  # this run's, on its threads: a stop of this run stops its inferences alone (in_scope)
    threads = [threading.Thread(target=run.decode, name="vggx-decode", daemon=True)]
    threads += [threading.Thread(target=in_scope(scope, run.work), name=f"vggx-infer-{i}", daemon=True)
                for i in range(config.concurrency)]
    out_h, out_w = run.canvas[0] * info.scale, run.canvas[1] * info.scale * (2 if config.compare else 1)  # until known
    tiles = run.tiles.plan(run.picture).count
    if progress is not None:
        progress.start(reader.expected_frames(), f"{runner.description}, window {info.window}"
                       + (f", {tiles} tiles" if tiles > 1 else "")
                       + (f", resuming after frame {frames_done}" if frames_done else ""))
        if frames_done:
            progress.advance(frames_done)
    writer: VideoWriter | None = None
    written = frames_done
    t0 = time.perf_counter()
    first_window = (0.0, 0)

    copy_audio = bool(copied)
    # A numbered output keeps an input sequence's numbers (frames 1001.. stay 1001..); from 1 otherwise.
    first_number = reader.sequence.start if reader.sequence is not None else 1

    def open_writer() -> VideoWriter:
        nonlocal out_h, out_w
        # The decoder has read frame 0 by now, and with it the display rotation (which --height goes by).
        out_h, out_w = output_frame_size(run.canvas, info.scale, config.outscale, config.height, reader.rotation,
                                         _square(config, vinfo))
        out_w *= 2 if config.compare else 1  # bicubic | vggx, each half resized alike
        _check_frame_size(out_h, out_w)
        return VideoWriter(
            output, out_w, out_h, vinfo.rate, vinfo.time_base, encode,
            audio_source=vinfo.path if copy_audio else None, copy=copied,
            audio_start=float(run.first_pts * vinfo.time_base) + reader.shift, metadata=vinfo.metadata,
            # a preview's end (the chapters are cut there; set_audio_end makes it exact for the audio at the end)
            audio_end=float(run.first_pts * vinfo.time_base) + reader.shift + config.frames / float(vinfo.rate)
            if config.frames else None,
            rotation=reader.rotation, store=store,
            sample_aspect_ratio=None if config.square_pixels else vinfo.sample_aspect_ratio,
            start_number=first_number + (run.first_pts if reader.sequence is not None else 0), color=reader.color,
            # its tags; a timecode moved on to the first frame written (the frames a --start cut left out)
            stream_metadata=video_stream_tags(
                vinfo.stream_metadata, round((float(run.first_pts * vinfo.time_base) - vinfo.start) * vinfo.rate),
                vinfo.rate))

    try:
        for t in threads:
            t.start()
        for done in run.results():
            t_encode = time.perf_counter()
            if writer is None:
                first_window = (t_encode - t0, len(done.pts))
                writer = open_writer()  # frame 0's pts is known: the decoder read it before any window
            for image, pts in zip(done.images, done.pts, strict=True):
                writer.write(image, pts - run.first_pts)
            run.busy["encode"] += time.perf_counter() - t_encode
            written += len(done.pts)
            if progress is not None:
                progress.advance(len(done.pts))
        if writer is None and frames_done:  # every frame was in the store: only the final mux is left
            writer = open_writer()
        if writer is None:  # pragma: no cover - the reader raises on zero frames
            raise VideoError(f"{reader.path} has no video frames")
        if config.frames is not None:  # a preview: cut the audio where the video ends
            writer.set_audio_end(float(run.last_pts * vinfo.time_base + 1 / vinfo.rate) + reader.shift)
        t_encode = time.perf_counter()
        writer.commit()
        run.busy["encode"] += time.perf_counter() - t_encode
    except BaseException:
        run.stop.set()
        # This run's windows in flight are stopped where the runner can (at their next node or module) and waited
        # for: a window thread left inside ONNX Runtime or PyTorch as the process exits aborts it (SIGABRT, exit
        # 134). Its own alone (in_scope): other upscales sharing the runner (a folder run's files, a service's
        # requests) go on, and the runner is left as it was.
        halted = hasattr(runner, "stop_scope")
        if halted:
            runner.stop_scope(scope)
        if writer is not None:
            writer.abort()
        # one wait for them all: they stop side by side (a backend that cannot stop them, Triton: a few seconds)
        deadline = time.monotonic() + (_HALT_WAIT_S if halted else _STOP_WAIT_S)
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        if halted:
            runner.release_scope(scope)
        if store is not None and store.segments:
            log.warning("%d frames of %s are kept in %s: run the same command again (with --resume) to go on "
                        "after them", store.frames_done, output, store.folder)
        raise
    seconds = time.perf_counter() - t0
    for t in threads:
        t.join()
    plan = run.tiles.plan(run.picture)
    return UpscaleResult(
        output=output, frames=written, seconds=seconds, output_bytes=writer.output_bytes,
        input_size=(vinfo.height, vinfo.width), output_size=(out_h, out_w), windows=run.windows, rate=vinfo.rate,
        tiles_per_window=plan.count, backend=runner.description, tile=run.tiles.size if plan.count > 1 else None,
        stage_seconds=dict(run.busy),
        concurrency=config.concurrency, first_window_seconds=first_window[0], first_window_frames=first_window[1],
        input=config.input, resumed_frames=frames_done, windows_per_server=_windows_per_server(runner),
        scene_cuts=tuple(run.cuts), **_carried(config, copied), crop=run.crop,
        keep_bars=run.bars is not None,
        damaged_packets=len(reader.damaged),
        **_depths(config, reader, fine),
    )


def _framing(config: UpscaleConfig, size: tuple[int, int]
             ) -> tuple[Crop | None, tuple[int, int], tuple[int, int]]:
    """For frames of ``size`` (h, w): the rectangle upscaled (None: the whole frame, also where ``config.crop``
    covers it), its size, and the size in input pixels of the frames written (the model's scale and any resizing
    apart): the picture alone, or the input's frame with the bars put back (``keep_bars``)."""
    crop = config.crop if isinstance(config.crop, Crop) and not config.crop.covers(size) else None
    picture = size if crop is None else (crop.height, crop.width)
    return crop, picture, size if config.keep_bars else picture


def _square(config: UpscaleConfig, vinfo: VideoInfo) -> Fraction | None:
    """The input's pixel shape where ``square_pixels`` asks for square ones in the output; None otherwise."""
    return vinfo.sample_aspect_ratio if config.square_pixels else None


def _resolved_crop(config: UpscaleConfig, reader: VideoReader) -> UpscaleConfig:
    """``config`` with its ``crop`` as the rectangle of this input's frames (``auto``: the picture inside the black
    bars of frames spread over the run; ``W:H``: centred) — the whole frame where there are no bars — or None."""
    crop = config.crop
    if crop is None:
        return config
    size = (reader.info.height, reader.info.width)
    if crop == "auto":
        t0 = time.perf_counter()
        samples = reader.sample()
        found = find_picture(samples)
        seconds = time.perf_counter() - t0
        if found is None:
            log.warning("%s: the %d frames looked over for black bars are all black; nothing is cropped",
                        reader.path, len(samples))
        elif found.covers(size):
            log.info("%s: no black bars in the %d frames looked over (%.1f s)", reader.path, len(samples), seconds)
        else:
            log.info("%s: black bars in the %d frames looked over (%.1f s): upscaling %s", reader.path, len(samples),
                     seconds, found.describe(size))
        crop = found or Crop(size[1], size[0])
    return dataclasses.replace(config, crop=crop.fit(size))


def _carried(config: UpscaleConfig, copied: tuple[str, ...]) -> dict:
    """The result's ``copied`` and ``audio_codec`` (the audio's encoder where ``--audio-codec`` re-encodes it)."""
    return {"copied": copied, "audio_codec": config.encode.audio_codec if "audio" in copied else None}


def _depths(config: UpscaleConfig, reader: VideoReader, fine: bool) -> dict:
    """The result's fields on bits, HDR and the encoder."""
    color = reader.color
    return {"input_bits": reader.info.bit_depth, "output_bits": component_depth(output_pix_fmt(config.encode)),
            "fine_bits": fine, "hdr": color.hdr if color is not None and color.kept else None,
            "tonemap": reader.tone.describe() if reader.tone is not None else None,
            "filters": reader.filters.describe() if reader.filters is not None and config.filters is not None else None,
            "encoder": describe_encoder(config.encode, color)}
