"""Parity of an exported graph with PyTorch: ONNX Runtime vs ``UInt8Upscaler`` on the same frames.

Errors are in uint8 levels of the output frames. A graph passes when at least ``fraction`` of the
output values lie within ``±levels`` of PyTorch's (float32, reference ops):

- FP32 graphs: ±1 level on >= 99.9 % (rounding of values that sit on a .5 boundary moves them by
  one level; a real bug moves many by more);
- FP16 graphs: ±2 levels on >= 99 % (the project's FP16 goal, issue 5).

The ``trt`` flavour runs through the ONNX Runtime custom ops of :mod:`vggx.plugins.onnxruntime`
(the PyTorch references); its FP16 form through :func:`vggx.export.passes.float32_plugin_twin`,
since those ops take float32 only.

Frames: random noise (the worst case for the flow and the rounding) at sizes that are and are not
multiples of ``size_multiple``, and a "real" clip — a photograph panned across the window with
sub-pixel motion (scikit-image's ``astronaut`` when installed, else a synthetic scene).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggx.checkpoint import Checkpoint
from vggx.errors import ExportError, VerificationError

__all__ = [
    "FP16_TOLERANCE",
    "FP32_TOLERANCE",
    "Case",
    "ParityResult",
    "Tolerance",
    "compare_frames",
    "ort_session",
    "parity_cases",
    "reference_upscale",
    "verify_onnx",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tolerance:
    """``fraction`` of output values must be within ``±levels`` uint8 levels."""

    levels: int  # uint8 levels
    fraction: float  # in (0, 1]

    def __post_init__(self) -> None:
        if self.levels < 0:
            raise ValueError(f"tolerance levels must be >= 0, got {self.levels}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"tolerance fraction must be in (0, 1], got {self.fraction}")

    def __str__(self) -> str:
        return f"±{self.levels} on >= {self.fraction:.2%}"


FP32_TOLERANCE = Tolerance(levels=1, fraction=0.999)
FP16_TOLERANCE = Tolerance(levels=2, fraction=0.99)


@dataclass(frozen=True)
class Case:
    """Named input frames: uint8 ``(n, t, h, w, 3)``."""

    name: str
    frames: np.ndarray


@dataclass(frozen=True)
class ParityResult:
    """How far one case's exported output is from PyTorch's."""

    case: str
    shape: tuple[int, ...]  # input shape (n, t, h, w, 3)
    max_abs: int  # uint8 levels
    within: float  # fraction of values within ±tolerance.levels
    within_1: float  # fraction within ±1 level (reported for every graph)
    tolerance: Tolerance

    @property
    def passed(self) -> bool:
        return self.within >= self.tolerance.fraction

    def __str__(self) -> str:
        n, t, h, w, _ = self.shape
        return (f"{self.case} [{n}x{t}x{h}x{w}]: max |diff| {self.max_abs} levels, "
                f"{self.within:.4%} within ±{self.tolerance.levels} (need {self.tolerance.fraction:.2%}), "
                f"{self.within_1:.4%} within ±1")


def compare_frames(name: str, frames: np.ndarray, got: np.ndarray, want: np.ndarray,
                   tolerance: Tolerance) -> ParityResult:
    """Compare two uint8 outputs of the same shape (``got`` exported, ``want`` PyTorch)."""
    if got.shape != want.shape:
        raise VerificationError(f"{name}: output shape {got.shape}, PyTorch gives {want.shape}")
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    return ParityResult(
        case=name,
        shape=tuple(frames.shape),
        max_abs=int(diff.max(initial=0)),
        within=float(np.mean(diff <= tolerance.levels)),
        within_1=float(np.mean(diff <= 1)),
        tolerance=tolerance,
    )


def _real_image() -> np.ndarray:
    try:
        from skimage import data

        return data.astronaut()  # (512, 512, 3) uint8
    except ImportError:  # scikit-image is the `train` extra; a synthetic scene does the job too
        y, x = np.mgrid[0:512, 0:512].astype(np.float32) / 512
        img = np.stack([np.sin(9 * x + 3 * y), np.cos(7 * y - 2 * x), np.sin(20 * x * y)], -1)
        img += (((x * 16).astype(int) + (y * 16).astype(int)) % 2)[..., None] * 0.8
        return np.clip((img + 1.5) * 70, 0, 255).astype(np.uint8)


def _panned_clip(window: int, size: tuple[int, int], factor: int = 4) -> np.ndarray:
    """``window`` frames of a photograph moving 1 HR pixel per frame = 1/``factor`` LR pixel."""
    img = _real_image().astype(np.float32)
    h, w = size
    frames = []
    for t in range(window):
        crop = img[t : t + h * factor, 2 * t : 2 * t + w * factor]  # diagonal pan
        lr = crop.reshape(h, factor, w, factor, 3).mean(axis=(1, 3))  # box downscale (area)
        frames.append(lr)
    return np.clip(np.round(np.stack(frames)), 0, 255).astype(np.uint8)[None]


def parity_cases(window: int, size_multiple: int, *, seed: int = 0) -> list[Case]:
    """Random frames at sizes off and on the ``size_multiple`` grid, batch 1 and 2, and a real clip."""
    rng = np.random.default_rng(seed)
    m = size_multiple
    sizes = [(1, 2 * m + 5, 3 * m + 2), (2, 2 * m, 3 * m)]
    cases = [
        Case(f"random N={n}", rng.integers(0, 256, (n, window, h, w, 3), dtype=np.uint8)) for n, h, w in sizes
    ]
    cases.append(Case("real (panned photograph)", _panned_clip(window, (5 * m - 3, 7 * m + 1))))
    return cases


def reference_upscale(checkpoint: Checkpoint, frames: np.ndarray) -> np.ndarray:
    """PyTorch ``UInt8Upscaler`` (float32, reference ops) on uint8 ``(n, t, h, w, 3)`` frames."""
    import torch

    from vggx.generator import UInt8Upscaler
    from vggx.plugins import reference_ops

    model = UInt8Upscaler(checkpoint.generator).eval()
    with torch.no_grad(), reference_ops():
        return model(torch.from_numpy(frames)).numpy()


def ort_session(model: str | Path | Any, *, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session of ``model`` (a path or a ``ModelProto``) that can run it.

    Graphs with ``vggx`` plugin nodes get the custom ops (:mod:`vggx.plugins.onnxruntime`); FP16
    plugin nodes are wrapped in float32 casts first. The caller owns the session.
    """
    import onnx
    import onnxruntime as ort

    from .passes import float32_plugin_twin, plugin_ops

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the CPU provider's FP16 cast insertions are expected, not news
    if plugin_ops(proto):
        from vggx.plugins.onnx import infer_plugin_shapes
        from vggx.plugins.onnxruntime import session_options

        options = session_options(options)
        proto = float32_plugin_twin(infer_plugin_shapes(proto, strict=False))
    try:
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ExportError(f"ONNX Runtime cannot load the graph: {exc}") from exc
    return _CheckedSession(session) if plugin_ops(proto) else session


class _CheckedSession:
    """An ONNX Runtime session whose ``run`` raises ``ExportError`` for what a vggx custom op raised inside it
    (which cannot cross ONNX Runtime: :func:`vggx.plugins.onnxruntime.take_failure`)."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def run(self, *args: Any, **kwargs: Any) -> Any:
        from vggx.plugins.onnxruntime import take_failure

        take_failure()
        out = self._session.run(*args, **kwargs)
        if (exc := take_failure()) is not None:
            raise ExportError(f"a vggx op failed inside ONNX Runtime: {exc}") from exc
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def verify_onnx(
    path: str | Path,
    checkpoint: Checkpoint,
    *,
    tolerance: Tolerance | None = None,
    cases: list[Case] | None = None,
    threads: int = 1,
    raise_on_failure: bool = True,
) -> list[ParityResult]:
    """Run the exported graph at ``path`` with ONNX Runtime and compare it with PyTorch.

    Args:
        path: an ONNX file written by :func:`vggx.export.export_onnx`.
        checkpoint: the checkpoint it was exported from (the float32 PyTorch reference).
        tolerance: default from the graph's ``precision`` metadata (FP32 or FP16 tolerance).
        cases: input frames; default :func:`parity_cases` at the graph's window.
        threads: ONNX Runtime and PyTorch CPU threads.

    Returns:
        One :class:`ParityResult` per case.

    Raises:
        VerificationError: a case is beyond tolerance (the message names case, max diff, share).
    """
    import onnx
    import torch

    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    if tolerance is None:
        tolerance = FP16_TOLERANCE if meta.get("precision") == "fp16" else FP32_TOLERANCE
    window = int(meta.get("window", checkpoint.config.window))
    if cases is None:
        cases = parity_cases(window, checkpoint.config.size_multiple)
    session = ort_session(proto, threads=threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    results = []
    try:
        for case in cases:
            got = session.run(None, {session.get_inputs()[0].name: case.frames})[0]
            want = reference_upscale(checkpoint, case.frames)
            result = compare_frames(case.name, case.frames, got, want, tolerance)
            log.info("%s", result)
            results.append(result)
    finally:
        torch.set_num_threads(previous)
    failed = [r for r in results if not r.passed]
    if failed and raise_on_failure:
        raise VerificationError(
            f"{Path(path).name} does not match PyTorch ({tolerance}): " + "; ".join(str(r) for r in failed)
        )
    return results
