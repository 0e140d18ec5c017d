"""The static SASS counts (``python -m vggx.benchmarks.sass``): compiled for sm_90a here, no GPU needed."""

from __future__ import annotations

import json
import os

import pytest

triton = pytest.importorskip("triton")

_BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
pytestmark = pytest.mark.skipif(
    not all(os.access(os.path.join(_BIN, tool), os.X_OK) for tool in ("ptxas", "nvdisasm")),
    reason="Triton's bundled ptxas / nvdisasm are not present",
)


def test_per_thread_counts_hold_the_math_the_tile_must_do():
    """FP16, T = 8, d = 16, the per-thread tile: every score and output term is one FFMA (2 T^2 d per pixel and
    head, less the first term of each output sum, a multiply), and the loads, conversions and softmax come on
    top of them."""
    from vggx.benchmarks.sass import attention_stats
    from vggx.plugins.launch import attention_tile

    tile = attention_tile(8, 16, half=True)
    row = attention_stats(8, True, tile, "shipped")
    assert not tile.mma and row.registers <= 255 and row.spill_bytes == 0 and row.shared > 0
    assert 2 * 8 * 8 * 16 - 8 * 16 <= row.ffma <= 2 * 8 * 8 * 16 + 8 * 8, row
    assert row.instructions > 1.5 * row.ffma, row


def test_unrolling_pays_the_loop_bookkeeping_less_often():
    """The estimate follows the loops: unrolled by 4 (tactic 9) the head-dim loops run a quarter of the trips, and
    the same FFMAs take fewer instructions in all."""
    from vggx.benchmarks.sass import attention_stats
    from vggx.plugins.launch import attention_tactic_tile, attention_tile

    shipped = attention_stats(12, True, attention_tile(12, 16, half=True, mma=False))
    unrolled = attention_stats(12, True, attention_tactic_tile(9, 12, 16, True))
    assert unrolled.ffma == shipped.ffma
    assert unrolled.instructions < 0.95 * shipped.instructions, (unrolled, shipped)


def test_the_command_writes_its_rows(tmp_path, monkeypatch, capsys):
    from vggx.benchmarks import sass
    from vggx.plugins.launch import attention_tile

    monkeypatch.setattr(sass, "attention_tiles", lambda t, half, d=16: {"shipped": attention_tile(t, d, half=half)})
    assert sass.main(["--t", "8", "--plugin", "--json", str(tmp_path / "s.json")]) == 0
    payload = json.loads((tmp_path / "s.json").read_text())
    rows = [(r["t"], r["dtype"], r["tile"]) for r in payload["rows"]]
    assert rows == [(8, "fp16", "shipped"), (8, "fp32", "shipped")]
    assert payload["command"].endswith("--t 8 --plugin --json " + str(tmp_path / "s.json"))
    # the plugin's PTX carries a plain copy beside the aligned one: more registers than the JIT's kernel
    assert all(r["plugin_registers"] > 0 and r["plugin_spill_bytes"] == 0 for r in payload["rows"]), payload["rows"]
    assert "plugin regs/spill" in capsys.readouterr().out


def test_every_tactic_is_reported_once():
    from vggx.benchmarks.sass import attention_tiles

    tiles = attention_tiles(16, True)
    assert list(tiles)[:3] == ["shipped", "mma", "tactic 3"]  # the shipped tile is the per-thread one (tactic 1)
    assert len(set(tiles.values())) == len(tiles)


def test_ragged_tiles_are_counted_per_program_kind():
    """A ragged last query block (FP16, T = 9: 1 row of 8) carries a second copy of the body: the estimate counts
    the full block's program and the last one's, each once (not both copies in both programs), so it falls below
    the full tile's, while the code grows by that copy."""
    from vggx.benchmarks.sass import attention_stats
    from vggx.plugins.launch import attention_tactic_tile, attention_tile

    ragged = attention_tile(9, 16, half=True)
    full = attention_tactic_tile(10, 9, 16, True)
    assert ragged.ragged and not full.ragged
    r, f = attention_stats(9, True, ragged), attention_stats(9, True, full)
    assert r.ffma < f.ffma and r.instructions < 0.8 * f.instructions, (r, f)
    # the FFMAs of 9 query rows (8 + 1) over the 9 real keys, both products, give or take each sum's first term
    assert 2 * 9 * 9 * 16 - 9 * 16 <= r.ffma <= 2 * 9 * 9 * 16 + 9 * 9, r
    assert r.code_bytes > 1.2 * f.code_bytes > 0
