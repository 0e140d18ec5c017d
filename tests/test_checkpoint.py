"""Checkpoint format: safetensors + metadata, clear errors for foreign or mismatched files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from vggx.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, read_checkpoint, save_checkpoint
from vggx.errors import CheckpointError
from vggx.generator import Generator, get_config


def test_round_trip_keeps_weights_config_and_metadata(tmp_path, tiny_checkpoint):
    path = save_checkpoint(tiny_checkpoint.generator, tmp_path / "a.safetensors", version="3", extra={"step": 7})
    ck = load_checkpoint(path)
    assert ck.config == tiny_checkpoint.config
    assert ck.metadata["scale"] == "4" and ck.metadata["window"] == "8" and ck.metadata["version"] == "3"
    assert ck.metadata["size_multiple"] == "8" and ck.metadata["min_size"] == "16x16"
    assert ck.extra == {"step": "7"}
    for (k, a), b in zip(ck.generator.state_dict().items(), tiny_checkpoint.generator.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    assert len(ck.sha256) == 64


def test_not_a_safetensors_file(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_text("hello")
    with pytest.raises(CheckpointError, match="is not a vggx checkpoint"):
        load_checkpoint(p)


def test_foreign_safetensors_file(tmp_path):
    p = tmp_path / "x.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(CheckpointError, match="metadata format=None"):
        read_checkpoint(p)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_mismatched_shapes_named(tmp_path):
    path = save_checkpoint(Generator(get_config("tiny")), tmp_path / "a.safetensors")
    tensors, meta = read_checkpoint(path)
    key = "propagation.extract.0.weight"
    tensors[key] = torch.zeros(5, 3, 3, 3)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=r"wrong shapes \(e.g. propagation.extract.0.weight"):
        load_checkpoint(path)


def test_shipped_checkpoint_loads():
    ck = load_checkpoint()
    assert ck.path == DEFAULT_CHECKPOINT and ck.config.name == "tiny"
