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
import re
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
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                               "--platform", "manylinux1_x86_64", f"tritonclient=={PA_RELEASE}", "-d", tmp],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise VggxError(f"--fetch: pip could not download tritonclient=={PA_RELEASE} ({_one_line(proc.stderr)}); "
                            f"pass --perf-analyzer PATH")
        (wheel,) = Path(tmp).glob("tritonclient-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith("/bin/perf_analyzer"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(member))
    target.chmod(0o755)
    return target


def _one_line(text: str, limit: int = 500) -> str:
    """A tool's output as one line (the error line is one line), its end kept where it is long."""
    line = " ".join(text.split())
    return line if len(line) <= limit else "..." + line[-limit:]


def find_perf_analyzer(explicit: str | None, fetch: bool) -> Path:
    if explicit:
        return Path(explicit)
    found = shutil.which("perf_analyzer")
    if found:
        return Path(found)
    if (_cache() / "perf_analyzer").is_file() or fetch:
        return fetch_perf_analyzer()
    raise VggxError("perf_analyzer not found: pass --perf-analyzer PATH or --fetch")


def perf_analyzer_version(pa: Path) -> str:
    """The version ``pa --version`` reports (it prints it on stderr), run before any work: a path that is not
    perf_analyzer, or one that cannot start (libb64, libcudart missing), is one clear error, not a traceback or a
    failure after the model was exported and the server started."""
    if not pa.is_file() or not os.access(pa, os.X_OK):
        raise VggxError(f"--perf-analyzer {pa}: not an executable file")
    try:
        proc = subprocess.run([str(pa), "--version"], capture_output=True, text=True, env=_pa_env(), timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VggxError(f"cannot run {pa}: {exc}") from None
    out = f"{proc.stdout}\n{proc.stderr}"
    found = re.search(r"Perf Analyzer Version (\S+)", out)
    if proc.returncode != 0:
        raise VggxError(f"{pa} --version failed ({proc.returncode}): {_one_line(out) or 'no output'}; perf_analyzer "
                        f"needs libb64 (Debian: apt-get install libb64-0d) and libcudart.so.12 (pip install "
                        f"nvidia-cuda-runtime-cu12, or on LD_LIBRARY_PATH)")
    if found is None:
        raise VggxError(f"{pa} does not say it is perf_analyzer (its --version: {_one_line(out, 200) or 'nothing'})")
    return found[1]


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
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=_pa_env(), timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VggxError(f"cannot run perf_analyzer: {exc}") from None
        if proc.returncode != 0:
            raise VggxError(f"perf_analyzer failed ({proc.returncode}): "
                            f"{_one_line(proc.stderr) or _one_line(proc.stdout)}")
        try:
            with open(report) as f:
                row = next(csv.DictReader(f))
            measured = {"throughput": float(row["Inferences/Second"]), "p50_ms": float(row["p50 latency"]) / 1e3,
                        "p90_ms": float(row["p90 latency"]) / 1e3, "p99_ms": float(row["p99 latency"]) / 1e3}
        except (OSError, StopIteration, KeyError, ValueError, TypeError) as exc:
            raise VggxError(f"{pa} wrote no usable report ({type(exc).__name__}: {exc}); its output: "
                            f"{_one_line(proc.stdout + proc.stderr) or 'none'}") from None
    return measured | {"command": " ".join(cmd[:-2])}


TRANSPORT_SHM = "system shared memory"
TRANSPORT_GRPC = "gRPC messages"


def bench_transport(description: str) -> str:
    """How a ``vggx bench`` Triton runner sent its tensors, from its description (``... (shared memory)``)."""
    return TRANSPORT_SHM if "(shared memory)" in description else TRANSPORT_GRPC


def _server_version(url: str) -> str:
    """The version the server at ``url`` (gRPC) reports ("unknown" where it would not say)."""
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    try:
        with grpc.InferenceServerClient(url) as client:
            return client.get_server_metadata().version
    except InferenceServerException:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except VggxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _main(argv: list[str] | None) -> int:
    from vggx.benchmarks.bench import BenchConfig, run_bench, stamp
    from vggx.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from vggx.cli import check_json_path, int_list
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
    levels = int_list(args.concurrency, "--concurrency")
    if min(levels) < 1:
        raise ConfigError(f"--concurrency values must be >= 1, got {args.concurrency}")
    if not 0 < args.seconds < 1e6:
        raise ConfigError(f"--seconds must be a number of seconds above 0, got {args.seconds}")
    check_json_path(args.json)  # before any work, not after the whole run
    pa = find_perf_analyzer(args.perf_analyzer, args.fetch)
    pa_version = perf_analyzer_version(pa)
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
            server_version = _server_version(url)
            scale = ckpt.config.scale
            output_bytes = window * h * scale * w * scale * 3  # uint8 [1, T, sH, sW, 3]
            for conc in levels:
                # a server on this machine: vggx bench sends the tensors through system shared memory, and so
                # perf_analyzer must, or the two would time different transports; vggx bench is made to (not left
                # to fall back to the gRPC messages where the server cannot map its regions, which would compare
                # unlike transports again)
                pa_res = run_perf_analyzer(pa, url, f"{window},{h},{w},3", conc, int(args.seconds * 1000),
                                           output_bytes=output_bytes)
                bench = run_bench(BenchConfig(
                    backends=(BackendConfig(backend=Backend.TRITON, url=url, shared_memory=True),), lr_size=(h, w),
                    concurrency=(conc,), warmup=2, windows=3, window_seconds=args.seconds)).points[0]
                row = {
                    "concurrency": conc,
                    "transport": {"perf_analyzer": TRANSPORT_SHM, "vggx_bench": bench_transport(bench.description),
                                  "vggx_bench_description": bench.description},
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
        result["machine"].update(perf_analyzer=pa_version, perf_analyzer_path=str(pa), tritonserver=server_version,
                                 nvidia_pytriton=version("nvidia-pytriton"), tritonclient=version("tritonclient"))
        args.json.write_text(json_text(result))
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
