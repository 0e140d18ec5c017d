"""A stand-in for the few TensorRT builder calls ``vggx.export.engine`` makes.

TensorRT cannot be installed here; what the tests that use this check is the file handling around a build (what
lands where, and when: a plan that fails its check, a timing cache of a failed export) and the messages, not an
engine. The tests of real engines are marked ``tensorrt`` and need TensorRT and a GPU.
"""

from __future__ import annotations

import types

PLAN = b"plan built by the stand-in"


def make(*, build_error: str | None = None, foreign_caches: tuple[bytes, ...] = ()) -> types.ModuleType:
    """A ``tensorrt`` module whose builder returns :data:`PLAN` (or logs ``build_error`` and returns None) and whose
    timing caches serialize as the blob they were made from plus ``b"|timed"``; ``set_timing_cache`` refuses the
    blobs of ``foreign_caches`` (made on another GPU) and any cache let in with ``ignore_mismatch``."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.9.0.34"

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self) -> None:
            pass

    class Cache:
        def __init__(self, blob: bytes) -> None:
            self.blob = bytes(blob)

        def serialize(self) -> bytes:
            return self.blob + b"|timed"

    class Config:
        def __init__(self) -> None:
            self.cache, self.profiles = None, []

        def set_memory_pool_limit(self, pool, size) -> None:
            pass

        def add_optimization_profile(self, profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob: bytes) -> Cache:
            return Cache(blob)

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            if ignore_mismatch or cache.blob in foreign_caches:
                return False
            self.cache = cache
            return True

        def get_timing_cache(self) -> Cache:
            return self.cache

    class Profile:
        def set_shape(self, name, lo, opt, hi) -> None:
            self.shape = (name, lo, opt, hi)

    class Builder:
        def __init__(self, logger) -> None:
            self.logger = logger

        def create_network(self, flags: int) -> object:
            return object()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network, config) -> bytes | None:
            if build_error is not None:
                self.logger.log(ILogger.ERROR, build_error)
                return None
            return PLAN

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger) -> None:
            pass

        def parse(self, blob: bytes) -> bool:
            return True

    trt.ILogger, trt.Builder, trt.OnnxParser = ILogger, Builder, OnnxParser
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    return trt
