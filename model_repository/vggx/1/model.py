"""vggx on Triton's Python backend: the portable ONNX graph on ONNX Runtime's CPU provider.

Copied into ``<repo>/vggx/<version>/model.py`` next to ``model.onnx`` by ``vggx.export.repository``.
Requests ``lr`` UINT8 [N, T, H, W, 3] -> ``sr`` UINT8 [N, T, s·H, s·W, 3]. Dynamic batching hands
``execute`` several requests: those with the same H, W are concatenated along N and run as one batch
(one that fails, e.g. out of memory, is run again request by request). A bad request gets its own error
response; it never fails the others or the server.

Self-contained on purpose (numpy + onnxruntime only): it runs in whatever Python the stub runs. The
``torch`` backend's model (``vggx.export.triton_models.torch_gpu``) reuses this class.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np
import triton_python_backend_utils as pb_utils

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


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

    def execute(self, requests):
        responses = [None] * len(requests)
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = defaultdict(list)
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, INPUT_NAME)
            lr = tensor.as_numpy() if tensor is not None else None
            problem = self._validate(lr)
            if problem:
                responses[i] = _error(problem)
            else:
                groups[lr.shape[2:4] if self.merge else (i,)].append((i, lr))
        for members in groups.values():
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

    def _respond(self, members: list[tuple[int, np.ndarray]], responses: list) -> None:
        """Run ``members`` (request index, input) as one batch and set their responses."""
        batch = np.concatenate([lr for _, lr in members]) if len(members) > 1 else members[0][1]
        sr = self.run(batch)
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
