"""``upscale()`` end to end on real clips with the in-process torch and onnxruntime runners (tiny checkpoint)."""

from __future__ import annotations

import itertools
import json
import re
from fractions import Fraction

import numpy as np
import pytest
from videoclips import decode_all, frame_pattern, make_png_sequence, make_slideshow, make_video, stream_facts

from vggx.client import Backend, BackendConfig, UpscaleConfig, upscale, upscale_clip, upscale_frames
from vggx.client.runners import TorchRunner, cached_onnx
from vggx.client.windows import plan_tiles, plan_windows
from vggx.errors import ConfigError, DeviceOutOfMemoryError, InferenceError, VideoError
from vggx.video import EncodeConfig, VideoWriter

LOSSLESS = EncodeConfig(codec="ffv1")


def run(src, out, runner, **kw):
    encode = kw.pop("encode", LOSSLESS)
    return upscale(UpscaleConfig(src, out, encode=encode, **kw), runner=runner)


class TestOutput:
    @pytest.mark.parametrize(("clip", "ext", "audio", "rate"), [("aac", ".mp4", "aac", 24),
                                                                ("opus", ".mkv", "opus", 30000 / 1001)])
    def test_x4_same_frames_rate_and_audio(self, clips, tmp_path, torch_runner, clip, ext, audio, rate):
        out = tmp_path / f"out{ext}"
        result = upscale(UpscaleConfig(clips[clip], out), runner=torch_runner)  # default: H.264 yuv420p
        src, dst = stream_facts(clips[clip]), stream_facts(out)
        assert dst["size"] == (src["size"][0] * 4, src["size"][1] * 4) == result.output_size
        assert dst["frames"] == src["frames"] == result.frames
        assert float(dst["rate"]) == pytest.approx(rate) and dst["rate"] == src["rate"]
        assert dst["audio"] == [audio]
        assert dst["codec"] == "h264" and dst["pix_fmt"] == "yuv420p"
        assert result.output_bytes == out.stat().st_size and list(tmp_path.iterdir()) == [out]

    def test_container_metadata_is_copied(self, clips, tmp_path, torch_runner):
        run(clips["aac"], tmp_path / "o.mp4", torch_runner, frames=2)
        assert stream_facts(tmp_path / "o.mp4")["metadata"]["title"] == "vggx test clip"

    @pytest.mark.parametrize(("clip", "size"), [("odd444", (41, 57)), ("tenbit", (24, 40)), ("gray", (33, 35))])
    def test_odd_10bit_and_grey_inputs_are_converted(self, clips, tmp_path, torch_runner, clip, size):
        out = tmp_path / "o.mp4"
        result = upscale(UpscaleConfig(clips[clip], out), runner=torch_runner)
        assert stream_facts(out)["size"] == (4 * size[0], 4 * size[1]) and result.frames == 5


class TestWindows:
    def test_each_frame_is_the_centre_of_a_single_window_run(self, clips, tmp_path, torch_runner):
        """Output frame i == frame (i - keep_start + context) of one model run on window k's frames."""
        src = decode_all(clips["twelve"])  # 12 frames: windows keep 0-3 (mirrored), 4-7, 8-11 (mirrored)
        run(clips["twelve"], tmp_path / "o.mkv", torch_runner)
        out = decode_all(tmp_path / "o.mkv")
        assert len(out) == 12
        for w in plan_windows(12, 8, 2):
            single = upscale_frames(torch_runner, np.stack([src[i] for i in w.sources]))
            for j, i in enumerate(range(w.keep_start, w.keep_end)):
                np.testing.assert_array_equal(out[i], single[w.offset + j])

    def test_centre_frames_equal_a_plain_run_on_a_clip_that_fits_one_window(self, clips, tmp_path,
                                                                          torch_runner):
        # Frames 2..9 are one window's worth of real frames (no mirroring): its centre is output 4..7.
        src = decode_all(clips["twelve"])
        run(clips["twelve"], tmp_path / "o.mkv", torch_runner)
        out = decode_all(tmp_path / "o.mkv")
        plain = upscale_frames(torch_runner, np.stack(src[2:10]))
        np.testing.assert_array_equal(np.stack(out[4:8]), plain[2:6])

    def test_concurrency_keeps_the_order_and_the_pixels(self, clips, tmp_path, torch_runner):
        run(clips["twelve"], tmp_path / "a.mkv", torch_runner)
        run(clips["twelve"], tmp_path / "b.mkv", torch_runner, concurrency=3)
        for a, b in zip(decode_all(tmp_path / "a.mkv"), decode_all(tmp_path / "b.mkv"), strict=True):
            np.testing.assert_array_equal(a, b)


class TestTiles:
    def test_tiled_run_matches_single_tiles_and_stays_close_to_untiled(self, clips, tmp_path, torch_runner,
                                                                      small_profile_checkpoint):
        small = TorchRunner(small_profile_checkpoint, threads=1)  # same weights, max size 24x32
        plan = plan_tiles((40, 56), small.info.max_size, 8, 4)
        assert plan.count == 6
        result = run(clips["big"], tmp_path / "t.mkv", small, frames=4)
        assert result.tiles_per_window == 6
        tiled = np.stack(decode_all(tmp_path / "t.mkv"))
        src = np.stack(decode_all(clips["big"])[:4])
        window = np.stack([src[i] for i in plan_windows(4, 8, 2)[0].sources])
        # 1. Where only one tile covers a pixel, the output is exactly that tile's model output.
        y0, y1, x0, x1, weight = next(plan.tiles())
        only = weight[..., 0] == 1.0
        tile = upscale_frames(small, window[:, y0:y1, x0:x1])[2:6]
        np.testing.assert_array_equal(tiled[:, 4 * y0:4 * y1, 4 * x0:4 * x1][:, only], tile[:, only])
        # 2. Against the untiled run: identical away from the seams, a bounded blend near them.
        untiled = upscale_frames(torch_runner, window)[2:6].astype(int)
        diff = np.abs(tiled.astype(int) - untiled)
        # measured with these weights: mean 0.0065, max 3, 99.4% of values identical; about 3x that is allowed (a box
        # average instead of the ramps measured mean 0.115, which the earlier bound of 0.1 only just caught)
        assert diff.mean() < 0.02 and diff.max() <= 6, (diff.mean(), diff.max())
        assert (diff == 0).mean() > 0.98, (diff == 0).mean()


class SmallDevice:
    """A runner whose device holds at most ``pixels`` LR pixels a frame: a larger input raises what a GPU runner
    raises when it runs out of memory (the real runner below does the work)."""

    def __init__(self, runner, pixels: int) -> None:
        self.runner, self.pixels = runner, pixels
        self.info, self.description, self.device_name = runner.info, runner.description, "the test device"
        self.shapes: list[tuple[int, int]] = []  # (h, w) of every input, in order

    def infer(self, lr):
        self.shapes.append(lr.shape[2:4])
        if lr.shape[2] * lr.shape[3] > self.pixels:
            raise DeviceOutOfMemoryError(f"the test device ran out of memory on input {lr.shape}", lr.shape)
        return self.runner.infer(lr)


class TestTileOption:
    def test_tile_runs_like_a_model_whose_max_size_it_is(self, clips, tmp_path, torch_runner,
                                                        small_profile_checkpoint):
        small = TorchRunner(small_profile_checkpoint, threads=1)  # same weights, max size 24x32
        a = run(clips["big"], tmp_path / "a.mkv", small, frames=4)
        b = run(clips["big"], tmp_path / "b.mkv", torch_runner, frames=4, tile=(24, 32))
        assert a.tiles_per_window == b.tiles_per_window == 6 and a.tile == b.tile == (24, 32)
        assert run(clips["big"], tmp_path / "c.mkv", torch_runner, frames=4).tile is None  # whole frames
        for x, y in zip(decode_all(tmp_path / "a.mkv"), decode_all(tmp_path / "b.mkv"), strict=True):
            np.testing.assert_array_equal(x, y)

    def test_a_tile_above_the_models_max_size_is_the_max_size(self, clips, tmp_path, small_profile_checkpoint):
        small = TorchRunner(small_profile_checkpoint, threads=1)
        assert run(clips["big"], tmp_path / "a.mkv", small, frames=4, tile=(4000, 4000)).tiles_per_window == 6

    def test_a_tile_below_the_smallest_is_refused_before_any_work(self, clips, tmp_path, torch_runner):
        with pytest.raises(ConfigError, match=r"--tile 8x64 is below the smallest tile this model takes, 16x16"):
            run(clips["big"], tmp_path / "a.mkv", torch_runner, tile=(8, 64))
        assert list(tmp_path.iterdir()) == []


class TestHostMemory:
    """An in-process CPU run out of host memory is killed by the kernel's OOM killer more often than it gets an error
    to halve its tiles on: windows are sized to the memory the runner may use from the first frame."""

    def test_frames_whose_window_would_not_fit_are_tiled_from_the_start(self, clips, tmp_path, torch_runner,
                                                                        monkeypatch, caplog):
        import logging

        per_pixel = torch_runner.host_bytes_per_pixel
        assert per_pixel and torch_runner.host_budget  # a CPU runner says what its windows hold, and may hold
        monkeypatch.setattr(torch_runner, "host_budget", int(per_pixel * 40 * 56 * 1.1))  # 40x56 frames fit whole
        assert run(clips["big"], tmp_path / "a.mkv", torch_runner, frames=4).tile is None
        monkeypatch.setattr(torch_runner, "host_budget", int(per_pixel * 40 * 56 * 0.9))  # ... no longer
        caplog.set_level(logging.INFO, "vggx.client.pipeline")
        result = run(clips["big"], tmp_path / "b.mkv", torch_runner, frames=4)
        # the ladder's 48x80 in the frame (40x48, turned: 40x56 does not fit)
        explicit = run(clips["big"], tmp_path / "c.mkv", torch_runner, frames=4, tile=(40, 48))
        assert result.tile == explicit.tile == (40, 48) and result.tiles_per_window == explicit.tiles_per_window > 1
        for x, y in zip(decode_all(tmp_path / "b.mkv"), decode_all(tmp_path / "c.mkv"), strict=True):
            np.testing.assert_array_equal(x, y)
        assert "tiles of at most 40x48: a window of 40x56 frames would hold more than the " in caplog.text
        # two windows in flight share the memory; --tile is the user's
        assert run(clips["big"], tmp_path / "d.mkv", torch_runner, frames=4, concurrency=2).tile == (16, 16)
        assert run(clips["big"], tmp_path / "e.mkv", torch_runner, frames=4, tile=(40, 56)).tile is None

    def test_a_cgroup_limit_counts_what_cannot_be_reclaimed_in_the_processs_own_group(self, tmp_path):
        """The process's own cgroup (not the mount's root, which under a job scheduler has no limit) and those above
        it; the page cache of a video read before (inactive file pages) is not counted as used."""
        from vggx.client.runners import _cgroup_headroom

        gib = 2**30

        def group(path, limit, usage, inactive, v1=False):
            path.mkdir(parents=True, exist_ok=True)
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file") if v1 else \
                    ("memory.max", "memory.current", "inactive_file")
            (path / names[0]).write_text(f"{limit}\n")
            (path / names[1]).write_text(f"{usage}\n")
            (path / "memory.stat").write_text(f"anon 1\n{names[2]} {inactive}\n")

        proc = tmp_path / "cgroup"
        v2 = tmp_path / "v2"
        (v2).mkdir()
        (v2 / "cgroup.controllers").write_text("cpu memory\n")
        group(v2, "max", 50 * gib, 0)
        group(v2 / "job", 12 * gib, 11 * gib, 6 * gib)  # 11 GiB used, 6 of it cache: 7 GiB of room
        group(v2 / "job" / "step", "max", 11 * gib, 6 * gib)
        proc.write_text("0::/job/step\n")
        assert _cgroup_headroom(proc, v2) == 7 * gib
        v1 = tmp_path / "v1"
        group(v1 / "memory", 9223372036854771712, 9 * gib, 0, v1=True)  # v1's "no limit"
        group(v1 / "memory" / "slurm" / "job_1", 8 * gib, 3 * gib, gib, v1=True)
        proc.write_text("4:memory:/slurm/job_1\n1:cpu:/\n0::/\n")
        assert _cgroup_headroom(proc, v1) == 6 * gib
        proc.write_text("4:memory:/\n0::/\n")
        assert _cgroup_headroom(proc, v1) is None  # no limit anywhere

    def test_the_activations_are_worked_out_once_and_kept(self, tmp_path, monkeypatch):
        """The meta-device forward they come from imports a second of PyTorch on first use: every CPU run paid it as
        it started. Kept in vggx's cache, keyed by the config; a cache file that does not read is worked out again."""
        import vggx.generator.flops
        from vggx.checkpoint import load_checkpoint
        from vggx.client.runners import activations_per_pixel

        monkeypatch.setenv("VGGX_CACHE_DIR", str(tmp_path))
        config = load_checkpoint(None).config
        activations_per_pixel.cache_clear()
        first = activations_per_pixel(config, 8)
        (kept,) = (tmp_path / "memory").iterdir()
        real = vggx.generator.flops.activation_bytes
        monkeypatch.setattr(vggx.generator.flops, "activation_bytes", lambda *a, **k: pytest.fail("worked out again"))
        activations_per_pixel.cache_clear()
        assert activations_per_pixel(config, 8) == first and 15_000 < first < 30_000  # bytes: 20 KiB a pixel
        kept.write_text("{")
        monkeypatch.setattr(vggx.generator.flops, "activation_bytes", real)
        activations_per_pixel.cache_clear()
        assert activations_per_pixel(config, 8) == first and activations_per_pixel(config.replace(window=4), 4) < first
        assert len(list((tmp_path / "memory").iterdir())) == 2
        activations_per_pixel.cache_clear()

    def test_the_estimate_is_what_the_runtimes_were_measured_to_hold(self, torch_runner, ort_runner, tmp_path,
                                                                     portable_onnx):
        """Peak RSS of `vggx upscale` at 360x640 with the tiny model (HOST_MEMORY_FACTOR): onnxruntime 7.5 GiB,
        PyTorch about 1.4x its FP32 activations. A change to the model or the factors that moves them fails here."""
        from vggx.client.runners import OnnxRuntimeRunner, host_memory_available

        assert 7.5 < ort_runner.host_bytes_per_pixel * 360 * 640 / 2**30 < 10
        assert 0.6 < torch_runner.host_bytes_per_pixel / ort_runner.host_bytes_per_pixel < 0.9
        assert host_memory_available() > 0 and ort_runner.host_budget > 0  # Linux: /proc/meminfo, cgroups
        with OnnxRuntimeRunner(portable_onnx) as bare:  # the runner alone budgets nothing (open_runner does)
            assert bare.host_bytes_per_pixel is None and bare.host_budget is None

    def test_an_exported_onnx_file_run_alone_is_budgeted_as_its_checkpoint(self, ort_runner, portable_onnx,
                                                                          tiny_checkpoint, tmp_path, caplog):
        """`vggx upscale --checkpoint model.onnx` (an export run without its checkpoint) had no host memory budget:
        a frame past the machine's memory was one window, and the OOM killer took the run. The export holds its
        generator config (not published to Triton), from which the run is budgeted as its checkpoint's is."""
        import logging

        import onnx

        from vggx.client import Backend, BackendConfig, open_runner
        from vggx.export.onnx import GENERATOR_CONFIG_KEY
        from vggx.export.repository import model_config
        from vggx.generator import GeneratorConfig

        model = onnx.load(str(portable_onnx))
        meta = {p.key: p.value for p in model.metadata_props}
        assert GeneratorConfig.from_json(meta[GENERATOR_CONFIG_KEY]) == tiny_checkpoint.config
        params = model_config(backend="python", metadata=meta, window=8).parameters
        assert GENERATOR_CONFIG_KEY not in params and "checkpoint_sha256" in params
        with open_runner(BackendConfig(Backend.ONNXRUNTIME, checkpoint=portable_onnx, threads=1)) as alone:
            assert alone.host_bytes_per_pixel == ort_runner.host_bytes_per_pixel
            assert alone.host_budget > 0

        caplog.set_level(logging.WARNING, "vggx.client.runners")
        for value in (None, "{not json", tiny_checkpoint.config.replace(window=4).to_json()):
            props = {k: v for k, v in meta.items() if k != GENERATOR_CONFIG_KEY}
            if value is not None:  # unreadable, or contradicting the file's window: not trusted
                props[GENERATOR_CONFIG_KEY] = value
            del model.metadata_props[:]
            onnx.helper.set_model_props(model, props)
            onnx.save(model, str(tmp_path / "old.onnx"))
            caplog.clear()
            with open_runner(BackendConfig(Backend.ONNXRUNTIME, checkpoint=tmp_path / "old.onnx", threads=1)) as old:
                assert old.host_bytes_per_pixel is None and old.host_budget is None
            assert "frames are not tiled to fit this machine's memory" in caplog.text, value

    def test_onnxruntime_holds_one_window_not_two(self, portable_onnx):
        """With ONNX Runtime's memory pattern (its default) the second window of a size asked the CPU arena for the
        whole planned block at once, which the first window's freed chunks could not hold: the arena grew by a second
        window and kept both (the second window's peak 1.6x the first's here, 1.05x without; 2x at 90x160 and up).
        Each window's peak: the process's high-water mark (reset through /proc/self/clear_refs) above its memory
        before the first. In a process of its own: in the suite's, the C heap freed by earlier tests held part of
        the first window unseen."""
        import subprocess
        import sys
        import textwrap
        from pathlib import Path

        if not Path("/proc/self/clear_refs").exists():
            pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
        script = textwrap.dedent(f"""
            from pathlib import Path
            import numpy as np
            from vggx.client.runners import OnnxRuntimeRunner

            def kib(key):
                return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                            if line.startswith(key + ":"))

            lr = np.random.default_rng(0).integers(0, 256, (1, 8, 64, 96, 3), dtype=np.uint8)
            with OnnxRuntimeRunner({str(portable_onnx)!r}, threads=1) as runner:
                before = kib("VmRSS")
                peaks = []
                for _ in range(2):
                    Path("/proc/self/clear_refs").write_text("5")
                    runner.infer(lr)
                    peaks.append(kib("VmHWM") - before)
            print(*peaks)
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        first, second = map(int, done.stdout.split())
        assert first > 40 * 1024  # KiB: the window's activations (about 120 MiB), held by the arena after it
        assert second < 1.25 * first, f"the second window peaked at {second} KiB, the first at {first} KiB"


class TestOutOfMemory:
    @pytest.mark.parametrize("concurrency", [1, 2])
    def test_tiles_halve_until_they_fit_and_the_output_is_that_tiling(self, clips, tmp_path, torch_runner, caplog,
                                                                     concurrency):
        device = SmallDevice(torch_runner, pixels=24 * 32)
        result = run(clips["big"], tmp_path / "a.mkv", device, concurrency=concurrency)  # 40x56 frames
        # 40x56 did not fit, nor 40x24 (56 halved, on multiples of 8); 16x24 (40 halved) does
        warnings = [r.getMessage() for r in caplog.records if "ran out of memory" in r.getMessage()]
        assert warnings == [
            "the test device ran out of memory on 40x56 tiles; going on with tiles of at most 40x24 (--tile 40x24 "
            "starts there)",
            "the test device ran out of memory on 40x24 tiles; going on with tiles of at most 16x24 (--tile 16x24 "
            "starts there)"]
        assert max(h * w for h, w in device.shapes[-12:]) <= 24 * 32  # every window since: the small tiles
        explicit = run(clips["big"], tmp_path / "b.mkv", torch_runner, tile=(16, 24))
        assert result.tiles_per_window == explicit.tiles_per_window == plan_tiles((40, 56), (16, 24), 8, 4).count
        assert result.tile == explicit.tile == (16, 24)  # what --tile starts the next run with
        assert result.frames == explicit.frames == 5
        for x, y in zip(decode_all(tmp_path / "a.mkv"), decode_all(tmp_path / "b.mkv"), strict=True):
            np.testing.assert_array_equal(x, y)  # every window ran again in full with the smaller tiles

    def test_a_device_too_small_for_the_smallest_tile_fails_in_one_line(self, clips, tmp_path, torch_runner):
        device = SmallDevice(torch_runner, pixels=100)
        with pytest.raises(InferenceError, match=r"^the test device ran out of memory on input \(1, 8, 16, 16, 3\) "
                           r"even in tiles of 16x16, the smallest this model takes: free memory on the test device"):
            run(clips["big"], tmp_path / "a.mkv", device)
        assert list(tmp_path.iterdir()) == []

    def test_other_inference_errors_are_not_retried(self, clips, tmp_path, torch_runner):
        class Broken(SmallDevice):
            def infer(self, lr):
                self.shapes.append(lr.shape[2:4])
                raise InferenceError("broken")

        device = Broken(torch_runner, pixels=0)
        with pytest.raises(InferenceError, match=r"^broken$"):
            run(clips["big"], tmp_path / "a.mkv", device)
        assert device.shapes[0] == (40, 56) and len(device.shapes) == 1


class FreedLater(SmallDevice):
    """A device that holds ``pixels`` a frame until ``calls`` inferences have run, then anything (another process
    let its memory go)."""

    def __init__(self, runner, pixels: int, calls: int | None) -> None:
        super().__init__(runner, pixels)
        self.calls = calls

    def infer(self, lr):
        if self.calls is not None and len(self.shapes) >= self.calls:
            self.pixels = 10**9
        return super().infer(lr)


class TestTilesGrowBack:
    """After windows that fit in smaller tiles, the larger size is tried again (memory another process held may have
    come free); while it still does not fit, the tries come at doubling intervals."""

    @staticmethod
    def _frames(n=48):
        return [frame_pattern(i, 40, 56) for i in range(n)]  # 12 windows of 40x56 frames

    def test_whole_frames_again_once_the_memory_is_free(self, torch_runner, monkeypatch, caplog):
        import vggx.client.pipeline as pipeline

        monkeypatch.setattr(pipeline, "_GROW_AFTER", 2)
        device = FreedLater(_NearestRunner(torch_runner.info), pixels=24 * 32, calls=12)
        got = list(upscale_clip(device, self._frames()))
        assert device.shapes[:3] == [(40, 56), (40, 24), (16, 24)]  # halved twice, as before
        assert device.shapes[-1] == (40, 56) and device.shapes.count((40, 56)) >= 2  # and back to whole frames
        for g, f in zip(got, self._frames(), strict=True):  # nearest-neighbour: every tiling gives the same frames
            np.testing.assert_array_equal(g, f.repeat(4, axis=0).repeat(4, axis=1))
        assert sum("ran out of memory" in r.getMessage() for r in caplog.records if r.levelname == "WARNING") == 2

    def test_tries_while_it_does_not_fit_come_at_doubling_intervals(self, torch_runner, monkeypatch):
        import vggx.client.pipeline as pipeline

        monkeypatch.setattr(pipeline, "_GROW_AFTER", 1)
        device = FreedLater(_NearestRunner(torch_runner.info), pixels=24 * 32, calls=None)  # never freed
        list(upscale_clip(device, self._frames(96)))  # 24 windows
        fits = [i for i, (h, w) in enumerate(device.shapes) if h * w <= 24 * 32]
        # windows that fitted between two tries of the larger size (40x24): 1, 2, 4, 8, ...
        per_window = plan_tiles((40, 56), (16, 24), 8, 4).count  # tiles of a window that fits
        tries = [i for i, shape in enumerate(device.shapes) if shape == (40, 24)]
        gaps = [sum(1 for f in fits if a < f < b) // per_window for a, b in itertools.pairwise(tries)]
        assert gaps[:4] == [1, 2, 4, 8], gaps
        assert len(device.shapes) - len(fits) < 12  # a few tries, not one per window


class TestUpscaleClip:
    def test_frames_in_memory_give_the_frames_the_pipeline_encodes(self, clips, tmp_path, torch_runner):
        run(clips["twelve"], tmp_path / "o.mkv", torch_runner)
        got = list(upscale_clip(torch_runner, decode_all(clips["twelve"])))
        want = decode_all(tmp_path / "o.mkv")
        assert len(got) == len(want) == 12
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)

    def test_a_generator_is_read_as_the_windows_need_it(self, clips, torch_runner):
        src = decode_all(clips["twelve"])
        read = []

        def frames():
            for i, f in enumerate(src):
                read.append(i)
                yield f

        out = upscale_clip(torch_runner, frames())
        first = next(out)
        # window 0 reads frames 0..5 (its context: 4, 5), and frame 6 is read to tell whether 5 was a flash
        assert first.shape == (160, 224, 3) and len(read) == 7
        assert len(list(out)) == 11
        read.clear()
        out = upscale_clip(torch_runner, frames(), scene_threshold=None)
        next(out)
        assert len(read) == 6  # without scene cuts, no frame ahead

    def test_tiles_and_out_of_memory_as_in_the_pipeline(self, clips, tmp_path, torch_runner, caplog):
        run(clips["big"], tmp_path / "t.mkv", torch_runner, tile=(16, 24))
        src = decode_all(clips["big"])
        tiled = list(upscale_clip(torch_runner, src, tile=(16, 24)))
        squeezed = list(upscale_clip(SmallDevice(torch_runner, pixels=24 * 32), src))
        assert "going on with tiles of at most 16x24" in caplog.text
        for a, b, c in zip(decode_all(tmp_path / "t.mkv"), tiled, squeezed, strict=True):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)

    def test_rgba_frames_come_back_rgba_like_the_pipelines_alpha(self, clips, tmp_path, torch_runner):
        from videoclips import alpha_pattern, decode_alpha, make_png_sequence

        seq = make_png_sequence(tmp_path / "rgba", first=1, count=6, alpha=True)
        run(seq, tmp_path / "o.mkv", torch_runner)  # ffv1: alpha kept
        rgb, alpha = decode_all(tmp_path / "o.mkv"), decode_alpha(tmp_path / "o.mkv")
        frames = [np.concatenate([f, alpha_pattern(i, 40, 56)[..., None]], -1)
                  for i, f in enumerate(decode_all(seq))]
        got = list(upscale_clip(torch_runner, frames))
        assert len(got) == 6 and got[0].shape == (160, 224, 4)
        for g, c, a in zip(got, rgb, alpha, strict=True):
            np.testing.assert_array_equal(g[..., :3], c)
            np.testing.assert_array_equal(g[..., 3], a)

    @pytest.mark.parametrize(("frames", "message"), [
        ([np.zeros((16, 16, 3), np.float32)], r"frame 0 must be uint8 RGB \(h, w, 3\) or RGBA \(h, w, 4\), or "
                                              r"uint16 RGB, of at least 1x1 pixels, got float32 \(16, 16, 3\)"),
        ([np.zeros((16, 16), np.uint8)], r"frame 0 must be uint8 RGB \(h, w, 3\) or RGBA \(h, w, 4\), or uint16 RGB, "
                                         r"of at least 1x1 pixels, got uint8 \(16, 16\)"),
        ([np.zeros((0, 16, 3), np.uint8)], r"of at least 1x1 pixels, got uint8 \(0, 16, 3\)"),  # scdet's error was raw
        ([np.zeros((16, 16, 3), np.uint8)] * 3 + [np.zeros((16, 24, 3), np.uint8)],
         "frame 3 is 24x16x3, frame 0 16x16x3: a clip's frames have one size and kind"),
        ([np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 4), np.uint8)],
         "frame 1 is 16x16x4, frame 0 16x16x3: a clip's frames have one size and kind"),
    ])
    def test_bad_frames_are_one_clear_error(self, torch_runner, frames, message):
        with pytest.raises(ConfigError, match=message):
            list(upscale_clip(torch_runner, frames))

    @pytest.mark.parametrize("frames", [np.zeros((8, 16, 16), np.uint8), np.zeros((8, 16, 16, 3), np.float32),
                                        np.zeros((0, 16, 16, 3), np.uint8), [np.zeros((16, 16, 3), np.uint8)] * 8])
    def test_a_window_that_is_not_uint8_t_h_w_3_is_one_clear_error(self, torch_runner, frames):
        from vggx.client import upscale_frames

        with pytest.raises(ConfigError, match=r"frames must be uint8 \(T, h, w, 3\) RGB, got "):
            upscale_frames(torch_runner, frames)

    def test_no_frames_give_no_frames(self, torch_runner):
        assert list(upscale_clip(torch_runner, [])) == []
        assert list(upscale_clip(torch_runner, [], concurrency=3)) == []

    def test_windows_in_flight_at_once_give_the_same_frames(self, clips, torch_runner):
        import threading

        class TwoAtOnce:
            """The first two windows wait for each other: one at a time would time the barrier out."""

            def __init__(self, inner):
                self.inner, self.info, self.calls = inner, inner.info, 0
                self.barrier, self.lock = threading.Barrier(2, timeout=60), threading.Lock()

            def infer(self, lr):
                with self.lock:
                    self.calls += 1
                    first_two = self.calls <= 2
                if first_two:
                    self.barrier.wait()
                return self.inner.infer(lr)

        src = decode_all(clips["twelve"])
        want = list(upscale_clip(torch_runner, src))
        runner = TwoAtOnce(torch_runner)
        got = list(upscale_clip(runner, iter(src), concurrency=2))
        assert runner.calls == 3 and len(got) == len(want) == 12
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)

    def test_a_failed_window_ends_the_clip_after_the_frames_before_it(self, clips, torch_runner):
        src = decode_all(clips["twelve"])

        class FailsOnWindow1:  # by its frames, not by call order (the workers' order is the scheduler's)
            def __init__(self, inner):
                self.inner, self.info = inner, inner.info

            def infer(self, lr):
                if np.array_equal(lr[0, 2], src[4]):  # window 1 reads frames 2..9 (window 0: 2, 1, 0, ..)
                    raise InferenceError("backend fell over")
                return self.inner.infer(lr)

        got = []
        with pytest.raises(InferenceError, match="fell over"):
            for frame in upscale_clip(FailsOnWindow1(torch_runner), src, concurrency=2):
                got.append(frame)
        want = list(upscale_clip(torch_runner, src[:8]))[:4]
        assert len(got) == 4  # window 0's frames, in order; then window 1's error
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)

    def test_concurrency_out_of_range_is_refused(self, torch_runner):
        with pytest.raises(ConfigError, match=r"concurrency must be in 1\.\.64, got 0"):
            next(upscale_clip(torch_runner, [np.zeros((16, 16, 3), np.uint8)], concurrency=0))


class TestPreviewAndCompare:
    def test_start_and_frames_take_a_slice_with_its_audio(self, clips, tmp_path, torch_runner):
        out = tmp_path / "p.mp4"
        result = run(clips["aac"], out, torch_runner, start=4 / 24, frames=3, encode=EncodeConfig())
        facts = stream_facts(out)
        assert result.frames == facts["frames"] == 3 and facts["audio"] == ["aac"]
        import av

        with av.open(str(out)) as c:
            audio = c.streams.audio[0]
            end = max(float(p.pts * p.time_base) for p in c.demux(audio) if p.pts is not None)
        assert end < 0.5 / 2  # the 10-frame tone was cut near the 3-frame video's end (0.125 s)

    def test_preview_starts_at_the_requested_frame(self, clips, tmp_path, torch_runner):
        run(clips["twelve"], tmp_path / "p.mkv", torch_runner, start=4 / 24, frames=4)
        full_run = tmp_path / "f.mkv"
        run(clips["twelve"], full_run, torch_runner)
        preview = decode_all(tmp_path / "p.mkv")
        assert len(preview) == 4
        # the preview's first frame is source frame 4 upscaled (its own windows, so compare loosely)
        ref = decode_all(full_run)[4].astype(int)
        assert np.abs(preview[0].astype(int) - ref).mean() < 20

    def test_compare_puts_bicubic_left_of_vggx(self, clips, tmp_path, torch_runner):
        run(clips["twelve"], tmp_path / "c.mkv", torch_runner, frames=4, compare=True)
        run(clips["twelve"], tmp_path / "v.mkv", torch_runner, frames=4)
        both, vggx = decode_all(tmp_path / "c.mkv"), decode_all(tmp_path / "v.mkv")
        assert both[0].shape == (160, 448, 3)
        np.testing.assert_array_equal(both[1][:, 224:], vggx[1])
        bicubic_ref = frame_pattern(1, 40, 56).repeat(4, 0).repeat(4, 1).astype(int)
        assert np.abs(both[1][:, :224].astype(int) - bicubic_ref).mean() < 25


class _FailingRunner:
    """Delegates to a real runner and fails on the n-th call."""

    def __init__(self, runner, fail_at: int):
        self.inner, self.info, self.description = runner, runner.info, "failing"
        self.calls, self.fail_at = 0, fail_at

    def infer(self, lr):
        self.calls += 1
        if self.calls == self.fail_at:
            raise InferenceError("backend fell over")
        return self.inner.infer(lr)

    def close(self):
        pass


def stopped_run(src, out, info, **kw) -> None:
    """A ``resume`` run of the nearest-neighbour stand-in that fails on its eighth window (the same backend
    description as a rerun's, so only the settings decide whether that rerun resumes)."""
    failing = _FailingRunner(_NearestRunner(info), fail_at=8)
    failing.description = "nearest"
    with pytest.raises(InferenceError, match="fell over"):
        run(src, out, failing, resume=True, **kw)


class TestConfigAsCallersWriteIt:
    """The library's configs take what a script writes (str paths, names, the command line's --copy), or say in one
    line what they want: a str checkpoint was AttributeError 'str' object has no attribute 'suffix' in the
    onnxruntime opener alone, a str cache_dir TypeError, a backend name KeyError."""

    def test_backend_config(self, onnx_cache, tiny_checkpoint_path):
        from vggx.client import TritonProtocol, open_runner

        cfg = BackendConfig("onnxruntime", checkpoint=str(tiny_checkpoint_path), cache_dir=str(onnx_cache), threads=1)
        assert cfg.backend is Backend.ONNXRUNTIME and cfg.checkpoint == tiny_checkpoint_path
        assert cfg.cache_dir == onnx_cache
        with open_runner(cfg) as runner:
            assert runner.info.scale == 4
        assert BackendConfig("triton", url="127.0.0.1:8001", protocol="http").protocol is TritonProtocol.HTTP
        with pytest.raises(ConfigError, match="--backend must be one of onnxruntime, torch, tensorrt, triton, got "
                                              "'onnx'"):
            BackendConfig("onnx")
        with pytest.raises(ConfigError, match="--protocol must be one of grpc, http, got 'tcp'"):
            BackendConfig("triton", url="127.0.0.1:8001", protocol="tcp")

    def test_upscale_config(self, tmp_path):
        cfg = UpscaleConfig("in.mp4", str(tmp_path / "o.mp4"), copy="audio,subtitles", tile=256)
        assert cfg.output == tmp_path / "o.mp4" and cfg.copy == ("audio", "subtitles") and cfg.tile == (256, 256)
        assert UpscaleConfig("in.mp4", "o.mp4", copy="all").copy is None
        assert UpscaleConfig("in.mp4", "o.mp4", copy="none").copy == ()
        with pytest.raises(ConfigError, match=r"tile is \(height, width\) in input pixels, or N for N x N; got "
                                              r"'540x960'"):
            UpscaleConfig("in.mp4", "o.mp4", tile="540x960")
        with pytest.raises(ConfigError, match="start is seconds"):
            UpscaleConfig("in.mp4", "o.mp4", start="1:30")
        for backend in ("torch", Backend.TORCH):  # was an AttributeError as the run opened the backend
            with pytest.raises(ConfigError, match=r"backend is a BackendConfig \(e.g. BackendConfig\(Backend\.TORCH"):
                UpscaleConfig("in.mp4", "o.mp4", backend=backend)

    def test_a_torch_runner_gives_back_the_process_thread_count(self, tiny_checkpoint_path):
        """PyTorch's thread count is the process's: a runner opened with threads=1 left it at 1 after it closed."""
        import torch

        from vggx.client import Cancelled  # exported for callers that pass a cancel event (not only upscale_many's)

        assert issubclass(Cancelled, Exception)
        before = torch.get_num_threads()
        with TorchRunner(tiny_checkpoint_path, threads=before + 1):
            assert torch.get_num_threads() == before + 1
        assert torch.get_num_threads() == before

    def test_torch_runners_closed_in_any_order_give_back_the_first_count(self, tiny_checkpoint_path, tmp_path):
        """Two runners with their own thread counts, closed in the order they opened: the count follows the one
        still open, then is the process's own again (each putting back what it found left the second's count);
        a runner whose checkpoint fails to load gives it back too."""
        import torch

        from vggx.errors import CheckpointError

        before = torch.get_num_threads()
        first = TorchRunner(tiny_checkpoint_path, threads=before + 1)
        second = TorchRunner(tiny_checkpoint_path, threads=before + 2)
        assert torch.get_num_threads() == before + 2
        first.close()
        assert torch.get_num_threads() == before + 2  # the second is still open
        second.close()
        assert torch.get_num_threads() == before
        with pytest.raises(CheckpointError):
            TorchRunner(tmp_path / "missing.safetensors", threads=before + 1)
        assert torch.get_num_threads() == before


class TestErrors:
    def _assert_nothing_written(self, tmp_path, out):
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir() if p.stem != "in"] == []

    def test_not_a_video(self, tmp_path, torch_runner):
        bad = tmp_path / "in.mp4"
        bad.write_text("this is text, not a video\n" * 10)
        with pytest.raises(VideoError, match="is not a video FFmpeg can read"):
            run(bad, tmp_path / "o.mkv", torch_runner)
        self._assert_nothing_written(tmp_path, tmp_path / "o.mkv")

    def test_zero_frames(self, tmp_path, torch_runner):
        # a video stream without frames (and some audio, so the file is not empty)
        empty = make_video(tmp_path / "in.mkv", frames=0, audio="aac", audio_seconds=0.5)
        with pytest.raises(VideoError, match="has no video frames"):
            run(empty, tmp_path / "o.mkv", torch_runner)
        self._assert_nothing_written(tmp_path, tmp_path / "o.mkv")

    @pytest.mark.parametrize("faststart", [False, True])
    def test_truncated_file(self, tmp_path, torch_runner, faststart):
        full = make_video(tmp_path / "full.mp4", frames=24,
                          options={"movflags": "+faststart"} if faststart else None)
        cut = tmp_path / "in.mp4"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        full.unlink()
        with pytest.raises(VideoError, match=r"truncated|not a video"):
            run(cut, tmp_path / "o.mkv", torch_runner)
        self._assert_nothing_written(tmp_path, tmp_path / "o.mkv")

    @pytest.mark.parametrize("audio", [None, "aac"])
    def test_truncated_matroska(self, tmp_path, torch_runner, audio):
        """Matroska counts no frames (a partial download of an .mkv or .webm decoded up to the cut, exit 0): the last
        frame's time against the video track's own duration tells; the audio's longer duration is not taken."""
        full = make_video(tmp_path / "full.mkv", frames=24, audio=audio, audio_seconds=1.5 if audio else None)
        whole = run(full, tmp_path / "whole.mkv", torch_runner)  # the full file, audio longer than its video: fine
        assert whole.frames == 24
        cut = tmp_path / "in.mkv"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        full.unlink()
        (tmp_path / "whole.mkv").unlink()
        with pytest.raises(VideoError, match=r"in.mkv ends at \d\.\d\d s of its 1\.00 s of video \(after \d+ frames\); "
                                             r"the file is truncated or damaged"):
            run(cut, tmp_path / "o.mkv", torch_runner)
        self._assert_nothing_written(tmp_path, tmp_path / "o.mkv")

    def test_a_matroska_slideshow_with_longer_audio_is_upscaled(self, tmp_path, torch_runner):
        """Pictures at 0, 2, 4 and 6 s over 10 s of music (H.264 in Matroska): FFmpeg gives the video the container's
        duration, which was taken for the video's ("ends at 7.00 s of its 10.01 s of video"). All four frames are
        upscaled at their times, the audio kept whole."""
        import av

        clip = make_slideshow(tmp_path / "in.mkv", (0, 2, 4, 6), 10.0)
        out = tmp_path / "o.mkv"
        assert run(clip, out, torch_runner).frames == 4
        with av.open(str(out)) as c:
            video = c.streams.video[0]
            assert [float(f.pts * video.time_base) for f in c.decode(video)] == [0, 2, 4, 6]
        with av.open(str(out)) as c:
            audio = c.streams.audio[0]
            last = max(float((p.pts + p.duration) * audio.time_base) for p in c.demux(audio) if p.pts is not None)
        assert last == pytest.approx(10.0, abs=0.05)

    def test_missing_input(self, tmp_path, torch_runner):
        with pytest.raises(VideoError, match="input not found"):
            run(tmp_path / "nope.mp4", tmp_path / "o.mkv", torch_runner)

    def test_unwritable_output(self, clips, tmp_path, torch_runner):
        with pytest.raises(VideoError, match=r"cannot write .* does not exist"):
            run(clips["aac"], tmp_path / "missing" / "o.mkv", torch_runner)

    @pytest.mark.parametrize("encode", [LOSSLESS, EncodeConfig(encoders=2, segment_frames=8)], ids=["ffv1", "segments"])
    def test_backend_failure_mid_run_leaves_nothing(self, clips, tmp_path, torch_runner, encode):
        import threading

        out = tmp_path / ("o.mkv" if encode is LOSSLESS else "o.mp4")
        with pytest.raises(InferenceError, match="fell over"):
            run(clips["twelve"], out, _FailingRunner(torch_runner, fail_at=3), encode=encode)
        assert list(tmp_path.iterdir()) == []
        assert not [t for t in threading.enumerate() if t.name.startswith("vggx-encode")]

    @pytest.mark.parametrize("how", ["truncated", "backend"])
    @pytest.mark.parametrize("encode", [LOSSLESS, EncodeConfig(encoders=2, segment_frames=8)], ids=["ffv1", "segments"])
    def test_a_run_that_fails_mid_way_leaves_an_existing_output_as_it_was(self, tmp_path, encode, how):
        """The output is written under a hidden name and renamed over the old one once whole: written under its own
        name, a run that failed (its input found truncated, the backend falling over) deleted the user's previous
        result, and while it ran, readers saw a half-written file under the output's name."""
        from vggx.client import ModelInfo

        full = make_video(tmp_path / "full.mkv", frames=48, size=(16, 16), codec="ffv1", pix_fmt="bgr0")
        src = tmp_path / "in.mkv"
        if how == "truncated":
            src.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
        else:
            src.write_bytes(full.read_bytes())
        full.unlink()
        folder = tmp_path / "out"
        folder.mkdir()
        out = folder / ("o.mkv" if encode is LOSSLESS else "o.mp4")
        old = b"the previous good result, " * 100
        out.write_bytes(old)
        info = ModelInfo(window=8, scale=4, size_multiple=8, min_size=(16, 16), max_size=(64, 64))  # 12 windows
        seen = []

        class Watching(_FailingRunner):
            def infer(self, lr):  # the output folder, as another program sees it while the run goes on
                seen.append((sorted(p.name for p in folder.iterdir()), out.read_bytes() == old))
                return super().infer(lr)

        runner = Watching(_NearestRunner(info), fail_at=9 if how == "backend" else 0)
        with pytest.raises(InferenceError if how == "backend" else VideoError, match=r"fell over|truncated"):
            run(src, out, runner, encode=encode)
        assert [p.name for p in folder.iterdir()] == [out.name] and out.read_bytes() == old
        assert len(seen) >= 5, seen  # it failed mid-way, windows after windows upscaled
        part = re.compile(rf"\.{out.stem}\.vggx-[0-9a-f]{{8}}\.part{out.suffix}")
        for names, unchanged in seen:
            assert unchanged, "the output was changed mid-run"
            assert all(part.fullmatch(name) for name in names if name != out.name), names
        assert any(len(names) == 2 for names, _ in seen[4:]), seen  # a hidden file beside it, being written


class TestSharedRunner:
    """One runner under several upscales (a service's requests, each in a thread of its own): a run that stops stops
    its own windows in flight, and leaves the runner as it was for the others, and for the next."""

    @pytest.fixture(params=["ort_runner", "torch_runner"])
    def runner(self, request):
        return request.getfixturevalue(request.param)

    def test_a_cancelled_upscale_leaves_the_runner_usable(self, runner, tmp_path):
        """A caller's cancel event left the runner cancelled: every later upscale on it failed 'the run ... was
        stopped' (only upscale_many, which passes its own event, resumed it)."""
        import threading

        from vggx.client.pipeline import Cancelled

        src = make_video(tmp_path / "in.mkv", frames=48, size=(24, 32), codec="ffv1", pix_fmt="bgr0")
        cancel = threading.Event()

        class StopAfterFirst:
            def start(self, total, description):
                pass

            def advance(self, frames):
                cancel.set()

        with pytest.raises(Cancelled):
            upscale(UpscaleConfig(src, tmp_path / "a.mkv", encode=EncodeConfig("ffv1")), progress=StopAfterFirst(),
                    runner=runner, cancel=cancel)
        assert not (tmp_path / "a.mkv").exists()
        assert upscale(UpscaleConfig(src, tmp_path / "b.mkv", encode=EncodeConfig("ffv1"), frames=8),
                       runner=runner).frames == 8

    def test_a_stop_reaches_the_runs_of_its_own_scope_alone(self, runner):
        """Stopping by thread idents stopped a thread started after, which Linux gave an ended thread's ident (another
        file's, another request's): each run's threads carry its own mark."""
        import threading

        from vggx.client.runners import in_scope

        lr = np.zeros((1, runner.info.window, 16, 16, 3), np.uint8)
        stopped, other = object(), object()
        ended = threading.Thread(target=in_scope(stopped, lambda: None))
        ended.start()
        ended.join()
        runner.stop_scope(stopped)
        got = {}

        def infer(name):
            try:
                got[name] = runner.infer(lr).shape
            except InferenceError as exc:
                got[name] = str(exc)
        try:
            for name, scope in (("stopped", stopped), ("other", other), ("none", None)):
                t = threading.Thread(target=in_scope(scope, lambda name=name: infer(name)))
                t.start()
                t.join()
        finally:
            runner.release_scope(stopped)
        assert "was stopped" in got["stopped"]
        assert got["other"] == got["none"] == (1, runner.info.window, 64, 64, 3)

    def test_one_upscale_failing_does_not_stop_the_others(self, runner, tmp_path):
        """An error in one upscale (its input found truncated mid-run) stopped every run on the shared runner: the
        other requests failed 'the run ... was stopped', as if the backend had."""
        from concurrent.futures import ThreadPoolExecutor

        good = make_video(tmp_path / "good.mkv", frames=48, size=(24, 32), codec="ffv1", pix_fmt="bgr0")
        full = make_video(tmp_path / "full.mkv", frames=48, size=(24, 32), codec="ffv1", pix_fmt="bgr0")
        cut = tmp_path / "cut.mkv"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
        with ThreadPoolExecutor(2) as pool:
            ok = pool.submit(upscale, UpscaleConfig(good, tmp_path / "a.mkv", encode=EncodeConfig("ffv1")),
                             runner=runner)
            bad = pool.submit(upscale, UpscaleConfig(cut, tmp_path / "b.mkv", encode=EncodeConfig("ffv1")),
                              runner=runner)
            with pytest.raises(VideoError, match="truncated"):
                bad.result()
            assert ok.result().frames == 48
        assert not (tmp_path / "b.mkv").exists()


class TestOnnxRuntime:
    def test_default_backend_runs_the_cached_export(self, clips, tmp_path, ort_runner, torch_runner):
        assert ort_runner.info == torch_runner.info  # both read from the model, not hard-coded
        result = run(clips["twelve"], tmp_path / "o.mkv", ort_runner, frames=4)
        assert result.output_size == (160, 224) and "onnxruntime" in result.backend
        ort = np.stack(decode_all(tmp_path / "o.mkv")).astype(int)
        run(clips["twelve"], tmp_path / "t.mkv", torch_runner, frames=4)
        assert np.abs(ort - np.stack(decode_all(tmp_path / "t.mkv"))).max() <= 2  # export ~ PyTorch

    def test_cancel_stops_the_runs_in_flight_and_those_started_until_resume(self, ort_runner, monkeypatch):
        """Ctrl-C or SIGTERM mid-window: the runs are stopped inside ONNX Runtime (RunOptions.terminate: at their next
        node) instead of being left going as the interpreter exits, which aborted the process (exit 134, no clean-up);
        a worker that starts a run after the cancel (between two tiles) has it stop as it starts, until resume()."""
        import threading

        from vggx.errors import InferenceError

        small = np.zeros((1, ort_runner.info.window, 16, 16, 3), np.uint8)
        ort_runner.cancel()
        try:
            with pytest.raises(InferenceError, match="was stopped"):  # ONNX Runtime itself refuses the run
                ort_runner.infer(small)
        finally:
            ort_runner.resume()
        assert ort_runner.infer(small).shape == (1, ort_runner.info.window, 64, 64, 3)  # the runner goes on

        # a run in flight: a session whose run goes on until its RunOptions say terminate, as ORT's does per node
        running = threading.Event()

        class Session:
            def run(self, outputs, feeds, options):
                running.set()
                while not options.terminate:
                    threading.Event().wait(0.01)
                raise RuntimeError("Exiting due to terminate flag being set to true.")

        monkeypatch.setattr(ort_runner, "_session", Session())
        outcome = []

        def infer() -> None:
            try:
                outcome.append(ort_runner.infer(small))
            except InferenceError as exc:
                outcome.append(exc)

        t = threading.Thread(target=infer)
        t.start()
        assert running.wait(30)
        ort_runner.cancel()
        t.join(30)
        ort_runner.resume()
        assert not t.is_alive() and isinstance(outcome[0], InferenceError) and "was stopped" in str(outcome[0])

    def test_cache_is_keyed_by_checkpoint_hash_and_not_re_exported(self, onnx_cache, tiny_checkpoint_path,
                                                                     monkeypatch):
        import vggx.export

        monkeypatch.setattr(vggx.export, "export_onnx", lambda *a, **k: pytest.fail("re-exported"))
        path = cached_onnx(tiny_checkpoint_path, onnx_cache)
        assert path.parent == onnx_cache / "onnx" and path.name.endswith("-t8-g2.onnx")

    def test_the_shipped_checkpoint_ships_its_export(self, tmp_path, monkeypatch):
        """The default backend's first run loads the graph shipped beside the checkpoint: no minute's export."""
        import onnx

        import vggx.export
        from vggx.checkpoint import DEFAULT_CHECKPOINT, file_sha256, read_checkpoint_config
        from vggx.client.runners import shipped_onnx_path

        shipped = shipped_onnx_path(DEFAULT_CHECKPOINT, 8)
        assert shipped.is_file(), f"{shipped.name} is not shipped: run `python -m vggx.weights`"
        meta = {p.key: p.value for p in onnx.load(str(shipped), load_external_data=False).metadata_props}
        assert meta["checkpoint_sha256"] == file_sha256(DEFAULT_CHECKPOINT) and meta["flavor"] == "portable"
        assert meta["generator_config"] == read_checkpoint_config(DEFAULT_CHECKPOINT).to_json()  # run alone: budgeted
        monkeypatch.setattr(vggx.export, "export_onnx", lambda *a, **k: pytest.fail("exported"))
        assert cached_onnx(None, tmp_path) == shipped and not any(tmp_path.iterdir())
        assert sorted(shipped.parent.glob("*.onnx")) == [shipped]  # no stale export ships beside it

    def test_finding_the_export_reads_the_checkpoint_once(self, onnx_cache, tiny_checkpoint_path, monkeypatch):
        """The shipped name and the cache's name share one sha256 of the checkpoint (a large one is read once)."""
        import vggx.checkpoint

        cached_onnx(tiny_checkpoint_path, onnx_cache)  # exported (or found) before counting
        hashed = []
        real = vggx.checkpoint.file_sha256
        monkeypatch.setattr(vggx.checkpoint, "file_sha256", lambda p: hashed.append(p) or real(p))
        assert cached_onnx(tiny_checkpoint_path, onnx_cache).is_file() and len(hashed) == 1

    def test_the_shipped_export_computes_what_the_generator_does(self):
        """The shipped graph against the generator's code now, on the shipped weights: a change to the model that
        was not followed by `python -m vggx.weights` fails here (FP32 parity: within one level on 99.9 %)."""
        from vggx.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
        from vggx.client.runners import OnnxRuntimeRunner, shipped_onnx_path
        from vggx.export.verify import FP32_TOLERANCE, compare_frames, reference_upscale

        ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
        frames = np.random.default_rng(3).integers(0, 256, (1, ckpt.config.window, 21, 30, 3), dtype=np.uint8)
        with OnnxRuntimeRunner(shipped_onnx_path(DEFAULT_CHECKPOINT, ckpt.config.window), threads=1) as runner:
            got = runner.infer(frames)
        result = compare_frames("shipped", frames, got, reference_upscale(ckpt, frames), FP32_TOLERANCE)
        assert result.passed and result.max_abs <= 2, str(result)

    def test_options_that_do_not_apply_are_errors(self):
        from vggx.errors import ConfigError

        with pytest.raises(ConfigError, match="--fp16 applies to the torch backend"):
            BackendConfig(Backend.ONNXRUNTIME, fp16=True)
        with pytest.raises(ConfigError, match="--fp16 needs --device cuda"):
            BackendConfig(Backend.TORCH, fp16=True)
        with pytest.raises(ConfigError, match="--compile applies to the torch backend on --device cuda"):
            BackendConfig(Backend.TORCH, compile=True)
        with pytest.raises(ConfigError, match="--compile applies to the torch backend on --device cuda"):
            BackendConfig(Backend.ONNXRUNTIME, device="cuda", compile=True)
        with pytest.raises(ConfigError, match="--url sends work to Triton"):
            BackendConfig(Backend.TORCH, url="localhost:8001")

    @pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:3"])
    def test_devices_by_index(self, device):
        from vggx.client.runners import _ort_providers

        cfg = BackendConfig(Backend.TORCH, device=device, fp16=device != "cpu", compile=device != "cpu")
        assert cfg.cuda == (device != "cpu")
        provider, options = _ort_providers(device)[0]
        if device == "cpu":
            assert (provider, options) == ("CPUExecutionProvider", {})
        else:  # ONNX Runtime's CUDA provider on that GPU
            assert (provider, options) == ("CUDAExecutionProvider", {"device_id": device.partition(":")[2] or "0"})

    def test_onnxruntime_on_cuda_without_its_provider_names_the_remedy(self, monkeypatch):
        """Without a CUDA provider the error said ``pip install 'vggx[gpu]'``, which installs onnxruntime-gpu beside
        the CPU onnxruntime vggx depends on: the two are one module, and the CPU build often hides the GPU one."""
        from importlib import metadata

        import onnxruntime

        from vggx.checkpoint import DEFAULT_CHECKPOINT
        from vggx.client.runners import OnnxRuntimeRunner, _ort_gpu_remedy, shipped_onnx_path
        from vggx.errors import InferenceError

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            pytest.skip("this onnxruntime has the CUDA provider")
        with pytest.raises(InferenceError, match=r"no CUDAExecutionProvider \(pip uninstall -y onnxruntime && pip "
                                                 r"install onnxruntime-gpu\), or use --device cpu"):
            OnnxRuntimeRunner(shipped_onnx_path(DEFAULT_CHECKPOINT, 8), device="cuda")
        real = metadata.version
        monkeypatch.setattr(metadata, "version", lambda d: "1.20.0" if d == "onnxruntime-gpu" else real(d))
        assert _ort_gpu_remedy().startswith("the CPU onnxruntime installed beside onnxruntime-gpu hides it: pip "
                                            "uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")

    @pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "cuda0", "CPU", "cuda:1:2"])
    def test_bad_devices_are_one_clear_error(self, device):
        from vggx.errors import ConfigError

        with pytest.raises(ConfigError, match=r"--device must be cpu, cuda or cuda:N \(a GPU's index\), got"):
            BackendConfig(Backend.TORCH, device=device)


class _NearestRunner:
    """Nearest-neighbour ×4 with the tiny model's window: the pipeline's own memory, without a model."""

    def __init__(self, info):
        self.info, self.description = info, "nearest"

    def infer(self, lr):
        return lr.repeat(4, axis=2).repeat(4, axis=3)

    def close(self):
        pass


def test_torch_runner_keep_selects_frames(torch_runner):
    """``infer(lr, keep)``: the kept frames of the whole output (on the CPU computed whole, then cut; the CUDA
    path copies only them back, and the pipeline asks for them there: ``infers_kept``)."""
    lr = np.random.default_rng(0).integers(0, 256, (1, 8, 16, 24, 3), dtype=np.uint8)
    whole = torch_runner.infer(lr)
    np.testing.assert_array_equal(torch_runner.infer(lr, keep=slice(2, 6)), whole[:, 2:6])
    assert torch_runner.infers_kept is False


class _Counting(_NearestRunner):
    def __init__(self, info):
        super().__init__(info)
        self.calls = 0

    def infer(self, lr):
        self.calls += 1
        return super().infer(lr)


class TestResume:
    """``resume``: finished segments survive a failed run; the same command again goes on after them."""

    def _planes(self, path, format: str | None = None):
        import av

        with av.open(str(path)) as c:
            return [(f.pts, f.to_ndarray(format=format)) for f in c.decode(video=0)]

    @pytest.mark.parametrize("encoders", [1, 2])
    def test_a_failed_run_goes_on_where_it_stopped_and_matches_one_run(self, tmp_path, torch_runner, encoders):
        from vggx.client.windows import windows_needed

        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=40, audio="aac")
        ref, out = tmp_path / "ref.mp4", tmp_path / "out.mp4"
        run(src, ref, _NearestRunner(info), encode=EncodeConfig(crf=0))
        encode = EncodeConfig(crf=0, segment_frames=8, encoders=encoders)
        stopped_run(src, out, info, encode=encode)
        store = tmp_path / ".out.mp4.vggx-resume"
        assert not out.exists() and (store / "manifest.json").exists()
        done = sum(seg["frames"] for seg in json.loads((store / "manifest.json").read_text())["segments"])
        assert done >= 8 and done % 8 == 0  # whole segments only
        again = _Counting(info)
        result = run(src, out, again, encode=encode, resume=True)
        assert again.calls == windows_needed(40, 8, 2) - done // 4  # only the windows after the stored frames
        assert result.frames == 40 and not store.exists()
        got, want = self._planes(out), self._planes(ref)
        assert [p for p, _ in got] == [p for p, _ in want]
        for (_, g), (_, w) in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        assert stream_facts(out)["audio"] == ["aac"]

    @pytest.mark.parametrize("name", ["Episode 100% uncut.mkv", "take %04d.mp4"])
    def test_a_percent_in_a_video_name_is_literal(self, tmp_path, torch_runner, name):
        """Before: a % in any output name was taken for an image-sequence number and refused ("a % in a file name
        starts an image-sequence number"), so such a video could not be written, nor a folder run's file named so.
        Only an image output's %d/%0Nd is a number; a video's name is written as given, resumed alike."""
        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=40, audio="aac")
        out = tmp_path / name
        encode = EncodeConfig(crf=0, segment_frames=8)
        stopped_run(src, out, info, encode=encode)
        assert (tmp_path / f".{name}.vggx-resume" / "manifest.json").exists() and not out.exists()
        result = run(src, out, _NearestRunner(info), encode=encode, resume=True)
        assert result.resumed_frames > 0 and result.frames == 40
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.mp4", name])
        assert stream_facts(out)["frames"] == 40 and stream_facts(out)["audio"] == ["aac"]

    @pytest.mark.parametrize(("codec", "ext"), [("libsvtav1", ".mkv"), ("ffv1", ".mkv"), ("prores_ks", ".mov"),
                                                ("libvpx-vp9", ".webm")])
    def test_other_codecs_go_on_as_one_run_would(self, tmp_path, torch_runner, codec, ext):
        """SVT-AV1, FFV1, ProRes, VP9: stopped and run again, the same stream as a run never stopped (the same
        segments: bit for bit even where the codec is lossy), the audio whole."""
        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=40, audio="aac" if ext != ".webm" else "libopus")
        encode = EncodeConfig(codec, crf=30 if codec in ("libsvtav1", "libvpx-vp9") else 18, segment_frames=8)
        ref, out = tmp_path / f"ref{ext}", tmp_path / f"out{ext}"
        run(src, ref, _NearestRunner(info), encode=encode, resume=True)
        stopped_run(src, out, info, encode=encode)
        assert (tmp_path / f".out{ext}.vggx-resume" / "manifest.json").exists() and not out.exists()
        result = run(src, out, _NearestRunner(info), encode=encode, resume=True)
        assert result.resumed_frames > 0 and result.frames == 40
        got, want = self._planes(out, "rgb24"), self._planes(ref, "rgb24")
        assert len(got) == 40 and [p for p, _ in got] == [p for p, _ in want]
        for (_, g), (_, w) in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        assert len(stream_facts(out)["audio"]) == 1

    def test_other_settings_are_refused_and_nothing_is_lost(self, tmp_path, torch_runner):
        from vggx.errors import ConfigError

        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=40)
        out = tmp_path / "out.mp4"
        stopped_run(src, out, info, encode=EncodeConfig(crf=0, segment_frames=8))
        manifest = tmp_path / ".out.mp4.vggx-resume" / "manifest.json"
        before = manifest.read_text()
        with pytest.raises(ConfigError, match=r"holds a run with other settings \(encode\.crf differs\)"):
            run(src, out, _NearestRunner(info), encode=EncodeConfig(crf=1, segment_frames=8), resume=True)
        assert manifest.read_text() == before and not out.exists()

    def test_more_or_fewer_encoders_go_on_where_it_stopped(self, tmp_path, torch_runner):
        """`--encoders` changes how fast, not the bits: it was refused as "encode differ" (a job moved to a machine
        with other cores lost its segments)."""
        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=40)
        ref, out = tmp_path / "ref.mkv", tmp_path / "out.mkv"
        run(src, ref, _NearestRunner(info), encode=EncodeConfig("ffv1", segment_frames=8))
        stopped_run(src, out, info, encode=EncodeConfig("ffv1", segment_frames=8, encoders=2))
        result = run(src, out, _NearestRunner(info), encode=EncodeConfig("ffv1", segment_frames=8), resume=True)
        assert result.resumed_frames > 0 and result.frames == 40
        for (pg, g), (pw, w) in zip(self._planes(out, "rgb24"), self._planes(ref, "rgb24"), strict=True):
            assert pg == pw
            np.testing.assert_array_equal(g, w)

    def test_a_changed_input_is_named(self, tmp_path, torch_runner):
        """It said "(input differ); run with those again", which no setting can do."""
        import os

        from vggx.errors import ConfigError

        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=40)
        out = tmp_path / "out.mp4"
        stopped_run(src, out, info, encode=EncodeConfig(crf=0, segment_frames=8))
        os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
        store = tmp_path / ".out.mp4.vggx-resume"
        with pytest.raises(ConfigError, match=f"^the input changed since the run {store} holds \\(its size or "
                                              f"modification time\\): delete {store} to start over$"):
            run(src, out, _NearestRunner(info), encode=EncodeConfig(crf=0, segment_frames=8), resume=True)

    def test_a_full_disk_while_keeping_a_segment_is_one_error_and_the_rest_stays(self, tmp_path, torch_runner,
                                                                                  monkeypatch):
        """It was an OSError traceback, with the half-written segment left on the full disk."""
        import builtins

        import vggx.video.encode as encode_module

        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=40)
        out = tmp_path / "out.mp4"
        store = tmp_path / ".out.mp4.vggx-resume"
        encode = EncodeConfig(crf=0, segment_frames=8)

        def full_after_one(path, mode="r", *args, **kw):
            if str(path).endswith("seg-00001.bin.tmp"):
                with builtins.open(path, "wb") as f:
                    f.write(b"half a segment")
                raise OSError(28, "No space left on device")
            return builtins.open(path, mode, *args, **kw)

        monkeypatch.setattr(encode_module, "open", full_after_one, raising=False)
        with pytest.raises(VideoError, match=f"^keeping a finished segment in {store} failed \\(No space left on "
                                             f"device\\); the 8 frames kept before it stay: free space and run "
                                             f"the same command again$"):
            run(src, out, _NearestRunner(info), encode=encode, resume=True)
        monkeypatch.undo()
        assert sorted(p.name for p in store.iterdir()) == ["manifest.json", "seg-00000.bin"]
        result = run(src, out, _NearestRunner(info), encode=encode, resume=True)
        assert result.resumed_frames == 8 and result.frames == 40

    def test_a_full_disk_at_the_final_write_says_the_output_needs_room_beside_the_segments(self, tmp_path,
                                                                                          torch_runner, monkeypatch):
        from vggx.video import VideoWriter

        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=18)
        out = tmp_path / "out.mp4"

        def full(self):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(VideoWriter, "_mux_store", full)
        with pytest.raises(VideoError, match=r"finishing .*out\.mp4 failed \(No space left on device\): the output "
                                             r"is written beside the \d+ MB of segments kept in .*\.out\.mp4\."
                                             r"vggx-resume, and needs about as much again free"):
            run(src, out, _NearestRunner(info), encode=EncodeConfig(crf=0, segment_frames=8), resume=True)

    def test_a_run_without_resume_says_a_stopped_runs_segments_are_left(self, tmp_path, torch_runner, caplog):
        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=40)
        out = tmp_path / "out.mp4"
        stopped_run(src, out, info, encode=EncodeConfig(crf=0, segment_frames=8))
        run(src, out, _NearestRunner(info), encode=EncodeConfig(crf=0, segment_frames=8))
        assert f"{tmp_path / '.out.mp4.vggx-resume'} holds the segments of a stopped run of out.mp4" in caplog.text

    def test_all_frames_stored_only_the_final_mux_is_left(self, tmp_path, torch_runner, monkeypatch):
        """Stopped after the last segment, while the output was being written: no window runs again."""
        import os

        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=18, audio="aac")
        out = tmp_path / "out.mp4"
        encode = EncodeConfig(crf=0, segment_frames=8)
        real_replace = os.replace

        def failing_rename(a, b):  # the final rename onto the output fails (a full disk, say)
            if str(b) == str(out):
                raise OSError(28, "No space left on device")
            return real_replace(a, b)

        monkeypatch.setattr(os, "replace", failing_rename)
        with pytest.raises(VideoError, match="No space left"):
            run(src, out, _NearestRunner(info), encode=encode, resume=True)
        monkeypatch.setattr(os, "replace", real_replace)
        manifest = json.loads((tmp_path / ".out.mp4.vggx-resume" / "manifest.json").read_text())
        assert [seg["frames"] for seg in manifest["segments"]] == [8, 8, 2]
        again = _Counting(info)
        result = run(src, out, again, encode=encode, resume=True)
        assert again.calls == 0 and result.frames == 18
        assert stream_facts(out)["frames"] == 18 and stream_facts(out)["audio"] == ["aac"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]


def test_parallel_segment_encoders_write_the_same_video(tmp_path, torch_runner, clips):
    """``--encoders 3``: the same frames, timestamps and audio as one encoder (lossless H.264 compared)."""
    outs = {}
    for n in (1, 3):
        outs[n] = tmp_path / f"o{n}.mp4"
        run(clips["aac"], outs[n], _NearestRunner(torch_runner.info),
            encode=EncodeConfig(crf=0, encoders=n, segment_frames=8))
    np.testing.assert_array_equal(np.stack(decode_all(outs[3])), np.stack(decode_all(outs[1])))
    assert stream_facts(outs[3]) == stream_facts(outs[1])


def _joined(tmp_path, parts: int, frames: int = 24):
    """What ``cat a.ts a.ts ...`` makes of an MPEG-TS clip of ``frames`` frames at 24 fps with AAC audio (joined HLS or
    TS recordings): the times start again in each part. Also the times a run writes: each part a frame after the
    one before, the audio moved with its video (``part`` seconds later: the part's length), relative to the first
    frame."""
    import av

    one = make_video(tmp_path / "part.ts", frames=frames, audio="aac")
    src = tmp_path / "joined.ts"
    src.write_bytes(one.read_bytes() * parts)
    with av.open(str(one)) as c:
        first = min(f.pts * f.time_base for f in c.decode(video=0))
    with av.open(str(one)) as c:
        audio = [p.pts * p.time_base - first for p in c.demux(audio=0) if p.pts is not None]
    part = Fraction(frames, 24)
    return src, [t + k * part for k in range(parts) for t in audio]


def _audio_times(path):
    import av

    with av.open(str(path)) as c:
        return [(p.pts * p.time_base, p.duration * p.time_base) for p in c.demux(audio=0) if p.pts is not None]


class TestJoinedInput:
    """A joined input (``cat a.ts b.ts``: the times start again in the middle): the video's later part went on after
    the first, but the audio copy went back in time and the muxer refused it mid-run, after the inference ("writing
    OUT failed (Invalid argument)"). The audio (and subtitles) of each part go as much later as its video."""

    @pytest.mark.parametrize(("ext", "audio_codec"), [(".mp4", None), (".mkv", None), (".mkv", "flac")])
    def test_the_audio_goes_on_with_the_video(self, tmp_path, torch_runner, caplog, ext, audio_codec):
        import logging

        src, want = _joined(tmp_path, 2)
        out = tmp_path / f"o{ext}"
        with caplog.at_level(logging.WARNING):
            result = run(src, out, _NearestRunner(torch_runner.info), encode=EncodeConfig(audio_codec=audio_codec))
        assert result.frames == 48 and "starts again there" in caplog.text and "go back" not in caplog.text
        got = _audio_times(out)
        tick = Fraction(1, 1000)  # Matroska's clock
        if audio_codec is None:  # each packet at its own time in its part: in sync with the video (1 s later)
            assert len(got) >= len(want) - 2  # a packet of the second part overlapping the first's end is left out
            for t, _ in got:
                assert min(abs(t - w) for w in want) <= tick, t
        else:  # re-encoded: one stream without gaps, as long as the video (at the join the parts' audio overlaps
            # by what of the first part's last AAC frame runs past its video, 4 ms here)
            for (t, d), (u, _) in itertools.pairwise(got):
                assert abs(u - (t + d)) <= 5 * tick, (t, d, u)
        assert abs(got[-1][0] + got[-1][1] - 2) <= Fraction(3, 100)

    def test_a_preview_of_the_first_part_has_its_audio_alone(self, tmp_path, torch_runner, caplog):
        import logging

        src, want = _joined(tmp_path, 2)
        out = tmp_path / "o.mkv"
        with caplog.at_level(logging.WARNING):
            result = run(src, out, _NearestRunner(torch_runner.info), frames=12)
        assert result.frames == 12 and "go back" not in caplog.text
        got = _audio_times(out)
        assert abs(got[-1][0] + got[-1][1] - Fraction(1, 2)) <= Fraction(3, 100)
        first = want[:len(want) // 2]  # the first part's audio alone
        assert all(min(abs(t - w) for w in first) <= Fraction(1, 1000) for t, _ in got)

    def test_a_cut_into_a_joined_file_keeps_each_parts_audio_with_its_video(self, tmp_path, torch_runner, caplog):
        """``--start`` cuts each part at the same time (the decoder goes by the times); the audio of the second part
        was taken for a third (its part before the cut overlapping the first) and dropped with a warning."""
        import logging

        src, _ = _joined(tmp_path, 2)
        out = tmp_path / "o.mkv"
        with caplog.at_level(logging.WARNING):
            result = run(src, out, _NearestRunner(torch_runner.info), start=0.5)
        part = Fraction(result.frames // 2, 24)  # each part from 0.5 s on: 13 frames
        assert result.frames == 26 and "go back" not in caplog.text
        got = [t for t, _ in _audio_times(out)]
        first = [t for t in got if t < part]
        assert abs(got[-1] - 2 * part) <= Fraction(1, 24)  # the audio as long as the video
        for t in got:  # the second part's audio where the first's is, a part later: in sync with its video
            assert t < part or min(abs(t - part - u) for u in first) <= Fraction(1, 1000), t

    def test_a_resumed_run_moves_the_audio_as_one_not_stopped(self, tmp_path, torch_runner):
        """Stopped after the second part: the shifts of the parts before are in the store, so the resumed run's audio
        of the second part goes where a run not stopped puts it (the resumed writer saw one shift, the whole)."""
        src, want = _joined(tmp_path, 4, frames=16)
        encode = EncodeConfig(crf=0, segment_frames=8)
        ref, out = tmp_path / "ref.mkv", tmp_path / "out.mkv"
        run(src, ref, _NearestRunner(torch_runner.info), encode=encode, resume=True)
        failing = _FailingRunner(_NearestRunner(torch_runner.info), fail_at=11)  # in the fourth part
        failing.description = "nearest"
        with pytest.raises(InferenceError, match="fell over"):
            run(src, out, failing, encode=encode, resume=True)
        manifest = json.loads((tmp_path / ".out.mkv.vggx-resume" / "manifest.json").read_text())
        assert sum(seg["frames"] for seg in manifest["segments"]) >= 32  # the third part on to do
        result = run(src, out, _NearestRunner(torch_runner.info), encode=encode, resume=True)
        assert result.resumed_frames >= 32 and result.frames == 64
        assert _audio_times(out) == _audio_times(ref)
        for t, _ in _audio_times(out):
            assert min(abs(t - w) for w in want) <= Fraction(1, 1000), t
        assert [p for p, _ in TestResume._planes(None, out)] == [p for p, _ in TestResume._planes(None, ref)]


def test_pipeline_memory_is_independent_of_length(tmp_path, torch_runner):
    """Python-side peak (numpy frames, queues, windows; tracemalloc) is the same for 100 and 300 frames."""
    import tracemalloc

    size = (40, 56)
    frame_bytes = size[0] * size[1] * 3 * (1 + 16)  # one LR frame and its x4 output
    peaks = {}
    for n in (100, 300):
        src = make_video(tmp_path / f"in{n}.mkv", frames=n, size=size, codec="ffv1", pix_fmt="bgr0")
        tracemalloc.start()
        try:
            run(src, tmp_path / f"o{n}.mkv", _NearestRunner(torch_runner.info), concurrency=2)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    print(f"traced peak: 100 frames {peaks[100] / 2**20:.2f} MiB, 300 frames {peaks[300] / 2**20:.2f} MiB; "
          f"holding the 200 extra frames would add {200 * frame_bytes / 2**20:.1f} MiB")
    # Bounded by the windows in flight (concurrency + 2 = 4 windows of 8 frames), not the length;
    # how many are in flight at the peak varies from run to run (+-1 MiB seen), hence two windows of slack.
    assert peaks[300] - peaks[100] < 2 * 8 * frame_bytes


class _SlowRunner(_NearestRunner):
    """Nearest-neighbour ×4 that takes ``seconds`` per window: an inference-bound pipeline."""

    def __init__(self, info, seconds):
        super().__init__(info)
        self.seconds = seconds

    def infer(self, lr):
        import time

        time.sleep(self.seconds)
        return super().infer(lr)


class TestStageTiming:
    """Each stage's busy time (not its waiting) is reported, and the busiest one names the bottleneck."""

    def test_slow_model_is_the_bottleneck(self, tmp_path, torch_runner):
        src = make_video(tmp_path / "in.mkv", frames=24, size=(40, 56), codec="ffv1", pix_fmt="bgr0")
        result = run(src, tmp_path / "o.mkv", _SlowRunner(torch_runner.info, 0.25))
        windows = result.windows
        assert windows == 6
        assert result.stage_seconds["infer"] >= 0.25 * windows
        assert result.bottleneck == "infer"
        use = result.utilisation
        assert use["infer"] > 0.8 and use["decode"] < 0.5 and use["encode"] < 0.5, use

    def test_first_window_warm_up_is_reported_apart(self, tmp_path, torch_runner):
        """A backend whose first call is slow (kernel compilation, graph capture): the result keeps the time
        to the first window and the pace after it; the CLI prints that line only where it matters."""
        from vggx.cli import _warmup_line

        class WarmingUp(_NearestRunner):
            calls = 0

            def infer(self, lr):
                import time

                WarmingUp.calls += 1
                if WarmingUp.calls == 1:
                    time.sleep(1.5)
                return super().infer(lr)

        src = make_video(tmp_path / "in.mkv", frames=24, size=(40, 56), codec="ffv1", pix_fmt="bgr0")
        result = run(src, tmp_path / "o.mkv", WarmingUp(torch_runner.info))
        first_keep = plan_windows(24, torch_runner.info.window)[0].keep_count
        assert result.first_window_frames == first_keep
        assert 1.5 <= result.first_window_seconds < result.seconds
        assert result.steady_fps == pytest.approx((24 - first_keep) / (result.seconds - result.first_window_seconds))
        assert result.steady_fps > result.fps  # the first window took longer per frame than the average
        assert _warmup_line(result).startswith(f"after the first window: {result.steady_fps:.2f} fps")
        import dataclasses

        assert _warmup_line(dataclasses.replace(result, first_window_seconds=0.1 * result.seconds)) is None
        # no warm-up to speak of: the pace after the first window no faster than the whole run (it was printed,
        # blaming a warm-up); several windows in flight: the pace after the first says nothing (57 fps on a CPU)
        even = dataclasses.replace(result, first_window_seconds=result.seconds * first_keep / 24)
        assert even.steady_fps == pytest.approx(even.fps) and _warmup_line(even) is None
        assert _warmup_line(dataclasses.replace(result, concurrency=4)) is None
        many = dataclasses.replace(result, concurrency=2, frames=24 + 8 * 2 * first_keep)  # four rounds after it
        assert _warmup_line(many).startswith(f"after the first window: {many.steady_fps:.2f} fps")

    def test_slow_encoder_is_the_bottleneck(self, tmp_path, torch_runner):
        """A fast model and x264's slowest preset on 640x896 output: the encoder sets the pace; the decoder,
        blocked on a full queue most of the time, is not counted busy while it waits."""
        src = make_video(tmp_path / "in.mkv", frames=24, size=(160, 224), codec="ffv1", pix_fmt="bgr0")
        result = run(src, tmp_path / "o.mp4", _NearestRunner(torch_runner.info),
                     encode=EncodeConfig(preset="veryslow"))
        assert result.bottleneck == "encode", result.utilisation
        assert result.utilisation["encode"] > 0.8
        assert result.stage_seconds["decode"] < 0.5 * result.seconds


class _YuvRunner(_NearestRunner):
    """Nearest ×4 that also converts to yuv420p itself, as the CUDA fast path does on the GPU."""

    yuv420p_output = True

    def __init__(self, info):
        super().__init__(info)
        self.yuv_calls = 0

    def infer_yuv420p(self, lr, keep=slice(None)):
        import torch

        from vggx.video.color import rgb_to_yuv420p

        self.yuv_calls += 1
        return rgb_to_yuv420p(torch.from_numpy(self.infer(lr)[:, keep])).numpy()


class TestDeviceYuv420p:
    def test_h264_output_takes_the_runners_yuv420p(self, tmp_path, torch_runner):
        """Same video as the RGB path (the writer's swscale conversion) to within the codec's rounding."""
        src = make_video(tmp_path / "in.mkv", frames=12, size=(40, 56), codec="ffv1", pix_fmt="bgr0")
        yuv = _YuvRunner(torch_runner.info)
        lossless = EncodeConfig(crf=0)  # libx264 yuv420p, lossless: differences are the conversions' only
        run(src, tmp_path / "yuv.mkv", yuv, encode=lossless)
        run(src, tmp_path / "rgb.mkv", _NearestRunner(torch_runner.info), encode=lossless)
        assert yuv.yuv_calls == 3  # every window
        got, want = decode_all(tmp_path / "yuv.mkv"), decode_all(tmp_path / "rgb.mkv")
        assert len(got) == len(want) == 12
        for g, w in zip(got, want, strict=True):
            diff = np.abs(g.astype(np.int16) - w)
            assert diff.max() <= 4 and diff.mean() < 0.3, (diff.max(), diff.mean())  # ±1 in Y/U/V -> RGB

    def test_torch_runner_converts_only_on_cuda(self, torch_runner):
        assert torch_runner.yuv420p_output is False  # on the CPU the writer's swscale converts
        with pytest.raises(InferenceError, match="converted on the GPU: --device cuda only"):
            torch_runner.infer_yuv420p(np.zeros((1, 8, 16, 16, 3), np.uint8))

    @pytest.mark.parametrize("case", ["rgb codec", "compare", "padded", "off"])
    def test_rgb_where_the_encoder_or_the_output_needs_it(self, tmp_path, torch_runner, case):
        size = (12, 12) if case == "padded" else (40, 56)  # below the model's 16x16: padded, cropped in RGB
        src = make_video(tmp_path / "in.mkv", frames=8, size=size, codec="ffv1", pix_fmt="bgr0")
        yuv = _YuvRunner(torch_runner.info)
        if case == "rgb codec":
            run(src, tmp_path / "o.mkv", yuv, encode=EncodeConfig(codec="libx264rgb", crf=0))
        elif case == "compare":
            run(src, tmp_path / "o.mkv", yuv, compare=True)
        else:
            run(src, tmp_path / "o.mkv", yuv, encode=EncodeConfig(crf=0), device_yuv420p=case != "off")
        assert yuv.yuv_calls == 0
        assert stream_facts(tmp_path / "o.mkv")["frames"] == 8


class TestOutputSize:
    """``outscale`` / ``height``: the model's output resized (swscale, Lanczos) on its way to the encoder."""

    @pytest.mark.parametrize(("size", "outscale", "height", "rotation", "want"), [
        ((1080, 1920), None, None, 0, (4320, 7680)),  # the model's own x4
        ((1080, 1920), 2.0, None, 0, (2160, 3840)),  # 1080p -> 4K
        ((1080, 1920), None, 2160, 0, (2160, 3840)),
        ((720, 1280), 1.5, None, 0, (1080, 1920)),
        ((41, 57), 1.5, None, 0, (62, 86)),  # 61.5 x 85.5: even sides, nearest
        ((1920, 1080), None, 1920, 90, (3414, 1920)),  # stored sideways: the shown height is the stored width
        ((1080, 1920), None, 2160, 180, (2160, 3840)),
        ((480, 720), 0.001, None, 0, (2, 2)),
    ])
    def test_sizes(self, size, outscale, height, rotation, want):
        from vggx.client import output_frame_size

        assert output_frame_size(size, 4, outscale, height, rotation) == want

    @pytest.mark.parametrize(("size", "height", "rotation", "sar", "want"), [
        ((480, 720), None, 0, Fraction(32, 27), (1920, 3414)),  # 16:9 NTSC DVD: 853.3 columns displayed, x4
        ((480, 720), 2160, 0, Fraction(32, 27), (2160, 3840)),  # ... as 4K
        ((576, 720), None, 0, Fraction(16, 15), (2304, 3072)),  # 4:3 PAL DVD
        ((480, 720), None, 0, Fraction(8, 9), (1920, 2560)),  # 4:3 NTSC DVD: narrower pixels, fewer columns
        ((720, 480), 1920, 90, Fraction(32, 27), (2430, 1920)),  # sideways: shown 1920 high is the stored width x SAR
    ])
    def test_square_pixels(self, size, height, rotation, sar, want):
        from vggx.client import output_frame_size

        assert output_frame_size(size, 4, None, height, rotation, sar) == want

    @pytest.mark.parametrize(("kw", "message"), [
        ({"outscale": 2.0, "height": 100}, "give --outscale or --height, not both"),
        ({"outscale": 0.0}, "--outscale must be in \\[0.25, 16\\], got 0"),
        ({"outscale": 1e-9}, "--outscale must be in \\[0.25, 16\\], got 1e-09"),
        ({"outscale": -1.0}, "--outscale must be in"),
        ({"outscale": 17.0}, "--outscale must be in"),
        ({"height": 1}, "--height must be >= 2 pixels, got 1"),
    ])
    def test_bad_settings_are_one_clear_error(self, tmp_path, kw, message):
        from vggx.errors import ConfigError

        with pytest.raises(ConfigError, match=message):
            UpscaleConfig(tmp_path / "in.mp4", tmp_path / "o.mp4", **kw)

    @pytest.mark.parametrize("kw", [{"height": 100_000}, {"height": 16384}, {"outscale": 16.0, "compare": True}])
    def test_sizes_ffmpeg_cannot_encode_are_refused_before_any_work(self, tmp_path, torch_runner, kw):
        from vggx.errors import ConfigError

        src = make_video(tmp_path / "in.mp4", frames=8, size=(600, 840))
        counting = _Counting(torch_runner.info)
        with pytest.raises(ConfigError, match="larger than FFmpeg encodes"):
            run(src, tmp_path / "o.mp4", counting, encode=EncodeConfig(), **kw)
        assert counting.calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]

    def _lanczos(self, image, h, w):
        import av

        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        return frame.reformat(width=w, height=h, format="rgb24", interpolation="LANCZOS").to_ndarray()

    @pytest.mark.parametrize(("kw", "size"), [({"outscale": 2.0}, (80, 112)), ({"outscale": 2.5}, (100, 140)),
                                              ({"height": 240}, (240, 336))])
    def test_frames_are_the_models_output_resized(self, tmp_path, torch_runner, kw, size):
        """Down (x2, x2.5 of a x4 model) and up (x6): each frame is the x4 frame through Lanczos, to the rounding
        of the RGB -> codec-format pass (lossless RGB video both ways)."""
        src = make_video(tmp_path / "in.mkv", frames=8, size=(40, 56), codec="ffv1", pix_fmt="bgr0")
        rgb = EncodeConfig(codec="libx264rgb", crf=0)
        run(src, tmp_path / "x4.mkv", torch_runner, encode=rgb)
        result = run(src, tmp_path / "o.mkv", torch_runner, encode=rgb, **kw)
        assert result.output_size == size == stream_facts(tmp_path / "o.mkv")["size"]
        got, x4 = decode_all(tmp_path / "o.mkv"), decode_all(tmp_path / "x4.mkv")
        assert len(got) == len(x4) == 8 == result.frames
        for g, w in zip(got, x4, strict=True):
            diff = np.abs(g.astype(np.int16) - self._lanczos(w, *size))
            assert diff.max() <= 1, diff.max()

    def test_height_goes_by_the_displayed_height(self, tmp_path, torch_runner):
        """A phone clip stored 40x56 and shown upright (rotated 90): --height 112 is the shown height, so the
        stored width becomes 112; the rotation is kept."""
        import av

        src = make_video(tmp_path / "in.mp4", frames=8, rotation=90)
        result = run(src, tmp_path / "o.mp4", _NearestRunner(torch_runner.info), encode=EncodeConfig(), height=112)
        assert result.output_size == (80, 112) == stream_facts(tmp_path / "o.mp4")["size"]
        with av.open(str(tmp_path / "o.mp4")) as c:
            assert next(c.decode(video=0)).rotation == 90

    def test_device_yuv420p_is_resized_like_rgb(self, tmp_path, torch_runner):
        """The runner's own yuv420p planes (the CUDA path) are resized as BT.709 planes, not converted again:
        the same video as the RGB path to within the codec's rounding."""
        src = make_video(tmp_path / "in.mkv", frames=12, size=(40, 56), codec="ffv1", pix_fmt="bgr0")
        yuv = _YuvRunner(torch_runner.info)
        lossless = EncodeConfig(crf=0)
        run(src, tmp_path / "yuv.mkv", yuv, encode=lossless, outscale=2.0)
        run(src, tmp_path / "rgb.mkv", _NearestRunner(torch_runner.info), encode=lossless, outscale=2.0)
        assert yuv.yuv_calls == 3
        got, want = decode_all(tmp_path / "yuv.mkv"), decode_all(tmp_path / "rgb.mkv")
        assert len(got) == len(want) == 12 and got[0].shape == (80, 112, 3)
        for g, w in zip(got, want, strict=True):
            diff = np.abs(g.astype(np.int16) - w)
            # chroma resized at half resolution after subsampling rather than before: hard edges differ by up to
            # 13 levels, 99 % of values by <= 6, mean 0.76 (converted again as if BT.601, the way swscale takes
            # untagged planes: mean 8, max 36)
            assert np.percentile(diff, 99) <= 8 and diff.mean() < 1.0, (np.percentile(diff, 99), diff.mean())

    def test_a_gif_gets_a_palette_a_frame_and_no_audio(self, clips, tmp_path, torch_runner, caplog):
        """`vggx upscale in.mp4 out.gif`: GIF's own codec without --codec, each frame with its own 256 colours (the
        fixed rgb8 palette swscale would convert to loses 12-17 dB on photographs), the audio left out with a
        warning."""
        import logging

        with caplog.at_level(logging.WARNING, logger="vggx.client.pipeline"):
            result = upscale(UpscaleConfig(clips["aac"], tmp_path / "o.gif", frames=4), runner=torch_runner)
        assert "a GIF holds pictures only" in caplog.text and result.copied == ()
        (tmp_path / "png").mkdir()
        run(clips["aac"], tmp_path / "png" / "%02d.png", torch_runner, encode=EncodeConfig(), frames=4)
        gif = decode_all(tmp_path / "o.gif")
        png = [_read_png(p) for p in sorted((tmp_path / "png").glob("*.png"))]
        assert len(gif) == len(png) == 4 and stream_facts(tmp_path / "o.gif")["codec"] == "gif"
        for g, p in zip(gif, png, strict=True):
            mse = ((g.astype(float) - p) ** 2).mean()
            assert 10 * np.log10(255**2 / mse) > 24  # this busy pattern (2235 colours): 26.2-26.9 dB; rgb8: 21.0

    def test_a_gif_with_another_codec_named_is_refused(self, cli, clips, tmp_path):
        """`x.gif --codec libx264` was written as a GIF, the codec named dropped without a word; GIF's own codec
        (named or not) still makes the GIF."""
        from test_upscale_cli import assert_one_error_line

        for codec in ("libx264", "libx265"):
            assert_one_error_line(cli(clips["aac"], tmp_path / "x.gif", "--codec", codec, "--dry-run"),
                                  f"x.gif is a GIF, written with GIF's own codec; --codec {codec} needs another "
                                  f"container (.mp4, .mkv), or leave --codec out")
        for named in ((), ("--codec", "gif")):
            result = cli(clips["aac"], tmp_path / "x.gif", *named, "--dry-run")
            assert result.exit_code == 0 and "encoded with gif" in result.output, result.output
        assert not (tmp_path / "x.gif").exists()

    def test_compare_on_a_turned_clip_puts_the_halves_side_by_side_as_shown(self, tmp_path, torch_runner):
        """A phone clip stored 40 high and 56 wide, shown turned 90 degrees (56 high, 40 wide): the halves go left
        and right of the upright picture (224 high, 2 x 160 wide), with no rotation left for the player to apply."""
        import av

        src = make_video(tmp_path / "in.mp4", frames=4, rotation=90)
        result = run(src, tmp_path / "c.mp4", torch_runner, encode=EncodeConfig(), compare=True)
        assert result.output_size == (224, 320) == stream_facts(tmp_path / "c.mp4")["size"]
        with av.open(str(tmp_path / "c.mp4")) as c:
            assert not next(c.decode(video=0)).rotation

    def test_compare_halves_are_resized_alike(self, clips, tmp_path, torch_runner):
        result = run(clips["twelve"], tmp_path / "c.mkv", torch_runner, frames=4, compare=True, outscale=2.0)
        assert result.output_size == (80, 224) == stream_facts(tmp_path / "c.mkv")["size"]

    def test_resume_refuses_another_size(self, tmp_path, torch_runner):
        from vggx.errors import ConfigError

        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=40)
        out = tmp_path / "out.mp4"
        encode = EncodeConfig(crf=0, segment_frames=8)
        stopped_run(src, out, info, encode=encode, outscale=2.0)
        with pytest.raises(ConfigError, match="holds a run with other settings \\(outscale differ"):
            run(src, out, _NearestRunner(info), encode=encode, resume=True)
        result = run(src, out, _NearestRunner(info), encode=encode, resume=True, outscale=2.0)
        assert result.resumed_frames > 0 and stream_facts(out)["size"] == (80, 112) and result.frames == 40


def _read_png(path):
    import av

    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


class TestImageSequences:
    """``frames/%04d.png`` in (FFmpeg's image2, numbered from any start) and out (PNG or TIFF, moved into place at
    the end)."""

    def test_a_sequence_in_upscales_like_the_same_frames_as_a_video(self, tmp_path, torch_runner):
        pattern = make_png_sequence(tmp_path / "in")
        src = make_video(tmp_path / "ref.mkv", frames=12, size=(40, 56), codec="ffv1", pix_fmt="bgr0")
        result = run(pattern, tmp_path / "seq.mkv", torch_runner, fps=Fraction(24000, 1001))
        run(src, tmp_path / "ref_x4.mkv", torch_runner)
        assert result.frames == 12 and stream_facts(tmp_path / "seq.mkv")["rate"] == Fraction(24000, 1001)
        for a, b in zip(decode_all(tmp_path / "seq.mkv"), decode_all(tmp_path / "ref_x4.mkv"), strict=True):
            np.testing.assert_array_equal(a, b)

    @pytest.mark.parametrize("ext", [".png", ".tif"])
    def test_a_sequence_out_holds_each_frame_lossless(self, tmp_path, torch_runner, ext):
        src = make_video(tmp_path / "in.mp4", frames=10, audio="aac")
        run(src, tmp_path / "x4.mkv", torch_runner)
        (tmp_path / "out").mkdir()
        result = run(src, tmp_path / "out" / f"%04d{ext}", torch_runner, encode=EncodeConfig())  # default codec
        files = sorted((tmp_path / "out").iterdir())
        assert [f.name for f in files] == [f"{i:04d}{ext}" for i in range(1, 11)]  # numbered from 1, no temp left
        assert result.frames == 10 and result.output_bytes == sum(f.stat().st_size for f in files)
        for f, want in zip(files, decode_all(tmp_path / "x4.mkv"), strict=True):
            np.testing.assert_array_equal(_read_png(f), want)

    def test_a_sequence_keeps_its_numbers_and_a_preview_its_offset(self, tmp_path, torch_runner):
        pattern = make_png_sequence(tmp_path / "in")
        (tmp_path / "out").mkdir()
        run(pattern, tmp_path / "out" / "x4_%04d.png", _NearestRunner(torch_runner.info), fps=Fraction(4),
            start=0.5, frames=3, encode=EncodeConfig())
        files = sorted((tmp_path / "out").iterdir())
        assert [f.name for f in files] == ["x4_1003.png", "x4_1004.png", "x4_1005.png"]
        np.testing.assert_array_equal(_read_png(files[0]), frame_pattern(2, 40, 56).repeat(4, 0).repeat(4, 1))

    def test_a_failed_run_leaves_no_frame(self, tmp_path, torch_runner):
        src = make_video(tmp_path / "in.mp4", frames=40)
        (tmp_path / "out").mkdir()
        with pytest.raises(InferenceError):
            run(src, tmp_path / "out" / "%04d.png", _FailingRunner(_NearestRunner(torch_runner.info), fail_at=4),
                encode=EncodeConfig())
        assert list((tmp_path / "out").iterdir()) == []

    def test_audio_is_named_as_not_copied(self, tmp_path, torch_runner, caplog):
        import logging

        src = make_video(tmp_path / "in.mp4", frames=8, audio="aac")
        (tmp_path / "out").mkdir()
        with caplog.at_level(logging.WARNING, logger="vggx.client.pipeline"):
            run(src, tmp_path / "out" / "%04d.png", _NearestRunner(torch_runner.info), encode=EncodeConfig())
        assert "images hold no audio, subtitles or chapters" in caplog.text

    def test_a_folder_of_images_gets_its_pattern_suggested(self, tmp_path):
        from vggx.client import plan_folder
        from vggx.errors import ConfigError

        make_png_sequence(tmp_path / "plates", first=1, name="shot_%04d.png", count=3)
        with pytest.raises(ConfigError, match=r"for its images as one sequence, name their pattern: .*"
                                              r"plates/shot_%04d\.png"):
            plan_folder(tmp_path / "plates", tmp_path / "out")

    def test_start_past_a_sequences_end(self, tmp_path, torch_runner):
        pattern = make_png_sequence(tmp_path / "in", count=4)
        with pytest.raises(VideoError, match=r"has no video frames at or after --start 10s \(it lasts 0\.16s\)"):
            run(pattern, tmp_path / "o.mkv", _NearestRunner(torch_runner.info), start=10.0)

    @pytest.mark.parametrize(("case", "message"), [
        ("percent", "a % in a file name starts an image-sequence number; use one %d or %0Nd"),
        ("gap", "the sequence 1001..1012 has a gap at 1005"),
        ("none", "input not found: no files match"),
        ("jpg", "images are written as PNG or TIFF \\(lossless\\)"),
        ("video codec", "is an image sequence, written with png; --codec ffv1 makes videos"),
        ("fps of a video", "--fps sets the rate of an image-sequence input"),
        ("same", "is the input sequence; its frames would be overwritten"),
        ("resume", "--resume applies to ffv1, libsvtav1, libvpx-vp9, libx264, libx264rgb, libx265, prores_ks, not png"),
    ])
    def test_errors(self, tmp_path, torch_runner, case, message):
        from vggx.errors import ConfigError

        pattern = make_png_sequence(tmp_path / "in")
        video = make_video(tmp_path / "v.mp4", frames=8)
        out = tmp_path / "out" / "%04d.png"
        out.parent.mkdir()
        kw, src = {"encode": EncodeConfig()}, pattern
        if case == "gap":
            (tmp_path / "in" / "f1005.png").unlink()
        elif case == "none":
            src = tmp_path / "in" / "g%04d.png"
        elif case == "jpg":
            out = out.with_suffix(".jpg")
        elif case == "percent":
            out = out.with_name("%s.png")
        elif case == "video codec":
            kw = {}  # LOSSLESS: ffv1
        elif case == "fps of a video":
            src, kw["fps"] = video, Fraction(24)
        elif case == "same":
            out = pattern
        elif case == "resume":
            kw["resume"] = True
        with pytest.raises((VideoError, ConfigError), match=message):
            run(src, out, _NearestRunner(torch_runner.info), **kw)
        if case == "same":  # the input frames untouched
            assert sorted(p.name for p in pattern.parent.iterdir()) == [f"f{i}.png" for i in range(1001, 1013)]
        else:
            assert list(out.parent.iterdir()) == []
        assert not any(p.name.startswith(".vggx") for p in tmp_path.rglob("*"))

    @pytest.mark.parametrize("dry_run", [False, True])
    @pytest.mark.parametrize(("spelling", "kw", "hit"), [
        ("f%d.png", {}, "f1001.png"),  # the same files by another spelling: every frame
        ("f%4d.png", {}, "f1001.png"),
        ("f1001.png", {"frames": 1}, "f1001.png"),  # a frame grab onto the first frame
        ("f1003.png", {"frames": 1, "start": 0.08}, "f1003.png"),
        ("f%d.png", {"start": 0.4, "frames": 2}, "f1011.png"),  # a preview keeps its numbers: 1011 and 1012
    ])
    def test_an_output_naming_an_input_frame_is_refused_before_any_work(self, tmp_path, torch_runner, spelling, kw,
                                                                        hit, dry_run):
        """Before: only the very same pattern was refused (compared as text); ``f%d.png`` over ``f%04d.png``'s
        1001.. frames replaced every one of them by its x4 version, and a one-frame grab named like a frame
        replaced it."""
        pattern = make_png_sequence(tmp_path / "in")
        before = {p.name: p.read_bytes() for p in pattern.parent.iterdir()}
        counting = _Counting(torch_runner.info)
        with pytest.raises(VideoError, match=rf"output .*{re.escape(spelling)} would overwrite .*{hit}, a frame of "
                                             r"the input sequence"):
            run(pattern, pattern.with_name(spelling), counting, encode=EncodeConfig(), fps=Fraction(25),
                dry_run=dry_run, **kw)
        assert counting.calls == 0
        assert {p.name: p.read_bytes() for p in pattern.parent.iterdir()} == before  # the input whole, nothing beside

    def test_an_output_beside_the_input_that_names_none_of_its_frames_is_written(self, tmp_path, torch_runner):
        # f%d.png writes f1.png, f2.png, ... beside f0001.png, ...: other files; f%02d.png's 1..3 are f01.png ..
        # f03.png, though its 10..12 would be the input's f10.png .. f12.png (not written in a 3-frame preview)
        pattern = make_png_sequence(tmp_path / "in", first=1, name="f%04d.png")
        run(pattern, pattern.with_name("f%d.png"), _NearestRunner(torch_runner.info), encode=EncodeConfig())
        short = make_png_sequence(tmp_path / "short", first=1, name="f%d.png")
        run(short, short.with_name("f%02d.png"), _NearestRunner(torch_runner.info), encode=EncodeConfig(), frames=3)
        assert sorted(p.name for p in short.parent.glob("f0*.png")) == ["f01.png", "f02.png", "f03.png"]
        with pytest.raises(VideoError, match=r"would overwrite .*f10\.png, a frame of the input sequence"):
            run(short, short.with_name("f%02d.png"), _NearestRunner(torch_runner.info), encode=EncodeConfig())
        assert sorted(p.name for p in tmp_path.glob("in/f?.png")) == [f"f{i}.png" for i in range(1, 10)]

    def test_one_image_into_a_sequence_that_names_it_is_refused(self, tmp_path, torch_runner):
        image = make_png_sequence(tmp_path / "in", first=1, count=1).with_name("f0001.png")
        before = image.read_bytes()
        with pytest.raises(VideoError, match=r"would overwrite .*f0001\.png, the input file"):
            run(image, image.with_name("f%04d.png"), _NearestRunner(torch_runner.info), encode=EncodeConfig())
        assert image.read_bytes() == before and sorted(p.name for p in image.parent.iterdir()) == ["f0001.png"]


    def test_rewriting_a_shorter_sequence_over_a_longer_one_says_what_is_left(self, tmp_path, torch_runner, caplog):
        """Before: a 3-frame run over a 12-frame run's f%04d.png left f0004.png .. f0012.png of the other clip
        beside the new f0001.png .. f0003.png, without a word (a compositor reads one 12-frame sequence of two
        clips). Those outside the range written are kept (a range rendered into a longer sequence, as
        ``--start``/``--frames`` on a sequence input do, is their place), and a warning names them."""
        import logging

        long, short = make_video(tmp_path / "long.mp4", frames=12), make_video(tmp_path / "short.mp4", frames=3)
        out = tmp_path / "out" / "f%04d.png"
        nearest = _NearestRunner(torch_runner.info)
        run(long, out, nearest, encode=EncodeConfig())
        with caplog.at_level(logging.WARNING, logger="vggx.video.encode"):
            run(long, out, nearest, encode=EncodeConfig())  # the same range again: nothing left over
            assert "numbered" not in caplog.text
            run(short, out, nearest, encode=EncodeConfig())
        assert re.search(r"out/f%04d\.png: 9 other numbered files are left beside the 3 written \(f0004\.png \.\. "
                         r"f0012\.png\), read with them as one sequence: delete them unless they are part of it",
                         caplog.text), caplog.text
        assert sorted(p.name for p in out.parent.iterdir()) == [f"f{i:04d}.png" for i in range(1, 13)]


class TestSingleImages:
    """One image in (a photo: the window mirrors its one frame) or out (one frame: a still, e.g. a frame grab)."""

    def test_an_image_in_and_out_is_the_one_frame_upscaled(self, tmp_path, torch_runner):
        pattern = make_png_sequence(tmp_path / "in", first=7, count=1)
        image = pattern.with_name("f0007.png")
        result = run(image, tmp_path / "x4.png", torch_runner, encode=EncodeConfig())
        run(image, tmp_path / "x4.mkv", torch_runner)  # the same frame into lossless video
        assert result.frames == 1 and result.output_size == (160, 224) and sorted(
            p.name for p in tmp_path.iterdir()) == ["in", "x4.mkv", "x4.png"]
        np.testing.assert_array_equal(_read_png(tmp_path / "x4.png"), decode_all(tmp_path / "x4.mkv")[0])

    def test_a_frame_grab_from_a_video(self, tmp_path, torch_runner):
        src = make_video(tmp_path / "in.mkv", frames=12, size=(40, 56), codec="ffv1", pix_fmt="bgr0")
        run(src, tmp_path / "grab.png", torch_runner, start=0.25, frames=1, encode=EncodeConfig())
        run(src, tmp_path / "grab.mkv", torch_runner, start=0.25, frames=1)
        np.testing.assert_array_equal(_read_png(tmp_path / "grab.png"), decode_all(tmp_path / "grab.mkv")[0])

    def test_a_video_into_one_image_is_refused_before_any_work(self, tmp_path, torch_runner):
        from vggx.errors import ConfigError

        src = make_video(tmp_path / "in.mp4", frames=10)
        counting = _Counting(torch_runner.info)
        with pytest.raises(ConfigError, match=r"o\.png holds one image, but .*in\.mp4 has 10 frames: write a "
                                              r"sequence \(o_%04d\.png\), a video, or pass --frames 1"):
            run(src, tmp_path / "o.png", counting, encode=EncodeConfig())
        assert counting.calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]

    def test_the_writer_refuses_a_second_frame(self, tmp_path):
        frame = np.zeros((16, 16, 3), np.uint8)
        writer = VideoWriter(tmp_path / "o.png", 16, 16, Fraction(24), Fraction(1, 24), EncodeConfig(codec="png"))
        with pytest.raises(VideoError, match=r"o\.png holds one image, and a second frame came"), writer:
            writer.write(frame, 0)
            writer.write(frame, 1)
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize(("name", "codec", "message"), [
        ("o.webm", "libx264", "o.webm: its container cannot hold libx264 video"),
        ("o.gif", "ffv1", "o.gif is a GIF, written with GIF's own codec; --codec ffv1 needs another container"),
        ("o.jpg", "libx264", "images are written as PNG or TIFF \\(lossless\\): o.jpg ends in .jpg"),
    ])
    def test_containers_that_cannot_hold_the_codec_are_refused_before_any_work(self, tmp_path, torch_runner, name,
                                                                               codec, message):
        src = make_video(tmp_path / "in.mp4", frames=8)
        counting = _Counting(torch_runner.info)
        with pytest.raises(VideoError, match=message):
            run(src, tmp_path / name, counting, encode=EncodeConfig(codec=codec))
        assert counting.calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


class TestUrlInput:
    """An ``http://`` input, read by FFmpeg from a real HTTP server (byte ranges, as object stores serve)."""

    def test_a_url_upscales_like_the_file_with_its_audio(self, tmp_path, torch_runner):
        from httpfiles import FileServer

        src = make_video(tmp_path / "clip.mp4", frames=12, audio="aac")
        run(src, tmp_path / "local.mkv", _NearestRunner(torch_runner.info))
        with FileServer(tmp_path) as srv:
            result = run(srv.url("clip.mp4") + "?X-Amz-Signature=s3cr3t", tmp_path / "remote.mkv",
                         _NearestRunner(torch_runner.info))
            assert srv.requests["/clip.mp4"] >= 2  # the frames, and the audio copied from a second read
        assert result.frames == 12 and stream_facts(tmp_path / "remote.mkv")["audio"] == ["aac"]
        for a, b in zip(decode_all(tmp_path / "remote.mkv"), decode_all(tmp_path / "local.mkv"), strict=True):
            np.testing.assert_array_equal(a, b)

    def test_a_connection_dropped_mid_file_is_resumed(self, tmp_path, torch_runner):
        """The server cuts the response after 20 kB (a reset, a load balancer's cut): FFmpeg reconnects with a
        range request from where it stopped, and the video comes out whole."""
        from httpfiles import FileServer

        src = make_video(tmp_path / "clip.mp4", frames=48, size=(120, 160), audio="aac")
        assert src.stat().st_size > 40_000
        run(src, tmp_path / "local.mkv", _NearestRunner(torch_runner.info))
        with FileServer(tmp_path) as srv:
            srv.drop_after = 20_000
            result = run(srv.url("clip.mp4"), tmp_path / "remote.mkv", _NearestRunner(torch_runner.info))
            assert srv.drop_after is None and srv.requests["/clip.mp4"] >= 3  # dropped once, then reopened
        assert result.frames == 48
        for a, b in zip(decode_all(tmp_path / "remote.mkv"), decode_all(tmp_path / "local.mkv"), strict=True):
            np.testing.assert_array_equal(a, b)

    def test_a_missing_url_is_one_clear_error_without_its_query(self, tmp_path, torch_runner):
        from httpfiles import FileServer

        with FileServer(tmp_path) as srv, pytest.raises(VideoError) as err:
            run(srv.url("nope.mp4") + "?X-Amz-Signature=s3cr3t", tmp_path / "o.mkv", _NearestRunner(torch_runner.info))
        assert f"cannot read {srv.url('nope.mp4')} (" in str(err.value) and "s3cr3t" not in str(err.value)
        assert list(tmp_path.iterdir()) == []

    def test_an_unreachable_server_is_one_clear_error(self, tmp_path, torch_runner):
        from vggx.server import free_port

        url = f"http://127.0.0.1:{free_port()}/clip.mp4"
        with pytest.raises(VideoError, match=f"cannot read {url} \\(.*[Cc]onnection refused"):
            run(url, tmp_path / "o.mkv", _NearestRunner(torch_runner.info))

    def test_a_server_that_never_answers_is_an_error_after_the_timeout(self, tmp_path, torch_runner, monkeypatch):
        import socket

        import vggx.video.decode as decode

        monkeypatch.setattr(decode, "URL_TIMEOUT_S", (1.0, 1.0))  # 30 s / 60 s in use
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/clip.mp4"
        try:
            with pytest.raises(VideoError, match=f"cannot read {url} \\(no answer within 1 s\\)"):
                run(url, tmp_path / "o.mkv", _NearestRunner(torch_runner.info))
        finally:
            silent.close()
        assert list(tmp_path.iterdir()) == []

    def test_resume_knows_a_url_by_its_path_not_its_signature(self, tmp_path, torch_runner):
        from httpfiles import FileServer

        info = torch_runner.info
        make_video(tmp_path / "clip.mp4", frames=40)
        out = tmp_path / "out" / "o.mp4"
        out.parent.mkdir()
        encode = EncodeConfig(crf=0, segment_frames=8)
        with FileServer(tmp_path) as srv:
            stopped_run(srv.url("clip.mp4") + "?sig=1", out, info, encode=encode)
            result = run(srv.url("clip.mp4") + "?sig=2", out, _NearestRunner(info), encode=encode, resume=True)
        assert result.resumed_frames > 0 and result.frames == 40


@pytest.mark.parametrize("degrees", [90, 0])
def test_display_rotation_is_kept(tmp_path, torch_runner, degrees):
    """A phone's upright clip is stored sideways with a display matrix: the output keeps the matrix, so
    players turn it the same way (frames are upscaled as stored)."""
    import av

    src = make_video(tmp_path / "in.mp4", frames=8, rotation=degrees)
    result = run(src, tmp_path / "o.mp4", _NearestRunner(torch_runner.info), encode=EncodeConfig())
    assert result.output_size == (160, 224)  # as stored
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert next(c.decode(video=0)).rotation == degrees


@pytest.mark.parametrize(("degrees", "shown"),
                         [(90, (224, 160)), (180, (160, 224)), (270, (224, 160)), (0, (160, 224))])
@pytest.mark.parametrize("output", ["o.png", "o_%03d.png", "o.y4m"])
def test_an_output_that_cannot_say_it_is_turned_gets_the_frames_as_shown(tmp_path, torch_runner, degrees, shown,
                                                                         output):
    """Images and y4m hold no display rotation: a phone's clip went into them sideways (as stored); its frames are
    turned as players show them first, as ffmpeg does. 180 degrees: the same size, the picture turned."""
    import av

    src = make_video(tmp_path / "in.mp4", frames=1 if output == "o.png" else 3, rotation=degrees)
    with av.open(str(src)) as c:
        stored = next(c.decode(video=0)).to_ndarray(format="rgb24")
    result = run(src, tmp_path / output, _NearestRunner(torch_runner.info), encode=EncodeConfig())
    assert result.output_size == shown
    first = tmp_path / (output % 1 if "%" in output else output)
    with av.open(str(first)) as c:
        image = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert image.shape[:2] == shown
    turned = np.rot90(stored, k=degrees // 90)  # counter-clockwise, as the display matrix says
    small = image[::4, ::4].astype(int)  # the nearest-neighbour model: every 4th pixel is the input's
    if output != "o.y4m":  # y4m goes through yuv420p: its colours are not exact
        assert np.abs(small - turned.astype(int)).mean() < 3


@pytest.mark.parametrize("sar", [Fraction(32, 27), Fraction(8, 9), None])
def test_square_pixels_resize_the_width_and_record_square_ones(tmp_path, torch_runner, sar):
    """--square-pixels: the pixel shape goes into the width (40x56 at 32:27 displays 40x66.4: x4, 160x266), the output
    records square pixels; a square-pixel input is left as it is."""
    import av

    src = make_video(tmp_path / "in.mp4", frames=8, sample_aspect_ratio=sar)
    result = run(src, tmp_path / "o.mp4", _NearestRunner(torch_runner.info), encode=EncodeConfig(),
                 square_pixels=True)
    want = {Fraction(32, 27): (160, 266), Fraction(8, 9): (160, 200), None: (160, 224)}[sar]
    assert result.output_size == want == stream_facts(tmp_path / "o.mp4")["size"]
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert (c.streams.video[0].sample_aspect_ratio or Fraction(1)) == 1


@pytest.mark.parametrize("sar", [Fraction(8, 9), None])
def test_anamorphic_pixel_shape_is_kept(tmp_path, torch_runner, sar):
    """A DVD-style source with non-square pixels: the output records the same pixel shape (display 4:3)."""
    import av

    src = make_video(tmp_path / "in.mp4", frames=8, sample_aspect_ratio=sar)
    run(src, tmp_path / "o.mp4", _NearestRunner(torch_runner.info), encode=EncodeConfig())
    with av.open(str(tmp_path / "o.mp4")) as c:
        out = c.streams.video[0].sample_aspect_ratio
    assert (out or Fraction(1)) == (sar or Fraction(1))


def test_subtitles_of_a_clip_without_audio_are_kept(tmp_path, torch_runner):
    import av

    src = make_video(tmp_path / "in.mkv", frames=8, subtitles="1\n00:00:00,000 --> 00:00:00,200\nhello\n\n")
    run(src, tmp_path / "o.mkv", _NearestRunner(torch_runner.info), encode=EncodeConfig())
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert [s.codec_context.name for s in c.streams.subtitles] == ["srt"] and not c.streams.audio


def test_a_preview_keeps_the_chapters_it_covers_and_the_fonts(tmp_path, torch_runner):
    """``--start 0.25 --frames 24`` of a film with chapters and a font attachment (and no audio): the chapters are
    shifted and cut to the preview, the font goes along."""
    from videoclips import FONT, chapters_of, make_film

    src = make_film(tmp_path / "film.mkv")
    out = tmp_path / "preview.mkv"
    run(src, out, _NearestRunner(torch_runner.info), start=0.25, frames=24)
    assert chapters_of(out) == [("One", 0.0, 0.25), ("Two", 0.25, 1.0)]
    import av

    with av.open(str(out)) as c:
        assert [bytes(s.data) for s in c.streams if s.type == "attachment"] == [FONT]


class TestDryRun:
    """``dry_run``: everything a run checks, and what it would do, without the model or a file."""

    def test_it_reports_what_the_run_does_and_writes_nothing(self, tmp_path, torch_runner):
        from videoclips import make_film

        src = make_film(tmp_path / "film.mkv")  # 48 frames of 40x56, chapters and a font
        calls = _Counting(torch_runner.info)
        plan = run(src, tmp_path / "o.mkv", calls, dry_run=True, tile=(24, 32))
        assert plan.dry_run and calls.calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["film.mkv"]
        done = run(src, tmp_path / "o.mkv", _NearestRunner(torch_runner.info), tile=(24, 32), scene_threshold=None)
        for field in ("frames", "windows", "tiles_per_window", "tile", "output_size", "input_size", "copied"):
            assert getattr(plan, field) == getattr(done, field), field
        assert plan.copied == ("chapters", "attachments") and plan.frames == 48

    def test_what_a_run_would_refuse_a_dry_run_refuses(self, clips, tmp_path, torch_runner):
        with pytest.raises(ConfigError, match=r"--context must be in 0\.\.3"):
            run(clips["aac"], tmp_path / "o.mp4", torch_runner, dry_run=True, context=4)
        with pytest.raises(VideoError, match="is not a video FFmpeg can read"):
            (tmp_path / "bad.mp4").write_text("not a video")
            run(tmp_path / "bad.mp4", tmp_path / "o.mp4", torch_runner, dry_run=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]

    def test_a_resume_dry_run_counts_the_stored_frames_and_keeps_them(self, tmp_path, torch_runner):
        info = torch_runner.info
        src = make_video(tmp_path / "in.mp4", frames=40)
        encode = EncodeConfig(crf=0, segment_frames=8)
        stopped_run(src, tmp_path / "out.mp4", info, encode=encode)
        store = tmp_path / ".out.mp4.vggx-resume"
        before = sorted(p.name for p in store.iterdir())
        plan = run(src, tmp_path / "out.mp4", _NearestRunner(info), encode=encode, resume=True, dry_run=True)
        assert plan.dry_run and plan.resumed_frames >= 8 and sorted(p.name for p in store.iterdir()) == before
        assert not (tmp_path / "out.mp4").exists()


def test_a_sigterm_whose_exception_was_swallowed_still_stops_the_run(tmp_path, torch_runner):
    """Python drops an exception raised while a finalizer runs; a SIGTERM landing then leaves only its flag, which
    the run's main loop checks: it stops as on any SIGTERM, nothing left at the output."""
    from vggx.errors import TERMINATING, Terminated

    class _SwallowedSigterm(_NearestRunner):
        calls = 0

        def infer(self, lr):
            self.calls += 1
            if self.calls == 3:
                TERMINATING.set()  # what the handler does before its exception is lost
            return super().infer(lr)

    src = make_video(tmp_path / "in.mp4", frames=40)
    out = tmp_path / "out.mp4"
    try:
        with pytest.raises(Terminated):
            run(src, out, _SwallowedSigterm(torch_runner.info))
    finally:
        TERMINATING.clear()
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["in.mp4"]


def test_a_failed_run_waits_once_for_the_windows_in_flight_not_once_each(tmp_path, torch_runner, monkeypatch):
    """A backend that cannot cancel its windows (Triton): a stopped or failed run waited up to 5 s for each thread in
    turn, 5 s x (--concurrency + 1) (85 s at 16 after Ctrl-C, past a supervisor's grace). Now one wait for all."""
    import threading
    import time

    monkeypatch.setattr("vggx.client.pipeline._STOP_WAIT_S", 1.0, raising=False)
    release, started, lock = threading.Event(), [], threading.Lock()

    class Stuck(_NearestRunner):
        def infer(self, lr):
            with lock:
                started.append(1)
                first = len(started) == 1
            if first:  # fails once the others are inside their windows
                deadline = time.monotonic() + 30
                while len(started) < 4 and time.monotonic() < deadline:
                    time.sleep(0.01)
                raise InferenceError("the server failed")
            release.wait(60)
            return super().infer(lr)

    src = make_video(tmp_path / "in.mkv", frames=48, size=(16, 24))
    t0 = time.monotonic()
    try:
        with pytest.raises(InferenceError, match="the server failed"):
            upscale(UpscaleConfig(src, tmp_path / "o.mkv", concurrency=4), runner=Stuck(torch_runner.info))
        assert time.monotonic() - t0 < 8  # one wait of 1 s, not 1 s (or 5 s) for each of the three stuck threads
    finally:
        release.set()
    assert len(started) >= 4 and not (tmp_path / "o.mkv").exists()
