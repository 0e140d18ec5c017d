"""vggx on Triton's Python backend with PyTorch on the GPU: FP16 generator + the vggx Triton kernels.

Copied into ``<repo>/vggx/<version>/model.py`` next to ``model.safetensors`` by ``vggx.export.repository``
(backend ``torch``). For GPU deployments without TensorRT; the stub's Python needs ``vggx`` (with
``torch`` and ``triton``) installed. On a GPU instance it runs ``vggx.client.cuda.CudaUpscaler`` (FP16,
the ``vggx::flow_warp`` / ``vggx::temporal_attention`` kernels, a CUDA graph per input shape, pinned
staging; with the config parameter ``compile`` = ``true`` (``vggx export --backend torch --compile``)
``torch.compile`` first, which the config's warm-up request then triggers at load); a KIND_CPU
instance runs the same generator in FP32 with the reference ops (tests). Same
contract, batching and validation as the ONNX Runtime model: it subclasses that model
(``vggx.export.triton_models.onnxruntime_cpu``) and only loads and runs differently.
"""

from __future__ import annotations

import numpy as np

from vggx.export.triton_models.onnxruntime_cpu import TritonPythonModel as OnnxRuntimeModel


class TritonPythonModel(OnnxRuntimeModel):
    ARTEFACT = "model.safetensors"
    BACKEND = "torch"

    def load(self, path: str, params: dict[str, str], args: dict):
        import torch

        from vggx.checkpoint import load_checkpoint
        from vggx.generator import UInt8Upscaler

        module = UInt8Upscaler(load_checkpoint(path).generator).eval()
        if args.get("model_instance_kind") == "GPU":
            from vggx.client.cuda import CudaUpscaler

            return CudaUpscaler(module, device=f"cuda:{args['model_instance_device_id']}",
                                fp16=params.get("precision", "fp16") == "fp16",
                                compile=params.get("compile", "false") == "true")

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(batch)).numpy()

        return run
