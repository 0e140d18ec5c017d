"""The streams copied beside the upscaled video (``vggx/video/encode.py``'s ``_AudioCopier``): the audio decodes to
the input's own samples from the first one on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from videoclips import frame_pattern, make_video

from vggx.video import VideoWriter, open_video

RATE = 48000


def _copy(src: Path, out: Path, start_frame: int = 0) -> float:
    """Write ``src``'s frames from ``start_frame`` on into ``out`` with its audio copied (cut there, as ``vggx
    upscale --start`` does); the cut, in seconds of the source."""
    with open_video(src) as r:
        info = r.info
        frames = [f for f in r if f.index >= start_frame]
        first = frames[0].pts
        start = float(first * info.time_base)
        with VideoWriter(out, 56, 40, info.rate, info.time_base, audio_source=src, audio_start=start) as w:
            for f in frames:
                w.write(f.image, f.pts - first)
    return start


def _audio(path: Path) -> tuple[float, np.ndarray]:
    """The first audio stream's decoded left channel, and the time of its first sample."""
    import av

    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    left = [f.to_ndarray()[0] if f.format.is_planar else f.to_ndarray()[0, ::len(f.layout.channels)] for f in frames]
    return float(frames[0].pts * frames[0].time_base), np.concatenate(left)


def _from(path: Path, seconds: float) -> tuple[float, np.ndarray]:
    t0, samples = _audio(path)
    return t0, samples[max(0, round((seconds - t0) * RATE)):]


@pytest.mark.parametrize("start_frame", [0, 7])
@pytest.mark.parametrize(("src_ext", "out_ext"), [(".mp4", ".mp4"), (".mkv", ".mkv"), (".mp4", ".mkv")])
def test_copied_aac_decodes_to_the_inputs_samples_from_the_first(tmp_path, src_ext, out_ext, start_frame):
    """AAC's first packet (the encoder's priming, at -1024 samples) and, at a cut, the packet before it are the
    decoder's pre-roll: without them the first 1024 samples faded in (max error 0.2 on this 0.3 tone) or, in
    Matroska, were missing. Compared over the first 4096 samples from the cut, within 1e-4 (both sides decode the
    same packets); Matroska's millisecond clock places them within 48 samples, so the best lag within that is
    taken (the 440 Hz tone repeats every 109)."""
    src = make_video(tmp_path / f"in{src_ext}", frames=24, audio="aac")
    out = tmp_path / f"out{out_ext}"
    start = _copy(src, out, start_frame)
    t0, got = _from(out, 0.0)
    assert t0 <= 0.001  # the output's audio starts with its video, at the cut
    _, want = _from(src, start)
    n = 4096
    error = min(np.abs(got[max(0, -lag):][:n] - want[max(0, lag):][:n]).max() for lag in range(-48, 49))
    assert error < 1e-4, error
    with open_video(out) as r:  # the video still starts at 0
        assert next(iter(r)).pts == 0


def _tracks(path: Path) -> list[tuple[str, str | None, int]]:
    import av

    with av.open(str(path)) as c:
        return [(s.type, s.metadata.get("language"), int(s.disposition)) for s in c.streams]


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_each_track_keeps_its_disposition(tmp_path, ext):
    """A film release's tracks: English commentary (not default), French main audio (default), forced
    subtitles (default and forced). The copies kept none of it (in MP4 the commentary became the default);
    now each keeps its flags, and the video is the default video track."""
    import av

    flag = av.stream.Disposition
    src = make_video(tmp_path / "plain.mkv", frames=8, audio=[("aac", "eng"), ("aac", "fra")],
                     subtitles="1\n00:00:00,000 --> 00:00:00,200\nhello\n\n")
    wanted = [flag.default, flag(0), flag.default, flag.default | flag.forced]  # video, audio eng, fra, subtitles
    tagged = tmp_path / "in.mkv"
    with av.open(str(src)) as inp, av.open(str(tagged), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for s in inp.streams:
            streams[s.index].metadata.update(s.metadata)
            streams[s.index].disposition = wanted[s.index]
        for packet in inp.demux():
            if packet.size:  # (Matroska's video packets have no dts)
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    assert [d for _, _, d in _tracks(tagged)] == [int(f) for f in wanted]
    out = tmp_path / f"out{ext}"
    _copy(tagged, out)
    kept = [(t, lang, d) for t, lang, d in _tracks(out)]
    video = [("video", "und" if ext == ".mp4" else None, int(flag.default))]
    audio = [("audio", "eng", 0), ("audio", "fra", int(flag.default))]
    # (MP4 holds no SubRip: converted to mov_text, with their flags)
    subtitles = [("subtitle", None if ext == ".mkv" else "und", int(flag.default | flag.forced))]
    assert kept == video + audio + subtitles


def test_a_subtitle_track_the_container_cannot_take_is_warned_of_once(tmp_path, caplog):
    """The pipeline checks the copy before the upscale (check_copy, a trial into memory), then the writer copies:
    the trial warned too, so "cannot go into this container" was said twice. (AVI holds no text subtitles: .mkv
    and .mp4 do, the warning says.)"""
    import logging

    from vggx.video.encode import EXTRAS, check_copy

    src = make_video(tmp_path / "in.mkv", frames=4, audio="aac", subtitles="1\n00:00:00,000 --> 00:00:00,100\nhi\n\n")
    out = tmp_path / "out.avi"
    with caplog.at_level(logging.WARNING, logger="vggx.video.encode"):
        check_copy(out, src, EXTRAS)
        _copy(src, out)
    said = [r.getMessage() for r in caplog.records if "cannot go into" in r.getMessage()]
    assert len(said) == 1 and "srt subtitles (stream #2)" in said[0], said
    assert said[0].endswith("not copied: use an .mkv or .mp4 output to keep them"), said


BLOCKS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (128, 128, 128), (20, 20, 20)]


@pytest.mark.parametrize("ext", [".avi", ".mkv"])
def test_mjpeg_output_is_converted_with_jpegs_matrix(tmp_path, ext):
    """JPEG's YCbCr is BT.601's: MJPEG was converted with BT.709 (and tagged so), and decoded as BT.601, pure red
    came back (231, 0, 1), green (19, 255, 7). Solid blocks (16 pixels wide, so 4:2:0 keeps them whole) now come
    back within 3 levels, read as vggx and as PyAV read them; the stream says bt470bg."""
    from fractions import Fraction

    import av

    from vggx.video import EncodeConfig

    image = np.zeros((32, 16 * len(BLOCKS), 3), np.uint8)
    for i, colour in enumerate(BLOCKS):
        image[:, 16 * i:16 * (i + 1)] = colour
    out = tmp_path / f"out{ext}"
    with VideoWriter(out, image.shape[1], image.shape[0], Fraction(24), Fraction(1, 24),
                     EncodeConfig(codec="mjpeg")) as w:
        for i in range(2):
            w.write(image, i)
    with open_video(out) as r:
        read = [f.image for f in r]
    with av.open(str(out)) as c:
        tagged = c.streams.video[0].codec_context.colorspace  # (AVI has no tag: what FFmpeg probed)
        frame = next(c.decode(video=0))
        assert frame.format.name == "yuvj420p" and tagged == 5  # bt470bg
        pyav = frame.to_ndarray(format="rgb24")
    for got in (*read, pyav):
        centres = got.reshape(32, len(BLOCKS), 16, 3)[4:-4, :, 4:12]  # each block's middle
        error = np.abs(centres.astype(int) - np.array(BLOCKS)[None, :, None]).max()
        assert error <= 3, error


@pytest.mark.parametrize("codec", ["libx264", "mjpeg"])
def test_avi_gets_a_tick_a_frame(tmp_path, caplog, codec):
    """AVI holds a constant frame rate: given an MP4's 1/12288 its muxer picked 1/600 and said 600 fps, 300 frames
    for 12 and a longer duration. Now its time base is a frame (1/24), the frames numbered; a variable rate's frame
    times are not kept, said once."""
    import logging
    from fractions import Fraction

    import av

    from vggx.video import EncodeConfig

    out = tmp_path / "out.avi"
    with VideoWriter(out, 56, 40, Fraction(24), Fraction(1, 12288), EncodeConfig(codec=codec)) as w:
        for i in range(12):
            w.write(frame_pattern(i, 40, 56), 512 * i)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.time_base, v.average_rate, v.frames) == (Fraction(1, 24), 24, 12)
        assert sum(1 for _ in c.decode(v)) == 12
    with caplog.at_level(logging.WARNING, logger="vggx.video.encode"), \
            VideoWriter(tmp_path / "vfr.avi", 56, 40, Fraction(24), Fraction(1, 1000), EncodeConfig(codec=codec)) as w:
        for i, t in enumerate([0, 42, 83, 200, 240, 500]):
            w.write(frame_pattern(i, 40, 56), t)
    said = [r.getMessage() for r in caplog.records if "AVI holds a constant frame rate" in r.getMessage()]
    assert len(said) == 1 and "frame 3 is at 0.200 s, not 0.125 s" in said[0], said


@pytest.mark.parametrize("out_ext", [".avi", ".flv", ".ts"])
def test_containers_without_an_edit_list_keep_the_audio_in_time(tmp_path, out_ext):
    """AVI, FLV and MPEG-TS cannot keep a packet before 0: their muxer would move every stream later by it, and the
    priming packet would be played, the sound 1024 samples late. There the copy starts at the cut (the first
    packet's 1024 samples decode faded, as before); after them the samples are the input's at the same times."""
    src = make_video(tmp_path / "in.mp4", frames=24, audio="aac")
    out = tmp_path / f"out{out_ext}"
    _copy(src, out)
    t0, got = _audio(out)
    import av

    with av.open(str(out)) as c:
        video = c.streams.video[0]
        start = float(video.start_time * video.time_base)  # (MPEG-TS starts at 1.4 s)
    assert abs(t0 - start) <= 0.001  # the audio starts with the video
    _, want = _from(src, 0.0)
    error = min(np.abs(got[1024 + lag:4096 + lag] - want[1024:4096]).max() for lag in range(-48, 49))
    assert error < 1e-4, error


CUES = "1\n00:00:00,100 --> 00:00:00,300\nfirst\n\n2\n00:00:00,500 --> 00:00:00,900\nsecond\n\n"


def _with_movtext(src: Path, dst: Path, cues: list[tuple[int, int, str]], language: str | None = None) -> Path:
    """``src``'s video copied into ``dst`` (.mp4) beside a mov_text track of ``cues`` (start, end in ms, text), as
    an iPhone or iTunes file holds its subtitles: a 2-byte length, then the UTF-8 text."""
    import struct
    from fractions import Fraction

    import av

    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        v = o.add_stream_from_template(i.streams.video[0])
        s = o.add_stream("mov_text")
        s.time_base = Fraction(1, 1000)
        s.codec_context.subtitle_header = b""  # (the encoder is opened for the header, never used)
        if language:
            s.metadata["language"] = language
        for packet in i.demux(i.streams.video[0]):
            if packet.size:
                packet.stream = v
                o.mux(packet)
        for t0, t1, text in cues:
            data = text.encode()
            packet = av.Packet(struct.pack(">H", len(data)) + data)
            packet.stream, packet.time_base = s, Fraction(1, 1000)
            packet.pts = packet.dts = t0
            packet.duration = t1 - t0
            o.mux(packet)
    return dst


def _cue_text(codec: str, data: bytes) -> str:
    """The words of one subtitle packet: mov_text's after its 2-byte length, ASS's after its 8 fields."""
    if codec == "mov_text":
        return data[2:2 + int.from_bytes(data[:2], "big")].decode()
    if codec == "ass":
        return data.decode().split(",", 8)[8]
    return data.decode()


def _cues(path: Path) -> tuple[str, list[tuple[float, float, str]]]:
    """The first subtitle track's codec and cues (start and duration in seconds, text); mov_text's empty gap
    samples left out."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.subtitles[0]
        codec = {"ssa": "ass"}.get(s.codec_context.name, s.codec_context.name)  # (FFmpeg's ASS decoder: ssa)
        cues = [(round(float(p.pts * p.time_base), 3), round(float(p.duration * p.time_base), 3),
                 _cue_text(codec, bytes(p))) for p in c.demux(s) if p.size and p.pts is not None]
    return codec, [cue for cue in cues if cue[2]]


def _copy_cut(src: Path, out: Path, first: int, count: int) -> float:
    """``src``'s frames ``first`` .. ``first + count`` into ``out`` with its streams cut there (as ``--start`` and
    ``--frames`` cut them: the end at the first frame's time plus ``count`` frames); the cut, in seconds."""
    with open_video(src) as r:
        info = r.info
        frames = [f for f in r if first <= f.index < first + count]
        pts0 = frames[0].pts
        start = float(pts0 * info.time_base)
        with VideoWriter(out, 56, 40, info.rate, info.time_base, audio_source=src, audio_start=start,
                         audio_end=start + count / float(info.rate)) as w:
            for f in frames:
                w.write(f.image, f.pts - pts0)
    return start


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_subtitle_cues_are_cut_at_the_start_and_the_end(tmp_path, ext):
    """A cue that straddled a --start cut was shown for its whole length from 0 (Matroska; 'second' 0.5-0.9 s cut at
    0.875 s showed to 0.4 s, past the clip) or muxed at a negative time (MP4: garbled, 'first' never seen). Now a
    cue starting before the cut starts at 0 and ends where it ended; one ending before it is gone; a --frames end
    shortens the cue it falls in and drops those after it. Frames 7 .. 18 (0.292 .. 0.792 s) of a 24 fps clip."""
    base = make_video(tmp_path / "v.mkv", frames=24, subtitles=CUES)
    src = base if ext == ".mkv" else _with_movtext(make_video(tmp_path / "v.mp4", frames=24), tmp_path / "in.mp4",
                                                   [(100, 300, "first"), (500, 900, "second")])
    out = tmp_path / f"out{ext}"
    start = _copy_cut(src, out, 7, 12)
    assert abs(start - 0.292) < 0.001
    _, cues = _cues(out)
    assert cues == [(0.0, 0.008, "first"), (0.208, 0.292, "second")], cues
    # a cut after 'first' ended: it is gone, 'second' from 0 to its own end; nothing past the --frames end
    start = _copy_cut(src, out, 15, 4)  # 0.625 .. 0.792 s
    _, cues = _cues(out)
    assert cues == [(0.0, 0.167, "second")], cues
    _copy_cut(src, out, 22, 2)  # 0.917 .. 1 s: after both cues
    with __import__("av").open(str(out)) as c:
        assert not c.streams.subtitles or not _cues(out)[1]


def _audio_packets(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as c:
        return [float(p.pts * p.time_base) for p in c.demux(c.streams.audio[0]) if p.size]


@pytest.mark.parametrize("codec", ["flac", "pcm_s16le"])
def test_lossless_audio_in_matroska_starts_with_the_picture(tmp_path, codec):
    """FLAC and PCM need no decoder pre-roll, yet the packet before the one holding the cut was kept for them as for
    AAC, at a negative time: Matroska has no edit list, so a player played it, up to two packets (FLAC's 96 ms each)
    of sound before the first picture. Now they start, as ``ffmpeg -ss -c:a copy`` does, at the first packet from
    the cut on: nothing before 0, each packet at its source time less the cut."""
    src = make_video(tmp_path / "in.mkv", frames=24, audio=codec)
    source_times = _audio_packets(src)
    out = tmp_path / "out.mkv"
    start = _copy(src, out, 7)
    got = _audio_packets(out)
    assert got[0] >= 0, got[:3]
    first = next(t for t in source_times if t >= start - 0.0005)
    assert abs(got[0] - (first - start)) <= 0.001, (got[:3], first, start)
    t0, samples = _audio(out)  # the same samples (Matroska's millisecond clock: within 48 of the same place)
    _, want = _from(src, start + t0)
    samples, want = samples.astype(float), want.astype(float)
    error = min(np.abs(samples[max(0, -lag):][:2048] - want[max(0, lag):][:2048]).max() for lag in range(-48, 49))
    assert error <= 1e-4 * np.abs(want).max(), error


@pytest.mark.parametrize(("out_ext", "codec"), [(".mp4", "flac"), (".mov", "alac"), (".mov", "pcm_s16le")])
def test_lossless_audio_in_mp4_and_mov_starts_with_the_picture_exactly(tmp_path, out_ext, codec):
    """Where the muxer writes an edit list the packet before the cut stays (hidden by it): the sound starts at the
    picture. Leaving it out, as for Matroska, started it a packet late (ALAC 49 ms, FLAC 92 ms)."""
    src = make_video(tmp_path / "in.mkv", frames=24, audio=codec)
    out = tmp_path / f"out{out_ext}"
    start = _copy(src, out, 7)
    t0, samples = _audio(out)
    assert abs(t0) <= 0.001, t0
    _, want = _from(src, start)
    samples, want = samples.astype(float), want.astype(float)
    error = min(np.abs(samples[max(0, -lag):][:2048] - want[max(0, lag):][:2048]).max() for lag in range(-48, 49))
    assert error <= 1e-4 * np.abs(want).max(), error


@pytest.mark.parametrize(("src_ext", "out_ext", "codec"), [(".mp4", ".mkv", "ass"), (".mkv", ".mp4", "mov_text"),
                                                           (".mkv", ".mov", "mov_text")])
def test_text_subtitles_are_converted_for_a_container_that_cannot_hold_them(tmp_path, src_ext, out_ext, codec):
    """An MP4's mov_text (every phone's and iTunes' subtitles) into .mkv was left out, the warning saying "use an .mkv
    output"; SubRip into .mp4 too. Now text subtitles are converted, as ffmpeg converts them by default: to ASS for
    Matroska, to mov_text for MP4 and QuickTime; with their times (cut like a copy's), words and language."""
    import av

    if src_ext == ".mp4":
        src = _with_movtext(make_video(tmp_path / "v.mp4", frames=24), tmp_path / "in.mp4",
                            [(100, 300, "first"), (500, 900, "second")], language="fra")
    else:
        src = make_video(tmp_path / "v.mkv", frames=24, subtitles=CUES)
        with av.open(str(src)) as i, av.open(str(tmp_path / "in.mkv"), "w") as o:  # tagged French
            streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
            streams[1].metadata["language"] = "fra"
            for packet in i.demux():
                if packet.size:
                    packet.stream = streams[packet.stream.index]
                    o.mux(packet)
        src = tmp_path / "in.mkv"
    out = tmp_path / f"out{out_ext}"
    _copy(src, out)
    assert _cues(out) == (codec, [(0.1, 0.2, "first"), (0.5, 0.4, "second")])
    with av.open(str(out)) as c:
        assert c.streams.subtitles[0].metadata.get("language") == "fra"
    _copy_cut(src, out, 7, 12)  # cut alike
    assert _cues(out) == (codec, [(0.0, 0.008, "first"), (0.208, 0.292, "second")])


def _retagged(src: Path, dst: Path, video_tags: dict[str, str]) -> Path:
    """``src``'s streams copied into ``dst`` with ``video_tags`` on its video stream (a release's language and title,
    mkvmerge's statistics, a camera's timecode: the MOV muxer writes a tmcd track from that tag)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        streams[i.streams.video[0].index].metadata.update(video_tags)
        for packet in i.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                o.mux(packet)
    return dst


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_the_video_stream_keeps_its_language_and_title(tmp_path, torch_runner, ext):
    """The upscaled stream had none of the source video stream's tags (players said "und"), while the audio kept
    its own. Now it keeps them, as ``ffmpeg -c:v libx264`` does, less the ones about the old encoding (mkvmerge's
    statistics, the encoder)."""
    import av

    from vggx.client import UpscaleConfig, upscale

    tags = {"language": "jpn", "title": "Main video", "BPS": "12345", "NUMBER_OF_FRAMES": "999",
            "_STATISTICS_WRITING_APP": "mkvmerge v80", "ENCODER": "Lavc old"}
    src = _retagged(make_video(tmp_path / "v.mkv", frames=6, audio="aac"), tmp_path / "in.mkv", tags)
    out = tmp_path / f"out{ext}"
    upscale(UpscaleConfig(src, out), runner=torch_runner)
    with av.open(str(out)) as c:
        got = dict(c.streams.video[0].metadata)
    assert got.get("language") == "jpn", got
    if ext == ".mkv":  # (MP4 keeps a track's language, not its title)
        assert got.get("title") == "Main video", got
    assert not {"BPS", "NUMBER_OF_FRAMES", "_STATISTICS_WRITING_APP"} & set(got), got
    assert got.get("ENCODER", got.get("encoder", "")) != "Lavc old", got


@pytest.mark.parametrize(("start", "want"), [(0.0, "01:00:00:00"), (0.5, "01:00:00:12")])
def test_a_timecode_goes_along_moved_to_the_first_frame(tmp_path, torch_runner, caplog, start, want):
    """A camera's or an NLE's .mov holds its timecode (a tmcd track; FFmpeg tags the video stream with it): it was
    dropped ("its data stream is not copied"), so the upscaled plate could not be conformed back. Now it goes along
    as the video stream's tag (the MOV muxer writes its tmcd track from it), that of the first frame written: 12
    frames on at a --start of 0.5 s (24 fps)."""
    import logging

    import av

    from vggx.client import UpscaleConfig, upscale

    src = _retagged(make_video(tmp_path / "v.mp4", frames=24, audio="aac"), tmp_path / "in.mov",
                    {"timecode": "01:00:00:00"})
    with av.open(str(src)) as c:
        assert c.streams.video[0].metadata.get("timecode") == "01:00:00:00" and len(c.streams.data) == 1
    out = tmp_path / "out.mov"
    with caplog.at_level(logging.WARNING):
        upscale(UpscaleConfig(src, out, start=start, frames=4), runner=torch_runner)
    with av.open(str(out)) as c:
        assert c.streams.video[0].metadata.get("timecode") == want
        assert [s.metadata.get("timecode") for s in c.streams.data] == [want]  # the tmcd track
    assert "data stream" not in caplog.text


def test_video_stream_tags_move_a_timecode_as_smpte_counts():
    """Drop-frame timecode (29.97 fps) skips the numbers 00 and 01 each minute but every tenth."""
    from fractions import Fraction

    from vggx.video.encode import video_stream_tags

    ntsc = Fraction(30000, 1001)
    assert video_stream_tags({"timecode": "00:00:59;29"}, 1, ntsc) == {"timecode": "00:01:00;02"}
    assert video_stream_tags({"timecode": "00:09:59;29"}, 1, ntsc) == {"timecode": "00:10:00;00"}
    assert video_stream_tags({"timecode": "23:59:59:24"}, 2, Fraction(25)) == {"timecode": "00:00:00:01"}
    assert video_stream_tags({"timecode": "01:00:00:00", "DURATION-eng": "00:00:01"}, 0, Fraction(24)) == {
        "timecode": "01:00:00:00"}
    assert video_stream_tags({"timecode": "junk", "language": "eng"}, 5, Fraction(24)) == {"language": "eng"}
