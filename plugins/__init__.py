"""The two vggx custom ops: references, kernels, torch.library ops, ONNX and TensorRT glue."""

from .flow_warp import flow_warp_reference, launch_flow_warp
from .ops import flow_warp, reference_ops, temporal_attention, using_reference_ops
from .temporal_attention import launch_temporal_attention, temporal_attention_reference

__all__ = [
    "flow_warp",
    "flow_warp_reference",
    "launch_flow_warp",
    "launch_temporal_attention",
    "reference_ops",
    "temporal_attention",
    "temporal_attention_reference",
    "using_reference_ops",
]
