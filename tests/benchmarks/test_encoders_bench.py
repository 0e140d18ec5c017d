"""``python -m vggx.benchmarks.encoders``: one encoder against several on consecutive segments, for any codec whose
segments join."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("codec", ["libx264", "libvpx-vp9", "ffv1"])
def test_rows_for_each_encoder_count(tmp_path, capsys, codec):
    from vggx.benchmarks.encoders import main

    out = tmp_path / "enc.json"
    assert main(["--codec", codec, "--size", "48x64", "--frames", "24", "--encoders", "1,2", "--segment-frames", "8",
                 "--repeats", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["codec"] == codec and [r["encoders"] for r in data["results"]] == [1, 2]
    assert data["command"].startswith(f"python -m vggx.benchmarks.encoders --codec {codec} --size 48x64")
    assert {"date", "host_cpu", "pyav", "libavcodec"} <= set(data["machine"])
    assert data["preset"] is None  # the encoder's own default; "medium" was written for encoders without presets
    assert all(r["bytes"] > 0 and r["fps"] > 0 for r in data["results"])
    if codec == "ffv1":  # lossless: the same frames back whichever way they were encoded (RGB: the yuv420p planes
        one, two = (r["psnr_y"] for r in data["results"])  # converted there and back cost the same either way)
        assert one == two
    assert f"{codec}, preset" in capsys.readouterr().out
