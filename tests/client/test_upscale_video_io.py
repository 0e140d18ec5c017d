"""PyAV decoding and encoding (``vggx/video``): conversions, timing, audio copy, atomic output."""

from __future__ import annotations

import collections
import itertools
import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from videoclips import (
    FONT,
    chapters_of,
    decode_all,
    frame_pattern,
    make_film,
    make_slideshow,
    make_switching_ts,
    make_video,
    remux_offset,
    stream_facts,
)

from vggx.errors import VideoError
from vggx.video import EncodeConfig, VideoWriter, check_output_path, open_video


class TestDecode:
    @pytest.mark.parametrize(("name", "size"),
                             [("odd444", (41, 57)), ("tenbit", (24, 40)), ("gray", (33, 35))])
    def test_any_pixel_format_becomes_rgb24(self, clips, name, size):
        with open_video(clips[name]) as r:
            frames = list(r)
        assert len(frames) == 5
        for f in frames:
            assert f.image.dtype == np.uint8 and f.image.shape == (*size, 3)
        if name == "gray":  # grey decodes to R = G = B
            assert (frames[0].image[..., 0] == frames[0].image[..., 1]).all()
        else:  # close to what was encoded (lossy codecs, chroma conversion)
            err = np.abs(frames[2].image.astype(int) - frame_pattern(2, *size)).mean()
            assert err < 20, err  # a wrong conversion (swapped planes, bad range) is ~80

    def test_lossless_clip_decodes_exactly(self, clips):
        frames = decode_all(clips["twelve"])
        for i, img in enumerate(frames):
            np.testing.assert_array_equal(img, frame_pattern(i, 40, 56))

    def test_info_has_rate_time_base_and_audio(self, clips):
        with open_video(clips["opus"]) as r:
            assert r.info.rate == Fraction(30000, 1001) and r.info.has_audio
            assert (r.info.height, r.info.width) == (40, 56)

    def test_start_and_max_frames_select_frames(self, clips):
        with open_video(clips["twelve"], start=4 / 24, max_frames=3) as r:
            frames = list(r)
        assert [f.index for f in frames] == [0, 1, 2]
        np.testing.assert_array_equal(frames[0].image, frame_pattern(4, 40, 56))

    @pytest.mark.parametrize("gop", [12, 48, 1000])
    def test_start_in_mpeg_ts_counts_from_its_start_and_finds_the_keyframe_before(self, tmp_path, gop):
        """MPEG-TS has no index and its times start where its muxer put them (here 1000 s): --start counted from 0
        and its seek landed past keyframes, the frames before the next one dropped (a GOP of 48 gave frames from 48,
        a single keyframe none at all). Every GOP: the frames from --start on, as a decode from the start has them."""
        import av

        mp4 = make_video(tmp_path / "in.mp4", frames=72, size=(24, 32), options={"g": str(gop), "bf": "0"})
        src = remux_offset(mp4, tmp_path / "in.ts", 1000, "mpegts")  # a broadcast's clock: times from 1000 s
        with av.open(str(src)) as c:
            assert c.start_time > 999_000_000  # µs: what --start must not count
        with open_video(src) as r:
            every = [f.image for f in r]
        with open_video(src, start=1.25, max_frames=4) as r:
            got = [f.image for f in r]
        assert len(got) == 4
        for want, image in zip(every[30:34], got, strict=True):
            np.testing.assert_array_equal(image, want)

    def test_a_whole_matroska_whose_video_starts_late_is_not_taken_for_cut(self, tmp_path):
        """FFmpeg's Matroska muxer writes a track's end time as its DURATION tag, not its span: a complete file whose
        video starts at 1 s (a remuxed recording) says 2 s for 1 s of video, and must not be taken for a cut one; the
        same file cut in half still is."""
        import av

        mp4 = make_video(tmp_path / "in.mp4", frames=24, size=(24, 32))
        late = remux_offset(mp4, tmp_path / "late.mkv", 1)
        with av.open(str(late)) as c:
            assert c.streams.video[0].start_time * c.streams.video[0].time_base == 1
        with open_video(late) as r:
            assert len(list(r)) == 24
        cut = tmp_path / "cut.mkv"
        cut.write_bytes(late.read_bytes()[: late.stat().st_size // 2])
        with open_video(cut) as r, pytest.raises(VideoError, match="the file is truncated or damaged"):
            list(r)

    @pytest.mark.parametrize(("shift", "faststart"), [(0.25, False), (0.25, True), (0.5, True)])
    def test_an_mp4_whose_edit_list_hides_its_first_frames_is_whole(self, tmp_path, caplog, shift, faststart):
        """A stream-copy cut (``ffmpeg -ss X -i in.mp4 -c copy``) keeps the packets from the keyframe before the cut,
        at times before 0, and an edit list hides them: FFmpeg discards their frames, which the container's frame
        count still holds; they were taken for frames missing at the end ("ends after 30 of its 36 frames"). The
        frames shown are read, without a warning; the same file cut short is still found out. Cut mid-GOP (0.25 s)
        the hidden packets are read and their frames discarded; cut at a keyframe (0.5 s), FFmpeg leaves the samples
        before it out of its index."""
        import logging

        gop = make_video(tmp_path / "gop.mp4", frames=36, size=(48, 64),
                         options={"g": "12", "bf": "0", "sc_threshold": "0"})  # keyframes at 0, 12, 24 alone
        cut = _remuxed(gop, tmp_path / "cut.mp4", shift=shift, faststart=faststart)  # frames before 0: hidden
        hidden = round(shift * 24)
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(cut) as r:
            expected = r.expected_frames()  # what the progress bar and --dry-run count: the frames shown, not stored
            got = list(r)
        assert len(got) == 36 - hidden == expected and got[0].pts == 0 and not caplog.records
        np.testing.assert_array_equal(got[0].image, decode_all(gop)[hidden])
        if faststart:  # the index first: a partial download decodes up to its end
            short = tmp_path / "short.mp4"
            short.write_bytes(cut.read_bytes()[: cut.stat().st_size * 6 // 10])
            said = rf"short.mp4 ends after \d+ of its {36 - hidden} frames; the file is truncated or damaged"
            with open_video(short) as r, pytest.raises(VideoError, match=said):
                list(r)

    @pytest.mark.parametrize("ext", [".mp4", ".mov"])
    def test_a_variable_rate_mp4_is_counted_by_its_samples(self, tmp_path, ext):
        """A variable-rate file (four frames at 2 fps, then four at 100) keeps no average rate: its shown duration
        times that rate said 5 frames of 8 (an edit-list estimate taken for every MP4), where the sample count is
        exact."""
        from fractions import Fraction

        import av

        path = tmp_path / f"vfr{ext}"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=30)
            s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
            for i, t in enumerate([0, 500, 1000, 1500, 2000, 2010, 2020, 2030]):
                f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 30, np.uint8), format="rgb24")
                f.pts, f.time_base = t, Fraction(1, 1000)
                for p in s.encode(f):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        with open_video(path) as r:
            expected = r.expected_frames()
            assert expected == len(list(r)) == 8

    @pytest.mark.parametrize("cut_at", [7, 11])
    def test_an_mp4_that_starts_mid_gop_is_read_from_its_first_keyframe(self, tmp_path, caplog, cut_at):
        """A clip cut without re-encoding (or a camera's that starts mid-GOP) starts with frames that refer to a
        keyframe cut away: the decoder gives nothing for them, and they were taken for frames missing at the end
        ("ends after 24 of its 29 frames"). They are left out with a warning that counts them; the same file cut
        short is still found out."""
        import logging

        import av

        gop = make_video(tmp_path / "gop.mp4", frames=36, size=(48, 64),
                         options={"g": "12", "bf": "0", "sc_threshold": "0"})  # keyframes at 0, 12, 24 alone
        clip = _remuxed(gop, tmp_path / "clip.mp4", keep_from=cut_at / 24 - 0.01, faststart=True)
        with av.open(str(clip)) as c:
            keys = [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]
        leading = keys.index(True)
        assert len(keys) == 36 - cut_at and leading == 12 - cut_at
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(clip) as r:
            got = list(r)
        assert len(got) == 24 and float(got[0].pts * r.info.time_base) == pytest.approx(0.5, abs=0.01)  # keyframe 12
        np.testing.assert_array_equal(got[0].image, decode_all(gop)[12])
        warned = [rec.getMessage() for rec in caplog.records]
        said = f"its first {f'{leading} frames' if leading > 1 else 'frame'} before its first keyframe at 0.50 s"
        assert len(warned) == 1 and f"{said} cannot be decoded" in warned[0], warned
        short = tmp_path / "short.mp4"
        short.write_bytes(clip.read_bytes()[: clip.stat().st_size * 6 // 10])
        with open_video(short) as r, pytest.raises(VideoError, match=r"short.mp4 ends after \d+ of its \d+ frames; "
                                                                     r"the file is truncated or damaged"):
            list(r)

    @pytest.mark.parametrize(("times", "audio_seconds"), [((0,), 6.0), ((0, 2, 4, 6), 10.0)])
    def test_a_matroska_slideshow_with_longer_audio_is_whole(self, tmp_path, times, audio_seconds):
        """A still picture or a slideshow with music: a few H.264 frames in Matroska, the audio longer. FFmpeg gives
        such a video stream the container's duration (the audio's), which was taken for the video's ("ends at 1.00 s
        of its 6.01 s of video"); the track's own DURATION tag tells. Every frame is read at its time, and the
        reader's duration is the video's; the same file cut short is still found out."""
        clip = make_slideshow(tmp_path / "slides.mkv", times, audio_seconds)
        with open_video(clip) as r:
            got = list(r)
            assert r.info.duration == pytest.approx(times[-1] + 1)
        assert [float(f.pts * r.info.time_base) for f in got] == list(times)
        if len(times) > 1:
            short = tmp_path / "short.mkv"
            short.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
            said = r"short.mkv ends at \d\.\d\d s of its 7\.00 s of video .*the file is truncated or damaged"
            with open_video(short) as r, pytest.raises(VideoError, match=said):
                list(r)

    def test_start_past_the_end_is_an_error(self, clips):
        with open_video(clips["twelve"], start=100) as r, \
                pytest.raises(VideoError, match="no video frames at or after"):
            list(r)


    @staticmethod
    def _with_cover(path: Path, attached: bool) -> Path:
        """A clip whose first video stream is a cover picture (one JPEG), the real video second (10 frames)."""
        import av

        with av.open(str(path), "w") as c:
            cover = c.add_stream("mjpeg", rate=1)
            cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
            if attached:
                cover.disposition = av.stream.Disposition.attached_pic
            v = c.add_stream("libx264", rate=24)
            v.width, v.height, v.pix_fmt = 56, 40, "yuv420p"
            picture = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24")
            for packet in [*cover.encode(picture.reformat(format="yuvj420p")), *cover.encode()]:
                packet.pts = packet.dts = 0
                c.mux(packet)
            for i in range(10):
                for packet in v.encode(av.VideoFrame.from_ndarray(frame_pattern(i, 40, 56), format="rgb24")):
                    c.mux(packet)
            for packet in v.encode():
                c.mux(packet)
        return path

    @pytest.mark.parametrize("ext", [".mkv", ".mp4"])
    def test_a_cover_picture_is_not_the_video(self, tmp_path, caplog, ext):
        """Cover art (an attached picture, or a one-frame track before the real one) is not what gets upscaled."""
        import logging

        path = self._with_cover(tmp_path / f"c{ext}", attached=True)
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(path) as r:
            frames = list(r)
            assert (r.info.codec, r.info.width, r.info.height, len(frames)) == ("h264", 56, 40, 10)

    def test_of_several_videos_the_one_ffmpeg_picks_is_named(self, tmp_path, caplog):
        import logging

        path = self._with_cover(tmp_path / "two.mkv", attached=False)
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(path) as r:
            assert (r.info.codec, len(list(r))) == ("h264", 10)
        said = [rec.getMessage() for rec in caplog.records]
        assert len(said) == 1 and "has 2 video streams; upscaling stream #1 (h264 56x40)" in said[0]
        assert "--video-stream N picks another" in said[0]

    def test_a_stream_picked_by_its_index(self, tmp_path, caplog):
        import logging

        path = self._with_cover(tmp_path / "two.mkv", attached=False)
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(path, stream=0) as r:
            assert (r.info.codec, r.info.width, len(list(r))) == ("mjpeg", 32, 1)
        assert caplog.records == []  # asked for: no warning
        with pytest.raises(VideoError, match=r"--video-stream 7: .*two.mkv has no such stream there; its video "
                                             r"streams: #0 \(mjpeg 32x32\), #1 \(h264 56x40\)"):
            open_video(path, stream=7)
        audio = make_video(tmp_path / "a.mkv", frames=2, audio="aac")
        with pytest.raises(VideoError, match=r"--video-stream 1: .* has an audio stream there"):
            open_video(audio, stream=1)


def _remuxed(src: Path, dst: Path, keep_from: float = 0.0, shift: float = 0.0, faststart: bool = False) -> Path:
    """``src`` copied without re-encoding into ``dst``: its packets from ``keep_from`` seconds on (a cut that may
    start mid-GOP), every one ``shift`` seconds earlier (those then before 0 are what an MP4 edit list hides)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "+faststart"} if faststart else {}) as o:
        out = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for p in i.demux():
            if p.dts is None or p.pts * p.time_base < keep_from:
                continue
            moved = round(shift / p.time_base)
            p.pts -= moved
            p.dts -= moved
            p.stream = out[p.stream.index]
            o.mux(p)
    return dst


class TestEncode:
    @pytest.mark.parametrize(("codec", "ext"),
                             [("libx264rgb", ".mkv"), ("ffv1", ".mkv"), ("libx264rgb", ".mp4")])
    def test_lossless_codecs_round_trip_exactly(self, tmp_path, codec, ext):
        out = tmp_path / f"out{ext}"
        images = [frame_pattern(i, 40, 56) for i in range(5)]
        with VideoWriter(out, 56, 40, Fraction(25), Fraction(1, 25), EncodeConfig(codec=codec, crf=0)) as w:
            for i, img in enumerate(images):
                w.write(img, i)
        for got, want in zip(decode_all(out), images, strict=True):
            np.testing.assert_array_equal(got, want)
        assert stream_facts(out)["rate"] == 25

    def test_default_is_h264_yuv420p_and_copies_audio_and_title(self, clips, tmp_path):
        out = tmp_path / "out.mp4"
        with open_video(clips["aac"]) as r:
            info = r.info
            with VideoWriter(out, 56, 40, info.rate, info.time_base, audio_source=info.path,
                             metadata=info.metadata) as w:
                for f in r:
                    w.write(f.image, f.pts)
        facts = stream_facts(out)
        assert facts["codec"] == "h264" and facts["pix_fmt"] == "yuv420p"
        assert facts["audio"] == ["aac"] and facts["metadata"].get("title") == "vggx test clip"
        assert facts["rate"] == 24 and facts["frames"] == 10

    @pytest.mark.parametrize("threads", [None, 1, 3, 0])
    def test_frames_converted_ahead_equal_the_encoders_own_conversion(self, tmp_path, threads):
        """RGB -> yuv420p runs in worker threads ahead of x264; lossless x264 keeps the yuv planes, so equal
        decoded frames mean the same conversion as PyAV's encoder doing it itself (frame by frame)."""
        import av

        rng = np.random.default_rng(0)
        wide = rng.integers(0, 256, (40, 80, 3), dtype=np.uint8)
        images = [frame_pattern(i, 40, 56) for i in range(12)]
        images[3] = images[3][:, ::-1]  # a view without contiguous rows: copied, not wrapped
        images[4] = wide[:, 10:66]  # rows wider than the frame: wrapped with their stride
        out, ref = tmp_path / "out.mkv", tmp_path / "ref.mkv"
        with VideoWriter(out, 56, 40, Fraction(25), Fraction(1, 25),
                         EncodeConfig(crf=0, convert_threads=threads)) as w:
            for i, img in enumerate(images):
                w.write(img, i)
        with av.open(str(ref), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt, s.options = 56, 40, "yuv420p", {"crf": "0"}
            cc = s.codec_context
            cc.colorspace = cc.color_primaries = cc.color_trc = cc.color_range = 1  # BT.709, limited
            for i, img in enumerate(images):
                f = _bt709(np.ascontiguousarray(img))
                f.pts = i
                for p in s.encode(f):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        got, want = decode_all(out), decode_all(ref)
        assert len(got) == len(want) == 12
        assert stream_facts(out)["color"] == stream_facts(ref)["color"] == (1, 1, 1, 1)
        for g, r in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, r)

    @pytest.mark.parametrize("threads", [None, 0])
    def test_a_bad_frame_is_one_clear_error_and_leaves_no_file(self, tmp_path, threads):
        out = tmp_path / "out.mp4"
        with (pytest.raises(VideoError, match=r"converting a frame for .*out\.mp4 failed"),
              VideoWriter(out, 56, 40, Fraction(25), Fraction(1, 25), EncodeConfig(convert_threads=threads)) as w):
            w.write(frame_pattern(0, 40, 56), 0)
            w.write(np.zeros((40, 56, 3), np.float32), 1)
        assert list(tmp_path.iterdir()) == []

    def test_abort_leaves_no_file(self, tmp_path):
        out = tmp_path / "out.mp4"
        w = VideoWriter(out, 56, 40, Fraction(25), Fraction(1, 25))
        w.write(frame_pattern(0, 40, 56), 0)
        w.abort()
        assert list(tmp_path.iterdir()) == []

    def test_an_image_sequence_makes_its_folder_and_takes_it_away_on_abort(self, tmp_path):
        """x4/%04d.png with no x4/ (the README's example): made, as a folder run makes its output folder; an
        aborted run leaves no empty x4/ behind, and a folder that was there stays."""
        from vggx.video.encode import check_output_path

        out = tmp_path / "x4" / "%04d.png"
        assert check_output_path(out) == out
        w = VideoWriter(out, 56, 40, Fraction(25), Fraction(1, 25), EncodeConfig(codec="png"))
        w.write(frame_pattern(0, 40, 56), 0)
        w.abort()
        assert list(tmp_path.iterdir()) == []
        with VideoWriter(out, 56, 40, Fraction(25), Fraction(1, 25), EncodeConfig(codec="png")) as w:
            w.write(frame_pattern(0, 40, 56), 0)
        assert sorted(p.name for p in (tmp_path / "x4").iterdir()) == ["0001.png"]
        w = VideoWriter(out.with_name("b%04d.png"), 56, 40, Fraction(25), Fraction(1, 25), EncodeConfig(codec="png"))
        w.abort()
        assert sorted(p.name for p in (tmp_path / "x4").iterdir()) == ["0001.png"]
        with pytest.raises(VideoError, match=r"directory .*a[/\\]b does not exist"):  # one level only, like folders
            check_output_path(tmp_path / "a" / "b" / "%04d.png")

    def test_exception_inside_with_leaves_no_file(self, tmp_path):
        with pytest.raises(KeyboardInterrupt), VideoWriter(tmp_path / "o.mkv", 56, 40, Fraction(25),
                                                           Fraction(1, 25)) as w:
            w.write(frame_pattern(0, 40, 56), 0)
            raise KeyboardInterrupt
        assert list(tmp_path.iterdir()) == []

    def test_unknown_codec_is_one_clear_error(self, tmp_path):
        with pytest.raises(VideoError, match="unknown video encoder 'nope'"):
            VideoWriter(tmp_path / "o.mp4", 56, 40, Fraction(25), Fraction(1, 25), EncodeConfig(codec="nope"))
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize("encoders", [1, 2])
    @pytest.mark.parametrize("frames", [1, 2, 5])
    @pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
    def test_x265_outputs_shorter_than_its_frame_delay(self, tmp_path, frames, suffix, encoders):
        """libx265 flushed with fewer frames than its B-frame delay gives dts from uninitialised memory
        (-7142757879101202556): the MP4 muxer refused it ("Not yet implemented in FFmpeg"), Matroska with audio
        interleaved ("Invalid argument"). The dts is mended; the frames are all there, in order. Segments
        (--encoders, --resume) restamp the dts from the first packet's delay, which such a dts made absurd."""
        import av

        out = tmp_path / f"o{suffix}"
        with VideoWriter(out, 56, 40, Fraction(24), Fraction(1, 24), EncodeConfig(codec="libx265",
                                                                                  encoders=encoders)) as w:
            for i in range(frames):
                w.write(frame_pattern(i, 40, 56), i)
        with av.open(str(out)) as c:
            decoded = list(c.decode(video=0))
        assert [f.pts for f in decoded] == sorted(f.pts for f in decoded) and len(decoded) == frames

    @pytest.mark.parametrize(("dts", "delay"), [(-7142757879101202556, 0), (5, 0), (-2, 2), (None, 0)])
    def test_segments_take_the_encoders_delay_only_from_a_sane_first_dts(self, tmp_path, dts, delay):
        from types import SimpleNamespace

        w = VideoWriter(tmp_path / "o.mp4", 56, 40, Fraction(24), Fraction(1, 24),
                        EncodeConfig(codec="libx265", encoders=2))
        try:
            w._first_pts, w._dts_source = 0, collections.deque([0, 1])
            w._restamp_dts(SimpleNamespace(pts=0, dts=dts, time_base=Fraction(1, 24)))
            assert w._reorder == delay
        finally:
            w.abort()

    def test_crf_range_is_checked(self):
        with pytest.raises(VideoError, match=r"--crf must be in 0\.\.51 for libx264, got 99"):
            EncodeConfig(crf=99)
        with pytest.raises(VideoError, match=r"--crf must be in 0\.\.63, got 64"):
            EncodeConfig(codec="libvpx-vp9", crf=64)
        assert EncodeConfig(codec="libvpx-vp9", crf=63).crf == 63

    def test_preset_is_checked(self):
        with pytest.raises(VideoError, match="--preset must be one of ultrafast, "):
            EncodeConfig(preset="warp9")
        with pytest.raises(VideoError, match="--preset applies to libx264, libx264rgb, libx265, not ffv1"):
            EncodeConfig(codec="ffv1", preset="fast")

    @pytest.mark.parametrize(("preset", "subme"), [(None, b"subme=7"), ("ultrafast", b"subme=0")])
    def test_x264_preset_and_frame_threads_reach_the_encoder(self, tmp_path, preset, subme):
        """x264 writes its settings into the stream (an SEI message): read them back from the file."""
        out = tmp_path / "o.mp4"
        frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(6)]
        with VideoWriter(out, 64, 48, Fraction(25), Fraction(1, 25), EncodeConfig(preset=preset)) as w:
            for i, f in enumerate(frames):
                w.write(f, i)
        data = out.read_bytes()
        assert subme in data
        assert b"sliced_threads=0" in data  # frame threads, not PyAV's default slice threads


class TestParallelSegments:
    """``EncodeConfig(encoders=N)``: N encoders on consecutive segments, packets muxed in order into one stream."""

    @staticmethod
    def _planes(n, h=40, w=56):
        import torch

        from vggx.video.color import rgb_to_yuv420p

        return [rgb_to_yuv420p(torch.from_numpy(np.ascontiguousarray(frame_pattern(i, h, w)))).numpy()
                for i in range(n)]

    @staticmethod
    def _decoded(path):
        import av

        with av.open(str(path)) as c:
            v = c.streams.video[0]
            return [(f.pts, f.key_frame, f.to_ndarray()) for f in c.decode(v)], v.sample_aspect_ratio

    @pytest.mark.parametrize("ext", [".mp4", ".mkv"])
    @pytest.mark.parametrize(("codec", "encoders"), [("libx264", 2), ("libx264", 3), ("libx265", 2)])
    def test_segments_decode_exactly_with_the_same_timestamps(self, tmp_path, ext, codec, encoders):
        """Lossless, so each decoded frame is its input exactly; timestamps and pixel shape are those of one
        encoder's file; a keyframe opens every segment."""
        planes = self._planes(70)
        outs = {}
        for n in (1, encoders):
            outs[n] = tmp_path / f"e{n}{ext}"
            cfg = EncodeConfig(codec=codec, crf=0, encoders=n, segment_frames=16,
                               options={"x265-params": "lossless=1:log-level=error"} if codec == "libx265" else {})
            with VideoWriter(outs[n], 56, 40, Fraction(25), Fraction(1, 25), cfg,
                             sample_aspect_ratio=Fraction(4, 3)) as w:
                for i, p in enumerate(planes):
                    w.write(p, i)
        (one, sar_one), (many, sar_many) = self._decoded(outs[1]), self._decoded(outs[encoders])
        assert len(many) == len(one) == 70
        assert [f[0] for f in many] == [f[0] for f in one]
        assert sar_many == sar_one == Fraction(4, 3)
        assert [i for i, f in enumerate(many) if f[1]] == [0, 16, 32, 48, 64]
        for (_, _, got), want in zip(many, planes, strict=True):
            np.testing.assert_array_equal(got, want)
        # decode timestamps as one encoder's: even steps across the seams, so muxers derive the same durations
        assert self._dts(outs[encoders]) == self._dts(outs[1])

    @pytest.mark.parametrize(("codec", "ext", "lossless"), [
        ("libsvtav1", ".mkv", False), ("libsvtav1", ".mp4", False), ("libvpx-vp9", ".webm", False),
        ("prores_ks", ".mov", False), ("ffv1", ".mkv", True)])
    def test_other_codecs_segments_join_into_one_stream(self, tmp_path, codec, ext, lossless):
        """SVT-AV1, VP9, ProRes and FFV1 segments: one stream with one encoder's frames, timestamps and decode
        timestamps, a keyframe opening every segment; the lossy ones as close to the input as one encoder's (the
        extra keyframes apart), FFV1 exactly the input."""
        import av

        frames = [frame_pattern(i, 48, 64) for i in range(70)]
        outs, decoded = {}, {}
        for n in (1, 2):
            outs[n] = tmp_path / f"e{n}{ext}"
            cfg = EncodeConfig(codec=codec, crf=None if codec in ("prores_ks", "ffv1") else 30, encoders=n,
                               segment_frames=16)
            with VideoWriter(outs[n], 64, 48, Fraction(25), Fraction(1, 25), cfg) as w:
                for i, image in enumerate(frames):
                    w.write(image, i)
            with av.open(str(outs[n])) as c:
                decoded[n] = [(f.pts, f.key_frame, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
        one, many = decoded[1], decoded[2]
        assert len(many) == len(one) == 70
        assert [f[0] for f in many] == [f[0] for f in one] and self._dts(outs[2]) == self._dts(outs[1])
        assert {0, 16, 32, 48, 64} <= {i for i, f in enumerate(many) if f[1]}

        def psnr(got) -> float:
            err = np.mean([(g[2].astype(float) - want) ** 2 for g, want in zip(got, frames, strict=True)])
            return float("inf") if err == 0 else 10 * np.log10(255 ** 2 / err)

        if lossless:
            assert psnr(many) == psnr(one) == float("inf")
        else:
            assert psnr(many) > psnr(one) - 1.0

    @pytest.mark.parametrize("stop_at", ["write", "manifest"])
    def test_a_stop_while_a_segment_is_kept_keeps_it_once(self, tmp_path, monkeypatch, stop_at):
        """Ctrl-C or SIGTERM (raised wherever the main thread is) while a finished segment goes into the store, before
        its file is written or after the store counted it but before the manifest said so: on the way out it is
        kept once and whole (it used to be kept empty: the packets had left the segment, not reached the store, and
        the resumed run failed at the end)."""
        from vggx.video import SegmentStore

        store = SegmentStore(tmp_path / "store", {"test": 1})
        calls = {"n": 0}
        real = SegmentStore._write_manifest if stop_at == "manifest" else SegmentStore.add

        def stopping(self, *args):
            calls["n"] += 1
            if stop_at == "manifest" and calls["n"] == 2:
                raise KeyboardInterrupt  # the second segment counted, the manifest not yet written
            if stop_at == "write" and calls["n"] == 2:
                raise KeyboardInterrupt  # the second segment's packets out of the segment, not in the store
            return real(self, *args)

        monkeypatch.setattr(SegmentStore, "_write_manifest" if stop_at == "manifest" else "add", stopping)
        cfg = EncodeConfig("libx264", crf=0, segment_frames=8)
        with pytest.raises(KeyboardInterrupt), \
                VideoWriter(tmp_path / "o.mp4", 56, 40, Fraction(25), Fraction(1, 25), cfg, store=store) as w:
            for i, p in enumerate(self._planes(40)):
                w.write(p, i)
        kept = SegmentStore(tmp_path / "store", {"test": 1})
        packets = [p for seg in kept.packets() for p in seg]
        assert kept.frames_done >= 16 and kept.frames_done % 8 == 0
        assert len(packets) == kept.frames_done  # one packet a frame, every segment whole
        assert sorted(p.pts for p in packets) == list(range(kept.frames_done))  # none twice, none missing

    def test_a_resumed_run_goes_on_after_a_time_that_went_back(self, tmp_path):
        """A concatenation (its second part stamped from 0 again) stopped in its second part: the stored frames were
        moved on after the first part, and the resumed writer, which knew nothing of that, wrote the rest at their
        own earlier times (the final mux refused the seam). It goes on after the last stored frame."""
        import av

        from vggx.video import SegmentStore

        times = [*range(48), *range(48)]  # 25 fps, two 48-frame parts
        cfg = EncodeConfig("libx264", crf=0, segment_frames=8)
        out = tmp_path / "o.mp4"
        with pytest.raises(KeyboardInterrupt), VideoWriter(out, 56, 40, Fraction(25), Fraction(1, 25), cfg,
                                                           store=SegmentStore(tmp_path / "store", {"t": 1})) as w:
            for i, t in enumerate(times[:70]):
                w.write(frame_pattern(i % 24, 40, 56), t)
            raise KeyboardInterrupt  # stopped in the second part
        store = SegmentStore(tmp_path / "store", {"t": 1})
        done = store.frames_done
        assert 48 < done < 70
        with VideoWriter(out, 56, 40, Fraction(25), Fraction(1, 25), cfg, store=store) as w:
            for i, t in enumerate(times[done:], start=done):
                w.write(frame_pattern(i % 24, 40, 56), t)
        with av.open(str(out)) as c:
            got = [f.pts * f.time_base for f in c.decode(c.streams.video[0])]
        assert len(got) == 96 and all(b - a == Fraction(1, 25) for a, b in itertools.pairwise(got))

    @pytest.mark.parametrize("encoders", [1, 2])
    def test_x265_keeps_its_banner_to_itself(self, tmp_path, capfd, encoders):
        """x265 prints 25 lines of its own as each encoder opens, and --encoders/--resume open one a segment: its info
        lines are off (its warnings too where segments are encoded; their level is in the stream header)."""
        cfg = EncodeConfig("libx265", encoders=encoders, segment_frames=8)
        with VideoWriter(tmp_path / "o.mkv", 64, 48, Fraction(25), Fraction(1, 25), cfg) as w:
            for i in range(24):
                w.write(frame_pattern(i, 48, 64), i)
        printed = capfd.readouterr().err
        assert "x265 [info]" not in printed
        assert ("x265 [warning]" in printed) == (encoders == 1)  # "Source height < 720p; disabling lookahead-slices"
        assert stream_facts(tmp_path / "o.mkv")["frames"] == 24

    def test_svt_av1_keeps_its_banner_to_itself(self, tmp_path):
        """SVT-AV1 reads its log level once a process (SVT_LOG): a fresh one, as a run is, whose first SVT-AV1
        encoder is the container check's probe (it printed the 20 lines: SVT_LOG was set as the writer opened)."""
        import subprocess
        import sys

        script = (
            "import sys; from fractions import Fraction; sys.path.insert(0, sys.argv[2])\n"
            "from videoclips import frame_pattern\n"
            "from vggx.video import EncodeConfig, VideoWriter\n"
            "from vggx.video.encode import check_container, check_encoder_starts\n"
            "cfg = EncodeConfig('libsvtav1', crf=30, encoders=2, segment_frames=8)\n"
            "check_container(sys.argv[1], 'libsvtav1'); check_encoder_starts(cfg)\n"
            "with VideoWriter(sys.argv[1], 64, 48, Fraction(25), Fraction(1, 25), cfg) as w:\n"
            "    [w.write(frame_pattern(i, 48, 64), i) for i in range(24)]\n")
        env = {k: v for k, v in os.environ.items() if k != "SVT_LOG"}
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "o.mkv"), str(Path(__file__).parent)],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "Svt[" not in done.stderr, done.stderr
        assert stream_facts(tmp_path / "o.mkv")["frames"] == 24

    @staticmethod
    def _dts(path):
        import av

        with av.open(str(path)) as c:
            return [p.dts for p in c.demux(c.streams.video[0]) if p.size]

    def test_audio_is_copied_beside_the_segments(self, clips, tmp_path):
        out = tmp_path / "out.mp4"
        with open_video(clips["aac"]) as r:
            info = r.info
            with VideoWriter(out, 56, 40, info.rate, info.time_base, EncodeConfig(encoders=2, segment_frames=8),
                             audio_source=info.path) as w:
                for f in r:
                    w.write(f.image, f.pts)
        facts = stream_facts(out)
        assert facts["audio"] == ["aac"] and facts["frames"] == 10 and facts["rate"] == 24

    def test_abort_mid_segment_stops_the_encoders_and_leaves_no_file(self, tmp_path):
        import threading

        w = VideoWriter(tmp_path / "out.mp4", 56, 40, Fraction(25), Fraction(1, 25),
                        EncodeConfig(encoders=3, segment_frames=8))
        for i, p in enumerate(self._planes(30)):
            w.write(p, i)
        w.abort()
        assert list(tmp_path.iterdir()) == []
        assert not [t for t in threading.enumerate() if t.name.startswith("vggx-encode")]

    def test_settings_are_checked(self):
        with pytest.raises(VideoError, match=r"--encoders must be in 1\.\.64, got 0"):
            EncodeConfig(encoders=0)
        with pytest.raises(VideoError, match=r"--encoders applies to .*not mpeg4"):
            EncodeConfig(codec="mpeg4", encoders=2)
        with pytest.raises(VideoError, match="segment_frames must be >= 8"):
            EncodeConfig(encoders=2, segment_frames=4)


def test_frames_x265_would_crash_on_are_refused(tmp_path):
    """x265 in 8 bits aborts the process (heap corruption) on frames at most 48x30: refused with one error before the
    encoder opens; 10 bits and a frame one step larger encode."""
    from vggx.video import check_frame_encodable

    with pytest.raises(VideoError, match=r"libx265 crashes on 8-bit frames as small as 44x28"):
        VideoWriter(tmp_path / "o.mkv", 44, 28, Fraction(25), Fraction(1, 25), EncodeConfig("libx265"))
    assert list(tmp_path.iterdir()) == []
    check_frame_encodable(EncodeConfig("libx265", pix_fmt="yuv420p10le"), 44, 28)
    check_frame_encodable(EncodeConfig("libx265"), 50, 30)
    check_frame_encodable(EncodeConfig("libx265"), 42, 32)
    check_frame_encodable(EncodeConfig("libx264"), 44, 28)


class TestOutputPath:
    def test_missing_directory(self, tmp_path):
        with pytest.raises(VideoError, match=r"directory .* does not exist"):
            check_output_path(tmp_path / "nope" / "o.mp4")

    def test_parent_is_a_file(self, tmp_path):
        (tmp_path / "f").write_text("x")
        with pytest.raises(VideoError, match=r"directory .*f is a file, not a folder$"):  # it said "does not exist"
            check_output_path(tmp_path / "f" / "o.mp4")

    def test_output_is_the_input(self, clips):
        with pytest.raises(VideoError, match="is the input file"):
            check_output_path(clips["aac"], clips["aac"])

    def test_needs_an_extension(self, tmp_path):
        with pytest.raises(VideoError, match="give it an extension"):
            check_output_path(tmp_path / "out")


def test_make_video_helper_writes_real_ffmpeg_files(tmp_path):
    p = make_video(tmp_path / "x.mp4", frames=3)
    assert stream_facts(p)["codec"] == "h264"


def _bt709(rgb: np.ndarray):
    """FFmpeg's own RGB -> yuv420p conversion with the writer's colour settings (BT.709, limited range)."""
    import av
    from av.video.reformatter import Colorspace

    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709,
                                                                     dst_color_range=1)


class TestYuv420p:
    """RGB -> yuv420p in PyTorch (what the CUDA fast path runs on the GPU) against FFmpeg's swscale."""

    @pytest.mark.parametrize(("h", "w"), [(16, 16), (40, 56), (38, 50), (160, 224)])
    @pytest.mark.parametrize("kind", ["noise", "smooth"])
    def test_matches_swscale_within_one_level(self, h, w, kind):
        import torch

        from vggx.video.color import rgb_to_yuv420p

        if kind == "noise":
            rgb = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
        else:
            rgb = frame_pattern(3, h, w)
        want = _bt709(rgb).to_ndarray()
        got = rgb_to_yuv420p(torch.from_numpy(rgb)).numpy()
        assert got.shape == want.shape == (h * 3 // 2, w)
        diff = np.abs(got.astype(np.int16) - want)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.05, (diff.max(), (diff > 0).mean())

    def test_batches_and_errors(self):
        import torch

        from vggx.video.color import rgb_to_yuv420p

        rgb = torch.from_numpy(np.stack([frame_pattern(i, 40, 56) for i in range(6)]).reshape(2, 3, 40, 56, 3))
        out = rgb_to_yuv420p(rgb)
        assert out.shape == (2, 3, 60, 56) and out.dtype == torch.uint8
        torch.testing.assert_close(out[1, 2], rgb_to_yuv420p(rgb[1, 2]), rtol=0, atol=0)
        with pytest.raises(ValueError, match="even frame size, got 55x40"):
            rgb_to_yuv420p(rgb[..., :55, :])
        with pytest.raises(ValueError, match=r"expected uint8 \(\.\.\., H, W, 3\)"):
            rgb_to_yuv420p(rgb.float())

    @pytest.mark.parametrize("threads", [None, 0])
    def test_writer_encodes_yuv420p_planes_as_they_are(self, tmp_path, threads):
        """Planes written directly equal the writer's own conversion of the same RGB (lossless x264)."""

        images = [frame_pattern(i, 40, 56) for i in range(6)]
        planes = [_bt709(im).to_ndarray() for im in images]
        outs = {}
        for name, frames in (("rgb", images), ("yuv", planes)):
            outs[name] = tmp_path / f"{name}.mkv"
            with VideoWriter(outs[name], 56, 40, Fraction(25), Fraction(1, 25),
                             EncodeConfig(crf=0, convert_threads=threads)) as w:
                for i, f in enumerate(frames):
                    w.write(f, i)
        for a, b in zip(decode_all(outs["rgb"]), decode_all(outs["yuv"]), strict=True):
            np.testing.assert_array_equal(a, b)


def _chroma_sample_location(path) -> set[str]:
    """The chroma_sample_loc_type fields of a video's first packet's parameter sets (FFmpeg's trace_headers)."""
    import av
    import av.logging
    from av.bitstream import BitStreamFilterContext

    from vggx.video.encode import ffmpeg_log

    with av.open(str(path)) as c, ffmpeg_log(av.logging.DEBUG) as logs:
        stream = c.streams.video[0]
        trace = BitStreamFilterContext("trace_headers", stream)
        trace.filter(next(p for p in c.demux(stream) if p.size))
    return {line.split("=")[-1].strip() for _, _, line in logs if "chroma_sample_loc_type_top_field" in line}


@pytest.mark.parametrize(("codec", "options", "where"), [
    ("libx264", {}, {"1"}), ("libx265", {}, {"1"}), ("libx264", {"chroma_sample_location": "left"}, set())])
def test_the_chroma_siting_is_said(tmp_path, codec, options, where):
    """4:2:0 chroma is made centred between the luma samples (swscale's averaging, rgb_to_yuv420p's): the stream
    says so (type 1); untagged, players take it as left of centre (type 0), half a pixel off. -e overrides it (left:
    the default, which x264 leaves unsaid)."""
    out = tmp_path / "o.mp4"
    with VideoWriter(out, 64, 48, Fraction(24), Fraction(1, 24), EncodeConfig(codec=codec, options=options)) as w:
        for i in range(2):
            w.write(frame_pattern(i, 48, 64), i)
    assert _chroma_sample_location(out) == where


class TestColour:
    """YUV output is BT.709 and tagged so; untagged input is read as players show it."""

    PATCH = np.array([200, 50, 30], np.uint8)  # a saturated red: BT.601 vs BT.709 differ by ~14 levels here

    def test_h264_output_is_tagged_bt709_and_keeps_colours(self, tmp_path):
        import av

        out = tmp_path / "o.mp4"
        image = np.broadcast_to(self.PATCH, (48, 64, 3)).copy()
        with VideoWriter(out, 64, 48, Fraction(25), Fraction(1, 25), EncodeConfig(crf=0)) as w:
            for i in range(3):
                w.write(image, i)
        assert stream_facts(out)["color"] == (1, 1, 1, 1)  # BT.709 matrix, primaries, transfer; limited range
        decoded = decode_all(out)[1].astype(int)
        assert np.abs(decoded - self.PATCH).max() <= 2
        with av.open(str(out)) as c:  # what a BT.601 reading (FFmpeg's untagged default) would have shown
            frame = next(c.decode(video=0))
            from av.video.reformatter import Colorspace

            as601 = frame.to_ndarray(format="rgb24", src_colorspace=Colorspace.ITU601).astype(int)
        assert np.abs(as601 - self.PATCH).max() > 10

    @pytest.mark.parametrize(("size", "matrix"), [((600, 32), "bt709"), ((48, 64), "bt601")])
    def test_untagged_input_is_read_as_players_do(self, tmp_path, size, matrix):
        """Untagged YUV above SD (more than 576 lines or 1024 columns) is BT.709, SD is BT.601."""
        import av
        from av.video.reformatter import Colorspace

        h, w = size
        path = tmp_path / "in.mkv"
        image = np.broadcast_to(self.PATCH, (h, w, 3)).copy()
        space = Colorspace.ITU709 if matrix == "bt709" else Colorspace.ITU601
        with av.open(str(path), "w") as c:  # converted with that matrix, but no tags in the stream
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt, s.options = w, h, "yuv420p", {"crf": "0"}
            for i in range(2):
                f = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p", dst_colorspace=space)
                f.pts = i
                for p in s.encode(f):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        assert stream_facts(path)["color"][0] == 2  # unspecified
        with open_video(path) as r:
            got = next(iter(r)).image.astype(int)
        assert np.abs(got - self.PATCH).max() <= 2

    def test_full_range_tagged_input_is_not_clipped(self, tmp_path):
        """yuv420p tagged full range (phone footage): near-black and near-white survive the conversion (FFmpeg
        reads the frame's range tag; this pins it, as a limited-range reading would clip both ends)."""
        import av
        from av.video.reformatter import ColorRange, Colorspace

        path = tmp_path / "pc.mkv"
        image = np.zeros((48, 64, 3), np.uint8)
        image[:, :32] = 5  # below limited range's black (16 -> 0 when read as limited)
        image[:, 32:] = 250
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt, s.options = 64, 48, "yuv420p", {"crf": "0"}
            s.codec_context.color_range = 2  # full ("pc")
            s.codec_context.colorspace = 1
            for i in range(2):
                f = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
                    format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.JPEG)
                f.pts = i
                for p in s.encode(f):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        assert stream_facts(path)["color"][3] == 2
        with open_video(path) as r:
            got = next(iter(r)).image.astype(int)
        assert np.abs(got[4:-4, 4:28] - 5).max() <= 2 and np.abs(got[4:-4, 36:-4] - 250).max() <= 2


class TestOtherStreams:
    """Every audio stream is copied with its metadata; subtitles where the container takes them."""

    @staticmethod
    def _source(tmp_path):
        """A clip with two audio tracks (English AAC, French Opus) and SubRip subtitles."""
        return make_video(tmp_path / "multi.mkv", frames=8, size=(40, 56), audio=[("aac", "eng"), ("libopus", "fra")],
                          subtitles="1\n00:00:00,000 --> 00:00:00,300\nhello\n\n")

    def test_all_audio_tracks_and_subtitles_are_kept_in_mkv(self, tmp_path):
        import av

        src = self._source(tmp_path)
        out = tmp_path / "o.mkv"
        with open_video(src) as r, VideoWriter(out, 56, 40, r.info.rate, r.info.time_base,
                                               audio_source=src) as w:
            for f in r:
                w.write(f.image, f.pts)
        with av.open(str(out)) as c:
            audio = [(s.codec_context.name, s.metadata.get("language")) for s in c.streams.audio]
            subtitles = [s.codec_context.name for s in c.streams.subtitles]
        assert audio == [("aac", "eng"), ("opus", "fra")] and subtitles == ["srt"]

    def test_subrip_mp4_cannot_take_is_converted_to_mov_text(self, tmp_path, caplog):
        """MP4 holds no SubRip: they were left out with a warning; now converted to its mov_text, as ffmpeg does."""
        import logging

        import av

        src = self._source(tmp_path)
        out = tmp_path / "o.mp4"
        with caplog.at_level(logging.WARNING, logger="vggx.video.encode"), open_video(src) as r, \
                VideoWriter(out, 56, 40, r.info.rate, r.info.time_base, audio_source=src) as w:
            for f in r:
                w.write(f.image, f.pts)
        with av.open(str(out)) as c:
            assert [s.codec_context.name for s in c.streams.audio] == ["aac", "opus"]
            assert [s.codec_context.name for s in c.streams.subtitles] == ["mov_text"]
        assert not any("subtitles" in rec.getMessage() for rec in caplog.records)


class TestSizeChanges:
    """An adaptive stream that switches renditions (joined HLS segments): the frames after the switch are resized to
    the first size, with one warning per new size, rather than ending the run."""

    def test_frames_of_another_size_come_at_the_first_size(self, tmp_path, caplog):
        import logging

        src = make_switching_ts(tmp_path / "abr.ts")
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(src) as r:
            frames = list(r)
        assert [f.image.shape for f in frames] == [(40, 56, 3)] * 20
        assert [f.pts for f in frames] == sorted(f.pts for f in frames) and len({f.pts for f in frames}) == 20
        warnings = [rec.getMessage() for rec in caplog.records]
        assert len(warnings) == 1 and "changes mid-stream at frame 10 (56x40 -> 42x30)" in warnings[0]
        # resized, not cropped or padded: close to an independent bicubic resize of the frame as decoded (Lanczos
        # and bicubic differ by a few levels on this noisy pattern)
        import av
        import torch
        import torch.nn.functional as F

        with av.open(str(src)) as c:
            native = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][15]
        assert native.shape == (30, 42, 3)
        up = F.interpolate(torch.from_numpy(native).permute(2, 0, 1)[None].float(), size=(40, 56), mode="bicubic",
                           align_corners=False).clamp(0, 255).round()[0].permute(1, 2, 0).numpy()
        err = np.abs(frames[15].image.astype(int) - up).mean()
        assert err < 10, err

    def test_frames_of_another_shape_keep_it_inside_black_bars(self, tmp_path, caplog):
        """A 4:3-ish rendition (40x40) in a 1.4:1 stream (56x40): pillarboxed, as a player shows it, not stretched;
        the picture itself as decoded (the same height: no resizing)."""
        import logging

        import av

        src = make_switching_ts(tmp_path / "abr.ts", sizes=((40, 56), (40, 40)))
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(src) as r:
            frames = list(r)
        assert [f.image.shape for f in frames] == [(40, 56, 3)] * 20
        assert "(56x40 -> 40x40); such frames are resized to 40x40 (their shape kept) inside black bars" in caplog.text
        with av.open(str(src)) as c:
            native = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][15]
        boxed = frames[15].image
        assert not boxed[:, :8].any() and not boxed[:, 48:].any()
        np.testing.assert_array_equal(boxed[:, 8:48], native)

    def test_the_pipeline_upscales_the_whole_stream(self, tmp_path, tiny_checkpoint_path):
        from vggx.client import UpscaleConfig, upscale
        from vggx.client.runners import TorchRunner

        src = make_switching_ts(tmp_path / "abr.ts")
        with TorchRunner(tiny_checkpoint_path, threads=1) as runner:
            result = upscale(UpscaleConfig(src, tmp_path / "o.mkv", encode=EncodeConfig(codec="ffv1")), runner=runner)
        assert result.frames == 20 and result.output_size == (160, 224)
        assert stream_facts(tmp_path / "o.mkv")["frames"] == 20


class TestChaptersAndAttachments:
    """A film's chapters, and an anime release's fonts (Matroska attachments its ASS subtitles are drawn with)."""

    @staticmethod
    def _source(tmp_path):
        return make_film(tmp_path / "film.mkv")

    @staticmethod
    def _write(src, out, start_frame=0, frames=None):
        with open_video(src) as r:
            info = r.info
            end = None if frames is None else (start_frame + frames) / 24
            assert info.has_chapters and info.has_attachments and info.has_extras and not info.has_audio
            with VideoWriter(out, 56, 40, info.rate, info.time_base, audio_source=src, audio_start=start_frame / 24,
                             audio_end=end) as w:
                for f in r:
                    if f.index >= start_frame and (frames is None or f.index < start_frame + frames):
                        w.write(f.image, f.pts - start_frame)

    _chapters = staticmethod(chapters_of)

    def test_kept_in_mkv(self, tmp_path):
        import av

        src = self._source(tmp_path)
        out = tmp_path / "o.mkv"
        self._write(src, out)
        assert self._chapters(out) == [("One", 0.0, 0.5), ("Two", 0.5, 2.0)]
        with av.open(str(out)) as c:
            (att,) = [s for s in c.streams if s.type == "attachment"]
            assert (att.name, att.mimetype, bytes(att.data)) == ("Font.ttf", "font/ttf", FONT)

    def test_a_preview_shifts_and_cuts_them(self, tmp_path):
        src = self._source(tmp_path)
        out = tmp_path / "o.mkv"
        self._write(src, out, start_frame=6, frames=24)  # 0.25 s .. 1.25 s
        assert self._chapters(out) == [("One", 0.0, 0.25), ("Two", 0.25, 1.0)]
        self._write(src, out, start_frame=18)  # from 0.75 s: chapter One is gone
        assert self._chapters(out) == [("Two", 0.0, 1.25)]

    def test_mp4_keeps_the_chapters_and_says_the_fonts_are_left_out(self, tmp_path, caplog):
        import logging

        src = self._source(tmp_path)
        out = tmp_path / "o.mp4"
        with caplog.at_level(logging.WARNING, logger="vggx.video.encode"):
            self._write(src, out)
        assert self._chapters(out) == [("One", 0.0, 0.5), ("Two", 0.5, 2.0)]
        assert any("its 1 attachment (Font.ttf) cannot go into mp4" in rec.getMessage() for rec in caplog.records)


def _woven(path, frames: int, size=(48, 64)):
    """Video shot interlaced: each frame's two fields from two moments (a 59.94p pattern woven, top field first)."""
    import av

    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(30000, 1001))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "10", "flags": "+ilme+ildct", "x264-params": "tff=1"}
        for i in range(frames):
            image = frame_pattern(2 * i, h, w)
            image[1::2] = frame_pattern(2 * i + 1, h, w)[1::2]
            for p in s.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize(("kind", "said"), [
    ("woven", "is interlaced (top field first: "),  # combing: --deinterlace
    ("telecined", "looks telecined (3:2 pulldown: "),  # a field repeated in 2 of 5 frames: --ivtc
    ("flagged", None),  # flagged interlaced, no combing (progressive content stored so): an info line, no warning
    ("flagged_short", "is flagged interlaced (too few frames to tell"),  # idet misjudges its first frames
    ("progressive", None),
])
def test_interlaced_or_telecined_input_is_named_in_a_warning(tmp_path, caplog, kind, said):
    """FFmpeg's idet over the first frames decoded tells video shot interlaced from telecined film and from
    progressive frames merely flagged interlaced; the warning names the option each needs."""
    import logging

    from test_upscale_ivtc import write as telecine

    path = tmp_path / "i.mkv"
    if kind == "woven":
        _woven(path, 40)
    elif kind == "telecined":
        telecine(path, 32, telecined=True, codec="libx264")  # 40 frames
    else:
        make_video(path, frames=4 if kind == "flagged_short" else 40, size=(48, 64),
                   options=None if kind == "progressive" else {"x264-params": "tff=1"})
    with caplog.at_level(logging.INFO, logger="vggx.video.decode"), open_video(path) as r:
        list(r)
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    if said is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and said in warnings[0], warnings
        assert ("--ivtc" in warnings[0]) == (kind != "woven")
        assert ("--deinterlace" in warnings[0]) == (kind != "telecined")
    if kind == "flagged":
        assert any("show no combing" in rec.getMessage() for rec in caplog.records)


def test_the_check_reads_the_first_frames_and_a_stopped_read_still_says_what_it_saw(tmp_path, caplog):
    import logging

    path = _woven(tmp_path / "i.mkv", 130)  # past the check's 120 frames: said once, every frame read
    with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(path) as r:
        assert len(list(r)) == 130
    assert ["is interlaced" in rec.getMessage() for rec in caplog.records] == [True]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(path, max_frames=40) as r:
        assert len(list(r)) == 40
    assert ["is interlaced" in rec.getMessage() for rec in caplog.records] == [True]


@pytest.mark.parametrize("interlaced", [True, False])
def test_deinterlace_keeps_frames_and_timestamps(tmp_path, caplog, interlaced):
    """bwdif makes one progressive frame per frame (timestamps kept, no warning); progressive input passes
    through unchanged."""
    import logging

    path = make_video(tmp_path / "i.mkv", frames=6, size=(48, 64),
                      options={"x264-params": "tff=1"} if interlaced else None)
    with open_video(path) as r:
        plain = list(r)
    caplog.clear()  # the plain read warned about interlacing
    with caplog.at_level(logging.WARNING, logger="vggx.video.decode"), open_video(path, deinterlace=True) as r:
        done = list(r)
    assert [f.pts for f in done] == [f.pts for f in plain] and len(done) == 6
    assert not [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    changed = any(not np.array_equal(a.image, b.image) for a, b in zip(plain, done, strict=True))
    assert changed == interlaced  # bwdif rewrites interlaced frames only


def test_ten_bit_hevc_output_is_tagged_and_keeps_colours(tmp_path):
    out = tmp_path / "o.mkv"
    image = np.broadcast_to(TestColour.PATCH, (48, 64, 3)).copy()
    with VideoWriter(out, 64, 48, Fraction(25), Fraction(1, 25),
                     EncodeConfig(codec="libx265", crf=0, pix_fmt="yuv420p10le")) as w:
        for i in range(3):
            w.write(image, i)
    facts = stream_facts(out)
    assert facts["pix_fmt"] == "yuv420p10le" and facts["color"] == (1, 1, 1, 1)
    # swscale's 8 <-> 10-bit steps round down by a few levels (a BT.601 misreading would be ~14 off)
    assert np.abs(decode_all(out)[1].astype(int) - TestColour.PATCH).max() <= 4


def test_a_pixel_format_the_codec_cannot_encode_is_one_clear_error(tmp_path):
    with pytest.raises(VideoError, match="--pix-fmt yuv420p10le is not one libx264rgb encodes; it takes"):
        VideoWriter(tmp_path / "o.mkv", 64, 48, Fraction(25), Fraction(1, 25),
                    EncodeConfig(codec="libx264rgb", pix_fmt="yuv420p10le"))
    assert list(tmp_path.iterdir()) == []


class TestCover:
    """A cover picture goes along as cover art (MP4) or an attachment (Matroska), never upscaled as the video."""

    @pytest.mark.parametrize(("ext", "kept"), [(".mp4", True), (".mkv", True), (".mov", False)])
    def test_the_cover_goes_along(self, tmp_path, torch_runner, caplog, ext, kept):
        import logging

        import av

        from vggx.client import UpscaleConfig, upscale

        src = TestDecode._with_cover(tmp_path / "in.mp4", attached=True)
        with av.open(str(src)) as c:
            cover = bytes(next(p for p in c.demux(c.streams.video[1]) if p.size))
        out = tmp_path / f"out{ext}"
        with caplog.at_level(logging.WARNING, logger="vggx.video.encode"):
            result = upscale(UpscaleConfig(src, out), runner=torch_runner)
        assert "cover" in result.copied
        with av.open(str(out)) as c:
            video = [s for s in c.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
            covers = [s for s in c.streams.video if s.disposition & av.stream.Disposition.attached_pic]
            assert len(video) == 1 and video[0].codec_context.name == "h264"
            if kept:
                assert len(covers) == 1 and bytes(next(p for p in c.demux(covers[0]) if p.size)) == cover
            else:
                assert covers == []
        with av.open(str(out)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 10
        warned = [r.getMessage() for r in caplog.records if "cover picture" in r.getMessage()]
        assert bool(warned) != kept


class TestCopySelection:
    """``copy`` (``--copy``) picks what goes along with the video; a muxer that refuses it does so before any work."""

    @pytest.mark.parametrize(("copy", "audio", "subtitles"), [
        (None, 2, 1), ((), 0, 0), (("subtitles",), 0, 1), (("audio",), 2, 0)])
    def test_copy_picks_audio_and_subtitles(self, tmp_path, torch_runner, copy, audio, subtitles):
        import av

        from vggx.client import UpscaleConfig, upscale

        src = TestOtherStreams._source(tmp_path)
        out = tmp_path / "o.mkv"
        result = upscale(UpscaleConfig(src, out, copy=copy), runner=torch_runner)
        assert result.copied == (("audio",) if audio else ()) + (("subtitles",) if subtitles else ())
        with av.open(str(out)) as c:
            assert (len(c.streams.audio), len(c.streams.subtitles)) == (audio, subtitles)
            assert len(c.streams.video) == 1

    def test_chapters_and_attachments_apart(self, tmp_path, torch_runner):
        import av

        from vggx.client import UpscaleConfig, upscale

        film = make_film(tmp_path / "film.mkv")
        upscale(UpscaleConfig(film, tmp_path / "c.mkv", copy=("chapters",), frames=12), runner=torch_runner)
        upscale(UpscaleConfig(film, tmp_path / "a.mkv", copy=("attachments",), frames=12), runner=torch_runner)
        with av.open(str(tmp_path / "c.mkv")) as c:
            assert [s for s in c.streams if s.type == "attachment"] == [] and len(c.chapters()) == 1
        with av.open(str(tmp_path / "a.mkv")) as c:
            assert len([s for s in c.streams if s.type == "attachment"]) == 1 and c.chapters() == []

    def test_audio_a_muxer_refuses_late_is_refused_before_any_work(self, tmp_path, torch_runner):
        """PCM into MP4: FFmpeg's muxer takes the stream and fails only at the trailer, which used to end the run
        after the whole video was upscaled."""
        import av

        from vggx.client import UpscaleConfig, upscale

        src = make_video(tmp_path / "pcm.mkv", frames=8, audio="pcm_s16le")

        class Counting:
            info, description, calls = torch_runner.info, "counting", 0

            def infer(self, lr, **kwargs):
                Counting.calls += 1
                return torch_runner.infer(lr, **kwargs)

        out = tmp_path / "o.mp4"
        with pytest.raises(VideoError, match=r"cannot copy the pcm_s16le audio of .* into \.mp4 .*--copy none"):
            upscale(UpscaleConfig(src, out), runner=Counting())
        assert Counting.calls == 0 and list(tmp_path.glob("*o*.mp4")) == []
        result = upscale(UpscaleConfig(src, out, copy=()), runner=Counting())
        assert result.copied == () and Counting.calls > 0
        with av.open(str(out)) as c:
            assert len(c.streams.audio) == 0

    @pytest.mark.parametrize(("output", "audio_codec", "remedies"), [
        ("o.mp4", None, "try an .mkv output, --audio-codec aac (re-encoded), or leave"),
        ("o.webm", None, "try an .mkv output, --audio-codec libopus (re-encoded), or leave"),
        ("o.webm", "aac", "try an .mkv output, --audio-codec libopus (re-encoded), or leave"),
    ])
    def test_the_remedies_offered_are_those_that_would_work(self, tmp_path, output, audio_codec, remedies):
        """WebM takes Opus or Vorbis, not AAC; the option already given is not offered again."""
        from vggx.video.encode import check_copy

        src = make_video(tmp_path / "pcm.mkv", frames=2, audio="pcm_s16le")
        codec = "libvpx-vp9" if output.endswith(".webm") else "libx264"
        with pytest.raises(VideoError) as err:
            check_copy(tmp_path / output, src, ("audio",), EncodeConfig(codec=codec, audio_codec=audio_codec))
        assert remedies in str(err.value), str(err.value)

    def test_an_unknown_kind_is_refused(self, tmp_path):
        from vggx.client import UpscaleConfig
        from vggx.errors import ConfigError

        with pytest.raises(ConfigError, match="--copy takes audio, subtitles, chapters, attachments, cover, all or "
                                              "none; not sound"):
            UpscaleConfig(tmp_path / "in.mp4", tmp_path / "o.mp4", copy=("audio", "sound"))


class TestAudioReencoded:
    """``EncodeConfig.audio_codec`` (``--audio-codec``): audio an output cannot hold as it is, re-encoded."""

    @pytest.mark.parametrize(("start", "frames"), [(0.0, None), (0.125, 4)])
    def test_pcm_into_mp4_as_aac(self, tmp_path, torch_runner, start, frames):
        import av

        from vggx.client import UpscaleConfig, upscale

        src = make_video(tmp_path / "pcm.mkv", frames=12, audio="pcm_s16le")
        out = tmp_path / "o.mp4"
        result = upscale(UpscaleConfig(src, out, encode=EncodeConfig(audio_codec="aac", audio_bitrate=96_000),
                                       start=start, frames=frames), runner=torch_runner)
        assert result.copied == ("audio",)
        with av.open(str(out)) as c:
            a = c.streams.audio[0]
            assert (a.codec_context.name, a.codec_context.sample_rate, a.codec_context.layout.name) == (
                "aac", 48000, "stereo")
            assert 80_000 <= a.bit_rate <= 112_000
            seconds = (frames or 12) / 24
            samples = np.concatenate([f.to_ndarray()[0] for f in c.decode(a)])
        assert abs(len(samples) / 48000 - seconds) < 0.05  # as long as the video, to an AAC frame or two
        rms = float(np.sqrt(np.mean(samples[2048:-2048] ** 2)))
        assert abs(rms - 0.3 / np.sqrt(2)) < 0.01  # the source's 440 Hz tone at 0.3

    def test_bad_settings_are_refused(self):
        with pytest.raises(VideoError, match="unknown audio encoder 'nope'"):
            EncodeConfig(audio_codec="nope")
        with pytest.raises(VideoError, match="unknown audio encoder 'libx264'"):
            EncodeConfig(audio_codec="libx264")  # a video encoder
        with pytest.raises(VideoError, match="--audio-bitrate applies to a re-encoded audio"):
            EncodeConfig(audio_bitrate=128_000)
        with pytest.raises(VideoError, match="--audio-bitrate must be in"):
            EncodeConfig(audio_codec="aac", audio_bitrate=5)

    def test_the_refusal_names_the_way_out(self, tmp_path, torch_runner):
        from vggx.client import UpscaleConfig, upscale

        src = make_video(tmp_path / "pcm.mkv", frames=4, audio="pcm_s16le")
        with pytest.raises(VideoError, match=r"--audio-codec aac \(re-encoded\)"):
            upscale(UpscaleConfig(src, tmp_path / "o.mp4"), runner=torch_runner)


def _damaged(src, dst, every: int | None = None, at: tuple[float, ...] = (), size: int = 200):
    """``src`` with stretches of random bytes written over it: ``size`` bytes at each fraction ``at`` of the file,
    or every ``every`` bytes past its first 2000 (its header)."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(1)
    offsets = [int(f * len(data)) for f in at] if every is None else range(2000, len(data) - 2000, every)
    for off in offsets:
        data[off:off + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


class TestDamage:
    """A damaged stretch (a bad sector, a broken download) costs the frames it held, not the run; FFmpeg's own
    command goes on past it too."""

    def test_a_damaged_file_is_upscaled_past_the_damage(self, tmp_path, torch_runner, caplog):
        import logging

        import av

        from vggx.client import UpscaleConfig, upscale

        src = _damaged(make_video(tmp_path / "in.mp4", frames=48, size=(64, 96)), tmp_path / "bad.mp4",
                       at=(1 / 3, 1 / 2, 2 / 3))
        with av.open(str(src)) as c, pytest.raises(av.error.InvalidDataError):
            list(c.decode(video=0))  # what stopped the run before
        out = tmp_path / "o.mp4"
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"):
            result = upscale(UpscaleConfig(src, out), runner=torch_runner)
        assert result.damaged_packets >= 1 and result.frames >= 48 - result.damaged_packets
        assert stream_facts(out)["frames"] == result.frames
        warned = [r.getMessage() for r in caplog.records if "damaged packet" in r.getMessage()]
        # where: which packets the decoder refuses, and how many, vary with its frame threads (0.75 or 1.08 s here,
        # or both)
        assert len(warned) == 1 and re.search(r"skipped \(at \d+\.\d\d(, \d+\.\d\d)* s\)", warned[0]), warned

    def test_a_file_damaged_throughout_is_refused(self, tmp_path):
        src = _damaged(make_video(tmp_path / "in.mp4", frames=48, size=(64, 96)), tmp_path / "bad.mp4", every=120,
                       size=60)
        with pytest.raises(VideoError, match=r"packets damaged\); the file is truncated or damaged"), \
                open_video(src) as r:
            list(r)


class TestCoarseClock:
    """A source whose clock rounds its frame times (Matroska's milliseconds) is written on its frames' own times."""

    @pytest.mark.parametrize(("rate", "time_base", "grid"), [
        (Fraction(24), Fraction(1, 1000), Fraction(1, 3000)),
        (Fraction(24000, 1001), Fraction(1, 1000), Fraction(1, 24000)),
        (Fraction(30000, 1001), Fraction(1, 1000), Fraction(1, 30000)),
        (Fraction(25), Fraction(1, 1000), None),  # 40 ms: held exactly
        (Fraction(24000, 1001), Fraction(1, 24000), None),
        (Fraction(30), Fraction(1, 600), None),  # a phone's MOV
        (Fraction(24000, 1001), Fraction(1, 90000), None),  # MPEG-TS: a thousandth of a frame at most
    ])
    def test_frame_grid(self, rate, time_base, grid):
        from vggx.video.encode import frame_grid

        assert frame_grid(rate, time_base) == grid

    @pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
    def test_rounded_times_go_back_to_the_frame_times_and_others_keep_theirs(self, tmp_path, suffix):
        rate = Fraction(24000, 1001)
        ms = [round(1000 * i / rate) for i in range(12)]  # 0, 42, 83, 125, ... as a Matroska file holds them
        ms[7] = 300  # a frame off the grid (a variable-rate source) keeps its time
        # so do frames more than half a tick (0.5 ms) but less than one off their frame times (83.417, 166.833 ms),
        # which a snapping tolerance of a whole tick would move onto them
        ms[2], ms[4] = 84, 166
        out = tmp_path / f"o{suffix}"
        w = VideoWriter(out, 32, 32, rate, Fraction(1, 1000), EncodeConfig(codec="libx264"))
        for i, t in enumerate(ms):
            w.write(frame_pattern(i, 32, 32), t)
        w.commit()
        import av

        with av.open(str(out)) as c:
            s = c.streams.video[0]
            times = sorted(p.pts * p.time_base for p in c.demux(s) if p.pts is not None)
        want = [Fraction(ms[i], 1000) if i in (2, 4, 7) else i / rate for i in range(12)]
        if suffix == ".mkv":  # Matroska's own clock: the milliseconds again
            want = [Fraction(round(1000 * t), 1000) for t in want]
        assert times == want


    @pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
    @pytest.mark.parametrize(("time_base", "times", "want", "said"), [
        # three frames on one millisecond (a broken recorder), early: before the muxer has its header; each goes a
        # millisecond after the one before, the frames after them untouched
        (Fraction(1, 1000), [0, 42, 83, 208, 250, 250, 250, 417, 458, 500],
         [0, 42, 83, 208, 250, 251, 252, 417, 458, 500], "goes 0.001 s after it"),
        # every second frame on the time of the one before (0, 0, 80, 80 ms ...): no drift, however long the clip
        # (each repeat moved every later frame another millisecond: 48 ms late after 96 frames)
        (Fraction(1, 1000), [80 * (i // 2) for i in range(96)],
         [80 * (i // 2) + i % 2 for i in range(96)], "goes 0.001 s after it"),
        # a stall: 60 frames on one time at 30 fps; each goes a millisecond after the last, past a frame's spacing,
        # which is no join (it was taken for one at the 34th: every later frame 1 s late, and the audio's part lost)
        (Fraction(1, 1000), [round(1000 * i / 30) for i in range(10)] + [300] * 60
         + [round(1000 * i / 30) for i in range(10, 30)],
         [round(1000 * i / 30) for i in range(10)] + [301 + k for k in range(60)] + [361]
         + [round(1000 * i / 30) for i in range(11, 30)], "goes 0.001 s after it"),
        # a repeat late in a clip stamped in frames (the muxer's own time base differs by then): a tick is a frame,
        # so the frames after it, on the next ticks, go a tick later too
        (Fraction(1, 24), [*range(60), 59, *range(60, 72)], list(range(73)), "goes 0.042 s after it"),
        # a concatenation: the second part starts at 0 again, a frame after the first's last, keeping its spacing
        (Fraction(1, 1000), [round(1000 * i / 24) for i in (*range(48), *range(48))],
         [round(1000 * i / 24) for i in range(96)], "go 2.000 s later"),
    ])
    def test_a_time_that_does_not_go_on_is_moved_on_and_every_frame_kept(self, tmp_path, suffix, time_base, times,
                                                                          want, said, caplog):
        """Frames sharing a time, or going back: the MP4 was refused only at the end, after the whole run ("finishing
        ... failed (Invalid argument)"). Such a frame goes a millisecond (a tick of a coarser clock) after the one
        before, without moving the frames after it; where the time starts again (a joined file), it goes a frame after
        the one before and the frames after it as much later: in order, each keeping its spacing."""
        import logging

        import av

        out = tmp_path / f"o{suffix}"
        with caplog.at_level(logging.WARNING, logger="vggx.video.encode"):
            w = VideoWriter(out, 32, 32, Fraction(24), time_base, EncodeConfig(codec="libx264"))
            for i, t in enumerate(times):
                w.write(frame_pattern(i % 24, 32, 32), t)
            w.commit()
        first = next(i for i in range(1, len(times)) if times[i] <= times[i - 1])
        assert f"frame {first} (at {float(times[first] * time_base):.3f} s) does not come after the one before" \
            in caplog.text and caplog.text.count("does not come after") == 1 and said in caplog.text
        with av.open(str(out)) as c:
            got = [f.pts * f.time_base for f in c.decode(c.streams.video[0])]
        assert len(got) == len(times) and all(b > a for a, b in itertools.pairwise(got))
        for i, (g, t) in enumerate(zip(got, want, strict=True)):  # within a tick of the muxer's clock
            assert abs(g - t * time_base) <= Fraction(1, 1000), (i, g, t * time_base)

    @pytest.mark.parametrize(("times", "stop"), [
        ([40 * (i // 2) for i in range(64)], 40),  # every second frame repeats the one before's time
        # three parts, each from 0 again, stopped in the third: the stored frames went twice as far on
        ([round(1000 * i / 25) for i in (*range(20), *range(20), *range(24))], 56),
    ])
    def test_a_resumed_run_gives_the_times_of_one_not_stopped(self, tmp_path, caplog, times, stop):
        """Times repeated or gone back: what moved the stored frames on was not in the store, so a resumed run moved
        its frames otherwise than a run not stopped (and its warning named the frame counted from the resume point)."""
        import logging

        import av

        from vggx.video import SegmentStore

        cfg = EncodeConfig("libx264", crf=0, segment_frames=8)

        def run(out, frames, store, stop=None):
            with VideoWriter(out, 56, 40, Fraction(25), Fraction(1, 1000), cfg, store=store) as w:
                for i in frames:
                    w.write(frame_pattern(i % 24, 40, 56), times[i])
                    if i == stop:
                        raise KeyboardInterrupt

        run(tmp_path / "whole.mp4", range(len(times)), None)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "o.mp4", range(len(times)), SegmentStore(tmp_path / "store", {"t": 1}), stop)
        store = SegmentStore(tmp_path / "store", {"t": 1})
        done = store.frames_done
        assert 0 < done <= stop
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vggx.video.encode"):
            run(tmp_path / "o.mp4", range(done, len(times)), store)
        first = next((i for i in range(done, len(times)) if times[i] <= times[i - 1]), None)
        if first is not None:  # named by its number in the input, not from the resume point
            assert f"frame {first} (at {times[first] / 1000:.3f} s) does not come after the one before" in caplog.text
        with av.open(str(tmp_path / "whole.mp4")) as a, av.open(str(tmp_path / "o.mp4")) as b:
            whole = [f.pts * f.time_base for f in a.decode(video=0)]
            resumed = [f.pts * f.time_base for f in b.decode(video=0)]
        assert len(whole) == len(times) and resumed == whole

    def test_images_keep_no_times_so_a_repeat_is_not_warned_of(self, tmp_path, caplog):
        import logging

        with caplog.at_level(logging.WARNING, logger="vggx.video.encode"):
            w = VideoWriter(tmp_path / "%04d.png", 32, 32, Fraction(24), Fraction(1, 24), EncodeConfig(codec="png"))
            for i, t in enumerate([0, 1, 1, 2]):
                w.write(frame_pattern(i, 32, 32), t)
            w.commit()
        assert "does not come after" not in caplog.text and len(list(tmp_path.glob("*.png"))) == 4


def test_an_animated_webp_is_refused_in_one_line_a_still_one_is_read(tmp_path):
    """FFmpeg's WebP decoder reads still images only: an animated one is named as such before any work (it said
    "has no video frames" after loading the backend)."""
    from PIL import Image

    frames = [Image.fromarray(frame_pattern(i, 24, 32)) for i in range(3)]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], duration=40)
    frames[0].save(tmp_path / "still.webp", lossless=True)
    with pytest.raises(VideoError, match=r"anim\.webp is an animated WebP.*anim_dump -folder frames anim\.webp"):
        open_video(tmp_path / "anim.webp")
    with open_video(tmp_path / "still.webp") as r:
        (frame,) = list(r)
    np.testing.assert_array_equal(frame.image, frame_pattern(0, 24, 32))


def _has_encoder(name: str) -> bool:
    import av

    try:
        av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


@pytest.mark.parametrize(("name", "codec", "reason"), [
    ("o.mov", "libvpx-vp9", "vp9 only supported in MP4"),
    ("o.mov", "libvpx", "VP8 muxing is currently not supported"),
    ("o.mov", "libsvtav1", "av1 only supported in MP4 and AVIF"),
    ("o.ogv", "libx264", "Unsupported codec id in stream 0"),
    ("o.webm", "libx264", "'webm' format does not support 'libx264' codec"),
])
def test_a_container_refusing_the_codec_at_its_header_is_said_before_any_work(tmp_path, name, codec, reason):
    """QuickTime takes no VP9, VP8 or AV1, Ogg no H.264: FFmpeg accepts the stream and refuses only when the header
    is written, which was after the upscale ("writing o.mov failed (Invalid argument)"). check_container writes a
    probe's header, in a temporary folder: one line naming the codec, the container and FFmpeg's reason, and nothing
    left behind."""
    import tempfile

    from vggx.video.encode import check_container

    if not _has_encoder(codec):
        pytest.skip(f"no {codec} in this FFmpeg")
    probes = set(Path(tempfile.gettempdir()).glob("vggx-probe-*"))
    with pytest.raises(VideoError) as caught:
        check_container(tmp_path / name, codec)
    assert str(caught.value) == (f"{name}: its container cannot hold {codec} video ({reason}); choose a --codec it "
                                 f"takes (e.g. libvpx-vp9 for .webm, libx264 for .mov) or another extension (.mkv "
                                 f"holds most)")
    assert list(tmp_path.iterdir()) == [] and set(Path(tempfile.gettempdir()).glob("vggx-probe-*")) == probes


@pytest.mark.parametrize(("name", "codec"), [
    ("o.mp4", "libx264"), ("o.mov", "libx264"), ("o.mov", "prores_ks"), ("o.mkv", "libx265"), ("o.webm", "libvpx-vp9"),
    ("o.mp4", "libsvtav1"), ("o.avi", "mjpeg"), ("o.mkv", "ffv1"), ("o.ts", "libx264"), ("o.y4m", "rawvideo"),
    ("o.gif", "gif"),
])
def test_a_container_taking_the_codec_passes_the_check(tmp_path, name, codec):
    from vggx.video.encode import check_container

    if not _has_encoder(codec):
        pytest.skip(f"no {codec} in this FFmpeg")
    check_container(tmp_path / name, codec)
    assert list(tmp_path.iterdir()) == []


def test_a_pair_that_passed_is_not_probed_again(tmp_path, monkeypatch):
    """A folder run checks each file's output: the encoder opened once for a container and codec, not per file."""
    import av

    import vggx.video.encode as encode
    from vggx.video.encode import check_container

    monkeypatch.setattr(encode, "_CONTAINERS_PASSED", set())  # none checked before, whatever ran first
    check_container(tmp_path / "a.mkv", "libx264")
    monkeypatch.setattr(av, "open", lambda *a, **k: pytest.fail("probed again"))
    check_container(tmp_path / "b.mkv", "libx264")
    with pytest.raises(pytest.fail.Exception, match="probed again"):
        check_container(tmp_path / "c.mp4", "libx264")  # another container: checked
