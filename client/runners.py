"""Inference backends behind one small protocol: ``Runner.infer(lr) -> sr`` plus the model's ``info``.

Every runner takes ``lr`` uint8 ``(n, T, h, w, 3)`` RGB and returns ``sr`` uint8 ``(n, T, s·h, s·w, 3)``;
``T``, ``s`` and the accepted sizes come from :class:`ModelInfo`, read from the model. ``infer`` may be
called from several threads at once. Runners are context managers; :func:`open_runner` returns one
that the caller closes.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from vggx.errors import ConfigError, DeviceOutOfMemoryError, InferenceError, TensorRTNotInstalledError
from vggx.paths import cache_dir as vggx_cache_dir
from vggx.paths import cache_folder

from .model_info import ModelInfo

__all__ = [
    "Backend",
    "BackendConfig",
    "OnnxRuntimeRunner",
    "Runner",
    "TensorRTRunner",
    "TorchRunner",
    "TritonProtocol",
    "cached_onnx",
    "cached_onnx_path",
    "open_runner",
    "shipped_onnx_path",
    "triton_urls",
]

log = logging.getLogger(__name__)

# How runtimes word running out of device memory: PyTorch ("CUDA out of memory", also what vggx's served torch model
# answers), ONNX Runtime's CUDA provider ("CUDA failure 2: out of memory", its arena's "Failed to allocate memory").
OUT_OF_MEMORY = re.compile(r"out of memory|failed to allocate memory", re.IGNORECASE)


class Backend(enum.Enum):
    ONNXRUNTIME = "onnxruntime"
    TORCH = "torch"
    TENSORRT = "tensorrt"
    TRITON = "triton"


class TritonProtocol(enum.Enum):
    GRPC = "grpc"
    HTTP = "http"


@dataclass(frozen=True)
class BackendConfig:
    """Which backend runs the model, and its options (options that do not apply are errors)."""

    backend: Backend = Backend.ONNXRUNTIME
    checkpoint: Path | None = None  # in-process backends: .safetensors (default: shipped); tensorrt: a .plan
    device: str = "cpu"  # cpu | cuda | cuda:N (torch, onnxruntime)
    fp16: bool = False  # torch on cuda only
    compile: bool = False  # torch on cuda only: torch.compile (Inductor) before CUDA-graph capture
    threads: int | None = None  # CPU threads of in-process backends (None: the library's default)
    url: str | None = None  # triton: HOST:PORT, or several separated by commas (replicas: windows spread over them)
    protocol: TritonProtocol = TritonProtocol.GRPC
    model_name: str = "vggx"
    model_version: str = ""  # triton: the version to call ("" = the newest the server serves)
    shared_memory: bool | None = None  # triton: system shared memory; None = when the server is local
    retries: int = 4  # triton: attempts after a transient failure (with exponential backoff)
    timeout_s: float = 300.0  # triton: per request
    cache_dir: Path | None = None  # onnxruntime: where exported ONNX files are cached
    ssl: bool = False  # triton: TLS (https:// and grpcs:// in --url set it)
    ca_cert: Path | None = None  # triton with TLS: the CA that signed the server's certificate (default: system's)
    headers: tuple[tuple[str, str], ...] = ()  # triton: sent with every call, e.g. ("Authorization", "Bearer ...")
    client_cert: tuple[Path, Path] | None = None  # triton with mutual TLS: this client's certificate and key files

    def __post_init__(self) -> None:
        # as a caller writes them: names for the enums, str for paths (a path's methods are used on them later)
        for name, kind, flag in (("backend", Backend, "--backend"), ("protocol", TritonProtocol, "--protocol")):
            value = getattr(self, name)
            if not isinstance(value, kind):
                try:
                    object.__setattr__(self, name, kind(value))
                except ValueError:
                    raise ConfigError(f"{flag} must be one of {', '.join(k.value for k in kind)}, got "
                                      f"{value!r}") from None
        for name in ("checkpoint", "cache_dir", "ca_cert"):
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, Path(getattr(self, name)))
        if self.client_cert is not None:
            object.__setattr__(self, "client_cert", tuple(Path(p) for p in self.client_cert))
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"--device must be cpu, cuda or cuda:N (a GPU's index), got {self.device!r}")
        if self.fp16 and self.backend is not Backend.TORCH:
            raise ConfigError(f"--fp16 applies to the torch backend (got --backend {self.backend.value}; "
                              f"TensorRT engines carry their precision, Triton serves what was exported)")
        if self.fp16 and not self.cuda:
            raise ConfigError("--fp16 needs --device cuda (FP16 on the CPU is slower than FP32)")
        if self.compile and (self.backend is not Backend.TORCH or not self.cuda):
            raise ConfigError("--compile applies to the torch backend on --device cuda "
                              f"(got --backend {self.backend.value} --device {self.device})")
        if self.backend is Backend.TRITON and not self.url:
            raise ConfigError("the triton backend needs --url HOST:PORT (start a server with `vggx serve`)")
        if self.url and self.backend is not Backend.TRITON:
            raise ConfigError(f"--url sends work to Triton; it cannot be combined with --backend "
                              f"{self.backend.value}")
        if self.model_version and self.backend is not Backend.TRITON:
            raise ConfigError(f"--model-version picks a version Triton serves; it applies with --url, not --backend "
                              f"{self.backend.value}")
        if self.model_version and not self.model_version.isdigit():
            raise ConfigError(f"--model-version must be a version number, got {self.model_version!r}")
        if self.model_name != "vggx" and self.backend is not Backend.TRITON:
            raise ConfigError(f"--model names a model Triton serves; it applies with --url, not --backend "
                              f"{self.backend.value} (which runs --checkpoint)")
        if (self.ssl or self.headers) and self.backend is not Backend.TRITON:
            raise ConfigError(f"--ssl and --header apply to a Triton server (--url), not --backend "
                              f"{self.backend.value}")
        if (self.ca_cert is not None or self.client_cert is not None) and not self.ssl:
            raise ConfigError("--ca-cert and --client-cert apply with TLS: an https:// or grpcs:// --url, or --ssl")
        if self.checkpoint is not None and self.backend is Backend.TRITON:
            raise ConfigError("--checkpoint is run in-process; Triton serves what `vggx export` put in its repository "
                              "(--model picks the model)")
        if self.threads is not None and self.backend is Backend.TRITON:
            raise ConfigError("--threads sets in-process backends' CPU threads; the Triton server sets its own")
        if self.cuda and self.backend is Backend.TRITON:
            raise ConfigError("--device applies to in-process backends; the Triton server picks its own")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}")

    @property
    def cuda(self) -> bool:
        """Whether ``device`` names a GPU (``cuda`` or ``cuda:N``)."""
        return self.device.startswith("cuda")


_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def _ort_providers(device: str) -> list[tuple[str, dict[str, str]]]:
    """ONNX Runtime's execution providers for ``device`` (``cuda:N``: the CUDA provider on GPU N)."""
    if not device.startswith("cuda"):
        return [("CPUExecutionProvider", {})]
    _, _, index = device.partition(":")
    return [("CUDAExecutionProvider", {"device_id": index or "0"})]


@runtime_checkable
class Runner(Protocol):
    """What the pipeline needs from a backend."""

    info: ModelInfo
    description: str  # e.g. "onnxruntime (CPUExecutionProvider) model.onnx", for the summary line

    def infer(self, lr: np.ndarray) -> np.ndarray:
        """``lr`` uint8 ``(n, T, h, w, 3)`` -> ``sr`` uint8 ``(n, T, s·h, s·w, 3)``; thread-safe."""
        ...

    def close(self) -> None: ...


# Host memory one window holds, per LR pixel, as a multiple of the generator's FP32 activations there
# (vggx.generator.flops.activation_bytes: PyTorch's peak, each tensor freed after its last use). Measured as the peak
# RSS of `/usr/bin/time -v vggx upscale IN.mp4 OUT.mp4` on 8-frame clips (2 windows) with the shipped tiny model on a
# 2-core Xeon, onnxruntime's CPU provider without its memory pattern (OnnxRuntimeRunner): 0.80 / 1.80 / 7.54 GiB at
# 90x160 / 180x320 / 360x640, 1.61x / 1.72x the activations at the two larger (2.7x at 90x160, where the process's
# 0.47 GiB before its first window, Python, PyTorch and the session, is most of it; less those: 1.1x / 1.2x / 1.6x);
# 2.0 is 16 % above the largest (benchmarks/RESULTS.md, "Host memory of in-process CPU runs"); measured with PyTorch
# loaded, which a run on an exported graph no longer imports (0.2 GiB less: on the safe side). PyTorch eager 1.9x
# at 180x320 (2.1 GiB, with PyTorch's own 0.6 GiB). A 720p run in 3 tiles: 10.3 GiB, 14.7 estimated.
HOST_MEMORY_FACTOR = {"onnxruntime": 2.0, "torch": 1.5}
HOST_MEMORY_SHARE = 0.7  # of the memory available as the runner opens: the rest for frames, encoders, the system


def host_bytes_per_pixel(config: Any, window: int, runtime: str) -> float:
    """Bytes of host memory a window of ``config``'s generator holds per LR pixel, run by ``runtime`` (a key of
    :data:`HOST_MEMORY_FACTOR`) on the CPU: its FP32 activations per pixel (:func:`activations_per_pixel`), scaled."""
    return HOST_MEMORY_FACTOR[runtime] * activations_per_pixel(config, window)


_ACTIVATIONS_REVISION = 1  # of how activations_per_pixel works them out: a new one is not read from an old cache


@functools.lru_cache(maxsize=8)
def activations_per_pixel(config: Any, window: int) -> float:
    """FP32 activations of a window of ``config``'s generator per LR pixel, at 360x640 (they grow with the pixels).
    Worked out once (a forward on PyTorch's meta device, whose first use imports a second of PyTorch: every CPU run
    paid it as it started) and kept in vggx's cache (``memory/``), keyed by the config and the window."""
    import dataclasses
    import hashlib
    import json

    from vggx.paths import write_atomic

    text = json.dumps([dataclasses.asdict(config), window, _ACTIVATIONS_REVISION], sort_keys=True)
    path = vggx_cache_dir() / "memory" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return float(json.loads(path.read_text())["fp32_activation_bytes_per_pixel"])
    import torch

    from vggx.generator.flops import activation_bytes

    size = (360, 640)
    value = activation_bytes(config, size, window=window, dtype=torch.float32) / (size[0] * size[1])
    with contextlib.suppress(OSError):  # a cache that cannot be written: worked out again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"fp32_activation_bytes_per_pixel": value, "config": config.name,
                                       "window": window}).encode())
    return value


def host_memory_available() -> int | None:
    """Bytes of memory this process may still take: the system's available memory (``MemAvailable``), or less where
    its cgroup, or one above it, allows less (a container's or a job's memory limit, v1 or v2: the limit less what
    is in use and cannot be reclaimed; inactive file pages can); None where neither can be read (not Linux)."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    headroom = _cgroup_headroom()
    if headroom is not None:
        found.append(headroom)
    return min(found) if found else None


def _cgroup_headroom(proc: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The least headroom of this process's memory cgroup (``proc``) and those above it, as mounted under ``root``
    (None: no limit)."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None
    v2 = next((p for p in (root, root / "unified") if (p / "cgroup.controllers").is_file()), None)
    found = []
    for line in lines:
        _, controllers, where = [*line.split(":", 2), "", ""][:3]
        if controllers == "" and v2 is not None:
            base, files = v2, ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            base, files = root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        group = base / where.strip("/")
        while True:  # this cgroup, then each one above it (a limit set on a parent holds too)
            if (room := _headroom(group, *files)) is not None:
                found.append(room)
            if group == base or base not in group.parents:
                break
            group = group.parent
    return min(found) if found else None


def _headroom(group: Path, limit_file: str, usage_file: str, inactive_key: str) -> int | None:
    try:
        limit = (group / limit_file).read_text().strip()
        if limit == "max" or int(limit) >= 2**60:  # v1 writes a huge number for "no limit"
            return None
        usage = int((group / usage_file).read_text())
        stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines() if " " in line)
        return max(0, int(limit) - usage + int(stat.get(inactive_key, 0)))
    except (OSError, ValueError):
        return None


class _RunnerBase:
    """Shared input check and context-manager plumbing."""

    info: ModelInfo
    # requests the backend runs at once in this process (None: as many as are sent); more wait for a turn
    max_in_flight: int | None = None
    description: str
    # In-process CPU runs: host memory a window holds per LR pixel (host_bytes_per_pixel), and the bytes this
    # runner's windows may hold together (a share of what was available as it opened); None: not held in this
    # process's memory, or not known. The pipeline tiles frames to fit (vggx.client.windows.memory_tile).
    host_bytes_per_pixel: float | None = None
    host_budget: int | None = None

    def _budget_host_memory(self, config: Any, runtime: str) -> None:
        """Set :attr:`host_bytes_per_pixel` and :attr:`host_budget` for a CPU run of ``config``'s generator."""
        available = host_memory_available()
        if available is not None:
            self.host_bytes_per_pixel = host_bytes_per_pixel(config, self.info.window, runtime)
            self.host_budget = int(HOST_MEMORY_SHARE * available)

    def check_input(self, lr: np.ndarray) -> None:
        info = self.info
        if lr.dtype != np.uint8 or lr.ndim != 5 or lr.shape[1] != info.window or lr.shape[4] != 3:
            raise InferenceError(f"input must be uint8 (n, {info.window}, h, w, 3), "
                                 f"got {lr.dtype} {lr.shape}")
        h, w = lr.shape[2:4]
        if not (info.min_size[0] <= h <= info.max_size[0] and info.min_size[1] <= w <= info.max_size[1]):
            raise InferenceError(f"frame size {h}x{w} is outside the model's profile "
                                 f"{info.min_size[0]}x{info.min_size[1]}..{info.max_size[0]}x{info.max_size[1]}")

    def check_output(self, lr: np.ndarray, sr: np.ndarray, expected: tuple[int, ...] | None = None) -> np.ndarray:
        """``sr`` if it is uint8 of shape ``expected`` (default: ``lr`` upscaled, RGB), else ``InferenceError``."""
        n, t, h, w, c = lr.shape
        expected = expected or (n, t, h * self.info.scale, w * self.info.scale, c)
        if sr.dtype != np.uint8 or tuple(sr.shape) != expected:
            raise InferenceError(f"{self.description} returned {sr.dtype} {tuple(sr.shape)}, expected uint8 "
                                 f"{expected}")
        return sr

    def close(self) -> None:  # pragma: no cover - overridden where there is something to release
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------------------- onnxruntime


def cached_onnx_path(checkpoint: Path, window: int, cache_dir: Path | None = None) -> Path:
    """Where the portable ONNX export of ``checkpoint`` at ``window`` is cached."""
    from vggx.checkpoint import file_sha256
    from vggx.graph import GRAPH_REVISION

    sha = file_sha256(checkpoint)
    return (cache_dir or vggx_cache_dir()) / "onnx" / f"vggx-{sha[:16]}-t{window}-g{GRAPH_REVISION}.onnx"


def shipped_onnx_path(checkpoint: Path, window: int) -> Path:
    """Where an export of ``checkpoint`` that ships with it lies: beside it, named as the cache names it (vggx ships
    the default checkpoint's; ``python -m vggx.weights`` writes it)."""
    return Path(checkpoint).parent / cached_onnx_path(checkpoint, window, Path()).name


def cached_onnx(checkpoint: Path | None = None, cache_dir: Path | None = None) -> Path:
    """The portable ONNX export of ``checkpoint`` (default: shipped): the one shipped beside it
    (:func:`shipped_onnx_path`), else exported once and then cached.

    The name holds the checkpoint's sha256, the window and the exporter's graph revision, so a retrained
    checkpoint, or a vggx that exports another graph, gets a new file.

    Raises:
        CheckpointError, ExportError: the checkpoint cannot be loaded (its header; all of it where it is exported) or
            exported.
    """
    from vggx.checkpoint import DEFAULT_CHECKPOINT, read_checkpoint_config

    path = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    return _cached_onnx(path, read_checkpoint_config(path).window, cache_dir)


def _cached_onnx(path: Path, window: int, cache_dir: Path | None) -> Path:
    """:func:`cached_onnx` of the checkpoint at ``path``, whose header (read_checkpoint_config) says ``window``.

    Where the export exists (shipped or cached) the checkpoint's weights are not loaded, nor PyTorch imported (1.8 s
    and 0.23 GiB of a CPU run's start): its name holds the sha256 of the file that was loaded whole, and checked, to
    export it, so weights corrupted since (bits changed: another sha256) miss it and are loaded, and refused, here.
    """
    target = cached_onnx_path(path, window, cache_dir)
    if (shipped := path.parent / target.name).is_file():  # shipped_onnx_path, without hashing the checkpoint again
        return shipped
    if target.is_file():
        return target
    from vggx.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)  # every check on the weights (PyTorch), then the export
    cache_folder(target.parent)  # before the export's minute
    log.warning("exporting %s to ONNX once (cached at %s)", path, target)
    return export_portable(ckpt, target)


def export_portable(ckpt: Any, target: Path) -> Path:
    """The portable FP32 export of checkpoint ``ckpt`` at ``target``, renamed in whole (written under a unique name
    beside it first, so that two processes exporting at once do not write the same file)."""
    from vggx.export import ExportConfig, export_onnx

    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.onnx")
    try:
        export_onnx(ckpt, tmp, ExportConfig())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


_SCOPE = threading.local()  # the run a thread works for (in_scope): stop_scope stops that run's inferences


def in_scope(scope: object, target: Callable[[], Any]) -> Callable[[], Any]:
    """``target`` run in a thread that works for ``scope`` (any object naming one run: an upscale), whose inferences
    a runner's ``stop_scope(scope)`` stops. A thread's own mark, not its ident: a thread that ended hands its ident
    to the next one started, which a stop by idents stopped too (another file's, another request's)."""
    def run() -> Any:
        _SCOPE.scope = scope
        try:
            return target()
        finally:
            _SCOPE.scope = None
    return run


def _scope() -> object | None:
    return getattr(_SCOPE, "scope", None)


CLOSE_WAIT_S = 30.0  # how long closing a runner waits for its cancelled runs to stop (at their next node: ms)


class _Stops:
    """How an in-process runner's runs are stopped: :meth:`cancel` stops them all (until :meth:`resume`),
    :meth:`stop_scope` those of threads working for one scope (:func:`in_scope`; until :meth:`release_scope`), each
    raising ``InferenceError``; :meth:`_wait_idle` waits for those in flight. A run left going inside ONNX Runtime or
    PyTorch as the interpreter exits aborts the process (SIGABRT's exit 134 instead of 1, 130 or 143, and no
    clean-up). A runner says how its runs in flight are stopped (:meth:`_stop_runs`) and whether any are
    (:meth:`_busy`), and notifies ``_runs_lock`` as each ends."""

    def _init_stops(self) -> None:
        self._runs_lock = threading.Condition()  # notified as a run ends (_wait_idle waits for them)
        self._cancelled = False  # between cancel() and resume(): runs stop, and stop as they start
        self._stopped: set = set()  # scopes whose runs stop (stop_scope), until release_scope

    def _stopping(self, scope: object | None) -> bool:
        """Whether a run of a thread working for ``scope`` is to stop."""
        return self._cancelled or (scope is not None and scope in self._stopped)

    def _stop_runs(self, scope: object | None) -> None:
        """Stop the runs in flight of ``scope`` (all where None) now, ``_runs_lock`` held; a runner whose runs look
        at :meth:`_stopping` themselves has nothing to do."""

    def _busy(self) -> bool:
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop the runs in flight, and those that start until :meth:`resume` as they start (Ctrl-C, SIGTERM)."""
        with self._runs_lock:
            self._cancelled = True
            self._stop_runs(None)

    def resume(self) -> None:
        """Runs go as usual again (after :meth:`cancel`, once its callers have stopped)."""
        with self._runs_lock:
            self._cancelled = False

    def stop_scope(self, scope: object) -> None:
        """:meth:`cancel` for the runs of threads working for ``scope`` alone (until :meth:`release_scope`): one
        upscale that failed stops its own windows, not those of others sharing the runner."""
        with self._runs_lock:
            self._stopped.add(scope)
            self._stop_runs(scope)

    def release_scope(self, scope: object) -> None:
        with self._runs_lock:
            self._stopped.discard(scope)

    def _wait_idle(self) -> None:
        """Wait (up to :data:`CLOSE_WAIT_S`) for the runs in flight to end."""
        deadline = time.monotonic() + CLOSE_WAIT_S
        with self._runs_lock:
            while self._busy() and (left := deadline - time.monotonic()) > 0:
                self._runs_lock.wait(left)


def _ort_gpu_remedy() -> str:
    """What gets ONNX Runtime's CUDA provider: onnxruntime and onnxruntime-gpu are one ``onnxruntime`` module, so
    with both installed (vggx's own dependency and the gpu extra) whichever was installed last is the one imported,
    often the CPU build; the GPU build alone must be left."""
    from importlib import metadata

    def installed(dist: str) -> bool:
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            return False
        return True

    if installed("onnxruntime-gpu") and installed("onnxruntime"):
        return ("the CPU onnxruntime installed beside onnxruntime-gpu hides it: pip uninstall -y onnxruntime "
                "onnxruntime-gpu && pip install onnxruntime-gpu")
    if installed("onnxruntime-gpu"):  # the provider is compiled in: another build supplies the module
        return ("another onnxruntime build than onnxruntime-gpu is imported (pip list | grep onnxruntime): uninstall "
                "the others, then pip install --force-reinstall onnxruntime-gpu")
    return "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"


class OnnxRuntimeRunner(_Stops, _RunnerBase):
    """ONNX Runtime in process, on a vggx ONNX file (metadata read from its metadata props)."""

    def __init__(self, onnx_path: str | Path, *, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(onnx_path)
        providers = _ort_providers(device)
        if providers[0][0] == "CUDAExecutionProvider" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InferenceError(f"--device {device}: this onnxruntime has no CUDAExecutionProvider "
                                 f"({_ort_gpu_remedy()}), or use --device cpu")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if device == "cpu":
            # No memory pattern: with one (ONNX Runtime's default), the second run of an input shape asks the CPU
            # arena for its whole planned block at once, which the first run's freed chunks cannot hold, so the arena
            # grows by a second window's activations and keeps both: a session alone peaked at 0.62 GiB instead of
            # 0.33 at 90x160, 2.37 instead of 1.27 at 180x320 (`vggx upscale`: 1.11 -> 0.80 GiB, 2.94 -> 1.80 GiB;
            # benchmarks/RESULTS.md). Without it each tensor comes from the arena's free chunks, at the same speed.
            options.enable_mem_pattern = False
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own untyped exceptions (Fail, InvalidGraph, ...)
            raise InferenceError(f"onnxruntime cannot load {path}: {exc}") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata(meta, f"ONNX model {path}")
        # the generator it was exported from (vggx.export.onnx.GENERATOR_CONFIG_KEY): what its windows hold
        self.generator_config = _generator_config(meta, path)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self.description = f"onnxruntime ({providers[0][0]}{device.removeprefix('cuda') if device != 'cpu' else ''})"
        self.device_name = device
        self._ort = ort
        self._runs: dict = {}  # the RunOptions of the runs in flight (cancel() stops them) -> their scope
        self._init_stops()

    def infer(self, lr: np.ndarray) -> np.ndarray:
        self.check_input(lr)
        options = self._ort.RunOptions()
        scope = _scope()
        with self._runs_lock:
            self._runs[options] = scope
            options.terminate = self._stopping(scope)  # a worker between two tiles as the run stops: none started
        try:
            (sr,) = self._session.run([self._output], {self._input: lr}, options)
        except Exception as exc:  # onnxruntime's error types are not exported
            if options.terminate:
                raise InferenceError(f"onnxruntime: the run on input {lr.shape} was stopped") from None
            if self.device_name != "cpu" and OUT_OF_MEMORY.search(str(exc)):  # the pipeline sends smaller tiles
                raise DeviceOutOfMemoryError(f"onnxruntime ran out of memory on {self.device_name} on input "
                                             f"{lr.shape}", lr.shape) from None
            raise InferenceError(f"onnxruntime failed on input {lr.shape}: {exc}") from None
        finally:
            with self._runs_lock:
                self._runs.pop(options, None)
                self._runs_lock.notify_all()
        return self.check_output(lr, sr)

    def _stop_runs(self, scope: object | None) -> None:
        for options, of in self._runs.items():  # at their next node
            if scope is None or of is scope:
                options.terminate = True

    def _busy(self) -> bool:
        return bool(self._runs)

    def close(self) -> None:
        """Stop the runs still in flight and wait (up to :data:`CLOSE_WAIT_S`) for them to end. A run that failed
        (a truncated input, a full disk) gives its window threads a few seconds and goes on without them: one left
        inside ONNX Runtime as the interpreter exits aborts the process (SIGABRT: exit 134 and C++ runtime noise
        after the error line, instead of exit 1)."""
        self.cancel()
        self._wait_idle()


def _generator_config(meta: dict[str, str], path: Path) -> Any:
    """The generator config an ONNX file's metadata holds (``generator_config``; None where absent or unreadable, or
    where it contradicts the file's published window and scale)."""
    if "generator_config" not in meta:
        return None
    from vggx.generator.config import GeneratorConfig

    try:
        config = GeneratorConfig.from_json(meta["generator_config"])
    except ConfigError as exc:
        log.warning("%s: its generator config is not readable (%s)", path, exc)
        return None
    if str(config.window) != meta.get("window") or str(config.scale) != meta.get("scale"):
        log.warning("%s: its generator config (window %d, x%d) contradicts its metadata (window %s, x%s)", path,
                    config.window, config.scale, meta.get("window"), meta.get("scale"))
        return None
    return config


def _open_onnxruntime(cfg: BackendConfig) -> OnnxRuntimeRunner:
    from vggx.checkpoint import DEFAULT_CHECKPOINT, read_checkpoint_config

    if cfg.checkpoint is not None and cfg.checkpoint.suffix == ".onnx":
        runner = OnnxRuntimeRunner(cfg.checkpoint, device=cfg.device, threads=cfg.threads)
        if not cfg.device.startswith("cuda"):
            if runner.generator_config is not None:
                runner._budget_host_memory(runner.generator_config, "onnxruntime")
            else:
                log.warning("%s does not say which generator it holds (exported by an older vggx, or not by vggx): "
                            "frames are not tiled to fit this machine's memory (--tile bounds the windows; `vggx "
                            "export` writes the config)", cfg.checkpoint)
        return runner
    path = cfg.checkpoint or DEFAULT_CHECKPOINT
    config = read_checkpoint_config(path)  # no PyTorch where the graph is exported already (_cached_onnx)
    runner = OnnxRuntimeRunner(_cached_onnx(path, config.window, cfg.cache_dir), device=cfg.device,
                               threads=cfg.threads)
    if not cfg.device.startswith("cuda"):
        runner._budget_host_memory(config, "onnxruntime")
    return runner


# ----------------------------------------------------------------------------------------------- torch


class _TorchThreads:
    """PyTorch's thread count is the process's, and each TorchRunner opened with ``threads`` sets it: the count
    follows the last runner opened that is still open, and goes back to what it was before the first as the last
    closes, whatever order they close in (each runner putting back what it found left the second's count after
    both closed where the first closed first)."""

    _lock = threading.Lock()
    _open: ClassVar[list[tuple[object, int]]] = []  # (runner, its threads), in opening order
    _before = 0  # the count before the first of them set it

    @classmethod
    def take(cls, runner: object, threads: int) -> None:
        import torch

        with cls._lock:
            if not cls._open:
                cls._before = torch.get_num_threads()
            cls._open.append((runner, threads))
            torch.set_num_threads(threads)

    @classmethod
    def give_back(cls, runner: object) -> None:
        import torch

        with cls._lock:
            cls._open = [(r, t) for r, t in cls._open if r is not runner]
            torch.set_num_threads(cls._open[-1][1] if cls._open else cls._before)


class TorchRunner(_Stops, _RunnerBase):
    """PyTorch in process: the checkpoint's ``UInt8Upscaler`` on the CPU, or on a CUDA GPU through the
    fast path of :class:`vggx.client.cuda.CudaUpscaler` (FP16 optional, vggx kernels, pinned staging,
    one CUDA graph per input shape)."""

    def __init__(self, checkpoint: str | Path | None = None, *, device: str = "cpu", fp16: bool = False,
                 threads: int | None = None, cuda_graphs: bool = True, compile: bool = False) -> None:
        from vggx.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
        from vggx.generator import UInt8Upscaler

        cuda = device.startswith("cuda")
        if cuda:
            from .cuda import require_cuda

            require_cuda(device)
        self._threads_set = bool(threads)  # PyTorch's thread count is the process's: given back as the runner closes
        if threads:
            _TorchThreads.take(self, threads)
        try:
            path = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
            ckpt = load_checkpoint(path)
            model = UInt8Upscaler(ckpt.generator).eval()
            self._cuda = None
            if cuda:
                from .cuda import CudaUpscaler

                self._cuda = CudaUpscaler(model, device=device, fp16=fp16, cuda_graphs=cuda_graphs, compile=compile)
                self.max_in_flight = 2  # its two pinned staging buffers: a third request waits for one to free
            self._model = model
            self.info = ModelInfo.from_metadata(ckpt.metadata, f"checkpoint {path}")
            self._in_flight = 0  # CPU runs (stopped at their next module: _stop_if_cancelled; a CUDA run is not)
            self._init_stops()
            if not cuda:
                self._budget_host_memory(ckpt.config, "torch")
                for module in model.modules():  # a Python call per module run: microseconds against a window's seconds
                    module.register_forward_pre_hook(self._stop_if_cancelled)
            extras = [x for x, on in (("fp16", fp16), ("compiled", cuda and compile),
                                      ("cuda graphs", cuda and cuda_graphs)) if on]
            self.description = f"torch ({', '.join([device, *extras])})"
        except BaseException:  # a runner that never opened gives the count back too (a bad checkpoint)
            self._close_threads()
            raise

    @property
    def device_name(self) -> str:
        """The device for messages: ``cpu``, or ``cuda:0 (NVIDIA H200, 139.8 GiB)``."""
        return self._cuda.device_name if self._cuda is not None else "cpu"

    @property
    def yuv420p_output(self) -> bool:
        """Whether :meth:`infer_yuv420p` converts on the device (the CUDA fast path), so the pipeline asks
        for yuv420p frames when the encoder takes them."""
        return self._cuda is not None

    def infer_yuv420p(self, lr: np.ndarray, keep: slice = slice(None)) -> np.ndarray:
        """Like :meth:`infer`, in the H.264 writer's yuv420p layout: uint8 ``(n, k, 3/2·s·h, s·w)``, converted
        on the GPU (:func:`vggx.video.color.rgb_to_yuv420p`); only where :attr:`yuv420p_output`. Only the
        frames ``keep`` selects along T come back to the host (the pipeline drops its windows' context)."""
        from vggx.video.color import yuv420p_shape

        if self._cuda is None:
            raise InferenceError("yuv420p output is converted on the GPU: --device cuda only")
        self.check_input(lr)
        n, t, h, w, _ = lr.shape
        k = len(range(*keep.indices(t)))
        out = self._cuda(np.ascontiguousarray(lr), output_format="yuv420p", keep=keep)
        return self.check_output(lr, out, (n, k, *yuv420p_shape(h * self.info.scale, w * self.info.scale)))

    @property
    def infers_kept(self) -> bool:
        """Whether :meth:`infer` copies back only the ``keep`` frames (the CUDA fast path: half the bytes from
        the GPU at T = 8), so the pipeline passes its windows' ``keep``."""
        return self._cuda is not None

    def infer(self, lr: np.ndarray, keep: slice = slice(None)) -> np.ndarray:
        """The model's uint8 RGB ``(n, k, s·h, s·w, 3)`` for the frames ``keep`` selects along T (all by default)."""
        import torch

        self.check_input(lr)
        n, t, h, w, c = lr.shape
        expected = (n, len(range(*keep.indices(t))), h * self.info.scale, w * self.info.scale, c)
        if self._cuda is not None:
            return self.check_output(lr, self._cuda(np.ascontiguousarray(lr), keep=keep), expected)
        with self._runs_lock:
            if self._stopping(_scope()):
                raise InferenceError(f"torch: the run on input {lr.shape} was stopped")
            self._in_flight += 1
        try:
            with torch.inference_mode():
                sr = self._model(torch.from_numpy(np.ascontiguousarray(lr)))
        except _RunStopped:
            raise InferenceError(f"torch: the run on input {lr.shape} was stopped") from None
        finally:
            with self._runs_lock:
                self._in_flight -= 1
                self._runs_lock.notify_all()
        return self.check_output(lr, sr.numpy()[:, keep], expected)

    def _stop_if_cancelled(self, module: Any, args: Any) -> None:
        if self._stopping(_scope()):
            raise _RunStopped

    def _busy(self) -> bool:
        return self._in_flight > 0

    def close(self) -> None:
        """As :meth:`OnnxRuntimeRunner.close`: the CPU runs still in flight stopped and waited for; PyTorch's thread
        count as it was before the runner set it."""
        if self._cuda is not None:
            self._cuda.close()
        else:
            self.cancel()
            self._wait_idle()
        self._close_threads()

    def _close_threads(self) -> None:
        """Gives PyTorch's process-wide thread count back (:class:`_TorchThreads`), where this runner set it."""
        if self._threads_set:
            _TorchThreads.give_back(self)
            self._threads_set = False


class _RunStopped(Exception):
    """Raised inside a CPU TorchRunner's forward by :meth:`TorchRunner.cancel`."""


def _open_torch(cfg: BackendConfig) -> TorchRunner:
    return TorchRunner(cfg.checkpoint, device=cfg.device, fp16=cfg.fp16, threads=cfg.threads, compile=cfg.compile)


# -------------------------------------------------------------------------------------------- tensorrt


class TensorRTRunner(_RunnerBase):
    """A TensorRT engine in process (TensorRT 10 tensor API; I/O through PyTorch CUDA tensors).

    The model metadata comes from the engine's JSON sidecar (``model.plan.json``, key ``metadata``)
    or, failing that, from the ONNX file next to the engine.
    """

    def __init__(self, engine_path: str | Path) -> None:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise TensorRTNotInstalledError(str(exc)) from None
        import torch

        if not torch.cuda.is_available():
            raise InferenceError("the tensorrt backend needs a CUDA GPU; PyTorch sees none here")
        path = Path(engine_path)
        if not path.is_file():
            raise InferenceError(f"TensorRT engine not found: {path} (build one with `vggx export --fp16`)")
        self.info = _engine_metadata(path)
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise InferenceError(f"TensorRT could not load {path} (built for another TensorRT or GPU?)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._input = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._output = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self._lock = threading.Lock()  # one execution context: one request at a time
        self.max_in_flight = 1  # what `vggx bench` reports beside a higher --concurrency
        self.description = f"tensorrt {trt.__version__} {path.name}"

    def infer(self, lr: np.ndarray) -> np.ndarray:
        import torch

        self.check_input(lr)
        with self._lock:
            try:
                x = torch.from_numpy(np.ascontiguousarray(lr)).cuda()
                self._context.set_input_shape(self._input, tuple(lr.shape))
                out_shape = tuple(self._context.get_tensor_shape(self._output))
                y = torch.empty(out_shape, dtype=torch.uint8, device="cuda")
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                raise DeviceOutOfMemoryError(f"the GPU ran out of memory for the TensorRT engine's input and "
                                             f"output of {lr.shape}", lr.shape) from None
            self._context.set_tensor_address(self._input, x.data_ptr())
            self._context.set_tensor_address(self._output, y.data_ptr())
            stream = torch.cuda.current_stream()
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise InferenceError(f"TensorRT execution failed on input {lr.shape}")
            stream.synchronize()
            return self.check_output(lr, y.cpu().numpy())


def _engine_metadata(path: Path) -> ModelInfo:
    import json

    sidecar = path.with_name(path.name + ".json")
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text()).get("metadata", {})
        if meta:
            return ModelInfo.from_metadata({k: str(v) for k, v in meta.items()}, f"engine sidecar {sidecar}")
    onnx_file = path.with_suffix(".onnx")
    if onnx_file.is_file():
        import onnx

        model = onnx.load(str(onnx_file), load_external_data=False)
        meta = {p.key: p.value for p in model.metadata_props}
        return ModelInfo.from_metadata(meta, f"ONNX model {onnx_file}")
    raise InferenceError(f"no model metadata for {path}: expected {sidecar.name} or {onnx_file.name} "
                         f"beside it")


def _open_tensorrt(cfg: BackendConfig) -> TensorRTRunner:
    try:
        import tensorrt  # noqa: F401 - fail with the one clear message before looking for files
    except ImportError as exc:
        raise TensorRTNotInstalledError(str(exc)) from None
    if cfg.checkpoint is None or cfg.checkpoint.suffix not in (".plan", ".engine"):
        raise ConfigError("the tensorrt backend runs an engine: pass --checkpoint path/to/model.plan "
                          "(built by `vggx export --fp16`)")
    return TensorRTRunner(cfg.checkpoint)


# -------------------------------------------------------------------------------------------- registry


def triton_urls(cfg: BackendConfig) -> list[str]:
    """The servers ``cfg.url`` names now: a name with several addresses (a headless Service) is one per address,
    except with TLS, where names stay names (certificates name hosts, not the addresses behind them)."""
    from .triton import expand_urls, names_only

    return expand_urls(cfg.url or "", **({"resolve": names_only} if cfg.ssl else {}))


def _open_triton(cfg: BackendConfig) -> Runner:
    from .triton import TritonPool, TritonRunner, may_grow, names_only

    options = {"protocol": cfg.protocol.value, "model_name": cfg.model_name, "shared_memory": cfg.shared_memory,
               "retries": cfg.retries, "timeout_s": cfg.timeout_s, "ssl": cfg.ssl, "ca_cert": cfg.ca_cert,
               "headers": dict(cfg.headers), "model_version": cfg.model_version, "client_cert": cfg.client_cert}
    urls = triton_urls(cfg)
    if cfg.ssl:
        return TritonPool(urls, resolve=names_only, **options) if len(urls) > 1 else TritonRunner(urls[0], **options)
    # Several servers, or a name that may come to mean several (DNS of a scaled Service): a pool that spreads the
    # windows and looks for more; one address: the runner itself.
    if len(urls) > 1 or may_grow(cfg.url or ""):
        return TritonPool(cfg.url or "", **options)
    return TritonRunner(urls[0], **options)


_OPENERS: dict[Backend, Callable[[BackendConfig], Runner]] = {
    Backend.ONNXRUNTIME: _open_onnxruntime,
    Backend.TORCH: _open_torch,
    Backend.TENSORRT: _open_tensorrt,
    Backend.TRITON: _open_triton,
}


def open_runner(config: BackendConfig) -> Runner:
    """Open the backend ``config`` names; the caller closes the returned runner.

    Raises:
        InferenceError, ServerError, TensorRTNotInstalledError, CheckpointError: with the next step to take.
    """
    return _OPENERS[config.backend](config)
