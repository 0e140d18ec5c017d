"""ONNX form of the two ops: one node each, which TensorRT maps to the plugin and ORT to a custom op.

Node (DESIGN.md, TRT_NOTES.md §2): domain ``vggx`` (opset 1), ``op_type`` ``flow_warp`` /
``temporal_attention``, string attributes ``plugin_namespace="vggx"`` and ``plugin_version="1"``
(TensorRT's parser ignores the domain and looks the plugin up by op_type + these two), plus
``heads`` (int) for attention.

- :func:`custom_translation_table` plugs the onnxscript functions below into
  ``torch.onnx.export(..., dynamo=True, custom_translation_table=...)``.
- :func:`register_onnx_schemas` teaches ``onnx`` the two ops (types and shape inference), so
  ``onnx.checker`` and ``onnx.shape_inference`` infer the plugin outputs; :func:`infer_plugin_shapes`
  registers them and runs shape inference on a model.
- :func:`plugin_node` / :func:`plugin_model` build the node, and a one-node model, by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import onnx
import onnxscript
from onnx import TensorProto, helper
from onnxscript import FLOAT

__all__ = [
    "DOMAIN",
    "OPSET_VERSION",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "custom_translation_table",
    "flow_warp_onnx",
    "infer_plugin_shapes",
    "plugin_model",
    "plugin_node",
    "register_onnx_schemas",
    "temporal_attention_onnx",
]

DOMAIN = "vggx"
OPSET_VERSION = 1
PLUGIN_NAMESPACE = "vggx"
PLUGIN_VERSION = "1"

_vggx = onnxscript.values.Opset(DOMAIN, OPSET_VERSION)


# The FLOAT annotations are required by onnxscript; FP16 inputs keep their FP16 type in the export.
@onnxscript.script(_vggx)
def flow_warp_onnx(x: FLOAT, flow: FLOAT) -> FLOAT:
    """``vggx::flow_warp(x, flow)`` as one plugin node."""
    out = _vggx.flow_warp(x, flow, plugin_namespace="vggx", plugin_version="1")
    return out


@onnxscript.script(_vggx)
def temporal_attention_onnx(qkv: FLOAT, heads: int) -> FLOAT:
    """``vggx::temporal_attention(qkv, heads)`` as one plugin node."""
    out = _vggx.temporal_attention(qkv, heads=heads, plugin_namespace="vggx", plugin_version="1")
    return out


def custom_translation_table() -> dict[Any, Any]:
    """``{torch op overload: onnxscript function}`` for ``torch.onnx.export(dynamo=True)``.

    Example::

        torch.onnx.export(model, args, dynamo=True, custom_translation_table=custom_translation_table())
    """
    import torch

    from . import ops  # noqa: F401  (registers torch.ops.vggx.*)

    return {
        torch.ops.vggx.flow_warp.default: flow_warp_onnx,
        torch.ops.vggx.temporal_attention.default: temporal_attention_onnx,
    }


def plugin_node(
    op: str, inputs: Sequence[str], output: str, *, heads: int | None = None, name: str = ""
) -> Any:
    """The ``NodeProto`` of ``op`` (``"flow_warp"`` or ``"temporal_attention"``)."""
    attrs: dict[str, Any] = {"plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION}
    if op == "temporal_attention":
        if heads is None:
            raise ValueError("temporal_attention needs heads")
        attrs["heads"] = int(heads)
        expected = 1
    elif op == "flow_warp":
        expected = 2
    else:
        raise ValueError(f"unknown vggx op {op!r}")
    if len(inputs) != expected:
        raise ValueError(f"{op} takes {expected} input(s), got {len(inputs)}")
    return helper.make_node(op, list(inputs), [output], name=name or op, domain=DOMAIN, **attrs)


def plugin_model(
    op: str,
    shapes: Sequence[Sequence[int | str]],
    dtype: int = TensorProto.FLOAT,
    *,
    heads: int | None = None,
    flow_dtype: int | None = None,
    opset: int = 20,
) -> Any:
    """A one-node model: inputs ``x, flow`` (or ``qkv``) of ``shapes``, output ``out`` (shape inferred).

    ``dtype`` / ``flow_dtype`` are ``onnx.TensorProto`` element types. The output is declared with
    its element type only; :func:`infer_plugin_shapes` fills in its shape.
    """
    names = ["x", "flow"] if op == "flow_warp" else ["qkv"]
    if len(shapes) != len(names):
        raise ValueError(f"{op} takes {len(names)} input shape(s), got {len(shapes)}")
    types = [dtype, flow_dtype if flow_dtype is not None else dtype][: len(names)]
    inputs = [
        helper.make_tensor_value_info(n, t, list(s)) for n, t, s in zip(names, types, shapes, strict=True)
    ]
    output = helper.make_tensor_value_info("out", dtype, None)
    graph = helper.make_graph([plugin_node(op, names, "out", heads=heads)], f"vggx_{op}", inputs, [output])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, OPSET_VERSION)]
    )
    model.ir_version = min(model.ir_version, 10)  # what onnxruntime 1.18+ loads
    return model


def _copy_dims(src: Any, dst: Any, dims: Sequence[Any]) -> None:
    for dim in dims:
        new = dst.dim.add()
        if dim is not None:
            new.CopyFrom(dim)


def _static(dim: Any) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") else None


def _flow_warp_infer(ctx: Any) -> None:
    x, flow = ctx.get_input_type(0), ctx.get_input_type(1)
    if x.tensor_type.elem_type == onnx.TensorProto.FLOAT and flow.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
        # FP16 features may come with an FP32 flow (an FP32 island); the other way no plugin format offers
        raise onnx.shape_inference.InferenceError("vggx.flow_warp: float x with a float16 flow (cast the flow)")
    xs = list(x.tensor_type.shape.dim) if x.tensor_type.HasField("shape") else None
    fs = list(flow.tensor_type.shape.dim) if flow.tensor_type.HasField("shape") else None
    if xs is not None and len(xs) != 4:
        raise onnx.shape_inference.InferenceError(f"vggx.flow_warp: x must be [B, C, H, W], got rank {len(xs)}")
    if fs is not None:
        if len(fs) != 4:
            raise onnx.shape_inference.InferenceError(
                f"vggx.flow_warp: flow must be [B, 2, H, W], got rank {len(fs)}")
        if _static(fs[1]) not in (None, 2):
            raise onnx.shape_inference.InferenceError(
                f"vggx.flow_warp: flow must have 2 channels (x, y offsets), got {_static(fs[1])}")
        for i, name in ((0, "batch"), (2, "height"), (3, "width")):
            a, b = (_static(xs[i]), _static(fs[i])) if xs is not None else (None, None)
            if a is not None and b is not None and a != b:
                raise onnx.shape_inference.InferenceError(
                    f"vggx.flow_warp: flow's {name} {b} is not x's {a}")
    out = onnx.TypeProto()
    out.tensor_type.elem_type = x.tensor_type.elem_type
    if xs is not None:
        out.tensor_type.shape.CopyFrom(x.tensor_type.shape)
    ctx.set_output_type(0, out)


def _attention_infer(ctx: Any) -> None:
    qkv = ctx.get_input_type(0)
    out = onnx.TypeProto()
    out.tensor_type.elem_type = qkv.tensor_type.elem_type
    if qkv.tensor_type.HasField("shape"):
        dims = list(qkv.tensor_type.shape.dim)
        if len(dims) != 5:
            raise onnx.shape_inference.InferenceError(
                f"vggx.temporal_attention: qkv must be [N, T, 3C, H, W], got rank {len(dims)}"
            )
        channels = onnx.TensorShapeProto.Dimension()
        if dims[2].HasField("dim_value"):
            if dims[2].dim_value % 3:
                raise onnx.shape_inference.InferenceError(
                    f"vggx.temporal_attention: qkv channels must be 3*C, got {dims[2].dim_value}"
                )
            channels.dim_value = dims[2].dim_value // 3
        heads = ctx.get_attribute("heads")
        if heads is not None and (heads.i < 1 or (channels.HasField("dim_value") and channels.dim_value % heads.i)):
            raise onnx.shape_inference.InferenceError(
                f"vggx.temporal_attention: heads={heads.i} must divide C={channels.dim_value or '?'}")
        _copy_dims(qkv, out.tensor_type.shape, [dims[0], dims[1], channels, dims[3], dims[4]])
    ctx.set_output_type(0, out)


_schema_lock = threading.Lock()
_schemas_registered = False
_FLOATS = ["tensor(float)", "tensor(float16)"]


def register_onnx_schemas() -> None:
    """Register the ``vggx`` domain's two ops with ``onnx`` (once per process).

    Afterwards ``onnx.checker.check_model(m, full_check=True)`` and
    ``onnx.shape_inference.infer_shapes(m, strict_mode=True)`` accept the plugin nodes and infer
    their outputs: flow_warp's is ``x``'s shape, temporal_attention's ``[N, T, C, H, W]``.
    """
    global _schemas_registered
    with _schema_lock:
        if _schemas_registered:
            return
        schema, attr, param = (
            onnx.defs.OpSchema,
            onnx.defs.OpSchema.Attribute,
            onnx.defs.OpSchema.FormalParameter,
        )
        string = onnx.defs.OpSchema.AttrType.STRING
        common = [
            attr("plugin_namespace", string, 'TensorRT plugin namespace ("vggx")', required=False),
            attr("plugin_version", string, 'TensorRT plugin version ("1")', required=False),
        ]
        flow_warp = schema(
            "flow_warp",
            DOMAIN,
            OPSET_VERSION,
            "Bilinear backward warp of x [B, C, H, W] by flow [B, 2, H, W] (pixels), zeros outside.",
            inputs=[param("x", "T", "features"), param("flow", "F", "flow, channel 0 = x, 1 = y")],
            outputs=[param("out", "T", "warped features, like x")],
            type_constraints=[("T", _FLOATS, "feature type"), ("F", _FLOATS, "flow type")],
            attributes=common,
        )
        flow_warp.set_type_and_shape_inference_function(_flow_warp_infer)
        attention = schema(
            "temporal_attention",
            DOMAIN,
            OPSET_VERSION,
            "Self-attention along T at every pixel: qkv [N, T, 3C, H, W] -> [N, T, C, H, W].",
            inputs=[param("qkv", "T", "q, k, v stacked along channels")],
            outputs=[param("out", "T", "attention output")],
            type_constraints=[("T", _FLOATS, "tensor type")],
            attributes=[
                *common,
                attr("heads", onnx.defs.OpSchema.AttrType.INT, "number of heads (divides C)", required=True),
            ],
        )
        attention.set_type_and_shape_inference_function(_attention_infer)
        for s in (flow_warp, attention):
            if not onnx.defs.has(s.name, s.domain):
                onnx.defs.register_schema(s)
        _schemas_registered = True


def infer_plugin_shapes(model: Any, *, strict: bool = True) -> Any:
    """Shape-infer ``model`` (a ``ModelProto``) with the plugin ops known; returns the new model.

    ``strict`` makes inconsistent shapes an error instead of leaving them unknown.
    """
    register_onnx_schemas()
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=strict, data_prop=True)
