"""The harness end to end on a tiny in-process model: documented JSON fields, real numbers."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vggx.benchmarks.bench import BenchConfig, run_bench
from vggx.cli import app
from vggx.client import Backend, BackendConfig
from vggx.errors import ConfigError

POINT_FIELDS = {
    "backend", "description", "concurrency", "batch", "window", "lr_size", "out_size", "requests", "errors",
    "throughput", "latency", "frames_per_s", "mpix_per_s", "gflops_per_frame", "achieved_gflops",
    "peak_gflops", "peak_source", "peak_memory_mb", "max_in_flight", "server", "ratio",
}


def _no_constant(name: str):
    raise AssertionError(f"{name} in the JSON: not valid JSON for other parsers")


def test_json_has_the_documented_fields(tiny_checkpoint_path, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", "--backend", "torch", "--checkpoint", str(tiny_checkpoint_path), "--lr-size", "16x16",
        "--concurrency", "1,2", "--requests", "2", "--windows", "2", "--warmup", "1", "--json", str(out),
    ])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(), parse_constant=_no_constant)  # strict: NaN would not parse in JavaScript
    assert data["command"] == (f"vggx bench --backend torch --lr-size 16x16 --concurrency 1,2 --checkpoint "
                               f"{tiny_checkpoint_path} --warmup 1 --windows 2 --requests 2 --json {out}")
    assert {"date", "cpus", "torch"} <= set(data["machine"])
    assert [p["concurrency"] for p in data["points"]] == [1, 2]
    for p in data["points"]:
        assert set(p) == POINT_FIELDS
        assert p["errors"] == 0 and p["requests"] == 4  # 2 windows × 2 requests
        assert p["frames_per_s"] > 0 and p["out_size"] == [64, 64] and p["window"] == 8
        assert p["mpix_per_s"] == pytest.approx(p["frames_per_s"] * 64 * 64 / 1e6)
        assert p["achieved_gflops"] == pytest.approx(p["frames_per_s"] * p["gflops_per_frame"])
        assert p["peak_gflops"] > 0 and p["latency"]["p50_ms"] <= p["latency"]["p99_ms"]
        assert set(p["throughput"]) == {"windows", "median", "spread", "stable"}
        assert p["ratio"] == 1.0


def test_json_is_written_where_the_table_cannot_be(tiny_checkpoint_path, tmp_path):
    """`vggx bench --json F | head -1`: the reader gone, printing the table ended the command (exit 1, nothing said)
    before the JSON was written: the whole measurement lost. It is written first now."""
    out = tmp_path / "bench.json"
    args = [sys.executable, "-c", "from vggx.cli import main; main()", "bench", "--backend", "torch", "--checkpoint",
            str(tiny_checkpoint_path), "--lr-size", "16x16", "--requests", "2", "--windows", "2", "--warmup", "1",
            "--threads", "1", "--json", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.close()  # as `| head` does once it has its lines: here, before any
    proc.wait(timeout=300)
    assert json.loads(out.read_text())["points"][0]["requests"] == 4  # 2 windows x 2 requests


@pytest.mark.parametrize("width", [80, 160])
def test_results_read_at_any_console_width(tiny_checkpoint_path, monkeypatch, width):
    """A table where it fits unwrapped, else a block a point: every number whole at 80 columns (a piped stdout)."""
    import io

    from rich.console import Console

    import vggx.cli

    out = io.StringIO()
    monkeypatch.setattr(vggx.cli, "console", Console(file=out, width=width))
    result = CliRunner().invoke(app, [
        "bench", "--backend", "torch", "--checkpoint", str(tiny_checkpoint_path), "--lr-size", "16x16",
        "--concurrency", "1,2", "--requests", "2", "--windows", "2", "--warmup", "0",
    ])
    assert result.exit_code == 0, result.output
    text = out.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    for header in ("frames/s", "p50", "p90", "p99", "GFLOP/s", "spread"):
        assert header in text
    assert text.count("torch (cpu)") == 2 and "ratio" not in text  # one backend: no ratio (it was 1.00x throughout)
    assert ("┃" in text) == (width == 160)
    # what its frames/s count, against what a video run delivers (half: the centre of each window)
    assert "frames/s counts every frame a window returns (N × T); `vggx upscale` keeps the centre half" in " ".join(
        text.split())
    # which peak the percentages are of: this CPU's matmul, measured now on the threads the backend has
    import torch

    threads = torch.get_num_threads()
    assert re.search(rf"% of peak: of \d+ GFLOP/s, \S+ FP32 matmul, measured now on {threads} threads?\n", text), text


def test_a_cpus_peak_is_measured_on_the_threads_the_backend_has(tiny_checkpoint_path, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", "--backend", "torch", "--checkpoint", str(tiny_checkpoint_path), "--lr-size", "16x16", "--threads",
        "1", "--requests", "1", "--windows", "1", "--warmup", "0", "--json", str(out)])
    assert result.exit_code == 0, result.output
    (point,) = json.loads(out.read_text())["points"]
    assert point["peak_source"].endswith("FP32 matmul, measured now on 1 thread") and point["peak_gflops"] > 0
    assert f"% of peak: of {point['peak_gflops']:.0f} GFLOP/s, {point['peak_source']}" in result.stdout


@pytest.mark.parametrize("width", [80, 160])
def test_compared_backends_show_their_ratio_per_concurrency(monkeypatch, width):
    import io

    from rich.console import Console

    import vggx.cli
    from vggx.benchmarks.bench import BenchPoint
    from vggx.benchmarks.stats import latency_stats, window_stats

    out = io.StringIO()
    monkeypatch.setattr(vggx.cli, "console", Console(file=out, width=width))
    points = [BenchPoint(backend, f"{backend} (cpu)", conc, 1, 8, (16, 16), (64, 64), 4, 0,
                         window_stats([fps / 8] * 2, 0.15), latency_stats([0.1] * 4), fps, fps * 0.004, 1.0, fps,
                         100.0, "test", None, None, ratio=ratio)
              for conc in (1, 2) for backend, fps, ratio in (("onnxruntime", 8.0, 1.0), ("torch", 4.0, 0.5))]
    vggx.cli._print_bench(points, "t")
    text = out.getvalue()
    assert "ratio" in text and text.count("1.00x") == 2 and text.count("0.50x") == 2, text


def test_compare_interleaves_and_reports_ratios(tiny_checkpoint_path):
    torch_cfg = BackendConfig(backend=Backend.TORCH, checkpoint=tiny_checkpoint_path)
    cfg = BenchConfig(backends=(torch_cfg, torch_cfg), lr_size=(16, 24), window_requests=1, windows=2, warmup=0)
    points = run_bench(cfg).points
    assert len(points) == 2 and points[0].ratio == 1.0
    assert points[1].ratio == pytest.approx(points[1].frames_per_s / points[0].frames_per_s)


def test_size_outside_the_profile_is_refused(tiny_checkpoint_path):
    cfg = BenchConfig(backends=(BackendConfig(backend=Backend.TORCH, checkpoint=tiny_checkpoint_path),),
                      lr_size=(8, 8), window_requests=1)
    with pytest.raises(ConfigError, match="outside the model's profile"):
        run_bench(cfg)


def test_bad_flags_are_one_line():
    result = CliRunner().invoke(app, ["bench", "--concurrency", "one"])
    assert result.exit_code == 1 and "comma-separated integers" in result.output
    result = CliRunner().invoke(app, ["bench", "--compare", "onnxruntime,nope"])
    assert result.exit_code == 1 and "nope" in result.output


def test_upscale_overlap_bad_input_is_one_line(capsys):
    from vggx.benchmarks.upscale_overlap import main

    assert main(["--preset", "warp9", "--frames", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --preset must be one of")


def test_upscale_overlap_times_both_output_formats_of_a_converting_runner(tmp_path, tiny_checkpoint_path):
    """A runner that converts to yuv420p on its device (as the CUDA fast path does) is timed end to end both
    ways, side by side; every stage's busy share is recorded."""
    import numpy as np
    import torch

    from vggx.benchmarks.upscale_overlap import _synthetic_clip, measure_overlap
    from vggx.client.runners import TorchRunner
    from vggx.video.color import rgb_to_yuv420p

    class Converting:
        yuv420p_output = True

        def __init__(self, inner):
            self.inner, self.info, self.description = inner, inner.info, "converting"
            self.yuv_calls = 0

        def infer(self, lr):
            return self.inner.infer(lr)

        def infer_yuv420p(self, lr, keep=slice(None)):
            self.yuv_calls += 1
            return rgb_to_yuv420p(torch.from_numpy(self.inner.infer(lr)[:, keep])).numpy()

        def close(self):
            pass

    clip = _synthetic_clip(tmp_path / "clip.mp4", 8, (16, 24))
    runner = Converting(TorchRunner(tiny_checkpoint_path, threads=1))
    result = measure_overlap(runner, clip, repeats=1, workdir=tmp_path)
    assert len(result.end_to_end_s) == len(result.end_to_end_rgb_s) == 1
    assert runner.yuv_calls >= 2 * result.windows  # warm-up, inference timing and the default end-to-end run
    assert set(result.busy) == {"decode", "infer", "encode"} and all(0 <= v <= 1.5 for v in result.busy.values())
    assert np.isfinite(result.ratio)
    stage, seconds = result.slowest_stage
    assert seconds == max(np.median(v) for v in (result.inference_s, result.encode_only_s, result.decode_only_s))
    assert result.stage_ratio == pytest.approx(np.median(result.end_to_end_s) / seconds)
    assert result.as_dict()["slowest_stage"] == stage
    assert result.warmup_s > 0


def test_untrained_checkpoint_outputs_the_bicubic_upscale(tmp_path):
    """upscale_overlap --config: full compute of the configuration, output = the bicubic upscale exactly."""
    import torch

    from vggx.benchmarks.upscale_overlap import main, untrained_checkpoint
    from vggx.checkpoint import load_checkpoint
    from vggx.generator import bicubic_upscale

    path = untrained_checkpoint("tiny", tmp_path / "tiny.safetensors")
    generator = load_checkpoint(path).generator.eval()
    assert any(p.abs().sum() > 0 for p in generator.upsampler.parameters())  # the rest keeps its weights
    lr = torch.rand(1, 8, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sr = generator(lr)
    torch.testing.assert_close(sr, bicubic_upscale(lr.flatten(0, 1), 4).view_as(sr), rtol=0, atol=1e-6)
    assert main(["--config", "huge", "--frames", "8"]) == 2  # one error line, no traceback


@pytest.mark.parametrize(("args", "message"), [
    (["--backend", "onnxruntime", "--url", "127.0.0.1:1"], "--url sends work to Triton; it cannot be combined with "
                                                           "--backend onnxruntime"),
    (["--compare", "onnxruntime,torch", "--url", "127.0.0.1:1"], "--url sends work to Triton: add triton to --compare"),
    (["--backend", "onnxruntime", "--fp16"], "--fp16 applies to the torch backend"),
    (["--url", "127.0.0.1:1", "--compile"], "--compile applies to the torch backend"),
    (["--model", "vggx-base"], "--model/--model-version name a model Triton serves; they apply with --url, not "
                               "--backend onnxruntime"),
    (["--compare", "onnxruntime,torch", "--model-version", "2"], "--model/--model-version name a model Triton "
                                                                 "serves: add triton to --compare"),
    (["--url", "127.0.0.1:1", "--threads", "2"], "--threads sets in-process backends' CPU threads"),
    (["--batch", "0"], "--batch must be >= 1, got 0"),
    (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (["--concurrency", "2,0"], "--concurrency values must be in 1..256 (a worker thread each), got 2,0"),
    (["--concurrency", "1,4000"], "--concurrency values must be in 1..256 (a worker thread each), got 1,4000"),
    (["--backend", "torch", "--compare", "onnxruntime,torch"], "--backend and --compare: name every backend in "
                                                               "--compare (the first is the baseline)"),
    (["--requests", "4", "--seconds", "30"], "--seconds and --requests: a window is measured by one of them"),
    (["--url", "127.0.0.1:1", "--device", "cuda"], "--device applies to in-process backends"),
    (["--lr-size", "5"], "--lr-size must look like HxW (e.g. 180x320), got '5'"),
    # a window of 2 requests at "concurrency 4" never had more than 2 in flight, and said 4
    (["--concurrency", "1,4", "--requests", "2"], "--requests 2 per window never has --concurrency 4 in flight"),
])
def test_options_no_backend_takes_are_refused(args, message):
    """Not ignored: a --url the run would never call, an --fp16 no backend would use."""
    result = CliRunner().invoke(app, ["bench", *args])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: {message}") and len(result.stderr.strip().splitlines()) == 1


def test_a_window_option_checks_and_says_what_would_change_it(tiny_checkpoint_path):
    """In-process backends run the checkpoint's window: `vggx export --window 16` (the remedy it gave) changes only
    what Triton would serve."""
    result = CliRunner().invoke(app, ["bench", "--backend", "torch", "--checkpoint", str(tiny_checkpoint_path),
                                      "--window", "16", "--lr-size", "16x16"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == ("error: the model's window is 8, not 16 (--window checks it); in-process "
                                     "backends run the checkpoint's own window")


def test_json_has_no_nan():
    from vggx.paths import json_text

    text = json_text({"a": float("nan"), "b": [1.5, float("inf")], "c": (2, "x")})
    assert json.loads(text, parse_constant=_no_constant) == {"a": None, "b": [1.5, None], "c": [2, "x"]}


def _measure_window(infer, concurrency: int, seconds: float | None, requests: int | None):
    """One window on workers of its own."""
    from vggx.benchmarks.bench import _Load

    load = _Load(infer, concurrency)
    try:
        return load.window(concurrency, seconds, requests)
    finally:
        load.close()


class TestMeasureWindow:
    def test_a_failed_request_is_counted_and_the_window_goes_on(self):
        import collections
        import threading
        import time

        from vggx.errors import InferenceError

        lock, done, failed = threading.Lock(), collections.Counter(), []

        def infer():
            # the first request begun once both workers have had two answers fails: inside the window, which starts
            # at the later of their first answers as the load records them (a request begun as soon as this function
            # had returned twice could end before that record and go uncounted; one counted in answers could come
            # after a window of a few answers from the other worker alone)
            with lock:
                fail = len(done) == 2 and min(done.values()) >= 2 and not failed
                failed.extend([1] * fail)
            try:
                time.sleep(0.005)
                if fail:
                    raise InferenceError("bad output")
            finally:
                with lock:
                    done[threading.get_ident()] += 1

        window = _measure_window(infer, 2, 0.5, None)
        assert window.errors == 1 and window.completed >= 10 and len(window.latencies) == window.completed

    def test_a_backend_failure_stops_every_worker_and_is_raised(self):
        """A server gone (its retries spent): raised as it is, not measured on with fewer requests in flight."""
        import threading

        from vggx.client.triton import ServerUnavailable

        lock, calls = threading.Lock(), [0]

        def infer():
            with lock:
                calls[0] += 1
                n = calls[0]
            if n == 3:
                raise ServerUnavailable("Triton at h:1 still failing after 5 attempts")

        with pytest.raises(ServerUnavailable, match="still failing"):
            _measure_window(infer, 4, 30.0, None)  # 30 s window: it must end at the failure
        assert calls[0] < 1000


def test_a_signal_mid_measurement_exits_cleanly(portable_onnx):
    """Ctrl-C or SIGTERM while the workers ran ONNX Runtime: "terminate called without an active exception" and
    exit 134 (the runs were left going inside the library as the process exited); now stopped and waited for.
    SIGTERM (raised as Terminated, a KeyboardInterrupt) takes Ctrl-C's path; it is the one that found a join
    fooled by the interruption."""
    sig, code, message = "SIGTERM", 143, "error: terminated (SIGTERM)"
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "from vggx.cli import main; main()", "bench", "--lr-size",
                             "48x48", "--concurrency", "1,2", "--seconds", "1", "--windows", "2", "--checkpoint",
                             str(portable_onnx)],  # the run's export: ONNX Runtime at once, no export of its own
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 300  # concurrency 1 measured
    while not any(line.startswith("measured onnxruntime at concurrency 1") for line in lines):
        assert proc.poll() is None and time.monotonic() < deadline, (lines, proc.communicate())
        lines.append(proc.stderr.readline())
    time.sleep(1)  # inside concurrency 2's windows: two runs in flight in ONNX Runtime
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert message in err and "terminate called" not in err


def test_flops_are_the_measured_models(tiny_checkpoint_path, portable_onnx):
    """The FLOP count came from the local shipped checkpoint whatever was measured: a served base model was counted
    as tiny (20x too few GFLOP/s), and --checkpoint model.plan / model.onnx failed as "not a vggx checkpoint"."""
    from vggx.benchmarks.bench import _gflops_per_frame
    from vggx.client.model_info import ModelInfo
    from vggx.generator import get_config
    from vggx.generator.flops import measure_cost

    def info(name: str, scale: int = 4) -> ModelInfo:
        return ModelInfo(8, scale, 8, (16, 16), (64, 64), name=name)

    size = (32, 48)
    base = measure_cost(get_config("base"), size, 8).gflops_per_frame
    tiny = measure_cost(get_config("tiny"), size, 8).gflops_per_frame
    assert _gflops_per_frame(info("vggx-base-x4"), None, size, 8) == base > 10 * tiny
    assert _gflops_per_frame(info("vggx-tiny-x4"), tiny_checkpoint_path, size, 8) == tiny
    assert _gflops_per_frame(info("mine"), tiny_checkpoint_path, size, 8) == tiny  # the checkpoint's own config
    assert _gflops_per_frame(info("mine"), portable_onnx, size, 8) == tiny  # the config the export holds
    nan = _gflops_per_frame(info("mine"), tiny_checkpoint_path.with_suffix(".plan"), size, 8)
    assert nan != nan  # an engine without a vggx name: not counted, not guessed
    assert _gflops_per_frame(info("mine", scale=2), tiny_checkpoint_path, size, 8) != tiny  # NaN: not this model


def test_checkpoint_with_a_server_alone_is_refused():
    result = CliRunner().invoke(app, ["bench", "--url", "127.0.0.1:1", "--checkpoint", "x.safetensors"])
    assert result.exit_code == 1 and "--checkpoint is run in-process" in result.output


class TestSteadyState:
    """What a window measures: concurrency N from its first counted request to its last, on the same workers."""

    def test_every_counted_request_ran_with_the_concurrency_in_flight(self):
        """On a server that does one request at a time (50 ms each), four in flight wait about 150 ms each before
        theirs runs. The windows began cold (the first request alone at the server: 50 ms) and drained at their
        end, so a quarter of "concurrency 4" latencies were 50-150 ms."""
        import queue
        import threading
        import time


        requests: queue.Queue = queue.Queue()  # first come, first served, as a server's queue

        def server():
            while (done := requests.get()) is not None:
                time.sleep(0.05)
                done.set()

        def infer():
            done = threading.Event()
            requests.put(done)
            done.wait()

        threading.Thread(target=server, daemon=True).start()
        try:
            window = _measure_window(infer, 4, None, 8)
        finally:
            requests.put(None)
        assert window.completed == 8 and len(window.latencies) == 8
        assert min(window.latencies) > 0.15  # each waited for the three ahead of it (0.2 s, less a timer's slack)

    @pytest.mark.parametrize("concurrency", [1, 2])
    def test_the_throughput_counts_the_requests_cut_at_the_ends(self, concurrency):
        """Requests of 0.4 s in windows of 1 s: whole answers counted 2 a worker, 0.8 requests' worth of a second's
        work (the default `vggx bench` on a CPU, with requests of seconds, reported 37 % too little). Throughput
        times latency is the concurrency (Little's law) when the cut requests count for their share."""
        import time

        window = _measure_window(lambda: time.sleep(0.4), concurrency, 1.0, None)
        mean_latency = sum(window.latencies) / len(window.latencies)
        assert window.work / window.elapsed * mean_latency == pytest.approx(concurrency, rel=0.05)
        assert window.completed == 2 * concurrency

    def test_a_window_shorter_than_a_request_measures_it(self):
        """No answer inside the window: the request spanning it gives the latency and its share the throughput
        (this was `ValueError: no latencies to summarise`, or 0 frames/s with exit 0)."""
        import time

        window = _measure_window(lambda: time.sleep(0.5), 1, 0.2, None)
        assert window.completed == 0 and len(window.latencies) == 1 and window.latencies[0] >= 0.5
        assert window.work / window.elapsed * window.latencies[0] == pytest.approx(1, rel=0.05)

    def test_warm_up_and_windows_run_on_the_same_workers(self, tiny_checkpoint_path, monkeypatch):
        """Each window started new threads: the warm-up warmed threads then thrown away, and a Triton runner's
        per-thread connection and shared-memory regions were made again inside every window and piled up until
        the end (2 regions × windows × concurrency)."""
        import threading

        import vggx.benchmarks.bench as bench

        threads = set()
        real_open = bench.open_runner

        def open_runner(cfg):
            runner = real_open(cfg)
            infer = runner.infer

            def counted(lr):
                threads.add(threading.current_thread())  # the object: an ident is reused once a thread ends
                return infer(lr)

            runner.infer = counted
            return runner

        monkeypatch.setattr(bench, "open_runner", open_runner)
        cfg = BenchConfig(backends=(BackendConfig(Backend.TORCH, checkpoint=tiny_checkpoint_path),),
                          lr_size=(16, 16), concurrency=(1, 2), warmup=1, windows=3, window_requests=2)
        run_bench(cfg)
        assert len(threads) == 2  # the highest concurrency's workers, for every warm-up and window

    @pytest.mark.skipif(not __import__("os").path.exists("/proc/self/clear_refs"), reason="needs Linux's clear_refs")
    def test_peak_memory_is_the_points_own(self, tiny_checkpoint_path):
        """The per-point peak was the process's lifetime maximum RSS: every later backend and concurrency carried
        the largest before it (here 600 MB held and let go before the run)."""
        import numpy as np

        def resident_mb() -> float:
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

        held = np.ones(600 * 2**20, np.uint8)  # touched: resident
        del held  # and given back: the process holds what it held before (a whole test run's worth)
        now = resident_mb()
        cfg = BenchConfig(backends=(BackendConfig(Backend.TORCH, checkpoint=tiny_checkpoint_path),),
                          lr_size=(16, 16), warmup=0, windows=1, window_requests=2)
        (point,) = run_bench(cfg).points
        assert now * 0.9 < point.peak_memory_mb < now + 300  # the tiny model at 16x16 adds far less than 600 MB


@pytest.mark.parametrize("seconds", ["nan", "inf", "0", "-1"])
def test_a_window_length_that_is_not_a_number_of_seconds_is_refused(seconds):
    """--seconds nan measured whatever was in flight; --seconds inf was a traceback (OverflowError)."""
    result = CliRunner().invoke(app, ["bench", "--url", "127.0.0.1:1", f"--seconds={seconds}"])
    assert result.exit_code == 1 and result.stderr.startswith("error: a measurement window needs --seconds"), \
        result.output
