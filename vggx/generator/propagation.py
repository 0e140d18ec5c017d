"""Bidirectional flow-guided propagation (BasicVSR, Chan et al. 2021) over a window of T frames."""

from __future__ import annotations

import torch
from torch import nn

from vggx.plugins import flow_warp
from vggx.plugins.flow_warp import is_channels_last

from .layers import ResBlock

__all__ = ["BidirectionalPropagation"]


class _Branch(nn.Module):
    """One direction: fuse the warped hidden state with the frame's features."""

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1), nn.LeakyReLU(0.1, True))
        self.blocks = nn.Sequential(*(ResBlock(channels) for _ in range(blocks)))

    def forward(self, feat: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.fuse(torch.cat((feat, hidden), dim=1)))


class BidirectionalPropagation(nn.Module):
    """Features ``(n, t, 3, h, w)`` + flows -> propagated features ``(n*t, c, h, w)``.

    The backward branch runs t = T-1 .. 0, warping the state of t+1 with ``flow_bwd[:, t]``; the
    forward branch runs t = 0 .. T-1 warping the state of t-1 with ``flow_fwd[:, t-1]``. The two
    branches have the same structure, so with shared weights, identical frames and zero flow the
    states agree (tested). T is fixed per exported graph, so the loops unroll.
    """

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.channels = channels
        self.extract = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.LeakyReLU(0.1, True), ResBlock(channels)
        )
        self.backward_branch = _Branch(channels, blocks)
        self.forward_branch = _Branch(channels, blocks)
        self.fuse = nn.Sequential(nn.Conv2d(3 * channels, channels, 1), nn.LeakyReLU(0.1, True))

    def states(
        self, lr: torch.Tensor, flow_fwd: torch.Tensor, flow_bwd: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Return per-frame features and the forward/backward hidden states (lists of T tensors)."""
        n, t, _, h, w = lr.shape
        feats = self.extract(lr.reshape(n * t, 3, h, w)).reshape(n, t, self.channels, h, w)
        hidden = self._zeros_like_frame(feats)
        backward: list[torch.Tensor] = [hidden] * t
        for i in range(t - 1, -1, -1):
            if i < t - 1:
                hidden = flow_warp(hidden, flow_bwd[:, i])
            hidden = self.backward_branch(feats[:, i], hidden)
            backward[i] = hidden
        hidden = self._zeros_like_frame(feats)
        forward: list[torch.Tensor] = []
        for i in range(t):
            if i > 0:
                hidden = flow_warp(hidden, flow_fwd[:, i - 1])
            hidden = self.forward_branch(feats[:, i], hidden)
            forward.append(hidden)
        return feats, forward, backward

    @staticmethod
    def _zeros_like_frame(feats: torch.Tensor) -> torch.Tensor:
        """Initial hidden state: zeros shaped as one frame of ``feats``, in its memory layout on the CUDA
        fast path (channels_last there, so no layout copies follow). Strides are not inspected while
        exporting or compiling: that would guard the dynamic batch size."""
        n, _, c, h, w = feats.shape
        zeros = feats.new_zeros(n, c, h, w)
        if feats.is_cuda and not torch.compiler.is_compiling() and is_channels_last(feats[:, 0]):
            zeros = zeros.contiguous(memory_format=torch.channels_last)
        return zeros

    def forward(self, lr: torch.Tensor, flow_fwd: torch.Tensor, flow_bwd: torch.Tensor) -> torch.Tensor:
        n, t, _, h, w = lr.shape
        feats, fwd, bwd = self.states(lr, flow_fwd, flow_bwd)
        fused = torch.cat((feats, torch.stack(fwd, 1), torch.stack(bwd, 1)), dim=2)
        return self.fuse(fused.reshape(n * t, 3 * self.channels, h, w))
