"""What every benchmark script owes its reader: standard JSON with the command and the machine, and one line (not a
traceback) when it cannot run."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

RESULTS = Path(__file__).parents[2] / "benchmarks" / "results"


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON (JSON.parse, Go, serde and jq refuse it)")


@pytest.mark.parametrize("path", sorted(RESULTS.rglob("*.json")), ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_results_are_standard_json(path):
    """results/tiles_cpu_180x320.json held Infinity and bench_triton_vs_inprocess_90x160.json NaN."""
    json.loads(path.read_text(), parse_constant=_no_constant)


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def _one_error_line(proc: subprocess.CompletedProcess, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


class TestPerfAnalyzerCheck:
    def test_no_perf_analyzer_is_one_line(self, tmp_path):
        proc = _run("vggx.benchmarks.perf_analyzer_check", "--lr-size", "32x48", "--concurrency", "1",
                    env={"PATH": "/usr/bin:/bin", "VGGX_CACHE_DIR": str(tmp_path)})
        assert "perf_analyzer not found: pass --perf-analyzer PATH or --fetch" in _one_error_line(proc, 1)

    @pytest.mark.parametrize(("args", "message"), [
        (["--concurrency", "1,0"], "--concurrency values must be >= 1"),
        (["--seconds", "nan"], "--seconds must be a number of seconds above 0"),
    ])
    def test_bad_arguments_are_refused_before_any_work(self, tmp_path, args, message):
        proc = _run("vggx.benchmarks.perf_analyzer_check", *args, env={"VGGX_CACHE_DIR": str(tmp_path)})
        assert message in _one_error_line(proc, 1)

    def test_perf_analyzer_uses_shared_memory_as_vggx_bench_does(self, tmp_path):
        """vggx bench sends a local server's tensors through system shared memory; perf_analyzer was run without
        it, so the cross-check compared shared memory with tensors in the gRPC messages."""
        from vggx.benchmarks.perf_analyzer_check import run_perf_analyzer

        fake = tmp_path / "perf_analyzer"  # records its arguments and writes the CSV report perf_analyzer would
        fake.write_text("#!/bin/sh\n"
                        f'echo "$@" > {tmp_path}/args\n'
                        'while [ "$1" != "-f" ]; do shift; done\n'
                        'printf "Inferences/Second,p50 latency,p90 latency,p99 latency\\n2.5,400000,500000,600000\\n"'
                        ' > "$2"\n')
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
        result = run_perf_analyzer(fake, "127.0.0.1:1", "8,32,48,3", 2, 4000, output_bytes=8 * 128 * 192 * 3)
        args = (tmp_path / "args").read_text().split()
        assert args[args.index("--shared-memory") + 1] == "system"
        assert args[args.index("--output-shared-memory-size") + 1] == str(8 * 128 * 192 * 3)
        assert (result["throughput"], result["p50_ms"], result["p99_ms"]) == (2.5, 400.0, 600.0)


class TestServeLoad:
    def test_a_server_that_is_not_there_is_one_line_and_temporary(self):
        proc = _run("vggx.benchmarks.serve_load", "--url", "127.0.0.1:1", "--requests", "2", "--concurrency", "1")
        assert "error: Triton: " in _one_error_line(proc, 75)

    def test_a_bad_level_is_refused_before_any_work(self):
        """--concurrency 1,0 was a ValueError traceback, raised after level 1 had been measured."""
        proc = _run("vggx.benchmarks.serve_load", "--url", "127.0.0.1:1", "--concurrency", "1,0")
        assert _one_error_line(proc, 1) == "error: --concurrency must be >= 1, got 0"


def test_ort_vs_torch_records_the_arguments_it_was_given(tiny_checkpoint_path, portable_onnx, tmp_path):
    """It recorded sys.argv, i.e. its caller's command line (here pytest's), not the arguments of main(argv)."""
    from vggx.benchmarks.ort_vs_torch import main

    out = tmp_path / "ovt.json"
    args = ["--checkpoint", str(tiny_checkpoint_path), "--onnx", str(portable_onnx), "--lr-size", "16x16",
            "--threads", "1", "--iters", "1", "--json", str(out)]
    assert main(args) == 0
    data = json.loads(out.read_text(), parse_constant=_no_constant)
    assert data["command"] == "python -m vggx.benchmarks.ort_vs_torch " + " ".join(args)


# ------------------------------------------------------------------------------------------ arguments, before any work


def _error(capsys, code: int, returned: int) -> str:
    """The one ``error: ...`` line a main() printed, after checking its exit code."""
    err = capsys.readouterr().err.strip().splitlines()
    assert returned == code and len(err) == 1 and err[0].startswith("error: "), (returned, err)
    return err[0]


@pytest.mark.parametrize(("args", "message"), [
    (["--frames", "0"], "--frames must be >= 1, got 0"),  # was an IndexError traceback
    (["--repeats", "0"], "--repeats must be >= 1, got 0"),  # was a KeyError traceback after the decoding
    (["--input", "/nonexistent/clip.mp4"], "--input /nonexistent/clip.mp4: no such file"),  # was av's traceback
    (["--input", "TEXT"], "cannot decode --input"),  # a file that is no video: av's traceback
    (["--json", "/nonexistent/dir/e.json"], "directory /nonexistent/dir does not exist"),  # was one after the run
    (["--codec", "libx265", "--size", "16x16"], "libx265 crashes on 8-bit frames as small as 16x16"),
])
def test_encoders_arguments_are_one_line(tmp_path, capsys, args, message):
    from vggx.benchmarks.encoders import main

    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    args = [str(text) if a == "TEXT" else a for a in args]
    base = ["--size", "32x32", "--frames", "8", "--encoders", "1", "--repeats", "1"]
    assert message in _error(capsys, 2, main(base + args))


def test_encoders_json_says_what_its_nulls_mean_and_which_ffmpeg(tmp_path):
    """FFV1 takes no CRF (18 was written for it, as "medium" was for encoders without presets); the FFmpeg release
    and every FFmpeg library's version are recorded beside PyAV's."""
    from vggx.benchmarks.encoders import main

    out = tmp_path / "enc.json"
    assert main(["--codec", "ffv1", "--size", "32x32", "--frames", "8", "--encoders", "1", "--repeats", "1",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text(), parse_constant=_no_constant)
    assert data["crf"] is None and data["preset"] is None and {"preset", "crf", "psnr_y"} <= set(data["notes"])
    assert {"date", "host_cpu", "pyav", "ffmpeg", "libavcodec", "libavformat", "libswscale"} <= set(data["machine"])


def test_tiles_arguments_are_refused_before_the_model_runs(tiny_checkpoint_path, tmp_path, capsys):
    from vggx.benchmarks.tiles import main

    base = ["--lr-size", "16x16", "--tiles", "none", "--backend", "torch", "--checkpoint", str(tiny_checkpoint_path),
            "--threads", "1"]
    assert _error(capsys, 1, main([*base, "--repeats", "0"])) == "error: --repeats must be >= 1, got 0"
    out = tmp_path / "missing" / "t.json"  # was a FileNotFoundError traceback once every row had run
    assert "does not exist" in _error(capsys, 1, main([*base, "--repeats", "1", "--json", str(out)]))


@pytest.mark.parametrize(("args", "message"), [
    (["--iters", "0"], "--iters must be >= 1, got 0"),  # an IndexError traceback after both backends ran
    (["--threads", "0"], "--threads must be >= 1, got 0"),  # torch's RuntimeError traceback
    (["--batch", "0"], "--batch must be >= 1, got 0"),  # numpy's ValueError traceback
    (["--onnx", "/nonexistent/m.onnx"], "--onnx /nonexistent/m.onnx: no such file"),  # ONNX Runtime's traceback
    (["--onnx", "TEXT"], "ONNX Runtime cannot load"),  # not an ONNX file: ONNX Runtime's traceback
    (["--json", "/nonexistent/dir/o.json"], "directory /nonexistent/dir does not exist"),
])
def test_ort_vs_torch_arguments_are_one_line(tiny_checkpoint_path, portable_onnx, tmp_path, capsys, args, message):
    from vggx.benchmarks.ort_vs_torch import main

    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    args = [str(text) if a == "TEXT" else a for a in args]
    base = ["--checkpoint", str(tiny_checkpoint_path), "--onnx", str(portable_onnx), "--lr-size", "16x16",
            "--threads", "1", "--iters", "1"]
    assert message in _error(capsys, 1, main(base + args))


@pytest.mark.parametrize(("args", "message"), [
    (["--repeats", "0"], "--repeats must be >= 1, got 0"),  # an UnboundLocalError traceback after the model ran
    (["--concurrency", "0"], "--concurrency must be >= 1, got 0"),  # ThreadPoolExecutor's ValueError traceback
    (["--threads", "0"], "--threads must be >= 1, got 0"),  # torch's RuntimeError traceback
    (["--frames", "0"], "--frames must be >= 1, got 0"),  # was "input not found" for the clip it did not write
    (["--json", "/nonexistent/dir/u.json"], "directory /nonexistent/dir does not exist"),
])
def test_upscale_overlap_arguments_are_one_line(tiny_checkpoint_path, capsys, args, message):
    from vggx.benchmarks.upscale_overlap import main

    base = ["--checkpoint", str(tiny_checkpoint_path), "--frames", "8", "--size", "16x16", "--repeats", "1"]
    assert message in _error(capsys, 2, main(base + args))


class TestServeLoadArguments:
    def test_http_to_a_server_that_is_not_there_is_one_line_and_temporary(self, capsys):
        """Over HTTP the client's ConnectionRefusedError was a traceback (gRPC's failure was already one line)."""
        from vggx.benchmarks.serve_load import main

        line = _error(capsys, 75, main(["--url", "127.0.0.1:1", "--protocol", "http", "--requests", "2",
                                        "--concurrency", "1"]))
        assert line.startswith("error: cannot reach Triton at 127.0.0.1:1 over http: ")

    @pytest.mark.parametrize(("args", "message"), [
        (["--url", "bad:url:x", "--protocol", "http"], "--url must look like HOST:PORT"),  # the HTTP client's traceback
        (["--url", "127.0.0.1:1", "--onnx", "/nonexistent/m.onnx"], "--onnx /nonexistent/m.onnx: no such file"),
        (["--url", "127.0.0.1:1", "--json", "/nonexistent/dir/s.json"], "directory /nonexistent/dir does not exist"),
    ])
    def test_arguments_are_checked_before_the_server_is_asked(self, capsys, args, message):
        from vggx.benchmarks.serve_load import main

        assert message in _error(capsys, 1, main(args))

    def test_http_socket_errors_mid_run_are_counted_as_errors(self, monkeypatch):
        """run_load counts failed requests; over HTTP a refused connection is the client's OSError, which was raised
        out of the worker pool as a traceback."""
        from vggx.benchmarks import serve_load

        monkeypatch.setattr(serve_load, "served_model_info", lambda url, protocol, model="vggx": {"window": "2"})
        result = serve_load.run_load(serve_load.LoadConfig(url="127.0.0.1:1", protocol="http", lr_size=(4, 4),
                                                           requests=2, concurrency=1, warmup=0))
        assert result.errors == 2 and "ConnectionRefusedError" in result.first_error

    def test_json_has_the_command_machine_and_versions(self, tmp_path, monkeypatch):
        """serve_load's JSON had versions but neither the command line nor the date."""
        from vggx.benchmarks import serve_load

        monkeypatch.setattr(serve_load, "served_model_info", lambda url, protocol, model="vggx": {"window": "8"})
        monkeypatch.setattr(serve_load, "_versions", lambda url, protocol: {"tritonserver": "2.51.0"})
        result = serve_load.LoadResult(requests=2, errors=0, concurrency=1, batch=1, lr_size=(16, 16), window=8,
                                       wall_s=1.0, p50_ms=1.0, p90_ms=1.0, p99_ms=1.0, windows_per_s=2.0,
                                       frames_per_s=16.0)
        monkeypatch.setattr(serve_load, "run_load", lambda config, server_pid=None: result)
        out = tmp_path / "load.json"
        args = ["--url", "127.0.0.1:1", "--lr-size", "16x16", "--requests", "2", "--concurrency", "1",
                "--json", str(out)]
        assert serve_load.main(args) == 0
        data = json.loads(out.read_text(), parse_constant=_no_constant)
        assert data["command"] == "python -m vggx.benchmarks.serve_load " + " ".join(args)
        assert {"date", "host_cpu", "python", "onnxruntime"} <= set(data["machine"])
        assert data["versions"]["tritonserver"] == "2.51.0"


# ------------------------------------------------------------------------------------------ perf_analyzer_check


def _fake_perf_analyzer(folder: Path, version: str = "2.51.0", csv: str | None = None, code: int = 0,
                        stderr: str = "") -> Path:
    """A script standing in for perf_analyzer: ``--version`` answers on stderr as the real one does; a measurement
    records its arguments in ``folder/args``, writes ``csv`` as its report (none if None) and exits ``code``."""
    fake = folder / "perf_analyzer"
    report = "" if csv is None else f'while [ "$1" != "-f" ]; do shift; done\nprintf "{csv}" > "$2"\n'
    fake.write_text("#!/bin/sh\n"
                    f'if [ "$1" = "--version" ]; then echo "Perf Analyzer Version {version} (commit unknown)" >&2; '
                    "exit 0; fi\n"
                    f'echo "$@" > {folder}/args\n'
                    + (f"printf '{stderr}' >&2\n" if stderr else "")
                    + report + f"exit {code}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


_CSV = "Inferences/Second,p50 latency,p90 latency,p99 latency\\n2.5,400000,500000,600000\\n"


class TestPerfAnalyzerRuns:
    def test_a_path_that_is_not_perf_analyzer_is_one_line_before_any_work(self, tiny_checkpoint_path, tmp_path,
                                                                           capsys):
        """--perf-analyzer /nonexistent was a FileNotFoundError traceback after the export and the server's start."""
        from vggx.benchmarks.perf_analyzer_check import main

        base = ["--checkpoint", str(tiny_checkpoint_path), "--lr-size", "16x16", "--concurrency", "1"]
        line = _error(capsys, 1, main([*base, "--perf-analyzer", str(tmp_path / "none")]))
        assert line == f"error: --perf-analyzer {tmp_path / 'none'}: not an executable file"
        broken = tmp_path / "broken"  # as the real one without libcudart: exit 127 and the loader's message
        broken.write_text("#!/bin/sh\necho 'error while loading shared libraries: libcudart.so.12' >&2\nexit 127\n")
        broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
        line = _error(capsys, 1, main([*base, "--perf-analyzer", str(broken)]))
        assert "--version failed (127)" in line and "libcudart.so.12" in line and "libb64" in line

    def test_a_failed_fetch_is_one_error(self, tmp_path, monkeypatch):
        """--fetch where pip cannot download (no network) was a CalledProcessError traceback."""
        from vggx.benchmarks.perf_analyzer_check import fetch_perf_analyzer
        from vggx.errors import VggxError

        monkeypatch.setenv("VGGX_CACHE_DIR", str(tmp_path))
        monkeypatch.setattr(sys, "executable", "/bin/false")  # the pip run fails at once
        with pytest.raises(VggxError, match=r"--fetch: pip could not download tritonclient==2\.51\.0"):
            fetch_perf_analyzer()

    def test_a_run_without_a_report_is_an_error_not_a_traceback(self, tmp_path):
        from vggx.benchmarks.perf_analyzer_check import run_perf_analyzer
        from vggx.errors import VggxError

        fake = _fake_perf_analyzer(tmp_path, csv=None)
        with pytest.raises(VggxError, match="wrote no usable report"):  # was FileNotFoundError on its pa.csv
            run_perf_analyzer(fake, "127.0.0.1:1", "8,16,16,3", 1, 1000)

    def test_its_failure_is_one_line(self, tmp_path):
        from vggx.benchmarks.perf_analyzer_check import run_perf_analyzer
        from vggx.errors import VggxError

        fake = _fake_perf_analyzer(tmp_path, code=2, stderr="Failed to obtain stable measurement within 20 windows."
                                   "\\nFailed to obtain stable measurement.\\n")
        with pytest.raises(VggxError) as caught:
            run_perf_analyzer(fake, "127.0.0.1:1", "8,16,16,3", 1, 1000)
        assert "\n" not in str(caught.value) and str(caught.value).startswith("perf_analyzer failed (2): Failed")

    def test_both_sides_use_shared_memory_and_the_json_says_so(self, tiny_checkpoint_path, portable_onnx, tmp_path,
                                                               monkeypatch):
        """Like for like: vggx bench is made to use system shared memory (it would fall back to the gRPC messages
        silently), perf_analyzer is given it; each row records both transports, the machine the versions of
        perf_analyzer (the one run, not the release --fetch takes) and of the server. No server is started: its
        place, vggx bench's and the export's are taken by stand-ins."""
        import types

        import vggx.benchmarks.bench as bench
        import vggx.export
        import vggx.server
        from vggx.benchmarks import perf_analyzer_check as pac

        class Server:
            def __init__(self, cfg):
                self.endpoints = types.SimpleNamespace(grpc="127.0.0.1:1")

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return None

        configs = []

        def run_bench(config):
            configs.append(config)
            point = types.SimpleNamespace(
                description="triton grpc://127.0.0.1:1 model 'vggx' (shared memory)", errors=0,
                throughput=types.SimpleNamespace(median=2.5, spread=0.01),
                latency=types.SimpleNamespace(p50_ms=400.0, p90_ms=500.0, p99_ms=600.0))
            return types.SimpleNamespace(points=[point])

        monkeypatch.setattr(vggx.server, "TritonServer", Server)
        monkeypatch.setattr(vggx.export, "export_onnx", lambda ckpt, path, cfg: portable_onnx)
        monkeypatch.setattr(bench, "run_bench", run_bench)
        monkeypatch.setattr(pac, "_server_version", lambda url: "2.51.0")
        fake = _fake_perf_analyzer(tmp_path, version="2.99.0", csv=_CSV)
        out = tmp_path / "pa.json"
        args = ["--checkpoint", str(tiny_checkpoint_path), "--lr-size", "16x16", "--concurrency", "1", "--seconds",
                "1", "--perf-analyzer", str(fake), "--json", str(out)]
        assert pac.main(args) == 0
        assert [c.backends[0].shared_memory for c in configs] == [True]
        pa_args = (tmp_path / "args").read_text().split()
        assert pa_args[pa_args.index("--shared-memory") + 1] == "system"
        data = json.loads(out.read_text(), parse_constant=_no_constant)
        (row,) = data["rows"]
        assert row["transport"]["perf_analyzer"] == row["transport"]["vggx_bench"] == "system shared memory"
        assert data["command"] == "python -m vggx.benchmarks.perf_analyzer_check " + " ".join(args)
        assert data["machine"]["perf_analyzer"] == "2.99.0" and data["machine"]["tritonserver"] == "2.51.0"
        assert {"date", "host_cpu", "tritonclient"} <= set(data["machine"])


def test_gif_palette_measures_both_palettes_on_a_photo(tmp_path, capsys):
    """The figure the README quotes for GIFs (a palette a frame against the fixed rgb8 one) comes from this script."""
    from vggx.benchmarks.gif_palette import main

    out = tmp_path / "gif.json"
    assert main(["--images", "astronaut", "--json", str(out)]) == 0
    data = json.loads(out.read_text(), parse_constant=_no_constant)
    (row,) = data["rows"]
    assert row["image"] == "astronaut" and row["size"] == [512, 512]
    assert row["own_palette_db"] > row["rgb8_db"] + 5 and row["gain_db"] == pytest.approx(
        row["own_palette_db"] - row["rgb8_db"], abs=0.02)
    assert data["command"] == f"python -m vggx.benchmarks.gif_palette --images astronaut --json {out}"
    capsys.readouterr()
    assert main(["--images", "nosuch"]) == 1
    assert capsys.readouterr().err.strip() == "error: --images: scikit-image has no picture 'nosuch'"


def test_video_costs_measures_what_the_readme_quotes(tmp_path, capsys):
    """The README's figures for the --vf probe, PNG's compression_level=1, idet, the scene detector and the encoders'
    banners come from this script; a small size keeps it quick."""
    from vggx.benchmarks.video_costs import main

    out = tmp_path / "costs.json"
    assert main(["--size", "192x320", "--repeats", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text(), parse_constant=_no_constant)
    assert data["size"] == [192, 320]
    assert [r["chain"] for r in data["vf_probe"]] == ["scale=960:-2", "nlmeans=s=3"]
    assert all(r["seconds"] > 0 for r in data["vf_probe"])
    assert [r["bits"] for r in data["png"]] == [8, 16]
    for row in data["png"]:
        assert row["default"]["bytes"] > 320 * 192  # a photo: more than a byte a pixel
        assert row["more_bytes_percent"] == pytest.approx(
            (row["compression_level_1"]["bytes"] / row["default"]["bytes"] - 1) * 100, abs=0.06)
    assert data["png"][1]["default"]["bytes"] > data["png"][0]["default"]["bytes"]
    assert data["idet_ms_per_frame"] > 0
    assert data["scene_detector"]["size"] == [96, 160] and data["scene_detector"]["repeat_ms"] > 0
    assert data["banner_lines"]["libx265"] >= 10 and data["banner_lines"]["libsvtav1"] >= 10
    assert data["command"] == f"python -m vggx.benchmarks.video_costs --size 192x320 --repeats 1 --json {out}"
    printed = capsys.readouterr().out
    assert "PNG 8-bit" in printed and "banners: libx265" in printed
    assert main(["--size", "320"]) == 1
    assert capsys.readouterr().err.strip() == "error: size must look like HxW (e.g. 180x320), got '320'"
    assert main(["--size", "30x320"]) == 1
    assert capsys.readouterr().err.strip() == "error: --size: at least 64x64 and a multiple of 4 each way, got '30x320'"
    assert main(["--repeats", "0"]) == 1
    assert capsys.readouterr().err.strip() == "error: --repeats: at least 1, got 0"
