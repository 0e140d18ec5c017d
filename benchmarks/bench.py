"""Throughput and latency of every backend under the same tensor contract (``vggx bench``).

The notions are perf_analyzer's: a concurrency sweep (N requests in flight, each worker sending its
next request as soon as the last returns), throughput over several measurement windows (the median,
with the spread between windows as a stability check), latency percentiles, and for Triton the
server-side queue and compute times from its statistics API. What perf_analyzer cannot do is added:
in-process backends, several backends interleaved window by window in one run (``--compare``, whose
ratios are the only figures we quote), model FLOPs and achieved FLOP/s against the device's peak.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vggx.client.runners import Backend, BackendConfig, Runner, open_runner
from vggx.client.triton import STATS_FIELDS
from vggx.errors import SIGNAL_POLL_S, ConfigError, InferenceError, VggxError, deferred_signals

from .stats import LatencyStats, WindowStats, latency_stats, window_stats

__all__ = ["BenchConfig", "BenchPoint", "BenchResult", "device_peak_gflops", "machine_description",
           "run_bench", "stamp"]


log = logging.getLogger(__name__)

# Dense FP16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
_GPU_FP16_PEAK_TFLOPS = {
    "H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
    "A100": 312.0, "L40S": 362.0, "L40": 181.0, "L4": 121.0, "A10": 125.0, "T4": 65.0, "V100": 125.0,
}


MAX_CONCURRENCY = 256  # requests in flight a benchmark keeps, a thread each


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark invocation (all backends share the input and the schedule)."""

    backends: tuple[BackendConfig, ...]  # the first is the baseline of the ratios
    lr_size: tuple[int, int] = (180, 320)  # LR frame (h, w)
    batch: int = 1  # windows per request (N)
    concurrency: tuple[int, ...] = (1,)
    warmup: int = 2  # requests per worker before measuring
    windows: int = 3  # measurement windows per (backend, concurrency)
    window_seconds: float | None = 5.0  # a window lasts this long ...
    window_requests: int | None = None  # ... or this many requests (then window_seconds is ignored)
    max_spread: float = 0.15  # relative spread of window throughputs above which a run is "unstable"
    window: int | None = None  # expected T; an error if the model's differs
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.backends:
            raise ConfigError("bench needs at least one backend")
        for flag, value, least in (("--batch", self.batch, 1), ("--windows", self.windows, 1),
                                   ("--warmup", self.warmup, 0)):
            if value < least:
                raise ConfigError(f"{flag} must be >= {least}, got {value}")
        if not self.concurrency or not 1 <= min(self.concurrency) <= max(self.concurrency) <= MAX_CONCURRENCY:
            raise ConfigError(f"--concurrency values must be in 1..{MAX_CONCURRENCY} (a worker thread each), got "
                              f"{','.join(map(str, self.concurrency))}")
        if self.window_requests is None and (self.window_seconds is None or not 0 < self.window_seconds < 1e6):
            raise ConfigError(f"a measurement window needs --seconds between 0 and 1e6 (exclusive) or --requests > 0"
                              f", got --seconds {self.window_seconds}")
        if self.window_requests is not None and self.window_requests < 1:
            raise ConfigError(f"--requests must be >= 1, got {self.window_requests}")
        if self.window_requests is not None and self.window_requests < max(self.concurrency):
            raise ConfigError(f"--requests {self.window_requests} per window never has --concurrency "
                              f"{max(self.concurrency)} in flight; give --requests {max(self.concurrency)} or more "
                              f"(several times the concurrency, or --seconds: a window's last requests run with "
                              f"fewer beside them)")
        if self.window is not None and self.window < 1:
            raise ConfigError(f"--window must be >= 1 frames, got {self.window}")


@dataclass
class BenchPoint:
    """Results of one backend at one concurrency."""

    backend: str
    description: str
    concurrency: int
    batch: int
    window: int
    lr_size: tuple[int, int]
    out_size: tuple[int, int]
    requests: int
    errors: int
    throughput: WindowStats  # requests/s per measurement window
    latency: LatencyStats
    frames_per_s: float  # output frames/s (batch × T per request)
    mpix_per_s: float  # output megapixels/s
    gflops_per_frame: float
    achieved_gflops: float
    peak_gflops: float
    peak_source: str
    peak_memory_mb: float | None  # this process's peak during the backend's windows (in-process backends); None for
    # Triton (the server's is its own) or where the peak cannot be reset
    max_in_flight: int | None  # requests the backend runs at once in this process (None: no limit); above it they queue
    server: dict[str, float] | None = None  # Triton: per-request µs of queue, compute_input/infer/output
    ratio: float | None = None  # frames/s relative to the first backend at the same concurrency

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lr_size"], d["out_size"] = list(self.lr_size), list(self.out_size)
        return d


@dataclass
class BenchResult:
    points: list[BenchPoint]
    machine: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"machine": self.machine, "points": [p.as_dict() for p in self.points]}


# ------------------------------------------------------------------------------------------ device peaks


def _cpu_matmul_peak_gflops(threads: int | None = None) -> float:
    """Measured FP32 matmul throughput of this CPU (best of a few 1024³ products)."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        torch.mm(a, b)
        best = 0.0
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(4):
                torch.mm(a, b)
            best = max(best, 4 * 2 * 1024**3 / (time.perf_counter() - start) / 1e9)
        return best
    finally:
        torch.set_num_threads(previous)


def device_peak_gflops(device: str, threads: int | None = None) -> tuple[float, str]:
    """Peak GFLOP/s to compare against, and where it comes from: a GPU's data sheet, or a CPU's FP32 matmul measured
    now on ``threads`` (the backend's; None: torch's default), which moves with what else the CPU runs."""
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(device)
        for key, tflops in _GPU_FP16_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e3, f"{name} dense FP16 tensor peak (data sheet)"
        return float("nan"), f"{name}: FP16 peak unknown"
    import torch

    threads = threads or torch.get_num_threads()
    return _cpu_matmul_peak_gflops(threads), (f"{platform.processor() or platform.machine()} FP32 matmul, measured "
                                              f"now on {threads} thread{'s' if threads > 1 else ''}")


# ------------------------------------------------------------------------------------------ measurement


@dataclass
class _Window:
    completed: int  # requests answered inside the window
    elapsed: float
    latencies: list[float]
    errors: int
    answered: int  # every request the run had answered, the uncounted ones at its two ends included
    work: float  # requests' worth of answered work done inside the window (what its throughput counts)


class _Load:
    """The workers that keep requests in flight on one runner, made once for the whole sweep.

    The same threads run the warm-up and every window, so that the warm-up warms what is measured (a Triton runner
    keeps a connection and shared-memory regions per thread) and what they hold is bounded by the highest
    concurrency, not by the number of windows. Worker ``i`` takes part in a run of concurrency ``n`` when ``i < n``.

    A window is measured in steady state, as perf_analyzer's are, not from a cold start to a drained end: it starts
    once every worker has had its first answer (from then on ``n`` requests are always in flight) and ends at its
    time, or at the answer that makes its count; requests still in flight then are waited for. Its throughput counts
    each answered request by the share of its time inside the window, so the requests cut at the two ends count for
    what they did in it: counting whole answers lost the one in flight at the end, up to a request per worker a
    window (at the default size on a CPU, where a request takes seconds, 37 % of the throughput).
    """

    def __init__(self, infer: Callable[[], None], size: int, cancel: Callable[[], None] | None = None) -> None:
        self._infer, self._cancel = infer, cancel
        self._cond = threading.Condition()  # guards everything below; workers notify as a request or a run ends
        self._run_id = 0
        self._active = 0  # workers taking part in the current run
        self._per_worker: int | None = None  # warm-up: requests each; None: until stopped
        self._stop = True
        self._closing = False
        self._running = 0  # workers of the current run not yet back to idle
        self._busy = 0  # requests inside infer()
        self._records: list[tuple[float, float, bool]] = []  # (start, end, answered) of every request of the run
        self._firsts: list[float] = []  # each worker's first answer (or failure) in the run
        self._start: float | None = None  # the window's start, once known
        self._after_start = 0  # requests ended after it
        self._fatal: list[BaseException] = []
        self._first_error: list[BaseException] = []
        self._threads = [threading.Thread(target=self._worker, args=(i,), name=f"vggx-bench-{i}", daemon=True)
                         for i in range(size)]
        for t in self._threads:
            t.start()

    def _worker(self, index: int) -> None:
        seen = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda seen=seen: self._closing or self._run_id != seen)
                if self._closing:
                    return
                seen = self._run_id
                if index >= self._active:
                    continue
            try:
                self._requests()
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def _requests(self) -> None:
        done = 0
        while True:
            with self._cond:  # _stop is set under the lock too: once it is, no request starts
                if self._stop or (self._per_worker is not None and done >= self._per_worker):
                    return
                self._busy += 1
            t0 = time.perf_counter()
            answered, failure = True, None
            try:
                self._infer()
            except InferenceError as exc:  # this request failed (or the server turned it away): counted
                answered, failure = False, exc
            except BaseException as exc:  # the backend failed (a server gone, refused): the whole run stops
                with self._cond:
                    self._fatal.append(exc)
                    self._stop = True
                    self._busy -= 1
                    self._cond.notify_all()
                return
            t1 = time.perf_counter()
            done += 1
            with self._cond:
                self._busy -= 1
                self._records.append((t0, t1, answered))
                if failure is not None:
                    self._first_error.append(failure)
                if done == 1:
                    self._firsts.append(t1)
                if self._start is not None and t1 > self._start:
                    self._after_start += 1
                self._cond.notify_all()

    def _begin(self, concurrency: int, per_worker: int | None) -> None:
        if concurrency > len(self._threads):
            raise ValueError(f"concurrency {concurrency} above the {len(self._threads)} workers made")
        with self._cond:
            self._active, self._per_worker, self._stop = concurrency, per_worker, False
            self._running, self._records, self._firsts = concurrency, [], []
            self._start, self._after_start = None, 0
            self._fatal, self._first_error = [], []
            self._run_id += 1
            self._cond.notify_all()

    def _wait(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait (holding the lock) for ``predicate``. Interrupted (Ctrl-C, SIGTERM): the workers stop, ``cancel``
        ends the runs in flight where the backend can (ONNX Runtime), and they are waited for before the
        interruption goes on, so that no inference is left going inside a library as the process exits (which
        aborted it: exit 134, not 130/143). Waiting on counts, not Thread.join(): a join interrupted by a signal
        can leave a running thread marked stopped (CPython 3.11), so that a second join returns at once. The signal
        is raised between waits, not inside ``Condition.wait`` (where it can land with the lock let go and not taken
        back)."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        try:
            with deferred_signals() as received:
                while not predicate():
                    left = SIGNAL_POLL_S if deadline is None else min(SIGNAL_POLL_S, deadline - time.perf_counter())
                    if left <= 0:
                        break
                    self._cond.wait(left)
                    received.raise_if_any()
        except BaseException:
            self._stop = True
            if self._cancel is not None:
                self._cancel()
            self._cond.wait_for(lambda: self._busy == 0)
            raise

    def _end(self) -> None:
        """Stop the run and wait for its workers (requests in flight are not counted); a fatal failure is raised."""
        self._stop = True
        self._wait(lambda: self._running == 0)
        if self._fatal:  # never measured with fewer requests in flight than the concurrency reported
            raise self._fatal[0]

    def warm(self, concurrency: int, per_worker: int) -> None:
        """``per_worker`` requests on each of ``concurrency`` workers, not measured."""
        if per_worker < 1:
            return
        self._begin(concurrency, per_worker)
        with self._cond:
            self._wait(lambda: self._running == 0 or bool(self._fatal))
            self._end()

    def window(self, concurrency: int, seconds: float | None, requests: int | None) -> _Window:
        """One measurement window of ``seconds``, or of ``requests`` answers (failed ones included)."""
        self._begin(concurrency, None)
        with self._cond:
            self._wait(lambda: len(self._firsts) == concurrency or bool(self._fatal))
            if self._fatal:
                self._end()
            start = self._start = max(self._firsts)
            self._after_start = sum(t1 > start for _, t1, _ in self._records)
            if requests is None:
                end = start + seconds
                while not self._fatal and time.perf_counter() < end:
                    self._wait(lambda: bool(self._fatal), max(end - time.perf_counter(), 0.0))
            else:
                self._wait(lambda: self._after_start >= requests or bool(self._fatal))
                if not self._fatal:
                    end = sorted(t1 for _, t1, _ in self._records if t1 > start)[requests - 1]
            self._end()
            inside = [(t0, t1, answered) for t0, t1, answered in self._records if t1 > start and t0 < end]
            all_answered = sum(answered for _, _, answered in self._records)
            first_error = self._first_error[0] if self._first_error else None
        # the latencies of the requests answered in the window (of those spanning it, when it is shorter than one)
        counted = [(t1 - t0, ok) for t0, t1, ok in inside if t1 <= end] or [(t1 - t0, ok) for t0, t1, ok in inside]
        latencies = [dt for dt, answered in counted if answered]
        errors = len(counted) - len(latencies)
        if errors and not latencies:
            raise InferenceError(f"every request failed; first error: {first_error}")
        work = sum((min(t1, end) - max(t0, start)) / (t1 - t0) for t0, t1, ok in inside if ok and t1 > t0)
        answered_inside = sum(ok for _, t1, ok in inside if t1 <= end)
        return _Window(answered_inside, end - start, latencies, errors, all_answered, work)

    def close(self) -> None:
        """End the workers; a request still in flight (an interruption outside a wait) is cancelled where the
        backend can and waited for."""
        with self._cond:
            self._closing = self._stop = True
            self._cond.notify_all()
            if self._busy and self._cancel is not None:
                self._cancel()
            self._cond.wait_for(lambda: self._busy == 0)


class _TritonStats:
    """Deltas of Triton's cumulative per-model statistics around a measurement, through the runner's own TLS
    settings and headers (summed over the servers when ``--url`` names several replicas, and over the versions the
    requests may reach: per-request times are then their average over all requests)."""

    FIELDS = STATS_FIELDS

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def snapshot(self) -> dict[str, dict[str, tuple[int, int]]] | None:
        """``{url: {field: (count, ns)}}``, or None (with a warning) when the server would not say."""
        try:
            return self._runner.inference_statistics()
        except VggxError as exc:
            log.warning("no server-side times: %s", exc)
            return None

    def settled(self, before: dict | None, requests: int) -> dict | None:
        """A snapshot that counts all ``requests`` since ``before``: Triton adds a request to its statistics just
        after it answers, so one taken at once may miss the last ones (waits at most a second)."""
        after = self.snapshot()
        for _ in range(20):
            if before is None or after is None or self._count(before, after) >= requests:
                break
            time.sleep(0.05)
            after = self.snapshot()
        return after

    @staticmethod
    def _count(before: dict, after: dict) -> int:
        return sum(after[url]["compute_infer"][0] - before[url]["compute_infer"][0] for url in after if url in before)

    @classmethod
    def per_request_us(cls, before: dict | None, after: dict | None) -> dict[str, float] | None:
        if before is None or after is None:
            return None
        out = {}
        for f in cls.FIELDS:
            common = [url for url in after if url in before]  # a replica that joined or left meanwhile is left out
            count = sum(after[url][f][0] - before[url][f][0] for url in common)
            ns = sum(after[url][f][1] - before[url][f][1] for url in common)
            out[f"{f}_us"] = ns / count / 1e3 if count else 0.0
        return out


class _PeakMemory:
    """The peak memory of this process while one backend's windows ran: the peak is reset before each window and
    read after it. CPU: the resident set's high-water mark (Linux's VmHWM, reset through /proc/self/clear_refs);
    CUDA: PyTorch's peak allocated memory on the device. Everything the process holds counts (every backend's
    model is loaded at once for --compare); None where the peak cannot be reset (a lifetime peak would carry an
    earlier backend's or concurrency's into this one)."""

    def __init__(self, device: str) -> None:
        self._cuda = device.startswith("cuda")
        self._device = device
        self.mb: float | None = None

    def __enter__(self) -> _PeakMemory:
        if self._cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self._device)
            return self
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident set
            self._reset = True
        except OSError:
            self._reset = False
        return self

    def __exit__(self, *exc) -> None:
        if self._cuda:
            import torch

            mb = torch.cuda.max_memory_allocated(self._device) / 2**20
        elif not self._reset:
            return
        else:
            mb = _vm_hwm_mb()
            if mb is None:
                return
        self.mb = mb if self.mb is None else max(self.mb, mb)


def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gflops_per_frame(info, checkpoint: Path | None, lr_size: tuple[int, int], window: int) -> float:
    """GFLOPs per output frame of the model a runner runs: its generator config named by the model's published
    name (``vggx-<config>-x<scale>``: a served vggx-base-x4 is counted as base), else a ``.safetensors``
    checkpoint's own (its header), or the one an exported ``.onnx`` holds; NaN where none says (GFLOP/s and % of
    peak are then left out, not guessed)."""
    import re

    from vggx.checkpoint import read_checkpoint_config
    from vggx.generator.config import CONFIGS
    from vggx.generator.flops import measure_cost

    named = re.fullmatch(r"vggx-(.+)-x(\d+)", info.name)
    if named and named[1] in CONFIGS and CONFIGS[named[1]].scale == int(named[2]):
        cfg = CONFIGS[named[1]]
    elif checkpoint is None or checkpoint.suffix == ".safetensors":
        cfg = read_checkpoint_config(checkpoint)
    elif checkpoint.suffix == ".onnx":
        import onnx

        from vggx.client.runners import _generator_config

        meta = {p.key: p.value for p in onnx.load(str(checkpoint), load_external_data=False).metadata_props}
        cfg = _generator_config(meta, checkpoint)
    else:
        cfg = None
    if cfg is None or cfg.scale != info.scale:
        return float("nan")
    return measure_cost(cfg, lr_size, window).gflops_per_frame


def run_bench(config: BenchConfig, on_point: Callable[[BenchPoint], None] | None = None) -> BenchResult:
    """Run the sweep; backends are interleaved window by window at each concurrency.

    Raises:
        ConfigError, InferenceError, ServerError: a backend cannot be opened or fails every request.
    """
    runners: list[Runner] = []
    loads: list[_Load] = []
    try:
        for bcfg in config.backends:
            if bcfg.backend is Backend.TRITON:
                # a load generator counts what the server turns away (its queue full) as errors, as perf_analyzer
                # does: a retry would hide it, and its back-off would count as latency
                bcfg = dataclasses.replace(bcfg, retries=0)
            runners.append(open_runner(bcfg))
        infos = [r.info for r in runners]
        window = infos[0].window
        for bcfg, info in zip(config.backends, infos, strict=True):
            if info.window != window or info.scale != infos[0].scale:
                raise ConfigError(f"backends disagree on the model: {bcfg.backend.value} has window "
                                  f"{info.window}, scale {info.scale}; compare the same model")
        if config.window is not None and config.window != window:
            remedy = (f"serve one exported with `vggx export --window {config.window}`"
                      if all(b.backend is Backend.TRITON for b in config.backends) else
                      "in-process backends run the checkpoint's own window")
            raise ConfigError(f"the model's window is {window}, not {config.window} (--window checks it); {remedy}")
        h, w = config.lr_size
        lo, hi = infos[0].min_size, infos[0].max_size
        if not (lo[0] <= h <= hi[0] and lo[1] <= w <= hi[1]):
            raise ConfigError(f"--lr-size {h}x{w} is outside the model's profile {lo[0]}x{lo[1]}.."
                              f"{hi[0]}x{hi[1]}")
        for bcfg, runner in zip(config.backends, runners, strict=True):
            most = getattr(runner, "max_batch", 0)  # a Triton model's max_batch_size
            if most and config.batch > most:
                raise ConfigError(f"--batch {config.batch} is above the max_batch_size {most} of the model "
                                  f"{bcfg.backend.value} serves; pass --batch {most} or less")
        rng = np.random.default_rng(config.seed)
        lr = rng.integers(0, 256, size=(config.batch, window, h, w, 3), dtype=np.uint8)
        scale = infos[0].scale
        out_size = (h * scale, w * scale)
        gflops = [_gflops_per_frame(info, bcfg.checkpoint, config.lr_size, window)
                  for bcfg, info in zip(config.backends, infos, strict=True)]
        peaks = {}
        points: list[BenchPoint] = []
        for bcfg, runner in zip(config.backends, runners, strict=True):
            limit = getattr(runner, "max_in_flight", None)
            if limit and max(config.concurrency) > limit:
                log.warning("the %s backend runs %d request%s at a time in this process; above that the requests "
                            "queue in it (reported as max_in_flight)", bcfg.backend.value, limit,
                            "" if limit == 1 else "s")
            loads.append(_Load(lambda r=runner: r.infer(lr), max(config.concurrency), getattr(runner, "cancel", None)))
        for conc in config.concurrency:
            collected: list[list[_Window]] = [[] for _ in runners]
            server_stats: list[dict | None] = [None for _ in runners]
            memory = [_PeakMemory(b.device) if b.backend is not Backend.TRITON else None for b in config.backends]
            trackers = [_TritonStats(r) if b.backend is Backend.TRITON else None
                        for b, r in zip(config.backends, runners, strict=True)]
            for load in loads:
                load.warm(conc, config.warmup)
            before = [t.snapshot() if t else None for t in trackers]
            for _ in range(config.windows):
                for i, load in enumerate(loads):  # interleaved: drift hits every backend alike
                    with memory[i] or contextlib.nullcontext():
                        collected[i].append(load.window(conc, config.window_seconds, config.window_requests))
            for i, t in enumerate(trackers):
                if t:
                    answered = sum(wd.answered for wd in collected[i])  # a failed request may have no compute time
                    server_stats[i] = _TritonStats.per_request_us(before[i], t.settled(before[i], answered))
            base_fps = None
            for i, (bcfg, runner) in enumerate(zip(config.backends, runners, strict=True)):
                wins = collected[i]
                tput = window_stats([wd.work / wd.elapsed for wd in wins], config.max_spread)
                lat = latency_stats([x for wd in wins for x in wd.latencies])
                fps = tput.median * config.batch * window
                local = bcfg.backend is not Backend.TRITON
                device = bcfg.device if local else "server"
                where = (device, bcfg.threads if local else None)  # a CPU's peak on the threads it is given
                if where not in peaks:
                    peaks[where] = device_peak_gflops(device, bcfg.threads) if local else (
                        float("nan"), "server-side device: see the server's own machine")
                point = BenchPoint(
                    backend=bcfg.backend.value, description=runner.description, concurrency=conc,
                    batch=config.batch, window=window, lr_size=config.lr_size, out_size=out_size,
                    requests=sum(wd.completed for wd in wins), errors=sum(wd.errors for wd in wins),
                    throughput=tput, latency=lat, frames_per_s=fps,
                    mpix_per_s=fps * out_size[0] * out_size[1] / 1e6, gflops_per_frame=gflops[i],
                    achieved_gflops=fps * gflops[i], peak_gflops=peaks[where][0], peak_source=peaks[where][1],
                    peak_memory_mb=memory[i].mb if memory[i] else None,
                    max_in_flight=getattr(runner, "max_in_flight", None), server=server_stats[i],
                )
                if base_fps is None:
                    base_fps = fps
                point.ratio = fps / base_fps if base_fps else None
                points.append(point)
                if on_point:
                    on_point(point)
        return BenchResult(points, machine_description())
    finally:
        for load in loads:
            load.close()
        for r in runners:
            r.close()


def add_runner_options(parser, fp16: bool = False) -> None:
    """The in-process backend options the model benchmarks share: ``--backend onnxruntime|torch``, ``--device``,
    ``--checkpoint``, ``--threads`` (and ``--fp16``); :func:`runner_config` reads them back."""
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    parser.add_argument("--device", default="cpu")
    if fp16:
        parser.add_argument("--fp16", action="store_true", help="FP16 (torch backend on cuda)")
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped one")
    parser.add_argument("--threads", type=int)


def runner_config(args) -> BackendConfig:
    """The :class:`BackendConfig` of the options :func:`add_runner_options` added."""
    return BackendConfig(Backend(args.backend), checkpoint=args.checkpoint, device=args.device,
                         fp16=getattr(args, "fp16", False), threads=args.threads)


def stamp(result: dict, module: str, argv: list[str] | None) -> dict:
    """``result`` with the command that made it (``python -m vggx.benchmarks.<module> ARGS``) and the machine."""
    import sys

    args = " ".join(argv if argv is not None else sys.argv[1:])
    result.update(command=f"python -m vggx.benchmarks.{module} {args}".strip(), machine=machine_description())
    return result


def machine_description() -> dict[str, str]:
    import os

    import torch

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host_cpu": platform.processor() or platform.machine(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["host_cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    return info
