"""Clients of the vggx model: in-process runners, the Triton client, windowing/tiling and ``upscale``."""

from .model_info import ModelInfo
from .pipeline import (
    VIDEO_SUFFIXES,
    Cancelled,
    UpscaleConfig,
    UpscaleProgress,
    UpscaleResult,
    output_frame_size,
    plan_folder,
    upscale,
    upscale_clip,
    upscale_frames,
    upscale_many,
)
from .runners import Backend, BackendConfig, Runner, TritonProtocol, open_runner

__all__ = [
    "VIDEO_SUFFIXES",
    "Backend",
    "BackendConfig",
    "Cancelled",
    "ModelInfo",
    "Runner",
    "TritonProtocol",
    "UpscaleConfig",
    "UpscaleProgress",
    "UpscaleResult",
    "open_runner",
    "output_frame_size",
    "plan_folder",
    "upscale",
    "upscale_clip",
    "upscale_frames",
    "upscale_many",
]
