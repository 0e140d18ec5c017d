"""``vggx bench --backend triton`` against the real test server."""

from __future__ import annotations

import pytest
from rich.text import Text

from vggx.benchmarks.bench import BenchConfig, run_bench
from vggx.cli import _bench_cells
from vggx.client import Backend, BackendConfig, TritonProtocol


@pytest.mark.server
@pytest.mark.parametrize("protocol", [TritonProtocol.GRPC, TritonProtocol.HTTP])
def test_triton_bench_has_throughput_no_errors_and_server_stats(triton_server, protocol):
    url = triton_server.endpoints.grpc if protocol is TritonProtocol.GRPC else triton_server.endpoints.http
    backend = BackendConfig(backend=Backend.TRITON, url=url, protocol=protocol)
    cfg = BenchConfig(backends=(backend,), lr_size=(16, 16), concurrency=(2,), window_requests=3, windows=2,
                      warmup=1)
    (point,) = run_bench(cfg).points
    assert point.errors == 0 and point.requests == 6
    assert point.frames_per_s > 0
    assert point.gflops_per_frame > 0  # the served model's, by the name it publishes (vggx-tiny-x4)
    assert point.server is not None and point.server["compute_infer_us"] > 0
    assert point.server["queue_us"] >= 0
    assert point.peak_memory_mb is None  # the server's memory is not this process's to report
    shown = Text.from_markup(_bench_cells(point, False)["backend"]).plain  # the table's cell, as printed
    assert f"[q {point.server['queue_us'] / 1e3:.1f} / infer " in shown


@pytest.mark.server
def test_bench_over_two_replicas_sums_their_server_stats(triton_server, second_server):
    from conftest import inference_count

    urls = [triton_server.endpoints.grpc, second_server.endpoints.grpc]
    before = [inference_count(u) for u in urls]
    backend = BackendConfig(backend=Backend.TRITON, url=",".join(urls))
    cfg = BenchConfig(backends=(backend,), lr_size=(16, 16), concurrency=(2,), window_requests=4, windows=2,
                      warmup=1)
    (point,) = run_bench(cfg).points
    assert point.errors == 0 and point.requests == 8
    served = [inference_count(u) - b for u, b in zip(urls, before, strict=True)]
    assert min(served) >= 1 and sum(served) >= 8, served  # the measured requests (and the warm-up), on both
    assert point.server is not None and point.server["compute_infer_us"] > 0
