"""Inverse telecine (``--ivtc``): film telecined to 29.97 fps (3:2 pulldown, as on NTSC DVDs) comes back to its
23.976 frames, each whole, before the model sees it — bit for bit the film upscaled as it was shot."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from test_upscale_cli import assert_one_error_line
from typer.testing import CliRunner
from videoclips import frame_pattern

from vggx.cli import app
from vggx.client import UpscaleConfig, upscale
from vggx.video import EncodeConfig, open_video

FILM = Fraction(24000, 1001)
NTSC = Fraction(30000, 1001)
SIZE = (48, 64)


def film_frames(count: int) -> list[np.ndarray]:
    """The film's frames as the reader gives them back from 4:4:4 YUV (the clips below are stored so)."""
    return [av.VideoFrame.from_ndarray(frame_pattern(i, *SIZE), format="rgb24").reformat(format="yuv444p")
            .to_ndarray(format="rgb24") for i in range(count)]


def write(path, count: int, telecined: bool, codec: str = "ffv1", start: int = 0, bars: int = 0,
          sar: Fraction | None = None):
    """``count`` film frames as lossless 4:4:4 ``codec``: at 23.976 fps, or telecined (FFmpeg's ``telecine``, 3:2,
    top field first) to 29.97 fps, the first frame at ``start`` frames of its rate; ``bars`` black rows above and
    below the picture; ``sar``: the pixel shape recorded."""
    h, w = SIZE
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=NTSC if telecined else FILM)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        if sar:
            s.codec_context.sample_aspect_ratio = sar
        if codec == "libx264":
            s.options = {"qp": "0", "g": "15"}
        graph = None
        if telecined:
            graph = av.filter.Graph()
            src = graph.add("buffer", f"video_size={w}x{h}:pix_fmt=yuv444p:time_base={1 / FILM}:frame_rate={FILM}:"
                                      f"pixel_aspect={sar or Fraction(1)}")
            telecine, sink = graph.add("telecine", "first_field=top:pattern=23"), graph.add("buffersink")
            src.link_to(telecine)
            telecine.link_to(sink)
            graph.configure()
        written = [start]

        def put(frame):
            frame.pts, frame.time_base = written[0], 1 / (NTSC if telecined else FILM)
            written[0] += 1
            for p in s.encode(frame):
                c.mux(p)

        def drain():
            while True:
                try:
                    put(graph.pull())
                except (BlockingIOError, EOFError):
                    return

        for i in range(count):
            image = frame_pattern(i, *SIZE)
            if bars:
                image[:bars] = image[h - bars:] = 0
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv444p")
            if graph is None:
                put(frame)
                continue
            frame.pts, frame.time_base = i, 1 / FILM
            graph.push(frame)
            drain()
        if graph is not None:
            graph.push(None)
            drain()
        for p in s.encode():
            c.mux(p)
    return path


class TestReader:
    @pytest.mark.parametrize("codec", ["ffv1", "libx264"])
    def test_the_film_frames_come_back_whole(self, tmp_path, codec):
        clip = write(tmp_path / "tc.mkv", 24, telecined=True, codec=codec)
        with open_video(clip) as r:
            assert r.info.rate == NTSC and len([f for f in r]) == 30
        with open_video(clip, ivtc=True) as r:
            assert r.info.rate == FILM
            frames = list(r)
        assert len(frames) == 24
        for got, want in zip(frames, film_frames(24), strict=True):
            np.testing.assert_array_equal(got.image, want)
        seconds = [float(f.pts * r.info.time_base) for f in frames]
        np.testing.assert_allclose(np.diff(seconds), 1 / float(FILM), atol=1e-3)  # evenly spaced at the film's rate

    def test_telecined_frames_alone_comb(self, tmp_path):
        """What --ivtc undoes: two frames in five are woven from two film frames, like none of them."""
        with open_video(write(tmp_path / "tc.mkv", 8, telecined=True)) as r:
            frames = [f.image for f in r]
        film = film_frames(8)
        unlike = [i for i, f in enumerate(frames) if min(np.abs(f.astype(int) - g).max() for g in film) > 0]
        assert len(unlike) == 4  # 2 of every 5 of the 10 frames

    def test_seeking_lands_on_film_frames(self, tmp_path):
        """From --start on, every frame is a whole film frame, in order; a last cycle of five cut short by the end of
        the stream keeps its duplicate (FFmpeg's decimate drops one frame of each whole cycle). --start counts from
        the file's start (1.5 s here), as ffmpeg's -ss does."""
        clip = write(tmp_path / "tc.mkv", 96, telecined=True, codec="libx264", start=45)  # starts at 1.5 s
        film = [f.tobytes() for f in film_frames(96)]
        with open_video(clip, ivtc=True, start=3.0) as r:
            shown = [film.index(f.image.tobytes()) for f in r]  # ValueError: a frame no film frame equals
        first = round(3.0 * float(FILM))  # the film frame shown 3 s into the file
        assert shown[0] == first and shown[-1] == 95
        assert sorted(set(shown)) == list(range(first, 96)) and len(shown) - len(set(shown)) <= 1
        assert shown == sorted(shown)


def test_upscale_equals_the_film_upscaled(tmp_path, torch_runner):
    telecined = write(tmp_path / "tc.mkv", 24, telecined=True)
    film = write(tmp_path / "film.mkv", 24, telecined=False)
    a = upscale(UpscaleConfig(telecined, tmp_path / "a.mkv", encode=EncodeConfig("ffv1"), ivtc=True),
                runner=torch_runner)
    b = upscale(UpscaleConfig(film, tmp_path / "b.mkv", encode=EncodeConfig("ffv1")), runner=torch_runner)
    assert a.frames == b.frames == 24 and a.rate == FILM
    with av.open(str(tmp_path / "a.mkv")) as ca, av.open(str(tmp_path / "b.mkv")) as cb:
        assert ca.streams.video[0].average_rate == FILM
        for fa, fb in zip(ca.decode(video=0), cb.decode(video=0), strict=True):
            np.testing.assert_array_equal(fa.to_ndarray(format="rgb24"), fb.to_ndarray(format="rgb24"))
            assert abs(float(fa.time) - float(fb.time)) <= 0.002  # the same timeline (Matroska counts ms)


def test_cli_refuses_ivtc_with_deinterlace(tiny_checkpoint_path, tmp_path):
    clip = write(tmp_path / "tc.mkv", 10, telecined=True)
    out = tmp_path / "o.mkv"
    result = CliRunner().invoke(app, ["upscale", str(clip), str(out), "--ivtc", "--deinterlace", "--backend", "torch",
                                      "--checkpoint", str(tiny_checkpoint_path)])
    assert_one_error_line(result, "give --ivtc or --deinterlace, not both")
    assert not out.exists()


def test_a_dvd_telecined_letterboxed_and_anamorphic(tiny_checkpoint_path, tmp_path):
    """What an NTSC DVD of a widescreen film needs, at once: the film's frames back, the bars off, square pixels."""
    clip = write(tmp_path / "dvd.mkv", 12, telecined=True, codec="libx264", bars=8, sar=Fraction(32, 27))
    out = tmp_path / "o.mkv"
    result = CliRunner().invoke(app, ["upscale", str(clip), str(out), "--ivtc", "--crop", "auto", "--square-pixels",
                                      "--codec", "ffv1", "--backend", "torch", "--checkpoint",
                                      str(tiny_checkpoint_path), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "cropped: upscaled 64x32 at 0,8" in result.stdout
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        assert (stream.average_rate, len(frames), (stream.sample_aspect_ratio or 1)) == (FILM, 12, 1)
    assert (frames[0].height, frames[0].width) == (128, 304)  # 32 x4 high; 64 x 32/27 = 75.9 x4 = 303.4 -> 304


def test_a_dry_run_says_what_a_telecined_input_needs(tiny_checkpoint_path, tmp_path, caplog):
    import logging

    clip = write(tmp_path / "tc.mkv", 32, telecined=True, codec="libx264")  # 40 frames: enough for idet
    with caplog.at_level(logging.WARNING, logger="vggx.video.decode"):
        result = CliRunner().invoke(app, ["upscale", str(clip), str(tmp_path / "o.mkv"), "--dry-run", "--backend",
                                          "torch", "--checkpoint", str(tiny_checkpoint_path)])
    assert result.exit_code == 0, result.output
    assert "looks telecined (3:2 pulldown" in caplog.text and "pass --ivtc" in caplog.text
    assert list(tmp_path.iterdir()) == [clip]


def test_ivtc_on_an_input_that_is_not_telecined_is_warned_of(tmp_path, caplog):
    """decimate drops a real frame in five of a progressive film: the interlacing check says so (and the read is not
    taken for a truncated file for having four fifths of its frames)."""
    import logging

    from videoclips import make_video

    film = make_video(tmp_path / "film.mp4", frames=48, size=SIZE)
    telecined = write(tmp_path / "tc.mkv", 32, telecined=True, codec="libx264")
    with caplog.at_level(logging.WARNING, logger="vggx.video.decode"):
        with open_video(film, ivtc=True) as r:
            assert 38 <= len(list(r)) <= 39
        said = [rec.getMessage() for rec in caplog.records]
        assert len(said) == 1 and "does not look telecined (progressive over its first" in said[0]
        caplog.clear()
        with open_video(telecined, ivtc=True) as r:
            assert len(list(r)) == 32
        assert caplog.records == []
