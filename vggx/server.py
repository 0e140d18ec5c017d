"""Triton Inference Server's life cycle: find ``tritonserver``, prepare its environment, start, wait, stop.

``TritonServer`` owns one ``tritonserver`` process: entering it starts the server and waits until the model
is READY; leaving it shuts the server down (SIGTERM, then SIGKILL of its process group after a grace
period). The executable is the one on ``PATH`` (e.g. the NGC container), else the CPU build bundled in the
``nvidia-pytriton`` wheel, whose Python backend needs a little setup (TRT_NOTES.md §9): a writable copy of
``backends/`` with the stub for this Python, its shared libraries on ``LD_LIBRARY_PATH``, and this
interpreter's environment first on ``PATH`` so ``model.py`` imports what this venv has.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from vggx.errors import (
    SIGNAL_POLL_S,
    TERMINATING,
    ServerError,
    Terminated,
    deferred_signals,
    raise_if_terminating,
)
from vggx.paths import cache_dir, cache_folder, unwritable_folder
from vggx.shapes import parse_size

__all__ = [
    "CheckResult",
    "Endpoints",
    "ServerConfig",
    "Terminated",
    "TritonInstall",
    "TritonServer",
    "check_model",
    "find_tritonserver",
    "free_port",
    "sigterm_as_interrupt",
    "wait_for_signal",
]

log = logging.getLogger(__name__)

MODEL_NAME = "vggx"
_TAIL_LINES = 25
_ERROR_LINE = re.compile(r"^E\d{4} ")
# Logged by the CPU-only build on any host without a GPU (TRT_NOTES.md §9): not the reason for a failure.
_HARMLESS = ("CudaDriverHelper", "NVML", "DCGM", "cuda")


# The header an API key travels in (vggx serve --api-key, vggx upscale/bench/info --api-key), and the APIs it guards:
# all but health (Kubernetes' probes) and metadata. Over gRPC Triton reads it as "triton-grpc-protocol-<name>", which
# the client sends beside the plain name (client.triton: every header goes both ways).
API_KEY_HEADER = "vggx-api-key"
RESTRICTED_APIS = ("inference", "shared-memory", "model-repository", "model-config", "statistics", "trace", "logging")
_API_KEY = re.compile(r"[A-Za-z0-9._~+/-]{16,}")


def check_api_key(key: str) -> str:
    """``key`` if it can be an API key (16 or more of ``A-Z a-z 0-9 . _ ~ + / -``: a token, e.g. ``openssl rand -hex
    16``, that Triton's ``<apis>:<header>=<value>`` flag and HTTP headers carry as it is), else ``ConfigError``."""
    from vggx.errors import ConfigError

    if not _API_KEY.fullmatch(key):
        raise ConfigError("--api-key must be 16 or more letters, digits or . _ ~ + / - (e.g. `openssl rand -hex 16`);"
                          " got one that is not")
    return key


@dataclass(frozen=True)
class ServerConfig:
    """How to run ``tritonserver``; ports of 0 are replaced by free ones when the server starts."""

    model_repository: Path = Path("model_repository")
    host: str = "127.0.0.1"  # address all three endpoints bind to
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_name: str = MODEL_NAME  # the model whose READY state means "started"
    log_file: Path | None = None  # server log; None = a new file under the vggx cache folder
    startup_timeout_s: float = 300.0  # model loading + warm-up
    shutdown_timeout_s: float = 30.0  # grace period after SIGTERM before SIGKILL
    executable: Path | None = None  # tritonserver to run; None = PATH, else the nvidia-pytriton one
    extra_args: tuple[str, ...] = field(default_factory=tuple)  # passed to tritonserver verbatim
    # Requests to every API but health and metadata (probes, `vggx info`'s first look) must carry this key in the
    # header API_KEY_HEADER: Triton's own restricted APIs (--grpc-restricted-protocol, --http-restricted-api).
    api_key: str | None = None

    def __post_init__(self) -> None:
        if self.api_key is not None:
            check_api_key(self.api_key)
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ServerError(f"--{name.replace('_', '-')} must be 0 (any free port) .. 65535, got {port}")
        if self.startup_timeout_s <= 0:
            raise ServerError(f"startup timeout must be > 0 s, got {self.startup_timeout_s}")


@dataclass(frozen=True)
class Endpoints:
    """Where a started server listens; ``http``/``grpc`` are in tritonclient's ``host:port`` form."""

    host: str  # the address bound (``0.0.0.0``, ``::``: every one)
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def address(self) -> str:
        """The host as a client on this machine reaches it: a wildcard on loopback, an IPv6 address in brackets
        (``[::1]``: what gRPC targets and URLs need)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else ("::1" if self.host == "::" else self.host)
        return f"[{host}]" if ":" in host else host

    @property
    def http(self) -> str:
        return f"{self.address}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"{self.address}:{self.grpc_port}"

    @property
    def metrics(self) -> str:
        return f"http://{self.address}:{self.metrics_port}/metrics"


@dataclass(frozen=True)
class TritonInstall:
    """A ``tritonserver`` executable; ``bundled``: the nvidia-pytriton build, ``root`` its tritonserver/."""

    executable: Path
    bundled: bool = False
    root: Path | None = None


def find_tritonserver(executable: str | Path | None = None) -> TritonInstall:
    """``executable`` if given, else ``tritonserver`` on ``PATH``, else the one in ``nvidia-pytriton``.

    Raises:
        ServerError: none found (the message says what to install).
    """
    if executable is not None:
        path = Path(executable)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServerError(f"tritonserver executable not found or not executable: {path}")
        root = path.parent.parent
        return TritonInstall(path, bundled=_is_bundled(root), root=root)
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstall(Path(on_path))
    try:
        import pytriton
    except ImportError:
        raise ServerError("no tritonserver on PATH and nvidia-pytriton is not installed: "
                          "pip install 'vggx[serve]', or run inside the NGC Triton container") from None
    root = Path(pytriton.__file__).parent / "tritonserver"
    path = root / "bin" / "tritonserver"
    if not path.is_file():
        raise ServerError(f"nvidia-pytriton is installed but has no server binary at {path}")
    return TritonInstall(path, bundled=True, root=root)


def _is_bundled(root: Path) -> bool:
    return (root / "python_backend_stubs").is_dir()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it): an IPv4 or IPv6 address, or a name (its
    first address; :func:`check_port_free` then tries the port at each)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind(address)
            return s.getsockname()[1]
    except OSError as exc:  # a name that does not resolve, an address not on this machine
        raise ServerError(f"cannot listen on {host}: {exc.strerror or exc}") from None


def bind_address(host: str) -> str:
    """``host`` as the address literal Triton binds: a name resolved (its first IPv4 address, else its first IPv6
    one). Triton's HTTP and metrics services take no names: given ``localhost`` they listened on 255.255.255.255, so
    the readiness probe found nothing for the whole ``--timeout`` while gRPC, which resolves it, served.

    Raises:
        ServerError: a name that does not resolve.
    """
    import ipaddress

    if host == "":
        return host
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ServerError(f"cannot listen on {host}: {exc.strerror or exc}") from None
    ordered = sorted(found, key=lambda a: a[0] != socket.AF_INET)  # IPv4 first, as a client tries
    address = ordered[0][4][0]
    log.info("--host %s binds %s", host, address)
    return address


def check_port_free(host: str, port: int, flag: str) -> None:
    """``ServerError`` unless a server could listen on ``host``:``port`` now: started on a port another server holds,
    Triton fails a few seconds in, after that server has answered its readiness probes for it. A name is tried at
    each address it resolves to (``localhost``: ::1 and 127.0.0.1): any in use is an error, and one must bind (an
    address family the machine lacks, IPv6 turned off, is passed over)."""
    try:  # the addresses as the server will take them (a name may resolve to IPv6 only, or to both)
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerError(f"cannot listen on {host}:{port} ({flag}): {exc.strerror or exc}") from None
    failure, bound = None, False
    for family, _, _, _, address in addresses:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: a port in TIME_WAIT is free
            try:
                s.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ServerError(f"port {port} on {host} is already in use (another server?): pick another "
                                      f"{flag}, or 0 for a free one") from None
                failure = failure or exc  # this address family is not there (IPv6 off): another may be
                continue
            bound = True
    if not bound:
        raise ServerError(f"cannot listen on {host}:{port} ({flag}): {failure.strerror or failure}")


_PLATFORM_BACKENDS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch",
                      "tensorflow_savedmodel": "tensorflow", "tensorflow_graphdef": "tensorflow"}
_CONFIG_FIELD = re.compile(r'^\s*(platform|backend)\s*:\s*"([^"]+)"', re.MULTILINE)


def _check_exported(repo: Path) -> None:
    """A model vggx wrote whose version folders hold no model (the checked-in ``model_repository/vggx``: a config
    and ``model.py``, no ``model.onnx``) is refused before the server starts, not once Triton failed to load it."""
    from vggx.export.repository import Backend, unexported_models

    missing = unexported_models(repo)
    if missing:
        name, backend = next(iter(missing.items()))
        named = f" --name {name}" if name != MODEL_NAME else ""
        onnx = sorted((repo / name).glob("[0-9]*/model.onnx"))
        if backend == Backend.TENSORRT and onnx:  # exported where TensorRT was not: the engine is the step left
            raise ServerError(f"model {name!r} in {repo} has no TensorRT engine yet: {onnx[-1].parent.name}/"
                              f"model.onnx is there without model.plan (exported where TensorRT was not installed). "
                              f"Build the engine where TensorRT and a GPU are, with the `python -m vggx.export."
                              f"engine ...` command `vggx export` printed, and serve it with Triton's GPU server")
        how = (f"`vggx export --backend python{named}` (ONNX Runtime on the CPU, what the bundled tritonserver "
               f"serves) or, on a GPU, `vggx export --fp16{named}`" if backend == Backend.PYTHON
               else f"`vggx export --backend {backend.value}{named}`")
        raise ServerError(f"model {name!r} in {repo} has no exported model yet (no version folder holds its "
                          f"{backend.artefact_name}): run {how} first")


def _check_bundled_backends(repo: Path, install: TritonInstall) -> None:
    """The CPU ``tritonserver`` of nvidia-pytriton has the Python backend only: a repository model that needs
    another (``vggx export``'s default onnxruntime model, an engine) is refused before the server starts and fails
    to load it."""
    have = {p.name for p in (install.root / "backends").iterdir() if p.is_dir()} if install.root else set()
    for config in sorted(repo.glob("*/config.pbtxt")):
        try:
            fields = dict(_CONFIG_FIELD.findall(config.read_text()))
        except OSError:
            continue  # the server reports it
        backend = fields.get("backend") or _PLATFORM_BACKENDS.get(fields.get("platform", ""), "")
        if backend and have and backend not in have:
            raise ServerError(f"model {config.parent.name!r} needs Triton's {backend} backend, which the CPU "
                              f"tritonserver of nvidia-pytriton lacks (it has {', '.join(sorted(have))}): export it "
                              f"with `vggx export --backend python` to serve it here, or put a tritonserver that has "
                              f"the backend on PATH (the NGC Triton container)")


def _prepare_bundled_backends(install: TritonInstall) -> Path:
    """A writable ``backends/`` copy with the Python stub for this interpreter (built once, then reused)."""
    assert install.root is not None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = install.root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton has no Python backend stub for Python {version} ({stub})")
    stat = stub.stat()
    key = f"{install.root}|{version}|{stat.st_size}|{stat.st_mtime_ns}"
    key = hashlib.sha256(key.encode()).hexdigest()[:16]
    target = cache_dir() / "triton-backends" / key
    if (target / "python" / "triton_python_backend_stub").is_file():
        return target
    cache_folder(target.parent)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        try:
            shutil.copytree(install.root / "backends", staging / "backends")
            shutil.copy2(stub, staging / "backends" / "python" / "triton_python_backend_stub")
            try:
                (staging / "backends").rename(target)
            except OSError:  # another process won the race; its copy is as good as ours
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:  # a cache folder not writable, a full disk
        raise ServerError(f"cannot prepare the Python backend's writable copy in {target.parent}: "
                          f"{exc.strerror or exc}; set VGGX_CACHE_DIR to a writable folder") from None
    log.debug("prepared Python backend in %s", target)
    return target


def _server_env(install: TritonInstall) -> dict[str, str]:
    env = dict(os.environ)
    # The Python backend stub runs the first python on PATH: make it this interpreter's environment.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    if install.bundled and install.root is not None:
        libs = [install.root / "external_libs", install.root / "lib",
                install.root.parent.parent / "nvidia_pytriton.libs"]  # the stub links a bundled libcudart
        extra = [str(p) for p in libs if p.is_dir()]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*extra, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    return env


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the process that started us dies, even by SIGKILL,
    so a killed ``vggx serve`` or test run never leaves a server holding its ports."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


class TritonServer:
    """Owns one ``tritonserver`` process: ``with TritonServer(cfg) as server:`` starts it and waits until
    the model is READY; leaving the block stops it. ``start``/``stop`` do the same by hand.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.process: subprocess.Popen | None = None
        self.endpoints: Endpoints | None = None
        self.log_path: Path | None = None
        self.install: TritonInstall | None = None
        self._log_file = None
        # The Python-backend stubs once the model was READY: pid -> (model file, instance, shared-memory region)
        self._stubs: dict[int, tuple[str, str, str]] = {}
        self._regions: set[str] = set()  # every stub's region seen (unlinked at stop if a stub could not)
        self.killed = False  # stop() had to kill it: it did not shut down within shutdown_timeout_s

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def command(self, install: TritonInstall, endpoints: Endpoints) -> list[str]:
        cfg = self.config
        cmd = [str(install.executable), f"--model-repository={Path(cfg.model_repository).resolve()}"]
        for proto, port in (("http", endpoints.http_port), ("grpc", endpoints.grpc_port),
                            ("metrics", endpoints.metrics_port)):
            # IPv6: Triton's gRPC service joins address and port with a colon (brackets needed); its HTTP services
            # bind with libevhtp, which reads an address without an ``ipv6:`` prefix as IPv4
            bound = endpoints.host
            host = bound if ":" not in bound else f"[{bound}]" if proto == "grpc" else f"ipv6:{bound}"
            cmd += [f"--{proto}-address={host}", f"--{proto}-port={port}"]
        cmd += [f"--exit-timeout-secs={max(1, int(cfg.shutdown_timeout_s) - 5)}", "--strict-readiness=true"]
        if install.bundled:
            cmd.append(f"--backend-directory={_prepare_bundled_backends(install)}")
        if cfg.api_key is not None:
            rule = f"{','.join(RESTRICTED_APIS)}:{API_KEY_HEADER}={cfg.api_key}"
            cmd += [f"--grpc-restricted-protocol={rule}", f"--http-restricted-api={rule}"]
        return [*cmd, *cfg.extra_args]

    def start(self) -> TritonServer:
        """Start the server and block until the model is READY.

        Raises:
            ServerError: no repository/executable, the server exited (the message quotes the log's last
                lines), or the model was not ready within ``startup_timeout_s`` (the server is stopped).
        """
        if self.process is not None:
            raise ServerError("this TritonServer is already running")
        cfg = self.config
        repo = Path(cfg.model_repository)
        if not (repo / cfg.model_name / "config.pbtxt").is_file():
            others = sorted(p.parent.name for p in repo.glob("*/config.pbtxt")) if repo.is_dir() else []
            hint = (f"it serves {', '.join(others)}: pass --model" if others
                    else "run vggx export first")
            raise ServerError(f"{repo} holds no model {cfg.model_name!r} "
                              f"({repo / cfg.model_name / 'config.pbtxt'} is missing); {hint}")
        _check_exported(repo)
        self.install = find_tritonserver(cfg.executable)
        if self.install.bundled:
            _check_bundled_backends(repo, self.install)
        ports = [p or free_port(cfg.host) for p in (cfg.http_port, cfg.grpc_port, cfg.metrics_port)]
        if len(set(ports)) != 3:
            raise ServerError(f"HTTP, gRPC and metrics ports must differ, got {ports}")
        for port, flag in zip(ports, ("--http-port", "--grpc-port", "--metrics-port"), strict=True):
            check_port_free(cfg.host, port, flag)
        self.endpoints = Endpoints(bind_address(cfg.host), *ports)
        cmd = self.command(self.install, self.endpoints)
        self.log_path = Path(cfg.log_file) if cfg.log_file else (
            cache_dir() / "logs" / f"tritonserver-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
        shown = " ".join(cmd).replace(cfg.api_key, "***") if cfg.api_key else " ".join(cmd)
        log.info("starting %s (log: %s)", shown, self.log_path)
        if (why := unwritable_folder(self.log_path.parent)) is not None:  # (mkdir said "File exists" for a file)
            raise ServerError(f"cannot write the server log {self.log_path}: {why}")
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        except OSError as exc:
            raise ServerError(f"cannot write the server log {self.log_path}: {exc.strerror or exc}") from None
        try:
            # Own session: Ctrl-C in the terminal reaches us, not the server; we shut it down in order.
            self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                            stderr=subprocess.STDOUT, env=_server_env(self.install),
                                            start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as exc:
            self._close_log()
            raise ServerError(f"cannot run {cmd[0]}: {exc}") from exc
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        stubs = _group_stubs(self.process.pid)
        self._regions |= {region for _, _, region in stubs.values()}
        # watched for dying; not where the models may come and go (a --model-control-mode of the extra arguments)
        self._stubs = {} if any("model-control-mode" in a for a in cfg.extra_args) else stubs
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None and self.endpoints is not None
        url = f"http://{self.endpoints.http}/v2/models/{self.config.model_name}/ready"
        deadline = time.monotonic() + self.config.startup_timeout_s
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy
        while True:
            code = self.process.poll()
            if code is not None:
                raise ServerError(f"tritonserver exited with code {code} before model "
                                  f"{self.config.model_name!r} was ready\n{self.log_summary()}")
            with contextlib.suppress(urllib.error.URLError, OSError), \
                    opener.open(url, timeout=2) as resp:
                if resp.status == 200:
                    log.info("model %s ready at %s", self.config.model_name, self.endpoints.http)
                    return
            if time.monotonic() > deadline:
                raise ServerError(f"model {self.config.model_name!r} not ready after "
                                  f"{self.config.startup_timeout_s:.0f} s\n{self.log_summary()}")
            time.sleep(0.25)

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        """The last ``lines`` lines of the server log."""
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        with open(self.log_path, "rb") as f:
            tail = deque(f, maxlen=lines)
        return b"".join(tail).decode("utf-8", errors="replace").rstrip()

    def log_summary(self) -> str:
        """What went wrong, from the log: its error lines (Triton's ``E<mmdd>`` lines) and last lines."""
        text = self.log_tail(2000)
        lines = [line for line in text.splitlines() if line and line[0] not in "|+"]  # drop the option tables
        errors = [line[:400] for line in lines if _ERROR_LINE.match(line) and not any(
            noise in line for noise in _HARMLESS)]
        parts = ["server errors:", *errors[-8:]] if errors else []
        parts += [f"last lines of {self.log_path}:", *lines[-6:]]
        return "\n".join(parts)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float | None = None) -> None:
        """Block while the server runs (at most ``timeout`` s); ``ServerError`` if it exits by itself, or if a
        Python-backend stub it started died (killed for memory, a crash in a library): Triton does not start it
        again and keeps the model READY, failing every request it gets, so the server is as good as down."""
        if self.process is None:
            raise ServerError("the server is not started")
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            dead = [stub for pid, stub in self._stubs.items() if not _alive(pid)]
            if dead:
                model, instance, _ = dead[0]
                raise ServerError(f"the Python-backend process of {model} (instance {instance}) exited, and Triton "
                                  f"does not start it again: its model would fail every request while reported "
                                  f"READY; the server is stopped (start it again)") from None
            return
        raise ServerError(f"tritonserver exited with code {code}\n{self.log_summary()}")

    def stop(self) -> int | None:
        """Shut the server down (SIGTERM, then SIGKILL of its process group); return its exit code.

        A Ctrl-C or SIGTERM while it shuts down (a user or a supervisor tired of waiting) kills it at once; the
        cleanup is done all the same, and the signal raised after it.
        """
        proc, self.process = self.process, None
        if proc is None:
            return None
        with deferred_signals() as received:
            code = proc.poll()
            self._regions |= {region for _, _, region in _group_stubs(proc.pid).values()}
            if code is None:
                proc.send_signal(signal.SIGTERM)  # Triton finishes in-flight requests, unloads, exits
                deadline = time.monotonic() + self.config.shutdown_timeout_s
                while (code := proc.poll()) is None and received.signum is None and time.monotonic() < deadline:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(min(SIGNAL_POLL_S, max(deadline - time.monotonic(), 0)))
                if code is None:
                    if received.signum is None:
                        log.warning("tritonserver did not stop within %.0f s; killing it",
                                    self.config.shutdown_timeout_s)
                    else:
                        log.warning("interrupted again while tritonserver stops; killing it")
                    self.killed = True
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the server and its backend stubs
                    code = proc.wait()
            # Its Python-backend stubs share its process group and outlive a server that crashed or was killed (each
            # holds a model's memory, and they ignore SIGTERM): nothing of the group stays behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            _wait_group_gone(proc.pid)  # SIGKILL lands asynchronously: return once the stubs' memory is given back
            # A stub killed (or the server, before it could unlink them) leaves its shared-memory region in /dev/shm:
            # RAM, a Kubernetes pod's size-limited emptyDir across restarts
            for region in self._regions:
                with contextlib.suppress(OSError):
                    (Path("/dev/shm") / region).unlink()
            self._regions, self._stubs = set(), {}
            self._close_log()
            log.info("tritonserver exited with code %s", code)
        return code

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


_STUB = "triton_python_backend_stub"


def _stat(pid: int | str) -> tuple[str, int] | None:
    """A process's state letter (``Z``: a zombie) and process group, from Linux's ``/proc``; None where it is gone
    (or there is no ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # after the command's name
        return fields[0], int(fields[2])
    except (OSError, IndexError, ValueError):
        return None


def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes of group ``pgid``."""
    entries = os.listdir("/proc") if os.path.isdir("/proc") else ()
    return [int(e) for e in entries if e.isdigit() and (st := _stat(e)) is not None and st[1] == pgid and st[0] != "Z"]


def _group_stubs(pgid: int) -> dict[int, tuple[str, str, str]]:
    """The Python-backend stubs of process group ``pgid`` (Linux ``/proc``): pid -> (model file, instance name,
    shared-memory region), from their command lines (``stub MODEL.py REGION SIZE GROWTH PARENT LIBDIR TIMEOUT
    INSTANCE KIND``)."""
    stubs = {}
    for pid in _group(pgid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[0].endswith(_STUB) and len(argv) > 8 and argv[2].startswith(_STUB.replace("stub", "shm")):
            stubs[pid] = (argv[1], argv[8], argv[2])
    return stubs


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def _wait_group_gone(pgid: int, timeout_s: float = 10.0) -> None:
    """Wait until no live (non-zombie) process of group ``pgid`` is left, at most ``timeout_s`` (Linux ``/proc``;
    elsewhere nothing to read, no wait)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _group(pgid):
        time.sleep(0.05)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) as Ctrl-C does (main
    thread only), so the same exit paths clean up for both: the server shut down, a half-written output
    deleted. A job scheduler's or ``timeout``'s SIGTERM would otherwise kill the process on the spot.
    """

    def _raise(signum, frame):
        TERMINATING.set()  # in case the exception lands in a finalizer, which swallows it
        raise Terminated

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    TERMINATING.clear()
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_for_signal(server: TritonServer) -> None:
    """Block until Ctrl-C or SIGTERM (raised here as ``KeyboardInterrupt``) or until the server dies.

    Raises:
        KeyboardInterrupt: on SIGINT/SIGTERM; the caller's ``with`` block then stops the server.
        ServerError: the server exited by itself.
    """
    # Ctrl-C and SIGTERM are raised between waits, not inside Popen.wait: raised there, they can leave its lock held
    # (taken without blocking, then the handler runs before the ``try``), and stopping the server then waited for ever
    with sigterm_as_interrupt(), deferred_signals() as received:
        while True:
            server.wait(timeout=SIGNAL_POLL_S)
            received.raise_if_any()
            raise_if_terminating()


@dataclass(frozen=True)
class CheckResult:
    model: str
    versions: list[str]
    input_shape: list[int]
    output_shape: list[int]
    latency_s: float


def check_model(url: str, model_name: str = MODEL_NAME, *, protocol: str = "grpc",
                size: tuple[int, int] | None = None, api_key: str | None = None) -> CheckResult:
    """Send one window of random frames to ``model_name`` at ``url`` and check the answer's shape and type.

    ``size`` (LR H, W) defaults to a small valid size from the model's ``min_size`` parameter; ``api_key``: the
    server's ``--api-key``.

    Raises:
        ServerError: the server or model is not ready, the request failed, or the output is wrong.
    """
    import numpy as np
    from tritonclient.utils import InferenceServerException

    if protocol == "grpc":
        import tritonclient.grpc as tc
    elif protocol == "http":
        import tritonclient.http as tc
    else:
        raise ServerError(f"protocol must be grpc or http, got {protocol!r}")
    from vggx.client.triton import wire_headers

    kw = {"headers": wire_headers({API_KEY_HEADER: api_key} if api_key is not None else None, protocol)}
    try:
        with tc.InferenceServerClient(url) as client:
            if not client.is_model_ready(model_name, **kw):
                raise ServerError(f"model {model_name!r} is not ready at {url}")
            params, window = _params_and_window(client.get_model_config(model_name, **kw), protocol)
            meta = client.get_model_metadata(model_name, **kw)
            versions = list(meta.versions) if protocol == "grpc" else list(meta.get("versions", []))
            scale = int(params.get("scale", "4"))
            if size is None:
                lo = parse_size(params.get("min_size", "16x16"))
                hi = parse_size(params["max_size"]) if "max_size" in params else (1 << 30, 1 << 30)
                size = (min(max(lo[0], 32), hi[0]), min(max(lo[1], 32), hi[1]))  # 32 where the model takes it
            x = np.random.default_rng(0).integers(0, 256, (1, window, *size, 3), dtype=np.uint8)
            inp = tc.InferInput("lr", list(x.shape), "UINT8")
            inp.set_data_from_numpy(x)
            start = time.perf_counter()
            result = client.infer(model_name, [inp], outputs=[tc.InferRequestedOutput("sr")],
                                  headers=dict(kw["headers"]))  # tritonclient's HTTP infer adds to the dict
            latency = time.perf_counter() - start
            sr = result.as_numpy("sr")
    except InferenceServerException as exc:
        raise ServerError(f"check request to {model_name!r} at {url} failed: {exc}") from None
    expected = [1, window, size[0] * scale, size[1] * scale, 3]
    if sr is None or list(sr.shape) != expected or sr.dtype != np.uint8:
        got = None if sr is None else f"{sr.dtype} {list(sr.shape)}"
        raise ServerError(f"check request returned {got}, expected uint8 {expected}")
    return CheckResult(model_name, versions, list(x.shape), list(sr.shape), latency)


def _params_and_window(config, protocol: str) -> tuple[dict[str, str], int]:
    if protocol == "grpc":
        params = {k: v.string_value for k, v in config.config.parameters.items()}
        dims = list(config.config.input[0].dims)
    else:
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        dims = config["input"][0]["dims"]
    return params, int(params.get("window", dims[0]))
