"""Whole-model properties of the generator and its propagation."""

from __future__ import annotations

import time

import pytest
import torch

from vggx.errors import ConfigError
from vggx.generator import Generator, GeneratorConfig, UInt8Upscaler, get_config
from vggx.generator.flops import activation_bytes, measure_cost
from vggx.generator.propagation import BidirectionalPropagation
from vggx.plugins import reference_ops


def _randomised(cfg: GeneratorConfig) -> Generator:
    torch.manual_seed(0)
    g = Generator(cfg)
    with torch.no_grad():
        for p in g.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return g.eval()


@pytest.mark.parametrize(("t", "h", "w"), [(1, 16, 16), (3, 24, 40), (5, 32, 16)])
def test_output_is_scale_times_input(t, h, w):
    g = _randomised(get_config("tiny"))
    with torch.no_grad():
        y = g(torch.rand(2, t, 3, h, w))
    assert y.shape == (2, t, 3, 4 * h, 4 * w)
    assert torch.isfinite(y).all()


def test_eval_forward_is_deterministic_and_custom_ops_equal_reference():
    g = _randomised(get_config("tiny"))
    x = torch.rand(1, 4, 3, 16, 24)
    with torch.no_grad():
        a, b = g(x), g(x)
        with reference_ops():
            c = g(x)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=0)


def test_output_starts_near_bicubic_and_is_not_bicubic_when_weights_set():
    from vggx.generator import bicubic_upscale

    torch.manual_seed(0)
    fresh = Generator(get_config("tiny")).eval()
    x = torch.rand(1, 2, 3, 16, 16)
    with torch.no_grad():
        bic = bicubic_upscale(x.flatten(0, 1), 4).reshape(1, 2, 3, 64, 64)
        assert (fresh(x) - bic).abs().max() < 0.5  # small random head around bicubic
        assert (_randomised(get_config("tiny"))(x) - bic).abs().max() > 1e-3


def test_rejects_sizes_that_are_not_multiples():
    g = Generator(get_config("tiny"))
    with pytest.raises(ValueError, match="multiples of 8"):
        g(torch.rand(1, 2, 3, 17, 16))


def test_propagation_directions_agree_for_identical_frames_and_zero_flow():
    torch.manual_seed(0)
    prop = BidirectionalPropagation(channels=8, blocks=2).eval()
    with torch.no_grad():
        for p in prop.parameters():
            p.normal_(0, 0.2)
        prop.forward_branch.load_state_dict(prop.backward_branch.state_dict())
    t = 5
    frame = torch.rand(1, 1, 3, 12, 12)
    lr = frame.expand(1, t, 3, 12, 12).contiguous()
    zero = torch.zeros(1, t - 1, 2, 12, 12)
    with torch.no_grad():
        _, fwd, bwd = prop.states(lr, zero, zero)
    for i in range(t):
        torch.testing.assert_close(fwd[i], bwd[t - 1 - i], atol=1e-5, rtol=1e-5)
    # States really propagate: step i differs from step 0 (the hidden state accumulates).
    assert (fwd[-1] - fwd[0]).abs().max() > 1e-3


def test_flow_estimator_receives_gradient_from_reconstruction():
    g = Generator(get_config("tiny"))
    x = torch.rand(1, 3, 3, 16, 16)
    with reference_ops():
        sr, ff, fb = g.forward_with_flows(x)
    assert ff.shape == fb.shape == (1, 2, 2, 16, 16)
    (sr.mean() + ff.mean()).backward()
    assert g.flow.basic[-1].net[-1].weight.grad.abs().sum() > 0


def test_uint8_wrapper_pads_and_crops_any_size():
    g = _randomised(get_config("tiny"))
    wrapper = UInt8Upscaler(g)
    x = torch.randint(0, 256, (1, 2, 13, 21, 3), dtype=torch.uint8)
    with torch.no_grad():
        y = wrapper(x)
    assert y.shape == (1, 2, 52, 84, 3) and y.dtype == torch.uint8


class _StubGenerator(torch.nn.Module):
    """A stand-in generator for the wrapper's own steps: nearest upsampling by ``scale`` plus ``offset`` levels
    (out of 255), so the float output, and the uint8 the wrapper must make of it, are known; it keeps its input."""

    def __init__(self, offset: float, scale: int = 2, multiple: int = 8) -> None:
        super().__init__()
        from types import SimpleNamespace

        self.cfg = SimpleNamespace(scale=scale, size_multiple=multiple)
        self.offset = offset
        self.weight = torch.nn.Parameter(torch.zeros(()))  # the wrapper reads the compute dtype from a parameter
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        s = self.cfg.scale
        return x.repeat_interleave(s, -2).repeat_interleave(s, -1) + self.offset / 255.0


@pytest.mark.parametrize(("offset", "step"), [(0.4, 0), (0.6, 1), (-0.4, 0), (-0.6, -1), (3.3, 3), (-3.3, -3)])
def test_uint8_wrapper_rounds_to_nearest_and_clamps(offset, step):
    """The generator's float output becomes the nearest uint8 level, clamped to 0..255: a level + 0.6 is the next
    level, a level - 0.4 the same one. Guards against truncation (floor: every pixel half a level darker on average,
    which the export tests miss, their reference being this wrapper) and a missing clamp (wrap-around at 0 and 255).
    Exact: the float32 error of (u / 255 + d / 255) * 255 is ~1e-5 levels, far from the .5 boundaries."""
    gen = torch.Generator().manual_seed(0)  # every level 0..255 once in each channel, 0 and 255 included
    lr = torch.stack([torch.randperm(256, generator=gen) for _ in range(3)], -1).to(torch.uint8).reshape(1, 2, 8, 16, 3)
    with torch.no_grad():
        sr = UInt8Upscaler(_StubGenerator(offset))(lr)
    expected = (lr.int() + step).clamp(0, 255).repeat_interleave(2, 2).repeat_interleave(2, 3).to(torch.uint8)
    assert sr.dtype == torch.uint8 and sr.shape == (1, 2, 16, 32, 3)
    assert torch.equal(sr, expected), f"{int((sr != expected).sum())} of {sr.numel()} pixels differ"


def test_uint8_wrapper_pads_by_replicating_the_edge():
    """A frame that is not a multiple of ``size_multiple`` (13 x 21 for 8) is padded to 16 x 24 by repeating its
    last row and column, as the module docstring says; guards against zero (constant) padding, which gives the
    generator black borders to blend in at the frame's right and bottom edges. Checked on what the generator
    receives (exact), and end to end with the tiny generator against the same frame padded by hand with numpy's
    edge mode (bit-identical: the generator sees the same 16 x 24 input, so the cropped outputs are equal)."""
    import numpy as np

    lr = torch.randint(0, 256, (1, 2, 13, 21, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    stub = _StubGenerator(0.0)
    with torch.no_grad():
        UInt8Upscaler(stub)(lr)
    (seen,) = stub.seen
    assert seen.shape == (1, 2, 3, 16, 24)
    by_hand = np.pad(lr.numpy(), ((0, 0), (0, 0), (0, 3), (0, 3), (0, 0)), mode="edge")
    levels = torch.round(seen * 255).to(torch.uint8).permute(0, 1, 3, 4, 2)
    assert torch.equal(levels, torch.from_numpy(by_hand))

    wrapper = UInt8Upscaler(_randomised(get_config("tiny")))
    with torch.no_grad():
        sr = wrapper(lr)
        sr_padded = wrapper(torch.from_numpy(by_hand))
    assert sr.shape == (1, 2, 52, 84, 3)
    assert torch.equal(sr, sr_padded[:, :, :52, :84])


def test_tiny_window_runs_in_seconds_on_cpu():
    g = Generator(get_config("tiny")).eval()
    x = torch.rand(1, 8, 3, 64, 64)
    start = time.perf_counter()
    with torch.no_grad():
        g(x)
    elapsed = time.perf_counter() - start
    # "Seconds, not minutes": a generous bound, this is a sanity check on the architecture's cost.
    assert elapsed < 60, f"tiny forward of 8x64x64 took {elapsed:.1f} s"


def test_configs_have_real_sizes():
    tiny = measure_cost(get_config("tiny"), (64, 64))
    base = measure_cost(get_config("base"), (64, 64))
    assert 3e5 < tiny.params < 3e6
    assert base.params > 20e6  # tens of millions
    assert base.gflops_per_frame > 10 * tiny.gflops_per_frame > 0


def test_activation_bytes_is_the_peak_of_live_tensors():
    """The engine-profile estimate: linear in the batch, at least the largest activation (the decoder's conv at twice
    the LR size), well below every activation kept (tensors are freed after their last use), the same on real
    tensors as on the meta device."""
    from vggx.generator.flops import _PeakMemory

    cfg = get_config("tiny")
    one = activation_bytes(cfg, (64, 96), batch=1, window=4)
    assert activation_bytes(cfg, (64, 96), batch=3, window=4) == pytest.approx(3 * one, rel=1e-3)  # + shared grids
    assert activation_bytes(cfg, (64, 96), batch=1, window=4, dtype=torch.float32) > one
    assert activation_bytes(cfg, (60, 90), batch=1, window=4) == one  # padded to size_multiple 8 like the graph
    widest = max(cfg.attention_widths)
    assert one >= 4 * widest * (2 * 64) * (2 * 96) * 2  # [T, C, 2h, 2w] FP16 on the way up
    hits = activation_bytes.cache_info().hits  # asked again (the export, for the profile it picked): not traced again
    assert activation_bytes(cfg, (64, 96), batch=1, window=4) == one and activation_bytes.cache_info().hits == hits + 1

    class Total(_PeakMemory):  # every tensor made, none freed
        def _free(self, key, size):  # its id is free again (a later tensor may take it: counted too); its bytes stay
            self._tracked.discard(key)

    with torch.device("meta"):
        model, lr = Generator(cfg).eval().half(), torch.empty(1, 4, 3, 64, 96, dtype=torch.float16)
    with torch.inference_mode(), Total() as total:
        model(lr)
    assert one < total.peak / 2
    model, lr, real = _randomised(cfg), torch.rand(1, 3, 3, 16, 24), _PeakMemory()
    with torch.inference_mode(), real:
        model(lr)
    assert real.peak == activation_bytes(cfg, (16, 24), window=3, dtype=torch.float32)


def test_config_validation_and_json_round_trip():
    cfg = get_config("base")
    assert GeneratorConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="unknown config"):
        get_config("huge")
    with pytest.raises(ConfigError, match="HR decoder levels"):
        GeneratorConfig(name="x", scale=8)
    with pytest.raises(ConfigError, match="unknown generator config fields"):
        GeneratorConfig.from_json('{"name": "x", "bogus": 1}')


def test_flop_count_includes_the_custom_ops():
    """The count is the convolutions' plus flow_warp's and temporal_attention's formulas (FlopCounterMode looks its
    custom mapping up by op packet: keyed by ``.default`` overloads the custom ops counted nothing)."""
    from torch.utils.flop_counter import FlopCounterMode

    from vggx.generator.flops import _on_meta

    cfg, t, h, w = get_config("tiny"), 3, 16, 16
    model, lr = _on_meta(cfg, (h, w), 1, t, torch.float32)
    aten_only = FlopCounterMode(display=False)
    with aten_only, torch.no_grad():
        model(lr)
    # flow_warp: b*h*w*(8c + 10) per call. The flow pyramid warps its 2(t-1) frame pairs (c = 3) at every level
    # but the coarsest (1/4 and 1/2 of LR, and LR); each propagation branch warps its hidden state t-1 times.
    warp = sum(2 * (t - 1) * (h >> k) * (w >> k) * (3 * 8 + 10) for k in range(cfg.flow_levels - 1))
    warp += 2 * (t - 1) * h * w * (cfg.prop_channels * 8 + 10)
    # temporal_attention: h*w*4*t*t*c per block: decoder widths 32 at LR, 48 at LR/2, then 16 at 2x LR
    attn = sum(4 * t * t * c * hh * ww for c, hh, ww in ((32, h, w), (48, h // 2, w // 2), (16, 2 * h, 2 * w)))
    assert cfg.enc_channels == (32, 48, 64) and cfg.hr_channels == (16,)
    cost = measure_cost(cfg, (h, w), t)
    assert cost.flops_per_window == aten_only.get_total_flops() + warp + attn
    assert warp > 0 and attn > 0


@pytest.mark.parametrize(("changes", "match"), [
    ({"enc_channels": ()}, "enc_channels must have at least one level"),
    ({"enc_channels": (32, 0)}, "enc_channels must be a list of channel counts >= 1"),
    ({"hr_channels": 16}, "hr_channels must be a list of channel counts >= 1"),
    ({"flow_channels": (24, -1)}, "flow_channels must be a list"),
    ({"prop_channels": -1}, "prop_channels must be >= 1, got -1"),
    ({"prop_blocks": -1}, "prop_blocks must be >= 0"),
    ({"flow_levels": 0}, "flow_levels must be >= 1"),
    ({"attn_heads": 0}, "attn_heads must be >= 1"),
    ({"window": 0}, "window must be >= 1"),
    ({"window": "8"}, "window must be an integer, got '8'"),
    ({"window": True}, "window must be an integer"),
    ({"scale": 4.0}, "scale must be an integer, got 4.0"),
    ({"scale": 2, "hr_channels": ()}, "scale must be a power of two >= 4"),
    ({"scale": 6}, "scale must be a power of two >= 4"),
    ({"scale": 0}, "scale must be >= 1"),
    ({"hr_channels": ()}, "scale 4 needs 1 HR decoder levels"),
    ({"min_size": (16, 16, 16)}, r"min_size must be an \(h, w\) pair"),
    ({"max_size": (8, 8.5)}, r"max_size must be an \(h, w\) pair"),
    ({"min_size": (0, 16)}, r"min_size must be an \(h, w\) pair of integers >= 1"),
    ({"min_size": (4000, 4000)}, r"min_size \(4000, 4000\) exceeds max_size \(1088, 1920\)"),
    ({"max_size": (8, 8)}, r"min_size \(16, 16\) exceeds max_size \(8, 8\)"),
    ({"name": ""}, "name must be a non-empty string"),
])
def test_config_rejects_values_the_model_cannot_be_built_with(changes, match):
    with pytest.raises(ConfigError, match=match):
        get_config("tiny").replace(**changes)


def test_config_takes_lists_as_tuples_and_the_smallest_valid_configs_build():
    cfg = GeneratorConfig(name="x", enc_channels=[16], hr_channels=[8], min_size=[8, 8], flow_channels=[])
    assert cfg.enc_channels == (16,) and cfg.hr_channels == (8,) and cfg.min_size == (8, 8) and hash(cfg)
    assert GeneratorConfig.from_json(cfg.to_json()) == cfg
    x8 = GeneratorConfig(name="x8", scale=8, hr_channels=(16, 16), prop_blocks=0, flow_levels=1)
    with torch.no_grad():
        assert Generator(x8)(torch.rand(1, 2, 3, 8, 8)).shape == (1, 2, 3, 64, 64)
        assert Generator(cfg)(torch.rand(1, 2, 3, 8, 8)).shape == (1, 2, 3, 32, 32)
    with pytest.raises(ConfigError, match="a JSON object expected, got list"):
        GeneratorConfig.from_json("[1, 2]")
