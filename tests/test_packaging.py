"""The wheel users install (`pip install vggx`, not this checkout's editable install) holds the whole package:
every module of the mapped folders, the shipped weights and their graph, and runs from outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pyproject's package-dir: the import package of each source folder
FOLDERS = {"vggx": "vggx", "plugins": "vggx/plugins", "export": "vggx/export", "client": "vggx/client",
           "benchmarks": "vggx/benchmarks"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # from a copy of the sources: an in-tree build would reuse build/, where a file since removed stays; without
    # isolation, so no index is asked for setuptools
    source = tmp_path_factory.mktemp("source")
    shutil.copy2(ROOT / "pyproject.toml", source / "pyproject.toml")
    shutil.copy2(ROOT / "README.md", source / "README.md")
    shutil.copy2(ROOT / "LICENSE", source / "LICENSE")
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (whl,) = out.glob("vggx-*.whl")
    return whl


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_the_shipped_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder)
            if "__pycache__" not in rel.parts:
                expected.add(f"{package}/{rel.as_posix()}")
    shipped = {f"vggx/weights/{p.name}" for p in (ROOT / "vggx/weights").iterdir()
               if p.suffix in {".safetensors", ".onnx"}}
    assert shipped and {"vggx/py.typed", *shipped} <= names
    assert not expected - names, f"modules missing from the wheel: {sorted(expected - names)}"
    assert not any(n.startswith(("tests/", "model_repository/")) for n in names)
    # the licence's text goes with the package (Apache-2.0 §4(a)), and the version is vggx.__version__'s
    import vggx

    assert f"vggx-{vggx.__version__}.dist-info/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read(f"vggx-{vggx.__version__}.dist-info/METADATA").decode()
    assert "License-File: LICENSE" in metadata and f"\nVersion: {vggx.__version__}\n" in metadata


@pytest.mark.slow
def test_the_installed_wheel_runs_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import vggx, vggx.plugins, vggx.export, vggx.client, vggx.benchmarks, vggx.export.triton_models;"
            "from vggx.checkpoint import DEFAULT_CHECKPOINT; from vggx.client.runners import shipped_onnx_path;"
            "print(vggx.__file__); print(shipped_onnx_path(DEFAULT_CHECKPOINT, 8).is_file())")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    where, shipped = done.stdout.split()
    assert Path(where).is_relative_to(target) and shipped == "True"
    info = subprocess.run([sys.executable, "-m", "vggx", "info"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert info.returncode == 0 and "vggx-tiny-x4" in info.stdout, info.stderr[-2000:]


@pytest.mark.slow
def test_the_sdist_holds_the_whole_test_suite_and_no_training_state(tmp_path):
    """The source distribution ran none of its tests: setuptools' default took tests/test*.py alone, without the
    conftest and clip makers they need (MANIFEST.in); and it must set itself up (make setup reads .ci/)."""
    import tarfile

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs this checkout's git to list the tracked files")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    source = tmp_path / "source"
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    code = "from setuptools import build_meta; print(build_meta.build_sdist('dist'))"
    done = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with tarfile.open(source / "dist" / done.stdout.split()[-1]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    # every tracked file a setup, the tests or a deployment reads (the Makefile's .ci scripts, the benchmark
    # results some tests read): all but the training state and git's own
    wanted = {n for n in tracked if not n.startswith("training_state/") and n != ".gitignore"}
    assert wanted <= names, sorted(wanted - names)[:5]
    assert {"LICENSE", "Makefile", ".ci/run", ".ci/constraints.py", "model_repository/vggx/config.pbtxt"} <= names
    assert not any(n.startswith("training_state/") or "__pycache__" in n for n in names)


@pytest.mark.parametrize(("requires", "kept"), [
    (["Requires-Dist: filelock", 'Requires-Dist: triton==3.7.1; platform_system == "Linux"'], False),  # PyPI's CUDA
    (["Requires-Dist: filelock", "Requires-Dist: sympy>=1.13.3"], True),  # a CPU build: no triton of its own
    (['Requires-Dist: triton==3.7.1; platform_system == "Windows"'], True),  # a triton for another machine alone
    (['Requires-Dist: triton==3.7.1; extra == "kernels"'], True),  # asked for by an extra that was not
])
def test_the_setup_drops_the_triton_pin_for_a_torch_that_pins_its_own(tmp_path, requires, kept):
    """``make setup`` constrains the install with .ci/constraints.txt: its triton==3.6.0 against PyPI's torch 2.13.0,
    which requires triton==3.7.1, made pip fail or swap in another multi-GB torch. A stand-in torch distribution
    (its metadata alone, ahead on the path) says what the environment's torch requires."""
    info = tmp_path / "torch-2.13.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("\n".join(["Metadata-Version: 2.1", "Name: torch", "Version: 2.13.0", *requires])
                                   + "\n")
    done = subprocess.run([sys.executable, str(ROOT / ".ci" / "constraints.py"), str(ROOT / ".ci" / "constraints.txt")],
                          env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pins = [line.split()[0] for line in done.stdout.splitlines() if line and not line.startswith("#")]
    assert "numpy<2" in pins and ("triton==3.6.0" in pins) == kept
