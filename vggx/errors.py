"""The one exception hierarchy of vggx: the CLI catches ``VggxError`` and prints one line."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

__all__ = [
    "EXIT_ERROR",
    "EXIT_TEMPORARY",
    "SIGNAL_POLL_S",
    "TERMINATING",
    "CheckpointError",
    "ConfigError",
    "DeviceOutOfMemoryError",
    "EngineBuildError",
    "ExportError",
    "InferenceError",
    "PluginError",
    "RequestRejected",
    "ServerError",
    "ServerUnavailable",
    "TensorRTNotInstalledError",
    "Terminated",
    "VerificationError",
    "VggxError",
    "VideoError",
    "deferred_signals",
    "raise_if_terminating",
    "result_of",
]


EXIT_ERROR = 1  # the exit status of a failed command
EXIT_TEMPORARY = 75  # sysexits' EX_TEMPFAIL: the same command may succeed later (a Triton server away); retry it


class VggxError(Exception):
    """Base class: a failure the user can act on; the message says what and what to do next. ``exit_code``: the
    command's exit status when it ends the command."""

    exit_code = EXIT_ERROR


class ConfigError(VggxError):
    """Invalid configuration value or combination."""


class CheckpointError(VggxError):
    """A file that is not a vggx checkpoint, or one that does not fit the model."""


class PluginError(VggxError):
    """Custom-op registration or kernel failure."""


class ExportError(VggxError):
    """PyTorch -> ONNX export or model-repository writing failed."""


class VerificationError(ExportError):
    """An exported artefact does not match the step before it within tolerance."""


class EngineBuildError(ExportError):
    """The TensorRT engine build failed."""


class TensorRTNotInstalledError(EngineBuildError):
    """TensorRT's Python package is not importable here."""

    def __init__(self, detail: str = "") -> None:
        msg = "TensorRT is not installed (pip install 'vggx[gpu]', or run inside the NGC Triton container)"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class ServerError(VggxError):
    """Starting, reaching or talking to Triton Inference Server failed."""


class ServerUnavailable(ServerError):
    """Triton could not be reached, or kept failing in ways that pass (its retries spent): the same command may
    succeed later, so it exits with :data:`EXIT_TEMPORARY` (a Kubernetes Job's ``podFailurePolicy`` or a
    scheduler can retry just these)."""

    exit_code = EXIT_TEMPORARY


class InferenceError(VggxError):
    """A backend rejected or failed an inference request."""


class RequestRejected(InferenceError):
    """A Triton server that is up turned the request away (its queue full, or the request's time in it spent):
    load shedding, not an outage. ``vggx bench`` counts it as a failed request; a command that needed the answer
    may succeed later, so it exits with :data:`EXIT_TEMPORARY`."""

    exit_code = EXIT_TEMPORARY


class DeviceOutOfMemoryError(InferenceError):
    """The device ran out of memory on an input of ``shape``: the upscale pipeline retries with smaller tiles;
    ``fits``: the LR pixels of the largest window that does, where the device said (vggx's CPU-served model)."""

    def __init__(self, message: str, shape: tuple[int, ...], fits: int | None = None) -> None:
        super().__init__(message)
        self.shape = tuple(shape)
        self.fits = fits


class VideoError(VggxError):
    """Decoding or encoding a video failed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's ``KeyboardInterrupt`` (see :func:`vggx.server.sigterm_as_interrupt`)."""


class _Flag:
    """A flag a signal handler may set: a plain attribute, no lock (a ``threading.Event`` takes one, and a handler
    running while the interrupted code holds it would wait for itself forever)."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set


# Set by the SIGTERM handler as it raises Terminated. Python swallows an exception raised while a finalizer runs (a
# weakref callback, a __del__), so a signal landing then would be lost: the long loops (an upscale's results, a
# served server's wait) look here too.
TERMINATING = _Flag()


def raise_if_terminating() -> None:
    """Raise :class:`Terminated` if SIGTERM arrived (and its exception was swallowed on the way)."""
    if TERMINATING.is_set():
        raise Terminated


SIGNAL_POLL_S = 0.1  # how often a main thread waiting under deferred_signals looks for a held-back Ctrl-C or SIGTERM


class _Received:
    """What :func:`deferred_signals` holds back: the first Ctrl-C or SIGTERM (plain attributes, as in ``_Flag``)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.handlers: dict[int, Callable] = {}  # the handlers set before the block, which raise the signal

    def raise_if_any(self) -> None:
        """Run the held-back signal's own handler here (``KeyboardInterrupt``; SIGTERM's under
        :func:`vggx.server.sigterm_as_interrupt`: :class:`Terminated`), if one arrived."""
        signum, self.signum = self.signum, None
        if signum is not None:
            self.handlers[signum](signum, None)


@contextlib.contextmanager
def deferred_signals() -> Iterator[_Received]:
    """Inside the block, Ctrl-C and SIGTERM raise nothing where they land: they are noted, and the block raises them
    with ``received.raise_if_any()`` at points of its choosing, and at its end at the latest.

    For a main thread that waits on other threads. Raised in the middle of the standard library's waits, they can
    leave a lock held: ``concurrent.futures.wait`` takes the futures' locks one by one (the worker finishing one, and
    the pool's shutdown, then wait for ever), ``Popen.wait`` takes its own without blocking before its ``try``,
    ``Condition.wait`` lets its lock go before its ``try``. Only signals whose handler is a Python function (that
    raises) are held back; one ignored, or left to kill the process, stays so. Outside the main thread (where
    handlers cannot be set) the block runs with the signals as they are.
    """
    received = _Received()

    def note(signum, frame):
        if received.signum is None:
            received.signum = signum

    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    received.handlers = {signum: handler for signum in (signal.SIGINT, signal.SIGTERM)
                         if callable(handler := signal.getsignal(signum))}
    held = list(received.handlers)
    try:
        for signum in held:
            signal.signal(signum, note)
        yield received
    finally:
        _put_back([(signum, received.handlers[signum]) for signum in held])
    received.raise_if_any()  # the block ended: what it held back now


def _put_back(handlers: list[tuple[int, Callable]]) -> None:
    """Set each signal's handler, every one of them even where a handler already put back raises at once."""
    if handlers:
        try:
            _put_back(handlers[1:])
        finally:
            signal.signal(*handlers[0])


def result_of(future, poll: float = SIGNAL_POLL_S):
    """``future.result()``, with a Ctrl-C or SIGTERM that comes while it waits raised between waits of ``poll``
    seconds, not inside its ``Condition.wait`` (see :func:`deferred_signals`), and not only once the answer comes
    (a window on a CPU can take a minute)."""
    with deferred_signals() as received:
        while True:
            try:
                return future.result(timeout=poll)
            except TimeoutError:
                if future.done():  # the work's own TimeoutError
                    raise
                received.raise_if_any()
