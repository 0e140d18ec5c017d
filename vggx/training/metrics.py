"""Image and video quality metrics: PSNR, SSIM and a temporal-consistency error."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["PSNR_CAP", "psnr", "psnr_from_mse", "ssim", "ssim_sums", "temporal_error", "temporal_error_sums"]

PSNR_CAP = 100.0  # dB reported for identical images (instead of infinity)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1] over all elements; capped at ``PSNR_CAP``."""
    return psnr_from_mse(F.mse_loss(pred.double().clamp(0, 1), target.double()).item())


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error of values in [0, 1]; capped at ``PSNR_CAP``."""
    if mse <= 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    return 10 * math.log10(1.0 / mse)


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian, valid region: the 2-D 11×11 window of Wang et al. in two 1-D passes."""
    return F.conv2d(F.conv2d(x, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))


def ssim(pred: torch.Tensor, target: torch.Tensor, chunk: int = 8) -> float:
    """Mean SSIM (Wang et al. 2004, 11×11 Gaussian, σ = 1.5) of ``(..., c, h, w)`` images in [0, 1].

    Computed per channel image, ``chunk`` images at a time, so memory stays small for long HD clips.
    """
    total, count = ssim_sums(pred, target, chunk)
    return total / count


def ssim_sums(pred: torch.Tensor, target: torch.Tensor, chunk: int = 8) -> tuple[float, int]:
    """The sum of the SSIM map of :func:`ssim` and its size: what averages over clips taken a part at a time."""
    x_all = pred.double().clamp(0, 1).reshape(-1, 1, *pred.shape[-2:])
    y_all = target.double().reshape(-1, 1, *target.shape[-2:])
    g = _gauss().to(x_all)
    c1, c2 = 0.01**2, 0.03**2
    total, count = 0.0, 0
    for i in range(0, x_all.shape[0], chunk):
        x, y = x_all[i:i + chunk], y_all[i:i + chunk]
        mu_x, mu_y = _blur(x, g), _blur(y, g)
        sxx = _blur(x * x, g) - mu_x**2
        syy = _blur(y * y, g) - mu_y**2
        sxy = _blur(x * y, g) - mu_x * mu_y
        s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
        total += s.sum().item()
        count += s.numel()
    return total, count


def temporal_error(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute error of frame-to-frame differences against the ground truth's, ``(..., t, c, h, w)``.

    0 for a result that changes over time exactly as the ground truth does; flicker raises it.
    """
    total, count = temporal_error_sums(pred, target)
    return total / count if count else 0.0


def temporal_error_sums(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, int]:
    """The sum of :func:`temporal_error`'s absolute differences and their number (0, 0 for fewer than 2 frames):
    what averages over a clip taken a part at a time."""
    if pred.shape[-4] < 2:
        return 0.0, 0
    dp = pred.double().clamp(0, 1).diff(dim=-4)
    dt = target.double().diff(dim=-4)
    diff = (dp - dt).abs()
    return diff.sum().item(), diff.numel()
