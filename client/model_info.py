"""The model facts a client needs, read from the model itself (ONNX metadata props, Triton parameters,
checkpoint metadata) — never hard-coded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vggx.errors import ConfigError, InferenceError
from vggx.shapes import parse_size

__all__ = ["ModelInfo"]


@dataclass(frozen=True)
class ModelInfo:
    """Window, scale and size profile of a model (LR pixels)."""

    window: int  # T, frames per request
    scale: int  # output size / input size
    size_multiple: int  # the graph pads H, W to this internally; tiles start on multiples of it
    min_size: tuple[int, int]  # smallest (h, w) the model accepts
    max_size: tuple[int, int]  # largest (h, w) the model accepts; larger frames are tiled
    name: str = "vggx"
    version: str = "1"

    REQUIRED: ClassVar[tuple[str, ...]] = ("window", "scale", "size_multiple", "min_size", "max_size")

    def __post_init__(self) -> None:
        if self.window < 1 or self.scale < 1 or self.size_multiple < 1:
            raise InferenceError(f"model metadata out of range: window={self.window}, scale={self.scale}, "
                                 f"size_multiple={self.size_multiple}")
        if any(a > b for a, b in zip(self.min_size, self.max_size, strict=True)):
            raise InferenceError(f"model metadata: min_size {self.min_size} exceeds max_size {self.max_size}")

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str) -> ModelInfo:
        """Parse the string metadata every backend publishes; ``source`` names it in errors.

        Raises:
            InferenceError: a key is missing or malformed (the model was not exported by vggx).
        """
        missing = [k for k in cls.REQUIRED if k not in meta]
        if missing:
            raise InferenceError(f"{source} lacks the vggx model metadata {', '.join(missing)} "
                                 f"(re-export it with `vggx export`)")
        try:
            return cls(
                window=int(meta["window"]), scale=int(meta["scale"]),
                size_multiple=int(meta["size_multiple"]),
                min_size=parse_size(meta["min_size"]), max_size=parse_size(meta["max_size"]),
                name=meta.get("name", "vggx"), version=str(meta.get("version", "1")),
            )
        except (ValueError, ConfigError) as exc:
            raise InferenceError(f"{source} has malformed vggx metadata ({exc})") from None
