"""The video encoder's own options (``--encoder-option``, ``--bitrate``; ``EncodeConfig.options``/``bitrate``): that
they reach the encoder (read back from the settings x264 and x265 write into their streams, the keyframes, the HDR10
side data), that vggx's own settings merge with them (the user's winning), and that an option the encoder lacks or
refuses stops the run before any work with one line."""

from __future__ import annotations

import json
import logging
import re

import av
import pytest
from test_upscale_cli import assert_one_error_line
from test_upscale_depth import MASTERING, make_hdr

from vggx.client import UpscaleConfig, upscale
from vggx.errors import VideoError
from vggx.video import EncodeConfig
from vggx.video.depth import ColorInfo
from vggx.video.encode import check_encoder_starts, encoder_options, merge_params


def encoder_settings(path) -> str:
    """The settings line x264 / x265 write into their first frame's SEI (``... options: cabac=1 ref=3 ...``)."""
    data = path.read_bytes()
    found = re.search(rb"options: ([ -~]+)", data)
    assert found, "no encoder settings in the stream"
    return found.group(1).decode()


def keyframes(path) -> list[int]:
    with av.open(str(path)) as c:
        return [i for i, p in enumerate(p for p in c.demux(video=0) if p.size) if p.is_keyframe]


class TestOptions:
    def test_merge_params_keeps_ours_unless_the_user_sets_the_key(self):
        assert merge_params("hdr10=1:master-display=A:max-cll=1000,400", "master-display=B:aq-mode=3") == \
            "hdr10=1:max-cll=1000,400:master-display=B:aq-mode=3"
        assert merge_params("", "aq-mode=3") == "aq-mode=3" and merge_params("lossless=1", "") == "lossless=1"

    def test_the_users_options_win_over_vggxs(self):
        assert encoder_options(EncodeConfig(preset="fast", options={"preset": "slow", "tune": "film"})) == {
            "crf": "18", "preset": "slow", "tune": "film"}
        # a bitrate (ours or among the options) replaces the CRF, which would otherwise win in x264 and x265
        assert encoder_options(EncodeConfig(bitrate=2_000_000)) == {"b": "2000000"}
        assert encoder_options(EncodeConfig(options={"b": "3M", "maxrate": "4M"})) == {"b": "3M", "maxrate": "4M"}
        assert encoder_options(EncodeConfig("libvpx-vp9", crf=30)) == {"crf": "30", "b": "0"}  # VP9's CQ mode
        assert encoder_options(EncodeConfig("libx265", crf=0, options={"x265-params": "aq-mode=3"})) == {
            "crf": "0", "x265-params": "lossless=1:aq-mode=3"}
        hdr = ColorInfo(9, 16, 9, MASTERING, (1000, 400))
        mine = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(40000000,50)"  # a 4000-nit display
        assert encoder_options(EncodeConfig("libx265", options={"x265-params": f"master-display={mine}"}),
                               color=hdr)["x265-params"] == f"hdr10=1:max-cll=1000,400:master-display={mine}"

    @pytest.mark.parametrize(("config", "said"), [
        (EncodeConfig(options={"nonsense": "1"}), "libx264 has no option nonsense"),
        (EncodeConfig(options={"tune": "bogus"}), "refuses its options (tune=bogus): invalid tune 'bogus'"),
        (EncodeConfig(options={"x264-params": "foo=3"}), "would pass over its options (x264-params=foo=3): "
                                                         "Error parsing option 'foo = 3'"),
        (EncodeConfig("libx265", options={"x265-params": "aq-mode=zz"}), "Invalid value for aq-mode: zz"),
        (EncodeConfig(pix_fmt="yuv420p10le", options={"profile": "high"}),
         "high profile doesn't support a bit depth of 10"),
    ])
    def test_what_the_encoder_would_not_take_is_refused_with_its_reason(self, config, said):
        with pytest.raises(VideoError, match=re.escape(said)):
            check_encoder_starts(config)

    def test_its_warnings_are_passed_on(self, caplog):
        with caplog.at_level(logging.WARNING, logger="vggx.video.encode"):
            check_encoder_starts(EncodeConfig(options={"maxrate": "1M"}))
        assert "libx264: VBV maxrate specified, but no bufsize, ignored" in caplog.text


class TestReachTheEncoder:
    def test_gop_b_frames_and_x264_params(self, clips, tmp_path, torch_runner):
        out = tmp_path / "out.mp4"
        options = {"g": "4", "bf": "0", "x264-params": "aq-mode=2:deblock=-1,-1:scenecut=0"}
        result = upscale(UpscaleConfig(clips["aac"], out, encode=EncodeConfig(options=options)), runner=torch_runner)
        settings = encoder_settings(out)
        assert "keyint=4 " in settings and "bframes=0 " in settings and "aq=2:" in settings
        assert "deblock=1:-1:-1 " in settings and "crf=18.0 " in settings
        assert keyframes(out) == [0, 4, 8]  # 10 frames, a keyframe every 4 (and at no scene change: scenecut=0)
        assert result.encoder == "libx264 yuv420p (crf=18 g=4 bf=0 x264-params=aq-mode=2:deblock=-1,-1:scenecut=0)"

    def test_an_average_bitrate_instead_of_a_crf(self, clips, tmp_path, torch_runner):
        out = tmp_path / "out.mp4"
        upscale(UpscaleConfig(clips["aac"], out, encode=EncodeConfig(bitrate=300_000, options={
            "maxrate": "400k", "bufsize": "800k"})), runner=torch_runner)
        settings = encoder_settings(out)
        assert "rc=abr " in settings and "bitrate=300 " in settings and "vbv_maxrate=400 " in settings
        assert "crf=" not in settings

    def test_the_users_mastering_display_wins_and_the_inputs_light_levels_stay(self, tmp_path, torch_runner):
        src = make_hdr(tmp_path / "hdr.mkv")
        out = tmp_path / "out.mkv"
        mine = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(40000000,50)"
        upscale(UpscaleConfig(src, out, encode=EncodeConfig("libx265", options={
            "x265-params": f"log-level=error:master-display={mine}"})), runner=torch_runner)
        with av.open(str(out)) as c:
            color = ColorInfo.of_frame(next(c.decode(video=0)))
        assert color == ColorInfo(9, 16, 9, mine, (1000, 400))

    def test_options_are_checked_again_in_the_format_the_input_chose(self, tmp_path, torch_runner):
        """x264's High profile is 8-bit: fine for the default yuv420p, refused once an HDR input picks 10 bits (before
        any frame is upscaled, nothing written)."""
        src = make_hdr(tmp_path / "hdr.mkv")
        out = tmp_path / "out.mkv"
        check_encoder_starts(EncodeConfig(options={"profile": "high"}))  # 8 bits: taken
        with pytest.raises(VideoError, match="high profile doesn't support a bit depth of 10"):
            upscale(UpscaleConfig(src, out, encode=EncodeConfig(options={"profile": "high"})), runner=torch_runner)
        assert list(tmp_path.iterdir()) == [src]


class TestCli:
    def test_options_and_bitrate_reach_the_encoder_and_the_plan(self, cli, clips, tmp_path):
        out = tmp_path / "o.mp4"
        result = cli(clips["aac"], out, "--bitrate", "250k", "--encoder-option", "g=5", "--encoder-option",
                     "x264-params=aq-mode=2", "--dry-run", "--json", tmp_path / "plan.json")
        assert result.exit_code == 0, result.output
        assert "encoded with libx264 yuv420p (b=250000 g=5 x264-params=aq-mode=2)" in result.stdout
        assert json.loads((tmp_path / "plan.json").read_text())["results"][0]["encoder"] == (
            "libx264 yuv420p (b=250000 g=5 x264-params=aq-mode=2)")
        result = cli(clips["aac"], out, "--bitrate", "250k", "--encoder-option", "g=5")
        assert result.exit_code == 0, result.output
        assert "rc=abr " in encoder_settings(out) and "keyint=5 " in encoder_settings(out)

    @pytest.mark.parametrize(("args", "said"), [
        (["--encoder-option", "nonsense=1"], "libx264 has no option nonsense"),
        (["--encoder-option", "tune=bogus"], "invalid tune 'bogus'"),
        (["--encoder-option", "x264-params=foo=3"], "would pass over its options"),
        (["--encoder-option", "tune"], "--encoder-option takes KEY=VALUE"),
        (["--crf", "20", "--bitrate", "2M"], "--crf and a bitrate"),
        (["--crf", "20", "--encoder-option", "b=2M"], "--crf and a bitrate"),
        (["--bitrate", "fast"], "--bitrate takes bits/s such as 8M"),
        (["--bitrate", "5"], "--bitrate must be in 10k..10G"),
        (["--codec", "ffv1", "--bitrate", "2M"], "ffv1 is lossless: it has no bitrate to aim at"),
        (["--codec", "ffv1", "--crf", "10"], "--crf applies to libaom-av1, libsvtav1, libvpx-vp9, libx264, libx264rgb, "
                                             "libx265, not ffv1 (lossless already)"),
    ])
    def test_bad_options_are_one_line_before_any_work(self, cli, clips, tmp_path, args, said):
        out = tmp_path / "o.mkv"
        assert_one_error_line(cli(clips["aac"], out, *args), said)
        assert not out.exists() and list(tmp_path.iterdir()) == []
