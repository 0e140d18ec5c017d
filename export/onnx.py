"""PyTorch -> ONNX: the uint8-in/uint8-out graph of DESIGN.md (pre-processing + generator + post).

Input ``lr`` UINT8 ``[N, T, H, W, 3]``, output ``sr`` UINT8 ``[N, T, s·H, s·W, 3]``; T fixed (the
window), N, H, W dynamic; the graph pads to ``size_multiple`` and crops back.
"""

from __future__ import annotations

import enum
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from vggx.checkpoint import Checkpoint, model_metadata
from vggx.errors import ExportError
from vggx.generator import UInt8Upscaler
from vggx.plugins import reference_ops

__all__ = ["ExportConfig", "Flavor", "export_onnx"]

log = logging.getLogger(__name__)

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"


class Flavor(enum.Enum):
    """``trt``: the two plugin nodes; ``portable``: standard ONNX ops only (GridSample, MatMul, Softmax)."""

    TRT = "trt"
    PORTABLE = "portable"


@dataclass(frozen=True)
class ExportConfig:
    flavor: Flavor = Flavor.PORTABLE
    window: int | None = None  # T; None = the checkpoint's window
    opset: int = 20  # GridSample with 4-D inputs is opset 16+; 20 is well covered by ORT and TensorRT 10
    max_batch: int = 64  # upper bound of the dynamic N axis

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 1:
            raise ExportError(f"window must be >= 1, got {self.window}")
        if self.max_batch < 1:
            raise ExportError(f"max_batch must be >= 1, got {self.max_batch}")


def export_onnx(checkpoint: Checkpoint, path: str | Path, config: ExportConfig = ExportConfig()) -> Path:
    """Export ``checkpoint`` to an ONNX file at ``path`` (written atomically) and return the path.

    The file carries the model metadata (``scale``, ``window``, ...) as ONNX metadata props.
    """
    import onnx
    from torch.export import Dim

    if config.flavor is not Flavor.PORTABLE:
        raise ExportError(f"flavor {config.flavor.value!r} is not supported by this exporter yet")
    path = Path(path)
    gen_cfg = checkpoint.config
    window = config.window or gen_cfg.window
    model = UInt8Upscaler(checkpoint.generator).eval()
    m = gen_cfg.size_multiple
    example = torch.zeros(1, window, 2 * m + 3, 2 * m + 5, 3, dtype=torch.uint8)
    (min_h, min_w), (max_h, max_w) = gen_cfg.min_size, gen_cfg.max_size
    dynamic = {INPUT_NAME: {0: Dim("N", min=1, max=config.max_batch), 2: Dim("H", min=min_h, max=max_h),
                            3: Dim("W", min=min_w, max=max_w)}}
    with warnings.catch_warnings(), reference_ops(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=config.opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes=dynamic, verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; report one
            raise ExportError(f"ONNX export failed: {exc}") from exc
    proto = program.model_proto
    meta = model_metadata(gen_cfg.replace(window=window), checkpoint.metadata.get("version", "1"))
    meta.update({"flavor": config.flavor.value, "checkpoint_sha256": checkpoint.sha256})
    onnx.helper.set_model_props(proto, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(proto, str(tmp))
    tmp.replace(path)
    log.info("wrote %s", path)
    return path
