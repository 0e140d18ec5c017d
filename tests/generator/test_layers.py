"""Defining properties of the generator's building blocks."""

from __future__ import annotations

import torch

from vggx.generator.layers import BlurPool, ChannelNorm, HighFrequencyShuttle, LowPass, TemporalAttention


def _textured_image(h: int = 64, w: int = 64) -> torch.Tensor:
    """Smooth shapes plus fine stripes near (but below) Nyquist: what aliasing downsamplers get wrong."""
    torch.manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    img = torch.sin(xs * 2.6) * 0.5 + torch.sin(ys * 0.3 + xs * 0.2) + torch.cos(ys * 2.2) * 0.4
    return img.expand(1, 4, h, w).contiguous()


def test_blurpool_is_far_less_shift_variant_than_strided_conv():
    x = _textured_image()
    shifted = torch.roll(x, shifts=1, dims=-1)
    pool = BlurPool(4)
    strided = torch.nn.Conv2d(4, 4, 1, stride=2, bias=False, groups=4)
    torch.nn.init.ones_(strided.weight)  # the same (identity) weights, no low-pass: a bare stride
    with torch.no_grad():
        change_blur = (pool(shifted) - pool(x))[..., 4:-4, 4:-4].abs().mean()
        change_strided = (strided(shifted) - strided(x))[..., 4:-4, 4:-4].abs().mean()
    ratio = (change_blur / change_strided).item()
    assert ratio < 0.35, f"BlurPool changed {ratio:.2f}x as much as a strided conv"


def test_blurpool_equals_lowpass_then_subsample():
    x = torch.randn(2, 3, 20, 28)
    assert torch.allclose(BlurPool(3)(x), LowPass(3)(x)[..., ::2, ::2], atol=1e-6)
    assert BlurPool(3)(x).shape == (2, 3, 10, 14)


def test_lowpass_keeps_constants_and_has_unit_dc_gain():
    x = torch.full((1, 2, 16, 16), 0.5)
    assert torch.equal(LowPass(2)(x), x)


def test_hf_shuttle_splits_exactly_and_hf_has_no_dc():
    torch.manual_seed(0)
    f = torch.randn(2, 8, 32, 40, dtype=torch.float64) + 3.0  # strong DC component
    shuttle = HighFrequencyShuttle(8).double()
    lf, hf = shuttle(f)
    torch.testing.assert_close(lf + hf, f, rtol=0, atol=1e-12)
    # The DC (mean) goes to lf; hf's mean is ~0 while f's is ~3.
    assert hf.mean(dim=(-1, -2)).abs().max() < 0.05
    assert lf.mean(dim=(-1, -2)).sub(3.0).abs().max() < 0.1
    # Constant input: hf is exactly zero.
    _, hf_const = shuttle(torch.full((1, 8, 16, 16), 2.0, dtype=torch.float64))
    assert torch.count_nonzero(hf_const) == 0


def test_channel_norm_is_per_pixel_and_computes_in_fp32():
    norm = ChannelNorm(6)
    x = torch.randn(2, 6, 5, 7)
    y = norm(x)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(2, 5, 7), atol=1e-5, rtol=0)
    # Per pixel: a crop of the input gives the crop of the output (tiles agree with whole frames).
    torch.testing.assert_close(norm(x[..., 1:4, 2:6]), y[..., 1:4, 2:6])
    y16 = norm(x.half())
    assert y16.dtype == torch.float16
    torch.testing.assert_close(y16.float(), y, atol=2e-2, rtol=0)


def test_channel_norm_nhwc_path_matches():
    """The CUDA fast path's fused layer_norm on the NHWC view equals the float32 composition."""
    norm = ChannelNorm(6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 6, 5, 7).to(memory_format=torch.channels_last) * 3 + 1
    y = norm.forward_nhwc(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, norm(x.contiguous()), atol=1e-5, rtol=1e-5)
    half = ChannelNorm(6).half()
    half.load_state_dict(norm.state_dict())
    y16 = half.forward_nhwc(x.half())
    assert y16.dtype == torch.float16
    torch.testing.assert_close(y16.float(), half(x.half().contiguous()).float(), atol=1e-2, rtol=1e-2)


def test_temporal_attention_block_starts_as_identity_and_mixes_frames_when_trained():
    torch.manual_seed(0)
    block = TemporalAttention(8, heads=2)
    x = torch.randn(2 * 3, 8, 4, 5)
    torch.testing.assert_close(block(x, t=3), x)  # zero-initialised projection
    torch.nn.init.normal_(block.proj.weight)
    y = block(x, t=3)
    # Frames of clip 0 influence each other but never clip 1.
    x2 = x.clone()
    x2[0] += torch.randn_like(x2[0])
    y2 = block(x2, t=3)
    assert (y2[1:3] - y[1:3]).abs().max() > 1e-4
    torch.testing.assert_close(y2[3:], y[3:])


def test_bicubic_residual_of_constant_is_constant():
    from vggx.generator import bicubic_upscale

    x = torch.full((1, 3, 8, 8), 0.25)
    torch.testing.assert_close(bicubic_upscale(x, 4), torch.full((1, 3, 32, 32), 0.25))
