"""ONNX -> TensorRT engine (``model.plan``) with a JSON sidecar: thin, isolated, TensorRT imported lazily.

Steps (TRT_NOTES.md §1-§2), each a small function: register the vggx plugins (when the graph has
plugin nodes, marked ``aot=1`` so the AOT implementation is baked into the plan and it runs
without Python, e.g. in Triton's ``tensorrt_plan`` backend) -> parse the ONNX -> builder config
(optimisation profile over N, H, W; precision; timing cache; optimisation level; workspace) ->
serialize -> write the plan and ``model.plan.json`` atomically. The updated timing cache is written beside the
plan and kept (:func:`keep_timing_cache`) only once the engine is checked and in place.

Precision lives in the ONNX graph (DESIGN.md): an FP16 graph is built as a strongly typed network (TensorRT 11
has nothing else; TensorRT 10 its STRONGLY_TYPED creation flag), so the FP32 islands stay FP32; the precision
asked must be the graph's (:func:`check_graph`), so TensorRT's FP16 builder flag is never set (an FP32 graph builds
FP32, TF32 where TensorRT picks it).

Without TensorRT every entry point raises :class:`~vggx.errors.TensorRTNotInstalledError`;
:func:`finish_command` gives the command that completes the build where TensorRT is
(``python -m vggx.export.engine ...``, e.g. inside the NGC Triton container).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import re
import shlex
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vggx.checkpoint import file_sha256
from vggx.errors import ConfigError, EngineBuildError, TensorRTNotInstalledError, VggxError
from vggx.paths import write_atomic
from vggx.shapes import check_profile, format_size, parse_size, profile_shapes

from .onnx import INPUT_NAME, Precision

__all__ = [
    "EngineConfig",
    "ShapeProfile",
    "build_engine",
    "check_replaceable",
    "checked_comparison",
    "compare_engine_with_onnx",
    "finish_command",
    "import_tensorrt",
    "keep_timing_cache",
    "own_timing_cache",
    "read_sidecar",
    "sidecar_path",
    "timing_cache_name",
]

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"  # model.plan -> model.plan.json
TIMING_SUFFIX = ".timing"  # model.plan -> model.plan.timing: the build's timing cache, until it is kept
# A model's timing cache, trt_timing.<key>.cache (timing_cache_name); trt_timing.cache: unkeyed, from earlier vggx
_MODEL_TIMING_CACHE = re.compile(r"trt_timing(\.[0-9a-f]{16})?\.cache")


@dataclass(frozen=True)
class ShapeProfile:
    """One optimisation profile of the uint8 input ``[N, T, H, W, 3]``; sizes are LR ``(h, w)`` pixels."""

    window: int  # T, frames (fixed)
    min_size: tuple[int, int]
    opt_size: tuple[int, int]
    max_size: tuple[int, int]
    max_batch: int = 1  # N runs 1..max_batch
    opt_batch: int = 1
    input_name: str = INPUT_NAME

    def __post_init__(self) -> None:
        # ConfigError on min > opt > max or bad batches, with the values named
        profile_shapes(self.window, self.min_size, self.opt_size, self.max_size,
                       opt_batch=self.opt_batch, max_batch=self.max_batch)

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """``(min, opt, max)`` input shapes."""
        return profile_shapes(self.window, self.min_size, self.opt_size, self.max_size,
                              opt_batch=self.opt_batch, max_batch=self.max_batch)

    def check_sizes(self) -> list[tuple[int, int, int]]:
        """The ``(n, h, w)`` an engine of this profile is checked at: its min and opt sizes, and its largest batch
        (what Triton sends) at the min size."""
        lo, opt = self.min_size, self.opt_size
        return [(1, *lo), (1, *opt)] + ([(self.max_batch, *lo)] if self.max_batch > 1 else [])

    def to_json(self) -> dict[str, Any]:
        lo, opt, hi = self.shapes()
        return {"input": self.input_name, "min": list(lo), "opt": list(opt), "max": list(hi)}

    @classmethod
    def within(
        cls, window: int, min_size: tuple[int, int], opt_size: tuple[int, int], max_size: tuple[int, int],
        *, model_min: tuple[int, int], model_max: tuple[int, int], max_batch: int = 1, opt_batch: int = 1,
    ) -> ShapeProfile:
        """A profile whose sizes must also lie in the model's ``[model_min, model_max]``."""
        if max_size[0] < model_min[0] or max_size[1] < model_min[1]:  # before the opt size clamped to it is blamed
            raise ConfigError(f"max size {format_size(max_size)} is below the model's smallest, "
                              f"{format_size(model_min)}")
        if min_size[0] < model_min[0] or min_size[1] < model_min[1]:
            raise ConfigError(f"min size {format_size(min_size)} is below the model's "
                              f"{format_size(model_min)}")
        for name, size in (("max", max_size), ("min", min_size)):
            if size[0] > model_max[0] or size[1] > model_max[1]:
                raise ConfigError(f"{name} size {format_size(size)} is above the model's largest, "
                                  f"{format_size(model_max)}")
        if min_size[0] > max_size[0] or min_size[1] > max_size[1]:  # said in the sizes given, not a profile's
            raise ConfigError(f"min size {format_size(min_size)} is above max size {format_size(max_size)}")
        check_profile(min_size, opt_size, max_size, opt_batch=opt_batch, max_batch=max_batch)
        return cls(window, min_size, opt_size, max_size, max_batch=max_batch, opt_batch=opt_batch)


@dataclass(frozen=True)
class EngineConfig:
    """How to build the engine."""

    profile: ShapeProfile
    precision: Precision = Precision.FP16  # must match the ONNX graph's (check_graph)
    optimization_level: int = 3  # builder optimisation level 0..5 (TensorRT's default is 3)
    workspace_mib: int = 4096  # workspace memory-pool limit, MiB
    timing_cache: Path | None = None  # read if present; the build's own kept there by keep_timing_cache
    force: bool = False  # replace an engine built for another GPU / TensorRT version

    def __post_init__(self) -> None:
        if not isinstance(self.profile, ShapeProfile):
            raise ConfigError(f"profile must be a ShapeProfile, got {type(self.profile).__name__}")
        if not isinstance(self.precision, Precision):
            raise ConfigError(f"precision must be a Precision, got {self.precision!r}")
        if not 0 <= self.optimization_level <= 5:
            raise ConfigError(f"builder optimisation level must be in 0..5, got {self.optimization_level}")
        if self.workspace_mib < 1:
            raise ConfigError(f"workspace must be >= 1 MiB, got {self.workspace_mib}")


def import_tensorrt() -> Any:
    """``import tensorrt``, or :class:`TensorRTNotInstalledError` (the one "unavailable" path)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTNotInstalledError(str(exc)) from exc
    return trt


def sidecar_path(plan: str | Path) -> Path:
    """``model.plan`` -> ``model.plan.json``."""
    plan = Path(plan)
    return plan.with_name(plan.name + SIDECAR_SUFFIX)


def read_sidecar(plan: str | Path) -> dict[str, Any] | None:
    """The sidecar of ``plan``, or ``None`` when there is none (or it is unreadable)."""
    path = sidecar_path(plan)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_replaceable(existing: Mapping[str, Any] | None, current: Mapping[str, Any], *, force: bool) -> None:
    """Refuse to replace an engine built for another GPU or TensorRT version, unless ``force``.

    ``existing`` / ``current`` are sidecar dicts (``tensorrt_version``, ``gpu``, ``compute_capability``).

    Raises:
        EngineBuildError: they differ and ``force`` is false.
    """
    if existing is None or force:
        return
    keys = ("tensorrt_version", "gpu", "compute_capability")
    changed = [k for k in keys if str(existing.get(k)) != str(current.get(k))]
    if changed:
        was = ", ".join(f"{k}={existing.get(k)}" for k in keys)
        now = ", ".join(f"{k}={current.get(k)}" for k in keys)
        raise EngineBuildError(f"the existing engine was built for {was}; this build is for {now}; "
                               f"pass --force to replace it, or export to another --version")


def engine_unavailable() -> str | None:
    """Why no engine can be built on this machine, said as "TensorRT is not installed here" or "no CUDA GPU is
    visible here"; None where one can (TensorRT importable and a GPU): checked before an export's slow part."""
    try:
        import_tensorrt()
    except TensorRTNotInstalledError:
        return "TensorRT is not installed here"
    import torch

    return None if torch.cuda.is_available() else "no CUDA GPU is visible here (TensorRT is installed)"


def _gpu() -> tuple[str, str]:
    import torch

    if not torch.cuda.is_available():
        raise EngineBuildError("building a TensorRT engine needs a CUDA GPU; none is visible to PyTorch")
    major, minor = torch.cuda.get_device_capability()
    return torch.cuda.get_device_name(), f"{major}.{minor}"


def _mark_aot(model: Any) -> list[str]:
    """Give every vggx plugin node ``aot=1`` (the AOT implementation, TRT_NOTES.md §2); return their ops."""
    from onnx import helper

    ops = set()
    for node in model.graph.node:
        if node.domain == "vggx":
            kept = [a for a in node.attribute if a.name != "aot"]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute("aot", 1)])
            ops.add(node.op_type)
    return sorted(ops)


def check_graph(meta: dict[str, str], config: EngineConfig) -> None:
    """``ConfigError`` where ``config`` asks what the ONNX graph (its metadata ``meta``) cannot give: another
    precision than the graph's, or another window than its fixed T.

    An FP16 engine is built from the FP16 graph (``vggx export --fp16``), strongly typed, so that the flow,
    softmax and normalisation islands stay FP32; TensorRT's FP16 flag on the FP32 graph would let any layer drop
    to FP16, so it is refused rather than set.
    """
    graph = meta.get("precision", "fp32")
    if config.precision.value != graph:
        how = ("export with --fp16: its graph keeps the flow, softmax and normalisation in FP32, which TensorRT's "
               "FP16 flag on an FP32 graph would not" if graph == "fp32" else "export without --fp16")
        raise ConfigError(f"the graph is {graph.upper()}, and a {config.precision.value.upper()} engine is asked: "
                          f"{how} (or pass --precision {graph})")
    window = meta.get("window")
    if window is not None and window.isdigit() and int(window) != config.profile.window:
        raise ConfigError(f"the graph's window is {window} frames, not {config.profile.window}: its T is fixed "
                          f"(export another with --window)")


def _strongly_typed(trt: Any, graph_precision: str) -> bool:
    if int(trt.__version__.split(".")[0]) >= 11:
        return True  # TensorRT 11 networks are strongly typed
    return graph_precision == "fp16"


def _network(trt: Any, builder: Any, model: Any, strongly_typed: bool, logger: Any) -> tuple[Any, Any]:
    flags = 0
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT's ONNX parser rejected the graph: {errors}")
    return network, parser


def _builder_config(trt: Any, builder: Any, config: EngineConfig) -> Any:
    """The builder config: workspace, optimisation level, the one profile, the timing cache. No precision flag: the
    graph's types decide (strongly typed FP16 graph; an FP32 graph builds FP32, TF32 where TensorRT picks it)."""
    cfg = builder.create_builder_config()
    cfg.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    cfg.builder_optimization_level = config.optimization_level
    profile = builder.create_optimization_profile()
    lo, opt, hi = config.profile.shapes()
    profile.set_shape(config.profile.input_name, lo, opt, hi)
    if cfg.add_optimization_profile(profile) < 0:
        raise EngineBuildError(f"TensorRT rejected the optimisation profile {lo}..{hi} of input "
                               f"{config.profile.input_name!r}")
    _set_timing_cache(cfg, config.timing_cache)
    return cfg


def _set_timing_cache(cfg: Any, path: Path | None) -> None:
    """Start from the timing cache at ``path`` where it was made on this GPU with this TensorRT; else (another
    GPU, another TensorRT, an unreadable file) from an empty one, with a warning. TensorRT warns that a cache from
    other device properties, let in with ``ignore_mismatch``, "may lead to functional/performance bugs"."""
    blob = path.read_bytes() if path is not None and path.is_file() else b""
    cache = cfg.create_timing_cache(blob) if blob else None
    if cache is not None and cfg.set_timing_cache(cache, ignore_mismatch=False):
        return
    if blob:
        log.warning("not using the timing cache %s (made on another GPU or TensorRT, or unreadable): timing "
                    "every layer again", path)
    cfg.set_timing_cache(cfg.create_timing_cache(b""), ignore_mismatch=False)


def _logger(trt: Any) -> Any:
    """A TensorRT logger that forwards to ``logging`` (warnings and up) and keeps the last error, which the
    one-line failure quotes (a plugin's AOT step that raised, a layer no tactic fits)."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.last_error: str | None = None

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                self.last_error = msg
                log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.WARNING:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return Logger()


def build_engine(onnx_path: str | Path, plan_path: str | Path, config: EngineConfig, *,
                 replaces: str | Path | None = None) -> Path:
    """Build a TensorRT engine from ``onnx_path`` into ``plan_path`` (+ ``model.plan.json``, and the updated timing
    cache as ``model.plan.timing`` when ``config.timing_cache`` is set); return the plan. Build into a folder of its
    own: the engine is checked before it goes where it is served (:func:`place_engine`). ``replaces``: the served
    plan it is meant to replace (default ``plan_path``), refused before the build where another GPU or TensorRT
    made it (without ``config.force``).

    Raises:
        TensorRTNotInstalledError: ``tensorrt`` is not importable.
        EngineBuildError: no GPU, parser or builder failure, or an existing plan built for another
            GPU / TensorRT version (without ``config.force``).
    """
    import onnx

    trt = import_tensorrt()
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    model = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in model.metadata_props}
    plugins = _mark_aot(model)
    gpu, cc = _gpu()
    check_graph(meta, config)
    strongly_typed = _strongly_typed(trt, meta.get("precision", "fp32"))
    sidecar = {
        "tensorrt_version": trt.__version__,
        "gpu": gpu,
        "compute_capability": cc,
        "profile": config.profile.to_json(),
        "precision": config.precision.value,
        "graph_precision": meta.get("precision", "fp32"),
        "strongly_typed": strongly_typed,
        "plugins": [f"vggx::{op}" for op in plugins],
        "plugin_implementation": "aot" if plugins else None,
        "optimization_level": config.optimization_level,
        "workspace_mib": config.workspace_mib,
        "checkpoint_sha256": meta.get("checkpoint_sha256", ""),
        "onnx_sha256": file_sha256(onnx_path),
        "metadata": meta,
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    existing = Path(replaces) if replaces is not None else plan_path
    if existing.exists():
        check_replaceable(read_sidecar(existing), sidecar, force=config.force)
    if plugins:
        from vggx.plugins.tensorrt import register_plugins

        register_plugins()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network, _parser = _network(trt, builder, model, strongly_typed, logger)
    cfg = _builder_config(trt, builder, config)
    log.info("building %s (%s, profile %s)", plan_path, config.precision.value, sidecar["profile"])
    plan = builder.build_serialized_network(network, cfg)
    if plan is None:
        why = logger.last_error or "see its log above"
        raise EngineBuildError(f"TensorRT could not build the engine: {why} (out of memory: a smaller "
                               f"--max-size/--max-batch or a larger --workspace-mib)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(plan_path, bytes(plan))
    write_atomic(sidecar_path(plan_path), json.dumps(sidecar, indent=2).encode())
    if config.timing_cache is not None:
        write_atomic(_built_timing(plan_path), bytes(cfg.get_timing_cache().serialize()))
    return plan_path


def timing_cache_name(plugins: Path | None = None) -> str:
    """The file name of a model's persistent timing cache, ``trt_timing.<key>.cache``: ``key`` hashes the sources of
    the vggx plugins (``plugins``: their folder, default the installed package's), i.e. their kernels, launch and
    tactic tables and AOT step. TensorRT 10.9's AOT plugins opt into timing caching with an empty ID, so their
    timings are keyed by tensor shapes alone: a cache kept across a kernel change picks the tactic by the old
    kernels' timings. A changed kernel starts from an empty cache instead. (Another TensorRT or GPU is refused by
    TensorRT itself: the cache is set with ``ignore_mismatch=False``.)"""
    if plugins is None:
        import vggx.plugins

        plugins = Path(vggx.plugins.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(plugins.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"trt_timing.{digest.hexdigest()[:16]}.cache"


def _built_timing(plan: Path) -> Path:
    return plan.with_name(plan.name + TIMING_SUFFIX)


def own_timing_cache(path: Path | None) -> Path | None:
    """``path`` as this machine's build reads and keeps it: a model's cache (``trt_timing[.<key>].cache``, as an
    export elsewhere names it in the command it prints) under the key of the plugins installed here, which are the
    ones this build times (another vggx on the exporting machine hashes other kernels); any other name as given."""
    if path is None or not _MODEL_TIMING_CACHE.fullmatch(path.name):
        return path
    return path.with_name(timing_cache_name())


def keep_timing_cache(built_plan: str | Path, config: EngineConfig) -> None:
    """Keep the timing cache of the build of ``built_plan`` at ``config.timing_cache``: only once the engine it
    timed is checked and served (a failed build left a model folder holding the cache alone, which Triton takes
    for a model it cannot load, and refuses to start)."""
    built = _built_timing(Path(built_plan))
    if config.timing_cache is not None and built.is_file():
        config.timing_cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(config.timing_cache, built.read_bytes())
        # the model's cache: its older ones go (one per plugin change would pile up); a file named otherwise with
        # --timing-cache may sit among others' files, which stay
        if _MODEL_TIMING_CACHE.fullmatch(config.timing_cache.name):
            for old in config.timing_cache.parent.iterdir():
                if old != config.timing_cache and _MODEL_TIMING_CACHE.fullmatch(old.name):
                    old.unlink(missing_ok=True)


def place_engine(built_plan: str | Path, plan_path: str | Path) -> Path:
    """Put a checked engine where it is served: its sidecar first, then the plan (what Triton loads) last."""
    built, plan_path = Path(built_plan), Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(sidecar_path(plan_path), sidecar_path(built).read_bytes())
    write_atomic(plan_path, built.read_bytes())
    return plan_path


def compare_engine_with_onnx(
    plan_path: str | Path, onnx_path: str | Path, sizes: list[tuple[int, int, int]], *, seed: int = 0
) -> list[Any]:
    """Run the engine (Polygraphy's ``TrtRunner``) and ONNX Runtime on the same random uint8 frames.

    ``sizes`` are ``(n, h, w)`` inside the profile. Returns :class:`vggx.export.verify.ParityResult`
    per size with the FP16 tolerance (±2 levels on 99 %); raises ``VerificationError`` beyond it. FP32 engines
    too: TensorRT runs FP32 convolutions and matmuls in TF32 on Ampere and later (its default), whose 10-bit
    mantissa is FP16's, not ONNX Runtime's FP32.
    """
    import numpy as np
    import onnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from vggx.errors import VerificationError

    from .verify import FP16_TOLERANCE, compare_frames, ort_session

    import_tensorrt()
    model = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in model.metadata_props}
    window = int(meta["window"])
    if any(n.domain == "vggx" for n in model.graph.node):
        from vggx.plugins.tensorrt import register_plugins

        register_plugins()
    session = ort_session(model)
    rng = np.random.default_rng(seed)
    results = []
    with TrtRunner(EngineFromBytes(Path(plan_path).read_bytes())) as runner:
        for n, h, w in sizes:
            frames = rng.integers(0, 256, (n, window, h, w, 3), dtype=np.uint8)
            got = runner.infer({INPUT_NAME: frames})[meta.get("output", "sr")]
            want = session.run(None, {INPUT_NAME: frames})[0]
            results.append(compare_frames(f"engine N={n}", frames, np.asarray(got), want, FP16_TOLERANCE))
    failed = [r for r in results if not r.passed]
    if failed:
        raise VerificationError("the engine does not match ONNX Runtime: " + "; ".join(map(str, failed)))
    return results


def finish_command(onnx_path: str | Path, plan_path: str | Path, config: EngineConfig, *, verify: bool = True) -> str:
    """The shell command that builds this engine where TensorRT is (e.g. in the NGC Triton container); ``verify``
    False: it skips the engine's check against ONNX Runtime (carries an export's ``--no-verify``)."""
    p = config.profile
    args = [
        "python", "-m", "vggx.export.engine", str(onnx_path), str(plan_path),
        "--window", str(p.window), "--min-size", format_size(p.min_size),
        "--opt-size", format_size(p.opt_size),
        "--max-size", format_size(p.max_size), "--max-batch", str(p.max_batch),
        "--precision", config.precision.value, "--opt-level", str(config.optimization_level),
        "--workspace-mib", str(config.workspace_mib),
    ]
    if config.timing_cache is not None:
        args += ["--timing-cache", str(config.timing_cache)]
    if config.force:
        args.append("--force")
    if not verify:
        args.append("--no-verify")
    return shlex.join(args)


def _max_batch(plan: Path, given: int | None) -> int:
    """The profile's largest N: ``given``, which must cover the ``max_batch_size`` of the config.pbtxt served beside
    the plan's version folder (Triton batches requests up to it, past a profile that stops short), else that."""
    config = plan.parent.parent / "config.pbtxt"
    served = None
    if config.is_file():
        from .repository import parse_config

        served = parse_config(config.read_text()).max_batch_size or None
    if given is None:
        return served or 1
    if served is not None and given < served:
        raise ConfigError(f"--max-batch {given} is below the max_batch_size {served} of {config}: Triton would send "
                          f"the engine batches its profile refuses; pass --max-batch {served}")
    return given


def checked_comparison(plan: Path, onnx_path: Path, sizes: list[tuple[int, int, int]], *,
                       compare: Any = None) -> list[Any]:
    """:func:`compare_engine_with_onnx` (or ``compare``, the same function as its caller imported it), its runner's
    failures (Polygraphy's, the GPU's) one ``VerificationError`` of one line: ``python -m vggx.export.engine`` and
    ``vggx export`` run the freshly built engine through it."""
    from vggx.errors import VerificationError

    try:
        return (compare or compare_engine_with_onnx)(plan, onnx_path, sizes)
    except VggxError:
        raise
    except Exception as exc:  # Polygraphy and TensorRT raise their own untyped errors, of several lines at times
        raise VerificationError(f"running the engine against ONNX Runtime failed: {' '.join(str(exc).split())}") \
            from None


def _graph_metadata(path: Path) -> dict[str, str]:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except (OSError, ValueError, DecodeError) as exc:
        raise ConfigError(f"cannot read {path} as an ONNX graph ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m vggx.export.engine ONNX PLAN --window T --min-size HxW ...``: build one engine."""
    ap = argparse.ArgumentParser(prog="python -m vggx.export.engine", description=main.__doc__)
    ap.add_argument("onnx", type=Path)
    ap.add_argument("plan", type=Path)
    ap.add_argument("--window", type=int, help="T (default: the ONNX graph's window metadata)")
    ap.add_argument("--min-size", required=True)
    ap.add_argument("--opt-size", required=True)
    ap.add_argument("--max-size", required=True)
    ap.add_argument("--max-batch", type=int, help="profile's largest N (default: the config.pbtxt's max_batch_size "
                    "beside the plan's version folder, else 1)")
    ap.add_argument("--precision", choices=[p.value for p in Precision], help="default: the graph's")
    ap.add_argument("--opt-level", type=int, default=3)
    ap.add_argument("--workspace-mib", type=int, default=4096)
    ap.add_argument("--timing-cache", type=Path)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--no-verify", action="store_true", help="skip the engine vs ONNX Runtime comparison")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sizes = parse_size(a.min_size, "--min-size"), parse_size(a.opt_size, "--opt-size"), \
            parse_size(a.max_size, "--max-size")
        a.max_batch = _max_batch(a.plan, a.max_batch)
        meta = _graph_metadata(a.onnx)
        if a.window is None and not meta.get("window", "").isdigit():
            raise ConfigError(f"{a.onnx} has no window metadata; pass --window")
        window = a.window if a.window is not None else int(meta["window"])
        if "min_size" in meta and "max_size" in meta:  # the graph's range, which its config.pbtxt publishes
            profile = ShapeProfile.within(window, *sizes, model_min=parse_size(meta["min_size"]),
                                          model_max=parse_size(meta["max_size"]), max_batch=a.max_batch)
        else:
            profile = ShapeProfile(window, *sizes, max_batch=a.max_batch)
        config = EngineConfig(profile, Precision(a.precision or meta.get("precision", "fp32")), a.opt_level,
                              a.workspace_mib, own_timing_cache(a.timing_cache), a.force)
        check_graph(meta, config)  # before TensorRT is even looked for
        # built and checked aside: a plan that fails its check never reaches the served folder, nor its timings
        # the model's cache
        with tempfile.TemporaryDirectory(prefix="vggx-engine-") as tmp:
            built = build_engine(a.onnx, Path(tmp) / a.plan.name, config, replaces=a.plan)
            if not a.no_verify:
                for r in checked_comparison(built, a.onnx, profile.check_sizes()):
                    print(r)
            plan = place_engine(built, a.plan)
            keep_timing_cache(built, config)
    except VggxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a read-only or full repository volume
        print(f"error: cannot write {exc.filename or a.plan}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {plan} and {sidecar_path(plan)}")
    print(json.dumps(asdict(profile), default=list))
    return 0


if __name__ == "__main__":
    sys.exit(main())
