"""The synthetic data pipeline: exact flow, degradations, held-out images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vggx.plugins import flow_warp_reference
from vggx.training.data import (
    TRAIN_IMAGES,
    VAL_IMAGES,
    ClipSpec,
    Degradation,
    _gaussian_blur,
    load_images,
    make_batch,
    make_clip,
)


@pytest.fixture(scope="module")
def smooth_image():
    # Smooth content: bilinear warping is then near exact, so what remains is flow error.
    return _gaussian_blur(load_images(TRAIN_IMAGES[:1])[0][None], 6.0)[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ground_truth_flow_warps_next_frame_onto_current(smooth_image, seed):
    clip = make_clip(smooth_image, ClipSpec(frames=5, lr_size=(40, 48)), np.random.default_rng(seed), None)
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    moved = (clip.lr[1:] - clip.lr[:-1])[inner].abs().mean()
    back = (flow_warp_reference(clip.lr[1:], clip.flow_bwd) - clip.lr[:-1])[inner].abs().mean()
    fwd = (flow_warp_reference(clip.lr[:-1], clip.flow_fwd) - clip.lr[1:])[inner].abs().mean()
    wrong_sign = (flow_warp_reference(clip.lr[1:], -clip.flow_bwd) - clip.lr[:-1])[inner].abs().mean()
    assert clip.flow_bwd.abs().mean() > 0.1  # the camera really moves
    assert back < 0.25 * moved and fwd < 0.25 * moved
    assert wrong_sign > moved  # the sign convention matters and is the right one


def test_shapes_and_ranges():
    imgs = load_images(TRAIN_IMAGES[:3])
    batch = make_batch(imgs, 2, ClipSpec(frames=4, lr_size=(16, 24)), np.random.default_rng(0), Degradation())
    assert batch.hr.shape == (2, 4, 3, 64, 96) and batch.lr.shape == (2, 4, 3, 16, 24)
    assert batch.flow_fwd.shape == batch.flow_bwd.shape == (2, 3, 2, 16, 24)
    assert batch.hr.min() >= 0 and batch.hr.max() <= 1 and batch.lr.min() >= 0 and batch.lr.max() <= 1


def test_degradations_differ_from_clean_bi():
    img = load_images(TRAIN_IMAGES[:1])[0]
    deg = Degradation(p_clean=0.0, p_codec=1.0)
    clean = make_clip(img, ClipSpec(frames=3, lr_size=(16, 16)), np.random.default_rng(5), None)
    dirty = make_clip(img, ClipSpec(frames=3, lr_size=(16, 16)), np.random.default_rng(5), deg)
    torch.testing.assert_close(dirty.hr, clean.hr)  # same motion and content
    assert (dirty.lr - clean.lr).abs().mean() > 1e-3


def test_held_out_images_are_never_trained_on():
    assert not set(TRAIN_IMAGES) & set(VAL_IMAGES)


def test_clips_are_deterministic_given_the_seed():
    imgs = load_images(TRAIN_IMAGES[:2])
    a = make_batch(imgs, 1, ClipSpec(frames=3), np.random.default_rng([0, 5]), Degradation())
    b = make_batch(imgs, 1, ClipSpec(frames=3), np.random.default_rng([0, 5]), Degradation())
    assert torch.equal(a.lr, b.lr) and torch.equal(a.flow_fwd, b.flow_fwd)
