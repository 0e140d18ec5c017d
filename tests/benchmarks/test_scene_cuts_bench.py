"""``python -m vggx.benchmarks.scene_cuts``: two-shot clips with the cuts found and without, shipped weights."""

from __future__ import annotations

import json

import numpy as np

from vggx.benchmarks.scene_cuts import main, pan_clip


def test_pan_clip_is_the_original_downscaled():
    lr, hr = pan_clip("rocket", 3, (1.0, 0.0))
    assert lr.shape == (3, 80, 112, 3) and hr.shape == (3, 320, 448, 3)
    assert lr.dtype == hr.dtype == np.uint8
    # one HR pixel right a frame: frame 1 is frame 0 moved left by a pixel (its interior)
    np.testing.assert_array_equal(hr[1][:, :-8], hr[0][:, 1:-7])


def test_every_cut_is_found_and_the_shots_are_measured(tmp_path, capsys):
    out = tmp_path / "cuts.json"
    assert main(["--frames", "10", "--cuts", "5", "--backend", "torch", "--threads", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["clip"] for r in data["rows"]] == ["coffee->rocket", "rocket->camera", "camera->coffee"]
    s = data["summary"]
    assert s["cuts_found_exactly"] == s["clips"] == 3 and s["false_cuts_in_single_shots"] == 0
    for r in data["rows"]:
        assert r["found"] == [5] and r["score"] >= 10
        assert {4, 5} <= set(r["frames_that_differ"])  # the frames either side of the cut
        assert r["psnr_near_cut_db"]["shots"] > r["psnr_near_cut_db"]["across"]
    assert data["command"].startswith("python -m vggx.benchmarks.scene_cuts --frames 10")
    assert "cuts found exactly: 3/3" in capsys.readouterr().out


def test_a_cut_outside_the_clip_is_one_error_line(capsys):
    assert main(["--frames", "10", "--cuts", "12"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --cuts must be in 2..8")
