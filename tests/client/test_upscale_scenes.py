"""Scene cuts: FFmpeg's scdet finds them (``vggx.video.scenes``), and the pipeline, ``upscale_clip`` and the CLI
window each shot on its own so that no model run reads frames of two shots."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from videoclips import decode_all, frame_pattern, write_frames

from vggx.client import UpscaleConfig, upscale, upscale_clip
from vggx.client.windows import plan_windows
from vggx.errors import ConfigError, InferenceError
from vggx.video import EncodeConfig
from vggx.video.scenes import SceneCuts

SIZE = (24, 32)
CUT = 10  # the first frame of the second shot
N = 19


def shot_frames(n: int = N, cut: int = CUT, size=SIZE) -> list[np.ndarray]:
    """Two shots: the moving test pattern, then a darker one further along (a hard cut at ``cut``)."""
    return [frame_pattern(i, *size) for i in range(cut)] + [frame_pattern(40 + i, *size) // 4 for i in range(n - cut)]


def write_lossless(path, frames, rate=24):
    return write_frames(path, frames, rate=rate)


@pytest.fixture(scope="module")
def two_shots(tmp_path_factory):
    return write_lossless(tmp_path_factory.mktemp("scenes") / "two_shots.mkv", shot_frames())


class WindowMeanRunner:
    """×4 nearest-neighbour of each frame averaged with its window's mean frame: every output frame depends on all
    the frames its window read (which the real model's does too, but this tells which they were)."""

    def __init__(self, info):
        self.info, self.description, self.calls = info, "window-mean", 0

    def infer(self, lr):
        self.calls += 1
        mixed = (lr.astype(np.uint16) + lr.mean(axis=1, keepdims=True, dtype=np.float32).astype(np.uint16)) // 2
        return mixed.astype(np.uint8).repeat(4, axis=2).repeat(4, axis=3)

    def close(self):
        pass


def per_shot_reference(runner, frames, cuts):
    """What each frame should be: its shot planned as a clip of its own (``plan_windows``), one run per window."""
    out = []
    for a, b in itertools.pairwise([0, *cuts, len(frames)]):
        for w in plan_windows(b - a, runner.info.window):
            sr = runner.infer(np.stack([frames[a + i] for i in w.sources])[None])[0]
            out += list(sr[w.offset: w.offset + w.keep_count])
    return out


class TestSceneCuts:
    def test_the_hard_cut_and_nothing_else(self):
        detect = SceneCuts()
        assert [i for i, f in enumerate(shot_frames()) if detect(f)] == [CUT] == detect.cuts
        assert detect.scores[CUT] > 20 and max(detect.scores[2:CUT] + detect.scores[CUT + 1:]) < 5

    def test_the_threshold_decides(self):
        detect = SceneCuts()
        for f in shot_frames():
            detect(f)
        score = detect.scores[CUT]
        above, below = SceneCuts(min(100.0, score + 1)), SceneCuts(score - 1)
        assert [above(f) for f in shot_frames()].count(True) == 0
        assert [below(f) for f in shot_frames()].count(True) == 1

    def test_the_second_frame_is_never_a_cut(self):
        """Its score has no earlier difference to compare with: scdet gives it the whole difference."""
        rng = np.random.default_rng(0)
        noise = [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(6)]
        detect = SceneCuts()
        assert [detect(f) for f in noise] == [False] * 6
        assert detect.scores[1] > 30  # what scdet said of it
        assert max(detect.scores[2:]) < 10  # noise that changes as much every frame is no cut

    def test_alpha_is_ignored(self):
        frames = shot_frames()
        rgba = [np.concatenate([f, np.full((*SIZE, 1), 255 * (i % 2), np.uint8)], axis=-1)
                for i, f in enumerate(frames)]
        a, b = SceneCuts(), SceneCuts()
        assert [a(f) for f in rgba] == [b(f) for f in frames]
        assert a.scores == b.scores

    @pytest.mark.parametrize("threshold", [0, -1, 100.5])
    def test_a_threshold_outside_0_100_is_refused(self, threshold):
        with pytest.raises(ConfigError, match=r"percentage in \(0, 100\]"):
            SceneCuts(threshold)
        with pytest.raises(ConfigError, match=r"percentage in \(0, 100\]"):
            UpscaleConfig("in.mp4", "out.mp4", scene_threshold=threshold)

    def test_frames_of_another_size_are_refused(self):
        detect = SceneCuts()
        detect(frame_pattern(0, *SIZE))
        with pytest.raises(ConfigError, match="frame 1 is 16x16, the frames before 32x24"):
            detect(frame_pattern(1, 16, 16))


class TestPipeline:
    def test_each_shot_is_upscaled_as_a_clip_of_its_own(self, two_shots, tmp_path, torch_runner):
        out = tmp_path / "o.mkv"
        result = upscale(UpscaleConfig(two_shots, out, encode=EncodeConfig(codec="ffv1")), runner=torch_runner)
        assert result.scene_cuts == (CUT,)
        frames = decode_all(two_shots)
        alone = list(upscale_clip(torch_runner, frames[:CUT])) + list(upscale_clip(torch_runner, frames[CUT:]))
        got = decode_all(out)
        assert len(got) == N and result.windows == len(plan_windows(CUT, 8)) + len(plan_windows(N - CUT, 8))
        for g, a in zip(got, alone, strict=True):
            np.testing.assert_array_equal(g, a)

    def test_without_detection_windows_run_across_the_cut(self, two_shots, tmp_path, torch_runner):
        """What the cut costs the real model: the frames next to it change where windows mix the shots."""
        out = tmp_path / "o.mkv"
        result = upscale(UpscaleConfig(two_shots, out, encode=EncodeConfig(codec="ffv1"), scene_threshold=None),
                         runner=torch_runner)
        assert result.scene_cuts == ()
        frames, got = decode_all(two_shots), decode_all(out)
        across = list(upscale_clip(torch_runner, frames, scene_threshold=None))
        for g, a in zip(got, across, strict=True):
            np.testing.assert_array_equal(g, a)
        alone = list(upscale_clip(torch_runner, frames[:CUT])) + list(upscale_clip(torch_runner, frames[CUT:]))
        differ = [i for i in range(N) if not np.array_equal(across[i], alone[i])]
        assert CUT - 1 in differ and CUT in differ  # the frames on either side of the cut

    @pytest.mark.parametrize("concurrency", [1, 3])
    def test_windows_read_one_shot_each(self, two_shots, tmp_path, concurrency, torch_runner):
        runner = WindowMeanRunner(torch_runner.info)
        out = tmp_path / "o.mkv"
        upscale(UpscaleConfig(two_shots, out, encode=EncodeConfig(codec="ffv1"), concurrency=concurrency),
                runner=runner)
        want = per_shot_reference(runner, decode_all(two_shots), [CUT])
        for g, w in zip(decode_all(out), want, strict=True):
            np.testing.assert_array_equal(g, w)

    @pytest.mark.parametrize("segment", [8, 10])  # a whole number of window strides (4), and not
    def test_a_resumed_run_goes_on_with_the_same_shots(self, tmp_path, torch_runner, segment):
        frames = shot_frames(n=40, cut=13)
        src = write_lossless(tmp_path / "in.mkv", frames)
        encode = EncodeConfig(codec="libx264", crf=0, segment_frames=segment)
        info = torch_runner.info

        class Failing(WindowMeanRunner):
            def infer(self, lr):
                if self.calls == 7:
                    raise InferenceError("backend fell over")
                return super().infer(lr)

        failing = Failing(info)
        failing.description = "window-mean"
        out = tmp_path / "out.mp4"
        with pytest.raises(InferenceError, match="fell over"):
            upscale(UpscaleConfig(src, out, encode=encode, resume=True), runner=failing)
        store = tmp_path / ".out.mp4.vggx-resume"
        done = sum(s["frames"] for s in json.loads((store / "manifest.json").read_text())["segments"])
        assert 8 <= done < 40 and done % segment == 0
        again = WindowMeanRunner(info)
        result = upscale(UpscaleConfig(src, out, encode=encode, resume=True), runner=again)
        assert result.resumed_frames == done and result.scene_cuts == (13,)
        ref = tmp_path / "ref.mp4"
        upscale(UpscaleConfig(src, ref, encode=encode), runner=WindowMeanRunner(info))
        for g, w in zip(decode_all(out), decode_all(ref), strict=True):
            np.testing.assert_array_equal(g, w)


class TestUpscaleClip:
    def test_shots_equal_clips_of_their_own(self, torch_runner):
        runner = WindowMeanRunner(torch_runner.info)
        frames = shot_frames()
        want = per_shot_reference(runner, frames, [CUT])
        got = list(upscale_clip(runner, iter(frames)))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)

    def test_no_detection_reads_across(self, torch_runner):
        runner = WindowMeanRunner(torch_runner.info)
        frames = shot_frames()
        want = per_shot_reference(runner, frames, [])
        for g, w in zip(upscale_clip(runner, frames, scene_threshold=None), want, strict=True):
            np.testing.assert_array_equal(g, w)


class TestCli:
    def _cli(self, tiny_checkpoint_path, *args):
        from typer.testing import CliRunner

        from vggx.cli import app

        extra = ["--backend", "torch", "--checkpoint", str(tiny_checkpoint_path), "--threads", "1"]
        return CliRunner().invoke(app, ["upscale", *map(str, args), *extra])

    def test_the_cuts_are_reported_and_in_the_json(self, two_shots, tmp_path, tiny_checkpoint_path):
        result = self._cli(tiny_checkpoint_path, two_shots, tmp_path / "o.mkv", "--codec", "ffv1", "--json",
                           tmp_path / "r.json")
        assert result.exit_code == 0, result.output
        assert f"1 scene cut: the windows started afresh at frame {CUT}" in result.stdout
        assert json.loads((tmp_path / "r.json").read_text())["results"][0]["scene_cuts"] == [CUT]

    def test_no_scene_cuts_and_the_threshold_reach_the_pipeline(self, two_shots, tmp_path, tiny_checkpoint_path):
        for args in (["--no-scene-cuts"], ["--scene-threshold", "60"]):
            out = tmp_path / "o.mkv"
            result = self._cli(tiny_checkpoint_path, two_shots, out, "--codec", "ffv1", "--json",
                               tmp_path / "r.json", *args)
            assert result.exit_code == 0, result.output
            assert "scene cut" not in result.stdout
            assert json.loads((tmp_path / "r.json").read_text())["results"][0]["scene_cuts"] == []
            out.unlink()

    def test_a_bad_threshold_is_one_line_and_nothing_written(self, two_shots, tmp_path, tiny_checkpoint_path):
        result = self._cli(tiny_checkpoint_path, two_shots, tmp_path / "o.mkv", "--scene-threshold", "0")
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "(0, 100]" in lines[0], result.stderr
        assert list(tmp_path.iterdir()) == []


def test_scene_cut_lines_list_a_few_frames():
    from vggx.cli import _scene_cuts_line

    assert _scene_cuts_line((7,)) == "1 scene cut: the windows started afresh at frame 7"
    assert _scene_cuts_line(tuple(range(10, 110, 10)), shown=3) == (
        "10 scene cuts: the windows started afresh at frames 10, 20, 30, ... (7 more)")


class TestContext:
    """``--context``: frames of context each window keeps on each side (here with the cut's shots too)."""

    def test_the_cli_context_reaches_the_windows(self, two_shots, tmp_path, tiny_checkpoint_path, torch_runner):
        out = tmp_path / "o.mkv"
        result = TestCli()._cli(tiny_checkpoint_path, two_shots, out, "--codec", "ffv1", "--context", "1", "--json",
                                tmp_path / "r.json")
        assert result.exit_code == 0, result.output
        report = json.loads((tmp_path / "r.json").read_text())["results"][0]
        assert report["windows"] == len(plan_windows(CUT, 8, 1)) + len(plan_windows(N - CUT, 8, 1)) == 4
        frames = decode_all(two_shots)
        want = (list(upscale_clip(torch_runner, frames[:CUT], context=1))
                + list(upscale_clip(torch_runner, frames[CUT:], context=1)))
        for g, w in zip(decode_all(out), want, strict=True):
            np.testing.assert_array_equal(g, w)

    @pytest.mark.parametrize("context", ["4", "-1"])
    def test_a_context_the_window_cannot_keep_is_one_line(self, two_shots, tmp_path, tiny_checkpoint_path, context):
        result = TestCli()._cli(tiny_checkpoint_path, two_shots, tmp_path / "o.mkv", "--context", context)
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "--context must be in 0..3 for the model's window of 8 frames" in lines[0]
        assert lines[0].endswith(f"got {context}")
        assert list(tmp_path.iterdir()) == []


class TestFlashes:
    """One frame unlike both its neighbours (a camera flash, lightning) is not a scene cut: the scene goes on."""

    @staticmethod
    def flashed(n: int = N, at: int = 7) -> list[np.ndarray]:
        """A slow pan over one picture (the scene), frame ``at`` much brighter (the flash)."""
        y, x = np.mgrid[0:SIZE[0], 0:SIZE[1] + n]
        scene = np.stack([x * 5 % 256, y * 9 % 256, (x + y) * 3 % 256], axis=-1).astype(np.uint8)
        frames = [np.ascontiguousarray(scene[:, i: i + SIZE[1]]) for i in range(n)]
        frames[at] = np.clip(frames[at].astype(np.int16) + 150, 0, 255).astype(np.uint8)
        return frames

    def test_a_flash_is_not_a_cut_and_a_cut_still_is(self):
        detect = SceneCuts()
        flags = [cut for _, cut in detect.flagged(self.flashed())]
        assert not any(flags) and detect.flashes == [7] and detect.cuts == []
        assert max(detect.scores) >= detect.threshold  # scdet alone would have cut at the flash
        detect = SceneCuts()
        flags = [cut for _, cut in detect.flagged(shot_frames())]
        assert [i for i, cut in enumerate(flags) if cut] == [CUT] and detect.cuts == [CUT] and detect.flashes == []

    @pytest.mark.parametrize("repeat", [2, 3])
    def test_held_frames_are_not_cuts_and_a_cut_still_is(self, repeat, tmp_path):
        """Animation on twos or threes (each drawing shown 2 or 3 times) of fast motion: scdet alone cut at every
        drawing after a repeat; the repeats are not scored, so only the real cut is one. Also through H.264 at CRF 23,
        whose repeats are not exact."""
        drawings = shot_frames(n=16, cut=8)
        frames = [drawings[i // repeat] for i in range(16 * repeat)]
        detect = SceneCuts()
        flags = [cut for _, cut in detect.flagged(frames)]
        assert [i for i, cut in enumerate(flags) if cut] == [8 * repeat] and detect.cuts == [8 * repeat]
        assert len(detect.held) == 16 * (repeat - 1)
        plain = SceneCuts()  # what scdet made of it with every repeat shown to it (no last frame to be near)
        scores = []
        for f in frames:
            plain._last = None
            scores.append(plain.score(f))
        assert sum(score >= plain.threshold for score in scores[2:]) > 3  # cuts at drawings, before
        lossy = write_frames(tmp_path / "twos.mp4", frames, codec="libx264", pix_fmt="yuv420p",
                             options={"crf": "23"})
        detect = SceneCuts()
        flags = [cut for _, cut in detect.flagged(decode_all(lossy))]
        assert [i for i, cut in enumerate(flags) if cut] == [8 * repeat]

    @staticmethod
    def moving(n: int, seed: int, step: int) -> list[np.ndarray]:
        """Blocky noise panned ``step`` pixels a frame (at 2: a change of about 15 % a frame, above the threshold)."""
        field = np.kron(np.random.default_rng(seed).integers(0, 256, (40, 60, 3)), np.ones((3, 3, 1))).astype(np.uint8)
        return [np.ascontiguousarray(field[i * step: i * step + SIZE[0], i * step: i * step + SIZE[1]])
                for i in range(n)]

    @pytest.mark.parametrize("repeat", [1, 2, 3])
    def test_fast_motion_after_a_cut_is_not_a_second_cut(self, repeat):
        """The frame after a cut scored its own change (scdet compares with the change before, the cut's): a shot
        of fast motion after a cut started at its second frame too, leaving a one-frame shot. Also animation on
        twos and threes, whose repeats come between the drawings (the items still come back in order)."""
        still = [f // 4 for f in self.moving(6, 1, 0)]
        fast = [f // 2 + 100 for f in self.moving(10, 2, 2)]
        frames = still + [drawing for drawing in fast for _ in range(repeat)]
        detect = SceneCuts()
        out = list(detect.flagged(list(enumerate(frames)), image=lambda item: item[1]))
        assert [i for (i, _), _ in out] == list(range(len(frames)))
        assert detect.scores[6 + repeat] >= detect.threshold  # scdet's score says cut
        assert [i for (i, _), cut in out if cut] == [6] and detect.cuts == [6] and detect.flashes == []
        other = [255 - f for f in self.moving(8, 4, 0)]  # a one-frame shot between two others: two cuts still
        detect = SceneCuts()
        flags = [cut for _, cut in detect.flagged(still + [fast[0]] * repeat + other)]
        assert [i for i, cut in enumerate(flags) if cut] == [6, 6 + repeat] and detect.cuts == [6, 6 + repeat]

    def test_a_cut_after_a_still_opening_is_found(self):
        """A title card held for 30 frames, then the film: the first change scdet sees is a cut (a drawing held twice
        or three times at the start is not)."""
        frames = [frame_pattern(0, *SIZE)] * 30 + [frame_pattern(50 + i, *SIZE) // 4 for i in range(6)]
        detect = SceneCuts()
        assert [i for i, cut in enumerate(detect(f) for f in frames) if cut] == [30]

    def test_items_come_back_in_order_one_late(self):
        frames = shot_frames()
        seen = []

        def tagged():
            for i, f in enumerate(frames):
                seen.append(i)
                yield (i, f)

        out = []
        for (i, _), _cut in SceneCuts().flagged(tagged(), image=lambda item: item[1]):
            out.append(i)
            assert seen[-1] == min(i + 1, len(frames) - 1)  # the next frame was read first (not more)
        assert out == list(range(len(frames)))

    def test_windows_run_across_a_flash(self, torch_runner, tmp_path):
        runner = WindowMeanRunner(torch_runner.info)
        frames = self.flashed()
        got = list(upscale_clip(runner, frames))
        across = per_shot_reference(runner, frames, [])
        for g, a in zip(got, across, strict=True):
            np.testing.assert_array_equal(g, a)
        src = write_lossless(tmp_path / "flash.mkv", frames)
        result = upscale(UpscaleConfig(src, tmp_path / "o.mkv", encode=EncodeConfig(codec="ffv1")), runner=runner)
        assert result.scene_cuts == ()
        for g, a in zip(decode_all(tmp_path / "o.mkv"), across, strict=True):
            np.testing.assert_array_equal(g, a)
