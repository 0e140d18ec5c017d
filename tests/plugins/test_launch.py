"""Launch geometry (pure arithmetic, no Triton): grids cover every output exactly once."""

from __future__ import annotations

import dataclasses

import pytest

from vggx.plugins.launch import (
    FLOW_WARP_BLOCK,
    FLOW_WARP_C_BLOCK,
    attention_config,
    attention_grid,
    attention_tile,
    cdiv,
    flow_warp_config,
    flow_warp_grid,
    next_power_of_2,
)


def test_cdiv_and_next_power_of_2():
    assert [cdiv(a, 4) for a in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    assert [next_power_of_2(n) for n in (0, 1, 2, 3, 8, 9, 17, 32)] == [1, 1, 2, 4, 8, 16, 32, 32]


@pytest.mark.parametrize(
    ("b", "c", "h", "w"), [(1, 1, 1, 1), (8, 64, 180, 320), (3, 17, 9, 13), (2, 16, 1, 512)]
)
def test_flow_warp_grid_covers_pixels_batches_and_channels(b, c, h, w):
    cfg = flow_warp_config(b, c, h, w)
    gx, gy, gz = cfg.grid
    assert gx * FLOW_WARP_BLOCK >= h * w > (gx - 1) * FLOW_WARP_BLOCK
    assert gy == b
    assert gz * FLOW_WARP_C_BLOCK >= c > (gz - 1) * FLOW_WARP_C_BLOCK
    assert cfg.block == cfg.num_warps * 32
    assert cfg.constexprs == {"BLOCK": FLOW_WARP_BLOCK, "C_BLOCK": FLOW_WARP_C_BLOCK}


def test_flow_warp_grid_issue_shape():
    assert flow_warp_grid(8, 64, 180, 320) == (113, 8, 4)


@pytest.mark.parametrize("t", [1, 2, 3, 8, 9, 16, 17, 32])
def test_attention_tile_holds_all_keys_and_bounded_scores(t):
    cfg = attention_config(1, t, 64, 360, 640, 4, tile=attention_tile(t, mma=False))
    tb, qb, pb = cfg.constexprs["T_BLOCK"], cfg.constexprs["Q_BLOCK"], cfg.constexprs["P_BLOCK"]
    assert tb >= t and tb == next_power_of_2(t)
    assert qb <= tb and qb & (qb - 1) == 0
    assert pb & (pb - 1) == 0 and pb >= 8
    assert qb * tb * pb <= 8192  # score tile stays in registers
    assert cfg.grid == (cdiv(360 * 640, pb) * cdiv(t, qb), 4, 1)
    assert cfg.constexprs["D"] == 16 and cfg.constexprs["UNROLL"] == 1
    assert cfg.constexprs["SCALE"] == pytest.approx(0.25)


def test_attention_reads_each_input_once_up_to_8_frames():
    for t in range(1, 9):
        assert attention_tile(t, mma=False).q_block >= t
    assert attention_tile(16, mma=False).q_block == 4 and attention_tile(32, mma=False).q_block == 2


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("t", [1, 5, 8, 9, 12, 13, 16, 17, 32])
@pytest.mark.parametrize("d", [1, 12, 16, 48, 64])
def test_shipped_tile_by_frames_and_dtype(t, d, half):
    """The per-thread form, pipelined (4 stages in FP16, 3 in FP32) with int32 offsets, up to 16 frames; FP16
    holding 128 scores per pixel (8 queries of 9-16 frames) and unrolling its head-dim loops by 2 up to 14 frames,
    FP32 64 (4 queries) rolled. The tensor-core form above 16 frames, which reads every input once at any T (one
    program holds all frames of its pixels)."""
    tile = attention_tile(t, d, half=half)
    assert tile.mma == (t > 16)
    if not tile.mma:
        assert (tile.stages, tile.int32, tile.walk) == (4 if half else 3, True, 1)
        assert tile.q_block == min(next_power_of_2(t), 8 if half else 64 // next_power_of_2(t))
        assert tile.unroll == (2 if half and t <= 14 else None)
        assert tile.ragged == (half and 9 <= t <= 10)  # FP16: a ragged last query block of 1-2 rows
        cfg = attention_config(1, t, d * 4, 36, 64, 4, half=half)
        assert cfg.constexprs["STAGES"] == tile.stages and cfg.constexprs["OFF32"] and not cfg.constexprs["MMA"]
        assert cfg.grid == (cdiv(36 * 64, tile.p_block) * cdiv(t, tile.q_block), 4, 1)
        return
    assert tile.q_block >= t and tile.stages == 1 and not tile.int32
    cfg = attention_config(1, t, d * 4, 36, 64, 4, half=half)
    tb, db, pb = cfg.constexprs["T_BLOCK"], cfg.constexprs["D_BLOCK"], cfg.constexprs["P_BLOCK"]
    assert cfg.constexprs["MMA"] and tb >= max(16, t) and db >= max(16, d)  # tl.dot needs 16 at least
    assert tb * db * pb <= 4096 * (2 if half else 1) and pb >= 1
    assert cfg.grid == (cdiv(36 * 64, pb), 4, 1) and not cfg.constexprs["OFF32"]


def test_stages_override():
    assert attention_tile(8, 16, stages=2).stages == 2 and attention_tile(8, 16, half=True, stages=1).stages == 1


@pytest.mark.parametrize("spt", [16, 32, 64, 128])
@pytest.mark.parametrize("t", [1, 5, 8, 12, 16, 32])
def test_attention_tile_budgets(t, spt):
    tile = attention_tile(t, scores_per_thread=spt, num_warps=8, pixels_per_thread=2, unroll=4, mma=False)
    tb = next_power_of_2(t)
    assert tile.num_warps == 8 and tile.p_block == 32 * 8 * 2 and tile.unroll == 4
    assert tile.q_block * tb <= spt or tile.q_block == 1  # budget kept unless down to one query
    cfg = attention_config(1, t, 64, 36, 64, 4, tile=tile)
    assert cfg.num_warps == 8 and cfg.constexprs["P_BLOCK"] == tile.p_block and cfg.constexprs["UNROLL"] == 4
    assert cfg.grid == (cdiv(36 * 64, tile.p_block) * cdiv(t, tile.q_block), 4, 1)


def test_attention_threads_own_whole_pixels():
    """One pixel's scores never span threads: p_block covers every thread of the program."""
    for t in range(1, 33):
        tile = attention_tile(t, mma=False)
        assert tile.p_block % (32 * tile.num_warps) == 0


def test_flow_warp_geometry_override():
    cfg = flow_warp_config(2, 37, 13, 29, block=256, c_block=8, num_warps=8)
    assert cfg.grid == (cdiv(13 * 29, 256), 2, cdiv(37, 8)) and cfg.num_warps == 8
    assert cfg.constexprs == {"BLOCK": 256, "C_BLOCK": 8}


def test_attention_large_head_dims_do_not_unroll():
    assert attention_config(1, 8, 128, 4, 4, 2).constexprs["UNROLL"] == 1


def test_attention_grid_issue_shapes():
    assert attention_grid(1, 8, 360, 640, 4) == (1800, 4, 1)
    assert attention_grid(1, 16, 360, 640, 4) == (7200, 4, 1)  # FP32, per-thread form: 4 x 4 queries
    assert attention_grid(1, 16, 360, 640, 4, tile=attention_tile(16, mma=True)) == (14400, 4, 1)  # 16 pixels
    assert attention_grid(1, 16, 360, 640, 4, half=True) == (3600, 4, 1)  # FP16, per-thread form: 2 x 8 queries
    assert attention_grid(1, 16, 360, 640, 4, tile=attention_tile(16, half=True, mma=True)) == (7200, 4, 1)


@pytest.mark.parametrize(("t", "d", "p_block"), [(9, 16, 32), (16, 16, 32), (32, 16, 16), (16, 64, 8), (32, 64, 4)])
def test_attention_half_tiles_wider_on_more_warps(t, d, p_block):
    """FP16's tensor-core tile: twice the pixels on 8 warps (the same [p, T, d] elements per thread as FP32's)."""
    fp32, fp16 = attention_tile(t, d, mma=True), attention_tile(t, d, half=True, mma=True)
    assert (fp32.mma, fp16.mma) == (True, True)
    assert (fp16.p_block, fp16.num_warps) == (p_block, 8)
    assert fp16.p_block == 2 * fp32.p_block
    cfg = attention_config(1, t, 4 * d, 36, 64, 4, tile=fp16)
    assert (cfg.constexprs["P_BLOCK"], cfg.num_warps) == (p_block, 8)
    per_thread = attention_tile(8, d, half=True)  # at 8 frames the per-thread forms differ by depth and unrolling
    assert dataclasses.replace(per_thread, stages=3, unroll=None) == attention_tile(8, d)


def test_grids_accept_symbolic_dims():
    """TensorRT passes shape expressions and its own cdiv; the arithmetic only multiplies and divides."""

    class Sym:
        def __init__(self, text):
            self.text = text

        def __mul__(self, other):
            return Sym(f"({self.text}*{getattr(other, 'text', other)})")

    def sym_cdiv(a, b):
        return f"cdiv({getattr(a, 'text', a)},{b})"

    grid = flow_warp_grid(Sym("B"), Sym("C"), Sym("H"), Sym("W"), cdiv=sym_cdiv)
    assert grid[0] == f"cdiv((H*W),{FLOW_WARP_BLOCK})" and grid[1].text == "B"
    assert grid[2] == f"cdiv(C,{FLOW_WARP_C_BLOCK})"
    assert attention_grid(Sym("N"), 8, Sym("H"), Sym("W"), 4, cdiv=sym_cdiv)[0] == "cdiv((H*W),128)"


@pytest.mark.parametrize(
    ("t", "c", "heads", "message"),
    [
        (33, 8, 1, r"T must be in 1\.\.32 frames, got T=33"),
        (8, 130, 2, r"head dim C/heads must be in 1\.\.64, got 65"),
        (8, 10, 3, r"heads=3 must divide C=10"),
    ],
)
def test_attention_limits_raise_with_the_limit(t, c, heads, message):
    with pytest.raises(ValueError, match=message):
        attention_config(1, t, c, 4, 4, heads)


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("t", range(1, 17))
def test_tactic_10_is_the_other_last_query_block(t, half):
    """TensorRT's tactic 10: the shipped per-thread tile with the other choice of last query block where T leaves
    a short one (FP16 ships it ragged where it computes 1-2 rows, T = 9-10; full otherwise), the shipped tile itself
    where T fills its blocks; the ragged block's rows (the kernel's ``Q_LAST``) are the frames it holds, rounded up to
    a power of two."""
    from vggx.plugins.launch import attention_tactic_tile

    shipped, other = attention_tile(t, 16, half=half), attention_tactic_tile(10, t, 16, half)
    q_block = shipped.q_block
    held = t - (cdiv(t, q_block) - 1) * q_block  # frames in the last query block
    short = next_power_of_2(held) < q_block
    shipped_ragged = short and half and next_power_of_2(held) <= 2
    assert shipped.ragged == shipped_ragged and other.ragged == (short and not shipped_ragged)
    assert (other == shipped) == (not short)
    assert other == dataclasses.replace(shipped, ragged=other.ragged)
    ragged = shipped if shipped.ragged else other
    q_last = attention_config(1, t, 64, 36, 64, 4, tile=ragged, half=half).constexprs.get("Q_LAST", 0)
    assert q_last == (next_power_of_2(held) if short else 0)
