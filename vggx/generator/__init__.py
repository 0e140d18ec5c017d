"""The VideoGigaGAN-style generator (PyTorch), its configs and the uint8 wrapper.

The configs (:mod:`.config`) need no PyTorch: the modules that do are imported as their names are first used, so
that reading a checkpoint's config (an in-process ONNX Runtime run) does not import PyTorch's second.
"""

from .config import CONFIGS, GeneratorConfig, get_config

__all__ = ["CONFIGS", "Generator", "GeneratorConfig", "UInt8Upscaler", "bicubic_upscale", "get_config"]

_LAZY = {"Generator": ".model", "bicubic_upscale": ".model", "UInt8Upscaler": ".wrapper"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
