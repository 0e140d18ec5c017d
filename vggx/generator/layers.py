"""Building blocks of the generator: residual convs, BlurPool, the high-frequency shuttle, attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vggx.plugins import temporal_attention
from vggx.plugins.flow_warp import is_channels_last

__all__ = ["BlurPool", "ChannelNorm", "HighFrequencyShuttle", "LowPass", "ResBlock", "TemporalAttention"]

# Binomial 5-tap filter: unit DC gain, zero response at Nyquist, the usual anti-aliasing choice.
_BINOMIAL5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


class ResBlock(nn.Module):
    """conv3x3 - LeakyReLU - conv3x3 + identity; the second conv starts at zero (block = identity)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = _act()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class LowPass(nn.Module):
    """Depthwise 5×5 binomial low-pass, same size, reflect padding; DC gain exactly 1."""

    def __init__(self, channels: int, stride: int = 1) -> None:
        super().__init__()
        taps = torch.tensor(_BINOMIAL5)
        kernel = torch.outer(taps, taps)
        kernel = kernel / kernel.sum()
        self.register_buffer("kernel", kernel.expand(channels, 1, 5, 5).contiguous(), persistent=False)
        self.channels = channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="reflect")
        return F.conv2d(x, self.kernel.to(x.dtype), stride=self.stride, groups=self.channels)


class BlurPool(LowPass):
    """Anti-aliased ×2 downsampling (Zhang 2019): low-pass first, then keep every second pixel.

    Equal to ``LowPass(x)[..., ::2, ::2]``; a bare strided conv would alias instead.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, stride=2)


class HighFrequencyShuttle(nn.Module):
    """Split encoder features into ``lf = lowpass(f)`` and ``hf = f - lf`` (VideoGigaGAN §3.3).

    ``lf`` continues down the encoder (subsampled: that is the BlurPool), ``hf`` skips to the decoder,
    so fine detail reaches the output without passing through the temporally smoothed bottleneck.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.lowpass = LowPass(channels)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lf = self.lowpass(f)
        return lf, f - lf


class ChannelNorm(nn.Module):
    """LayerNorm over channels at each pixel, computed in float32 (an FP32 island in FP16 graphs).

    Per pixel rather than GroupNorm over the image, so a tile gives the same result as the whole frame.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda and is_channels_last(x):
            return self.forward_nhwc(x)
        x32 = x.float()
        mean = x32.mean(dim=1, keepdim=True)
        var = (x32 - mean).pow(2).mean(dim=1, keepdim=True)
        y = (x32 - mean) * torch.rsqrt(var + self.eps)
        return (y * self.weight.float() + self.bias.float()).to(x.dtype)

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """The same for a channels-last ``x`` (the CUDA fast path): channels are innermost in memory, so
        PyTorch's fused ``layer_norm`` applies to the NHWC view in one kernel, with float32 statistics
        and affine whatever ``x``'s dtype, instead of eight float32 passes over the tensor."""
        c = x.shape[1]
        w, b = self.weight.reshape(c).to(x.dtype), self.bias.reshape(c).to(x.dtype)
        return F.layer_norm(x.permute(0, 2, 3, 1), (c,), w, b, self.eps).permute(0, 3, 1, 2)


class TemporalAttention(nn.Module):
    """Pre-norm self-attention along T at every pixel, residual, output projection starting at zero.

    Works on ``(n*t, c, h, w)`` features; ``t`` is passed in because the batch folds N and T.
    """

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{heads} heads do not divide {channels} channels")
        self.heads = heads
        self.norm = ChannelNorm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        nt, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(nt // t, t, 3 * c, h, w)
        y = temporal_attention(qkv, self.heads).reshape(nt, c, h, w)
        return x + self.proj(y)
