"""vggx on Triton's Python backend with PyTorch on the GPU: FP16 generator + the vggx Triton kernels.

Copied into ``<repo>/vggx/<version>/model.py`` next to ``model.safetensors`` by ``vggx.export.repository``
(backend ``torch``). For GPU deployments without TensorRT; the stub's Python needs ``vggx`` (with
``torch`` and ``triton``) installed. On a GPU instance it runs ``vggx.client.cuda.CudaUpscaler`` (FP16,
the ``vggx::flow_warp`` / ``vggx::temporal_attention`` kernels, a CUDA graph per input shape, pinned
staging); a KIND_CPU instance runs the same generator in FP32 with the reference ops (tests). Same
contract, batching and validation as the ONNX Runtime model (``onnxruntime_cpu.py``); kept
self-contained because Triton loads one file per model.
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
    codes = getattr(pb_utils.TritonError, code, None)
    err = pb_utils.TritonError(message, codes) if codes is not None else pb_utils.TritonError(message)
    return pb_utils.InferenceResponse(output_tensors=[], error=err)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import torch

        from vggx.checkpoint import load_checkpoint
        from vggx.generator import UInt8Upscaler

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.window = int(params["window"])
        self.min_size = _size(params.get("min_size", "1x1"))
        # Concatenate the requests of one dynamic batch that share H, W into one run (the default). On a CPU
        # a 4-window run costs ~10% more per window than single ones (benchmarks/SERVE_RESULTS.md).
        self.merge = params.get("merge_requests", "true") == "true"
        self.max_size = _size(params.get("max_size", "4096x4096"))
        path = os.path.join(args["model_repository"], args["model_version"], "model.safetensors")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{path} is missing: run vggx export --backend torch")
        module = UInt8Upscaler(load_checkpoint(path).generator).eval()
        if args.get("model_instance_kind") == "GPU":
            from vggx.client.cuda import CudaUpscaler

            self.run = CudaUpscaler(module, device=f"cuda:{args['model_instance_device_id']}",
                                    fp16=params.get("precision", "fp16") == "fp16")
        else:
            def run(batch: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return module(torch.from_numpy(batch)).numpy()

            self.run = run

    def _validate(self, lr) -> str | None:
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
            return (f"frame size {h}x{w} is outside the model's range {lo_h}x{lo_w} .. {hi_h}x{hi_w}; "
                    f"tile larger frames")
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
            batch = np.concatenate([lr for _, lr in members]) if len(members) > 1 else members[0][1]
            try:
                sr = self.run(batch)
            except Exception as exc:  # e.g. CUDA out of memory: these requests' error, not a crash
                for i, _ in members:
                    responses[i] = _error(f"inference failed: {exc}", "INTERNAL")
                continue
            start = 0
            for i, lr in members:
                part = sr[start:start + lr.shape[0]]
                start += lr.shape[0]
                responses[i] = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT_NAME, part)])
        return responses

    def finalize(self) -> None:
        close = getattr(self.run, "close", None)
        if close is not None:
            close()
        self.run = None
