"""vggx on Triton's Python backend: the portable ONNX graph on ONNX Runtime's CPU provider.

Copied into ``<repo>/vggx/<version>/model.py`` next to ``model.onnx`` by ``vggx.export.repository``.
Requests ``lr`` UINT8 [N, T, H, W, 3] -> ``sr`` UINT8 [N, T, s·H, s·W, 3]. Dynamic batching hands
``execute`` several requests: those with the same H, W are concatenated along N and run as one batch
(one that fails, e.g. out of memory, is run again request by request). A bad request gets its own error
response; it never fails the others or the server.

Host memory: on the CPU a window holds about 20 KiB per LR pixel (a 720p window ~19 GiB), which the kernel's OOM
killer takes from the server, not an error ONNX Runtime could return. So a CPU instance measures what a window holds
per pixel as it starts (a 64x64 window's peak RSS, ``_measure_bytes_per_pixel``) and takes a share of the memory then
available, divided among the instances, as its budget. Requests whose single window would not fit are refused at once
with an "out of memory" error (vggx's client tiles smaller on it); same-size requests are merged, and a request's
windows run together, only as far as the budget holds. Config parameters ``host_memory_budget`` (bytes the
instances share, ``auto`` or ``off``; ``vggx export --host-memory-budget``) and ``host_bytes_per_pixel`` (bytes,
``auto``) set them.

Self-contained on purpose (numpy + onnxruntime only): it runs in whatever Python the stub runs. The
``torch`` backend's model (``vggx.export.triton_models.torch_gpu``) reuses this class.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import defaultdict

import numpy as np
import triton_python_backend_utils as pb_utils

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
MEMORY_SHARE = 0.75  # of the memory available after loading that a CPU model's instances may take together
# measured bytes per pixel x this: the peak per pixel varies with the size and from run to run (19.3-27.0 KiB at
# 64x64 .. 180x320 with the shipped model, ONNX Runtime 1.2x on 2 cores) around the probe's 64x64 (19.2-22.0); the
# share left out of the budget covers the rest (benchmarks/RESULTS.md, "Host memory of a CPU-served model")
MEMORY_MARGIN = 1.3
_PROBE_SIZES = ((32, 32), (64, 64))  # LR H, W: the first warms the model up, the second is measured


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def _log(level: str, message: str) -> None:
    logger = getattr(pb_utils, "Logger", None)  # arrived in r22.xx
    if logger is not None:
        getattr(logger, f"log_{level}")(message)


def _bytes(size: float) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def _square(pixels: int) -> str:
    side = int(pixels**0.5)
    return f"{side}x{side}"


def _versions_served(config: dict, model_dir: str) -> int:
    """How many versions of the model the config's version policy serves at once (each its own instances)."""
    policy = config.get("version_policy") or {}
    if "specific" in policy:
        return max(1, len(policy["specific"].get("versions") or []))
    if "all" in policy:
        with contextlib.suppress(OSError):
            return max(1, sum(e.is_dir() and e.name.isdigit() for e in os.scandir(model_dir)))
        return 1
    return max(1, int((policy.get("latest") or {}).get("num_versions", 1)))


def _trim_heap() -> None:
    """Give back to the system what the C allocator (glibc) keeps of freed memory, where it can."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _memory_available() -> int | None:
    """Bytes of memory this process may still take: ``MemAvailable``, or less where its cgroup or one above it
    (a container's limit, v1 or v2) allows less; None where neither can be read. As ``vggx.client.runners``
    works it out (this file stays self-contained; a test holds the two equal)."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    headroom = _cgroup_headroom()
    if headroom is not None:
        found.append(headroom)
    return min(found) if found else None


def _cgroup_headroom(proc: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """The least headroom of this process's memory cgroup (``proc``) and those above it (None: no limit)."""
    try:
        with open(proc) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    root = os.fspath(root)
    v2 = next((p for p in (root, os.path.join(root, "unified"))
               if os.path.isfile(os.path.join(p, "cgroup.controllers"))), None)
    found = []
    for line in lines:
        _, controllers, where = [*line.split(":", 2), "", ""][:3]
        if controllers == "" and v2 is not None:
            base, files = v2, ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            base, files = os.path.join(root, "memory"), ("memory.limit_in_bytes", "memory.usage_in_bytes",
                                                         "total_inactive_file")
        else:
            continue
        group = os.path.normpath(os.path.join(base, where.strip("/")))
        while True:  # this cgroup, then each one above it (a limit set on a parent holds too)
            room = _cgroup_room(group, *files)
            if room is not None:
                found.append(room)
            if group == base or not group.startswith(base + os.sep):
                break
            group = os.path.dirname(group)
    return min(found) if found else None


def _cgroup_room(group: str, limit_file: str, usage_file: str, inactive_key: str) -> int | None:
    try:
        with open(os.path.join(group, limit_file)) as f:
            limit = f.read().strip()
        if limit == "max" or int(limit) >= 2**60:
            return None
        with open(os.path.join(group, usage_file)) as f:
            usage = int(f.read())
        with open(os.path.join(group, "memory.stat")) as f:
            stat = dict(line.split() for line in f.read().splitlines() if " " in line)
        return max(0, int(limit) - usage + int(stat.get(inactive_key, 0)))
    except (OSError, ValueError):
        return None


def _peak_rss_over(run) -> int | None:
    """Bytes by which this process's peak RSS rose over its RSS while ``run()`` ran; None where it cannot be read or
    did not rise. Linux's peak (``VmHWM``) is reset through ``/proc/self/clear_refs`` first; where that is refused
    (some sandboxes) the process's lifetime peak stands, which overstates a run below it: on the safe side."""

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    try:
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        before = status("VmRSS:")
        run()
        rise = status("VmHWM:") - before
    except (OSError, StopIteration, ValueError):
        return None
    return rise if rise > 0 else None


def _error(message: str, code: str = "INVALID_ARG"):
    # TritonError codes arrived in r23.xx; older stubs take the message only.
    codes = getattr(pb_utils.TritonError, code, None)
    err = pb_utils.TritonError(message, codes) if codes is not None else pb_utils.TritonError(message)
    return pb_utils.InferenceResponse(output_tensors=[], error=err)


class TritonPythonModel:
    """Parses the config, validates and batches requests; ``load`` returns what runs a batch.

    The ``torch`` model (``torch_gpu.py``) subclasses this one and overrides ``load`` only.
    """

    ARTEFACT = "model.onnx"  # in the version folder, next to model.py
    BACKEND = "python"  # the `vggx export --backend` that writes this model

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.window = int(params["window"])
        self.min_size = _size(params.get("min_size", "1x1"))
        # Concatenate the requests of one dynamic batch that share H, W into one run (the default). On a CPU
        # a 4-window run costs ~10% more per window than single ones (benchmarks/SERVE_RESULTS.md).
        self.merge = params.get("merge_requests", "true") == "true"
        self.max_size = _size(params.get("max_size", "4096x4096"))
        # instances are processes of their own: each on its share of the cores (ONNX Runtime's default pool spans
        # them all, so two instances ran twice as many busy threads as cores)
        self.instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
        path = os.path.join(args["model_repository"], args["model_version"], self.ARTEFACT)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{path} is missing: run vggx export --backend {self.BACKEND}")
        self.run = self.load(path, params, args)
        self.bytes_per_pixel, self.budget = None, None  # host memory a window holds per LR pixel; bytes it may hold
        self._refused: set[tuple[int, int]] = set()  # sizes refused for memory (logged once each)
        if args.get("model_instance_kind", "CPU") != "GPU":  # a GPU's memory has its own out-of-memory error
            self._budget_memory(config, params, args)

    def _budget_memory(self, config: dict, params: dict[str, str], args: dict) -> None:
        name = args.get("model_instance_name", "vggx")
        budget = params.get("host_memory_budget", "auto").strip().lower()
        if budget == "off":
            return
        per_pixel = params.get("host_bytes_per_pixel", "auto").strip().lower()
        try:
            bytes_per_pixel = None if per_pixel == "auto" else float(per_pixel)
            total = None if budget == "auto" else float(budget)
        except ValueError:
            bytes_per_pixel = total = -1.0
        if any(v is not None and not 0 < v < float("inf") for v in (bytes_per_pixel, total)):
            raise pb_utils.TritonModelException(f"config parameters host_memory_budget {budget!r} and "
                                                f"host_bytes_per_pixel {per_pixel!r}: each a number of bytes > 0 or "
                                                f"'auto' (host_memory_budget 'off': none)")
        if bytes_per_pixel is None:
            bytes_per_pixel = self._measure_bytes_per_pixel()
        if total is None:
            available = _memory_available()
            total = None if available is None else MEMORY_SHARE * available
        if bytes_per_pixel is None or total is None:
            what = ("what a window holds (Linux's peak RSS)" if bytes_per_pixel is None else
                    "the memory available (/proc/meminfo)")
            _log("warn", f"{name}: {what} cannot be read here, so requests are not sized to the host's memory: set "
                         f"the config parameters host_bytes_per_pixel and host_memory_budget (vggx export "
                         f"--host-memory-budget) to size them")
            return
        # each instance is a process of its own, and so is each version served (a canary beside the current one); a
        # version loaded while the last still serves (a rolling update) measures what is left then: pin the budget
        # where that matters
        versions = _versions_served(config, args["model_repository"])
        self.budget, self.bytes_per_pixel = int(total / (self.instances * versions)), bytes_per_pixel
        most = int(self.budget / bytes_per_pixel)
        shared = f" ({_bytes(total)} shared by {self.instances} instance(s) x {versions} version(s))"
        warm = [(int(d[-3]), int(d[-2])) for w in config.get("model_warmup", [])
                for i in (w.get("inputs") or {}).values() if len(d := i.get("dims") or []) >= 3]
        if warm and (big := max(warm, key=lambda hw: hw[0] * hw[1])) and self._windows_that_fit(*big) < 1:
            raise pb_utils.TritonModelException(
                f"the host memory budget of {_bytes(self.budget)} per instance{shared} is below what the warm-up "
                f"window ({big[0]}x{big[1]}) holds, {_bytes(bytes_per_pixel * big[0] * big[1])}: raise "
                f"host_memory_budget (vggx export --host-memory-budget), serve fewer instances, or free memory")
        _log("info", f"{name}: host memory budget {_bytes(self.budget)}{shared}, {bytes_per_pixel / 1024:.1f} KiB per "
                     f"LR pixel of a window: windows of up to {most} LR pixels (about {_square(most)}) fit, larger "
                     f"ones are refused as out of memory")

    def _measure_bytes_per_pixel(self) -> float | None:
        """Host memory one window holds per LR pixel, with :data:`MEMORY_MARGIN`: the peak RSS of a zero 64x64 window
        over the RSS before it, the larger of two (after a 32x32 one, which takes what the first run allocates once;
        what the C allocator kept of a run is given back before each, or the next would reuse it unseen)."""
        (lo_h, lo_w), (hi_h, hi_w) = self.min_size, self.max_size
        sizes = [(min(max(h, lo_h), hi_h), min(max(w, lo_w), hi_w)) for h, w in _PROBE_SIZES]
        for h, w in sizes[:-1]:
            self.run(np.zeros((1, self.window, h, w, 3), np.uint8))
        h, w = sizes[-1]
        peaks = []
        for _ in range(2):
            _trim_heap()
            peaks.append(_peak_rss_over(lambda: self.run(np.zeros((1, self.window, h, w, 3), np.uint8))))
        peaks = [p for p in peaks if p is not None]
        return MEMORY_MARGIN * max(peaks) / (h * w) if peaks else None

    def _windows_that_fit(self, h: int, w: int) -> int | None:
        """How many windows of ``h`` x ``w`` one run may hold within the host memory budget (None: no bound)."""
        if self.budget is None:
            return None
        return int(self.budget // (self.bytes_per_pixel * h * w))

    def load(self, path: str, params: dict[str, str], args: dict):
        """Return a callable: uint8 ``[N, T, H, W, 3]`` -> uint8 ``[N, T, s·H, s·W, 3]``."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        threads = int(params.get("cpu_threads", "0"))
        if threads <= 0 and self.instances > 1:
            threads = max(1, len(os.sched_getaffinity(0)) // self.instances)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle: the cores are shared
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        # the memory arena gives back what a run took beyond what it holds: one large request (a 720p window is
        # ~19 GiB on the CPU) would otherwise stay allocated for the model's life
        shrink = ort.RunOptions()
        shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return lambda batch: session.run([OUTPUT_NAME], {INPUT_NAME: batch}, shrink)[0]

    def _validate(self, lr) -> str | None:
        """Why ``lr`` (one request's input, with its batch dim) is not a valid request, or None."""
        if lr is None:
            return f"missing input {INPUT_NAME!r}"
        if lr.dtype != np.uint8:
            return f"input {INPUT_NAME!r} must be UINT8, got {lr.dtype}"
        if lr.ndim != 5:
            return f"input {INPUT_NAME!r} must be [N, T, H, W, 3], got shape {list(lr.shape)}"
        n, t, h, w, c = lr.shape
        if n < 1:
            return "empty batch"
        if t != self.window:
            return f"input {INPUT_NAME!r} must hold T={self.window} frames per window, got {t}"
        if c != 3:
            return f"input {INPUT_NAME!r} must be RGB (last dim 3), got {c}"
        (lo_h, lo_w), (hi_h, hi_w) = self.min_size, self.max_size
        if not (lo_h <= h <= hi_h and lo_w <= w <= hi_w):
            hint = "tile larger frames" if h > hi_h or w > hi_w else "pad or upscale smaller frames first"
            return f"frame size {h}x{w} is outside the model's range {lo_h}x{lo_w} .. {hi_h}x{hi_w}; {hint}"
        return None

    def _oversized(self, lr: np.ndarray) -> str | None:
        """Why one window of ``lr`` (a valid request) does not fit the host memory budget, or None."""
        h, w = lr.shape[2:4]
        fit = self._windows_that_fit(h, w)
        if fit is None or fit >= 1:
            return None
        most = int(self.budget / self.bytes_per_pixel)
        problem = (f"out of memory: a {h}x{w} window needs about {_bytes(self.bytes_per_pixel * h * w)} of host "
                   f"memory, above this model instance's budget of {_bytes(self.budget)} (config parameter "
                   f"host_memory_budget): windows of up to {most} LR pixels (about {_square(most)}) fit; send smaller "
                   f"tiles")
        if (h, w) not in self._refused and len(self._refused) < 100:  # for the operator: clients go to smaller tiles
            self._refused.add((h, w))
            _log("warn", problem)
        return problem

    def execute(self, requests):
        responses = [None] * len(requests)
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = defaultdict(list)
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, INPUT_NAME)
            lr = tensor.as_numpy() if tensor is not None else None
            problem = self._validate(lr)
            if problem:
                responses[i] = _error(problem)
            elif problem := self._oversized(lr):  # refused before it runs: vggx's client tiles smaller on it
                responses[i] = _error(problem, "INTERNAL")
            else:
                groups[lr.shape[2:4] if self.merge else (i,)].append((i, lr))
        for members in (batch for group in groups.values() for batch in self._pack(group)):
            try:
                self._respond(members, responses)
            except Exception as exc:  # any runtime failure (e.g. out of memory): retried request by request
                for member in members if len(members) > 1 else ():
                    try:
                        self._respond([member], responses)
                    except Exception as alone:
                        responses[member[0]] = _error(f"inference failed: {alone}", "INTERNAL")
                if len(members) == 1:
                    responses[members[0][0]] = _error(f"inference failed: {exc}", "INTERNAL")
        return responses

    def _pack(self, members: list[tuple[int, np.ndarray]]) -> list[list[tuple[int, np.ndarray]]]:
        """Same-size ``members`` in batches whose windows fit the host memory budget together (in order; a request
        with more windows than fit is a batch of its own, which :meth:`_infer` runs in parts)."""
        fit = self._windows_that_fit(*members[0][1].shape[2:4])
        batches, windows = [[]], 0
        for member in members:
            n = member[1].shape[0]
            if batches[-1] and fit is not None and windows + n > fit:
                batches.append([])
                windows = 0
            batches[-1].append(member)
            windows += n
        return batches

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """``self.run`` on ``batch``, in parts of as many windows as the host memory budget holds."""
        fit = self._windows_that_fit(*batch.shape[2:4])
        if fit is None or batch.shape[0] <= fit:
            return self.run(batch)
        return np.concatenate([self.run(batch[i:i + fit]) for i in range(0, batch.shape[0], fit)])

    def _respond(self, members: list[tuple[int, np.ndarray]], responses: list) -> None:
        """Run ``members`` (request index, input) as one batch and set their responses."""
        batch = np.concatenate([lr for _, lr in members]) if len(members) > 1 else members[0][1]
        sr = self._infer(batch)
        parts, start = [], 0
        for i, lr in members:
            parts.append((i, pb_utils.Tensor(OUTPUT_NAME, sr[start:start + lr.shape[0]])))
            start += lr.shape[0]
        for i, tensor in parts:  # all made before any is answered: a failure leaves none half-set
            responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])

    def finalize(self) -> None:
        close = getattr(self.run, "close", None)
        if close is not None:
            close()
        self.run = None
