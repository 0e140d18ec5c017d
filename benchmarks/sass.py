"""Static SASS of the attention kernel's tiles, compiled for a Hopper GPU on any machine (no GPU needed).

    python -m vggx.benchmarks.sass [--json PATH] [--t 8 12 16] [--cc 90] [--plugin]

Triton compiles the kernel for ``sm_<cc>`` without a GPU; its bundled ``ptxas`` assembles the PTX (registers,
spills) and ``nvdisasm`` lists the SASS. For each tile (the shipped one of each form, and each TensorRT tactic)
this reports registers per thread, shared memory per program and **instructions per pixel and head**: what one
thread executes (its straight-line code plus each head-dim loop's body once per trip), times the programs that
share a pixel (query blocks), over the pixels a thread owns; FFMA likewise. On an H200 the FP16 per-thread form's
time grew with these counts far more than with its bytes (run 10, T = 8 -> 12: 2.6x the time, 1.5x the bytes, 2.8x
the instructions), so they rank its variants between GPU runs; they are estimates (a pipelined loop's prologue and
epilogue counted once), not timings. The JIT's specialisation is reproduced from the benchmark shape's
arguments (pointers 16-byte aligned, integers divisible by 16 marked so, integers equal to 1 folded).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

__all__ = ["SassStats", "assemble", "attention_stats", "compile_sass", "loop_bodies", "opcode_counts"]

_OPCODE = re.compile(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")
_LABEL = re.compile(r"\s*\.L_x_(\d+):")
_BACK_BRANCH = re.compile(r"BRA `\(\.L_x_(\d+)\)")


def _tool(name: str) -> str:
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"Triton's bundled {name} is not present at {path}")
    return path


def assemble(ptx: str, cc: int = 90, disassemble: bool = False) -> tuple[dict, list[str]]:
    """Assemble ``ptx`` (a compiled kernel's, or the TensorRT plugin's from
    :func:`~vggx.plugins.tensorrt.compile_aot`) for ``sm_<cc>a`` with Triton's bundled ptxas: its ``registers``
    and ``spill_bytes``, and with ``disassemble`` the SASS lines (nvdisasm; else an empty list)."""
    arch = f"sm_{cc}a" if cc >= 90 else f"sm_{cc}"
    with tempfile.TemporaryDirectory() as tmp:
        path, cubin = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
        with open(path, "w") as f:
            f.write(ptx)
        done = subprocess.run([_tool("ptxas"), "-v", f"-arch={arch}", path, "-o", cubin], capture_output=True,
                              text=True, check=True)
        sass = subprocess.run([_tool("nvdisasm"), "-c", cubin], capture_output=True, text=True,
                              check=True).stdout.splitlines() if disassemble else []
    report = {
        "registers": int(re.findall(r"Used (\d+) registers", done.stderr)[0]),
        "spill_bytes": sum(int(v) for v in re.findall(r"(\d+) bytes spill stores", done.stderr)),
    }
    return report, sass


def compile_sass(kernel: Any, signature: dict[str, str], args: dict[str, Any], constexprs: dict[str, Any],
                 num_warps: int, max_registers: int | None = None, cc: int = 90) -> tuple[dict, list[str]]:
    """Compile ``kernel`` (a :class:`~vggx.plugins._triton.TritonKernel`) as the JIT would for ``args`` (pointer
    arguments: any value, taken 16-byte aligned; integers: their values) and return ptxas's report
    (``registers``, ``spill_bytes``, ``shared``) and the SASS lines."""
    import triton
    from triton.backends.compiler import GPUTarget

    signature, values, attrs = dict(signature), dict(constexprs), {}
    for index, name in enumerate(list(signature)):
        value = args.get(name)
        if signature[name].startswith("*") or (isinstance(value, int) and value % 16 == 0):
            attrs[(index,)] = [["tt.divisibility", 16]]
        elif value == 1:
            values[name] = 1
    options: dict[str, Any] = {"num_warps": num_warps}
    if max_registers is not None:
        options["maxnreg"] = max_registers
    source = kernel.ast_source(signature, values, attrs)
    compiled = triton.compile(source, target=GPUTarget("cuda", cc, 32), options=options)
    report, sass = assemble(compiled.asm["ptx"], cc, disassemble=True)
    return {**report, "shared": compiled.metadata.shared}, sass


def opcode_counts(lines: list[str]) -> collections.Counter:
    """Instructions by opcode (``FFMA``, ``LDS``, ...; predicated ones too) in SASS ``lines``."""
    return collections.Counter(m.group(1) for line in lines if (m := _OPCODE.match(line)))


def loop_bodies(sass: list[str]) -> list[list[str]]:
    """The SASS lines of each loop: from a label to a branch back to it, in order of the branches."""
    labels = {m.group(1): i for i, line in enumerate(sass) if (m := _LABEL.match(line))}
    loops = []
    for i, line in enumerate(sass):
        m = _BACK_BRANCH.search(line)
        if m and labels.get(m.group(1), i) < i:
            loops.append(sass[labels[m.group(1)]:i + 1])
    return loops


@dataclass(frozen=True)
class SassStats:
    """One attention tile's static SASS (see the module docstring)."""

    t: int
    dtype: str
    tile: str
    registers: int
    spill_bytes: int
    shared: int
    instructions: int  # per pixel and head (estimate)
    ffma: int  # per pixel and head
    plugin_registers: int | None = None  # the TensorRT plugin's PTX of the tile (dynamic H, W; ALIGN_CHECK)
    plugin_spill_bytes: int | None = None
    code_bytes: int = 0  # the kernel's SASS (16 bytes an instruction on sm_90), every copy of its body


def _program(t: int, half: bool, tile: Any, c: int, heads: int, hw: tuple[int, int], cc: int
             ) -> tuple[dict, int, float, float]:
    """Compile ``tile`` as the JIT would; ptxas's report, the SASS's static instructions, and the instructions and
    FFMAs one thread executes per pixel in one program (straight-line code plus each loop's body once per trip)."""
    from vggx.plugins.launch import attention_config
    from vggx.plugins.temporal_attention import TEMPORAL_ATTENTION_KERNEL

    h, w = hw
    dtype = "fp16" if half else "fp32"
    cfg = attention_config(1, t, c, h, w, heads, tile=tile, half=half)
    signature = {"qkv_ptr": f"*{dtype}", "T": "i32", "C": "i32", "HW": "i32", "out_ptr": f"*{dtype}"}
    report, sass = compile_sass(TEMPORAL_ATTENTION_KERNEL, signature, {"T": t, "C": c, "HW": h * w},
                                cfg.constexprs, cfg.num_warps, cfg.max_registers, cc)
    total = opcode_counts(sass)
    static = executed = sum(total.values())
    ffma = total["FFMA"]
    trips = tile.walk if tile.mma else cfg.constexprs["D"] // max(1, cfg.constexprs["UNROLL"])
    for body in loop_bodies(sass):
        ops = opcode_counts(body)
        if sum(ops.values()) > 2:  # not the trailing self-branch
            executed += sum(ops.values()) * (trips - 1)
            ffma += ops["FFMA"] * (trips - 1)
    pixels_per_thread = tile.p_block * tile.walk / (32 * tile.num_warps)
    return report, static, executed / pixels_per_thread, ffma / pixels_per_thread


def attention_stats(t: int, half: bool, tile: Any, name: str = "", c: int = 64, heads: int = 4,
                    hw: tuple[int, int] = (360, 640), cc: int = 90, plugin: bool = False) -> SassStats:
    """Compile the attention kernel's ``tile`` for ``qkv`` ``(1, t, 3c, h, w)`` as the JIT would and count;
    ``plugin``: also the registers of the TensorRT plugin's PTX of the tile (both of its copies).

    A ragged tile (``AttentionTile.ragged`` where T leaves a short last query block) carries a second copy of the
    body for the last block's programs, and each program runs one copy: its count is the full tile's per program
    for the other blocks plus that of a tile whose blocks hold the last block's rows (its registers, shared
    memory and code are the ragged kernel's own)."""
    import dataclasses

    from vggx.plugins.launch import _ragged_rows

    dtype = "fp16" if half else "fp32"
    report, static, executed, ffma = _program(t, half, tile, c, heads, hw, cc)
    blocks = 1 if tile.mma else -(-t // tile.q_block)  # programs (query blocks) sharing a pixel
    rows = _ragged_rows(t, tile)
    if rows:  # the full blocks' programs and the last one's, each counted from a kernel of its own body
        _, _, executed, ffma = _program(t, half, dataclasses.replace(tile, ragged=False), c, heads, hw, cc)
        _, _, last, last_ffma = _program(t, half, dataclasses.replace(tile, ragged=False, q_block=rows), c, heads,
                                         hw, cc)
        executed, ffma = executed * (blocks - 1) + last, ffma * (blocks - 1) + last_ffma
    else:
        executed, ffma = executed * blocks, ffma * blocks
    plugin_report: dict = {}
    if plugin:
        from vggx.plugins.tensorrt import compile_aot

        h, w = hw
        aot = compile_aot("temporal_attention", (1, t, 3 * c, h, w), dtype, heads=heads, cc=cc, tile=tile)
        plugin_report = assemble(aot.ptx, cc)[0]
    return SassStats(t, dtype, name, report["registers"], report["spill_bytes"], report["shared"],
                     round(executed), round(ffma), plugin_report.get("registers"), plugin_report.get("spill_bytes"),
                     16 * static)


def attention_tiles(t: int, half: bool, d: int = 16) -> dict[str, Any]:
    """The tiles reported: each form as shipped, and each TensorRT tactic's (duplicates named once)."""
    from vggx.plugins.launch import ATTENTION_TACTICS, attention_tactic_tile, attention_tile

    tiles = {"shipped": attention_tile(t, d, half=half), "fma": attention_tile(t, d, half=half, mma=False),
             "mma": attention_tile(t, d, half=half, mma=True)}
    tiles.update({f"tactic {k}": attention_tactic_tile(k, t, d, half) for k in ATTENTION_TACTICS})
    named: dict[Any, str] = {}
    for name, tile in tiles.items():
        named.setdefault(tile, name)
    return {name: tile for tile, name in named.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vggx.benchmarks.sass", description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    parser.add_argument("--t", type=int, nargs="+", default=[8, 12, 16], help="frames (default: 8 12 16)")
    parser.add_argument("--cc", type=int, default=90, help="compute capability to compile for (default: 90)")
    parser.add_argument("--plugin", action="store_true",
                        help="also the registers (and spills) of the TensorRT plugin's PTX of each tile")
    args = parser.parse_args(argv)
    from vggx.plugins._triton import compiler_usable

    if not compiler_usable():
        print("vggx sass: Triton was imported with TRITON_INTERPRET=1; unset it (the kernels must compile for CUDA)",
              file=sys.stderr)
        return 2
    rows = []
    print(f"{'T':>3} {'dtype':<6}{'tile':<12}{'regs':>5}{'spill':>6}{'smem':>7}{'code KB':>8}{'instr/px/head':>15}"
          f"{'FFMA':>7}"
          + (f"{'plugin regs/spill':>19}" if args.plugin else "") + "  tile fields")
    for half in (True, False):
        for t in args.t:
            for name, tile in attention_tiles(t, half).items():
                row = attention_stats(t, half, tile, name, cc=args.cc, plugin=args.plugin)
                fields = {k: v for k, v in dataclasses.asdict(tile).items() if v not in (None, False)}
                rows.append({**dataclasses.asdict(row), "fields": fields})
                plugin = f"{row.plugin_registers:>14}/{row.plugin_spill_bytes:<4}" if args.plugin else ""
                print(f"{t:>3} {row.dtype:<6}{name:<12}{row.registers:>5}{row.spill_bytes:>6}{row.shared:>7}"
                      f"{row.code_bytes / 1024:>8.1f}{row.instructions:>15,}{row.ffma:>7,}{plugin}  {fields}",
                      flush=True)
    if args.json:
        import triton

        with open(args.json, "w") as f:
            json.dump({"command": "python -m vggx.benchmarks.sass " + " ".join(argv or sys.argv[1:]),
                       "machine": platform.platform(), "triton": triton.__version__, "cc": args.cc, "rows": rows},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
