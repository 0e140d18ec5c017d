"""GPU checks: compiled kernels, the CUDA custom ops, and the AOT PTX launched as TensorRT would.

Skipped with the reason on machines without CUDA (and without CuPy / TensorRT for those tests).
The AOT test loads the very PTX the TensorRT plugin embeds, with CuPy, and launches it with the
AOT grid/block/shared memory and the argument order TensorRT uses (inputs, int32 scalars, outputs).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from vggx.plugins import flow_warp, flow_warp_reference, temporal_attention, temporal_attention_reference
from vggx.plugins.flow_warp import launch_flow_warp
from vggx.plugins.launch import attention_tile
from vggx.plugins.temporal_attention import launch_temporal_attention

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs OpenAI Triton"),
]

FLOW_SHAPES = [(2, 3, 7, 11), (1, 64, 45, 80), (3, 17, 33, 65), (8, 64, 180, 320)]
ATTN_SHAPES = [(1, 8, 64, 36, 64, 4), (2, 16, 64, 9, 17, 4), (1, 13, 24, 5, 7, 3), (1, 32, 128, 4, 8, 2)]


def _flow_inputs(shape, dtype, scale=8.0, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    b, c, h, w = shape
    x = torch.randn(b, c, h, w, device="cuda", generator=g).to(dtype)
    flow = (torch.randn(b, 2, h, w, device="cuda", generator=g) * scale).to(dtype)
    return x, flow


def _qkv(shape, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    n, t, c, h, w, _ = shape
    return (torch.randn(n, t, 3 * c, h, w, device="cuda", generator=g) * 2).to(dtype)


class TestKernelsOnGpu:
    @pytest.mark.parametrize("shape", FLOW_SHAPES)
    def test_flow_warp_fp32(self, shape):
        x, flow = _flow_inputs(shape, torch.float32)
        torch.testing.assert_close(launch_flow_warp(x, flow), flow_warp_reference(x, flow), atol=1e-5, rtol=0)

    @pytest.mark.parametrize("shape", FLOW_SHAPES)
    def test_flow_warp_fp16(self, shape):
        x, flow = _flow_inputs(shape, torch.float16)
        expected = flow_warp_reference(x.float(), flow.float())
        torch.testing.assert_close(launch_flow_warp(x, flow).float(), expected, atol=2e-3, rtol=2e-3)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    @pytest.mark.parametrize("shape", FLOW_SHAPES)
    def test_flow_warp_channels_last(self, shape, dtype):
        x, flow = _flow_inputs(shape, dtype)
        out = launch_flow_warp(x.to(memory_format=torch.channels_last), flow)
        expected = flow_warp_reference(x.float(), flow.float())
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out.float(), expected, atol=tol, rtol=0 if dtype == torch.float32 else tol)
        assert out.is_contiguous(memory_format=torch.channels_last)

    @pytest.mark.parametrize("mma", [False, True], ids=["fma", "mma"])
    @pytest.mark.parametrize("shape", ATTN_SHAPES)
    def test_attention_fp32(self, shape, mma):
        qkv = _qkv(shape, torch.float32)
        _, t, c, _, _, heads = shape
        expected = temporal_attention_reference(qkv, heads)
        out = launch_temporal_attention(qkv, heads, tile=attention_tile(t, c // heads, mma=mma))
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)

    @pytest.mark.parametrize("mma", [False, True], ids=["fma", "mma"])
    @pytest.mark.parametrize("shape", ATTN_SHAPES)
    def test_attention_fp16(self, shape, mma):
        qkv = _qkv(shape, torch.float16)
        _, t, c, _, _, heads = shape
        expected = temporal_attention_reference(qkv.float(), heads)
        out = launch_temporal_attention(qkv, heads, tile=attention_tile(t, c // heads, mma=mma))
        torch.testing.assert_close(out.float(), expected, atol=2e-3, rtol=2e-3)

    @pytest.mark.parametrize("dtype", [torch.float16])
    def test_flow_warp_unspecialised(self, dtype):
        x, flow = _flow_inputs((2, 16, 37, 53), dtype)
        out = launch_flow_warp(x, flow, specialize=False)
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out.float(), flow_warp_reference(x.float(), flow.float()), atol=tol,
                                   rtol=0 if dtype == torch.float32 else tol)

    @pytest.mark.parametrize("walk", [2])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    def test_flow_warp_channels_last_walk(self, dtype, walk):
        """The benchmark's channels-last launches with several pixel blocks per program."""
        from vggx.plugins.launch import flow_warp_nhwc_config

        x, flow = _flow_inputs((2, 64, 37, 53), dtype)
        cfg = flow_warp_nhwc_config(2, 64, 37, 53, walk=walk)
        out = launch_flow_warp(x.to(memory_format=torch.channels_last), flow, config=cfg)
        expected = flow_warp_reference(x.float(), flow.float())
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out.float(), expected, atol=tol, rtol=0 if dtype == torch.float32 else tol)

    @pytest.mark.parametrize(("walk", "stages"), [(2, 1), (4, 2), (3, 3)])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    @pytest.mark.parametrize("shape", ATTN_SHAPES[1:2])
    def test_attention_mma_walk(self, shape, dtype, walk, stages):
        """The tensor-core form looping over several pixel blocks per program, pipelined with stages >= 2 (the
        benchmark's ``mma,loopN,sM`` rows, TensorRT's tactic 3); the last program's blocks partly past the image."""
        import dataclasses

        qkv = _qkv(shape, dtype)
        _, t, c, _, _, heads = shape
        tile = dataclasses.replace(attention_tile(t, c // heads, mma=True, half=dtype == torch.float16), walk=walk,
                                   stages=stages)
        out = launch_temporal_attention(qkv, heads, tile=tile)
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out.float(), temporal_attention_reference(qkv.float(), heads), atol=tol, rtol=tol)

    @pytest.mark.parametrize(("stages", "int32"), [(1, False), (3, False), (4, True), (5, True)])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    @pytest.mark.parametrize("shape", ATTN_SHAPES[1:2])
    def test_attention_pipelined(self, shape, dtype, stages, int32):
        """The per-thread form with plain or cp.async-pipelined loads, int64 or int32 offsets (the benchmark's
        ``fma,s1,i64``, ``fma,sN`` and ``fma,i64`` rows and its sweep)."""
        import dataclasses

        qkv = _qkv(shape, dtype)
        _, t, c, _, _, heads = shape
        tile = dataclasses.replace(attention_tile(t, c // heads, mma=False), stages=stages, int32=int32)
        out = launch_temporal_attention(qkv, heads, tile=tile)
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out.float(), temporal_attention_reference(qkv.float(), heads), atol=tol, rtol=tol)

    @pytest.mark.parametrize("t", [9, 10, 11, 13])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    def test_attention_ragged_last_block(self, t, dtype):
        """Ragged last query blocks (shipped in FP16 at T = 9-10; TensorRT's tactic 10 elsewhere) and ``fma,q-all``
        (every query in one program) on the GPU, the JIT kernel and the plugin's PTX (both alignment copies: H*W =
        37*53 is not a multiple of 8, 36*64 is)."""
        import dataclasses

        from vggx.plugins.tensorrt import compile_aot

        half = dtype == torch.float16
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        for h, w in ((37, 53), (36, 64)):
            qkv = _qkv((1, t, 64, h, w, 4), dtype)
            expected = temporal_attention_reference(qkv.float(), 4)
            ragged = dataclasses.replace(attention_tile(t, 16, mma=False, half=half), ragged=True)
            tiles = [ragged, attention_tile(t, 16, mma=False, half=half, scores_per_thread=256)]
            for tile in tiles:
                out = launch_temporal_attention(qkv, 4, tile=tile)
                torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol, msg=str(tile))
            out = torch.full((1, t, 64, h, w), float("nan"), device="cuda", dtype=dtype)
            _launch_ptx(compile_aot("temporal_attention", tuple(qkv.shape), dtype, heads=4, cc=_cc(), tile=ragged),
                        (qkv,), (out,))
            torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol, msg=f"plugin {ragged}")

    def test_custom_ops_dispatch_to_kernels_on_cuda(self):
        x, flow = _flow_inputs((2, 8, 16, 24), torch.float16)
        torch.testing.assert_close(flow_warp(x, flow), launch_flow_warp(x, flow), atol=0, rtol=0)
        qkv = _qkv((1, 8, 16, 6, 10, 2), torch.float16)
        torch.testing.assert_close(
            temporal_attention(qkv, 2), launch_temporal_attention(qkv, 2), atol=0, rtol=0
        )

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    @pytest.mark.parametrize("shape", ATTN_SHAPES)
    def test_attention_channels_last(self, shape, dtype):
        n, t, c, h, w, heads = shape
        qkv = _qkv(shape, dtype)
        cl = qkv.reshape(n * t, 3 * c, h, w).to(memory_format=torch.channels_last).view(n, t, 3 * c, h, w)
        out = temporal_attention(cl, heads)  # the op: copied to the kernel's layout
        expected = temporal_attention_reference(qkv.float(), heads)
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    def test_opcheck_on_cuda(self, dtype):
        """Fake and real implementations agree on CUDA too (channels_last stays channels_last)."""
        x, flow = _flow_inputs((2, 8, 16, 24), dtype)
        for xx in (x, x.to(memory_format=torch.channels_last)):
            torch.library.opcheck(torch.ops.vggx.flow_warp.default, (xx, flow),
                                  test_utils=("test_schema", "test_faketensor"))
        qkv = _qkv((1, 8, 16, 6, 10, 2), dtype)
        cl = qkv.reshape(8, 48, 6, 10).to(memory_format=torch.channels_last).view(1, 8, 48, 6, 10)
        for q in (qkv, cl):
            torch.library.opcheck(torch.ops.vggx.temporal_attention.default, (q, 2),
                                  test_utils=("test_schema", "test_faketensor"))

    def test_kernel_on_a_side_stream(self):
        x, flow = _flow_inputs((1, 4, 32, 32), torch.float32)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        out = launch_flow_warp(x, flow, stream=stream.cuda_stream)
        stream.synchronize()
        torch.testing.assert_close(out, flow_warp_reference(x, flow), atol=1e-5, rtol=0)


def _cc() -> int:
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


def _launch_ptx(kernel, inputs, outputs):
    """Launch an AotKernel with CuPy the way TensorRT's AOT plugin does."""
    cupy = pytest.importorskip("cupy")
    from vggx.plugins.tensorrt import cupy_launch

    torch.cuda.synchronize()
    cupy_launch(kernel, inputs, outputs)()
    cupy.cuda.Device().synchronize()


class TestAotPtxWithCupy:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    def test_every_tensorrt_tactic_computes_the_op(self, dtype):
        """Each custom tactic TensorRT may pick at engine build (attention_tactic_tile, the channels-last
        flow_warp's geometries): its PTX, launched as the engine would, equals the reference."""
        from vggx.plugins.launch import (
            ATTENTION_TACTICS,
            FLOW_WARP_NHWC_TACTICS,
            FLOW_WARP_TACTICS,
            attention_tactic_tile,
        )
        from vggx.plugins.tensorrt import compile_aot

        tol = 1e-5 if dtype == torch.float32 else 2e-3
        qkv = _qkv((1, 16, 64, 9, 40, 4), dtype)  # T = 16: the tactics' tiles of both forms
        expected = temporal_attention_reference(qkv.float(), 4)
        tiles = {attention_tactic_tile(tactic, 16, 16, dtype == torch.float16) for tactic in ATTENTION_TACTICS}
        for tile in tiles:  # distinct tiles only (two tactics may name the same)
            out = torch.full((1, 16, 64, 9, 40), float("nan"), device="cuda", dtype=dtype)
            kernel = compile_aot("temporal_attention", tuple(qkv.shape), dtype, heads=4, cc=_cc(), tile=tile)
            try:
                _launch_ptx(kernel, (qkv,), (out,))
            except Exception as err:  # say which tile (and its launch) failed
                raise AssertionError(f"{tile}, shared memory {kernel.shared_mem} B: {err}") from err
            torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol, msg=str(tile))
        x, flow = _flow_inputs((2, 64, 37, 53), dtype)
        x_cl = x.permute(0, 2, 3, 1).contiguous()
        expected = flow_warp_reference(x.float(), flow.float()).permute(0, 2, 3, 1)
        out = torch.full_like(x, float("nan"))
        for tactic in FLOW_WARP_TACTICS:  # LINEAR: the NCHW kernel
            out.fill_(float("nan"))
            _launch_ptx(compile_aot("flow_warp", tuple(x.shape), dtype, cc=_cc(), tactic=tactic), (x, flow), (out,))
            torch.testing.assert_close(out.float(), flow_warp_reference(x.float(), flow.float()), atol=tol,
                                       rtol=0 if dtype == torch.float32 else tol, msg=f"LINEAR tactic {tactic}")
        for tactic in FLOW_WARP_NHWC_TACTICS:
            out = torch.full_like(x_cl, float("nan"))
            layout = "hwc8" if dtype == torch.float16 else "hwc"
            _launch_ptx(compile_aot("flow_warp", tuple(x.shape), dtype, cc=_cc(), layout=layout, tactic=tactic),
                        (x_cl, flow), (out,))
            torch.testing.assert_close(out.float(), expected, atol=tol, rtol=0 if dtype == torch.float32 else tol)

    def test_kernel_benchmark_captures_the_plugin_ptx_and_the_jit_in_a_cuda_graph(self):
        """The kernel benchmark times graph replays (no host launch time): the CuPy launch of the plugin's PTX on
        torch's stream and the Triton JIT launch are both captured (not the eager fallback), and the replayed
        graph computes the op."""
        pytest.importorskip("cupy")
        from vggx.benchmarks.kernels import _capture
        from vggx.plugins.tensorrt import compile_aot, cupy_launch

        x, flow = _flow_inputs((2, 64, 37, 53), torch.float16)
        x = x.contiguous(memory_format=torch.channels_last)
        expected = flow_warp_reference(x.float(), flow.float())
        aot = compile_aot("flow_warp", tuple(x.shape), torch.float16, cc=_cc(), layout="hwc8")
        out = torch.empty_like(x)
        launch = cupy_launch(aot, (x, flow), (out,))
        launches = {
            "aot": lambda: launch(torch.cuda.current_stream().cuda_stream),
            "jit": lambda: launch_flow_warp(x, flow, out=out),
        }
        for name, fn in launches.items():
            graph = _capture(fn, 3)
            assert graph is not None, name
            out.fill_(float("nan"))
            graph.replay()
            torch.cuda.synchronize()
            torch.testing.assert_close(out.float(), expected, atol=2e-3, rtol=2e-3, msg=name)

    @pytest.mark.parametrize("offset", [0, 1])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    def test_alignment_is_checked_at_run_time(self, dtype, offset):
        """The AOT PTX takes its vectorised copy only for 16-byte-aligned tensors: tensors starting one element
        into their buffer (misaligned) must take the plain copy, not fault, and give the same result."""
        from vggx.plugins.launch import attention_tile
        from vggx.plugins.tensorrt import compile_aot

        def at_offset(t: torch.Tensor) -> torch.Tensor:
            buf = torch.empty(t.numel() + offset, device="cuda", dtype=t.dtype)
            view = buf[offset:].view(t.shape)
            view.copy_(t)
            return view

        tol = 1e-5 if dtype == torch.float32 else 2e-3
        qkv = _qkv((1, 16, 32, 8, 16, 2), dtype)  # HW = 128
        for mma in (True, False):  # the per-thread form checks alignment in the plugin's PTX too (ALIGN_CHECK)
            out = at_offset(torch.full((1, 16, 32, 8, 16), float("nan"), device="cuda", dtype=dtype))
            kernel = compile_aot("temporal_attention", tuple(qkv.shape), dtype, heads=2, cc=_cc(),
                                 tile=attention_tile(16, 16, mma=mma, half=dtype == torch.float16))
            _launch_ptx(kernel, (at_offset(qkv),), (out,))
            torch.testing.assert_close(out.float(), temporal_attention_reference(qkv.float(), 2), atol=tol, rtol=tol,
                                       msg=f"mma={mma}")

        x, flow = _flow_inputs((2, 64, 16, 24), dtype)
        x_cl = at_offset(x.permute(0, 2, 3, 1).contiguous())  # [B, H, W, C] = HWC / HWC8 at C = 64
        out = at_offset(torch.full_like(x_cl, float("nan")))
        layout = "hwc8" if dtype == torch.float16 else "hwc"
        _launch_ptx(compile_aot("flow_warp", tuple(x.shape), dtype, cc=_cc(), layout=layout), (x_cl, flow), (out,))
        expected = flow_warp_reference(x.float(), flow.float()).permute(0, 2, 3, 1)
        torch.testing.assert_close(out.float(), expected, atol=tol, rtol=0 if dtype == torch.float32 else tol)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    @pytest.mark.parametrize("shape", [(2, 16, 37, 53), (1, 3, 64, 96)])
    def test_flow_warp_ptx(self, shape, dtype):
        from vggx.plugins.tensorrt import compile_aot

        x, flow = _flow_inputs(shape, dtype)
        out = torch.full_like(x, float("nan"))
        kernel = compile_aot("flow_warp", shape, dtype, cc=_cc())
        _launch_ptx(kernel, (x, flow), (out,))
        expected = flow_warp_reference(x.float(), flow.float())
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out.float(), expected, atol=tol, rtol=0 if dtype == torch.float32 else tol)

    @pytest.mark.parametrize(("layout", "dtype"), [("hwc8", torch.float16), ("hwc", torch.float32)])
    @pytest.mark.parametrize("shape", [(2, 20, 37, 53), (1, 64, 64, 96)])
    def test_flow_warp_ptx_channels_last_formats(self, shape, layout, dtype):
        """The PTX the plugin returns for TensorRT's HWC8 (FP16, C padded to 8) and HWC features."""
        from vggx.plugins.launch import hwc8_channels
        from vggx.plugins.tensorrt import compile_aot

        b, c, h, w = shape
        x, flow = _flow_inputs(shape, dtype)
        xs = hwc8_channels(c) if layout == "hwc8" else c
        padded = torch.full((b, h, w, xs), 7.0, device="cuda", dtype=dtype)
        padded[..., :c] = x.permute(0, 2, 3, 1)
        out = torch.full_like(padded, float("nan"))
        kernel = compile_aot("flow_warp", shape, dtype, cc=_cc(), layout=layout)
        _launch_ptx(kernel, (padded, flow), (out,))
        expected = flow_warp_reference(x.float(), flow.float()).permute(0, 2, 3, 1)
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out[..., :c].float(), expected, atol=tol, rtol=0 if dtype == torch.float32 else tol)
        assert (out[..., c:] == 0).all()

    @pytest.mark.parametrize("mma", [False, True], ids=["fma", "mma"])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    # (1, 32, 128, 4, 8, 2): T = 32, d = 64, HW = 32: the tensor-core tile's 2-4 pixels, in the aligned copy
    @pytest.mark.parametrize("shape", [(1, 8, 64, 36, 64, 4), (2, 16, 32, 9, 17, 2), (1, 5, 12, 7, 3, 3),
                                       (1, 32, 128, 4, 8, 2)])
    def test_attention_ptx(self, shape, dtype, mma):
        from vggx.plugins.tensorrt import compile_aot

        n, t, c, h, w, heads = shape
        qkv = _qkv(shape, dtype)
        out = torch.full((n, t, c, h, w), float("nan"), device="cuda", dtype=dtype)
        kernel = compile_aot("temporal_attention", tuple(qkv.shape), dtype, heads=heads, cc=_cc(),
                             tile=attention_tile(t, c // heads, mma=mma))
        _launch_ptx(kernel, (qkv,), (out,))
        expected = temporal_attention_reference(qkv.float(), heads)
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol)


@pytest.mark.tensorrt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="needs TensorRT")
class TestTensorRTEngine:
    """One-node ONNX model -> TensorRT engine with the AOT plugin -> run; compare with the reference."""

    def _run_engine(self, model, feeds: dict[str, torch.Tensor], out_shape, out_dtype):
        import tensorrt as trt

        from vggx.plugins.tensorrt import register_plugins

        register_plugins()
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        assert parser.parse(model.SerializeToString()), [
            str(parser.get_error(i)) for i in range(parser.num_errors)
        ]
        config = builder.create_builder_config()
        plan = builder.build_serialized_network(network, config)
        assert plan is not None, "engine build failed"
        engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        context = engine.create_execution_context()
        out = torch.empty(out_shape, device="cuda", dtype=out_dtype)
        for name, tensor in feeds.items():
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        context.set_tensor_address("out", out.data_ptr())
        stream = torch.cuda.current_stream()
        assert context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return out

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    def test_flow_warp_engine(self, dtype):
        from onnx import TensorProto

        from vggx.plugins.onnx import infer_plugin_shapes, plugin_model

        shape = (2, 8, 24, 40)
        onnx_type = TensorProto.FLOAT if dtype == torch.float32 else TensorProto.FLOAT16
        model = infer_plugin_shapes(plugin_model("flow_warp", [list(shape), [2, 2, 24, 40]], onnx_type))
        x, flow = _flow_inputs(shape, dtype)
        out = self._run_engine(model, {"x": x, "flow": flow}, shape, dtype)
        expected = flow_warp_reference(x.float(), flow.float())
        torch.testing.assert_close(out.float(), expected, atol=2e-3, rtol=2e-3)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
    def test_attention_engine(self, dtype):
        from onnx import TensorProto

        from vggx.plugins.onnx import infer_plugin_shapes, plugin_model

        n, t, c, h, w, heads = 1, 8, 32, 12, 20, 2
        onnx_type = TensorProto.FLOAT if dtype == torch.float32 else TensorProto.FLOAT16
        model = infer_plugin_shapes(
            plugin_model("temporal_attention", [[n, t, 3 * c, h, w]], onnx_type, heads=heads)
        )
        qkv = _qkv((n, t, c, h, w, heads), dtype)
        out = self._run_engine(model, {"qkv": qkv}, (n, t, c, h, w), dtype)
        expected = temporal_attention_reference(qkv.float(), heads)
        torch.testing.assert_close(out.float(), expected, atol=2e-3, rtol=2e-3)
