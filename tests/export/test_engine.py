"""export/engine.py: profile math, configs, replacement rules, the TensorRT-absent path, and the build."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar

import onnx
import pytest

from vggx.errors import ConfigError, EngineBuildError, TensorRTNotInstalledError
from vggx.export.engine import (
    EngineConfig,
    ShapeProfile,
    _mark_aot,
    build_engine,
    check_replaceable,
    finish_command,
    sidecar_path,
)
from vggx.export.onnx import Precision
from vggx.shapes import check_profile, profile_shapes

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


class TestProfileMath:
    def test_profile_shapes_are_nthwc_with_fixed_window(self):
        lo, opt, hi = profile_shapes(8, (16, 16), (180, 320), (540, 960), opt_batch=2, max_batch=4)
        assert lo == (1, 8, 16, 16, 3) and opt == (2, 8, 180, 320, 3) and hi == (4, 8, 540, 960, 3)

    @pytest.mark.parametrize(
        ("sizes", "match"),
        [
            (((64, 64), (32, 64), (128, 128)), "heights must satisfy min <= opt <= max, got 64 / 32 / 128"),
            (((16, 16), (16, 400), (32, 320)), "widths must satisfy min <= opt <= max"),
            (((0, 16), (16, 16), (32, 32)), "min size must be a positive HxW"),
        ],
    )
    def test_check_profile_names_the_bad_axis(self, sizes, match):
        with pytest.raises(ConfigError, match=match):
            check_profile(*sizes)

    def test_check_profile_batches(self):
        with pytest.raises(ConfigError, match=r"opt batch must be in 1\.\.2"):
            check_profile((16, 16), (16, 16), (16, 16), opt_batch=3, max_batch=2)
        with pytest.raises(ConfigError, match="max batch must be >= 1"):
            check_profile((16, 16), (16, 16), (16, 16), max_batch=0)


class TestShapeProfile:
    def test_min_above_max_is_rejected_at_construction(self):
        with pytest.raises(ConfigError, match="min <= opt <= max"):
            ShapeProfile(8, (64, 64), (64, 64), (32, 32))

    def test_to_json_lists_the_three_shapes(self):
        p = ShapeProfile(4, (16, 16), (32, 48), (64, 96), max_batch=2)
        assert p.to_json() == {"input": "lr", "min": [1, 4, 16, 16, 3], "opt": [1, 4, 32, 48, 3],
                               "max": [2, 4, 64, 96, 3]}

    def test_within_checks_the_model_range(self):
        kwargs = {"model_min": (16, 16), "model_max": (1088, 1920)}
        with pytest.raises(ConfigError, match="min size 8x8 is below the model's 16x16"):
            ShapeProfile.within(8, (8, 8), (16, 16), (32, 32), **kwargs)
        with pytest.raises(ConfigError, match="max size 2000x2000 is above"):
            ShapeProfile.within(8, (16, 16), (16, 16), (2000, 2000), **kwargs)
        assert ShapeProfile.within(8, (16, 16), (16, 16), (32, 32), **kwargs).max_size == (32, 32)
        # said in the sizes given, not as a profile's min <= opt <= max with an opt size nobody set
        with pytest.raises(ConfigError, match="min size 1100x100 is above the model's largest, 1088x1920"):
            ShapeProfile.within(8, (1100, 100), (1088, 320), (1088, 1920), **kwargs)
        with pytest.raises(ConfigError, match="min size 64x64 is above max size 32x32"):
            ShapeProfile.within(8, (64, 64), (32, 32), (32, 32), **kwargs)


class TestEngineConfig:
    profile = ShapeProfile(8, (16, 16), (32, 32), (64, 64))

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"optimization_level": 6}, "optimisation level must be in 0..5"),
            ({"workspace_mib": 0}, "workspace must be >= 1 MiB"),
            ({"precision": "fp16"}, "precision must be a Precision"),
        ],
    )
    def test_rejects_bad_values(self, kwargs, match):
        with pytest.raises(ConfigError, match=match):
            EngineConfig(self.profile, **kwargs)

    def test_rejects_a_profile_that_is_not_a_shape_profile(self):
        with pytest.raises(ConfigError, match="ShapeProfile"):
            EngineConfig({"min": (1, 8, 16, 16, 3)})  # type: ignore[arg-type]

    def test_finish_command_rebuilds_the_same_engine(self, tmp_path):
        cfg = EngineConfig(ShapeProfile(8, (16, 16), (180, 320), (540, 960), max_batch=4),
                           timing_cache=tmp_path / "cache")
        cmd = finish_command(tmp_path / "model.onnx", tmp_path / "model.plan", cfg)
        assert cmd.startswith("python -m vggx.export.engine ")
        for part in ("--window 8", "--min-size 16x16", "--opt-size 180x320", "--max-size 540x960",
                     "--max-batch 4", "--precision fp16", f"--timing-cache {tmp_path / 'cache'}"):
            assert part in cmd


class TestReplacement:
    built: ClassVar[dict[str, str]] = {"tensorrt_version": "10.13.0", "gpu": "NVIDIA H100", "compute_capability": "9.0"}

    def test_same_gpu_and_tensorrt_may_be_replaced(self):
        check_replaceable(self.built, dict(self.built), force=False)

    @pytest.mark.parametrize(("key", "value"), [("gpu", "NVIDIA L4"), ("compute_capability", "8.9"),
                                                ("tensorrt_version", "11.4.0")])
    def test_other_gpu_or_tensorrt_needs_force(self, key, value):
        current = {**self.built, key: value}
        with pytest.raises(EngineBuildError, match="pass --force to replace it"):
            check_replaceable(self.built, current, force=False)
        check_replaceable(self.built, current, force=True)

    def test_no_existing_engine_is_fine(self):
        check_replaceable(None, self.built, force=False)

    def test_sidecar_sits_beside_the_plan(self, tmp_path):
        assert sidecar_path(tmp_path / "model.plan") == tmp_path / "model.plan.json"


def test_plugin_nodes_are_marked_aot(trt_onnx):
    model = onnx.load(str(trt_onnx))
    assert _mark_aot(model) == ["flow_warp", "temporal_attention"]
    for node in model.graph.node:
        if node.domain == "vggx":
            assert {a.name: a.i for a in node.attribute if a.name == "aot"} == {"aot": 1}


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_build_without_tensorrt_says_how_to_get_it(tmp_path):
    cfg = EngineConfig(ShapeProfile(8, (16, 16), (32, 32), (64, 64)))
    with pytest.raises(TensorRTNotInstalledError, match=r"TensorRT is not installed \(pip install 'vggx\[gpu\]'"):
        build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", cfg)
    assert not (tmp_path / "model.plan").exists()


@pytest.mark.parametrize(("graph", "args", "message"), [
    ("trt_fp16_onnx", ["--precision", "fp32"], "the graph is FP16, and a FP32 engine is asked: export without --fp16 "
                                               "(or pass --precision fp16)"),
    ("trt_onnx", ["--precision", "fp16"], "the graph is FP32, and a FP16 engine is asked: export with --fp16: its "
                                          "graph keeps the flow, softmax and normalisation in FP32"),
    ("trt_fp16_onnx", ["--window", "6"], "the graph's window is 4 frames, not 6: its T is fixed"),
    # a profile outside the graph's size range (its config.pbtxt's): the engine would refuse requests it allows
    ("trt_onnx", ["--max-size", "4000x4000"], "max size 4000x4000 is above the model's largest"),
    ("trt_onnx", ["--min-size", "8x8"], "min size 8x8 is below the model's"),
])
def test_engine_cli_refuses_what_the_graph_cannot_give_before_looking_for_tensorrt(graph, args, message, request,
                                                                                   tmp_path, capsys):
    """An FP16 graph built as "fp32" gave an FP16 engine labelled fp32; an FP32 graph with the FP16 flag loses its
    FP32 islands; a window the graph's fixed T is not fails only in TensorRT's profile."""
    from vggx.export.engine import main

    onnx_path = request.getfixturevalue(graph)
    rc = main([str(onnx_path), str(tmp_path / "model.plan"), "--min-size", "16x16", "--opt-size", "32x32",
               "--max-size", "64x64", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_engine_cli_takes_the_graphs_precision_and_window_by_default(trt_onnx, tmp_path, capsys):
    from vggx.export.engine import main

    rc = main([str(trt_onnx), str(tmp_path / "model.plan"), "--min-size", "16x16", "--opt-size", "32x32",
               "--max-size", "64x64"])
    assert rc == 1 and capsys.readouterr().err.startswith("error: TensorRT is not installed")


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="TensorRT not installed")
def test_fp16_engine_builds_and_matches_onnx_runtime(trt_fp16_onnx, trt_window, tmp_path):
    import torch

    from vggx.export.engine import compare_engine_with_onnx, read_sidecar

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    profile = ShapeProfile(trt_window, (16, 16), (32, 48), (64, 96), max_batch=2)
    cache = tmp_path / "timing.cache"
    plan = build_engine(trt_fp16_onnx, tmp_path / "model.plan", EngineConfig(profile, Precision.FP16,
                                                                           timing_cache=cache))
    side = read_sidecar(plan)
    assert side["precision"] == "fp16" and side["plugins"] == ["vggx::flow_warp", "vggx::temporal_attention"]
    assert side["profile"]["max"] == [2, trt_window, 64, 96, 3] and cache.stat().st_size > 0
    results = compare_engine_with_onnx(plan, trt_fp16_onnx, [(1, 16, 16), (2, 37, 53)])
    assert all(r.passed for r in results)
    # a second build reuses the timing cache and may replace the plan (same GPU and TensorRT)
    build_engine(trt_fp16_onnx, plan, EngineConfig(profile, Precision.FP16, timing_cache=cache))
    assert Path(plan).exists()
