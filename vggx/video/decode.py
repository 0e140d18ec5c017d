"""Decoding with PyAV: any FFmpeg-readable video -> RGB uint8 frames, with the timing kept.

Every pixel format FFmpeg knows (10-bit, 4:4:4, grey, odd sizes ...) is converted to ``rgb24`` by
FFmpeg's swscale; nothing is rejected for its pixel format. An input of more than 8 bits a component is converted to
16-bit RGB and rounded to the nearest 8-bit level here: swscale's own conversion to 8 bits is off (16-bit RGB or grey:
half a level high on average, up to 1.5; 10-bit 4:2:0 YUV: 1.4 levels off on average, up to 3.8, on a smooth sky,
1.6 levels RMS from the source against 0.3 through 16 bits); it costs 8 ms a 1080p frame against 2.5. A reader asked
for ``fine`` frames (for an output that keeps them) hands the bits below on in :attr:`DecodedFrame.fine`
(:mod:`vggx.video.depth`).
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import itertools
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vggx.errors import VideoError, result_of

from .depth import ColorInfo, component_depth, round_to_8, split_fine
from .filters import FilterChain, buffer_of, drain, linear_graph, replace_info
from .tonemap import ToneMap

__all__ = ["IMAGE_SUFFIXES", "DecodedFrame", "ImageSequence", "VideoInfo", "VideoReader", "display_source",
           "find_sequence", "guess_pattern", "has_alpha", "is_cover", "is_image_sequence", "is_pipe", "is_url",
           "local_path", "open_source", "open_video", "sequence_file", "sequence_number"]

log = logging.getLogger(__name__)

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# Network inputs: seconds to wait for the connection, and for each read after it (a stalled server is an error,
# not a hang).
URL_TIMEOUT_S = (30.0, 60.0)
# A connection dropped mid-file is reopened at the byte where it stopped (FFmpeg's http protocol, with a range
# request), waiting up to this long between tries: long downloads survive a reset or a load balancer's cut.
# (Not on errors at open: a wrong address fails at once.)
URL_OPTIONS = {"reconnect": "1", "reconnect_streamed": "1", "reconnect_delay_max": "10"}


# Image sequences: a printf pattern in the file name (FFmpeg's image2: frames/%06d.png), read and written as
# numbered files. Written: lossless formats only (PNG, TIFF).
IMAGE_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp", ".exr", ".dpx"})
_PATTERN = re.compile(r"%(0?)(\d*)d")
DEFAULT_SEQUENCE_RATE = Fraction(25)  # FFmpeg's image2 default


def is_image_sequence(path: str | Path) -> bool:
    """Whether ``path`` is an image-sequence pattern: one ``%d``/``%0Nd`` in its file name, an image suffix."""
    if is_url(path):
        return False
    name = Path(path).name
    return len(_PATTERN.findall(name)) == 1 and Path(name).suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class ImageSequence:
    """The numbered files an image-sequence pattern names: ``start`` .. ``start + count - 1``."""

    pattern: Path
    start: int
    count: int

    def file(self, number: int) -> Path:
        return sequence_file(self.pattern, number)


def _sequence_parts(pattern: Path) -> tuple[str, int, str]:
    """An image-sequence pattern's file name as ``(head, width, tail)`` around its number, ``%%`` read as %."""
    found = _PATTERN.search(pattern.name)
    return (pattern.name[:found.start()].replace("%%", "%"), int(found.group(2) or 0),
            pattern.name[found.end():].replace("%%", "%"))


def sequence_file(pattern: str | Path, number: int) -> Path:
    """The file an image-sequence ``pattern`` names for ``number``, as FFmpeg's image2 reads and writes it
    (``av_get_frame_filename``): ``%4d`` zero-padded as ``%04d`` (Python's ``%`` pads it with spaces), ``%%`` a %."""
    pattern = Path(pattern)
    head, width, tail = _sequence_parts(pattern)
    return pattern.with_name(f"{head}{number:0{width}d}{tail}")


def sequence_number(pattern: str | Path, name: str) -> int | None:
    """The number whose file (:func:`sequence_file`) an image-sequence ``pattern`` names ``name``, or None: a name
    it gives no number (``f%04d.png`` names ``f0007.png`` and ``f10000.png``, not ``f7.png``)."""
    head, width, tail = _sequence_parts(Path(pattern))
    match = re.fullmatch(re.escape(head) + r"(\d+)" + re.escape(tail), name)
    if match is None or f"{head}{int(match.group(1)):0{width}d}{tail}" != name:
        return None
    return int(match.group(1))


def guess_pattern(folder: Path) -> Path | None:
    """The image-sequence pattern of the most numbered images in ``folder`` (``f1001.png``, ``f1002.png``, ... ->
    ``folder/f%04d.png``), or None: for a message suggesting it."""
    import collections

    found: collections.Counter[tuple[str, int, str]] = collections.Counter()
    for p in folder.iterdir():
        m = re.fullmatch(r"(.*?)(\d+)(\.[^.]+)", p.name)
        if m and m.group(3).lower() in IMAGE_SUFFIXES:
            digits = m.group(2)  # zero-padded: %0Nd; otherwise %d (which prints 7, 1001 and 10000 alike)
            found[(m.group(1), len(digits) if digits.startswith("0") else 0, m.group(3))] += 1
    if not found:
        return None
    (head, width, suffix), _ = found.most_common(1)[0]
    return folder / f"{head.replace('%', '%%')}%{f'0{width}' if width else ''}d{suffix}"


def numbered_files(pattern: str | Path) -> list[tuple[int, Path]]:
    """The files in an image-sequence ``pattern``'s folder that it numbers, as ``(number, path)`` in number order:
    those whose name the pattern prints from their number (``f%04d``: f0007, f10000), the files FFmpeg would open.
    Empty where the folder does not exist."""
    pattern = Path(pattern)
    if not pattern.parent.is_dir():
        return []
    return sorted((n, p) for p in pattern.parent.iterdir() if (n := sequence_number(pattern, p.name)) is not None)


def find_sequence(pattern: str | Path) -> ImageSequence:
    """The files ``pattern`` (e.g. ``frames/%06d.png``) names: the first number and how many follow without a gap.

    Raises:
        VideoError: no folder, no file matching, or a gap (FFmpeg would stop there, dropping the frames after it).
    """
    pattern = Path(pattern)
    if not pattern.parent.is_dir():
        raise VideoError(f"input not found: {pattern} (no folder {pattern.parent})")
    numbers = [n for n, _ in numbered_files(pattern)]
    if not numbers:
        raise VideoError(f"input not found: no files match {pattern}")
    for expected, number in enumerate(numbers, start=numbers[0]):
        if number != expected:
            raise VideoError(f"{pattern}: the sequence {numbers[0]}..{numbers[-1]} has a gap at {expected} "
                             f"(frames after a gap would be dropped); fill it or upscale the parts apart")
    return ImageSequence(pattern, numbers[0], len(numbers))


def is_url(source: str | Path) -> bool:
    """Whether ``source`` is a URL FFmpeg opens itself (``http://``, ``https://``, ...), not a local path."""
    return isinstance(source, str) and bool(_URL.match(source))


def is_pipe(source: str | Path) -> bool:
    """Whether ``source`` is ``-``: standard input (``vspipe -c y4m script.vpy - | vggx upscale - out.mkv``)."""
    return isinstance(source, str) and source == "-"


def display_source(source: str | Path) -> str:
    """``source`` for messages: a URL without its query string (a presigned URL's signature stays out of logs),
    ``stdin`` for ``-``."""
    if is_pipe(source):
        return "stdin"
    return str(source).split("?", 1)[0] if is_url(source) else str(source)


def _tag_seconds(text: str | None) -> float | None:
    """A Matroska ``DURATION`` tag (``00:00:01.000000000``, what mkvmerge and FFmpeg write per track) in seconds."""
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", (text or "").strip())
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _track_seconds(stream, container) -> tuple[float | None, bool]:
    """The video track's own duration in seconds (None where unknown), and whether it is its ``DURATION`` tag.
    Matroska stores none but that tag (what mkvmerge and FFmpeg write): the stream's duration there is FFmpeg's
    estimate, the container's (its longest track's) where it found no start time (H.264 with few frames: a still
    picture or a slideshow with music), so the tag comes first, and a stream duration that is only the container's is
    not taken for the video's where other tracks may run on."""
    tagged = _tag_seconds(stream.metadata.get("DURATION"))
    if tagged is not None:
        return tagged, True
    if not stream.duration or not stream.time_base:
        return None, False
    seconds = float(stream.duration * stream.time_base)
    copied = container.duration is not None and abs(seconds - container.duration / 1_000_000) <= \
        float(stream.time_base) + 1e-6
    return (None, False) if copied and len(container.streams) > 1 else (seconds, False)


def local_path(path: str | Path) -> str:
    """A local file's name as FFmpeg should take it: with ``file:`` where a colon would read as a protocol
    (``2024-01-01T10:30:00.mp4``, FFmpeg's "Protocol not found")."""
    text = str(path)
    return f"file:{text}" if ":" in text else text


def open_source(source: str | Path):
    """``av.open`` a local file, a URL (:data:`URL_TIMEOUT_S`; http(s) with :data:`URL_OPTIONS`) or standard input
    (``-``: read as it comes, never seeked) for reading; FFmpeg errors pass on."""
    import av

    if is_pipe(source):
        return av.open(sys.stdin.buffer, "r")
    if is_url(source):
        options = URL_OPTIONS if source.split("://", 1)[0].lower() in ("http", "https") else {}
        return av.open(source, "r", timeout=URL_TIMEOUT_S, options=dict(options))
    return av.open(local_path(source), "r")


@dataclass(frozen=True)
class VideoInfo:
    """What the rest of the pipeline needs to know about the input's first video stream."""

    path: Path | str  # a local file, the URL FFmpeg reads (:func:`is_url`), or "-" (standard input)
    width: int
    height: int
    rate: Fraction  # frames per second (the stream's average rate)
    time_base: Fraction  # unit of the frames' ``pts``
    frames: int | None  # frame count announced by the container (None if unknown); an estimate
    duration: float | None  # seconds, if known
    codec: str
    pix_fmt: str
    has_audio: bool
    metadata: dict[str, str]
    has_subtitles: bool = False
    sample_aspect_ratio: Fraction | None = None  # pixel shape (anamorphic sources: e.g. 8/9 for NTSC DVD 4:3)
    has_alpha: bool = False  # the pixel format carries an alpha channel (RGBA PNG/TIFF, ProRes 4444, VP9 alpha, ...)
    has_chapters: bool = False
    has_attachments: bool = False  # Matroska attachments (fonts for ASS subtitles, cover art)
    has_cover: bool = False  # a cover picture stream (MP4's cover art, a thumbnail a downloader embedded)
    bit_depth: int = 8  # bits of the deepest colour component (10 for yuv420p10le, 16 for a 16-bit PNG)
    color: ColorInfo | None = None  # the stream's colour tags (HDR10 metadata: see VideoReader.color)
    # the video stream's own tags (language, title, a camera's timecode: that of its first frame)
    stream_metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    start: float = 0.0  # seconds: the video stream's first time (where its timecode is)

    @property
    def has_extras(self) -> bool:
        """Whether there is anything besides the video to copy: audio, subtitles, chapters or attachments."""
        return self.has_audio or self.has_subtitles or self.has_chapters or self.has_attachments or self.has_cover


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: ``image`` uint8 ``(h, w, 3)`` RGB; ``pts`` in ``VideoInfo.time_base``; ``alpha`` uint8
    ``(h, w)`` where the input has an alpha channel (``VideoInfo.has_alpha``; uint16 where the reader reads fine
    frames), else None; ``fine`` int16 ``(h, w, 3)`` where the reader reads fine frames: what ``image`` rounded off a
    16-bit reading (``vggx.video.depth``)."""

    index: int  # 0-based, counted from the first frame kept (after --start)
    pts: int
    image: np.ndarray
    alpha: np.ndarray | None = None
    fine: np.ndarray | None = None


def _animated_webp(path: Path) -> bool:
    """Whether ``path`` is a WebP whose extended header (``VP8X``) sets the animation flag (the WebP container
    specification: ``RIFF`` size ``WEBP`` ``VP8X`` chunk size, then the flags byte, animation = 0x02)."""
    try:
        with open(path, "rb") as f:
            head = f.read(21)
    except OSError:
        return False
    return len(head) == 21 and head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and bool(head[20] & 0x02)


class VideoReader:
    """Iterate the RGB frames of one video file (a context manager; closes the file on exit).

    ``start`` (seconds) skips frames before it; ``max_frames`` stops after that many frames.
    ``rotation``: the display rotation (degrees counter-clockwise, e.g. a phone held upright: 90) the
    frames carry, known once the first frame is decoded; frames are yielded as stored, unrotated.
    ``deinterlace``: run interlaced frames through FFmpeg's ``bwdif`` (one progressive frame per frame,
    timestamps kept; progressive frames pass untouched).
    ``tonemap``: an HDR (PQ or HLG) input tone-mapped to SDR BT.709 (:mod:`vggx.video.tonemap`) as it is read;
    ``info.color`` and ``color`` then describe SDR, ``tone`` the mapping (complete once the first frame, which
    carries the HDR10 metadata, is decoded). A warning where the input is not HDR.
    ``ivtc``: inverse telecine, for film telecined to 29.97 interlaced frames (3:2 pulldown: NTSC DVDs, anime,
    broadcast): FFmpeg's ``fieldmatch`` puts each film frame's two fields back together, ``bwdif`` deinterlaces what
    it cannot match (a video-shot overlay, an edit inside a cycle), and ``decimate`` drops the duplicate frame of
    each five (a last cycle cut short by the end of the stream keeps its duplicate). ``info.rate`` and
    ``info.frames`` are then the film's: four fifths of the stream's.
    ``filters``: a chain of FFmpeg filters (:class:`vggx.video.filters.FilterChain`, ``--vf``) run on the frames
    after the deinterlacing or inverse telecine; ``info`` then describes the frames it gives (size, pixel shape and
    format, rate: found before any work by :meth:`FilterChain.probe`), and ``color`` the first of them.
    ``fine``: read 16-bit RGB and yield its 8-bit rounding with the rest in ``DecodedFrame.fine``, and a 16-bit
    alpha (set before iterating). ``color``: the stream's colour description with its HDR10 metadata, complete once
    the first frame is decoded (the metadata travels with the frames).
    """

    def __init__(self, path: str | Path, *, start: float = 0.0, max_frames: int | None = None,
                 deinterlace: bool = False, rate: Fraction | None = None, stream: int | None = None,
                 ivtc: bool = False, tonemap: bool = False, filters: FilterChain | str | None = None,
                 upright: bool = False) -> None:
        import av

        self.source = path if is_url(path) or is_pipe(path) else Path(path)  # what FFmpeg opens
        self.path = display_source(self.source) if isinstance(self.source, str) else self.source  # for messages
        if start < 0:
            raise VideoError(f"--start must be >= 0 seconds, got {start}")
        if max_frames is not None and max_frames < 1:
            raise VideoError(f"--frames must be >= 1, got {max_frames}")
        self.sequence = find_sequence(path) if is_image_sequence(path) else None
        if rate is not None and self.sequence is None:
            raise VideoError("--fps sets the rate of an image-sequence input (frames/%06d.png); a video has its own")
        if rate is not None and not rate > 0:
            raise VideoError(f"--fps must be > 0, got {rate}")
        if ivtc and deinterlace:
            raise VideoError("--ivtc deinterlaces the frames it cannot match itself; give --ivtc or --deinterlace, not "
                             "both")
        self.filters = FilterChain.parse(filters) if isinstance(filters, str) else filters
        if isinstance(self.source, Path) and self.sequence is None:
            if not self.path.exists():
                raise VideoError(f"input not found: {self.path}")
            if not self.path.is_file():
                raise VideoError(f"input is not a file: {self.path}")
        try:
            if self.sequence is not None:
                self._container = av.open(str(self.source), "r", format="image2", options={
                    "start_number": str(self.sequence.start), "framerate": str(rate or DEFAULT_SEQUENCE_RATE)})
            else:
                self._container = open_source(self.source)
        except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
            if is_url(path):
                reason = _reason(exc)
                if "Immediate exit requested" in reason:  # FFmpeg's words for the timeout interrupting it
                    reason = f"no answer within {URL_TIMEOUT_S[0]:g} s"
                raise VideoError(f"cannot read {self.path} ({reason})") from None
            raise VideoError(f"{self.path} is not a video FFmpeg can read ({_reason(exc)})") from None
        try:
            if not self._container.streams.video:
                raise VideoError(f"{self.path} has no video stream")
            self._stream = _main_video(self._container, self.path) if stream is None else \
                _video_stream(self._container, self.path, stream)
            self._stream.thread_type = "AUTO"
            self.info = self._read_info()
            if self.info.codec == "webp" and isinstance(self.source, Path) and _animated_webp(self.source):
                raise VideoError(f"{self.path} is an animated WebP, which FFmpeg's WebP decoder does not read (still "
                                 f"images only); turn it into frames first, e.g. libwebp's `anim_dump -folder frames "
                                 f"{self.path.name}`, and upscale frames/dump_%04d.png")
            self._tonemap = tonemap and self.info.color is not None and self.info.color.hdr is not None
            if tonemap and not self._tonemap:
                log.warning("%s is not HDR (PQ or HLG): --tonemap leaves it as it is", self.path)
            if self._tonemap:  # what the rest of the run sees: SDR, BT.709
                self.info = dataclasses.replace(self.info, color=None)
            if ivtc:  # the film's rate and frame count: one frame in five is a duplicate, dropped
                frames = self.info.frames
                self.info = dataclasses.replace(self.info, rate=self.info.rate * Fraction(4, 5),
                                                frames=None if frames is None else round(frames * 4 / 5))
            # the decoded frames' time base (seeks) and, with filters, the frames going into them
            self._stream_info = self.info
            if self.filters is not None and not is_pipe(self.source) and self.sequence is None:
                # as ffmpeg does before a -vf: a stream shown turned (a phone's) is turned upright first, so the
                # filters' numbers are the picture's as shown and the output needs no rotation
                self.filters = self.filters.upright(self._first_rotation())
            elif upright and self.filters is None and not is_pipe(self.source) and self.sequence is None:
                # for an output that cannot say it is shown turned (images, y4m): the frames as they are shown
                rotation = self._first_rotation()
                if rotation % 360:
                    self.filters = FilterChain("", ()).upright(rotation)
            self.time_scale = Fraction(1)  # how the filters stretch time (setpts=0.5*PTS: 1/2)
            if self.filters is not None:
                i = self.info
                pix_fmt = "yuva420p" if self._vp9_alpha else i.pix_fmt if i.pix_fmt != "?" else "yuv420p"
                probe = self.filters.probe(i.width, i.height, pix_fmt, i.time_base, i.rate, i.sample_aspect_ratio)
                self.info = replace_info(i, probe)
                self.time_scale = probe.time_scale
        except BaseException:
            self._container.close()
            raise
        self.start = float(start)
        self.max_frames = max_frames
        self.deinterlace = deinterlace
        self.ivtc = ivtc
        # The packets the decoder refused (damaged: a bad sector, a broken download), as their times in seconds
        self.damaged: list[float] = []
        # What the frame count misses at the start, not at the end: frames an edit list hides, frames before the
        # first keyframe (see _Leading)
        self._leading = _Leading()
        self.rotation = 0
        self.fine = False
        self.color = self.info.color
        self.tone: ToneMap | None = None  # the HDR-to-SDR mapping (``tonemap``), once frame 0 is decoded
        # Threads converting decoded frames ahead, in order (set before iterating); None: see _convert_threads
        self.convert_threads: int | None = None
        self._sizes_seen: set[tuple[int, int]] = set()  # other frame sizes met (warned of once each)
        self._decoded_count = 0  # frames decoded (before any filter)
        # seconds: the input's time of the first frame out less its own, where --vf restamps it (setpts=PTS-STARTPTS:
        # what is copied along starts at the input's time); 0 where the chain keeps the input's timeline
        self.shift = 0.0
        self._last_decoded_pts: int | None = None  # the latest of them (the stream's time base)

    def _read_info(self) -> VideoInfo:
        s, c = self._stream, self._container
        rate = s.average_rate or s.guessed_rate or s.base_rate
        if not rate:
            raise VideoError(f"{self.path}: the video stream has no frame rate")
        duration, _ = _track_seconds(s, c)
        if duration is None and c.duration:
            duration = c.duration / 1_000_000
        frames = s.frames or (round(duration * rate) if duration else None)
        if s.frames and "mov" in c.format.name.split(","):
            frames = _shown_samples(s)
        if self.sequence is not None:
            frames, duration = self.sequence.count, float(self.sequence.count / Fraction(rate))
        cc = s.codec_context
        alpha = has_alpha(cc.pix_fmt) or self._vp9_alpha
        if alpha and cc.name == "gif" and not is_pipe(self.source):
            # FFmpeg decodes every GIF to bgra, transparent or not: the picture says whether it has a matte
            alpha = self._first_frame_transparent()
        return VideoInfo(
            path=self.source, width=cc.width, height=cc.height, rate=Fraction(rate),
            time_base=Fraction(s.time_base or Fraction(1, rate)), frames=frames or None, duration=duration,
            codec=cc.name, pix_fmt=cc.pix_fmt or "?", has_audio=bool(c.streams.audio),
            has_subtitles=bool(c.streams.subtitles),
            metadata=dict(c.metadata), sample_aspect_ratio=_pixel_aspect(s),
            has_alpha=alpha, has_chapters=bool(c.chapters()),
            has_attachments=any(st.type == "attachment" for st in c.streams),
            has_cover=any(is_cover(st) and st is not s for st in c.streams.video),
            bit_depth=component_depth(cc.pix_fmt), color=ColorInfo.of_context(cc),
            stream_metadata=dict(s.metadata),
            start=float(s.start_time * s.time_base) if s.start_time is not None and s.time_base else 0.0,
        )

    @property
    def _vp9_alpha(self) -> bool:
        """A VP9 stream with alpha (WebM's ``alpha_mode``): FFmpeg's own VP9 decoder drops the alpha layer, libvpx's
        decodes it."""
        return self._stream.codec_context.name == "vp9" and self._stream.metadata.get("alpha_mode") == "1"

    def expected_frames(self) -> int | None:
        """Frames this reader will probably yield (for a progress bar), or None if unknown."""
        info = self.info
        if info.frames is None:
            return self.max_frames
        left = info.frames - (math.floor(self.start * info.rate * self.time_scale) if self.start else 0)
        left = max(left, 0)
        return min(left, self.max_frames) if self.max_frames else left

    def sample(self, count: int = 24) -> list[np.ndarray]:
        """Up to ``count`` frames (uint8 RGB, the stream's size) spread evenly over those this reader yields (from
        ``start``, for ``max_frames`` or to the end), without decoding them all: at each point, the frame shown there,
        decoded on from the last point or from the keyframe a seek lands on (:data:`_SAMPLE_SEEK_S`); a frame met
        twice is given once. For what holds over a whole film, such as its black bars. Reads the source a second
        time: ``VideoError`` for standard input, or where the length is unknown (a live stream without
        ``max_frames``)."""
        import av

        if is_pipe(self.source):
            raise VideoError("standard input is read once, so it cannot be looked over before it is upscaled")
        info = self.info
        span = self.max_frames / info.rate if self.max_frames else (
            info.duration - self.start if info.duration is not None else None)
        if span is None or span <= 0:
            raise VideoError(f"{self.path}: its length is unknown, so it cannot be looked over before it is "
                             f"upscaled")
        frames = max(1, round(float(span) * info.rate))
        # the middle of each of ``count`` equal parts, as a frame number from ``start``, and the middle of that frame
        numbers = sorted({int((i + 0.5) * frames / count) for i in range(count)})
        times = [self.start + (k + 0.5) / float(info.rate) for k in numbers]
        decoded_info = self._stream_info  # the frames as decoded, before any --vf
        reformatter = thread_reformatter()
        images = []
        try:
            if self.sequence is not None:
                seq = self.sequence
                for number in sorted({seq.start + min(int(t * decoded_info.rate), seq.count - 1) for t in times}):
                    with av.open(local_path(seq.file(number)), "r") as c:
                        frame = self._filtered_alone(next(c.decode(video=0)))
                        if frame is not None:
                            images.append(_to_rgb(frame, reformatter))
                return [im for im in images if im.shape[:2] == (info.height, info.width)]
            seen = set()
            with open_source(self.source) as c:
                stream = c.streams[self._stream.index]
                stream.thread_type = "AUTO"
                jump = int(_SAMPLE_SEEK_S / decoded_info.time_base)
                decoded = held = None  # the frames as decoded; one read past the last point (the next one's, maybe)
                for t in times:
                    target = int(t / decoded_info.time_base)
                    if decoded is None or held is None or held.pts is None or target - held.pts > jump:
                        c.seek(target, stream=stream, backward=True, any_frame=False)  # to the keyframe before
                        decoded, held = _decoded_past_damage(c, stream, []), None
                    frame = None  # the last frame at or before the point (decoding on from where it stands)
                    while (candidate := held if held is not None else next(decoded, None)) is not None:
                        held = None
                        if frame is not None and candidate.pts is not None and candidate.pts > target:
                            held = candidate
                            break
                        frame = candidate
                        if frame.pts is None:
                            break
                    if frame is None or frame.pts in seen:
                        continue
                    seen.add(frame.pts)
                    frame = self._filtered_alone(frame)
                    if frame is not None and (frame.width, frame.height) == (info.width, info.height):
                        images.append(_to_rgb(frame, reformatter))
        except (av.error.FFmpegError, OSError, StopIteration) as exc:
            raise VideoError(f"cannot look over {self.path} ({_reason(exc)})") from None
        return images

    def _first_frame(self, read, default):
        """``read(frame)`` of the stream's first frame, decoded past damage from a fresh open of the source (this
        reader's own position is left alone); ``default`` where it cannot be read."""
        import av

        try:
            with open_source(self.source) as c:
                stream = c.streams[self._stream.index]
                for frame in _decoded_past_damage(c, stream, []):
                    return read(frame)
        except (av.error.FFmpegError, OSError):
            pass
        return default

    def _first_frame_transparent(self) -> bool:
        """Whether the stream's first frame has a pixel that is not opaque (True where it cannot be read)."""
        return self._first_frame(lambda f: bool(f.to_ndarray(format="rgba")[..., 3].min() < 255), True)

    def _first_rotation(self) -> int:
        """The display rotation of the stream's first frame (degrees counter-clockwise; 0 where it cannot be read)."""
        return self._first_frame(lambda f: int(f.rotation or 0), 0)

    def _filtered_alone(self, frame):
        """``frame`` through the ``filters`` chain on its own (the first frame out, or None); as it is without one."""
        if self.filters is None:
            return frame
        i = self._stream_info
        graph = self.filters.graph(frame.width, frame.height, frame.format.name, i.time_base, i.rate,
                                   i.sample_aspect_ratio)
        frame.pts = (frame.pts or 0) - self._filter_zero()  # the chain's time, as _filtered gives it
        graph.push(frame)
        graph.push(None)
        return next(drain(graph), None)

    def _filter_zero(self) -> int:
        """Where the ``filters`` chain's time starts, in the decoded stream's units: at the file's start, or at
        ``start``, as ffmpeg's command line starts its filters' (``-ss`` before ``-i``, without ``-copyts``): so
        ``trim=start=2``, ``fade=st=0``, ``select='gte(t,1)'`` and ``enable='between(t,0,1)'`` mean there what they
        mean to ffmpeg (they met the stream's own times: a file cut from a broadcast at 10 s, or ``--start 1``,
        left them doing nothing, or nothing let through)."""
        origin = self._origin_pts()
        return origin + int(self.start / self._stream_info.time_base) if self.start > 0 else origin

    def __iter__(self) -> Iterator[DecodedFrame]:
        import av

        info = self.info
        start_pts = None
        origin = self._origin_pts()  # --start counts from the file's start, as ffmpeg's -ss does (MPEG-TS: not 0)
        if self.start > 0:
            start_pts = origin + int(self.start / self._stream_info.time_base)  # in the decoded stream's units
        if self.start > 0 and not is_pipe(self.source):  # a pipe cannot seek: its frames before --start are skipped
            try:
                self._seek_before(start_pts, origin)
            except av.error.FFmpegError as exc:
                if info.duration is not None and self.start >= info.duration:
                    raise VideoError(f"{self.path} has no video frames at or after --start {self.start:g}s (it "
                                     f"lasts {info.duration:g}s)") from None
                raise VideoError(f"cannot seek {self.path} to {self.start}s ({_reason(exc)})") from None
        count = 0
        last_pts = None
        workers = self._convert_threads()
        pool = ThreadPoolExecutor(workers, thread_name_prefix="vggx-read") if workers > 1 else None
        pending: collections.deque = collections.deque()
        try:
            for frame in self._decoded(origin):
                pts = frame.pts
                if pts is None:  # raw streams without timestamps: count frames at the stream's rate
                    pts = (last_pts + round(1 / (info.rate * info.time_base))) if last_pts is not None else 0
                last_pts = pts
                if start_pts is not None and self.filters is None and self._before_start(pts, origin, info):
                    continue
                size = None
                if (frame.width, frame.height) != (info.width, info.height):
                    size = (info.width, info.height)
                    self._size_changed(frame, count)
                if pool is None:
                    yield self._convert(frame, pts, count, size)
                else:  # converted ahead in the pool, given in order
                    pending.append(pool.submit(self._convert, frame, pts, count, size))
                    while len(pending) > 2 * workers:
                        yield result_of(pending.popleft())
                count += 1
                if self.max_frames is not None and count >= self.max_frames:
                    break
            while pending:
                yield result_of(pending.popleft())
        except av.error.FFmpegError as exc:
            raise VideoError(f"decoding {self.path} failed after {count} frames ({_reason(exc)}); "
                             f"the file is truncated or damaged") from None
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)  # the frames in hand finish; none wait
        if count == 0:
            if self.filters is not None and self._decoded_count:  # decoded, then all dropped by the chain
                raise VideoError(f"{self.filters.label} let none of the {self._decoded_count} frames decoded through"
                                 + (f" (from --start {self.start:g}s)" if self.start else ""))
            where = f" at or after --start {self.start:g}s" if self.start else ""
            if self.start and info.duration is not None and self.start >= info.duration:
                where += f" (it lasts {info.duration:g}s)"
            raise VideoError(f"{self.path} has no video frames{where}")
        # A file cut short still decodes up to the cut; the container's own frame count tells (of the frames decoded,
        # whatever --ivtc or --vf made of them).
        if self.damaged:
            shown = ", ".join(f"{t:.2f}" for t in self.damaged[:5]) + (" ..." if len(self.damaged) > 5 else "")
            log.warning("%s: %d damaged packet%s skipped (at %s s): the frames %s held are missing from the output or "
                        "concealed by the decoder, the rest upscaled", self.path, len(self.damaged),
                        "s" if len(self.damaged) > 1 else "", shown, "they" if len(self.damaged) > 1 else "it")
        stored = self._stream.frames
        if self.max_frames is None and not self.start and stored:
            self._check_frame_count(stored)
        if self.max_frames is None and not self.start and not stored:  # Matroska, WebM, MPEG-TS: times tell
            self._check_ends_in_time()

    def _origin_pts(self) -> int:
        """Where the file's time starts, in the decoded stream's units: the container's start time (MPEG-TS starts
        anywhere, a broadcast's at its clock), 0 where there is none; image sequences and pipes start at 0."""
        tb = self._stream_info.time_base
        start = self._container.start_time if self.sequence is None and not is_pipe(self.source) else None
        return round(Fraction(start, 1_000_000) / tb) if start and tb else 0

    def _seek_before(self, target: int, origin: int) -> None:
        """Seek so that decoding starts at a frame at or before ``target`` (decoded-stream units). A container with
        an index (MP4, Matroska) lands on the keyframe before it; one without (MPEG-TS) may land past keyframes, the
        decoder then dropping frames up to the next one, seconds after ``target`` (or to the end): so the first frame
        is decoded and, where it comes after ``target`` or none does, the seek goes back further (1, 2, 4, ... s, at
        most to the file's start) until it does not."""
        import av

        if self.sequence is not None or self._stream_info.time_base != self._stream.time_base:
            # a sequence's frames are files, found directly
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            return
        tb = self._stream_info.time_base
        half = Fraction(1, 2) / self.info.rate
        back = 0.0
        while True:
            at = target - int(back / tb) if back else target
            from_start = at <= origin
            if from_start:  # the file's start itself (a seek to the origin may land past a first frame that is later)
                at = min(origin, 0)
            self._container.seek(at, stream=self._stream, backward=True, any_frame=False)
            decoded, first = False, None
            try:
                for packet in self._container.demux(self._stream):
                    frames = self._stream.codec_context.decode(packet if packet.size else None)
                    if frames:
                        decoded, first = True, frames[0].pts
                        break
                    if not packet.size:
                        break
            except av.error.FFmpegError:
                decoded = False
            # a frame without a time cannot be placed: taken as it is (the drop below goes by counted times)
            if from_start or (decoded and (first is None or (first - target) * tb <= half)):
                self._container.seek(at, stream=self._stream, backward=True, any_frame=False)
                return
            back = max(1.0, back * 2)

    def _check_frame_count(self, stored: int) -> None:
        """Where the container counts the frames (MP4, MOV): ``VideoError`` when fewer were decoded than it holds (a
        partial download, a recording cut off). Frames missing at the start are no such thing: those an edit list
        hides (a stream-copy cut, ``ffmpeg -ss X -c copy``, keeps the packets from the keyframe before X, hidden; the
        count holds them, FFmpeg discards their frames) are not counted, and those before the first keyframe that the
        decoder gave nothing for (a clip cut mid-GOP: they refer to a picture cut away) are left out with a warning."""
        lead = self._leading
        if "mov" in self._container.format.name.split(","):
            # an edit list starting on a keyframe has FFmpeg drop the samples before it from its index outright
            stored = min(stored, len(self._stream.index_entries) or stored)
        shown = stored - lead.hidden
        missing = shown - self._decoded_count - len(self.damaged)
        if missing > lead.undecodable:
            raise VideoError(f"{self.path} ends after {self._decoded_count} of its {shown} frames; the file is "
                             f"truncated or damaged")
        if missing > 0:
            tb = self._stream.time_base
            at = f" at {float(lead.first_pts * tb):.2f} s" if lead.first_pts is not None and tb else ""
            log.warning("%s starts mid-GOP (cut without re-encoding?): %s before its first keyframe%s cannot be "
                        "decoded (%s to a picture cut away) and %s left out, the rest upscaled", self.path,
                        f"its first {missing} frames" if missing > 1 else "its first frame", at,
                        "they refer" if missing > 1 else "it refers", "are" if missing > 1 else "is")

    def _check_ends_in_time(self) -> None:
        """Where the container counts no frames (Matroska, WebM): ``VideoError`` when the last frame decoded comes
        well before the video track's own duration (a partial download, a recording cut off), as a frame count
        short of the stored one does for MP4. Only the video track's duration counts (the container's is its
        longest track's: audio may run on)."""
        s = self._stream
        if self.sequence is not None or self._last_decoded_pts is None or not s.time_base:
            return
        duration, tagged = _track_seconds(s, self._container)
        if duration is None:
            return
        rate = float(self.info.rate)
        last = self._last_decoded_pts
        end = float((last - (s.start_time or 0)) * s.time_base) + 1 / rate
        if tagged:  # FFmpeg's muxer writes the track's end time, mkvmerge its span; either will do
            end = max(end, float(last * s.time_base) + 1 / rate)
        if duration - end > max(2 / rate, 0.02 * duration):
            raise VideoError(f"{self.path} ends at {end:.2f} s of its {duration:.2f} s of video (after "
                             f"{self._decoded_count} frames); the file is truncated or damaged")

    def _convert_threads(self) -> int:
        """Threads converting frames (``convert_threads``; None: one per four cores, 1..4, where a frame's conversion
        is heavy: a deep input read through 16 bits, or tone mapping; else 1, the decode thread alone)."""
        if self.convert_threads is not None:
            return max(1, self.convert_threads)
        if self.info.bit_depth <= 8 and not self._tonemap:
            return 1
        return min(4, max(1, (os.cpu_count() or 1) // 4))

    def _convert(self, frame, pts: int, index: int, size: tuple[int, int] | None) -> DecodedFrame:
        """One decoded frame as the pipeline takes it (RGB, alpha, fine levels; tone-mapped), in any thread (each
        has its own swscale context); ``size``: (w, h) to bring it to, resized with its shape kept and black bars where
        its shape is another (:func:`_fitted`)."""
        fit = None if size is None else _fitted((frame.width, frame.height), size)
        if fit is not None and fit != size:
            got = self._convert(frame, pts, index, fit)
            w, h = size
            return dataclasses.replace(
                got, image=_boxed(got.image, (h, w), 0), fine=None if got.fine is None else _boxed(got.fine, (h, w), 0),
                alpha=None if got.alpha is None else _boxed(got.alpha, (h, w), np.iinfo(got.alpha.dtype).max))
        info = self.info
        reformatter = thread_reformatter()
        if info.bit_depth > 8 or self.tone is not None:  # through 16 bits, rounded here (module doc)
            pixels = _to_rgb(frame, reformatter, "rgba64le" if info.has_alpha else "rgb48le", size)
            rgb = np.ascontiguousarray(pixels[..., :3])
            if self.tone is not None:  # HDR to SDR, in 16 bits
                rgb = self.tone(rgb)
            alpha = np.ascontiguousarray(pixels[..., 3]) if info.has_alpha else None
            if self.fine:  # the rest below the rounding, and a 16-bit alpha
                image, fine = split_fine(rgb)
            else:
                image, fine = round_to_8(rgb), None
                alpha = None if alpha is None else round_to_8(alpha)
            return DecodedFrame(index=index, pts=pts, image=image, alpha=alpha, fine=fine)
        if info.has_alpha:
            rgba = _to_rgb(frame, reformatter, "rgba", size)
            return DecodedFrame(index=index, pts=pts, image=np.ascontiguousarray(rgba[..., :3]),
                                alpha=np.ascontiguousarray(rgba[..., 3]))
        return DecodedFrame(index=index, pts=pts, image=_to_rgb(frame, reformatter, size=size))

    def _size_changed(self, frame, index: int) -> None:
        """A frame of another size than the stream's first (an adaptive stream that switched renditions, joined
        HLS/DASH segments, a broadcast changing format): it is resized to the first size (Lanczos), as FFmpeg's own
        scaling does, its shape kept (black bars where it is another: a 4:3 advert in a 16:9 broadcast is pillarboxed,
        as a player shows it, not stretched); a warning names each new size once."""
        size = (frame.width, frame.height)
        if size in self._sizes_seen:
            return
        self._sizes_seen.add(size)
        first = (self.info.width, self.info.height)
        fit = _fitted(size, first)
        how = "resized to" if fit == first else f"resized to {fit[0]}x{fit[1]} (their shape kept) inside black bars to"
        log.warning("%s: the frame size changes mid-stream at frame %d (%dx%d -> %dx%d); such frames are %s %dx%d, "
                    "the stream's first size", self.path, index, *first, *size, how, *first)

    def _before_start(self, pts: int, origin: int, info: VideoInfo) -> bool:
        """Whether a frame at ``pts`` (``info``'s time base and rate) is shown before ``start``."""
        return (pts - origin) * info.time_base + Fraction(1, 2) / info.rate < self.start

    def _decoded(self, origin: int = 0):
        """The stream's decoded frames in order, through ``bwdif`` first when deinterlacing (fieldmatch, bwdif and
        decimate for ``ivtc``), then through ``filters``: those before ``start`` (``origin``: where the file's time
        starts) are left out before the filters, as ffmpeg's ``-ss`` does, so a chain that moves the frames in time
        (``setpts=0.5*PTS``, ``setpts=PTS-STARTPTS``) starts at the input's ``start``, not at its own."""
        frames = self._deinterlaced()
        if self.filters is None:
            return frames
        if self.start > 0:
            frames = (f for f in frames if f.pts is None or not self._before_start(f.pts, origin, self._stream_info))
        return self._filtered(frames)

    def _deinterlaced(self):
        """The stream's decoded frames in order, through ``bwdif`` first when deinterlacing (fieldmatch, bwdif and
        decimate for ``ivtc``)."""
        graph = None
        first = True
        filtered = self.deinterlace or self.ivtc
        # the interlacing check: what an input needs, or (with --ivtc) whether it is telecined at all
        fields = None if (self.deinterlace or self.sequence is not None
                          or (self.filters is not None and self.filters.deinterlaces)) \
            else _FieldCheck.start(self._stream)
        try:
            for frame in self._frames():
                self._decoded_count += 1
                if frame.pts is not None:
                    self._last_decoded_pts = frame.pts
                if first:
                    first = False
                    self.rotation = 0 if self.filters is not None and self.filters.turned else \
                        int(frame.rotation or 0)
                    self.color = ColorInfo.of_frame(frame)
                    if self._tonemap:  # the HDR10 metadata (the peak) rides on the frames
                        self.tone, self.color = ToneMap.of(self.color), None
                if fields is not None and fields.push(frame):  # seen enough to tell
                    fields.report(self.path, self.ivtc)
                    fields = None
                if not filtered:
                    yield frame
                    continue
                if graph is None:
                    graph = self._filter_graph(frame)
                graph.push(frame)
                yield from self._restamped(drain(graph))
        finally:
            if fields is not None:  # a clip shorter than the check, or a run that stopped early
                fields.report(self.path, self.ivtc)
        if graph is not None:
            graph.push(None)  # flush: bwdif holds one frame back
            yield from self._restamped(drain(graph))

    def _filtered(self, frames):
        """``frames`` through the ``filters`` chain, in ``info.time_base``; the colour description of the first out
        (a filter may convert it). One warning where the chain moves frames in time (``setpts``, a speed change,
        found by the probe, or a drift seen as the frames come): what is copied along keeps the input's timeline.
        Where ``setpts`` restamps the frames (``PTS-STARTPTS``), ``shift`` is the input's time less the output's
        at the first frame, so that the audio copied starts with the picture."""
        import av

        graph = None
        first = True
        moved = False
        # setpts gives each frame its own time; what is copied along starts at the input's time of the frame the first
        # out was made from (``shift``). Each frame pushed carries its own time in its ``dts`` too, which filters copy
        # to what they make of it and setpts leaves alone (the frame just pushed where a filter drops it: fps holds
        # one back, so that would be a frame late)
        retimed = "setpts" in self.filters.names
        stream = self._stream_info
        # The chain counts time from the file's start, or from --start (_filter_zero); what comes out is put back on
        # the input's timeline, so that what is copied along (audio, subtitles) and --resume keep to it.
        zero = self._filter_zero()
        zero_out = round(Fraction(zero) * stream.time_base / self.info.time_base) if zero else 0
        late = max(1.0, 4 / float(stream.rate), 4 / float(self.info.rate))  # seconds a chain may hold frames back
        came_in = 0.0
        for frame in itertools.chain(frames, [None]):
            if graph is None and frame is None:
                return
            if graph is None and self.rotation:  # standard input: its rotation known only now
                log.warning("%s is stored turned (shown rotated %d degrees): --vf filters the frames as stored (a "
                            "file's are turned upright first, as ffmpeg's command line does), and the output keeps "
                            "the rotation", self.path, self.rotation)
            try:
                if graph is None:
                    graph = self.filters.graph(frame.width, frame.height, frame.format.name, stream.time_base,
                                               stream.rate, stream.sample_aspect_ratio)
                if frame is not None and frame.pts is not None:
                    came_in = float(frame.pts * stream.time_base)
                    frame.pts -= zero
                if frame is not None:
                    frame.dts = frame.pts  # the input's time, kept through the chain (see ``retimed``)
                graph.push(frame)  # None: flush
                ready = list(self._restamped(drain(graph), self.info.time_base))
            except av.error.FFmpegError as exc:
                raise VideoError(f"{self.filters.label} failed after {self._decoded_count} frames decoded "
                                 f"({_reason(exc)})") from None
            for out in ready:
                if out.pts is not None:
                    out.pts += zero_out
                if out.dts is not None:
                    out.dts += zero
            for out in ready:
                if first:
                    first = False
                    if not self._tonemap:
                        self.color = ColorInfo.of_frame(out)
                    if retimed and out.pts is not None and frame is not None:
                        made_from = came_in if out.dts is None else float(out.dts * stream.time_base)
                        self.shift = made_from - float(out.pts * self.info.time_base)
                    if self.time_scale != 1:
                        moved = True
                        log.warning("--vf %r moves the frames in time (it plays them at %s times their speed): audio, "
                                    "subtitles and chapters copied along keep the input's timeline, out of step with "
                                    "it (--copy none leaves them out)", self.filters.text, _speed(1 / self.time_scale))
                if not moved and out.pts is not None and frame is not None:
                    went = float(out.pts * self.info.time_base)
                    if abs(came_in - went - self.shift) > late:
                        moved = True
                        log.warning("--vf %r moves the frames in time (the frame at %.2f s comes out at %.2f s): "
                                    "audio, subtitles and chapters copied along keep the input's timeline, out of "
                                    "step with it (--copy none leaves them out)", self.filters.text, came_in, went)
                yield out

    def _filter_graph(self, frame):
        """The configured FFmpeg filter graph of ``deinterlace`` (bwdif) or ``ivtc`` (fieldmatch, bwdif, decimate),
        for frames like ``frame``."""
        stream = self._stream
        # the stream's own frame rate, which decimate needs (the film's, four fifths of it, comes out)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
        bwdif = ("bwdif", "mode=send_frame:parity=auto:deint=interlaced")
        chain = [("fieldmatch", "combmatch=full"), bwdif, ("decimate", None)] if self.ivtc else [bwdif]
        return linear_graph(buffer_of(frame.width, frame.height, frame.format.name, stream.time_base, rate, sar), chain)

    def _frames(self):
        """The stream's frames as decoded (a VP9 stream with alpha through libvpx, which decodes the alpha layer),
        past damaged packets (:func:`_decoded_past_damage`; counted in ``damaged``)."""
        import av

        ctx = av.CodecContext.create("libvpx-vp9", "r") if self._vp9_alpha else None
        yield from _decoded_past_damage(self._container, self._stream, self.damaged, ctx, self._leading)

    def _restamped(self, frames, tb: Fraction | None = None):
        """bwdif counts time in fields (half the stream's time base), decimate in the film's frames: back to the
        stream's units (or to ``tb``)."""
        tb = tb or self._stream.time_base
        for frame in frames:
            if frame.pts is not None and frame.time_base and frame.time_base != tb:
                frame.pts = round(Fraction(frame.pts) * frame.time_base / tb)
                frame.time_base = tb
            yield frame

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _speed(factor: Fraction) -> str:
    """A speed factor as people write it: 2, 0.5, 1.25, 4/3, else to four places (1.0417 for 25/24 measured)."""
    if (factor * 100).denominator == 1:
        return f"{float(factor):g}"
    return f"{factor.numerator}/{factor.denominator}" if factor.denominator <= 12 else f"{float(factor):.4f}"


def open_video(path: str | Path, *, start: float = 0.0, max_frames: int | None = None,
               deinterlace: bool = False, rate: Fraction | None = None, stream: int | None = None,
               ivtc: bool = False, tonemap: bool = False, filters: FilterChain | str | None = None,
               upright: bool = False) -> VideoReader:
    """Open ``path`` (a file, a URL such as ``https://...`` that FFmpeg reads, or an image-sequence pattern such as
    ``frames/%06d.png``, read at ``rate`` frames/s, 25 by default) for decoding; the caller closes the returned
    reader (use it in ``with``). ``stream``: the index of the video stream to read (default: the one FFmpeg picks).
    ``filters``: FFmpeg filters the frames go through (``--vf``; :class:`VideoReader`). ``upright``: a stream shown
    turned (a phone's) is turned as shown, for an output that cannot say so (images, y4m).

    Raises:
        VideoError: missing file, not a video, no video stream (or ``stream`` not one), bad ``start``/``max_frames``.
    """
    return VideoReader(path, start=start, max_frames=max_frames, deinterlace=deinterlace, rate=rate, stream=stream,
                       ivtc=ivtc, tonemap=tonemap, filters=filters, upright=upright)


def is_cover(stream) -> bool:
    """Whether a PyAV video stream is a cover picture (``attached_pic``: one image, not a video)."""
    from av.stream import Disposition

    return bool(stream.disposition & Disposition.attached_pic)


def _video_stream(container, path, index: int) -> object:
    """Stream ``index`` (FFmpeg's numbering, as ``ffprobe`` lists them), which must be a video; ``VideoError``
    otherwise, naming the video streams there are."""
    videos = [f"#{s.index} ({s.codec_context.name} {s.codec_context.width}x{s.codec_context.height})"
              for s in container.streams.video]
    chosen = next((s for s in container.streams if s.index == index), None)
    if chosen is None or chosen.type != "video":
        what = "no such stream" if chosen is None else f"a{'n' if chosen.type[0] in 'a' else ''} {chosen.type} stream"
        raise VideoError(f"--video-stream {index}: {path} has {what} there; its video streams: {', '.join(videos)}")
    return chosen


def _main_video(container, path) -> object:
    """The video stream to upscale: the one FFmpeg picks (``av_find_best_stream``: most frames decoded when probed,
    then the largest), never a cover picture (``attached_pic``: album art, a thumbnail a downloader embedded) while
    there is a real one; a warning where several real ones are there to choose from."""
    streams = list(container.streams.video)
    real = [s for s in streams if not is_cover(s)] or streams
    best = container.streams.best("video")
    chosen = best if best in real else real[0]
    if len(real) > 1:
        cc = chosen.codec_context
        log.warning("%s has %d video streams; upscaling stream #%d (%s %dx%d), the one FFmpeg picks "
                    "(--video-stream N picks another)", path, len(real), chosen.index, cc.name, cc.width, cc.height)
    return chosen


def _fitted(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """(w, h) a frame of ``size`` (w, h) takes inside ``box`` (w, h): the box where their shapes agree within 1 %,
    else as large as it fits with its own shape (sides rounded to even numbers: 4:2:0)."""
    (w, h), (bw, bh) = size, box
    if abs(w * bh - h * bw) <= 0.01 * h * bw:
        return box
    scale = min(bw / w, bh / h)
    return min(bw, max(2, 2 * round(w * scale / 2))), min(bh, max(2, 2 * round(h * scale / 2)))


def _boxed(array: np.ndarray, size: tuple[int, int], fill) -> np.ndarray:
    """``array`` (h, w, ...) in the middle of one of ``size`` (h, w) filled with ``fill``."""
    h, w = size
    out = np.full((h, w, *array.shape[2:]), fill, array.dtype)
    y, x = (h - array.shape[0]) // 2, (w - array.shape[1]) // 2
    out[y:y + array.shape[0], x:x + array.shape[1]] = array
    return out


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().rstrip(".") or type(exc).__name__


def _pixel_aspect(stream) -> Fraction | None:
    """The stream's sample aspect ratio when it is known and not square."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return Fraction(sar) if sar and sar != 1 else None


_AVCOL_SPC_UNSPECIFIED = 2


_THREAD = threading.local()
# VideoReader.sample decodes on to its next point where that is at most this far ahead, and seeks otherwise (to the
# keyframe before it: a film's keyframes are 1-10 seconds apart): it decodes no more than a run's own decoding does.
_SAMPLE_SEEK_S = 10.0
FIELD_CHECK_FRAMES = 120  # the first frames decoded that the interlacing check looks at (_FieldCheck)


def thread_reformatter():
    """This thread's ``VideoReformatter``, kept across frames: a frame's own ``reformat``/``to_ndarray(format=)``
    builds a new swscale context every time (2.3 of 2.4 ms per 180x320 frame). Not shared across threads."""
    reformatter = getattr(_THREAD, "reformatter", None)
    if reformatter is None:
        from av.video.reformatter import VideoReformatter

        reformatter = _THREAD.reformatter = VideoReformatter()
    return reformatter


def has_alpha(pix_fmt: str | None) -> bool:
    """Whether FFmpeg's pixel format ``pix_fmt`` has an alpha component (``rgba``, ``yuva444p10le``, ``ya8``, ...)."""
    import av

    try:
        return any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, TypeError):  # unknown or missing names ("?", None)
        return False


def _to_rgb(frame, reformatter, format: str = "rgb24", size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 RGB (``format="rgba"``: RGBA; ``"rgb48le"``: uint16 RGB) of a decoded frame, by its own colour tags;
    untagged YUV as players show it: BT.709 above SD (more than 576 lines or 1024 columns), BT.601 otherwise (FFmpeg
    alone would take BT.601 for all). ``reformatter``: a ``VideoReformatter`` kept across frames (it keeps its
    swscale context). ``size``: ``(width, height)`` to resize to (Lanczos) in the same pass; None: the frame's own."""
    resize = {} if size is None else {"width": size[0], "height": size[1], "interpolation": "LANCZOS"}
    if (frame.colorspace == _AVCOL_SPC_UNSPECIFIED and frame.format.name.startswith(("yuv", "nv"))
            and (frame.height > 576 or frame.width > 1024)):
        from av.video.reformatter import Colorspace

        return reformatter.reformat(frame, format=format, src_colorspace=Colorspace.ITU709, **resize).to_ndarray()
    return reformatter.reformat(frame, format=format, **resize).to_ndarray()


class _FieldCheck:
    """FFmpeg's ``idet`` over a stream's first :attr:`FRAMES` frames as they are decoded (what the run decodes
    anyway; 0.6 ms a 1080p frame, ``benchmarks/video_costs.py``), to say what an input whose fields do not belong
    together needs: combing in most frames is video shot interlaced (``--deinterlace``); a field repeated in about
    two frames of five is film telecined with 3:2 pulldown (``--ivtc``). Frames merely flagged interlaced whose
    fields show no combing (progressive content stored as interlaced) need neither."""

    FRAMES = FIELD_CHECK_FRAMES
    FEWEST = 30  # frames idet must have seen for a verdict (its first frames are often misjudged)
    TELECINE_SHARE = 0.25  # of the frames, repeating a field (3:2 pulldown: 2 in 5)
    COMBED_SHARE = 0.5  # of the frames idet decides on, combed, where the frames are flagged interlaced
    COMBED_UNFLAGGED_SHARE = 0.75  # ... where they are not (noise or grain in progressive frames can look combed)

    @classmethod
    def start(cls, stream) -> _FieldCheck | None:
        """A check of ``stream``'s frames; None where FFmpeg cannot set it up for them (the run goes on without)."""
        import av

        try:
            return cls(stream)
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            log.debug("no interlacing check of %s: %s", stream, exc)
            return None

    def __init__(self, stream) -> None:
        import av

        self.graph = av.filter.Graph()
        src, idet, sink = self.graph.add_buffer(template=stream), self.graph.add("idet"), self.graph.add("buffersink")
        src.link_to(idet)
        idet.link_to(sink)
        self.graph.configure()
        self.frames = 0
        self.flagged = False  # any frame flagged interlaced
        self.metadata: dict[str, str] = {}

    def push(self, frame) -> bool:
        """Look at one more frame; True once :attr:`FRAMES` have been looked at."""
        import av

        self.flagged = self.flagged or bool(frame.interlaced_frame)
        try:
            self.graph.push(frame)
            for out in drain(self.graph):
                self.metadata = dict(out.metadata)
        except (av.error.FFmpegError, ValueError, OSError):  # a frame it cannot take (a size change): judge so far
            return True
        self.frames += 1
        return self.frames >= self.FRAMES

    def verdict(self) -> tuple[str, int, int] | None:
        """("telecined", frames repeating a field, frames) / ("interlaced tff" or "bff", combed, frames) /
        ("progressive", 0, frames); None before idet has decided on :attr:`FEWEST` frames."""
        count = self._count
        tff, bff, progressive = count("multiple.tff"), count("multiple.bff"), count("multiple.progressive")
        seen = tff + bff + progressive + count("multiple.undetermined")
        if seen < self.FEWEST:
            return None
        repeated = self._repeated()
        if repeated >= self.TELECINE_SHARE * seen:
            return "telecined", repeated, seen
        share = self.COMBED_SHARE if self.flagged else self.COMBED_UNFLAGGED_SHARE
        if tff + bff > share * (tff + bff + progressive):
            return ("interlaced tff" if tff >= bff else "interlaced bff"), tff + bff, seen
        return "progressive", 0, seen

    def _count(self, key: str) -> int:
        """One of idet's running counts (``multiple.tff``, ``repeated.top``, ...), of the frames seen so far."""
        return round(float(self.metadata.get(f"lavfi.idet.{key}", 0)))

    def _repeated(self) -> int:
        """Frames seen so far that repeat a field of the one before."""
        return self._count("repeated.top") + self._count("repeated.bottom")

    def report(self, path, ivtc: bool = False) -> None:
        """Log what the frames seen say the input needs; with ``ivtc`` (asked for), only where it does not look
        telecined: decimate then drops a real frame of every five."""
        said = self.verdict()
        if ivtc:
            if said is not None and said[0] != "telecined":
                kind, n, seen = said
                log.warning("%s does not look telecined (%s over its first %d frames, %d repeating a field): --ivtc "
                            "drops one frame in five of it as a duplicate, which judders; leave --ivtc out%s", path,
                            "combed" if kind.startswith("interlaced") else kind, seen, self._repeated(),
                            " and pass --deinterlace" if kind.startswith("interlaced") else "")
            return
        if said is None:
            if self.flagged:
                log.warning("%s is flagged interlaced (too few frames to tell how its fields go together): if it "
                            "combs, pass --deinterlace (video shot interlaced) or --ivtc (film telecined to 29.97 fps: "
                            "NTSC DVDs, anime)", path)
            return
        kind, n, seen = said
        if kind == "telecined":
            log.warning("%s looks telecined (3:2 pulldown: %d of its first %d frames repeat a field): film frames "
                        "woven into each other comb wherever there is motion; pass --ivtc for the film's own "
                        "frames (23.976 fps from 29.97)", path, n, seen)
        elif kind.startswith("interlaced"):
            log.warning("%s is interlaced (%s field first: %d of its first %d frames combed): its frames upscaled as "
                        "progressive pictures show combing wherever there is motion; pass --deinterlace (FFmpeg's "
                        "bwdif)", path, "top" if kind.endswith("tff") else "bottom", n, seen)
        elif self.flagged:
            log.info("%s is flagged interlaced, but its first %d frames show no combing (progressive content stored "
                     "as interlaced): upscaled as it is", path, seen)


# Damaged packets: decoding goes on past them, as FFmpeg's own command does, until they are more than this share of
# the packets read (and more than _DAMAGED_FEWEST): then the input is not a damaged video but not one at all.
_DAMAGED_SHARE = 0.05
_DAMAGED_FEWEST = 8


def _shown_samples(stream) -> int:
    """The frames an MP4/MOV video stream shows: its sample count less those its edit list hides at the start (a
    stream-copy cut keeps the packets from the keyframe before the cut, which FFmpeg's index marks discarded; cut at
    a keyframe, it leaves them out of the index). Counted from the index's first entries, not the shown duration
    times the average rate, which a variable-rate file does not keep to."""
    entries = stream.index_entries
    shown = min(stream.frames, len(entries) or stream.frames)
    for entry in entries:  # the hidden samples lead; a 2-hour film's index is not walked
        if not entry.is_discard:
            break
        shown -= 1
    return max(shown, 1)


@dataclass
class _Leading:
    """The packets at a stream's start whose frames do not come out (:func:`_decoded_past_damage` counts them)."""

    hidden: int = 0  # hidden by an MP4 edit list (flagged discard: FFmpeg's decoder drops their frames)
    first_pts: int | None = None  # the time of the first frame decoded
    # the times of the packets read before it (not hidden): those before it in time gave no frame
    before: list[int] = dataclasses.field(default_factory=list)

    @property
    def undecodable(self) -> int:
        """Packets before the first frame decoded, in time, that gave none (a clip starting mid-GOP: its frames
        before the first keyframe refer to one cut away; H.264's decoder drops them, without an error)."""
        if self.first_pts is None:
            return 0
        return sum(1 for t in self.before if t < self.first_pts)


def _decoded_past_damage(container, stream, damaged: list[float], ctx=None, leading: _Leading | None = None):
    """``stream``'s decoded frames, packet by packet (through ``ctx``, a codec context, where given; else the
    stream's own), skipping the packets the decoder refuses as invalid data: a damaged stretch costs the frames it
    held (the decoder conceals what it can) instead of the run. Each skipped packet's time goes into ``damaged``;
    ``VideoError`` once they are too many to be damage. ``leading``: counts the packets whose frames do not come out
    at the start (read from the start)."""
    import av

    decode = (ctx or stream.codec_context).decode
    packets = 0
    first = leading is not None  # until the first frame comes out
    for packet in container.demux(stream):
        packets += 1
        if leading is not None and packet.size:
            if packet.is_discard:
                leading.hidden += 1
            elif first and packet.pts is not None:
                leading.before.append(packet.pts)
        try:
            frames = decode(packet if packet.size else None)
        except av.error.InvalidDataError:
            when = packet.pts if packet.pts is not None else packet.dts
            damaged.append(float(when * stream.time_base) if when is not None and stream.time_base else float("nan"))
            if len(damaged) > _DAMAGED_FEWEST and len(damaged) > _DAMAGED_SHARE * packets:
                raise av.error.InvalidDataError(errno.EINVAL, f"{len(damaged)} of {packets} packets damaged") \
                    from None
            continue
        if first and frames:
            first = False
            leading.first_pts = frames[0].pts
        yield from frames
