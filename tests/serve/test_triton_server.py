"""The real tritonserver, over gRPC and HTTP with the real tritonclient (``vggx.server`` + the repository)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.server

LR_SIZE = (32, 48)  # small LR frames: a window runs in a fraction of a second on one core


def _tc(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as tc
    else:
        import tritonclient.http as tc
    return tc


@pytest.fixture(params=["grpc", "http"])
def protocol(request) -> str:
    return request.param


@pytest.fixture
def client(triton_server, protocol):
    tc = _tc(protocol)
    url = triton_server.endpoints.grpc if protocol == "grpc" else triton_server.endpoints.http
    with tc.InferenceServerClient(url) as c:
        yield c


def _window(n: int = 1, size=LR_SIZE, seed: int = 0, window: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, window, *size, 3), dtype=np.uint8)


def _infer(client, protocol: str, x: np.ndarray, dtype: str = "UINT8") -> np.ndarray:
    tc = _tc(protocol)
    inp = tc.InferInput("lr", list(x.shape), dtype)
    inp.set_data_from_numpy(x)
    return client.infer("vggx", [inp], outputs=[tc.InferRequestedOutput("sr")]).as_numpy("sr")


def _config(client, protocol: str) -> dict:
    """The served config as a dict (gRPC's protobuf through json_format, HTTP's JSON as is)."""
    if protocol == "http":
        return client.get_model_config("vggx")
    from google.protobuf import json_format

    return json_format.MessageToDict(client.get_model_config("vggx").config, preserving_proto_field_name=True)


def test_server_is_live_and_model_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("vggx")
    assert client.is_model_ready("vggx", "1")


def test_model_metadata_describes_the_tensor_contract(client, protocol):
    meta = client.get_model_metadata("vggx")
    if protocol == "grpc":
        from google.protobuf import json_format

        meta = json_format.MessageToDict(meta, preserving_proto_field_name=True)
    assert meta["name"] == "vggx"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "python"
    tensors = {t["name"]: t for t in meta["inputs"] + meta["outputs"]}
    assert tensors["lr"]["datatype"] == "UINT8"
    assert tensors["sr"]["datatype"] == "UINT8"
    # max_batch_size > 0: Triton prepends the batch dim (-1) to the config dims [T, -1, -1, 3]
    assert [int(d) for d in tensors["lr"]["shape"]] == [-1, 8, -1, -1, 3]
    assert [int(d) for d in tensors["sr"]["shape"]] == [-1, 8, -1, -1, 3]


def test_model_config_publishes_metadata_parameters(client, protocol, onnx_metadata):
    cfg = _config(client, protocol)
    params = {k: v["string_value"] for k, v in cfg["parameters"].items()}
    for key, value in onnx_metadata.items():
        if key != "generator_config":  # the ONNX file's own, for a run of the file alone: not published
            assert params[key] == value, key
    assert "generator_config" in onnx_metadata and "generator_config" not in params
    assert {"scale", "window", "size_multiple", "min_size", "max_size", "name", "version"} <= set(params)
    assert params["serving_backend"] == "python"
    assert int(cfg["max_batch_size"]) == 4
    assert int(cfg["dynamic_batching"]["max_queue_delay_microseconds"]) == 2000
    assert cfg["instance_group"][0]["kind"] == "KIND_CPU"
    assert cfg["model_warmup"][0]["inputs"]["lr"]["zero_data"] is True


def test_one_window_matches_inprocess_onnxruntime_exactly(client, protocol, ort_session):
    x = _window(seed=1)
    served = _infer(client, protocol, x)
    (local,) = ort_session.run(["sr"], {"lr": x})
    assert served.dtype == np.uint8
    assert served.shape == (1, 8, 4 * LR_SIZE[0], 4 * LR_SIZE[1], 3)
    np.testing.assert_array_equal(served, local)


def test_batch_of_two_equals_two_single_requests(client, protocol):
    x = _window(2, seed=2)
    batched = _infer(client, protocol, x)
    singles = np.concatenate([_infer(client, protocol, x[i:i + 1]) for i in range(2)])
    assert batched.shape[0] == 2
    np.testing.assert_array_equal(batched, singles)


def test_bad_requests_get_errors_and_the_server_keeps_serving(client, protocol):
    from tritonclient.utils import InferenceServerException

    bad = [
        (_window().astype(np.float32), "FP32", "data-type"),  # wrong dtype: Triton rejects it before model.py
        (_window(window=4), "UINT8", "shape"),  # wrong T
        # too small: model.py rejects it (tiling would not help: the hint said to tile), and too tall
        (_window(size=(8, 8)), "UINT8", "outside the model's range .*; pad or upscale smaller frames first"),
        (_window(size=(2000, 16)), "UINT8", "outside the model's range .*; tile larger frames"),
    ]
    for x, dtype, message in bad:
        with pytest.raises(InferenceServerException, match=message):
            _infer(client, protocol, x, dtype)
    good = _infer(client, protocol, _window(size=(16, 16), seed=3))
    assert good.shape == (1, 8, 64, 64, 3)


def test_bad_request_batched_with_good_ones_fails_alone(triton_server):
    """Requests in flight together (dynamic batching): the bad one gets its error, the others their output."""
    import functools
    import queue

    import tritonclient.grpc as tc

    answers: queue.Queue = queue.Queue()
    xs = {"good0": _window(size=(16, 16), seed=4), "bad": _window(size=(8, 8)),
          "good1": _window(size=(16, 16), seed=5)}
    with tc.InferenceServerClient(triton_server.endpoints.grpc) as c:
        for name, x in xs.items():
            inp = tc.InferInput("lr", list(x.shape), "UINT8")
            inp.set_data_from_numpy(x)
            c.async_infer("vggx", [inp], callback=functools.partial(
                lambda n, result, error: answers.put((n, result, error)), name))
        results = {n: (r, e) for n, r, e in (answers.get(timeout=60) for _ in xs)}
    assert results["bad"][1] is not None and "outside the model's range" in str(results["bad"][1])
    for name in ("good0", "good1"):
        result, error = results[name]
        assert error is None, error
        assert result.as_numpy("sr").shape == (1, 8, 64, 64, 3)


def test_metrics_endpoint_reports_inference_counts(triton_server):
    import urllib.request

    with urllib.request.urlopen(triton_server.endpoints.metrics, timeout=10) as resp:
        text = resp.read().decode()
    assert 'nv_inference_request_success{model="vggx",version="1"}' in text
    assert "nv_inference_queue_duration_us" in text  # the HorizontalPodAutoscaler's metric


def test_check_model_runs_one_request(triton_server, protocol):
    from vggx.server import check_model

    url = triton_server.endpoints.grpc if protocol == "grpc" else triton_server.endpoints.http
    result = check_model(url, protocol=protocol, size=(16, 24))
    assert result.output_shape == [1, 8, 64, 96, 3]
    assert result.versions == ["1"]


@pytest.mark.slow
def test_bounded_load_has_no_errors(triton_server):
    """200 requests, 8 in flight, over gRPC (the benchmark's own load generator)."""
    from vggx.benchmarks.serve_load import LoadConfig, run_load

    result = run_load(LoadConfig(url=triton_server.endpoints.grpc, lr_size=(16, 16), requests=200,
                                 concurrency=8, warmup=2), server_pid=triton_server.process.pid)
    assert result.errors == 0, result.first_error
    assert result.requests == 200
    assert 0 < result.p50_ms <= result.p99_ms
    assert result.windows_per_s > 0
    assert result.client_cpu_s > 0
    assert result.server_cpu_s > result.tritonserver_cpu_s > 0  # the server's tree includes the model's stub


@pytest.fixture(scope="module")
def torch_server(tiny_checkpoint_path, tiny_checkpoint, tmp_path_factory):
    """The ``torch`` backend's model.py on the real server, on the CPU (KIND_CPU: FP32, reference ops)."""
    from vggx.export.repository import ServingConfig, write_model_repository
    from vggx.server import ServerConfig, TritonServer

    repo = tmp_path_factory.mktemp("torch_repository")
    keys = ("name", "version", "scale", "window", "size_multiple", "min_size", "max_size")
    metadata = {k: tiny_checkpoint.metadata[k] for k in keys}
    write_model_repository(repo, backend="torch", artefact=tiny_checkpoint_path, metadata=metadata,
                           window=8, max_batch=2,
                           serving=ServingConfig(instance_kind="KIND_CPU", warmup_size=(16, 16),
                                                 merge_requests=False))
    cfg = ServerConfig(model_repository=repo, http_port=0, grpc_port=0, metrics_port=0,
                       log_file=tmp_path_factory.mktemp("torch_server") / "tritonserver.log", startup_timeout_s=180)
    with TritonServer(cfg) as server:
        yield server


def test_torch_backend_model_serves_the_checkpoint(torch_server, tiny_checkpoint):
    from concurrent.futures import ThreadPoolExecutor

    import torch
    import tritonclient.grpc as tc
    from tritonclient.utils import InferenceServerException

    from vggx.generator import UInt8Upscaler

    x = _window(2, size=(16, 24), seed=6)
    with tc.InferenceServerClient(torch_server.endpoints.grpc) as c:
        served = _infer(c, "grpc", x)
        with pytest.raises(InferenceServerException, match="outside the model's range"):
            _infer(c, "grpc", _window(size=(8, 8)))
        params = c.get_model_config("vggx").config.parameters
        assert params["precision"].string_value == "fp32"  # a CPU instance runs the FP32 reference
        assert params["merge_requests"].string_value == "false"
        # merge_requests=false: requests that Triton batches together still run (and answer) one by one
        with ThreadPoolExecutor(2) as pool:
            singles = list(pool.map(lambda i: _infer(c, "grpc", x[i:i + 1]), range(2)))
    np.testing.assert_array_equal(np.concatenate(singles), served)
    with torch.inference_mode():
        local = UInt8Upscaler(tiny_checkpoint.generator).eval()(torch.from_numpy(x)).numpy()
    assert served.shape == local.shape == (2, 8, 64, 96, 3)
    # Same weights and ops; the server's torch may use another thread count, so allow 1 grey level.
    assert np.abs(served.astype(int) - local.astype(int)).max() <= 1
    # its CPU instance measured what a window holds and sizes requests to the host's memory (the model's words)
    log = torch_server.config.log_file.read_text()
    assert re.search(r"vggx_cpu_0: host memory budget [\d.]+ [GM]iB \(.*\), [\d.]+ KiB per LR pixel of a window", log)


def test_cli_serve_check_runs_one_request_on_the_real_server(served_repository, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "vggx.cli", "serve", "--model-repository", str(served_repository),
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--log-file", str(tmp_path / "s.log"),
         "--check"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "check ok: [1, 8, 32, 32, 3] -> [1, 8, 128, 128, 3] uint8" in proc.stdout
    assert "server stopped" in proc.stdout
    assert "successfully loaded 'vggx'" in (tmp_path / "s.log").read_text()


def test_two_instances_serve_two_windows_at_once(portable_onnx, onnx_metadata, tmp_path, ort_session):
    """``vggx export --instances 2 --cpu-threads 1`` (the config it writes): the real server loads two instances,
    and two windows sent at once are both answered, each equal to in-process ONNX Runtime."""
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as grpc

    from vggx.export.repository import ServingConfig, write_model_repository
    from vggx.server import ServerConfig, TritonServer

    repo = tmp_path / "repo"
    write_model_repository(repo, backend="python", artefact=portable_onnx, metadata=onnx_metadata,
                           window=int(onnx_metadata["window"]), max_batch=1,
                           serving=ServingConfig(instances=2, cpu_threads=1, warmup_size=None, queue_delay_us=0))
    log = tmp_path / "server.log"
    cfg = ServerConfig(model_repository=repo, http_port=0, grpc_port=0, metrics_port=0, log_file=log,
                       startup_timeout_s=180)
    windows = [_window(seed=i) for i in range(4)]
    with TritonServer(cfg) as server, grpc.InferenceServerClient(server.endpoints.grpc) as c:
        (group,) = c.get_model_config("vggx").config.instance_group
        assert group.count == 2

        def infer(x):
            with grpc.InferenceServerClient(server.endpoints.grpc) as own:
                return _infer(own, "grpc", x)

        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(infer, windows))
    for x, y in zip(windows, got, strict=True):
        np.testing.assert_array_equal(y, ort_session.run(None, {"lr": x})[0])
    text = log.read_text()
    assert "vggx_cpu_0" in text and "vggx_cpu_1" in text, text[-2000:]


def test_a_bounded_queue_turns_requests_away_and_the_client_says_so(portable_onnx, onnx_metadata, tmp_path,
                                                                      start_server):
    """``vggx export --max-queue-size 1``: the real server holds one request in its queue and turns the next away;
    the client names it (no retries here: `vggx bench` counts them as errors, `vggx upscale` retries them)."""
    from concurrent.futures import ThreadPoolExecutor

    from vggx.client.triton import TritonRunner
    from vggx.errors import RequestRejected
    from vggx.export.repository import ServingConfig, write_model_repository

    repo = tmp_path / "repo"
    write_model_repository(repo, backend="python", artefact=portable_onnx, metadata=onnx_metadata,
                           window=int(onnx_metadata["window"]), max_batch=1,
                           serving=ServingConfig(cpu_threads=1, warmup_size=None, queue_delay_us=0, max_queue_size=1))
    for server in start_server(repo, tmp_path / "server.log"):
        with TritonRunner(server.endpoints.grpc, retries=0, shared_memory=False) as runner:
            assert runner.info.window == int(onnx_metadata["window"])

            def infer(seed: int) -> str:
                try:
                    runner.infer(_window(size=(64, 64), seed=seed))
                    return "answered"
                except RequestRejected as exc:
                    return str(exc)

            with ThreadPoolExecutor(8) as pool:
                outcomes = list(pool.map(infer, range(8)))
    answered = outcomes.count("answered")
    rejected = [o for o in outcomes if o != "answered"]
    assert answered >= 2 and rejected, outcomes  # one running and one queued at least; 8 at once do not fit
    assert all("exceeds maximum queue size" in o.lower() and "it is up but overloaded" in o for o in rejected), rejected


def test_serve_on_ipv6_loopback_checks_and_prints_its_addresses(served_repository, tmp_path):
    """`vggx serve --host ::1 --check`: the check dialled `::1:PORT` (no gRPC target) and failed on a server that was
    up; the printed URLs were `http://::1:PORT`."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "vggx.cli", "serve", "--model-repository", str(served_repository), "--host", "::1",
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--log-file", str(tmp_path / "s.log"),
         "--check"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "check ok: [1, 8, 32, 32, 3]" in proc.stdout
    printed = r"HTTP +http://\[::1\]:\d+\n +gRPC +\[::1\]:\d+\n +metrics +http://\[::1\]:\d+/metrics"
    assert re.search(printed, proc.stdout), proc.stdout


def test_a_model_under_another_name_is_served_and_called_by_it(portable_onnx, onnx_metadata, tmp_path):
    """``vggx export --name vggx-tiny`` beside nothing else: ``vggx serve --model vggx-tiny --check`` waits for and
    checks it, ``vggx upscale --url --model vggx-tiny`` calls it; calling ``vggx`` there is one clear error."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from vggx.cli import app
    from vggx.export.repository import ServingConfig, write_model_repository
    from vggx.server import ServerConfig, TritonServer

    repo = tmp_path / "repo"
    write_model_repository(repo, backend="python", artefact=portable_onnx, metadata=onnx_metadata,
                           window=int(onnx_metadata["window"]), name="vggx-tiny",
                           serving=ServingConfig(cpu_threads=1, warmup_size=None))
    proc = subprocess.run(
        [sys.executable, "-m", "vggx.cli", "serve", "--model-repository", str(repo), "--model", "vggx-tiny",
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--log-file", str(tmp_path / "s.log"),
         "--check"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "model vggx-tiny ready" in proc.stdout and "check ok: [1, 8, 32, 32, 3]" in proc.stdout

    from vggx.benchmarks.upscale_overlap import _synthetic_clip

    clip = _synthetic_clip(tmp_path / "clip.mp4", 6, (32, 48))
    cfg = ServerConfig(model_repository=repo, http_port=0, grpc_port=0, metrics_port=0, model_name="vggx-tiny",
                       log_file=tmp_path / "t.log", startup_timeout_s=180)
    with TritonServer(cfg) as server:
        url = server.endpoints.grpc
        result = CliRunner().invoke(app, ["upscale", str(clip), str(tmp_path / "o.mp4"), "--url", url, "--model",
                                          "vggx-tiny", "--frames", "4"])
        assert result.exit_code == 0, result.output
        assert "model 'vggx-tiny'" in result.stdout and (tmp_path / "o.mp4").is_file()
        result = CliRunner().invoke(app, ["upscale", str(clip), str(tmp_path / "p.mp4"), "--url", url])
        assert result.exit_code == 1, result.output
        assert result.stderr.strip() == (f"error: Triton at {url} serves no model 'vggx' (its repository has "
                                         f"vggx-tiny); pass --model")
        assert not (tmp_path / "p.mp4").exists()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_info_url_describes_the_served_model_and_its_requests(triton_server, tmp_path, protocol):
    """``vggx info --url``: the server, the repository's models, the model's serving config (from the config the
    exporter wrote) and its request statistics, which count a request sent just before."""
    import json

    from typer.testing import CliRunner

    from vggx.cli import app
    from vggx.server import check_model

    check_model(triton_server.endpoints.grpc)  # one request more on the server's counters
    ep = triton_server.endpoints.grpc if protocol == "grpc" else triton_server.endpoints.http
    out = tmp_path / "info.json"
    result = CliRunner().invoke(app, ["info", "--url", ep, "--protocol", protocol, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert f"at {ep}" in result.stdout and "READY" in result.stdout
    assert "python (python)" in result.stdout and "1 x CPU" in result.stdout and "2000 µs" in result.stdout
    # the checkpoint's own version, told apart from Triton's version numbers (the statistics' "version")
    assert re.search(r"checkpoint +│ +\S+ v\d", result.stdout), result.stdout
    data = json.loads(out.read_text())
    assert data["server"].startswith("triton") and data["model"] == "vggx"
    assert [m["name"] for m in data["models"]] == ["vggx"] and data["models"][0]["state"] == "READY"
    assert data["config"]["max_batch_size"] == 4
    (stats,) = data["stats"]
    assert stats["version"] == "1" and stats["requests"] >= 1 and stats["compute_ms"] > 0


def test_info_url_names_the_models_when_the_one_asked_is_not_there(triton_server):
    from typer.testing import CliRunner

    from vggx.cli import app

    url = triton_server.endpoints.grpc
    result = CliRunner().invoke(app, ["info", "--url", url, "--model", "vggx-base"])
    assert result.exit_code == 1, result.output  # like `upscale --model` and `serve --check`: an error, listed first
    assert "READY" in result.stdout and "vggx" in result.stdout
    assert result.stderr.strip() == f"error: no model 'vggx-base' at {url}; --model names one of the models listed"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_other_protocols_port_is_a_setting_to_fix_not_a_server_to_wait_for(triton_server, tmp_path, protocol):
    """gRPC sent to the HTTP port (or HTTP to the gRPC one) exited 75, "temporary": a Job retries that forever. The
    server answers the other protocol there, so it is one line naming --protocol, exit 1."""
    from typer.testing import CliRunner

    from vggx.benchmarks.upscale_overlap import _synthetic_clip
    from vggx.cli import app

    other = "http" if protocol == "grpc" else "grpc"
    url = getattr(triton_server.endpoints, other)  # the port of the protocol not spoken
    clip = tmp_path / "clip.mp4"
    _synthetic_clip(clip, 4, (16, 16))
    for command in (["info"], ["upscale", str(clip), str(tmp_path / "o.mp4")]):
        # (--url with the scheme: the hint said "--protocol", which that --url refuses as a contradiction)
        for flags in (["--url", url, "--protocol", protocol], ["--url", f"{protocol}://{url}"]):
            result = CliRunner().invoke(app, [*command, *flags])
            assert result.exit_code == 1, result.output
            (line,) = result.stderr.strip().splitlines()
            assert line.startswith(f"error: Triton at {url} answers {other} on that port, not {protocol} (") and \
                line.endswith(f"): pass --protocol {other} or a {other}:// --url (or its {protocol} port)"), line
    assert not (tmp_path / "o.mp4").exists()


def test_info_url_unreachable_is_one_line():
    from typer.testing import CliRunner

    from vggx.cli import app
    from vggx.server import free_port

    result = CliRunner().invoke(app, ["info", "--url", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == 75  # EX_TEMPFAIL: the server may be up later
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach Triton at 127.0.0.1:") and "is it up" in line, line


@pytest.mark.parametrize(("url", "protocol"), [("127.0.0.1:99999", "http"), ("127.0.0.1:99999", "grpc"),
                                             ("127.0.0.1", "grpc"), ("gpu1:8001,gpu2:8001", "grpc")])
def test_info_url_that_is_not_one_host_and_port_is_one_line_and_exit_1(url, protocol):
    """A port out of range was a traceback over HTTP and another port over gRPC (99999 is 34463 there), no port
    dialled 443, and a list of servers was one misformatted name: all 'cannot reach', exit 75 (retry a typo)."""
    from typer.testing import CliRunner

    from vggx.cli import app

    result = CliRunner().invoke(app, ["info", "--url", url, "--protocol", protocol])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(("error: --url must look like HOST:PORT", "error: vggx info --url describes one")), line


def test_two_versions_served_and_one_called_by_number(portable_onnx, onnx_metadata, tmp_path):
    """``vggx export --versions-served 2`` (a canary beside the current version): the server serves both, and
    ``vggx upscale --url --model-version 1`` sends its windows to version 1 only (the server's per-version
    counters); a version it does not serve is one clear error."""
    from typer.testing import CliRunner

    from vggx.benchmarks.upscale_overlap import _synthetic_clip
    from vggx.cli import app
    from vggx.client.triton import describe_server
    from vggx.export.repository import ServingConfig, write_model_repository
    from vggx.server import ServerConfig, TritonServer

    repo = tmp_path / "repo"
    for version in (1, 2):
        write_model_repository(repo, backend="python", artefact=portable_onnx, metadata=onnx_metadata,
                               window=int(onnx_metadata["window"]), version=version,
                               serving=ServingConfig(cpu_threads=1, warmup_size=None, versions_served=2))
    clip = _synthetic_clip(tmp_path / "clip.mp4", 6, (32, 48))
    cfg = ServerConfig(model_repository=repo, http_port=0, grpc_port=0, metrics_port=0, log_file=tmp_path / "s.log",
                       startup_timeout_s=180)
    with TritonServer(cfg) as server:
        url = server.endpoints.grpc
        assert sorted(m.version for m in describe_server(url).models if m.state == "READY") == ["1", "2"]
        result = CliRunner().invoke(app, ["upscale", str(clip), str(tmp_path / "o.mp4"), "--url", url,
                                          "--model-version", "1"])
        assert result.exit_code == 0, result.output
        assert "model 'vggx' version 1" in result.stdout
        requests = {s["version"]: s["requests"] for s in describe_server(url).stats}
        assert requests["1"] >= 2 and requests["2"] == 0, requests
        result = CliRunner().invoke(app, ["upscale", str(clip), str(tmp_path / "p.mp4"), "--url", url,
                                          "--model-version", "3"])
        assert result.exit_code == 1, result.output  # it said "not ready (still loading, or it failed to load ...)"
        assert result.stderr.strip() == (f"error: Triton at {url} serves model 'vggx' in version 1, 2, not 3; pass one "
                                         f"of those to --model-version, or none for the newest")
        # vggx bench: the server's times are those of the version its requests went to (the newest, 2)
        from vggx.benchmarks.bench import BenchConfig, run_bench
        from vggx.client import Backend, BackendConfig

        before = {s["version"]: s["requests"] for s in describe_server(url).stats}
        cfg = BenchConfig(backends=(BackendConfig(backend=Backend.TRITON, url=url),), lr_size=(16, 16),
                          window_requests=3, windows=1, warmup=0)
        (point,) = run_bench(cfg).points
        after = {s["version"]: s["requests"] for s in describe_server(url).stats}
        # the 3 measured, each window's first (before it starts) and one that may be in flight as it ends
        assert after["1"] - before["1"] == 0 and 3 + 1 <= after["2"] - before["2"] <= 3 + 2, (before, after)
        assert point.server is not None and point.server["compute_infer_us"] > 0, point.server
        # a batch above the model's max_batch_size: refused before any request (it failed at the first one)
        from vggx.errors import ConfigError

        with pytest.raises(ConfigError, match=r"^--batch 8 is above the max_batch_size 4 of the model triton serves"):
            run_bench(dataclasses.replace(cfg, batch=8))
        assert {s["version"]: s["requests"] for s in describe_server(url).stats} == after


def test_a_crashed_server_leaves_nothing_behind_and_clients_go_on_after_its_restart(served_repository, tmp_path):
    """``kill -9`` of tritonserver: ``stop()`` leaves none of its Python-backend stubs (each holds a model, and they
    outlive it), and a client with shared memory carries on against the server restarted on the same ports: its
    regions registered again (the new server does not know them), shared memory kept."""
    import os
    import signal

    from vggx.client.triton import TritonRunner
    from vggx.errors import ServerError, ServerUnavailable
    from vggx.server import ServerConfig, TritonServer, _group_stubs, free_port

    ports = dict(zip(("http_port", "grpc_port", "metrics_port"), (free_port() for _ in range(3)), strict=True))
    lr = _window(seed=3)

    def serve(log: str) -> TritonServer:
        return TritonServer(ServerConfig(model_repository=served_repository, log_file=tmp_path / log,
                                         startup_timeout_s=180, **ports)).start()

    def group(pgid: int) -> list[int]:
        """Live (not zombie) processes of a process group."""
        found = []
        for entry in os.listdir("/proc"):
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry))
        return found

    first = serve("first.log")
    pgid = first.process.pid
    with TritonRunner(first.endpoints.grpc, retries=6) as runner:
        assert "(shared memory)" in runner.description
        expected = runner.infer(lr)
        assert len(group(pgid)) >= 2  # the server and its model's stub
        regions = [Path("/dev/shm") / region for _, _, region in _group_stubs(pgid).values()]
        assert regions and all(r.exists() for r in regions)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        first.stop()
        assert group(pgid) == []
        assert not any(r.exists() for r in regions)  # the stubs' shared memory too (RAM, a pod's emptyDir)
        second = serve("second.log")
        try:
            np.testing.assert_array_equal(runner.infer(lr), expected)
            assert "(shared memory)" in runner.description
            # a stub killed (for memory, a crash in a library): Triton keeps the model READY and fails every request;
            # the client takes it as a server down (75: retried later), and vggx serve stops the server
            ((stub, _),) = [(pid, s) for pid, s in _group_stubs(second.process.pid).items()][:1]
            os.kill(stub, signal.SIGKILL)
            with pytest.raises(ServerUnavailable, match="is not healthy") as err:
                TritonRunner(second.endpoints.grpc, retries=1).infer(lr)
            assert "the process that ran its model 'vggx' died" in str(err.value)
            assert "If it was killed for memory, smaller tiles hold less (--tile; this request was 32x48)" in \
                str(err.value)
            with pytest.raises(ServerError, match=r"the Python-backend process of .*model\.py \(instance vggx_\w+\) "
                                                  r"exited, and Triton does not start it again"):
                second.wait(timeout=2)
        finally:
            second.stop()


def test_serve_on_a_port_a_running_server_holds_fails_instead_of_checking_that_server(triton_server, tmp_path):
    import subprocess
    import sys

    port = triton_server.endpoints.http_port
    proc = subprocess.run(
        [sys.executable, "-m", "vggx.cli", "serve", "--model-repository", str(triton_server.config.model_repository),
         "--http-port", str(port), "--grpc-port", "0", "--metrics-port", "0", "--log-file", str(tmp_path / "s.log"),
         "--check"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1 and "check ok" not in proc.stdout and "ready" not in proc.stdout, proc.stdout
    assert proc.stderr.strip().startswith(f"error: port {port} on 127.0.0.1 is already in use")


def test_check_model_keeps_inside_a_small_max_size(portable_onnx, onnx_metadata, tmp_path, start_server):
    """`vggx serve --check` on a model exported with --max-size 24x1920: its request is 24 high, not the 32 it
    always sent (refused: "frame size 32x32 is outside the model's range")."""
    from vggx.export.repository import ServingConfig, write_model_repository
    from vggx.server import check_model

    meta = {**onnx_metadata, "max_size": "24x1920"}
    write_model_repository(tmp_path / "repo", backend="python", artefact=portable_onnx, metadata=meta,
                           window=int(meta["window"]), serving=ServingConfig(cpu_threads=1, warmup_size=(16, 16)))
    for server in start_server(tmp_path / "repo", tmp_path / "tritonserver.log"):
        scale = int(meta["scale"])
        assert check_model(server.endpoints.grpc).output_shape == [1, int(meta["window"]), 24 * scale, 32 * scale, 3]


def test_an_output_unlike_the_configs_scale_is_an_error_through_shared_memory_too(portable_onnx, onnx_metadata,
                                                                                 tmp_path, start_server):
    """A repository whose config says another scale than the model has: the answer over the network was refused,
    but through shared memory the region was read as the expected output whatever the server wrote (a quarter of
    it here), the rest passing for frames."""
    import numpy as np

    from vggx.client.triton import TritonRunner
    from vggx.errors import InferenceError
    from vggx.export.repository import ServingConfig, write_model_repository

    meta = {**onnx_metadata, "scale": str(2 * int(onnx_metadata["scale"]))}  # the ONNX upscales x4, the config x8
    write_model_repository(tmp_path / "repo", backend="python", artefact=portable_onnx, metadata=meta,
                           window=int(meta["window"]), serving=ServingConfig(cpu_threads=1, warmup_size=None))
    window = int(meta["window"])
    for server in start_server(tmp_path / "repo", tmp_path / "tritonserver.log"):
        expected = rf"returned (UINT8|uint8) \(1, {window}, 64, 64, 3\), expected (UINT8|uint8) \(1, {window}, 128, 128"
        for shared_memory in (True, False):
            with TritonRunner(server.endpoints.grpc, shared_memory=shared_memory) as runner, \
                    pytest.raises(InferenceError, match=expected):
                runner.infer(np.zeros((1, window, 16, 16, 3), np.uint8))
