"""``vggx serve --api-key``: Triton's own restricted APIs, on the real tritonserver, and the clients that carry the
key (``--api-key``, ``VGGX_API_KEY``) over gRPC and HTTP; health stays open for probes."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from vggx.errors import ConfigError, ServerError

pytestmark = pytest.mark.server

KEY = "k3y-0123456789abcdef"


@pytest.fixture(scope="module")
def locked_server(served_repository, tmp_path_factory, start_server):
    """Started: its readiness probe went through the open health API."""
    yield from start_server(served_repository, tmp_path_factory.mktemp("locked") / "tritonserver.log", api_key=KEY)


def _vggx(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "vggx.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from vggx.sample import write_sample_clip

    return write_sample_clip(tmp_path_factory.mktemp("clip") / "in.mp4", frames=6, size=(24, 32))


class TestClients:
    @pytest.mark.parametrize("protocol", ["grpc", "http"])
    def test_the_key_lets_an_upscale_through_and_its_absence_is_one_line(self, locked_server, clip, tmp_path,
                                                                       protocol):
        ep = locked_server.endpoints
        url = ep.grpc if protocol == "grpc" else ep.http
        ok = _vggx("upscale", str(clip), str(tmp_path / "ok.mkv"), "--url", url, "--protocol", protocol,
                   "--codec", "ffv1", "--api-key", KEY)
        assert ok.returncode == 0, ok.stderr
        assert (tmp_path / "ok.mkv").is_file() and "(shared memory)" in ok.stdout  # local: shm registered with it
        by_env = _vggx("upscale", str(clip), str(tmp_path / "env.mkv"), "--url", url, "--protocol", protocol,
                       "--codec", "ffv1", env={"VGGX_API_KEY": KEY})
        assert by_env.returncode == 0, by_env.stderr
        for extra in ([], ["--api-key", "not-the-key-0123456789"]):
            start = time.monotonic()
            bad = _vggx("upscale", str(clip), str(tmp_path / "bad.mkv"), "--url", url, "--protocol", protocol, *extra)
            lines = bad.stderr.strip().splitlines()
            assert bad.returncode == 1 and len(lines) == 1, bad.stderr
            assert lines[0].startswith(f"error: Triton at {url} refused the request: it needs the header "
                                       "'vggx-api-key' (missing or wrong); give the server's key with --api-key")
            assert time.monotonic() - start < 60  # refused at once: no retries with backoff (gRPC says UNAVAILABLE)
            assert not (tmp_path / "bad.mkv").exists()

    def test_the_same_frames_as_an_open_server(self, locked_server, triton_server, tmp_path):
        from vggx.client.triton import TritonRunner
        from vggx.server import API_KEY_HEADER

        lr = np.random.default_rng(0).integers(0, 256, (1, 8, 16, 24, 3), dtype=np.uint8)
        with TritonRunner(locked_server.endpoints.grpc, headers={API_KEY_HEADER: KEY}) as locked, \
                TritonRunner(triton_server.endpoints.grpc) as open_:
            np.testing.assert_array_equal(locked.infer(lr), open_.infer(lr))

    def test_info_and_check_carry_it(self, locked_server):
        from vggx.server import check_model

        ep = locked_server.endpoints
        info = _vggx("info", "--url", ep.grpc, "--api-key", KEY)
        assert info.returncode == 0 and "READY" in info.stdout, info.stderr
        refused = _vggx("info", "--url", ep.http, "--protocol", "http")
        assert refused.returncode == 1 and "refused the request" in refused.stderr
        result = check_model(ep.grpc, api_key=KEY)
        assert result.output_shape[0] == 1
        with pytest.raises(ServerError, match="is restricted"):
            check_model(ep.grpc)


    @pytest.mark.parametrize("protocol", ["grpc", "http"])
    def test_bench_carries_it_to_the_statistics_too(self, locked_server, tmp_path, protocol):
        """``vggx bench --api-key``: the requests and the server-statistics calls (restricted as well) carry the key;
        the results file records the command with the key as ***."""
        import json

        ep = locked_server.endpoints
        url = ep.grpc if protocol == "grpc" else ep.http
        out = tmp_path / "bench.json"
        result = _vggx("bench", "--url", url, "--protocol", protocol, "--api-key", KEY, "--lr-size", "16x16",
                       "--requests", "2", "--windows", "1", "--warmup", "0", "--json", str(out))
        assert result.returncode == 0, result.stderr
        data = json.loads(out.read_text())
        (point,) = data["points"]
        assert point["errors"] == 0 and point["server"]["compute_infer_us"] > 0, point
        assert KEY not in out.read_text()
        assert data["command"] == (f"vggx bench --lr-size 16x16 --url {url} --protocol {protocol} --api-key '***' "
                                   f"--warmup 0 --windows 1 --requests 2 --json {out}")
        refused = _vggx("bench", "--url", url, "--protocol", protocol, "--lr-size", "16x16", "--requests", "1",
                        "--windows", "1", "--warmup", "0")
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "refused the request" in refused.stderr


class TestServer:
    def test_health_stays_open_for_probes(self, locked_server):
        ep = locked_server.endpoints
        for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/vggx/ready"):
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    f"http://{ep.http}{path}", timeout=10) as resp:
                assert resp.status == 200, path

    def test_the_key_stays_out_of_the_log(self, locked_server, caplog):
        assert KEY not in locked_server.log_path.read_text()
        cmd = locked_server.command(locked_server.install, locked_server.endpoints)
        assert f"--grpc-restricted-protocol=inference,shared-memory,model-repository,model-config,statistics,trace," \
               f"logging:vggx-api-key={KEY}" in cmd

    @pytest.mark.parametrize("key", ["short", "has space in it 0123", "colon:0123456789abcdef", ""])
    def test_a_key_triton_cannot_carry_is_refused(self, key):
        from vggx.server import ServerConfig

        with pytest.raises(ConfigError, match="--api-key must be 16 or more"):
            ServerConfig(api_key=key)
        result = _vggx("upscale", "in.mp4", "out.mp4", "--url", "127.0.0.1:1", "--api-key", key)
        assert result.returncode == 1 and "--api-key must be 16 or more" in result.stderr


def test_grpc_headers_go_both_ways():
    """Triton's gRPC restriction reads ``triton-grpc-protocol-<name>``; a gateway reads the name itself."""
    from vggx.client.triton import wire_headers

    assert wire_headers({"Authorization": "Bearer x"}, "grpc") == {
        "authorization": "Bearer x", "triton-grpc-protocol-authorization": "Bearer x"}
    assert wire_headers({"Authorization": "Bearer x"}, "http") == {"Authorization": "Bearer x"}
    assert wire_headers({"triton-grpc-protocol-k": "v"}, "grpc") == {"triton-grpc-protocol-k": "v"}


def test_serve_check_with_a_key(served_repository):
    from vggx.server import find_tritonserver

    try:
        find_tritonserver()
    except ServerError as exc:
        pytest.skip(f"no tritonserver here: {exc}")
    done = _vggx("serve", "--check", "--model-repository", str(served_repository), "--http-port", "0",
                 "--grpc-port", "0", "--metrics-port", "0", env={"VGGX_API_KEY": KEY})
    assert done.returncode == 0, done.stderr
    assert "access   requests need --api-key" in done.stdout and "check ok:" in done.stdout
    assert KEY not in done.stdout + done.stderr


def test_every_triton_command_carries_the_key_in_its_headers():
    """``upscale``, ``bench`` and ``info`` build their Triton options in one place: the key joins the headers."""
    from vggx.cli import _triton_options

    options = _triton_options("127.0.0.1:8001", None, False, None, ["X-Team: vfx"], api_key=KEY)
    assert options["headers"] == (("X-Team", "vfx"), ("vggx-api-key", KEY))
    assert _triton_options("127.0.0.1:8001", None, False, None, None)["headers"] == ()


def test_serving_beyond_this_machine_without_a_key_is_warned_of():
    from vggx.cli import _exposure_warning

    assert "without --api-key: whoever reaches the ports can run, load and unload models" in \
        _exposure_warning("0.0.0.0", None)
    assert _exposure_warning("10.0.0.5", None) is not None
    assert _exposure_warning("0.0.0.0", KEY) is None
    assert _exposure_warning("127.0.0.1", None) is None and _exposure_warning("::1", None) is None
