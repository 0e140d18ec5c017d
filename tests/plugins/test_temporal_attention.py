"""``vggx::temporal_attention``: the reference's semantics, and the Triton kernel against it."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from vggx.plugins import temporal_attention, temporal_attention_reference
from vggx.plugins.launch import attention_tile
from vggx.plugins.temporal_attention import launch_temporal_attention

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs OpenAI Triton")


def _qkv(gen, n, t, c, h, w, dtype=torch.float32, scale=1.0):
    return (torch.randn(n, t, 3 * c, h, w, generator=gen) * scale).to(dtype)


class TestReference:
    def test_equals_per_pixel_sdpa(self, gen):
        n, t, c, h, w, heads = 2, 5, 12, 3, 4, 3
        qkv = _qkv(gen, n, t, c, h, w)
        d = c // heads
        # (n, t, 3, heads, d, h, w) -> (3, n, h, w, heads, t, d)
        x = qkv.reshape(n, t, 3, heads, d, h, w).permute(2, 0, 5, 6, 3, 1, 4)
        sdpa = F.scaled_dot_product_attention(x[0], x[1], x[2])  # (n, h, w, heads, t, d)
        expected = sdpa.permute(0, 4, 3, 5, 1, 2).reshape(n, t, c, h, w)
        torch.testing.assert_close(temporal_attention_reference(qkv, heads), expected, atol=1e-5, rtol=1e-5)

    def test_permuting_frames_permutes_outputs(self, gen):
        qkv = _qkv(gen, 1, 6, 8, 2, 3)
        perm = torch.tensor([3, 0, 5, 1, 4, 2])
        out = temporal_attention_reference(qkv, 2)
        torch.testing.assert_close(temporal_attention_reference(qkv[:, perm], 2), out[:, perm])

    def test_pixels_are_independent(self, gen):
        qkv = _qkv(gen, 1, 4, 8, 3, 3)
        out = temporal_attention_reference(qkv, 2)
        changed = qkv.clone()
        changed[..., 1, 1] += 5.0
        out2 = temporal_attention_reference(changed, 2)
        keep = torch.ones(3, 3, dtype=torch.bool)
        keep[1, 1] = False
        torch.testing.assert_close(out2[..., keep], out[..., keep], atol=0, rtol=0)
        assert not torch.allclose(out2[..., 1, 1], out[..., 1, 1])

    def test_rejects_heads_not_dividing_c(self):
        with pytest.raises(ValueError, match="heads=5 must divide C=8"):
            temporal_attention_reference(torch.zeros(1, 2, 24, 1, 1), 5)

    @pytest.mark.parametrize("heads", [True, 2.0])
    def test_rejects_heads_that_are_not_an_int(self, heads):
        """True passed for 1 head; 2.0 failed deep in a reshape with an unrelated TypeError."""
        with pytest.raises(ValueError, match=f"heads must be an int, got {heads!r}"):
            temporal_attention_reference(torch.zeros(1, 2, 24, 1, 1), heads)


    def test_rejects_integer_qkv(self):
        with pytest.raises(ValueError, match=r"qkv must be a float tensor, got torch\.int32"):
            temporal_attention_reference(torch.zeros(1, 2, 3, 1, 1, dtype=torch.int32), 1)

    def test_rejects_no_channels(self):
        with pytest.raises(ValueError, match="3\\*C with C >= 1, got 0"):
            temporal_attention_reference(torch.zeros(1, 2, 0, 1, 1), 1)

    def test_float64_keeps_float64_precision(self):
        qkv = torch.zeros(1, 2, 3, 1, 1, dtype=torch.float64)
        qkv[0, :, 2, 0, 0] = torch.tensor([1.0, 1.0 + 1e-12], dtype=torch.float64)  # v; equal scores
        out = temporal_attention_reference(qkv, 1)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out.flatten(), torch.full((2,), 1 + 0.5e-12, dtype=torch.float64),
                                   atol=1e-16, rtol=0)


# (n, t, c, h, w, heads): non-power-of-two T, C, H, W; T = 1 and the T = 32 limit; d up to 64.
SHAPES = [
    (1, 1, 4, 2, 3, 1),
    (2, 3, 6, 5, 7, 2),
    (1, 8, 16, 4, 9, 4),
    (1, 13, 12, 3, 5, 1),
    (2, 7, 10, 1, 11, 5),
    (1, 32, 8, 2, 3, 2),
    (1, 4, 64, 2, 2, 1),
]


@needs_triton
class TestKernel:
    @pytest.mark.parametrize("mma", [False, True], ids=["fma", "mma"])
    @pytest.mark.parametrize(("n", "t", "c", "h", "w", "heads"), SHAPES)
    def test_fp32_matches_reference(self, gen, n, t, c, h, w, heads, mma):
        qkv = _qkv(gen, n, t, c, h, w, scale=2.0)
        out = launch_temporal_attention(qkv, heads, tile=attention_tile(t, c // heads, mma=mma))
        torch.testing.assert_close(out, temporal_attention_reference(qkv, heads), atol=1e-5, rtol=0)

    @pytest.mark.parametrize("mma", [False, True], ids=["fma", "mma"])
    @pytest.mark.parametrize(("n", "t", "c", "h", "w", "heads"), SHAPES[1:6])
    def test_fp16_matches_fp32_math_on_fp16_inputs(self, gen, n, t, c, h, w, heads, mma):
        qkv = _qkv(gen, n, t, c, h, w, torch.float16, scale=2.0)
        out = launch_temporal_attention(qkv, heads, tile=attention_tile(t, c // heads, mma=mma))
        assert out.dtype == torch.float16
        expected = temporal_attention_reference(qkv.float(), heads)
        torch.testing.assert_close(out.float(), expected, atol=2e-3, rtol=2e-3)

    def test_random_shapes(self, gen):
        for _ in range(3):
            t, heads, d, h, w = (int(v) for v in torch.randint(1, 12, (5,), generator=gen))
            qkv = _qkv(gen, 2, t, heads * d, h, w)
            expected = temporal_attention_reference(qkv, heads)
            torch.testing.assert_close(launch_temporal_attention(qkv, heads), expected, atol=1e-5, rtol=0)

    @pytest.mark.parametrize(("t", "spt", "warps", "ppt", "unroll"),
                             [(8, 16, 1, 2, 1), (12, 128, 2, 1, 3), (16, 32, 1, 1, None), (5, 64, 1, 4, 2)])
    def test_other_tiles_agree(self, gen, t, spt, warps, ppt, unroll):
        """The benchmark's sweep launches other tiles: each still covers every query, pixel and channel."""
        from vggx.plugins.launch import attention_tile

        qkv = _qkv(gen, 2, t, 8, 5, 43)
        tile = attention_tile(t, 4, scores_per_thread=spt, num_warps=warps, pixels_per_thread=ppt, unroll=unroll)
        torch.testing.assert_close(launch_temporal_attention(qkv, 2, tile=tile),
                                   temporal_attention_reference(qkv, 2), atol=1e-5, rtol=0)

    @pytest.mark.parametrize(("t", "half", "q_last"), [(9, True, 1), (10, True, 2), (11, True, 4), (9, False, 1)])
    @pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "misaligned"])
    def test_ragged_last_query_block_agrees(self, gen, t, half, q_last, offset):
        """``ragged`` tiles: the last query block's programs compute only the rows they hold (``Q_LAST``, 1-4 of 8
        or 4), in the JIT kernel and in both copies of the plugin's (run-time alignment check)."""
        import dataclasses

        from vggx.plugins.launch import attention_config, attention_tile
        from vggx.plugins.temporal_attention import TEMPORAL_ATTENTION_KERNEL

        dtype = torch.float16 if half else torch.float32
        tol = 2e-3 if half else 1e-5
        n, c, h, w, heads = 2, 8, 4, 10, 2
        qkv = _qkv(gen, n, t, c, h, w, dtype, scale=2.0)
        expected = temporal_attention_reference(qkv.float(), heads)
        tile = dataclasses.replace(attention_tile(t, c // heads, half=half, mma=False), ragged=True)
        assert attention_config(n, t, c, h, w, heads, tile=tile, half=half).constexprs["Q_LAST"] == q_last
        torch.testing.assert_close(launch_temporal_attention(qkv, heads, tile=tile).float(), expected, atol=tol,
                                   rtol=0 if not half else tol)
        buf = torch.empty(qkv.numel() + offset, dtype=dtype)
        src = buf[offset:].view(qkv.shape).copy_(qkv)
        out = torch.full((n * t * c * h * w + offset,), float("nan"), dtype=dtype)[offset:].view(n, t, c, h, w)
        cfg = attention_config(n, t, c, h, w, heads, tile=tile, half=half, sizes_known=False)
        assert cfg.constexprs["ALIGN_CHECK"] and cfg.constexprs["Q_LAST"] == q_last
        TEMPORAL_ATTENTION_KERNEL.for_device(src.device)[cfg.grid](
            src, t, c, h * w, out, num_warps=cfg.num_warps, **cfg.constexprs)
        torch.testing.assert_close(out.float(), expected, atol=tol, rtol=0 if not half else tol)

    @pytest.mark.parametrize(("t", "q_last"), [(9, 1), (10, 2)])
    def test_shipped_fp16_launch_is_ragged_at_9_and_10_frames(self, gen, t, q_last):
        """FP16 at T = 9-10 ships a ragged last query block (1-2 rows of 8): the default launch computes it so."""
        from vggx.plugins.launch import attention_config

        n, c, h, w, heads = 1, 8, 3, 11, 2
        assert attention_config(n, t, c, h, w, heads, half=True).constexprs["Q_LAST"] == q_last
        qkv = _qkv(gen, n, t, c, h, w, torch.float16, scale=2.0)
        torch.testing.assert_close(launch_temporal_attention(qkv, heads).float(),
                                   temporal_attention_reference(qkv.float(), heads), atol=2e-3, rtol=2e-3)

    @pytest.mark.parametrize("stages", [1, 3])
    def test_int32_offsets_agree(self, gen, stages):
        """``int32`` tiles (per-thread form): offsets within a batch item in int32; same results."""
        import dataclasses

        from vggx.plugins.launch import attention_config, attention_tile

        qkv = _qkv(gen, 2, 6, 8, 5, 43)
        tile = dataclasses.replace(attention_tile(6, 4, mma=False), stages=stages, int32=True)
        assert attention_config(2, 6, 8, 5, 43, 2, tile=tile).constexprs["OFF32"]
        torch.testing.assert_close(launch_temporal_attention(qkv, 2, tile=tile),
                                   temporal_attention_reference(qkv, 2), atol=1e-5, rtol=0)

    @pytest.mark.parametrize(("h", "w", "offset"), [(4, 10, 0), (4, 10, 1), (3, 5, 0)],
                             ids=["aligned", "misaligned-pointer", "hw-not-multiple-of-8"])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    def test_the_plugins_alignment_checked_copies_agree(self, gen, h, w, offset, dtype):
        """The TensorRT plugin's per-thread kernel (``ALIGN_CHECK``: its H and W dynamic) picks at run time
        between the copy hinted for 16-byte-aligned rows of 8 pixels and the plain one: both equal the
        reference (here through the interpreter: aligned tensors with H*W = 40 take the hinted copy)."""
        from vggx.plugins.launch import attention_config, attention_tile
        from vggx.plugins.temporal_attention import TEMPORAL_ATTENTION_KERNEL

        n, t, c, heads = 2, 6, 8, 2
        qkv = _qkv(gen, n, t, c, h, w, dtype, scale=2.0)
        buf = torch.empty(qkv.numel() + offset, dtype=dtype)
        src = buf[offset:].view(qkv.shape).copy_(qkv)  # starts `offset` elements into its buffer
        out_buf = torch.full((n * t * c * h * w + offset,), float("nan"), dtype=dtype)
        out = out_buf[offset:].view(n, t, c, h, w)
        tile = attention_tile(t, c // heads, half=dtype == torch.float16)
        cfg = attention_config(n, t, c, h, w, heads, tile=tile, sizes_known=False)
        assert cfg.constexprs["ALIGN_CHECK"] and not cfg.constexprs["OFF32"] and not tile.mma
        TEMPORAL_ATTENTION_KERNEL.for_device(src.device)[cfg.grid](
            src, t, c, h * w, out, num_warps=cfg.num_warps, **cfg.constexprs)
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out.float(), temporal_attention_reference(qkv.float(), heads), atol=tol,
                                   rtol=0 if dtype == torch.float32 else tol)

    def test_a_register_cap_launches_and_agrees(self, gen):
        """A tile's ``max_registers`` goes to the launch (Triton's ``maxnreg``; the interpreter ignores it)."""
        import dataclasses

        from vggx.plugins.launch import attention_config, attention_tile

        qkv = _qkv(gen, 1, 8, 8, 5, 7)
        tile = dataclasses.replace(attention_tile(8, 4), max_registers=128)
        assert attention_config(1, 8, 8, 5, 7, 2, tile=tile).max_registers == 128
        torch.testing.assert_close(launch_temporal_attention(qkv, 2, tile=tile),
                                   temporal_attention_reference(qkv, 2), atol=1e-5, rtol=0)

    @pytest.mark.parametrize("t", [3, 6, 8, 12])
    def test_t_compiled_in_or_read_at_run_time_agree(self, gen, t):
        """The shipped per-thread tile compiles T in (``FRAMES``: the masks fold away, and the padding keys' work
        where T is not a power of two); read at run time (``fixed_t=False``) the kernel gives the same, both the
        reference."""
        import dataclasses

        from vggx.plugins.launch import attention_config, attention_tile

        qkv = _qkv(gen, 2, t, 8, 3, 11, scale=2.0)
        tile = attention_tile(t, 4)
        assert attention_config(2, t, 8, 3, 11, 2, tile=tile).constexprs["FRAMES"] == t
        runtime = dataclasses.replace(tile, fixed_t=False)
        assert attention_config(2, t, 8, 3, 11, 2, tile=runtime).constexprs["FRAMES"] == 0
        expected = temporal_attention_reference(qkv, 2)
        for each in (tile, runtime):
            torch.testing.assert_close(launch_temporal_attention(qkv, 2, tile=each), expected, atol=1e-5, rtol=0)

    def test_int32_offsets_only_where_they_fit(self):
        import dataclasses

        from vggx.plugins.launch import attention_config, attention_tile

        tile = dataclasses.replace(attention_tile(16, 16, mma=False), int32=True)
        assert attention_config(1, 16, 64, 360, 640, 4, tile=tile).constexprs["OFF32"]  # 707 M elements
        assert not attention_config(1, 16, 512, 540, 960, 8, tile=tile).constexprs["OFF32"]  # 12.7 G: int64
        assert not attention_config(1, 16, 64, 1, 1, 4, tile=tile, sizes_known=False).constexprs["OFF32"]
        assert attention_config(1, 16, 64, 360, 640, 4).constexprs["OFF32"]  # shipped per-thread tile: int32
        assert attention_config(1, 16, 64, 360, 640, 4, half=True).constexprs["OFF32"]  # FP16 per-thread too
        assert not attention_config(1, 17, 64, 360, 640, 4, half=True).constexprs["OFF32"]  # tensor-core: int64

    @pytest.mark.parametrize(("walk", "stages"), [(2, 1), (3, 1), (4, 3)])
    def test_tensor_core_form_walking_blocks_agrees(self, gen, walk, stages):
        """``walk`` pixel blocks per program (the last program's partly past the image): every pixel once."""
        import dataclasses

        from vggx.plugins.launch import attention_config, attention_tile

        qkv = _qkv(gen, 1, 9, 8, 5, 43)
        tile = dataclasses.replace(attention_tile(9, 4, mma=True), walk=walk, stages=stages)
        assert attention_config(1, 9, 8, 5, 43, 2, tile=tile).grid[0] == -(-215 // (tile.p_block * walk))
        torch.testing.assert_close(launch_temporal_attention(qkv, 2, tile=tile),
                                   temporal_attention_reference(qkv, 2), atol=1e-5, rtol=0)

    @pytest.mark.parametrize("offset", [0, 1])
    def test_tensor_core_form_aligned_and_misaligned_tensors(self, gen, offset):
        """The kernel checks alignment at run time (the TensorRT PTX cannot know it): HW a multiple of 8 and
        16-byte-aligned tensors take the hinted copy, a tensor starting one element in the other."""
        from vggx.plugins.launch import attention_tile

        qkv = _qkv(gen, 1, 12, 8, 4, 8)  # HW = 32
        buf = torch.empty(qkv.numel() + offset)
        view = buf[offset:].view(qkv.shape)
        view.copy_(qkv)
        out = torch.empty(1 * 12 * 8 * 4 * 8 + offset)[offset:].view(1, 12, 8, 4, 8)
        launch_temporal_attention(view, 2, out=out, tile=attention_tile(12, 4, mma=True))
        assert (view.data_ptr() % 16 == 0) == (offset == 0)
        torch.testing.assert_close(out, temporal_attention_reference(qkv, 2), atol=1e-5, rtol=0)

    def test_walk_needs_the_tensor_core_form(self):
        import dataclasses

        from vggx.plugins.launch import attention_config, attention_tile

        with pytest.raises(ValueError, match="tensor-core form"):
            attention_config(1, 8, 8, 5, 43, 2, tile=dataclasses.replace(attention_tile(8, 4, mma=False), walk=2))

    @pytest.mark.parametrize("stages", [2, 3])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    def test_pipelined_tiles_agree(self, gen, stages, dtype):
        """``stages`` (software-pipelined loads) changes how the tiles arrive, not what is computed."""
        import dataclasses

        from vggx.plugins.launch import attention_tile

        qkv = _qkv(gen, 1, 7, 12, 6, 23).to(dtype)
        tile = dataclasses.replace(attention_tile(7, 4, mma=False), stages=stages)
        out = launch_temporal_attention(qkv, 3, tile=tile)
        torch.testing.assert_close(out.float(), temporal_attention_reference(qkv.float(), 3),
                                   atol=1e-5 if dtype == torch.float32 else 2e-3, rtol=0)

    def test_op_implementation_takes_channels_last_qkv(self, gen):
        """A channels-last convolution's output, viewed as (n, t, 3c, h, w), is copied to the kernel's layout."""
        from vggx.plugins.temporal_attention import temporal_attention_triton

        qkv = _qkv(gen, 2, 5, 8, 3, 7, scale=2.0)
        cl = qkv.reshape(10, 24, 3, 7).to(memory_format=torch.channels_last).view(2, 5, 24, 3, 7)
        out = temporal_attention_triton(cl, 2)
        assert out.is_contiguous()
        torch.testing.assert_close(out, temporal_attention_reference(qkv, 2), atol=1e-5, rtol=0)

    @pytest.mark.parametrize("mma", [False, True], ids=["fma", "mma"])
    def test_large_scores_do_not_overflow(self, gen, mma):
        qkv = _qkv(gen, 1, 9, 4, 2, 2, scale=30.0)
        out = launch_temporal_attention(qkv, 1, tile=attention_tile(9, 4, mma=mma))
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, temporal_attention_reference(qkv, 1), atol=1e-4, rtol=1e-5)

    def test_rejects_an_out_on_another_device(self):
        """On CUDA, another GPU's out was written through a pointer of the wrong device (an illegal address)."""
        with pytest.raises(ValueError, match=r"out must be a contiguous torch.float32 \(1, 2, 2, 1, 1\) on cpu"):
            launch_temporal_attention(torch.zeros(1, 2, 6, 1, 1), 1, out=torch.empty(1, 2, 2, 1, 1, device="meta"))

    def test_rejects_more_than_32_frames(self):
        with pytest.raises(ValueError, match=r"T must be in 1\.\.32 frames, got T=33"):
            launch_temporal_attention(torch.zeros(1, 33, 6, 1, 1), 1)

    def test_rejects_head_dim_over_64(self):
        with pytest.raises(ValueError, match=r"head dim C/heads must be in 1\.\.64, got 65"):
            launch_temporal_attention(torch.zeros(1, 2, 3 * 65, 1, 1), 1)

    def test_rejects_non_contiguous(self, gen):
        qkv = _qkv(gen, 1, 2, 2, 3, 3).transpose(3, 4)
        with pytest.raises(ValueError, match="qkv must be contiguous"):
            launch_temporal_attention(qkv, 1)


class TestCustomOp:
    def test_opcheck_fake_matches_real_layout(self, gen):
        qkv = _qkv(gen, 2, 3, 4, 5, 6)
        torch.library.opcheck(torch.ops.vggx.temporal_attention.default, (qkv, 2),
                              test_utils=("test_schema", "test_faketensor"))

    def test_op_is_reference_on_cpu_and_differentiable(self, gen):
        qkv = _qkv(gen, 1, 3, 4, 2, 2).requires_grad_(True)
        out = temporal_attention(qkv, 2)
        torch.testing.assert_close(out, temporal_attention_reference(qkv, 2))
        out.sum().backward()
        assert qkv.grad is not None and qkv.grad.shape == qkv.shape

    def test_fake_impl_gives_shape(self):
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode():
            out = torch.ops.vggx.temporal_attention(torch.empty(2, 5, 12, 3, 4), 2)
        assert out.shape == (2, 5, 4, 3, 4)
