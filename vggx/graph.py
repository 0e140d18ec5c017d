"""What names an exported vggx graph, shared by the exporter and the runners' cache of exports (no PyTorch: an
in-process ONNX Runtime run finds its cached export without importing the exporter)."""

__all__ = ["GRAPH_REVISION"]

# Raised whenever the exported graph changes for the same checkpoint (caches of exported files key on it).
# 2: uint8 in and out through Casts only (TensorRT refuses a Transpose or Reshape of uint8).
GRAPH_REVISION = 2
