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
