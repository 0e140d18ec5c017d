"""PyTorch -> ONNX export, ONNX checks, TensorRT engine build and the model-repository writer."""

from .onnx import ExportConfig, Flavor, Precision, export_onnx
from .verify import FP16_TOLERANCE, FP32_TOLERANCE, ParityResult, Tolerance, verify_onnx

__all__ = [
    "FP16_TOLERANCE",
    "FP32_TOLERANCE",
    "ExportConfig",
    "Flavor",
    "ParityResult",
    "Precision",
    "Tolerance",
    "export_onnx",
    "verify_onnx",
]
