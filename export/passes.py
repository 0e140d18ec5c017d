"""ONNX graph passes run on the exported model (pure ``onnx``; no torch, no TensorRT).

- :func:`resize_to_conv` — an integer-scale ``Resize`` (linear or cubic, half-pixel) becomes
  ``Pad(edge) -> Conv (one filter per output phase) -> DepthToSpace``: the same numbers (up to float
  rounding), standard ops, and far cheaper on ONNX Runtime's CPU provider, whose cubic ``Resize``
  took 13 % of the tiny model's time at 96x160 (ORT 1.32 profile) while the equivalent convolution
  is vectorised. TensorRT runs either form.
- :func:`float32_plugin_twin` — wraps every ``vggx`` plugin node of an FP16 graph in casts to
  float32, so ONNX Runtime's custom ops (float32 only, onnxruntime-extensions 0.15) can run it.
  The plugins compute in float32 internally, so the twin has the plugin graph's numerics.
- :func:`uint8_io_through_casts` — the graph's uint8 input feeds Casts only (its ``Shape`` nodes read the
  Cast's output instead) and its uint8 output comes straight out of a Cast: TensorRT takes uint8 network
  tensors into and out of a Cast and nothing else (no Transpose, Reshape or Shape on uint8).
- :func:`plugin_ops` — the ``vggx`` plugin nodes a model uses.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["float32_plugin_twin", "plugin_ops", "resize_to_conv", "uint8_io_through_casts"]

PLUGIN_DOMAIN = "vggx"


def plugin_ops(model: onnx.ModelProto) -> list[str]:
    """Sorted op types of the ``vggx``-domain nodes of ``model`` (empty for a portable graph)."""
    return sorted({n.op_type for n in model.graph.node if n.domain == PLUGIN_DOMAIN})


def uint8_io_through_casts(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Rewire the ``Shape`` nodes that read a uint8 graph input to read the Cast of it (same shape), then check that
    every uint8 input feeds Casts only and every uint8 output is a Cast's. Returns ``(model, Shape nodes rewired)``.

    Raises:
        ValueError: a uint8 input or output meets another op (what TensorRT's parser would refuse), naming it.
    """
    graph = model.graph
    rewired = 0
    producers = {out: node for node in graph.node for out in node.output}
    for value in graph.input:
        if value.type.tensor_type.elem_type != TensorProto.UINT8:
            continue
        consumers = [n for n in graph.node if value.name in n.input]
        casts = [n for n in consumers if n.op_type == "Cast"]
        for cast in reversed(casts):  # first: a Cast of a graph input depends on nothing else, and the Shape nodes
            graph.node.remove(cast)  # rewired below may come before it
            graph.node.insert(0, cast)
        others = [n for n in consumers if n.op_type not in ("Cast", "Shape")]
        others += [n for n in consumers if n.op_type == "Shape" and not casts]
        if others:
            raise ValueError(f"uint8 input {value.name!r} feeds {others[0].op_type} node {others[0].name!r}; "
                             f"TensorRT takes a uint8 input into a Cast only")
        for node in consumers:
            if node.op_type == "Shape":
                node.input[list(node.input).index(value.name)] = casts[0].output[0]
                rewired += 1
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.UINT8:
            continue
        node = producers.get(value.name)
        if node is None or node.op_type != "Cast":
            kind = "nothing" if node is None else f"{node.op_type} node {node.name!r}"
            raise ValueError(f"uint8 output {value.name!r} comes from {kind}; TensorRT takes a uint8 output out of a "
                             f"Cast only")
    return model, rewired


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _cubic(x: float, a: float) -> float:
    x = abs(x)
    if x <= 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return 0.0


def phase_taps(scale: int, mode: str, cubic_a: float = -0.75) -> tuple[np.ndarray, int]:
    """1-D filters of an integer ×``scale`` half-pixel resize, one row per output phase.

    Output pixel ``scale·i + p`` reads input ``i + off`` with weight ``taps[p, off + pad]`` for
    ``off`` in ``[-pad, pad]``; indices outside the image repeat the edge (as ``Resize`` clamps).
    Returns ``(taps (scale, 2·pad + 1), pad)``.
    """
    rows: list[dict[int, float]] = []
    for p in range(scale):
        src = (p + 0.5) / scale - 0.5
        base = math.floor(src)
        frac = src - base
        if mode == "linear":
            rows.append({base: 1.0 - frac, base + 1: frac})
        elif mode == "cubic":
            rows.append({base + k: _cubic(frac - k, cubic_a) for k in (-1, 0, 1, 2)})
        else:
            raise ValueError(f"unsupported resize mode {mode!r}")
    pad = max(abs(o) for row in rows for o in row)
    taps = np.zeros((scale, 2 * pad + 1), np.float64)
    for p, row in enumerate(rows):
        for off, weight in row.items():
            taps[p, off + pad] += weight
    return taps, pad


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    graph = model.graph
    return {v.name: v.type for v in (*graph.input, *graph.value_info, *graph.output)}


def resize_to_conv(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Rewrite integer-scale 4-D ``Resize`` nodes into ``Pad -> Conv -> DepthToSpace``.

    Only nodes with ``mode`` linear or cubic, ``coordinate_transformation_mode`` half_pixel, no
    antialias, ``exclude_outside=0``, constant ``scales`` ``[1, 1, s, s]`` (integer s >= 2) and a
    known channel count are rewritten; others are left alone. ``model`` must be shape-inferred.
    Returns ``(model, rewritten count)``; the input model is not modified.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    consts = _constants(graph)
    types = _value_types(model)
    new_nodes: list[onnx.NodeProto] = []
    count = 0
    for node in graph.node:
        plan = _resize_plan(node, consts, types)
        if plan is None:
            new_nodes.append(node)
            continue
        scale, mode, cubic_a, channels, elem_type = plan
        taps, pad = phase_taps(scale, mode, cubic_a)
        k = taps.shape[1]
        kernel = np.einsum("yi,xj->yxij", taps, taps).reshape(scale * scale, 1, k, k)
        kernel = np.tile(kernel, (channels, 1, 1, 1))  # group c -> out channels [c·s², (c+1)·s²)
        dtype = helper.tensor_dtype_to_np_dtype(elem_type)
        name = node.name or node.output[0]
        w_name, pads_name = f"{name}_phase_filters", f"{name}_edge_pads"
        graph.initializer.append(numpy_helper.from_array(kernel.astype(dtype), w_name))
        graph.initializer.append(
            numpy_helper.from_array(np.array([0, 0, pad, pad, 0, 0, pad, pad], np.int64), pads_name)
        )
        padded, phases = f"{name}_padded", f"{name}_phases"
        new_nodes += [
            helper.make_node("Pad", [node.input[0], pads_name], [padded], name=f"{name}_pad", mode="edge"),
            helper.make_node("Conv", [padded, w_name], [phases], name=f"{name}_conv", group=channels,
                             kernel_shape=[k, k]),
            helper.make_node("DepthToSpace", [phases], [node.output[0]], name=f"{name}_d2s",
                             blocksize=scale, mode="CRD"),
        ]
        count += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    if count:
        _drop_unused_initializers(graph)
    return model, count


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _resize_plan(
    node: onnx.NodeProto, consts: dict[str, np.ndarray], types: dict[str, onnx.TypeProto]
) -> tuple[int, str, float, int, int] | None:
    if node.op_type != "Resize" or node.domain not in ("", "ai.onnx") or len(node.input) < 3:
        return None
    if len(node.input) > 3 and node.input[3]:
        return None  # sizes, not scales
    a = _attrs(node)
    if a.get("mode", "nearest") not in ("linear", "cubic"):
        return None
    if a.get("coordinate_transformation_mode", "half_pixel") != "half_pixel":
        return None
    if a.get("antialias", 0) or a.get("exclude_outside", 0) or a.get("axes"):
        return None
    scales = consts.get(node.input[2])
    if scales is None or scales.shape != (4,) or not np.all(scales[:2] == 1):
        return None
    s = float(scales[2])
    if s != float(scales[3]) or s != round(s) or s < 2:
        return None
    ttype = types.get(node.input[0])
    if ttype is None or not ttype.tensor_type.HasField("shape"):
        return None
    dims = ttype.tensor_type.shape.dim
    if len(dims) != 4 or not dims[1].HasField("dim_value"):
        return None
    elem = ttype.tensor_type.elem_type
    if elem not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        return None
    return int(s), a.get("mode"), float(a.get("cubic_coeff_a", -0.75)), int(dims[1].dim_value), elem


def float32_plugin_twin(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose FP16 ``vggx`` nodes take and give float32 via ``Cast`` nodes.

    Nodes already in float32 are left alone; ``model`` must be shape-inferred (types of the
    plugin inputs known). The original is not modified.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    types = _value_types(model)

    def elem(name: str) -> int:
        t = types.get(name)
        return t.tensor_type.elem_type if t is not None else TensorProto.UNDEFINED

    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.domain != PLUGIN_DOMAIN or all(elem(i) == TensorProto.FLOAT for i in node.input):
            new_nodes.append(node)
            continue
        inputs = []
        for i, name in enumerate(node.input):
            if elem(name) == TensorProto.FLOAT:
                inputs.append(name)
                continue
            cast = f"{node.name}_in{i}_fp32"
            new_nodes.append(helper.make_node("Cast", [name], [cast], name=cast, to=TensorProto.FLOAT))
            inputs.append(cast)
        outputs = [f"{o}_fp32" for o in node.output]
        twin = helper.make_node(node.op_type, inputs, outputs, name=node.name, domain=node.domain)
        twin.attribute.extend(node.attribute)
        new_nodes.append(twin)
        for o32, o in zip(outputs, node.output, strict=True):
            to = elem(o) or elem(node.input[0])
            new_nodes.append(helper.make_node("Cast", [o32], [o], name=f"{o}_cast", to=to))
    del graph.node[:]
    graph.node.extend(new_nodes)
    return model
