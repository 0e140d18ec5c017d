"""The FP16 PyTorch fast path on CUDA (kernels + CUDA graphs) against the FP32 CPU reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vggx.checkpoint import load_checkpoint
from vggx.errors import InferenceError
from vggx.generator import UInt8Upscaler

gpu = pytest.mark.gpu
requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _frames(shape=(1, 8, 48, 64, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _fast(path, **kwargs):
    from vggx.client.cuda import CudaUpscaler

    return CudaUpscaler(UInt8Upscaler(load_checkpoint(path).generator), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_without_a_gpu_is_one_clear_error(tiny_checkpoint_path):
    with pytest.raises(InferenceError, match="sees no CUDA GPU"):
        _fast(tiny_checkpoint_path)


@gpu
@requires_gpu
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(1, 8, 48, 64, 3), (2, 8, 37, 50, 3)])
def test_fp16_cuda_matches_fp32_cpu_reference(tiny_checkpoint_path, shape, channels_last):
    from vggx.plugins import reference_ops

    lr = _frames(shape)
    cpu_model = UInt8Upscaler(load_checkpoint(tiny_checkpoint_path).generator).eval()
    with torch.no_grad(), reference_ops():
        ref = cpu_model(torch.from_numpy(lr)).numpy().astype(np.int16)
    out = _fast(tiny_checkpoint_path, fp16=True, channels_last=channels_last)(lr).astype(np.int16)
    diff = np.abs(out - ref)
    assert out.shape == ref.shape
    assert (diff <= 2).mean() >= 0.99, f"max {diff.max()}, within 2 levels {(diff <= 2).mean():.4f}"


@gpu
@requires_gpu
def test_a_gpu_by_index(tiny_checkpoint_path):
    """``cuda:N``: the model, its buffers and its kernels on that GPU (here the last one), the output that of
    ``cuda`` on the same GPU; a GPU that is not there is one clear error."""
    from vggx.client.cuda import require_cuda

    last = torch.cuda.device_count() - 1
    lr = _frames()
    by_index = _fast(tiny_checkpoint_path, device=f"cuda:{last}")
    assert by_index.device == torch.device("cuda", last)
    with torch.cuda.device(last):
        plain = _fast(tiny_checkpoint_path)
    diff = np.abs(by_index(lr).astype(np.int16) - plain(lr).astype(np.int16))
    assert diff.max() <= 1  # the same model on the same GPU (two instances: cuDNN may time its choices anew)
    with pytest.raises(InferenceError, match=f"--device cuda:{last + 1}: there is no GPU {last + 1}"):
        require_cuda(f"cuda:{last + 1}")


@gpu
@requires_gpu
def test_compiled_fp16_matches_fp32_cpu_reference(tiny_checkpoint_path):
    """``torch.compile`` (Inductor fuses the eager epilogues; the vggx ops stay opaque kernels) + graphs."""
    from vggx.plugins import reference_ops

    lr = _frames()
    cpu_model = UInt8Upscaler(load_checkpoint(tiny_checkpoint_path).generator).eval()
    with torch.no_grad(), reference_ops():
        ref = cpu_model(torch.from_numpy(lr)).numpy().astype(np.int16)
    fast = _fast(tiny_checkpoint_path, fp16=True, compile=True)
    out = fast(lr).astype(np.int16)
    diff = np.abs(out - ref)
    assert (diff <= 2).mean() >= 0.99, f"max {diff.max()}, within 2 levels {(diff <= 2).mean():.4f}"
    np.testing.assert_array_equal(fast(lr), out)  # the captured graph of the compiled model replays the same


@gpu
@requires_gpu
def test_cuda_graph_replay_equals_eager_exactly(tiny_checkpoint_path):
    graphs = _fast(tiny_checkpoint_path, cuda_graphs=True)
    eager = _fast(tiny_checkpoint_path, cuda_graphs=False)
    lr, other = _frames(), _frames(seed=1)
    first = graphs(lr)
    np.testing.assert_array_equal(first, eager(lr))
    np.testing.assert_array_equal(graphs(other), eager(other))  # replay with new data in the same buffers
    np.testing.assert_array_equal(graphs(lr), first)


@gpu
@requires_gpu
@pytest.mark.parametrize("keep", [slice(2, 6), slice(0, 5), slice(3, 8)])
def test_kept_frames_only_come_back(tiny_checkpoint_path, keep):
    """``keep``: the kept frames of a window (its context dropped) are the same frames of the whole output,
    in both formats and with two windows per call."""
    fast = _fast(tiny_checkpoint_path, fp16=True)
    lr = _frames((2, 8, 48, 64, 3))
    for fmt in ("rgb24", "yuv420p"):
        whole = fast(lr, output_format=fmt)
        np.testing.assert_array_equal(fast(lr, output_format=fmt, keep=keep), whole[:, keep])


@gpu
@requires_gpu
def test_concurrent_callers_get_their_own_outputs(tiny_checkpoint_path):
    """Two threads calling at once (the pipeline's two workers): each gets exactly what a lone call gives for
    its input, while the other's window overlaps its copies (two pinned buffer pairs, one stream)."""
    from concurrent.futures import ThreadPoolExecutor

    fast = _fast(tiny_checkpoint_path, fp16=True)
    inputs = [_frames(seed=i) for i in range(6)]
    alone = [fast(lr, output_format="yuv420p", keep=slice(2, 6)) for lr in inputs]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            got = list(pool.map(lambda lr: fast(lr, output_format="yuv420p", keep=slice(2, 6)), inputs))
            for a, b in zip(got, alone, strict=True):
                np.testing.assert_array_equal(a, b)


@gpu
@requires_gpu
def test_a_new_shape_is_captured_while_another_caller_waits(tiny_checkpoint_path):
    """Tiles of different sizes meet their first window at any time: one thread captures a graph for a new
    shape while the other waits on its event; both results equal a lone call's (thread-local capture)."""
    from concurrent.futures import ThreadPoolExecutor

    shapes = [(1, 8, 48, 64, 3), (1, 8, 40, 56, 3), (1, 8, 32, 48, 3), (1, 8, 48, 40, 3)]
    inputs = [_frames(shape, seed=i) for i, shape in enumerate(shapes)]
    fast = _fast(tiny_checkpoint_path, fp16=True)
    fast(inputs[0])  # one shape captured; the others are captured while a call on it is in flight
    order = [0, 1, 0, 2, 0, 3]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(fast, [inputs[i] for i in order]))
    for g, i in zip(got, order, strict=True):  # the same graphs replayed by one caller alone
        np.testing.assert_array_equal(g, fast(inputs[i]))


@gpu
@requires_gpu
def test_graphs_sharing_one_memory_pool_replay_in_any_order_like_eager(tiny_checkpoint_path):
    """Every shape's graph in one memory pool (the default): replayed interleaved, from two threads, in an order
    other than the captures', each output equals the eager model's on that input exactly."""
    from concurrent.futures import ThreadPoolExecutor

    shapes = [(1, 8, 48, 64, 3), (1, 8, 40, 56, 3), (2, 8, 32, 48, 3)]
    inputs = [_frames(shape, seed=i) for i, shape in enumerate(shapes)]
    shared = _fast(tiny_checkpoint_path, fp16=True)
    eager = _fast(tiny_checkpoint_path, fp16=True, cuda_graphs=False)
    want = [eager(lr) for lr in inputs]
    for lr in inputs:
        shared(lr)
    assert shared._pool is not None and len(shared._slots) == 3
    order = [2, 0, 1, 1, 0, 2, 0, 2, 1]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda i: shared(inputs[i], keep=slice(2, 6)), order))
    for g, i in zip(got, order, strict=True):
        np.testing.assert_array_equal(g, want[i][:, 2:6])


@gpu
@requires_gpu
def test_graphs_of_several_shapes_hold_the_memory_of_the_largest(tiny_checkpoint_path):
    """Tiles of four shapes: with one shared pool the graphs together reserve about what the largest needs;
    with a pool each they reserve about the sum (measured side by side)."""
    shapes = [(1, 8, 256, 256, 3), (1, 8, 256, 200, 3), (1, 8, 200, 256, 3), (1, 8, 200, 200, 3)]

    def reserved_by_graphs(share: bool) -> int:
        fast = _fast(tiny_checkpoint_path, fp16=True, share_graph_memory=share)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_reserved()
        for i, shape in enumerate(shapes):
            fast(_frames(shape, seed=i))
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # the warm-ups' eager memory goes; what the graphs hold stays
        held = torch.cuda.memory_reserved() - before
        fast.close()
        del fast
        torch.cuda.empty_cache()
        return held

    separate, shared = reserved_by_graphs(False), reserved_by_graphs(True)
    assert shared < 0.5 * separate, (shared, separate)


@gpu
@requires_gpu
def test_yuv420p_output_is_the_rgb_output_converted(tiny_checkpoint_path):
    """The GPU conversion inside the captured graph = the same conversion of the RGB output on the CPU."""
    from vggx.video.color import rgb_to_yuv420p

    fast = _fast(tiny_checkpoint_path, fp16=True)
    lr = _frames()
    rgb = fast(lr)
    yuv = fast(lr, output_format="yuv420p")
    assert yuv.shape == (1, 8, 48 * 4 * 3 // 2, 64 * 4)
    expected = rgb_to_yuv420p(torch.from_numpy(rgb)).numpy()
    assert np.abs(yuv.astype(np.int16) - expected).max() <= 1  # float rounding at .5 may differ by one
    np.testing.assert_array_equal(fast(lr), rgb)  # both graphs kept, each replays its own output


@gpu
@requires_gpu
def test_pipeline_takes_the_gpu_yuv420p_and_matches_the_rgb_path(tiny_checkpoint_path, tmp_path):
    """End to end through ``upscale()``: H.264 output takes the GPU's yuv420p; lossless x264 keeps the planes,
    so the videos' planes differ by the two conversions' rounding only (one level: swscale's vs ours)."""
    import av

    from vggx.benchmarks.upscale_overlap import _synthetic_clip
    from vggx.client import UpscaleConfig, upscale
    from vggx.client.runners import TorchRunner
    from vggx.video import EncodeConfig

    clip = _synthetic_clip(tmp_path / "clip.mp4", 16, (48, 64))
    runner = TorchRunner(tiny_checkpoint_path, device="cuda", fp16=True)
    lossless = EncodeConfig(crf=0)
    upscale(UpscaleConfig(clip, tmp_path / "yuv.mkv", encode=lossless), runner=runner)
    assert any(key[-1] == "yuv420p" for key in runner._cuda._slots)
    upscale(UpscaleConfig(clip, tmp_path / "rgb.mkv", encode=lossless, device_yuv420p=False), runner=runner)

    def planes(path):  # the decoded yuv420p planes themselves (an RGB view would amplify chroma by ~2)
        with av.open(str(path)) as c:
            return [f.to_ndarray().astype(np.int16) for f in c.decode(video=0) if f.format.name == "yuv420p"]

    got, want = planes(tmp_path / "yuv.mkv"), planes(tmp_path / "rgb.mkv")
    assert len(got) == len(want) == 16
    diff = np.abs(np.stack(got) - np.stack(want))
    assert diff.max() <= 1 and diff.mean() < 0.1, (diff.max(), diff.mean())


@gpu
@requires_gpu
def test_outscale_resizes_the_gpus_yuv420p_like_the_rgb_path(tiny_checkpoint_path, tmp_path):
    """``--outscale 2`` on the CUDA path: the GPU's yuv420p planes are resized (not converted again) on their way to
    the encoder; the same video as resizing the RGB output, to the chroma resampling's rounding."""
    from vggx.benchmarks.upscale_overlap import _synthetic_clip
    from vggx.client import UpscaleConfig, upscale
    from vggx.client.runners import TorchRunner
    from vggx.video import EncodeConfig

    clip = _synthetic_clip(tmp_path / "clip.mp4", 16, (48, 64))
    runner = TorchRunner(tiny_checkpoint_path, device="cuda", fp16=True)
    lossless = EncodeConfig(crf=0)
    results = [upscale(UpscaleConfig(clip, tmp_path / f"{name}.mkv", encode=lossless, outscale=2.0,
                                     device_yuv420p=name == "yuv"), runner=runner) for name in ("yuv", "rgb")]
    assert [r.output_size for r in results] == [(96, 128)] * 2

    def frames(path):
        import av

        with av.open(str(path)) as c:
            return np.stack([f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)])

    got, want = frames(tmp_path / "yuv.mkv"), frames(tmp_path / "rgb.mkv")
    assert got.shape == want.shape == (16, 96, 128, 3)
    diff = np.abs(got - want)
    assert np.percentile(diff, 99) <= 8 and diff.mean() < 1.5, (np.percentile(diff, 99), diff.mean())


@gpu
@requires_gpu
def test_a_failing_compiled_model_is_one_clear_error(tiny_checkpoint_path, monkeypatch):
    def broken_compile(module, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("backend compiler failed\n  (a long Inductor trace)")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    fast = _fast(tiny_checkpoint_path, fp16=True, compile=True)
    with pytest.raises(InferenceError, match=r"torch.compile'd model failed on input \(1, 8, 48, 64, 3\) "
                                             r"\(RuntimeError: backend compiler failed\); run without --compile"):
        fast(_frames())


@gpu
@requires_gpu
@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_a_real_out_of_memory_shrinks_the_tiles_and_the_run_goes_on(tiny_checkpoint_path, tmp_path, caplog,
                                                                    cuda_graphs):
    """CUDA really running out of memory (the caching allocator capped with ``set_per_process_memory_fraction``
    at what 40 % of a 360x640 frame needs, from the memory 128x128 and 256x256 windows took): the upscaler drops its
    graphs and raises ``DeviceOutOfMemoryError``, the pipeline halves the tiles until they fit and finishes; the
    video is what an explicit ``--tile`` of that size gives (to FP16 rounding: cuDNN may pick other algorithms)."""
    import re

    from vggx.benchmarks.upscale_overlap import _synthetic_clip
    from vggx.client import UpscaleConfig, upscale
    from vggx.client.runners import TorchRunner
    from vggx.video import EncodeConfig

    clip = _synthetic_clip(tmp_path / "clip.mp4", 8, (360, 640))
    runner = TorchRunner(tiny_checkpoint_path, device="cuda", fp16=True, cuda_graphs=cuda_graphs)
    device = runner._cuda.device

    def reserved_for(shape) -> int:  # what one more input shape takes (warm-up, capture), in bytes
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_reserved(device)
        torch.cuda.reset_peak_memory_stats(device)
        runner.infer(_frames(shape))
        return torch.cuda.max_memory_reserved(device) - before

    runner.infer(_frames((1, 8, 64, 64, 3)))  # kernels compiled, cuDNN's choices made
    small, large = reserved_for((1, 8, 128, 128, 3)), reserved_for((1, 8, 256, 256, 3))
    per_pixel = max(large - small, 1) / (256 * 256 - 128 * 128)  # memory grows with the pixels (a linear fit)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_reserved(device)
    budget = small + per_pixel * (0.4 * 360 * 640 - 128 * 128)  # 40 % of a frame's needs: the whole frame cannot fit
    total = torch.cuda.get_device_properties(device).total_memory
    lossless = EncodeConfig(codec="ffv1")
    torch.cuda.set_per_process_memory_fraction(min(1.0, (base + budget) / total), device)
    try:
        result = upscale(UpscaleConfig(clip, tmp_path / "capped.mkv", encode=lossless), runner=runner)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    shrinks = re.findall(r"going on with tiles of at most (\d+)x(\d+)", caplog.text)
    assert shrinks and result.frames == 8 and result.tiles_per_window > 1, (caplog.text, small, large, budget)
    tile = tuple(map(int, shrinks[-1]))
    explicit = upscale(UpscaleConfig(clip, tmp_path / "tiled.mkv", encode=lossless, tile=tile), runner=runner)
    assert explicit.tiles_per_window == result.tiles_per_window

    def frames(path):
        import av

        with av.open(str(path)) as c:
            return np.stack([f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)])

    diff = np.abs(frames(tmp_path / "capped.mkv") - frames(tmp_path / "tiled.mkv"))
    assert (diff <= 2).mean() >= 0.999, (diff.max(), (diff <= 2).mean())
