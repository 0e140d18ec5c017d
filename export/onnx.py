"""PyTorch -> ONNX: the uint8-in/uint8-out graph of DESIGN.md (pre-processing + generator + post).

Input ``lr`` UINT8 ``[N, T, H, W, 3]``, output ``sr`` UINT8 ``[N, T, s·H, s·W, 3]``; T fixed (the
window), N, H, W dynamic; the graph pads to ``size_multiple`` and crops back.

Two flavours (:class:`Flavor`): ``portable`` traces the plain PyTorch compositions of the two ops
(GridSample, MatMul, Softmax); ``trt`` traces ``torch.ops.vggx.*`` and writes one plugin node per
op through :func:`vggx.plugins.onnx.custom_translation_table`. Two precisions (:class:`Precision`):
FP16 is the graph of :mod:`vggx.export.fp16` (FP16 with FP32 islands).

After the export: constant folding (onnxscript's optimizer, the exporter's ``optimize=True``: it
keeps standard ops, unlike ONNX Runtime's extended levels, and unlike an ONNX Runtime offline
optimisation it does not bake CPU-provider casts into FP16 graphs), the ``Resize`` -> ``Conv``
rewrite of :mod:`vggx.export.passes`, shape inference and ``onnx.checker`` (full check, with the
plugin schemas registered), then the model metadata as ONNX metadata props.
"""

from __future__ import annotations

import enum
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from vggx.checkpoint import Checkpoint, model_metadata
from vggx.errors import ExportError
from vggx.generator import GeneratorConfig, UInt8Upscaler
from vggx.graph import GRAPH_REVISION  # re-exported: raise it there when the graph changes
from vggx.plugins import reference_ops

__all__ = ["GENERATOR_CONFIG_KEY", "GRAPH_REVISION", "INPUT_NAME", "OUTPUT_NAME", "ExportConfig", "Flavor",
           "Precision", "export_onnx", "published_metadata"]

log = logging.getLogger(__name__)

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
# onnxruntime 1.18+ loads IR version 10; the exporter of torch 2.13 writes 10 too.
_MAX_IR_VERSION = 10


class Flavor(enum.Enum):
    """``trt``: the two plugin nodes; ``portable``: standard ONNX ops only (GridSample, MatMul, Softmax)."""

    TRT = "trt"
    PORTABLE = "portable"


class Precision(enum.Enum):
    """Compute precision carried by the graph (FP16 = FP16 with FP32 islands, see ``fp16.py``)."""

    FP32 = "fp32"
    FP16 = "fp16"


@dataclass(frozen=True)
class ExportConfig:
    """What to export. Sizes are LR ``(h, w)`` in pixels."""

    flavor: Flavor = Flavor.PORTABLE
    precision: Precision = Precision.FP32
    window: int | None = None  # T; None = the checkpoint's window
    opset: int = 20  # GridSample with 4-D inputs is opset 16+; 20 is well covered by ORT and TensorRT 10
    max_batch: int = 64  # upper bound of the dynamic N axis
    min_size: tuple[int, int] | None = None  # published LR size range; None = the checkpoint's
    max_size: tuple[int, int] | None = None
    rewrite_resize: bool = True  # Resize -> Pad/Conv/DepthToSpace (passes.resize_to_conv)

    def __post_init__(self) -> None:
        if not isinstance(self.flavor, Flavor):
            raise ExportError(f"flavor must be a Flavor, got {self.flavor!r}")
        if not isinstance(self.precision, Precision):
            raise ExportError(f"precision must be a Precision, got {self.precision!r}")
        if self.window is not None and self.window < 1:
            raise ExportError(f"window must be >= 1, got {self.window}")
        if self.max_batch < 1:
            raise ExportError(f"max_batch must be >= 1, got {self.max_batch}")
        if not 17 <= self.opset <= 21:
            raise ExportError(f"opset must be in 17..21 (GridSample 16+; TensorRT 10.0 parses up to 20, later "
                              f"10.x 21), got {self.opset}")
        for name in ("min_size", "max_size"):
            size = getattr(self, name)
            if size is not None and (len(size) != 2 or min(size) < 1):
                raise ExportError(f"{name} must be a positive (h, w), got {size}")
        if self.min_size and self.max_size and (
            self.min_size[0] > self.max_size[0] or self.min_size[1] > self.max_size[1]
        ):
            raise ExportError(f"min_size {self.min_size} exceeds max_size {self.max_size}")


def _check_window(gen_cfg, config: ExportConfig, window: int) -> None:
    """Before the export (tens of seconds): a window the graph cannot take, or the plugins' kernels cannot run
    (TensorRT would fail only when it builds the engine, its plugins' AOT step raising)."""
    if window < 2:
        raise ExportError(f"window must be >= 2 frames to export (torch.export cannot trace a 1-frame "
                          f"window's empty flow), got {window}")
    if config.flavor is Flavor.TRT:
        from vggx.plugins.launch import check_attention_limits

        for width in gen_cfg.attention_widths:
            try:
                check_attention_limits(window, width // gen_cfg.heads_for(width))
            except ValueError as exc:
                raise ExportError(f"the trt flavour's plugin cannot take this model: {exc} (decoder width "
                                  f"{width}, {gen_cfg.heads_for(width)} heads); export --flavor portable, or "
                                  f"a smaller --window") from None


def export_model(checkpoint: Checkpoint, precision: Precision) -> torch.nn.Module:
    """The eval-mode uint8 module that is exported for ``precision`` (FP32: ``UInt8Upscaler``)."""
    if precision is Precision.FP16:
        from .fp16 import half_upscaler

        return half_upscaler(checkpoint.generator)
    return UInt8Upscaler(checkpoint.generator).eval()


# The ONNX file's metadata prop holding the generator config it was exported from (GeneratorConfig.to_json, with the
# export's window and sizes): what a run of the file alone needs to know what its windows hold in memory
# (vggx.client.runners.host_bytes_per_pixel). Not a Triton parameter (write_model_repository leaves it out).
GENERATOR_CONFIG_KEY = "generator_config"


def _published_config(checkpoint: Checkpoint, config: ExportConfig) -> GeneratorConfig:
    gen_cfg = checkpoint.config
    return gen_cfg.replace(window=config.window or gen_cfg.window, min_size=config.min_size or gen_cfg.min_size,
                           max_size=config.max_size or gen_cfg.max_size)


def published_metadata(checkpoint: Checkpoint, config: ExportConfig = ExportConfig()) -> dict[str, str]:
    """The metadata an export of ``checkpoint`` with ``config`` publishes (its Triton config's ``parameters``, and
    the ONNX file's metadata props with :data:`GENERATOR_CONFIG_KEY`): the model's (``scale``, ``window``, sizes,
    ...) plus flavour, precision and provenance."""
    meta = model_metadata(_published_config(checkpoint, config), checkpoint.metadata.get("version", "1"))
    meta.update({
        "flavor": config.flavor.value,
        "precision": config.precision.value,
        "checkpoint_sha256": checkpoint.sha256,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
    })
    return meta


def export_onnx(checkpoint: Checkpoint, path: str | Path, config: ExportConfig = ExportConfig()) -> Path:
    """Export ``checkpoint`` to an ONNX file at ``path`` (written atomically) and return the path.

    The file carries the model metadata (``scale``, ``window``, ...) plus ``flavor``,
    ``precision`` and ``checkpoint_sha256`` as ONNX metadata props.

    Raises:
        ExportError: the exporter, a graph pass or the ONNX checker failed.
    """
    import onnx

    path = Path(path)
    gen_cfg = checkpoint.config
    window = config.window or gen_cfg.window
    _check_window(gen_cfg, config, window)
    proto = _trace(checkpoint, config, window)
    proto = _finish(proto, config)
    props = published_metadata(checkpoint, config)
    props[GENERATOR_CONFIG_KEY] = _published_config(checkpoint, config).to_json()
    onnx.helper.set_model_props(proto, props)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        onnx.save_model(proto, str(tmp))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {exc}") from exc
    log.info("wrote %s (%s, %s)", path, config.flavor.value, config.precision.value)
    return path


def _trace(checkpoint: Checkpoint, config: ExportConfig, window: int):
    from torch.export import Dim

    gen_cfg = checkpoint.config
    model = export_model(checkpoint, config.precision)
    (min_h, min_w), (max_h, max_w) = gen_cfg.min_size, gen_cfg.max_size
    example = torch.zeros(1, window, *_example_size(gen_cfg.min_size, gen_cfg.max_size, gen_cfg.size_multiple), 3,
                          dtype=torch.uint8)
    dynamic = {INPUT_NAME: {0: Dim("N", min=1, max=config.max_batch), 2: Dim("H", min=min_h, max=max_h),
                            3: Dim("W", min=min_w, max=max_w)}}
    table = None
    if config.flavor is Flavor.TRT:
        from vggx.plugins.onnx import custom_translation_table

        table = custom_translation_table()
    # portable: the plain compositions; trt: torch.ops.vggx.* (the plugin nodes)
    # The exporter logs a warning per torchvision op it cannot register when torchvision is absent
    # (vggx uses none): silence its logger for the duration, as its warnings are.
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    with warnings.catch_warnings(), reference_ops(config.flavor is Flavor.PORTABLE), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=config.opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes=dynamic, custom_translation_table=table,
                optimize=True, verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; report one
            log.debug("torch.onnx.export failed: %s", _ANSI.sub("", str(exc)))
            raise ExportError(f"ONNX export failed: {_exporter_failure(exc)}") from exc
        finally:
            exporter_log.setLevel(level)
    return program.model_proto


def _example_size(lo: tuple[int, int], hi: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The ``(h, w)`` of the trace example: inside the graph's ``[lo, hi]`` (torch.export refuses an example outside
    its own dynamic range), off the size grid so that the pad/crop path is what gets traced, and ``h != w`` so that
    the two dims are not taken for one. Near ``2m+3 x 2m+5`` (19x21 for m = 8), the smallest such size above ``lo``
    otherwise."""
    taken: list[int] = []
    for low, high, start in ((lo[0], hi[0], 2 * multiple + 3), (lo[1], hi[1], 2 * multiple + 5)):
        start = min(max(start, low), high)
        order = [*range(start, high + 1), *range(start - 1, low - 1, -1)]  # upwards first, then below the start
        fits = [v for v in order if v % multiple and v not in taken] or [v for v in order if v % multiple] or order
        taken.append(fits[0])
    return taken[0], taken[1]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SUMMARY = re.compile(r"^<class '(?:[\w.]+\.)?(\w+)'>: (.+)$", re.MULTILINE)


def _exporter_failure(exc: BaseException) -> str:
    """One line for a failure of ``torch.onnx.export``, whose messages are pages of advice with ANSI colour codes:
    the exception it wraps (the innermost cause), its class and the first line of its message, or the summary line
    the exporter writes of it. The whole text is logged at debug level (``--debug``)."""
    inner = exc
    while inner.__cause__ is not None and inner.__cause__ is not inner:
        inner = inner.__cause__
    text = _ANSI.sub("", str(inner)).strip()
    if inner is exc and (found := _SUMMARY.search(text)):
        return f"{found[1]}: {found[2].strip()}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(inner).__name__}: {first}" if first else type(inner).__name__


def _finish(proto, config: ExportConfig):
    """Shape inference, graph passes and the checker; returns the final ``ModelProto``."""
    import onnx

    from vggx.plugins.onnx import register_onnx_schemas

    from .passes import plugin_ops, resize_to_conv, uint8_io_through_casts

    register_onnx_schemas()  # plugin nodes pass the checker and shape inference
    proto.ir_version = min(proto.ir_version, _MAX_IR_VERSION)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, data_prop=True)
        if config.rewrite_resize:
            proto, n = resize_to_conv(proto)
            log.debug("rewrote %d Resize nodes into Pad/Conv/DepthToSpace", n)
        try:
            proto, n = uint8_io_through_casts(proto)
        except ValueError as exc:
            raise ExportError(f"the exported ONNX graph would not parse in TensorRT: {exc}") from None
        log.debug("%d Shape nodes read the cast of the uint8 input", n)
        del proto.graph.value_info[:]  # stale after the rewrite; infer again
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported ONNX graph is invalid: {exc}") from exc
    found = plugin_ops(proto)
    if config.flavor is Flavor.TRT and found != ["flow_warp", "temporal_attention"]:
        raise ExportError(f"the trt flavour must hold both vggx plugin nodes, found {found or 'none'}")
    if config.flavor is Flavor.PORTABLE and found:
        raise ExportError(f"the portable flavour must not hold vggx plugin nodes, found {found}")
    return proto
