"""The Triton model repository: ``<repo>/vggx/config.pbtxt`` and ``<repo>/vggx/<version>/<artefact>``.

One function builds the model configuration for every backend of DESIGN.md (``model_config``, pure, using
the ``ModelConfig`` protobufs shipped in ``tritonclient``) and one writes it with the artefact into a new
version folder (``write_model_repository``, atomic: a staging folder renamed into place).

| backend         | config                          | version folder                    | instances |
| --------------- | ------------------------------- | --------------------------------- | --------- |
| ``tensorrt``    | platform ``tensorrt_plan``      | ``model.plan``                    | KIND_GPU  |
| ``onnxruntime`` | platform ``onnxruntime_onnx``   | ``model.onnx`` (+ TensorRT EP)    | KIND_GPU  |
| ``python``      | backend ``python``, ORT on CPU  | ``model.py``, ``model.onnx``      | KIND_CPU  |
| ``torch``       | backend ``python``, FP16 torch  | ``model.py``, ``model.safetensors`` | KIND_GPU  |
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vggx.errors import ExportError, deferred_signals
from vggx.shapes import parse_size

if TYPE_CHECKING:  # tritonclient is imported lazily (STYLE §10)
    from tritonclient.grpc.model_config_pb2 import ModelConfig

__all__ = [
    "INPUT_NAME",
    "MODEL_NAME",
    "OUTPUT_NAME",
    "Backend",
    "ServingConfig",
    "config_text",
    "model_config",
    "parse_config",
    "unexported_models",
    "write_model_repository",
]

log = logging.getLogger(__name__)

MODEL_NAME = "vggx"  # clients always call this model (DESIGN.md)
INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
CONFIG_FILE = "config.pbtxt"
_TEMPLATES = Path(__file__).parent / "triton_models"


class Backend(enum.Enum):
    TENSORRT = "tensorrt"
    ONNXRUNTIME = "onnxruntime"
    PYTHON = "python"
    TORCH = "torch"

    @classmethod
    def parse(cls, value: Backend | str) -> Backend:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ExportError(f"unknown backend {value!r}; choose one of "
                              f"{', '.join(b.value for b in cls)}") from None

    @property
    def artefact_name(self) -> str:
        """File name of the model artefact inside a version folder."""
        return {Backend.TENSORRT: "model.plan", Backend.ONNXRUNTIME: "model.onnx",
                Backend.PYTHON: "model.onnx", Backend.TORCH: "model.safetensors"}[self]

    @property
    def template(self) -> Path | None:
        """The Python-backend ``model.py`` copied into the version folder, if this backend has one."""
        return {Backend.PYTHON: _TEMPLATES / "onnxruntime_cpu.py",
                Backend.TORCH: _TEMPLATES / "torch_gpu.py"}.get(self)

    @property
    def default_kind(self) -> str:
        return "KIND_CPU" if self is Backend.PYTHON else "KIND_GPU"


@dataclass(frozen=True)
class ServingConfig:
    """Serving knobs of the model config beyond the tensor contract (the defaults suit the tiny model)."""

    max_batch: int = 4  # max_batch_size: windows per batched execution (> 0)
    queue_delay_us: int = 500  # dynamic batching: how long a request may wait for others, in microseconds
    # dynamic batching: requests the queue holds before the next is turned away (0 = no bound, Triton's default:
    # under overload the queue, the inputs it holds and the latency grow without end; clients see the refusal, retry
    # it with back-off and move a pool's windows to other replicas)
    max_queue_size: int = 0
    instances: int = 1  # model instances per device (instance_group count)
    gpus: tuple[int, ...] = ()  # KIND_GPU: the GPUs the instances run on (instance_group gpus); () = every GPU
    instance_kind: str | None = None  # "KIND_GPU" / "KIND_CPU"; None = the backend's default
    warmup_size: tuple[int, int] | None = (64, 64)  # LR H, W of the warm-up window; None = no warm-up
    trt_accelerator: bool = False  # onnxruntime only: TensorRT execution accelerator, in the graph's precision
    cpu_threads: int = 0  # python backend: ONNX Runtime intra-op threads per instance (0 = ORT default)
    merge_requests: bool = True  # python/torch: run a dynamic batch's same-size requests as one batch
    compile: bool = False  # torch: torch.compile the model on GPU instances (once per input shape)
    versions_served: int = 1  # version policy: serve the newest N version folders
    # python/torch backends' CPU instances: the host memory their windows may hold together ("auto": 75 % of what is
    # available as they start; "off"; or bytes, "16GiB"); larger windows are refused as out of memory (vggx's client
    # tiles smaller), same-size requests merged only as far as it holds
    host_memory_budget: str = "auto"

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ExportError(f"--max-batch must be >= 1 (Triton's dynamic batching needs max_batch_size > 0), "
                              f"got {self.max_batch}")
        if self.queue_delay_us < 0:
            raise ExportError(f"--queue-delay-us must be >= 0, got {self.queue_delay_us}")
        if self.max_queue_size < 0:
            raise ExportError(f"--max-queue-size must be >= 0 (0: no bound), got {self.max_queue_size}")
        if self.instances < 1:
            raise ExportError(f"--instances must be >= 1, got {self.instances}")
        if self.instance_kind not in (None, "KIND_GPU", "KIND_CPU"):
            raise ExportError(f"instance_kind must be KIND_GPU or KIND_CPU, got {self.instance_kind!r}")
        if any(g < 0 for g in self.gpus) or len(set(self.gpus)) != len(self.gpus):
            raise ExportError(f"--gpus must be distinct GPU indices >= 0, got {list(self.gpus)}")
        if self.gpus and self.instance_kind == "KIND_CPU":
            raise ExportError("--gpus apply to GPU instances, not --instance-kind cpu")
        if self.cpu_threads < 0:
            raise ExportError(f"--cpu-threads must be >= 0, got {self.cpu_threads}")
        if self.versions_served < 1:
            raise ExportError(f"--versions-served must be >= 1, got {self.versions_served}")
        parse_memory_budget(self.host_memory_budget)

    def check(self, backend: Backend) -> str:
        """The instances' kind for ``backend``; ``ExportError`` where a knob does not apply to it (checked before
        an export starts, so a wrong flag costs no export)."""
        if self.trt_accelerator and backend is not Backend.ONNXRUNTIME:
            raise ExportError(f"the TensorRT execution accelerator is an onnxruntime-backend option, "
                              f"not {backend.value!r}")
        kind = self.instance_kind or backend.default_kind
        if backend is Backend.TENSORRT and kind != "KIND_GPU":
            raise ExportError("a TensorRT engine runs on a GPU: the tensorrt backend's instances are KIND_GPU")
        if backend is Backend.PYTHON and kind != "KIND_CPU":
            raise ExportError("the python backend runs ONNX Runtime on the CPU (KIND_CPU); on GPUs serve --backend "
                              "onnxruntime, tensorrt or torch")
        if self.trt_accelerator and kind != "KIND_GPU":
            raise ExportError("the TensorRT execution accelerator needs KIND_GPU instances")
        if self.gpus and kind != "KIND_GPU":
            raise ExportError(f"GPUs were named for the instances, but the {backend.value} backend's instances "
                              f"run on the CPU ({kind})")
        if self.compile and kind != "KIND_GPU":
            raise ExportError("--compile applies to GPU instances (torch.compile of the CUDA model); CPU instances "
                              "run the FP32 reference ops uncompiled")
        budgeted = parse_memory_budget(self.host_memory_budget) != "auto"
        if budgeted and kind != "KIND_CPU":
            raise ExportError(f"--host-memory-budget applies to CPU instances (the python backend, torch with "
                              f"--instance-kind cpu); the {backend.value} backend's run on GPUs here, whose memory "
                              f"runs out with an error of its own")
        if budgeted and backend not in (Backend.PYTHON, Backend.TORCH):
            raise ExportError(f"--host-memory-budget applies to vggx's own models (the python backend, torch with "
                              f"--instance-kind cpu); Triton's {backend.value} backend is not sized by it: serve "
                              f"--backend python on CPUs")
        if self.cpu_threads and backend is not Backend.PYTHON:
            raise ExportError(f"CPU threads per instance apply to the python backend (ONNX Runtime on the CPU), "
                              f"not {backend.value!r}")
        return kind


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_memory_budget(text: str) -> str:
    """``--host-memory-budget`` as the model config's ``host_memory_budget`` parameter: ``auto``, ``off`` or bytes
    (``16GiB``, ``12G``, ``8e9``); ``ExportError`` otherwise."""
    import re

    value = text.strip().lower()
    if value in ("auto", "off"):
        return value
    found = re.fullmatch(r"(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgt]i?)?b?", value)
    if not found or not 2**20 <= float(found[1]) * _UNITS[found[2] or ""] < 2**63:  # 1e999: inf
        raise ExportError(f"--host-memory-budget must be auto, off or a size of at least 1 MiB (16GiB, 12G, 8e9 "
                          f"bytes), got {text!r}")
    return str(int(float(found[1]) * _UNITS[found[2] or ""]))


def model_config(
    *,
    backend: Backend | str,
    metadata: Mapping[str, str],
    window: int,
    serving: ServingConfig = ServingConfig(),
    name: str = MODEL_NAME,
) -> ModelConfig:
    """Build the Triton ``ModelConfig`` protobuf of ``backend`` (pure: no files are touched).

    Args:
        backend: ``tensorrt``, ``onnxruntime``, ``python`` or ``torch``.
        metadata: the model metadata (``scale``, ``window``, ``size_multiple``, ``min_size``, ``max_size``,
            ``name``, ``version``); published as config ``parameters``.
        window: T, frames per window; the ``lr``/``sr`` dims are ``[T, -1, -1, 3]`` (batch dim excluded).
        serving: batching, instance, warm-up and backend knobs.
        name: the served model name.

    Raises:
        ExportError: inconsistent values (window vs metadata, accelerator on a non-ORT backend, ...).
    """
    from tritonclient.grpc import model_config_pb2 as mc

    backend = Backend.parse(backend)
    if window < 1:
        raise ExportError(f"window must be >= 1, got {window}")
    if "window" in metadata and str(metadata["window"]) != str(window):
        raise ExportError(f"window {window} does not match the model metadata (window={metadata['window']})")
    kind = serving.check(backend)

    cfg = mc.ModelConfig(name=name, max_batch_size=serving.max_batch)
    if backend is Backend.TENSORRT:
        cfg.platform = "tensorrt_plan"
    elif backend is Backend.ONNXRUNTIME:
        cfg.platform = "onnxruntime_onnx"
    else:
        cfg.backend = "python"
    cfg.version_policy.latest.num_versions = serving.versions_served
    dims = [window, -1, -1, 3]
    cfg.input.add(name=INPUT_NAME, data_type=mc.TYPE_UINT8, dims=dims)
    cfg.output.add(name=OUTPUT_NAME, data_type=mc.TYPE_UINT8, dims=dims)
    cfg.dynamic_batching.max_queue_delay_microseconds = serving.queue_delay_us
    if serving.max_queue_size:
        cfg.dynamic_batching.default_queue_policy.max_queue_size = serving.max_queue_size  # timeout_action: REJECT
    group = cfg.instance_group.add(name=f"{name}_{kind[5:].lower()}", kind=getattr(mc.ModelInstanceGroup, kind),
                                   count=serving.instances)
    group.gpus.extend(serving.gpus)

    # the ONNX file's generator config (GENERATOR_CONFIG_KEY) is for a run of the file alone, not a contract
    params = {str(k): str(v) for k, v in metadata.items() if k != "generator_config"}
    params["window"] = str(window)
    params["serving_backend"] = backend.value
    if backend is Backend.PYTHON:
        params["cpu_threads"] = str(serving.cpu_threads)
    if backend in (Backend.PYTHON, Backend.TORCH):
        params["merge_requests"] = "true" if serving.merge_requests else "false"
        if kind == "KIND_CPU":
            params["host_memory_budget"] = parse_memory_budget(serving.host_memory_budget)
    if backend is Backend.TORCH:
        params["precision"] = "fp32" if kind == "KIND_CPU" else "fp16"  # a CPU instance runs the FP32 reference
        params["compile"] = "true" if serving.compile else "false"
    for key in sorted(params):
        cfg.parameters[key].string_value = params[key]

    if serving.trt_accelerator:
        acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        # Keys of the onnxruntime backend's TensorRT EP (TRT_NOTES.md §5). The graph's precision: FP16 on an FP32
        # graph is TensorRT's weakly typed flag, which lets any layer drop to FP16, the flow estimator, softmax and
        # normalisation the FP16 export keeps in FP32 too (the engine path refuses it); --fp16 exports the graph.
        mode = "FP16" if str(metadata.get("precision", "fp32")) == "fp16" else "FP32"
        acc.parameters.update({"precision_mode": mode, "max_workspace_size_bytes": str(4 << 30),
                               "trt_engine_cache_enable": "1"})

    if serving.warmup_size is not None:
        h, w = _warmup_size(serving.warmup_size, metadata)
        warm = cfg.model_warmup.add(name=f"zero_{h}x{w}", batch_size=1, count=1)
        warm.inputs[INPUT_NAME].data_type = mc.TYPE_UINT8
        warm.inputs[INPUT_NAME].dims.extend([window, h, w, 3])
        warm.inputs[INPUT_NAME].zero_data = True
    return cfg


def config_text(config: ModelConfig) -> str:
    """``config.pbtxt`` text of ``config`` (protobuf text format)."""
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse_config(text: str) -> ModelConfig:
    """Parse ``config.pbtxt`` text with Triton's ModelConfig schema (``ExportError`` if it does not fit)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ExportError(f"not a valid Triton model config: {exc}") from None


def write_model_repository(
    repo: str | Path,
    *,
    backend: Backend | str,
    artefact: str | Path | None,
    metadata: Mapping[str, str],
    window: int,
    max_batch: int = 4,
    version: int | None = None,
    force: bool = False,
    serving: ServingConfig | None = None,
    name: str = MODEL_NAME,
    check_only: bool = False,
    extra_files: Mapping[str, str | Path] | None = None,
) -> Path:
    """Write ``<repo>/<name>/config.pbtxt`` and a new version folder holding ``artefact``; return that folder.

    The version is ``version``, else one past the newest existing one, except that a newest folder without
    the artefact the model serves (a placeholder, like the checked-in ``model_repository/vggx/1`` with only
    ``model.py``, or a ``tensorrt`` version whose engine is still to be built) is filled instead.
    The folder is staged next to its final place and renamed in, so a failure leaves nothing half-written;
    ``config.pbtxt`` is replaced atomically.

    Args:
        repo: the model repository root (``model_repository/``).
        backend: see the module table; ``python``/``torch`` also get their ``model.py``.
        artefact: the file to serve (``.plan``, ``.onnx``, ``.safetensors``), copied as the backend's file
            name; ``None`` writes the config and ``model.py`` only (e.g. the engine is built elsewhere).
        metadata: model metadata, published as config ``parameters``.
        window: T of the exported model.
        max_batch: ``max_batch_size`` (overrides ``serving.max_batch``).
        version: version folder number (>= 1); ``None`` = next free.
        force: replace an existing version folder (otherwise that is an error), and allow switching a
            model that has artefacts to another backend (a repository of placeholders switches freely).
        serving: the other config knobs.
        name: served model name.
        check_only: write nothing; raise what writing would (before a slow export, with the metadata it will
            publish) and return the folder it would write.
        extra_files: more files for the version folder (name -> source), staged with the artefact: e.g. the ONNX
            an engine is built from and the engine's sidecar, there as the folder appears, never after.

    Raises:
        ExportError: the version exists (without ``force``), a backend switch (without ``force``), a contract
            change beside versions still served, the artefact is missing, or writing failed.
    """
    backend = Backend.parse(backend)
    if artefact is not None:
        artefact = Path(artefact)
        if not artefact.is_file():
            raise ExportError(f"artefact not found: {artefact}")
    model_dir, version, text = _plan_write(repo, backend, metadata, window, max_batch, version, force, serving, name)
    target = model_dir / str(version)
    if check_only:
        return target

    config_tmp = model_dir / f".{CONFIG_FILE}.{os.getpid()}.tmp"
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir))
    except OSError as exc:
        raise ExportError(f"cannot make the model's folder {model_dir}: {exc.strerror or exc}") from None
    try:
        if backend.template is not None:
            shutil.copyfile(backend.template, staging / "model.py")
        if artefact is not None:
            shutil.copyfile(artefact, staging / backend.artefact_name)
        for file_name, source in (extra_files or {}).items():
            shutil.copyfile(source, staging / file_name)
        staging.chmod(0o755)
        # the config is written before anything served changes (a full disk fails here); then the version folder
        # and the config are renamed in together: a Ctrl-C or SIGTERM between the two waits for the second
        config_tmp.write_bytes(text.encode())
        with deferred_signals():
            _replace_dir(staging, target)
            config_tmp.replace(model_dir / CONFIG_FILE)
    except OSError as exc:
        raise ExportError(f"writing the model repository at {model_dir} failed: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            config_tmp.unlink()
    if artefact is None and backend.template is None:
        log.warning("%s has no %s yet; build it there before serving", target, backend.artefact_name)
    log.info("wrote %s (backend %s, version %d)", target, backend.value, version)
    return target


def _plan_write(repo, backend: Backend, metadata: Mapping[str, str], window: int, max_batch: int,
                version: int | None, force: bool, serving: ServingConfig | None,
                name: str) -> tuple[Path, int, str]:
    """The model folder, version and config text a write would produce, or the ``ExportError`` it would raise."""
    serving = _replace(serving or ServingConfig(), max_batch=max_batch)
    text = config_text(model_config(backend=backend, metadata=metadata, window=window, serving=serving,
                                    name=name))
    model_dir = Path(repo) / name
    if model_dir.exists() and not model_dir.is_dir():
        raise ExportError(f"{model_dir} is a file, not a model's folder; remove it, or export under another --name "
                          f"or --repo")
    existing = _versions(model_dir)
    old = _read_existing(model_dir / CONFIG_FILE, force)
    serves = _backend_of(old)
    placeholder = False
    if version is None:
        version = max(existing, default=0) + 1
        if existing and _is_placeholder(model_dir / str(version - 1), serves):
            version, placeholder = version - 1, True  # fill the newest version instead of adding one
    if version < 1:
        raise ExportError(f"version must be >= 1, got {version}")
    served = served_versions(model_dir, old)
    kept = sorted({*served, version}, reverse=True)[:serving.versions_served]
    if version not in kept:  # Triton serves the newest versions_served: this one would sit there unserved
        newer = ", ".join(map(str, sorted(v for v in kept if v > version)))
        raise ExportError(f"{model_dir} serves its newest {serving.versions_served} version(s) ({newer}), so a "
                          f"version {version} would never be served, and its config.pbtxt would apply to them; "
                          f"export without --version (it takes the next one), or with one above {max(kept)}")
    target = model_dir / str(version)
    if target.exists() and not (force or placeholder):
        raise ExportError(f"{target} already exists; pass --force to overwrite it, or --version to choose "
                          f"another")
    new = parse_config(text)
    if old is not None and served and not force and _kind_of(old) != _kind_of(new):
        raise ExportError(f"{model_dir} serves a {_kind_of(old)} model; pass --force to switch it to "
                          f"{backend.value!r} or write to another --repo")
    beside = max((v for v in kept if v != version), default=None) if old is not None else None  # still served
    if beside is None:
        return model_dir, version, text
    if _kind_of(old) != _kind_of(new):  # a switch (forced): the versions still served hold the old backend's files
        raise ExportError(f"{model_dir} keeps serving version {beside} beside the new one, a {_kind_of(old)} model: "
                          f"one config.pbtxt would have {backend.value!r} load it too, and fail. Export with "
                          f"--versions-served 1 (the new version served alone), or under another --name")
    was, now = _contract(old), _contract(new)
    if was != now:  # config.pbtxt is the model's, not a version's: the versions still served would get the new one
        diff = ", ".join(f"{k} {was.get(k)} -> {now.get(k)}" for k in sorted(now.keys() | was.keys())
                         if was.get(k) != now.get(k))
        raise ExportError(f"{model_dir} keeps serving version {beside} beside the new one, and the two differ "
                          f"({diff}): one config.pbtxt describes every version served. Export with "
                          f"--versions-served 1, or under another --name")
    if old.platform == "tensorrt_plan" and new.max_batch_size > old.max_batch_size:
        # a plan's profile holds its batch sizes: the version still served would get batches it was not built for
        raise ExportError(f"{model_dir} keeps serving version {beside} beside the new one, a TensorRT engine built "
                          f"for batches of at most {old.max_batch_size}; one config.pbtxt would send it "
                          f"{new.max_batch_size}. Export with --max-batch {old.max_batch_size}, --versions-served 1, "
                          f"or under another --name")
    return model_dir, version, _with_identities(new, old, model_dir, version, kept, served, backend, serving)


def _with_identities(new: ModelConfig, old: ModelConfig, model_dir: Path, version: int, kept: list[int],
                     served: list[int], backend: Backend, serving: ServingConfig) -> str:
    """The text of ``new``, a config under which the ``kept`` versions (newest first) are served side by side, with
    each one's identity (:data:`_IDENTITY`) published as ``<key>@<version>``: a canary serves other weights than the
    version beside it, and a client calling one version records what computed its frames. The plain keys are the
    newest version's (what a client that names no version calls). A version still served keeps what the old config
    said of it: its own keys, or the plain ones where it was the newest served.

    Raises:
        ExportError: the TensorRT accelerator's precision_mode, one for the whole model, would not be the precision
            of a version still served (FP16 on an FP32 graph lets any layer drop to FP16).
    """
    keys = _IDENTITY if backend is not Backend.TORCH else _IDENTITY[:1]  # torch: the config's kind sets precision
    newest_old = max(served, default=None)
    identities = {}
    for v in kept:
        cfg, names = (new, {k: k for k in keys}) if v == version else (old, {k: f"{k}@{v}" for k in keys})
        if v != version and v == newest_old:
            names = {k: n if n in cfg.parameters else k for k, n in names.items()}
        identities[v] = {k: cfg.parameters[n].string_value for k, n in names.items()
                         if n in cfg.parameters and cfg.parameters[n].string_value}
    now = identities[version].get("precision", "fp32")
    for v in kept:
        was = identities[v].get("precision")
        if serving.trt_accelerator and was and was != now:
            raise ExportError(f"{model_dir} keeps serving version {v} ({was}) beside the new one ({now}), and the "
                              f"TensorRT accelerator's precision_mode is one for the whole model: {now.upper()} would "
                              f"apply to version {v}'s graph too. Export in {was}, with --versions-served 1, or "
                              f"without --trt-accelerator (each version then runs its own graph's precision)")
    for v, identity in identities.items():
        for key, value in identity.items():
            new.parameters[f"{key}@{v}"].string_value = value
    for key in keys:
        if key in identities[kept[0]]:
            new.parameters[key].string_value = identities[kept[0]][key]
        elif key in new.parameters:
            del new.parameters[key]
    return config_text(new)


def _warmup_size(size: tuple[int, int], metadata: Mapping[str, str]) -> tuple[int, int]:
    """``size`` clamped into the model's [min_size, max_size] (the warm-up must be a valid request)."""
    lo = parse_size(metadata["min_size"]) if "min_size" in metadata else (1, 1)
    hi = parse_size(metadata["max_size"]) if "max_size" in metadata else size
    return tuple(min(max(s, a), b) for s, a, b in zip(size, lo, hi, strict=True))  # type: ignore[return-value]


def _replace(serving: ServingConfig, **changes) -> ServingConfig:
    import dataclasses

    return dataclasses.replace(serving, **changes)


def _versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]


def _is_placeholder(version_dir: Path, backend: Backend | None = None) -> bool:
    """A version folder without the artefact ``backend`` serves, or without any when that is unknown.

    E.g. the checked-in folder that holds only ``model.py``, or a ``tensorrt`` version exported where TensorRT
    was absent: it holds the ``model.onnx`` to build from but no ``model.plan``, and Triton cannot load it.
    """
    names = [backend.artefact_name] if backend is not None else [b.artefact_name for b in Backend]
    return not any((version_dir / name).exists() for name in names)


def served_versions(model_dir: Path, config: ModelConfig | None) -> list[int]:
    """The version folders of ``model_dir`` that hold the artefact its ``config`` serves (not placeholders)."""
    serves = _backend_of(config)
    return [v for v in _versions(model_dir) if not _is_placeholder(model_dir / str(v), serves)]


def unexported_models(repo: Path) -> dict[str, Backend]:
    """The models of ``repo`` written by vggx (their config names a ``serving_backend``) with no version folder that
    holds what that backend serves, by name: e.g. the checked-in ``model_repository/vggx``, a config and a
    ``model.py`` without the ``model.onnx`` that ``vggx export --backend python`` puts beside it. Triton cannot load
    them. A config that does not parse is left to the server to report."""
    out: dict[str, Backend] = {}
    for path in sorted(repo.glob("*/config.pbtxt")):
        try:
            config = _read_existing(path)
        except ExportError:
            continue
        backend = _backend_of(config)
        if backend is not None and not served_versions(path.parent, config):
            out[path.parent.name] = backend
    return out


def _backend_of(cfg: ModelConfig | None) -> Backend | None:
    """The vggx backend a config was written for (its ``serving_backend`` parameter), if it names one."""
    param = cfg.parameters.get("serving_backend") if cfg is not None else None
    if param is None:
        return None
    try:
        return Backend(param.string_value)
    except ValueError:
        return None


def _read_existing(path: Path, force: bool = False) -> ModelConfig | None:
    """The model's current config; one this Triton client's schema cannot read (hand-edited, or a newer Triton's
    field) is named, and with ``force`` treated as absent: the export replaces it."""
    if not path.is_file():
        return None
    try:
        return parse_config(path.read_text())
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ExportError as exc:
        if force:
            log.warning("replacing %s, which does not parse (%s)", path, exc)
            return None
        raise ExportError(f"{path}: {exc}; pass --force to replace it") from None


# What computed a version's frames, published per version where versions are served side by side
# (``<key>@<version>``); vggx's client reads those of the version it calls.
_IDENTITY = ("checkpoint_sha256", "precision", "flavor")
# What clients rely on, the same for every version a model serves side by side.
_CONTRACT_PARAMETERS = ("window", "scale", "size_multiple", "min_size", "max_size")


def _contract(cfg: ModelConfig) -> dict[str, str]:
    """The tensor contract of a config: its input and output dims and the metadata that bound a request."""
    out = {f"{t.name} dims": str(list(t.dims)) for t in (*cfg.input, *cfg.output)}
    for key in _CONTRACT_PARAMETERS:
        if key in cfg.parameters:
            out[key] = cfg.parameters[key].string_value
    return out


def _kind_of(cfg: ModelConfig) -> str:
    """What a config serves: its platform, or python + its ``serving_backend`` parameter."""
    if cfg.platform:
        return cfg.platform
    param = cfg.parameters.get("serving_backend")
    return f"{cfg.backend}/{param.string_value}" if param is not None else cfg.backend


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` onto ``dst``; an existing ``dst`` is moved aside first and removed after."""
    if not dst.exists():
        src.rename(dst)
        return
    trash = dst.with_name(f".old-{dst.name}-{os.getpid()}")
    dst.rename(trash)
    try:
        src.rename(dst)
    except OSError:
        trash.rename(dst)
        raise
    shutil.rmtree(trash, ignore_errors=True)


