"""PyTorch -> ONNX export, ONNX checks, TensorRT engine build and the model-repository writer."""

from .onnx import ExportConfig, Flavor, export_onnx

__all__ = ["ExportConfig", "Flavor", "export_onnx"]
