"""export/repository.py: every backend's config (parsed back with Triton's ModelConfig schema), the writer."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from vggx.errors import ExportError
from vggx.export.repository import (
    Backend,
    ServingConfig,
    config_text,
    model_config,
    parse_config,
    write_model_repository,
)

META = {"name": "vggx-tiny-x4", "version": "1", "scale": "4", "window": "8", "size_multiple": "8",
        "min_size": "16x16", "max_size": "1088x1920"}
ROOT = Path(__file__).resolve().parents[2]


def _mc():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


@pytest.mark.parametrize("backend", list(Backend))
def test_config_text_parses_back_into_model_config(backend):
    cfg = model_config(backend=backend, metadata=META, window=8)
    text = config_text(cfg)
    assert parse_config(text) == cfg


@pytest.mark.parametrize("backend", list(Backend))
def test_config_holds_the_tensor_contract(backend):
    mc = _mc()
    cfg = parse_config(config_text(model_config(backend=backend, metadata=META, window=8,
                                                serving=ServingConfig(max_batch=6))))
    assert cfg.name == "vggx"
    assert cfg.max_batch_size == 6
    (inp,), (out,) = cfg.input, cfg.output
    assert (inp.name, inp.data_type, list(inp.dims)) == ("lr", mc.TYPE_UINT8, [8, -1, -1, 3])
    assert (out.name, out.data_type, list(out.dims)) == ("sr", mc.TYPE_UINT8, [8, -1, -1, 3])
    assert cfg.HasField("dynamic_batching")
    assert 0 < cfg.dynamic_batching.max_queue_delay_microseconds <= 5000
    assert cfg.version_policy.latest.num_versions == 1
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert params.items() >= META.items()
    assert params["serving_backend"] == Backend(backend).value


@pytest.mark.parametrize(("backend", "platform", "backend_field", "kind"), [
    ("tensorrt", "tensorrt_plan", "", "KIND_GPU"),
    ("onnxruntime", "onnxruntime_onnx", "", "KIND_GPU"),
    ("python", "", "python", "KIND_CPU"),
    ("torch", "", "python", "KIND_GPU"),
])
def test_platform_backend_and_instance_kind(backend, platform, backend_field, kind):
    mc = _mc()
    cfg = model_config(backend=backend, metadata=META, window=8, serving=ServingConfig(instances=2))
    assert (cfg.platform, cfg.backend) == (platform, backend_field)
    (group,) = cfg.instance_group
    assert group.kind == getattr(mc.ModelInstanceGroup, kind)
    assert group.count == 2


@pytest.mark.parametrize(("kind", "precision"), [(None, "fp16"), ("KIND_GPU", "fp16"), ("KIND_CPU", "fp32")])
def test_the_torch_model_publishes_the_precision_it_runs_in(kind, precision):
    """A CPU instance of the torch model runs the FP32 reference; it published fp16 for dashboards to read."""
    cfg = model_config(backend="torch", metadata=META, window=8, serving=ServingConfig(instance_kind=kind))
    assert cfg.parameters["precision"].string_value == precision


@pytest.mark.parametrize("backend", list(Backend))
def test_python_models_get_their_runtime_parameters(backend):
    threads = 2 if backend is Backend.PYTHON else 0
    params = model_config(backend=backend, metadata=META, window=8,
                          serving=ServingConfig(cpu_threads=threads, merge_requests=False)).parameters
    python_model = backend.value in ("python", "torch")
    assert ("merge_requests" in params) == python_model
    if python_model:
        assert params["merge_requests"].string_value == "false"
    assert ("cpu_threads" in params) == (backend is Backend.PYTHON)
    if backend is not Backend.PYTHON:  # a knob that would be ignored is refused
        with pytest.raises(ExportError, match="CPU threads per instance apply to the python backend"):
            model_config(backend=backend, metadata=META, window=8, serving=ServingConfig(cpu_threads=2))


@pytest.mark.parametrize(("text", "parameter"), [("auto", "auto"), ("OFF", "off"), ("16GiB", str(16 * 2**30)),
                                                  ("12G", str(12 * 10**9)), ("8e9", str(8 * 10**9)),
                                                  ("512 MiB", str(512 * 2**20)), ("1.5gb", str(15 * 10**8))])
def test_the_host_memory_budget_goes_to_the_cpu_models_config_in_bytes(text, parameter):
    for backend, kind in (("python", None), ("torch", "KIND_CPU")):
        params = model_config(backend=backend, metadata=META, window=8,
                              serving=ServingConfig(host_memory_budget=text, instance_kind=kind)).parameters
        assert params["host_memory_budget"].string_value == parameter


@pytest.mark.parametrize("text", ["lots", "16 GiBs", "-1G", "100", "", "1e999", "0"])
def test_a_host_memory_budget_that_is_not_a_size_is_refused(text):
    with pytest.raises(ExportError, match=f"--host-memory-budget must be auto, off or a size of at least 1 MiB .*"
                                          f"got {text!r}"):
        ServingConfig(host_memory_budget=text)


@pytest.mark.parametrize(("backend", "kind", "message"), [
    ("onnxruntime", None, "applies to CPU instances .* the onnxruntime backend's run on GPUs here"),
    ("tensorrt", None, "applies to CPU instances .* the tensorrt backend's run on GPUs here"),
    ("torch", None, "applies to CPU instances .* the torch backend's run on GPUs here"),
    ("onnxruntime", "KIND_CPU", "applies to vggx's own models .* Triton's onnxruntime backend is not sized by it"),
])
def test_a_host_memory_budget_is_refused_where_nothing_would_keep_to_it(backend, kind, message):
    """ONNX Runtime's own backend and GPU instances have no host memory budget: the flag would be ignored."""
    serving = ServingConfig(host_memory_budget="8GiB", instance_kind=kind)
    with pytest.raises(ExportError, match=f"--host-memory-budget {message}"):
        model_config(backend=backend, metadata=META, window=8, serving=serving)
    assert "host_memory_budget" not in model_config(backend=backend, metadata=META, window=8,
                                                    serving=ServingConfig(instance_kind=kind)).parameters


@pytest.mark.parametrize(("backend", "serving", "message"), [
    ("python", ServingConfig(gpus=(0,)), "GPUs were named for the instances, but the python backend's instances run "
                                         "on the CPU (KIND_CPU)"),
    ("tensorrt", ServingConfig(trt_accelerator=True), "an onnxruntime-backend option, not 'tensorrt'"),
])
def test_knobs_that_do_not_apply_are_refused(backend, serving, message):
    with pytest.raises(ExportError, match=re.escape(message)):
        model_config(backend=backend, metadata=META, window=8, serving=serving)


def test_instances_on_named_gpus():
    (group,) = model_config(backend="tensorrt", metadata=META, window=8,
                            serving=ServingConfig(instances=2, gpus=(1, 3))).instance_group
    assert group.count == 2 and list(group.gpus) == [1, 3]


def test_warmup_is_a_valid_small_request():
    mc = _mc()
    cfg = model_config(backend="tensorrt", metadata=META, window=8,
                       serving=ServingConfig(warmup_size=(8, 4000)))
    (warm,) = cfg.model_warmup
    assert warm.batch_size == 1
    lr = warm.inputs["lr"]
    assert lr.data_type == mc.TYPE_UINT8 and lr.zero_data
    assert list(lr.dims) == [8, 16, 1920, 3]  # clamped into min_size .. max_size
    assert not model_config(backend="tensorrt", metadata=META, window=8,
                            serving=ServingConfig(warmup_size=None)).model_warmup


@pytest.mark.parametrize(("precision", "mode"), [(None, "FP32"), ("fp32", "FP32"), ("fp16", "FP16")])
def test_onnxruntime_tensorrt_accelerator(precision, mode):
    """The execution provider runs the graph's precision: FP16 on an FP32 graph (what it always asked) let
    TensorRT drop any layer to FP16, the flow and softmax the FP16 export keeps in FP32 too, under a config
    that published fp32."""
    meta = {**META, **({"precision": precision} if precision else {})}
    cfg = model_config(backend="onnxruntime", metadata=meta, window=8, serving=ServingConfig(trt_accelerator=True))
    (acc,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt"
    assert acc.parameters["precision_mode"] == mode
    plain = model_config(backend="onnxruntime", metadata=META, window=8)
    assert not plain.HasField("optimization")


@pytest.mark.parametrize(("kwargs", "serving", "match"), [
    ({"backend": "caffe"}, {}, "unknown backend 'caffe'"),
    ({"window": 4}, {}, "window 4 does not match"),
    ({"backend": "tensorrt"}, {"trt_accelerator": True}, "onnxruntime-backend option"),
    ({"backend": "onnxruntime"}, {"trt_accelerator": True, "instance_kind": "KIND_CPU"}, "needs KIND_GPU"),
])
def test_inconsistent_configs_are_refused(kwargs, serving, match):
    args = {"backend": "python", "metadata": META, "window": 8, **kwargs}
    with pytest.raises(ExportError, match=match):
        model_config(**args, serving=ServingConfig(**serving))


@pytest.mark.parametrize(("field", "value"), [("max_batch", 0), ("instances", 0), ("queue_delay_us", -1),
                                              ("max_queue_size", -1),
                                              ("instance_kind", "KIND_TPU"), ("cpu_threads", -1)])
def test_serving_config_validates_its_fields(field, value):
    with pytest.raises(ExportError, match=field.split("_")[0]):
        ServingConfig(**{field: value})


def test_parse_config_rejects_fields_outside_the_schema():
    with pytest.raises(ExportError, match="not a valid Triton model config"):
        parse_config('name: "vggx"\nmax_batch_sise: 4\n')


@pytest.fixture
def onnx_file(tmp_path) -> Path:
    path = tmp_path / "exported.onnx"
    path.write_bytes(b"not really onnx")
    return path


def _write(repo, artefact, **kw):
    return write_model_repository(repo, backend=kw.pop("backend", "python"), artefact=artefact, metadata=META,
                                  window=8, max_batch=kw.pop("max_batch", 4), **kw)


def test_check_only_writes_nothing_and_refuses_what_writing_would(tmp_path, onnx_file):
    assert _write(tmp_path, None, check_only=True) == tmp_path / "vggx" / "1" and not tmp_path.joinpath("vggx").exists()
    _write(tmp_path, onnx_file)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert _write(tmp_path, None, check_only=True) == tmp_path / "vggx" / "2"
    with pytest.raises(ExportError, match="serves a python/python model; pass --force"):
        _write(tmp_path, None, backend="onnxruntime", check_only=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_python_backend_version_holds_model_py_and_onnx(tmp_path, onnx_file):
    version_dir = _write(tmp_path, onnx_file)
    assert version_dir == tmp_path / "vggx" / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == ["model.onnx", "model.py"]
    assert (version_dir / "model.onnx").read_bytes() == onnx_file.read_bytes()
    assert "class TritonPythonModel" in (version_dir / "model.py").read_text()
    cfg = parse_config((tmp_path / "vggx" / "config.pbtxt").read_text())
    assert cfg.backend == "python" and cfg.max_batch_size == 4
    assert sorted(p.name for p in (tmp_path / "vggx").iterdir()) == ["1", "config.pbtxt"]  # no leftovers


@pytest.mark.parametrize(("backend", "files"), [("tensorrt", ["model.plan"]), ("onnxruntime", ["model.onnx"]),
                                                ("torch", ["model.py", "model.safetensors"])])
def test_each_backend_places_its_artefact(tmp_path, onnx_file, backend, files):
    version_dir = _write(tmp_path, onnx_file, backend=backend)
    assert sorted(p.name for p in version_dir.iterdir()) == files


def test_new_versions_get_new_folders_and_the_config_follows(tmp_path, onnx_file):
    assert _write(tmp_path, onnx_file).name == "1"
    assert _write(tmp_path, onnx_file, max_batch=8).name == "2"
    assert _write(tmp_path, onnx_file, version=7).name == "7"
    assert _write(tmp_path, onnx_file).name == "8"
    assert parse_config((tmp_path / "vggx" / "config.pbtxt").read_text()).max_batch_size == 4


def test_existing_version_is_not_overwritten_without_force(tmp_path, onnx_file):
    _write(tmp_path, onnx_file)
    with pytest.raises(ExportError, match="already exists; pass --force"):
        _write(tmp_path, onnx_file, version=1)
    onnx_file.write_bytes(b"new weights")
    _write(tmp_path, onnx_file, version=1, force=True)
    assert (tmp_path / "vggx" / "1" / "model.onnx").read_bytes() == b"new weights"


def test_switching_backend_needs_force(tmp_path, onnx_file):
    _write(tmp_path, onnx_file, backend="tensorrt")
    with pytest.raises(ExportError, match="serves a tensorrt_plan model; pass --force"):
        _write(tmp_path, onnx_file, backend="python")
    _write(tmp_path, onnx_file, backend="python", force=True)
    assert parse_config((tmp_path / "vggx" / "config.pbtxt").read_text()).backend == "python"


def test_a_version_served_beside_another_keeps_its_contract(tmp_path, onnx_file):
    """One config.pbtxt describes every version served: a canary (``--versions-served 2``) with another window or
    size range than the version still served would hand that version requests it cannot take (the bundled
    tritonserver crashed loading such a pair). Refused, naming what differs; alone it is fine."""
    two = ServingConfig(versions_served=2)
    _write(tmp_path, onnx_file, serving=two)
    with pytest.raises(ExportError, match=r"keeps serving version 1 beside the new one, and the two differ \(lr dims "
                                          r"\[8, -1, -1, 3\] -> \[6, -1, -1, 3\], .*window 8 -> 6\).*"
                                          r"--versions-served 1, or under another --name"):
        write_model_repository(tmp_path, backend="python", artefact=onnx_file, metadata={**META, "window": "6"},
                               window=6, serving=two)
    assert sorted(p.name for p in (tmp_path / "vggx").iterdir()) == ["1", "config.pbtxt"]
    with pytest.raises(ExportError, match=r"max_size 1088x1920 -> 544x960"):
        write_model_repository(tmp_path, backend="python", artefact=onnx_file,
                               metadata={**META, "max_size": "544x960"}, window=8, serving=two)
    assert _write(tmp_path, onnx_file, serving=two, max_batch=8).name == "2"  # batching is the config's own
    version = write_model_repository(tmp_path, backend="python", artefact=onnx_file, metadata={**META, "window": "6"},
                                     window=6, serving=ServingConfig(versions_served=1))
    assert version.name == "3"  # the newest alone is served: its contract is the config's


def test_a_tensorrt_version_served_beside_another_keeps_its_batch_size(tmp_path, onnx_file):
    """A TensorRT plan's profile holds its batch sizes: a canary with a larger --max-batch would send the version
    still served batches its engine was not built for (ONNX Runtime's batch is free: see above)."""
    two = ServingConfig(versions_served=2)
    _write(tmp_path, onnx_file, backend="tensorrt", serving=two, max_batch=2)
    with pytest.raises(ExportError, match=r"keeps serving version 1 beside the new one, a TensorRT engine built for "
                                          r"batches of at most 2; one config.pbtxt would send it 4\. Export with "
                                          r"--max-batch 2"):
        _write(tmp_path, onnx_file, backend="tensorrt", serving=two, max_batch=4)
    assert _write(tmp_path, onnx_file, backend="tensorrt", serving=two, max_batch=1).name == "2"  # fewer: fine


def test_a_version_served_beside_another_under_the_accelerator_keeps_its_precision(tmp_path, onnx_file):
    """The TensorRT accelerator's precision_mode is the model's, not a version's: an FP16 canary beside an FP32
    version still served had TensorRT's FP16 flag applied to the FP32 graph too. Refused; without the accelerator
    each version runs its own graph's precision."""
    acc, two = ServingConfig(trt_accelerator=True), ServingConfig(trt_accelerator=True, versions_served=2)
    fp32, fp16 = {**META, "precision": "fp32"}, {**META, "precision": "fp16"}
    write_model_repository(tmp_path, backend="onnxruntime", artefact=onnx_file, metadata=fp32, window=8, serving=acc)
    with pytest.raises(ExportError, match=r"keeps serving version 1 \(fp32\) beside the new one \(fp16\), and the "
                                          r"TensorRT accelerator's precision_mode .* --versions-served 1"):
        write_model_repository(tmp_path, backend="onnxruntime", artefact=onnx_file, metadata=fp16, window=8,
                               serving=two)
    assert sorted(p.name for p in (tmp_path / "vggx").iterdir()) == ["1", "config.pbtxt"]
    assert write_model_repository(tmp_path, backend="onnxruntime", artefact=onnx_file, metadata=fp16, window=8,
                                  serving=ServingConfig(versions_served=2)).name == "2"


def test_each_version_served_publishes_its_own_identity(tmp_path, onnx_file):
    """One config.pbtxt published the newest export's checkpoint_sha256 and precision for every version served (a
    canary beside the previous weights): a client calling --model-version 1 recorded the new weights for frames of
    the old. Each version served has its own ``<key>@<version>``; the plain keys are the newest version's."""
    two = ServingConfig(versions_served=2)

    def write(sha, precision="fp32", **kw):
        meta = {**META, "checkpoint_sha256": sha * 64, "precision": precision, "flavor": "portable"}
        write_model_repository(tmp_path, backend="onnxruntime", artefact=onnx_file, metadata=meta, window=8, **kw)
        cfg = parse_config((tmp_path / "vggx" / "config.pbtxt").read_text())
        return {k: v.string_value[:1] if "sha" in k else v.string_value for k, v in cfg.parameters.items()
                if k.startswith(("checkpoint_sha256", "precision", "flavor"))}

    assert write("a") == {"checkpoint_sha256": "a", "precision": "fp32", "flavor": "portable"}  # alone: as before
    assert write("b", "fp16", serving=two) == {
        "checkpoint_sha256": "b", "precision": "fp16", "flavor": "portable",
        "checkpoint_sha256@1": "a", "precision@1": "fp32", "flavor@1": "portable",
        "checkpoint_sha256@2": "b", "precision@2": "fp16", "flavor@2": "portable"}
    params = write("c", serving=two)  # version 1 is no longer served
    assert {k: v for k, v in params.items() if k.startswith("checkpoint")} == {
        "checkpoint_sha256": "c", "checkpoint_sha256@2": "b", "checkpoint_sha256@3": "c"}
    params = write("d", version=2, force=True, serving=two)  # the plain keys stay the newest version's (what a
    assert {k: v for k, v in params.items() if k.startswith("checkpoint")} == {  # client without a version calls)
        "checkpoint_sha256": "c", "checkpoint_sha256@2": "d", "checkpoint_sha256@3": "c"}
    assert write("e") == {"checkpoint_sha256": "e", "precision": "fp32", "flavor": "portable"}  # alone again


def test_missing_artefact_writes_nothing(tmp_path):
    with pytest.raises(ExportError, match="artefact not found"):
        _write(tmp_path, tmp_path / "nope.onnx")
    assert not (tmp_path / "vggx").exists()


def test_failed_copy_leaves_nothing_half_written(tmp_path, onnx_file, monkeypatch):
    _write(tmp_path, onnx_file)
    before = (tmp_path / "vggx" / "config.pbtxt").read_text()
    real_copy = shutil.copyfile

    def failing_copy(src, dst, *a, **k):
        if str(dst).endswith("model.onnx"):
            raise OSError(28, "No space left on device")
        return real_copy(src, dst, *a, **k)

    monkeypatch.setattr(shutil, "copyfile", failing_copy)
    with pytest.raises(ExportError, match="No space left"):
        _write(tmp_path, onnx_file, max_batch=8)
    assert sorted(p.name for p in (tmp_path / "vggx").iterdir()) == ["1", "config.pbtxt"]
    assert (tmp_path / "vggx" / "config.pbtxt").read_text() == before


def test_a_placeholder_repository_switches_backend_freely(tmp_path, onnx_file):
    _write(tmp_path, None)  # the checked-in python config + model.py, no model yet
    assert _write(tmp_path, onnx_file, backend="tensorrt").name == "1"
    assert sorted(p.name for p in (tmp_path / "vggx" / "1").iterdir()) == ["model.plan"]
    assert parse_config((tmp_path / "vggx" / "config.pbtxt").read_text()).platform == "tensorrt_plan"


def test_a_placeholder_version_is_filled_instead_of_adding_one(tmp_path, onnx_file):
    assert _write(tmp_path, None).name == "1"  # model.py only, like the checked-in repository
    assert _write(tmp_path, onnx_file).name == "1"
    assert sorted(p.name for p in (tmp_path / "vggx" / "1").iterdir()) == ["model.onnx", "model.py"]
    assert _write(tmp_path, onnx_file).name == "2"  # a complete version is never touched


def test_a_tensorrt_version_without_its_engine_is_filled_by_the_engine(tmp_path, onnx_file):
    """`vggx export` where TensorRT is absent leaves model.onnx to build from; where it is, the plan goes there."""
    version_dir = _write(tmp_path, None, backend="tensorrt")
    shutil.copyfile(onnx_file, version_dir / "model.onnx")
    assert _write(tmp_path, None, backend="tensorrt").name == "1"  # exported again where TensorRT is absent
    shutil.copyfile(onnx_file, version_dir / "model.onnx")
    assert _write(tmp_path, onnx_file, backend="tensorrt").name == "1"
    assert (version_dir / "model.plan").is_file()
    assert _write(tmp_path, onnx_file, backend="tensorrt").name == "2"  # a built version is never touched


def test_config_only_when_no_artefact(tmp_path):
    version_dir = _write(tmp_path, None, backend="tensorrt")
    assert version_dir.is_dir() and not any(version_dir.iterdir())  # the engine is built into it later
    assert parse_config((tmp_path / "vggx" / "config.pbtxt").read_text()).platform == "tensorrt_plan"


def test_checked_in_repository_matches_the_writer():
    """model_repository/vggx is what `vggx export --backend python` writes for the shipped checkpoint, every parameter
    (its checkpoint_sha256 too: a config left from another checkpoint would publish the wrong provenance)."""
    from vggx.checkpoint import load_checkpoint
    from vggx.export.onnx import published_metadata

    ckpt = load_checkpoint(None)
    written = config_text(model_config(backend="python", metadata=published_metadata(ckpt), window=ckpt.config.window))
    checked_in = (ROOT / "model_repository" / "vggx" / "config.pbtxt").read_text()
    assert checked_in == written, "regenerate it: vggx export --backend python --no-verify"
    template = Backend.PYTHON.template
    assert (ROOT / "model_repository" / "vggx" / "1" / "model.py").read_text() == template.read_text()


# ------------------------------------------------- the python backend's model.py, in process on a stand-in pb_utils


def _served_module(monkeypatch):
    import importlib.util
    import sys

    import pb_utils_stub

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils_stub.module())
    source = Path(__file__).parents[2] / "export" / "triton_models" / "onnxruntime_cpu.py"
    spec = importlib.util.spec_from_file_location("vggx_served_model", source)
    served = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(served)
    return served


def _served_model(monkeypatch, tmp_path, instances: int = 1, cpu_threads: int = 0, kind: str = "CPU", served=None,
                  config: dict | None = None, **params):
    """The python backend's ``TritonPythonModel`` initialized as Triton would, on the shipped portable graph."""
    import json
    import shutil
    import sys

    from vggx.checkpoint import DEFAULT_CHECKPOINT
    from vggx.client.runners import shipped_onnx_path

    served = served or _served_module(monkeypatch)
    (tmp_path / "1").mkdir(parents=True)
    shutil.copy(shipped_onnx_path(DEFAULT_CHECKPOINT, 8), tmp_path / "1" / "model.onnx")
    params = {"window": "8", "min_size": "16x16", "max_size": "1088x1920", "cpu_threads": str(cpu_threads), **params}
    config = {"parameters": {k: {"string_value": v} for k, v in params.items()},
              "instance_group": [{"kind": f"KIND_{kind}", "count": instances}], **(config or {})}
    model = served.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1",
                      "model_instance_kind": kind, "model_instance_name": "vggx_0"})
    return model, sys.modules["triton_python_backend_utils"]


def test_a_merged_batch_that_fails_is_run_again_request_by_request(monkeypatch, tmp_path):
    """Out of memory on the merged batch failed every request in it, though each alone fit; one that fails alone
    is that request's error only."""
    model, pb = _served_model(monkeypatch, tmp_path)
    tried = []

    def run(batch):
        tried.append(batch.shape[0])
        if batch.shape[0] > 2 or batch[0, 0, 0, 0, 0] == 7:
            raise MemoryError(f"cannot allocate for {batch.shape[0]} windows")
        return batch.repeat(4, 2).repeat(4, 3)

    model.run = run
    frames = [np.full((1, 8, 16, 16, 3), v, np.uint8) for v in (1, 2, 3)]
    responses = model.execute([pb.InferenceRequest(lr=f) for f in frames])
    assert tried == [3, 1, 1, 1]
    for f, r in zip(frames, responses, strict=True):
        assert r.error is None and np.array_equal(r.output_tensors[0].as_numpy(), f.repeat(4, 2).repeat(4, 3))
    frames[1][:] = 7  # this one fails alone too
    responses = model.execute([pb.InferenceRequest(lr=f) for f in frames])
    assert [r.error is None for r in responses] == [True, False, True]
    assert responses[1].error.code == "INTERNAL" and "cannot allocate for 1 windows" in responses[1].error.message


def test_instances_share_the_cores(monkeypatch, tmp_path):
    """Each instance is a process of its own, and ONNX Runtime's pool spanned every core in each."""
    import os

    cores = len(os.sched_getaffinity(0))
    model, _ = _served_model(monkeypatch, tmp_path, instances=2)
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == max(1, cores // 2)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    model, _ = _served_model(monkeypatch, tmp_path / "b", instances=2, cpu_threads=3)  # as asked
    assert model.session.get_session_options().intra_op_num_threads == 3


def test_the_memory_of_a_large_request_is_given_back(monkeypatch, tmp_path):
    """ONNX Runtime's arena kept the peak of the largest request for the model's life (690 MB held by an idle
    model after one 2x128x128 request on the real server)."""

    def rss_mb() -> float:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    model, _ = _served_model(monkeypatch, tmp_path)
    model.run(np.zeros((1, 8, 16, 16, 3), np.uint8))
    before = rss_mb()
    model.run(np.zeros((2, 8, 112, 112, 3), np.uint8))  # about 500 MB at its peak
    model.run(np.zeros((1, 8, 16, 16, 3), np.uint8))
    assert rss_mb() - before < 150, f"{rss_mb() - before:.0f} MB kept"


# ------------------------------------------------- the python backend's model.py: host memory


def _upscaled(batch: np.ndarray) -> np.ndarray:
    return batch.repeat(4, 2).repeat(4, 3)


def test_a_window_above_the_host_memory_budget_is_refused_as_out_of_memory(monkeypatch, tmp_path):
    """On the CPU a 720p window holds ~19 GiB: past the host's memory the kernel killed the model's process (and with
    it the server: Triton does not start a stub again) instead of ONNX Runtime returning an error. Such a request is
    now refused before it runs, with an error vggx's client answers with smaller tiles."""
    from vggx.client.runners import OUT_OF_MEMORY

    per_pixel = 1000
    model, pb = _served_model(monkeypatch, tmp_path, host_bytes_per_pixel=str(per_pixel),
                              host_memory_budget=str(per_pixel * 32 * 32))
    tried = []
    model.run = lambda batch: tried.append(batch.shape) or _upscaled(batch)
    small, large = np.ones((1, 8, 32, 32, 3), np.uint8), np.ones((1, 8, 33, 32, 3), np.uint8)
    responses = model.execute([pb.InferenceRequest(lr=large), pb.InferenceRequest(lr=small)])
    assert tried == [small.shape]  # the large one never ran
    error = responses[0].error
    assert error.code == "INTERNAL" and OUT_OF_MEMORY.search(error.message), error.message
    assert error.message == ("out of memory: a 33x32 window needs about 1 MiB of host memory, above this model "
                             "instance's budget of 1 MiB (config parameter host_memory_budget): windows of up to 1024 "
                             "LR pixels (about 32x32) fit; send smaller tiles")
    model.execute([pb.InferenceRequest(lr=large)] * 2)
    assert [m for level, m in pb.logged if level == "warn"] == [error.message]  # for the operator, once a size
    assert responses[1].error is None and np.array_equal(responses[1].output_tensors[0].as_numpy(), _upscaled(small))


def test_requests_are_merged_and_a_requests_windows_run_together_only_as_far_as_the_budget_holds(monkeypatch,
                                                                                                 tmp_path):
    """Dynamic batching merged up to max_batch_size windows into one run: 4 windows of a size one of which fits
    held 4x the memory."""
    model, pb = _served_model(monkeypatch, tmp_path, host_bytes_per_pixel="1000",
                              host_memory_budget=str(2 * 1000 * 16 * 16 + 5))  # two 16x16 windows
    tried = []
    model.run = lambda batch: tried.append(batch.shape[0]) or _upscaled(batch)
    frames = [np.full((1, 8, 16, 16, 3), v, np.uint8) for v in (1, 2, 3, 4, 5)]
    three = np.arange(3 * 8 * 16 * 16 * 3, dtype=np.uint64).astype(np.uint8).reshape(3, 8, 16, 16, 3)
    responses = model.execute([pb.InferenceRequest(lr=f) for f in (*frames, three)])
    assert tried == [2, 2, 1, 2, 1]  # the five in pairs, then the 3-window request in two runs
    for f, r in zip((*frames, three), responses, strict=True):
        assert r.error is None and np.array_equal(r.output_tensors[0].as_numpy(), _upscaled(f))


@pytest.mark.parametrize("windows", [(2, 1), (1, 2), (1, 2, 1)])
def test_a_merged_request_of_several_windows_gets_its_own_windows_and_the_others_theirs(monkeypatch, tmp_path,
                                                                                       windows):
    """Dynamic batching merged a request of 2 windows with requests of 1: the merged output is cut back by each
    request's window count, so an offset that moved by one window a request (not by its windows) gave the request
    after it the first one's second window, another client's frames."""
    model, pb = _served_model(monkeypatch, tmp_path, host_memory_budget="off")
    tried = []
    model.run = lambda batch: tried.append(batch.shape[0]) or _upscaled(batch)
    values = iter(range(1, 10))  # each window a value of its own
    sent = [np.stack([np.full((8, 16, 16, 3), next(values), np.uint8) for _ in range(n)]) for n in windows]
    responses = model.execute([pb.InferenceRequest(lr=lr) for lr in sent])
    assert tried == [sum(windows)]  # merged into one run
    for lr, r in zip(sent, responses, strict=True):
        assert r.error is None
        np.testing.assert_array_equal(r.output_tensors[0].as_numpy(), _upscaled(lr))


def test_the_budget_is_a_share_of_the_memory_available_divided_among_the_instances(monkeypatch, tmp_path):
    served = _served_module(monkeypatch)
    monkeypatch.setattr(served, "_memory_available", lambda: 8 * 2**30)
    model, _ = _served_model(monkeypatch, tmp_path, instances=2, served=served, host_bytes_per_pixel="1000")
    assert model.budget == int(served.MEMORY_SHARE * 8 * 2**30 / 2)
    model, pb = _served_model(monkeypatch, tmp_path / "pinned", instances=2, served=served, host_memory_budget="3e9",
                              config={"version_policy": {"latest": {"num_versions": 3}}})
    assert model.budget == 3 * 10**9 // 6  # as the operator set it, for two instances of each of three versions
    assert "host memory budget 477 MiB (2.8 GiB shared by 2 instance(s) x 3 version(s))" in pb.logged[-1][1]
    for policy, versions in (({"specific": {"versions": [1, 3]}}, 2), ({"all": {}}, 1), ({}, 1)):
        assert served._versions_served({"version_policy": policy}, str(tmp_path / "pinned")) == versions
    (tmp_path / "pinned" / "2").mkdir()
    assert served._versions_served({"version_policy": {"all": {}}}, str(tmp_path / "pinned")) == 2
    model, _ = _served_model(monkeypatch, tmp_path / "off", host_memory_budget="off")
    assert model.budget is None and model._oversized(np.ones((1, 8, 1088, 1920, 3), np.uint8)) is None
    model, _ = _served_model(monkeypatch, tmp_path / "gpu", kind="GPU")  # CUDA has an out-of-memory error of its own
    assert model.budget is None
    for budget, per_pixel in (("16GiB", "auto"), ("auto", "0"), ("auto", "-5"), ("-1", "1000"), ("inf", "1000"),
                              ("0", "1000"), ("auto", "nan")):
        with pytest.raises(Exception, match=r"host_memory_budget .* and host_bytes_per_pixel .*: each a number of "
                                            r"bytes > 0 or 'auto'"):
            _served_model(monkeypatch, tmp_path / f"bad{budget}{per_pixel}", host_memory_budget=budget,
                          host_bytes_per_pixel=per_pixel)


def test_a_budget_that_cannot_hold_the_warm_up_window_fails_the_load_in_words(monkeypatch, tmp_path):
    """The warm-up request refused as out of memory failed the load, and Triton then often died of a segfault with
    no message (3 runs in 4 with --host-memory-budget 50MiB)."""
    warmup = {"model_warmup": [{"name": "zero_64x64", "batch_size": 1,
                                "inputs": {"lr": {"data_type": "TYPE_UINT8", "dims": [8, 64, 64, 3]}}}]}
    with pytest.raises(Exception, match=r"the host memory budget of 2 MiB per instance \(4 MiB shared by 2 "
                                        r"instance\(s\) x 1 version\(s\)\) is below what the warm-up window \(64x64\) "
                                        r"holds, 4 MiB: raise host_memory_budget"):
        _served_model(monkeypatch, tmp_path, instances=2, config=warmup, host_bytes_per_pixel="1000",
                      host_memory_budget=str(4 * 2**20))
    model, _ = _served_model(monkeypatch, tmp_path / "fits", config=warmup, host_bytes_per_pixel="1000",
                             host_memory_budget=str(5 * 2**20))
    assert model._windows_that_fit(64, 64) == 1


def test_where_the_memory_cannot_be_read_requests_are_not_sized_and_the_log_says_what_to_set(monkeypatch, tmp_path):
    served = _served_module(monkeypatch)
    monkeypatch.setattr(served, "_peak_rss_over", lambda run: None)
    model, pb = _served_model(monkeypatch, tmp_path, served=served)
    assert model.budget is None and model.bytes_per_pixel is None
    ((level, message),) = pb.logged
    assert level == "warn" and message == (
        "vggx_0: what a window holds (Linux's peak RSS) cannot be read here, so requests are not sized to the host's "
        "memory: set the config parameters host_bytes_per_pixel and host_memory_budget (vggx export "
        "--host-memory-budget) to size them")
    model, pb = _served_model(monkeypatch, tmp_path / "set", served=served, host_bytes_per_pixel="20000")
    assert model.bytes_per_pixel == 20000 and model.budget > 0  # set by hand: nothing to measure


def test_what_a_window_holds_per_pixel_is_measured_as_the_model_starts(monkeypatch, tmp_path):
    """The peak RSS of a 64x64 window with a margin: with the shipped model ONNX Runtime on the CPU holds 19.3-27.0
    KiB per LR pixel from 64x64 to 180x320; the margin covers a larger window."""
    model, _ = _served_model(monkeypatch, tmp_path)
    assert 15 * 1024 < model.bytes_per_pixel < 45 * 1024
    peak = _served_module(monkeypatch)._peak_rss_over(lambda: model.run(np.zeros((1, 8, 96, 160, 3), np.uint8)))
    assert peak < model.bytes_per_pixel * 96 * 160, (peak / (96 * 160) / 1024, model.bytes_per_pixel / 1024)


def test_the_served_models_cgroup_reading_is_the_clients(monkeypatch, tmp_path):
    """model.py is self-contained (the stub's Python may not have vggx): its copy of the client's cgroup reading is
    held to the client's on the client's cases."""
    from vggx.client.runners import _cgroup_headroom

    served = _served_module(monkeypatch)
    gib = 2**30

    def group(path, limit, usage, inactive, v1=False):
        path.mkdir(parents=True, exist_ok=True)
        names = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file") if v1 else \
                ("memory.max", "memory.current", "inactive_file")
        (path / names[0]).write_text(f"{limit}\n")
        (path / names[1]).write_text(f"{usage}\n")
        (path / "memory.stat").write_text(f"anon 1\n{names[2]} {inactive}\n")

    proc, v2, v1 = tmp_path / "cgroup", tmp_path / "v2", tmp_path / "v1"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu memory\n")
    group(v2, "max", 50 * gib, 0)
    group(v2 / "job", 12 * gib, 11 * gib, 6 * gib)
    group(v2 / "job" / "step", 9 * gib, 1 * gib, 0)
    group(v1 / "memory", 9223372036854771712, 9 * gib, 0, v1=True)
    group(v1 / "memory" / "slurm" / "job_1", 8 * gib, 3 * gib, gib, v1=True)
    cases = [(v2, "0::/job/step\n", 7 * gib), (v2, "0::/job/step/gone\n", 7 * gib), (v2, "0::/\n", None),
             (v1, "4:memory:/slurm/job_1\n1:cpu:/\n0::/\n", 6 * gib), (v1, "4:memory:/\n0::/\n", None)]
    for root, text, room in cases:
        proc.write_text(text)
        assert served._cgroup_headroom(str(proc), str(root)) == _cgroup_headroom(proc, root) == room, text
    assert served._cgroup_headroom(str(tmp_path / "none"), str(v2)) is None
    assert served._memory_available() is not None
