"""Shared, run-scoped fixtures: a small deterministic tiny checkpoint and its portable ONNX export."""

from __future__ import annotations

import os

import pytest
import torch

# Tests are single-threaded by default: the machine has 2 cores and CI may share them.
torch.set_num_threads(int(os.environ.get("VGGX_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def tiny_checkpoint_path(tmp_path_factory):
    """A ``tiny`` checkpoint with seeded random weights (non-zero everywhere, so every layer matters)."""
    from vggx.checkpoint import save_checkpoint
    from vggx.generator import Generator, get_config

    torch.manual_seed(0)
    gen = Generator(get_config("tiny"))
    with torch.no_grad():
        for p in gen.parameters():
            if p.abs().sum() == 0:  # zero-initialised output layers: give them weights
                p.normal_(0, 0.02)
    return save_checkpoint(gen, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_checkpoint_path):
    from vggx.checkpoint import load_checkpoint

    return load_checkpoint(tiny_checkpoint_path)


@pytest.fixture(scope="session")
def portable_onnx(tiny_checkpoint, tmp_path_factory):
    """The portable ONNX graph of the tiny checkpoint (exported once per run)."""
    from vggx.export import ExportConfig, export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx", ExportConfig())
