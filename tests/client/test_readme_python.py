"""The README's "From Python" example runs as printed (on the test clips instead of the demo's)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from vggx.checkpoint import DEFAULT_CHECKPOINT
from vggx.client.runners import cached_onnx_path

README = Path(__file__).parents[2] / "README.md"


def test_the_from_python_example_runs(clips, tmp_path, portable_onnx, monkeypatch, capsys):
    section = README.read_text().split("### From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "out/sample.mp4" in code and "out/sample_x4.mp4" in code
    code = code.replace("out/sample_x4.mp4", str(tmp_path / "x4.mp4")).replace("out/sample.mp4", str(clips["aac"]))
    # The example runs the shipped checkpoint; its export is cached under the checkpoint's hash. The test seeds that
    # cache with the run's export of the test weights (same graph, other weights) rather than export it again.
    cache = tmp_path / "cache"
    target = cached_onnx_path(DEFAULT_CHECKPOINT, 8, cache)
    target.parent.mkdir(parents=True)
    shutil.copy(portable_onnx, target)
    monkeypatch.setenv("VGGX_CACHE_DIR", str(cache))
    exec(compile(code, str(README), "exec"), {})
    assert re.fullmatch(r"\d+\.\d frames/s, (decode|infer|encode)-bound\n", capsys.readouterr().out)
    assert (tmp_path / "x4.mp4").is_file()
