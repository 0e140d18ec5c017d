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
    keep_timing_cache,
    sidecar_path,
    timing_cache_name,
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
        assert "--no-verify" not in cmd
        # an export with --no-verify: the build that finishes it skips the engine's check as well (it ran it)
        assert finish_command(tmp_path / "model.onnx", tmp_path / "model.plan", cfg, verify=False).endswith(
            " --no-verify")


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
    assert side["profile"]["max"] == [2, trt_window, 64, 96, 3]
    results = compare_engine_with_onnx(plan, trt_fp16_onnx, [(1, 16, 16), (2, 37, 53)])
    assert all(r.passed for r in results)
    assert not cache.exists()  # kept only once the engine is checked and placed
    keep_timing_cache(plan, EngineConfig(profile, Precision.FP16, timing_cache=cache))
    assert cache.stat().st_size > 0
    # a second build reuses the timing cache and may replace the plan (same GPU and TensorRT)
    build_engine(trt_fp16_onnx, plan, EngineConfig(profile, Precision.FP16, timing_cache=cache))
    assert Path(plan).exists()


# ------------------------------------------------------------------ the engine command's files, on a stand-in TensorRT


@pytest.fixture
def standin(monkeypatch):
    """Install :mod:`trt_standin` as ``tensorrt`` (and a GPU for it) with the options given; returns it."""
    import sys

    import trt_standin

    import vggx.export.engine as engine

    def install(**options):
        trt = trt_standin.make(**options)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(engine, "_gpu", lambda: ("Stand-in GPU", "9.0"))
        return trt

    return install


def _served_folder(tmp_path: Path, max_batch: int = 2) -> Path:
    """A repository as `vggx export --fp16` leaves it where no engine could be built: the ONNX and the config."""
    import shutil

    from vggx.checkpoint import DEFAULT_CHECKPOINT
    from vggx.client.runners import shipped_onnx_path

    model = tmp_path / "repo" / "vggx"
    (model / "1").mkdir(parents=True)
    shutil.copy(shipped_onnx_path(DEFAULT_CHECKPOINT, 8), model / "1" / "model.onnx")
    (model / "config.pbtxt").write_text(f'name: "vggx"\nplatform: "tensorrt_plan"\nmax_batch_size: {max_batch}\n')
    return model


def _engine_command(model: Path, *args: str) -> int:
    from vggx.export.engine import main

    return main([str(model / "1" / "model.onnx"), str(model / "1" / "model.plan"), "--min-size", "16x16",
                 "--opt-size", "32x32", "--max-size", "64x64", "--timing-cache", str(model / "trt_timing.cache"),
                 *args])


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


class TestEngineCommand:
    """`python -m vggx.export.engine`, the command an export without TensorRT prints, builds into the served folder."""

    def test_an_engine_that_fails_its_check_is_not_served(self, standin, tmp_path, monkeypatch, capsys):
        """It was written into the served version folder before the check and left there (Triton loads it on its
        next poll or restart), and the model's timing cache with it."""
        import vggx.export.engine as engine
        from vggx.errors import VerificationError

        standin()

        def check(*_args, **_kw):
            raise VerificationError("the engine does not match ONNX Runtime: engine N=1: 40 % of levels off")

        monkeypatch.setattr(engine, "compare_engine_with_onnx", check)
        model = _served_folder(tmp_path)
        before = _files(model)
        assert _engine_command(model) == 1
        assert capsys.readouterr().err.strip() == ("error: the engine does not match ONNX Runtime: engine N=1: 40 % "
                                                   "of levels off")
        assert _files(model) == before == ["1", "1/model.onnx", "config.pbtxt"]

    def test_a_checked_engine_is_placed_with_its_sidecar_and_timings(self, standin, tmp_path, monkeypatch):
        import trt_standin

        import vggx.export.engine as engine

        standin()
        checked = []
        monkeypatch.setattr(engine, "compare_engine_with_onnx", lambda plan, onnx_path, sizes: checked.extend(sizes)
                            or [])
        model = _served_folder(tmp_path, max_batch=2)
        assert _engine_command(model) == 0
        assert (model / "1" / "model.plan").read_bytes() == trt_standin.PLAN
        side = engine.read_sidecar(model / "1" / "model.plan")
        assert side["gpu"] == "Stand-in GPU" and side["profile"]["max"] == [2, 8, 64, 64, 3]
        assert (model / timing_cache_name()).read_bytes() == b"|timed"
        # the batch Triton sends (config.pbtxt's max_batch_size) is in the profile and checked
        assert checked == [(1, 16, 16), (1, 32, 32), (2, 16, 16)]
        assert _files(model) == ["1", "1/model.onnx", "1/model.plan", "1/model.plan.json", "config.pbtxt",
                                 timing_cache_name()]

    def test_a_profile_short_of_the_served_batch_is_refused(self, standin, tmp_path, capsys):
        standin()
        model = _served_folder(tmp_path, max_batch=4)
        assert _engine_command(model, "--max-batch", "2") == 1
        assert capsys.readouterr().err.strip() == (
            f"error: --max-batch 2 is below the max_batch_size 4 of {model / 'config.pbtxt'}: Triton would send the "
            f"engine batches its profile refuses; pass --max-batch 4")
        assert _files(model) == ["1", "1/model.onnx", "config.pbtxt"]

    def test_a_failed_build_says_tensorrts_error(self, standin, tmp_path, capsys):
        """It always blamed sizes and workspace: a plugin's AOT step that raised said the same."""
        standin(build_error="[pluginV3] vggx::temporal_attention: aot_impl raised PluginError: heads=3 does not "
                            "divide C=64")
        model = _served_folder(tmp_path)
        assert _engine_command(model, "--no-verify") == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: TensorRT could not build the engine: [pluginV3] vggx::temporal_attention: "
                                  "aot_impl raised PluginError: heads=3 does not divide C=64")
        assert _files(model) == ["1", "1/model.onnx", "config.pbtxt"]

    def test_a_timing_cache_from_another_gpu_is_not_let_in(self, standin, tmp_path, monkeypatch, caplog):
        """It was loaded with ignore_mismatch=True, which TensorRT warns "may lead to functional/performance bugs"."""
        import vggx.export.engine as engine

        standin(foreign_caches=(b"timed on an A100",))
        monkeypatch.setattr(engine, "compare_engine_with_onnx", lambda *a, **k: [])
        model = _served_folder(tmp_path)
        (model / timing_cache_name()).write_bytes(b"timed on an A100")
        assert _engine_command(model) == 0
        assert "not using the timing cache" in caplog.text
        assert (model / timing_cache_name()).read_bytes() == b"|timed"  # this GPU's, from an empty cache


@pytest.mark.parametrize("check_passes", [False, None, True])
def test_an_export_keeps_the_timing_cache_only_with_its_engine(standin, tmp_path, tiny_checkpoint_path, monkeypatch,
                                                               portable_onnx, trt_fp16_onnx, trt_window, check_passes):
    """A failed `vggx export --fp16` left <repo>/vggx/ holding the timing cache alone: a model folder without a
    config.pbtxt, for which Triton refuses to start ("failed to load all models"). ``check_passes`` None: running the
    engine fails (Polygraphy's and TensorRT's untyped errors), which was a traceback; now the engine command's one
    line."""
    import shutil

    import trt_standin
    from typer.testing import CliRunner

    import vggx.export.pipeline as pipeline
    import vggx.plugins.tensorrt
    from vggx.cli import app
    from vggx.errors import VerificationError

    standin()

    def export(checkpoint, path, config):  # the run's graphs, not a minute's export
        shutil.copyfile(trt_fp16_onnx if config.precision is Precision.FP16 else portable_onnx, path)
        return Path(path)

    def check(*_args, **_kw):
        if check_passes is None:
            raise RuntimeError("[TRT] [E] 1: [defaultAllocator.cpp::deallocate] CUDA error 700\nmore")
        if not check_passes:
            raise VerificationError("the engine does not match ONNX Runtime: (the stand-in's plan)")
        return []

    monkeypatch.setattr(pipeline, "export_onnx", export)
    monkeypatch.setattr(pipeline, "engine_unavailable", lambda: None)
    monkeypatch.setattr(pipeline, "verify_onnx", lambda *a, **k: [])
    monkeypatch.setattr(pipeline, "compare_engine_with_onnx", check)
    monkeypatch.setattr(vggx.plugins.tensorrt, "register_plugins", lambda: None)
    repo = tmp_path / "repo"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(tiny_checkpoint_path), "--repo", str(repo),
                                      "--fp16", "--max-size", "64x64", "--opt-size", "32x32",
                                      "--window", str(trt_window)])
    if check_passes:
        assert result.exit_code == 0, result.output
        assert (repo / "vggx" / "1" / "model.plan").read_bytes() == trt_standin.PLAN
        from vggx.export.engine import timing_cache_name

        # the model's cache is keyed by the plugin kernels it timed: a changed kernel starts from an empty one
        assert timing_cache_name().startswith("trt_timing.") and timing_cache_name() != "trt_timing.cache"
        assert (repo / "vggx" / timing_cache_name()).read_bytes() == b"|timed"
    elif check_passes is None:
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.output.strip() == ("error: running the engine against ONNX Runtime failed: [TRT] [E] 1: "
                                         "[defaultAllocator.cpp::deallocate] CUDA error 700 more"), result.output
        assert not repo.exists() or not list(repo.iterdir()), _files(repo)
    else:
        assert result.exit_code == 1 and "the engine does not match ONNX Runtime" in result.output
        assert not repo.exists() or not list(repo.iterdir()), _files(repo)


def test_the_timing_cache_is_keyed_by_the_plugin_kernels(tmp_path):
    """One trt_timing.cache per model was reused across vggx upgrades: TensorRT 10.9's AOT plugins key their
    timings by shapes alone, so a changed kernel or tactic table was tuned by the old kernels' timings."""
    import shutil

    import vggx.plugins
    from vggx.export.engine import timing_cache_name

    plugins = tmp_path / "plugins"
    shutil.copytree(Path(vggx.plugins.__file__).parent, plugins, ignore=shutil.ignore_patterns("__pycache__"))
    name = timing_cache_name(plugins)
    assert name == timing_cache_name() and name == timing_cache_name(plugins)  # the installed plugins', stable
    (plugins / "launch.py").write_text((plugins / "launch.py").read_text() + "\n# another tactic table\n")
    assert timing_cache_name(plugins) != name


def test_the_engine_command_times_under_its_own_plugins_key(tmp_path):
    """The command an export without TensorRT prints names the model's cache with the exporting machine's key; the
    GPU machine that runs it may have another vggx, other kernels: it reads and keeps the cache of its own key (a
    model cache's name), and any other --timing-cache as given."""
    from vggx.export.engine import own_timing_cache, timing_cache_name

    model = tmp_path / "vggx"
    for given in ("trt_timing.0123456789abcdef.cache", "trt_timing.cache", timing_cache_name()):
        assert own_timing_cache(model / given) == model / timing_cache_name()
    assert own_timing_cache(tmp_path / "mine.cache") == tmp_path / "mine.cache"
    assert own_timing_cache(None) is None


def test_keeping_a_timing_cache_removes_the_models_older_ones(tmp_path):
    """Keyed caches would pile up in the model folder, one per vggx upgrade: keeping one removes the others (and
    the unkeyed one of earlier versions), never other files."""
    from vggx.export.engine import EngineConfig, ShapeProfile, keep_timing_cache, timing_cache_name

    model = tmp_path / "vggx"
    built = tmp_path / "build" / "model.plan"
    built.parent.mkdir()
    built.with_name("model.plan.timing").write_bytes(b"new timings")
    model.mkdir()
    for old in ("trt_timing.cache", "trt_timing.0123456789abcdef.cache"):
        (model / old).write_bytes(b"old timings")
    (model / "config.pbtxt").write_text("")
    cfg = EngineConfig(ShapeProfile(8, (16, 16), (32, 32), (64, 64)), timing_cache=model / timing_cache_name())
    keep_timing_cache(built, cfg)
    assert sorted(p.name for p in model.iterdir()) == sorted(["config.pbtxt", timing_cache_name()])
    assert (model / timing_cache_name()).read_bytes() == b"new timings"
    other = tmp_path / "mine.cache"  # a cache named with --timing-cache: its folder is left alone
    (tmp_path / "trt_timing.cache").write_bytes(b"someone's")
    keep_timing_cache(built, EngineConfig(cfg.profile, timing_cache=other))
    assert (tmp_path / "trt_timing.cache").exists() and other.read_bytes() == b"new timings"
