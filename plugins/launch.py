"""Launch geometry of the two kernels: pure integer arithmetic, no torch, Triton or TensorRT import.

The same functions size the grid of a PyTorch launch (Python ints) and of the TensorRT AOT plugin
(``tensorrt.plugin`` shape expressions, which support ``*`` and a ``cdiv``): pass ``cdiv=trtp.cdiv``
there. Block sizes and warp counts are fixed per op (and, for attention, per T), so the compiled
kernel and its grid always agree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ATTENTION_MAX_HEAD_DIM",
    "ATTENTION_MAX_T",
    "ATTENTION_TACTICS",
    "FLOW_WARP_BLOCK",
    "FLOW_WARP_C_BLOCK",
    "FLOW_WARP_NHWC_GEOMETRY",
    "FLOW_WARP_NHWC_TACTICS",
    "FLOW_WARP_NUM_WARPS",
    "FLOW_WARP_TACTICS",
    "AttentionTile",
    "KernelLaunch",
    "attention_config",
    "attention_grid",
    "attention_tactic_tile",
    "attention_tile",
    "cdiv",
    "check_attention_limits",
    "flow_warp_config",
    "flow_warp_grid",
    "flow_warp_nhwc_config",
    "flow_warp_nhwc_grid",
    "flow_warp_nhwc_scalars",
    "flow_warp_nhwc_tactic",
    "flow_warp_tactic",
    "hwc8_channels",
    "next_power_of_2",
]

FLOW_WARP_BLOCK = 512  # output pixels per program (one flow read, coordinate math once per pixel)
FLOW_WARP_C_BLOCK = 16  # channels per program (looped inside, reusing the bilinear weights)
FLOW_WARP_NUM_WARPS = 4

ATTENTION_MAX_T = 32  # frames
ATTENTION_MAX_HEAD_DIM = 64  # channels per head
# fp32 scores of one pixel's [q_block, T_BLOCK] tile a thread holds, by dtype (FP16, FP32): H200 run 11, FP16, 4
# stages, side by side: 8 queries per program (128 scores) 0.476 / 0.602 ms at T = 12 / 16 against 4 queries' 0.495 /
# 0.738 ms (JIT: 128 / 166 registers, no spills); FP32 gains less (0.777 / 1.068 vs 0.789 / 1.105 ms) and already
# meets its goal with 64.
_ATTENTION_SCORES_PER_THREAD = {True: 128, False: 64}
_ATTENTION_NUM_WARPS = 4
_ATTENTION_UNROLL = 1  # loops over the head dim stay rolled (H200 sweep: fastest for every T, fewest registers)
_MMA_TILE_ELEMENTS = 4096  # elements of one [p_block, T, d] q/k/v tile of the tensor-core form (4 warps)
_MMA_HALF_WARPS = 8  # FP16's tensor-core form: twice the pixels on twice the warps (same registers per thread)
# The per-thread (FMA) form up to this many frames, the tensor-core form above (by dtype: FP16, FP32). H200 run 10,
# side by side: FP32 per-thread with 3 stages and int32 offsets 93.9 / 78.5 / 76.6 % of copy at T = 8 / 12 / 16
# against the best tensor-core tile's 36.6 / 52.4 / 63.9 %; FP16 per-thread with 4 stages 93.0 / 53.6 / 56.7 %
# against 35.5 / 49.2 / 59.3 %, which kept the tensor-core form at T = 13-16 in FP16 until run 11: with 8 queries per
# program (``_ATTENTION_SCORES_PER_THREAD``) the per-thread form took T = 16 to 74.3 % against the tensor-core form's
# 62.4 % (CUDA-graph timing). Above 16 frames neither is measured: the tensor-core form, whose registers do not grow
# with T.
_ATTENTION_FMA_MAX_T = {True: 16, False: 16}
# Software-pipelined head-dim loops of the per-thread form (cp.async, ``stages - 1`` iterations ahead), by dtype.
# H200 run 10, FP16 T = 8: 1 stage 43.0 %, 2 55.5 %, 3 78.4 %, 4 91.6 % of copy (int32 offsets: 50.7, 63.1, 85.0,
# 93.0 %); FP32 timed with 3 (4 not yet: twice FP16's shared memory per stage).
_ATTENTION_FMA_STAGES = {True: 4, False: 3}
# FP16's per-thread head-dim loops unrolled by 2 up to this many frames (H200, 4 stages, 8 queries, side by side:
# run 11 T = 8 0.229 vs 0.243 ms rolled, T = 12 0.461 vs 0.476 ms; run 14 T = 13 0.489 vs 0.551 ms, T = 14 0.523 vs
# 0.579 ms; at T = 16 (run 11) 0.658 vs 0.602 ms: 218 registers instead of 166).
_ATTENTION_FP16_UNROLL2_MAX_T = 14
# A ragged last query block in the shipped per-thread tile (``AttentionTile.ragged``) where it computes at most this
# many rows, by dtype (0: never). FP16: chosen from static SASS, not yet timed. H200 runs 13-14 had FP16 at T = 9 / 10 /
# 11 / 12 at 68 / 72 / 76 / 76 % of copy, its 8 queries per program computing 16 query rows of which 9-12 are real, the
# % rising as the instructions per frame fell (ptxas, sm_90a, per pixel and head: 1,172 / 1,127 / 1,087 / 1,055). With
# the last block ragged (1 / 2 / 4 / 4 rows) a pixel and head take 29 / 24 / 16 / 16 % fewer instructions (T = 9: 7,487
# against 10,550, 832 per frame; ``python -m vggx.benchmarks.sass``) on the same JIT registers (120 / 127 / 126 / 128
# against 118 / 126 / 127 / 128) and loops of 4.4 KB each (T = 9: the kernel's code 29 KB against 22 KB, a second copy
# of the body for the last block's programs). The plugin's PTX (an aligned and a plain copy of each) keeps its registers
# at T = 9 / 10 (116 / 126 against 103 / 120) but not at 11 / 12 (168 / 156 against 127 / 128: a quarter fewer warps per
# SM), where the saving is smaller and the goal already met: ragged up to 2 rows. FP32 (4 queries per program, 82-84 %
# at T = 9-12) keeps full blocks (ragged, 148 registers at T = 9 against 72). TensorRT's tactic 10 is the other choice
# wherever T leaves a short last block, so an engine build times both.
_ATTENTION_RAGGED_MAX_ROWS = {True: 2, False: 0}


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative ints."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= ``n`` (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


@dataclass(frozen=True)
class KernelLaunch:
    """Everything a launch needs besides the tensors.

    ``grid`` is (x, y, z) in programs (CUDA blocks); ``block`` is threads per program
    (``num_warps * 32``); ``constexprs`` are the kernel's compile-time parameters; ``max_registers``, where
    set, caps ptxas's registers per thread (Triton's ``maxnreg``, the PTX's ``.maxnreg``).
    """

    grid: tuple[Any, Any, Any]
    num_warps: int
    constexprs: dict[str, Any] = field(default_factory=dict)
    max_registers: int | None = None

    @property
    def block(self) -> int:
        return self.num_warps * 32


def flow_warp_grid(
    b: Any, c: Any, h: Any, w: Any, cdiv: Callable[[Any, int], Any] = cdiv,
    block: int = FLOW_WARP_BLOCK, c_block: int = FLOW_WARP_C_BLOCK,
) -> tuple:
    """Programs along (pixels, batch, channel groups) for ``x`` ``(b, c, h, w)``."""
    return (cdiv(h * w, block), b, cdiv(c, c_block))


def flow_warp_config(
    b: int, c: int, h: int, w: int, block: int = FLOW_WARP_BLOCK, c_block: int = FLOW_WARP_C_BLOCK,
    num_warps: int = FLOW_WARP_NUM_WARPS, c_unroll: int = 1, c_stages: int = 1,
) -> KernelLaunch:
    """Launch of the flow_warp kernel for ``x`` ``(b, c, h, w)`` (the block sizes default to the
    shipped tuning; the kernel benchmark's ``--sweep`` varies them). ``c_unroll`` / ``c_stages``: the
    channel loop unrolled / software-pipelined (1 and 1 shipped; the benchmark's ``cuN``/``csN`` rows)."""
    constexprs = {"BLOCK": block, "C_BLOCK": c_block}
    if (c_unroll, c_stages) != (1, 1):  # the shipped launch keeps the constexprs (and PTX) it always had
        constexprs.update({"C_UNROLL": c_unroll, "C_STAGES": c_stages})
    return KernelLaunch(
        grid=flow_warp_grid(b, c, h, w, block=block, c_block=c_block),
        num_warps=num_warps,
        constexprs=constexprs,
    )


FLOW_WARP_TACTICS = (1, 2, 3)  # the NCHW flow_warp's custom tactics (see flow_warp_tactic)


def flow_warp_tactic(tactic: int | None, b: int = 1, c: int = 1, h: int = 1, w: int = 1) -> KernelLaunch:
    """The NCHW kernel's launch (TensorRT's LINEAR format) of one of the plugin's custom tactics for ``x``
    ``(b, c, h, w)``: 1 (also 0 or None) = the shipped launch, 2 = its channel loop unrolled 4 times, 3 = the loop
    software-pipelined 3 stages (FP32's gathers then arrive by ``cp.async``). Only the grid depends on the shape
    (the plugin, whose shapes are dynamic, takes the constexprs and warps of the one-pixel default)."""
    loops = {1: (1, 1), 2: (4, 1), 3: (1, 3)}.get(tactic or 1)
    if loops is None:
        raise ValueError(f"flow_warp: unknown tactic {tactic}; expected one of {FLOW_WARP_TACTICS}")
    return flow_warp_config(b, c, h, w, c_unroll=loops[0], c_stages=loops[1])


# Channels-last kernel, by dtype (half: FP16): pixels per block, warps, consecutive pixel blocks per program. H200
# run 10's sweep (smooth flow, one run): FP16 16 pixels on 2 warps walking 2 blocks 69.5 % of copy against 64.8 % for
# run 3-9's 32 pixels on 4 warps, one block (65.5 % for 16 on 2 warps, one block); FP32 16 on 4 warps walking 4
# blocks 80.0 % against 72.4 % (75.6 % walking 2 on 2 warps).
FLOW_WARP_NHWC_GEOMETRY = {True: (16, 2, 2), False: (16, 4, 4)}
FLOW_WARP_NHWC_PIXELS = 32  # runs 3-9's geometry (pixels per program, warps): TensorRT's tactic 3, a benchmark row
FLOW_WARP_NHWC_MAX_C_BLOCK = 64  # channels per program (contiguous in memory: vector loads)
FLOW_WARP_NHWC_NUM_WARPS = 4
FLOW_WARP_NHWC_TACTICS = (1, 2, 3)  # the channels-last flow_warp's custom tactics (see flow_warp_nhwc_tactic)


def flow_warp_nhwc_grid(
    b: Any, c: int, h: Any, w: Any, cdiv: Callable[[Any, int], Any] = cdiv, p_block: int = FLOW_WARP_NHWC_PIXELS,
    c_block: int | None = None,
) -> tuple:
    """Programs of the channels-last kernel along (pixels, batch, channel groups); ``c``, the elements per
    pixel (channels plus any padding), is a plain int, the rest may be TensorRT shape expressions."""
    c_block = c_block or min(next_power_of_2(c), FLOW_WARP_NHWC_MAX_C_BLOCK)
    return (cdiv(h * w, p_block), b, -(-c // c_block))


def hwc8_channels(c: int) -> int:
    """Elements per pixel of TensorRT's HWC8 format: the channels rounded up to a multiple of 8."""
    return -(-c // 8) * 8


def flow_warp_nhwc_scalars(c: Any, h: Any, w: Any, xs: Any) -> tuple:
    """The channels-last kernel's int32 arguments for features with ``xs`` elements per pixel and a LINEAR
    (NCHW) flow: ``C, H, W, XS`` and the flow's batch, channel and pixel strides (TensorRT's AOT order)."""
    return (c, h, w, xs, h * w * 2, h * w, 1)  # shape expression on the left: TensorRT's ShapeExpr * int


def flow_warp_nhwc_config(
    b: int, c: int, h: int, w: int, p_block: int | None = None, c_block: int | None = None,
    num_warps: int | None = None, walk: int | None = None, half: bool = False,
) -> KernelLaunch:
    """Launch of the channels-last flow_warp kernel: ``walk`` consecutive blocks of ``p_block`` pixels x
    ``c_block`` channels per program (``c_block`` defaults to ``c`` rounded up to a power of two, at most 64;
    the others to the shipped geometry of the dtype, :data:`FLOW_WARP_NHWC_GEOMETRY`; ``half``: FP16).
    """
    shipped_pixels, shipped_warps, shipped_walk = FLOW_WARP_NHWC_GEOMETRY[half]
    p_block = p_block or shipped_pixels
    num_warps = num_warps or shipped_warps
    walk = walk or shipped_walk
    c_block = c_block or min(next_power_of_2(c), FLOW_WARP_NHWC_MAX_C_BLOCK)
    grid = flow_warp_nhwc_grid(b, c, h, w, p_block=p_block * walk, c_block=c_block)
    return KernelLaunch(
        grid=grid,
        num_warps=num_warps,
        constexprs={"P_BLOCK": p_block, "C_BLOCK": c_block, "WALK": walk},
    )


def flow_warp_nhwc_tactic(tactic: int | None, c: int, half: bool, b: int = 1, h: int = 1, w: int = 1
                          ) -> KernelLaunch:
    """The channels-last kernel's launch (``c`` elements per pixel) of one of the TensorRT plugin's custom
    tactics, which TensorRT times at engine build on the engine's GPU, keeping the fastest: 1 (also 0 or None)
    = the shipped geometry of the dtype, 2 = the other dtype's, 3 = runs 3-9's (32 pixels on 4 warps, one
    block per program). Only the grid depends on ``b``, ``h``, ``w`` (the plugin, whose shapes are dynamic,
    takes the constexprs and warps of the one-pixel default)."""
    geometries = {1: FLOW_WARP_NHWC_GEOMETRY[half], 2: FLOW_WARP_NHWC_GEOMETRY[not half],
                  3: (FLOW_WARP_NHWC_PIXELS, FLOW_WARP_NHWC_NUM_WARPS, 1)}
    geometry = geometries.get(tactic or 1)
    if geometry is None:
        raise ValueError(f"flow_warp: unknown tactic {tactic}; expected one of {FLOW_WARP_NHWC_TACTICS}")
    p_block, num_warps, walk = geometry
    return flow_warp_nhwc_config(b, c, h, w, p_block=p_block, num_warps=num_warps, walk=walk, half=half)


def check_attention_limits(t: int, d: int) -> None:
    """Raise ``ValueError`` when the kernel cannot take ``t`` frames or head dim ``d``."""
    if not 1 <= t <= ATTENTION_MAX_T:
        raise ValueError(f"temporal_attention kernel: T must be in 1..{ATTENTION_MAX_T} frames, got T={t}")
    if not 1 <= d <= ATTENTION_MAX_HEAD_DIM:
        raise ValueError(
            f"temporal_attention kernel: head dim C/heads must be in 1..{ATTENTION_MAX_HEAD_DIM}, got {d}"
        )


@dataclass(frozen=True)
class AttentionTile:
    """Work of one attention program: ``q_block`` query frames x ``p_block`` pixels, ``num_warps``.

    ``unroll``: how far the loops over the head dim unroll (None: the shipped choice, not at all).
    ``stages``: software pipelining of the per-thread form's loops over the head dim (Triton's
    ``num_stages``: with 2 or more, each iteration's q, k (or v) tiles arrive by ``cp.async`` into shared
    memory ``stages - 1`` iterations ahead; 1: plain loads). Plain loads kept too few bytes in flight: the
    shipped per-thread tiles pipeline 4 stages in FP16 and 3 in FP32 (:func:`attention_tile`), which took T = 8
    from 43 % to 93 % of copy bandwidth in FP16 and from 78 % to 94 % in FP32 (H200, run 10).
    ``walk`` (tensor-core form only): consecutive pixel blocks per program, a loop; with ``stages`` >= 2 Triton
    software-pipelines it (``cp.async`` copies of the next blocks' q, k, v tiles into shared memory while this
    block's dots run: the tensor-core form's counterpart of the per-thread form's pipelined head-dim loops; FP16,
    T = 16, 4 blocks: 80 KiB of shared memory at 3 stages). 1 (shipped): one block per program. Unrolled and
    unpipelined, 2 blocks timed 7-22 % slower on an H200 (runs 9-10); pipelined, not yet measured.
    ``int32`` (per-thread form): element offsets within one batch item in int32 where ``T * 3C * H * W``
    fits (int64 otherwise, whatever the tile says): ptxas at sm_90a, T = 8-16, 3 stages: 96 registers
    instead of 112-128 (20 warps per SM instead of 16); shipped (3-10 % faster at 3 stages, run 10). The
    TensorRT plugin (dynamic H, W) keeps int64 but in the copy of its body that runs where a run-time check
    finds the tensors aligned and a batch item within int32.
    ``max_registers``: a cap on ptxas's registers per thread (Triton's ``maxnreg``). The plugin's per-thread PTX
    carries a plain copy for misaligned tensors beside its aligned one, and a kernel gets its hungriest path's
    registers: 136-152 with the softmax's division per score (3 blocks of 4 warps per SM); with the base-2 softmax
    and T compiled in, 119-128 (ptxas, sm_90a, T = 8-16) but 168 for FP32 at T = 16. Capped at 128 (TensorRT's
    tactic 7): 4 blocks there, with a few spills.
    ``fixed_t``: compile T in (the kernel's ``FRAMES``) rather than read it at run time: the keys
    past T, padding up to ``T_BLOCK``, are then known masked, and their loads, multiply-adds and softmax terms fold
    away (SASS at T = 12: 258 instructions per head-dim step instead of 308, 92 FFMA instead of 124, FP16 and FP32
    alike); where T is a power of two (``T_BLOCK`` itself) the masks on keys and queries fold away (FP16, T = 16:
    about 1,000 fewer instructions per pixel and head, 4 %; the tensor-core form's masks too). One compiled kernel
    per T then (a model uses one or two), and the TensorRT plugin's T is a build-time constant anyway.
    ``ragged`` (per-thread form, T compiled in): where T is not a multiple of ``q_block``, the last query block's
    programs take only the rows they hold, rounded up to a power of two (the kernel's ``Q_LAST``, a second copy of
    the body): at T = 9 in blocks of 8 the second block computes 1 query row instead of 8 of which 7 are padding.
    H200 runs 13-14 had FP16 at T = 9 / 10 / 11 / 12 at 68 / 72 / 76 / 76 % of copy, rising with the share of rows
    that are real (9 / 10 / 11 / 12 of 16); shipped in FP16 at T = 9-10 from static SASS, not yet timed (the
    benchmark's ``fma,full-last`` rows are the full blocks beside it, ``fma,ragged`` the ragged ones elsewhere).
    """

    q_block: int
    p_block: int
    num_warps: int
    unroll: int | None = None
    mma: bool = False  # the tensor-core form (batched dots over p_block pixels; q_block = all frames)
    stages: int = 1
    walk: int = 1  # tensor-core form: consecutive pixel blocks per program (a loop, pipelined with stages >= 2)
    int32: bool = False  # per-thread form: int32 offsets within a batch item, where they fit
    max_registers: int | None = None  # a register cap for ptxas (None: ptxas decides)
    fixed_t: bool = True  # T compiled in (see above)
    ragged: bool = False  # per-thread form, T compiled in: the last query block computes only its own rows


def attention_tile(
    t: int,
    d: int = 16,
    scores_per_thread: int | None = None,
    num_warps: int = _ATTENTION_NUM_WARPS,
    pixels_per_thread: int = 1,
    unroll: int | None = None,
    mma: bool | None = None,
    half: bool = False,
    stages: int | None = None,
    ragged: bool | None = None,
) -> AttentionTile:
    """Tile for ``t`` frames and head dim ``d`` (``half``: FP16 inputs, which tile the tensor-core form wider).

    Every thread owns whole pixels (``p_block = 32 * num_warps * pixels_per_thread``): the
    softmax over the keys then stays inside one thread. Measured on an H200, splitting a pixel's
    [q, k] score tile across threads (``p_block`` below ``32 * num_warps``) cost 2.5-8x: Triton
    reduces across warps through shared memory. The queries are split instead (``q_block``, a
    power of two) until a thread holds at most ``scores_per_thread`` fp32 scores per pixel; the
    query blocks of one pixel block run side by side, so their re-reads of k and v hit L2.
    The defaults are the shipped tuning; the kernel benchmark's ``--sweep`` varies them.

    ``mma``: the tensor-core form, whose program owns all frames of ``p_block`` pixels; ``p_block``
    shrinks as T and d grow so that each of its [p_block, T, d] q/k/v tiles stays at 4096 elements
    (16 pixels at T, d <= 16: 96 registers per thread with 4 warps in FP16, no spills, by ptxas).
    ``None`` (shipped): the per-thread form, its loads pipelined (``stages``: 4 in FP16, 3 in FP32, or as given)
    and its offsets int32, up to 16 frames; the tensor-core form above. ``scores_per_thread`` None: 128 in FP16
    (8 queries of 9-16 frames per program), 64 in FP32; ``unroll`` None: by 2 in FP16 up to 14 frames, rolled
    otherwise; ``ragged`` None: a ragged last query block in FP16 where it computes 1 or 2 rows (T = 9-10, see
    ``_ATTENTION_RAGGED_MAX_ROWS``), full blocks otherwise (``True``: ragged wherever T leaves a short last block;
    the tile says ``ragged`` only where it does).
    Side by side on an H200 (run 10): FP32 93.9 / 78.5 / 76.6 % of copy bandwidth at T = 8 / 12 / 16
    against the best tensor-core tile's 36.6 / 52.4 / 63.9 %; FP16 93.0 / 53.6 % at T = 8 / 12 against 35.5 /
    49.2 %, but 56.7 % at T = 16 against 59.3 %, until 8 queries per program (run 11: T = 16 74.3 % against the
    tensor-core form's 62.4 %). Runs 12-14, as shipped, every T of 8-16: FP16 68-99 %, FP32 75-92 % of copy
    (``benchmarks/RESULTS.md``). (Runs 3-9, before pipelining, had the tensor-core form ahead above 8 frames.)
    With ``half`` (FP16) the tensor-core form doubles both its pixels and its warps (32 pixels on 8 warps
    at T, d <= 16): the same registers per thread, twice the tensor-core work per program. Measured side by
    side on an H200 (``benchmarks/RESULTS.md``, run 6): T = 16 FP16 59.4 % of copy bandwidth vs 44.0 % for
    16 pixels on 4 warps, T = 12 45.1 % vs 37.7 %; in FP32 the wider tile lost (53.0 % vs 66.4 %, 41.6 %
    vs 50.8 %), so FP32 keeps 16 pixels on 4 warps.
    """
    if mma is None:
        mma = t > _ATTENTION_FMA_MAX_T[half]
    if mma:
        t_block, d_block = _mma_blocks(t, d)
        widen = _MMA_HALF_WARPS // num_warps if half and num_warps < _MMA_HALF_WARPS else 1
        p_block = max(1, min(16 * widen, widen * _MMA_TILE_ELEMENTS // (t_block * d_block)))
        return AttentionTile(q_block=t_block, p_block=p_block, num_warps=num_warps * widen, unroll=unroll,
                             mma=True)
    t_block = next_power_of_2(t)
    q_block = t_block
    if scores_per_thread is None:
        scores_per_thread = _ATTENTION_SCORES_PER_THREAD[half]
    if unroll is None and half and t <= _ATTENTION_FP16_UNROLL2_MAX_T:
        unroll = 2
    while q_block > 1 and q_block * t_block > scores_per_thread:
        q_block //= 2
    last_rows = _short_last_block(t, q_block)
    if ragged is None:
        ragged = last_rows <= _ATTENTION_RAGGED_MAX_ROWS[half]
    return AttentionTile(
        q_block=q_block, p_block=32 * num_warps * pixels_per_thread, num_warps=num_warps, unroll=unroll,
        stages=_ATTENTION_FMA_STAGES[half] if stages is None else stages, int32=True,
        ragged=ragged and last_rows > 0,
    )


ATTENTION_TACTICS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)  # the TensorRT plugin's custom tactics (see attention_tactic_tile)


def attention_tactic_tile(tactic: int | None, t: int, d: int, half: bool) -> AttentionTile:
    """The tile of one of the TensorRT plugin's custom tactics for ``t`` frames and head dim ``d``: TensorRT
    times every tactic while it builds the engine, on the engine's GPU and shapes, and keeps the fastest.

    1 (also 0 or None: no tactic) = the shipped tile; 2 = the other form (per-thread where the tensor-core form is
    shipped and the reverse); 3 = the tensor-core tile looping over 4 pixel blocks per program, 2 stages (the
    next block's q, k, v on their way while this one's dots run); 4 = the tensor-core tile of the other width
    (16 pixels on 4 warps in FP16, 32 on 8 in FP32); 5 = the tensor-core tile's pixels on half its warps where
    that leaves 4 at least (FP16: 32 pixels on 4 warps, which timed 2-8 % faster than the shipped 8 warps at
    T = 12-16 in two H200 runs of three); 6 = the per-thread form pipelining the other dtype's stage
    count (3 in FP16, 4 in FP32); 7 = the per-thread form as shipped for the dtype, its registers capped at 128
    (see :class:`AttentionTile`); 8 = the per-thread form as shipped, its head-dim loops unrolled by 2 (each
    pipelined step then carries two dims: the pipeline's bookkeeping, about 46 of a step's 150 SASS instructions
    at T = 16, is paid half as often; SASS per pixel and head, FP16: T = 12 14,304 -> 12,915, T = 16 21,824 ->
    20,180; twice the shared memory); 9 = the per-thread form unrolled by 4 and pipelined 2 stages (four dims in
    flight, as 4-5 stages of one; a quarter of the bookkeeping: FP16 T = 12 11,511, T = 16 18,388); 10 = the
    per-thread form as shipped with the other choice of last query block where T leaves a short one
    (``AttentionTile.ragged``: the last block holds at most half its rows, e.g. T = 9-12 in FP16's blocks of 8): full
    where the shipped tile's is ragged (FP16 at T = 9-10), ragged where it is full. Two tactics may name the same
    tile.
    """
    shipped = attention_tile(t, d, half=half)
    mma = shipped if shipped.mma else attention_tile(t, d, mma=True, half=half)
    fma = attention_tile(t, d, mma=False, half=half)
    other_last = dataclasses.replace(fma, ragged=not fma.ragged)  # tactic 10: where T leaves a short last block
    tiles = {
        1: shipped,
        2: attention_tile(t, d, mma=not shipped.mma, half=half),
        3: dataclasses.replace(mma, walk=4, stages=2),
        4: attention_tile(t, d, mma=True, half=not half),
        5: dataclasses.replace(mma, num_warps=mma.num_warps // 2) if mma.num_warps >= 8 else mma,  # >= 4 warps
        6: attention_tile(t, d, mma=False, half=half, stages=_ATTENTION_FMA_STAGES[not half]),
        7: dataclasses.replace(fma, max_registers=128),
        8: attention_tile(t, d, mma=False, half=half, unroll=2),
        9: attention_tile(t, d, mma=False, half=half, unroll=4, stages=2),
        10: other_last if _short_last_block(t, fma.q_block) else fma,  # (no short last block: the same tile)
    }
    if tactic in (0, None):
        return shipped
    if tactic not in tiles:
        raise ValueError(f"temporal_attention: unknown tactic {tactic}; expected one of {ATTENTION_TACTICS}")
    return tiles[tactic]


def _short_last_block(t: int, q_block: int) -> int:
    """Rows a ragged last block of ``q_block`` queries computes at ``t`` frames: the next power of two of the frames
    it holds (T = 9 in blocks of 8: 1), or 0 where that is the whole block (T = 13-16 in blocks of 8)."""
    rows = next_power_of_2(t - (cdiv(t, q_block) - 1) * q_block)
    return rows if rows < q_block else 0


def _ragged_rows(t: int, tile: AttentionTile) -> int:
    """Rows of the last query block where ``tile.ragged`` (the per-thread form; :func:`_short_last_block`), or 0."""
    if not tile.ragged or tile.mma:
        return 0
    return _short_last_block(t, tile.q_block)


def _mma_blocks(t: int, d: int) -> tuple[int, int]:
    """T and head-dim extents of the tensor-core form's tiles (16 at least: the smallest ``tl.dot``)."""
    return max(16, next_power_of_2(t)), max(16, next_power_of_2(d))


def attention_grid(
    n: Any, t: int, h: Any, w: Any, heads: int, cdiv: Callable[[Any, int], Any] = cdiv, d: int = 16,
    tile: AttentionTile | None = None, half: bool = False,
) -> tuple:
    """Programs along (query blocks x pixel blocks, heads, batch); ``t`` and ``d`` are plain ints."""
    tile = tile or attention_tile(t, d, half=half)
    if tile.walk != 1 and not tile.mma:
        raise ValueError("temporal_attention: walking several pixel blocks per program needs the tensor-core form")
    pixel_blocks, query_blocks = cdiv(h * w, tile.p_block * tile.walk), -(-t // tile.q_block)
    return (pixel_blocks * query_blocks if query_blocks > 1 else pixel_blocks, heads, n)


def attention_config(
    n: int, t: int, c: int, h: int, w: int, heads: int, tile: AttentionTile | None = None, half: bool = False,
    sizes_known: bool = True,
) -> KernelLaunch:
    """Launch of the temporal-attention kernel for ``qkv`` ``(n, t, 3c, h, w)``.

    One program owns ``P_BLOCK`` pixels of one (batch, head), ``Q_BLOCK`` query frames and all T
    key frames: it reads q, k, v straight from the NTCHW layout, keeps the [Q_BLOCK, T, P_BLOCK]
    scores in registers and writes its output once (see :func:`attention_tile`). ``sizes_known=False``
    (the TensorRT plugin, whose H and W are dynamic) keeps the offsets int64 whatever the tile says and has
    the per-thread form check the tensors' alignment at run time (``ALIGN_CHECK``).
    """
    if heads < 1 or c % heads:
        raise ValueError(f"temporal_attention kernel: heads={heads} must divide C={c}")
    d = c // heads
    check_attention_limits(t, d)
    tile = tile or attention_tile(t, d, half=half)
    t_block, d_block = _mma_blocks(t, d) if tile.mma else (next_power_of_2(t), next_power_of_2(d))
    frames = t if tile.fixed_t else 0
    if not sizes_known and half and not tile.mma and t_block > 16:
        # The plugin's FP16 per-thread PTX above 16 frames (TensorRT's per-thread tactics there) reads T at run
        # time: with T compiled in, Triton's LLVM aborts the whole process in its SLP vectorizer (an assertion) at
        # 7 of T = 17-32 (17, 19, 21, 22, 25, 27, 31; Triton 3.6, sm_90), which in an engine build is TensorRT's.
        frames = 0
    q_last = _ragged_rows(t, tile) if frames else 0  # the ragged last query block's rows (needs T compiled in)
    return KernelLaunch(
        grid=attention_grid(n, t, h, w, heads, d=d, tile=tile),
        num_warps=tile.num_warps,
        constexprs={
            "D": d,
            "T_BLOCK": t_block,
            "Q_BLOCK": tile.q_block,
            "P_BLOCK": tile.p_block,
            "SCALE": 1.0 / math.sqrt(d),
            "UNROLL": tile.unroll or _ATTENTION_UNROLL,
            "MMA": tile.mma,
            "D_BLOCK": d_block,
            "STAGES": tile.stages,
            "WALK": tile.walk,
            "OFF32": sizes_known and tile.int32 and not tile.mma and t * 3 * c * h * w < 2**31,
            "ALIGN_CHECK": not sizes_known,  # per-thread form: the plugin's PTX checks alignment at run time
            "FRAMES": frames,
            **({"Q_LAST": q_last} if q_last else {}),  # only then: the other launches' PTX keeps its key
        },
        max_registers=tile.max_registers,
    )
