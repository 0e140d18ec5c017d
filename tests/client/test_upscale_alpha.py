"""An input with an alpha channel (RGBA PNG/TIFF, ProRes 4444, VP9 with alpha): the model upscales the colour, the
alpha is enlarged with bicubic and written where the output holds it; elsewhere a warning says it is dropped."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from videoclips import alpha_pattern, decode_all, decode_alpha, make_png_sequence, stream_facts

from vggx.client import UpscaleConfig, upscale
from vggx.video import EncodeConfig


def _bicubic_x4(plane: np.ndarray) -> np.ndarray:
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(plane), format="gray")
    h, w = plane.shape
    return frame.reformat(width=4 * w, height=4 * h, format="gray", interpolation="BICUBIC").to_ndarray()


@pytest.fixture(scope="module")
def rgba_frames(tmp_path_factory):
    """Six RGBA PNGs and the same frames without alpha (RGB PNGs)."""
    d = tmp_path_factory.mktemp("alpha")
    return (make_png_sequence(d / "rgba", first=1, count=6, alpha=True),
            make_png_sequence(d / "rgb", first=1, count=6))


def test_png_sequence_keeps_the_alpha_and_the_colour_is_the_rgb_inputs(rgba_frames, tmp_path, torch_runner):
    rgba, rgb = rgba_frames
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    upscale(UpscaleConfig(rgba, tmp_path / "a" / "%04d.png"), runner=torch_runner)
    upscale(UpscaleConfig(rgb, tmp_path / "b" / "%04d.png"), runner=torch_runner)
    assert stream_facts(tmp_path / "a" / "%04d.png")["pix_fmt"] == "rgba"
    for x, y in zip(decode_all(tmp_path / "a" / "%04d.png"), decode_all(tmp_path / "b" / "%04d.png"), strict=True):
        np.testing.assert_array_equal(x, y)  # the colour is untouched by the alpha
    alphas = decode_alpha(tmp_path / "a" / "%04d.png")
    for i, a in enumerate(alphas):
        np.testing.assert_array_equal(a, _bicubic_x4(alpha_pattern(i, 40, 56)))


@pytest.mark.parametrize(("name", "codec", "stored", "mean", "most"), [
    ("o.mkv", "ffv1", "bgra", 0, 0),
    ("o.tif", "tiff", "rgba", 0, 0),  # one image
    ("o.mov", "prores_ks", "yuva444p10le", 0.2, 1),  # ProRes 4444: 8-bit alpha rounded through 10 (measured 0.08 / 1)
    ("o.webm", "libvpx-vp9", "yuva420p", 0.5, 8),  # VP9 at CRF 18: the alpha layer lossy too (measured 0.08 / 3)
])
def test_codecs_with_alpha_write_it(rgba_frames, tmp_path, torch_runner, name, codec, stored, mean, most):
    import av

    out = tmp_path / name
    frames = 1 if name.endswith(".tif") else None
    result = upscale(UpscaleConfig(rgba_frames[0], out, encode=EncodeConfig(codec=codec), frames=frames),
                     runner=torch_runner)
    assert result.frames == (frames or 6)
    with av.open(str(out)) as c:  # what the file says it stores (VP9: alpha_mode, as FFmpeg's decoder drops it)
        s = c.streams.video[0]
        assert s.codec_context.pix_fmt == stored or (codec == "prores_ks" and s.codec_context.pix_fmt.startswith(
            "yuva444p")) or (codec == "libvpx-vp9" and s.metadata.get("alpha_mode") == "1")
    alphas = decode_alpha(out)  # vggx's reader: VP9 alpha through libvpx
    assert len(alphas) == result.frames
    for i, a in enumerate(alphas):
        diff = np.abs(a.astype(int) - _bicubic_x4(alpha_pattern(i, 40, 56)).astype(int))
        assert diff.mean() <= mean and diff.max() <= most, (diff.mean(), diff.max())


def test_explicit_pix_fmt_with_alpha_is_used(rgba_frames, tmp_path, torch_runner):
    out = tmp_path / "o.mkv"
    upscale(UpscaleConfig(rgba_frames[0], out, encode=EncodeConfig(codec="ffv1", pix_fmt="yuva444p"), frames=4),
            runner=torch_runner)
    assert stream_facts(out)["pix_fmt"] == "yuva444p" and all(a is not None for a in decode_alpha(out))


@pytest.mark.parametrize(("encode", "compare", "why"), [
    (EncodeConfig(), False, "libx264 keeps none"),
    (EncodeConfig(codec="ffv1", pix_fmt="bgr0"), False, "ffv1 in bgr0 keeps none"),
    (EncodeConfig(codec="ffv1"), True, "--compare writes none"),
])
def test_outputs_without_alpha_drop_it_with_a_warning(rgba_frames, tmp_path, torch_runner, caplog, encode, compare,
                                                       why):
    out = tmp_path / ("o.mp4" if encode.codec == "libx264" else "o.mkv")
    with caplog.at_level(logging.WARNING, logger="vggx.client.pipeline"):
        upscale(UpscaleConfig(rgba_frames[0], out, encode=encode, compare=compare, frames=4), runner=torch_runner)
    assert f"has an alpha channel; {why}, so it is dropped" in caplog.text
    assert decode_alpha(out) == [None] * 4


def test_alpha_through_the_model_without_an_alpha_channel_is_warned_of(rgba_frames, tmp_path, torch_runner, caplog):
    """``--alpha model`` on an input with no alpha: asked for by name, so the run says it had nothing to use it on
    (the default, bicubic, says nothing); the output is the RGB input's."""
    out = tmp_path / "o.mkv"
    with caplog.at_level(logging.WARNING, logger="vggx.client.pipeline"):
        upscale(UpscaleConfig(rgba_frames[1], out, encode=EncodeConfig(codec="ffv1"), frames=2, alpha="model"),
                runner=torch_runner)
    assert "has no alpha channel; --alpha model has nothing to enlarge" in caplog.text
    assert decode_alpha(out) == [None] * 2
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vggx.client.pipeline"):
        upscale(UpscaleConfig(rgba_frames[1], tmp_path / "b.mkv", encode=EncodeConfig(codec="ffv1"), frames=2),
                runner=torch_runner)
    assert "alpha" not in caplog.text


def test_resized_output_resizes_the_alpha_too(rgba_frames, tmp_path, torch_runner):
    out = tmp_path / "o.mkv"
    upscale(UpscaleConfig(rgba_frames[0], out, encode=EncodeConfig(codec="ffv1"), frames=4, outscale=2.0),
            runner=torch_runner)
    alphas = decode_alpha(out)
    assert alphas[0].shape == (80, 112)
    opaque = alpha_pattern(0, 40, 56).repeat(2, 0).repeat(2, 1)
    assert np.abs(alphas[0].astype(int) - opaque).mean() < 8  # the matte where it was, at twice the size


def test_alpha_through_the_model_is_the_model_on_the_matte_as_a_grey_clip(rgba_frames, tmp_path, torch_runner):
    """``alpha="model"``: each kept frame's alpha is the mean of the model's three channels on the window's mattes
    as grey frames, exactly (the same windows as the colour); the colour is unchanged."""
    from vggx.client import upscale_frames
    from vggx.client.windows import plan_windows

    out, bicubic = tmp_path / "m.mkv", tmp_path / "b.mkv"
    ffv1 = EncodeConfig(codec="ffv1")
    upscale(UpscaleConfig(rgba_frames[0], out, encode=ffv1, alpha="model"), runner=torch_runner)
    upscale(UpscaleConfig(rgba_frames[0], bicubic, encode=ffv1), runner=torch_runner)
    for x, y in zip(decode_all(out), decode_all(bicubic), strict=True):
        np.testing.assert_array_equal(x, y)
    mattes = [alpha_pattern(i, 40, 56) for i in range(6)]
    got = decode_alpha(out)
    for w in plan_windows(6, 8, 2):
        grey = np.stack([np.repeat(mattes[i][..., None], 3, -1) for i in w.sources])
        want = np.rint(upscale_frames(torch_runner, grey).mean(-1, dtype=np.float32)).astype(np.uint8)
        for j, i in enumerate(range(w.keep_start, w.keep_end)):
            np.testing.assert_array_equal(got[i], want[w.offset + j])
    assert any((a != b).any() for a, b in zip(got, decode_alpha(bicubic), strict=True))  # not the bicubic matte


def test_upscale_clip_alpha_through_the_model_equals_the_pipeline(rgba_frames, tmp_path, torch_runner):
    from vggx.client import upscale_clip

    out = tmp_path / "m.mkv"
    upscale(UpscaleConfig(rgba_frames[0], out, encode=EncodeConfig(codec="ffv1"), alpha="model"), runner=torch_runner)
    frames = [np.concatenate([f, alpha_pattern(i, 40, 56)[..., None]], -1)
              for i, f in enumerate(decode_all(rgba_frames[0]))]
    for g, a in zip(upscale_clip(torch_runner, frames, alpha="model"), decode_alpha(out), strict=True):
        np.testing.assert_array_equal(g[..., 3], a)


def test_an_unknown_alpha_mode_is_refused():
    from vggx.errors import ConfigError

    with pytest.raises(ConfigError, match="--alpha must be bicubic or model, got 'ai'"):
        UpscaleConfig("in.png", "out.png", alpha="ai")


@pytest.mark.parametrize(("codec", "name"), [("libvpx-vp9", "o.webm"), ("prores_ks", "o.mov")])
def test_a_resumed_run_keeps_the_alpha(tmp_path, torch_runner, codec, name):
    """Stopped and run again with --resume: the stored segments keep their alpha (VP9's travels beside each packet,
    as Matroska BlockAdditional side data, which the store keeps too), the same as a run never stopped."""
    from test_upscale_pipeline import _NearestRunner, run, stopped_run

    info = torch_runner.info
    src = make_png_sequence(tmp_path / "rgba", first=1, count=40, alpha=True)
    encode = EncodeConfig(codec, crf=30 if codec == "libvpx-vp9" else 18, segment_frames=8)
    ref, out = tmp_path / f"ref-{name}", tmp_path / name
    run(src, ref, _NearestRunner(info), encode=encode, resume=True)
    stopped_run(src, out, info, encode=encode)
    result = run(src, out, _NearestRunner(info), encode=encode, resume=True)
    assert result.resumed_frames > 0 and result.frames == 40
    got, want = decode_alpha(out), decode_alpha(ref)
    assert len(got) == 40 and all(a is not None for a in got)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert got[-1].min() < 128  # a matte, not an opaque plane (what the store used to give back for VP9)


@pytest.mark.parametrize("transparent", [False, True])
def test_a_gif_has_alpha_only_where_its_pictures_are_transparent(tmp_path, torch_runner, caplog, transparent):
    """FFmpeg decodes every GIF to bgra: an opaque one is upscaled without a word about alpha, a transparent one's
    matte is kept (PNG images) or said to be dropped (MP4)."""
    from PIL import Image

    from vggx.video import VideoReader

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(4):
        rgba = np.full((24, 32, 4), 255, np.uint8)
        rgba[..., :3] = rng.integers(0, 256, (24, 32, 3))
        if transparent:
            rgba[:8, :8, 3] = 0
        frames.append(Image.fromarray(rgba, "RGBA"))
    gif = tmp_path / "in.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=40, loop=0, disposal=2)
    assert VideoReader(gif).info.has_alpha is transparent
    with caplog.at_level(logging.WARNING, logger="vggx.client.pipeline"):
        upscale(UpscaleConfig(gif, tmp_path / "o.mp4"), runner=torch_runner)
    assert ("has an alpha channel" in caplog.text) is transparent
    (tmp_path / "png").mkdir()
    upscale(UpscaleConfig(gif, tmp_path / "png" / "%04d.png"), runner=torch_runner)
    mattes = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "png").glob("*.png"))]
    assert len(mattes) == 4 and all(m.shape[-1] == (4 if transparent else 3) for m in mattes)
    if transparent:
        assert all(m[:16, :16, 3].max() == 0 and m[48:, 48:, 3].min() == 255 for m in mattes)
    # GIF to GIF keeps its 1-bit transparency (each frame's palette has a transparent entry); it was dropped
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vggx.client.pipeline"):
        upscale(UpscaleConfig(gif, tmp_path / "o.gif"), runner=torch_runner)
    assert "has an alpha channel" not in caplog.text
    out = VideoReader(tmp_path / "o.gif")
    assert out.info.has_alpha is transparent and (out.info.width, out.info.height) == (128, 96)
    if transparent:
        for matte, frame in zip(mattes, decode_alpha(tmp_path / "o.gif"), strict=True):
            assert frame[:16, :16].max() == 0 and frame[48:, 48:].min() == 255  # where the PNGs' matte is
            np.testing.assert_array_equal(frame > 127, matte[..., 3] > 127)
