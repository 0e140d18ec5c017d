"""ONNX Runtime custom ops for the ``vggx`` plugin nodes, on the CPU, via onnxruntime-extensions.

The nodes of :mod:`vggx.plugins.onnx` (domain ``vggx``) run here with the PyTorch references, so a
graph containing them can be executed and checked on a machine without TensorRT::

    sess = ort.InferenceSession(path, session_options(), providers=["CPUExecutionProvider"])

The ops take float32 tensors only: onnxruntime-extensions' Python custom-op bridge rejects float16
(0.15 aborts the process with "Type float16 not supported by python customops api"), so FP16
plugin graphs are checked through their FP32 twin. ``onnx_op`` registers ops process-wide, so
:func:`register_ort_ops` does it once; the extra node attributes ``plugin_namespace`` and
``plugin_version`` are ignored by ORT (TRT_NOTES.md §7).

An exception cannot leave a Python custom op: the bridge calls ``std::terminate`` and the process aborts (exit 134,
no message to catch). The ops keep what they raised (a flow of another size, ``heads`` that does not divide C) and
answer NaN; :func:`take_failure` hands it to the caller of ``session.run``, as ``vggx.export.verify.ort_session``'s
sessions do.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = ["ORT_OP_TYPES", "register_ort_ops", "session_options", "take_failure"]

ORT_OP_TYPES = ("vggx::flow_warp", "vggx::temporal_attention")

_lock = threading.Lock()
_registered = False
_failures: list[Exception] = []  # what the ops raised since take_failure() last looked


def take_failure() -> Exception | None:
    """The first error a vggx op raised inside ONNX Runtime since the last call (None: none), and forget them."""
    with _lock:
        first = _failures[0] if _failures else None
        _failures.clear()
    return first


def _guarded(compute, out_shape) -> np.ndarray:
    """``compute()``, or NaN of ``out_shape()`` with the error kept for :func:`take_failure`."""
    try:
        return compute()
    except Exception as exc:
        with _lock:
            _failures.append(exc)
        try:
            shape = out_shape()
        except Exception:  # an input of a rank the op cannot take: any shape, the run fails anyway
            shape = (0,)
        return np.full(shape, np.nan, np.float32)


def _flow_warp(x: np.ndarray, flow: np.ndarray) -> np.ndarray:
    import torch

    from .flow_warp import flow_warp_reference

    with torch.no_grad():
        out = flow_warp_reference(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(flow).float())
    return out.numpy()


def _temporal_attention(qkv: np.ndarray, heads: int) -> np.ndarray:
    import torch

    from .temporal_attention import temporal_attention_reference

    with torch.no_grad():
        out = temporal_attention_reference(torch.from_numpy(np.ascontiguousarray(qkv)), int(heads))
    return out.numpy()


def register_ort_ops() -> None:
    """Register ``vggx::flow_warp`` and ``vggx::temporal_attention`` with onnxruntime-extensions (once)."""
    global _registered
    with _lock:
        if _registered:
            return
        from onnxruntime_extensions import PyCustomOpDef as D
        from onnxruntime_extensions import onnx_op

        f32 = D.dt_float

        @onnx_op(op_type="vggx::flow_warp", inputs=[f32, f32], outputs=[f32])
        def flow_warp(x, flow):
            return _guarded(lambda: _flow_warp(x, flow), lambda: x.shape)

        @onnx_op(op_type="vggx::temporal_attention", inputs=[f32], outputs=[f32], attrs={"heads": D.dt_int64})
        def temporal_attention(qkv, heads):
            n, t, c3, h, w = qkv.shape if qkv.ndim == 5 else (0,) * 5
            return _guarded(lambda: _temporal_attention(qkv, heads), lambda: (n, t, c3 // 3, h, w))

        _registered = True


def session_options(options: Any = None) -> Any:
    """``onnxruntime.SessionOptions`` (``options`` or new) with the vggx custom-op library registered."""
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    register_ort_ops()
    options = options if options is not None else ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    return options
