"""The plugin nodes run in ONNX Runtime through the onnxruntime-extensions custom ops."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from vggx.plugins import flow_warp, flow_warp_reference, temporal_attention, temporal_attention_reference
from vggx.plugins.onnx import custom_translation_table, infer_plugin_shapes, plugin_model
from vggx.plugins.onnxruntime import session_options


def _session(model) -> ort.InferenceSession:
    return ort.InferenceSession(
        model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"]
    )


def test_session_options_can_be_built_twice():
    assert isinstance(session_options(), ort.SessionOptions)
    assert isinstance(session_options(ort.SessionOptions()), ort.SessionOptions)


@pytest.mark.parametrize(("b", "c", "h", "w"), [(1, 1, 1, 1), (2, 3, 5, 7), (3, 5, 11, 4)])
def test_flow_warp_node_matches_reference(b, c, h, w):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, c, h, w)).astype(np.float32)
    flow = (rng.standard_normal((b, 2, h, w)) * max(h, w)).astype(np.float32)
    model = infer_plugin_shapes(plugin_model("flow_warp", [["B", c, "H", "W"], ["B", 2, "H", "W"]]))
    (out,) = _session(model).run(None, {"x": x, "flow": flow})
    expected = flow_warp_reference(torch.from_numpy(x), torch.from_numpy(flow)).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("n", "t", "c", "h", "w", "heads"), [(1, 1, 2, 1, 1, 1), (2, 5, 12, 3, 4, 3)])
def test_attention_node_matches_reference(n, t, c, h, w, heads):
    rng = np.random.default_rng(1)
    qkv = rng.standard_normal((n, t, 3 * c, h, w)).astype(np.float32)
    model = infer_plugin_shapes(plugin_model("temporal_attention", [["N", t, 3 * c, "H", "W"]], heads=heads))
    (out,) = _session(model).run(None, {"qkv": qkv})
    expected = temporal_attention_reference(torch.from_numpy(qkv), heads).numpy()
    assert out.shape == (n, t, c, h, w)
    np.testing.assert_allclose(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("op", "message"), [
    ("temporal_attention", "a vggx op failed inside ONNX Runtime: temporal_attention: heads=3 must divide C=2"),
    ("flow_warp", "a vggx op failed inside ONNX Runtime: flow_warp: flow must be [1, 2, 4, 4], got shape (1, 2, 4, 5)"),
])
def test_an_op_that_raises_inside_onnx_runtime_is_an_error_not_an_abort(op, message):
    """The error left the Python op through onnxruntime-extensions' bridge, which calls std::terminate: the process
    aborted (exit 134) with nothing to catch. Run in a child process, which the old behaviour kills."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import numpy as np
        from vggx.errors import ExportError
        from vggx.export.verify import ort_session
        from vggx.plugins.onnx import plugin_model

        if {op!r} == "temporal_attention":  # C symbolic: no shape inference can refuse heads=3 before the run
            model = plugin_model("temporal_attention", [["N", "T", "C3", "H", "W"]], heads=3)
            feeds = {{"qkv": np.zeros((1, 2, 6, 1, 1), np.float32)}}
        else:
            model = plugin_model("flow_warp", [["B", "C", "H", "W"], ["B", 2, "H", "W2"]])
            feeds = {{"x": np.zeros((1, 2, 4, 4), np.float32), "flow": np.zeros((1, 2, 4, 5), np.float32)}}
        session = ort_session(model)
        try:
            session.run(None, feeds)
        except ExportError as exc:
            print(exc)
        ok = {{"qkv": np.ones((1, 2, 9, 1, 1), np.float32)}} if "qkv" in feeds else {{
            "x": np.ones((1, 2, 4, 4), np.float32), "flow": np.zeros((1, 2, 4, 4), np.float32)}}
        print("then", float(session.run(None, ok)[0].sum()))  # the session goes on
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == message and lines[1].startswith("then "), done.stdout


class _Block(torch.nn.Module):
    """Both ops between ordinary layers, as in the generator."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Conv2d(4, 12, 1)

    def forward(self, x, flow):
        warped = flow_warp(x, flow)  # (t, 4, h, w)
        qkv = self.proj(warped).unsqueeze(0)  # (1, t, 12, h, w)
        return temporal_attention(qkv, 2)


@pytest.mark.slow
def test_exported_graph_runs_in_ort_and_matches_pytorch():
    torch.manual_seed(0)
    block = _Block().eval()
    x, flow = torch.randn(3, 4, 6, 5), torch.randn(3, 2, 6, 5) * 2
    program = torch.onnx.export(
        block,
        (x, flow),
        dynamo=True,
        custom_translation_table=custom_translation_table(),
        input_names=["x", "flow"],
    )
    (out,) = _session(program.model_proto).run(None, {"x": x.numpy(), "flow": flow.numpy()})
    with torch.no_grad():
        expected = block(x, flow).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)
