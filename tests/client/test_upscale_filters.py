"""FFmpeg filters before the model (``--vf``, ``vggx.video.filters``): the chain parsed as ffmpeg's -vf parses it,
what it does to the frames found before any work, the frames read through it exactly as FFmpeg filters them, and the
run planned with what the model sees (a filter's crop upscales bit for bit as ``--crop`` does)."""

from __future__ import annotations

import json
import logging
from fractions import Fraction

import av
import numpy as np
import pytest
from test_upscale_cli import assert_one_error_line
from videoclips import frame_pattern, write_frames

from vggx.client import UpscaleConfig, upscale
from vggx.errors import ConfigError, VideoError
from vggx.video import EncodeConfig, open_video
from vggx.video.crop import Crop
from vggx.video.filters import FilterChain

LOSSLESS = EncodeConfig("ffv1")
TB = Fraction(1, 12288)  # the time base FFmpeg's MP4 muxer picks for 24 fps


def frames_of(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def lossless_clip(tmp_path_factory):
    """24 pattern frames at 24 fps, FFV1 RGB: what the reader gives is what was written."""
    d = tmp_path_factory.mktemp("vf")
    return write_frames(d / "clip.mkv", [frame_pattern(i, 40, 56) for i in range(24)])


class TestParse:
    def test_a_chain_as_ffmpeg_reads_it(self):
        chain = FilterChain.parse(" scale=640:360 , hflip,fps=24000/1001")
        assert chain.filters == (("scale", "640:360"), ("hflip", None), ("fps", "24000/1001"))
        assert chain.names == ("scale", "hflip", "fps") and not chain.deinterlaces

    def test_quotes_and_backslashes_keep_commas_in_options(self):
        # quoted: the option parser gets the backslash (and reads n\,2 as n,2 itself); escaped: the comma alone
        assert FilterChain.parse("select='not(mod(n\\,2))',hflip").filters == (
            ("select", "not(mod(n\\,2))"), ("hflip", None))
        assert FilterChain.parse("select=not(mod(n\\,2))").filters == (("select", "not(mod(n,2))"),)
        assert FilterChain.parse("scale=w='320' ").filters == (("scale", "w=320"),)

    def test_an_instance_name_is_kept_off_the_filter(self):
        assert FilterChain.parse("scale@small=32:24").filters == (("scale", "32:24"),)

    def test_deinterlacers_are_known(self):
        assert FilterChain.parse("yadif,hflip").deinterlaces and FilterChain.parse("fieldmatch,decimate").deinterlaces

    @pytest.mark.parametrize(("text", "said"), [
        ("", "--vf is empty"),
        ("hflip,,vflip", "an empty filter"),
        ("[in]scale=2:2[out]", "labels ([in], [out]) and ';'"),
        ("hflip;vflip", "labels ([in], [out]) and ';'"),
        ("no_such_filter", "has no filter 'no_such_filter'"),
        ("color=red", "color makes frames of its own (a source)"),
    ])
    def test_refused_with_the_reason(self, text, said):
        with pytest.raises(VideoError, match=None) as err:
            FilterChain.parse(text)
        assert said in str(err.value)


class TestProbe:
    def test_size_format_and_rate(self):
        probe = FilterChain.parse("crop=iw/2:ih-8,format=gray").probe(56, 40, "yuv420p", TB, Fraction(24))
        assert (probe.width, probe.height, probe.pix_fmt, probe.rate) == (28, 32, "gray", 24)
        assert probe.time_base == TB and probe.sample_aspect_ratio is None

    def test_rates_from_the_frames_spacing(self):
        rate = {text: FilterChain.parse(text).probe(56, 40, "yuv420p", TB, Fraction(24)).rate
                for text in ("fps=12", "fps=24000/1001", "framestep=2", "setpts=0.5*PTS", "fps=1")}
        # 24 fps in 1/12288 s is 512 ticks a frame exactly; FFmpeg's fps filter counts in 1/rate
        assert rate == {"fps=12": 12, "fps=24000/1001": Fraction(24000, 1001), "framestep=2": 12,
                        "setpts=0.5*PTS": 48, "fps=1": 1}

    @pytest.mark.parametrize("rate", [Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(60)])
    def test_how_much_the_chain_stretches_time(self, rate):
        """setpts retimes the frames, which nothing else does: a speed change keeps every frame, a rate change keeps
        the seconds (the frame count follows both)."""
        scale = {text: FilterChain.parse(text).probe(56, 40, "yuv420p", TB, rate).time_scale
                 for text in ("setpts=0.5*PTS", "setpts=PTS/3", "setpts=1.25*PTS", "setpts=2*PTS,fps=60",
                              "setpts=0.5*PTS,fps=24", "setpts=PTS-STARTPTS", "setpts=PTS+5/TB", "fps=12",
                              "fps=24000/1001", "fps=100", "framerate=50", "minterpolate=fps=48", "framestep=3",
                              "select='not(mod(n\\,2))'", "tmix=frames=3", "reverse", "trim=start=5")}
        assert scale == {"setpts=0.5*PTS": Fraction(1, 2), "setpts=PTS/3": Fraction(1, 3),
                         "setpts=1.25*PTS": Fraction(5, 4), "setpts=2*PTS,fps=60": 2, "setpts=0.5*PTS,fps=24": 0.5,
                         "setpts=PTS-STARTPTS": 1, "setpts=PTS+5/TB": 1} | {
                             text: 1 for text in scale if "setpts" not in text}

    def test_the_retiming_is_looked_at_on_small_frames(self, monkeypatch):
        """A second of frames goes through the chain to see what setpts does: small ones (a second of 1080p through
        nlmeans took half a minute before any work), or through setpts alone where the chain needs the input's size."""
        import vggx.video.filters as filters

        sizes = []
        made_up = filters._made_up
        monkeypatch.setattr(filters, "_made_up", lambda w, h, fmt: sizes.append((w, h)) or made_up(w, h, fmt))
        probe = FilterChain.parse("crop=120:80,setpts=0.5*PTS").probe(160, 96, "yuv420p", TB, Fraction(24))
        assert (probe.width, probe.height, probe.time_scale) == (120, 80, Fraction(1, 2))
        assert sizes == [(160, 96), (64, 64)]  # the chain refuses 64x64 (its crop), setpts alone is timed

    def test_a_time_base_that_rounds_the_spacing_still_gives_the_rate(self):
        """25 fps in 1/12288 s: frames 491 or 492 ticks apart."""
        assert FilterChain.parse("hflip").probe(56, 40, "yuv420p", TB, Fraction(25)).rate == 25

    def test_pixel_shape_follows_the_filters(self):
        """An anamorphic DVD frame (32/27) halved in width keeps its display shape with pixels twice as wide, as
        FFmpeg's scale works it out; setsar=1 makes them square."""
        probe = FilterChain.parse("scale=iw/2:ih").probe(720, 480, "yuv420p", TB, Fraction(24), Fraction(32, 27))
        assert (probe.width, probe.height, probe.sample_aspect_ratio) == (360, 480, Fraction(64, 27))
        probe = FilterChain.parse("setsar=1").probe(720, 480, "yuv420p", TB, Fraction(24), Fraction(32, 27))
        assert probe.sample_aspect_ratio is None

    @pytest.mark.parametrize("text", ["trim=start=5", r"select=gte(n\,100)", "trim=start_frame=120"])
    def test_a_chain_that_starts_later_is_probed_until_its_first_frames(self, text):
        """Nothing comes out of these for the first seconds (a 4-second probe refused them as letting nothing
        through): probed on until frames come, their geometry and rate as the input's."""
        probe = FilterChain.parse(text).probe(56, 40, "yuv420p", TB, Fraction(24))
        assert (probe.width, probe.height, probe.pix_fmt, probe.rate) == (56, 40, "yuv420p", Fraction(24))

    @pytest.mark.parametrize(("text", "said"), [
        ("nlmeans=s=99", "FFmpeg refuses it (Value 99.000000 for parameter 's' out of range"),
        ("scale=w=foo", "FFmpeg refuses it (Invalid size 'foo')"),
        ("volume=2", "Media type mismatch"),
        ("split", "not connected"),
        ("select=0", "lets no frame through (none of the first 2880 frames, 120 s); to skip the start of a video, "
                     "--start"),
    ])
    def test_refused_before_any_work(self, text, said):
        with pytest.raises(VideoError) as err:
            FilterChain.parse(text).probe(56, 40, "yuv420p", TB, Fraction(24))
        assert said in str(err.value)


class TestReader:
    def test_frames_are_ffmpegs_filtered_frames(self, lossless_clip):
        with open_video(lossless_clip) as r:
            plain = [(f.pts, f.image) for f in r]
        with open_video(lossless_clip, filters="hflip,crop=iw-8:ih:0:0") as r:
            assert (r.info.width, r.info.height, r.info.rate, r.expected_frames()) == (48, 40, 24, 24)
            flipped = [(f.pts, f.image) for f in r]
        assert [p for p, _ in flipped] == [p for p, _ in plain]
        for (_, a), (_, b) in zip(flipped, plain, strict=True):
            np.testing.assert_array_equal(a, b[:, ::-1][:, :48])

    def test_a_rate_change_gives_ffmpegs_frames_and_times(self, lossless_clip):
        """fps=12 on 24 frames/s: the frames and times FFmpeg's own graph gives (which frame of each pair it keeps
        is its rounding of Matroska's milliseconds), on the input's timeline."""
        reference = []
        with av.open(str(lossless_clip)) as c:
            graph = av.filter.Graph()
            nodes = [graph.add_buffer(template=c.streams.video[0]), graph.add("fps", "12"), graph.add("buffersink")]
            nodes[0].link_to(nodes[1])
            nodes[1].link_to(nodes[2])
            graph.configure()
            for frame in [*c.decode(video=0), None]:
                graph.push(frame)
                while True:
                    try:
                        out = graph.pull()
                    except (BlockingIOError, EOFError):
                        break
                    reference.append((float(out.pts * out.time_base), out.to_ndarray(format="rgb24").tobytes()))
        with open_video(lossless_clip, filters="fps=12") as r:
            assert r.info.rate == 12 and r.expected_frames() == 12
            got = [(float(f.pts * r.info.time_base), f.image.tobytes()) for f in r]
        assert len(got) == len(reference) == 12 and got == reference
        assert [t for t, _ in got] == pytest.approx([k / 12 for k in range(12)])

    def test_start_and_frames_count_the_filtered_frames(self, lossless_clip):
        with open_video(lossless_clip, filters="fps=12", start=0.5, max_frames=3) as r:
            got = [float(f.pts * r.info.time_base) for f in r]
        assert got == pytest.approx([6 / 12, 7 / 12, 8 / 12])

    @pytest.mark.parametrize(("vf", "frames"), [
        ("setpts=0.5*PTS", 12), ("setpts=PTS-STARTPTS", 12), ("setpts=2*PTS", 12), ("fps=12", 6)])
    def test_start_is_the_inputs_time_as_ffmpegs_ss(self, lossless_clip, vf, frames):
        """--start 0.5 cuts the input at 0.5 s before the chain (as ffmpeg's -ss before -i): a chain that retimes
        the frames starts there too, not at its own 0.5 s (setpts=0.5*PTS gave no frame at all on a 1-second clip).
        The chain's time starts at the cut (as ffmpeg's does), and what comes out is put back on the input's timeline:
        the first frame at 0.5 s, with the audio where the picture is (no shift)."""
        with open_video(lossless_clip) as r:
            want = [f.image for f in r][12:]
        with open_video(lossless_clip, filters=vf, start=0.5) as r:
            got = list(r)
            assert r.expected_frames() == len(got) == frames
            assert float(got[0].pts * r.info.time_base) == pytest.approx(0.5)
            assert r.shift == pytest.approx(0)
        np.testing.assert_array_equal(got[0].image, want[0])

    @pytest.mark.parametrize(("vf", "start", "kept"), [
        ("trim=start=0.25", 0.0, range(6, 24)), ("trim=start=0.25", 0.5, range(18, 24)),
        ("trim=end=0.25", 0.5, range(12, 18)), ("select='gte(t\\,0.25)'", 0.5, range(18, 24)),
        ("trim=start=0.25", 10.0, range(6, 24))])
    def test_the_chains_time_starts_at_the_file_or_the_start_as_ffmpegs(self, lossless_clip, tmp_path, vf, start,
                                                                        kept):
        """ffmpeg's filters count time from the file's start (a broadcast cut at 10 s: from its 10 s), or from the
        -ss point: trim, select, fade and enable= met the stream's own times, and did nothing, or let nothing
        through (start 10.0: the clip remuxed to start at 10 s)."""
        clip = lossless_clip
        if start == 10.0:  # the same packets 10 s later: a file whose time starts at 10 s
            clip = tmp_path / "at10.mkv"
            with av.open(str(lossless_clip)) as src, av.open(str(clip), "w") as dst:
                s = src.streams.video[0]
                out = dst.add_stream_from_template(s)
                for packet in src.demux(s):
                    if packet.size:
                        packet.pts += round(10 / s.time_base)
                        packet.dts += round(10 / s.time_base)
                        packet.stream = out
                        dst.mux(packet)
            start = 0.0
        with open_video(lossless_clip) as r:
            want = [f.image for f in r]
        with open_video(clip, filters=vf, start=start) as r:
            got = list(r)
        assert len(got) == len(kept)
        for frame, k in zip(got, kept, strict=True):
            np.testing.assert_array_equal(frame.image, want[k])

    def test_a_fade_starts_where_ffmpegs_does(self, lossless_clip):
        with open_video(lossless_clip, filters="fade=t=in:st=0:d=0.5", start=0.5) as r:
            first = next(iter(r))
        assert first.image.max() == 0  # faded in from black at the cut (it met 0.5 s: no fade at all)

    def test_a_chain_that_drops_every_frame_is_named_not_the_start(self, lossless_clip):
        said = r"--vf 'trim=start=5' let none of the 12 frames decoded through \(from --start 0.5s\)"
        with open_video(lossless_clip, filters="trim=start=5", start=0.5) as r, pytest.raises(VideoError, match=said):
            list(r)

    def test_a_truncated_file_is_still_found_out(self, tmp_path):
        """The check counts the frames decoded, which a rate change does not move: an MP4 (its index first, as
        streaming servers write it) cut short."""
        full = tmp_path / "full.mp4"
        with av.open(str(full), "w", options={"movflags": "+faststart"}) as c:
            v = c.add_stream("libx264", rate=24)
            v.width, v.height, v.pix_fmt = 56, 40, "yuv420p"
            for i in range(24):
                for p in v.encode(av.VideoFrame.from_ndarray(frame_pattern(i, 40, 56), format="rgb24")):
                    c.mux(p)
            for p in v.encode():
                c.mux(p)
        cut = tmp_path / "in.mp4"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size * 7 // 10])
        for filters in (None, "fps=12"):
            with open_video(cut, filters=filters) as r, \
                    pytest.raises(VideoError, match=r"ends after \d+ of its 24 frames; the file is truncated"):
                list(r)

    def test_a_speed_change_is_warned_of(self, tmp_path, caplog):
        clip = write_frames(tmp_path / "long.mkv", [frame_pattern(i, 16, 24) for i in range(96)])  # 4 s
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), \
                open_video(clip, filters="setpts=0.5*PTS") as r:
            assert r.info.rate == 48 and len(list(r)) == 96
        assert "moves the frames in time" in caplog.text and "--copy none" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(clip, filters="fps=12") as r:
            list(r)
        assert "moves the frames in time" not in caplog.text

    @pytest.mark.parametrize(("vf", "frames", "speed"), [("setpts=0.5*PTS", 24, "2"), ("setpts=2*PTS", 24, "0.5"),
                                                         ("setpts=0.5*PTS,fps=24", 12, "2")])
    def test_a_speed_change_of_a_short_clip_is_counted_and_warned_of(self, lossless_clip, caplog, vf, frames, speed):
        """A second-long clip played twice as fast is half a second out of step from its start: warned of before its
        frames drift past any slack, and counted as the frames it keeps (the plan, --dry-run and the progress)."""
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(lossless_clip, filters=vf) as r:
            assert r.info.frames == r.expected_frames() == frames
            assert len(list(r)) == frames
        assert f"moves the frames in time (it plays them at {speed} times their speed)" in caplog.text

    @pytest.mark.parametrize("rotation", [180, 270])
    def test_every_turn(self, tmp_path, rotation):
        from videoclips import make_video

        clip = make_video(tmp_path / "phone.mp4", frames=2, size=(40, 56), rotation=rotation)
        with open_video(clip) as r:
            stored = [f.image for f in r]
        with open_video(clip, filters="null") as r:
            upright = [f.image for f in r]
            assert r.rotation == 0
        for got, frame in zip(upright, stored, strict=True):  # shown turned counter-clockwise by the rotation
            np.testing.assert_array_equal(got, np.rot90(frame, rotation // 90))

    def test_a_turned_clip_is_turned_upright_first_as_ffmpeg_does(self, tmp_path, caplog):
        """A phone clip stored sideways (shown rotated 90 degrees counter-clockwise): as ffmpeg's command line does
        before a -vf, the chain gets the frames as they are shown, so its numbers are the picture's; the frames come
        out upright and the reader reports no rotation left to tag."""
        from videoclips import make_video

        clip = make_video(tmp_path / "phone.mp4", frames=3, size=(40, 56), rotation=90)
        with open_video(clip) as r:
            stored = [f.image for f in r]
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), \
                open_video(clip, filters="crop=iw:ih-16") as r:
            assert (r.info.width, r.info.height) == (40, 40)
            upright = [f.image for f in r]
            assert r.rotation == 0
            assert r.filters.describe() == "crop=iw:ih-16 (on the frames turned upright, from 90 degrees)"
        assert not caplog.records
        for got, frame in zip(upright, stored, strict=True):
            np.testing.assert_array_equal(got, np.rot90(frame, 1)[8:48])

    def test_double_rate_deinterlacing(self, tmp_path, caplog):
        """Video shot interlaced at 29.97 frames (59.94 fields) a second, deinterlaced a frame per field (what
        --deinterlace, a frame per frame, does not do): twice the frames at twice the rate, evenly spaced, and no
        warning that the input is interlaced (the chain deinterlaces it)."""
        from test_upscale_video_io import _woven

        clip = _woven(tmp_path / "i.mkv", 24)
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), \
                open_video(clip, filters="bwdif=mode=send_field") as r:
            assert r.info.rate == Fraction(60000, 1001)
            times = [f.pts * r.info.time_base for f in r]
        assert len(times) == 48 and not caplog.records
        assert np.diff([float(t) for t in times]) == pytest.approx([1001 / 60000] * 47, abs=1e-3)

    def test_after_inverse_telecine(self, tmp_path):
        """--ivtc first, then the chain: the film's frames (four in five), each flipped, on the film's timeline."""
        from test_upscale_ivtc import write as telecine

        clip = telecine(tmp_path / "t.mkv", 20, telecined=True)
        with open_video(clip, ivtc=True) as r:
            film = [(f.pts, f.image) for f in r]
        with open_video(clip, ivtc=True, filters="hflip") as r:
            assert r.info.rate == Fraction(24000, 1001)
            flipped = [(f.pts, f.image) for f in r]
        assert [p for p, _ in flipped] == [p for p, _ in film] and len(film) >= 19
        for (_, a), (_, b) in zip(flipped, film, strict=True):
            np.testing.assert_array_equal(a, b[:, ::-1])

    def test_crop_auto_looks_at_filtered_frames(self, lossless_clip):
        with open_video(lossless_clip, filters="pad=iw:ih+16:0:8") as r:
            samples = r.sample(4)
        assert len(samples) == 4 and all(s.shape == (56, 56, 3) for s in samples)
        assert not samples[0][:8].any() and not samples[0][48:].any()


class TestUpscale:
    def test_a_filters_crop_upscales_as_crop_does(self, lossless_clip, tmp_path, torch_runner):
        a = upscale(UpscaleConfig(lossless_clip, tmp_path / "a.mkv", encode=LOSSLESS, frames=10,
                                  filters="crop=48:32:4:4"), runner=torch_runner)
        c = upscale(UpscaleConfig(lossless_clip, tmp_path / "c.mkv", encode=LOSSLESS, frames=10,
                                  crop=Crop(48, 32, 4, 4)), runner=torch_runner)
        assert a.input_size == (32, 48) and a.output_size == (128, 192) == c.output_size
        assert a.filters == "crop=48:32:4:4" and c.filters is None
        for x, y in zip(frames_of(tmp_path / "a.mkv"), frames_of(tmp_path / "c.mkv"), strict=True):
            np.testing.assert_array_equal(x, y)

    def test_bars_a_filter_adds_are_found_by_crop_auto(self, lossless_clip, tmp_path, torch_runner):
        """Padded by the chain, cropped back by --crop auto: bit for bit the clip as it was."""
        a = upscale(UpscaleConfig(lossless_clip, tmp_path / "a.mkv", encode=LOSSLESS, frames=10, crop="auto",
                                  filters="pad=iw:ih+16:0:8"), runner=torch_runner)
        upscale(UpscaleConfig(lossless_clip, tmp_path / "b.mkv", encode=LOSSLESS, frames=10), runner=torch_runner)
        assert (a.crop.width, a.crop.height, a.crop.x, a.crop.y) == (56, 40, 0, 8)
        for x, y in zip(frames_of(tmp_path / "a.mkv"), frames_of(tmp_path / "b.mkv"), strict=True):
            np.testing.assert_array_equal(x, y)

    def test_rate_change_with_audio_copied(self, clips, tmp_path, torch_runner):
        out = tmp_path / "o.mp4"
        result = upscale(UpscaleConfig(clips["aac"], out, filters="fps=12"), runner=torch_runner)
        assert result.frames == 5 and result.rate == 12 and result.copied == ("audio",)
        with av.open(str(out)) as c:
            v, a = c.streams.video[0], c.streams.audio[0]
            assert v.average_rate == 12 and v.frames == 5
            assert float(a.duration * a.time_base) == pytest.approx(10 / 24, abs=0.05)  # the input's audio, whole

    def test_a_chain_that_restamps_keeps_the_audio_with_the_picture(self, tmp_path, torch_runner):
        """ffmpeg's idiom for a cut, trim then setpts=PTS-STARTPTS, restamps the frames from 0: the audio copied
        starts where the picture does in the input (it was copied from 0, a second out of step, warned of as moved),
        as with --start."""
        from videoclips import make_video

        clip = make_video(tmp_path / "in.mkv", frames=48, size=(16, 24), codec="ffv1", pix_fmt="bgr0",
                          audio="libopus")

        def audio_packets(path):
            with av.open(str(path)) as c:
                return [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size]

        cut = upscale(UpscaleConfig(clip, tmp_path / "cut.mkv", encode=LOSSLESS, start=1.0), runner=torch_runner)
        filtered = upscale(UpscaleConfig(clip, tmp_path / "vf.mkv", encode=LOSSLESS,
                                         filters="trim=start=1,setpts=PTS-STARTPTS"), runner=torch_runner)
        assert cut.frames == filtered.frames == 24 and filtered.copied == ("audio",)
        assert audio_packets(tmp_path / "vf.mkv") == audio_packets(tmp_path / "cut.mkv")
        for x, y in zip(frames_of(tmp_path / "vf.mkv"), frames_of(tmp_path / "cut.mkv"), strict=True):
            np.testing.assert_array_equal(x, y)

    def test_a_restamp_after_a_filter_that_holds_a_frame_back_keeps_the_audio_with_the_picture(self, tmp_path,
                                                                                              torch_runner):
        """fps holds a frame back: the first frame out comes after the next one is pushed. The audio copied starts at
        the input's time of the frame the first out was made from (here --start's frame), not a frame late."""
        from videoclips import make_video

        clip = make_video(tmp_path / "in.mkv", frames=48, size=(16, 24), codec="ffv1", pix_fmt="bgr0",
                          audio="libopus")

        def audio_packets(path):
            with av.open(str(path)) as c:
                return [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size]

        cut = upscale(UpscaleConfig(clip, tmp_path / "cut.mkv", encode=LOSSLESS, start=1.0, filters="fps=12"),
                      runner=torch_runner)
        restamped = upscale(UpscaleConfig(clip, tmp_path / "vf.mkv", encode=LOSSLESS, start=1.0,
                                          filters="fps=12,setpts=PTS-STARTPTS"), runner=torch_runner)
        assert cut.frames == restamped.frames == 12 and restamped.copied == ("audio",)
        assert audio_packets(tmp_path / "vf.mkv") == audio_packets(tmp_path / "cut.mkv")

    def test_a_turned_clip_comes_out_upright_and_untagged(self, tmp_path, torch_runner):
        from videoclips import make_video

        clip = make_video(tmp_path / "phone.mp4", frames=4, size=(40, 56), rotation=90)
        result = upscale(UpscaleConfig(clip, tmp_path / "o.mkv", encode=LOSSLESS, filters="hflip"),
                         runner=torch_runner)
        assert result.input_size == (56, 40) and result.output_size == (224, 160)
        with av.open(str(tmp_path / "o.mkv")) as c:
            frame = next(c.decode(video=0))
            assert (frame.width, frame.height, frame.rotation) == (160, 224, 0)

    def test_a_resumed_run_needs_the_same_filters(self, tmp_path, torch_runner):
        from test_upscale_pipeline import _NearestRunner, run, stopped_run

        info = torch_runner.info
        src = write_frames(tmp_path / "in.mkv", [frame_pattern(i, 40, 56) for i in range(40)])
        out = tmp_path / "out.mp4"
        encode = EncodeConfig(crf=0, segment_frames=8)
        stopped_run(src, out, info, encode=encode, filters="hflip")
        with pytest.raises(ConfigError, match="holds a run with other settings \\(filters differ"):
            run(src, out, _NearestRunner(info), encode=encode, resume=True)
        result = run(src, out, _NearestRunner(info), encode=encode, resume=True, filters="hflip")
        assert result.resumed_frames > 0 and result.frames == 40


class TestCli:
    def test_dry_run_and_json_say_the_filters(self, cli, lossless_clip, tmp_path):
        result = cli(lossless_clip, tmp_path / "o.mp4", "--vf", "fps=12,scale=28:20", "--dry-run", "--json",
                     tmp_path / "plan.json")
        assert result.exit_code == 0, result.output
        assert "about 12 frames of 28x20 at 12 fps (through --vf 'fps=12,scale=28:20') to 112x80" in result.stdout
        row = json.loads((tmp_path / "plan.json").read_text())["results"][0]
        assert row["filters"] == "fps=12,scale=28:20" and row["rate"] == "12" and row["input_size"] == [20, 28]
        assert not (tmp_path / "o.mp4").exists()

    def test_dry_run_counts_the_frames_a_speed_change_keeps(self, cli, lossless_clip, tmp_path):
        result = cli(lossless_clip, tmp_path / "o.mp4", "--vf", "setpts=0.5*PTS", "--dry-run")
        assert result.exit_code == 0, result.output
        assert "about 24 frames of 56x40 at 48 fps (through --vf 'setpts=0.5*PTS')" in result.stdout

    @pytest.mark.parametrize(("vf", "said"), [
        ("no_such_filter", "has no filter 'no_such_filter'"),
        ("nlmeans=s=99", "out of range [1 - 30]"),
        ("[a]hflip[b]", "labels"),
    ])
    def test_a_bad_chain_is_one_line_before_any_work(self, cli, lossless_clip, tmp_path, vf, said):
        assert_one_error_line(cli(lossless_clip, tmp_path / "o.mp4", "--vf", vf), said)
        assert not list(tmp_path.iterdir())

    def test_a_denoiser_runs_end_to_end(self, cli, clips, tmp_path):
        out = tmp_path / "o.mp4"
        result = cli(clips["aac"], out, "--vf", "atadenoise", "--frames", "4")
        assert result.exit_code == 0, result.output
        assert frames_of(out)[0].shape == (160, 224, 3)


def test_a_speed_is_said_as_people_write_it():
    from vggx.video.decode import _speed

    assert [_speed(Fraction(f)) for f in ("2", "1/2", "5/4", "4/3", "973/934", "25/24")] == [
        "2", "0.5", "1.25", "4/3", "1.0418", "1.0417"]


def test_messages_name_the_chain_as_given_or_the_turn_vggx_added():
    """A phone clip into images gets a chain of vggx's own (a turn upright): its errors do not say --vf ''."""
    assert FilterChain.parse("hflip").label == "--vf 'hflip'"
    assert FilterChain("", ()).upright(90).label == "turning the frames upright (from 90 degrees)"
