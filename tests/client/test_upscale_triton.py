"""The Triton backend: against a stub HTTP endpoint (fast: metadata, retries, errors) and a real
``tritonserver`` (``@pytest.mark.server``: pixels identical to in-process ONNX Runtime)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from triton_stub import StubTriton
from videoclips import decode_all

from vggx.client import Backend, BackendConfig, TritonProtocol, UpscaleConfig, open_runner, upscale
from vggx.client.triton import TritonRunner
from vggx.errors import ServerError
from vggx.server import free_port
from vggx.video import EncodeConfig

LOSSLESS = EncodeConfig(codec="ffv1")


def http_config(url: str, **kw) -> BackendConfig:
    return BackendConfig(Backend.TRITON, url=url, protocol=TritonProtocol.HTTP, retries=kw.pop("retries", 3), **kw)


class TestAgainstStub:
    def test_metadata_comes_from_the_model_config(self):
        with StubTriton(window=4, max_size="32x48") as stub, open_runner(http_config(stub.url)) as runner:
            assert (runner.info.window, runner.info.max_size, runner.info.min_size) == (4, (32, 48), (16, 16))

    def test_upscale_over_http_uses_the_served_window_and_tiles(self, clips, tmp_path):
        # window 4 and max 24x32 come from the server's config: 40x56 frames need 6 tiles per window
        with StubTriton(window=4, max_size="24x32") as stub:
            cfg = UpscaleConfig(clips["twelve"], tmp_path / "o.mkv", http_config(stub.url), LOSSLESS,
                                concurrency=3)
            result = upscale(cfg)
        assert result.tiles_per_window == 6 and result.windows == 6  # 12 frames / (4 - 2·1) per window
        src = decode_all(clips["twelve"])
        for a, b in zip(decode_all(tmp_path / "o.mkv"), src, strict=True):  # nearest ×4 survives tiling
            np.testing.assert_array_equal(a, b.repeat(4, 0).repeat(4, 1))

    def test_transient_errors_are_retried_with_backoff(self, caplog):
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as stub, open_runner(http_config(stub.url)) as runner:
            stub.fail_next = [503, 503]
            with caplog.at_level(logging.WARNING, logger="vggx.client.triton"):
                assert runner.infer(lr).shape == (1, 4, 64, 64, 3)
            assert stub.infer_calls == 3 and "retry 2/3" in caplog.text

    def test_persistent_transient_errors_give_up_with_a_clear_error(self):
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as stub, open_runner(http_config(stub.url, retries=1)) as runner:
            stub.fail_next = [503, 503, 503]
            with pytest.raises(ServerError, match="still failing after 2 attempts"):
                runner.infer(lr)

    def test_bad_request_is_not_retried(self):
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as stub, open_runner(http_config(stub.url)) as runner:
            stub.fail_next = [400]
            with pytest.raises(ServerError, match="failed the request"):
                runner.infer(lr)
            assert stub.infer_calls == 1

    def test_model_not_ready_is_one_clear_error(self):
        with StubTriton(ready=False) as stub, pytest.raises(ServerError, match="is up but model 'vggx' is not ready"):
            open_runner(http_config(stub.url))

    def test_shared_memory_the_server_cannot_map_falls_back_with_a_warning(self, caplog):
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as stub, open_runner(http_config(stub.url)) as runner:
            with caplog.at_level(logging.WARNING, logger="vggx.client.triton"):
                runner.infer(lr)
            assert "cannot use system shared memory" in caplog.text
        with StubTriton() as stub, TritonRunner(stub.url, protocol="http", shared_memory=True) as runner, \
                pytest.raises(ServerError, match="cannot use system shared memory"):
            runner.infer(lr)


class TestUnreachable:
    @pytest.mark.parametrize("protocol", ["grpc", "http"])
    def test_message_names_the_url_and_vggx_serve(self, protocol):
        url = f"127.0.0.1:{free_port()}"
        cfg = BackendConfig(Backend.TRITON, url=url, protocol=TritonProtocol(protocol))
        with pytest.raises(ServerError, match=rf"cannot reach Triton at {protocol}://{url} .*`vggx serve`"):
            open_runner(cfg)

    def test_url_must_be_host_port(self):
        with pytest.raises(ServerError, match="HOST:PORT"):
            TritonRunner("localhost")


@pytest.mark.server
class TestRealServer:
    @pytest.mark.parametrize("protocol", ["grpc", "http"])
    def test_triton_equals_inprocess_onnxruntime_frame_for_frame(self, triton_server, ort_runner, clips, tmp_path,
                                                                 protocol):
        ep = triton_server.endpoints
        url = ep.grpc if protocol == "grpc" else ep.http
        with open_runner(BackendConfig(Backend.TRITON, url=url, protocol=TritonProtocol(protocol))) as remote:
            assert remote.info == ort_runner.info
            assert "shared memory" in remote.description  # the server is on this host
            upscale(UpscaleConfig(clips["twelve"], tmp_path / "t.mkv", encode=LOSSLESS, concurrency=2),
                    runner=remote)
        upscale(UpscaleConfig(clips["twelve"], tmp_path / "o.mkv", encode=LOSSLESS), runner=ort_runner)
        remote_frames, local_frames = decode_all(tmp_path / "t.mkv"), decode_all(tmp_path / "o.mkv")
        assert len(remote_frames) == len(local_frames) == 12
        for a, b in zip(remote_frames, local_frames, strict=True):
            np.testing.assert_array_equal(a, b)

    def test_cli_url_implies_triton(self, triton_server, clips, tmp_path):
        from typer.testing import CliRunner

        from vggx.cli import app

        out = tmp_path / "o.mp4"
        result = CliRunner().invoke(app, ["upscale", str(clips["aac"]), str(out), "--url",
                                          triton_server.endpoints.grpc, "--frames", "4"])
        assert result.exit_code == 0, result.output
        assert "4 frames in" in result.stdout and "triton grpc://" in result.stdout and out.is_file()
