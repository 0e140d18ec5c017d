"""``python -m vggx.benchmarks.context``: windows with more or less context, their time and their seams."""

from __future__ import annotations

import json

import numpy as np

from vggx.benchmarks.context import _pair_errors, main


def test_pair_errors_are_the_change_against_the_originals():
    hr = np.zeros((3, 2, 2, 3), np.uint8)
    hr[1:] = 10
    out = hr.copy()
    out[2] = 16  # the second change is 6 levels off
    np.testing.assert_allclose(_pair_errors(out, hr), [0.0, 6.0])


def test_rows_per_context_with_seams_and_time(tmp_path, capsys):
    out = tmp_path / "context.json"
    assert main(["--contexts", "1,2", "--frames", "10", "--backend", "torch", "--threads", "1", "--json",
                 str(out)]) == 0
    data = json.loads(out.read_text())
    one, two = data["rows"]
    assert (one["context"], one["kept_per_window"], one["windows"]) == (1, 6, 2)
    assert (two["context"], two["kept_per_window"], two["windows"]) == (2, 4, 3)
    assert two["time_ratio"] == 1.0 and one["ms_per_frame"] > 0
    for r in data["rows"]:
        assert r["temporal_error_seam"] > 0 and r["temporal_error_inside"] > 0 and r["psnr_db"] > 20
    assert data["command"].startswith("python -m vggx.benchmarks.context --contexts 1,2")
    assert "context  kept" in capsys.readouterr().out


def test_a_context_the_window_cannot_keep_is_one_error_line(capsys):
    assert main(["--contexts", "4", "--backend", "torch"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --contexts must be in 0..3 for window 8")
