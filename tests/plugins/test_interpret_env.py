"""The kernels under ``TRITON_INTERPRET=1`` exported before Triton is imported (a fresh process)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs OpenAI Triton")

SCRIPT = textwrap.dedent(
    """
    import torch
    import triton
    assert triton.knobs.runtime.interpret, "TRITON_INTERPRET=1 was not picked up"
    torch.set_num_threads(1)
    from vggx.plugins.flow_warp import flow_warp_reference, launch_flow_warp
    from vggx.plugins.temporal_attention import launch_temporal_attention, temporal_attention_reference
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 9, 14, generator=g)
    flow = torch.randn(2, 2, 9, 14, generator=g) * 6
    err_fw = (launch_flow_warp(x, flow) - flow_warp_reference(x, flow)).abs().max().item()
    qkv = torch.randn(2, 11, 3 * 12, 3, 5, generator=g)
    err_ta = (launch_temporal_attention(qkv, 3) - temporal_attention_reference(qkv, 3)).abs().max().item()
    print(err_fw, err_ta)
    """
)


def test_kernels_match_references_with_triton_interpret_env():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    err_fw, err_ta = (float(v) for v in done.stdout.split())
    assert err_fw <= 1e-5
    assert err_ta <= 1e-5
