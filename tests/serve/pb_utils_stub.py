"""A stand-in for ``triton_python_backend_utils``, the module Triton's Python-backend stub gives ``model.py``: enough
of it to run vggx's models' ``initialize``/``execute`` in this process (their batching and error paths, which a
real server reaches only when a run fails). The served behaviour itself is tested on the real ``tritonserver``."""

from __future__ import annotations

import types

import numpy as np


def module() -> types.ModuleType:
    pb = types.ModuleType("triton_python_backend_utils")

    class TritonError:
        INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

        def __init__(self, message: str, code: str | None = None) -> None:
            self.message, self.code = message, code

    class TritonModelException(Exception):
        pass

    class Tensor:
        def __init__(self, name: str, array: np.ndarray) -> None:
            self.name, self.array = name, np.ascontiguousarray(array)

        def as_numpy(self) -> np.ndarray:
            return self.array

    class InferenceResponse:
        def __init__(self, output_tensors: list, error: TritonError | None = None) -> None:
            self.output_tensors, self.error = output_tensors, error

    class InferenceRequest:
        def __init__(self, **inputs: np.ndarray) -> None:
            self.inputs = {k: Tensor(k, v) for k, v in inputs.items()}

    def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
        return request.inputs.get(name)

    class Logger:  # what the model logs, as (level, message), in pb.logged
        pass

    for level in ("info", "warn", "error", "verbose"):
        setattr(Logger, f"log_{level}", staticmethod(lambda message, level=level: pb.logged.append((level, message))))
    pb.logged = []

    for item in (TritonError, TritonModelException, Tensor, InferenceResponse, InferenceRequest,
                 get_input_tensor_by_name, Logger):
        setattr(pb, item.__name__, item)
    return pb
