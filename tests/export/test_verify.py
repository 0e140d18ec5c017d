"""export/verify.py: parity numbers, tolerances, and failing loudly beyond them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vggx.errors import VerificationError
from vggx.export.verify import FP16_TOLERANCE, FP32_TOLERANCE, Tolerance, compare_frames, parity_cases, verify_onnx


def test_compare_frames_counts_levels():
    frames = np.zeros((1, 1, 2, 2, 3), np.uint8)
    want = np.full((1, 1, 8, 8, 3), 100, np.uint8)
    got = want.copy()
    got.flat[:3] = [101, 99, 110]  # two within ±1, one 10 levels off
    r = compare_frames("x", frames, got, want, FP32_TOLERANCE)
    assert r.max_abs == 10
    assert r.within == pytest.approx(1 - 1 / want.size)
    assert not r.passed  # 1/192 off > 0.1 %
    assert "max |diff| 10 levels" in str(r)


@pytest.mark.parametrize("tolerance", [FP32_TOLERANCE, FP16_TOLERANCE], ids=["fp32", "fp16"])
def test_compare_frames_limit_is_exactly_the_tolerances_levels(tolerance):
    """A value exactly ``levels`` off counts as within, ``levels + 1`` off does not, above or below PyTorch's value
    and at 0 and 255 (no uint8 wrap-around). Guards the export parity gate (±1 FP32, ±2 FP16) against a limit
    widened by a level or two, which values 1 and 10 off could not tell."""
    levels = tolerance.levels
    frames = np.zeros((1, 1, 5, 25, 3), np.uint8)
    want = np.full((1, 1, 20, 100, 3), 128, np.uint8)  # 6000 values
    want.flat[2], want.flat[3] = 0, 255
    inside = want.copy()
    inside.flat[:4] = [128 + levels, 128 - levels, levels, 255 - levels]
    r = compare_frames("inside", frames, inside, want, tolerance)
    assert (r.max_abs, r.within, r.passed) == (levels, 1.0, True)
    assert r.within_1 == pytest.approx(1.0 if levels <= 1 else 1 - 4 / want.size)
    for i, past in enumerate([128 + levels + 1, 128 - levels - 1, levels + 1, 255 - levels - 1]):
        outside = inside.copy()
        outside.flat[i] = past
        r = compare_frames("one past", frames, outside, want, tolerance)
        assert r.max_abs == levels + 1 and r.within == pytest.approx(1 - 1 / want.size), (i, str(r))


@pytest.mark.parametrize("tolerance", [FP32_TOLERANCE, FP16_TOLERANCE], ids=["fp32", "fp16"])
def test_compare_frames_passes_at_the_fraction_and_fails_one_value_past_it(tolerance):
    """With 1000 values, exactly (1 - fraction) of them one level past the limit still passes (``>=``), one more
    fails: the gate's fraction is the tolerance's, and values just past ``levels`` count against it."""
    frames = np.zeros((1, 1, 5, 50, 1), np.uint8)
    want = np.full((1, 1, 20, 50, 1), 100, np.uint8)
    allowed = round((1 - tolerance.fraction) * want.size)  # 1 for FP32 (99.9 %), 10 for FP16 (99 %)
    for off, passed in ((allowed, True), (allowed + 1, False)):
        got = want.copy()
        got.flat[:off] = 100 + tolerance.levels + 1
        got.flat[off:2 * off] = 100 - tolerance.levels  # inside: never counts
        r = compare_frames("fraction", frames, got, want, tolerance)
        assert r.passed is passed, str(r)


def test_compare_frames_rejects_shape_mismatch():
    with pytest.raises(VerificationError, match="output shape"):
        compare_frames("x", np.zeros((1, 1, 2, 2, 3), np.uint8), np.zeros((1, 1, 8, 8, 3), np.uint8),
                       np.zeros((1, 1, 8, 4, 3), np.uint8), FP32_TOLERANCE)


@pytest.mark.parametrize(("levels", "fraction"), [(-1, 0.9), (1, 0.0), (1, 1.5)])
def test_tolerance_rejects_bad_values(levels, fraction):
    with pytest.raises(ValueError):
        Tolerance(levels, fraction)


def test_parity_cases_cover_off_grid_sizes_and_a_real_clip():
    cases = parity_cases(window=4, size_multiple=8)
    shapes = [c.frames.shape for c in cases]
    assert any(s[2] % 8 or s[3] % 8 for s in shapes) and any(s[0] > 1 for s in shapes)
    real = cases[-1].frames
    assert real.dtype == np.uint8 and real.shape[1] == 4 and real.std() > 20
    assert not np.array_equal(real[0, 0], real[0, 1])  # it moves


def test_verification_fails_when_the_graph_does_not_match(portable_onnx, tiny_checkpoint):
    other = copy.copy(tiny_checkpoint)
    other.generator = copy.deepcopy(tiny_checkpoint.generator)
    with torch.no_grad():
        other.generator.upsampler.to_rgb[0].weight.mul_(3.0)  # a different model
    case = parity_cases(tiny_checkpoint.config.window, 8)[:1]
    with pytest.raises(VerificationError, match=r"does not match PyTorch \(±1 on >= 99.90%\).*max \|diff\|"):
        verify_onnx(portable_onnx, other, cases=case)
    results = verify_onnx(portable_onnx, other, cases=case, raise_on_failure=False)
    assert not results[0].passed and results[0].max_abs > 2
