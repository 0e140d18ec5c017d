"""Synthetic training clips with exact optical flow, made from the photographs scikit-image ships.

A clip is a still image seen through a camera moving on a smooth random path (translation, small
rotation, zoom): every frame is an affine view of the same picture, so the flow between frames is
known exactly. Nothing is downloaded, and no video footage is used for training, so quality measured
on real footage is honest generalisation.

Conventions: HR frames ``(t, 3, H, W)`` in [0, 1]; LR = degrade(HR) at ``H/4 × W/4``; flows are in
LR pixels with the generator's conventions: ``flow_bwd[i]`` warps LR frame i+1 onto frame i,
``flow_fwd[i]`` warps frame i onto i+1 (``flow_warp(frame[i+1], flow_bwd[i]) ≈ frame[i]``).
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "TRAIN_IMAGES",
    "VAL_IMAGES",
    "Clip",
    "ClipSpec",
    "Degradation",
    "bicubic_downscale",
    "load_images",
    "make_batch",
    "make_clip",
]

# scikit-image ships these in its wheel (no download). Held-out images are never trained on.
TRAIN_IMAGES = (
    "astronaut", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel",
    "motorcycle_left", "brick", "clock", "coins", "grass", "gravel", "moon", "page", "text", "cell",
)
VAL_IMAGES = ("coffee", "rocket", "camera")


def _load_skimage(name: str) -> np.ndarray:
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        img = left if name.endswith("left") else right
    else:
        img = getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


@cache
def load_images(names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """Images as float ``(3, h, w)`` tensors in [0, 1] (cached per process)."""
    try:
        return tuple(torch.from_numpy(_load_skimage(n).copy()).permute(2, 0, 1).float() / 255.0 for n in names)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from vggx.errors import ConfigError

        raise ConfigError("training data needs scikit-image: pip install 'vggx[train]'") from exc


def bicubic_downscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The BI degradation of the VSR literature: ×1/scale bicubic with anti-aliasing."""
    return F.interpolate(x, scale_factor=1.0 / scale, mode="bicubic", align_corners=False, antialias=True)


@dataclass(frozen=True)
class ClipSpec:
    frames: int = 8
    lr_size: tuple[int, int] = (32, 32)
    scale: int = 4
    max_speed: float = 3.0  # HR pixels per frame (mean over the clip)
    max_rotation: float = 0.02  # radians per frame
    max_zoom: float = 0.01  # relative scale change per frame


@dataclass(frozen=True)
class Degradation:
    """Random degradation strengths; ``p_clean`` of the samples get plain BI (evaluation protocol)."""

    p_clean: float = 0.5
    max_blur_sigma: float = 1.2  # in HR pixels
    max_noise: float = 0.02  # std in [0, 1] units
    p_codec: float = 0.2
    crf_range: tuple[int, int] = (18, 32)


@dataclass
class Clip:
    hr: torch.Tensor  # (t, 3, H, W)
    lr: torch.Tensor  # (t, 3, H/s, W/s)
    flow_fwd: torch.Tensor  # (t-1, 2, h, w) LR pixels
    flow_bwd: torch.Tensor  # (t-1, 2, h, w)


def _affine_path(rng: np.random.Generator, spec: ClipSpec, hr: tuple[int, int], src: tuple[int, int]):
    """3x3 matrices mapping frame HR continuous coords (x, y) -> source continuous coords, per frame."""
    H, W = hr
    sh, sw = src
    t = spec.frames
    angle0 = rng.uniform(-math.pi, math.pi) if rng.random() < 0.3 else 0.0
    zoom_room = min(sh / (H * 1.5), sw / (W * 1.5))
    zoom0 = math.exp(rng.uniform(math.log(max(0.5, 1.0 / 1.0)), math.log(max(1.0, min(2.0, zoom_room)))))
    # Smooth path: a velocity that drifts a little, so motion is not constant.
    vel = rng.normal(size=2) * spec.max_speed / 1.5
    acc = rng.normal(size=2) * spec.max_speed * 0.1
    rot_v = rng.uniform(-spec.max_rotation, spec.max_rotation)
    zoom_v = rng.uniform(-spec.max_zoom, spec.max_zoom)
    span = np.abs(vel) * t + np.abs(acc) * t * t / 2 + 4
    radius = math.hypot(W, H) / 2 * zoom0 * (1 + abs(zoom_v) * t) + 2
    lo = np.array([radius, radius]) + span * zoom0
    hi = np.array([sw, sh]) - lo
    centre = np.array([rng.uniform(lo[0], max(lo[0], hi[0])), rng.uniform(lo[1], max(lo[1], hi[1]))])
    mats = []
    pos = np.zeros(2)
    v = vel.copy()
    for i in range(t):
        angle = angle0 + rot_v * i
        zoom = zoom0 * (1 + zoom_v) ** i
        c, s = math.cos(angle) * zoom, math.sin(angle) * zoom
        # frame centre -> source point centre + pos
        tx, ty = centre + pos * zoom0
        m = np.array(
            [[c, -s, tx - (c * W / 2 - s * H / 2)], [s, c, ty - (s * W / 2 + c * H / 2)], [0, 0, 1.0]]
        )
        mats.append(m)
        pos = pos + v
        v = v + acc
    return mats


def _render(image: torch.Tensor, mats, hr: tuple[int, int]) -> torch.Tensor:
    """Sample ``image`` (3, sh, sw) through each frame's affine map -> (t, 3, H, W)."""
    H, W = hr
    sh, sw = image.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5,
                            torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij")
    pts = torch.stack((xs, ys, torch.ones_like(xs)), 0).reshape(3, -1)
    grids = []
    for m in mats:
        src = torch.from_numpy(m) @ pts
        gx = src[0] / sw * 2 - 1  # align_corners=False: continuous coords
        gy = src[1] / sh * 2 - 1
        grids.append(torch.stack((gx, gy), -1).reshape(H, W, 2))
    grid = torch.stack(grids).float()
    frames = F.grid_sample(image.expand(len(mats), -1, -1, -1), grid, mode="bicubic",
                           padding_mode="reflection", align_corners=False)
    return frames.clamp(0, 1)


def _flows(mats, lr: tuple[int, int], scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact LR flows between consecutive frames from their affine maps."""
    h, w = lr
    ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    p = np.stack((xs * scale, ys * scale, np.ones_like(xs)), 0).reshape(3, -1)  # HR continuous coords
    fwd, bwd = [], []
    for a, b in itertools.pairwise(mats):
        q_b = np.linalg.solve(b, a @ p)  # where frame-i pixel's content sits in frame i+1
        q_a = np.linalg.solve(a, b @ p)  # where frame-(i+1) pixel's content sits in frame i
        bwd.append(((q_b[:2] - p[:2]) / scale).reshape(2, h, w))
        fwd.append(((q_a[:2] - p[:2]) / scale).reshape(2, h, w))
    return torch.from_numpy(np.stack(fwd)).float(), torch.from_numpy(np.stack(bwd)).float()


def _codec(frames: torch.Tensor, crf: int) -> torch.Tensor:
    """Round-trip ``(t, 3, h, w)`` through H.264 at ``crf`` in memory (PyAV)."""
    import av

    t, _, h, w = frames.shape
    arr = (frames.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency"}
        for a in arr:
            for pkt in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    buf.seek(0)
    with av.open(buf) as inp:
        dec = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    if len(dec) != t:
        return frames
    return torch.from_numpy(np.stack(dec)).permute(0, 3, 1, 2).float() / 255.0


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    k = torch.exp(-((torch.arange(-radius, radius + 1, dtype=torch.float32)) ** 2) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def degrade(hr: torch.Tensor, scale: int, rng: np.random.Generator, deg: Degradation | None) -> torch.Tensor:
    """HR ``(t, 3, H, W)`` -> LR; ``deg=None`` is the clean BI protocol."""
    if deg is None or rng.random() < deg.p_clean:
        return bicubic_downscale(hr, scale).clamp(0, 1)
    x = hr
    sigma = rng.uniform(0.2, deg.max_blur_sigma)
    x = _gaussian_blur(x, sigma)
    x = bicubic_downscale(x, scale)
    noise = rng.uniform(0, deg.max_noise)
    if noise > 0:
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        x = x + torch.randn(x.shape, generator=gen) * noise
    x = x.clamp(0, 1)
    if rng.random() < deg.p_codec:
        x = _codec(x, int(rng.integers(deg.crf_range[0], deg.crf_range[1] + 1)))
    return x


def make_clip(image: torch.Tensor, spec: ClipSpec, rng: np.random.Generator,
              deg: Degradation | None = None) -> Clip:
    """One synthetic clip from ``image`` (3, sh, sw)."""
    h, w = spec.lr_size
    hr_size = (h * spec.scale, w * spec.scale)
    if rng.random() < 0.5:
        image = image.flip(-1)
    if rng.random() < 0.3:
        # Colour jitter (also tints the grey images).
        gain = torch.from_numpy(rng.uniform(0.8, 1.2, size=(3, 1, 1))).float()
        image = (image * gain).clamp(0, 1)
    # Too-small sources (or large zooms) are upscaled first so the crop stays inside.
    need = 2.2 * max(hr_size) + 8 * spec.max_speed * spec.frames
    small = min(image.shape[-2:])
    if small < need:
        f = need / small
        image = F.interpolate(image[None], scale_factor=f, mode="bicubic", align_corners=False)[0].clamp(0, 1)
    mats = _affine_path(rng, spec, hr_size, tuple(image.shape[-2:]))
    hr = _render(image, mats, hr_size)
    lr = degrade(hr, spec.scale, rng, deg)
    flow_fwd, flow_bwd = _flows(mats, spec.lr_size, spec.scale)
    return Clip(hr=hr, lr=lr, flow_fwd=flow_fwd, flow_bwd=flow_bwd)


def make_batch(images: tuple[torch.Tensor, ...], batch: int, spec: ClipSpec, rng: np.random.Generator,
               deg: Degradation | None = None) -> Clip:
    """``batch`` clips stacked along a leading N axis."""
    clips = [make_clip(images[int(rng.integers(len(images)))], spec, rng, deg) for _ in range(batch)]
    return Clip(*(torch.stack([getattr(c, f) for c in clips]) for f in ("hr", "lr", "flow_fwd", "flow_bwd")))
