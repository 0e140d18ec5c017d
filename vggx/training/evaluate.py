"""Quality evaluation (``vggx evaluate``): PSNR, SSIM and temporal consistency of the model, bicubic,
and the model run frame by frame (T = 1: propagation and temporal attention inert).

Protocol: the standard BI degradation (×4 bicubic downscale with anti-aliasing, no noise), as for
Vid4/REDS4. Clips are evaluated in consecutive windows of the model's T frames (a shorter last
window when the clip is not a multiple of T). Metrics are on RGB in [0, 1], whole frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vggx.errors import VideoError
from vggx.generator import Generator, bicubic_upscale
from vggx.plugins import reference_ops

from .data import bicubic_downscale
from .metrics import psnr, ssim, temporal_error

__all__ = ["EvalClip", "EvalRow", "evaluate", "standard_methods", "video_clip"]

Method = Callable[[torch.Tensor], torch.Tensor]  # (t, 3, h, w) LR -> (t, 3, s*h, s*w)


@dataclass
class EvalClip:
    name: str
    hr: torch.Tensor  # (t, 3, H, W)
    lr: torch.Tensor  # (t, 3, H/s, W/s)


@dataclass
class EvalRow:
    dataset: str
    method: str
    psnr: float
    ssim: float
    temporal_error: float
    clips: int
    frames: int = 0  # scored, over all clips

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _windowed(generator: Generator, window: int) -> Method:
    @torch.no_grad()
    def run(lr: torch.Tensor) -> torch.Tensor:
        outs = []
        with reference_ops():
            for i in range(0, lr.shape[0], window):
                outs.append(generator(lr[None, i:i + window])[0])
        return torch.cat(outs).clamp(0, 1)

    return run


def standard_methods(generator: Generator) -> dict[str, Method]:
    """The three rows of every table: the model, bicubic, and the model frame by frame."""
    scale = generator.cfg.scale
    return {
        "vggx": _windowed(generator, generator.cfg.window),
        "bicubic": lambda lr: bicubic_upscale(lr, scale).clamp(0, 1),
        "vggx frame-by-frame": _windowed(generator, 1),
    }


def evaluate(methods: dict[str, Method], clips: list[EvalClip], dataset: str) -> list[EvalRow]:
    """Average each metric over ``clips`` for every method."""
    rows = []
    for name, fn in methods.items():
        p, s, te = [], [], []
        for clip in clips:
            sr = fn(clip.lr)
            p.append(psnr(sr, clip.hr))
            s.append(ssim(sr, clip.hr))
            te.append(temporal_error(sr, clip.hr))
        rows.append(EvalRow(dataset, name, float(np.mean(p)), float(np.mean(s)), float(np.mean(te)), len(clips),
                            sum(int(c.hr.shape[0]) for c in clips)))
    return rows


def video_clip(path: str | Path, frames: int, scale: int, multiple: int, max_hr: tuple[int, int] = (480, 640),
               start: int = 0) -> EvalClip:
    """Decode ``frames`` frames of a video as ground truth (centre-cropped to at most ``max_hr`` and to a
    multiple of ``scale * multiple``) and its BI-downscaled LR version.

    ``path``: anything ``vggx upscale`` reads (a file, a URL, an image-sequence pattern), decoded the same way
    (colour matrix by the file's tags, as players show untagged video)."""
    from vggx.video import open_video

    hr_frames = []
    with open_video(path, max_frames=start + frames) as reader:
        for frame in reader:
            if frame.index >= start:
                hr_frames.append(frame.image)
    path = reader.path
    if len(hr_frames) < 2:
        raise VideoError(f"{path}: need at least 2 frames, got {len(hr_frames)}")
    hr = torch.from_numpy(np.stack(hr_frames)).permute(0, 3, 1, 2).float() / 255.0
    unit = scale * multiple
    h = min(hr.shape[-2], max_hr[0]) // unit * unit
    w = min(hr.shape[-1], max_hr[1]) // unit * unit
    if h == 0 or w == 0:
        raise VideoError(f"{path}: frames of {hr.shape[-2]}x{hr.shape[-1]} are too small to evaluate ×{scale}")
    top, left = (hr.shape[-2] - h) // 2, (hr.shape[-1] - w) // 2
    hr = hr[..., top:top + h, left:left + w].contiguous()
    # Ground truth is the quantised decoded video; LR is its BI degradation, also quantised.
    lr = (bicubic_downscale(hr, scale).clamp(0, 1) * 255).round() / 255
    return EvalClip(Path(str(path)).name, hr, lr)
