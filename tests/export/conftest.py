"""Run-scoped exports of the tiny checkpoint (each dynamo export takes ~30-60 s on a 2-core CPU).

The ``trt`` flavour graphs use a window of 4 frames instead of the checkpoint's 8: the loops unroll
per frame, so tracing is faster, and every op still appears (the portable fixture keeps T = 8).
"""

from __future__ import annotations

import pytest

TRT_WINDOW = 4


@pytest.fixture(scope="session")
def trt_window() -> int:
    """T of the ``trt`` flavour fixtures."""
    return TRT_WINDOW


@pytest.fixture(scope="session")
def trt_onnx(tiny_checkpoint, tmp_path_factory):
    """The ``trt`` flavour (plugin nodes), FP32."""
    from vggx.export import ExportConfig, Flavor, export_onnx

    cfg = ExportConfig(flavor=Flavor.TRT, window=TRT_WINDOW)
    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("trt") / "model.onnx", cfg)


@pytest.fixture(scope="session")
def trt_fp16_onnx(tiny_checkpoint, tmp_path_factory):
    """The ``trt`` flavour in FP16 with FP32 islands: what ``vggx export --fp16`` writes."""
    from vggx.export import ExportConfig, Flavor, Precision, export_onnx

    cfg = ExportConfig(flavor=Flavor.TRT, precision=Precision.FP16, window=TRT_WINDOW)
    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("trt16") / "model.onnx", cfg)


@pytest.fixture(scope="session")
def portable_session(portable_onnx):
    from vggx.export.verify import ort_session

    return ort_session(portable_onnx)
