"""The two vggx custom ops: references, kernels, torch.library ops, ONNX and TensorRT glue."""

from .flow_warp import flow_warp_reference
from .ops import flow_warp, reference_ops, temporal_attention, using_reference_ops
from .temporal_attention import temporal_attention_reference

__all__ = [
    "flow_warp",
    "flow_warp_reference",
    "reference_ops",
    "temporal_attention",
    "temporal_attention_reference",
    "using_reference_ops",
]
