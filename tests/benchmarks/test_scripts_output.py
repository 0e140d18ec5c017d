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
