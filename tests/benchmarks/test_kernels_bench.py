"""The kernel benchmark's code paths, run on tiny shapes in Triton's interpreter (CPU): a GPU run is too scarce
to find a broken row there. Timings are replaced (they mean nothing here); the kernels' results are checked
against the references exactly as on the GPU."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from vggx.benchmarks.kernels import _time_ms as _REAL_TIME_MS  # before the fixture replaces it


@pytest.fixture
def cpu_bench(monkeypatch):
    from vggx.benchmarks import kernels
    from vggx.plugins.flow_warp import flow_warp_reference
    from vggx.plugins.temporal_attention import temporal_attention_reference

    calls = []

    def fake_time_ms(fn, iters, **kwargs):
        fn()  # the launch itself runs (interpreter), so a broken launch fails here
        calls.append(fn)
        return 1.0

    monkeypatch.setattr(kernels, "DEVICE", "cpu")
    monkeypatch.setattr(kernels, "_time_ms", fake_time_ms)
    # the compositions in FP16 need CUDA (grid_sample has no CPU half kernel): the references stand in
    monkeypatch.setattr(kernels, "_flow_warp_torch", lambda x, f: flow_warp_reference(x.float(), f.float()))
    monkeypatch.setattr(kernels, "_attention_torch", lambda qkv, h: temporal_attention_reference(qkv.float(), h))
    # the AOT rows compile for sm_90 here; without CuPy they are not launched (skipped as on a GPU without it)
    monkeypatch.setattr("vggx.plugins.tensorrt.device_cc", lambda: 90)
    monkeypatch.setattr(kernels, "FLOW_WARP_CASES", [
        ((1, 16, 8, 16), dtype, layout, kind)
        for layout, kind in (("nchw", "noise"), ("channels_last", "smooth")) for dtype in (torch.float16, torch.float32)
    ])
    monkeypatch.setattr(kernels, "ATTENTION_CASES", [((1, t, 16, 4, 8), 2, dtype) for t in (8, 10)
                                                     for dtype in (torch.float16, torch.float32)])
    monkeypatch.setattr(kernels, "SWEEP_FLOW_WARP_SHAPE", (1, 16, 8, 16))
    monkeypatch.setattr(kernels, "SWEEP_ATTENTION_SIZE", (4, 8))
    # the interpreter runs a launch's programs one by one, as many as heads x query blocks (pixels: one block here):
    # two heads, not the GPU's four, still run a second head's offsets at half the time (about 40 s of the sweep's 80)
    monkeypatch.setattr(kernels, "SWEEP_ATTENTION_HEADS", 2)
    return kernels, calls


def test_every_row_of_the_kernel_benchmark_runs_and_matches_its_reference(cpu_bench, capsys):
    kernels, _ = cpu_bench
    _, results = kernels.run_kernel_bench(iters=1, copy_gbps=1000.0, sweep=True)
    progress = capsys.readouterr().err.splitlines()  # each row as measured (a run cut short keeps them)
    assert progress[0] == "kernels on cpu: copy bandwidth 1000.0 GB/s"
    assert len(progress) == len(results) + 1
    assert progress[1].startswith("flow_warp[nchw,noise] 1x16x8x16 float16: kernel")
    ops = {r.op for r in results}
    for expected in ("flow_warp[nchw,noise]", "flow_warp[nchw,noise,unspecialized]", "flow_warp[nchw,noise,cu4]",
                     "flow_warp[nchw,noise,cs3]", "flow_warp[channels_last,smooth]",
                     "flow_warp[channels_last,smooth,p32,w4]", "flow_warp[channels_last,smooth,fp32-geometry]",
                     "flow_warp[channels_last,smooth,fp16-geometry]",
                     "flow_warp[nchw,noise,eager]", "flow_warp[channels_last,smooth,eager]",
                     "temporal_attention[h=2]", "temporal_attention[h=2,eager]", "temporal_attention[h=2,mma]",
                     "temporal_attention[h=2,fma,s1,i64]",
                     "temporal_attention[h=2,fma,s3]", "temporal_attention[h=2,fma,s4]",
                     "temporal_attention[h=2,fma,i64]", "temporal_attention[h=2,fma,u2]",
                     "temporal_attention[h=2,fma,u4,s2]",
                     "temporal_attention[h=2,mma,loop4,s3]",
                     "temporal_attention[h=2,fma,runtime-t]", "temporal_attention[h=2,fma,full-last]",
                     "temporal_attention[h=2,fma,ragged]", "temporal_attention[h=2,fma,q-all]",
                     "temporal_attention[h=2,mma,half-warps]", "temporal_attention[h=2,mma,p64,w8]"):
        assert expected in ops, expected
    for r in results:
        assert r.max_err <= (2e-3 if r.dtype == "float16" else 1e-5), (r.op, r.dtype, r.max_err)


def test_every_sweep_geometry_runs(cpu_bench):
    kernels, calls = cpu_bench
    rows = kernels.run_sweep(copy_gbps=1000.0, iters=1)
    flow_rows = 2 * sum(map(len, (kernels.SWEEP_FLOW_WARP, kernels.SWEEP_FLOW_WARP_NHWC, kernels.SWEEP_FLOW_WARP_WALK)))
    attention_rows = 2 * 3 * len(kernels.SWEEP_ATTENTION)  # both dtypes, T = 8, 12, 16
    assert len(rows) == len(calls) == flow_rows + attention_rows


def test_gpu_model_compile_extra_parses_inductor_options():
    import argparse

    from vggx.benchmarks.gpu_model import _inductor_options

    assert _inductor_options("max_autotune=1, coordinate_descent_tuning=true,x=0.5,mode=abc") == {
        "max_autotune": 1, "coordinate_descent_tuning": True, "x": 0.5, "mode": "abc"}
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        _inductor_options("max_autotune")


def test_gpu_summary_names_variants_faster_than_the_shipped_kernel():
    from vggx.benchmarks.gpu_summary import fastest_variants

    def row(op, ms, dtype="float16", shape=(8, 64, 180, 320)):
        return {"op": op, "shape": list(shape), "dtype": dtype, "kernel_ms": ms, "kernel_pct_of_copy": 100 / ms}

    results = [
        row("flow_warp[nchw,noise]", 0.20), row("flow_warp[nchw,noise,unspecialized]", 0.15),
        row("flow_warp[nchw,noise,aot]", 0.10),  # the TensorRT PTX: not a launch option of the torch path
        row("flow_warp[nchw,noise,aot,r128]", 0.09),
        row("flow_warp[nchw,noise]", 0.30, "float32"), row("flow_warp[nchw,noise,unspecialized]", 0.35, "float32"),
        row("temporal_attention[h=4]", 0.50), row("temporal_attention[h=4,fma,s2]", 0.45),
        row("temporal_attention[h=4,fma,s3,i32]", 0.40),
        row("temporal_attention[h=4,eager]", 0.38),  # the shipped launch timed from Python: not an option
    ]
    lines = fastest_variants(results)
    assert len(lines) == 2
    assert "flow_warp[nchw,noise,unspecialized] 8x64x180x320 float16 0.150 vs 0.200 ms" in lines[0]
    assert "temporal_attention[h=4,fma,s3,i32]" in lines[1] and "0.400 vs 0.500" in lines[1]


def test_gpu_summary_names_cases_whose_python_launches_set_the_pace():
    from vggx.benchmarks.gpu_summary import host_bound

    def row(op, ms, dtype="float16"):
        return {"op": op, "shape": [8, 64, 180, 320], "dtype": dtype, "kernel_ms": ms}

    results = [row("flow_warp[channels_last,smooth]", 0.045), row("flow_warp[channels_last,smooth,eager]", 0.072),
               row("flow_warp[nchw,noise]", 0.18), row("flow_warp[nchw,noise,eager]", 0.185),
               row("flow_warp[nchw,noise,eager]", 0.4, "float32")]  # no graph-timed float32 row to compare with
    lines = host_bound(results)
    assert lines == ["  host-bound from Python: flow_warp[channels_last,smooth] 8x64x180x320 float16 0.072 ms per "
                     "eager launch vs 0.045 ms replayed"]


def test_gpu_summary_reads_a_cut_short_kernel_benchmark_from_its_log(cpu_bench, capsys, tmp_path, monkeypatch):
    """gpu_check.sh's time limit may stop the kernel benchmark before it writes its JSON: the summary then takes
    the rows from its log (stderr, one line per row as measured), the sweep's too."""
    from vggx.benchmarks.gpu_summary import kernels_from_log

    kernels, _ = cpu_bench
    for name in ("SWEEP_FLOW_WARP", "SWEEP_FLOW_WARP_NHWC", "SWEEP_FLOW_WARP_WALK", "SWEEP_ATTENTION"):
        monkeypatch.setattr(kernels, name, getattr(kernels, name)[:1])  # one geometry each: the lines' forms
    _, results = kernels.run_kernel_bench(iters=1, copy_gbps=1000.0)
    sweep = kernels.run_sweep(copy_gbps=1000.0, iters=1)
    log = tmp_path / "kernels.log"
    log.write_text(capsys.readouterr().err)
    parsed = kernels_from_log(log)
    assert parsed["partial"] and parsed["copy_gbps"] == 1000.0 and parsed["gpu"] == "cpu"
    assert [(r["op"], r["shape"], r["dtype"]) for r in parsed["results"]] == [
        (r.op, list(r.shape), r.dtype) for r in results]
    assert [r["kernel_pct_of_copy"] for r in parsed["results"]] == pytest.approx(
        [r.kernel_pct_of_copy for r in results], abs=0.05)
    assert [(r["op"], r["shape"], r["dtype"]) for r in parsed["sweep"]] == [
        (r["op"], list(r["shape"]), r["dtype"]) for r in sweep]
    assert {k: v for k, v in parsed["sweep"][0].items() if k not in ("ms", "pct_of_copy", "shape")} == {
        k: v for k, v in sweep[0].items() if k not in ("ms", "pct_of_copy", "shape")}
    assert kernels_from_log(tmp_path / "missing.log") is None


def test_warm_workers_share_the_rows_between_them(cpu_bench, monkeypatch, capsys):
    """``--warm N``: each worker launches every N-th row's kernel once (no timing, no reference, no output; the
    plugin PTX's rows compile theirs), so the workers together launch each row exactly once and none twice."""
    import importlib

    flow_warp_module = importlib.import_module("vggx.plugins.flow_warp")  # the package's attribute is the op
    attention_module = importlib.import_module("vggx.plugins.temporal_attention")

    kernels, _ = cpu_bench
    monkeypatch.setattr(kernels, "_time_ms", _REAL_TIME_MS)  # its --warm branch times nothing: it runs on CPU
    launched = []
    for module, name in ((flow_warp_module, "launch_flow_warp"), (attention_module, "launch_temporal_attention")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, real=real, **k: launched.append(1) or real(*a, **k))
    monkeypatch.setattr("vggx.plugins.tensorrt.compile_aot", lambda *a, **k: launched.append(1))  # a plugin row
    counts = []
    for shard in (0, 1):
        before = len(launched)
        kernels.warm_shard(shard, 2)
        counts.append(len(launched) - before)
    rows = next(kernels._WARM_ROWS)  # the rows the last worker counted (both count the same)
    assert kernels._WARM is None and capsys.readouterr().err == ""
    compositions = len(kernels.FLOW_WARP_CASES) + len(kernels.ATTENTION_CASES)  # timed rows that launch no kernel
    assert sum(counts) == rows - compositions and min(counts) > 0, (counts, rows)


def test_warm_up_reports_a_worker_that_fails(capsys):
    """The workers are real processes (``--shard I/N``); one that fails leaves its kernels to the timed run and is
    named on stderr. Here none has a GPU, so each exits with the benchmark's own message."""
    from vggx.benchmarks import kernels

    kernels.warm_up(2)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("kernels compiled in 2 processes in ")
    assert "worker 0 failed: vggx kernel benchmark: needs a CUDA GPU" in line and "worker 1 failed" in line


def test_frames_dtype_and_shipped_only_choose_the_rows(cpu_bench, capsys):
    """``--frames 9,13 --dtype float16 --shipped-only``: attention only, at those T, in FP16, the shipped kernel's
    rows only (the goal's every-T check) and, where T leaves a short last query block, its other choice; with
    ``--sweep`` the sweep's attention geometries at those T, no flow_warp."""
    import argparse

    from vggx.benchmarks.kernels import _frames

    kernels, _ = cpu_bench
    _, results = kernels.run_kernel_bench(iters=1, copy_gbps=1000.0, frames=(9, 13), shipped_only=True,
                                          dtypes=(torch.float16,))
    assert {(r.shape[1], r.dtype) for r in results} == {(9, "float16"), (13, "float16")}
    ops = {r.op for r in results}  # and the other choice of last query block (T = 9: full, the shipped ragged)
    jit = {"temporal_attention[h=2]", "temporal_attention[h=2,eager]", "temporal_attention[h=2,fma,full-last]"}
    assert jit <= ops <= jit | {"temporal_attention[h=2,aot]", "temporal_attention[h=2,aot,r128]",
                                "temporal_attention[h=2,aot,full-last]"}
    assert [r.shape[1] for r in results if r.op.endswith("full-last]")] == [9]  # T = 13 fills its blocks
    assert all(r.max_err <= 2e-3 for r in results)
    _, results = kernels.run_kernel_bench(iters=1, copy_gbps=1000.0, frames=(9,), dtypes=(torch.float16,))
    q_all = [r for r in results if r.op == "temporal_attention[h=2,fma,q-all]"]  # 9-11 frames: one program
    assert len(q_all) == 1 and q_all[0].max_err <= 2e-3
    sweep = kernels.run_sweep(copy_gbps=1000.0, iters=1, frames=(9,), dtypes=(torch.float16,))
    assert len(sweep) == len(kernels.SWEEP_ATTENTION)
    assert {(r["op"], r["shape"][1], r["dtype"]) for r in sweep} == {("temporal_attention[h=2]", 9, "float16")}
    assert _frames("8-10,12") == (8, 9, 10, 12) and _frames("16") == (16,)
    for bad in ("8-x", "0-3", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="frame counts"):
            _frames(bad)


def test_gpu_summary_lists_attention_at_every_t():
    """``kernels_frames`` (``--frames 8-16 --shipped-only``): one line per dtype and form, the T below the goal."""
    from vggx.benchmarks.gpu_summary import every_t

    def row(op, t, pct, dtype="float16"):
        return {"op": op, "shape": [1, t, 192, 360, 640], "dtype": dtype, "kernel_pct_of_copy": pct}

    results = [row("temporal_attention[h=4]", 8, 99.1), row("temporal_attention[h=4,eager]", 8, 50.0),
               row("temporal_attention[h=4,aot]", 8, 98.0), row("temporal_attention[h=4,aot,r128]", 8, 10.0),
               row("temporal_attention[h=4]", 9, 68.3), row("temporal_attention[h=4,aot]", 9, 71.0),
               row("temporal_attention[h=4]", 9, 81.6, "float32"), row("flow_warp[nchw,noise]", 8, 1.0)]
    assert every_t(results) == [
        "  every T, float16 JIT: 8:99.1 9:68.3  below 70% at T = 9",
        "  every T, float16 plugin PTX: 8:98.0 9:71.0  all >= 70%",
        "  every T, float32 JIT: 9:81.6  all >= 70%",
    ]
    # other tactics' PTX timed (--tactics): the fastest at each T, as TensorRT keeps it
    results += [row("temporal_attention[h=4,aot,t8]", 9, 74.5), row("temporal_attention[h=4,aot,full-last]", 9, 60.0),
                row("temporal_attention[h=4,aot]", 13, 69.3, "float32"),
                row("temporal_attention[h=4,aot,t6]", 13, 71.2, "float32")]
    assert every_t(results)[-4:] == [
        "  every T, float16 plugin PTX, fastest tactic timed: 8:98.0 9:74.5  all >= 70%",
        "  every T, float32 JIT: 9:81.6  all >= 70%",
        "  every T, float32 plugin PTX: 13:69.3  below 70% at T = 13",
        "  every T, float32 plugin PTX, fastest tactic timed: 13:71.2  all >= 70%",
    ]


def test_tactics_time_every_distinct_tensorrt_tactic(cpu_bench, monkeypatch):
    """``--tactics``: beside the shipped PTX's rows, every TensorRT tactic's attention PTX whose tile no other row
    has (``aot,tN``), each compiled for its own tile (CuPy stood in for: the rows are recorded, not launched)."""
    from vggx.plugins.launch import ATTENTION_TACTICS, attention_tactic_tile

    kernels, _ = cpu_bench
    compiles = {}

    def fake_aot_ms(compile_kernel, inputs, out, expected, iters):
        compiles[len(compiles)] = compile_kernel
        return 1.0, 0.0

    monkeypatch.setattr(kernels, "_aot_ms", fake_aot_ms)
    _, results = kernels.run_kernel_bench(iters=1, copy_gbps=1000.0, frames=(9,), shipped_only=True,
                                          dtypes=(torch.float16,), tactics=True)
    aot = [r.op.removeprefix("temporal_attention[h=2,").removesuffix("]") for r in results if ",aot" in r.op]
    distinct = {attention_tactic_tile(k, 9, 8, True) for k in ATTENTION_TACTICS}
    assert aot[:3] == ["aot", "aot,r128", "aot,full-last"] and len(aot) == len(distinct) == len(compiles)
    assert all(name.startswith("aot,t") for name in aot[3:])
    first, last = compiles[0](), compiles[len(compiles) - 1]()  # each row's own tile, not the loop's last
    assert first.ptx != last.ptx
