"""``python -m vggx.benchmarks.crop``: a letterboxed clip upscaled whole, cropped, and cropped with its bars put back;
the look over a long clip."""

from __future__ import annotations

import json


def test_rows_and_the_picture_found(tmp_path, capsys):
    from vggx.benchmarks.crop import BARS, FRAME, PICTURE, main

    out = tmp_path / "crop.json"
    assert main(["--frames", "9", "--film-seconds", "4", "--backend", "torch", "--threads", "1",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["found"] == data["truth"] == f"{PICTURE[1]}:{PICTURE[0]}:0:{BARS}"
    runs = data["runs"]
    assert runs["whole"]["output_size"] == [4 * FRAME[0], 4 * FRAME[1]] == runs["crop_keep_bars"]["output_size"]
    assert runs["crop"]["output_size"] == [4 * PICTURE[0], 4 * PICTURE[1]]
    assert runs["whole"]["crop"] is None and runs["crop"]["crop"] == data["found"]
    assert 0 <= runs["whole"]["painted_bars"]["share_above_2_levels"] <= 1
    assert data["detection"]["found"] == "1920:800:0:140" and data["detection"]["samples"] == 24
    assert "speed-up:" in capsys.readouterr().out
