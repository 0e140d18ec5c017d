"""CLI wiring: commands exist, print real numbers and fail with one line."""

from __future__ import annotations

import json
import re
import sys
from fractions import Fraction

import pytest
from typer.testing import CliRunner

from vggx.cli import app

runner = CliRunner()


def test_info_config_prints_params_and_flops(tmp_path):
    out = tmp_path / "info.json"
    result = runner.invoke(app, ["info", "--config", "base", "--lr-size", "180x320", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["params"] > 20e6 and data["gflops_per_frame"] > 100
    assert f"{data['params']:,}" in result.output
    assert "720x1280" in result.output
    # the peak of live FP16 activations for one window: what sizes a GPU (and a TensorRT profile)
    from vggx.generator import get_config
    from vggx.generator.flops import activation_bytes

    assert data["activation_bytes_fp16"] == activation_bytes(get_config("base"), (180, 320)) > 2**30
    assert f"{data['activation_bytes_fp16'] / 2**30:.2f} GiB" in result.output


def test_info_checkpoint_shows_metadata(tiny_checkpoint_path):
    result = runner.invoke(app, ["info", str(tiny_checkpoint_path)])
    assert result.exit_code == 0, result.output
    assert "meta.window" in result.output and "vggx-tiny-x4" in result.output
    # the checkpoint's path is a row (folded where long), the title a title: not "vggx model —" wrapped at 80
    first = result.output.splitlines()[0]
    assert first.strip() == "vggx model" and "│ checkpoint " in result.output


def test_info_takes_the_checkpoint_as_the_other_commands_do(tiny_checkpoint_path, tmp_path):
    result = runner.invoke(app, ["info", "-c", str(tiny_checkpoint_path)])
    assert result.exit_code == 0, result.output
    cells = re.sub(r"[│\s]", "", result.output)  # the table's text, folded cells joined
    assert "meta.window" in result.output and f"checkpoint{tiny_checkpoint_path}" in cells
    for args, said in [(["info", str(tmp_path / "a.safetensors"), "-c", str(tiny_checkpoint_path)], "two checkpoints"),
                       (["info", "-c", str(tiny_checkpoint_path), "--config", "tiny"], "not both")]:
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and said in result.output and "Usage" not in result.output, result.output


def test_info_bad_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\0" * 10)
    result = runner.invoke(app, ["info", str(bad)])
    assert result.exit_code == 1
    assert "is not a vggx checkpoint" in result.output
    assert "Traceback" not in result.output


def test_info_bad_size():
    result = runner.invoke(app, ["info", "--config", "tiny", "--lr-size", "big"])
    assert result.exit_code == 1 and "--lr-size must look like HxW" in result.output


@pytest.mark.parametrize(("size", "said"), [("180x320", ""), ("8x8", " (outside the model's 16x16..1088x1920: vggx "
                                                                      "upscale pads it)"),
                                            ("2160x3840", " (outside the model's 16x16..1088x1920: vggx upscale "
                                                          "takes it in tiles)")])
def test_info_says_a_size_outside_the_models_range(tiny_checkpoint_path, size, said):
    """A calculator, but it printed the cost of a size the model cannot run as if it could."""
    result = runner.invoke(app, ["info", str(tiny_checkpoint_path), "--lr-size", size])
    assert result.exit_code == 0, result.output
    h, w = map(int, size.split("x"))
    cells = re.sub(r"[│\s]", "", result.output)  # the table's text, folded cells joined
    assert re.sub(r"\s", "", f"LR->HR{size} -> {4 * h}x{4 * w}{said}GFLOPs") in cells, result.output


def test_default_concurrency_per_backend():
    from vggx.cli import default_concurrency
    from vggx.client import Backend

    assert default_concurrency(Backend.TRITON, "cpu") == 4
    assert default_concurrency(Backend.TRITON, "cpu", servers=3) == 12  # 4 per replica
    assert default_concurrency(Backend.TORCH, "cuda") == default_concurrency(Backend.TORCH, "cuda:1") == 2
    assert default_concurrency(Backend.TORCH, "cpu") == default_concurrency(Backend.ONNXRUNTIME, "cpu") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--encoders", "0"], "error: --encoders must be in 1..64, got 0"),
    (["--encoders", "2", "--codec", "mpeg4"],
     "error: --encoders applies to ffv1, libsvtav1, libvpx-vp9, libx264, libx264rgb, libx265, prores_ks, not mpeg4"),
])
def test_upscale_bad_encoders_is_one_line_and_writes_nothing(tmp_path, args, message):
    src = tmp_path / "in.mp4"
    src.write_bytes(b"not looked at: the settings are checked first")
    out = tmp_path / ("out.mkv" if "ffv1" in args else "out.mp4")
    result = runner.invoke(app, ["upscale", str(src), str(out), *args])
    assert result.exit_code != 0
    assert result.output.strip() == message
    assert not out.exists()


@pytest.mark.parametrize(("text", "seconds"), [("0", 0.0), ("90.5", 90.5), ("1:30.5", 90.5), ("01:02:03", 3723.0),
                                              ("1:2:3.25", 3723.25)])
def test_start_takes_seconds_or_timestamps(text, seconds):
    from vggx.cli import _parse_time

    assert _parse_time(text) == seconds


@pytest.mark.parametrize(("text", "rate"), [("24", Fraction(24)), ("23.976", Fraction(24000, 1001)),
                                            ("29.97", Fraction(30000, 1001)), ("30000/1001", Fraction(30000, 1001)),
                                            ("12.5", Fraction(25, 2))])
def test_fps_takes_rates_and_means_ntsc(text, rate):
    from vggx.cli import _parse_rate

    assert _parse_rate(text) == rate


@pytest.mark.parametrize("command", [["info"], ["bench", "--lr-size", "16x16"], ["evaluate", "--no-held-out"]])
def test_json_paths_are_checked_before_any_work(tmp_path, command):
    result = CliRunner().invoke(app, [*command, "--json", str(tmp_path / "missing" / "x.json")])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"error: --json {tmp_path / 'missing' / 'x.json'}: directory " \
                                    f"{tmp_path / 'missing'} does not exist"


@pytest.mark.parametrize(("command", "message"), [
    (["train", "--config", "tiny", "--steps", "0"], "error: --steps must be >= 1, got 0"),
    (["export", "--window", "0", "--no-verify"], "error: --window must be >= 1 frames, got 0"),
    (["bench", "--window", "0"], "error: --window must be >= 1 frames, got 0"),
])
def test_zero_is_not_taken_for_the_default(tmp_path, command, message):
    where = {"train": ["--out", str(tmp_path / "run")], "export": ["--repo", str(tmp_path / "repo")]}
    where = where.get(command[0], [])
    result = CliRunner().invoke(app, [*command, *where])
    assert result.exit_code == 1 and result.stderr.strip() == message, result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("flags", "message"), [
    (["--backend", "onnxruntime", "--host-memory-budget", "8GiB"],
     "error: --host-memory-budget applies to CPU instances (the python backend, torch with --instance-kind cpu); the "
     "onnxruntime backend's run on GPUs here, whose memory runs out with an error of its own"),
    (["--backend", "python", "--host-memory-budget", "lots"],
     "error: --host-memory-budget must be auto, off or a size of at least 1 MiB (16GiB, 12G, 8e9 bytes), got 'lots'"),
])
def test_a_host_memory_budget_is_checked_before_the_export(tmp_path, flags, message):
    result = CliRunner().invoke(app, ["export", "--repo", str(tmp_path / "repo"), *flags])
    assert result.exit_code == 1 and result.stderr.strip() == message, result.output
    assert list(tmp_path.iterdir()) == []


def test_evaluate_with_nothing_to_evaluate_is_an_error():
    """--no-held-out and no videos printed an empty table and exited 0."""
    result = CliRunner().invoke(app, ["evaluate", "--no-held-out"])
    assert result.exit_code == 1 and result.stderr.strip() == ("error: nothing to evaluate: name videos, or keep the "
                                                               "held-out clips (drop --no-held-out)")


@pytest.mark.parametrize("command", ["info", "upscale", "export", "bench", "evaluate"])
def test_help_says_the_checkpoint_default(command):
    """The help's "[default: the shipped one]" was read as rich markup and vanished."""
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "[default: the shipped one]" in result.output, result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "other"], "--model names a model a Triton server serves; it applies with --url"),
    (["--ssl", "--header", "A: b"], "--ssl and --header apply to a Triton server: with --url"),
    (["--ca-cert", "ca.pem"], "--ca-cert applies to a Triton server: with --url"),
    (["--protocol", "http"], "--protocol picks how to talk to a Triton server; it applies with --url"),
    (["--api-key", "0123456789abcdef0"], "--api-key is the key of a `vggx serve --api-key` server"),
])
def test_info_refuses_server_options_without_url(args, message):
    """`vggx info` without --url took every Triton option and ignored it (upscale and bench refused them)."""
    result = CliRunner().invoke(app, ["info", "--config", "tiny", *args])
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert message in line, line


def test_info_ignores_a_key_in_the_environment():
    result = CliRunner().invoke(app, ["info", "--config", "tiny"], env={"VGGX_API_KEY": "short"})
    assert result.exit_code == 0, result.output


def test_python_dash_m_vggx_is_the_command():
    """``python -m vggx`` for an environment whose scripts are not on PATH: the same commands, errors and exit codes
    (it was "No module named vggx.__main__")."""
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "vggx", "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "upscale" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "vggx", "upscale", "/nonexistent/in.mp4", "/tmp/o.mp4"],
                         capture_output=True, text=True, timeout=120)
    assert (bad.returncode, bad.stderr.strip()) == (1, "error: input not found: /nonexistent/in.mp4"), bad.stderr


def test_export_and_serve_take_the_repository_by_either_name(tmp_path):
    """DESIGN.md names it `--repo` for export and `--model-repository` (Triton's) for serve: each takes both."""
    import typer.main

    commands = typer.main.get_command(app).commands
    for name in ("export", "serve"):
        opts = next(p.opts for p in commands[name].params if "--repo" in p.opts or "--model-repository" in p.opts)
        assert set(opts) == {"--repo", "--model-repository"}, name
    for flag in ("--repo", "--model-repository"):
        result = runner.invoke(app, ["serve", flag, str(tmp_path), "--check"])
        assert result.exit_code == 1 and f"{tmp_path} holds no model 'vggx'" in result.output, result.output


@pytest.mark.parametrize(("where", "argv"), [
    ("typer.main.get_command", ["vggx", "info"]),  # while Typer builds the commands, outside handle_errors
    ("logging.basicConfig", ["vggx", "info", "--config", "tiny"]),  # the app's callback: Typer exited 130 silently
])
def test_ctrl_c_before_the_command_runs_is_one_line(monkeypatch, capsys, where, argv):
    """Ctrl-C in the first fraction of a second, before a command's own handle_errors: one line and exit 130."""
    import importlib

    import vggx.cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    module, _, name = where.rpartition(".")
    monkeypatch.setattr(importlib.import_module(module), name, interrupted)
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        vggx.cli.main()
    assert exit_info.value.code == 130
    captured = capsys.readouterr()
    assert captured.err.strip() == "error: interrupted" and captured.out == ""


def test_ctrl_c_in_a_command_says_interrupted_once(monkeypatch, capsys):
    import vggx.cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vggx.cli, "check_json_path", interrupted)  # inside the command: handle_errors says it
    monkeypatch.setattr(sys, "argv", ["vggx", "info", "--config", "tiny"])
    with pytest.raises(SystemExit) as exit_info:
        vggx.cli.main()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == "error: interrupted"


@pytest.mark.parametrize("error", ["vggx", "sigterm", "ctrl-c"])
def test_debug_lets_a_commands_error_out_with_its_traceback(monkeypatch, capsys, error):
    """``--debug`` before the command: a VggxError, SIGTERM's Terminated or Ctrl-C inside a command propagates (the
    traceback), where without it each is one line and an exit code. Guards handle_errors' re-raise of each; the
    VggxError one, the common case (a bad file), was untested."""
    import vggx.cli
    from vggx.errors import ConfigError, Terminated

    raised = {"vggx": ConfigError("no room"), "sigterm": Terminated(), "ctrl-c": KeyboardInterrupt()}[error]

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(vggx.cli, "check_json_path", fail)  # inside the command, as the interrupt test above
    monkeypatch.setitem(vggx.cli._state, "debug", False)  # restored afterwards: --debug does not outlive the test
    monkeypatch.setattr(sys, "argv", ["vggx", "info", "--config", "tiny"])
    with pytest.raises(SystemExit) as exit_info:
        vggx.cli.main()
    assert exit_info.value.code == {"vggx": 1, "sigterm": 143, "ctrl-c": 130}[error]
    assert capsys.readouterr().err.startswith("error: ")
    monkeypatch.setattr(sys, "argv", ["vggx", "--debug", "info", "--config", "tiny"])
    if error == "vggx":  # the error itself goes on, with its traceback
        with pytest.raises(type(raised)) as info:
            vggx.cli.main()
        assert info.value is raised and "error:" not in capsys.readouterr().err
        return
    with pytest.raises(SystemExit) as exit_info:  # an interrupt: its traceback, and the documented exit code
        vggx.cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == {"sigterm": 143, "ctrl-c": 130}[error], err
    assert "Traceback (most recent call last)" in err and type(raised).__name__ in err and "error:" not in err


def test_debug_shows_a_real_commands_error_as_a_traceback(tmp_path, monkeypatch):
    """The one-line error of test_info_bad_file_is_one_line, with --debug: the VggxError itself, with its traceback."""
    import vggx.cli
    from vggx.errors import VggxError

    monkeypatch.setitem(vggx.cli._state, "debug", False)  # restored afterwards: --debug does not outlive the test

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\0" * 10)
    result = runner.invoke(app, ["--debug", "info", str(bad)])
    assert isinstance(result.exception, VggxError) and "is not a vggx checkpoint" in str(result.exception)
    assert result.exc_info[2] is not None and "error:" not in result.output


def test_ctrl_c_while_the_cli_is_imported_is_one_line_in_process(monkeypatch, capsys):
    """The entry point's own try: importing vggx.cli interrupted (an object in sys.modules whose ``main`` is a
    Ctrl-C); with --debug before the command, the traceback."""
    from vggx.entry import main

    class Interrupted:
        def __getattr__(self, name):
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "vggx.cli", Interrupted())
    monkeypatch.setattr(sys, "argv", ["vggx", "info", "--debug"])  # an argument of the command's, not the CLI's
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 130 and capsys.readouterr().err == "error: interrupted\n"
    monkeypatch.setattr(sys, "argv", ["vggx", "--debug", "info"])
    with pytest.raises(KeyboardInterrupt):
        main()


@pytest.mark.parametrize("how", ["script", "module"])
def test_a_real_ctrl_c_while_the_cli_is_imported_is_one_line(how):
    """A real SIGINT in the first tenth of a second of `vggx --help` (the console script pyproject names, or
    `python -m vggx`), while vggx.cli, Typer and Rich are imported: one line and exit 130, not a traceback (nor an
    exit by SIGINT).

    ``-X importtime`` says when the CLI's import has begun (a module imported after vggx's entry module): the signal
    follows after a random delay, so it lands anywhere from there on, in the import (three such wanted) or in Typer's
    run after it (two wanted). The delays' range adapts: shortened where one overshoots (the help printed, the process
    gone), lengthened while none has landed after the import."""
    import random
    import signal
    import subprocess
    import threading
    import time
    from pathlib import Path

    if how == "script":  # what pip's script for [project.scripts] runs (no tomllib before Python 3.11)
        pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
        module, attr = re.search(r'^vggx = "([\w.]+):(\w+)"$', pyproject, re.MULTILINE).groups()
        args = ["-c", f"import sys; from {module} import {attr}; sys.exit({attr}())"]
    else:
        args = ["-m", "vggx"]
    before_the_try = {"vggx", "vggx.entry"}  # imported before the entry point's try (vggx.__main__ is run)
    rng = random.Random(0)
    spread, in_import, after, tries = 0.2, 0, 0, []
    deadline = time.monotonic() + 120
    while (in_import < 3 or after < 2) and time.monotonic() < deadline:
        proc = subprocess.Popen([sys.executable, "-X", "importtime", *args, "--help"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        err: list[str] = []
        begun = threading.Event()

        def read(stream=proc.stderr, err=err, begun=begun):
            for line in stream:
                err.append(line.rstrip("\n"))
                modules = [x.rpartition("|")[2].strip() for x in err if x.startswith("import time:")]
                if "vggx" in modules and set(modules[modules.index("vggx") + 1:]) - before_the_try:
                    begun.set()
            begun.set()  # the process is gone

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        begun.wait(60)
        delay = rng.uniform(0, spread)
        time.sleep(delay)
        imported = any(line.endswith("| vggx.cli") for line in err)  # by then (as read: may be late, rarely)
        proc.send_signal(signal.SIGINT)
        out = proc.stdout.read()
        proc.wait(60)
        reader.join(60)
        lines = [line for line in err if not line.startswith("import time:")]
        tries.append((round(delay, 3), proc.returncode, lines[-1:]))
        if proc.returncode == 130 and lines == ["error: interrupted"]:
            in_import, after = in_import + (not imported), after + imported
            spread *= 1 if imported or after >= 2 else 1.2
        elif proc.returncode in (0, -signal.SIGINT) and lines == [] and "Usage" in out:  # done (or exiting) already
            spread *= 0.7
        else:
            pytest.fail(f"exit {proc.returncode} {delay:.3f} s after the CLI's import began, stderr:\n" +
                        "\n".join(lines))
    assert in_import >= 3 and after >= 2, f"{in_import} Ctrl-Cs in the import, {after} after, in {len(tries)} tries: " \
        f"{tries}"


def test_version_names_vggx_and_the_libraries_a_run_depends_on():
    """``vggx --version``: the package's version (pyproject reads it from ``vggx.__version__``) and those of the
    libraries a result depends on, for a bug report."""
    from importlib import metadata

    import vggx

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"vggx {vggx.__version__} (torch {metadata.version('torch')}, onnxruntime ")
    assert f"av {metadata.version('av')}" in result.stdout
    assert metadata.version("vggx") == vggx.__version__  # one version, not two that drift


def test_the_sample_clip_maker_says_its_errors_in_one_line(tmp_path):
    """``python -m vggx.sample`` (what ``make demo`` runs first) ended a bad size, or a training extra missing, in a
    traceback."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "vggx.sample", str(tmp_path / "s.mp4"), "--size", "9999x10"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: sample size (9999, 10) is too large for the 427x640 source"], done.stderr
    assert list(tmp_path.iterdir()) == []
