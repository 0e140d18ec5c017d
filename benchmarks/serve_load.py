"""Load test of a served vggx model, and served vs in-process ONNX Runtime throughput on the same input.

    python -m vggx.benchmarks.serve_load --url 127.0.0.1:8001 --lr-size 64x64 --requests 200 --concurrency 8
    python -m vggx.benchmarks.serve_load --model-repository model_repository \
        --onnx model_repository/vggx/1/model.onnx --concurrency 1,2,8

With ``--model-repository`` it starts its own ``tritonserver`` (free loopback ports) for the run. With
``--onnx`` it also runs the same input through an in-process ONNX Runtime session (threads as the served
model's ``cpu_threads`` parameter) right before each served run and reports the serving overhead:
1 - served / in-process throughput. When it started the server it also reports CPU seconds per window
(server process tree + client vs the in-process session), which a busy shared machine disturbs far less
than wall time. Every request sends the same seeded random window; latencies are per request, measured
by the client.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vggx.errors import EXIT_TEMPORARY, ConfigError, ServerUnavailable, VggxError
from vggx.paths import json_text

from .bench import stamp

__all__ = ["InProcessResult", "LoadConfig", "LoadResult", "run_inprocess", "run_load", "served_model_info"]


@dataclass(frozen=True)
class LoadConfig:
    url: str  # host:port of Triton's gRPC (or HTTP) endpoint
    protocol: str = "grpc"  # grpc | http
    model: str = "vggx"
    lr_size: tuple[int, int] = (64, 64)  # LR H, W of every window
    batch: int = 1  # windows per request
    requests: int = 200  # measured requests (after ``warmup``)
    concurrency: int = 8  # requests in flight (one client per worker thread)
    warmup: int = 4  # unmeasured requests first
    seed: int = 0

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be grpc or http, got {self.protocol!r}")
        if min(self.batch, self.requests, self.concurrency) < 1 or self.warmup < 0:
            raise ValueError("batch, requests and concurrency must be >= 1, warmup >= 0")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    concurrency: int
    batch: int
    lr_size: tuple[int, int]
    window: int
    wall_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    windows_per_s: float
    frames_per_s: float  # output frames: windows × T
    first_error: str | None = None
    client_cpu_s: float = 0.0  # CPU time of this process (all its threads) during the measured requests
    server_cpu_s: float | None = None  # CPU time of the server's process tree (when its pid is known)
    tritonserver_cpu_s: float | None = None  # of the tritonserver process alone (no model stubs)


@dataclass(frozen=True)
class InProcessResult:
    runs: int
    threads: int
    batch: int
    wall_s: float
    p50_ms: float
    windows_per_s: float
    cpu_s: float  # CPU time of this process during the runs


def _client_module(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as tc
    else:
        import tritonclient.http as tc
    return tc


def served_model_info(url: str, protocol: str = "grpc", model: str = "vggx") -> dict[str, str]:
    """The served model's config ``parameters`` (window, scale, cpu_threads, ...) as strings.

    Raises:
        ServerUnavailable: nothing answers at ``url`` (over HTTP a socket error; gRPC's own failures stay
            tritonclient's ``InferenceServerException``).
    """
    tc = _client_module(protocol)
    try:
        with tc.InferenceServerClient(url) as client:
            if protocol == "grpc":
                cfg = client.get_model_config(model).config
                return {k: v.string_value for k, v in cfg.parameters.items()}
            cfg = client.get_model_config(model)
            return {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
    except OSError as exc:  # the HTTP client's connection refused, or a host name that does not resolve
        raise ServerUnavailable(f"cannot reach Triton at {url} over {protocol}: {exc}") from None


def make_input(window: int, lr_size: tuple[int, int], batch: int = 1, seed: int = 0) -> np.ndarray:
    """The benchmark's window: uint8 [batch, T, H, W, 3], seeded random (the same for every request)."""
    return np.random.default_rng(seed).integers(0, 256, (batch, window, *lr_size, 3), dtype=np.uint8)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def process_tree_cpu_s(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds of ``pid`` and (``children``) its live descendants (Linux ``/proc``;
    0.0 elsewhere)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return 0.0
    stats = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, utime+stime
    tree, frontier = {pid}, [pid] if children else []
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _) in stats.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


def run_load(config: LoadConfig, server_pid: int | None = None) -> LoadResult:
    """Send ``config.requests`` requests, ``config.concurrency`` in flight; errors are counted, not raised.

    With ``server_pid`` (a local server) the CPU time its process tree spent is measured too: on a shared
    machine CPU seconds per window compare backends more steadily than wall time does.
    """
    from tritonclient.utils import InferenceServerException

    tc = _client_module(config.protocol)
    window = int(served_model_info(config.url, config.protocol, config.model)["window"])
    x = make_input(window, config.lr_size, config.batch, config.seed)
    local = threading.local()
    clients = []
    lock = threading.Lock()

    def one(_: int) -> tuple[float, str | None]:
        if not hasattr(local, "client"):
            local.client = tc.InferenceServerClient(config.url)
            with lock:
                clients.append(local.client)
        inp = tc.InferInput("lr", list(x.shape), "UINT8")
        inp.set_data_from_numpy(x)
        start = time.perf_counter()
        try:
            result = local.client.infer(config.model, [inp], outputs=[tc.InferRequestedOutput("sr")])
            sr = result.as_numpy("sr")
            ok = sr is not None and sr.shape[:2] == x.shape[:2] and sr.dtype == np.uint8
            error = None if ok else f"bad output {None if sr is None else (sr.dtype, sr.shape)}"
        except InferenceServerException as exc:
            error = str(exc)
        except OSError as exc:  # the HTTP client's socket errors (a server gone mid-run): counted as gRPC's are
            error = f"{type(exc).__name__}: {exc}"
        return time.perf_counter() - start, error

    try:
        with ThreadPoolExecutor(config.concurrency) as pool:
            list(pool.map(one, range(config.warmup)))
            server_cpu = own_cpu = None
            if server_pid:
                server_cpu = process_tree_cpu_s(server_pid)
                own_cpu = process_tree_cpu_s(server_pid, children=False)
            cpu, start = time.process_time(), time.perf_counter()
            outcomes = list(pool.map(one, range(config.requests)))
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            if server_pid:
                server_cpu = process_tree_cpu_s(server_pid) - server_cpu
                own_cpu = process_tree_cpu_s(server_pid, children=False) - own_cpu
    finally:
        for client in clients:
            client.close()
    latencies = [t * 1e3 for t, err in outcomes if err is None]
    errors = [err for _, err in outcomes if err is not None]
    done = len(latencies) * config.batch
    return LoadResult(
        requests=config.requests, errors=len(errors), concurrency=config.concurrency, batch=config.batch,
        lr_size=config.lr_size, window=window, wall_s=wall, p50_ms=_percentile(latencies, 50),
        p90_ms=_percentile(latencies, 90), p99_ms=_percentile(latencies, 99), windows_per_s=done / wall,
        frames_per_s=done * window / wall, first_error=errors[0] if errors else None, client_cpu_s=cpu,
        server_cpu_s=server_cpu, tritonserver_cpu_s=own_cpu,
    )


def run_inprocess(onnx_path: str | Path, x: np.ndarray, *, runs: int = 20, threads: int = 1,
                  warmup: int = 2) -> InProcessResult:
    """Run ``x`` through an in-process ONNX Runtime CPU session ``runs`` times, one after the other."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        session.run(["sr"], {"lr": x})
    times = []
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(runs):
        t = time.perf_counter()
        session.run(["sr"], {"lr": x})
        times.append(time.perf_counter() - t)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return InProcessResult(runs=runs, threads=threads, batch=x.shape[0], wall_s=wall,
                           p50_ms=statistics.median(times) * 1e3, windows_per_s=runs * x.shape[0] / wall,
                           cpu_s=cpu)


def _versions(url: str, protocol: str) -> dict[str, str]:
    import importlib.metadata as md
    import platform

    tc = _client_module(protocol)
    with tc.InferenceServerClient(url) as client:
        meta = client.get_server_metadata()
    server = meta.version if protocol == "grpc" else meta.get("version", "?")
    return {"python": platform.python_version(), "onnxruntime": md.version("onnxruntime"),
            "tritonclient": md.version("tritonclient"), "tritonserver": server, "cpu": platform.processor()
            or platform.machine(), "cpus": str(os.cpu_count())}


def main(argv: list[str] | None = None) -> int:
    """One line and a non-zero exit for what goes wrong (a bad argument, a server that does not answer)."""
    from tritonclient.utils import InferenceServerException

    try:
        return _main(argv)
    except VggxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except InferenceServerException as exc:
        print(f"error: Triton: {exc.message() or exc}", file=sys.stderr)
        return EXIT_TEMPORARY if str(exc.status()) == "StatusCode.UNAVAILABLE" else 1


def _main(argv: list[str] | None) -> int:
    from vggx.cli import check_json_path, int_list
    from vggx.shapes import parse_size

    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.serve_load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="Triton endpoint host:port (gRPC, or HTTP with --protocol http)")
    where.add_argument("--model-repository", type=Path, help="start a tritonserver on this repository")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--lr-size", default="64x64", help="LR frame size HxW")
    p.add_argument("--batch", type=int, default=1, help="windows per request")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", default="8", help="comma-separated, e.g. 1,2,8")
    p.add_argument("--onnx", type=Path, help="also run this ONNX in-process for the overhead ratio")
    p.add_argument("--inprocess-runs", type=int, default=20)
    p.add_argument("--json", type=Path, help="write the results as JSON")
    args = p.parse_args(argv)
    size = parse_size(args.lr_size)
    levels = int_list(args.concurrency, "--concurrency")
    for flag, value in (("--batch", args.batch), ("--requests", args.requests),
                        ("--inprocess-runs", args.inprocess_runs), ("--concurrency", min(levels))):
        if value < 1:  # refused before any work (it was a ValueError after the levels before it had run)
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if args.url is not None:
        host, sep, port = args.url.rpartition(":")
        if not sep or not host or not port.isdigit():  # the HTTP client's own failure was a traceback
            raise ConfigError(f"--url must look like HOST:PORT (e.g. 127.0.0.1:8001), got {args.url!r}")
    if args.onnx is not None and not args.onnx.is_file():  # not after the server started and the first level ran
        raise ConfigError(f"--onnx {args.onnx}: no such file")
    check_json_path(args.json)  # not after the whole run

    server = None
    url = args.url
    if args.model_repository is not None:
        from vggx.server import ServerConfig, TritonServer

        server = TritonServer(ServerConfig(model_repository=args.model_repository, http_port=0, grpc_port=0,
                                           metrics_port=0)).start()
        url = server.endpoints.grpc if args.protocol == "grpc" else server.endpoints.http
    try:
        params = served_model_info(url, args.protocol)
        window, threads = int(params["window"]), int(params.get("cpu_threads", "0"))
        report: dict = {"url": url, "protocol": args.protocol, "lr_size": list(size), "batch": args.batch,
                        "params": params, "versions": _versions(url, args.protocol), "load": []}
        x = make_input(window, size, args.batch)
        for c in levels:
            # In-process right before each served run: a shared machine's load hits both alike.
            ref = run_inprocess(args.onnx, x, runs=args.inprocess_runs, threads=threads) if args.onnx else None
            res = run_load(LoadConfig(url=url, protocol=args.protocol, lr_size=size, batch=args.batch,
                                      requests=args.requests, concurrency=c),
                           server_pid=server.process.pid if server is not None else None)
            row = asdict(res)
            print(f"served      c={c:<3d} {res.requests} req  errors {res.errors}  p50 {res.p50_ms:8.1f} ms  "
                  f"p90 {res.p90_ms:8.1f} ms  p99 {res.p99_ms:8.1f} ms  {res.windows_per_s:7.2f} windows/s  "
                  f"{res.frames_per_s:7.1f} frames/s")
            if res.errors:
                print(f"  first error: {res.first_error}")
            served_cpu = None
            if res.server_cpu_s is not None:
                served_cpu = (res.server_cpu_s + res.client_cpu_s) / (res.requests * args.batch)
                row["cpu_s_per_window"] = served_cpu
                n = res.requests * args.batch
                model_s = (res.server_cpu_s - res.tritonserver_cpu_s) / n
                path_s = (res.tritonserver_cpu_s + res.client_cpu_s) / n
                row["serving_path_cpu_s_per_window"] = path_s
                print(f"            CPU per window: model (backend stub) {model_s * 1e3:.1f} ms, serving path "
                      f"{path_s * 1e3:.1f} ms (tritonserver {res.tritonserver_cpu_s / n * 1e3:.1f} + client "
                      f"{res.client_cpu_s / n * 1e3:.1f})")
            if ref is not None:
                row["inprocess"] = asdict(ref)
                row["overhead"] = 1 - res.windows_per_s / ref.windows_per_s
                print(f"in-process  ORT {threads or 'default'} thread(s), batch {args.batch}: "
                      f"p50 {ref.p50_ms:8.1f} ms  {ref.windows_per_s:7.2f} windows/s  -> serving overhead "
                      f"{row['overhead']:+.1%} (throughput)")
                if served_cpu is not None:
                    ref_cpu = ref.cpu_s / (ref.runs * args.batch)
                    row["cpu_overhead"] = served_cpu / ref_cpu - 1
                    row["serving_path_share"] = row["serving_path_cpu_s_per_window"] / ref_cpu
                    print(f"            CPU per window {ref_cpu * 1e3:.1f} ms -> serving overhead "
                          f"{row['cpu_overhead']:+.1%} (all CPU), serving path alone "
                          f"{row['serving_path_share']:.1%} of the model's in-process CPU")
            report["load"].append(row)
    finally:
        if server is not None:
            server.stop()
    if args.json:
        args.json.write_text(json_text(stamp(report, "serve_load", argv)))
    return 1 if any(r["errors"] for r in report["load"]) else 0


if __name__ == "__main__":
    sys.exit(main())
