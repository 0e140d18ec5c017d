"""Cross-check ``vggx bench --backend triton`` against NVIDIA's ``perf_analyzer`` on the same served model.

Both tools measure the same model, input shape and concurrency against one real ``tritonserver``,
alternating per concurrency level. The claim checked: throughput within 10 % and p50 latency within
15 % of each other.

    python -m vggx.benchmarks.perf_analyzer_check --lr-size 48x64 --concurrency 1,2,4 --json out.json

perf_analyzer: the one on PATH, else ``--perf-analyzer PATH``, else ``--fetch`` takes it from the
manylinux wheel of ``tritonclient==2.51.0`` (the release of the bundled ``tritonserver`` 2.51) into
vggx's cache. It needs ``libb64`` (Debian: ``apt-get install libb64-0d``) and ``libcudart.so.12``
(``pip install nvidia-cuda-runtime-cu12``), even on a CPU host.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from vggx.errors import VggxError

PA_RELEASE = "2.51.0"


def _cache() -> Path:
    from vggx.paths import cache_dir

    return cache_dir() / f"perf_analyzer-{PA_RELEASE}"


def fetch_perf_analyzer() -> Path:
    """Extract ``perf_analyzer`` from the tritonclient wheel (downloaded with pip) into the cache."""
    target = _cache() / "perf_analyzer"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "--platform", "manylinux1_x86_64", f"tritonclient=={PA_RELEASE}", "-d", tmp], check=True)
        (wheel,) = Path(tmp).glob("tritonclient-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith("/bin/perf_analyzer"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(member))
    target.chmod(0o755)
    return target


def find_perf_analyzer(explicit: str | None, fetch: bool) -> Path:
    if explicit:
        return Path(explicit)
    found = shutil.which("perf_analyzer")
    if found:
        return Path(found)
    if (_cache() / "perf_analyzer").is_file() or fetch:
        return fetch_perf_analyzer()
    raise VggxError("perf_analyzer not found: pass --perf-analyzer PATH or --fetch")


def _pa_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = []
    try:
        import nvidia.cuda_runtime as cr

        paths.append(str(Path(next(iter(cr.__path__))) / "lib"))
    except ImportError:
        pass
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*paths, env.get("LD_LIBRARY_PATH", "")])
    return env


def run_perf_analyzer(pa: Path, url: str, shape: str, concurrency: int, interval_ms: int,
                      output_bytes: int | None = None) -> dict[str, float]:
    """One perf_analyzer measurement at ``concurrency``; returns throughput and latencies (ms).

    ``output_bytes``: the tensors go through system shared memory (an output region of that size), as `vggx
    bench`'s do with a server on this machine; None: in the gRPC messages."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "pa.csv"
        cmd = [str(pa), "-m", "vggx", "-u", url, "-i", "grpc", "--shape", f"lr:{shape}", "-b", "1",
               "--input-data", "random", "--concurrency-range", f"{concurrency}:{concurrency}",
               "-p", str(interval_ms), "-s", "10", "-r", "20", "-f", str(report)]
        if output_bytes is not None:
            cmd[-2:-2] = ["--shared-memory", "system", "--output-shared-memory-size", str(output_bytes)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_pa_env(), timeout=900)
        if proc.returncode != 0:
            raise VggxError(f"perf_analyzer failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout[-500:]}")
        with open(report) as f:
            row = next(csv.DictReader(f))
    return {
        "throughput": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1e3,
        "p90_ms": float(row["p90 latency"]) / 1e3,
        "p99_ms": float(row["p99 latency"]) / 1e3,
        "command": " ".join(cmd[:-2]),
    }


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except VggxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _main(argv: list[str] | None) -> int:
    from vggx.benchmarks.bench import BenchConfig, run_bench, stamp
    from vggx.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from vggx.cli import _int_list
    from vggx.client import Backend, BackendConfig
    from vggx.errors import ConfigError
    from vggx.export import ExportConfig, export_onnx
    from vggx.export.repository import ServingConfig, write_model_repository
    from vggx.paths import json_text
    from vggx.server import ServerConfig, TritonServer
    from vggx.shapes import parse_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--lr-size", default="48x64")
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=6.0, help="measurement window of both tools")
    parser.add_argument("--perf-analyzer")
    parser.add_argument("--fetch", action="store_true", help="download perf_analyzer if it is not found")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    h, w = parse_size(args.lr_size)
    levels = _int_list(args.concurrency, "--concurrency")
    if min(levels) < 1:
        raise ConfigError(f"--concurrency values must be >= 1, got {args.concurrency}")
    if not 0 < args.seconds < 1e6:
        raise ConfigError(f"--seconds must be a number of seconds above 0, got {args.seconds}")
    pa = find_perf_analyzer(args.perf_analyzer, args.fetch)
    ckpt = load_checkpoint(args.checkpoint)
    window = ckpt.config.window
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(ckpt, Path(tmp) / "model.onnx", ExportConfig())
        repo = Path(tmp) / "repo"
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        write_model_repository(repo, backend="python", artefact=onnx_path, metadata=meta, window=window,
                               serving=ServingConfig(warmup_size=(h, w)))
        cfg = ServerConfig(model_repository=repo, http_port=0, grpc_port=0, metrics_port=0,
                           log_file=Path(tmp) / "server.log", startup_timeout_s=300)
        with TritonServer(cfg) as server:
            url = server.endpoints.grpc
            scale = ckpt.config.scale
            output_bytes = window * h * scale * w * scale * 3  # uint8 [1, T, sH, sW, 3]
            for conc in levels:
                # a server on this machine: vggx bench sends the tensors through system shared memory, and so
                # perf_analyzer must, or the two would time different transports
                pa_res = run_perf_analyzer(pa, url, f"{window},{h},{w},3", conc, int(args.seconds * 1000),
                                           output_bytes=output_bytes)
                bench = run_bench(BenchConfig(
                    backends=(BackendConfig(backend=Backend.TRITON, url=url),), lr_size=(h, w),
                    concurrency=(conc,), warmup=2, windows=3, window_seconds=args.seconds)).points[0]
                row = {
                    "concurrency": conc,
                    "transport": {"perf_analyzer": "system shared memory", "vggx_bench": bench.description},
                    "perf_analyzer": pa_res,
                    "vggx_bench": {"throughput": bench.throughput.median, "p50_ms": bench.latency.p50_ms,
                                   "p90_ms": bench.latency.p90_ms, "p99_ms": bench.latency.p99_ms,
                                   "spread": bench.throughput.spread, "errors": bench.errors},
                }
                row["throughput_ratio"] = bench.throughput.median / pa_res["throughput"]
                row["p50_ratio"] = bench.latency.p50_ms / pa_res["p50_ms"]
                row["agree"] = abs(row["throughput_ratio"] - 1) <= 0.10 and abs(row["p50_ratio"] - 1) <= 0.15
                rows.append(row)
                print(f"concurrency {conc}: perf_analyzer {pa_res['throughput']:.3f} req/s p50 "
                      f"{pa_res['p50_ms']:.1f} ms | vggx bench {bench.throughput.median:.3f} req/s p50 "
                      f"{bench.latency.p50_ms:.1f} ms | ratios {row['throughput_ratio']:.3f} / "
                      f"{row['p50_ratio']:.3f} {'OK' if row['agree'] else 'DISAGREE'}", flush=True)
    if args.json:
        from importlib.metadata import version

        result = stamp({"lr_size": [h, w], "window": window, "rows": rows}, "perf_analyzer_check", argv)
        result["machine"].update(perf_analyzer=PA_RELEASE, nvidia_pytriton=version("nvidia-pytriton"),
                                 tritonclient=version("tritonclient"))
        args.json.write_text(json_text(result))
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
