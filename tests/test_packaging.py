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
