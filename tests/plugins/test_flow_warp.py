"""``vggx::flow_warp``: the reference's semantics, and the Triton kernel against it (interpreter)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from vggx.plugins import flow_warp, flow_warp_reference
from vggx.plugins.flow_warp import launch_flow_warp

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs OpenAI Triton")


def _inputs(gen, b, c, h, w, flow_scale, dtype=torch.float32):
    x = torch.randn(b, c, h, w, generator=gen).to(dtype)
    flow = (torch.randn(b, 2, h, w, generator=gen) * flow_scale).to(dtype)
    return x, flow


class TestReference:
    # "Exact" up to the float32 rounding of grid_sample's pixel -> [-1, 1] -> pixel round trip.
    def test_zero_flow_is_identity(self, gen):
        x, _ = _inputs(gen, 2, 3, 9, 13, 0)
        torch.testing.assert_close(flow_warp_reference(x, torch.zeros(2, 2, 9, 13)), x, atol=1e-5, rtol=0)

    def test_integer_translation_is_exact_in_the_interior(self, gen):
        x, _ = _inputs(gen, 1, 4, 12, 15, 0)
        flow = torch.zeros(1, 2, 12, 15)
        flow[:, 0], flow[:, 1] = 3.0, -2.0  # sample x + 3, y - 2
        out = flow_warp_reference(x, flow)
        torch.testing.assert_close(out[..., 2:, :-3], x[..., :-2, 3:], atol=1e-5, rtol=0)
        assert torch.all(out[..., :2, :] == 0) and torch.all(out[..., :, -3:] == 0)

    def test_matches_grid_sample(self, gen):
        x, flow = _inputs(gen, 2, 3, 10, 7, 2.0)
        h, w = 10, 7
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        gx = (xs + flow[:, 0]) / (w - 1) * 2 - 1
        gy = (ys + flow[:, 1]) / (h - 1) * 2 - 1
        expected = F.grid_sample(x, torch.stack((gx, gy), -1), padding_mode="zeros", align_corners=True)
        torch.testing.assert_close(flow_warp_reference(x, flow), expected, atol=1e-5, rtol=1e-5)

    def test_rejects_mismatched_flow(self):
        with pytest.raises(ValueError, match=r"flow must be \[1, 2, 4, 5\]"):
            flow_warp_reference(torch.zeros(1, 3, 4, 5), torch.zeros(1, 2, 4, 6))


    @pytest.mark.parametrize("which", ["x", "flow"])
    def test_rejects_integer_tensors(self, which):
        x, flow = torch.zeros(1, 1, 1, 4, dtype=torch.uint8), torch.zeros(1, 2, 1, 4)
        if which == "flow":
            x, flow = x.float(), flow.int()
        with pytest.raises(ValueError, match=f"{which} must be a float tensor"):
            flow_warp_reference(x, flow)

    def test_float64_keeps_float64_precision(self):
        x = torch.full((1, 1, 1, 2), 1.0, dtype=torch.float64)
        x[..., 1] += 1e-12
        flow = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
        flow[:, 0, 0, 0] = 0.25
        out = flow_warp_reference(x, flow)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, torch.tensor([[[[1 + 0.25e-12, 1 + 1e-12]]]], dtype=torch.float64),
                                   atol=1e-15, rtol=0)


# (b, c, h, w, flow scale in pixels): odd sizes, single rows/columns, channel counts that do not
# fill the 16-channel group, flows that leave the image entirely.
SHAPES = [
    (1, 1, 1, 1, 3.0),
    (2, 3, 7, 11, 2.0),
    (3, 17, 9, 13, 40.0),
    (1, 5, 1, 19, 4.0),
    (2, 33, 6, 1, 4.0),
    (1, 4, 23, 29, 0.5),
    (2, 2, 21, 37, 1000.0),
]


@needs_triton
class TestKernel:
    @pytest.mark.parametrize(("b", "c", "h", "w", "scale"), SHAPES)
    def test_fp32_matches_reference(self, gen, b, c, h, w, scale):
        x, flow = _inputs(gen, b, c, h, w, scale)
        out = launch_flow_warp(x, flow)
        torch.testing.assert_close(out, flow_warp_reference(x, flow), atol=1e-5, rtol=0)

    @pytest.mark.parametrize(("b", "c", "h", "w", "scale"), SHAPES[1:5])
    def test_fp16_matches_fp32_math_on_fp16_inputs(self, gen, b, c, h, w, scale):
        x, flow = _inputs(gen, b, c, h, w, scale, torch.float16)
        out = launch_flow_warp(x, flow)
        assert out.dtype == torch.float16
        expected = flow_warp_reference(x.float(), flow.float())
        torch.testing.assert_close(out.float(), expected, atol=2e-3, rtol=2e-3)

    @pytest.mark.parametrize("layout", ["nchw", "channels_last"])
    @pytest.mark.parametrize(("b", "c", "h", "w", "scale"), [(2, 17, 9, 13, 4.0), (1, 5, 7, 11, 20.0),
                                                             (2, 16, 5, 7, 3.0)])
    def test_fp16_blend_is_fp32_math_rounded_once(self, gen, layout, b, c, h, w, scale):
        """FP16 I/O, FP32 math: the output is the FP32 reference on the same FP16 inputs, rounded to FP16 once.

        Guards against a blend done in FP16 (taps times weights rounded to FP16 and summed in FP16, or only the sum
        in FP16): with |x| of a few units the products round, and up to a quarter of the outputs moved by 1 to 849
        ulps (the large counts near zero), all inside the 2e-3 tolerance above. Today every value is bit-identical
        (both layouts, 17 channels past a 16-channel group, 16 for the channels-last aligned copy, flows leaving the
        image); 1 ulp is allowed for a float32 rounding difference in grid_sample turning an FP16 tie, on at most 1%
        of the values.
        """
        x = (torch.randn(b, c, h, w, generator=gen) * 4).half()
        flow = (torch.randn(b, 2, h, w, generator=gen) * scale).half()
        if layout == "channels_last":
            x = x.to(memory_format=torch.channels_last)
        out = launch_flow_warp(x, flow).contiguous()
        expected = flow_warp_reference(x.float(), flow.float()).half()
        assert out.dtype == torch.float16

        def ordered(t):  # FP16 bit patterns as integers in value order: neighbouring FP16 values differ by 1
            i = t.view(torch.int16).int()
            return torch.where(i < 0, -32768 - i, i)

        ulps = (ordered(out) - ordered(expected)).abs()
        assert int(ulps.max()) <= 1, f"{int((ulps > 1).sum())} of {ulps.numel()} values off by up to {int(ulps.max())}"
        assert float((ulps > 0).float().mean()) <= 0.01

    def test_fp16_features_with_fp32_flow(self, gen):
        x, flow = _inputs(gen, 2, 5, 8, 9, 3.0)
        out = launch_flow_warp(x.half(), flow)
        expected = flow_warp_reference(x.half().float(), flow)
        torch.testing.assert_close(out.float(), expected, atol=2e-3, rtol=2e-3)

    def test_random_shapes(self, gen):
        for _ in range(4):
            b, c, h, w = (int(v) for v in torch.randint(1, 20, (4,), generator=gen))
            x, flow = _inputs(gen, min(b, 3), c, h, w, float(max(h, w)))
            expected = flow_warp_reference(x, flow)
            torch.testing.assert_close(launch_flow_warp(x, flow), expected, atol=1e-5, rtol=0)

    @pytest.mark.parametrize(("block", "c_block", "warps"), [(256, 8, 8), (1024, 32, 4), (64, 3, 2)])
    def test_other_launch_geometries_agree(self, gen, block, c_block, warps):
        """The benchmark's sweep launches other block sizes: each still covers every pixel and channel."""
        from vggx.plugins.launch import flow_warp_config

        x, flow = _inputs(gen, 2, 37, 13, 29, 5.0)
        cfg = flow_warp_config(2, 37, 13, 29, block=block, c_block=c_block, num_warps=warps)
        torch.testing.assert_close(launch_flow_warp(x, flow, config=cfg), flow_warp_reference(x, flow),
                                   atol=1e-5, rtol=0)

    @pytest.mark.parametrize(("c_unroll", "c_stages"), [(4, 1), (1, 3), (2, 2)])
    def test_channel_loop_unrolled_or_pipelined_agrees(self, gen, c_unroll, c_stages):
        """TensorRT's tactics 2 and 3 for LINEAR features (the benchmark's ``cu4``/``cs3`` rows): the channel loop
        unrolled or pipelined, over channel groups that end early (37 channels in groups of 16)."""
        from vggx.plugins.launch import flow_warp_config

        x, flow = _inputs(gen, 2, 37, 13, 29, 5.0)
        cfg = flow_warp_config(2, 37, 13, 29, c_unroll=c_unroll, c_stages=c_stages)
        torch.testing.assert_close(launch_flow_warp(x, flow, config=cfg), flow_warp_reference(x, flow),
                                   atol=1e-5, rtol=0)

    def test_writes_into_out(self, gen):
        x, flow = _inputs(gen, 1, 2, 5, 6, 1.0)
        out = torch.full_like(x, float("nan"))
        assert launch_flow_warp(x, flow, out=out) is out
        torch.testing.assert_close(out, flow_warp_reference(x, flow), atol=1e-5, rtol=0)

    @pytest.mark.parametrize(("b", "c", "h", "w", "scale"), SHAPES)
    def test_channels_last_fp32_matches_reference(self, gen, b, c, h, w, scale):
        x, flow = _inputs(gen, b, c, h, w, scale)
        x_cl = x.to(memory_format=torch.channels_last)
        out = launch_flow_warp(x_cl, flow)
        if c > 1 and h * w > 1:
            assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
        torch.testing.assert_close(out, flow_warp_reference(x, flow), atol=1e-5, rtol=0)

    @pytest.mark.parametrize(("b", "c", "h", "w", "scale"), SHAPES[1:5])
    def test_channels_last_fp16_with_channels_last_flow(self, gen, b, c, h, w, scale):
        x, flow = _inputs(gen, b, c, h, w, scale, torch.float16)
        out = launch_flow_warp(x.to(memory_format=torch.channels_last), flow.to(memory_format=torch.channels_last))
        assert out.dtype == torch.float16
        expected = flow_warp_reference(x.float(), flow.float())
        torch.testing.assert_close(out.float(), expected, atol=2e-3, rtol=2e-3)

    @pytest.mark.parametrize(("p_block", "c_block", "warps"), [(16, 4, 1), (64, 64, 4), (32, 16, 2)])
    def test_channels_last_launch_geometries_agree(self, gen, p_block, c_block, warps):
        from vggx.plugins.launch import flow_warp_nhwc_config

        x, flow = _inputs(gen, 2, 70, 9, 23, 6.0)
        cfg = flow_warp_nhwc_config(2, 70, 9, 23, p_block=p_block, c_block=c_block, num_warps=warps)
        out = launch_flow_warp(x.to(memory_format=torch.channels_last), flow, config=cfg)
        torch.testing.assert_close(out, flow_warp_reference(x, flow), atol=1e-5, rtol=0)

    def test_unspecialised_kernel_does_not_specialise_runtime_arguments(self, gen):
        """``specialize=False`` (the benchmark's row beside the AOT PTX): every runtime argument, not the
        constexprs, is kept out of Triton's value specialisation; the results are the same."""
        from vggx.plugins.flow_warp import FLOW_WARP_KERNEL, FLOW_WARP_KERNEL_UNSPECIALIZED

        jit = FLOW_WARP_KERNEL_UNSPECIALIZED.jit()
        runtime = ["x_ptr", "flow_ptr", "C", "H", "W", "out_ptr"]
        assert [p.name for p in jit.params if p.do_not_specialize] == runtime
        assert [p.name for p in jit.params if p.do_not_specialize_on_alignment] == runtime
        assert not any(p.do_not_specialize for p in FLOW_WARP_KERNEL.jit().params)
        x, flow = _inputs(gen, 1, 5, 9, 23, 6.0)
        torch.testing.assert_close(launch_flow_warp(x, flow, specialize=False), flow_warp_reference(x, flow),
                                   atol=1e-5, rtol=0)

    @pytest.mark.parametrize(("c", "offset"), [(16, 0), (16, 1), (12, 0)])
    def test_channels_last_aligned_and_misaligned_tensors(self, gen, c, offset):
        """The channels-last kernel checks alignment at run time (the TensorRT PTX cannot know it): 16-byte
        aligned tensors with channels a multiple of 8 take the hinted copy, the rest the plain one."""
        b, h, w = 2, 9, 23
        x, flow = _inputs(gen, b, c, h, w, 6.0)
        buf = torch.empty(x.numel() + offset)
        x_cl = buf[offset:].view(b, h, w, c).permute(0, 3, 1, 2)
        x_cl.copy_(x)
        out = torch.empty(x.numel() + offset)[offset:].view(b, h, w, c).permute(0, 3, 1, 2)
        assert x_cl.is_contiguous(memory_format=torch.channels_last) and out.is_contiguous(
            memory_format=torch.channels_last)
        launch_flow_warp(x_cl, flow, out=out)
        torch.testing.assert_close(out, flow_warp_reference(x, flow), atol=1e-5, rtol=0)

    @pytest.mark.parametrize("walk", [2, 3, 4])
    def test_channels_last_walk_covers_every_block(self, gen, walk):
        """With ``walk`` blocks per program (the last program's partly past the image): every pixel once."""
        from vggx.plugins.launch import flow_warp_nhwc_config

        x, flow = _inputs(gen, 2, 12, 9, 23, 6.0)
        cfg = flow_warp_nhwc_config(2, 12, 9, 23, p_block=16, walk=walk)
        assert cfg.grid == (-(-13 // walk), 2, 1)  # 207 pixels = 13 blocks of 16
        out = torch.full_like(x, float("nan")).to(memory_format=torch.channels_last)
        launch_flow_warp(x.to(memory_format=torch.channels_last), flow, out=out, config=cfg)
        torch.testing.assert_close(out, flow_warp_reference(x, flow), atol=1e-5, rtol=0)

    @pytest.mark.parametrize(("c", "dtype"), [(20, torch.float16), (5, torch.float16), (64, torch.float32)])
    def test_tensorrt_hwc8_layout_padded_channels(self, gen, c, dtype):
        """TensorRT's HWC8 (FP16): [B, H, W, C rounded up to 8]; the kernel reads the first C channels of
        each pixel, writes them and zeros in the padding. The AOT plugin passes these very scalars."""
        from vggx.plugins.flow_warp import FLOW_WARP_NHWC_KERNEL
        from vggx.plugins.launch import flow_warp_nhwc_config, flow_warp_nhwc_scalars, hwc8_channels

        b, h, w = 2, 7, 11
        x, flow = _inputs(gen, b, c, h, w, 4.0, dtype)
        xs = hwc8_channels(c) if dtype == torch.float16 else c
        padded = torch.full((b, h, w, xs), 7.0, dtype=dtype)  # padding garbage must not leak into outputs
        padded[..., :c] = x.permute(0, 2, 3, 1)
        out = torch.full_like(padded, float("nan"))
        cfg = flow_warp_nhwc_config(b, xs, h, w)
        FLOW_WARP_NHWC_KERNEL.for_device(x.device)[cfg.grid](
            padded, flow.contiguous(), *flow_warp_nhwc_scalars(c, h, w, xs), out,
            num_warps=cfg.num_warps, **cfg.constexprs)
        expected = flow_warp_reference(x.float(), flow.float()).permute(0, 2, 3, 1)
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out[..., :c].float(), expected, atol=tol, rtol=0 if dtype == torch.float32 else tol)
        assert (out[..., c:] == 0).all()

    def test_nchw_features_with_channels_last_flow(self, gen):
        """The NCHW kernel reads flow as NCHW: a channels-last flow is refused there, and the op's CUDA
        implementation copies it (both layouts of x with both layouts of flow equal the reference)."""
        from vggx.plugins.flow_warp import flow_warp_triton

        x, flow = _inputs(gen, 2, 5, 6, 7, 2.0)
        flow_cl = flow.to(memory_format=torch.channels_last)
        with pytest.raises(ValueError, match="flow must be contiguous"):
            launch_flow_warp(x, flow_cl)
        for xx in (x, x.to(memory_format=torch.channels_last)):
            for ff in (flow, flow_cl):
                torch.testing.assert_close(flow_warp_triton(xx, ff), flow_warp_reference(x, flow), atol=1e-5, rtol=0)

    @pytest.mark.parametrize("h", [1, 5])
    def test_a_one_pixel_wide_flow_view_with_any_w_stride(self, gen, h):
        """W == 1: torch calls a flow view contiguous whatever its W stride says (here 5, a transposed [.., 1, 5]);
        the channels-last kernel steps by the H stride there (it read flow 5 apart: off by 2.27)."""
        from vggx.plugins.flow_warp import flow_warp_triton

        x = torch.randn(2, 4, h, 1, generator=gen).to(memory_format=torch.channels_last)
        flow = (torch.randn(2, 2, 1, h, generator=gen) * 2).permute(0, 1, 3, 2)
        assert flow.is_contiguous() and flow.stride(3) == h
        want = flow_warp_reference(x, flow.contiguous())
        torch.testing.assert_close(flow_warp_triton(x, flow), want, atol=1e-5, rtol=0)
        torch.testing.assert_close(launch_flow_warp(x, flow), want, atol=1e-5, rtol=0)

    def test_custom_op_keeps_channels_last(self, gen):
        """The CUDA implementation of the op takes either layout (here its body, run on CPU tensors)."""
        from vggx.plugins.flow_warp import flow_warp_triton

        x, flow = _inputs(gen, 2, 8, 6, 7, 2.0)
        out = flow_warp_triton(x.to(memory_format=torch.channels_last), flow)
        assert out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out, flow_warp_reference(x, flow), atol=1e-5, rtol=0)
        strided = x.transpose(2, 3).contiguous().transpose(2, 3)  # neither layout: copied to NCHW
        torch.testing.assert_close(flow_warp_triton(strided, flow), flow_warp_reference(x, flow), atol=1e-5, rtol=0)

    def test_rejects_non_contiguous(self, gen):
        x, flow = _inputs(gen, 1, 2, 5, 6, 1.0)
        with pytest.raises(ValueError, match="x must be contiguous"):
            launch_flow_warp(x.transpose(2, 3).contiguous().transpose(2, 3), flow)

    def test_rejects_other_dtypes(self):
        with pytest.raises(ValueError, match=r"float32 or float16, got torch\.float64"):
            launch_flow_warp(torch.zeros(1, 1, 2, 2, dtype=torch.float64), torch.zeros(1, 2, 2, 2))


class TestCustomOp:
    def test_op_is_reference_on_cpu_and_differentiable(self, gen):
        x, flow = _inputs(gen, 1, 2, 6, 7, 1.5)
        x.requires_grad_(True)
        flow.requires_grad_(True)
        out = flow_warp(x, flow)
        torch.testing.assert_close(out, flow_warp_reference(x, flow))
        out.square().sum().backward()
        assert x.grad is not None and flow.grad is not None

    @pytest.mark.parametrize("channels_last", [False, True])
    def test_opcheck_fake_matches_real_layout(self, gen, channels_last):
        """torch.compile traces with the fake implementation: shapes and strides must match the real one."""
        x, flow = _inputs(gen, 2, 5, 6, 7, 1.5)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        torch.library.opcheck(torch.ops.vggx.flow_warp.default, (x, flow),
                              test_utils=("test_schema", "test_faketensor"))

    def test_fake_impl_gives_shape(self):
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode():
            out = torch.ops.vggx.flow_warp(torch.empty(2, 3, 4, 5), torch.empty(2, 2, 4, 5))
        assert out.shape == (2, 3, 4, 5)


def test_ops_compile_with_inductor(tmp_path, monkeypatch):
    """torch.compile traces the ops with their fake implementations and checks the real outputs'
    strides against them: a model mixing both ops and layouts compiles and equals eager."""
    from vggx.plugins import temporal_attention

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # no stale compiled graphs

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 12, 3, padding=1)

        def forward(self, x, flow):
            y = flow_warp(self.conv(x), flow)
            qkv = y.reshape(1, 2, 12, *y.shape[-2:])
            return temporal_attention(qkv, 2).reshape(2, 4, *y.shape[-2:]) + y[:, :4]

    gen = torch.Generator().manual_seed(0)
    model = Tiny().eval()
    x, flow = torch.randn(2, 4, 6, 7, generator=gen), torch.randn(2, 2, 6, 7, generator=gen) * 2
    compiled = torch.compile(model, dynamic=False)
    with torch.no_grad():
        for inp in (x, x.to(memory_format=torch.channels_last)):
            torch.testing.assert_close(compiled(inp, flow), model(inp, flow), atol=1e-5, rtol=1e-5)
