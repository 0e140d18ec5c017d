"""Fixtures of the serving tests: a Python-backend repository of the tiny checkpoint and a real tritonserver.

The server is the CPU ``tritonserver`` bundled in ``nvidia-pytriton`` (or one on PATH), bound to 127.0.0.1 on
free ports, started once per run; tests that use it carry ``@pytest.mark.server``.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def onnx_metadata(portable_onnx) -> dict[str, str]:
    """The model metadata the exporter stored in the ONNX file's metadata props."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(portable_onnx), load_external_data=False).metadata_props}


@pytest.fixture(scope="session")
def served_repository(portable_onnx, onnx_metadata, tmp_path_factory):
    """A model repository with the tiny checkpoint's portable ONNX on the ``python`` backend (version 1)."""
    from vggx.export.repository import ServingConfig, write_model_repository

    repo = tmp_path_factory.mktemp("model_repository")
    meta = onnx_metadata
    write_model_repository(repo, backend="python", artefact=portable_onnx, metadata=meta,
                           window=int(meta["window"]), max_batch=4,
                           serving=ServingConfig(cpu_threads=1, warmup_size=(16, 16), queue_delay_us=2000))
    return repo


def _serve(repository, log, **config):
    """Start the real tritonserver on ``repository`` (free ports, log at ``log``, more ``ServerConfig`` fields in
    ``config``) and yield it; the test is skipped where there is no tritonserver."""
    from vggx.errors import ServerError
    from vggx.server import ServerConfig, TritonServer, find_tritonserver

    try:
        find_tritonserver()
    except ServerError as exc:
        pytest.skip(f"no tritonserver here: {exc}")
    cfg = ServerConfig(model_repository=repository, http_port=0, grpc_port=0, metrics_port=0, log_file=log,
                       startup_timeout_s=180, **config)
    with TritonServer(cfg) as server:
        yield server


@pytest.fixture(scope="session")
def triton_server(served_repository, tmp_path_factory):
    """The real tritonserver serving ``served_repository``; yields the started ``TritonServer``."""
    yield from _serve(served_repository, tmp_path_factory.mktemp("server") / "tritonserver.log")


@pytest.fixture(scope="session")
def start_server():
    """``start_server(repository, log, **ServerConfig fields)``: a generator that starts a real tritonserver, yields it
    and stops it (``yield from`` it in a fixture); skips where there is none."""
    return _serve


@pytest.fixture
def second_server(served_repository, tmp_path):
    """A second real tritonserver (a replica) on the same repository, started for one test (about 2 s)."""
    from vggx.server import ServerConfig, TritonServer

    cfg = ServerConfig(model_repository=served_repository, http_port=0, grpc_port=0, metrics_port=0,
                       log_file=tmp_path / "replica.log", startup_timeout_s=180)
    with TritonServer(cfg) as server:
        yield server


def inference_count(url: str, model: str = "vggx") -> int:
    """Requests the server at ``url`` (gRPC) has answered successfully for ``model``, from its statistics API."""
    import tritonclient.grpc as grpc

    with grpc.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics(model, as_json=True)
    return int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))


@pytest.fixture(scope="session")
def ort_session(portable_onnx):
    """In-process ONNX Runtime on the same file, with the served model's thread count (1)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(portable_onnx), options, providers=["CPUExecutionProvider"])
