"""``python -m vggx.benchmarks.resize``: the writer's conversion with and without a resize, on tiny frames."""

from __future__ import annotations

import json

from vggx.benchmarks.resize import main


def test_times_the_three_conversions_and_writes_the_command(tmp_path, capsys):
    out = tmp_path / "resize.json"
    assert main(["--lr-size", "24x40", "--outscale", "1.5", "--frames", "2", "--repeats", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["model_output"] == [96, 160] and data["written"] == [36, 60]
    assert set(data["ms_per_frame"]) == {"rgb_plain", "rgb_resized", "yuv420p_resized"}
    assert all(ms > 0 for ms in data["ms_per_frame"].values()) and data["ratio_to_plain"]["rgb_plain"] == 1.0
    assert data["command"].startswith("python -m vggx.benchmarks.resize --lr-size 24x40") and data["machine"]["cpus"]
    assert "yuv420p_resized  160x96 -> 60x36" in capsys.readouterr().out
