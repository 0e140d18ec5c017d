"""The VideoGigaGAN-style generator (PyTorch), its configs and the uint8 wrapper."""

from .config import CONFIGS, GeneratorConfig, get_config
from .model import Generator, bicubic_upscale
from .wrapper import UInt8Upscaler

__all__ = ["CONFIGS", "Generator", "GeneratorConfig", "UInt8Upscaler", "bicubic_upscale", "get_config"]
