"""``python -m vggx.benchmarks.fine_bits``: a 10-bit sky's levels through the model, with and without fine bits."""

from __future__ import annotations

import json

import numpy as np

from vggx.benchmarks.fine_bits import flat_run, main, sky_clip


def test_flat_runs_count_equal_neighbours_at_10_bits():
    rows = np.zeros((1, 2, 8, 3), np.uint16)
    rows[0, 0, 4:, 1] = 64  # one 10-bit step: two runs of 4
    rows[0, 1, :, 1] = np.arange(8) * 64  # a step every pixel: eight runs of 1
    rows[0, 1, :, 0] = 999  # other channels do not count
    assert flat_run(rows) == 16 / 10
    assert flat_run(rows + 20) == flat_run(rows)  # differences under a 10-bit code are no step


def test_the_sky_is_smooth_and_its_downscale_10_bit():
    lr, hr = sky_clip(1, 3, (1.0, 0.0), ((0.4, 0.4, 0.5), (0.45, 0.43, 0.52)), hr=(64, 96))
    assert lr.shape == (3, 16, 24, 3) and hr.shape == (3, 64, 96, 3) and lr.dtype == hr.dtype == np.uint16
    codes = lr.astype(np.float64) * 1023 / 65535
    np.testing.assert_allclose(codes, np.rint(codes), atol=0.01)  # 10-bit values (stored to the nearest 16-bit one)
    assert np.abs(np.diff(hr.astype(np.int32), axis=2)).max() < 257  # no step of a whole 8-bit level
    assert not np.array_equal(hr[0], hr[1])  # the camera pans


def test_rows_for_both_ways_with_and_without_fine_bits(tmp_path, capsys):
    out = tmp_path / "fine.json"
    assert main(["--frames", "9", "--backend", "torch", "--threads", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [(r["clip"], r["way"]) for r in data["rows"]] == [(c, w) for c in ("dusk", "noon", "haze")
                                                              for w in ("png", "x265")]
    png = data["mean"]["png"]
    assert png["rms_levels_fine"] < png["rms_levels_8bit"]  # the shipped model: its levels closer to the original
    assert png["flat_run_fine"] < png["flat_run_original"] < png["flat_run_8bit"] / 2  # 8 bits band, fine bits not
    for r in data["rows"]:
        assert r["ms_per_frame_fine"] > 0 and r["encode_ms_per_frame_8bit"] > 0
    assert data["command"].startswith("python -m vggx.benchmarks.fine_bits --frames 9")
    assert "flat runs (px)" in capsys.readouterr().out
