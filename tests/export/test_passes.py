"""export/passes.py: the Resize rewrite is exact, the FP16 plugin twin runs in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from vggx.export.passes import float32_plugin_twin, phase_taps, plugin_ops, resize_to_conv


def _resize_model(mode: str, scale: int, channels: int, dtype=TensorProto.FLOAT) -> onnx.ModelProto:
    scales = numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode, cubic_coeff_a=-0.75,
                            coordinate_transformation_mode="half_pixel")
    graph = helper.make_graph(
        [node], "resize", [helper.make_tensor_value_info("x", dtype, ["B", channels, "H", "W"])],
        [helper.make_tensor_value_info("y", dtype, None)], initializer=[scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return onnx.shape_inference.infer_shapes(model)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize(("mode", "scale", "torch_mode"), [("cubic", 4, "bicubic"), ("linear", 2, "bilinear")])
@pytest.mark.parametrize(("h", "w"), [(5, 7), (16, 24), (1, 3)])
def test_resize_rewrite_matches_resize_and_torch(mode, scale, torch_mode, h, w):
    model = _resize_model(mode, scale, 3)
    rewritten, count = resize_to_conv(model)
    assert count == 1
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops == ["Pad", "Conv", "DepthToSpace"]
    assert "scales" not in {t.name for t in rewritten.graph.initializer}
    onnx.checker.check_model(rewritten, full_check=True)
    x = np.random.default_rng(h * w).random((2, 3, h, w), dtype=np.float32)
    want = F.interpolate(torch.from_numpy(x), scale_factor=float(scale), mode=torch_mode, align_corners=False)
    np.testing.assert_allclose(_run(rewritten, x), _run(model, x), atol=2e-6)
    np.testing.assert_allclose(_run(rewritten, x), want.numpy(), atol=2e-6)


def test_resize_rewrite_keeps_fp16_dtype():
    model = _resize_model("cubic", 4, 3, TensorProto.FLOAT16)
    rewritten, count = resize_to_conv(model)
    assert count == 1
    conv_w = next(t for t in rewritten.graph.initializer if t.name.endswith("_phase_filters"))
    assert conv_w.data_type == TensorProto.FLOAT16


def test_resize_rewrite_leaves_other_resizes_alone():
    model = _resize_model("nearest", 2, 3)
    rewritten, count = resize_to_conv(model)
    assert count == 0 and [n.op_type for n in rewritten.graph.node] == ["Resize"]


@pytest.mark.parametrize(("mode", "scale"), [("linear", 2), ("cubic", 4), ("cubic", 2), ("linear", 4)])
def test_phase_taps_have_unit_dc_gain(mode, scale):
    taps, pad = phase_taps(scale, mode)
    assert taps.shape == (scale, 2 * pad + 1)
    np.testing.assert_allclose(taps.sum(axis=1), 1.0, atol=1e-12)


def test_float32_plugin_twin_casts_fp16_plugin_nodes():
    from vggx.plugins.onnx import infer_plugin_shapes, plugin_model
    from vggx.plugins.onnxruntime import session_options
    from vggx.plugins.temporal_attention import temporal_attention_reference

    model = infer_plugin_shapes(plugin_model("temporal_attention", [[1, 3, 12, 4, 5]], TensorProto.FLOAT16,
                                             heads=2))
    assert plugin_ops(model) == ["temporal_attention"]
    twin = float32_plugin_twin(model)
    assert [n.op_type for n in twin.graph.node] == ["Cast", "temporal_attention", "Cast"]
    sess = ort.InferenceSession(twin.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    qkv = np.random.default_rng(0).standard_normal((1, 3, 12, 4, 5)).astype(np.float16)
    out = sess.run(None, {"qkv": qkv})[0]
    assert out.dtype == np.float16
    want = temporal_attention_reference(torch.from_numpy(qkv).float(), 2).half().numpy()
    np.testing.assert_allclose(out.astype(np.float32), want.astype(np.float32), atol=2e-3)
