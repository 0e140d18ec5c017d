"""vggx/server.py and `vggx serve` against a stand-in ``tritonserver`` (a tiny Python HTTP server).

The stand-in answers Triton's readiness URL, so start-up, readiness, log handling, SIGTERM shut-down and
SIGKILL escalation are tested in a second; the real server is exercised in test_triton_server.py.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vggx.errors import ServerError
from vggx.server import Endpoints, ServerConfig, TritonServer, _server_env, find_tritonserver, free_port

FAKE = textwrap.dedent("""\
    #!{python}
    import http.server, os, signal, sys, time
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    mode = os.environ.get("FAKE_TRITON_MODE", "serve")
    marker = os.environ.get("FAKE_TRITON_MARKER")
    print("I0101 fake tritonserver", " ".join(sys.argv[1:]), flush=True)
    if mode == "die":
        print('E0101 00:00:00.0 1 model_lifecycle.cc:642] "failed to load vggx: boom"', flush=True)
        print("error: creating server: Internal - failed to load all models", flush=True)
        sys.exit(3)
    if mode == "hang":  # never ready, ignores SIGTERM
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)
    def term(*_):
        if marker:
            open(marker, "w").write("SIGTERM")
        os._exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stuck" else term)  # stuck: ready, then deaf to SIGTERM
    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/v2/models/vggx/ready" else 404)
            self.end_headers()
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer((args["http-address"], int(args["http-port"])), Ready).serve_forever()
""")


@pytest.fixture
def fake_triton(tmp_path) -> Path:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    exe = bin_dir / "tritonserver"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(0o755)
    return exe


@pytest.fixture
def repo(tmp_path) -> Path:
    (tmp_path / "repo" / "vggx").mkdir(parents=True)
    (tmp_path / "repo" / "vggx" / "config.pbtxt").write_text('name: "vggx"\n')
    return tmp_path / "repo"


def _cfg(repo, exe, tmp_path, **kw) -> ServerConfig:
    return ServerConfig(**{"model_repository": repo, "http_port": 0, "grpc_port": 0, "metrics_port": 0,
                           "executable": exe, "log_file": tmp_path / "server.log", **kw})


def test_start_waits_for_ready_and_stop_sends_sigterm(repo, fake_triton, tmp_path, monkeypatch):
    marker = tmp_path / "terminated"
    monkeypatch.setenv("FAKE_TRITON_MARKER", str(marker))
    with TritonServer(_cfg(repo, fake_triton, tmp_path)) as server:
        assert server.running
        ep = server.endpoints
        assert len({ep.http_port, ep.grpc_port, ep.metrics_port}) == 3 and 0 not in (ep.http_port, ep.grpc_port)
        assert ep.grpc == f"127.0.0.1:{ep.grpc_port}"
        assert ep.metrics == f"http://127.0.0.1:{ep.metrics_port}/metrics"
        log = server.log_path.read_text()
        for arg in (f"--model-repository={repo.resolve()}", "--http-address=127.0.0.1",
                    f"--grpc-port={ep.grpc_port}", f"--metrics-port={ep.metrics_port}"):
            assert arg in log
        proc = server.process
    assert proc.returncode == 0
    assert marker.read_text() == "SIGTERM"
    assert not server.running


def test_server_that_dies_is_reported_with_its_error_lines(repo, fake_triton, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_TRITON_MODE", "die")
    server = TritonServer(_cfg(repo, fake_triton, tmp_path))
    with pytest.raises(ServerError, match=r"exited with code 3 before model 'vggx' was ready") as info:
        server.start()
    message = str(info.value)
    assert "failed to load vggx: boom" in message
    assert "failed to load all models" in message
    assert str(tmp_path / "server.log") in message
    assert server.process is None


def test_startup_timeout_stops_the_server_and_kills_it_if_it_ignores_sigterm(repo, fake_triton, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("FAKE_TRITON_MODE", "hang")
    server = TritonServer(_cfg(repo, fake_triton, tmp_path, startup_timeout_s=1.0, shutdown_timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(ServerError, match="not ready after 1 s"):
        server.start()
    assert time.monotonic() - started < 15
    assert server.process is None


def test_a_server_that_had_to_be_killed_is_said_to_be(repo, fake_triton, tmp_path, monkeypatch):
    """Past its shutdown time (a request longer than Triton's exit timeout), the server is killed: `vggx serve`
    exited 0 ("server stopped") as for a clean shutdown."""
    monkeypatch.setenv("FAKE_TRITON_MODE", "stuck")
    server = TritonServer(_cfg(repo, fake_triton, tmp_path, shutdown_timeout_s=0.5)).start()
    assert not server.killed
    server.stop()
    assert server.killed and not server.running


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_server_stops_kills_it_and_still_cleans_up(repo, fake_triton, tmp_path, monkeypatch,
                                                                       sig):
    """A second Ctrl-C (or a supervisor's SIGTERM) during a slow shutdown landed inside the wait for the server: the
    SIGKILL of its group and the shared-memory cleanup never ran, and a server deaf to SIGTERM kept its ports. Now it
    is killed at once, cleaned up, and the signal raised after."""
    import contextlib
    import threading

    from vggx.errors import Terminated
    from vggx.server import sigterm_as_interrupt

    monkeypatch.setenv("FAKE_TRITON_MODE", "stuck")
    server = TritonServer(_cfg(repo, fake_triton, tmp_path, shutdown_timeout_s=60)).start()
    pid = server.process.pid
    timer = threading.Timer(0.5, os.kill, (os.getpid(), sig))
    started = time.monotonic()
    try:
        with sigterm_as_interrupt(), pytest.raises(Terminated if sig == signal.SIGTERM else KeyboardInterrupt):
            timer.start()
            server.stop()
        assert time.monotonic() - started < 30 and server.killed
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # the whole group is gone
    finally:
        timer.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_missing_model_config_is_refused_before_starting(tmp_path, fake_triton):
    with pytest.raises(ServerError, match=r"holds no model 'vggx'.*run vggx export"):
        TritonServer(_cfg(tmp_path, fake_triton, tmp_path)).start()


def test_a_repository_of_other_models_names_them(tmp_path, fake_triton):
    for name in ("vggx-base", "vggx-tiny"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.pbtxt").write_text(f'name: "{name}"\n')
    with pytest.raises(ServerError, match=r"holds no model 'vggx' .*; it serves vggx-base, vggx-tiny: pass --model$"):
        TritonServer(_cfg(tmp_path, fake_triton, tmp_path)).start()


@pytest.mark.parametrize("which", ["http_port", "grpc_port", "metrics_port"])
def test_a_port_another_server_holds_is_refused_before_starting(repo, fake_triton, tmp_path, which):
    """Started anyway, Triton fails seconds later, after the other server has answered the readiness probes (and
    ``--check``) in its place: refused at once, and nothing is started."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        flag = "--" + which.replace("_", "-")
        with pytest.raises(ServerError, match=rf"^port {port} on 127.0.0.1 is already in use \(another server\?\): "
                                              rf"pick another {flag}, or 0 for a free one$"):
            TritonServer(_cfg(repo, fake_triton, tmp_path, **{which: port})).start()
    assert not (tmp_path / "server.log").exists()


def test_cli_serve_on_a_busy_port_is_one_line(repo, fake_triton, tmp_path):
    env = {**os.environ, "PATH": f"{fake_triton.parent}{os.pathsep}{os.environ['PATH']}"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _run_cli(["serve", "--model-repository", str(repo), "--http-port", str(port), "--grpc-port", "0",
                         "--metrics-port", "0", "--check"], env)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "ready" not in out, out
    assert err.strip().splitlines() == [f"error: port {port} on 127.0.0.1 is already in use (another server?): pick "
                                        f"another --http-port, or 0 for a free one"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0.0.0.0", "::1", "::"])
def test_free_ports_on_any_address_kind_pass_the_check(host):
    """IPv6 too: free_port bound an IPv4 socket to `::1` (a gaierror traceback from `vggx serve --host ::1`)."""
    from vggx.server import check_port_free

    check_port_free(host, free_port(host), "--http-port")


def test_a_host_name_is_bound_as_its_address(fake_triton, tmp_path):
    """`vggx serve --host localhost` waited its whole --timeout: Triton's HTTP and metrics services take no names
    (they listened on 255.255.255.255), so the readiness probe never connected. The name is resolved first."""
    from vggx.server import TritonInstall, bind_address

    assert bind_address("localhost") == "127.0.0.1"
    assert [bind_address(h) for h in ("127.0.0.1", "0.0.0.0", "::1", "::", "")] == ["127.0.0.1", "0.0.0.0", "::1",
                                                                                    "::", ""]
    server = TritonServer(ServerConfig(host="localhost"))
    server.install = TritonInstall(Path("tritonserver"))
    cmd = server.command(server.install, Endpoints(bind_address("localhost"), 8000, 8001, 8002))
    assert {a for a in cmd if "-address=" in a} == {f"--{p}-address=127.0.0.1" for p in ("http", "grpc", "metrics")}
    with pytest.raises(ServerError, match=r"^cannot listen on no\.such\.host\.invalid: "):
        bind_address("no.such.host.invalid")
    repo = tmp_path / "repo" / "vggx"  # what a started server is given (the stand-in binds a name itself)
    repo.mkdir(parents=True)
    (repo / "config.pbtxt").write_text('name: "vggx"\n')
    with TritonServer(_cfg(repo.parent, fake_triton, tmp_path, host="localhost")) as started:
        assert started.endpoints.host == "127.0.0.1"
    given = (tmp_path / "server.log").read_text()
    assert all(f"--{p}-address=127.0.0.1" in given for p in ("http", "grpc", "metrics")), given


def test_a_host_that_does_not_resolve_is_one_error():
    from vggx.server import check_port_free

    with pytest.raises(ServerError, match=r"^cannot listen on no\.such\.host\.invalid:8000 \(--http-port\): "):
        check_port_free("no.such.host.invalid", 8000, "--http-port")
    with pytest.raises(ServerError, match=r"^cannot listen on no\.such\.host\.invalid: "):
        free_port("no.such.host.invalid")  # port 0: the free one is looked for first


def test_a_log_file_that_cannot_be_written_is_one_error(repo, fake_triton, tmp_path):
    with pytest.raises(ServerError, match=rf"^cannot write the server log {tmp_path}: Is a directory$"):
        TritonServer(_cfg(repo, fake_triton, tmp_path, log_file=tmp_path)).start()
    (tmp_path / "a.mp4").write_bytes(b"")  # a folder in the path that is a file: said so (it was "File exists")
    with pytest.raises(ServerError, match=rf"^cannot write the server log {tmp_path}/a.mp4/x/s.log: {tmp_path}/a.mp4 "
                                          rf"is a file, not a folder$"):
        TritonServer(_cfg(repo, fake_triton, tmp_path, log_file=tmp_path / "a.mp4" / "x" / "s.log")).start()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("http_port", 70000, "--http-port must be 0 (any free port) .. 65535, got 70000"),
    ("grpc_port", -1, "--grpc-port must be 0 (any free port) .. 65535, got -1"),
    ("startup_timeout_s", 0, "startup timeout must be > 0 s, got 0"),
])
def test_server_config_validates(field, value, message):
    with pytest.raises(ServerError, match=f"^{re.escape(message)}$"):
        ServerConfig(**{field: value})


def test_equal_ports_are_refused(repo, fake_triton, tmp_path):
    cfg = ServerConfig(model_repository=repo, http_port=9000, grpc_port=9000, metrics_port=0,
                       executable=fake_triton)
    with pytest.raises(ServerError, match="must differ"):
        TritonServer(cfg).start()


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_tritonserver_on_path_wins(fake_triton, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_triton.parent}{os.pathsep}{os.environ['PATH']}")
    install = find_tritonserver()
    assert install.executable == fake_triton and not install.bundled


def test_bundled_tritonserver_is_found_and_prepared(monkeypatch, tmp_path):
    pytest.importorskip("pytriton")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no tritonserver there
    monkeypatch.setenv("VGGX_CACHE_DIR", str(tmp_path / "cache"))
    install = find_tritonserver()
    assert install.bundled and install.executable.name == "tritonserver"
    env = _server_env(install)
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "nvidia_pytriton.libs" in env["LD_LIBRARY_PATH"]
    cmd = TritonServer(ServerConfig()).command(install, Endpoints("127.0.0.1", 8000, 8001, 8002))
    backend_dir = Path(next(a for a in cmd if a.startswith("--backend-directory=")).split("=", 1)[1])
    assert (backend_dir / "python" / "triton_python_backend_stub").is_file()
    assert (backend_dir / "python" / "libtriton_python.so").is_file()
    assert "--grpc-port=8001" in cmd


def test_a_cache_folder_that_cannot_be_written_is_one_error(monkeypatch, tmp_path):
    """The bundled server's backends are copied into vggx's cache folder first: a read-only home (a container's) or a
    VGGX_CACHE_DIR under a file was a traceback (NotADirectoryError), before any server started."""
    from typer.testing import CliRunner

    from vggx.cli import app

    pytest.importorskip("pytriton")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no tritonserver there: the bundled one
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("VGGX_CACHE_DIR", str(tmp_path / "file" / "vggx"))
    repo = tmp_path / "repo"
    (repo / "vggx" / "1").mkdir(parents=True)
    (repo / "vggx" / "config.pbtxt").write_text('name: "vggx"\nbackend: "python"\nmax_batch_size: 4\n')
    result = CliRunner().invoke(app, ["serve", "--model-repository", str(repo), "--check"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == (
        f"error: cannot make vggx's cache folder {tmp_path / 'file' / 'vggx' / 'triton-backends'}: Not a directory; "
        "set VGGX_CACHE_DIR to a writable folder")


def test_a_model_the_bundled_server_has_no_backend_for_is_refused_before_starting(monkeypatch, tmp_path):
    """`vggx export` (the onnxruntime backend) then `vggx serve` on a machine with only nvidia-pytriton's CPU
    tritonserver (Python backend only): one line naming the way out, not the server's load failure and log lines."""
    from typer.testing import CliRunner

    from vggx.cli import app

    pytest.importorskip("pytriton")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no tritonserver there: the bundled one
    monkeypatch.setenv("VGGX_CACHE_DIR", str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    for name, field in (("vggx", 'backend: "python"'), ("vggx-gpu", 'platform: "onnxruntime_onnx"')):
        (repo / name).mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n{field}\nmax_batch_size: 4\n')
    result = CliRunner().invoke(app, ["serve", "--model-repository", str(repo), "--check"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == (
        "error: model 'vggx-gpu' needs Triton's onnxruntime backend, which the CPU tritonserver of nvidia-pytriton "
        "lacks (it has python): export it with `vggx export --backend python` to serve it here, or put a "
        "tritonserver that has the backend on PATH (the NGC Triton container)")


def test_explicit_executable_must_exist(tmp_path):
    with pytest.raises(ServerError, match="not found or not executable"):
        find_tritonserver(tmp_path / "nope")


def _run_cli(args, env):
    return subprocess.Popen([sys.executable, "-m", "vggx.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_cli_serve_runs_until_sigterm_and_stops_the_server(repo, fake_triton, tmp_path):
    marker = tmp_path / "terminated"
    env = {**os.environ, "PATH": f"{fake_triton.parent}{os.pathsep}{os.environ['PATH']}",
           "FAKE_TRITON_MARKER": str(marker)}
    log = tmp_path / "cli-server.log"
    proc = _run_cli(["serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
                     "--metrics-port", "0", "--host", "127.0.0.1", "--log-file", str(log), "--timeout", "30"], env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C to stop" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    text = "".join(lines) + out
    assert proc.returncode == 0, err
    assert "model vggx ready" in text and "gRPC     127.0.0.1:" in text and str(log) in text
    assert "server stopped" in text
    assert marker.read_text() == "SIGTERM"
    assert "fake tritonserver" in log.read_text()


def test_cli_serve_failure_is_one_error_and_exit_1(repo, fake_triton, tmp_path):
    env = {**os.environ, "PATH": f"{fake_triton.parent}{os.pathsep}{os.environ['PATH']}",
           "FAKE_TRITON_MODE": "die"}
    proc = _run_cli(["serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
                     "--metrics-port", "0", "--log-file", str(tmp_path / "s.log")], env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.startswith("error: tritonserver exited with code 3")
    assert "Traceback" not in err


def test_cli_serve_help_shows_the_flags():
    from typer.testing import CliRunner

    from vggx.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--model-repository", "--host", "--http-port", "--grpc-port", "--metrics-port", "--check",
                 "--log-file", "--timeout", "Example: vggx serve"):
        assert flag in result.output


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_server_dies_with_a_killed_parent(repo, fake_triton, tmp_path):
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from vggx.server import ServerConfig, TritonServer
        cfg = ServerConfig(model_repository=Path({str(repo)!r}), http_port=0, grpc_port=0, metrics_port=0,
                           executable=Path({str(fake_triton)!r}), log_file=Path({str(tmp_path / "s.log")!r}))
        server = TritonServer(cfg).start()
        print(server.process.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    assert _alive(server_pid)
    parent.kill()  # SIGKILL: no Python clean-up runs
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(server_pid)


def test_no_tritonserver_anywhere_names_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    monkeypatch.setitem(sys.modules, "pytriton", None)  # import pytriton -> ImportError
    with pytest.raises(ServerError, match=r"pip install 'vggx\[serve\]'.*NGC Triton container"):
        find_tritonserver()


@pytest.mark.parametrize(("host", "address"), [
    ("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("::1", "[::1]"), ("fd00::5", "[fd00::5]"),
    ("triton.local", "triton.local")])
def test_endpoints_are_what_a_client_here_connects_to(host, address):
    """The readiness probe, `vggx serve --check` and the addresses it prints: a wildcard bind on loopback, IPv6 in
    brackets (`::1:8001` is no gRPC target, `http://::1:8000` no URL: --check failed on a server that was up)."""
    ep = Endpoints(host, 8000, 8001, 8002)
    assert (ep.http, ep.grpc, ep.metrics) == (f"{address}:8000", f"{address}:8001", f"http://{address}:8002/metrics")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_inside_the_servers_wait_is_raised_after_it(sig):
    """`vggx serve` waits in ``Popen.wait``, which takes a lock without blocking and then enters its ``try``: a
    signal raised between the two left the lock held, and stopping the server (``Popen.wait`` again, blocking)
    waited for ever. Now the signal is raised between waits, with the lock let go; SIGTERM as ``Terminated``."""
    import threading

    from vggx.errors import Terminated
    from vggx.server import wait_for_signal

    lock = threading.Lock()

    class Server:  # a wait that holds a lock as Popen's does while the signal lands
        calls = 0

        def wait(self, timeout=None):
            Server.calls += 1
            if Server.calls == 2:
                assert lock.acquire(False)
                os.kill(os.getpid(), sig)
                for _ in range(1000):  # (where Python runs the handler, if os.kill has not)
                    pass
                lock.release()
            time.sleep(0.01)

    with pytest.raises(Terminated if sig == signal.SIGTERM else KeyboardInterrupt):
        wait_for_signal(Server())
    assert not lock.locked() and Server.calls == 2


def test_a_model_with_nothing_exported_is_refused_before_the_server_starts(fake_triton, tmp_path):
    """The checked-in model_repository/vggx (a config and model.py, no model.onnx): `vggx serve` on a fresh checkout
    started Triton, which failed to load it, and printed its log. Now one line says what to run, and no server
    starts. A model vggx did not write (no serving_backend parameter) is left to Triton; once exported it serves."""
    import shutil

    root = Path(__file__).resolve().parents[2]
    repo = tmp_path / "repo"
    shutil.copytree(root / "model_repository" / "vggx", repo / "vggx", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "sr2").mkdir()
    shutil.copy(repo / "vggx" / "config.pbtxt", repo / "sr2" / "config.pbtxt")
    (repo / "sr2" / "1").mkdir()
    (repo / "sr2" / "1" / "model.py").write_text("")
    for name in ("vggx", "sr2"):
        text = (repo / name / "config.pbtxt").read_text().replace('name: "vggx"', f'name: "{name}"')
        (repo / name / "config.pbtxt").write_text(text)
    with pytest.raises(ServerError) as exc:
        TritonServer(_cfg(repo, fake_triton, tmp_path, model_name="vggx")).start()
    assert str(exc.value) == (f"model 'sr2' in {repo} has no exported model yet (no version folder holds its "
                              f"model.onnx): run `vggx export --backend python --name sr2` (ONNX Runtime on the CPU, "
                              f"what the bundled tritonserver serves) or, on a GPU, `vggx export --fp16 --name sr2` "
                              f"first")
    assert not (tmp_path / "server.log").exists()  # refused before the server started
    (repo / "sr2" / "1" / "model.onnx").write_bytes(b"onnx")  # (the server is a stand-in: any bytes)
    with pytest.raises(ServerError, match=r"model 'vggx' in .* --backend python` "):
        TritonServer(_cfg(repo, fake_triton, tmp_path, model_name="vggx")).start()
    (repo / "vggx" / "1" / "model.onnx").write_bytes(b"onnx")
    with TritonServer(_cfg(repo, fake_triton, tmp_path)) as server:
        assert server.running
    shutil.rmtree(repo / "sr2")  # a model of someone else's: a config of its own, no serving_backend
    (repo / "other" / "1").mkdir(parents=True)
    (repo / "other" / "config.pbtxt").write_text('name: "other"\nbackend: "python"\n')
    (repo / "other" / "1" / "model.py").write_text("")
    with TritonServer(_cfg(repo, fake_triton, tmp_path)) as server:
        assert server.running


def test_an_engine_left_to_build_is_named_not_a_missing_export(tmp_path, fake_triton):
    """`vggx export --fp16` without TensorRT writes model.onnx and config.pbtxt and prints the engine's build command;
    serving that repository said "no exported model yet: run `vggx export --backend tensorrt`", which only adds
    another version without an engine."""
    import shutil

    root = Path(__file__).resolve().parents[2]
    repo = tmp_path / "repo"
    shutil.copytree(root / "model_repository" / "vggx", repo / "vggx", ignore=shutil.ignore_patterns("__pycache__"))
    config = repo / "vggx" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "python"', 'string_value: "tensorrt"'))
    assert 'string_value: "tensorrt"' in config.read_text()
    (repo / "vggx" / "1" / "model.py").unlink()
    (repo / "vggx" / "1" / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(ServerError, match=r"model 'vggx' in .* has no TensorRT engine yet: 1/model.onnx is there "
                                          r"without model.plan .* `python -m vggx.export.engine ...` command"):
        TritonServer(_cfg(repo, fake_triton, tmp_path, model_name="vggx")).start()
