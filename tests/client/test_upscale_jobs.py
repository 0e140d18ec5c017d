"""A folder's files several at once (``upscale_many``, ``vggx upscale FOLDER OUT --jobs N``): the same outputs as one
at a time, in the folder's order; a bad file reported while the others go on; a backend failure, Ctrl-C or SIGTERM
stopping every file in flight with nothing half-written left."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from test_upscale_cli import assert_one_error_line
from test_upscale_pipeline import _NearestRunner
from videoclips import decode_all, make_video

from vggx.client import UpscaleConfig, upscale_many
from vggx.errors import ConfigError, InferenceError, VideoError
from vggx.video import EncodeConfig

LOSSLESS = EncodeConfig("ffv1")


@pytest.fixture
def folder(tmp_path):
    """Four short clips of two sizes, and a file that is no video."""
    d = tmp_path / "in"
    d.mkdir()
    for i in range(4):
        make_video(d / f"c{i}.mkv", frames=12 + 4 * i, size=(40, 56) if i % 2 else (32, 48), audio="libopus")
    (d / "c9.mkv").write_bytes(b"not a video")
    return d


def _configs(folder, out, **kw):
    out.mkdir(exist_ok=True)
    return [UpscaleConfig(p, out / p.name, encode=LOSSLESS, **kw) for p in sorted(folder.iterdir())]


class _Slow(_NearestRunner):
    """The stand-in model, a little slow (so that files are in flight together), failing on frames of ``fail_size``
    (h, w) when given."""

    def __init__(self, info, fail_size=None, seconds: float = 0.02):
        super().__init__(info)
        self.fail_size, self.seconds, self.calls, self.most, self._now = fail_size, seconds, 0, 0, 0
        self._lock = threading.Lock()

    def infer(self, lr):
        with self._lock:
            self.calls += 1
            self._now += 1
            self.most = max(self.most, self._now)
        try:
            time.sleep(self.seconds)
            if self.fail_size is not None and lr.shape[2:4] == self.fail_size:
                raise InferenceError("backend fell over")
            return super().infer(lr)
        finally:
            with self._lock:
                self._now -= 1


def test_several_at_once_write_what_one_at_a_time_writes(folder, tmp_path, torch_runner):
    one = upscale_many(_configs(folder, tmp_path / "one"), _NearestRunner(torch_runner.info), jobs=1)
    runner = _Slow(torch_runner.info)
    told = []
    many = upscale_many(_configs(folder, tmp_path / "many"), runner, jobs=3,
                        done=lambda c, outcome: told.append(c.input.name))
    assert runner.most >= 2  # files were in flight together
    assert sorted(told) == [f"c{i}.mkv" for i in (0, 1, 2, 3, 9)]
    for a, b in zip(one, many, strict=True):
        assert type(a) is type(b)
        if isinstance(a, VideoError):  # the file that is no video: its error, the others done
            assert "c9.mkv is not a video" in str(a) and str(a) == str(b)
            continue
        assert a.input == b.input and a.frames == b.frames
        for x, y in zip(decode_all(a.output), decode_all(b.output), strict=True):
            np.testing.assert_array_equal(x, y)
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == [f"c{i}.mkv" for i in range(4)]


def test_a_backend_failure_stops_every_file_and_leaves_nothing_half_written(folder, tmp_path, torch_runner):
    out = tmp_path / "out"
    with pytest.raises(InferenceError, match="fell over"):
        upscale_many(_configs(folder, out), _Slow(torch_runner.info, fail_size=(40, 56)), jobs=2)
    left = sorted(p.name for p in out.iterdir())
    assert all(not name.startswith(".") for name in left)  # no temporary file
    for name in left:  # what was finished before the failure is whole
        assert len(decode_all(out / name)) in (12, 20)
    assert not [t for t in threading.enumerate() if t.name.startswith(("vggx-job", "vggx-encode"))]


def test_ctrl_c_stops_the_files_in_flight(folder, tmp_path, torch_runner):
    import _thread

    out = tmp_path / "out"
    timer = threading.Timer(0.3, _thread.interrupt_main)  # Ctrl-C, landing in the main thread as it does
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            upscale_many(_configs(folder, out), _Slow(torch_runner.info, seconds=0.5), jobs=2)
    finally:
        timer.cancel()
    assert all(not p.name.startswith(".") for p in out.iterdir())
    assert not [t for t in threading.enumerate() if t.name.startswith("vggx-job")]


def test_jobs_are_checked(torch_runner):
    with pytest.raises(ConfigError, match=r"--jobs must be in 1\.\.64, got 0"):
        upscale_many([], _NearestRunner(torch_runner.info), jobs=0)


class TestCli:
    def test_a_folder_several_at_once(self, cli, folder, tmp_path):
        out = tmp_path / "out"
        result = cli(folder, out, "--jobs", "2", "--json", tmp_path / "r.json")
        assert result.exit_code == 1, result.output  # the file that is no video
        assert "4 upscaled, 0 skipped, 1 failed: c9.mkv" in result.stdout
        assert result.stderr.count("error: ") == 1 and "c9.mkv is not a video" in result.stderr
        data = json.loads((tmp_path / "r.json").read_text())
        assert [r["input"].rsplit("/", 1)[-1] for r in data["results"]] == [f"c{i}.mkv" for i in range(4)]
        assert [r["frames"] for r in data["results"]] == [12, 16, 20, 24] and data["failed"] == ["c9.mkv"]

    def test_one_input_is_one_job(self, cli, clips, tmp_path):
        assert_one_error_line(cli(clips["aac"], tmp_path / "o.mp4", "--jobs", "2"),
                              "--jobs runs a folder's files at once; ")
        assert not (tmp_path / "o.mp4").exists()


def test_sigterm_stops_a_folder_run_in_flight(tiny_checkpoint_path, tmp_path):
    """A scheduler's SIGTERM while two files are being upscaled: both stop, neither leaves a file, exit 143."""
    import signal

    from test_upscale_cli import _vggx, wait_while_running

    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        make_video(src / f"c{i}.mkv", frames=96, codec="ffv1", pix_fmt="bgr0")
    out = tmp_path / "out"
    proc = _vggx(["upscale", src, out, "--jobs", "2", "--backend", "torch", "--checkpoint", tiny_checkpoint_path,
                  "--threads", "1"])
    # both temporary files: both files under way
    wait_while_running(proc, lambda: out.is_dir() and len(list(out.iterdir())) == 2, 60,
                       "the two files did not both start")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "error: terminated (SIGTERM)" in err
    assert not out.exists()  # the output folder this run made, with nothing in it, is taken away again


class TestRecursive:
    def test_the_tree_is_mirrored_and_hidden_folders_and_the_output_left_out(self, tmp_path):
        from vggx.client import plan_folder

        src = tmp_path / "library"
        for rel in ("a.mp4", "Season 1/e01.mkv", "Season 1/e02.mkv", "Season 2/e01.mkv", ".cache/x.mp4",
                    "Season 1/notes.txt", "x4/done.mp4"):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(b"")
        out = src / "x4"  # the output folder inside the input folder: not taken for input
        pairs = plan_folder(src, out, recursive=True)
        assert [(str(a.relative_to(src)), str(b.relative_to(out))) for a, b in pairs] == [
            ("Season 1/e01.mkv", "Season 1/e01.mkv"), ("Season 1/e02.mkv", "Season 1/e02.mkv"),
            ("Season 2/e01.mkv", "Season 2/e01.mkv"), ("a.mp4", "a.mp4")]
        assert [a.name for a, _ in plan_folder(src, tmp_path / "flat")] == ["a.mp4"]  # not recursive: the top only
        with pytest.raises(ConfigError, match=r"no videos in .*empty or its subfolders"):
            (tmp_path / "empty" / "sub").mkdir(parents=True)
            plan_folder(tmp_path / "empty", tmp_path / "o", recursive=True)

    def test_cli_upscales_the_subfolders_into_the_same_places(self, cli, tmp_path):
        src = tmp_path / "library"
        for rel in ("Season 1/e01.mkv", "Season 2/e01.mkv"):
            (src / rel).parent.mkdir(parents=True)
            make_video(src / rel, frames=6)
        (src / "Season 2" / "broken.mkv").write_bytes(b"no video")
        (src / "Extras" / "Deleted").mkdir(parents=True)
        (src / "Extras" / "Deleted" / "cut.mkv").write_bytes(b"no video either")
        out = tmp_path / "x4"
        result = cli(src, out, "--recursive", "--jobs", "2")
        assert result.exit_code == 1, result.output
        assert "2 upscaled, 0 skipped, 2 failed: Extras/Deleted/cut.mkv, Season 2/broken.mkv" in result.stdout
        assert sorted(str(p.relative_to(out)) for p in out.rglob("*.mkv")) == ["Season 1/e01.mkv", "Season 2/e01.mkv"]
        assert sorted(p.name for p in out.iterdir()) == ["Season 1", "Season 2"]  # none made for nothing written
        assert all(len(decode_all(p)) == 6 for p in out.rglob("*.mkv"))

    def test_one_input_is_not_a_tree(self, cli, clips, tmp_path):
        assert_one_error_line(cli(clips["aac"], tmp_path / "o.mp4", "--recursive"),
                              "--recursive walks a folder's subfolders; ")


_SIGNAL_INSIDE_WAIT = r"""
import concurrent.futures as cf
import os
import signal
import sys

import vggx.client.pipeline as pipeline
from vggx.errors import Terminated
from vggx.server import sigterm_as_interrupt


def upscale(config, progress=None, runner=None, cancel=None, files=1):  # a file that runs until the folder run stops it
    while not cancel.wait(0.01):
        pass
    raise pipeline.Cancelled("stopped")


pipeline.upscale = upscale
pipeline._cancel_runs = lambda runner, resume=False: None
real_wait = cf.wait
calls = 0


def wait(fs, timeout=None, return_when=cf.ALL_COMPLETED):
    # concurrent.futures.wait takes the futures' locks one by one; the signal lands while it holds the first
    global calls
    calls += 1
    if calls == 3:
        lock = next(iter(fs))._condition
        lock.acquire()
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        for _ in range(1000):  # (where Python runs the handler, if os.kill has not)
            pass
        lock.release()
    return real_wait(fs, timeout, return_when)


cf.wait = wait
with sigterm_as_interrupt():
    try:
        pipeline.upscale_many([object(), object()], runner=None, jobs=2)
    except Terminated:
        print("terminated")
    except KeyboardInterrupt:
        print("interrupted")
"""


@pytest.mark.parametrize(("sig", "raised"), [("SIGTERM", "terminated"), ("SIGINT", "interrupted")])
def test_a_signal_inside_the_wait_for_the_files_stops_the_run(sig, raised):
    """Ctrl-C or SIGTERM landing while the main thread is inside ``concurrent.futures.wait`` (holding a future's
    lock) is raised after it, not there: raised there, the lock stayed held, the worker finishing that future waited
    for it, and so did the pool's shutdown, for ever (a CI run's folder SIGTERM test hung so, about 1 in 200)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _SIGNAL_INSIDE_WAIT, sig], capture_output=True, text=True,
                            timeout=30)
    assert (result.returncode, result.stdout.strip()) == (0, raised), result.stderr


def test_deferred_signals_are_raised_where_the_block_asks():
    """Held back inside the block, then raised by their own handlers (SIGTERM's under sigterm_as_interrupt:
    Terminated) where the block asks or, at the latest, as it ends; the handlers put back; a signal that is ignored
    stays ignored; in another thread nothing changes."""
    import os
    import signal

    from vggx.errors import Terminated, deferred_signals
    from vggx.server import sigterm_as_interrupt

    def spin():  # where Python runs a handler, if os.kill has not
        for _ in range(1000):
            pass

    with sigterm_as_interrupt():
        before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        for sig, raised in ((signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)):
            with deferred_signals() as received:
                received.raise_if_any()  # nothing yet
                os.kill(os.getpid(), sig)
                os.kill(os.getpid(), signal.SIGINT)  # a second signal: the first is the one raised
                spin()
                with pytest.raises(raised) as exc:
                    received.raise_if_any()
                assert type(exc.value) is raised
                received.raise_if_any()  # raised once
            assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before

        with pytest.raises(Terminated), deferred_signals():  # not asked for: raised as the block ends
            os.kill(os.getpid(), signal.SIGTERM)
            spin()
            reached = True
        assert reached and (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before

        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a job started in the background
        try:
            with deferred_signals() as received:
                os.kill(os.getpid(), signal.SIGINT)
                spin()
                assert received.signum is None  # ignored, not held back to be raised
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        finally:
            signal.signal(signal.SIGINT, previous)

    outside = []  # in another thread (no handlers can be set there): the signals are left as they are

    def elsewhere():
        with deferred_signals() as received:
            outside.append(received.signum)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert outside == [None]


def test_result_of_raises_a_signal_after_the_wait():
    """A SIGTERM while the main thread waits for a future (the encoder's converted frame, the decoder's) is raised
    once the wait is over, not inside it."""
    import os
    import signal
    from concurrent.futures import Future

    from vggx.errors import Terminated, result_of
    from vggx.server import sigterm_as_interrupt

    future: Future = Future()

    def later():
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        future.set_result(5)

    with sigterm_as_interrupt():
        assert result_of(_done(4)) == 4
        thread = threading.Thread(target=later)
        thread.start()
        with pytest.raises(Terminated):
            result_of(future, poll=1.0)
        assert future.done()  # raised after the answer (within the poll), not inside the wait for it
        thread.join()

        slow: Future = Future()  # an answer 20 s away: raised at the next poll, not once it comes
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
        answer = threading.Timer(20, slow.set_result, (1,))
        timer.start()
        answer.start()
        with pytest.raises(Terminated):
            result_of(slow, poll=0.05)
        assert not slow.done()
        answer.cancel()
        timer.join()

        failed: Future = Future()  # the work's own TimeoutError is raised, not waited on for ever
        failed.set_exception(TimeoutError("the work's"))
        with pytest.raises(TimeoutError, match="the work's"):
            result_of(failed, poll=0.05)


def _done(value):
    from concurrent.futures import Future

    future: Future = Future()
    future.set_result(value)
    return future
