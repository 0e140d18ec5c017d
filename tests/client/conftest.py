"""Fixtures of the client tests: real FFmpeg-encoded clips made with PyAV, and runners on the tiny checkpoint.

Clips are tiny (40x56 and smaller) so the in-process model runs in well under a second per window on
one core. The Triton fixtures are the serving tests' own (``tests/serve/conftest.py``), loaded here.
"""

from __future__ import annotations

import importlib.util
import shutil
from fractions import Fraction
from pathlib import Path

import pytest
from videoclips import make_video

_serve = Path(__file__).parent.parent / "serve" / "conftest.py"
if _serve.is_file():  # reuse the real-server fixtures (triton_server, served_repository, ...)
    _spec = importlib.util.spec_from_file_location("vggx_tests_serve_fixtures", _serve)
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    onnx_metadata = _mod.onnx_metadata
    served_repository = _mod.served_repository
    triton_server = _mod.triton_server
    second_server = _mod.second_server
    start_server = _mod.start_server
    inference_count = _mod.inference_count  # a helper, not a fixture: tests import it from conftest


@pytest.fixture
def cli(tiny_checkpoint_path):
    """Run ``vggx upscale ARGS`` in process on the torch backend with the tiny checkpoint."""
    from typer.testing import CliRunner

    from vggx.cli import app

    def invoke(*args: str, backend: tuple[str, ...] = ("--backend", "torch")):
        # in-process options; a Triton run (--url) refuses them
        extra = [] if "--url" in map(str, args) else ["--checkpoint", str(tiny_checkpoint_path), "--threads", "1"]
        return CliRunner().invoke(app, ["upscale", *map(str, args), *backend, *extra])

    return invoke


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The test inputs, made once per run."""
    d = tmp_path_factory.mktemp("clips")
    return {
        "aac": make_video(d / "aac.mp4", frames=10, audio="aac", metadata={"title": "vggx test clip"}),
        "opus": make_video(d / "opus.mkv", frames=6, rate=Fraction(30000, 1001), audio="libopus"),
        "twelve": make_video(d / "twelve.mkv", frames=12, codec="ffv1", pix_fmt="bgr0"),
        "odd444": make_video(d / "odd444.mp4", frames=5, size=(41, 57), pix_fmt="yuv444p"),
        "tenbit": make_video(d / "tenbit.mkv", frames=5, size=(24, 40), pix_fmt="yuv420p10le"),
        "gray": make_video(d / "gray.mkv", frames=5, size=(33, 35), codec="ffv1", pix_fmt="gray"),
        "big": make_video(d / "big.mkv", frames=5, size=(40, 56), codec="ffv1", pix_fmt="bgr0"),
    }


@pytest.fixture(scope="session")
def torch_runner(tiny_checkpoint_path):
    from vggx.client.runners import TorchRunner

    with TorchRunner(tiny_checkpoint_path, threads=1) as runner:
        yield runner


@pytest.fixture(scope="session")
def small_profile_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint's weights with a max size of 24x32, so 40x56 frames are tiled."""
    from vggx.checkpoint import save_checkpoint
    from vggx.generator import Generator

    gen = Generator(tiny_checkpoint.config.replace(max_size=(24, 32)))
    gen.load_state_dict(tiny_checkpoint.generator.state_dict())
    return save_checkpoint(gen, tmp_path_factory.mktemp("small") / "tiny-24x32.safetensors")


@pytest.fixture(scope="session")
def onnx_cache(portable_onnx, tiny_checkpoint_path, tiny_checkpoint, tmp_path_factory) -> Path:
    """A cache folder already holding the tiny checkpoint's export (the run-scoped ``portable_onnx``)."""
    from vggx.client.runners import cached_onnx_path

    cache = tmp_path_factory.mktemp("cache")
    target = cached_onnx_path(tiny_checkpoint_path, tiny_checkpoint.config.window, cache)
    target.parent.mkdir(parents=True)
    shutil.copy(portable_onnx, target)
    return cache


@pytest.fixture(scope="session")
def ort_runner(onnx_cache, tiny_checkpoint_path):
    from vggx.client import Backend, BackendConfig, open_runner

    with open_runner(BackendConfig(Backend.ONNXRUNTIME, checkpoint=tiny_checkpoint_path, threads=1,
                                   cache_dir=onnx_cache)) as runner:
        yield runner


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (its own CA) and its key, made with openssl."""
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key
