"""Where vggx keeps files between runs (no torch, no clients: importable from every part)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "cache_folder", "json_text", "unwritable_file", "unwritable_folder", "write_atomic"]


def cache_dir() -> Path:
    """vggx's cache folder: ``$VGGX_CACHE_DIR``, else ``$XDG_CACHE_HOME/vggx``, else ``~/.cache/vggx``.

    Holds the ONNX exports of checkpoints (``onnx/``), the prepared Triton Python backend
    (``triton-backends/``), server logs (``logs/``), fetched tools and the activations per pixel of each generator
    config that CPU runs size their tiles by (``memory/``).
    """
    if os.environ.get("VGGX_CACHE_DIR"):
        return Path(os.environ["VGGX_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vggx"


def cache_folder(folder: Path) -> Path:
    """``folder`` (in vggx's cache), made with its parents; ``ConfigError`` naming ``VGGX_CACHE_DIR`` where it cannot
    be (a container's read-only home, a cache path under a file)."""
    from vggx.errors import ConfigError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make vggx's cache folder {folder}: {exc.strerror or exc}; set VGGX_CACHE_DIR to a "
                          f"writable folder") from None
    return folder


def json_text(data) -> str:
    """``data`` as standard JSON text, indented: NaN and infinities become null (``JSON.parse``, Go, serde and jq
    refuse Python's ``NaN`` and ``Infinity``; where vggx has one, e.g. a peak it does not know, it means "no
    value")."""
    import json
    import math

    def finite(x):
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: finite(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [finite(v) for v in x]
        return x

    return json.dumps(finite(data), indent=2, allow_nan=False) + "\n"


def _through_proc(path: Path) -> bool:
    """Whether ``path`` names an open file of a process (``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``, or a
    link to one): a file someone else holds open, so written in place, never replaced."""
    p = os.path.abspath(path)
    for _ in range(40):  # the links it goes through, one by one
        if p.startswith("/proc/") or os.path.realpath(os.path.dirname(p)).startswith("/proc/"):
            return True
        try:
            link = os.readlink(p)
        except OSError:
            return False
        p = os.path.normpath(os.path.join(os.path.dirname(p), link))
    return False


def _in_place(path: Path) -> bool:
    """Whether ``path`` is written in place rather than through a temporary file and a rename: a target that exists
    and is not a regular file (a FIFO, a character device such as ``/dev/null`` or a terminal), or a process's open
    file. Replacing those would put a regular file where the device or the pipe was (as root, for every process)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # made new: through a temporary file
    return (not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)) or _through_proc(path)


def _open_fifo(path: Path, wait_s: float) -> int:
    """A FIFO opened for writing once a process reads it (``OSError`` ENXIO after ``wait_s``), blocking again."""
    import errno
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            if time.monotonic() >= deadline:
                raise OSError(errno.ENXIO, f"no process reads this FIFO (waited {wait_s:g} s)", str(path)) from None
            time.sleep(0.05)
            continue
        os.set_blocking(fd, True)
        return fd


def _temp_path(real: Path) -> Path:
    return real.with_name(f".{real.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, data: bytes, fifo_wait_s: float = 10.0) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename: readers see
    the old file or the new one, never half of it.

    A symbolic link is followed: the file it points to is replaced (the temporary file sits beside it) and the link
    stays. A target that is not a regular file (a FIFO, ``/dev/stdout``, a terminal) is written directly; a FIFO
    no process reads within ``fifo_wait_s`` is an error, not a wait for ever at the end of a run. Errors are
    ``OSError``, for the caller to word."""
    if _in_place(path):
        import stat

        mode = os.stat(path).st_mode
        if stat.S_ISFIFO(mode):
            with os.fdopen(_open_fifo(path, fifo_wait_s), "wb") as f:
                f.write(data)
            return
        with open(path, "ab" if stat.S_ISREG(mode) else "wb") as f:  # a redirected stdout: added to, not cut
            f.write(data)
        return
    real = Path(os.path.realpath(path))
    tmp = _temp_path(real)
    try:
        tmp.write_bytes(data)
        if real.exists():
            os.chmod(tmp, os.stat(real).st_mode & 0o7777)  # the file it replaces keeps its permissions
        tmp.replace(real)
    finally:
        tmp.unlink(missing_ok=True)


def unwritable_file(path: Path) -> str | None:
    """Why ``write_atomic(path, ...)`` would fail, or None where it can write: checked by creating and removing its
    temporary file (``os.access`` says yes to root under /proc, on a read-only mount, on a full quota). A target
    written in place (a FIFO, a device) is only asked ``os.access``: opening one can block or have effects."""
    import errno

    path = Path(path)
    if path.is_dir():
        return f"{path} is a directory; name a file"
    if _in_place(path):
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    real = Path(os.path.realpath(path))
    if not real.parent.is_dir():
        return f"directory {real.parent} does not exist"
    if real.exists() and not os.access(real, os.W_OK):
        return f"{path} is not writable"
    import uuid

    tmp = real.with_name(f".{real.name}.{uuid.uuid4().hex[:12]}.probe")  # not a stale temp file's name (PID 1 again)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        return f"{path} cannot be written ({exc.strerror or errno.errorcode.get(exc.errno, exc)})"
    os.close(fd)
    tmp.unlink(missing_ok=True)
    return None


def unwritable_folder(folder: Path) -> str | None:
    """Why ``folder`` (made later, with its parents) could not be made or written in, or None where it can: the
    nearest part of it that exists must be a folder this process may write in. Checked before long work."""
    probe = Path(folder)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None
