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
        if self.scale != 2 ** (len(self.hr_channels) + 1):
            raise ConfigError(f"scale {self.scale} needs {self.scale.bit_length() - 2} HR decoder levels, "
                              f"got hr_channels={self.hr_channels}")
        if self.window < 1:
            raise ConfigError(f"window must be >= 1, got {self.window}")
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
