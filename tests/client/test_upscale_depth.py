"""More than 8 bits and HDR through the 8-bit model (``vggx.video.depth``): the fine levels carried past it, and a
wide-gamut / HDR input's colour description (tags and HDR10 metadata) kept, on real FFmpeg files."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from videoclips import stream_facts

from vggx.client import UpscaleConfig, upscale
from vggx.video import EncodeConfig, VideoWriter, open_video
from vggx.video.depth import ColorInfo, component_depth, join_fine, parse_light, parse_mastering, split_fine

MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"  # a P3 D65 display, 1000 nits


def gradient16(i: int, h: int, w: int, scale: int = 1) -> np.ndarray:
    """A shallow, moving 16-bit gradient (a few 8-bit levels across the frame) with a faint texture: what bands.
    ``scale``: the same picture sampled ``scale`` times finer (``(scale·h, scale·w)``, pixel centres aligned): the
    smooth original an ×``scale`` upscale should approach."""
    y, x = (np.mgrid[0:h * scale, 0:w * scale].astype(np.float64) + 0.5) / scale - 0.5
    base = 30000 + 14 * (x + 2 * i) + 9 * y + 60 * np.sin((x + i) / 5.0) * np.cos(y / 7.0)
    return np.stack([base, base * 0.93 + 2000, base * 0.85 + 5000], axis=-1).round().astype(np.uint16)


def make_png16(folder: Path, count: int = 10, size: tuple[int, int] = (24, 40), bits: int = 10) -> Path:
    """16-bit PNG frames of :func:`gradient16` quantised to ``bits`` (lossless: what a 10-bit source holds)."""
    import av

    folder.mkdir()
    levels = 2**bits - 1
    with av.open(str(folder / "%04d.png"), "w", format="image2") as c:
        s = c.add_stream("png", rate=25)
        s.width, s.height, s.pix_fmt = size[1], size[0], "rgb48be"
        for i in range(count):
            image = (np.round(gradient16(i, *size) / 65535 * levels) * 65535 / levels).round().astype(np.uint16)
            for p in s.encode(av.VideoFrame.from_ndarray(image, format="rgb48le")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return folder / "%04d.png"


def make_hdr(path: Path, frames: int = 10, size: tuple[int, int] = (32, 64), trc: int = 16,
             metadata: bool = True) -> Path:
    """A 10-bit HEVC clip tagged BT.2020 with transfer ``trc`` (16 PQ, 18 HLG, 14 BT.2020 SDR), with HDR10
    metadata (mastering display, MaxCLL 1000 / MaxFALL 400) where ``metadata``. (At least 64 pixels wide: the x265
    in PyAV's wheels corrupts its heap on frames narrower than its 64-pixel blocks, now and then.)"""
    import av

    params = "log-level=error"
    if metadata:
        params += f":hdr10=1:master-display={MASTERING}:max-cll=1000,400"
    for attempt in range(3):  # (a CI run met the muxer's "Invalid argument" once here: x265's output, not vggx's)
        try:
            with av.open(str(path), "w") as c:
                s = c.add_stream("libx265", rate=24)
                s.width, s.height, s.pix_fmt = size[1], size[0], "yuv420p10le"
                cc = s.codec_context
                cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = 9, trc, 9, 1
                s.options = {"x265-params": params, "crf": "8"}
                for i in range(frames):
                    for p in s.encode(av.VideoFrame.from_ndarray(gradient16(i, *size), format="rgb48le")):
                        c.mux(p)
                for p in s.encode():
                    c.mux(p)
            return path
        except av.error.FFmpegError:
            if attempt == 2:
                raise
    return path


def read16(path: Path) -> list[np.ndarray]:
    """Every frame as uint16 RGB, by FFmpeg alone."""
    import av

    with av.open(str(path), format="image2" if "%" in path.name else None) as c:
        return [f.to_ndarray(format="rgb48le") for f in c.decode(video=0)]


def carried(flat: list[np.ndarray], inputs: list[np.ndarray]) -> list[np.ndarray]:
    """What a fine run should write: the 8-bit run's frames (``flat``, widened) with each input frame's residual
    enlarged and added (the test checkpoint's weights are random, so its picture says nothing of smoothness; the
    mechanism is what is checked here, the quality with the shipped model in ``benchmarks/fine_bits.py``)."""
    return [join_fine(np.rint(y / 257).astype(np.uint8)[None], split_fine(x)[1][None])[0]
            for y, x in zip(flat, inputs, strict=True)]


class TestFineBits:
    def test_split_keeps_every_16_bit_value_exactly(self):
        values = np.arange(65536, dtype=np.uint16).reshape(256, 256, 1).repeat(3, axis=-1)
        rounded, residual = split_fine(values)
        assert rounded.dtype == np.uint8 and residual.dtype == np.int16
        np.testing.assert_array_equal(rounded.astype(np.int32) * 257 + residual, values)
        assert residual.min() == -128 and residual.max() == 128  # never more than half an 8-bit level
        np.testing.assert_array_equal(rounded, np.round(values / 257))  # the nearest 8-bit level

    def test_join_adds_the_enlarged_residual_and_stays_near_the_model(self):
        rng = np.random.default_rng(0)
        sr = rng.integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
        flat = join_fine(sr, np.full((2, 8, 12, 3), 100, np.int16))  # a constant residual: a constant offset
        np.testing.assert_array_equal(flat, np.minimum(sr.astype(np.int32) * 257 + 100, 65535))  # clipped at white
        x = np.mgrid[0:8, 0:12][1]
        ramp = np.repeat((10 * x - 60)[None, ..., None], 3, axis=-1).repeat(2, axis=0).astype(np.int16)
        out = join_fine(sr, ramp).astype(np.int32) - sr.astype(np.int32) * 257
        want = 10 * ((np.arange(48) + 0.5) / 4 - 0.5) - 60  # the ramp at the output's pixel centres
        np.testing.assert_allclose(out[0, 5, 8:-8, 0], want[8:-8], atol=1)  # a line stays one (to a 16-bit unit)
        worst = join_fine(sr, rng.integers(-128, 129, (2, 8, 12, 3)).astype(np.int16)).astype(np.int32)
        assert np.abs(worst - sr.astype(np.int32) * 257).max() <= 257 * 2 / 3  # bicubic (a = -0.75) gains <= 1.32
        assert join_fine(np.full((1, 4, 4, 3), 255, np.uint8), np.full((1, 1, 1, 3), 128, np.int16)).max() == 65535

    @pytest.mark.parametrize(("fmt", "bits"), [("yuv420p", 8), ("yuv420p10le", 10), ("yuv444p12le", 12),
                                               ("rgb48be", 16), ("gray", 8), ("yuva444p10le", 10), ("?", 8)])
    def test_component_depth(self, fmt, bits):
        assert component_depth(fmt) == bits

    def test_the_reader_hands_the_model_the_rounding_and_keeps_the_rest(self, tmp_path):
        pattern = make_png16(tmp_path / "in", count=3, bits=16)
        with open_video(pattern) as r:
            assert r.info.bit_depth == 16
            r.fine = True
            frames = list(r)
        for i, f in enumerate(frames):
            np.testing.assert_array_equal(f.image.astype(np.int32) * 257 + f.fine, gradient16(i, 24, 40))
        with open_video(pattern) as r:  # not asked: 8-bit frames as before
            assert all(f.fine is None and f.image.dtype == np.uint8 for f in r)

    def test_a_10_bit_sequence_keeps_its_levels_and_stays_the_models_picture(self, tmp_path, torch_runner):
        pattern = make_png16(tmp_path / "in")
        (tmp_path / "fine").mkdir()
        (tmp_path / "flat").mkdir()
        fine = upscale(UpscaleConfig(pattern, tmp_path / "fine" / "%04d.png"), runner=torch_runner)
        flat = upscale(UpscaleConfig(pattern, tmp_path / "flat" / "%04d.png", fine_bits=False), runner=torch_runner)
        assert (fine.input_bits, fine.output_bits, fine.fine_bits) == (16, 16, True)  # PNG: 16 bits a channel
        assert (flat.output_bits, flat.fine_bits) == (16, False)
        assert stream_facts(tmp_path / "fine" / "%04d.png")["pix_fmt"] == "rgb48be"  # the input's depth kept
        a, b = read16(tmp_path / "fine" / "%04d.png"), read16(tmp_path / "flat" / "%04d.png")
        assert all(np.all(x % 257 == 0) for x in b)  # widened 8 bits
        inputs = read16(pattern)
        for x, y, want in zip(a, b, carried(b, inputs), strict=True):  # each frame's own residual, through windows
            np.testing.assert_array_equal(x, want)
            assert np.abs(x.astype(np.int32) - y).max() <= 257 * 2 / 3  # the model's picture, its levels between

    def test_an_8_bit_output_or_input_has_no_fine_bits(self, clips, tmp_path, torch_runner):
        pattern = make_png16(tmp_path / "in", count=5)
        r = upscale(UpscaleConfig(pattern, tmp_path / "o.mkv", encode=EncodeConfig("ffv1", crf=None, pix_fmt="bgr0")),
                    runner=torch_runner)
        assert (r.input_bits, r.output_bits, r.fine_bits) == (16, 8, False)
        r = upscale(UpscaleConfig(clips["twelve"], tmp_path / "o.mkv", encode=EncodeConfig(
            "ffv1", crf=None, pix_fmt="gbrp16le"), frames=5), runner=torch_runner)
        assert (r.input_bits, r.output_bits, r.fine_bits) == (8, 16, False)

    def test_10_bit_video_to_10_bit_video(self, clips, tmp_path, torch_runner):
        """x264 in 10 bits from a 10-bit source: the fine levels survive the codec."""
        src = tmp_path / "in.mkv"
        enc = EncodeConfig("libx264", crf=0, pix_fmt="yuv444p10le")  # lossless: the 10-bit YUV is the only loss
        with VideoWriter(src, 40, 24, Fraction(24), Fraction(1, 24), enc) as w:
            for i in range(10):
                w.write(gradient16(i, 24, 40), i)
        fine = upscale(UpscaleConfig(src, tmp_path / "fine.mkv", encode=enc), runner=torch_runner)
        flat = upscale(UpscaleConfig(src, tmp_path / "flat.mkv", encode=enc, fine_bits=False), runner=torch_runner)
        assert fine.fine_bits and not flat.fine_bits and fine.input_bits == 10
        a, b = read16(tmp_path / "fine.mkv"), read16(tmp_path / "flat.mkv")
        from vggx.client import upscale_clip

        want = list(upscale_clip(torch_runner, read16(src)))  # the same windows on the same 16-bit frames, in memory
        err_fine = np.mean([np.abs(x.astype(float) - w).mean() for x, w in zip(a, want, strict=True)])
        err_flat = np.mean([np.abs(y.astype(float) - w).mean() for y, w in zip(b, want, strict=True)])
        assert err_fine < 0.25 * 257  # what 10-bit YUV rounds (measured 30 / 107 on noise)
        assert err_fine < 0.6 * err_flat  # the residual survives 10-bit YUV; the 8-bit run has none

    def test_tiles_and_scene_cuts_carry_each_frames_own_residual(self, tmp_path, torch_runner):
        pattern = make_png16(tmp_path / "in", count=13, size=(40, 56))
        frames = read16(pattern)
        frames[6:] = [f // 3 for f in frames[6:]]  # a second shot from frame 6 (a darker one)
        cut = tmp_path / "cut"
        cut.mkdir()
        import av

        with av.open(str(cut / "%04d.png"), "w", format="image2") as c:
            s = c.add_stream("png", rate=25)
            s.width, s.height, s.pix_fmt = 56, 40, "rgb48be"
            for f in frames:
                for packet in s.encode(av.VideoFrame.from_ndarray(f, format="rgb48le")):
                    c.mux(packet)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = upscale(UpscaleConfig(cut / "%04d.png", tmp_path / "a" / "%04d.png", tile=(24, 32)), runner=torch_runner)
        upscale(UpscaleConfig(cut / "%04d.png", tmp_path / "b" / "%04d.png", tile=(24, 32), fine_bits=False),
                runner=torch_runner)
        assert a.scene_cuts == (6,) and a.tiles_per_window > 1 and a.fine_bits
        flat = read16(tmp_path / "b" / "%04d.png")
        for x, want in zip(read16(tmp_path / "a" / "%04d.png"), carried(flat, frames), strict=True):
            np.testing.assert_array_equal(x, want)


def test_x264_crf_0_is_lossless_in_10_bits_too(tmp_path):
    """x264's CRF 0 is lossless in 8 bits only (in 10 it left noise 1.5 levels off on average): QP 0 is used."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65536, (32, 64, 3)).astype(np.uint16)
    out = tmp_path / "l.mkv"
    with VideoWriter(out, 64, 32, Fraction(24), Fraction(1, 24), EncodeConfig("libx264", crf=0,
                                                                             pix_fmt="yuv444p10le")) as w:
        w.write(image, 0)
    err = np.abs(read16(out)[0].astype(np.int32) - image)
    assert err.mean() < 0.2 * 257 and err.max() < 0.5 * 257  # what 10-bit YUV itself rounds (measured 30 / 107)


class TestHdr:
    def test_the_hdr10_metadata_is_read(self, tmp_path):
        path = make_hdr(tmp_path / "hdr.mkv", frames=2)
        with open_video(path) as r:
            assert r.info.color.hdr == "PQ (SMPTE ST 2084)" and r.info.bit_depth == 10
            list(r)
            assert r.color == ColorInfo(9, 16, 9, MASTERING, (1000, 400))
        assert parse_mastering(b"\0" * 40) is None and parse_light(b"") is None
        assert r.color.encoder_options("libx265") == {
            "x265-params": f"hdr10=1:master-display={MASTERING}:max-cll=1000,400"}
        assert r.color.encoder_options("libx264") == {"x264-params": f"mastering-display={MASTERING}:cll=1000,400"}
        assert r.color.encoder_options("libsvtav1") == {"svtav1-params": (
            "mastering-display=G(0.26500,0.69000)B(0.15000,0.06000)R(0.68000,0.32000)WP(0.31270,0.32900)"
            "L(1000.0000,0.0050):content-light=1000,400")}  # SVT-AV1 takes decimals
        assert r.color.encoder_options("ffv1") == {}

    @pytest.mark.parametrize("codec", ["libx264", "libx265", "libsvtav1"])
    def test_hdr10_stays_hdr10(self, tmp_path, torch_runner, codec):
        import av

        src = make_hdr(tmp_path / "hdr.mkv")
        out = tmp_path / "out.mkv"
        result = upscale(UpscaleConfig(src, out, encode=EncodeConfig(codec, options={"x265-params": "log-level=error"}
                                                                     if codec == "libx265" else {})),
                         runner=torch_runner)
        assert result.hdr == "PQ (SMPTE ST 2084)" and result.output_bits == 10 and result.fine_bits
        facts = stream_facts(out)
        assert facts["pix_fmt"] == "yuv420p10le"  # 10 bits by default: PQ in 8 bands
        assert facts["color"][:3] == (9, 9, 16)  # matrix, primaries, transfer: the input's
        with av.open(str(out)) as c:
            frame = next(c.decode(video=0))
        assert ColorInfo.of_frame(frame) == ColorInfo(9, 16, 9, MASTERING, (1000, 400))

    def test_the_writer_converts_with_the_matrix_it_tags(self, tmp_path):
        """Saturated colours through BT.2020 10-bit YUV and back come out as they went in (a BT.709 matrix tagged as
        BT.2020 would shift them by tens of levels)."""
        colours = np.array([[65535, 0, 0], [0, 65535, 0], [0, 0, 65535], [65535, 65535, 0], [9000, 30000, 52000],
                            [40000, 20000, 6000]], np.uint16)
        image = np.repeat(np.repeat(colours[None], 16, axis=0), 16, axis=1)  # (16, 96, 3): six patches
        out = tmp_path / "w.mkv"
        color = ColorInfo(9, 16, 9, MASTERING, (1000, 400))
        with VideoWriter(out, 96, 16, Fraction(24), Fraction(1, 24), EncodeConfig(
                "libx265", crf=None, pix_fmt="yuv444p10le", options={"x265-params": "lossless=1:log-level=error"}),
                color=color) as w:
            w.write(image, 0)
        assert stream_facts(out)["color"][:3] == (9, 9, 16)
        back = read16(out)[0].astype(np.int32)
        assert np.abs(back - image)[:, 2:-2].max() <= 0.5 * 257  # 10-bit YUV: within half an 8-bit level

    def test_png_images_say_hdr_in_their_cicp_chunk(self, tmp_path, torch_runner):
        import av

        src = make_hdr(tmp_path / "hdr.mkv", frames=3)
        (tmp_path / "o").mkdir()
        result = upscale(UpscaleConfig(src, tmp_path / "o" / "%03d.png"), runner=torch_runner)
        assert result.output_bits == 16 and result.fine_bits and result.hdr
        first = tmp_path / "o" / "001.png"
        assert b"cICP" in first.read_bytes()
        with av.open(str(first)) as c:
            frame = next(c.decode(video=0))
        assert (frame.color_primaries, frame.color_trc) == (9, 16)

    def test_hlg_and_bt2020_sdr_keep_their_tags_without_metadata(self, tmp_path, torch_runner):
        for trc in (18, 14):
            src = make_hdr(tmp_path / f"in{trc}.mkv", frames=4, trc=trc, metadata=False)
            out = tmp_path / f"out{trc}.mp4"
            upscale(UpscaleConfig(src, out), runner=torch_runner)
            facts = stream_facts(out)
            assert facts["color"][:3] == (9, 9, trc)
            assert facts["pix_fmt"] == ("yuv420p10le" if trc == 18 else "yuv420p")  # only HDR asks for 10 bits

    def test_encoder_segments_carry_the_metadata(self, tmp_path, torch_runner):
        import av

        src = make_hdr(tmp_path / "hdr.mkv", frames=20)
        out = tmp_path / "out.mp4"
        upscale(UpscaleConfig(src, out, encode=EncodeConfig(encoders=2, segment_frames=8)), runner=torch_runner)
        with av.open(str(out)) as c:
            frames = list(c.decode(video=0))
        assert len(frames) == 20
        keyframes = [ColorInfo.of_frame(f) for f in frames if f.key_frame]
        assert len(keyframes) >= 3 and all(k.mastering == MASTERING for k in keyframes)

    @pytest.mark.parametrize(("output", "codec", "pix_fmt", "said"), [
        ("out.mp4", "libx264", "yuv420p", "8 bits a component band"),
        ("out.mp4", "libx264", None, "10-bit H.264 plays on few devices"),
        ("-", "rawvideo", "yuv420p10le", "y4m cannot say so"),
        ("o%03d.tif", "tiff", None, "tiff images carry no such tags (PNG's do)"),
    ])
    def test_what_the_output_cannot_hold_is_warned(self, tmp_path, torch_runner, caplog, output, codec, pix_fmt, said,
                                                    monkeypatch):
        import io
        import sys

        src = make_hdr(tmp_path / "hdr.mkv", frames=4)
        if output == "-":
            monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO()))
        with caplog.at_level(logging.WARNING, logger="vggx.client.pipeline"):
            result = upscale(UpscaleConfig(src, Path(output) if output == "-" else tmp_path / output,
                                           encode=EncodeConfig(codec, pix_fmt=pix_fmt), dry_run=True),
                             runner=torch_runner)
        assert result.hdr == "PQ (SMPTE ST 2084)"
        assert any(said in rec.getMessage() for rec in caplog.records)

    def test_sdr_input_is_written_as_bt709_as_before(self, clips, tmp_path, torch_runner):
        out = tmp_path / "out.mp4"
        result = upscale(UpscaleConfig(clips["tenbit"], out), runner=torch_runner)
        assert stream_facts(out)["color"][:3] == (1, 1, 1) and stream_facts(out)["pix_fmt"] == "yuv420p"
        assert (result.input_bits, result.output_bits, result.fine_bits, result.hdr) == (10, 8, False, None)


def test_cli_reports_bits_and_hdr(tmp_path, tiny_checkpoint_path, onnx_cache, monkeypatch):
    from typer.testing import CliRunner

    from vggx.cli import app

    monkeypatch.setenv("VGGX_CACHE_DIR", str(onnx_cache))
    src = make_hdr(tmp_path / "hdr.mkv", frames=4)
    report = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / "o.mkv"), "--checkpoint",
                                   str(tiny_checkpoint_path), "--json", str(report), "--no-scene-cuts"])
    assert res.exit_code == 0, res.output
    assert "PQ (SMPTE ST 2084) HDR kept" in res.output and "10-bit input -> 10-bit output" in res.output
    row = json.loads(report.read_text())["results"][0]
    assert (row["input_bits"], row["output_bits"], row["fine_bits"], row["hdr"]) == (10, 10, True,
                                                                                   "PQ (SMPTE ST 2084)")
    res = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / "p.mkv"), "--checkpoint",
                                   str(tiny_checkpoint_path), "--json", str(report), "--no-fine-bits"])
    assert res.exit_code == 0, res.output
    assert "the model's 8 bits widened (--no-fine-bits)" in res.output
    assert json.loads(report.read_text())["results"][0]["fine_bits"] is False
    res = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / "q.mkv"), "--checkpoint",
                                   str(tiny_checkpoint_path), "--compare"])
    assert res.exit_code == 0, res.output
    assert "the model's 8 bits widened (--compare shows them)" in res.output  # not the flag it was not given


def test_upscale_clip_takes_uint16_frames_and_carries_their_levels(torch_runner):
    from vggx.client import upscale_clip

    frames = [gradient16(i, 24, 40) for i in range(9)]
    frames[5:] = [f // 3 for f in frames[5:]]  # a scene cut: found on the rounded frames as on 8-bit ones
    got = list(upscale_clip(torch_runner, iter(frames)))
    flat = list(upscale_clip(torch_runner, [split_fine(f)[0] for f in frames]))
    assert len(got) == 9 and all(g.dtype == np.uint16 and g.shape == (96, 160, 3) for g in got)
    for g, want in zip(got, carried([f.astype(np.uint16) * 257 for f in flat], frames), strict=True):
        np.testing.assert_array_equal(g, want)
    with pytest.raises(Exception, match="uint16 RGB"):
        list(upscale_clip(torch_runner, [np.zeros((24, 40, 4), np.uint16)]))
    with pytest.raises(Exception, match="frame 1 is 40x24x3 uint8, frame 0 40x24x3 uint16: a clip's frames have one "
                                        "size and kind"):
        list(upscale_clip(torch_runner, [frames[0], split_fine(frames[1])[0]]))


def test_dry_run_says_the_bits_and_hdr(tmp_path, tiny_checkpoint_path, onnx_cache, monkeypatch):
    from typer.testing import CliRunner

    from vggx.cli import app

    monkeypatch.setenv("VGGX_CACHE_DIR", str(onnx_cache))
    src = make_hdr(tmp_path / "hdr.mkv", frames=4)
    res = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / "o.mp4"), "--checkpoint",
                                   str(tiny_checkpoint_path), "--dry-run"])
    assert res.exit_code == 0, res.output
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith("dry run: would upscale") and line.endswith("nothing was written")
    assert "PQ (SMPTE ST 2084) HDR kept" in line and "10-bit input -> 10-bit output" in line
    assert not (tmp_path / "o.mp4").exists()


def test_a_resumed_hdr_run_goes_on_with_its_fine_bits_and_metadata(tmp_path, torch_runner):
    import av

    from vggx.errors import InferenceError

    class Flaky:
        """``torch_runner`` that falls over at its ``fail_at``-th window."""

        def __init__(self, fail_at: int | None = None) -> None:
            self.info, self.description, self.calls, self.fail_at = torch_runner.info, "flaky", 0, fail_at

        def infer(self, lr, **kwargs):
            self.calls += 1
            if self.calls == self.fail_at:
                raise InferenceError("backend fell over")
            return torch_runner.infer(lr, **kwargs)

    src = make_hdr(tmp_path / "hdr.mkv", frames=30)
    encode = EncodeConfig("libx265", crf=0, segment_frames=8, options={"x265-params": "log-level=error"})
    out = tmp_path / "out.mkv"
    with pytest.raises(InferenceError, match="fell over"):
        upscale(UpscaleConfig(src, out, encode=encode, resume=True), runner=Flaky(fail_at=5))
    assert not out.exists()
    with pytest.raises(Exception, match="fine_bits"):  # another setting is refused, named
        upscale(UpscaleConfig(src, out, encode=encode, resume=True, fine_bits=False), runner=Flaky())
    result = upscale(UpscaleConfig(src, out, encode=encode, resume=True), runner=Flaky())
    assert 8 <= result.resumed_frames < 30 and result.fine_bits and result.hdr
    ref = tmp_path / "ref.mkv"
    upscale(UpscaleConfig(src, ref, encode=encode), runner=Flaky())
    for g, w in zip(read16(out), read16(ref), strict=True):
        np.testing.assert_array_equal(g, w)
    assert stream_facts(out)["color"][:3] == (9, 9, 16) and stream_facts(out)["pix_fmt"] == "yuv420p10le"
    with av.open(str(out)) as c:
        assert ColorInfo.of_frame(next(c.decode(video=0))).mastering == MASTERING


def make_rgba16(folder: Path, count: int = 6, size: tuple[int, int] = (24, 40)) -> Path:
    """16-bit RGBA PNG frames: :func:`gradient16` colour and a soft 16-bit matte (a VFX plate with its alpha)."""
    import av

    folder.mkdir()
    h, w = size
    with av.open(str(folder / "%04d.png"), "w", format="image2") as c:
        s = c.add_stream("png", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "rgba64be"
        for i in range(count):
            matte = np.clip((np.arange(w)[None, :] - 8 - i) * 4000 + np.arange(h)[:, None] * 37, 0, 65535)
            image = np.concatenate([gradient16(i, h, w), matte.astype(np.uint16)[..., None]], axis=-1)
            for p in s.encode(av.VideoFrame.from_ndarray(image, format="rgba64le")):
                c.mux(p)
    return folder / "%04d.png"


def read_rgba16(pattern: Path) -> list[np.ndarray]:
    import av

    with av.open(str(pattern), format="image2") as c:
        return [f.to_ndarray(format="rgba64le") for f in c.decode(video=0)]


class TestFineAlpha:
    """A 16-bit plate with its alpha (VFX): 16-bit RGBA out, the colour's fine levels carried, the matte's too."""

    @pytest.mark.parametrize("mode", ["bicubic", "model"])
    def test_a_16_bit_plate_keeps_16_bit_colour_and_matte(self, tmp_path, torch_runner, mode):
        from vggx.client.pipeline import _bicubic

        pattern = make_rgba16(tmp_path / "in")
        inputs = read_rgba16(pattern)
        (tmp_path / "fine").mkdir()
        (tmp_path / "flat").mkdir()
        fine = upscale(UpscaleConfig(pattern, tmp_path / "fine" / "%04d.png", alpha=mode), runner=torch_runner)
        flat = upscale(UpscaleConfig(pattern, tmp_path / "flat" / "%04d.png", alpha=mode, fine_bits=False),
                       runner=torch_runner)
        assert (fine.input_bits, fine.output_bits, fine.fine_bits) == (16, 16, True) and not flat.fine_bits
        assert stream_facts(tmp_path / "fine" / "%04d.png")["pix_fmt"] == "rgba64be"
        a, b = read_rgba16(tmp_path / "fine" / "%04d.png"), read_rgba16(tmp_path / "flat" / "%04d.png")
        colour = carried([y[..., :3] for y in b], [x[..., :3] for x in inputs])
        for x, y, want, src in zip(a, b, colour, inputs, strict=True):
            np.testing.assert_array_equal(x[..., :3], want)  # the colour: the 8-bit run's plus its residual
            if mode == "bicubic":  # the matte, enlarged in 16 bits
                np.testing.assert_array_equal(x[..., 3], _bicubic(src[..., 3], 4))
            assert np.abs(x[..., 3].astype(np.int32) - y[..., 3]).max() <= 1.2 * 257  # the 8-bit matte, give or take
            assert np.mean(x[..., 3] % 257 != 0) > 0.3  # levels between the 8-bit ones


def test_a_10_bit_420_source_reaches_the_model_rounded_not_shifted(tmp_path):
    """swscale's own 10-bit 4:2:0 -> 8-bit RGB was 1.4 levels off on average on smooth content (1.6 RMS from the
    source); through 16 bits and rounded, the model's input is the source to within 4:2:0 and rounding."""
    import av
    from av.video.reformatter import VideoReformatter

    src = tmp_path / "in.mkv"
    with VideoWriter(src, 64, 32, Fraction(24), Fraction(1, 24), EncodeConfig("libx264", crf=0,
                                                                             pix_fmt="yuv420p10le")) as w:
        w.write(gradient16(0, 32, 64), 0)
    truth = gradient16(0, 32, 64).astype(np.float64) / 257
    with open_video(src) as r:
        got = next(iter(r)).image.astype(np.float64)
    err = got - truth
    assert abs(err.mean()) < 0.1 and np.sqrt(np.mean(err**2)) < 0.5
    with av.open(str(src)) as c:  # what swscale alone makes of it (the reader before this)
        direct = VideoReformatter().reformat(next(c.decode(video=0)), format="rgb24").to_ndarray()
    assert np.sqrt(np.mean((direct - truth) ** 2)) > 2 * np.sqrt(np.mean(err**2))
