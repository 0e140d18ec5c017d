"""Black bars (``vggx.video.crop``, ``--crop``, ``--keep-bars``): the picture found inside letterbox / pillarbox bars
over frames spread across the run, upscaled alone (bit for bit what the cropped clip gives), and put back in black
frames where the output keeps the input's frame."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from test_upscale_cli import assert_one_error_line
from videoclips import frame_pattern, write_frames

from vggx.client import UpscaleConfig, upscale
from vggx.errors import ConfigError, VideoError
from vggx.video import EncodeConfig, open_video
from vggx.video.crop import Crop, find_picture, pad_bars

LOSSLESS = EncodeConfig("ffv1")  # RGB in, RGB out exactly: outputs compared bit for bit


def boxed(i: int, size: tuple[int, int], crop: Crop) -> np.ndarray:
    """Frame ``i``: the test pattern inside black bars (``crop``: where the picture is)."""
    image = np.zeros((*size, 3), np.uint8)
    image[crop.y:crop.y + crop.height, crop.x:crop.x + crop.width] = frame_pattern(i, crop.height, crop.width)
    return image


def make_clip(path, frames: list[np.ndarray], keyint: int | None = None):
    """The frames, lossless (FFV1; ``keyint``: a keyframe every so many frames)."""
    return write_frames(path, frames, options={"g": str(keyint)} if keyint else None)


def read(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


LETTERBOX = Crop(56, 32, 0, 8)  # a 56x48 frame: bars of 8 rows above and below


@pytest.fixture(scope="module")
def letterboxed(tmp_path_factory):
    """A lossless letterboxed clip and the same frames without their bars."""
    d = tmp_path_factory.mktemp("crop")
    frames = [boxed(i, (48, 56), LETTERBOX) for i in range(10)]
    return make_clip(d / "boxed.mkv", frames), make_clip(d / "picture.mkv", [LETTERBOX(f) for f in frames])


class TestFindPicture:
    def test_letterbox_pillarbox_and_windowbox(self):
        for crop in (Crop(56, 32, 0, 8), Crop(40, 48, 8, 0), Crop(40, 30, 9, 7)):
            assert find_picture([boxed(i, (48, 56), crop) for i in range(3)]) == crop

    def test_the_union_of_every_frame_never_cuts_a_shot(self):
        """A dark shot's edge rows look like bars; a brighter frame elsewhere in the film shows they are picture."""
        dark = boxed(0, (48, 56), LETTERBOX) // 40  # mean luma ~ 3: bar-dark
        dark[8:12] = 0
        assert find_picture([dark]) is None or find_picture([dark]).y > 8
        assert find_picture([dark, boxed(1, (48, 56), LETTERBOX)]) == LETTERBOX

    def test_noisy_bars_are_bars_and_burnt_in_subtitles_are_picture(self):
        rng = np.random.default_rng(0)
        image = boxed(0, (48, 56), LETTERBOX)
        image[:8] = rng.integers(0, 12, (8, 56, 3))  # a lossy encode's black: dark noise
        image[40:] = rng.integers(0, 12, (8, 56, 3))
        assert find_picture([image]) == LETTERBOX
        image[43:45, 20:30] = 235  # a subtitle's white strokes in the bottom bar (2 % of its rows)
        assert find_picture([image]) == Crop(56, 37, 0, 8)

    def test_16_bit_frames_and_an_all_black_film(self):
        image = boxed(0, (48, 56), LETTERBOX).astype(np.uint16) * 257
        assert find_picture([image]) == LETTERBOX
        assert find_picture([np.zeros((48, 56, 3), np.uint8)] * 3) is None


class TestCrop:
    def test_parse_fit_and_describe(self):
        assert Crop.parse("1920:800:0:140").fit((1080, 1920)) == Crop(1920, 800, 0, 140)
        assert Crop.parse("1440:1080").fit((1080, 1920)) == Crop(1440, 1080, 240, 0)  # W:H centred
        assert Crop(1920, 800, 0, 140).describe((1080, 1920)) == "1920x800 at 0,140 (bars: 140 top, 140 bottom)"
        assert Crop(56, 48).covers((48, 56)) and not LETTERBOX.covers((48, 56))
        with pytest.raises(ConfigError, match="--crop takes auto, none, or W:H:X:Y"):
            Crop.parse("1920x800")
        with pytest.raises(ConfigError, match="does not fit in the input's 1920x1080 frame"):
            Crop.parse("1920:800:0:300").fit((1080, 1920))

    def test_pad_bars_puts_the_picture_back_where_it_was(self):
        pictures = np.full((2, 32 * 4, 56 * 4, 3), 7, np.uint16)
        out = pad_bars(pictures, LETTERBOX, (48, 56), 4)
        assert out.shape == (2, 192, 224, 3) and out.dtype == np.uint16
        assert (out[:, 32:160] == 7).all() and not out[:, :32].any() and not out[:, 160:].any()


def test_sample_spreads_over_the_run_and_past_keyframes(tmp_path):
    """One keyframe in 10 frames: each point still gets its own frame (decoded on from the keyframe)."""
    frames = [frame_pattern(i, 40, 56) for i in range(10)]
    clip = make_clip(tmp_path / "c.mkv", frames, keyint=100)
    with open_video(clip) as r:
        decoded = [f.image for f in r]
    with open_video(clip) as r:
        samples = r.sample(5)
    assert len(samples) == 5
    for got, index in zip(samples, (1, 3, 5, 7, 9), strict=True):  # the middle of each fifth
        np.testing.assert_array_equal(got, decoded[index])
    with open_video(clip, start=10 / 24 / 2) as r:  # the second half alone
        assert [s.tobytes() for s in r.sample(5)] == [d.tobytes() for d in decoded[5:]]


def test_sample_seeks_where_points_are_far_apart(tmp_path):
    """Points 12.5 s apart (300 frames at 1 fps, a keyframe every 5): each is sought, then decoded on to."""
    import av as _av

    frames = [frame_pattern(i, 16, 32) for i in range(300)]
    with _av.open(str(tmp_path / "long.mkv"), "w") as c:
        s = c.add_stream("libx264", rate=1)
        s.height, s.width, s.pix_fmt, s.options = 16, 32, "yuv420p", {"g": "5", "crf": "30"}
        for image in frames:
            for p in s.encode(_av.VideoFrame.from_ndarray(image, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with open_video(tmp_path / "long.mkv") as r:
        decoded = [f.image for f in r]
    with open_video(tmp_path / "long.mkv") as r:
        samples = r.sample(24)
    assert [x.tobytes() for x in samples] == [decoded[int((i + 0.5) * 300 / 24)].tobytes() for i in range(24)]


class TestUpscale:
    def test_auto_upscales_the_picture_alone_bit_for_bit(self, letterboxed, tmp_path, torch_runner):
        boxed_clip, picture_clip = letterboxed
        result = upscale(UpscaleConfig(boxed_clip, tmp_path / "a.mkv", encode=LOSSLESS, crop="auto"),
                         runner=torch_runner)
        plain = upscale(UpscaleConfig(picture_clip, tmp_path / "b.mkv", encode=LOSSLESS), runner=torch_runner)
        assert result.crop == LETTERBOX and result.output_size == (128, 224) == plain.output_size
        assert result.input_size == (48, 56) and not result.keep_bars
        for a, b in zip(read(tmp_path / "a.mkv"), read(tmp_path / "b.mkv"), strict=True):
            np.testing.assert_array_equal(a, b)

    def test_keep_bars_puts_them_back_black(self, letterboxed, tmp_path, torch_runner):
        boxed_clip, picture_clip = letterboxed
        result = upscale(UpscaleConfig(boxed_clip, tmp_path / "a.mkv", encode=LOSSLESS, crop="auto", keep_bars=True),
                         runner=torch_runner)
        upscale(UpscaleConfig(picture_clip, tmp_path / "b.mkv", encode=LOSSLESS), runner=torch_runner)
        assert result.output_size == (192, 224) and result.keep_bars
        for a, b in zip(read(tmp_path / "a.mkv"), read(tmp_path / "b.mkv"), strict=True):
            np.testing.assert_array_equal(a[32:160], b)
            assert not a[:32].any() and not a[160:].any()

    def test_compare_halves_are_both_cropped_and_padded(self, letterboxed, tmp_path, torch_runner):
        boxed_clip, _ = letterboxed
        result = upscale(UpscaleConfig(boxed_clip, tmp_path / "a.mkv", encode=LOSSLESS, crop="auto", keep_bars=True,
                                       compare=True, frames=3), runner=torch_runner)
        assert result.output_size == (192, 448)
        frame = read(tmp_path / "a.mkv")[0]
        assert not frame[:32].any() and frame[32:160, :224].any() and frame[32:160, 224:].any()

    def test_explicit_rectangle_with_fine_bits(self, tmp_path, torch_runner):
        """A 10-bit sequence cropped: the residual carried is the picture's (the shapes would not even fit else)."""
        from test_upscale_depth import make_png16, read16

        pattern = make_png16(tmp_path / "seq", count=4, size=(32, 48))
        out = tmp_path / "x4" / "%04d.png"
        out.parent.mkdir()
        result = upscale(UpscaleConfig(pattern, out, crop=Crop.parse("40:24:4:2")), runner=torch_runner)
        assert result.crop == Crop(40, 24, 4, 2) and result.fine_bits and result.output_size == (96, 160)
        assert read16(out)[0].shape == (96, 160, 3)

    def test_no_bars_nothing_cropped(self, clips, tmp_path, torch_runner):
        result = upscale(UpscaleConfig(clips["aac"], tmp_path / "o.mp4", crop="auto", keep_bars=True, frames=3),
                         runner=torch_runner)
        assert result.crop is None and not result.keep_bars and result.output_size == (160, 224)

    def test_a_resumed_run_goes_on_with_its_crop_and_no_other(self, tmp_path, torch_runner):
        from test_upscale_pipeline import _NearestRunner, run, stopped_run
        from videoclips import stream_facts

        info = torch_runner.info
        src = make_clip(tmp_path / "in.mkv", [boxed(i, (48, 56), LETTERBOX) for i in range(40)])
        out = tmp_path / "out.mp4"
        encode = EncodeConfig(crf=0, segment_frames=8)
        stopped_run(src, out, info, encode=encode, crop="auto")
        with pytest.raises(ConfigError, match="holds a run with other settings \\(crop differ"):
            run(src, out, _NearestRunner(info), encode=encode, resume=True)
        result = run(src, out, _NearestRunner(info), encode=encode, resume=True, crop="auto")
        assert result.resumed_frames > 0 and result.frames == 40 and stream_facts(out)["size"] == (128, 224)


class TestCli:
    def test_dry_run_and_json_say_the_crop(self, cli, letterboxed, tmp_path):
        boxed_clip, _ = letterboxed
        result = cli(boxed_clip, tmp_path / "o.mp4", "--crop", "auto", "--keep-bars", "--dry-run", "--json",
                     tmp_path / "plan.json")
        assert result.exit_code == 0, result.output
        assert "of 56x48 at 24 fps to 224x192" in result.stdout
        assert ("cropped: upscaled 56x32 at 0,8 (bars: 8 top, 8 bottom) of each frame; the bars put back, black"
                in result.stdout)
        row = json.loads((tmp_path / "plan.json").read_text())["results"][0]
        assert row["crop"] == [56, 32, 0, 8] and row["keep_bars"] is True

    def test_a_run_prints_the_crop(self, cli, letterboxed, tmp_path):
        boxed_clip, _ = letterboxed
        result = cli(boxed_clip, tmp_path / "o.mp4", "--crop", "56:32", "--frames", "3")
        assert result.exit_code == 0, result.output
        assert "cropped: upscaled 56x32 at 0,8" in result.stdout and "bars left out" in result.stdout

    @pytest.mark.parametrize(("args", "said"), [
        (["--keep-bars"], "--keep-bars puts back the bars --crop took off"),
        (["--crop", "60:10:0:0"], "--crop 60:10:0:0 does not fit in the input's 56x40 frame"),
        (["--crop", "56x20"], "--crop takes auto, none, or W:H:X:Y"),
    ])
    def test_bad_crops_are_one_line(self, cli, clips, tmp_path, args, said):
        out = tmp_path / "o.mp4"
        assert_one_error_line(cli(clips["aac"], out, *args), said)
        assert not out.exists()


def test_standard_input_cannot_be_looked_over(tmp_path):
    with pytest.raises((ConfigError, VideoError), match="--crop auto looks over the input"):
        UpscaleConfig("-", tmp_path / "o.mp4", crop="auto")


def test_an_alpha_plate_is_cropped_and_padded_with_its_matte(tmp_path, torch_runner):
    """The matte goes with the colour: enlarged from the cropped plate's own, clear (0) in the bars put back."""
    from test_upscale_alpha import _bicubic_x4
    from videoclips import alpha_pattern, decode_alpha, make_png_sequence

    plate = make_png_sequence(tmp_path / "rgba", first=1, count=4, alpha=True)  # 56x40
    out = tmp_path / "x4" / "%04d.png"
    out.parent.mkdir()
    result = upscale(UpscaleConfig(plate, out, crop=Crop.parse("56:24:0:8"), keep_bars=True), runner=torch_runner)
    assert result.output_size == (160, 224) and result.crop == Crop(56, 24, 0, 8)
    for i, alpha in enumerate(decode_alpha(out)):
        np.testing.assert_array_equal(alpha[32:128], _bicubic_x4(alpha_pattern(i, 40, 56)[8:32]))
        assert not alpha[:32].any() and not alpha[128:].any()


def test_a_dry_run_without_crop_says_the_bars_it_sees(cli, letterboxed, clips, tmp_path):
    boxed_clip, _ = letterboxed
    result = cli(boxed_clip, tmp_path / "o.mp4", "--dry-run", "--json", tmp_path / "plan.json")
    assert result.exit_code == 0, result.output
    assert ("black bars in every frame looked at, the picture 56x32 at 0,8 (bars: 8 top, 8 bottom): --crop auto "
            "would upscale 33% fewer pixels") in result.stdout
    assert json.loads((tmp_path / "plan.json").read_text())["results"][0]["bars"] == [56, 32, 0, 8]
    result = cli(clips["aac"], tmp_path / "o.mp4", "--dry-run")
    assert result.exit_code == 0 and "black bars" not in result.stdout
