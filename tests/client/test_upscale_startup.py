"""The default in-process ONNX Runtime run starts without PyTorch where its graph is already exported: the config it
needs comes from the checkpoint's header (PyTorch's import and the generator's build were 1.8 s and 0.23 GiB of every
CPU run's start), with the same errors for a bad checkpoint; a missing export still loads the weights whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import save_file

from vggx.checkpoint import load_checkpoint, read_checkpoint, read_checkpoint_config
from vggx.client import Backend, BackendConfig, open_runner
from vggx.errors import CheckpointError


@pytest.fixture
def cache(tmp_path, tiny_checkpoint_path, tiny_checkpoint, portable_onnx, monkeypatch):
    """A vggx cache folder (``$VGGX_CACHE_DIR``) holding the tiny checkpoint's export and its activations per pixel
    (worked out with PyTorch once, then read from the cache)."""
    from vggx.client.runners import activations_per_pixel, cached_onnx_path

    cache = tmp_path / "cache"
    monkeypatch.setenv("VGGX_CACHE_DIR", str(cache))
    target = cached_onnx_path(tiny_checkpoint_path, 8, cache)
    target.parent.mkdir(parents=True)
    shutil.copy(portable_onnx, target)
    activations_per_pixel.__wrapped__(tiny_checkpoint.config, 8)  # written to the cache: the run reads it
    return cache


def test_a_cached_export_runs_without_importing_pytorch(cache, tiny_checkpoint_path, clips, tmp_path):
    """`vggx upscale` on the ONNX Runtime backend, in a fresh interpreter: the clip is upscaled, PyTorch never
    imported (it was, by load_checkpoint, only to read the config)."""
    out = tmp_path / "out.mkv"
    code = ("import sys\n"
            "from vggx.entry import main\n"
            f"sys.argv = ['vggx', 'upscale', {str(clips['twelve'])!r}, {str(out)!r}, '--checkpoint', "
            f"{str(tiny_checkpoint_path)!r}, '--threads', '1']\n"
            "try:\n"
            "    main()\n"
            "finally:\n"
            "    print('torch imported:', 'torch' in sys.modules)\n")
    env = {**os.environ, "VGGX_CACHE_DIR": str(cache)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "torch imported: False" in result.stdout, result.stdout + result.stderr
    assert out.stat().st_size > 0 and "exporting" not in result.stderr


def test_a_missing_export_loads_the_weights_and_exports_them(cache, tiny_checkpoint_path, portable_onnx,
                                                             monkeypatch):
    import vggx.export
    from vggx.checkpoint import Checkpoint

    shutil.rmtree(cache / "onnx")
    exported = []

    def export(ckpt, target, config):
        exported.append(ckpt)
        shutil.copy(portable_onnx, target)
        return target

    monkeypatch.setattr(vggx.export, "export_onnx", export)
    with open_runner(BackendConfig(Backend.ONNXRUNTIME, checkpoint=tiny_checkpoint_path, threads=1)) as runner:
        assert runner.info.window == 8 and runner.host_bytes_per_pixel
    assert len(exported) == 1 and isinstance(exported[0], Checkpoint) and exported[0].generator is not None
    assert len(list((cache / "onnx").glob("*.onnx"))) == 1


def test_weights_changed_since_the_export_miss_it_and_are_refused(cache, tiny_checkpoint_path, tmp_path, monkeypatch):
    """The export is keyed by the file's sha256: NaN weights in a checkpoint whose header is fine are not that
    file, and are loaded (and refused) before anything is exported."""
    import vggx.export

    path = tmp_path / "nan.safetensors"
    tensors, meta = read_checkpoint(tiny_checkpoint_path)
    tensors["upsampler.to_rgb.0.weight"].view(-1)[3] = float("nan")
    save_file(tensors, str(path), metadata=meta)
    monkeypatch.setattr(vggx.export, "export_onnx", lambda *a, **k: pytest.fail("exported"))
    with pytest.raises(CheckpointError, match=r"weights are not finite \(upsampler.to_rgb.0.weight has 1 NaN"):
        open_runner(BackendConfig(Backend.ONNXRUNTIME, checkpoint=path, threads=1))


def _bad_copies(tiny_checkpoint_path, tmp_path):
    tensors, meta = read_checkpoint(tiny_checkpoint_path)
    config = json.loads(meta["config"])
    bad = {
        "not_safetensors": b"hello",
        "zeros": b"\0" * 10,
        "truncated_header": tiny_checkpoint_path.read_bytes()[:200],
        "truncated_weights": tiny_checkpoint_path.read_bytes()[:-100],  # the header says more bytes than there are
    }
    for name, path in bad.items():
        (tmp_path / f"{name}.safetensors").write_bytes(path)
    for name, changed in {
        "foreign": {},  # no vggx metadata at all
        "no_config": {k: v for k, v in meta.items() if k != "config"},
        "bad_config": {**meta, "config": json.dumps({**config, "prop_channels": -1})},
        "not_json": {**meta, "config": "{"},
        "window": {**meta, "window": "16"},
        "name": {**meta, "name": "evil"},
        "max_size": {**meta, "max_size": "64x64"},
    }.items():
        save_file(tensors, str(tmp_path / f"{name}.safetensors"), metadata=changed or None)
    return [*sorted(tmp_path.glob("*.safetensors")), tmp_path / "missing.safetensors"]


def test_the_header_alone_fails_as_the_whole_load_does(tiny_checkpoint_path, tmp_path, monkeypatch):
    """Each bad checkpoint: the same CheckpointError, word for word, from the header alone as from load_checkpoint,
    and from the ONNX Runtime backend before any work."""
    import vggx.export

    monkeypatch.setenv("VGGX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(vggx.export, "export_onnx", lambda *a, **k: pytest.fail("exported"))
    paths = _bad_copies(tiny_checkpoint_path, tmp_path)
    assert len(paths) == 12
    for path in paths:
        with pytest.raises(CheckpointError) as whole:
            load_checkpoint(path)
        with pytest.raises(CheckpointError) as header:
            read_checkpoint_config(path)
        assert str(header.value) == str(whole.value), path.name
        with pytest.raises(CheckpointError) as opened:
            open_runner(BackendConfig(Backend.ONNXRUNTIME, checkpoint=path, threads=1))
        assert str(opened.value) == str(whole.value), path.name


def test_the_header_gives_the_loaded_config(tiny_checkpoint_path, tiny_checkpoint):
    from vggx.checkpoint import DEFAULT_CHECKPOINT

    assert read_checkpoint_config(tiny_checkpoint_path) == tiny_checkpoint.config
    assert read_checkpoint_config() == load_checkpoint(DEFAULT_CHECKPOINT).config
