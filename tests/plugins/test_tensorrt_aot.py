"""TensorRT plugin layer as far as this machine goes: AOT PTX from Triton, launch params, no-TRT error."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess

import pytest

from vggx.errors import PluginError, TensorRTNotInstalledError
from vggx.plugins.launch import cdiv
from vggx.plugins.tensorrt import compile_aot, register_plugins, strip_unused_params

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs OpenAI Triton")


def _entry_params(ptx: str, name: str) -> list[str]:
    header = re.search(rf"\.visible \.entry {name}\((.*?)\)", ptx, re.DOTALL)
    assert header, f".entry {name} not in PTX"
    return [p.strip() for p in header.group(1).split(",")]


@needs_triton
@pytest.mark.usefixtures("cuda_compiler")
def _ptxas(ptx: str) -> dict:
    """ptxas's ``registers`` and ``spill_bytes`` for ``ptx`` at sm_90a; skips where Triton's bundled ptxas is
    absent."""
    return _assemble(ptx)[0]


def _assemble(ptx: str, disassemble: bool = False) -> tuple[dict, list[str]]:
    """ptxas's report on ``ptx`` at sm_90a and, with ``disassemble``, its SASS (benchmarks.sass.assemble); skips
    where Triton's bundled ptxas / nvdisasm are absent."""
    from vggx.benchmarks.sass import assemble

    try:
        return assemble(ptx, disassemble=disassemble)
    except FileNotFoundError as err:
        pytest.skip(str(err))


class TestCompileAot:
    @pytest.mark.parametrize("dtype", ["fp32", "fp16"])
    @pytest.mark.parametrize("shape", [(2, 16, 37, 53), (8, 64, 180, 320)])
    def test_flow_warp_ptx_and_launch(self, shape, dtype):
        b, c, h, w = shape
        k = compile_aot("flow_warp", shape, dtype, cc=90)
        assert re.search(r"^\.target sm_90a?$", k.ptx, re.MULTILINE)
        assert k.name == "flow_warp_kernel"
        params = _entry_params(k.ptx, k.name)
        # x, flow, C, H, W, out: exactly what TensorRT passes (inputs, scalars, outputs)
        assert len(params) == 6 and [p.split()[1] for p in params] == [
            ".u64",
            ".u64",
            ".u32",
            ".u32",
            ".u32",
            ".u64",
        ]
        assert k.grid == (cdiv(h * w, 512), b, cdiv(c, 16))
        assert k.block == (128, 1, 1)
        assert k.shared_mem == 0
        assert k.scalar_args == (c, h, w)
        load = "ld.global.b16" if dtype == "fp16" else "ld.global.b32"
        assert load in k.ptx

    @pytest.mark.parametrize(("layout", "dtype", "c", "xs"), [("hwc8", "fp16", 20, 24), ("hwc8", "fp16", 64, 64),
                                                              ("hwc", "fp32", 20, 20)])
    def test_flow_warp_channels_last_formats(self, layout, dtype, c, xs):
        """TensorRT's HWC8/HWC features run the channels-last kernel: 10 parameters (x, flow, 7 int32, out),
        the padded pixel stride XS and a LINEAR flow's strides as scalars, channel groups over XS."""
        b, h, w = 2, 37, 53
        k = compile_aot("flow_warp", (b, c, h, w), dtype, cc=90, layout=layout)
        assert k.name == "flow_warp_nhwc_kernel"
        params = _entry_params(k.ptx, k.name)
        assert [p.split()[1] for p in params] == [".u64", ".u64", *[".u32"] * 7, ".u64"]
        assert k.scalar_args == (c, h, w, xs, 2 * h * w, h * w, 1)
        pixels, threads = (32, 64) if dtype == "fp16" else (64, 128)  # the dtype's shipped geometry
        assert k.grid == (cdiv(h * w, pixels), b, 1) and k.block == (threads, 1, 1)

    def test_flow_warp_unknown_layout(self):
        with pytest.raises(PluginError, match="layout must be linear, hwc8 or hwc"):
            compile_aot("flow_warp", (1, 4, 8, 8), "fp16", layout="chw32")

    def test_flow_warp_mixed_precision(self):
        k = compile_aot("flow_warp", (1, 4, 8, 8), "fp16", flow_dtype="fp32")
        assert "ld.global.b16" in k.ptx and "ld.global.b32" in k.ptx

    @pytest.mark.parametrize(
        ("shape", "heads", "dtype"), [((1, 8, 192, 36, 64), 4, "fp16"), ((2, 5, 24, 7, 9), 2, "fp32")]
    )
    def test_attention_ptx_and_launch(self, shape, heads, dtype):
        n, t, c3, h, w = shape
        k = compile_aot("temporal_attention", shape, dtype, heads=heads, cc=90)
        assert ".target sm_90" in k.ptx
        assert k.name == "temporal_attention_kernel"
        assert len(_entry_params(k.ptx, k.name)) == 5  # qkv, T, C, HW, out
        assert k.grid == (cdiv(h * w, 128), heads, n)  # T <= 8: all frames, 128 pixels per program
        assert k.block == (128, 1, 1)
        assert k.scalar_args == (t, c3 // 3, h * w)
        assert k.shared_mem >= 0

    def test_pipelined_attention_loads_arrive_by_cp_async(self):
        """``stages`` >= 2 turns the per-thread form's loads into cp.async copies, where Triton can vectorise
        them (arguments known divisible by 16, as its JIT specialises them on a GPU); 1 stage keeps plain
        loads. The AOT PTX (dynamic shapes: nothing known divisible) gets the same 16-byte copies in the copy
        of its body that runs where a run-time check finds the tensors aligned (ALIGN_CHECK), and plain
        2-byte loads in the other (cp.async moves 4 bytes at least)."""
        import dataclasses

        import triton
        from triton.backends.compiler import GPUTarget

        from vggx.plugins.launch import attention_config, attention_tile
        from vggx.plugins.temporal_attention import TEMPORAL_ATTENTION_KERNEL

        def ptx(stages: int) -> str:
            tile = dataclasses.replace(attention_tile(8, 16, half=True), stages=stages)
            cfg = attention_config(1, 8, 64, 360, 640, 4, tile=tile, half=True)
            sig = {"qkv_ptr": "*fp16", "T": "i32", "C": "i32", "HW": "i32", "out_ptr": "*fp16"}
            attrs = {(i,): [["tt.divisibility", 16]] for i in (0, 2, 3, 4)}  # what the JIT sees on a GPU
            src = TEMPORAL_ATTENTION_KERNEL.ast_source(sig, cfg.constexprs, attrs)
            options = {"num_warps": cfg.num_warps}
            return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options).asm["ptx"]

        assert "cp.async" not in ptx(1)
        assert "cp.async.cg.shared.global" in ptx(3)
        for stages in (3, 4):  # the plugin's PTX: 16-byte copies where the run-time check finds alignment
            tile = dataclasses.replace(attention_tile(8, 16, half=True), stages=stages)
            aot = compile_aot("temporal_attention", (1, 8, 192, 36, 64), "fp16", heads=4, tile=tile)
            assert "cp.async.cg.shared.global" in aot.ptx and "ld.global.b16" in aot.ptx  # and the plain copy

    @pytest.mark.parametrize(("op", "shape", "dtype", "layout"), [
        ("temporal_attention", (1, 16, 192, 36, 64), "fp16", None),  # the tensor-core form
        ("temporal_attention", (1, 12, 192, 36, 64), "fp32", None),  # the per-thread form
        ("temporal_attention", (1, 8, 192, 36, 64), "fp16", None),
        ("flow_warp", (2, 64, 37, 53), "fp16", "hwc8"),
        ("flow_warp", (2, 64, 37, 53), "fp32", "hwc"),
    ])
    def test_aot_ptx_has_a_vectorised_copy_for_aligned_tensors(self, op, shape, dtype, layout):
        """Dynamic shapes leave the AOT PTX unspecialised; its attention and channels-last flow_warp check
        alignment at run time and carry a copy with 16-byte vector loads (the pipelined per-thread attention:
        16-byte cp.async copies) and stores (run 9, H200: without it the tensor-core attention and flow_warp
        ran at 60-70 % of the JIT kernels' speed) beside the plain one."""
        kwargs = {"heads": 4} if op == "temporal_attention" else {"layout": layout}
        ptx = compile_aot(op, shape, dtype, **kwargs).ptx
        # (cp.async.cg copies 16 bytes, nothing else)
        assert ("ld.global.v4.b32" in ptx or "cp.async.cg.shared.global" in ptx) and "st.global.v4.b32" in ptx
        plain = f"ld.global.b{16 if dtype == 'fp16' else 32}"  # the plain copy (FP32 pipelined: 4-byte cp.async)
        assert plain in ptx or (dtype == "fp32" and "cp.async.ca.shared.global" in ptx)

    @pytest.mark.parametrize(("dtype", "layout", "launches"), [
        ("fp16", "hwc8", [(32, 64), (64, 128), (32, 128)]), ("fp32", "hwc", [(64, 128), (32, 64), (32, 128)])])
    def test_channels_last_tactics(self, dtype, layout, launches):
        """Tactic 1: the dtype's shipped geometry (FP16 2 blocks of 16 pixels on 2 warps, FP32 4 on 4 warps);
        2: the other dtype's; 3: runs 3-9's 32 pixels on 4 warps."""
        for tactic, (pixels, threads) in zip((None, 2, 3), launches, strict=True):
            k = compile_aot("flow_warp", (2, 64, 37, 53), dtype, layout=layout, tactic=tactic)
            assert k.grid == (-(-37 * 53 // pixels), 2, 1) and k.block == (threads, 1, 1)
        with pytest.raises(PluginError, match="unknown tactic 4"):
            compile_aot("flow_warp", (2, 64, 37, 53), dtype, layout=layout, tactic=4)

    def test_other_compute_capability(self):
        k = compile_aot("flow_warp", (1, 1, 4, 4), "fp32", cc=80)
        assert ".target sm_80" in k.ptx

    def test_ptx_assembles_with_ptxas(self, tmp_path):
        import triton

        ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
        if not os.access(ptxas, os.X_OK):
            pytest.skip("Triton's bundled ptxas is not present")
        for k in (
            compile_aot("flow_warp", (2, 16, 37, 53), "fp16"),
            compile_aot("flow_warp", (2, 20, 37, 53), "fp16", layout="hwc8"),
            compile_aot("temporal_attention", (1, 8, 192, 4, 4), "fp16", heads=4),
            compile_aot("temporal_attention", (1, 16, 192, 4, 4), "fp16", heads=4),  # the tensor-core form
        ):
            path = tmp_path / f"{k.name}.ptx"
            path.write_text(k.ptx)
            done = subprocess.run(
                [ptxas, "-arch=sm_90a", str(path), "-o", str(tmp_path / "k.cubin")],
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr

    @pytest.mark.parametrize(("dtype", "layout"), [("fp16", "hwc8"), ("fp32", "hwc")])
    def test_channels_last_plain_copy_does_not_set_the_registers(self, dtype, layout):
        """The channels-last PTX carries an aligned and a plain copy, and a kernel gets the registers of its
        hungriest path: the plain copy gathering all 64 channels of a tap as scalar loads took 134 (FP16) / 145
        (FP32) registers where the aligned copy alone takes 48 / 64 (a third of the warps per SM, for both
        copies). It walks 8 channels at a time instead: every tactic stays under 96, by ptxas."""
        for tactic in (1, 2, 3):
            k = compile_aot("flow_warp", (8, 64, 180, 320), dtype, layout=layout, tactic=tactic)
            report = _ptxas(k.ptx)
            assert report["registers"] < 96 and report["spill_bytes"] == 0, (tactic, report)

    @pytest.mark.parametrize("t", [8, 12, 16])
    def test_unrolled_attention_tactics_keep_the_plain_copy_rolled(self, t):
        """TensorRT's tactics 8 and 9 unroll the per-thread form's head-dim loops (by 2, by 4), but only in the
        plugin PTX's aligned copy: unrolled, its plain copy for misaligned tensors took the kernel to 147-190
        registers in FP16 (by ptxas, 4 queries per program). Rolled, unpipelined and taking its queries 2 at a
        time, the plain copy costs little: the kernel needs at most 12 registers more than the JIT kernel of the tile
        (the aligned copy alone), without spills."""
        import dataclasses

        from vggx.benchmarks.sass import attention_stats
        from vggx.plugins.launch import attention_tactic_tile

        for tactic in (8, 9):
            tile = attention_tactic_tile(tactic, t, 16, True)
            k = compile_aot("temporal_attention", (1, t, 192, 36, 64), "fp16", heads=4, tile=tile)
            rolled = compile_aot("temporal_attention", (1, t, 192, 36, 64), "fp16", heads=4,
                                 tile=dataclasses.replace(tile, unroll=None))
            assert k.ptx.count("fma.rn.f32") > rolled.ptx.count("fma.rn.f32")  # the aligned copy is unrolled
            report = _ptxas(k.ptx)
            jit = attention_stats(t, True, tile, hw=(36, 64)).registers
            assert report["registers"] <= jit + 12 and report["spill_bytes"] == 0, (tactic, report, jit)

    @pytest.mark.parametrize(("dtype", "t", "tactics"), [("fp16", 17, None), ("fp32", 16, (3,))])
    def test_attention_tactics_compile_within_portable_shared_memory(self, dtype, t, tactics):
        """Every TensorRT tactic's PTX compiles, within the 48 KiB of shared memory a launch gets without opting in.
        FP16's per-thread tactics above 16 frames read T at run time: compiled in, Triton's LLVM aborted the whole
        process (an assertion in its SLP vectorizer) at T = 17, 19, 21, 22, 25, 27 and 31. Pipelined tiles that
        need more shared memory compile with fewer stages: FP32's tactic 3 at T = 16 asked 56 KiB at 2 stages, FP16's
        tactic 8 at T = 17 54 KiB at 4."""
        import dataclasses

        from vggx.plugins.launch import ATTENTION_TACTICS, attention_config, attention_tactic_tile
        from vggx.plugins.tensorrt import PORTABLE_SHARED_MEM

        half = dtype == "fp16"
        for tactic in tactics or ATTENTION_TACTICS:
            tile = attention_tactic_tile(tactic, t, 16, half)
            k = compile_aot("temporal_attention", (1, t, 192, 9, 40), dtype, heads=4, tile=tile)
            assert 0 < k.shared_mem <= PORTABLE_SHARED_MEM, (tactic, tile, k.shared_mem)
            frames = attention_config(1, t, 64, 9, 40, 4, tile=tile, half=half, sizes_known=False).constexprs["FRAMES"]
            assert frames == (0 if half and t > 16 and not tile.mma else t), (tactic, tile)
        fewer = dataclasses.replace(attention_tactic_tile(3, 16, 16, False), stages=1)
        assert compile_aot("temporal_attention", (1, 16, 192, 9, 40), "fp32", heads=4, tile=fewer).ptx == \
            compile_aot("temporal_attention", (1, 16, 192, 9, 40), "fp32", heads=4,
                        tile=attention_tactic_tile(3, 16, 16, False)).ptx  # 2 stages did not fit: 1

    def test_ragged_tactic_only_where_the_last_query_block_is_short(self):
        """TensorRT's tactic 10 (a ragged last query block): its own PTX at T = 9 (FP16 blocks of 8: the last holds
        1 frame), the shipped tile's where T fills its blocks (T = 16), so TensorRT does not time a duplicate."""
        from vggx.plugins.launch import attention_tactic_tile

        def ptx(tactic: int, t: int) -> str:
            tile = attention_tactic_tile(tactic, t, 16, True)
            return compile_aot("temporal_attention", (1, t, 192, 9, 40), "fp16", heads=4, tile=tile).ptx

        assert ptx(10, 9) != ptx(1, 9)
        assert attention_tactic_tile(10, 16, 16, True) == attention_tactic_tile(1, 16, 16, True)

    def test_register_cap_reaches_ptxas(self):
        """``max_registers`` (TensorRT's attention tactic 7) compiles with Triton's ``maxnreg``: the PTX carries
        ``.maxnreg`` and ptxas keeps under it (the uncapped plugin PTX of the per-thread form uses more)."""
        import dataclasses

        from vggx.plugins.launch import attention_tile

        tile = attention_tile(16, 16, half=True)  # FP16, T = 16, 8 queries per program: 166 registers uncapped
        plain = compile_aot("temporal_attention", (1, 16, 192, 36, 64), "fp16", heads=4, tile=tile)
        capped = compile_aot("temporal_attention", (1, 16, 192, 36, 64), "fp16", heads=4,
                             tile=dataclasses.replace(tile, max_registers=128))
        assert ".maxnreg 128" in capped.ptx and ".maxnreg" not in plain.ptx
        used = [_ptxas(k.ptx)["registers"] for k in (plain, capped)]
        assert used[1] <= 128 < used[0], used

    def test_t_compiled_in_drops_the_padding_keys_work(self):
        """T = 12 pads its keys to 16: compiled in (the shipped per-thread tile), the padding keys' loads and
        multiply-adds fold away, in the plugin's PTX too: its head-dim loops (SASS, by nvdisasm) hold about 12/16
        of the FFMAs they hold with T read at run time (81 % with the plain copy's queries taken 2 at a time)."""
        import dataclasses

        from vggx.benchmarks.sass import loop_bodies, opcode_counts
        from vggx.plugins.launch import attention_tile

        def loop_ffma(fixed_t: bool) -> int:
            tile = dataclasses.replace(attention_tile(12, 16), fixed_t=fixed_t)
            ptx = compile_aot("temporal_attention", (1, 12, 192, 36, 64), "fp32", heads=4, tile=tile).ptx
            _, sass = _assemble(ptx, disassemble=True)
            return sum(opcode_counts(body)["FFMA"] for body in loop_bodies(sass))

        fixed, runtime = loop_ffma(True), loop_ffma(False)
        assert 0 < fixed <= 0.85 * runtime, (fixed, runtime)

    def test_unsupported_attention_sizes_raise(self):
        from vggx.errors import PluginError

        with pytest.raises(PluginError, match=r"T must be in 1\.\.32"):
            compile_aot("temporal_attention", (1, 40, 12, 2, 2), "fp16", heads=1)
        with pytest.raises(PluginError, match="needs heads"):
            compile_aot("temporal_attention", (1, 4, 12, 2, 2), "fp16")

    def test_unknown_op_and_dtype_raise(self):
        from vggx.errors import PluginError

        with pytest.raises(PluginError, match="unknown vggx op"):
            compile_aot("grid_sample", (1, 1, 1, 1))
        with pytest.raises(PluginError, match="float32 or float16 tensors, got bf16"):
            compile_aot("flow_warp", (1, 1, 2, 2), "bf16")


class TestStripUnusedParams:
    PTX = (
        ".visible .entry k(\n\t.param .u64 k_param_0,\n\t.param .u32 k_param_1,\n\t.param .u64 k_param_2\n)\n"
        "{\n\tld.param.b64 %rd1, [k_param_0];\n\tld.param.b32 %r1, [k_param_1];\n}\n"
    )

    def test_drops_trailing_unused(self):
        out = strip_unused_params(self.PTX, "k", 2)
        assert _entry_params(out, "k") == [".param .u64 k_param_0", ".param .u32 k_param_1"]
        assert out.endswith("ld.param.b32 %r1, [k_param_1];\n}\n")

    def test_refuses_to_drop_a_used_param(self):
        from vggx.errors import PluginError

        with pytest.raises(PluginError, match="uses its parameter k_param_1"):
            strip_unused_params(self.PTX, "k", 1)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_register_plugins_without_tensorrt_says_so():
    with pytest.raises(
        TensorRTNotInstalledError, match=r"TensorRT is not installed \(pip install 'vggx\[gpu\]'"
    ):
        register_plugins()


def test_register_plugins_on_a_tensorrt_without_aot_plugins_says_which(monkeypatch):
    """TensorRT 10.6-10.7 has ``tensorrt.plugin`` but not its AOT API (``KernelLaunchParams``, defined only where
    ``QuickPluginCreationRequest`` exists): one clear error, not an AttributeError from the plugin module."""
    import sys
    import types

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.7.0.23"
    trt.plugin = types.ModuleType("tensorrt.plugin")  # the JIT API only: register, impl, autotune
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trt.plugin)
    with pytest.raises(PluginError, match=r"TensorRT 10.7.0.23 has no ahead-of-time plugins "
                                          r"\(tensorrt.plugin.aot_impl, TensorRT 10.9 or later\)"):
        register_plugins()


@needs_triton
@pytest.mark.usefixtures("cuda_compiler")
@pytest.mark.parametrize(
    ("op", "one"), [("flow_warp", "C"), ("flow_warp", "H"), ("flow_warp", "W"), ("temporal_attention", "HW")]
)
def test_kernels_compile_with_a_size_specialised_to_1(op, one):
    """Triton's JIT may turn an int argument equal to 1 into a constant; the kernels must still compile."""
    import triton
    from triton.backends.compiler import GPUTarget

    from vggx.plugins.flow_warp import FLOW_WARP_KERNEL
    from vggx.plugins.temporal_attention import TEMPORAL_ATTENTION_KERNEL

    if op == "flow_warp":
        kernel = FLOW_WARP_KERNEL
        signature = {
            "x_ptr": "*fp32",
            "flow_ptr": "*fp32",
            "C": "i32",
            "H": "i32",
            "W": "i32",
            "out_ptr": "*fp32",
        }
        constexprs = {"BLOCK": 512, "C_BLOCK": 16}
    else:
        kernel = TEMPORAL_ATTENTION_KERNEL
        signature = {"qkv_ptr": "*fp16", "T": "i32", "C": "i32", "HW": "i32", "out_ptr": "*fp16"}
        constexprs = {"D": 2, "T_BLOCK": 4, "Q_BLOCK": 4, "P_BLOCK": 128, "SCALE": 0.5, "UNROLL": 2}
    constexprs[one] = 1
    src = kernel.ast_source(signature, constexprs)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    assert compiled.asm["ptx"]
