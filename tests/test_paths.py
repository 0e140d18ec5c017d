"""--json and write_atomic: a link is followed and kept, a FIFO or device is written in place, never replaced, and a
path that cannot be written is refused before the work."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest
from typer.testing import CliRunner

from vggx.cli import app
from vggx.paths import unwritable_file, write_atomic

INFO = ["info", "--config", "tiny", "--lr-size", "16x16"]


def test_a_symlink_is_followed_and_kept(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    result = CliRunner().invoke(app, [*INFO, "--json", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text())["config"] == "tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]  # no temp file left


def test_a_dangling_symlink_makes_its_target(tmp_path):
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "sub" / "new.json")
    write_atomic(link, b"x")
    assert link.is_symlink() and (tmp_path / "sub" / "new.json").read_bytes() == b"x"


def _read_fifo(fifo, got):
    with open(fifo, "rb") as f:
        got.append(f.read())


@pytest.mark.parametrize("through_link", [False, True])
def test_a_fifo_is_written_not_replaced(tmp_path, through_link):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    target = fifo
    if through_link:
        target = tmp_path / "link"
        target.symlink_to(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=_read_fifo, args=(fifo, got), daemon=True)
    reader.start()
    result = CliRunner().invoke(app, [*INFO, "--json", str(target)])
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a FIFO, not a regular file
    assert json.loads(got[0])["config"] == "tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"pipe", target.name})


def test_a_fifo_no_process_reads_is_an_error_not_a_wait_for_ever(tmp_path):
    """Opening a FIFO to write waits for a reader: at the end of a run, with none, the process never exited."""
    import errno
    import time

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(OSError, match="no process reads this FIFO") as caught:
        write_atomic(fifo, b"{}", fifo_wait_s=0.3)
    assert caught.value.errno == errno.ENXIO and time.monotonic() - started < 20
    got: list[bytes] = []  # a reader that comes within the wait gets it
    threading.Timer(0.2, _read_fifo, args=(fifo, got)).start()
    write_atomic(fifo, b"{}", fifo_wait_s=20)
    for _ in range(200):
        if got:
            break
        time.sleep(0.05)
    assert got == [b"{}"]


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("{}")
    path.chmod(0o640)
    write_atomic(path, b"[]")
    assert path.read_bytes() == b"[]" and stat.S_IMODE(path.stat().st_mode) == 0o640


def test_json_that_cannot_be_written_is_refused_before_the_work(tmp_path):
    # /proc: os.access says yes to root, but nothing can be made there
    result = CliRunner().invoke(app, [*INFO, "--json", "/proc/vggx-test.json"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == "error: --json /proc/vggx-test.json cannot be written (No such file or directory)"
    assert result.stdout == "" and not os.path.exists("/proc/vggx-test.json")


def test_json_naming_a_directory_is_refused_with_one_message(tmp_path):
    # unwritable_file owns the check; check_json_path only adds "--json"
    result = CliRunner().invoke(app, [*INFO, "--json", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"error: --json {tmp_path} is a directory; name a file"
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_unwritable_file_makes_and_removes_its_probe(tmp_path):
    assert unwritable_file(tmp_path / "x.json") is None
    assert list(tmp_path.iterdir()) == []



def test_a_stale_temp_file_does_not_pass_the_check(tmp_path, monkeypatch):
    """A killed run's temporary file (in a container the PID is the same each run) made the check pass untried."""
    (tmp_path / f".x.json.{os.getpid()}.tmp").write_text("")
    real_open = os.open

    def read_only(path, flags, *args):  # a folder that takes no new file (a read-only mount)
        if flags & os.O_CREAT:
            raise FileExistsError(path) if os.path.exists(path) else PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    assert unwritable_file(tmp_path / "x.json") == f"{tmp_path / 'x.json'} cannot be written (Permission denied)"
    assert unwritable_file(tmp_path) == f"{tmp_path} is a directory; name a file"
    assert "does not exist" in unwritable_file(tmp_path / "no" / "x.json")


def test_an_open_file_named_through_proc_is_added_to_not_replaced(tmp_path):
    """``--json /dev/stdout > log``: the shell's file is written through its open descriptor; a rename put a new file
    where the old one was and the shell's output went to the unlinked one."""
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        f.write("summary\n")
        f.flush()
        inode = os.stat(log).st_ino
        link = tmp_path / "stdout"
        link.symlink_to(f"/proc/self/fd/{f.fileno()}")
        write_atomic(link, b"{}\n")
    assert log.read_text() == "summary\n{}\n" and os.stat(log).st_ino == inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt", "stdout"]
