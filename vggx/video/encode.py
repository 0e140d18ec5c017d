"""Encoding with PyAV: RGB uint8 frames -> a video file, audio copied from the source, written atomically.

The file is written under a hidden temporary name in the output's directory and renamed onto the
output path only by :meth:`VideoWriter.commit`; :meth:`VideoWriter.abort` (or leaving the ``with``
block with an exception, Ctrl-C included) deletes it, so a failed run leaves nothing at the output.

Frames are wrapped without a copy (``VideoFrame.from_numpy_buffer``) and converted to the codec's pixel
format (RGB -> yuv420p for H.264) by a few worker threads a few frames ahead of the encoder (swscale
runs without the GIL): the thread feeding x264 then only encodes. Serially, wrapping and converting
each 720p frame cost as much CPU as x264's veryfast preset itself, and capped how fast a GPU's output
could be written.

With ``EncodeConfig(encoders=N)`` (:data:`SEGMENT_CODECS`: x264, x265, SVT-AV1, VP9, ProRes, FFV1), N encoders
run at once on consecutive segments of the frames (``segment_frames``, two seconds by default), each starting with a
keyframe, and their packets are muxed in order into the one stream (the segments' encoders are set up like the
stream's own, so their parameter sets are the stream header's; checked): for machines where one encoder leaves cores
idle. CRF keeps the quality; the extra keyframes cost a little size (``benchmarks/encoders.py``). The same segments,
kept on disk as they finish, are what ``--resume`` goes on after.

Standard output (``-``): the frames as a stream for another program to read as they come, uncompressed in y4m
(``rawvideo``: what ffmpeg, x264, x265 and mpv read from a pipe; YUV or grey, no audio) or, with another codec,
in Matroska (the audio copied too). Nothing is atomic about a pipe: an error ends the stream where it is.

Colour: YUV output is BT.709, limited range (full range for the ``yuvj`` formats), and says so in the
stream (matrix, primaries, transfer, range). Left to their defaults, FFmpeg converts with BT.601 and
tags nothing, and players show untagged HD as BT.709: an ×4 output would play with shifted colours
(a saturated red off by ~14 levels). A wide-gamut or HDR source's description (``color``: BT.2020, PQ, HLG) is
kept instead, its HDR10 metadata written by x264, x265 and SVT-AV1 (:class:`vggx.video.depth.ColorInfo`).

Frames are uint8, or uint16 RGB for outputs of more than 8 bits that keep an input's fine levels
(:mod:`vggx.video.depth`).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from vggx.errors import VideoError, result_of

from .decode import (
    IMAGE_SUFFIXES,
    display_source,
    find_sequence,
    has_alpha,
    is_cover,
    is_image_sequence,
    is_url,
    local_path,
    numbered_files,
    open_source,
    sequence_number,
    thread_reformatter,
)
from .depth import ColorInfo, component_depth
from .filters import drain

__all__ = ["EXTRAS", "IMAGE_CODECS", "SEGMENT_CODECS", "STDOUT_RAW_CODEC", "X264_PRESETS", "EncodeConfig",
           "SegmentStore", "VideoWriter", "alpha_pix_fmt", "check_container", "check_copy", "check_encoder",
           "check_encoder_starts", "check_frame_encodable", "check_image_codec", "check_keeps_input",
           "check_output_path", "check_stdout", "deeper_pix_fmt", "describe_encoder", "encoder_options", "image_codec",
           "is_single_image", "is_stdout", "merge_params", "output_pix_fmt", "stdout_format", "video_stream_tags",
           "writes_y4m"]

log = logging.getLogger(__name__)

# Codecs that are lossless and nothing else: no quality or bitrate to set.
LOSSLESS_ONLY = frozenset({"ffv1", "png", "tiff", "rawvideo", "huffyuv", "ffvhuff", "utvideo"})
# Codecs that take x264-style rate control by constant quality.
CRF_CODECS = {"libx264", "libx264rgb", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1"}
# Frames an encoder may hold back to reorder (x264/x265 take at most 16 B-frames): a dts further back is no dts
_MAX_REORDER = 64
# The CRF scale's top where it is not 63 (x264 clamps above it silently, x265 refuses to open)
_CRF_MAX = {"libx264": 51, "libx264rgb": 51, "libx265": 51}
# Codecs with x264-style speed presets, and those presets, fastest first.
_PRESET_CODECS = {"libx264", "libx264rgb", "libx265"}
# Codecs whose runs of frames, each encoded by its own encoder from a keyframe, join into one stream (--encoders,
# --resume): the encoders, set up alike, write the same stream header (checked as each opens), and no frame refers
# to one before its segment's keyframe. Tested for each: the frames, timestamps and keyframes of the joined stream.
SEGMENT_CODECS = frozenset({*_PRESET_CODECS, "libsvtav1", "libvpx-vp9", "prores_ks", "ffv1"})
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
# Chroma-subsampled codecs whose players expect 4:2:0 (DESIGN: H.264 yuv420p by default).
_YUV420_CODECS = {"libx264", "libx265", "h264", "hevc", "mpeg4", "libvpx", "libvpx-vp9", "libaom-av1",
                  "libsvtav1", "libopenh264", "mpeg2video"}
# Lossless RGB choices, best first, for codecs that take RGB (libx264rgb, ffv1, png, ...).
_RGB_FORMATS = ("rgb24", "bgr24", "gbrp", "bgr0", "rgb0")
# Formats with alpha, best first: packed RGBA (PNG/TIFF, FFV1, HuffYUV, QuickTime Animation), then what the
# players of each codec expect (VP9 in WebM: yuva420p; ProRes 4444: yuva444p10le), planar RGBA last.
_ALPHA_FORMATS = ("rgba", "bgra", "argb", "yuva420p", "yuva444p10le", "yuva444p", "gbrap")
# Container tags the muxer writes itself (copying them would describe the source's muxer, not ours).
_MUXER_OWN_METADATA = {"major_brand", "minor_version", "compatible_brands", "encoder"}
# Stream audio this far ahead of the video so the muxer interleaves without buffering much.
_AUDIO_LEAD_S = 0.5
# A lossless audio packet starting this little before a --start cut still starts with it (Matroska's millisecond
# clock rounds the two times apart by up to this)
_CUT_SLACK_S = 0.0005
# How far before a --start cut the audio copier starts reading: its packet before the cut (the decoder's pre-roll)
# must be among those read.
_PREROLL_SEEK_S = 1.0
# Threads converting RGB frames to the codec's pixel format ahead of the encoder (one per four cores, at
# most four: the encoder's own threads need the rest); twice as many frames are in flight.
_CONVERT_THREADS = max(1, min(4, (os.cpu_count() or 1) // 4))


@dataclass(frozen=True)
class EncodeConfig:
    """Output encoding; ``crf`` applies to codecs with constant-quality control (x264/x265/vpx/aom)."""

    codec: str = "libx264"
    crf: int | None = 18  # 0 = lossless for libx264/libx264rgb; lower is better, larger files
    pix_fmt: str | None = None  # None: yuv420p for H.264-style codecs, lossless RGB where the codec takes it
    preset: str | None = None  # x264/x265 speed preset (ultrafast ... placebo); None: the encoder's (medium)
    # FFmpeg options of the encoder (``ffmpeg -h encoder=libx265``), over vggx's own (see encoder_options): tune,
    # profile, g, bf, maxrate, bufsize, x265-params (merged with vggx's key by key, these winning), ...
    options: dict[str, str] = field(default_factory=dict)
    # Average bits/s (ABR, e.g. a streaming ladder's rung) instead of constant quality: ``crf`` is then not given to
    # the encoder. A VBV cap is ``options`` maxrate and bufsize (also with a CRF: capped CRF).
    bitrate: int | None = None
    # Threads converting frames to the codec's pixel format ahead of the encoder; None: one per four
    # cores, 1..4; 0: none (PyAV's encoder converts each frame itself, serially: the benchmarks' baseline).
    convert_threads: int | None = None
    # Encoders at once (SEGMENT_CODECS), each on its own run of consecutive frames (a segment starting with a
    # keyframe), sharing the cores: for many-core machines where one encoder leaves cores idle. Up to
    # encoders x segment_frames frames wait in memory for their encoder. 1: one encoder.
    encoders: int = 1
    segment_frames: int | None = None  # frames per segment with encoders > 1; None: two seconds' worth
    # The audio: None copies each track as it is (remuxed); an encoder's name (aac, libopus, flac, ...) re-encodes
    # every audio track with it, for containers that cannot hold the source's (PCM or FLAC into MP4, ...), at
    # ``audio_bitrate`` bits/s (None: the encoder's default, e.g. AAC's 128k for stereo)
    audio_codec: str | None = None
    audio_bitrate: int | None = None

    def __post_init__(self) -> None:
        if self.convert_threads is not None and self.convert_threads < 0:
            raise VideoError(f"convert_threads must be >= 0, got {self.convert_threads}")
        if not 1 <= self.encoders <= 64:
            raise VideoError(f"--encoders must be in 1..64, got {self.encoders}")
        if self.encoders > 1 and self.codec not in SEGMENT_CODECS:
            raise VideoError(f"--encoders applies to {', '.join(sorted(SEGMENT_CODECS))}, not {self.codec}")
        if self.segment_frames is not None and self.segment_frames < 8:
            raise VideoError(f"segment_frames must be >= 8, got {self.segment_frames}")
        top = _CRF_MAX.get(self.codec, 63)
        if self.crf is not None and not 0 <= self.crf <= top:
            raise VideoError(f"--crf must be in 0..{top}" + (f" for {self.codec}" if top != 63 else "")
                             + f", got {self.crf}")
        if self.bitrate is not None and not 10_000 <= self.bitrate <= 10_000_000_000:
            raise VideoError(f"--bitrate must be in 10k..10G bits/s, got {self.bitrate}")
        if self.bitrate is not None and self.codec in LOSSLESS_ONLY:
            raise VideoError(f"{self.codec} is lossless: it has no bitrate to aim at (--bitrate is for libx264, "
                             f"libx265, libvpx-vp9, libsvtav1, ...)")
        for key, value in self.options.items():
            if not key or not isinstance(value, str) or key.startswith("-") or "=" in key:
                raise VideoError(f"an encoder option is KEY=VALUE with FFmpeg's name for KEY (tune=film, "
                                 f"x265-params=aq-mode=3), got {key!r}={value!r}")
        if self.preset is not None and self.preset not in X264_PRESETS:
            raise VideoError(f"--preset must be one of {', '.join(X264_PRESETS)}, got {self.preset!r}")
        if self.preset is not None and self.codec not in _PRESET_CODECS:
            raise VideoError(f"--preset applies to {', '.join(sorted(_PRESET_CODECS))}, not {self.codec}")
        if self.audio_codec is not None:
            _check_audio_encoder(self.audio_codec)
        if self.audio_bitrate is not None and not 8_000 <= self.audio_bitrate <= 10_000_000:
            raise VideoError(f"--audio-bitrate must be in 8k..10M bits/s, got {self.audio_bitrate}")
        if self.audio_bitrate is not None and self.audio_codec is None:
            raise VideoError("--audio-bitrate applies to a re-encoded audio (--audio-codec aac, ...), not a copy")


STDOUT_RAW_CODEC = "rawvideo"  # uncompressed frames: y4m on standard output
EXTRAS = ("audio", "subtitles", "chapters", "attachments", "cover")  # what goes along with the video (--copy)
Y4M_PIX_FMT = "yuv420p"  # y4m's pixel format where --pix-fmt names none (what x264, x265 and players take)


def is_stdout(path: str | Path | None) -> bool:
    """Whether the output ``path`` is ``-``: standard output (``vggx upscale in.mp4 - | ffmpeg -i - ...``)."""
    return path is not None and str(path) == "-"


def writes_y4m(path: str | Path | None, codec: str) -> bool:
    """Whether ``path`` with ``codec`` is y4m (uncompressed frames, no audio, no colour tags): on standard output,
    or a ``.y4m`` file."""
    if codec != STDOUT_RAW_CODEC or path is None:
        return False
    return is_stdout(path) or Path(str(path)).suffix.lower() == ".y4m"


def stdout_format(codec: str) -> str:
    """The container of a stream on standard output: y4m for uncompressed frames, Matroska for any other codec."""
    return "yuv4mpegpipe" if codec == STDOUT_RAW_CODEC else "matroska"


def _stdout_options(codec: str) -> dict[str, str]:
    # FFmpeg's y4m muxer writes more than 8 bits a sample (C420p10, ...) only when told non-standard is fine.
    return {"strict": "unofficial"} if codec == STDOUT_RAW_CODEC else _muxer_options("matroska")


# FFmpeg's QuickTime/MP4 muxers: a stream starting before 0 gets an edit list (its first samples decoded, not shown)
_EDIT_LIST_MUXERS = frozenset({"mp4", "mov", "ipod", "3gp", "3g2", "psp", "ismv", "f4v"})


def _muxer_options(fmt: str | None) -> dict[str, str]:
    """The options a video output in container ``fmt`` is opened with: Matroska keeps the copied audio's pre-roll
    packet (see :class:`_AudioCopier`) at its negative time rather than moving every stream later by it (FFmpeg's
    default there), so the video still starts at 0 (MP4 writes an edit list instead)."""
    return {"avoid_negative_ts": "disabled"} if fmt in ("matroska", "webm") else {}


def check_stdout(config: EncodeConfig) -> None:
    """Raise ``VideoError`` unless a stream of ``config`` can go to standard output, which must not be a terminal;
    call before heavy work. Muxes one small frame into memory (y4m takes YUV and grey formats only)."""
    import io

    import av

    if os.isatty(1):
        raise VideoError("standard output is a terminal: pipe it into a program (vggx upscale in.mp4 - | "
                         "ffmpeg -i - out.mkv) or name an output file")
    check_encoder(config)
    if config.codec != STDOUT_RAW_CODEC:
        return
    pix_fmt = config.pix_fmt or Y4M_PIX_FMT
    probe = io.BytesIO()
    try:
        with av.open(probe, "w", format=stdout_format(config.codec), options=_stdout_options(config.codec)) as c:
            stream = c.add_stream(config.codec, rate=24)
            stream.width, stream.height, stream.pix_fmt = 16, 16, pix_fmt
            frame = av.VideoFrame(16, 16, pix_fmt)
            frame.pts = 0
            for packet in (*stream.encode(frame), *stream.encode()):
                c.mux(packet)
    except (av.error.FFmpegError, ValueError) as exc:
        raise VideoError(f"y4m on standard output cannot carry {pix_fmt} ({_reason(exc)}): it takes YUV and grey "
                         "formats (yuv420p, yuv444p, yuv420p10le, gray, ...); for RGB give --codec ffv1 (Matroska)"
                         ) from None


def check_output_path(output: str | Path, input_path: str | Path | None = None) -> Path:
    """Fail early (before any work) if ``output`` cannot be written; return it resolved (``-``: standard output,
    checked by :func:`check_stdout`).

    Raises:
        VideoError: the directory is missing or read-only, the path is a directory or the input.
    """
    if is_stdout(output):
        return Path("-")
    output = Path(output)
    parent = output.parent if str(output.parent) else Path(".")
    if output.is_dir():
        raise VideoError(f"cannot write {output}: it is a directory")
    if not parent.is_dir() and is_image_sequence(output) and not parent.exists() and parent.parent.is_dir():
        parent = parent.parent  # a sequence's own folder (x4/%06d.png) is made by the writer, as a folder run's
    if not parent.is_dir():
        what = "is a file, not a folder" if parent.exists() else "does not exist"
        raise VideoError(f"cannot write {output}: directory {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VideoError(f"cannot write {output}: directory {parent} is not writable")
    if input_path is not None and not is_url(input_path) and Path(input_path).exists() and output.exists() \
            and os.path.samefile(input_path, output):
        raise VideoError(f"output {output} is the input file; choose another name")
    if not output.suffix:
        raise VideoError(f"cannot tell the container format of {output}: give it an extension (.mp4, .mkv)")
    # a % is a number only in an image output's name; a video's is written as it is (FFmpeg's video muxers take
    # the name literally), so a folder run writes "sale 50% off.mp4" as well
    if "%" in output.name and output.suffix.lower() in IMAGE_SUFFIXES and not is_image_sequence(output):
        raise VideoError(f"{output.name}: a % in a file name starts an image-sequence number; use one %d or %0Nd "
                         f"(out/%06d.png), or a name without %")
    image_codec(output)  # an image sequence in a format vggx writes
    if (input_path is not None and is_image_sequence(input_path) and is_image_sequence(output)
            and Path(input_path).resolve() == output.resolve()):
        raise VideoError(f"output {output} is the input sequence; its frames would be overwritten: choose another name")
    return output


def existing_output(output: Path) -> Path | None:
    """A file of ``output`` that exists already (what ``--skip-existing`` leaves), or None: the file, or for an
    image sequence the first of the files its pattern numbers (a sequence is moved into place whole as its run
    ends, so one frame there is a finished run's)."""
    if not is_image_sequence(output):
        return output if output.exists() else None
    return next((p for _, p in numbered_files(output) if p.is_file()), None)


def check_keeps_input(output: Path, input_path: str | Path, first: int | None = None,
                      count: int | None = None) -> None:
    """Raise ``VideoError`` if writing ``output`` would replace a file of the input ``input_path`` (an image
    sequence's frames, or the one file it is), whatever the two are called: ``f%d.png`` names ``f%04d.png``'s
    ``f1001.png`` too, and a frame grab may be named like a frame. ``first``, ``count``: the numbers an
    image-sequence output is written with (None: any number, not known before the frames are). Call before any
    work, after the input was opened (its sequence found)."""
    if is_url(input_path) or str(input_path) == "-" or is_stdout(output):
        return
    if is_image_sequence(input_path):
        sequence = find_sequence(input_path)
        files = [sequence.file(n) for n in range(sequence.start, sequence.start + sequence.count)]
        what = "a frame of the input sequence"
    elif Path(input_path).is_file():
        files, what = [Path(input_path)], "the input file"
    else:
        return
    hit = None
    if is_image_sequence(output):
        folder = output.parent if str(output.parent) else Path(".")
        if not folder.is_dir():  # made by the writer: nothing in it yet
            return
        if os.path.samefile(files[0].parent, folder):  # a sequence's files share one folder
            last = None if first is None or count is None else first + count - 1
            for f in files:
                number = sequence_number(output, f.name)
                if number is not None and (first is None or number >= first) and (last is None or number <= last):
                    hit = f
                    break
    elif output.exists():
        mine = output.stat()
        hit = next((f for f in files if os.path.samestat(f.stat(), mine)), None)
    if hit is not None:
        raise VideoError(f"output {output} would overwrite {hit}, {what}; choose another name")


def _audio_remedies(muxer: str, audio_codec: str | None) -> str:
    """What may get audio into an output whose muxer (FFmpeg's name) refused it: the options not already given."""
    names = set(muxer.split(","))
    webm = "webm" in names
    wanted = "libopus" if webm else "aac"  # WebM takes Opus or Vorbis only
    remedies = [] if "matroska" in names and not webm else ["an .mkv output"]
    if audio_codec != wanted:
        remedies.append(f"--audio-codec {wanted} (re-encoded)")
    return ", ".join(remedies) or "another --audio-codec"


def _part_name(path: Path, tag: str) -> str:
    """The hidden name ``path`` is written under until it is complete, ``.STEM.vggx-TAG.partSUFFIX``, its stem
    shortened where the whole would pass the file system's longest name (255 bytes) that ``path`` itself fits."""
    try:
        limit = os.pathconf(path.parent if str(path.parent) else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    stem = path.stem
    while stem and len(f".{stem}.vggx-{tag}.part{path.suffix}".encode()) > limit:
        stem = stem[:-1]
    return f".{stem}.vggx-{tag}.part{path.suffix}"


# Image sequences are written lossless: the encoder of each suffix (PNG is the default choice).
IMAGE_CODECS = {".png": "png", ".tif": "tiff", ".tiff": "tiff"}


def is_single_image(path: str | Path) -> bool:
    """Whether ``path`` names one image file (an image suffix, no sequence number pattern)."""
    return (not is_url(path) and not is_image_sequence(path)
            and Path(path).suffix.lower() in IMAGE_SUFFIXES)


def image_codec(path: str | Path) -> str | None:
    """The encoder an image output ``path`` (a sequence such as ``out/%06d.png``, or one image) is written with
    (None: ``path`` is a video).

    Raises:
        VideoError: an image suffix vggx does not write (lossy or float formats).
    """
    if not (is_image_sequence(path) or is_single_image(path)):
        return None
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_CODECS:
        raise VideoError(f"images are written as PNG or TIFF (lossless): {Path(path).name} ends in {suffix}; "
                         f"use .png or .tif")
    return IMAGE_CODECS[suffix]


def check_container(path: str | Path, codec: str) -> None:
    """Raise ``VideoError`` unless the container ``path``'s extension names can hold ``codec`` video (e.g. WebM
    takes VP8/VP9/AV1, not H.264; QuickTime takes no VP9, VP8 or AV1, Ogg no H.264); call before heavy work. Writes
    the header of a probe file in a temporary folder, removed after: some muxers refuse a codec only there. A pair
    that passed is not tried again in this process (a folder run's files, each opening an encoder)."""
    import tempfile

    import av

    path = Path(path)
    key = (_guess_format(path), path.suffix.lower(), codec)
    if key in _CONTAINERS_PASSED:
        return
    _quiet_svt(codec)
    with tempfile.TemporaryDirectory(prefix="vggx-probe-") as tmp:
        probe = Path(tmp) / f"probe{path.suffix}"
        try:
            container = av.open(str(probe), "w", format=_guess_format(path))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(f"cannot write {path} ({_reason(exc)})") from None
        failed = None
        with library_messages() as said:  # (x265 prints its summary of no frames at the close)
            try:
                stream = _add_stream(container, codec, 24, path)
                stream.width = stream.height = 64
                stream.pix_fmt = Y4M_PIX_FMT if writes_y4m(path, codec) else _default_pix_fmt(av.Codec(codec, "w"))
                stream.codec_context.open()
            except (av.error.FFmpegError, OSError, ValueError):
                stream = None  # the encoder itself (a hardware one, a size it wants): check_encoder_starts says it
            except VideoError:
                container.close()
                raise
            if stream is not None:
                try:
                    container.start_encoding()
                except (av.error.FFmpegError, ValueError) as exc:
                    failed = exc
            with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):  # (a header never written)
                container.close()
        if failed is not None:
            raise _container_refuses(path, codec, "; ".join(said.errors) or _reason(failed))
    _CONTAINERS_PASSED.add(key)


_CONTAINERS_PASSED: set[tuple[str | None, str, str]] = set()  # (format, extension, codec) check_container passed


def _check_audio_encoder(name: str) -> None:
    """``VideoError`` unless FFmpeg has an audio encoder called ``name``."""
    import av

    try:
        codec = av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        codec = None
    if codec is None or codec.type != "audio":
        raise VideoError(f"unknown audio encoder {name!r} in this FFmpeg (try aac, libopus, flac or ac3)")


def check_copy(path: str | Path, source: str | Path, copy: tuple[str, ...], config: EncodeConfig | None = None
               ) -> None:
    """Raise ``VideoError`` unless what ``copy`` names of ``source`` (its audio, subtitles, ...) can be muxed into the
    container of ``path`` (``-``: Matroska on standard output): the streams are set up and half a second of them
    written into memory, header and trailer, so that a muxer refusing them late (PCM in MP4, at its trailer) does so
    before the video is upscaled, not after."""
    import io

    import av

    if not copy:
        return
    fmt = "matroska" if is_stdout(path) else _guess_format(Path(path))
    if fmt is None:
        return
    container = av.open(io.BytesIO(), "w", format=fmt, options=_muxer_options(fmt))
    copier = streams = None
    try:
        copier = _AudioCopier(source, container, 0.0, None, copy, config, quiet=True)
        streams = [(s.type, copier._out[s.index].codec_context.name) for s in copier._in_streams]
        if not streams:  # chapters, attachments, a cover: nothing a muxer refuses late
            return
        container.start_encoding()
        copier.mux_until(0.5)  # a little of each stream, and the trailer: some muxers refuse only there
        copier.close()  # (flushes the re-encoders)
        copier = None
        container.close()
    except av.error.FFmpegError as exc:
        what = ", ".join(f"{name} {'audio' if kind == 'audio' else 'subtitles'}" for kind, name in streams or ()
                         ) or "streams"
        raise VideoError(f"cannot copy the {what} of {display_source(source)} into {Path(path).suffix or fmt} "
                         f"({_reason(exc)}); try {_audio_remedies(fmt, config.audio_codec if config else None)}, or "
                         f"leave it out (--copy none, or --copy with the rest)") from None
    finally:
        if copier is not None:
            copier.close()
        container.close()


def _add_stream(container, codec: str, rate, path: Path):
    """``container.add_stream(codec)``, or ``VideoError`` naming a codec the container of ``path`` takes."""
    import av

    try:
        return container.add_stream(codec, rate=rate)
    except (av.error.FFmpegError, ValueError) as exc:
        raise _container_refuses(path, codec, _reason(exc)) from None


def _container_refuses(path: Path, codec: str, why: str) -> VideoError:
    return VideoError(f"{path.name}: its container cannot hold {codec} video ({why}); choose a --codec it takes "
                      f"(e.g. libvpx-vp9 for .webm, libx264 for .mov) or another extension (.mkv holds most)")


def check_image_codec(path: str | Path, codec: str) -> None:
    """Raise ``VideoError`` unless ``codec`` is what the image output ``path`` (a sequence, one image or a GIF) is
    written with; videos pass."""
    if Path(path).suffix.lower() == ".gif" and codec != "gif":  # --codec libx264 was dropped for GIF's own
        raise VideoError(f"{Path(path).name} is a GIF, written with GIF's own codec; --codec {codec} needs another "
                         f"container (.mp4, .mkv), or leave --codec out")
    want = image_codec(path)
    if want is not None and codec != want:
        kind = "an image sequence" if is_image_sequence(path) else "an image"
        raise VideoError(f"{Path(path).name} is {kind}, written with {want}; --codec {codec} makes videos "
                         f"(leave --codec out, or name a video file)")


# Options holding a list of the library's own key=value settings, joined by ':'.
PARAMS_OPTIONS = frozenset({"x264-params", "x265-params", "svtav1-params", "aom-params"})


def merge_params(ours: str, theirs: str) -> str:
    """Two ``key=value:key=value`` lists (x265-params, ...) as one, ``theirs`` winning: each of our settings whose key
    ``theirs`` sets again is left out, and theirs come last (x265 and x264 take the last of a key, too)."""
    def key(item: str) -> str:
        return item.split("=", 1)[0].strip()

    given = {key(p) for p in theirs.split(":") if p}
    return ":".join([p for p in ours.split(":") if p and key(p) not in given] + [p for p in theirs.split(":") if p])


def _subsampled_420(pix_fmt: str) -> bool:
    """Whether ``pix_fmt`` holds chroma at half the luma's width and height (yuv420p, yuv420p10le, nv12 ...)."""
    import av

    fmt = av.VideoFormat(pix_fmt, 16, 16)  # a size: the components' sizes are of it
    if fmt.is_rgb or len(fmt.components) < 3:
        return False
    luma, chroma = fmt.components[0], fmt.components[1]
    return chroma.width * 2 == luma.width and chroma.height * 2 == luma.height


def _quiet_svt(codec: str) -> None:
    """SVT-AV1's own log to errors only, unless the environment says otherwise, before the process's first SVT-AV1
    encoder opens (a check's probe included: it reads ``SVT_LOG`` then, once)."""
    if codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")


def _quieted(config: EncodeConfig, options: dict[str, str], level: str) -> dict[str, str]:
    """``options`` with the encoder library's own log, which it prints itself, cut to ``level``: ``warning``, or
    ``error`` where segments are encoded (--encoders, --resume: x265's banner is 25 lines an encoder, and a resumed
    two-hour film opens 3600; the level is in x265's stream header, which every segment's must match). SVT-AV1's (20
    lines, and a warning that it cannot raise its threads' priority in a container) is read from ``SVT_LOG`` once a
    process: errors only unless the environment says otherwise. A ``log-level`` in the user's x265-params is theirs."""
    _quiet_svt(config.codec)
    if config.codec != "libx265" or "log-level" in config.options.get("x265-params", ""):
        return options
    return {**options, "x265-params": merge_params(options.get("x265-params", ""), f"log-level={level}")}


def encoder_options(config: EncodeConfig, *, deep: bool = False, color: ColorInfo | None = None) -> dict[str, str]:
    """The FFmpeg options ``config.codec`` is opened with: vggx's own (rate control from ``crf`` or ``bitrate``, the
    preset, lossless in any depth where ``crf`` is 0 and the output is ``deep``, ``color``'s HDR10 metadata), then
    ``config.options`` over them: a plain option replaces vggx's, a ``*-params`` list is merged key by key with
    vggx's (the user's value winning: an explicit ``master-display`` over the input's)."""
    codec, user = config.codec, config.options
    ours: dict[str, str] = dict(color.encoder_options(codec)) if color is not None else {}
    if config.bitrate is not None:
        ours["b"] = str(config.bitrate)
    elif "b" in user:  # a bitrate among the options: ABR too (a CRF beside it would win in x264 and x265)
        pass
    elif config.crf == 0 and codec in ("libx264", "libx264rgb") and deep:
        ours["qp"] = "0"  # x264's CRF 0 is lossless in 8 bits only; QP 0 in any depth
    elif config.crf is not None and codec in CRF_CODECS:
        ours["crf"] = str(config.crf)
        if config.crf == 0 and codec == "libx265":
            ours["x265-params"] = merge_params(ours.get("x265-params", ""), "lossless=1")
        if codec in ("libvpx-vp9", "libaom-av1"):
            ours["b"] = "0"  # constant-quality mode needs a zero target bitrate
    if config.preset is not None:
        ours["preset"] = config.preset
    options = dict(ours)
    for key, value in user.items():
        options[key] = merge_params(ours[key], value) if key in PARAMS_OPTIONS and key in ours else value
    return options


def describe_encoder(config: EncodeConfig, color: ColorInfo | None = None) -> str:
    """The video encoder as the writer opens it for ``config`` and a source of ``color``, in one phrase:
    ``libx265 yuv420p10le (crf=18 preset=slow x265-params=hdr10=1:...)``."""
    pix_fmt = output_pix_fmt(config)
    kept = color if color is not None and color.kept and _yuv_range(pix_fmt) is not None else None
    options = encoder_options(config, deep=component_depth(pix_fmt) > 8, color=kept)
    return f"{config.codec} {pix_fmt}" + (f" ({' '.join(f'{k}={v}' for k, v in options.items())})" if options else "")


def check_frame_encodable(config: EncodeConfig, width: int, height: int) -> None:
    """``VideoError`` for frames an encoder is known to crash on rather than refuse: x265 in 8 bits corrupts its heap
    (the process aborts) on frames at most 48 wide and 30 high (measured 42x30, 48x30, 42x16 ... 42x28; 50x30 and
    42x32 encode), which a tiny input ×4, or a small ``--outscale``, makes."""
    if (config.codec == "libx265" and component_depth(output_pix_fmt(config)) <= 8 and width <= 48
            and height <= 30):
        raise VideoError(f"libx265 crashes on 8-bit frames as small as {width}x{height} (x265's own fault: it corrupts "
                         f"its memory at 48x30 and below); use libx264, --pix-fmt yuv420p10le, or a larger output")


def check_encoder(config: EncodeConfig):
    """Return FFmpeg's encoder named by ``config.codec``, or raise ``VideoError`` (call before heavy work)."""
    import av

    try:
        codec = av.codec.Codec(config.codec, "w")
    except (av.error.FFmpegError, ValueError):
        raise VideoError(f"unknown video encoder {config.codec!r} in this FFmpeg (try libx264, "
                         f"libx264rgb or ffv1)") from None
    if codec.type != "video":
        raise VideoError(f"{config.codec!r} is not a video encoder")
    if config.pix_fmt is not None:
        formats = [f.name for f in (codec.video_formats or ())]
        if formats and config.pix_fmt not in formats:
            raise VideoError(f"--pix-fmt {config.pix_fmt} is not one {config.codec} encodes; it takes "
                             f"{', '.join(formats[:12])}{' ...' if len(formats) > 12 else ''}")
    return codec


_CAP_HARDWARE = 1 << 18 | 1 << 19  # FFmpeg's AV_CODEC_CAP_HARDWARE | AV_CODEC_CAP_HYBRID


# How FFmpeg's encoder wrappers say that a setting in x264-params (x265-params, svtav1-params) was not taken: as a
# warning, the encode going on without it.
_OPTION_NOT_TAKEN = ("unknown option", "error parsing option", "invalid value", "bad value", "unrecognized")


def check_encoder_starts(config: EncodeConfig) -> None:
    """Open the encoder once on a small frame, with its options, and raise ``VideoError`` if it cannot start: a
    hardware encoder (NVENC, QSV, ...) without its device and driver, an option the encoder does not have, a value
    it refuses (``tune=bogus``, ``profile=high`` in 10 bits) or a ``*-params`` setting it would pass over with a
    warning. Its other warnings (x264's "VBV maxrate specified, but no bufsize, ignored") are logged. Call before
    heavy work; software encoders without options start anywhere and are not opened."""
    import av

    codec = check_encoder(config)
    hardware = bool(codec.capabilities & _CAP_HARDWARE or codec.hardware_configs)
    if not (hardware or config.options or config.bitrate is not None):
        return
    _quiet_svt(config.codec)
    ctx = av.CodecContext.create(config.codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = 256, 256, output_pix_fmt(config)
    ctx.time_base, ctx.framerate = Fraction(1, 24), Fraction(24)
    ctx.options = encoder_options(config, deep=component_depth(ctx.pix_fmt) > 8)
    given = ", ".join(f"{k}={v}" for k, v in config.options.items()) or f"bitrate {config.bitrate}"
    failed = None
    with library_messages() as said:
        try:
            ctx.open()
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            failed = exc
        unknown = sorted(set(ctx.options) & set(config.options))  # what the encoder did not take
        del ctx
    if failed is not None and hardware:
        raise VideoError(f"the {config.codec} encoder cannot start on this machine ({_reason(failed)}): it needs its "
                         f"hardware and driver (NVENC: an NVIDIA GPU that has it; H100/H200 do not); use libx264 or "
                         f"libx265")
    if failed is not None:
        why = "; ".join(said.errors) or _reason(failed)
        raise VideoError(f"the {config.codec} encoder refuses its options ({given}): {why} (ffmpeg -h "
                         f"encoder={config.codec} lists them and their values)")
    if unknown:
        raise VideoError(f"{config.codec} has no option {', '.join(unknown)} (ffmpeg -h encoder={config.codec} lists "
                         f"its own; FFmpeg's generic ones such as g, bf, maxrate, bufsize apply too)")
    not_taken = [m for m in said.warnings if any(w in m.lower() for w in _OPTION_NOT_TAKEN)]
    if not_taken:
        raise VideoError(f"{config.codec} would pass over its options ({given}): {'; '.join(not_taken)}")
    for message in said.warnings:
        log.warning("%s: %s", config.codec, message)


class _Said:
    """What an encoder said while it opened: FFmpeg's warnings and errors, and the libraries' own error lines."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.errors: list[str] = []


# One capture at a time: each moves file descriptor 2 and FFmpeg's log for the whole process
LOG_CAPTURE_LOCK = threading.Lock()


@contextlib.contextmanager
def library_messages():
    """Collect what an encoder (or a filter graph) says while it opens into a :class:`_Said`: FFmpeg's log (warnings
    and worse, off otherwise) and what x264, x265 and SVT-AV1 print on file descriptor 2 themselves (their banners are
    kept off the terminal; their ``[error]`` lines are the reasons a refusal names). One thread at a time (two
    interleaved would leave descriptor 2 on the other's file)."""
    with LOG_CAPTURE_LOCK, _captured() as said:
        yield said


@contextlib.contextmanager
def ffmpeg_log(level: int):
    """FFmpeg's log from ``level`` up (``av.logging.INFO``, ...), captured while the block runs: a list of (level,
    name, message). One capture at a time (:data:`LOG_CAPTURE_LOCK`)."""
    with LOG_CAPTURE_LOCK, _logged(level) as logs:
        yield logs


@contextlib.contextmanager
def _logged(level: int):
    import av.logging

    before = av.logging.get_level()
    av.logging.set_level(level)
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        av.logging.set_level(before)


@contextlib.contextmanager
def _captured():
    import av.logging

    said = _Said()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as text:
        os.dup2(text.fileno(), 2)
        try:
            with _logged(av.logging.WARNING) as logs:
                yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            text.seek(0)
            printed = text.read().decode(errors="replace").splitlines()
    for lvl, _, message in logs:
        (said.errors if lvl <= av.logging.ERROR else said.warnings).append(message.strip().rstrip("."))
    said.errors[:0] = [line.split("]:", 1)[-1].strip() for line in printed if "error]" in line.lower()]


def _paletted(frame):
    """An RGB (or RGBA) frame in ``pal8`` with its own 256-colour palette (FFmpeg's palettegen in single-frame mode,
    then paletteuse with its default dithering): what ``ffmpeg`` users write GIFs with. A fixed palette (rgb8, what
    swscale converts to) costs 12-17 dB of PSNR on a photograph (``python -m vggx.benchmarks.gif_palette``). An RGBA
    frame keeps GIF's 1-bit transparency: pixels under half opaque become the palette's transparent entry."""
    import av

    graph = av.filter.Graph()
    source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                              time_base=Fraction(1, 1))
    split, palette = graph.add("split"), graph.add("palettegen", "stats_mode=single")
    apply, sink = graph.add("paletteuse", "new=1:alpha_threshold=128"), graph.add("buffersink")
    source.link_to(split)
    split.link_to(palette, 0, 0)
    split.link_to(apply, 1, 0)
    palette.link_to(apply, 0, 1)
    apply.link_to(sink)
    graph.configure()
    frame.pts = 0
    graph.push(frame)
    graph.push(None)
    return next(drain(graph))


def frame_grid(rate: Fraction, time_base: Fraction) -> Fraction | None:
    """The time base a writer gives a stream whose source ``time_base`` is too coarse to hold the frame times of its
    constant ``rate`` (Matroska's 1/1000 at 24 or 24000/1001 fps): the coarsest that holds both its ticks and those
    frame times exactly. None where ``time_base`` holds them already (1/24, 1/600 at 30 fps), or is fine enough that
    its rounding is far below a frame (MPEG-TS's 1/90000: at most a thousandth of a frame)."""
    if rate <= 0 or time_base <= 0 or rate * time_base <= Fraction(1, 1000):
        return None
    if (1 / (rate * time_base)).denominator == 1:
        return None
    grid = Fraction(1, math.lcm(time_base.denominator, rate.numerator))
    return grid if grid >= Fraction(1, 1_000_000) else None  # a rate of odd numbers: the source's ticks as they are


class VideoWriter:
    """Encode RGB frames (and copy the source's audio) into ``path`` via a temporary file.

    Args:
        path: final output path; its extension picks the container (.mp4, .mkv, ...).
        width, height: frame size in pixels; frames given to :meth:`write` at another size are resized to it
            (swscale, Lanczos) as they are converted.
        rate: frame rate written into the stream.
        time_base: unit of the ``pts`` given to :meth:`write` (the source's, so timing is kept).
        config: codec, CRF, pixel format.
        audio_source: copy the audio (and subtitle) streams of this file or URL (packets remuxed, not re-encoded).
        copy: what of ``audio_source`` goes along: some of :data:`EXTRAS` (default: all of them).
        audio_start, audio_end: seconds of the source's audio to copy; it is shifted to start at 0.
        metadata: container metadata to write (title, ...).
        stream_metadata: the source video stream's tags, for the video stream (see :func:`video_stream_tags`).
        rotation: display rotation to record (degrees counter-clockwise, the source's), so players turn
            the output as they turned the input.
        sample_aspect_ratio: pixel shape to record (an anamorphic source's), so the picture keeps its
            display proportions.
        color: the source's colour description; a wide-gamut or HDR one (``color.kept``) is what YUV output is
            converted to and tagged with (HDR10 metadata included, for x264, x265, SVT-AV1), instead of BT.709.

    Raises:
        VideoError: the file cannot be created or the codec/container rejects the settings.
    """

    def __init__(
        self, path: str | Path, width: int, height: int, rate: Fraction, time_base: Fraction,
        config: EncodeConfig = EncodeConfig(), *, audio_source: str | Path | None = None,
        copy: tuple[str, ...] = EXTRAS,
        audio_start: float = 0.0, audio_end: float | None = None, metadata: dict[str, str] | None = None,
        rotation: int = 0, sample_aspect_ratio: Fraction | None = None, store: SegmentStore | None = None,
        start_number: int = 1, color: ColorInfo | None = None, stream_metadata: dict[str, str] | None = None,
    ) -> None:
        import av

        self.path = Path(path)
        self._stdout = is_stdout(path)
        self._y4m = writes_y4m(path, config.codec)  # frames numbered at a constant rate, not timed
        # AVI holds a constant rate too, a tick a frame (given the source's time base its muxer picked 1/600: 600 fps,
        # 300 frames for 12): its frames are numbered as well (see _numbered)
        self._avi = not self._stdout and _guess_format(self.path) == "avi"
        self._avi_warned = False
        self._label = "standard output" if self._stdout else str(self.path)  # for messages
        if store is not None and self._stdout:
            raise VideoError("--resume needs an output file; a stream on standard output cannot be resumed")
        if store is not None and config.codec not in SEGMENT_CODECS:
            raise VideoError(f"--resume applies to {', '.join(sorted(SEGMENT_CODECS))}, not {config.codec}")
        self._store = store
        self._segmented = config.encoders > 1 or store is not None
        tag = uuid.uuid4().hex[:8]
        # An image sequence (out/%06d.png, numbered from ``start_number``) is written into a hidden folder beside
        # it, whose files are moved into place at the end; a video into a hidden file, renamed at the end.
        self._images = is_image_sequence(self.path)
        self._single = is_single_image(self.path)  # one image: the image2 muxer on a plain name, one frame
        check_image_codec(self.path, config.codec)
        self._accepted = 0  # frames given to write()
        self._last_pts: int | None = None  # the last frame's time (write()'s time base): each after the one before
        self._last_given: int | None = None  # ... as it was given (a repeated time's, before it was moved on)
        # Where the input's time goes back (a concatenation starting again at 0), how much later its frames from there
        # on go (write()'s time base), in order; the offset added to every frame's time is their sum. The audio
        # copier moves the audio and subtitles of each such part by as much (see _AudioCopier.add_shift).
        self._shifts: list[tuple[int, Fraction]] = []  # (how much later, the part's first frame's input time in s)
        self._offset = 0
        self._warned: set[str] = set()  # the kinds of time trouble said once already ("repeat", "back")
        self._made_dir: Path | None = None  # the sequence's folder, where this writer made it (gone on abort)
        if self._images:
            self._tmp_dir: Path | None = self.path.with_name(f".vggx-{tag}.frames")
            self.tmp_path = self._tmp_dir / self.path.name
        elif self._stdout:  # written as it comes, nothing to rename
            self._tmp_dir, self.tmp_path = None, None
        else:
            self._tmp_dir = None
            self.tmp_path = self.path.with_name(_part_name(self.path, tag))
        self.output_bytes = 0  # bytes written, once committed (an image sequence's: all its files)
        self.config = config
        self.color = color if color is not None and color.kept else None  # None: BT.709
        self._audio: _AudioCopier | None = None
        self._frames = store.frames_done if store is not None else 0
        self._first_frame = self._frames  # the input's frame number of the first frame given to write()
        self._closed = False
        # frames converting: each with its time and how many of the shifts (see write()) were made by then
        self._pending: collections.deque[tuple[Future, int, int]] = collections.deque()
        self._pool: ThreadPoolExecutor | None = None
        self._threads = _CONVERT_THREADS if config.convert_threads is None else config.convert_threads
        self._segments: collections.deque[_Segment] = collections.deque()  # encoding or not yet muxed, in order
        # With segments: the pts of frames written but not yet used as a dts (in order), and the first frame's.
        self._dts_source: collections.deque[int] = collections.deque()
        self._first_pts: int | None = None
        self._muxed = 0  # video packets muxed so far
        self._reorder: int | None = None  # frames of B-frame delay (from the first packet)
        self._last_dts: int | None = None  # of the last packet muxed (one encoder: see _sane_dts)
        try:
            if self._images:
                if not self.path.parent.exists():
                    self.path.parent.mkdir()
                    self._made_dir = self.path.parent
                self._tmp_dir.mkdir()
            image2 = self._images or self._single  # FFmpeg's image muxer: numbered files, or one file
            if self._stdout:  # FFmpeg's pipe protocol: written to file descriptor 1 without Python in between
                self._container = av.open("pipe:1", "w", format=stdout_format(config.codec),
                                          options=_stdout_options(config.codec))
            else:
                self._container = av.open(local_path(self.tmp_path), "w",
                                          format="image2" if image2 else _guess_format(self.path),
                                          options={"start_number": str(start_number)} if self._images else
                                          _stdout_options(config.codec) if self._y4m else
                                          _muxer_options(_guess_format(self.path)))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self._remove_tmp()
            raise VideoError(f"cannot write {self._label} ({_reason(exc)})") from None
        try:
            self._stream = self._add_video_stream(width, height, rate, time_base)
            last = store.segments[-1] if store is not None and store.segments else {}
            if "last_pts" in last:  # a resumed run: its frames go on after the stored ones (see write())
                scale = Fraction(last["time_base"]) / self._time_base
                self._last_pts = self._last_given = round(Fraction(last["last_pts"]) * scale)
                # and as much later as the stored ones went, where the input's time went back before the stop
                self._shifts = [(round(Fraction(later) / self._time_base), Fraction(at))
                                for later, at in last.get("shifts", ())]
                self._offset = sum(later for later, _ in self._shifts)
            if rotation % 360:
                self._stream.set_display_rotation(rotation)
            if sample_aspect_ratio:
                self._stream.codec_context.sample_aspect_ratio = Fraction(sample_aspect_ratio)
            if self._segmented:
                # The segments' encoders write into this stream: open its own encoder now (unused) for the
                # header (H.264's SPS/PPS); each segment's encoder, set up alike, must produce the same. One
                # thread: it never encodes, so it need not hold a frame buffer per thread (the header is alike).
                self._stream.codec_context.thread_count = 1
                self._stream.codec_context.open()
            if metadata:
                self._container.metadata.update(
                    {k: v for k, v in metadata.items() if k.lower() not in _MUXER_OWN_METADATA})
            if stream_metadata and not image2:
                self._stream.metadata.update(stream_metadata)
            if audio_source is not None:
                self._audio = _AudioCopier(audio_source, self._container, audio_start, audio_end, copy, config,
                                           restart_s=self._frame_step(self._time_base) * self._time_base)
                for later, at in self._shifts:  # a resumed run's: the audio of the parts before the stop too
                    self._audio.add_shift(later * self._time_base, at)
        except BaseException:
            self.abort()
            raise

    def _add_video_stream(self, width: int, height: int, rate: Fraction, time_base: Fraction):
        import av

        cfg = self.config
        codec = check_encoder(cfg)
        check_frame_encodable(cfg, width, height)
        stream = _add_stream(self._container, cfg.codec, rate, self.path)  # check_container says it before work
        # the one video track, a player's pick (as ffmpeg marks the first of a kind: Matroska wrote it as not default)
        stream.disposition = av.stream.Disposition.default
        stream.width, stream.height = width, height
        stream.pix_fmt = cfg.pix_fmt or (Y4M_PIX_FMT if self._y4m else _default_pix_fmt(codec))
        self._yuv_range = _yuv_range(stream.pix_fmt)
        self._deep = component_depth(stream.pix_fmt) > 8
        # JPEG's YCbCr is BT.601's (JFIF): an MJPEG decoder takes it so whatever the stream is tagged with
        self._jfif = cfg.codec in _JFIF_CODECS
        if self._yuv_range is not None:  # tag what _convert produces (see the module doc)
            cc = stream.codec_context
            cc.colorspace = cc.color_primaries = cc.color_trc = _AVCOL_BT709
            if self.color is not None:
                cc.colorspace, cc.color_primaries, cc.color_trc = (self.color.matrix, self.color.primaries,
                                                                   self.color.trc)
            if self._jfif:
                cc.colorspace = _AVCOL_SPC_BT470BG
            cc.color_range = self._yuv_range
        self._grid = None if self._y4m or self._avi else frame_grid(Fraction(rate), Fraction(time_base))
        if self._avi:  # see write(): each frame's number, the source's time to say where it differs
            self._source_time_base, self._avi_rate, self._avi_first = Fraction(time_base), Fraction(rate), self._frames
        if self._y4m or self._avi:  # y4m and AVI state the frame rate as the inverse of the time base: frames
            time_base = 1 / Fraction(rate)  # numbered 0, 1, ...
        elif self._grid is not None:  # see write(): the source's ticks and the frame times, both exact
            self._source_time_base, self._grid_rate, time_base = Fraction(time_base), Fraction(rate), self._grid
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        options = encoder_options(cfg, deep=self._deep,
                                  color=self.color if self._yuv_range is not None else None)
        if cfg.codec in _PRESET_CODECS:
            # Frame threads on every core (x264's own default): PyAV's default, slice threads, left a
            # 16-core machine encoding 720p at 47 fps, the bottleneck behind a GPU upscaling at 200.
            stream.codec_context.thread_type = "FRAME"
            stream.codec_context.thread_count = 0
        if _subsampled_420(stream.pix_fmt) and "chroma_sample_location" not in options:
            # where the chroma samples sit: centred between the luma's, as swscale and rgb_to_yuv420p average them
            # (H.264/H.265's VUI, Matroska's ChromaSiting); untagged, players take them as left of centre
            options["chroma_sample_location"] = "center"
        options = _quieted(cfg, options, "error" if self._segmented else "warning")
        stream.options = options
        self._options = dict(options)  # opening the encoder consumes stream.options; segment encoders reuse these
        self._time_base = time_base
        self._segment_frames = cfg.segment_frames or max(16, round(2 * rate))
        return stream

    def _new_segment(self) -> _Segment:
        """A fresh encoder like the stream's own (same settings and flags), for the next run of frames."""
        import av

        template = self._stream.codec_context
        ctx = av.CodecContext.create(self.config.codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = template.width, template.height, template.pix_fmt
        ctx.time_base, ctx.framerate = template.time_base, template.framerate
        ctx.flags = template.flags
        if template.sample_aspect_ratio:
            ctx.sample_aspect_ratio = template.sample_aspect_ratio
        if self._yuv_range is not None:
            ctx.colorspace, ctx.color_primaries = template.colorspace, template.color_primaries
            ctx.color_trc, ctx.color_range = template.color_trc, template.color_range
        ctx.options = dict(self._options)
        # Each on x264's own thread count (every core): the segments oversubscribe the cores, so the
        # last one, encoding alone, still uses them all (on 2 cores: 113.9 vs 111.0 fps for cores/N each).
        # ProRes and FFV1 thread by slices; SVT-AV1 and VP9 by their own (libvpx: a thread per core).
        ctx.thread_type = "FRAME" if self.config.codec in _PRESET_CODECS else "AUTO"
        ctx.thread_count = 0
        ctx.open()
        if bytes(ctx.extradata or b"") != bytes(template.extradata or b""):  # pragma: no cover - never seen
            raise VideoError(f"{self.config.codec}'s segment encoders disagree on the stream header; "
                             "use --encoders 1")
        segment = _Segment(ctx, self._frames)
        segment.thread = threading.Thread(target=segment.run, name=f"vggx-encode-{len(self._segments)}",
                                          daemon=True)
        segment.thread.start()
        return segment

    @property
    def frames_written(self) -> int:
        return self._frames

    def write(self, image: np.ndarray, pts: int) -> None:
        """Encode one uint8 frame shown at ``pts`` (in ``time_base``): ``(h, w, 3)`` RGB (uint16: 16-bit RGB),
        ``(h, w, 4)`` RGBA (for a pixel format with alpha, :func:`alpha_pix_fmt`), or the ``(h * 3 / 2, w)``
        yuv420p planes of :func:`vggx.video.color.rgb_to_yuv420p` (encoded as they are when the codec takes
        yuv420p, H.264's default, and they have the stream's size; resized otherwise).

        The frame may be encoded after this returns (it is converted ahead in a worker thread); ``image``
        must not be modified afterwards. Errors surface from a later ``write`` or from :meth:`commit`.
        """
        import av

        if self._closed:
            raise VideoError(f"{self._label}: writer already closed")
        if self._single and self._accepted:
            raise VideoError(f"{self.path.name} holds one image, and a second frame came: write a sequence "
                             f"({self.path.stem}_%04d{self.path.suffix}) or a video")
        self._accepted += 1
        if self._avi:
            pts = self._numbered(pts)
        if self._grid is not None:
            pts = self._on_grid(pts)
        pts += self._offset
        timed = not (self._y4m or self._images or self._single)  # y4m numbers its frames, images keep no times
        given = pts
        if timed and self._last_pts is not None and pts <= self._last_pts:
            pts = self._moved_on(pts)
        self._last_pts, self._last_given = pts, given
        if self._threads == 0:  # converted here, in the thread that encodes (the serial baseline)
            done: Future = Future()
            try:
                done.set_result(self._convert(image))
            except (av.error.FFmpegError, ValueError) as exc:
                done.set_exception(exc)  # raised as a VideoError by _encode_next, as from a worker
            self._pending.append((done, pts, len(self._shifts)))
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="vggx-convert")
            self._pending.append((self._pool.submit(self._convert, image), pts, len(self._shifts)))
        while len(self._pending) > 2 * self._threads:
            self._encode_next()

    def _moved_on(self, pts: int) -> int:
        """The time of a frame at ``pts`` (write()'s time base, the offset added) that does not come after the one
        before: MP4's muxer refuses it at the very end, a player shows one of the two.

        A time repeated or a little earlier (at most a frame: a broken recorder) goes a millisecond (Matroska's clock:
        the finest every container keeps; a tick of a coarser time base) after the one before, the frames after it
        untouched where they come after it (the input's 0, 0, 80, 80 ms become 0, 1, 80, 81 ms: no drift against the
        audio). A time gone back further (a concatenation starting again at 0) goes a frame after the one before and
        the frames after it as much later, each keeping its spacing; the audio and subtitles of that part go as much
        later with them (the audio copier is told)."""
        tb = self._time_base
        source = float((pts - self._offset) * tb)
        frame = self._first_frame + self._accepted - 1
        step = self._frame_step(tb)
        # against the time the frame before was given, not the one it was moved on to: a long run of repeats (a
        # stall) moves each a millisecond on from the last, past a frame's spacing, and was taken for a join
        if pts >= min(self._last_pts, self._last_given) - step:
            nudged = self._last_pts + max(1, math.ceil(Fraction(1, 1000) / tb))
            if "repeat" not in self._warned:
                self._warned.add("repeat")
                log.warning("%s: the input's frame %d (at %.3f s) does not come after the one before (%.3f s): it "
                            "goes %.3f s after it, so that every frame is kept, in order (said once)", self._label,
                            frame, source, float((self._last_pts - self._offset) * tb), float((nudged - pts) * tb))
            return nudged
        later = self._last_pts + step - pts
        if "back" not in self._warned:
            self._warned.add("back")
            log.warning("%s: the input's frame %d (at %.3f s) does not come after the one before (%.3f s): the input's "
                        "time starts again there (a joined file); it and the frames after it go %.3f s later, so that "
                        "every frame is kept, in order, the audio with them", self._label, frame, source,
                        float((self._last_pts - self._offset) * tb), float(later * tb))
        at = (pts - self._offset) * tb
        self._shifts.append((later, at))
        self._offset += later
        if self._audio is not None:
            self._audio.add_shift(later * tb, at)
        return pts + later

    def _numbered(self, pts: int) -> int:
        """An AVI frame's time: its number (the stream's time base is a frame); where the source's time (``pts``)
        is half a frame or more off it (a variable frame rate), a warning, once."""
        number = self._avi_first + self._accepted - 1
        drift = float(pts * self._source_time_base - number / self._avi_rate)
        if abs(drift) * self._avi_rate >= 0.5 and not self._avi_warned:
            self._avi_warned = True
            log.warning("%s: AVI holds a constant frame rate (%.3f fps), and the input's frame %d is at %.3f s, not "
                        "%.3f s: its frame times are not kept (.mkv or .mp4 keep them)", self._label,
                        float(self._avi_rate), self._accepted - 1, float(pts * self._source_time_base),
                        number / self._avi_rate)
        return number

    def _on_grid(self, pts: int) -> int:
        """``pts`` (the source's ticks) in the writer's finer time base: a frame the source's coarse clock rounded
        (Matroska's milliseconds: 0, 42, 83, 125 ms at 24 fps) goes back to its frame time (0, 1/24, 2/24 s ...)
        where it is within half a tick of it, so an MP4 gets even frame durations; another frame keeps its time."""
        tb, rate = self._source_time_base, self._grid_rate
        t = pts * tb
        frame = round(t * rate)
        if abs(t - frame / rate) <= tb / 2:
            t = frame / rate
        return int(t / self._grid)

    def _convert(self, image: np.ndarray):
        """RGB -> a frame in the codec's pixel format and size (what ``stream.encode`` would do itself); an RGB
        output of a wide-gamut or HDR source has each frame tagged with its primaries and transfer (PNG writes them
        as its cICP chunk)."""
        frame = self._converted(image)
        if self.color is not None and self._yuv_range is None:
            frame.color_primaries, frame.color_trc = self.color.primaries, self.color.trc
        return frame

    def _converted(self, image: np.ndarray):
        import av

        if self._deep and image.dtype == np.uint8 and image.ndim == 3:
            image = image.astype(np.uint16) * 257  # exactly: swscale's own widening drops up to a level
        fmt = _array_format(image)
        packed = fmt == "yuv420p" or image.strides[1] == image.shape[2]
        if image.dtype == np.uint8 and image.strides[-1] == 1 and packed:
            frame = av.VideoFrame.from_numpy_buffer(image, format=fmt)  # no copy; the frame keeps ``image``
        else:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
        cc = self._stream.codec_context
        resize = (frame.width, frame.height) != (cc.width, cc.height)
        if frame.format.name == cc.format.name and not resize:
            return frame  # e.g. yuv420p planes converted on the GPU, BT.709 like the lines below
        from av.video.reformatter import Colorspace

        reformatter = thread_reformatter()
        # A frame of another size (``vggx upscale --outscale``/``--height``) is resized in the same swscale pass
        # that converts it, with Lanczos (sharp, little ringing: the usual choice for a final resize).
        scaling = "LANCZOS" if resize else None
        if cc.format.name == "pal8":  # GIF: RGBA where the input's alpha is kept (GIF's 1-bit transparency)
            packed = "rgba" if fmt.startswith("rgba") else "rgb24"  # 8 bits: GIF's palette holds no more
            return _paletted(reformatter.reformat(frame, cc.width, cc.height, packed, threads=1,
                                                  interpolation=scaling))
        if self._yuv_range is None:
            return reformatter.reformat(frame, cc.width, cc.height, cc.format, threads=1, interpolation=scaling)
        src = {}
        matrix = Colorspace.ITU709 if self.color is None else self.color.matrix
        if fmt == "yuv420p":  # planes converted on the device in the output's matrix and range: resized, not converted
            src = {"src_colorspace": matrix, "src_color_range": self._yuv_range}
        if self._jfif:
            matrix = Colorspace.ITU601
        return reformatter.reformat(frame, cc.width, cc.height, cc.format, threads=1, interpolation=scaling,
                                    dst_colorspace=matrix, dst_color_range=self._yuv_range, **src)

    def _encode_next(self) -> None:
        import av

        future, pts, shifts = self._pending.popleft()
        try:
            frame = result_of(future)  # (a signal raised after the wait)
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoError(f"converting a frame for {self._label} failed ({_reason(exc)})") from None
        frame.pts = self._frames if self._y4m else pts  # y4m: constant frame rate (a variable one's timing is lost)
        frame.time_base = self._time_base
        if self._segmented:
            segment = self._segment_for_next()
            segment.frames.put(frame)
            segment.count += 1
            segment.shifts = shifts  # as of its last frame: what a resumed run goes on with
            if self._store is None:  # muxed as they come (a store's segments are muxed at the commit)
                self._dts_source.append(pts)
                if self._first_pts is None:
                    self._first_pts = pts
            self._frames += 1
            self._mux_segments(wait=False)
            return
        if self._audio is not None:
            self._mux_audio(float(pts * self._time_base) + _AUDIO_LEAD_S)
        try:
            for packet in self._stream.encode(frame):
                self._sane_dts(packet)
                self._container.mux(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            raise self._failed(f"encoding {self._label} with {self.config.codec}", exc) from None
        self._frames += 1

    def _frame_step(self, time_base: Fraction) -> int:
        """One frame at the stream's rate, in ``time_base`` (at least 1)."""
        return round(1 / (self._stream.codec_context.framerate * time_base)) or 1

    def _sane_dts(self, packet) -> None:
        """A decode timestamp the muxer takes: libx265 flushed with fewer frames than its B-frame delay (a one- or
        two-frame output) gives dts from uninitialised memory (-7142757879101202556), which the muxer refuses
        ("Invalid argument") once audio interleaves; such a dts (after its pts, or further before it than any
        encoder reorders) becomes the next one after the last, at most the pts."""
        if packet.dts is None or packet.pts is None:
            return
        step = self._frame_step(packet.time_base)
        if packet.dts > packet.pts or packet.pts - packet.dts > _MAX_REORDER * step:
            last = self._last_dts
            packet.dts = packet.pts if last is None else max(last + 1, min(packet.pts, last + step))
        self._last_dts = packet.dts

    def _segment_for_next(self) -> _Segment:
        """The segment the next frame goes to; a new one every ``segment_frames`` frames, once fewer than
        ``encoders`` are still encoding (waiting for the oldest otherwise: memory stays bounded)."""
        current = self._segments[-1] if self._segments else None
        if current is not None and not current.closed and self._frames - current.first < self._segment_frames:
            return current
        if current is not None:
            current.close()
        while sum(not seg.finished.is_set() for seg in self._segments) >= self.config.encoders:
            self._mux_segments(wait=True, until_one_finished=True)
        segment = self._new_segment()
        self._segments.append(segment)
        return segment

    def _restamp_dts(self, packet) -> None:
        """Decode timestamps as one encoder would give them: the pts sequence delayed by the B-frame
        reorder depth. Each segment's encoder starts its own dts afresh (a short last segment may even
        drop the delay), which would leave uneven steps at the seams that muxers turn into durations."""
        step = self._frame_step(packet.time_base)
        if self._reorder is None:  # the first packet: dts = pts - the delay
            delay = (packet.pts - packet.dts) / step if packet.dts is not None and packet.pts is not None else 0
            # a dts from uninitialised memory (libx265 flushed with fewer frames than its delay: see _sane_dts) is
            # no delay: none, as such a short output has
            self._reorder = round(delay) if 0 <= delay <= _MAX_REORDER else 0
        g, d = self._muxed, self._reorder
        dts = self._dts_source.popleft() if g >= d else self._first_pts - (d - g) * step
        if dts > packet.pts:  # pragma: no cover - a segment reordering deeper than the first one
            raise VideoError(f"{self.config.codec}'s segments reorder frames unlike one encoder; use --encoders 1")
        packet.dts = dts
        self._muxed += 1

    def _mux_segments(self, wait: bool, until_one_finished: bool = False) -> None:
        """Mux the segments' packets in order (a later segment's wait behind an earlier one's); ``wait``:
        block for the oldest segment's encoder to finish (``until_one_finished``: then return)."""
        while self._segments:
            oldest = self._segments[0]
            if wait:
                oldest.finished.wait()
            finished = oldest.finished.is_set()  # before taking: packets may still arrive until it is set
            if self._store is None:
                for packet in oldest.take():
                    self._mux_packet(packet)
            elif not finished:  # kept on disk, whole segments only, muxed at the commit
                return
            elif oldest.error is None:
                # given to the store before they leave the segment: a stop (Ctrl-C, SIGTERM) between the two finds
                # them in one or both, and the store takes a segment once
                self._store.add(oldest.packets(), oldest.count, self._shifts_of(oldest))
                oldest.take()
            if oldest.error is not None:
                raise self._failed(f"encoding {self._label} with {self.config.codec}", oldest.error)
            if not finished:
                return
            self._segments.popleft()
            if until_one_finished:
                return

    def _shifts_of(self, segment: _Segment) -> list[list[str]]:
        """The shifts made up to ``segment``'s last frame, for the store: how much later, from what input time (each
        in seconds, exact)."""
        return [[str(later * self._time_base), str(at)] for later, at in self._shifts[:segment.shifts]]

    def _stop_pool(self) -> None:
        for future, _, _ in self._pending:
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # conversions touch no container state; just let them end
            self._pool = None

    def set_audio_end(self, seconds: float) -> None:
        """Copy source audio only up to ``seconds`` (source time), e.g. where a preview's video ends."""
        if self._audio is not None:
            self._audio.set_end(seconds)

    def commit(self) -> Path:
        """Flush the encoder, copy the remaining audio, close, and rename onto the output path."""
        import av

        if self._closed:
            raise VideoError(f"{self._label}: writer already closed")
        try:
            while self._pending:
                self._encode_next()
        except BaseException:
            self.abort()
            raise
        self._stop_pool()
        try:
            if self._segmented:
                if self._segments:
                    self._segments[-1].close()
                self._mux_segments(wait=True)
                if self._store is not None:
                    self._mux_store()
            else:
                for packet in self._stream.encode():
                    self._sane_dts(packet)
                    self._container.mux(packet)
            if self._audio is not None:
                self._audio.mux_until(None)
                self._audio.close()
            self._container.close()
        except VideoError:
            self.abort()
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.abort()
            failed = self._failed(f"finishing {self._label}", exc)
            if self._store is not None and getattr(exc, "errno", None) == errno.ENOSPC:
                # the output is written beside the kept segments: room for both, about twice the output
                raise VideoError(f"{failed}: the output is written beside the {self._store.size / 1e6:.0f} MB of "
                                 f"segments kept in {self._store.folder}, and needs about as much again free") from None
            raise failed from None
        self._closed = True
        try:
            if self._images:
                files = sorted(self._tmp_dir.iterdir())
                self.output_bytes = sum(f.stat().st_size for f in files)
                for f in files:
                    os.replace(f, self.path.parent / f.name)
                self._tmp_dir.rmdir()
                self._say_others({f.name for f in files})
            elif not self._stdout:  # standard output: written as it came, its size the reader's to know
                self.output_bytes = self.tmp_path.stat().st_size
                os.replace(self.tmp_path, self.path)
        except OSError as exc:
            self._remove_tmp()
            raise VideoError(f"cannot move the result onto {self.path} ({_reason(exc)})") from None
        log.info("wrote %s (%d frames)", self._label, self._frames)
        if self._store is not None:
            self._store.remove()
        return self.path

    def _mux_store(self) -> None:
        """The stored segments' packets, in order, into the output (decode timestamps as one encoder's)."""
        for packets in self._store.packets():
            self._dts_source.extend(sorted(p.pts for p in packets))  # segments are consecutive runs of frames
            if self._first_pts is None and packets:
                self._first_pts = min(p.pts for p in packets)
            for packet in packets:
                self._mux_packet(packet)

    def _mux_audio(self, seconds: float) -> None:
        """The audio up to ``seconds``. The first packet muxed opens the encoders and the file: where FFmpeg
        refuses (an encoder's option, the file's name), that is this output's error, as for a video packet."""
        import av

        try:
            self._audio.mux_until(seconds)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise self._failed(f"writing {self._label}", exc) from None

    def _mux_packet(self, packet) -> None:
        """One segment packet into the output, after the audio up to its time, with the stream's dts."""
        import av

        if self._audio is not None:
            self._mux_audio(float(packet.pts * packet.time_base) + _AUDIO_LEAD_S)
        self._restamp_dts(packet)
        packet.stream = self._stream
        try:
            self._container.mux(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            raise self._failed(f"writing {self._label}", exc) from None

    def _failed(self, doing: str, exc: BaseException) -> VideoError:
        """The error for ``doing`` failing with ``exc``: on standard output, a reader that went away says so."""
        if self._stdout and getattr(exc, "errno", None) == errno.EPIPE:
            return VideoError(f"the program reading standard output closed it after {self._frames} frames")
        return VideoError(f"{doing} failed ({_reason(exc)})")

    def abort(self) -> None:
        """Close without finishing and delete the temporary file (safe to call twice). With a store, the
        segments already encoded in full are kept in it first (a rerun with the store resumes after them)."""
        self._stop_pool()
        if self._store is not None:
            for segment in list(self._segments):  # in order, up to the first unfinished one
                if not (segment.closed and segment.finished.is_set() and segment.error is None):
                    break
                try:
                    self._store.add(segment.packets(), segment.count, self._shifts_of(segment))
                except OSError:  # pragma: no cover - the disk is why we are aborting
                    break
                self._segments.popleft()
        for segment in self._segments:
            segment.cancel()
        for segment in self._segments:
            segment.thread.join()
        self._segments.clear()
        if not self._closed:
            self._closed = True
            if self._audio is not None:
                self._audio.close()
            try:
                self._container.close()
            except Exception:  # the file is going away; a failing trailer write must not mask the cause
                log.debug("closing the aborted output failed", exc_info=True)
        self._remove_tmp()

    def _say_others(self, written: set[str]) -> None:
        """Warn of the files the sequence's pattern numbers beside the ``written`` ones (an earlier, longer run's
        into the same pattern: its frames after this run's end): they are kept, as a range rendered into a longer
        sequence (``--start``/``--frames`` of a sequence input keep its numbers) must keep the rest, but a player or
        compositor reads them all as one sequence, two clips mixed without a word."""
        others = [(number, p.name) for number, p in numbered_files(self.path) if p.name not in written]
        if others:
            names = others[0][1] if len(others) == 1 else f"{others[0][1]} .. {others[-1][1]}"
            log.warning("%s: %d other numbered file%s left beside the %d written (%s), read with them as one "
                        "sequence: delete %s unless %s part of it", self._label, len(others),
                        "s are" if len(others) > 1 else " is", len(written), names,
                        *(("them", "they are") if len(others) > 1 else ("it", "it is")))

    def _remove_tmp(self) -> None:
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            if self._made_dir is not None:
                with contextlib.suppress(OSError):  # only if nothing else came into it meanwhile
                    self._made_dir.rmdir()
        elif self.tmp_path is not None:
            with contextlib.suppress(OSError):  # never there (a name too long to create), or gone already
                self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class SegmentStore:
    """A folder of finished segments and a manifest, so that an interrupted run resumes after them.

    Each segment (``segment_frames`` consecutive frames, opening with a keyframe) is kept as its encoded
    packets (one file: a JSON line of timestamps and sizes, then the payloads) and recorded in
    ``manifest.json`` only once written in full. ``settings`` describe everything the frames depend on
    (input, model, encoder, windows); a folder made with other settings is refused.

    Raises:
        ConfigError: the folder holds another run's segments.
    """

    def __init__(self, folder: str | Path, settings: dict) -> None:
        import json

        from vggx.errors import ConfigError

        self.folder = Path(folder)
        self.settings = json.loads(json.dumps(settings, default=str))  # what a reread manifest compares equal to
        self.segments: list[dict] = []
        manifest = self.folder / "manifest.json"
        if manifest.exists():
            try:
                data = json.loads(manifest.read_text())
                saved = data["settings"]
            except (OSError, ValueError, KeyError) as exc:
                raise ConfigError(f"{manifest} is unreadable ({exc}); delete {self.folder} to start over") from None
            if saved != self.settings:
                changed = _changed(saved, self.settings)
                if changed == ["input"]:  # no setting brings the stopped run's input back
                    raise ConfigError(f"the input changed since the run {self.folder} holds (its size or modification "
                                      f"time): delete {self.folder} to start over")
                raise ConfigError(f"{self.folder} holds a run with other settings ({', '.join(changed)} "
                                  f"differ{'s' if len(changed) == 1 else ''}); run with those again, or delete the "
                                  f"folder to start over")
            self.segments = data["segments"]

    @property
    def size(self) -> int:
        """Bytes the kept segments take."""
        return sum(f.stat().st_size for f in self.folder.glob("seg-*.bin")) if self.folder.is_dir() else 0

    @property
    def frames_done(self) -> int:
        return sum(seg["frames"] for seg in self.segments)

    def add(self, packets: list, frames: int, shifts: list[list[str]] = ()) -> None:
        """Keep one finished segment (its packets in decode order) and record it, with ``shifts`` (where the input's
        time went back before its end: how much later the frames went, from what input time, in seconds; see
        VideoWriter.write); a segment recorded already (the last, by its first timestamp: a run stopped as it was
        being kept is kept again on the way out) is not recorded twice."""
        import json

        if not packets:  # an encoder cancelled before it gave any: nothing to keep
            return
        first = min(p.pts for p in packets)
        if self.segments and self.segments[-1].get("first_pts") == first:
            self._write_manifest()  # the stop may have come before the manifest said so
            return
        self.folder.mkdir(exist_ok=True)
        name = f"seg-{len(self.segments):05d}.bin"
        # each packet's side data too: VP9's alpha layer travels as Matroska BlockAdditional side data
        sides = [[(sd.data_type, bytes(sd)) for sd in p.iter_sidedata()] for p in packets]
        header = [[p.pts, p.dts, p.size, bool(p.is_keyframe), [[kind, len(data)] for kind, data in side]]
                  for p, side in zip(packets, sides, strict=True)]
        time_base = packets[0].time_base
        tmp = self.folder / (name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(json.dumps({"time_base": str(time_base), "packets": header}).encode() + b"\n")
                for p, side in zip(packets, sides, strict=True):
                    f.write(bytes(p))
                    for _, data in side:
                        f.write(data)
            tmp.replace(self.folder / name)
            # the last time and the shifts too (a resumed writer's frames go on after it, as much later as the stored
            # ones went: the same times as a run not stopped)
            last_pts = max(p.pts for p in packets)
            self.segments.append({"file": name, "frames": frames, "first_pts": first, "last_pts": last_pts,
                                  "time_base": str(time_base), "shifts": list(shifts)})
            self._write_manifest()
        except OSError as exc:  # a full disk: the segments kept before stay whole (the manifest lists only them)
            tmp.unlink(missing_ok=True)
            if self.segments and self.segments[-1]["file"] == name:
                self.segments.pop()
            raise VideoError(f"keeping a finished segment in {self.folder} failed ({_reason(exc)}); the "
                             f"{self.frames_done} frames kept before it stay: free space and run the same command "
                             f"again") from None

    def _write_manifest(self) -> None:
        import json

        tmp = self.folder / "manifest.json.tmp"
        tmp.write_text(json.dumps({"settings": self.settings, "segments": self.segments}, indent=1))
        tmp.replace(self.folder / "manifest.json")

    def packets(self):
        """Each stored segment's packets, in order (``av.Packet`` with their timestamps)."""
        import json

        import av
        from av.packet import PacketSideData, packet_sidedata_type_from_literal

        for seg in self.segments:
            with open(self.folder / seg["file"], "rb") as f:
                head = json.loads(f.readline())
                time_base = Fraction(head["time_base"])
                out = []
                for pts, dts, size, key, *side in head["packets"]:
                    packet = av.Packet(f.read(size))
                    packet.pts, packet.dts, packet.time_base, packet.is_keyframe = pts, dts, time_base, key
                    for kind, length in side[0] if side else ():
                        data = PacketSideData(packet_sidedata_type_from_literal(kind), length)
                        data.update(f.read(length))
                        packet.set_sidedata(data)
                    out.append(packet)
            yield out

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


class _Segment:
    """One run of consecutive frames encoded by its own encoder in its own thread; its packets wait here
    until the writer muxes them (in segment order, from the thread that owns the container)."""

    def __init__(self, ctx, first: int) -> None:
        import queue

        self.ctx, self.first = ctx, first
        self.count = 0  # frames given to it
        self.shifts = 0  # how many of the writer's shifts its frames have had (see VideoWriter.write)
        self.frames: queue.SimpleQueue = queue.SimpleQueue()  # frames, then None at the end
        self.closed = False
        self.finished = threading.Event()  # the encoder has flushed (or failed, or was cancelled)
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self._packets: collections.deque = collections.deque()
        self._cancelled = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.frames.put(None)

    def cancel(self) -> None:
        self._cancelled = True
        self.close()

    def packets(self) -> list:
        """The packets encoded so far, in order, left in place."""
        return list(self._packets)

    def take(self) -> list:
        """The packets encoded so far, in order (each taken once)."""
        out = []
        while self._packets:
            out.append(self._packets.popleft())
        return out

    def run(self) -> None:
        try:
            while (frame := self.frames.get()) is not None:
                if self._cancelled:
                    continue  # drain to the end marker without encoding
                self._packets.extend(self.ctx.encode(frame))
            if not self._cancelled:
                self._packets.extend(self.ctx.encode(None))
        except BaseException as exc:  # surfaced by the writer as a VideoError
            self.error = exc
        finally:
            self.finished.set()


class _AudioCopier:
    """Remux every audio and subtitle stream of ``source`` into ``container`` (no re-encode), time-shifted
    by ``start`` and cut at ``end`` (seconds of the source). Each keeps its metadata (language, title) and its
    disposition (default, forced, ...: which track a player picks).
    Audio the container cannot take is an error (nothing is dropped silently); text subtitles it cannot take
    (SubRip in MP4, mov_text in Matroska) are converted to a format it takes, picture ones (PGS in MP4) and data
    streams are left out with a warning. The chapters go along, shifted
    and cut alike, and the attachments (an anime release's fonts, which its ASS subtitles are drawn with) where
    the container holds them (Matroska; elsewhere a warning)."""

    def __init__(self, source: Path | str, container, start: float, end: float | None,
                 kinds: tuple[str, ...] = EXTRAS, config: EncodeConfig | None = None, *, quiet: bool = False,
                 restart_s: Fraction = Fraction(1, 25)) -> None:
        import av

        # quiet: a trial (check_copy's) says nothing; the writer's own copier says each warning once
        self._warn = (lambda *args: None) if quiet else log.warning

        self._audio_codec = config.audio_codec if config is not None else None
        self._audio_bitrate = config.audio_bitrate if config is not None else None
        self._encoders: dict[int, object] = {}  # input stream index -> output stream re-encoding it
        self._converters: dict[int, object] = {}  # input stream index -> output stream its subtitles are converted to

        try:
            self._input = open_source(source)
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot read the audio of {display_source(source)} ({_reason(exc)})") from None
        source = display_source(source)
        self._source = source  # for messages
        self._in_streams = []
        self._out: dict[int, object] = {}  # input stream index -> output stream
        self._covers: list = []  # cover-picture packets to mux first
        if "chapters" in kinds:
            self._copy_chapters(container, start, end, source)
        attachments = [s for s in self._input.streams if s.type == "attachment"] if "attachments" in kinds else []
        if attachments and container.format.name == "matroska":
            for att in attachments:
                container.add_attachment(att.name or f"attachment{att.index}",
                                         att.mimetype or "application/octet-stream", bytes(att.data or b""))
        elif attachments:
            self._warn("%s: its %d attachment%s (%s) cannot go into %s; not copied: use an .mkv output to keep "
                       "them", source, len(attachments), "s" if len(attachments) > 1 else "",
                       ", ".join(a.name or "?" for a in attachments[:3]) + (", ..." if len(attachments) > 3 else ""),
                       container.format.name)
        if "cover" in kinds:
            self._copy_covers(container, source)
        wanted = {"audio": "audio" in kinds, "subtitle": "subtitles" in kinds}
        for stream in self._input.streams:
            if stream.type == "attachment":
                continue
            if stream.type not in ("audio", "subtitle"):
                if stream.type == "data" and "timecode" in stream.metadata and any(
                        "timecode" in v.metadata for v in self._input.streams.video):
                    continue  # a timecode track (tmcd): its time goes along as the video stream's (video_stream_tags)
                if stream.type != "video":
                    self._warn("%s: its %s stream #%d is not copied", source, stream.type, stream.index)
                continue
            if not wanted[stream.type]:
                continue
            try:
                if stream.type == "audio" and self._audio_codec is not None:
                    out = self._add_encoder(container, stream)
                else:
                    out = container.add_stream_from_template(stream)
            except (av.error.FFmpegError, ValueError) as exc:
                if stream.type == "subtitle":
                    out = self._add_converter(container, stream)
                    if out is None:
                        # Matroska takes every subtitle format FFmpeg has; elsewhere a picture-based one (a Blu-ray's
                        # PGS, a DVD's VobSub), which cannot be converted to text, is kept only by it
                        hint = ("" if container.format.name == "matroska" else
                                ": use an .mkv output to keep them" if not _text_subtitles(stream.codec_context.name)
                                else ": use an .mkv or .mp4 output to keep them")
                        self._warn("%s: its %s subtitles (stream #%d) cannot go into this container (%s); not "
                                   "copied%s", source, stream.codec_context.name, stream.index, _reason(exc), hint)
                        continue
                else:
                    self._input.close()
                    how = (f"encode the audio of {source} with {self._audio_codec}" if self._audio_codec else
                           f"copy the {stream.codec_context.name} audio of {source}")
                    raise VideoError(f"cannot {how} ({_reason(exc)}); try "
                                     f"{_audio_remedies(container.format.name, self._audio_codec)}, or leave the "
                                     f"audio out (--copy none, or --copy subtitles,chapters,...)") from None
            out.metadata.update(stream.metadata)
            out.disposition = stream.disposition  # default, forced, comment, hearing_impaired, ...
            self._out[stream.index] = out
            self._in_streams.append(stream)
        self._container = container
        self._start, self._end = start, end
        if start > 0 and self._in_streams:
            first = self._in_streams[0]
            # from a little before the cut: the audio packet just before it is the decoder's pre-roll (below)
            self._input.seek(round(max(0.0, start - _PREROLL_SEEK_S) / first.time_base), stream=first,
                             backward=True)
        # demux() of no streams would read them all
        self._packets = self._input.demux(*self._in_streams) if self._in_streams else iter(())
        self._pending = None
        # Per audio stream, the last packet that ends at or before the cut (an AAC file's priming packet, at -1024
        # samples, where the cut is 0): muxed just before the stream's first packet, shifted like it, so at a
        # negative time, it primes the decoder (AAC's first frame overlaps its predecessor: without it the first
        # 21 ms fade in) and the muxer marks it as not shown (MP4: an edit list), as ``ffmpeg -c:a copy`` keeps it.
        self._preroll: dict[int, object] = {}
        # only where the container keeps it before 0 without moving the other streams: AVI, FLV and MPEG-TS would
        # move every stream later by it and play it (the sound a packet late); there the first packet decodes faded
        self._keeps_preroll = container.format.name in _EDIT_LIST_MUXERS or (
            container.format.name in ("matroska", "webm")
            and (getattr(container, "options", None) or {}).get("avoid_negative_ts") == "disabled")
        # Copied audio streams of a lossless codec (FLAC, PCM, ALAC, ...): each packet decodes alone (no overlap with
        # the one before), so they need no pre-roll; and none from before the cut either, as Matroska would play it
        # (it has no edit list) before the first picture: they start at the first packet from the cut on, as
        # ``ffmpeg -ss X -c:a copy`` does (at most a packet, FLAC's 96 ms, of the cut's sound left out).
        # Where the muxer writes an edit list (MP4, QuickTime) the packet before stays: hidden, and the sound starts
        # exactly at the picture (without it, a packet's worth later: ALAC 49 ms, FLAC 92 ms).
        self._whole = set() if container.format.name in _EDIT_LIST_MUXERS else {
            s.index for s in self._in_streams
            if s.type == "audio" and s.index not in self._encoders and _lossless(s.codec_context.name)}
        self._started: set[int] = set()  # streams whose first packet within the cut is muxed
        self._finished: set[int] = set()  # streams past ``end``
        self._done = not self._in_streams
        # A concatenation (``cat a.ts b.ts``: the time starts again at 0 in the middle): where a stream's time goes
        # back more than ``restart_s`` (a video frame), a new part starts, for every stream from there in file order
        # (a sparse subtitle stream's next cue may not go back), and goes as much later as the video writer moved
        # the video's frames of that part (add_shift), from that part's first frame on: both stay in sync, and the
        # muxer, which refuses a time gone back ("Invalid argument"), gets them in order.
        self._restart_s = restart_s
        # per later part, as the video writer reported them: seconds added to its times (all the parts' before it
        # too), and its first video frame's source time (its audio before that is not copied, as the first part's)
        self._shifted: list[Fraction] = [Fraction(0)]
        self._part_starts: list[float] = [start]
        self._part = 0  # the latest part begun, in file order
        self._part_of: dict[int, int] = {}  # per input stream: the part its packets are in
        self._seen: dict[int, Fraction] = {}  # per input stream: its last packet's dts in its part (source seconds)
        self._last: dict[int, Fraction] = {}  # per input stream: the last muxed packet's dts (seconds, shifted)
        self._said: set[str] = set()

    def add_shift(self, seconds: Fraction, at: Fraction) -> None:
        """The video's next part (its time went back) goes ``seconds`` later, from its frame ``at`` seconds after the
        first one: so does the audio's next part."""
        self._shifted.append(self._shifted[-1] + Fraction(seconds))
        self._part_starts.append(self._start + float(at))

    def _add_encoder(self, container, stream):
        """An output stream that re-encodes audio ``stream`` with ``--audio-codec`` (its rate and channel layout,
        where the encoder takes them; PyAV's encoder resamples and reframes what it is given)."""
        import av

        codec = av.Codec(self._audio_codec, "w")
        rates = list(codec.audio_rates or ())
        rate = stream.codec_context.sample_rate
        if rates and rate not in rates:
            rate = min(rates, key=lambda r: abs(r - rate))
        out = container.add_stream(self._audio_codec, rate=rate)
        layout = stream.codec_context.layout  # an unnamed one ("2 channels") as the default of its count (stereo)
        out.layout = av.AudioLayout(f"{layout.nb_channels}c") if layout.name.endswith("channels") else layout
        formats = [f.name for f in (codec.audio_formats or ())]
        own = stream.codec_context.format.name
        out.format = own if not formats or own in formats else formats[0]
        if self._audio_bitrate is not None:
            out.bit_rate = self._audio_bitrate
        self._encoders[stream.index] = out
        return out

    def _add_converter(self, container, stream):
        """An output stream that text subtitles ``stream`` (which ``container`` cannot hold as they are: mov_text in
        Matroska, SubRip in MP4) are converted into, the format ffmpeg converts them to by default for it (ASS for
        Matroska, mov_text for MP4 and QuickTime, WebVTT for WebM); None where there is none, or they are pictures."""
        import av

        target = _SUBTITLE_CONVERSIONS.get(container.format.name)
        if target is None or not _text_subtitles(stream.codec_context.name):
            return None
        try:
            stream.codec_context.open()  # the decoder's ASS header (an ASS file's own styles) is the encoder's
            out = container.add_stream(target)
        except (av.error.FFmpegError, ValueError):  # pragma: no cover - FFmpeg built without the encoder
            return None
        out.time_base = stream.time_base
        out.codec_context.subtitle_header = stream.codec_context.subtitle_header or b""
        self._converters[stream.index] = out
        return out

    def _copy_covers(self, container, source: str) -> None:
        """The input's cover pictures (attached pictures: MP4 cover art, a downloader's thumbnail): as cover art into
        MP4, as an attachment into Matroska (its way of holding one); elsewhere a warning."""
        import av

        covers = [s for s in self._input.streams.video if is_cover(s)]
        if not covers:
            return
        name = container.format.name
        if name not in ("matroska", "mp4"):  # (FFmpeg's QuickTime muxer writes no cover art)
            self._warn("%s: its cover picture cannot go into %s; not copied (.mp4 and .mkv keep it)", source, name)
            return
        for cover in covers:
            packet = next((p for p in self._input.demux(cover) if p.size), None)
            if packet is None:  # pragma: no cover - a cover stream without its picture
                continue
            kind = {"png": ("png", "image/png"), "bmp": ("bmp", "image/bmp")}.get(
                cover.codec_context.name, ("jpg", "image/jpeg"))
            if name == "matroska":
                container.add_attachment(f"cover.{kind[0]}" if len(covers) == 1 else f"cover{cover.index}.{kind[0]}",
                                         kind[1], bytes(packet))
                continue
            out = container.add_stream_from_template(cover)
            out.disposition = av.stream.Disposition.attached_pic
            packet.stream, packet.pts, packet.dts = out, 0, 0
            self._covers.append(packet)  # muxed with the first packets (the header is written then)
        self._input.seek(0)

    def _copy_chapters(self, container, start: float, end: float | None, source: str) -> None:
        """The input's chapters that overlap ``[start, end)``, shifted to start at 0 and cut to it."""
        kept = []
        for chapter in self._input.chapters():
            tb = chapter["time_base"]
            shift = round(start / tb)
            first, last = chapter["start"] - shift, chapter["end"] - shift
            limit = None if end is None else round((end - start) / tb)
            if last <= 0 or (limit is not None and first >= limit):
                continue
            kept.append({**chapter, "id": len(kept) + 1, "start": max(0, first),
                         "end": last if limit is None else min(last, limit)})
        if kept:
            try:
                container.set_chapters(kept)
            except (ValueError, TypeError) as exc:  # pragma: no cover - PyAV's own dicts round-trip
                self._warn("%s: its chapters are not copied (%s)", source, _reason(exc))

    def set_end(self, seconds: float) -> None:
        self._end = seconds

    def mux_until(self, seconds: float | None) -> None:
        """Mux source packets whose time (after the shift) is below ``seconds`` (None: all)."""
        import av

        while self._covers:
            self._container.mux(self._covers.pop(0))
        while not self._done:
            packet = self._pending
            self._pending = None
            if packet is None:
                try:
                    packet = next(self._packets)
                except StopIteration:
                    self._done = True
                    return
                except av.error.FFmpegError as exc:
                    self._warn("audio copy stopped early: %s", exc)
                    self._done = True
                    return
            index = packet.stream.index
            if packet.dts is None or packet.pts is None or index in self._finished:
                continue
            tb = packet.time_base
            raw = packet.dts * tb
            part = self._part_of.get(index, 0)
            if part < self._part:  # another stream's time went back first: this one's packets are the next part's
                part = self._part
                self._seen.pop(index, None)
            seen = self._seen.get(index)
            if seen is not None and raw < seen - self._restart_s:  # the time starts again: the next part
                part += 1
            if part >= len(self._shifted):
                if seconds is not None:  # the video writer has not come to its part yet: wait for it
                    self._pending = packet
                    return
                # the video ended before it (a preview) or never went back: the rest is not copied
                if self._end is None:
                    self._warn("%s's %s times go back at %.3f s where the video's do not; the rest of its stream "
                               "#%d is not copied", self._source, packet.stream.type, float(raw), index)
                self._finished.add(index)
                self._done = len(self._finished) == len(self._in_streams)
                continue
            self._part_of[index], self._seen[index] = part, raw
            self._part = max(self._part, part)
            # (the source's times, against the part's own start: its first frame's, or the cut's)
            begin = self._part_starts[part]
            t = float(packet.pts * tb)
            if t + float((packet.duration or 0) * tb) <= begin or (
                    index in self._whole and t < begin - _CUT_SLACK_S):
                if part == 0 and packet.stream.type == "audio" and self._keeps_preroll and index not in self._whole:
                    self._preroll[index] = packet
                continue  # before the cut (before a later part's first frame: what overlaps the part before)
            shifted = self._shifted[part]
            dts, t = raw + shifted, float(packet.pts * tb + shifted)
            if packet.stream.type == "subtitle":  # a cue straddling the part's start goes from there (_cut_cue)
                dts = max(dts, Fraction(begin) + shifted)
            last = self._last.get(index)
            if last is not None and dts < last:
                # a part's audio running on past its video's, into the next part's, or a packet out of order: the
                # muxer refuses it, and the sound is the earlier part's
                if part:
                    log.debug("%s: a %s packet of stream #%d overlapping the part before is left out (at %.3f s, "
                              "after %.3f s)", self._source, packet.stream.type, index, float(dts), float(last))
                elif "overlap" not in self._said:
                    self._said.add("overlap")
                    self._warn("%s: %s packets of stream #%d that go back in time (at %.3f s, after %.3f s) are "
                               "left out", self._source, packet.stream.type, index, float(dts), float(last))
                continue
            if self._end is not None and t >= self._end:
                self._finished.add(index)
                self._done = len(self._finished) == len(self._in_streams)
                continue
            if seconds is not None and t - self._start >= seconds:
                self._pending = packet
                return
            offset = round(self._start / tb) if self._start else 0
            shift = round(shifted / tb)
            if packet.stream.type == "subtitle":
                self._cut_cue(packet, round(begin / tb), shift)
            elif index not in self._started:
                self._started.add(index)
                preroll = self._preroll.pop(index, None)
                if preroll is not None:
                    self._mux_shifted(preroll, offset, shift)
            self._mux_shifted(packet, offset, shift)
            self._last[index] = dts

    def _cut_cue(self, packet, begin: int, shift: int = 0) -> None:
        """Cut subtitle ``packet`` (a cue, shown from its pts for its duration) to the copied span: one that starts
        before ``begin`` (the cut, or a later part's first frame; its time base) starts at it (not at a negative time,
        which MP4's muxer garbles and Matroska players show from 0 for its whole length, nor over the part before),
        and one that ends past ``end`` ends there; as its own times shown in the source (a later part's, which goes
        ``shift`` later: the end is on the video's time, so that much earlier on its own)."""
        tb = packet.time_base
        ends = packet.pts + packet.duration if packet.duration else None
        if ends is not None and self._end is not None:
            ends = min(ends, round(self._end / tb) - shift)
        packet.pts = packet.dts = max(packet.pts, begin)
        if ends is not None:
            packet.duration = max(1, ends - packet.pts)

    def _mux_shifted(self, packet, offset: int, shift: int = 0) -> None:
        """Mux ``packet`` ``offset`` (its time base) earlier and ``shift`` (a later part's) later, or re-encode it
        (``--audio-codec``) or convert it (a subtitle cue the container cannot hold as it is)."""
        index = packet.stream.index
        if index in self._encoders:
            self._encode(packet, offset, shift)
            return
        if index in self._converters:
            self._convert_cue(packet, offset, shift)
            return
        packet.pts += shift - offset
        packet.dts += shift - offset
        packet.stream = self._out[index]
        self._container.mux(packet)

    def _convert_cue(self, packet, offset: int, shift: int = 0) -> None:
        """Decode subtitle ``packet`` and mux its text in the output's subtitle format, at its times ``offset`` (its
        time base) earlier and ``shift`` (a later part's) later; an empty one (mov_text's gap between cues, which the
        MP4 muxer writes itself) is left."""
        import av

        out = self._converters[packet.stream.index]
        try:
            cue = packet.stream.codec_context.decode2(packet)
            converted = out.codec_context.encode_subtitle(cue) if cue is not None and len(cue) else None
        except av.error.FFmpegError as exc:
            self._warn("subtitle conversion skipped a damaged cue: %s", _reason(exc))
            return
        if converted is None:
            return
        converted.stream, converted.time_base = out, packet.time_base
        converted.pts = converted.dts = packet.pts + shift - offset
        converted.duration = packet.duration
        self._container.mux(converted)

    def _encode(self, packet, offset: int, shift: int) -> None:
        """Decode ``packet`` and re-encode its frames that start within the cut, moved ``shift`` later and ``offset``
        earlier (its time base); frames before ``start`` are dropped (at most one frame, tens of milliseconds, of
        sound)."""
        import av

        out = self._encoders[packet.stream.index]
        tb = packet.time_base
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            self._warn("audio re-encoding skipped a damaged packet: %s", _reason(exc))
            return
        for frame in frames:
            if frame.pts is None or frame.pts + shift < offset:
                continue
            if self._end is not None and float((frame.pts + shift) * tb) >= self._end:
                continue
            frame.pts += shift - offset
            frame.time_base = tb
            for p in out.encode(frame):
                self._container.mux(p)

    def close(self) -> None:
        """Flush the re-encoding encoders into the output (nothing else to write) and close the source."""
        import av

        try:
            for out in self._encoders.values():
                for p in out.encode(None):
                    self._container.mux(p)
        except (av.error.FFmpegError, ValueError):  # an output already closed (an aborted run): nothing to flush
            pass
        finally:
            self._encoders = {}
            self._input.close()


# Video stream tags about the source's encoding, not the output's: Matroska's statistics (mkvmerge's, each may carry a
# language suffix, BPS-eng), the encoder and its vendor, the alpha flag (the output's own alpha says itself), a
# duration, the old rotation tag (the display matrix is written apart)
_STALE_STREAM_TAGS = frozenset({"duration", "bps", "number_of_frames", "number_of_bytes", "encoder", "encoder_options",
                                "alpha_mode", "rotate", "vendor_id"})


def video_stream_tags(tags: dict[str, str], skipped: int, rate: Fraction) -> dict[str, str]:
    """The source video stream's ``tags`` for the upscaled one, as ffmpeg maps them (language, title, handler name,
    ...) less those about the old encoding; a ``timecode`` (a camera's, which the MOV/MP4 muxers write a tmcd track
    from) moved on by the ``skipped`` frames before the first one written (a --start cut), at ``rate``."""
    kept = {k: v for k, v in tags.items()
            if k.split("-")[0].lower() not in _STALE_STREAM_TAGS and not k.startswith("_STATISTICS")}
    if skipped and "timecode" in kept:
        moved = _timecode_after(kept["timecode"], skipped, rate)
        if moved is None:  # one this cannot read: dropped rather than kept wrong
            del kept["timecode"]
        else:
            kept["timecode"] = moved
    return kept


def _timecode_after(timecode: str, frames: int, rate: Fraction) -> str | None:
    """SMPTE ``timecode`` (HH:MM:SS:FF; drop-frame HH:MM:SS;FF at 29.97/59.94 fps) ``frames`` later, as FFmpeg
    counts it (av_timecode_adjust_ntsc_framenum2); None where it is not one."""
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d)([:;.,])(\d+)", timecode.strip())
    fps = round(rate)
    if match is None or fps <= 0:
        return None
    h, m, sec, sep, f = match.groups()
    drop = sep in ";," and fps % 30 == 0
    skip = 2 * (fps // 30) if drop else 0  # numbers skipped each minute but every tenth
    minutes = 60 * int(h) + int(m)
    n = (minutes * 60 + int(sec)) * fps + int(f) - skip * (minutes - minutes // 10) + frames
    if skip:
        per_ten, per_minute = fps * 600 - skip * 9, fps * 60 - skip
        tens, rest = divmod(n, per_ten)
        n += skip * 9 * tens + (skip * ((rest - skip) // per_minute) if rest > skip else 0)
    f, sec = n % fps, n // fps
    return f"{sec // 3600 % 24:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}{sep}{f:02d}"


# The subtitle format text subtitles are converted to for a container that cannot hold theirs (ffmpeg's default for it)
_SUBTITLE_CONVERSIONS = {"matroska": "ass", "webm": "webvtt", "mp4": "mov_text", "mov": "mov_text",
                         "ipod": "mov_text", "3gp": "mov_text", "3g2": "mov_text"}


def _text_subtitles(codec: str) -> bool:
    """Whether subtitle decoder ``codec`` gives text (SubRip, ASS, mov_text, WebVTT, ...), not pictures."""
    import av

    try:
        return bool(av.Codec(codec, "r").text_sub)
    except (av.error.FFmpegError, ValueError):  # pragma: no cover - a stream FFmpeg has no decoder for
        return False


def _lossless(codec: str) -> bool:
    """Whether FFmpeg's decoder ``codec`` is of a lossless codec (FLAC, ALAC, PCM, WavPack, TrueHD)."""
    import av

    try:
        return bool(av.Codec(codec, "r").lossless)
    except (av.error.FFmpegError, ValueError):  # pragma: no cover - a stream FFmpeg has no decoder for
        return False


_AVCOL_BT709 = 1  # AVCOL_SPC_BT709 = AVCOL_PRI_BT709 = AVCOL_TRC_BT709 in FFmpeg's enums
_AVCOL_SPC_BT470BG = 5  # BT.601's matrix (625 lines; the 525-line one, smpte170m, is the same)
# Codecs whose YCbCr is JPEG's (JFIF): BT.601's matrix, whatever the stream says (FFmpeg's MJPEG decoder reports it)
_JFIF_CODECS = frozenset({"mjpeg", "jpegls"})
_AVCOL_RANGE_MPEG, _AVCOL_RANGE_JPEG = 1, 2


def _yuv_range(pix_fmt: str) -> int | None:
    """FFmpeg's colour range of a YUV pixel format (limited; full for ``yuvj``), None for RGB/grey ones."""
    if pix_fmt.startswith("yuvj"):
        return _AVCOL_RANGE_JPEG
    if pix_fmt.startswith(("yuv", "nv12", "nv21", "p010")):
        return _AVCOL_RANGE_MPEG
    return None


def _array_format(image: np.ndarray) -> str:
    """PyAV's name for a frame array: (h, w, 3) RGB, (h, w, 4) RGBA (uint16: 16 bits each), or (3h/2, w) yuv420p
    planes."""
    if image.ndim == 2:
        return "yuv420p"
    if image.dtype == np.uint16:
        return "rgba64le" if image.shape[2] == 4 else "rgb48le"
    return "rgba" if image.shape[2] == 4 else "rgb24"


def alpha_pix_fmt(config: EncodeConfig) -> str | None:
    """The pixel format with alpha the writer encodes RGBA frames in for ``config``: ``--pix-fmt`` where it has
    alpha, else the codec's first of :data:`_ALPHA_FORMATS`; None where the output keeps no alpha (a ``--pix-fmt``
    without it, H.264/H.265, whose players ignore the alpha layers some encoders offer, or a codec without
    any)."""
    codec = check_encoder(config)
    if codec.name == "gif" and config.pix_fmt in (None, "pal8"):
        return "pal8"  # each frame's palette with a transparent entry (see _paletted)
    if config.pix_fmt is not None:
        return config.pix_fmt if has_alpha(config.pix_fmt) else None
    if codec.name in _YUV420_CODECS and codec.name not in ("libvpx-vp9", "libvpx"):
        return None
    formats = [f.name for f in (codec.video_formats or ())]
    return next((f for f in _ALPHA_FORMATS if f in formats), None)


def output_pix_fmt(config: EncodeConfig) -> str:
    """The pixel format the writer encodes in for ``config`` (``VideoError`` for an unknown codec)."""
    return config.pix_fmt or _default_pix_fmt(check_encoder(config))


# The deeper siblings of the 8-bit formats the writer picks by default, best first.
_DEEPER_FORMATS = {
    "yuv420p": ("yuv420p10le", "yuv420p12le"), "yuv422p": ("yuv422p10le", "yuv422p12le"),
    "yuv444p": ("yuv444p10le", "yuv444p12le"), "rgb24": ("rgb48le", "rgb48be"), "bgr24": ("rgb48le", "bgr48le"),
    "gbrp": ("gbrp16le", "gbrp12le", "gbrp10le"), "bgr0": ("gbrp16le", "gbrp12le", "gbrp10le"),
    "rgb0": ("gbrp16le", "gbrp12le", "gbrp10le"), "rgba": ("rgba64le", "rgba64be"), "bgra": ("rgba64le", "bgra64le"),
    "gbrap": ("gbrap16le", "gbrap12le", "gbrap10le"), "yuva420p": ("yuva420p10le",), "yuva444p": ("yuva444p10le",),
}


def deeper_pix_fmt(config: EncodeConfig, base: str | None = None) -> str | None:
    """The codec's format with more than 8 bits a component that stands in for ``base`` (default: the codec's default
    format: yuv420p -> yuv420p10le for x264/x265/VP9/AV1, rgb24 -> rgb48 for PNG/TIFF, gbrp16le for FFV1; with alpha,
    rgba -> rgba64 ...), or None where it has none."""
    codec = check_encoder(config)
    formats = [f.name for f in (codec.video_formats or ())]
    return next((f for f in _DEEPER_FORMATS.get(base or _default_pix_fmt(codec), ()) if f in formats), None)


def _default_pix_fmt(codec) -> str:
    if codec.name == "gif":
        return "pal8"  # a palette a frame (see _paletted), not GIF's fixed 3-3-2 rgb8 one
    formats = [f.name for f in (codec.video_formats or ())]
    if codec.name in _YUV420_CODECS and (not formats or "yuv420p" in formats):
        return "yuv420p"
    for name in _RGB_FORMATS:
        if name in formats:
            return name
    if not formats:
        return "yuv420p"
    return formats[0]


def _guess_format(path: Path) -> str | None:
    # FFmpeg guesses from the name; the temporary name keeps the extension, so pass nothing special.
    return {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov", ".webm": "webm", ".avi": "avi"}.get(
        path.suffix.lower())


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().rstrip(".") or type(exc).__name__


def _changed(saved: dict, now: dict) -> list[str]:
    """The settings that differ between a stored run's and this one's, a dict-valued one's fields by name
    (``encode.crf``)."""
    changed = []
    for key in sorted({*saved, *now}):
        old, new = saved.get(key), now.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed += [f"{key}.{field}" for field in sorted({*old, *new}) if old.get(field) != new.get(field)]
        else:
            changed.append(key)
    return changed
