"""Generator hyper-parameters as frozen dataclasses (``tiny`` for the CPU, ``base`` for GPUs)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from vggx.errors import ConfigError

__all__ = ["CONFIGS", "GeneratorConfig", "get_config"]


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that decides the generator's weights and shapes.

    Channel counts are per level; "LR" is the input resolution, the decoder ends at ``scale`` × LR.
    """

    name: str
    scale: int = 4  # output / input size; the HR decoder is built for 4 (two ×2 stages)
    window: int = 8  # T, frames per inference window (fixed per exported model)
    # Flow (SpyNet-style pyramid): levels coarse->fine at 1/2**(levels-1) ... 1 of LR.
    flow_levels: int = 4
    flow_channels: tuple[int, ...] = (24, 24, 16)  # hidden widths of each level's basic module
    # Bidirectional propagation (BasicVSR-style) at LR.
    prop_channels: int = 32
    prop_blocks: int = 2  # residual blocks per direction
    # U-Net: encoder widths at LR, LR/2, LR/4 ...; BlurPool between levels.
    enc_channels: tuple[int, ...] = (32, 48, 64)
    # Decoder widths above LR (×2, ×4, ...); the last ×2 to ``scale`` × LR is a sub-pixel RGB head.
    # This is the "past the input size" part of the asymmetric U-Net.
    hr_channels: tuple[int, ...] = (16,)
    attn_heads: int = 2  # temporal-attention heads (every decoder block; must divide its width)
    min_size: tuple[int, int] = (16, 16)  # LR H, W accepted by exported graphs
    max_size: tuple[int, int] = (1088, 1920)

    def __post_init__(self) -> None:
        # A config also comes from a checkpoint's metadata (JSON, hand-editable): check every type and range the
        # model needs here, so a bad value is one clear line rather than a traceback from deep in the layers.
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name must be a non-empty string, got {self.name!r}")
        for key in ("scale", "window", "flow_levels", "prop_channels", "attn_heads"):
            _check_int(key, getattr(self, key), 1)
        _check_int("prop_blocks", self.prop_blocks, 0)
        # lists (from JSON or a caller) become tuples: the config is frozen and hashed (cached costs)
        for key in ("flow_channels", "enc_channels", "hr_channels"):  # flow may be one conv; hr: checked by scale
            object.__setattr__(self, key, _check_widths(key, getattr(self, key), nonempty=key == "enc_channels"))
        # the decoder goes on past LR in len(hr_channels) ×2 blocks (at least one), then a ×2 sub-pixel RGB head
        if self.scale < 4 or self.scale & (self.scale - 1):
            raise ConfigError(f"scale must be a power of two >= 4 (the generator's ×2 HR decoder levels and ×2 RGB "
                              f"head), got {self.scale}")
        if self.scale != 2 ** (len(self.hr_channels) + 1):
            raise ConfigError(f"scale {self.scale} needs {self.scale.bit_length() - 2} HR decoder levels, "
                              f"got hr_channels={self.hr_channels}")
        for key in ("min_size", "max_size"):
            object.__setattr__(self, key, _check_size(key, getattr(self, key)))
        if any(lo > hi for lo, hi in zip(self.min_size, self.max_size, strict=True)):
            raise ConfigError(f"min_size {self.min_size} exceeds max_size {self.max_size}")
        for width in self.attention_widths:
            heads = self.heads_for(width)
            if width % heads:
                raise ConfigError(f"decoder width {width} is not divisible by {heads} attention heads")

    @property
    def attention_widths(self) -> tuple[int, ...]:
        """Channels of the decoder blocks, each with temporal attention (``heads_for`` of it heads)."""
        return (*self.enc_channels[:-1], *self.hr_channels)

    def heads_for(self, width: int) -> int:
        """Heads used at a decoder block of ``width`` channels (fewer when the width is small)."""
        return max(1, min(self.attn_heads, width // 8))

    @property
    def size_multiple(self) -> int:
        """LR H and W must be multiples of this (flow pyramid and U-Net downsampling)."""
        return max(2 ** (self.flow_levels - 1), 2 ** (len(self.enc_channels) - 1))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GeneratorConfig:
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ConfigError(f"invalid generator config: a JSON object expected, got {type(raw).__name__}")
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = set(raw) - fields
            if unknown:
                raise ConfigError(f"unknown generator config fields: {sorted(unknown)}")
            kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
            return cls(**kwargs)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid generator config: {exc}") from exc

    def replace(self, **changes) -> GeneratorConfig:
        return dataclasses.replace(self, **changes)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(key: str, value: object, least: int) -> None:
    if not _is_int(value):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if value < least:
        raise ConfigError(f"{key} must be >= {least}, got {value}")


def _check_widths(key: str, value: object, nonempty: bool) -> tuple[int, ...]:
    """``value`` as a tuple of channel counts (each >= 1), at least one if ``nonempty``."""
    if not isinstance(value, (tuple, list)) or not all(_is_int(c) and c >= 1 for c in value):
        raise ConfigError(f"{key} must be a list of channel counts >= 1, got {value!r}")
    if nonempty and not value:
        raise ConfigError(f"{key} must have at least one level, got {tuple(value)}")
    return tuple(value)


def _check_size(key: str, value: object) -> tuple[int, int]:
    """``value`` as an ``(h, w)`` pair of integers >= 1."""
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(_is_int(s) and s >= 1 for s in value):
        raise ConfigError(f"{key} must be an (h, w) pair of integers >= 1, got {value!r}")
    return tuple(value)


CONFIGS: dict[str, GeneratorConfig] = {
    # Trainable on a 2-core CPU; the shipped checkpoint.
    "tiny": GeneratorConfig(name="tiny"),
    # Paper-like widths (GigaGAN's upsampler is far wider still): a real GPU workload.
    "base": GeneratorConfig(
        name="base",
        flow_channels=(32, 64, 32, 16),
        prop_channels=64,
        prop_blocks=10,
        enc_channels=(128, 256, 512, 512),
        hr_channels=(96,),
        # 8 heads keep every head dim within the attention kernel's 64 (widths 96..512 -> d 12..64).
        attn_heads=8,
    ),
}


def get_config(name: str) -> GeneratorConfig:
    """Return the named config, or raise ``ConfigError`` naming the choices."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}") from None
