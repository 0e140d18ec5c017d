"""GigaGAN-style asymmetric U-Net upsampler with BlurPool, HF shuttle and temporal attention."""

from __future__ import annotations

import torch
from torch import nn

from .config import GeneratorConfig
from .layers import BlurPool, HighFrequencyShuttle, ResBlock, TemporalAttention

__all__ = ["UNetUpsampler"]


def _conv_act(c_in: int, c_out: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.LeakyReLU(0.1, True))


class _DecoderBlock(nn.Module):
    """×2 up (conv + pixel shuffle), merge the HF skip if any, residual conv, temporal attention."""

    def __init__(self, c_in: int, c_out: int, skip: int, heads: int) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.Conv2d(c_in, 4 * c_out, 3, padding=1), nn.PixelShuffle(2),
                                nn.LeakyReLU(0.1, True))
        self.merge = _conv_act(c_out + skip, c_out) if skip else None
        self.res = ResBlock(c_out)
        self.attn = TemporalAttention(c_out, heads)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, t: int) -> torch.Tensor:
        x = self.up(x)
        if self.merge is not None:
            x = self.merge(torch.cat((x, skip), dim=1))
        return self.attn(self.res(x), t)


class UNetUpsampler(nn.Module):
    """``(n*t, c_prop, h, w)`` -> RGB residual ``(n*t, 3, scale*h, scale*w)``.

    Encoder: levels at LR, LR/2, ... (``enc_channels``), each a residual block; between levels the
    high-frequency shuttle sends ``f - lowpass(f)`` to the decoder and BlurPool carries the low-pass
    down. Decoder: back up to LR, then on past it (``hr_channels``), attention along T in every
    block; a sub-pixel conv head makes the last ×2 to ``scale`` × LR in RGB.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        enc, hr = cfg.enc_channels, cfg.hr_channels
        self.stem = _conv_act(cfg.prop_channels, enc[0])
        self.enc_blocks = nn.ModuleList(ResBlock(c) for c in enc)
        self.shuttles = nn.ModuleList(HighFrequencyShuttle(c) for c in enc[:-1])
        self.pools = nn.ModuleList(BlurPool(c) for c in enc[:-1])
        self.downs = nn.ModuleList(_conv_act(enc[i], enc[i + 1]) for i in range(len(enc) - 1))
        self.dec_blocks = nn.ModuleList(
            _DecoderBlock(enc[i + 1], enc[i], enc[i], cfg.heads_for(enc[i]))
            for i in reversed(range(len(enc) - 1))
        )
        widths = (enc[0], *hr)
        self.hr_blocks = nn.ModuleList(
            _DecoderBlock(widths[i], widths[i + 1], 0, cfg.heads_for(widths[i + 1])) for i in range(len(hr))
        )
        conv = nn.Conv2d(hr[-1], 3 * 4, 3, padding=1)
        nn.init.zeros_(conv.bias)
        conv.weight.data.mul_(0.1)
        self.to_rgb = nn.Sequential(conv, nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        f = self.stem(x)
        skips: list[torch.Tensor] = []
        for i, block in enumerate(self.enc_blocks):
            f = block(f)
            if i < len(self.shuttles):
                _, hf = self.shuttles[i](f)
                skips.append(hf)
                f = self.downs[i](self.pools[i](f))
        for block, skip in zip(self.dec_blocks, reversed(skips), strict=True):
            f = block(f, skip, t)
        for block in self.hr_blocks:
            f = block(f, None, t)
        return self.to_rgb(f)
