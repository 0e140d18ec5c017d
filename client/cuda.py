"""The GPU fast path without TensorRT: the uint8 graph on CUDA with pinned staging and CUDA graphs.

``CudaUpscaler`` runs :class:`vggx.generator.UInt8Upscaler` on a CUDA device: uint8 frames go up
through a pinned host buffer (an asynchronous copy), pre- and post-processing run on the GPU as in
the ONNX graph, the model runs in FP16 with the FP32 islands the FP16 ONNX graph has
(:func:`vggx.export.fp16.half_upscaler`: the whole flow estimator, ChannelNorm, softmax and accumulation
inside the attention kernel, flow coordinates inside the warp kernel), the
two vggx ops run their OpenAI Triton kernels through ``torch.library``, and each input shape is
captured once as a CUDA graph and replayed afterwards (the many small launches of attention,
warping and the U-Net's low-resolution levels are what graphs save).

Memory layout: NCHW by default. ``channels_last`` (NHWC) convolutions are faster in cuDNN, and the
fast path has NHWC forms of the other hot spots (the channels-last flow_warp kernel, ChannelNorm as
one fused layer_norm), but on an H200 the whole base model measured faster in NCHW (59.6 vs 66.1 ms
per 8-frame 180x320 window, same run): the copies of qkv into the attention kernel's layout and back
cost more than NHWC convolutions save (``benchmarks/RESULTS.md``; ``channels_last=True`` to compare).

For H.264 output the pipeline asks for ``yuv420p`` frames: the GPU converts them inside the graph
(:mod:`vggx.video.color`, swscale's result to within one level), so the encoder's threads skip the
colour conversion and half as many bytes come back to the host.

Calls queue their GPU work in order on one stream; each has one of two pairs of pinned buffers, so with
two pipeline workers one window runs on the GPU while the other's output is copied out. The wait on the
GPU sleeps (a blocking CUDA event) rather than spinning, leaving the core to the encoder; decode and
encode run in the pipeline's other threads meanwhile, which is what hides them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from vggx.errors import DeviceOutOfMemoryError, InferenceError
from vggx.video.color import rgb_to_yuv420p, yuv420p_shape

__all__ = ["CudaUpscaler", "require_cuda"]

log = logging.getLogger(__name__)


def require_cuda(device: str = "cuda") -> None:
    """Raise one clear error unless PyTorch sees the CUDA GPU ``device`` names (``cuda`` or ``cuda:N``; no silent
    CPU fallback)."""
    import torch

    if not torch.cuda.is_available():
        raise InferenceError(f"--device {device}: PyTorch sees no CUDA GPU here (torch.cuda.is_available() is "
                             "False); use --device cpu or run on a GPU machine")
    index = torch.device(device).index
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        raise InferenceError(f"--device {device}: there is no GPU {index}; PyTorch sees {count} "
                             f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, CUDA running out of memory (an error inside a graph
    capture comes out of the capture's end; a compiled model's, wrapped)."""
    import torch

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


@dataclass
class _Staging:
    """Pinned host buffers of one call in flight: a second call fills the other pair while this one's
    output is still being copied out, so the GPU need not wait for the host (two pipeline workers)."""

    host_in: object  # pinned uint8 (n, t, h, w, 3)
    host_out: object  # pinned uint8 (n, t, s·h, s·w, 3), or (n, t, 3/2·s·h, s·w) in yuv420p; kept frames first
    done: object  # a blocking CUDA event: its waiter sleeps instead of spinning on a core the encoder needs
    free: threading.Lock = field(default_factory=threading.Lock)  # held from filling host_in to reading host_out


@dataclass
class _Slot:
    """Static device buffers (and the graph, when captured) of one input shape and output format."""

    stagings: list[_Staging]
    dev_in: object
    dev_out: object | None = None
    graph: object | None = None
    turn: int = 0  # the staging the next call takes


COMPILE_OPTIONS = {"freezing": True}  # Inductor's options for --compile (see CudaUpscaler)


class CudaUpscaler:
    """Callable ``lr`` uint8 numpy ``(n, t, h, w, 3)`` -> ``sr`` uint8 numpy, on one CUDA device.

    Args:
        module: a ``UInt8Upscaler`` (moved to the device; with ``fp16`` its generator is copied into
            :func:`~vggx.export.fp16.half_upscaler`, the FP16 graph with FP32 islands).
        fp16: run the generator in half precision (its FP32 islands stay FP32).
        cuda_graphs: capture one graph per input shape (at most ``max_graphs``, least recently used
            evicted); otherwise run eagerly with the same staging buffers.
        channels_last: NHWC convolutions (off by default: measured slower overall, see above).
        compile: ``torch.compile`` the model first (compiled on the first window of each shape, then
            captured as a CUDA graph like the eager model). On an H200 (``base``, LR 180x320, T=8) it
            halves the time per window (29.5 vs 59.7 ms: Inductor fuses the elementwise passes that
            eager mode runs around each convolution), after about 45 s of compilation per shape
            (Inductor caches its work on disk for later processes).
        share_graph_memory: capture every shape's graph into one memory pool, so the graphs together hold what the
            largest needs rather than the sum of all (a tiled frame has up to four tile shapes; a folder run, a
            shape per video size). Safe here because replays never overlap (one stream) and each graph's output
            is copied out, on that stream, before another graph runs: a later replay overwriting an earlier
            graph's output or scratch memory overwrites nothing that is still read.
        compile_options: Inductor options for ``torch.compile``; None: :data:`COMPILE_OPTIONS`, Inductor's
            ``freezing`` (weights folded into the graph as constants, laid out once for its convolutions):
            on an H200 (``base``, run 9) 29.4 vs 30.5 ms per window and 35 vs 48 s of compilation against
            no options, side by side (the GPU model benchmark's ``--compile-no-freezing`` times both).
    """

    def __init__(self, module, *, device: str = "cuda", fp16: bool = True, cuda_graphs: bool = True,
                 channels_last: bool = False, max_graphs: int = 8, compile: bool = False,
                 compile_options: dict | None = None, share_graph_memory: bool = True) -> None:
        import torch

        require_cuda(device)
        # One shape per captured graph: let cuDNN time its algorithms once per shape (a process-wide cache).
        torch.backends.cudnn.benchmark = True
        self.device = torch.device(device)
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        if fp16:
            from vggx.export.fp16 import half_upscaler

            module = half_upscaler(module.generator)
        module = module.eval().to(self.device)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.scale = module.scale
        self.compiled = compile
        if compile:
            # Inductor fuses what eager runs as separate passes (each convolution's broadcast bias add,
            # activations, residual adds); the vggx ops stay single opaque nodes running their kernels.
            options = COMPILE_OPTIONS if compile_options is None else compile_options
            module = torch.compile(module, dynamic=False, options=dict(options))
        self.module = module
        self.cuda_graphs = cuda_graphs
        self.max_graphs = max_graphs
        self.share_graph_memory = share_graph_memory
        self._pool = torch.cuda.graph_pool_handle() if share_graph_memory else None  # see share_graph_memory
        self.stream = torch.cuda.Stream(self.device)
        self._slots: OrderedDict[tuple, _Slot] = OrderedDict()  # (*input shape, output format) -> slot
        self._lock = threading.Lock()

    def _new_slot(self, shape: tuple[int, ...], output_format: str) -> _Slot:
        import torch

        n, t, h, w, c = shape
        out_shape = (n, t, h * self.scale, w * self.scale, c)
        if output_format == "yuv420p":
            out_shape = (n, t, *yuv420p_shape(h * self.scale, w * self.scale))
        slot = _Slot(
            stagings=[_Staging(host_in=torch.empty(shape, dtype=torch.uint8, pin_memory=True),
                               host_out=torch.empty(out_shape, dtype=torch.uint8, pin_memory=True),
                               done=torch.cuda.Event(blocking=True))
                      for _ in range(2)],
            dev_in=torch.empty(shape, dtype=torch.uint8, device=self.device),
        )
        if self.cuda_graphs:
            t0 = time.perf_counter()
            with torch.cuda.stream(self.stream), torch.inference_mode():
                # Warm-up outside capture: Triton compiles its kernels and cuDNN picks algorithms here.
                for _ in range(2):
                    self._run(slot.dev_in, output_format)
                self.stream.synchronize()
                t1 = time.perf_counter()
                graph = torch.cuda.CUDAGraph()
                # thread_local: only this thread is held to capture's rules; another caller may meanwhile
                # wait on its own event (cudaEventSynchronize), which global mode forbids process-wide.
                with torch.cuda.graph(graph, pool=self._pool, stream=self.stream, capture_error_mode="thread_local"):
                    slot.dev_out = self._run(slot.dev_in, output_format)
            slot.graph = graph
            log.info("captured a CUDA graph for input %s (%s out): warm-up %.1f s (compilation, cuDNN's search), "
                     "capture %.2f s", shape, output_format, t1 - t0, time.perf_counter() - t1)
        return slot

    def _run(self, lr, output_format: str):
        try:
            sr = self.module(lr)
        except Exception as exc:
            if not self.compiled or _out_of_memory(exc):
                raise
            # Inductor's failures (a missing compiler, an unsupported op) come as long multi-line traces.
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise InferenceError(f"the torch.compile'd model failed on input {tuple(lr.shape)} "
                                 f"({type(exc).__name__}: {first}); run without --compile") from exc
        return rgb_to_yuv420p(sr) if output_format == "yuv420p" else sr

    @property
    def device_name(self) -> str:
        """``cuda:0 (NVIDIA H200, 139.8 GiB)``: for messages."""
        import torch

        props = torch.cuda.get_device_properties(self.device)
        return f"{self.device} ({props.name}, {props.total_memory / 2**30:.1f} GiB)"

    def _release(self) -> None:
        """Drop every captured graph and its buffers and hand the cached memory back to the driver (after an
        out-of-memory error; the next call captures its shape again)."""
        import torch

        try:
            self.stream.synchronize()  # other callers' queued replays finish before their graphs go
        finally:
            self._slots.clear()
            if self.share_graph_memory:  # the old pool goes with its last graph
                self._pool = torch.cuda.graph_pool_handle()
            torch.cuda.empty_cache()

    def _out_of_memory_error(self, shape: tuple[int, ...]) -> DeviceOutOfMemoryError:
        return DeviceOutOfMemoryError(f"{self.device_name} ran out of memory on input {shape}", shape)

    def _fitting_slot(self, shape: tuple[int, ...], output_format: str) -> _Slot:
        """:meth:`_slot`; where the device runs out of memory making it, the other shapes' graphs (and the memory
        they hold) are dropped and it is tried once more, then ``DeviceOutOfMemoryError``."""
        while True:
            others = len(self._slots) - ((*shape, output_format) in self._slots)
            try:
                return self._slot(shape, output_format)
            except Exception as exc:
                if not _out_of_memory(exc):
                    raise
                self._release()
                if not others:
                    raise self._out_of_memory_error(shape) from exc
                log.info("out of memory capturing input %s: dropped the graphs of %d other shapes, trying again",
                         shape, others)

    def _slot(self, shape: tuple[int, ...], output_format: str) -> _Slot:
        key = (*shape, output_format)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._new_slot(shape, output_format)
            self._slots[key] = slot
            while len(self._slots) > self.max_graphs:
                self._slots.popitem(last=False)
        else:
            self._slots.move_to_end(key)
        return slot

    def __call__(self, lr: np.ndarray, output_format: str = "rgb24", keep: slice = slice(None)) -> np.ndarray:
        """Upscale ``lr``: the model's RGB, or (``output_format="yuv420p"``) the ``(n, t, 3/2·s·h, s·w)``
        yuv420p planes the H.264 writer encodes, converted on the GPU inside the captured graph
        (:func:`vggx.video.color.rgb_to_yuv420p`), so the CPU does no colour conversion and copies half
        the bytes. Each (input shape, output format) has its own graph. ``keep``: only these frames
        along T are copied back (``(n, k, ...)``).

        Thread-safe. The GPU work of concurrent calls is queued in call order on one stream; the lock is
        held only while a call fills its pinned input and queues its work, so a second caller's window
        runs on the GPU while the first copies its output out of the other pinned buffers.
        """
        import torch

        if output_format not in ("rgb24", "yuv420p"):
            raise ValueError(f"output_format must be rgb24 or yuv420p, got {output_format!r}")
        with self._lock, torch.cuda.device(self.device):  # the Triton kernels launch on the current device
            slot = self._fitting_slot(tuple(lr.shape), output_format)
            staging = slot.stagings[slot.turn]
            slot.turn ^= 1
            staging.free.acquire()  # its last user has copied its output out (never waits on this lock)
            try:
                staging.host_in.numpy()[...] = lr
                with torch.cuda.stream(self.stream), torch.inference_mode():
                    slot.dev_in.copy_(staging.host_in, non_blocking=True)
                    if slot.graph is not None:
                        slot.graph.replay()
                        out = slot.dev_out
                    else:
                        out = self._run(slot.dev_in, output_format)
                    out = out[:, keep]
                    # the kept frames, contiguous at the front of the pinned buffer
                    host = staging.host_out.view(-1)[: out.numel()].view(out.shape)
                    host.copy_(out, non_blocking=True)
                    staging.done.record(self.stream)
            except BaseException as exc:
                staging.free.release()
                if isinstance(exc, Exception) and _out_of_memory(exc):  # eager runs allocate as they go
                    self._release()
                    raise self._out_of_memory_error(tuple(lr.shape)) from exc
                raise
        try:
            staging.done.synchronize()
            return host.numpy().copy()
        finally:
            staging.free.release()

    def close(self) -> None:
        with self._lock:
            self._slots.clear()
