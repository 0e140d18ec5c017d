"""``vggx export`` wiring: flags reach the pipeline, bad input is one line, the repository stays whole.

The ONNX export itself is replaced by a copy of the run's exported graphs (tests of
``export/onnx.py`` cover it); verification, the repository writer and the TensorRT-absent path
run for real.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vggx.cli import app
from vggx.errors import VerificationError
from vggx.export.onnx import Flavor, Precision

runner = CliRunner()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture
def fake_export(monkeypatch, portable_onnx, trt_fp16_onnx):
    """Replace the slow export by a copy of the matching run-scoped graph; record the configs."""
    calls = []

    def export(checkpoint, path, config):
        calls.append(config)
        src = trt_fp16_onnx if config.precision is Precision.FP16 else portable_onnx
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)
        return Path(path)

    monkeypatch.setattr("vggx.export.pipeline.export_onnx", export)
    return calls


def _export(repo: Path, ckpt: Path, *args: str):
    return runner.invoke(app, ["export", "--checkpoint", str(ckpt), "--repo", str(repo), *args])


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_fp16_without_tensorrt_writes_onnx_config_and_the_build_command(tmp_path, tiny_checkpoint_path,
                                                                         fake_export, trt_window):
    repo = tmp_path / "[b]repo"  # printed as text, not rich markup
    result = _export(repo, tiny_checkpoint_path, "--fp16", "--window", str(trt_window), "--max-size", "270x480")
    assert result.exit_code == 0, result.output
    assert str(repo / "vggx" / "1" / "model.onnx") in result.output  # in the build command
    (cfg,) = fake_export
    assert cfg.flavor is Flavor.TRT and cfg.precision is Precision.FP16 and cfg.max_size == (270, 480)
    assert "TensorRT is not installed here" in result.output
    assert "python -m vggx.export.engine" in result.output and "--max-size 270x480" in result.output
    assert "--no-verify" not in result.output  # verified here: the engine is checked where it is built
    assert "parity random N=1" in result.output and "within ±2" in result.output
    assert (repo / "vggx" / "1" / "model.onnx").is_file()
    assert not (repo / "vggx" / "1" / "model.plan").exists()
    config = (repo / "vggx" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in config and "max_batch_size: 4" in config
    # exported again (here, or where TensorRT is): version 1 has no engine yet, so it is filled, not added to
    result = _export(repo, tiny_checkpoint_path, "--fp16", "--window", str(trt_window), "--max-size", "270x480",
                     "--no-verify")
    assert result.exit_code == 0, result.output
    assert " --no-verify" in result.output  # the engine build that finishes it skips its check as well
    assert sorted(p.name for p in (repo / "vggx").iterdir()) == ["1", "config.pbtxt"]


def _served_engine(repo: Path, window: int) -> Path:
    """A repository whose version 1 serves a (stand-in) engine."""
    from vggx.export.repository import write_model_repository

    plan = repo.parent / "stand-in.plan"
    plan.write_bytes(b"an engine")
    meta = {"name": "vggx-tiny-x4", "version": "1", "scale": "4", "window": str(window), "size_multiple": "8",
            "min_size": "16x16", "max_size": "270x480"}
    write_model_repository(repo, backend="tensorrt", artefact=plan, window=window, metadata=meta)
    return repo / "vggx" / "1" / "model.plan"


@pytest.mark.parametrize("args", [(), ("--version", "1", "--force")])
def test_no_engine_here_beside_a_served_engine_is_refused_before_exporting(tmp_path, tiny_checkpoint_path,
                                                                           fake_export, trt_window, monkeypatch, args):
    """Where no engine can be built, the export writes a version with the ONNX alone: beside a served engine it
    became the newest version, which Triton cannot load (and --version 1 --force deleted the working engine)."""
    monkeypatch.setattr("vggx.export.pipeline.engine_unavailable", lambda: "TensorRT is not installed here")
    repo = tmp_path / "repo"
    plan = _served_engine(repo, trt_window)
    before = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
    line = _one_error_line(_export(repo, tiny_checkpoint_path, "--fp16", "--window", str(trt_window),
                                   "--max-size", "270x480", *args))
    assert "TensorRT is not installed here, so no engine would be built, and " in line, line
    assert "serves version 1's engine: a version without model.plan would take its place" in line
    assert fake_export == [] and sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == before
    assert plan.read_bytes() == b"an engine"


@pytest.mark.parametrize("args", [(), ("--force",)])
def test_no_engine_here_switching_a_served_model_to_tensorrt_is_refused_before_exporting(
        tmp_path, tiny_checkpoint_path, fake_export, trt_window, monkeypatch, args):
    """A served python model switched to tensorrt where no engine can be built: the refusal advised --force, which
    wrote a tensorrt config over a version holding the ONNX alone, and nothing of the model loaded any more."""
    monkeypatch.setattr("vggx.export.pipeline.engine_unavailable", lambda: "TensorRT is not installed here")
    repo = tmp_path / "repo"
    assert _export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify").exit_code == 0
    before = {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    line = _one_error_line(_export(repo, tiny_checkpoint_path, "--fp16", "--window", str(trt_window), "--no-verify",
                                   *args))
    assert "TensorRT is not installed here, so no engine would be built, and " in line, line
    assert "serves a python/python model (version 1)" in line and "Export into a new --repo here" in line
    assert "pass --force" not in line
    assert len(fake_export) == 1 and {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*")
                                      if p.is_file()} == before


def test_engine_unavailable_says_why():
    import sys
    import types

    from vggx.export.engine import engine_unavailable

    with pytest.MonkeyPatch.context() as mp:  # `pip install vggx[gpu]` on a machine without a GPU
        mp.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
        mp.setattr("torch.cuda.is_available", lambda: False)
        assert engine_unavailable() == "no CUDA GPU is visible here (TensorRT is installed)"
    if not HAS_TRT:
        assert engine_unavailable() == "TensorRT is not installed here"


def test_tensorrt_without_a_gpu_writes_what_it_can_and_says_why(tmp_path, tiny_checkpoint_path, fake_export,
                                                                trt_window, monkeypatch):
    """TensorRT importable but no GPU failed after the whole export ("needs a CUDA GPU"), writing nothing: it is
    the "no engine here" case, the ONNX, config and build command written."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    repo = tmp_path / "repo"
    result = _export(repo, tiny_checkpoint_path, "--fp16", "--window", str(trt_window), "--max-size", "270x480",
                     "--no-verify")
    assert result.exit_code == 0, result.output
    assert "no CUDA GPU is visible here (TensorRT is installed), so no engine was built" in " ".join(
        result.output.split())
    assert (repo / "vggx" / "1" / "model.onnx").is_file() and "python -m vggx.export.engine" in result.output


def test_an_engine_version_appears_whole(tmp_path, tiny_checkpoint_path, fake_export, trt_window, monkeypatch):
    """With an engine built, the version folder was renamed in (and config.pbtxt written) holding model.plan alone;
    model.onnx and the engine's sidecar were copied in after: a Triton polling the repository could load a version
    still being written, and a failure there left it without them."""
    import vggx.export.repository as repository

    def build(onnx, plan, cfg, replaces=None):  # a stand-in engine and its sidecar, where TensorRT would build them
        Path(plan).write_bytes(b"an engine")
        Path(f"{plan}.json").write_text("{}")
        return Path(plan)

    monkeypatch.setattr("vggx.export.pipeline.engine_unavailable", lambda: None)
    monkeypatch.setattr("vggx.export.pipeline.build_engine", build)
    renamed = []
    real = repository._replace_dir

    def replace_dir(src, dst):
        renamed.append(sorted(p.name for p in src.iterdir()))
        real(src, dst)

    monkeypatch.setattr(repository, "_replace_dir", replace_dir)
    repo = tmp_path / "repo"
    result = _export(repo, tiny_checkpoint_path, "--fp16", "--window", str(trt_window), "--max-size", "270x480",
                     "--no-verify")
    assert result.exit_code == 0, result.output
    assert renamed == [["model.onnx", "model.plan", "model.plan.json"]]
    assert sorted(p.name for p in (repo / "vggx" / "1").iterdir()) == renamed[0]


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here (it would build the engines)")
def test_engine_profile_defaults_to_what_fits_a_gpu(tmp_path, tiny_checkpoint_path, fake_export, trt_window, caplog):
    """TensorRT keeps memory for the profile's max shapes: the model's 1088x1920 at batch 4 (about 97 GiB of FP16
    activations) fits no GPU. The default max is the largest usual size within the budget at --max-batch; an
    explicit one is honoured with a warning; the other backends keep the model's range."""
    from vggx.export.pipeline import ENGINE_ACTIVATION_BUDGET

    assert ENGINE_ACTIVATION_BUDGET == 16 * 2**30
    base = ["--fp16", "--window", str(trt_window), "--no-verify"]
    result = _export(tmp_path / "a", tiny_checkpoint_path, *base)
    assert result.exit_code == 0, result.output
    # T = 4 here (8 in the shipped model: 360x640 at batch 4, 720x1280 at batch 1)
    assert fake_export[-1].max_size == (540, 960) and "--max-size 540x960 --max-batch 4" in result.output
    line = next(line for line in result.output.splitlines() if line.startswith("engine profile:"))
    assert line.startswith("engine profile: up to 4 windows of 4 frames, 16x16 .. 540x960 (tuned for 180x320), "
                           "about ") and "GiB of activations at its max; larger frames are tiled" in line
    result = _export(tmp_path / "b", tiny_checkpoint_path, *base, "--max-batch", "1")
    assert result.exit_code == 0, result.output
    assert fake_export[-1].max_size == (1088, 1920) and "--max-size 1088x1920 --max-batch 1" in result.output
    assert "holds about" not in caplog.text
    result = _export(tmp_path / "e", tiny_checkpoint_path, *base, "--opt-size", "600x1000")  # never below --opt-size
    assert result.exit_code == 0, result.output
    assert fake_export[-1].max_size == (720, 1280) and "holds about" in caplog.text
    result = _export(tmp_path / "c", tiny_checkpoint_path, *base, "--max-size", "1088x1920")
    assert result.exit_code == 0, result.output
    assert fake_export[-1].max_size == (1088, 1920)
    assert "the engine's profile at its max (4 windows of 1088x1920) holds about " in caplog.text
    assert "above the default budget of 16 GiB" in caplog.text
    result = _export(tmp_path / "d", tiny_checkpoint_path, "--no-verify")  # onnxruntime: the model's range
    assert result.exit_code == 0, result.output
    assert fake_export[-1].max_size == (1088, 1920) and "engine profile" not in result.output


def test_python_backend_gets_new_versions_and_overwrites_only_with_force(tmp_path, tiny_checkpoint_path,
                                                                         fake_export):
    repo = tmp_path / "repo"
    for _ in range(2):
        result = _export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify", "--max-batch", "2")
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (repo / "vggx").iterdir() if p.is_dir()) == ["1", "2"]
    assert (repo / "vggx" / "2" / "model.onnx").is_file() and (repo / "vggx" / "2" / "model.py").is_file()
    assert all(c.flavor is Flavor.PORTABLE and c.precision is Precision.FP32 for c in fake_export)

    line = _one_error_line(_export(repo, tiny_checkpoint_path, "--backend", "python", "--version", "2"))
    assert "already exists; pass --force" in line
    assert len(fake_export) == 2  # refused before the (slow) export

    result = _export(repo, tiny_checkpoint_path, "--backend", "python", "--version", "2", "--force",
                     "--no-verify")
    assert result.exit_code == 0, result.output
    assert "max_batch_size: 4" in (repo / "vggx" / "config.pbtxt").read_text()


def test_non_checkpoint_file_is_one_line_and_writes_nothing(tmp_path, fake_export):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a checkpoint")
    repo = tmp_path / "repo"
    line = _one_error_line(_export(repo, bad))
    assert "is not a vggx checkpoint" in line
    assert not repo.exists() and not fake_export


def test_profile_min_above_max_is_one_line(tmp_path, tiny_checkpoint_path, fake_export):
    repo = tmp_path / "repo"
    line = _one_error_line(_export(repo, tiny_checkpoint_path, "--fp16", "--min-size", "128x128",
                                   "--max-size", "64x64"))
    assert "min size 128x128 is above max size 64x64" in line
    assert not repo.exists() and not fake_export


def test_unwritable_repository_is_one_line(tmp_path, tiny_checkpoint_path, fake_export):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    line = _one_error_line(_export(blocker / "repo", tiny_checkpoint_path))
    assert f"{blocker} is a file, not a folder" in line and not fake_export
    line = _one_error_line(_export(blocker, tiny_checkpoint_path))
    assert f"{blocker} is a file, not a folder" in line and not fake_export
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        line = _one_error_line(_export(locked / "repo", tiny_checkpoint_path))
        assert "is not writable" in line and not fake_export


def test_failed_verification_leaves_the_repository_untouched(tmp_path, tiny_checkpoint_path, fake_export,
                                                             monkeypatch):
    def fail(*args, **kwargs):
        raise VerificationError("model.onnx does not match PyTorch: max |diff| 9 levels")

    monkeypatch.setattr("vggx.export.pipeline.verify_onnx", fail)
    repo = tmp_path / "repo"
    line = _one_error_line(_export(repo, tiny_checkpoint_path))
    assert "does not match PyTorch" in line
    assert not (repo / "vggx").exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--flavor", "trt", "--backend", "onnxruntime"], "trt flavour (plugin nodes) runs only in TensorRT"),
        (["--flavor", "trt", "--no-plugins"], "contradicts --flavor trt"),
        (["--backend", "python", "--no-plugins"], "--no-plugins builds the TensorRT engine without vggx's plugins; "
                                                  "--backend python serves the portable graph"),
        (["--no-plugins"], "--backend onnxruntime serves the portable graph (standard ONNX ops) already"),
        (["--flavor", "fast"], "--flavor must be trt or portable"),
        (["--backend", "tflite"], "unknown backend 'tflite'"),
        (["--max-size", "big"], "size must look like HxW"),
        (["--compile"], "--compile applies to --backend torch"),
        (["--backend", "torch", "--flavor", "trt"], "trt flavour (plugin nodes) runs only in TensorRT"),
        (["--backend", "python", "--gpus", "0"], "GPUs were named for the instances, but the python backend's "
                                                  "instances run on the CPU (KIND_CPU)"),
        (["--gpus", "0,x"], "--gpus must be GPU indices separated by commas (e.g. 0,1), got '0,x'"),
        (["--gpus", "1,1"], "--gpus must be distinct GPU indices >= 0, got [1, 1]"),
        (["--instances", "0"], "--instances must be >= 1, got 0"),
        (["--backend", "tensorrt", "--trt-accelerator"], "the TensorRT execution accelerator is an "
                                                          "onnxruntime-backend option, not 'tensorrt'"),
        (["--cpu-threads", "2"], "CPU threads per instance apply to the python backend (ONNX Runtime on the CPU), "
                                 "not 'onnxruntime'"),
        (["--queue-delay-us", "-1"], "--queue-delay-us must be >= 0, got -1"),
        (["--max-queue-size", "-1"], "--max-queue-size must be >= 0 (0: no bound), got -1"),
        (["--versions-served", "0"], "--versions-served must be >= 1, got 0"),
        (["--backend", "torch", "--fp16"], "--fp16 exports an FP16 graph; --backend torch serves the checkpoint"),
        (["--backend", "torch", "--compile", "--instance-kind", "cpu"], "--compile applies to GPU instances"),
        (["--name", "../up"], "--name must be letters, digits, '.', '_' or '-' (a folder of the repository), got "
                              "'../up'"),
        (["--fp16", "--opt-level", "9"], "builder optimisation level must be in 0..5, got 9"),  # before the export
        (["--opt-size", "64x64"], "--opt-size tunes a TensorRT engine; --backend onnxruntime builds none"),
        (["--instance-kind", "tpu"], "--instance-kind must be gpu or cpu, got 'tpu'"),
        (["--max-size", "10x10"], "max size 10x10 is below the model's smallest, 16x16"),
        (["--opt-level", "9"], "--opt-level tunes the TensorRT engine build; --backend onnxruntime builds none"),
        (["--backend", "python", "--workspace-mib", "1"], "--workspace-mib tunes the TensorRT engine build"),
        (["--fp16", "--workspace-mib", "0"], "workspace must be >= 1 MiB, got 0"),
        (["--fp16", "--instance-kind", "cpu"], "a TensorRT engine runs on a GPU"),
        (["--backend", "python", "--instance-kind", "gpu"], "the python backend runs ONNX Runtime on the CPU"),
        (["--instance-kind", "cpu", "--gpus", "0"], "--gpus apply to GPU instances, not --instance-kind cpu"),
        (["--backend", "torch", "--no-plugins"], "--flavor/--no-plugins choose the exported ONNX graph; --backend "
                                                 "torch serves the checkpoint itself"),
        (["--backend", "torch", "--flavor", "portable"], "--flavor/--no-plugins choose the exported ONNX graph"),
        (["--backend", "torch", "--no-verify"], "--no-verify skips the check of the exported ONNX graph"),
    ],
)
def test_bad_flags_are_one_line(tmp_path, tiny_checkpoint_path, fake_export, args, match):
    assert match in _one_error_line(_export(tmp_path / "repo", tiny_checkpoint_path, *args))
    assert not fake_export


def test_no_plugins_exports_the_portable_graph_for_tensorrt(tmp_path, tiny_checkpoint_path, fake_export):
    result = _export(tmp_path / "repo", tiny_checkpoint_path, "--backend", "tensorrt", "--no-plugins",
                     "--no-verify")
    if HAS_TRT:
        pytest.skip("builds an engine where TensorRT is installed")
    assert result.exit_code == 0, result.output
    assert fake_export[0].flavor is Flavor.PORTABLE and "(tensorrt, portable, fp32)" in result.output


def test_switching_the_served_backend_needs_force_and_is_refused_before_exporting(tmp_path, tiny_checkpoint_path,
                                                                                   fake_export):
    repo = tmp_path / "repo"
    assert _export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify").exit_code == 0
    line = _one_error_line(_export(repo, tiny_checkpoint_path, "--backend", "onnxruntime"))
    assert "serves a python/python model; pass --force" in line
    assert len(fake_export) == 1
    result = _export(repo, tiny_checkpoint_path, "--backend", "onnxruntime", "--force", "--no-verify")
    assert result.exit_code == 0, result.output
    assert 'platform: "onnxruntime_onnx"' in (repo / "vggx" / "config.pbtxt").read_text()


def test_a_forced_switch_beside_a_version_still_served_is_refused(tmp_path, tiny_checkpoint_path, fake_export):
    """--force switched the backend, but --versions-served 2 kept version 1 served under the new config.pbtxt: a
    torch version (model.py and the checkpoint) loaded as an onnxruntime model would fail in Triton."""
    repo = tmp_path / "repo"
    assert _export(repo, tiny_checkpoint_path, "--backend", "torch").exit_code == 0
    before = (repo / "vggx" / "config.pbtxt").read_text()
    line = _one_error_line(_export(repo, tiny_checkpoint_path, "--backend", "onnxruntime", "--force", "--no-verify",
                                   "--versions-served", "2"))
    assert f"{repo / 'vggx'} keeps serving version 1 beside the new one, a python/torch model: one config.pbtxt " \
           "would have 'onnxruntime' load it too" in line and "--versions-served 1" in line
    assert (repo / "vggx" / "config.pbtxt").read_text() == before
    assert sorted(p.name for p in (repo / "vggx").iterdir()) == ["1", "config.pbtxt"]
    result = _export(repo, tiny_checkpoint_path, "--backend", "onnxruntime", "--force", "--no-verify")
    assert result.exit_code == 0, result.output
    assert 'platform: "onnxruntime_onnx"' in (repo / "vggx" / "config.pbtxt").read_text()


def test_a_changed_contract_beside_a_version_still_served_is_refused_before_exporting(tmp_path, tiny_checkpoint_path,
                                                                                       fake_export):
    """--versions-served 2 keeps version 1 served under the one config.pbtxt: a new window (or size range) would
    change its contract. Refused before the slow export (it took 40 s to be refused after it)."""
    repo = tmp_path / "repo"
    assert _export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify").exit_code == 0
    line = _one_error_line(_export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify",
                                   "--versions-served", "2", "--window", "4"))
    assert "keeps serving version 1 beside the new one, and the two differ (" in line and "window 8 -> 4" in line
    line = _one_error_line(_export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify",
                                   "--versions-served", "2", "--max-size", "64x64"))
    assert "max_size 1088x1920 -> 64x64" in line
    assert len(fake_export) == 1 and sorted(p.name for p in (repo / "vggx").iterdir()) == ["1", "config.pbtxt"]
    # the same contract is served side by side
    result = _export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify", "--versions-served", "2")
    assert result.exit_code == 0, result.output
    assert (repo / "vggx" / "2").is_dir() and len(fake_export) == 2


def test_another_precision_beside_a_version_still_served_under_the_accelerator_is_refused_before_exporting(
        tmp_path, tiny_checkpoint_path, fake_export):
    """An FP16 canary beside an FP32 version under --trt-accelerator: the one config's precision_mode FP16 applied
    TensorRT's FP16 flag to the FP32 graph still served (exit 0, no word)."""
    repo = tmp_path / "repo"
    assert _export(repo, tiny_checkpoint_path, "--trt-accelerator", "--no-verify").exit_code == 0
    line = _one_error_line(_export(repo, tiny_checkpoint_path, "--fp16", "--backend", "onnxruntime",
                                   "--trt-accelerator", "--versions-served", "2", "--no-verify"))
    assert "keeps serving version 1 (fp32) beside the new one (fp16), and the TensorRT accelerator's precision_mode " \
           "is one for the whole model" in line
    assert len(fake_export) == 1 and sorted(p.name for p in (repo / "vggx").iterdir()) == ["1", "config.pbtxt"]


def test_a_model_folder_that_is_a_file_is_one_line_before_exporting(tmp_path, tiny_checkpoint_path, fake_export):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "vggx").write_text("")
    line = _one_error_line(_export(tmp_path / "repo", tiny_checkpoint_path, "--no-verify"))
    assert "repo/vggx is a file, not a model's folder" in line and fake_export == []


def test_a_version_below_the_served_ones_is_refused(tmp_path, tiny_checkpoint_path, fake_export):
    """--version 1 --force beside a newer version 2: Triton serves only 2, so the new 1 was never served while its
    config.pbtxt applied to 2; exit 0, no word."""
    repo = tmp_path / "repo"
    for _ in range(2):
        assert _export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify").exit_code == 0
    line = _one_error_line(_export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify", "--version",
                                   "1", "--force", "--max-batch", "2"))
    assert "serves its newest 1 version(s) (2), so a version 1 would never be served" in line
    assert len(fake_export) == 2 and "max_batch_size: 4" in (repo / "vggx" / "config.pbtxt").read_text()
    # with both served, rewriting version 1 is what --force is for
    result = _export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify", "--version", "1", "--force",
                     "--versions-served", "2")
    assert result.exit_code == 0, result.output


def test_a_config_that_does_not_parse_is_named_and_replaced_with_force(tmp_path, tiny_checkpoint_path, fake_export):
    """A config.pbtxt with a field this Triton client's schema lacks blocked every export, --force too, in a
    message without its path."""
    config = tmp_path / "repo" / "vggx" / "config.pbtxt"
    config.parent.mkdir(parents=True)
    config.write_text('name: "vggx" platform: "onnxruntime_onnx" max_batch_size: 4 some_new_field: 1\n')
    line = _one_error_line(_export(tmp_path / "repo", tiny_checkpoint_path, "--backend", "python", "--no-verify"))
    assert f"{config}: not a valid Triton model config" in line and "pass --force to replace it" in line
    result = _export(tmp_path / "repo", tiny_checkpoint_path, "--backend", "python", "--no-verify", "--force")
    assert result.exit_code == 0, result.output
    assert "some_new_field" not in config.read_text()


@pytest.mark.parametrize("args", [(), ("--fp16",)])
def test_the_checked_in_repository_takes_the_readmes_export_without_force(tmp_path, tiny_checkpoint_path, fake_export,
                                                                         trt_window, args):
    """A fresh checkout's model_repository/ (a python config and model.py, no model) switches freely: the README's
    `vggx export` and `vggx export --fp16` refused it ("serves a python/python model; pass --force")."""
    repo = tmp_path / "model_repository"
    shutil.copytree(Path(__file__).resolve().parents[2] / "model_repository", repo,
                    ignore=shutil.ignore_patterns("*.onnx", "*.plan", "*.safetensors", "__pycache__"))
    window = ("--window", str(trt_window)) if args else ()  # the trt flavour's stand-in export is at T = 4
    result = _export(repo, tiny_checkpoint_path, "--no-verify", *window, *args)
    assert result.exit_code == 0, result.output
    assert (repo / "vggx" / "1" / "model.onnx").is_file() and len(fake_export) == 1


@pytest.mark.parametrize("compiled", [False, True])
def test_torch_backend_serves_the_checkpoint(tmp_path, tiny_checkpoint_path, fake_export, compiled):
    """No ONNX: model.py + the checkpoint itself, the model's metadata and the compile switch as parameters."""
    from vggx.checkpoint import file_sha256
    from vggx.export.repository import parse_config

    repo = tmp_path / "repo"
    args = ["--backend", "torch", *(["--compile"] if compiled else [])]
    result = _export(repo, tiny_checkpoint_path, *args)
    assert result.exit_code == 0, result.output
    assert not fake_export  # nothing exported to ONNX
    version = repo / "vggx" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.py", "model.safetensors"]
    assert file_sha256(version / "model.safetensors") == file_sha256(tiny_checkpoint_path)
    cfg = parse_config((repo / "vggx" / "config.pbtxt").read_text())
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert cfg.backend == "python" and params["serving_backend"] == "torch" and params["precision"] == "fp16"
    assert params["compile"] == ("true" if compiled else "false")
    assert params["window"] == "8" and params["scale"] == "4" and "max_size" in params
    assert "(torch: the checkpoint" in result.output and ("compiled" in result.output) == compiled
    # the sizes asked for bound the served model (they were dropped: the checkpoint's 16x16..1088x1920 written)
    result = _export(repo, tiny_checkpoint_path, *args, "--force", "--min-size", "32x32", "--max-size", "64x128")
    assert result.exit_code == 0, result.output
    cfg = parse_config((repo / "vggx" / "config.pbtxt").read_text())
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert (params["min_size"], params["max_size"]) == ("32x32", "64x128")
    # --window is honoured (the generator runs any T); it was refused with a message naming no flag
    result = _export(repo, tiny_checkpoint_path, *args, "--force", "--window", "4")
    assert result.exit_code == 0, result.output
    cfg = parse_config((repo / "vggx" / "config.pbtxt").read_text())
    assert cfg.parameters["window"].string_value == "4" and list(cfg.input[0].dims) == [4, -1, -1, 3]
    if not compiled:  # on CPU instances: said so (it printed the GPU model's FP16 + CUDA graphs)
        result = _export(repo, tiny_checkpoint_path, *args, "--force", "--instance-kind", "cpu")
        assert result.exit_code == 0, result.output
        assert "(torch: the checkpoint, FP32 reference ops on CPU instances)" in result.output
        (group,) = parse_config((repo / "vggx" / "config.pbtxt").read_text()).instance_group
        assert group.kind == group.KIND_CPU


def test_serving_flags_reach_the_model_config(tmp_path, tiny_checkpoint_path, fake_export):
    from vggx.export.repository import parse_config

    repo = tmp_path / "repo"
    result = _export(repo, tiny_checkpoint_path, "--backend", "onnxruntime", "--no-verify", "--instances", "2",
                     "--gpus", "0,1", "--queue-delay-us", "2000", "--trt-accelerator", "--versions-served", "2",
                     "--max-queue-size", "16")
    assert result.exit_code == 0, result.output
    cfg = parse_config((repo / "vggx" / "config.pbtxt").read_text())
    (group,) = cfg.instance_group
    assert group.count == 2 and list(group.gpus) == [0, 1] and group.kind == group.KIND_GPU
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 16
    assert cfg.version_policy.latest.num_versions == 2
    (acc,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP32"  # the graph's: FP32
    assert cfg.parameters["precision"].string_value == "fp32"

    # a Triton without GPUs serves the onnxruntime backend on KIND_CPU instances
    result = _export(repo, tiny_checkpoint_path, "--backend", "onnxruntime", "--no-verify", "--force",
                     "--instance-kind", "cpu")
    assert result.exit_code == 0, result.output
    cfg = parse_config((repo / "vggx" / "config.pbtxt").read_text())
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_CPU and not cfg.instance_group[0].gpus

    result = _export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify", "--force", "--instances", "3",
                     "--cpu-threads", "1")
    assert result.exit_code == 0, result.output
    cfg = parse_config((repo / "vggx" / "config.pbtxt").read_text())
    assert cfg.instance_group[0].count == 3 and cfg.instance_group[0].kind == cfg.instance_group[0].KIND_CPU
    assert cfg.parameters["cpu_threads"].string_value == "1"


def test_name_puts_the_model_in_its_own_folder_beside_others(tmp_path, tiny_checkpoint_path, fake_export):
    from vggx.export.repository import parse_config

    repo = tmp_path / "repo"
    for name in ("vggx-tiny", "vggx"):
        result = _export(repo, tiny_checkpoint_path, "--backend", "python", "--no-verify", "--name", name)
        assert result.exit_code == 0, result.output
        assert parse_config((repo / name / "config.pbtxt").read_text()).name == name
        assert (repo / name / "1" / "model.onnx").is_file()
    assert sorted(p.name for p in repo.iterdir()) == ["vggx", "vggx-tiny"]


def test_a_config_that_cannot_be_written_leaves_the_served_version_as_it_was(tmp_path, portable_onnx):
    """The version folder was renamed in before config.pbtxt was written: a config write that failed (a full disk)
    left the new version served under the old config, and with --force the old version already gone."""
    import onnx

    from vggx.errors import ExportError
    from vggx.export.repository import CONFIG_FILE, ServingConfig, write_model_repository

    meta = {p.key: p.value for p in onnx.load(str(portable_onnx), load_external_data=False).metadata_props}
    repo, serving = tmp_path / "repo", ServingConfig(cpu_threads=1, warmup_size=None)

    def write(**kw):
        return write_model_repository(repo, backend="python", artefact=portable_onnx, metadata=meta,
                                      window=int(meta["window"]), serving=serving, **kw)

    write()
    model_dir = repo / "vggx"
    def files():
        return {str(p.relative_to(model_dir)): p.stat().st_mtime_ns for p in model_dir.rglob("*")
                if not p.name.startswith(".")}

    before = files()
    (model_dir / f".{CONFIG_FILE}.{os.getpid()}.tmp").mkdir()  # where the config is first written: unwritable
    for kw in ({}, {"version": 1, "force": True}):
        with pytest.raises(ExportError, match=r"writing the model repository at .* failed"):
            write(**kw)
        assert files() == before
