"""``vggx upscale`` wiring: bad inputs give one line and a non-zero exit with nothing at OUTPUT; Ctrl-C
cleans up; peak memory does not grow with the video's length (subprocesses)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from triton_stub import StubTriton
from typer.testing import CliRunner
from videoclips import make_png_sequence, make_video, stream_facts

from vggx.cli import app
from vggx.client.windows import plan_tiles
from vggx.server import free_port


def assert_one_error_line(result, pattern: str, code: int = 1) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pattern in lines[0], lines[0]


class TestSuccess:
    def test_summary_line_names_frames_fps_and_size(self, cli, clips, tmp_path):
        out = tmp_path / "o.mp4"
        result = cli(clips["aac"], out, "--frames", "4", "--crf", "30")
        assert result.exit_code == 0, result.output
        line, stages = result.stdout.strip().splitlines()[-2:]
        assert line.startswith("4 frames in ") and " fps) -> " in line and "(224x160, " in line and " MB)" in line
        assert re.fullmatch(r"busy: decode \d+%, inference \d+%, encode \d+% of the wall time -> "
                            r"(decode|inference|encode)-bound.*", stages), stages
        assert out.is_file()

    def test_one_frame_is_one_frame(self, cli, clips, tmp_path):
        result = cli(clips["aac"], tmp_path / "o.png", "--frames", "1")
        assert result.exit_code == 0, result.output
        assert result.stdout.strip().splitlines()[-2].startswith("1 frame in "), result.stdout

    def test_a_start_past_the_end_says_how_long_the_clip_is(self, cli, clips, tmp_path):
        with av.open(str(clips["aac"])) as c:
            lasts = float(c.streams.video[0].duration * c.streams.video[0].time_base)
        assert_one_error_line(cli(clips["aac"], tmp_path / "o.mp4", "--start", "1:30", "--frames", "8"),
                              f"has no video frames at or after --start 90s (it lasts {lasts:g}s)")
        assert list(tmp_path.iterdir()) == []

    def test_compare_start_and_concurrency_reach_the_pipeline(self, cli, clips, tmp_path):
        out = tmp_path / "o.mkv"
        result = cli(clips["twelve"], out, "--compare", "--start", "00:00.25", "--frames", "3", "--concurrency", "2",
                     "--codec", "libx264rgb", "--crf", "0")
        assert result.exit_code == 0, result.output
        facts = stream_facts(out)
        assert facts["size"] == (160, 2 * 224) and facts["frames"] == 3 and facts["codec"] == "h264"

    @pytest.mark.parametrize(("option", "size"), [(("--outscale", "2"), (80, 112)), (("--height", "60"), (60, 84))])
    def test_outscale_and_height_set_the_output_size(self, cli, clips, tmp_path, option, size):
        out = tmp_path / "o.mp4"
        result = cli(clips["aac"], out, "--frames", "4", *option)
        assert result.exit_code == 0, result.output
        assert f"({size[1]}x{size[0]}, " in result.stdout and stream_facts(out)["size"] == size

    @pytest.mark.parametrize("tile", ["24x32", "32"])
    def test_tile_cuts_frames_into_tiles_and_says_so(self, cli, clips, tmp_path, tile):
        result = cli(clips["big"], tmp_path / "o.mkv", "--tile", tile, "--frames", "4", "--codec", "ffv1")
        assert result.exit_code == 0, result.output
        size = (24, 32) if tile == "24x32" else (32, 32)
        count = plan_tiles((40, 56), size, 8, 4).count  # 40x56 frames
        assert count == 6
        assert f", {count} tiles a frame]" in result.stdout.strip().splitlines()[-2]

    def test_an_http_url_is_an_input(self, cli, clips, tmp_path):
        import shutil

        from httpfiles import FileServer

        shutil.copy(clips["aac"], tmp_path / "clip.mp4")
        with FileServer(tmp_path) as srv:
            result = cli(srv.url("clip.mp4"), tmp_path / "o.mp4", "--frames", "4")
        assert result.exit_code == 0, result.output
        assert stream_facts(tmp_path / "o.mp4")["frames"] == 4

    def test_image_sequence_in_and_out(self, cli, clips, tmp_path):
        pattern = make_png_sequence(tmp_path / "in", count=6)
        out = tmp_path / "out"  # not there: made, as the README's `vggx upscale "plates/%04d.png" "x4/%04d.png"`
        result = cli(pattern, out / "%04d.png", "--fps", "23.976")
        assert result.exit_code == 0, result.output
        assert "6 frames in " in result.stdout and sorted(p.name for p in out.iterdir()) == [
            f"{i}.png" for i in range(1001, 1007)]
        result = cli(pattern, tmp_path / "o.mp4", "--fps", "23.976")
        assert result.exit_code == 0 and stream_facts(tmp_path / "o.mp4")["rate"] == Fraction(24000, 1001)

    def test_deinterlace_reaches_the_reader(self, cli, tmp_path):
        src = make_video(tmp_path / "i.mkv", frames=6, size=(40, 56), options={"x264-params": "tff=1"})
        out = tmp_path / "o.mkv"
        result = cli(src, out, "--deinterlace", "--codec", "ffv1")
        assert result.exit_code == 0, result.output
        assert stream_facts(out)["frames"] == 6

    def test_default_backend_is_onnxruntime(self, cli, clips, tmp_path, onnx_cache, monkeypatch):
        monkeypatch.setenv("VGGX_CACHE_DIR", str(onnx_cache))
        result = cli(clips["twelve"], tmp_path / "o.mkv", "--frames", "2", "--codec", "ffv1", backend=())
        assert result.exit_code == 0, result.output
        assert "[onnxruntime (CPUExecutionProvider)]" in result.stdout


class TestBadInput:
    def test_not_a_video(self, cli, tmp_path):
        bad = tmp_path / "in.mp4"
        bad.write_bytes(b"\x00\x01 not a video" * 100)
        assert_one_error_line(cli(bad, tmp_path / "o.mp4"), "is not a video FFmpeg can read")
        assert not (tmp_path / "o.mp4").exists()

    def test_zero_frames(self, cli, tmp_path):
        empty = make_video(tmp_path / "in.mkv", frames=0, audio="aac", audio_seconds=0.5)
        assert_one_error_line(cli(empty, tmp_path / "o.mp4"), "has no video frames")
        assert not (tmp_path / "o.mp4").exists()

    def test_truncated_file(self, cli, tmp_path):
        full = make_video(tmp_path / "full.mp4", frames=24)
        cut = tmp_path / "in.mp4"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        assert_one_error_line(cli(cut, tmp_path / "o.mp4"), "in.mp4")
        assert not (tmp_path / "o.mp4").exists()

    def test_missing_input(self, cli, tmp_path):
        assert_one_error_line(cli(tmp_path / "nope.mp4", tmp_path / "o.mp4"), "input not found")
        assert not (tmp_path / "o.mp4").exists()

    def test_unwritable_output(self, cli, clips, tmp_path):
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "o.mp4"
        assert_one_error_line(cli(clips["aac"], out), f"cannot write {out}")

    def test_unknown_codec(self, cli, clips, tmp_path):
        assert_one_error_line(cli(clips["aac"], tmp_path / "o.mp4", "--codec", "nope"), "unknown video encoder")
        assert list(tmp_path.iterdir()) == []

    def test_a_cache_folder_that_cannot_be_written_is_one_line_before_the_export(self, cli, clips, tmp_path,
                                                                               monkeypatch):
        """The default backend exports a checkpoint into vggx's cache once: a read-only home or a
        VGGX_CACHE_DIR under a file was a NotADirectoryError traceback."""
        (tmp_path / "file").write_text("x")
        monkeypatch.setenv("VGGX_CACHE_DIR", str(tmp_path / "file" / "vggx"))
        result = cli(clips["twelve"], tmp_path / "o.mkv", "--frames", "2", backend=())
        assert_one_error_line(result, f"cannot make vggx's cache folder {tmp_path / 'file' / 'vggx' / 'onnx'}: "
                                      "Not a directory; set VGGX_CACHE_DIR to a writable folder")
        assert "exporting" not in result.output and not (tmp_path / "o.mkv").exists()


class TestBackendErrors:
    def test_server_unreachable_names_the_url_and_vggx_serve(self, cli, clips, tmp_path):
        url = f"127.0.0.1:{free_port()}"
        result = cli(clips["aac"], tmp_path / "o.mp4", "--url", url, backend=())
        assert_one_error_line(result, f"cannot reach Triton at grpc://{url}", code=75)  # temporary: retry later
        assert "`vggx serve`" in result.stderr and not (tmp_path / "o.mp4").exists()

    def test_model_not_ready(self, cli, clips, tmp_path):
        with StubTriton(ready=False) as stub:
            result = cli(clips["aac"], tmp_path / "o.mp4", "--url", stub.url, "--protocol", "http", backend=())
        assert_one_error_line(result, "is up but model 'vggx' is not ready")

    def test_tensorrt_not_installed(self, cli, clips, tmp_path):
        try:
            import tensorrt  # noqa: F401
            pytest.skip("TensorRT is installed here")
        except ImportError:
            pass
        result = cli(clips["aac"], tmp_path / "o.mp4", backend=("--backend", "tensorrt"))
        assert_one_error_line(result, "TensorRT is not installed")

    @pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
    @pytest.mark.parametrize("device", ["cuda", "cuda:1"])
    def test_cuda_without_a_gpu(self, cli, clips, tmp_path, device):
        result = cli(clips["aac"], tmp_path / "o.mp4", "--device", device)
        assert_one_error_line(result, f"--device {device}: PyTorch sees no CUDA GPU")

    def test_pixel_format_the_codec_cannot_encode(self, cli, clips, tmp_path):
        result = cli(clips["aac"], tmp_path / "o.mkv", "--codec", "libx264rgb", "--pix-fmt", "yuv420p10le")
        assert_one_error_line(result, "--pix-fmt yuv420p10le is not one libx264rgb encodes")
        assert list(tmp_path.iterdir()) == []

    def test_compile_needs_cuda(self, cli, clips, tmp_path):
        result = cli(clips["aac"], tmp_path / "o.mp4", "--compile")
        assert_one_error_line(result, "--compile applies to the torch backend on --device cuda")
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize(("options", "message"), [
        (("--outscale", "0"), "--outscale must be in [0.25, 16], got 0"),
        (("--outscale", "2", "--height", "720"), "give --outscale or --height, not both"),
        (("--height", "1"), "--height must be >= 2 pixels, got 1"),
    ])
    def test_bad_output_size(self, cli, clips, tmp_path, options, message):
        result = cli(clips["aac"], tmp_path / "o.mp4", *options)
        assert_one_error_line(result, message)
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize(("tile", "message"), [
        ("big", "--tile must be N or HxW in input pixels (e.g. 512 or 540x960), got 'big'"),
        ("0", "--tile must be N or HxW in input pixels (e.g. 512 or 540x960), got '0x0'"),
        ("540x", "--tile must be N or HxW in input pixels (e.g. 512 or 540x960), got '540x'"),
        ("8", "--tile 8x8 is below the smallest tile this model takes, 16x16"),
    ])
    def test_bad_tile(self, cli, clips, tmp_path, tile, message):
        result = cli(clips["big"], tmp_path / "o.mp4", "--tile", tile)
        assert_one_error_line(result, message)
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize(("args", "message"), [
        (("--jobs", "0"), "--jobs must be in 1..64, got 0"),
        (("--jobs", "65"), "--jobs must be in 1..64, got 65"),
        (("--progress-interval", "-1"), "--progress-interval must be >= 0 seconds (0: no progress lines), got -1"),
        (("--video-stream", "-1"), "--video-stream must be >= 0 (a stream's index as ffprobe lists them), got -1"),
        (("--frames", "0"), "--frames must be >= 1, got 0"),
    ])
    def test_a_number_out_of_range_is_one_line_and_exit_1(self, cli, clips, tmp_path, args, message):
        """A setting out of its range is bad input (exit 1, one line) like any other, not a usage error."""
        assert_one_error_line(cli(clips["aac"], tmp_path / "o.mp4", *args), message)
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize(("args", "message"), [
        (("--model", "vggx-base"), "--model names a model Triton serves; it applies with --url, not --backend torch "
                                   "(which runs --checkpoint)"),
        (("--model-version", "2"), "--model-version picks a version Triton serves; it applies with --url, not "
                                   "--backend torch"),
    ])
    def test_served_model_options_need_a_server(self, cli, clips, tmp_path, args, message):
        assert_one_error_line(cli(clips["aac"], tmp_path / "o.mp4", *args), message)

    def test_bad_alpha_mode(self, cli, clips, tmp_path):
        assert_one_error_line(cli(clips["aac"], tmp_path / "o.mp4", "--alpha", "ai"),
                              "--alpha must be bicubic or model, got 'ai'")

    def test_model_version_is_a_number(self, cli, clips, tmp_path):
        result = cli(clips["aac"], tmp_path / "o.mp4", "--model-version", "latest", backend=("--url", "127.0.0.1:1"))
        assert_one_error_line(result, "--model-version must be a version number, got 'latest'")

    @pytest.mark.parametrize("fps", ["0", "-24", "fast", "1/0"])
    def test_bad_fps(self, cli, tmp_path, fps):
        result = cli(make_png_sequence(tmp_path / "in", count=2), tmp_path / "o.mp4", "--fps", fps)
        assert_one_error_line(result, "--fps must be a positive rate such as 24, 29.97 or 30000/1001")
        assert not (tmp_path / "o.mp4").exists()

    @pytest.mark.parametrize("start", ["-1", "1:60", "nan", "1::2", "1.5:30", "0:0:0:1"])
    def test_bad_start(self, cli, clips, tmp_path, start):
        result = cli(clips["aac"], tmp_path / "o.mp4", "--start", start)
        assert_one_error_line(result, "--start must be seconds (90.5) or a timestamp (1:30.5, 01:02:03), got")

    def test_zero_concurrency(self, cli, clips, tmp_path):
        result = cli(clips["aac"], tmp_path / "o.mp4", "--concurrency", "0")
        assert_one_error_line(result, "--concurrency must be in 1..64, got 0")

    @pytest.mark.parametrize("where", ["missing folder", "a folder"])
    def test_a_json_path_that_cannot_be_written_fails_before_any_work(self, cli, clips, tmp_path, where):
        target = tmp_path / "nope" / "r.json" if where == "missing folder" else tmp_path
        result = cli(clips["aac"], tmp_path / "o.mp4", "--json", target)
        assert_one_error_line(result, "--json ")
        assert not (tmp_path / "o.mp4").exists()

    def test_a_hardware_encoder_that_cannot_start_fails_before_any_work(self, cli, clips, tmp_path):
        from vggx.errors import VideoError
        from vggx.video import EncodeConfig
        from vggx.video.encode import check_encoder_starts

        try:
            check_encoder_starts(EncodeConfig(codec="h264_nvenc"))
            pytest.skip("NVENC starts on this machine")
        except VideoError:
            pass
        result = cli(clips["aac"], tmp_path / "o.mp4", "--codec", "h264_nvenc")
        assert_one_error_line(result, "the h264_nvenc encoder cannot start on this machine")
        assert list(tmp_path.iterdir()) == []

    def test_unknown_backend(self, cli, clips, tmp_path):
        result = cli(clips["aac"], tmp_path / "o.mp4", backend=("--backend", "magic"))
        assert_one_error_line(result, "--backend must be one of onnxruntime, torch, tensorrt, triton")


# ------------------------------------------------------------------------------------- subprocesses

_RUN_AND_REPORT_RSS = textwrap.dedent("""
    import sys
    import vggx.client.pipeline as pipeline
    from vggx.cli import app

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

    inner = pipeline._upscale
    start = {}

    def measured(*args, **kwargs):
        # The model is loaded; from here on memory is the pipeline's. Reset the high-water mark
        # (Linux: writing 5 to clear_refs sets VmHWM to the current RSS) and note the RSS.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        start["rss"] = status("VmRSS")
        config, output, runner, reader, progress = args
        total = reader.expected_frames()

        class Probe:  # note the peak when half the frames are done
            done = 0

            def start(self, *a):
                progress.start(*a)

            def advance(self, n):
                progress.advance(n)
                Probe.done += n
                if "half" not in start and Probe.done >= total // 2:
                    start["half"] = status("VmHWM")

        return inner(config, output, runner, reader, Probe(), **kwargs)

    pipeline._upscale = measured
    try:
        app(sys.argv[1:], standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    print("RSS_KB", start.get("rss", 0), start.get("half", 0), status("VmHWM"), file=sys.stderr)
    sys.exit(code)
""")


def _vggx(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", _RUN_AND_REPORT_RSS, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_while_running(proc: subprocess.Popen, done, seconds: float, what: str) -> None:
    """Poll ``done()`` until it is true; fail if ``proc`` exits first (with its output) or ``seconds`` pass
    (``what`` did not happen within them)."""
    deadline = time.monotonic() + seconds
    while not done():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{what} within {seconds:g} s"
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "code", "message"), [(signal.SIGINT, 130, "error: interrupted"),
                                                      (signal.SIGTERM, 143, "error: terminated (SIGTERM)")],
                         ids=["ctrl-c", "sigterm"])
def test_a_signal_mid_run_exits_cleanly_and_leaves_nothing(tiny_checkpoint_path, tmp_path, sig, code, message):
    """Ctrl-C, or a scheduler's / ``timeout``'s SIGTERM: the half-written output is deleted, one line, exit 128+N."""
    src = make_video(tmp_path / "in.mkv", frames=96, codec="ffv1", pix_fmt="bgr0")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _vggx(["upscale", src, out_dir / "o.mp4", "--backend", "torch", "--checkpoint",
                  tiny_checkpoint_path, "--threads", "1"])
    # the temporary file appears with the first encoded window
    wait_while_running(proc, lambda: any(out_dir.iterdir()), 60, "no output started")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert message in err
    assert list(out_dir.iterdir()) == []


_SIGNAL_INSIDE_GET = r"""
import os
import queue
import signal
import sys
import threading

from vggx.cli import main

real_get = queue.Queue.get
calls = 0


def get(self, block=True, timeout=None):
    # Condition.wait lets the queue's lock go before its ``try``: the signal lands there, as it can in the real one
    global calls
    if threading.current_thread() is threading.main_thread() and timeout is not None:
        calls += 1
        if calls == 3:
            with self.not_empty:
                self.mutex.release()
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # (where Python runs the handler, if os.kill has not)
                    pass
                self.mutex.acquire()
    return real_get(self, block, timeout)


queue.Queue.get = get
sys.argv = ["vggx", *sys.argv[1:]]
main()
"""


def test_a_signal_inside_the_wait_for_a_window_is_the_clean_stop(tiny_checkpoint_path, tmp_path):
    """SIGTERM landing inside the main thread's wait for a finished window (in ``Condition.wait``, with the queue's
    lock let go) was raised there: leaving the ``with`` released the lock again, a RuntimeError traceback and exit
    1 instead of the clean stop. Now it is raised after the wait: one line, exit 143, nothing left."""
    src = make_video(tmp_path / "in.mkv", frames=48, codec="ffv1", pix_fmt="bgr0")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = subprocess.run([sys.executable, "-c", _SIGNAL_INSIDE_GET, "upscale", str(src), str(out_dir / "o.mp4"),
                             "--backend", "torch", "--checkpoint", str(tiny_checkpoint_path), "--threads", "1"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr.strip()) == (143, "error: terminated (SIGTERM)"), result.stderr
    assert list(out_dir.iterdir()) == []


_STOP_WAIT_0 = """
import sys
import vggx.client.pipeline
vggx.client.pipeline._STOP_WAIT_S = 0.0  # the window threads not waited for: what a window longer than the wait meets
from vggx.entry import main
sys.argv = ["vggx", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_an_input_error_with_a_window_in_flight_is_one_line_and_exit_1(tmp_path, backend):
    """An error while a window was inside ONNX Runtime or PyTorch (a truncated input found out by the decoder, with
    windows of real frames: longer than the 5 s the threads were waited for) left the window's thread going as the
    interpreter exited, which aborted the process: exit 134 and C++ runtime lines after the error line (6 runs of
    10 with PyTorch, all with ONNX Runtime). The runs in flight are stopped, and their threads waited for."""
    full = make_video(tmp_path / "full.mkv", frames=48, size=(96, 128), codec="ffv1", pix_fmt="bgr0")
    cut = tmp_path / "in.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", _STOP_WAIT_0, "upscale", str(cut), str(out_dir / "o.mkv"),
                                 "--threads", "1", "--backend", backend], capture_output=True, text=True,
                                timeout=300)
        # (a slow machine prints progress lines: "12/48 frames (25.0 %) in 0:36, ...")
        lines = [line for line in result.stderr.strip().splitlines() if not re.match(r"\d+/\d+ frames ", line)]
        assert (result.returncode, lines) == (1, [
            f"error: {cut} ends at 1.17 s of its 2.00 s of video (after 28 frames); the file is truncated or "
            "damaged"]), result.stderr
        assert list(out_dir.iterdir()) == []


def _rss_mb(args: list) -> tuple[float, float, float]:
    """RSS when the pipeline starts, its peak at half the frames, and its peak at the end (MiB)."""
    proc = _vggx(args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    line = next(x for x in err.splitlines() if x.startswith("RSS_KB"))
    start, half, end = (int(v) / 1024 for v in line.split()[1:])
    return start, half, end


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_video_length(tiny_checkpoint_path, tmp_path):
    size = (40, 56)
    rss = {}
    for n in (30, 300):
        src = make_video(tmp_path / f"in{n}.mkv", frames=n, size=size, codec="ffv1", pix_fmt="bgr0")
        rss[n] = _rss_mb(["upscale", src, tmp_path / f"o{n}.mp4", "--backend", "torch", "--checkpoint",
                          tiny_checkpoint_path, "--threads", "1"])
    frame_mb = size[0] * size[1] * 3 * (1 + 16) / 2**20  # one LR frame and its x4 output
    (start30, _, peak30), (start300, half300, peak300) = rss[30], rss[300]
    print(f"peak RSS (whole process, model loaded at {start30:.0f}/{start300:.0f} MiB): 30 frames "
          f"{peak30:.1f} MiB, 300 frames {peak300:.1f} MiB ({peak300 / peak30 - 1:+.1%}); 300-frame run at "
          f"frame 150: {half300:.1f} MiB; holding 150 frames would take {150 * frame_mb:.0f} MiB")
    # The criterion. (RSS also carries glibc's arena growth, a one-off step of ~10-20 MiB at
    # some point of a long run, so the exact accounting is test_pipeline_memory_is_independent_of_length.)
    assert peak300 <= 1.2 * peak30


def test_help_has_an_example():
    result = CliRunner().invoke(app, ["upscale", "--help"])
    assert result.exit_code == 0 and "Example: vggx upscale" in result.stdout


class TestFolder:
    """``vggx upscale IN_DIR OUT_DIR``: every video, one backend load, failures reported and the rest done."""

    def _folder(self, tmp_path):
        src = tmp_path / "in"
        src.mkdir()
        make_video(src / "a.mp4", frames=6, audio="aac")
        make_video(src / "b.mkv", frames=5, codec="ffv1", pix_fmt="bgr0")
        (src / "broken.mp4").write_bytes(b"not a video")
        (src / "notes.txt").write_text("not a video either: not looked at")
        return src

    def test_each_video_is_upscaled_and_a_broken_one_reported(self, cli, tmp_path, monkeypatch):
        import vggx.client

        opened = []
        real = vggx.client.open_runner
        monkeypatch.setattr(vggx.client, "open_runner", lambda cfg: opened.append(cfg) or real(cfg))
        src, out = self._folder(tmp_path), tmp_path / "out"
        result = cli(src, out, "--json", tmp_path / "results.json")
        assert len(opened) == 1  # the backend is loaded (and warmed up) once for the folder
        assert result.exit_code == 1, result.output
        assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mkv"]  # nothing half-written
        assert stream_facts(out / "a.mp4")["frames"] == 6 and stream_facts(out / "a.mp4")["audio"] == ["aac"]
        assert stream_facts(out / "b.mkv")["size"] == (40 * 4, 56 * 4)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "broken.mp4" in errors[0]
        assert "2 upscaled, 0 skipped, 1 failed: broken.mp4" in result.stdout
        report = json.loads((tmp_path / "results.json").read_text())
        assert report["failed"] == ["broken.mp4"]
        assert report["errors"]["broken.mp4"] == errors[0].removeprefix("error: ")  # why, for the scheduler too
        assert [(Path(r["input"]).name, r["frames"], r["output_size"]) for r in report["results"]] == [
            ("a.mp4", 6, [160, 224]), ("b.mkv", 5, [160, 224])]
        assert all(r["fps"] > 0 and set(r["busy"]) == {"decode", "infer", "encode"} for r in report["results"])
        # a second run leaves what is done (the folder picks up where it stopped)
        again = cli(src, out, "--skip-existing")
        assert "0 upscaled, 2 skipped, 1 failed: broken.mp4" in again.stdout and again.exit_code == 1
        (src / "broken.mp4").unlink()
        done = cli(src, out, "--skip-existing")  # nothing left: the summary line all the same
        assert done.exit_code == 0 and done.stdout.splitlines()[-1] == "0 upscaled, 2 skipped, 0 failed"

    def test_folder_settings_are_checked_first(self, cli, tmp_path):
        src = self._folder(tmp_path)
        assert_one_error_line(cli(src, src), "the output folder is the input folder")
        (tmp_path / "file.mp4").write_bytes(b"")
        assert_one_error_line(cli(src, tmp_path / "file.mp4"), "the output must be one too")
        # a folder named like a video was made quietly (newout.mp4/a.mp4)
        assert_one_error_line(cli(src, tmp_path / "newout.mp4"), "newout.mp4 is named like a video file: name a folder")
        assert not (tmp_path / "newout.mp4").exists()
        empty = tmp_path / "empty"
        empty.mkdir()
        assert_one_error_line(cli(empty, tmp_path / "o"), "no videos in")
        assert_one_error_line(cli(src, tmp_path / "o2", "--crf", "99"), "--crf must be in 0..51 for libx264, got 99")
        assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()

    def test_a_percent_in_a_videos_name_is_kept(self, cli, tmp_path):
        """Before: ``sale 50% off.mp4`` failed in a folder run ("a % in a file name starts an image-sequence
        number"), whose output names the user cannot choose."""
        src = tmp_path / "in"
        src.mkdir()
        make_video(src / "sale 50% off.mp4", frames=3)
        result = cli(src, tmp_path / "out")
        assert result.exit_code == 0, result.output
        assert "1 upscaled, 0 skipped, 0 failed" in result.stdout
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["sale 50% off.mp4"]
        assert stream_facts(tmp_path / "out" / "sale 50% off.mp4")["frames"] == 3

    def test_skip_existing_single_file(self, cli, clips, tmp_path):
        out = tmp_path / "o.mp4"
        out.write_bytes(b"kept")
        result = cli(clips["aac"], out, "--skip-existing", "--json", tmp_path / "r.json")
        assert result.exit_code == 0 and "exists: skipped" in result.stdout
        assert out.read_bytes() == b"kept"
        assert json.loads((tmp_path / "r.json").read_text()) == {"results": [], "failed": [], "errors": {}}
        done = cli(clips["aac"], tmp_path / "new.mp4", "--json", tmp_path / "r.json")
        (row,) = json.loads((tmp_path / "r.json").read_text())["results"]
        assert done.exit_code == 0 and row["output"] == str(tmp_path / "new.mp4") and row["frames"] == 10


    def test_skip_existing_image_sequence(self, cli, clips, tmp_path):
        """An image-sequence output exists where its pattern numbers a file (a finished run moved its frames into
        place whole): the pattern itself is no file, and --skip-existing upscaled it again over the frames."""
        (tmp_path / "x4").mkdir()
        out = tmp_path / "x4" / "%04d.png"
        (tmp_path / "x4" / "notes.txt").write_text("not a frame")
        first = cli(clips["aac"], out, "--skip-existing", "--frames", "2")
        assert first.exit_code == 0 and "skipped" not in first.stdout, first.output
        frames = sorted(p.name for p in (tmp_path / "x4").glob("*.png"))
        assert len(frames) == 2
        stamp = (tmp_path / "x4" / frames[0]).stat().st_mtime_ns
        again = cli(clips["aac"], out, "--skip-existing", "--frames", "2")
        assert again.exit_code == 0 and f"{out} exists ({frames[0]} ...): skipped" in again.stdout, again.output
        assert (tmp_path / "x4" / frames[0]).stat().st_mtime_ns == stamp


def test_resume_from_the_cli(cli, clips, tmp_path):
    """``--resume``: a finished run leaves only its output; a codec that cannot be joined is one line."""
    out = tmp_path / "o.mp4"
    result = cli(clips["aac"], out, "--resume")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]
    assert stream_facts(out)["frames"] == 10
    assert_one_error_line(cli(clips["aac"], tmp_path / "o.mkv", "--resume", "--codec", "mpeg4"),
                          "--resume applies to ffv1, libsvtav1, libvpx-vp9, libx264, libx264rgb, libx265, "
                          "prores_ks, not mpeg4")


def test_sigterm_then_resume_finishes_the_video(tiny_checkpoint_path, tmp_path, cli):
    """The user story: a long run is stopped by the scheduler; the same command again goes on after the
    segments already encoded and finishes the video."""
    src = make_video(tmp_path / "in.mkv", frames=96, codec="ffv1", pix_fmt="bgr0")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "o.mp4"
    proc = _vggx(["upscale", src, out, "--resume", "--backend", "torch", "--checkpoint", tiny_checkpoint_path,
                  "--threads", "1"])
    first_segment = out_dir / ".o.mp4.vggx-resume" / "seg-00000.bin"
    wait_while_running(proc, first_segment.exists, 120, "no segment finished")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "kept in" in err and not out.exists()
    result = cli(src, out, "--resume")
    assert result.exit_code == 0, result.output
    resumed = int(re.search(r"96 frames \((\d+) from the stopped run\)", result.stdout).group(1))
    assert resumed >= 48 and resumed % 48 == 0  # whole 2-second segments (48 frames at 24 fps)
    assert stream_facts(out)["frames"] == 96
    assert sorted(p.name for p in out_dir.iterdir()) == ["o.mp4"]


# ------------------------------------------------------------------------------------- standard input


def _y4m(path, frames: int = 12, size=(40, 56)):
    """Raw yuv420p frames in a YUV4MPEG2 stream (what ``vspipe -c y4m`` writes), by FFmpeg's muxer."""
    import av
    from videoclips import frame_pattern

    with av.open(str(path), "w") as c:
        stream = c.add_stream("rawvideo", rate=24)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, *size), format="rgb24").reformat(format="yuv420p")
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path


def _piped(tiny_checkpoint_path, source, args) -> subprocess.CompletedProcess:
    """``cat SOURCE | vggx upscale - ARGS``: a real pipe (not seekable), the torch backend on one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(source, "rb") as data:
        return subprocess.run([sys.executable, "-m", "vggx.cli", "upscale", "-", *map(str, args), "--backend", "torch",
                               "--checkpoint", str(tiny_checkpoint_path), "--threads", "1"],
                              input=data.read(), capture_output=True, env=env, timeout=300)


class TestStandardInput:
    @pytest.mark.parametrize("start", [None, "0.25"])
    def test_a_piped_stream_upscales_like_the_file(self, cli, tiny_checkpoint_path, tmp_path, start):
        """``vspipe -c y4m script.vpy - | vggx upscale - out.mkv``; --start skips frames rather than seeking."""
        from videoclips import decode_all

        src = _y4m(tmp_path / "clip.y4m")
        extra = ["--start", start] if start else []
        done = _piped(tiny_checkpoint_path, src, [tmp_path / "piped.mkv", "--codec", "ffv1", *extra])
        assert done.returncode == 0, done.stderr.decode()
        assert cli(src, tmp_path / "file.mkv", "--codec", "ffv1", *extra).exit_code == 0
        piped, file = decode_all(tmp_path / "piped.mkv"), decode_all(tmp_path / "file.mkv")
        assert len(piped) == len(file) == (6 if start else 12)
        for a, b in zip(piped, file, strict=True):
            np.testing.assert_array_equal(a, b)

    def test_audio_on_a_pipe_is_named_as_not_copied(self, clips, tiny_checkpoint_path, tmp_path):
        done = _piped(tiny_checkpoint_path, clips["opus"], [tmp_path / "o.mkv", "--frames", "4"])
        assert done.returncode == 0, done.stderr.decode()
        # what the input has, named (it said "audio and subtitles" for a file with chapters and attachments too)
        assert "what goes along with the video on standard input (audio) is not copied" in done.stderr.decode()
        assert stream_facts(tmp_path / "o.mkv")["audio"] == [] and stream_facts(tmp_path / "o.mkv")["frames"] == 4

    @pytest.mark.parametrize(("data", "args", "message"), [
        (b"not a video at all", [], "error: stdin is not a video FFmpeg can read"),
        (None, ["--resume"], "error: --resume needs an input it can read again; standard input (-) cannot be"),
    ])
    def test_errors(self, tiny_checkpoint_path, tmp_path, data, args, message):
        source = tmp_path / "in.bin"
        source.write_bytes(data or _y4m(tmp_path / "c.y4m").read_bytes())
        done = _piped(tiny_checkpoint_path, source, [tmp_path / "o.mp4", *args])
        lines = done.stderr.decode().strip().splitlines()
        assert done.returncode == 1 and lines[-1].startswith(message), done.stderr.decode()
        assert not (tmp_path / "o.mp4").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(cli, clips, tmp_path):
    out = tmp_path / "o.mp4"
    result = cli(clips["aac"], out, "--dry-run", "--json", tmp_path / "plan.json")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith(
        "dry run: would upscale about 10 frames of 56x40 at 24 fps to 224x160 into ")
    assert "copied along: audio" in result.stdout and "nothing was written" in result.stdout
    row = json.loads((tmp_path / "plan.json").read_text())["results"][0]
    assert row["dry_run"] is True and row["fps"] is None and row["frames"] == 10 and row["copied"] == ["audio"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


class TestProgressLines:
    """Standard error that is not a terminal (a Job's log) gets a progress line every --progress-interval seconds."""

    def test_lines_say_frames_pace_and_time_left(self):
        from vggx.cli import _ProgressLines

        now = [100.0]
        lines = _ProgressLines(30.0, clock=lambda: now[0])
        lines.start(1000, "ignored")
        assert lines.line(100.0) == "0/1000 frames (0.0 %) in 0:00"
        now[0] = 110.0
        lines.advance(100)  # the first window, after the warm-up: the pace counts from here
        assert lines.line(110.0) == "100/1000 frames (10.0 %) in 0:10"
        now[0] = 130.0
        lines.advance(400)
        assert lines.line(130.0) == "500/1000 frames (50.0 %) in 0:30, 20.00 fps, about 0:25 left"
        now[0] = 4000.0
        lines.start(None, "a stream of unknown length")
        lines.advance(4)
        now[0] = 7604.0
        lines.advance(3600)
        assert lines.line(7604.0) == "3604 frames in 1:00:04, 1.00 fps"

    def test_a_resumed_runs_stored_frames_are_not_its_pace(self):
        from vggx.cli import _ProgressLines

        now = [0.0]
        lines = _ProgressLines(30.0, clock=lambda: now[0])
        lines.start(100, "resuming")
        lines.advance(60)  # the stored frames, reported at once
        now[0] = 20.0
        lines.advance(20)
        assert lines.line(20.0) == "80/100 frames (80.0 %) in 0:20, 1.00 fps, about 0:20 left"

    def test_a_run_logs_lines_on_standard_error_only(self, cli, clips, tmp_path):
        result = cli(clips["twelve"], tmp_path / "o.mkv", "--progress-interval", "0.000001")
        assert result.exit_code == 0, result.output
        progress = result.stderr.strip().splitlines()
        assert progress and all(re.fullmatch(r"\d+/12 frames \(\d+\.\d %\) in 0:\d\d(, \d+\.\d\d fps"
                                             r"(, about 0:\d\d left)?)?", p) for p in progress), progress
        assert progress[-1].startswith("12/12 frames (100.0 %)")
        assert "frames (" not in result.stdout  # the summary stays on standard output, alone
        quiet = cli(clips["twelve"], tmp_path / "p.mkv", "--progress-interval", "0")
        assert quiet.exit_code == 0 and quiet.stderr == ""

    def test_a_folder_run_names_the_file(self, cli, clips, tmp_path):
        folder = tmp_path / "in"
        folder.mkdir()
        for name in ("a.mkv", "b.mkv"):
            (folder / name).write_bytes(clips["twelve"].read_bytes())
        result = cli(folder, tmp_path / "out", "--progress-interval", "0.000001")
        assert result.exit_code == 0, result.output
        names = {line.split(":", 1)[0] for line in result.stderr.strip().splitlines()}
        assert names == {"a.mkv", "b.mkv"}


def test_copy_from_the_cli(cli, clips, tmp_path):
    import av

    out = tmp_path / "o.mp4"
    result = cli(clips["aac"], out, "--frames", "4", "--copy", "none")
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 0 and len(c.streams.video) == 1
    result = cli(clips["aac"], tmp_path / "p.mp4", "--frames", "4", "--copy", "audio, subtitles")
    assert result.exit_code == 0, result.output
    with av.open(str(tmp_path / "p.mp4")) as c:
        assert len(c.streams.audio) == 1
    assert_one_error_line(cli(clips["aac"], tmp_path / "q.mp4", "--copy", "audio,sound"),
                          "--copy takes audio, subtitles, chapters, attachments, cover, all or none; not sound")
    assert not (tmp_path / "q.mp4").exists()


def test_audio_codec_from_the_cli(cli, tmp_path):
    import av

    from vggx.cli import _parse_bitrate

    assert (_parse_bitrate("192k"), _parse_bitrate("1.5M"), _parse_bitrate("128000")) == (192_000, 1_500_000, 128_000)
    src = make_video(tmp_path / "pcm.mkv", frames=6, audio="pcm_s16le")
    result = cli(src, tmp_path / "o.mp4", "--audio-codec", "aac", "--audio-bitrate", "64k", "--json",
                 tmp_path / "o.json")
    assert result.exit_code == 0, result.output
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
    (row,) = json.loads((tmp_path / "o.json").read_text())["results"]
    assert row["copied"] == ["audio"] and row["audio_codec"] == "aac"  # carried along, re-encoded: it read "copied"
    plan = cli(src, tmp_path / "q.mp4", "--audio-codec", "aac", "--dry-run")
    assert "copied along: audio (re-encoded with aac)" in plan.stdout
    copied = cli(src, tmp_path / "r.mkv", "--dry-run", "--json", tmp_path / "r.json")
    assert "copied along: audio;" in copied.stdout or copied.stdout.rstrip().endswith("copied along: audio")
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["audio_codec"] is None
    assert_one_error_line(cli(src, tmp_path / "p.mp4", "--audio-codec", "aac", "--audio-bitrate", "lots"),
                          "--audio-bitrate takes bits/s such as 192k or 128000, got 'lots'")


def test_video_stream_from_the_cli(cli, tmp_path):
    from test_upscale_video_io import TestDecode

    src = TestDecode._with_cover(tmp_path / "two.mkv", attached=False)
    result = cli(src, tmp_path / "o.mkv", "--video-stream", "0", "--codec", "ffv1")
    assert result.exit_code == 0, result.output
    assert stream_facts(tmp_path / "o.mkv")["size"] == (128, 128) and stream_facts(tmp_path / "o.mkv")["frames"] == 1
    assert_one_error_line(cli(src, tmp_path / "p.mkv", "--video-stream", "9"), "--video-stream 9: ")
