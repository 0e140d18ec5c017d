"""Checkpoint format: safetensors + metadata, clear errors for foreign or mismatched files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vggx.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, read_checkpoint, save_checkpoint
from vggx.errors import CheckpointError
from vggx.generator import Generator, GeneratorConfig, get_config

TRAINING_STATE = Path(__file__).resolve().parents[1] / "training_state" / "tiny-x4"


def _rewrite(path, *, config: dict | None = None, tensors: dict | None = None, **meta_changes) -> None:
    """Rewrite a checkpoint in place with its stored config JSON, tensors or metadata changed (as by hand)."""
    stored, meta = read_checkpoint(path)
    if config is not None:
        meta["config"] = json.dumps({**json.loads(meta["config"]), **config})
    meta.update(meta_changes)
    save_file({**stored, **(tensors or {})}, str(path), metadata=meta)


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


def test_a_directory_is_said_to_be_one(tmp_path):
    """It was "checkpoint not found" for a path that is there (a folder of checkpoints named by mistake)."""
    from vggx.checkpoint import read_checkpoint_config

    for read in (load_checkpoint, read_checkpoint_config):
        with pytest.raises(CheckpointError, match=f"^{tmp_path} is a directory, not a checkpoint file$"):
            read(tmp_path)


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


def test_training_state_checkpoints_load():
    if not TRAINING_STATE.is_dir():
        pytest.skip("no training_state/ in this checkout")
    for name in ("best", "latest"):
        ck = load_checkpoint(TRAINING_STATE / f"{name}.safetensors")
        assert ck.config == get_config("tiny") and ck.metadata["window"] == "8"


@pytest.mark.parametrize(("config", "match"), [
    ({"enc_channels": []}, "enc_channels must have at least one level"),
    ({"prop_channels": -1}, "prop_channels must be >= 1, got -1"),
    ({"scale": 4.0}, "scale must be an integer, got 4.0"),
    ({"scale": 2, "hr_channels": []}, "scale must be a power of two >= 4"),
    ({"min_size": [4000, 4000]}, "min_size .* exceeds max_size"),
    ({"min_size": [16, 16, 16]}, r"min_size must be an \(h, w\) pair"),
])
def test_bad_stored_config_is_one_line_naming_the_file(tmp_path, tiny_checkpoint_path, config, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(tiny_checkpoint_path.read_bytes())
    _rewrite(path, config=config)
    with pytest.raises(CheckpointError, match=f"bad generator config in metadata \\(.*{match}") as info:
        load_checkpoint(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_a_generator_that_fails_to_build_is_a_checkpoint_error(tmp_path, tiny_checkpoint_path, monkeypatch):
    import vggx.checkpoint

    def broken(cfg):
        raise RuntimeError("Trying to create tensor with negative dimension -1\nmore")

    monkeypatch.setattr(vggx.checkpoint, "Generator", broken)
    with pytest.raises(CheckpointError, match="cannot build the generator of its config "
                                              r"\(RuntimeError: Trying to create .* -1 more\)") as info:
        load_checkpoint(tiny_checkpoint_path)
    assert str(info.value).startswith(f"{tiny_checkpoint_path}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize(("key", "value", "stored"), [
    ("window", "16", "8"), ("scale", "2", "4"), ("size_multiple", "16", "8"), ("min_size", "32x32", "16x16"),
    ("max_size", "64x64", "1088x1920"), ("name", "evil", "vggx-tiny-x4"),
])
def test_metadata_contradicting_the_config_is_refused(tmp_path, tiny_checkpoint_path, key, value, stored):
    """The torch runner takes window, scale and sizes from the metadata, the generator follows the config: a file
    where they differ failed deep in a run (save_checkpoint writes the metadata from the config)."""
    path = tmp_path / "bad.safetensors"
    path.write_bytes(tiny_checkpoint_path.read_bytes())
    _rewrite(path, **{key: value})
    with pytest.raises(CheckpointError, match=f"{key} {value} contradicts its generator config's {stored} "):
        load_checkpoint(path)


def test_metadata_version_is_free_and_missing_keys_come_from_the_config(tmp_path, tiny_checkpoint_path):
    path = tmp_path / "a.safetensors"
    tensors, meta = read_checkpoint(tiny_checkpoint_path)
    save_file(tensors, str(path), metadata={"format": meta["format"], "config": meta["config"], "version": "7"})
    ck = load_checkpoint(path)
    assert ck.metadata == {"name": "vggx-tiny-x4", "version": "7", "scale": "4", "window": "8",
                           "size_multiple": "8", "min_size": "16x16", "max_size": "1088x1920"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, tiny_checkpoint_path, bad):
    path = tmp_path / "nan.safetensors"
    path.write_bytes(tiny_checkpoint_path.read_bytes())
    tensors, _ = read_checkpoint(path)
    key = "upsampler.to_rgb.0.weight"
    t = tensors[key].clone()
    t.view(-1)[3] = bad
    _rewrite(path, tensors={key: t})
    with pytest.raises(CheckpointError, match=rf"weights are not finite \({key} has 1 NaN/inf of {t.numel()} "):
        load_checkpoint(path)


@pytest.fixture
def umask():
    """Set the process umask for the test (restored after)."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_checkpoints_and_training_state_honour_the_umask(tmp_path, umask, mask):
    """Like any file opened for writing (0o666 less the umask): safetensors' save_file alone makes them 0600."""
    from vggx.training.train import TrainConfig, Trainer

    umask(mask)
    want = 0o666 & ~mask
    gen = Generator(GeneratorConfig(name="s", enc_channels=(8,), hr_channels=(8,), prop_channels=8,
                                    flow_channels=(8,), flow_levels=2))
    path = tmp_path / "a.safetensors"
    stale = tmp_path / "a.safetensors.tmp"  # a stale temporary file of a crashed write keeps no say in the mode
    stale.write_bytes(b"")
    os.chmod(stale, 0o600)
    save_checkpoint(gen, path)
    assert stat.S_IMODE(path.stat().st_mode) == want and not stale.exists()
    save_checkpoint(gen, path)  # replacing one
    assert stat.S_IMODE(path.stat().st_mode) == want
    trainer = Trainer(TrainConfig(steps=2, batch=1, frames=2, lr_patch=8), tmp_path / "run", gen.cfg)
    trainer.save_state()
    assert stat.S_IMODE(trainer.state_path.stat().st_mode) == want
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["state.safetensors"]
    assert trainer.load_state() and load_checkpoint(path).config == gen.cfg


def test_a_failed_safetensors_write_leaves_no_temp_and_the_old_file_whole(tmp_path, monkeypatch):
    """save_file failing half way (a full disk) left path + '.tmp' behind."""
    import errno

    import safetensors.torch
    import torch

    from vggx.checkpoint import write_safetensors

    path = tmp_path / "a.safetensors"
    write_safetensors({"x": torch.zeros(2)}, path, {"k": "v"})
    before = path.read_bytes()

    def half(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half)
    with pytest.raises(OSError):
        write_safetensors({"x": torch.ones(2)}, path, {"k": "v"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]
