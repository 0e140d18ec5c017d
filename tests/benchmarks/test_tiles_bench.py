"""``python -m vggx.benchmarks.tiles``: one window untiled and in tiles, on tiny frames with the test weights."""

from __future__ import annotations

import json

import pytest

from vggx.benchmarks.tiles import main, panned_photo


def test_the_photo_pans_two_pixels_right_and_one_down_per_frame():
    frames = panned_photo((24, 40), 3)
    assert frames.shape == (3, 24, 40, 3) and frames.dtype.name == "uint8" and frames.std() > 10
    assert (frames[1][:-1, :-2] == frames[0][1:, 2:]).all()


def test_rows_per_tile_size_against_the_untiled_window(tiny_checkpoint_path, tmp_path, capsys):
    out = tmp_path / "tiles.json"
    assert main(["--lr-size", "40x56", "--tiles", "none,24x32,4000x4000", "--backend", "torch", "--checkpoint",
                 str(tiny_checkpoint_path), "--threads", "1", "--repeats", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    untiled, tiled, capped = data["rows"]
    assert untiled["psnr_vs_untiled_db"] is None  # identical to itself: an infinite PSNR, which JSON cannot hold
    assert "the reference" in data["notes"]["psnr_vs_untiled_db"]  # and the JSON says what its null means
    assert untiled["tile"] is None and untiled["tiles_per_frame"] == 1 and untiled["time_ratio"] == 1.0
    assert untiled["max_diff"] == 0 and untiled["identical"] == 1.0
    assert tiled["tile"] == [24, 32] and tiled["tiles_per_frame"] == 6 and tiled["rows"] == [[0, 24], [16, 40]]
    assert 0 < tiled["identical"] < 1 and tiled["max_diff"] > 0 and 25 < tiled["psnr_vs_untiled_db"] < 80
    assert capped["tile"] == [1088, 1920] and capped["tiles_per_frame"] == 1 and capped["max_diff"] == 0  # max size
    assert data["command"].startswith("python -m vggx.benchmarks.tiles --lr-size 40x56")
    printed = capsys.readouterr()
    assert "\n24x32             6 tiles " in printed.out
    assert "24x32: 6 tiles, warm-up " in printed.err  # progress as each row starts (a cut run says how far it got)


def test_plain_adds_the_unbalanced_plan_after_each_tile_size(tiny_checkpoint_path, tmp_path):
    out = tmp_path / "tiles.json"
    assert main(["--lr-size", "40x96", "--tiles", "none,32x64", "--plain", "--backend", "torch", "--checkpoint",
                 str(tiny_checkpoint_path), "--threads", "1", "--repeats", "1", "--json", str(out)]) == 0
    untiled, balanced, plain = json.loads(out.read_text())["rows"]
    assert untiled["balanced"] and balanced["balanced"] and not plain["balanced"]
    assert balanced["tiles_per_frame"] == plain["tiles_per_frame"] == 4
    assert balanced["rows"] == plain["rows"] == [[0, 32], [8, 40]]  # two of 24 cannot overlap by 16 and cover 40
    assert balanced["cols"] == [[0, 56], [40, 96]] and plain["cols"] == [[0, 64], [32, 96]]


def test_a_bad_size_is_one_error_line(capsys):
    assert main(["--tiles", "none,big"]) == 1
    assert capsys.readouterr().err.startswith("error: size must look like HxW")


def test_gpu_summary_lists_the_tiles_rows(tmp_path):
    """``gpu_check.sh``'s summary reads the tiles step's JSON (here the recorded CPU run) into one line per row."""
    import shutil
    from pathlib import Path

    from vggx.benchmarks.gpu_summary import summarise

    recorded = Path(__file__).parents[2] / "benchmarks" / "results" / "tiles_cpu_180x320.json"
    shutil.copy(recorded, tmp_path / "tiles.json")
    summarise(tmp_path)
    lines = (tmp_path / "summary.txt").read_text().splitlines()
    assert lines[0] == "tiles (onnxruntime (CPUExecutionProvider), LR 180x320, one window):"
    assert lines[1].split() == ["untiled", "1", "tiles", "2357.47", "ms", "x1.00", "PSNR", "vs", "untiled", "inf", "dB"]
    assert lines[3].startswith("  128x224 plain      4 tiles") and len(lines) == 8
    assert json.loads((tmp_path / "gpu_check.json").read_text())["tiles"]["rows"][1]["tiles_per_frame"] == 4
