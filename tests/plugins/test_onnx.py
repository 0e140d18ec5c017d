"""ONNX form of the ops: one node each, checker + shape inference, and the dynamo exporter's table."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import TensorProto

from vggx.plugins import flow_warp, temporal_attention
from vggx.plugins.onnx import (
    custom_translation_table,
    infer_plugin_shapes,
    plugin_model,
    plugin_node,
)


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


class TestPluginNode:
    def test_flow_warp_node_names_the_trt_plugin(self):
        node = plugin_node("flow_warp", ["x", "flow"], "out")
        assert (node.domain, node.op_type) == ("vggx", "flow_warp")
        assert _attrs(node) == {"plugin_namespace": b"vggx", "plugin_version": b"1"}

    def test_attention_node_carries_heads(self):
        node = plugin_node("temporal_attention", ["qkv"], "out", heads=4)
        assert _attrs(node) == {"heads": 4, "plugin_namespace": b"vggx", "plugin_version": b"1"}

    def test_attention_without_heads_is_an_error(self):
        with pytest.raises(ValueError, match="needs heads"):
            plugin_node("temporal_attention", ["qkv"], "out")


class TestShapeInference:
    @pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
    def test_flow_warp_output_is_x_shape(self, dtype):
        model = infer_plugin_shapes(plugin_model("flow_warp", [["B", 3, "H", 7], ["B", 2, "H", 7]], dtype))
        onnx.checker.check_model(model, full_check=True)
        out = model.graph.output[0]
        assert out.type.tensor_type.elem_type == dtype
        assert _dims(out) == ["B", 3, "H", 7]

    def test_flow_warp_fp16_features_fp32_flow(self):
        model = plugin_model(
            "flow_warp", [[1, 4, 5, 6], [1, 2, 5, 6]], TensorProto.FLOAT16, flow_dtype=TensorProto.FLOAT
        )
        model = infer_plugin_shapes(model)
        onnx.checker.check_model(model, full_check=True)
        assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16

    @pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
    def test_attention_output_is_ntchw(self, dtype):
        model = infer_plugin_shapes(
            plugin_model("temporal_attention", [["N", 8, 48, "H", "W"]], dtype, heads=4)
        )
        onnx.checker.check_model(model, full_check=True)
        assert _dims(model.graph.output[0]) == ["N", 8, 16, "H", "W"]

    def test_attention_rejects_channels_not_multiple_of_3(self):
        model = plugin_model("temporal_attention", [[1, 2, 10, 3, 3]], heads=1)
        with pytest.raises(onnx.shape_inference.InferenceError, match="3\\*C, got 10"):
            infer_plugin_shapes(model)

    @pytest.mark.parametrize(
        "shapes, match",
        [
            ([[1, 4, 5, 6], [1, 3, 5, 6]], "2 channels .*got 3"),
            ([[1, 4, 5, 6], [1, 2, 4, 6]], "flow's height 4 is not x's 5"),
            ([[1, 4, 5, 6], [2, 2, 5, 6]], "flow's batch 2 is not x's 1"),
            ([[4, 5, 6], [1, 2, 5, 6]], "x must be .*rank 3"),
            ([[1, 4, 5, 6], [2, 5, 6]], "flow must be .*rank 3"),
        ],
    )
    def test_flow_warp_rejects_inconsistent_shapes(self, shapes, match):
        # what every implementation refuses at run time (ONNX Runtime's Python op aborts the process on it)
        with pytest.raises(onnx.shape_inference.InferenceError, match=match):
            infer_plugin_shapes(plugin_model("flow_warp", shapes))

    def test_flow_warp_symbolic_shapes_pass(self):
        infer_plugin_shapes(plugin_model("flow_warp", [["B", 4, "H", "W"], ["B", "F", "H2", 6]]))

    def test_flow_warp_rejects_fp32_features_with_fp16_flow(self):
        model = plugin_model(
            "flow_warp", [[1, 4, 5, 6], [1, 2, 5, 6]], TensorProto.FLOAT, flow_dtype=TensorProto.FLOAT16
        )
        with pytest.raises(onnx.shape_inference.InferenceError, match="float16 flow"):
            infer_plugin_shapes(model)

    @pytest.mark.parametrize("heads", [5, 0, -2])
    def test_attention_rejects_heads_not_dividing_c(self, heads):
        model = plugin_model("temporal_attention", [[1, 2, 12, 3, 3]], heads=heads)
        with pytest.raises(onnx.shape_inference.InferenceError, match=f"heads={heads} must divide C=4"):
            infer_plugin_shapes(model)

    def test_downstream_shapes_are_inferred(self):
        model = plugin_model("flow_warp", [["B", 3, 5, 7], ["B", 2, 5, 7]])
        relu = onnx.helper.make_node("Relu", ["out"], ["y"])
        model.graph.node.append(relu)
        model.graph.output[0].name = "y"
        model = infer_plugin_shapes(model)
        assert _dims(model.graph.output[0]) == ["B", 3, 5, 7]
        assert _dims(next(v for v in model.graph.value_info if v.name == "out")) == ["B", 3, 5, 7]


class _TwoOps(torch.nn.Module):
    def forward(self, x, flow, qkv):
        return flow_warp(x, flow), temporal_attention(qkv, 2)


@pytest.mark.slow
def test_dynamo_export_emits_one_node_per_op():
    x, flow, qkv = torch.randn(2, 3, 5, 7), torch.randn(2, 2, 5, 7), torch.randn(1, 4, 12, 3, 5)
    batch = torch.export.Dim("B")
    program = torch.onnx.export(
        _TwoOps().eval(),
        (x, flow, qkv),
        dynamo=True,
        custom_translation_table=custom_translation_table(),
        input_names=["x", "flow", "qkv"],
        output_names=["warped", "attended"],
        dynamic_shapes={"x": {0: batch}, "flow": {0: batch}, "qkv": None},
    )
    model = program.model_proto
    assert [(n.domain, n.op_type) for n in model.graph.node] == [
        ("vggx", "flow_warp"),
        ("vggx", "temporal_attention"),
    ]
    assert _attrs(model.graph.node[1])["heads"] == 2
    assert {(o.domain, o.version) for o in model.opset_import} >= {("vggx", 1)}
    model = infer_plugin_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    assert _dims(model.graph.output[0])[1:] == [3, 5, 7]
    assert _dims(model.graph.output[1]) == [1, 4, 4, 3, 5]
