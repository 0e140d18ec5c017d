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


def _uint8_io_model(inner: str) -> onnx.ModelProto:
    """``lr`` uint8 [1, 2, 3] -> (``inner`` on uint8, or a Shape read before the Cast) -> ``sr`` uint8."""
    lr = helper.make_tensor_value_info("lr", TensorProto.UINT8, [1, 2, 3])
    sr = helper.make_tensor_value_info("sr", TensorProto.UINT8, [1, 3, 2] if inner == "transpose" else [1, 2, 3])
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [3])
    nodes = [helper.make_node("Shape", ["lr"], ["shape"], name="shape_of_lr")]
    if inner == "transpose":  # what vggx's wrapper exported before: uint8 moved, then cast
        nodes += [helper.make_node("Transpose", ["lr"], ["t"], perm=[0, 2, 1], name="move_uint8"),
                  helper.make_node("Cast", ["t"], ["f"], to=TensorProto.FLOAT),
                  helper.make_node("Cast", ["f"], ["sr"], to=TensorProto.UINT8)]
    else:
        nodes += [helper.make_node("Cast", ["lr"], ["f"], to=TensorProto.FLOAT, name="cast_in"),
                  helper.make_node("Relu", ["f"], ["g"]),
                  helper.make_node("Cast", ["g"], ["sr"], to=TensorProto.UINT8, name="cast_out")]
    graph = helper.make_graph(nodes, "g", [lr], [sr, shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_uint8_input_feeds_casts_only_shape_reads_the_cast():
    """TensorRT takes a uint8 network input into a Cast only: a Shape of it is rewired to the Cast's output (same
    shape), which is moved ahead so the graph stays sorted; the model still checks and runs."""
    from vggx.export.passes import uint8_io_through_casts

    model, n = uint8_io_through_casts(_uint8_io_model("relu"))
    assert n == 1
    (shape_node,) = [node for node in model.graph.node if node.op_type == "Shape"]
    assert list(shape_node.input) == ["f"] and model.graph.node[0].name == "cast_in"
    onnx.checker.check_model(model, full_check=True)
    x = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sr, shape = sess.run(None, {"lr": x})
    np.testing.assert_array_equal(sr, x)
    assert shape.tolist() == [1, 2, 3]


def test_uint8_moved_before_its_cast_is_refused():
    from vggx.export.passes import uint8_io_through_casts

    with pytest.raises(ValueError, match="uint8 input 'lr' feeds Transpose node 'move_uint8'"):
        uint8_io_through_casts(_uint8_io_model("transpose"))


@pytest.mark.parametrize("fixture", ["portable_onnx", "trt_onnx", "trt_fp16_onnx"])
def test_exported_graphs_take_and_give_uint8_through_casts(fixture, request):
    """Every flavour and precision vggx exports: ``lr`` feeds Casts only, ``sr`` is a Cast's output."""
    model = onnx.load(str(request.getfixturevalue(fixture)), load_external_data=False)
    (lr,), (sr,) = model.graph.input, model.graph.output
    assert {n.op_type for n in model.graph.node if lr.name in n.input} == {"Cast"}
    assert [n.op_type for n in model.graph.node if sr.name in n.output] == ["Cast"]
