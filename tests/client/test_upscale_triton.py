"""The Triton backend: against a stub HTTP endpoint (fast: metadata, retries, errors) and a real
``tritonserver`` (``@pytest.mark.server``: pixels identical to in-process ONNX Runtime)."""

from __future__ import annotations

import contextlib
import json
import logging
import textwrap
from pathlib import Path

import numpy as np
import pytest
from triton_stub import StubTriton
from typer.testing import CliRunner
from videoclips import decode_all

from vggx.cli import app
from vggx.client import Backend, BackendConfig, TritonProtocol, UpscaleConfig, open_runner, upscale
from vggx.client.triton import TritonRunner
from vggx.errors import ConfigError, ServerError, ServerUnavailable
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

    def test_a_server_out_of_memory_gets_smaller_tiles(self, clips, tmp_path, caplog):
        with StubTriton(window=4, max_size="64x64") as stub:
            stub.oom_above = 24 * 32
            cfg = UpscaleConfig(clips["big"], tmp_path / "o.mkv", http_config(stub.url), LOSSLESS)
            result = upscale(cfg)
        # one request per size that ran out of memory (not retried as transient), then the small tiles only
        assert stub.shapes[:2] == [[1, 4, 40, 56, 3], [1, 4, 40, 24, 3]]
        assert {tuple(s[2:4]) for s in stub.shapes[2:]} <= {(16, 24), (16, 16)}
        assert result.tiles_per_window > 1
        assert (f"the model served by Triton at {stub.url} ran out of memory on 40x24 tiles; going on with tiles "
                "of at most 16x24") in caplog.text
        src = decode_all(clips["big"])
        for a, b in zip(decode_all(tmp_path / "o.mkv"), src, strict=True):  # nearest ×4 survives tiling
            np.testing.assert_array_equal(a, b.repeat(4, 0).repeat(4, 1))

    def test_a_server_that_names_what_fits_gets_those_tiles_at_once(self, clips, tmp_path, caplog):
        """vggx's CPU-served model refuses a window above its host memory naming the pixels that fit: the client
        halved by trial, one refused window per halving (two here); now it halves until they fit, one refusal."""
        with StubTriton(window=4, max_size="64x64") as stub:
            stub.oom_above, stub.oom_says_fits = 16 * 24, True
            cfg = UpscaleConfig(clips["big"], tmp_path / "o.mkv", http_config(stub.url), LOSSLESS)
            with caplog.at_level(logging.WARNING):
                upscale(cfg)
        assert stub.shapes[0] == [1, 4, 40, 56, 3]
        assert all(s[2] * s[3] <= 16 * 24 for s in stub.shapes[1:]), stub.shapes  # the only refusal was the first
        assert (f"the model served by Triton at {stub.url} ran out of memory on 40x56 tiles; going on with tiles of "
                "at most 16x24") in caplog.text
        src = decode_all(clips["big"])
        for a, b in zip(decode_all(tmp_path / "o.mkv"), src, strict=True):
            np.testing.assert_array_equal(a, b.repeat(4, 0).repeat(4, 1))

    def test_https_with_a_private_ca_and_headers_on_every_call(self, clips, tmp_path, tls_cert):
        """An ingress in front of Triton: TLS with a certificate from the company's CA, a bearer token."""
        from typer.testing import CliRunner

        from vggx.cli import app

        cert, key = tls_cert
        with StubTriton(window=4, tls=(str(cert), str(key))) as stub:
            url = f"https://localhost:{stub.port}"
            result = CliRunner().invoke(app, ["upscale", str(clips["big"]), str(tmp_path / "o.mkv"), "--codec", "ffv1",
                                              "--url", url, "--ca-cert", str(cert),
                                              "--header", "Authorization: Bearer s3cret", "--header", "X-Team: vfx"])
            assert result.exit_code == 0, result.output
            assert f"triton https://localhost:{stub.port}" in result.stdout
            assert stub.infer_calls >= 3 and len(stub.headers) > stub.infer_calls  # health, config, infer
            for h in stub.headers:
                assert h.get("Authorization") == "Bearer s3cret" and h.get("X-Team") == "vfx", h
            src = decode_all(clips["big"])
            for a, b in zip(decode_all(tmp_path / "o.mkv"), src, strict=True):
                np.testing.assert_array_equal(a, b.repeat(4, 0).repeat(4, 1))

            # without the CA the certificate is not trusted: one clear line, nothing written
            result = CliRunner().invoke(app, ["upscale", str(clips["big"]), str(tmp_path / "p.mkv"), "--url", url])
            assert result.exit_code == 1 and not (tmp_path / "p.mkv").exists()
            (line,) = result.stderr.strip().splitlines()
            assert line.startswith(f"error: cannot reach Triton at https://localhost:{stub.port} (") and "CERTIFICATE" \
                in line.upper(), line
            assert line.endswith("pass --ca-cert with the CA that signed the server's certificate"), line

    def test_https_replicas_share_the_windows_by_name(self, clips, tmp_path, tls_cert):
        """Several https:// servers: a pool, each kept by its name (certificates name hosts, not addresses)."""
        cert, key = tls_cert
        with StubTriton(window=4, tls=(str(cert), str(key))) as a, StubTriton(window=4, tls=(str(cert), str(key))) as b:
            config = BackendConfig(Backend.TRITON, url=f"https://localhost:{a.port},https://localhost:{b.port}",
                                   protocol=TritonProtocol.HTTP, ssl=True, ca_cert=cert)
            with open_runner(config) as pool:
                assert pool.urls == [f"localhost:{a.port}", f"localhost:{b.port}"]
                result = upscale(UpscaleConfig(clips["twelve"], tmp_path / "o.mkv", encode=LOSSLESS, concurrency=4),
                                 runner=pool)
            assert a.infer_calls > 0 and b.infer_calls > 0 and sum(result.windows_per_server.values()) == 6

    @pytest.mark.parametrize(("args", "message"), [
        (["--url", "https://a:1,grpc://b:2"], "--url entries name different schemes"),
        (["--url", "grpcs://a:1", "--protocol", "http"], "--protocol http disagrees with --url's scheme (grpc)"),
        (["--url", "a:1", "--header", "Authorization Bearer x"], "--header must be 'Name: value'"),
        (["--url", "a:1", "--ca-cert", "ca.pem"], "--ca-cert and --client-cert apply with TLS"),
        (["--url", "grpcs://a:1", "--client-cert", "c.pem"], "--client-cert and --client-key go together"),
        (["--ssl"], "--ssl applies to a Triton server: with --url"),
        (["--header", "A: b", "--client-cert", "c.pem", "--client-key", "k.pem"],
         "--header and --client-cert and --client-key apply to a Triton server: with --url"),
        (["--api-key", "0123456789abcdef0"], "--api-key is the key of a `vggx serve --api-key` server; it applies "
                                             "with --url"),
        # a mistyped scheme is a bad setting (exit 1), not an unreachable server (75: a Job would retry it)
        (["--url", "ftp://127.0.0.1:1"], "--url scheme 'ftp://' is not one of grpc://, grpcs://, http://, https://"),
        (["--url", "grpc+tls://127.0.0.1:8001"], "--url scheme 'grpc+tls://' is not one of"),
        (["--url", "127.0.0.1:1,tcp://127.0.0.1:2"], "--url scheme 'tcp://' is not one of"),
        # in-process options the served model never sees (it is what `vggx export` wrote)
        (["--url", "127.0.0.1:1", "--checkpoint", "foo.safetensors"], "--checkpoint is run in-process; Triton "
                                                                      "serves what `vggx export` put"),
        (["--protocol", "http"], "--protocol picks how to talk to a Triton server; it applies with --url"),
        (["--url", "127.0.0.1:1", "--threads", "2"], "--threads sets in-process backends' CPU threads; the Triton "
                                                     "server sets its own"),
    ])
    def test_bad_tls_and_header_options_are_one_line(self, clips, tmp_path, args, message):
        from typer.testing import CliRunner

        from vggx.cli import app

        result = CliRunner().invoke(app, ["upscale", str(clips["big"]), str(tmp_path / "o.mkv"), *args])
        assert result.exit_code == 1, result.output
        (line,) = result.stderr.strip().splitlines()
        assert message in line, line

    def test_a_key_in_the_environment_is_no_setting_for_in_process_runs(self, clips, tmp_path):
        """VGGX_API_KEY exported in a shell for the server's clients: an in-process run failed on it ("--ssl and
        --header apply to a Triton server", neither given), or on its form where it was a placeholder."""
        from typer.testing import CliRunner

        from vggx.cli import app

        for key in ("0123456789abcdef0", "short"):
            result = CliRunner().invoke(app, ["upscale", str(clips["big"]), str(tmp_path / f"{key}.mkv"), "--frames",
                                              "1", "--codec", "ffv1"], env={"VGGX_API_KEY": key})
            assert result.exit_code == 0, result.output

    def test_transient_errors_are_retried_with_backoff(self, caplog):
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as stub, open_runner(http_config(stub.url)) as runner:
            stub.fail_next = [503, 503]
            with caplog.at_level(logging.WARNING, logger="vggx.client.triton"):
                assert runner.infer(lr).shape == (1, 4, 64, 64, 3)
            assert stub.infer_calls == 3 and "retry 2/3" in caplog.text

    @pytest.mark.parametrize("how", ["close", "cut"])
    def test_a_connection_dropped_mid_request_is_retried(self, how):
        """A server killed or restarted while a window is in flight, a proxy hanging up, an answer cut short: HTTP's
        client says so with its own exceptions (not OSError), which failed the run at once (exit 1) and kept a pool
        from moving the window to another server."""
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as stub, open_runner(http_config(stub.url)) as runner:
            stub.drop_next = [how, how]
            assert runner.infer(lr).shape == (1, 4, 64, 64, 3)
            assert stub.infer_calls == 3

    def test_the_windows_in_flight_that_fail_together_are_one_warning(self, caplog):
        """A server that stops fails every window in flight at once: one line says the retry, not one a window."""
        from concurrent.futures import ThreadPoolExecutor

        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as stub, open_runner(http_config(stub.url)) as runner:
            runner.infer(lr)  # each thread's connection aside, the stub is up
            stub.infer_calls, stub.fail_next = 0, [503] * 4
            with caplog.at_level(logging.WARNING, logger="vggx.client.triton"), ThreadPoolExecutor(4) as pool:
                assert all(o.shape == (1, 4, 64, 64, 3) for o in pool.map(lambda _: runner.infer(lr), range(4)))
            assert stub.infer_calls == 8
        said = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
        assert len(said) == 1 and said[0].startswith(f"transient failure of Triton at {stub.url}"), said

    def test_a_model_unloaded_mid_run_is_retried_then_temporary(self, caplog):
        """A server that is stopping (a rolling restart, a pod evicted) unloads its models first: "unknown model ...
        has no available versions" for the model this run checked when it began. Retried, and once the retries
        are spent ServerUnavailable (exit 75: the Job retries it), not a permanent error (exit 1)."""
        from vggx.errors import EXIT_TEMPORARY

        gone = (400, "Request for unknown model: 'vggx' has no available versions")
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as stub, open_runner(http_config(stub.url, retries=2)) as runner:
            stub.fail_next = [gone, gone]
            with caplog.at_level(logging.WARNING, logger="vggx.client.triton"):
                assert runner.infer(lr).shape == (1, 4, 64, 64, 3)
            assert stub.infer_calls == 3 and "retry 2/2" in caplog.text
            stub.fail_next = [gone] * 3
            with pytest.raises(ServerUnavailable, match="still failing after 3 attempts") as err:
                runner.infer(lr)
            assert err.value.exit_code == EXIT_TEMPORARY

    def test_a_model_process_that_died_is_named_with_what_to_do(self):
        """A Python-backend model's process killed (for memory, mostly) is not started again, and `vggx serve` stops
        the server on it: the client said "is the server up?" after the model-gone answers that followed."""
        from vggx.errors import EXIT_TEMPORARY

        down = (500, "Stub process 'vggx_cpu_0' is not healthy.")
        gone = (400, "Request for unknown model: 'vggx' has no available versions")
        lr = np.zeros((1, 4, 24, 16, 3), np.uint8)
        with StubTriton() as stub, open_runner(http_config(stub.url, retries=2)) as runner:
            stub.fail_next = [down, down, gone]
            with pytest.raises(ServerUnavailable) as err:
                runner.infer(lr)
        assert str(err.value) == (
            f"Triton at {stub.url}: the process that ran its model 'vggx' died (500: Stub process 'vggx_cpu_0' is not "
            f"healthy.; then: 400: Request for unknown model: 'vggx' has no available versions), and Triton does not "
            f"start it again: the server must be started again. If it was killed for memory, smaller tiles hold less "
            f"(--tile; this request was 24x16)")
        assert err.value.exit_code == EXIT_TEMPORARY

    def test_a_request_turned_away_is_retried_then_rejected(self):
        """A server shedding load (its queue full: UNAVAILABLE "Exceeds maximum queue size") is up: once the
        retries are spent it is RequestRejected (an InferenceError `vggx bench` counts; exit 75 for a command),
        not "is the server up?" """
        from vggx.errors import EXIT_TEMPORARY, InferenceError, RequestRejected

        full = (503, "Exceeds maximum queue size")
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as stub, open_runner(http_config(stub.url, retries=1)) as runner:
            stub.fail_next = [full]
            assert runner.infer(lr).shape == (1, 4, 64, 64, 3)
            stub.fail_next = [full, full]
            with pytest.raises(RequestRejected, match="turned the request away after 2 attempts") as err:
                runner.infer(lr)
            assert isinstance(err.value, InferenceError) and err.value.exit_code == EXIT_TEMPORARY
            assert "is the server up" not in str(err.value)

    def test_bench_counts_requests_turned_away_as_errors(self):
        """perf_analyzer counts a rejected request as failed; `vggx bench` retried it (errors 0) and timed the
        back-off sleeps as latency, or gave up with "is the server up?" at a higher concurrency."""
        from vggx.benchmarks.bench import BenchConfig, run_bench

        full = (503, "Exceeds maximum queue size")
        with StubTriton() as stub:
            stub.fail_next = [full] * 3  # the first answer (before the window) and the window's first two
            cfg = BenchConfig(backends=(http_config(stub.url),), lr_size=(16, 16), warmup=0, windows=1,
                              window_requests=4)
            (point,) = run_bench(cfg).points
            assert (point.errors, point.requests) == (2, 2)
            stub.fail_next = [full] * 3  # the same through the CLI: said, not only in the JSON
            result = CliRunner().invoke(app, ["bench", "--url", stub.url, "--protocol", "http", "--lr-size", "16x16",
                                              "--warmup", "0", "--windows", "1", "--requests", "4"])
        assert result.exit_code == 0, result.output
        assert "warning: triton at concurrency 1: 2 of 4 requests failed" in " ".join(result.stderr.split())

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

    @pytest.mark.parametrize("shared_memory", [True, False], ids=["shared_memory", "network"])
    def test_an_output_unlike_the_configs_scale_is_an_error_not_frames(self, shared_memory):
        """A served model whose config says x4 but which upscales x2: through shared memory the region was read as
        the x4 output whatever the server said it wrote (the last window's frames, still there, passing for this
        one's), and over the network the runner's output check is what stops the wrong shape. Both say what the
        server returned against what the config makes the client expect."""
        from vggx.errors import InferenceError

        rng = np.random.default_rng(0)
        first, second = (rng.integers(0, 256, (1, 4, 16, 16, 3), dtype=np.uint8) for _ in range(2))
        with StubTriton(shared_memory=shared_memory) as stub, \
                TritonRunner(stub.url, protocol="http", shared_memory=shared_memory) as runner:
            np.testing.assert_array_equal(runner.infer(first), first.repeat(4, 2).repeat(4, 3))
            assert len(stub.regions) == (2 if shared_memory else 0)
            stub.served_scale = 2
            with pytest.raises(InferenceError, match=r"returned (UINT8|uint8) \(1, 4, 32, 32, 3\), expected "
                                                     r"(UINT8|uint8) \(1, 4, 64, 64, 3\)"):
                runner.infer(second)
            assert stub.shapes == [[1, 4, 16, 16, 3]] * 2  # the server answered: the client refused its answer

    def test_closing_against_a_hung_server_waits_the_health_timeout_once(self):
        """Ctrl-C in a run whose server hung: closing unregistered each thread's two regions in turn, and over HTTP
        each waited the 300 s inference timeout. Now one unregister waits ``health_timeout_s``, the rest are not
        sent, and every region is still freed here."""
        import threading

        lr = np.random.default_rng(0).integers(0, 256, (1, 4, 16, 24, 3), dtype=np.uint8)
        with StubTriton(shared_memory=True) as stub:
            runner = TritonRunner(stub.url, protocol="http", shared_memory=True, timeout_s=300, health_timeout_s=1)
            hold, served = threading.Event(), threading.Event()

            def another_thread():  # a worker of the run, alive as the run stops
                runner.infer(lr)
                served.set()
                hold.wait()

            worker = threading.Thread(target=another_thread, daemon=True)
            worker.start()
            np.testing.assert_array_equal(runner.infer(lr), lr.repeat(4, 2).repeat(4, 3))  # through the regions
            assert served.wait(30) and len(stub.regions) == 4
            keys = [key for key, _ in stub.regions.values()]
            stub.hang_unregister = True
            closing = threading.Thread(target=runner.close, daemon=True)
            closing.start()
            closing.join(timeout=60)  # generous: the bound is the 1 s health timeout, not 300 s a region
            hold.set()
            assert not closing.is_alive(), "closing the runner hung on a silent server"
            assert stub.unregister_calls == 1
        assert not [k for k in keys if Path(f"/dev/shm/{k}").exists()]


def _can_mount_a_small_shm() -> bool:
    import shutil
    import subprocess

    mount = ["unshare", "-m", "-r", "sh", "-c", "mount -t tmpfs -o size=8m tmpfs /dev/shm"]
    return shutil.which("unshare") is not None and subprocess.run(mount, capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount_a_small_shm(), reason="needs user and mount namespaces (unshare -m -r)")
def test_a_dev_shm_too_small_for_a_window_sends_tensors_over_the_network():
    """Docker's /dev/shm is 64 MB unless raised: the regions were made anyway (sparse), and the first page written
    past the limit was a SIGBUS, in this client or in the server writing the output. Now the pages are reserved
    first: no room is the network (a warning naming /dev/shm), or one error where shared memory was asked for."""
    import subprocess
    import sys

    script = textwrap.dedent("""
        import logging, os, sys
        sys.path.insert(0, sys.argv[1])
        import numpy as np
        from triton_stub import StubTriton
        from vggx.client.triton import TritonRunner
        from vggx.errors import ServerError
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        lr = np.zeros((1, 4, 256, 256, 3), np.uint8)  # 12.6 MB out, /dev/shm 8 MB
        with StubTriton(max_size="256x256") as stub:
            with TritonRunner(stub.url, protocol="http") as runner:
                print("shape", runner.infer(lr).shape, "leftover", os.listdir("/dev/shm"))
            with TritonRunner(stub.url, protocol="http", shared_memory=True) as runner:
                try:
                    runner.infer(lr)
                except ServerError as exc:
                    print("error:", exc)
        print("at the end", os.listdir("/dev/shm"))
    """)
    done = subprocess.run(["unshare", "-m", "-r", "sh", "-c", 'mount -t tmpfs -o size=8m tmpfs /dev/shm && exec "$@"',
                           "sh", sys.executable, "-c", script, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "shape (1, 4, 1024, 1024, 3) leftover []" in done.stdout, done.stdout
    assert "cannot use system shared memory (/dev/shm has 8 MB free, short of a 13 MB region; give it more" \
        in done.stderr, done.stderr
    assert "error: Triton at 127.0.0.1:" in done.stdout and "/dev/shm has 8 MB free" in done.stdout, done.stdout
    assert "at the end []" in done.stdout


class TestUnreachable:
    @pytest.mark.parametrize("protocol", ["grpc", "http"])
    def test_message_names_the_url_and_vggx_serve(self, protocol):
        url = f"127.0.0.1:{free_port()}"
        cfg = BackendConfig(Backend.TRITON, url=url, protocol=TritonProtocol(protocol))
        with pytest.raises(ServerError, match=rf"cannot reach Triton at {protocol}://{url} .*`vggx serve`"):
            open_runner(cfg)

    @pytest.mark.parametrize("protocol", ["grpc", "http"])
    def test_a_server_that_never_answers_is_an_error_in_seconds(self, protocol):
        """A listener that accepts the connection and says nothing (a hung server, a half-dead pod): opening the
        runner fails after ``health_timeout_s``, not after the 5-minute inference timeout."""
        import socket
        import threading

        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"127.0.0.1:{silent.getsockname()[1]}"
        errors: list[BaseException] = []

        def open_it():
            try:
                TritonRunner(url, protocol=protocol, timeout_s=300, health_timeout_s=1)
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=open_it, daemon=True)
        worker.start()
        worker.join(timeout=60)  # generous: the bound is the 1 s health timeout, not 300 s
        silent.close()
        assert not worker.is_alive(), "opening the runner hung on a silent server"
        assert len(errors) == 1 and isinstance(errors[0], ServerError)
        assert f"cannot reach Triton at {protocol}://{url}" in str(errors[0])

    def test_a_web_server_that_is_not_triton_is_a_wrong_address_in_one_line(self, clips, tmp_path):
        """An HTTP server that is not Triton (here http.server's 404 page): `vggx info --url` printed its whole page
        over 15 lines with exit 75 (try again later), `vggx upscale` said Triton there was not live."""
        from httpfiles import FileServer

        from vggx.client.triton import describe_server

        line = r"^127\.0\.0\.1:\d+ answers http, but not as Triton \(HTTP 404, and not Triton's JSON\): is this " \
               r"Triton's http port\? \(pass the right --url\)$"
        with FileServer(tmp_path) as web:
            url = f"127.0.0.1:{web.port}"
            with pytest.raises(ServerError, match=line) as caught:
                describe_server(url, protocol="http")
            assert not isinstance(caught.value, ServerUnavailable)
            with pytest.raises(ServerError, match=line) as caught:
                open_runner(http_config(url))
            assert not isinstance(caught.value, ServerUnavailable)
            result = CliRunner().invoke(app, ["info", "--url", url, "--protocol", "http"])
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.output

    def test_an_error_is_read_whole_and_shown_in_one_line(self):
        """ONNX Runtime's out-of-memory error from the served model says so past its first 300 characters: cut there
        before the checks, it was a fatal error, not smaller tiles (the review of this stop's diff)."""
        from tritonclient.utils import InferenceServerException

        from vggx.client.runners import OUT_OF_MEMORY
        from vggx.client.triton import _one_line, _reason

        oom = ("inference failed: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
               "running Conv node. Name:'/body/body.3/conv2/Conv' Status Message: /onnxruntime_src/onnxruntime/core/"
               "framework/bfc_arena.cc:376 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, "
               "onnxruntime::Stream*, bool, onnxruntime::WaitNotificationFn) Failed to allocate memory for requested "
               "buffer of size 4294967296")
        assert OUT_OF_MEMORY.search(_reason(InferenceServerException(oom, status="StatusCode.INTERNAL")))
        assert _one_line("\n\n  the reason\n<html>...") == "the reason"
        assert len(_one_line("x" * 500)) == 300 and _one_line("x" * 500).endswith("...")

    def test_url_must_be_host_port(self):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            TritonRunner("localhost")

    @pytest.mark.parametrize("url", ["127.0.0.1:99999", "127.0.0.1:70001", "127.0.0.1:0", "[::1:8000", "::1:8000",
                                     "[::1]8000", ":8001"])
    @pytest.mark.parametrize("protocol", ["grpc", "http"])
    def test_a_url_out_of_form_or_range_is_one_line(self, url, protocol, clips, tmp_path):
        """A port past 65535 was a ValueError traceback over HTTP and another port over gRPC (70001 is 4465); an
        unbalanced or missing IPv6 bracket a traceback too."""
        from typer.testing import CliRunner

        from vggx.cli import app

        result = CliRunner().invoke(app, ["upscale", str(clips["big"]), str(tmp_path / "o.mkv"), "--url", url,
                                          "--protocol", protocol])
        assert result.exit_code == 1, result.output
        assert result.stderr.strip().splitlines() == [
            f"error: --url must look like HOST:PORT with a port of 1-65535 (e.g. 127.0.0.1:8001, [::1]:8001), got "
            f"{url!r}"], result.output
        assert not (tmp_path / "o.mkv").exists()


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

    @pytest.mark.parametrize("protocol", ["grpc", "http"])
    def test_threads_that_ended_leave_no_shared_memory_behind(self, triton_server, protocol):
        """Each file of a folder run calls the shared runner from threads of its own: every thread's two regions
        stayed, in /dev/shm and on the server, until the runner closed (a long folder run filled /dev/shm)."""
        import os
        import threading

        ep = triton_server.endpoints
        lr = np.zeros((1, 8, 16, 16, 3), np.uint8)
        prefix = f"vggx-{os.getpid()}-"

        def ours():
            return sorted(p for p in os.listdir("/dev/shm") if p.startswith(prefix))

        with TritonRunner(ep.grpc if protocol == "grpc" else ep.http, protocol=protocol, shared_memory=True) as runner:
            seen = []
            for _ in range(3):  # three files, one worker thread each, one after the other
                worker = threading.Thread(target=runner.infer, args=(lr,))
                worker.start()
                worker.join()
                seen.append(len(ours()))
            assert seen == [2, 2, 2], seen  # a new thread's first window frees the regions of those that ended
        assert ours() == []

    def test_grpc_over_tls_with_metadata(self, served_repository, ort_runner, clips, tmp_path, tls_cert):
        """Triton's own gRPC TLS (``--grpc-use-ssl``): ``grpcs://`` with the CA, a header as gRPC metadata; the
        frames equal in-process ONNX Runtime's."""
        from typer.testing import CliRunner

        from vggx.cli import app
        from vggx.server import ServerConfig, TritonServer

        cert, key = tls_cert
        cfg = ServerConfig(model_repository=served_repository, http_port=0, grpc_port=0, metrics_port=0,
                           log_file=tmp_path / "tls.log", startup_timeout_s=180,
                           extra_args=("--grpc-use-ssl=true", f"--grpc-server-cert={cert}", f"--grpc-server-key={key}"))
        with TritonServer(cfg) as server:
            port = server.endpoints.grpc.rsplit(":", 1)[1]
            args = ["upscale", str(clips["twelve"]), str(tmp_path / "t.mkv"), "--codec", "ffv1", "--url",
                    f"grpcs://localhost:{port}", "--ca-cert", str(cert), "--header", "Authorization: Bearer x"]
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output
            assert f"triton grpcs://localhost:{port}" in result.stdout
            plain = CliRunner().invoke(app, ["upscale", str(clips["twelve"]), str(tmp_path / "p.mkv"), "--url",
                                             f"localhost:{port}"])
            assert plain.exit_code == 75 and "cannot reach Triton at grpc://localhost" in plain.stderr, plain.output
        upscale(UpscaleConfig(clips["twelve"], tmp_path / "o.mkv", encode=LOSSLESS), runner=ort_runner)
        for a, b in zip(decode_all(tmp_path / "t.mkv"), decode_all(tmp_path / "o.mkv"), strict=True):
            np.testing.assert_array_equal(a, b)

    def test_mutual_tls_needs_the_clients_certificate(self, served_repository, clips, tmp_path, tls_cert):
        """Triton asking for client certificates (``--grpc-use-ssl-mutual``): ``--client-cert/--client-key`` get
        in (here the test certificate, which is also the CA the server trusts); without them, one clear line."""
        from typer.testing import CliRunner

        from vggx.cli import app
        from vggx.server import ServerConfig, TritonServer

        cert, key = tls_cert
        cfg = ServerConfig(model_repository=served_repository, http_port=0, grpc_port=0, metrics_port=0,
                           log_file=tmp_path / "mtls.log", startup_timeout_s=180,
                           extra_args=("--grpc-use-ssl-mutual=true", f"--grpc-server-cert={cert}",
                                       f"--grpc-server-key={key}", f"--grpc-root-cert={cert}"))
        with TritonServer(cfg) as server:
            url = f"grpcs://localhost:{server.endpoints.grpc.rsplit(':', 1)[1]}"
            base = ["upscale", str(clips["aac"]), "--url", url, "--ca-cert", str(cert), "--frames", "4"]
            result = CliRunner().invoke(app, [*base[:2], str(tmp_path / "o.mp4"), *base[2:], "--client-cert",
                                              str(cert), "--client-key", str(key)])
            assert result.exit_code == 0, result.output
            assert (tmp_path / "o.mp4").is_file()
            refused = CliRunner().invoke(app, [*base[:2], str(tmp_path / "p.mp4"), *base[2:]])
            assert refused.exit_code == 1 and not (tmp_path / "p.mp4").exists(), refused.output
            (line,) = refused.stderr.strip().splitlines()
            assert line.startswith("error: cannot reach Triton at grpcs://localhost:"), line
            assert "does it want a client certificate (--client-cert" in line, line  # not "start a server": exit 1

    def test_a_folder_several_at_once_equals_inprocess(self, triton_server, ort_runner, clips, tmp_path):
        """``upscale_many`` with three files in flight on one server (each its own windows in flight, its own shared
        memory): every frame as in-process ONNX Runtime gives it."""
        from vggx.client import upscale_many

        names = ("twelve", "big", "gray")
        (tmp_path / "t").mkdir()
        configs = [UpscaleConfig(clips[n], tmp_path / "t" / f"{n}.mkv", encode=LOSSLESS, concurrency=2) for n in names]
        with open_runner(BackendConfig(Backend.TRITON, url=triton_server.endpoints.grpc)) as remote:
            outcomes = upscale_many(configs, remote, jobs=3)
        assert [o.output.name for o in outcomes] == [f"{n}.mkv" for n in names]
        for n in names:
            upscale(UpscaleConfig(clips[n], tmp_path / f"{n}.mkv", encode=LOSSLESS), runner=ort_runner)
            for a, b in zip(decode_all(tmp_path / "t" / f"{n}.mkv"), decode_all(tmp_path / f"{n}.mkv"), strict=True):
                np.testing.assert_array_equal(a, b)

    def test_windows_above_the_servers_host_memory_are_refused_and_the_client_tiles(self, portable_onnx,
                                                                                     onnx_metadata, start_server,
                                                                                     ort_runner, clips, tmp_path,
                                                                                     caplog):
        """A CPU server sent windows larger than its memory was killed by the kernel (and Triton does not start a
        model's process again: the server stopped). Its model now refuses them as out of memory and the client tiles;
        the frames are those of an in-process run with the tiles the client ended with, and the server serves on."""
        import tritonclient.grpc as grpc
        from tritonclient.utils import InferenceServerException

        from vggx.export.repository import ServingConfig, config_text, parse_config, write_model_repository

        per_pixel, budget = 1000, 1000 * 40 * 32  # windows of up to 1280 LR pixels: 40x56 is refused, 40x24 is not
        repo = tmp_path / "repo"
        write_model_repository(repo, backend="python", artefact=portable_onnx, metadata=onnx_metadata,
                               window=int(onnx_metadata["window"]), max_batch=4,
                               serving=ServingConfig(cpu_threads=1, warmup_size=(16, 16),
                                                     host_memory_budget=str(budget)))
        cfg = parse_config((repo / "vggx" / "config.pbtxt").read_text())
        cfg.parameters["host_bytes_per_pixel"].string_value = str(per_pixel)  # not measured: the test's sizes
        (repo / "vggx" / "config.pbtxt").write_text(config_text(cfg))
        window = int(onnx_metadata["window"])
        for server in start_server(repo, tmp_path / "server.log"):
            runner = open_runner(BackendConfig(Backend.TRITON, url=server.endpoints.grpc))
            with runner as remote, caplog.at_level(logging.WARNING):
                result = upscale(UpscaleConfig(clips["big"], tmp_path / "t.mkv", encode=LOSSLESS, concurrency=2),
                                 runner=remote)
            assert result.tile is not None and result.tile[0] * result.tile[1] <= 1280, result.tile
            assert "ran out of memory on 40x56 tiles" in caplog.text, caplog.text
            with grpc.InferenceServerClient(server.endpoints.grpc) as c:
                lr = np.zeros((1, window, 40, 56, 3), np.uint8)
                inp = grpc.InferInput("lr", list(lr.shape), "UINT8")
                inp.set_data_from_numpy(lr)
                with pytest.raises(InferenceServerException, match="out of memory: a 40x56 window needs about 2 MiB "
                                                                   "of host memory, above this model instance's "
                                                                   "budget of 1 MiB"):
                    c.infer("vggx", [inp])
                assert c.is_server_live() and c.is_model_ready("vggx")
        log = (tmp_path / "server.log").read_text()
        assert ("host memory budget 1 MiB (1 MiB shared by 1 instance(s) x 1 version(s)), 1.0 KiB per LR pixel of a "
                "window: windows of up to 1280 LR pixels (about 35x35) fit") in log
        upscale(UpscaleConfig(clips["big"], tmp_path / "o.mkv", encode=LOSSLESS, tile=result.tile), runner=ort_runner)
        for a, b in zip(decode_all(tmp_path / "t.mkv"), decode_all(tmp_path / "o.mkv"), strict=True):
            np.testing.assert_array_equal(a, b)

    def test_cli_url_implies_triton(self, triton_server, clips, tmp_path):
        from typer.testing import CliRunner

        from vggx.cli import app

        out = tmp_path / "o.mp4"
        result = CliRunner().invoke(app, ["upscale", str(clips["aac"]), str(out), "--url",
                                          triton_server.endpoints.grpc, "--frames", "4"])
        assert result.exit_code == 0, result.output
        assert "4 frames in" in result.stdout and "triton grpc://" in result.stdout and out.is_file()


# --------------------------------------------------------------------------------------- several servers


class TestExpandUrls:
    @staticmethod
    def resolver(table):
        """``socket.getaddrinfo``'s answers from a table (host -> addresses): DNS as a Kubernetes cluster has it."""
        import socket

        def resolve(host, port, type=0):
            if host not in table:
                raise socket.gaierror(f"unknown host {host}")
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, type, 6, "", (a, port)) for a in table[host]]

        return resolve

    def test_lists_commas_prefixes_and_duplicates(self):
        from vggx.client.triton import expand_urls

        resolve = self.resolver({"a": ["10.0.0.1"], "b": ["10.0.0.2"]})
        assert expand_urls("a:8001, grpc://b:8001/,a:8001", resolve) == ["a:8001", "b:8001"]
        assert expand_urls(["a:8001", "b:9001,10.0.0.9:8001"], resolve) == ["a:8001", "b:9001", "10.0.0.9:8001"]

    def test_a_name_with_several_addresses_is_one_url_per_address(self):
        """The headless Service: one A record per ready pod; IPv4 first, names of one address kept."""
        from vggx.client.triton import expand_urls

        resolve = self.resolver({"vggx-triton-pods": ["10.1.0.7", "10.1.0.5", "10.1.0.6"],
                                 "dual": ["10.2.0.1", "fd00::1"], "v6": ["fd00::1", "fd00::2"]})
        assert expand_urls("vggx-triton-pods:8001", resolve) == ["10.1.0.5:8001", "10.1.0.6:8001", "10.1.0.7:8001"]
        assert expand_urls("dual:8001", resolve) == ["dual:8001"]
        assert expand_urls("v6:8001", resolve) == ["[fd00::1]:8001", "[fd00::2]:8001"]
        assert expand_urls("localhost:8001") == ["localhost:8001"]  # the real resolver: one IPv4 address
        assert expand_urls("no-such-host.invalid:8001") == ["no-such-host.invalid:8001"]  # its runner reports it

    @pytest.mark.parametrize("bad", ["localhost", "a:b", ":8001", " , "])
    def test_bad_entries(self, bad):
        from vggx.client.triton import expand_urls
        from vggx.errors import ConfigError

        with pytest.raises(ConfigError, match="HOST:PORT"):
            expand_urls(bad)


class TestPoolAgainstStubs:
    def test_windows_are_spread_and_the_video_is_whole(self, clips, tmp_path):
        with StubTriton(window=4) as a, StubTriton(window=4) as b:
            cfg = UpscaleConfig(clips["twelve"], tmp_path / "o.mkv", http_config(f"{a.url},{b.url}"), LOSSLESS,
                                concurrency=4)
            with open_runner(cfg.backend) as pool:
                assert type(pool).__name__ == "TritonPool" and "2 servers" in pool.description
                result = upscale(cfg, runner=pool)
                assert sum(pool.windows) == result.windows == 6 and min(pool.windows) >= 1
                assert result.windows_per_server == dict(zip(pool.urls, pool.windows, strict=True))
            assert a.infer_calls >= 1 and b.infer_calls >= 1 and a.infer_calls + b.infer_calls == 6
        src = decode_all(clips["twelve"])
        for got, want in zip(decode_all(tmp_path / "o.mkv"), src, strict=True):
            np.testing.assert_array_equal(got, want.repeat(4, 0).repeat(4, 1))

    def test_one_at_a_time_goes_round(self):
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as a, StubTriton() as b, StubTriton() as c, \
                open_runner(http_config(f"{a.url},{b.url},{c.url}")) as pool:
            for _ in range(6):
                pool.infer(lr)
            assert pool.windows == [2, 2, 2]

    def test_a_server_that_stops_answering_hands_its_windows_over(self, clips, tmp_path, caplog):
        with StubTriton(window=4) as a, StubTriton(window=4) as b:
            b.fail_next = [503] * 1000  # overloaded or gone, after the pool opened
            cfg = UpscaleConfig(clips["twelve"], tmp_path / "o.mkv", http_config(f"{a.url},{b.url}", retries=1),
                                LOSSLESS, concurrency=2)
            with caplog.at_level(logging.WARNING, logger="vggx.client.triton"):
                result = upscale(cfg)
        assert result.frames == 12 and a.infer_calls == 6 and b.infer_calls == 2  # one window, tried twice
        assert caplog.text.count(f"Triton at {b.url} stopped answering; its windows go to the 1 other server") == 1
        src = decode_all(clips["twelve"])
        for got, want in zip(decode_all(tmp_path / "o.mkv"), src, strict=True):
            np.testing.assert_array_equal(got, want.repeat(4, 0).repeat(4, 1))

    def test_when_every_server_stops_the_run_fails_naming_them(self):
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as a, StubTriton() as b, open_runner(http_config(f"{a.url},{b.url}", retries=0)) as pool:
            a.fail_next = b.fail_next = [503] * 10
            with pytest.raises(ServerError, match=f"every Triton server stopped answering \\({a.url}: .*; {b.url}: "):
                pool.infer(lr)

    def test_a_bad_request_is_not_sent_to_the_others(self):
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as a, StubTriton() as b, open_runner(http_config(f"{a.url},{b.url}")) as pool:
            a.fail_next = b.fail_next = [400]
            with pytest.raises(ServerError, match="failed the request"):
                pool.infer(lr)
            assert a.infer_calls + b.infer_calls == 1

    def test_replicas_must_serve_the_same_model(self):
        with StubTriton(window=4) as a, StubTriton(window=8) as b, \
                pytest.raises(ServerError, match="the servers serve different models"):
            open_runner(http_config(f"{a.url},{b.url}"))

    def test_an_unreachable_server_is_named_at_start(self, caplog):
        """Named in a warning, and left out until it answers (it aborted the run: a restarting pod among several)."""
        down = f"127.0.0.1:{free_port()}"
        with StubTriton() as a, caplog.at_level(logging.WARNING, logger="vggx.client.triton"), \
                open_runner(http_config(f"{a.url},{down}")) as pool:
            assert pool.urls == [a.url]
        assert f"Triton at {down} does not answer; the run starts on the 1 other server" in caplog.text
        assert f"cannot reach Triton at http://{down}" in caplog.text


class TestPoolRefresh:
    """Servers that come back, and replicas an autoscaler adds behind one name, join a running pool."""

    @staticmethod
    @contextlib.contextmanager
    def _pool_of_two():
        """Two stubs and a pool over them (no retries, no background refresh): ``(a, b, pool)``."""
        from vggx.client.triton import TritonPool

        with StubTriton() as a, StubTriton() as b, \
                TritonPool([a.url, b.url], protocol="http", retries=0, refresh_s=3600) as pool:
            yield a, b, pool

    def test_a_dropped_server_takes_windows_again_once_it_answers(self, caplog):

        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with self._pool_of_two() as (_, b, pool):
            b.fail_next = [503] * 2
            for _ in range(4):
                pool.infer(lr)
            assert pool.windows[1] == 0 and 1 in pool._down
            b.fail_next = []  # restarted
            with caplog.at_level(logging.INFO, logger="vggx.client.triton"):
                pool.refresh()
            assert f"Triton at {b.url} answers again" in caplog.text and not pool._down
            for _ in range(4):
                pool.infer(lr)
            assert pool.windows[1] == 2

    def test_a_server_down_when_the_run_starts_is_left_out_until_it_answers(self, caplog):
        """Several --url replicas, one down at the start (a pod restarting): the run goes on the others (it aborted,
        exit 75) and the refresh takes the late one on; every server down is still ServerUnavailable."""
        from vggx.client.triton import TritonPool

        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        late = f"127.0.0.1:{free_port()}"
        with StubTriton() as a, caplog.at_level(logging.WARNING, logger="vggx.client.triton"), \
                TritonPool([a.url, late], protocol="http", retries=0, refresh_s=3600) as pool:
            assert pool.urls == [a.url] and f"Triton at {late} does not answer; the run starts on the 1 other" \
                in caplog.text
            pool.infer(lr)
            with StubTriton(port=int(late.rpartition(":")[2])) as b:
                pool.refresh()
                assert pool.urls == [a.url, b.url]
        with pytest.raises(ServerUnavailable, match="no Triton server answers"):
            TritonPool([late, f"127.0.0.1:{free_port()}"], protocol="http", retries=0)

    @staticmethod
    def _pair(**kw):
        """Two stubs on one port of two loopback addresses: the pods of one Service."""
        first = StubTriton(host="127.0.0.2", **kw)
        return first, StubTriton(host="127.0.0.3", port=first.port, **kw)

    def test_replicas_added_behind_the_name_join(self, caplog):
        from vggx.client.triton import TritonPool

        table = {"vggx-triton-pods": ["127.0.0.2"]}
        resolve = TestExpandUrls.resolver(table)
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        a, b = self._pair()
        with a, b, TritonPool(f"vggx-triton-pods:{a.port}", protocol="http", resolve=resolve,
                              refresh_s=3600) as pool:
            assert pool.urls == [a.url] and pool.description.startswith(f"triton http://{a.url} ")
            pool.infer(lr)
            table["vggx-triton-pods"].append("127.0.0.3")  # the autoscaler added a pod
            with caplog.at_level(logging.INFO, logger="vggx.client.triton"):
                pool.refresh()
            assert pool.urls == [a.url, b.url] and f"Triton at {b.url} joined: 2 servers now" in caplog.text
            for _ in range(4):
                pool.infer(lr)
            assert pool.windows == [3, 2] and b.infer_calls == 2

    def test_the_refresh_runs_by_itself(self):
        import time

        from vggx.client.triton import TritonPool

        table = {"svc": ["127.0.0.2"]}
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        a, b = self._pair()
        with a, b, TritonPool(f"svc:{a.port}", protocol="http", resolve=TestExpandUrls.resolver(table),
                              refresh_s=0.0) as pool:
            table["svc"].append("127.0.0.3")
            deadline = time.monotonic() + 30
            while len(pool.urls) < 2 and time.monotonic() < deadline:
                pool.infer(lr)  # each window may start a background refresh
                time.sleep(0.05)
            assert pool.urls == [a.url, b.url]

    @pytest.mark.parametrize("unfit", ["another window", "no vggx metadata"])
    def test_a_server_with_another_model_is_not_used(self, caplog, unfit):
        """Said once. A model without vggx's metadata made the refresh raise InferenceError (a traceback from its
        thread every 30 s, and dropped servers never brought back)."""
        from vggx.client.triton import TritonPool

        table = {"svc": ["127.0.0.2"]}
        a = StubTriton(host="127.0.0.2", window=4)
        b = StubTriton(host="127.0.0.3", port=a.port, window=8 if unfit == "another window" else 4)
        if unfit == "no vggx metadata":
            config = b.config()
            b.config = lambda: {k: v for k, v in config.items() if k != "parameters"}
        with a, b, TritonPool(f"svc:{a.port}", protocol="http", resolve=TestExpandUrls.resolver(table),
                              refresh_s=3600) as pool:
            table["svc"].append("127.0.0.3")
            with caplog.at_level(logging.WARNING, logger="vggx.client.triton"):
                pool.refresh()
                pool.refresh()
            said = "serves another model" if unfit == "another window" else "lacks the vggx model metadata"
            assert pool.urls == [a.url] and caplog.text.count("; not used") == 1 and said in caplog.text
            assert f"Triton at {b.url}" in caplog.text

    def test_a_window_one_replica_turns_away_goes_to_another(self):
        """One replica's queue full (load shedding: up, not down): its RequestRejected failed the whole run while
        the other replicas were idle. It is tried on the others first, and the overloaded one stays in the pool."""
        from vggx.errors import RequestRejected

        full = (503, "Exceeds maximum queue size")
        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with self._pool_of_two() as (a, b, pool):
            a.fail_next = [full]
            assert pool.infer(lr).shape == (1, 4, 64, 64, 3)  # a turned it away, b answered
            assert (a.infer_calls, b.infer_calls) == (1, 1) and not pool._down
            a.fail_next, b.fail_next = [full], [full]
            with pytest.raises(RequestRejected, match="turned the request away"):
                pool.infer(lr)
            assert not pool._down and pool.infer(lr).shape == (1, 4, 64, 64, 3)

    def test_a_rolling_restart_goes_on_on_the_server_back_first(self):
        """Every server dropped in turn, the first back before the last goes down: the run failed at once ("every
        Triton server stopped answering") instead of looking again, when the refresh was up to 30 s away."""

        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with self._pool_of_two() as (a, b, pool):
            a.fail_next = [503]
            pool.infer(lr)
            assert 0 in pool._down  # a restarts; b takes the windows
            b.fail_next = [503] * 20  # b restarts, a is back
            calls = a.infer_calls
            assert pool.infer(lr).shape == (1, 4, 64, 64, 3)
            assert a.infer_calls == calls + 1 and 0 not in pool._down
            a.fail_next = [503] * 20  # and when none is back, the run fails as before
            with pytest.raises(ServerUnavailable, match="every Triton server stopped answering"):
                pool.infer(lr)

    def test_a_dropped_server_back_with_another_model_takes_no_windows(self, caplog):
        """A rolling update: a replica restarted serving another model (here another window) was taken back
        unchecked, and its windows cropped or mixed into the video without a word."""

        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with self._pool_of_two() as (_, b, pool):
            b.fail_next = [503] * 2
            for _ in range(4):
                pool.infer(lr)
            assert 1 in pool._down
            b.fail_next, b.window = [], 8  # restarted, with another model
            with caplog.at_level(logging.WARNING, logger="vggx.client.triton"):
                pool.refresh()
                pool.refresh()
            assert 1 in pool._down and caplog.text.count(f"Triton at {b.url}: serves another model now") == 1
            calls = b.infer_calls
            for _ in range(4):
                pool.infer(lr)
            assert b.infer_calls == calls and pool.windows[1] == 0
            b.window = 4  # and back to the pool's model
            pool.refresh()
            assert not pool._down

    def test_a_pool_of_one_fails_as_its_server_does(self):
        from vggx.client.triton import TritonPool

        lr = np.zeros((1, 4, 16, 16, 3), np.uint8)
        with StubTriton() as a, TritonPool(a.url, protocol="http", retries=1) as pool:
            a.fail_next = [503] * 5
            with pytest.raises(ServerError, match=f"Triton at {a.url} still failing after 2 attempts"):
                pool.infer(lr)

    @pytest.mark.parametrize(("url", "pool"), [("127.0.0.1:8001", False), ("localhost:8001", False),
                                               ("[::1]:8001", False), ("vggx-triton-pods:8001", True),
                                               ("a:1,b:1", True)])
    def test_which_urls_get_a_pool(self, url, pool):
        from vggx.client.triton import may_grow

        assert may_grow(url) is pool


def test_resume_over_triton_goes_on_against_another_address(tmp_path):
    """A resumed run's record names the served model, not the server's address (pods come back elsewhere)."""
    from videoclips import make_video

    from vggx.errors import ServerError

    src = make_video(tmp_path / "in.mp4", frames=40)
    out = tmp_path / "out.mp4"
    encode = EncodeConfig(crf=0, segment_frames=8)
    with StubTriton() as first:
        first.fail_from = 10  # the server breaks after nine windows
        with pytest.raises(ServerError, match="failed the request"):
            upscale(UpscaleConfig(src, out, http_config(first.url), encode, concurrency=1, resume=True))
    assert not out.exists() and (tmp_path / ".out.mp4.vggx-resume" / "manifest.json").exists()
    with StubTriton() as second:  # the same model, elsewhere
        result = upscale(UpscaleConfig(src, out, http_config(second.url), encode, concurrency=1, resume=True))
    assert result.resumed_frames >= 8 and result.frames == 40 and second.infer_calls < 20


def test_resume_over_triton_refuses_a_model_served_with_other_weights_or_precision(tmp_path):
    """A resumed run's record held only the served model's name and sizes (and this machine's checkpoint file): a
    server that came back with another export under the same name (FP32 for FP16, or other weights) had its
    frames joined to the first model's in one video, and a client reinstalled elsewhere was refused."""
    from videoclips import make_video

    src = make_video(tmp_path / "in.mp4", frames=40)
    out = tmp_path / "out.mp4"
    encode = EncodeConfig(crf=0, segment_frames=8)
    served = {"checkpoint_sha256": "ab" * 32, "precision": "fp16", "serving_backend": "python"}
    with StubTriton() as first:
        first.parameters = dict(served)
        first.fail_from = 10
        with pytest.raises(ServerError, match="failed the request"):
            upscale(UpscaleConfig(src, out, http_config(first.url), encode, concurrency=1, resume=True))
    manifest = json.loads((tmp_path / ".out.mp4.vggx-resume" / "manifest.json").read_text())
    assert "checkpoint_sha256=" + "ab" * 32 in json.dumps(manifest) and '"checkpoint": null' in json.dumps(manifest)
    for change in ({"precision": "fp32"}, {"checkpoint_sha256": "cd" * 32}):
        with StubTriton() as second:
            second.parameters = {**served, **change}
            with pytest.raises(ConfigError, match=r"holds a run with other settings \(backend differs"):
                upscale(UpscaleConfig(src, out, http_config(second.url), encode, concurrency=1, resume=True))
    with StubTriton() as third:  # the same export again: goes on
        third.parameters = dict(served)
        result = upscale(UpscaleConfig(src, out, http_config(third.url), encode, concurrency=1, resume=True))
    assert result.resumed_frames >= 8 and result.frames == 40


def test_a_version_called_is_identified_by_its_own_published_weights():
    """With --versions-served 2, vggx export publishes each version's checkpoint_sha256 and precision as
    ``<key>@<version>``: a client calling one version records that version's, not the newest's (the plain keys)."""
    with StubTriton() as stub:
        stub.parameters = {"checkpoint_sha256": "ab" * 32, "precision": "fp16", "checkpoint_sha256@1": "cd" * 32,
                           "precision@1": "fp32", "checkpoint_sha256@2": "ab" * 32, "precision@2": "fp16"}
        with TritonRunner(stub.url, protocol="http", retries=0, model_version="1") as runner:
            assert runner.served == {"checkpoint_sha256": "cd" * 32, "precision": "fp32"}
        with TritonRunner(stub.url, protocol="http", retries=0) as runner:  # the newest
            assert runner.served == {"checkpoint_sha256": "ab" * 32, "precision": "fp16"}
        stub.parameters["serving_backend"] = "python"  # the model's: one for every version
        with TritonRunner(stub.url, protocol="http", retries=0, model_version="1") as runner:
            assert runner.served == {"checkpoint_sha256": "cd" * 32, "precision": "fp32", "serving_backend": "python"}


def test_a_pool_of_servers_with_other_weights_is_refused():
    """Replicas that serve other weights under one name: one video's windows from both (seams, flicker)."""
    from vggx.client.triton import TritonPool

    with StubTriton() as a, StubTriton() as b:
        a.parameters, b.parameters = {"checkpoint_sha256": "ab" * 32}, {"checkpoint_sha256": "cd" * 32}
        with pytest.raises(ServerError, match=r"the servers serve different weights of model 'vggx': .* checkpoint "
                                              r"abababababababab, .* checkpoint cdcdcdcdcdcdcdcd"):
            TritonPool([a.url, b.url], protocol="http", retries=0, refresh_s=3600)
        b.parameters = dict(a.parameters)
        TritonPool([a.url, b.url], protocol="http", retries=0, refresh_s=3600).close()


@pytest.mark.server
class TestPoolOfRealServers:
    def test_two_replicas_share_the_windows_and_match_onnxruntime(self, triton_server, second_server, ort_runner,
                                                                  clips, tmp_path):
        from conftest import inference_count
        from typer.testing import CliRunner

        from vggx.cli import app

        urls = [triton_server.endpoints.grpc, second_server.endpoints.grpc]
        before = [inference_count(u) for u in urls]
        out = tmp_path / "t.mkv"
        result = CliRunner().invoke(app, ["upscale", str(clips["twelve"]), str(out), "--url", urls[0],
                                          "--url", urls[1], "--codec", "ffv1"])
        assert result.exit_code == 0, result.output
        assert "triton grpc:// 2 servers" in result.stdout
        served = [inference_count(u) - b for u, b in zip(urls, before, strict=True)]
        assert min(served) >= 1 and sum(served) == 3, served  # 12 frames: 3 windows of 8, default 8 in flight
        assert f"windows per server: {urls[0]} {served[0]}, {urls[1]} {served[1]}" in result.stdout
        upscale(UpscaleConfig(clips["twelve"], tmp_path / "o.mkv", encode=LOSSLESS), runner=ort_runner)
        for a, b in zip(decode_all(out), decode_all(tmp_path / "o.mkv"), strict=True):
            np.testing.assert_array_equal(a, b)

    def test_a_replica_that_goes_down_mid_run_loses_no_frame(self, triton_server, second_server, ort_runner, clips,
                                                             tmp_path, caplog):
        """The second server stops (a pod evicted) after the pool opened: its windows go to the first."""
        cfg = UpscaleConfig(clips["twelve"], tmp_path / "t.mkv",
                            BackendConfig(Backend.TRITON, url=f"{triton_server.endpoints.grpc},"
                                          f"{second_server.endpoints.grpc}", retries=1), LOSSLESS, concurrency=2)
        with open_runner(cfg.backend) as pool:
            second_server.stop()
            with caplog.at_level(logging.WARNING, logger="vggx.client.triton"):
                result = upscale(cfg, runner=pool)
            assert pool.windows[1] == 0 and pool.windows[0] == result.windows == 3
        assert "stopped answering; its windows go to the 1 other server" in caplog.text
        upscale(UpscaleConfig(clips["twelve"], tmp_path / "o.mkv", encode=LOSSLESS), runner=ort_runner)
        for a, b in zip(decode_all(tmp_path / "t.mkv"), decode_all(tmp_path / "o.mkv"), strict=True):
            np.testing.assert_array_equal(a, b)
