"""Helpers of the client tests: PyAV-made clips (real FFmpeg encodes) and stream facts."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def frame_pattern(i: int, h: int, w: int) -> np.ndarray:
    """A moving, textured RGB test frame (uint8 ``(h, w, 3)``): gradients, a moving square, noise."""
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // max(w - 1, 1) + 7 * i) % 256, (y * 255 // max(h - 1, 1)) % 256,
                    ((x + y + 5 * i) * 9) % 256], axis=-1).astype(np.int16)
    s = max(4, min(h, w) // 3)
    y0, x0 = (2 * i) % max(h - s, 1), (3 * i) % max(w - s, 1)
    img[y0:y0 + s, x0:x0 + s] = (250, 40, 40)
    img += rng.integers(-8, 9, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_video(path: Path, frames: int = 10, size: tuple[int, int] = (40, 56), rate: int | Fraction = 24,
               codec: str = "libx264", pix_fmt: str = "yuv420p", audio: str | list[tuple[str, str]] | None = None,
               options: dict[str, str] | None = None, metadata: dict[str, str] | None = None,
               audio_seconds: float | None = None, *, rotation: int = 0, sample_aspect_ratio: Fraction | None = None,
               color_trc: int | None = None, subtitles: str | None = None) -> Path:
    """Encode ``frames`` pattern frames with PyAV (FFmpeg).

    ``audio``: an encoder (aac, libopus) for a tone as long as the video (or ``audio_seconds``), or a list
    of (encoder, language) tracks. ``rotation`` (display matrix, degrees), ``sample_aspect_ratio`` and
    ``color_trc`` (FFmpeg's transfer enum) tag the video stream; ``subtitles``: SubRip text muxed as a
    subtitle stream (.mkv).
    """
    import av

    h, w = size
    tracks = [(audio, None)] if isinstance(audio, str) else list(audio or [])
    with av.open(str(path), "w") as c:
        if metadata:
            c.metadata.update(metadata)
        v = c.add_stream(codec, rate=rate)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        v.options = options or {}
        if rotation:
            v.set_display_rotation(rotation)
        if sample_aspect_ratio:
            v.codec_context.sample_aspect_ratio = sample_aspect_ratio
        if color_trc is not None:
            v.codec_context.color_trc = color_trc
        streams = []
        for enc, language in tracks:
            a = c.add_stream(enc, rate=48000)
            if language:
                a.metadata["language"] = language
            streams.append(a)
        subs = None
        if subtitles is not None:
            srt = path.with_suffix(".srt")
            srt.write_text(subtitles)
            subs = av.open(str(srt))
            sub_out = c.add_stream_from_template(subs.streams[0])
        for i in range(frames):
            for p in v.encode(av.VideoFrame.from_ndarray(frame_pattern(i, h, w), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        for a in streams:
            mux_tone(c, a, int(48000 * (frames / Fraction(rate) if audio_seconds is None else audio_seconds)))
        if subs is not None:
            for p in subs.demux(subs.streams[0]):
                if p.dts is not None:
                    p.stream = sub_out
                    c.mux(p)
            subs.close()
    return path


def write_frames(path: Path, frames, codec: str = "ffv1", pix_fmt: str = "bgr0", rate: int | Fraction = 24,
                 options: dict[str, str] | None = None) -> Path:
    """Encode the uint8 RGB ``frames`` as they are (FFV1 in BGR0 by default: lossless, read back exactly)."""
    import av

    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=rate)
        v.height, v.width = first.shape[:2]
        v.pix_fmt = pix_fmt
        v.options = options or {}
        for f in (first, *frames):
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    from vggx.video import open_video

    with open_video(path) as r:
        return [f.image for f in r]


def decode_alpha(path: Path) -> list[np.ndarray | None]:
    """Each frame's alpha plane as vggx's reader gives it (None where the input has none)."""
    from vggx.video import open_video

    with open_video(path) as r:
        return [f.alpha for f in r]


def stream_facts(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return {"size": (v.codec_context.height, v.codec_context.width), "rate": v.average_rate,
                "codec": v.codec_context.name, "pix_fmt": v.codec_context.pix_fmt,
                "audio": [s.codec_context.name for s in c.streams.audio],
                "frames": sum(1 for _ in c.decode(v)), "metadata": dict(c.metadata),
                "color": (v.codec_context.colorspace, v.codec_context.color_primaries, v.codec_context.color_trc,
                          v.codec_context.color_range)}


def alpha_pattern(i: int, h: int, w: int) -> np.ndarray:
    """A moving matte (uint8 ``(h, w)``): opaque inside a rectangle that moves, soft at one edge, clear elsewhere."""
    a = np.zeros((h, w), np.uint8)
    a[h // 4: 3 * h // 4, w // 5 + i: 3 * w // 5 + i] = 255
    a[:, : w // 8] = np.linspace(0, 200, w // 8, dtype=np.uint8)[None]
    return a


def make_png_sequence(folder: Path, first: int = 1001, count: int = 12, size: tuple[int, int] = (40, 56),
                      name: str = "f%04d.png", alpha: bool = False) -> Path:
    """Numbered PNG frames of the test pattern (the VFX habit: from 1001), by FFmpeg's image2 muxer; returns their
    pattern. ``alpha``: RGBA frames, :func:`alpha_pattern` as their alpha."""
    import av

    folder.mkdir(exist_ok=True)
    fmt = "rgba" if alpha else "rgb24"
    with av.open(str(folder / name), "w", format="image2", options={"start_number": str(first)}) as c:
        stream = c.add_stream("png", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], fmt
        for i in range(count):
            image = frame_pattern(i, *size)
            if alpha:
                image = np.concatenate([image, alpha_pattern(i, *size)[..., None]], axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format=fmt)):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return folder / name


FONT = b"\x00\x01\x00\x00 not really a font"


def make_film(path: Path) -> Path:
    """48 FFV1 frames at 24 fps, no audio: chapters One (0-0.5 s) and Two (0.5-2 s), and a font attachment
    (:data:`FONT`), as an anime release carries the fonts its ASS subtitles are drawn with."""
    import av

    with av.open(str(path), "w") as c:
        v = c.add_stream("ffv1", rate=24)
        v.width, v.height, v.pix_fmt = 56, 40, "bgr0"
        c.add_attachment("Font.ttf", "font/ttf", FONT)
        c.set_chapters([
            {"id": 1, "start": 0, "end": 12, "time_base": Fraction(1, 24), "metadata": {"title": "One"}},
            {"id": 2, "start": 12, "end": 48, "time_base": Fraction(1, 24), "metadata": {"title": "Two"}}])
        for i in range(48):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, 40, 56), format="rgb24")
            frame.pts = i
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    return path


def chapters_of(path: Path) -> list[tuple[str | None, float, float]]:
    """``(title, start s, end s)`` of each chapter."""
    import av

    with av.open(str(path)) as c:
        return [(ch["metadata"].get("title"), round(float(ch["start"] * ch["time_base"]), 3),
                 round(float(ch["end"] * ch["time_base"]), 3)) for ch in c.chapters()]


def remux_offset(src: Path, dst: Path, seconds: float, format: str | None = None) -> Path:
    """``src``'s video stream copied into ``dst`` with its times moved ``seconds`` later (FFmpeg's
    ``output_ts_offset``: a broadcast's clock in MPEG-TS, a late-starting track in Matroska)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", format=format,
                                         options={"output_ts_offset": f"{seconds:g}"}) as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.size:
                packet.stream = out
                o.mux(packet)
    return dst


def make_slideshow(path: Path, times: tuple[float, ...], audio_seconds: float) -> Path:
    """Matroska: H.264 pictures shown at ``times`` (seconds; the stream at 1 fps, in ms), Opus audio of
    ``audio_seconds``: a still or a slideshow with music."""
    import av

    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=1)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = v.codec_context.time_base = Fraction(1, 1000)
        v.codec_context.max_b_frames = 0
        a = c.add_stream("libopus", rate=48000)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, 48, 64), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        mux_tone(c, a, int(48000 * audio_seconds))
    return path


def mux_tone(container, stream, samples: int) -> None:
    """Encode ``samples`` of a stereo 440 Hz tone at 48 kHz into audio ``stream`` and mux them into ``container``,
    then flush the encoder."""
    import av

    step = stream.codec_context.frame_size or 1024
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
    for off in range(0, samples, step):
        fr = av.AudioFrame.from_ndarray(np.tile(tone[off:off + step][None], (2, 1)), format="fltp", layout="stereo")
        fr.sample_rate, fr.pts = 48000, off
        for p in stream.encode(fr):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)


def make_switching_ts(path: Path, sizes: tuple[tuple[int, int], ...] = ((40, 56), (30, 42)), frames: int = 10) -> Path:
    """MPEG-TS whose frame size changes mid-stream: H.264 runs of ``frames`` pattern frames at each size, their
    timestamps continuing, joined as an adaptive stream's segments are (a player switching renditions)."""
    import io

    import av

    data = b""
    for k, (h, w) in enumerate(sizes):
        buf = io.BytesIO()
        with av.open(buf, "w", format="mpegts") as c:
            v = c.add_stream("libx264", rate=24)
            v.height, v.width, v.pix_fmt = h, w, "yuv420p"
            v.options = {"bf": "0"}  # no reordering delay: each run's timestamps start where the last one ended
            for i in range(k * frames, (k + 1) * frames):
                frame = av.VideoFrame.from_ndarray(frame_pattern(i, h, w), format="rgb24")
                frame.pts = i
                for p in v.encode(frame):
                    c.mux(p)
            for p in v.encode():
                c.mux(p)
        data += buf.getvalue()
    path.write_bytes(data)
    return path
