"""export/onnx.py: the exported graphs match PyTorch, carry their metadata and the right ops."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from vggx.errors import ExportError
from vggx.export import FP16_TOLERANCE, FP32_TOLERANCE, ExportConfig, Flavor, Precision
from vggx.export.verify import compare_frames, ort_session, reference_upscale, verify_onnx


def _run(session, frames):
    return session.run(None, {"lr": frames})[0]


@pytest.mark.parametrize(
    ("n", "h", "w"),
    [(1, 16, 16), (2, 21, 30), (1, 37, 19), (3, 24, 40)],  # on and off the size multiple (8)
)
def test_portable_matches_pytorch_within_one_level(portable_session, tiny_checkpoint, n, h, w):
    rng = np.random.default_rng(n * 1000 + h * 10 + w)
    frames = rng.integers(0, 256, (n, tiny_checkpoint.config.window, h, w, 3), dtype=np.uint8)
    got = _run(portable_session, frames)
    assert got.shape == (n, tiny_checkpoint.config.window, 4 * h, 4 * w, 3) and got.dtype == np.uint8
    result = compare_frames("random", frames, got, reference_upscale(tiny_checkpoint, frames), FP32_TOLERANCE)
    assert result.passed, str(result)
    assert result.max_abs <= 2


def test_portable_metadata_props(portable_onnx, tiny_checkpoint):
    meta = {p.key: p.value for p in onnx.load(str(portable_onnx), load_external_data=False).metadata_props}
    for key in ("name", "version", "scale", "window", "size_multiple", "min_size", "max_size"):
        assert key in meta
    assert meta["scale"] == "4" and meta["window"] == str(tiny_checkpoint.config.window)
    assert meta["size_multiple"] == str(tiny_checkpoint.config.size_multiple)
    assert meta["flavor"] == "portable" and meta["precision"] == "fp32"
    assert meta["checkpoint_sha256"] == tiny_checkpoint.sha256 and len(meta["checkpoint_sha256"]) == 64


def test_portable_graph_is_standard_ops_with_dynamic_n_h_w(portable_onnx):
    model = onnx.load(str(portable_onnx))
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    ops = {n.op_type for n in model.graph.node}
    assert {"GridSample", "MatMul", "Softmax"} <= ops
    assert "Resize" not in ops  # rewritten into Pad/Conv/DepthToSpace (passes.resize_to_conv)
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.type.tensor_type.elem_type == TensorProto.UINT8
    assert [d.dim_param != "" for d in dims] == [True, False, True, True, False]
    assert dims[1].dim_value == 8 and dims[4].dim_value == 3
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.UINT8
    onnx.checker.check_model(model, full_check=True)


def test_trt_flavour_has_one_plugin_node_per_op_call(trt_onnx, trt_window):
    model = onnx.load(str(trt_onnx))
    plugin = [n for n in model.graph.node if n.domain == "vggx"]
    kinds = {n.op_type for n in plugin}
    assert kinds == {"flow_warp", "temporal_attention"}
    assert not {"GridSample", "Softmax"} & {n.op_type for n in model.graph.node}
    for node in plugin:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["plugin_namespace"] == b"vggx" and attrs["plugin_version"] == b"1"
        if node.op_type == "temporal_attention":
            assert attrs["heads"] >= 1
    assert ("vggx", 1) in {(o.domain, o.version) for o in model.opset_import}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["flavor"] == "trt" and meta["window"] == str(trt_window)


def test_trt_flavour_matches_pytorch_through_ort_custom_ops(trt_onnx, tiny_checkpoint):
    results = verify_onnx(trt_onnx, tiny_checkpoint)
    assert len(results) == 3 and all(r.passed for r in results)
    assert all(r.tolerance == FP32_TOLERANCE for r in results)


def test_fp16_graph_error_against_fp32_pytorch(trt_fp16_onnx, tiny_checkpoint, record_property):
    # The goal: <= 2 uint8 levels on >= 99 % of pixels. ORT CPU runs the FP16 nodes (its cast
    # insertion keeps FP16 storage between them) and the plugin twin's float32 custom ops.
    results = verify_onnx(trt_fp16_onnx, tiny_checkpoint)
    for r in results:
        record_property(r.case, str(r))
        assert r.tolerance == FP16_TOLERANCE and r.passed, str(r)
        assert r.within >= 0.99


def test_fp16_graph_keeps_fp32_islands(trt_fp16_onnx, trt_window, tiny_checkpoint):
    from vggx.plugins.onnx import infer_plugin_shapes

    model = infer_plugin_shapes(onnx.load(str(trt_fp16_onnx)), strict=False)
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input)}
    weights = {t.data_type for t in model.graph.initializer}
    assert {TensorProto.FLOAT16, TensorProto.FLOAT} <= weights  # FP16 layers, FP32 flow estimator
    warps = {TensorProto.FLOAT16: 0, TensorProto.FLOAT: 0}
    for node in model.graph.node:
        if node.op_type == "flow_warp":
            assert types[node.input[1]] == TensorProto.FLOAT  # flow: always the FP32 island
            warps[types[node.input[0]]] += 1
        if node.op_type == "temporal_attention":
            assert types[node.input[0]] == TensorProto.FLOAT16  # the plugin computes softmax in FP32
        if node.op_type in ("ReduceMean", "Sqrt", "Reciprocal"):  # ChannelNorm
            assert types[node.input[0]] == TensorProto.FLOAT, node.name
    # FP16 hidden states warped in propagation; FP32 frames warped inside the flow pyramid
    assert warps[TensorProto.FLOAT16] == 2 * (trt_window - 1)
    assert warps[TensorProto.FLOAT] == tiny_checkpoint.config.flow_levels - 1

    # Post-processing (export/fp16.py): the generator's FP16 output is cast to FP32 before the x255, clamp and round.
    # Guards against the x255 done in FP16 (spacing 0.125 near 255) and cast afterwards, which the +-2-level accuracy
    # check absorbs: every node from that Cast to the final Cast to uint8 takes and gives FLOAT, constants included.
    types.update({v.name: v.type.tensor_type.elem_type for v in model.graph.output})
    types.update({t.name: t.data_type for t in model.graph.initializer})
    producer = {out: node for node in model.graph.node for out in node.output}
    (sr,) = model.graph.output
    node, tail = producer[sr.name], []
    while not (node.op_type == "Cast" and types[node.output[0]] == TensorProto.FLOAT):
        tail.append(node)
        node = next(producer[name] for name in node.input if name in producer)  # the data, not a constant
    assert types[node.input[0]] == TensorProto.FLOAT16  # the generator's output, cast up here
    ops = {n.op_type for n in tail}
    assert {"Mul", "Round"} <= ops and ("Clip" in ops or {"Min", "Max"} <= ops), [n.op_type for n in tail]
    for n in tail[1:]:
        assert all(types[name] == TensorProto.FLOAT for name in (*n.input, *n.output) if name), n.name
    assert tail[0].output == [sr.name] and types[sr.name] == TensorProto.UINT8


def test_ort_session_runs_fp16_plugin_graph(trt_fp16_onnx, trt_window):
    frames = np.full((1, trt_window, 16, 24, 3), 128, np.uint8)
    out = _run(ort_session(trt_fp16_onnx), frames)
    assert out.shape == (1, trt_window, 64, 96, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0}, "window must be >= 1"),
        ({"max_batch": 0}, "max_batch must be >= 1"),
        ({"opset": 15}, "opset must be in 17..21"),
        ({"min_size": (64, 64), "max_size": (32, 32)}, "exceeds max_size"),
        ({"flavor": "trt"}, "flavor must be a Flavor"),
        ({"precision": "fp16"}, "precision must be a Precision"),
    ],
)
def test_export_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ExportError, match=match):
        ExportConfig(**kwargs)


@pytest.mark.parametrize(("flavor", "window", "match"), [
    (Flavor.PORTABLE, 1, "window must be >= 2 frames to export"),
    (Flavor.TRT, 33, r"plugin cannot take this model: temporal_attention kernel: T must be in 1..32 frames, got T=33"),
])
def test_a_window_the_graph_or_plugin_cannot_take_is_refused_before_the_export(tiny_checkpoint, tmp_path, flavor,
                                                                               window, match, monkeypatch):
    """Before any tracing, in one line: not 170 lines of torch.export, nor an engine build that fails on the plugin's
    AOT step."""
    import vggx.export.onnx as onnx_module
    from vggx.export import export_onnx

    def never(*_args):
        raise AssertionError("traced")

    monkeypatch.setattr(onnx_module, "_trace", never)
    with pytest.raises(ExportError, match=match):
        export_onnx(tiny_checkpoint, tmp_path / "m.onnx", ExportConfig(flavor=flavor, window=window))
    assert not list(tmp_path.iterdir())


def test_a_head_dim_past_the_plugin_is_refused(tiny_checkpoint, tmp_path):
    from dataclasses import replace

    from vggx.export import export_onnx

    cfg = tiny_checkpoint.config.replace(attn_heads=1, enc_channels=(80, 48, 64))
    ckpt = replace(tiny_checkpoint, config=cfg)  # the check reads the config alone: no weights needed
    with pytest.raises(ExportError, match=r"head dim C/heads must be in 1..64, got 80 \(decoder width 80, 1 heads\)"):
        export_onnx(ckpt, tmp_path / "m.onnx", ExportConfig(flavor=Flavor.TRT))


def test_export_config_takes_enums():
    cfg = ExportConfig(flavor=Flavor.TRT, precision=Precision.FP16)
    assert cfg.flavor is Flavor.TRT and cfg.precision is Precision.FP16


def test_a_checkpoint_whose_min_size_is_above_the_trace_example_exports(tiny_checkpoint, tmp_path):
    """The trace example was a fixed 19x21 (2m+3 x 2m+5), outside the graph's own H, W range for a checkpoint whose
    min_size is above it: every export of such a checkpoint failed in torch.export ("19 not in range [32, 1088]")."""
    import copy
    import dataclasses

    from vggx.export import export_onnx

    cfg = tiny_checkpoint.config.replace(min_size=(32, 32), window=2)
    generator = copy.deepcopy(tiny_checkpoint.generator)
    generator.cfg = cfg
    ckpt = dataclasses.replace(tiny_checkpoint, generator=generator, config=cfg)
    path = export_onnx(ckpt, tmp_path / "model.onnx", ExportConfig(window=2))
    session = ort_session(path)
    for h, w in ((32, 32), (33, 45)):  # the smallest size, and one off the size grid
        frames = np.random.default_rng(h).integers(0, 256, (1, 2, h, w, 3), dtype=np.uint8)
        assert _run(session, frames).shape == (1, 2, 4 * h, 4 * w, 3)


@pytest.mark.parametrize(("lo", "hi"), [((16, 16), (1088, 1920)), ((32, 32), (1088, 1920)), ((30, 40), (30, 41)),
                                        ((19, 16), (64, 19))])
def test_the_trace_example_lies_in_the_range_off_the_size_grid(lo, hi):
    from vggx.export.onnx import _example_size

    h, w = _example_size(lo, hi, 8)
    assert lo[0] <= h <= hi[0] and lo[1] <= w <= hi[1]
    assert h % 8 and w % 8 and h != w


def test_an_exporter_failure_is_one_line_without_colour_codes(tiny_checkpoint, tmp_path, monkeypatch, caplog):
    """torch.onnx.export's failures are pages of text with ANSI colour codes; ExportError forwarded all of it."""
    import logging

    import torch

    from vggx.export import export_onnx

    def fail(*args, **kwargs):
        try:
            raise ValueError("19 not in range [32, 1088]\nmore detail on a second line")
        except ValueError as cause:
            raise RuntimeError("Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m of "
                               "exporting.\n- Modify the model code\n\n## Exception summary\n\n<class 'ValueError'>: "
                               "19 not in range [32, 1088]\n") from cause

    monkeypatch.setattr(torch.onnx, "export", fail)
    caplog.set_level(logging.DEBUG, logger="vggx.export.onnx")
    with pytest.raises(ExportError) as info:
        export_onnx(tiny_checkpoint, tmp_path / "model.onnx", ExportConfig(window=2))
    message = str(info.value)
    assert message == "ONNX export failed: ValueError: 19 not in range [32, 1088]", message
    assert "This is step 1/3" in caplog.text and "\x1b" not in caplog.text  # the whole text at debug level
