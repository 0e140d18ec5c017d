"""Video I/O with PyAV (FFmpeg): decode any input to RGB frames (and alpha), encode them with the audio copied."""

from .crop import Crop, find_picture
from .decode import DecodedFrame, VideoInfo, VideoReader, display_source, is_url, open_video
from .encode import EncodeConfig, SegmentStore, VideoWriter, check_encoder, check_frame_encodable, check_output_path

__all__ = ["Crop", "DecodedFrame", "EncodeConfig", "SegmentStore", "VideoInfo", "VideoReader", "VideoWriter",
           "check_encoder", "check_frame_encodable", "check_output_path", "display_source", "find_picture", "is_url",
           "open_video"]
