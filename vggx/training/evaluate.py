"""Quality evaluation (``vggx evaluate``): PSNR, SSIM and temporal consistency of the model, bicubic,
and the model run frame by frame (T = 1: propagation and temporal attention inert).

Protocol: the standard BI degradation (×4 bicubic downscale with anti-aliasing, no noise), as for
Vid4/REDS4. Clips are evaluated in consecutive windows of the model's T frames (a shorter last
window when the clip is not a multiple of T). A video is decoded a window at a time as it is scored, every method
scoring that window before the next is decoded, so that memory follows a window's frames, not the clip's length.
Metrics are on RGB in [0, 1], over whole frames of the held-out clips and over a centre region of a video's (at most
:data:`DEFAULT_REGION` unless asked otherwise), cut to a multiple of the model's size unit so that the LR frames are
whole pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vggx.errors import VideoError
from vggx.generator import Generator, bicubic_upscale
from vggx.plugins import reference_ops

from .data import bicubic_downscale
from .metrics import psnr_from_mse, ssim_sums, temporal_error_sums

__all__ = ["DEFAULT_REGION", "EvalClip", "EvalRow", "VideoClip", "evaluate", "standard_methods", "video_clip"]

# The largest centre region of a video's frames scored by default (HxW, ground-truth pixels): keeps a CPU run of a
# 1080p clip to minutes; ``vggx evaluate --region full`` scores whole frames.
DEFAULT_REGION = (480, 640)

Method = Callable[[torch.Tensor], torch.Tensor]  # (t, 3, h, w) LR -> (t, 3, s*h, s*w)


@dataclass
class EvalClip:
    """A clip to score: float frames in [0, 1], or uint8 ones (what a decoded video holds: a quarter of the
    memory, turned into floats a part at a time as they are scored)."""

    name: str
    hr: torch.Tensor  # (t, 3, H, W)
    lr: torch.Tensor  # (t, 3, H/s, W/s)
    source_size: tuple[int, int] | None = None  # the frames' size before the centre crop to ``hr``

    @property
    def frames(self) -> int:
        return int(self.hr.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """HxW of the ground truth."""
        return tuple(self.hr.shape[-2:])

    def parts(self, step: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(hr, lr) ``step`` frames at a time (None: the whole clip)."""
        step = step or self.frames
        for i in range(0, self.frames, step):
            yield self.hr[i:i + step], self.lr[i:i + step]


@dataclass
class EvalRow:
    dataset: str
    method: str
    psnr: float
    ssim: float
    temporal_error: float
    clips: int
    frames: int = 0  # scored, over all clips
    scored_size: tuple[int, int] | None = None  # HxW of the frames scored (None: the clips differ)
    source_size: tuple[int, int] | None = None  # HxW of the frames they were cropped from

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


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


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


class _ClipScore:
    """A clip's PSNR, SSIM and temporal error, added up a part of the clip at a time: the same figures as the
    metrics over the whole clip at once (sums in float64), with only a part's frames in memory."""

    def __init__(self) -> None:
        self.squared, self.values = 0.0, 0
        self.ssim, self.ssim_count = 0.0, 0
        self.temporal, self.temporal_count = 0.0, 0
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # the previous part's last frames

    def add(self, sr: torch.Tensor, hr: torch.Tensor) -> None:
        sr, hr = sr.double().clamp(0, 1), hr.double()
        self.squared += (sr - hr).square().sum().item()
        self.values += sr.numel()
        total, count = ssim_sums(sr, hr)
        self.ssim, self.ssim_count = self.ssim + total, self.ssim_count + count
        pairs_sr, pairs_hr = (sr, hr) if self._last is None else (torch.cat([self._last[0], sr]),
                                                                   torch.cat([self._last[1], hr]))
        total, count = temporal_error_sums(pairs_sr, pairs_hr)  # across the parts' seams too
        self.temporal, self.temporal_count = self.temporal + total, self.temporal_count + count
        self._last = (sr[-1:].clone(), hr[-1:].clone())  # copies: views would keep the whole part alive

    def scores(self) -> tuple[float, float, float]:
        """PSNR (dB), SSIM and temporal error."""
        temporal = self.temporal / self.temporal_count if self.temporal_count else 0.0
        return psnr_from_mse(self.squared / self.values), self.ssim / self.ssim_count, temporal


def evaluate(methods: dict[str, Method], clips: Sequence[EvalClip | VideoClip], dataset: str,
             part: int | None = None) -> list[EvalRow]:
    """Average each metric over ``clips`` for every method.

    ``part``: score each clip ``part`` frames at a time (a multiple of every method's window, so that each runs
    the windows it would on the whole clip), every method scoring a part before the next one is taken (a
    :class:`VideoClip` decodes it then), holding only that many frames, their outputs and metrics in memory; None:
    the whole clip at once. The scores are the same either way."""
    per_clip: dict[str, list[tuple[float, float, float]]] = {name: [] for name in methods}
    for clip in clips:
        scores = {name: _ClipScore() for name in methods}
        for hr, lr in clip.parts(part):
            for name, fn in methods.items():
                scores[name].add(fn(_unit(lr)), _unit(hr))
            del hr, lr  # this part's frames go before the next part is decoded
        for name, score in scores.items():
            per_clip[name].append(score.scores())
    rows = []
    for name, values in per_clip.items():
        p, s, te = zip(*values, strict=True)
        rows.append(EvalRow(dataset, name, float(np.mean(p)), float(np.mean(s)), float(np.mean(te)), len(clips),
                            sum(c.frames for c in clips), _same({c.size for c in clips}),
                            _same({c.source_size or c.size for c in clips})))
    return rows


def _same(sizes: set[tuple[int, int]]) -> tuple[int, int] | None:
    return next(iter(sizes)) if len(sizes) == 1 else None


class VideoClip:
    """A video to score, decoded a part at a time as :func:`evaluate` scores it (memory follows a part's frames, not
    the clip's length): ``frames`` frames from ``start`` as ground truth (centre-cropped to at most ``max_hr``,
    None: the whole frame, and to a multiple of ``scale * multiple``) and their BI-downscaled LR version, uint8.

    ``path``: anything ``vggx upscale`` reads (a file, a URL, an image-sequence pattern), decoded the same way
    (colour matrix by the file's tags, as players show untagged video). Each frame is cropped as it is decoded,
    so memory follows the scored region, not the source's size. ``frames``, ``size`` and ``source_size`` say
    what was scored once :meth:`parts` has gone through the clip (``frames``: fewer than asked where the video has
    no more)."""

    def __init__(self, path: str | Path, frames: int, scale: int, multiple: int,
                 max_hr: tuple[int, int] | None = DEFAULT_REGION, start: int = 0) -> None:
        self.path, self.scale, self.unit, self.max_hr, self.start = path, scale, scale * multiple, max_hr, start
        self.wanted = frames
        self.name = Path(str(path)).name
        self.frames = 0  # decoded and scored
        self.size: tuple[int, int] | None = None  # HxW of the ground truth
        self.source_size: tuple[int, int] | None = None  # HxW of the frames it was cropped from

    def parts(self, step: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(hr, lr) ``step`` frames at a time (None: the whole clip), each decoded when asked for.

        Raises:
            VideoError: frames too small for the scored region's unit, or fewer than 2 frames."""
        from vggx.video import open_video

        hr_frames: list[torch.Tensor] = []
        lr_frames: list[torch.Tensor] = []
        crop, count = None, 0
        with open_video(self.path, max_frames=self.start + self.wanted) as reader:
            for frame in reader:
                if frame.index < self.start:
                    continue
                if crop is None:
                    self.source_size = tuple(frame.image.shape[:2])
                    crop = _centre_crop(reader.path, self.source_size, self.unit, self.max_hr)
                    self.size = (crop[0].stop - crop[0].start, crop[1].stop - crop[1].start)
                hr = torch.from_numpy(np.ascontiguousarray(frame.image[crop])).permute(2, 0, 1)
                # Ground truth is the quantised decoded video; LR is its BI degradation, also quantised (a frame at a
                # time: the antialiased resize weighs each frame's own pixels alone). Both kept as uint8.
                lr = (bicubic_downscale(hr[None].float() / 255.0, self.scale).clamp(0, 1) * 255).round()[0]
                hr_frames.append(hr.contiguous())
                lr_frames.append(lr.to(torch.uint8))
                del frame, hr, lr  # not held while the part is scored
                count += 1
                if step and len(hr_frames) == step:
                    yield _stacked(hr_frames, lr_frames)  # the lists emptied: the part is the caller's alone
            path = reader.path
        self.name, self.frames = Path(str(path)).name, count
        if count < 2:
            raise VideoError(f"{path}: need at least 2 frames, got {count}")
        if hr_frames:
            yield _stacked(hr_frames, lr_frames)


def _stacked(hr_frames: list[torch.Tensor], lr_frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    part = torch.stack(hr_frames), torch.stack(lr_frames)
    hr_frames.clear()
    lr_frames.clear()
    return part


def video_clip(path: str | Path, frames: int, scale: int, multiple: int,
               max_hr: tuple[int, int] | None = DEFAULT_REGION, start: int = 0) -> EvalClip:
    """The whole of a :class:`VideoClip` decoded at once, as tensors (``vggx evaluate`` scores a :class:`VideoClip`
    a window at a time instead)."""
    clip = VideoClip(path, frames, scale, multiple, max_hr, start)
    (hr, lr), = clip.parts(None)
    return EvalClip(clip.name, hr, lr, clip.source_size)


def _centre_crop(path, size: tuple[int, int], unit: int, max_hr: tuple[int, int] | None) -> tuple[slice, slice]:
    full_h, full_w = size
    h, w = (full_h, full_w) if max_hr is None else (min(full_h, max_hr[0]), min(full_w, max_hr[1]))
    h, w = h // unit * unit, w // unit * unit
    if h == 0 or w == 0:
        raise VideoError(f"{path}: frames of {full_h}x{full_w} are too small to evaluate (the scored region is a "
                         f"multiple of {unit} pixels)")
    top, left = (full_h - h) // 2, (full_w - w) // 2
    return slice(top, top + h), slice(left, left + w)
