"""ONNX Runtime custom ops for the ``vggx`` plugin nodes, on the CPU, via onnxruntime-extensions.

The nodes of :mod:`vggx.plugins.onnx` (domain ``vggx``) run here with the PyTorch references, so a
graph containing them can be executed and checked on a machine without TensorRT::

    sess = ort.InferenceSession(path, session_options(), providers=["CPUExecutionProvider"])

The ops take float32 tensors only: onnxruntime-extensions' Python custom-op bridge rejects float16
(0.15 aborts the process with "Type float16 not supported by python customops api"), so FP16
plugin graphs are checked through their FP32 twin. ``onnx_op`` registers ops process-wide, so
:func:`register_ort_ops` does it once; the extra node attributes ``plugin_namespace`` and
``plugin_version`` are ignored by ORT (TRT_NOTES.md §7).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = ["ORT_OP_TYPES", "register_ort_ops", "session_options"]

ORT_OP_TYPES = ("vggx::flow_warp", "vggx::temporal_attention")

_lock = threading.Lock()
_registered = False


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
            return _flow_warp(x, flow)

        @onnx_op(op_type="vggx::temporal_attention", inputs=[f32], outputs=[f32], attrs={"heads": D.dt_int64})
        def temporal_attention(qkv, heads):
            return _temporal_attention(qkv, heads)

        _registered = True


def session_options(options: Any = None) -> Any:
    """``onnxruntime.SessionOptions`` (``options`` or new) with the vggx custom-op library registered."""
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    register_ort_ops()
    options = options if options is not None else ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    return options
