"""Training objectives: Charbonnier reconstruction, flow supervision, hinge GAN with feature matching."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Discriminator", "charbonnier", "feature_matching", "flow_loss", "hinge_d_loss", "hinge_g_loss"]


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of ``sqrt((pred - target)² + eps²)`` (a smooth L1, as in BasicVSR and VideoGigaGAN)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def flow_loss(pred: torch.Tensor, target: torch.Tensor, border: int = 2) -> torch.Tensor:
    """L1 between flows (LR pixels), ignoring a ``border`` where content enters or leaves the frame."""
    if border:
        pred = pred[..., border:-border, border:-border]
        target = target[..., border:-border, border:-border]
    return (pred - target).abs().mean()


class Discriminator(nn.Module):
    """Spatio-temporal patch discriminator on ``(n, t, 3, H, W)`` clips (3D convs over t, y, x).

    Returns the patch logits and the intermediate features (for the feature-matching loss, our
    stand-in for LPIPS, whose weights cannot be downloaded here).
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        layers = []
        c_in = 3
        for c in channels:
            layers.append(nn.Sequential(
                nn.utils.parametrizations.spectral_norm(nn.Conv3d(c_in, c, (3, 4, 4), (1, 2, 2), (1, 1, 1))),
                nn.LeakyReLU(0.2, True),
            ))
            c_in = c
        self.features = nn.ModuleList(layers)
        self.head = nn.utils.parametrizations.spectral_norm(nn.Conv3d(c_in, 1, 3, padding=1))

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = clip.transpose(1, 2) * 2 - 1  # (n, 3, t, H, W)
        feats = []
        for layer in self.features:
            x = layer(x)
            feats.append(x)
        return self.head(x), feats


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def feature_matching(fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_feats, real_feats, strict=True)) / len(fake_feats)
