"""The Triton backend: the ``vggx`` model on a Triton Inference Server over gRPC or HTTP.

The model's window, scale and size profile are read from its config ``parameters``. ``infer`` is
thread-safe: each calling thread gets its own tritonclient client (the HTTP client is not safe to
share) and, for a server on this host, its own pair of system shared-memory regions, so several
windows can be in flight at once. Transient failures (unavailable, overloaded, timeouts, dropped
connections) are retried with exponential backoff.

Several servers (replicas of one model, e.g. the pods behind ``deploy/k8s``'s headless Service):
:class:`TritonPool` sends each window to the server with the fewest in flight, and moves the windows of a
server that stops answering to the others; :func:`expand_urls` turns a name with several addresses into
one URL per address.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vggx.errors import (
    ConfigError,
    DeviceOutOfMemoryError,
    InferenceError,
    RequestRejected,
    ServerError,
    ServerUnavailable,
)

from .model_info import ModelInfo
from .runners import OUT_OF_MEMORY, _RunnerBase

__all__ = ["SCHEMES", "STATS_FIELDS", "ServedModel", "ServerDescription", "ServerUnavailable", "TritonPool",
           "TritonRunner", "describe_server", "expand_urls", "may_grow", "names_only", "new_client", "url_schemes",
           "wire_headers"]

log = logging.getLogger(__name__)

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"}
# gRPC codes and HTTP statuses worth another try; anything else (bad input, unknown model) is final.
_TRANSIENT = {"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED", "StatusCode.DEADLINE_EXCEEDED",
              "StatusCode.ABORTED", "429", "502", "503", "504"}
_BACKOFF_S = 0.25
# A server that stops fails every window in flight at once: one warning per retry round within this many seconds (the
# rest at debug level), not one per window
_RETRY_SAID_S = 10.0
# What Triton answers a request naming a shared-memory region it does not know (it restarted since we registered).
_LOST_REGION = re.compile(r"unable to find (system )?shared memory region", re.IGNORECASE)
# What --url entries may start with: the protocol, and TLS for https:// and grpcs:// (see url_schemes).
SCHEMES = {"grpc://": ("grpc", False), "grpcs://": ("grpc", True), "http://": ("http", False),
           "https://": ("http", True)}
_ANY_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# What a server answers for a model it served when this run began but is unloading now (stopping, being restarted or
# its repository polled): a rolling update, not a wrong --model (that one is refused when the run starts), so retried.
_MODEL_GONE = re.compile(r"unknown model|has no available versions", re.IGNORECASE)
# A Python-backend stub that died (killed for memory, a crash in a library): Triton keeps the model READY and fails
# every request with this until the server is started again; a server down, for the client (retried, then 75)
_STUB_DOWN = re.compile(r"Stub process .* is not healthy", re.IGNORECASE)
# What vggx's CPU-served model says fits when it refuses a window for its host memory (export/triton_models)
_FITS = re.compile(r"windows of up to (\d+) LR pixels")
# What Triton answers when it sheds load (UNAVAILABLE): its dynamic batcher's queue is full (max_queue_size), or a
# request waited in it past its timeout (default_timeout_microseconds, with timeout_action REJECT)
_SHED = re.compile(r"exceeds maximum queue size|request timeout expired", re.IGNORECASE)
# The per-request times of Triton's statistics API that `vggx bench` reports (each a count and nanoseconds).
STATS_FIELDS = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass
class _Shm:
    """One system shared-memory region registered with the server."""

    name: str
    handle: Any
    size: int


class _NoRoom(Exception):
    """/dev/shm cannot hold a region: not transient, the tensors go over the network instead."""


def _reserve(name: str, size: int) -> None:
    """Back the pages of the region at ``/dev/shm/name`` now. tmpfs hands them out on first write, and a page it has
    no room for is then a SIGBUS wherever it is written: in this client, or in the server writing the output (a
    container's /dev/shm is 64 MB unless raised; a 1080p window's output is 800 MB)."""
    try:
        fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
    except OSError:  # POSIX shared memory kept elsewhere (not Linux): written as before
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EFBIG):
            return  # a file system without fallocate: written as before
        st = os.statvfs("/dev/shm")
        raise _NoRoom(f"/dev/shm has {st.f_bavail * st.f_frsize / 1e6:.0f} MB free, short of a {size / 1e6:.0f} MB "
                      f"region; give it more (docker run --shm-size, a Kubernetes emptyDir of medium Memory)") from None
    finally:
        os.close(fd)


@dataclass
class _ThreadState:
    client: Any
    owner: threading.Thread = field(default_factory=threading.current_thread)
    shm_in: _Shm | None = None
    shm_out: _Shm | None = None
    regions: list[_Shm] = field(default_factory=list)


class TritonRunner(_RunnerBase):
    """A client of the ``vggx`` model on Triton (a context manager; ``close`` releases shared memory).

    Args:
        url: ``HOST:PORT`` of the server's gRPC or HTTP endpoint.
        protocol: ``grpc`` or ``http``.
        model_name: the model to call.
        shared_memory: pass tensors through system shared memory; None = when the server is local
            (falling back to the network, with a warning, if the server cannot map it).
        retries: extra attempts after a transient failure; ``timeout_s``: per request.
        health_timeout_s: for each health, readiness and config call when the runner opens.
        ssl: TLS (a server behind an ingress or gateway that terminates it, or Triton's own gRPC TLS);
            ``ca_cert``: the CA file that signed the server's certificate (default: the system's trust store).
        headers: sent with every call (HTTP headers, gRPC metadata), e.g. ``{"Authorization": "Bearer ..."}``.
        model_version: the version to call ("" = the server's choice: the newest it serves).

    Raises:
        ServerError: the server is unreachable (the message names the URL and ``vggx serve``), or the
            model is not ready, or its config lacks the vggx metadata.
    """

    def __init__(self, url: str, *, protocol: str = "grpc", model_name: str = "vggx",
                 shared_memory: bool | None = None, retries: int = 4, timeout_s: float = 300.0,
                 health_timeout_s: float = 10.0, ssl: bool = False, ca_cert: str | os.PathLike | None = None,
                 headers: dict[str, str] | None = None, model_version: str = "",
                 client_cert: tuple[str | os.PathLike, str | os.PathLike] | None = None) -> None:
        if protocol not in ("grpc", "http"):
            raise ServerError(f"--protocol must be grpc or http, got {protocol!r}")
        url = _without_scheme(url)
        for path in (ca_cert, *(client_cert or ())):
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"{path}: no such file (a --ca-cert / --client-cert / --client-key)")
        self.ssl, self.ca_cert, self.client_cert = ssl, None if ca_cert is None else str(ca_cert), client_cert
        self.scheme = {v: k for k, v in SCHEMES.items()}[protocol, ssl].removesuffix("://")
        self._headers = wire_headers(headers, protocol)
        url = url.rstrip("/")
        _host_port(url)
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        self._module = module
        self.url, self.protocol, self.model_name, self.model_version = url, protocol, model_name, str(model_version)
        self.retries, self.timeout_s, self.health_timeout_s = retries, timeout_s, health_timeout_s
        self._local = threading.local()
        self._states: list[_ThreadState] = []
        self._lock = threading.Lock()
        self._retry_said: dict[int, float] = {}  # retry -> when it was last warned of (any thread)
        self._closed = False
        host = url.rsplit(":", 1)[0]
        is_local = host in _LOCAL_HOSTS or host == socket.gethostname()
        if shared_memory and not is_local:
            raise ServerError(f"shared memory needs a server on this host; {url} is not local")
        self._use_shm = is_local if shared_memory is None else bool(shared_memory)
        self._shm_required = bool(shared_memory)
        try:
            self.info, self._input, self._output = self._read_model()
        except BaseException:
            self.close()
            raise
        named = f"model {model_name!r}" + (f" version {self.model_version}" if self.model_version else "")
        self.description = f"triton {self.scheme}://{url} {named}" + (" (shared memory)" if self._use_shm else "")
        # what --resume compares: the model served and its weights and precision, not the address (pods move)
        self.resume_identity = f"triton {named}" + "".join(f" {k}={v}" for k, v in sorted(self.served.items()))
        self.device_name = f"the model served by Triton at {url}"  # for messages (out of memory)

    # ------------------------------------------------------------------------------------- set-up

    def _new_client(self, timeout_s: float | None = None):
        """A client of this server (HTTP: with ``timeout_s`` to connect and per read, default the request's)."""
        return new_client(self.url, self.protocol, ssl=self.ssl, ca_cert=self.ca_cert, client_cert=self.client_cert,
                          timeout_s=timeout_s or self.timeout_s)

    def _state(self) -> _ThreadState:
        """The calling thread's client and shared-memory regions. A new thread's state frees those of threads that
        ended (each file of a folder run starts its own: their regions, in /dev/shm and registered on the server,
        piled up until the runner closed)."""
        state = getattr(self._local, "state", None)
        if state is None:
            state = _ThreadState(client=self._new_client())
            self._local.state = state
            with self._lock:
                ended = [s for s in self._states if not s.owner.is_alive()]
                self._states = [s for s in self._states if s.owner.is_alive()] + [state]
            for old in ended:
                self._free(old)
        return state

    def _free(self, state: _ThreadState, ask: bool = True) -> bool:
        """Release a state no thread uses any more: its regions, then its client (see :meth:`_drop_regions` for
        ``ask`` and what is returned)."""
        ask = self._drop_regions(state, ask)
        try:
            state.client.close()
        except Exception:
            log.debug("closing a Triton client failed", exc_info=True)
        return ask

    def _unreachable(self, exc: BaseException) -> ServerError:
        """Why the server cannot be reached: a TLS mismatch (no retry fixes it), else ``ServerUnavailable`` (down,
        not yet up, the wrong address: the same command may work later)."""
        reason = _reason(exc)
        low, error = reason.lower(), ServerError
        if self.ssl and "certificate" in low:
            hint = "pass --ca-cert with the CA that signed the server's certificate"
        elif self.ssl and ("ssl" in low or "handshake" in low):
            hint = "does the server speak TLS on that port? (drop https:// / grpcs:// if not)"
        elif self.ssl and "socket closed" in low:  # it took the connection and hung up in the handshake
            hint = ("the server closed the TLS handshake: does it want a client certificate (--client-cert, "
                    "--client-key), or TLS on that port at all?")
        elif not self.ssl and (other := _other_protocol_hint(self.url, self.protocol, reason)):
            return ServerError(other)  # the server is there, on its other protocol's port: a setting to fix
        else:
            hint = ("start a server with `vggx serve` (gRPC on :8001, HTTP on :8000 by default) or pass the right "
                    "--url/--protocol")
            error = ServerUnavailable
        return error(f"cannot reach Triton at {self.scheme}://{self.url} ({_one_line(reason)}); {hint}")

    def _read_model(self) -> tuple[ModelInfo, str, str]:
        """Health, readiness and the model's config, each within ``health_timeout_s`` (a server that accepts the
        connection and never answers is an error in seconds, not after the inference timeout)."""
        t = self.health_timeout_s
        if self.protocol == "grpc":  # per call
            client, kw = self._state().client, {"client_timeout": t}
        else:  # per client: a short-lived one
            client, kw = self._new_client(t), {}
        try:
            return self._read_model_with(client, {**kw, "headers": self._headers})
        finally:
            if self.protocol == "http":
                client.close()

    def _read_model_with(self, client, kw: dict) -> tuple[ModelInfo, str, str]:
        try:
            live = client.is_server_live(**kw)
        except Exception as exc:  # tritonclient raises its own type for gRPC, socket errors for HTTP
            raise self._unreachable(exc) from None
        if not live:
            try:  # an HTTP server that is not Triton says "not live" too (any answer but 200)
                client.get_server_metadata(**kw)
            except Exception as exc:
                if (other := _not_triton(self.url, self.protocol, exc)) is not None:
                    raise ServerError(other) from None
            raise ServerError(f"Triton at {self.url} answers but is not live; check its log")
        try:
            ready = client.is_model_ready(self.model_name, self.model_version, **kw)
        except Exception as exc:
            raise self._unreachable(exc) from None
        if not ready:
            rows = self._served_rows(client, kw)
            others = None if rows is None else {r.get("name", "") for r in rows}
            if others is not None and self.model_name not in others:
                raise ServerError(f"Triton at {self.url} serves no model {self.model_name!r} (its repository has "
                                  f"{', '.join(sorted(others)) or 'none'}); pass --model")
            versions = sorted({str(r.get("version", "")) for r in rows or () if r.get("name") == self.model_name
                               and r.get("state") == "READY"} - {""}, key=lambda v: (len(v), v))
            if self.model_version and versions and self.model_version not in versions:
                raise ServerError(f"Triton at {self.url} serves model {self.model_name!r} in version "
                                  f"{', '.join(versions)}, not {self.model_version}; pass one of those to "
                                  f"--model-version, or none for the newest")
            version = f" version {self.model_version}" if self.model_version else ""
            raise ServerError(f"Triton at {self.url} is up but model {self.model_name!r}{version} is not ready "
                              f"(still loading, or it failed to load: see the server log or run "
                              f"`vggx serve --check`)")
        try:
            config = client.get_model_config(self.model_name, self.model_version,
                                             **({"as_json": True} if self.protocol == "grpc" else {}), **kw)
        except Exception as exc:
            if (header := restricted_header(exc)) is not None:
                raise refused(self.url, header) from None
            hint = ("; is this the server's HTTP port? (its metrics port answers health probes too)"
                    if "parse error" in _reason(exc).lower() else "")
            raise ServerError(f"cannot read the config of model {self.model_name!r} from {self.url}: "
                              f"{_reason(exc)}{hint}") from None
        config = config.get("config", config)
        self.max_batch = int(config.get("max_batch_size") or 0)  # the server refuses larger batches (0: no batching)
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        info = ModelInfo.from_metadata(params, f"model {self.model_name!r} on Triton at {self.url}")
        # which weights it serves, and how it computes them (vggx export publishes these): what makes its bits
        # with versions served side by side, vggx export publishes each one's as <key>@<version>: the version called
        own = {k: params.get(f"{k}@{self.model_version}") for k in _SERVED_IDENTITY} if self.model_version else {}
        self.served = {k: own.get(k) or params[k] for k in _SERVED_IDENTITY if own.get(k) or params.get(k)}
        inputs, outputs = config.get("input") or [], config.get("output") or []
        if len(inputs) != 1 or len(outputs) != 1:
            raise ServerError(f"model {self.model_name!r} on {self.url} has {len(inputs)} inputs and "
                              f"{len(outputs)} outputs, expected the vggx contract (one `lr`, one `sr`)")
        dims = [int(d) for d in inputs[0].get("dims", [])]
        if dims and dims[0] != info.window:
            raise ServerError(f"model {self.model_name!r}: input dims {dims} disagree with its window "
                              f"parameter {info.window}")
        return info, inputs[0]["name"], outputs[0]["name"]

    def _served_rows(self, client, kw: dict) -> list[dict] | None:
        """The server's repository index: a row per model version (name, version, state); None where it would not
        say."""
        try:
            index = client.get_model_repository_index(
                **kw, **({"as_json": True} if self.protocol == "grpc" else {}))
        except Exception:  # restricted, or an older server: the not-ready message stands alone
            return None
        return list(_index_rows(index))

    # ---------------------------------------------------------------------------------- inference

    def infer(self, lr: np.ndarray) -> np.ndarray:
        self.check_input(lr)
        lr = np.ascontiguousarray(lr)
        out_shape = (*lr.shape[:2], lr.shape[2] * self.info.scale, lr.shape[3] * self.info.scale, 3)
        state = self._state()
        delay = _BACKOFF_S
        stub_down = ""  # the reason of an answer that said the model's process died
        for attempt in range(self.retries + 1):
            try:
                return self.check_output(lr, self._infer_once(state, lr, out_shape))
            except (InferenceError, ServerError):
                raise
            except Exception as exc:  # tritonclient's own type for gRPC, socket errors for HTTP
                reason = _reason(exc)
                if state.shm_in is not None and _LOST_REGION.search(reason) and attempt < self.retries:
                    # the server restarted between two windows and forgot our regions: register them again
                    log.info("Triton at %s lost this client's shared-memory regions (restarted?); registering "
                             "them again", self.url)
                    self._drop_regions(state)
                    continue
                if not (_transient(exc) or _MODEL_GONE.search(reason) or _STUB_DOWN.search(reason)):
                    if (header := restricted_header(exc)) is not None:
                        raise refused(self.url, header) from None
                    if OUT_OF_MEMORY.search(reason):  # the pipeline sends smaller tiles
                        fits = _FITS.search(reason)  # vggx's CPU-served model names them: no halving by trial
                        raise DeviceOutOfMemoryError(f"the model served by Triton at {self.url} ran out of memory "
                                                     f"on input {lr.shape} ({reason})", lr.shape,
                                                     int(fits[1]) if fits else None) from None
                    raise ServerError(f"Triton at {self.url} failed the request for {lr.shape}: "
                                      f"{reason}") from None
                if attempt == self.retries and _SHED.search(reason):
                    raise RequestRejected(f"Triton at {self.url} turned the request away after {attempt + 1} "
                                          f"attempt{'s' if attempt else ''} ({reason}): it is up but overloaded; "
                                          f"send fewer requests at once, or raise the model's max_queue_size or "
                                          f"instance count") from None
                if not stub_down and _STUB_DOWN.search(reason):
                    stub_down = reason
                if attempt == self.retries and stub_down:  # `vggx serve` stops then: the later answers say less
                    last = f"; then: {reason}" if reason != stub_down else ""
                    raise ServerUnavailable(f"Triton at {self.url}: the process that ran its model "
                                            f"{self.model_name!r} died ({stub_down}{last}), and Triton does not "
                                            f"start it again: the server must be started again. If it was killed "
                                            f"for memory, smaller tiles hold less (--tile; this request was "
                                            f"{lr.shape[2]}x{lr.shape[3]})") from None
                if attempt == self.retries:
                    raise ServerUnavailable(f"Triton at {self.url} still failing after {attempt + 1} "
                                            f"attempt{'s' if attempt else ''} ({reason}); is the server up? "
                                            f"(`vggx serve`)") from None
                now = time.monotonic()
                with self._lock:  # the windows in flight fail together: one line for them all
                    said = now - self._retry_said.get(attempt, -_RETRY_SAID_S) < _RETRY_SAID_S
                    if not said:
                        self._retry_said[attempt] = now
                (log.debug if said else log.warning)(
                    "transient failure of Triton at %s (%s); retry %d/%d in %.2fs", self.url, reason,
                    attempt + 1, self.retries, delay)
                time.sleep(delay)
                delay *= 2
                state.client = self._new_client()  # a dropped connection is not reused
                self._drop_regions(state)  # registrations may be gone with a restarted server
        raise AssertionError("unreachable")  # pragma: no cover

    def _infer_once(self, state: _ThreadState, lr: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
        m = self._module
        inp = m.InferInput(self._input, list(lr.shape), "UINT8")
        http = {"binary_data": True} if self.protocol == "http" else {}
        out = m.InferRequestedOutput(self._output, **http)
        out_bytes = int(np.prod(out_shape))
        if self._use_shm and self._ensure_shm(state, lr.nbytes, out_bytes):
            import tritonclient.utils.shared_memory as shm

            shm.set_shared_memory_region(state.shm_in.handle, [lr])
            inp.set_shared_memory(state.shm_in.name, lr.nbytes)
            out.set_shared_memory(state.shm_out.name, out_bytes)
            result = self._request(state, inp, out)
            # the region is read as the output this runner expects: what the server says it wrote must be that (a
            # model whose config's scale is wrong writes less, and the rest of the region would pass for frames)
            said = result.get_output(self._output)
            if said is None:
                raise InferenceError(f"Triton at {self.url} returned no {self._output!r} output")
            shape, dtype = (said["shape"], said["datatype"]) if isinstance(said, dict) else (said.shape, said.datatype)
            if dtype != "UINT8" or tuple(shape) != out_shape:
                raise InferenceError(f"{self.description} returned {dtype} {tuple(shape)}, expected UINT8 {out_shape}")
            return np.array(shm.get_contents_as_numpy(state.shm_out.handle, np.uint8, out_shape))
        if self.protocol == "http":
            inp.set_data_from_numpy(lr, binary_data=True)
        else:
            inp.set_data_from_numpy(lr)
        result = self._request(state, inp, out)
        sr = result.as_numpy(self._output)
        if sr is None:
            raise InferenceError(f"Triton at {self.url} returned no {self._output!r} output")
        return sr

    def _request(self, state: _ThreadState, inp, out):
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        # a copy each time: tritonclient's HTTP infer writes the request's own header length into the dict it gets,
        # which the windows in flight would otherwise share
        return state.client.infer(self.model_name, inputs=[inp], outputs=[out], model_version=self.model_version,
                                  headers=dict(self._headers), **kwargs)

    def _ensure_shm(self, state: _ThreadState, in_bytes: int, out_bytes: int) -> bool:
        """Make sure this thread's regions hold ``in_bytes``/``out_bytes``; False = use the network."""
        if state.shm_in is not None and state.shm_in.size >= in_bytes and state.shm_out.size >= out_bytes:
            return True
        try:
            # both made and their pages reserved before either is registered: no room is found before the server
            state.shm_in, state.shm_out = self._new_region(state, in_bytes), self._new_region(state, out_bytes)
            for region in (state.shm_in, state.shm_out):
                state.client.register_system_shared_memory(region.name, f"/{region.name}", region.size,
                                                           headers=self._headers)
            return True
        except Exception as exc:  # the server may be local but unable to map our /dev/shm (containers)
            if _transient(exc) or restricted_header(exc) is not None:
                raise  # down or restarting, or refused: infer's retries and errors say so, shared memory stays on
            if self._shm_required:
                raise ServerError(f"Triton at {self.url} cannot use system shared memory: "
                                  f"{_reason(exc)}") from None
            log.warning("Triton at %s cannot use system shared memory (%s); sending tensors over %s instead",
                        self.url, _reason(exc), self.protocol)
            self._drop_regions(state)
            self._use_shm = False
            self.description = self.description.replace(" (shared memory)", "")
            return False

    def _drop_regions(self, state: _ThreadState, ask: bool = True) -> bool:
        """Forget this thread's regions (at close, or to register them again on the next window): unregistered where
        the server still has them, and their /dev/shm segments freed (each restart of a server would otherwise keep
        two). Each unregister waits ``health_timeout_s`` at most, and none is sent after one timed out or found the
        server gone, nor with ``ask`` False: a hung server holds a stopping run for seconds, not the inference timeout
        per region. Returns whether the server may still be asked."""
        import tritonclient.utils.shared_memory as shm

        bounded = {"client_timeout": self.health_timeout_s} if self.protocol == "grpc" else {}
        client = None
        try:
            for region in state.regions:
                if ask:
                    try:
                        if client is None:  # HTTP's reads wait the inference timeout: a client bounded as health's
                            client = state.client if self.protocol == "grpc" else \
                                self._new_client(self.health_timeout_s)
                        client.unregister_system_shared_memory(region.name, headers=self._headers, **bounded)
                    except Exception as exc:  # a restarted or unreachable server; the local region is ours to free
                        log.debug("unregistering %s failed", region.name, exc_info=True)
                        ask = not _transient(exc)
                try:
                    shm.destroy_shared_memory_region(region.handle)
                except BufferError:  # a worker still inside infer past the stop wait reads it: freed at exit
                    log.debug("%s is still being read; left to the interpreter's exit", region.name)
        finally:
            if client is not None and client is not state.client:
                with contextlib.suppress(Exception):
                    client.close()
        state.regions.clear()
        state.shm_in = state.shm_out = None
        return ask

    def _new_region(self, state: _ThreadState, size: int) -> _Shm:
        """A region of ``size`` bytes in /dev/shm, its pages reserved (:func:`_reserve`), kept in ``state``."""
        import tritonclient.utils.shared_memory as shm

        name = f"vggx-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        region = _Shm(name, shm.create_shared_memory_region(name, f"/{name}", size), size)
        state.regions.append(region)
        _reserve(name, size)
        return region

    # ---------------------------------------------------------------------------------- statistics

    def inference_statistics(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Triton's cumulative statistics of the model this runner calls, ``{url: {field: (count, ns)}}`` for the
        fields of :data:`STATS_FIELDS`, summed over the versions it may call (``model_version``, or every version
        served when that is "": a request without one goes to the newest). Through this runner's TLS settings and
        headers (a server started with ``--api-key`` restricts statistics too).

        Raises:
            ServerError: refused (the header it wants), or the server answered with an error;
                ``ServerUnavailable``: the server cannot be reached.
        """
        client = self._new_client(self.health_timeout_s)
        kw = {"headers": self._headers}
        if self.protocol == "grpc":
            kw.update(as_json=True, client_timeout=self.health_timeout_s)
        try:
            stats = client.get_inference_statistics(self.model_name, self.model_version, **kw)
        except Exception as exc:
            if (header := restricted_header(exc)) is not None:
                raise refused(self.url, header) from None
            if _transient(exc):
                raise self._unreachable(exc) from None
            raise ServerError(f"cannot read the statistics of model {self.model_name!r} from {self.url}: "
                              f"{_reason(exc)}") from None
        finally:
            client.close()
        out = dict.fromkeys(STATS_FIELDS, (0, 0))
        for version in stats.get("model_stats") or []:
            if version.get("name", self.model_name) != self.model_name:
                continue
            inference = version.get("inference_stats") or {}
            for f in STATS_FIELDS:
                entry = inference.get(f) or {}
                count, ns = out[f]
                out[f] = (count + int(entry.get("count", 0)), ns + int(entry.get("ns", 0)))
        return {self.url: out}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            states, self._states = self._states, []
        ask = True
        for state in states:  # a server that stopped answering is not asked again for each thread's regions
            ask = self._free(state, ask)


def new_client(url: str, protocol: str = "grpc", *, ssl: bool = False, ca_cert: str | os.PathLike | None = None,
               client_cert: tuple[str | os.PathLike, str | os.PathLike] | None = None, timeout_s: float = 60.0):
    """A tritonclient ``InferenceServerClient`` of ``url`` (``HOST:PORT``) over ``protocol``, TLS with ``ssl`` (the CA
    file ``ca_cert``; ``client_cert``: this client's certificate and key files, for servers that ask for one,
    mutual TLS); HTTP: ``timeout_s`` to connect (at most 60 s) and per read. The caller closes it."""
    ca = None if ca_cert is None else str(ca_cert)
    cert, key = (None, None) if client_cert is None else map(str, client_cert)
    if protocol == "grpc":
        import tritonclient.grpc as grpc

        return grpc.InferenceServerClient(url, ssl=ssl, root_certificates=ca, private_key=key, certificate_chain=cert)
    import tritonclient.http as http

    options = {k: v for k, v in (("ca_certs", ca), ("certfile", cert), ("keyfile", key)) if v}
    tls = {"ssl": True, "ssl_options": options or None} if ssl else {}
    return http.InferenceServerClient(url, connection_timeout=min(timeout_s, 60.0), network_timeout=timeout_s, **tls)


@dataclass(frozen=True)
class ServedModel:
    """A model of a server's repository, as its index lists it."""

    name: str
    version: str  # "" where the index names no version (a model that failed to load)
    state: str  # READY, UNAVAILABLE, LOADING, ...
    reason: str = ""  # why it is not READY (the server's words)


@dataclass(frozen=True)
class ServerDescription:
    """What :func:`describe_server` found: the server, its models, and one model's config and statistics."""

    url: str
    server: str  # name and version, e.g. "triton 2.51.0"
    models: list[ServedModel]
    model: str | None = None  # the model described below (None: not in the repository)
    config: dict = field(default_factory=dict)  # its config, as the server's JSON gives it
    stats: list[dict] = field(default_factory=list)  # per version: requests, executions, mean queue / compute ms


# The served config's parameters that say which weights a model computes with and how (vggx export's published
# metadata): a --resume record holds them, and a pool's replicas must agree on the weights.
_SERVED_IDENTITY = ("checkpoint_sha256", "precision", "serving_backend", "flavor")


def describe_server(url: str, model: str = "vggx", *, protocol: str = "grpc", ssl: bool = False,
                    ca_cert: str | os.PathLike | None = None, headers: dict[str, str] | None = None,
                    client_cert: tuple[str | os.PathLike, str | os.PathLike] | None = None,
                    timeout_s: float = 10.0) -> ServerDescription:
    """The server at ``url``, the models of its repository with their state, and ``model``'s config and inference
    statistics (what ``vggx info --url`` prints; ``vggx upscale --url`` is a window away from them).

    Raises:
        ConfigError: ``url`` is not one ``HOST:PORT`` (checked as ``vggx upscale --url`` checks its entries: a port
            out of range was a traceback over HTTP and another port over gRPC, and no port dialled 443).
        ServerError: the server cannot be reached (naming the URL).
    """
    entries = _entries(url)
    if len(entries) != 1:
        raise ConfigError(f"vggx info --url describes one server: give one HOST:PORT, got {url!r}")
    url = entries[0]
    _host_port(url)
    kw = {"headers": wire_headers(headers, protocol)}
    as_json = {"as_json": True, "client_timeout": timeout_s} if protocol == "grpc" else {}
    client = new_client(url, protocol, ssl=ssl, ca_cert=ca_cert, client_cert=client_cert, timeout_s=timeout_s)
    try:
        try:
            meta = client.get_server_metadata(**kw, **as_json)
            index = client.get_model_repository_index(**kw, **as_json)
        except Exception as exc:  # tritonclient's own type for gRPC, socket errors for HTTP
            if (header := restricted_header(exc)) is not None:
                raise refused(url, header) from None
            if not ssl and (wrong := _other_protocol_hint(url, protocol, _reason(exc))):  # a setting to fix, exit 1
                raise ServerError(wrong) from None
            if (other := _not_triton(url, protocol, exc)) is not None:
                raise ServerError(other) from None
            raise ServerUnavailable(f"cannot reach Triton at {url} over {protocol} ({_one_line(_reason(exc))}); is it "
                                    f"up, and is this its {protocol} port?") from None
        models = [ServedModel(r.get("name", ""), str(r.get("version", "")), r.get("state", "") or "UNKNOWN",
                              r.get("reason", "")) for r in _index_rows(index)]
        server = f"{meta.get('name', 'triton')} {meta.get('version', '')}".strip()
        if not any(m.name == model for m in models):
            return ServerDescription(url, server, models)
        config, stats = {}, []
        if any(m.name == model and m.state == "READY" for m in models):
            config = client.get_model_config(model, **kw, **as_json)
            config = config.get("config", config)
            raw = client.get_inference_statistics(model, **kw, **as_json)
            stats = [_version_stats(v) for v in raw.get("model_stats", [])]
        return ServerDescription(url, server, models, model, config, stats)
    finally:
        client.close()


def _index_rows(index) -> list[dict]:
    """The rows of a repository index as either client gives it (gRPC's JSON: ``{"models": [...]}``; HTTP: a list)."""
    return index.get("models", []) if isinstance(index, dict) else index


def _version_stats(v: dict) -> dict:
    """One model version's statistics (Triton's cumulative counters, ns) as requests and mean milliseconds."""
    def ms(key: str) -> float | None:
        entry = v.get("inference_stats", {}).get(key, {})
        count = int(entry.get("count", 0))
        return int(entry.get("ns", 0)) / count / 1e6 if count else None

    success = int(v.get("inference_stats", {}).get("success", {}).get("count", 0))
    return {"version": str(v.get("version", "")), "requests": success,
            "failed": int(v.get("inference_stats", {}).get("fail", {}).get("count", 0)),
            "executions": int(v.get("execution_count", 0)),
            "queue_ms": ms("queue"), "compute_ms": ms("compute_infer"), "request_ms": ms("success")}


def _without_scheme(url: str) -> str:
    """``url`` without a leading ``grpc://``, ``grpcs://``, ``http://`` or ``https://`` (:data:`SCHEMES`)."""
    prefix = next((p for p in SCHEMES if url.startswith(p)), "")
    if not prefix and (other := _ANY_SCHEME.match(url)):  # a typo, not a server that is down: no retry helps
        raise ConfigError(f"--url scheme {other.group()!r} is not one of {', '.join(SCHEMES)} (in {url!r})")
    return url[len(prefix):]


_GRPC_RESTRICTED_PREFIX = "triton-grpc-protocol-"  # how Triton's gRPC server reads a restricted protocol's header


def wire_headers(headers: dict[str, str] | None, protocol: str) -> dict[str, str]:
    """``headers`` as ``protocol`` sends them: gRPC metadata keys are lower case (HTTP/2), HTTP/1.1 names as given
    (case-insensitive anyway). Over gRPC each goes twice, as named and with Triton's ``triton-grpc-protocol-``
    prefix: a server started with ``--grpc-restricted-protocol=...:<name>=<value>`` (``vggx serve --api-key``)
    reads the latter, a gateway in front of it the former, so one ``--header`` serves both protocols."""
    if protocol != "grpc":
        return dict(headers or {})
    out = {}
    for name, value in (headers or {}).items():
        name = name.lower()
        out[name] = value
        if not name.startswith(_GRPC_RESTRICTED_PREFIX):
            out[_GRPC_RESTRICTED_PREFIX + name] = value
    return out


_RESTRICTED = re.compile(rf"is restricted, expecting header '(?:{re.escape(_GRPC_RESTRICTED_PREFIX)})?([^']+)'")


def restricted_header(exc: BaseException) -> str | None:
    """The header a Triton server with restricted APIs asked for, where ``exc`` is its refusal (gRPC answers
    UNAVAILABLE, HTTP 403, "This ... is restricted, expecting header '...'"); None for other errors."""
    match = _RESTRICTED.search(str(exc))
    return match.group(1) if match else None


def refused(url: str, header: str) -> ServerError:
    """The error for a request Triton refused for want of ``header``: which option gives it."""
    from vggx.server import API_KEY_HEADER

    how = ("give the server's key with --api-key (or VGGX_API_KEY)" if header.lower() == API_KEY_HEADER else
           f"send it with --header '{header}: ...'")
    return ServerError(f"Triton at {url} refused the request: it needs the header {header!r} (missing or wrong); "
                       f"{how}")


def names_only(*_args, **_kwargs) -> list:
    """A resolver (``socket.getaddrinfo``'s place in :func:`expand_urls`) that resolves nothing, so entries stay as
    given: with TLS, whose certificates name hosts, not the addresses behind them."""
    return []


def _split(urls: str | list[str]) -> list[str]:
    """The ``--url`` entries as given (a list, or one string separated by commas), stripped, without empty ones."""
    return [e for part in ([urls] if isinstance(urls, str) else urls) for e in (p.strip() for p in part.split(","))
            if e]


def _entries(urls: str | list[str]) -> list[str]:
    """The ``--url`` entries (a list, or one string separated by commas), without scheme prefixes or empty ones."""
    return [entry for e in _split(urls) if (entry := _without_scheme(e).rstrip("/"))]


def _host_port(entry: str) -> tuple[str, str]:
    """``HOST:PORT``'s host and port (an IPv6 host in brackets), or ``ConfigError``: a port out of range was a
    traceback over HTTP and another port over gRPC (70001 is 4465 there)."""
    host, sep, port = entry.rpartition(":")
    bare = host.removeprefix("[").removesuffix("]")
    if (not sep or not bare or not port.isdigit() or not 0 < int(port) < 65536
            or host.startswith("[") != host.endswith("]") or (":" in bare and not host.startswith("["))):
        raise ConfigError(f"--url must look like HOST:PORT with a port of 1-65535 (e.g. 127.0.0.1:8001, "
                          f"[::1]:8001), got {entry!r}")
    return host, port


def expand_urls(urls: str | list[str], resolve=socket.getaddrinfo, addresses: bool = False) -> list[str]:
    """``HOST:PORT`` entries (a list, or one string separated by commas) -> one URL per server.

    A host name with several addresses (Kubernetes' headless Service: one per ready pod) becomes one URL per
    address, IPv4 first; a name with one address (unless ``addresses``: then that address, so that a name that
    later resolves to more names the same server the same way), an IP address and a name that does not resolve
    (reported by the runner that tries it) stay as given. ``grpc://``/``http://`` prefixes are dropped;
    duplicates go.

    Raises:
        ConfigError: no URL, or an entry that is not ``HOST:PORT``.
    """
    out: list[str] = []
    for entry in _entries(urls):
        host, port = _host_port(entry)
        try:
            infos = resolve(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            infos = []
        v4 = sorted({i[4][0] for i in infos if i[0] == socket.AF_INET})
        v6 = sorted({i[4][0] for i in infos if i[0] == socket.AF_INET6})
        found = v4 or v6
        if len(found) > 1 or (found and addresses and host not in _LOCAL_HOSTS):
            out += [f"{a}:{port}" if ":" not in a else f"[{a}]:{port}" for a in found]
        else:
            out.append(entry)
    if not out:
        raise ConfigError("--url needs at least one HOST:PORT")
    return list(dict.fromkeys(out))


class TritonPool(_RunnerBase):
    """Windows spread over several Triton servers that serve the same model (a context manager).

    Each window goes to the server with the fewest windows in flight (ties in turn), so faster servers take
    more. A server that stops answering (:class:`ServerUnavailable`: its retries spent) is dropped with a
    warning and the window goes to another; the run fails only when none is left. Errors that every server
    would give (a bad request, a malformed output) are raised at once.

    Every ``refresh_s`` seconds (in a background thread) the pool looks again: names are resolved again, so
    replicas an autoscaler adds behind a headless Service join the run, and dropped servers are asked whether
    their model is ready, so a restarted one takes windows again.

    Args:
        entries: ``HOST:PORT`` entries as given (see :func:`expand_urls`); every server they name must be up and
            serve the same model (window, scale, sizes, version) when the pool opens.
        resolve: ``socket.getaddrinfo``-like resolver.
        options: :class:`TritonRunner`'s keyword arguments (``shared_memory``, ``retries``, ``timeout_s``).

    Raises:
        ServerError: a server is unreachable or its model not ready (naming it), or the servers' models differ.
    """

    def __init__(self, entries: str | list[str], *, protocol: str = "grpc", model_name: str = "vggx",
                 resolve=socket.getaddrinfo, refresh_s: float = 30.0, **options) -> None:
        self._entries, self._resolve, self.refresh_s = entries, resolve, refresh_s
        self._open = lambda url: TritonRunner(url, protocol=protocol, model_name=model_name, **options)
        self._runners: list[TritonRunner] = []
        self._lock = threading.Lock()
        self._closed = False
        self._refresher: threading.Thread | None = None
        self._last_refresh = time.monotonic()
        self._refused: set[str] = set()  # servers found serving another model (warned about once)
        away: dict[str, ServerUnavailable] = {}  # servers down when the run starts: they join when they answer
        try:
            urls = expand_urls(entries, resolve, addresses=True)
            for url in urls:
                try:
                    self._runners.append(self._open(url))
                except ServerUnavailable as exc:
                    if len(urls) == 1:
                        raise
                    away[url] = exc
        except BaseException:
            self.close()
            raise
        if not self._runners:
            why = "; ".join(f"{url}: {exc}" for url, exc in away.items())
            raise ServerUnavailable(f"no Triton server answers ({why})")
        for url, exc in away.items():
            log.warning("Triton at %s does not answer; the run starts on the %d other server%s and takes it on "
                        "when it does (%s)", url, len(self._runners), "" if len(self._runners) == 1 else "s", exc)
        first = self._runners[0]
        for other in self._runners[1:]:
            if other.info != first.info:
                self.close()
                raise ServerError(f"the servers serve different models: {first.url} has {first.info}, "
                                  f"{other.url} has {other.info}; point --url at replicas of one model")
            mine, theirs = (r.served.get("checkpoint_sha256") for r in (first, other))
            if mine and theirs and mine != theirs:  # one video's windows from two sets of weights: seams, flicker
                self.close()
                raise ServerError(f"the servers serve different weights of model {first.model_name!r}: {first.url} "
                                  f"checkpoint {mine[:16]}, {other.url} checkpoint {theirs[:16]}; point --url at "
                                  f"replicas of one export")
        self.info = first.info
        self.resume_identity = first.resume_identity  # the model, not the (changing) set of replicas
        self.device_name = "the model the Triton replicas serve"
        self._in_flight = [0] * len(self._runners)
        self._next = 0  # where the search for the least busy server starts (ties go round)
        self._down: dict[int, ServerError] = {}  # server -> why it was dropped
        self.windows = [0] * len(self._runners)  # windows each server returned
        if len(self._runners) == 1:
            self.description = first.description
        else:
            shared = " (shared memory)" if all("shared memory" in r.description for r in self._runners) else ""
            self.description = (f"triton {protocol}:// {len(self._runners)} servers "
                                f"({', '.join(r.url for r in self._runners)}) model {model_name!r}{shared}")

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self._runners]

    def _acquire(self, avoid: Collection[int] = ()) -> int | None:
        """The least busy server up and not in ``avoid`` (marked in flight); None where every server up is in
        ``avoid``; ``ServerUnavailable`` where none is up."""
        with self._lock:
            self._maybe_refresh()
            up = [i for i in range(len(self._runners)) if i not in self._down]
            live = [i for i in up if i not in avoid]
            if up and not live:
                return None
            if not live:
                if len(self._down) == 1:  # one server: its own error says it best
                    raise next(iter(self._down.values()))
                why = "; ".join(f"{self._runners[i].url}: {exc}" for i, exc in self._down.items())
                raise ServerUnavailable(f"every Triton server stopped answering ({why})")
            n = len(self._runners)
            chosen = min(live, key=lambda i: (self._in_flight[i], (i - self._next) % n))
            self._in_flight[chosen] += 1
            self._next = (chosen + 1) % n
            return chosen

    def infer(self, lr: np.ndarray) -> np.ndarray:
        self.check_input(lr)
        looked_again = False
        rejected: dict[int, RequestRejected] = {}  # servers that turned this window away (their queue full)
        while True:
            try:
                i = self._acquire(rejected)
            except ServerUnavailable:
                if looked_again or self._closed:
                    raise
                # every server dropped (a rolling restart: the first back while the last goes down): look again now,
                # not at the next refresh, before failing the run; once a window
                looked_again = True
                self.refresh()
                continue
            if i is None:  # every server up is shedding load
                raise rejected[max(rejected)]
            try:
                sr = self._runners[i].infer(lr)
            except RequestRejected as exc:  # this one is overloaded, not down: the window tries the others
                rejected[i] = exc
                log.debug("Triton at %s turned a window away; it goes to another server", self._runners[i].url)
                continue
            except ServerUnavailable as exc:
                with self._lock:
                    first_time = i not in self._down
                    self._down.setdefault(i, exc)
                    left = len(self._runners) - len(self._down)
                if first_time and left:
                    log.warning("Triton at %s stopped answering; its windows go to the %d other server%s (%s)",
                                self._runners[i].url, left, "" if left == 1 else "s", exc)
                continue
            finally:
                with self._lock:
                    self._in_flight[i] -= 1
            with self._lock:
                self.windows[i] += 1
            return sr

    # ------------------------------------------------------------------------------------ refresh

    def _maybe_refresh(self) -> None:
        """Start a refresh in the background when one is due (called holding the lock)."""
        if self._closed or time.monotonic() - self._last_refresh < self.refresh_s:
            return
        if self._refresher is not None and self._refresher.is_alive():
            return
        self._last_refresh = time.monotonic()
        self._refresher = threading.Thread(target=self.refresh, name="vggx-triton-refresh", daemon=True)
        self._refresher.start()

    def refresh(self) -> None:
        """Add servers the entries now name and bring back dropped ones whose model is ready again (what the
        background refresh runs; callable directly). Failures are logged, never raised."""
        try:
            urls = expand_urls(self._entries, self._resolve, addresses=True)
        except Exception:  # pragma: no cover - the entries were valid when the pool opened
            urls = []
        with self._lock:
            known = {r.url for r in self._runners}
            down = [(i, self._runners[i]) for i in self._down if self._in_flight[i] == 0]
        for url in urls:
            if url in known or url in self._refused or self._closed:
                continue
            try:
                runner = self._open(url)
            except ServerError as exc:
                log.debug("Triton at %s is not ready to join yet (%s)", url, exc)
                continue
            except InferenceError as exc:  # it answers, with a model that is not vggx's (no vggx metadata)
                self._refused.add(url)
                log.warning("%s; not used", exc)  # (it names the server)
                continue
            if runner.info != self.info:
                runner.close()
                self._refused.add(url)
                log.warning("Triton at %s serves another model (%s); not used", url, runner.info)
                continue
            with self._lock:
                if self._closed:
                    runner.close()
                    return
                self._runners.append(runner)
                self._in_flight.append(0)
                self.windows.append(0)
                count = len(self._runners)
            log.info("Triton at %s joined: %d servers now", url, count)
        for i, old in down:
            try:
                fresh = self._open(old.url)  # a restarted server: new connections, no stale shared-memory regions
            except ServerError:
                continue
            except InferenceError as exc:
                self._say_refused(old.url, str(exc))
                continue
            if fresh.info != self.info:  # restarted with another model (a rolling update): its windows would not fit
                fresh.close()
                self._say_refused(old.url, f"serves another model now ({fresh.info})")
                continue
            with self._lock:
                if self._closed or self._in_flight[i]:
                    fresh.close()
                    continue
                self._runners[i] = fresh
                self._down.pop(i, None)
            old.close()
            self._refused.discard(old.url)
            log.info("Triton at %s answers again: it takes windows again", old.url)

    def _say_refused(self, url: str, why: str) -> None:
        """A dropped server that came back unfit stays dropped; said once while it stays so."""
        if url not in self._refused:
            self._refused.add(url)
            log.warning("Triton at %s: %s; it takes no windows", url, why)

    def inference_statistics(self) -> dict[str, dict[str, tuple[int, int]]]:
        """:meth:`TritonRunner.inference_statistics` of every server still taking windows, by URL."""
        with self._lock:
            live = [r for i, r in enumerate(self._runners) if i not in self._down]
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for runner in live:
            out.update(runner.inference_statistics())
        return out

    def close(self) -> None:
        with self._lock:
            self._closed = True
            refresher = self._refresher
        if refresher is not None:
            refresher.join(timeout=5.0)  # a refresh still connecting sees _closed and closes what it opened
        for runner in self._runners:
            runner.close()


def url_schemes(entries: str | list[str]) -> tuple[str, bool] | None:
    """``(protocol, tls)`` that the entries' schemes say (``https://`` is HTTP over TLS, ``grpcs://`` gRPC over
    TLS), or None when none has one; ``ConfigError`` when they disagree or one lacks what the others have."""
    for part in _split(entries):
        _without_scheme(part)  # an unknown scheme is an error
    found = {next((v for k, v in SCHEMES.items() if part.startswith(k)), None) for part in _split(entries)}
    if found == {None}:
        return None
    if len(found) > 1:
        raise ConfigError("--url entries name different schemes (or some none): give every server the same one "
                          "(e.g. all https://)")
    return found.pop()


def may_grow(entries: str | list[str]) -> bool:
    """Whether ``entries`` may name more servers later: several entries, or a host name (not an IP address or this
    host), which DNS may resolve to more addresses (a headless Service as an autoscaler adds pods)."""
    import ipaddress

    items = _entries(entries)
    if len(items) != 1:
        return True
    host = items[0].rpartition(":")[0].strip("[]")
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        return host not in _LOCAL_HOSTS and host != socket.gethostname()


def _not_triton(url: str, protocol: str, exc: BaseException) -> str | None:
    """Where a web server that is not Triton answered at ``url`` over HTTP (with something other than Triton's JSON),
    the error line that says so: a wrong address, not one to retry (exit 1); else None."""
    from tritonclient.utils import InferenceServerException

    if protocol != "http" or not isinstance(exc, InferenceServerException):
        return None
    status = str(exc.status() or "")
    if not (status.isdigit() and "decoding the response" in (exc.message() or "")):
        return None
    return (f"{url} answers http, but not as Triton (HTTP {status}, and not Triton's JSON): is this Triton's http "
            f"port? (pass the right --url)")


def _other_protocol_hint(url: str, protocol: str, reason: str) -> str | None:
    """Where a Triton server answers the other protocol on ``url``'s port (its HTTP port asked over gRPC, or the
    reverse), the error line that says so (``reason``: what the ``protocol`` call met); else None."""
    other = "http" if protocol == "grpc" else "grpc"
    if not _speaks(url, other):
        return None
    # (an --url with a scheme names its protocol, and --protocol may not contradict it: the hint says both ways)
    return (f"Triton at {url} answers {other} on that port, not {protocol} ({reason}): pass --protocol {other} or a "
            f"{other}:// --url (or its {protocol} port)")


def _speaks(url: str, protocol: str, timeout_s: float = 3.0) -> bool:
    """Whether a Triton server at ``url`` answers a liveness check over ``protocol`` within ``timeout_s``."""
    try:
        client = new_client(url, protocol, timeout_s=timeout_s)
    except Exception:  # no server of that kind there
        return False
    try:
        if protocol == "grpc":
            return bool(client.is_server_live(client_timeout=timeout_s))
        return bool(client.is_server_live())
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            client.close()


def _transient(exc: BaseException) -> bool:
    from tritonclient.utils import InferenceServerException

    if restricted_header(exc) is not None:  # gRPC says UNAVAILABLE, but no retry will bring the header
        return False
    if isinstance(exc, InferenceServerException):
        return str(exc.status()) in _TRANSIENT
    # http.client.HTTPException: HTTP's client (geventhttpclient) on a connection closed before or during the answer
    return isinstance(exc, ConnectionError | TimeoutError | socket.timeout | OSError | http.client.HTTPException)


def _reason(exc: BaseException) -> str:
    """What ``exc`` says, whole: the checks on it (out of memory, a lost region, ...) read all of it (ONNX Runtime's
    out-of-memory error says so past its first 300 characters); a message shows :func:`_one_line` of it."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        msg = exc.message() or ""
        status = exc.status()
        return f"{status}: {msg}".strip(": ") if status else (msg or type(exc).__name__)
    return str(exc).strip() or type(exc).__name__


def _one_line(reason: str) -> str:
    """``reason`` as a message shows it: its first line with text, at most 300 characters (a web server's whole
    error page can come in tritonclient's message)."""
    first = next((line.strip() for line in reason.splitlines() if line.strip()), reason.strip())
    return first if len(first) <= 300 else first[:297] + "..."
