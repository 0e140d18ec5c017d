"""``python -m vggx.benchmarks.tonemap``: the tables against the curves computed exactly, and the time a frame."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.mark.parametrize(("transfer", "peak"), [("PQ", 1000.0), ("PQ", 4000.0), ("PQ", 80.0), ("HLG", 1000.0)])
def test_the_tables_are_the_curves_within_three_16_bit_levels(transfer, peak):
    """Every code as likely, brighter than the source's peak included (a highlight past MaxCLL is clipped to SDR's
    white, not left at the peak's gain)."""
    from vggx.benchmarks.tonemap import exact
    from vggx.video.tonemap import ToneMap

    tm = ToneMap(transfer, peak)
    codes = np.random.default_rng(3).integers(0, 65536, (128, 128, 3), dtype=np.uint16)
    got = tm(codes).astype(np.float64) / 65535
    assert np.abs(got - exact(tm, codes)).max() * 65535 < 3


def test_rows_and_json(tmp_path, capsys):
    from vggx.benchmarks.tonemap import main

    out = tmp_path / "t.json"
    assert main(["--size", "64x96", "--repeats", "2", "--reader-frames", "6", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [(r["transfer"], r["peak"]) for r in data["rows"]] == [("PQ", 1000.0), ("PQ", 4000.0), ("HLG", 1000.0)]
    assert all(r["ms_per_frame"] > 0 and r["max_error_8bit_levels"] <= 1 for r in data["rows"])
    assert [(r["threads"], r["frames"]) for r in data["reader"]] == [(1, 6), (2, 6)]
    assert "command" in data and "2 threads" in capsys.readouterr().out
