"""Training loop: learns, resumes exactly, evaluates honestly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

from vggx.errors import VideoError
from vggx.generator import get_config
from vggx.training.evaluate import EvalClip, evaluate
from vggx.training.metrics import PSNR_CAP, psnr, ssim, temporal_error
from vggx.training.train import TrainConfig, Trainer

SMALL_MODEL = dataclasses.replace(
    get_config("tiny"), name="test", flow_levels=2, flow_channels=(8,), prop_channels=8, prop_blocks=1,
    enc_channels=(8, 16), hr_channels=(8,), attn_heads=1,
)
SMALL_TRAIN = TrainConfig(batch=2, frames=3, lr_patch=16, lr=2e-3, warmup=1, steps=1000, val_every=10**6,
                          ckpt_every=4, log_every=1)


def test_a_few_steps_reduce_the_loss(tmp_path):
    trainer = Trainer(SMALL_TRAIN, tmp_path, SMALL_MODEL)
    # Fixed batch: the loss on it must fall when we fit it.
    clip = trainer._batch(0)
    trainer._batch = lambda step: clip
    losses = [trainer.train_step()["rec"] for _ in range(30)]
    # The model starts as bicubic + a small head; fitting one batch must beat that start clearly.
    assert max(losses[-3:]) < 0.985 * losses[0], losses


def test_resume_continues_the_step_count_and_the_exact_trajectory(tmp_path):
    a = Trainer(SMALL_TRAIN, tmp_path / "a", SMALL_MODEL)
    a.run(until=4)
    assert (tmp_path / "a" / "state.safetensors").exists() and (tmp_path / "a" / "latest.safetensors").exists()
    b = Trainer(SMALL_TRAIN, tmp_path / "a", SMALL_MODEL)
    assert b.load_state() and b.step == 4
    b.run(until=6)
    c = Trainer(SMALL_TRAIN, tmp_path / "c", SMALL_MODEL)
    c.run(until=6)
    for (k, p), q in zip(b.model.state_dict().items(), c.model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=k)
    for (k, p), q in zip(b.ema.state_dict().items(), c.ema.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=f"ema {k}")


def test_weight_average_is_what_is_validated_and_written(tmp_path):
    from vggx.checkpoint import load_checkpoint

    t = Trainer(SMALL_TRAIN, tmp_path, SMALL_MODEL)
    before = [p.detach().clone() for p in t.ema.parameters()]
    t.run(until=4)
    model, ema = list(t.model.parameters()), list(t.ema.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(model, ema, strict=True))  # lags the raw weights
    assert any(not torch.equal(a, b) for a, b in zip(before, ema, strict=True))  # but follows them
    assert all(not p.requires_grad for p in ema)
    saved = load_checkpoint(tmp_path / "latest.safetensors")
    for (k, p), q in zip(saved.generator.state_dict().items(), t.ema.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=k)
    assert saved.extra["weights"] == "ema 0.999"
    # One more step moves the average by (1 - decay) of the way to the new weights.
    decay = min(0.999, (1 + 4) / (10 + 4))
    old = [p.detach().clone() for p in ema]
    t.train_step()
    for o, e, m in zip(old, t.ema.parameters(), t.model.parameters(), strict=True):
        torch.testing.assert_close(e, o + (1 - decay) * (m - o), atol=1e-6, rtol=1e-5)


def test_a_state_without_the_average_starts_it_from_the_weights(tmp_path):
    off = dataclasses.replace(SMALL_TRAIN, ema_decay=0.0)
    a = Trainer(off, tmp_path, SMALL_MODEL)
    assert a.ema is None
    a.run(until=4)
    a.best_psnr = 30.0
    a.save_state()
    b = Trainer(SMALL_TRAIN, tmp_path, SMALL_MODEL)
    assert b.load_state() and b.step == 4
    for p, q in zip(b.ema.parameters(), a.model.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert b.best_psnr == -1.0  # the raw weights' best is not the average's


def test_adversarial_objective_trains_the_discriminator(tmp_path):
    cfg = dataclasses.replace(SMALL_TRAIN, adv_weight=0.1, fm_weight=1.0)
    trainer = Trainer(cfg, tmp_path, SMALL_MODEL)
    before = [p.detach().clone() for p in trainer.disc.parameters()]
    stats = trainer.train_step()
    assert {"d", "g_adv", "fm"} <= set(stats)
    assert any(not torch.equal(p, q) for p, q in zip(before, trainer.disc.parameters(), strict=True))


def test_identity_upscaler_scores_capped_psnr():
    torch.manual_seed(0)
    hr = torch.rand(4, 3, 32, 32)
    clip = EvalClip("x", hr, hr[..., ::4, ::4])
    rows = evaluate({"oracle": lambda lr: hr, "noisy": lambda lr: (hr + 0.01).clamp(0, 1)}, [clip], "t")
    assert rows[0].psnr == PSNR_CAP and rows[0].ssim == pytest.approx(1.0) and rows[0].temporal_error == 0.0
    assert 35 < rows[1].psnr < 45


def test_a_clip_scored_a_window_at_a_time_scores_as_the_whole(tiny_checkpoint):
    """`vggx evaluate` held every method's output of a whole clip, and the metrics' float64 copies of it (about 29 MB
    a frame of a 480x640 region): now each method gets a window's frames at a time, and the scores are the metrics'
    over the whole clip (a clip of 11 frames: windows of 8 and 3, the temporal error across their seam)."""
    from vggx.training.evaluate import standard_methods

    torch.manual_seed(0)
    hr = (torch.rand(11, 3, 64, 96) * 255).round().to(torch.uint8)
    lr = hr[..., ::4, ::4].contiguous()
    methods = standard_methods(tiny_checkpoint.generator)
    seen: list[int] = []

    def counted(fn):
        def run(x):
            seen.append(x.shape[0])
            return fn(x)
        return run

    parts = evaluate({k: counted(f) for k, f in methods.items()}, [EvalClip("c", hr, lr)], "t", part=8)
    assert max(seen) == 8 and sum(seen) == 3 * 11  # never more than a window's frames at once
    hr_f, lr_f = hr.float() / 255, lr.float() / 255
    for row, fn in zip(parts, methods.values(), strict=True):
        sr = fn(lr_f)  # the whole clip at once: what was scored before
        assert row.psnr == pytest.approx(psnr(sr, hr_f), rel=1e-12)
        assert row.ssim == pytest.approx(ssim(sr, hr_f), rel=1e-12)
        assert row.temporal_error == pytest.approx(temporal_error(sr, hr_f), rel=1e-12)


def test_metrics_known_values():
    a = torch.zeros(2, 3, 16, 16)
    assert psnr(a + 0.1, a) == pytest.approx(20.0)
    assert ssim(a, a) == pytest.approx(1.0)
    flicker = a.clone()
    flicker[1] += 0.2
    assert temporal_error(flicker, a) == pytest.approx(0.2)


def test_train_cli_refuses_to_clobber_and_resumes(tmp_path, monkeypatch):
    from vggx import cli
    from vggx.training import train as train_mod

    monkeypatch.setattr(train_mod, "get_config", lambda name: SMALL_MODEL)
    runner = CliRunner()
    args = ["train", "--out", str(tmp_path), "--steps", "2", "--batch", "1", "--frames", "2", "--patch", "16"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    again = runner.invoke(cli.app, args)
    assert again.exit_code == 1 and "--resume" in again.output
    resumed = runner.invoke(cli.app, [*args[:4], "3", *args[5:], "--resume"])
    assert resumed.exit_code == 0 and "resumed at step 2" in resumed.output
    # nothing left to run: said, not a "3/2" bar; the state is untouched
    state = (tmp_path / "state.safetensors").read_bytes()
    done = runner.invoke(cli.app, [*args[:4], "2", *args[5:], "--resume"])
    assert done.exit_code == 0, done.output
    assert f"{tmp_path} is at step 3, already at or past --steps 2: nothing to train" in done.output
    assert f"checkpoint: {tmp_path / 'latest.safetensors'}\n" in done.output  # the path whole, not wrapped
    assert (tmp_path / "state.safetensors").read_bytes() == state
    fresh = runner.invoke(cli.app, ["train", "--out", str(tmp_path / "new"), *args[3:], "--resume"])
    assert fresh.exit_code == 0 and "no training state in" in fresh.output and "starting at step 0" in fresh.output


def test_ssim_matches_scikit_image_and_is_chunk_independent():
    from skimage.metrics import structural_similarity

    torch.manual_seed(0)
    a = torch.rand(3, 1, 64, 80, dtype=torch.float64)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    ref = sum(structural_similarity(a[i, 0].numpy(), b[i, 0].numpy(), data_range=1.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False) for i in range(3)) / 3
    assert ssim(b, a) == pytest.approx(ref, abs=1e-9)
    assert ssim(b, a, chunk=1) == pytest.approx(ssim(b, a, chunk=3), abs=1e-12)


def _write(path, frames, fmt_options=None):
    """Lossless RGB frames through FFmpeg: an .mkv (ffv1) or an image sequence (png, ``%04d`` in the name)."""
    import av

    sequence = "%" in path.name
    with av.open(str(path), "w", format="image2" if sequence else None, options=fmt_options or {}) as c:
        stream = c.add_stream("png" if sequence else "ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24" if sequence else "bgr0"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path


def test_video_clip_reads_what_upscale_reads(tmp_path):
    """A file and the same frames as a numbered PNG sequence give the same ground truth (cropped to whole LR
    pixels), decoded by ``vggx.video`` like ``vggx upscale``'s input."""
    from vggx.training.evaluate import video_clip

    frames = torch.randint(0, 256, (6, 72, 104, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    video = _write(tmp_path / "clip.mkv", frames.numpy())
    (tmp_path / "seq").mkdir()
    pattern = _write(tmp_path / "seq" / "%04d.png", frames.numpy(), {"start_number": "1001"})
    a, b = video_clip(video, 4, 4, 8, start=1), video_clip(pattern, 4, 4, 8, start=1)
    assert a.name == "clip.mkv" and b.name == "%04d.png" and a.hr.shape == (4, 3, 64, 96) == b.hr.shape
    assert torch.equal(a.hr, b.hr) and torch.equal(a.lr, b.lr)
    want = frames[1:5, 4:68, 4:100].permute(0, 3, 1, 2)  # centre crop of 72x104 to 64x96, kept as uint8
    assert a.hr.dtype == a.lr.dtype == torch.uint8 and torch.equal(a.hr, want)
    # the LR is the BI degradation of the float frames, quantised: as computed on the whole clip at once
    from vggx.training.data import bicubic_downscale

    whole = (bicubic_downscale(want.float() / 255, 4).clamp(0, 1) * 255).round() / 255
    assert torch.equal(a.lr.float() / 255, whole)


def test_evaluate_cli_held_out_reads_at_80_columns(tmp_path, tiny_checkpoint_path, monkeypatch):
    """The held-out rows' data name whole on its line at 80 columns (a piped stdout), not "held-out" / "(BI)"."""
    import io

    from rich.console import Console

    import vggx.cli

    out = io.StringIO()
    monkeypatch.setattr(vggx.cli, "console", Console(file=out, width=80))
    result = CliRunner().invoke(vggx.cli.app, ["evaluate", "-c", str(tiny_checkpoint_path), "--json",
                                               str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "s.json").read_text())
    table = out.getvalue()
    assert {r["dataset"] for r in rows} == {"held-out (BI)"} and table.count("│ held-out (BI) │") == len(rows), table
    assert max(len(line) for line in table.splitlines()) <= 80 and "…" not in table


def test_evaluate_cli_on_a_video(tmp_path, tiny_checkpoint_path, monkeypatch):
    import io

    from rich.console import Console

    import vggx.cli

    frames = torch.randint(0, 256, (8, 64, 64, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    video = _write(tmp_path / "[b]clip.mkv", frames.numpy())  # a name that reads as rich markup
    out = io.StringIO()
    monkeypatch.setattr(vggx.cli, "console", Console(file=out, width=80))
    result = CliRunner().invoke(vggx.cli.app, ["evaluate", str(video), "--no-held-out", "--frames", "8", "-c",
                                               str(tiny_checkpoint_path), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "s.json").read_text())
    assert {r["dataset"] for r in rows} == {"[b]clip.mkv"} and {r["method"] for r in rows} >= {"bicubic"}
    table = out.getvalue()  # at 80 columns: every name whole, on its line
    assert table.count("[b]clip.mkv") == len(rows) and "vggx frame-by-frame" in table and "…" not in table
    assert {r["frames"] for r in rows} == {8} and "frames scored" not in table
    # more frames asked than the clip has: scored on its 8, and said so (it was silent)
    out.truncate(0)
    result = CliRunner().invoke(vggx.cli.app, ["evaluate", str(video), "--no-held-out", "--frames", "500", "-c",
                                               str(tiny_checkpoint_path)])
    assert result.exit_code == 0, result.output
    assert "[b]clip.mkv: 8 frames scored (it has no more; --frames 500 asked)" in out.getvalue()


def test_video_clip_region(tmp_path):
    """The scored region is the centre at most ``max_hr`` (None: whole frames), cut to whole LR pixels; the frames'
    own size is kept beside it (a default 480x640 crop used to be silent)."""
    from vggx.training.evaluate import video_clip

    frames = torch.randint(0, 256, (3, 72, 136, 3), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    video = _write(tmp_path / "wide.mkv", frames.numpy())
    small = video_clip(video, 3, 4, 8, (40, 64))
    assert small.hr.shape == (3, 3, 32, 64) and small.source_size == (72, 136)
    assert torch.equal(small.hr, frames[:, 20:52, 36:100].permute(0, 3, 1, 2))
    whole = video_clip(video, 3, 4, 8, None)
    assert whole.hr.shape == (3, 3, 64, 128) and whole.source_size == (72, 136)
    tiny = _write(tmp_path / "tiny.mkv", frames[:, :24, :24].contiguous().numpy())
    with pytest.raises(VideoError, match=r"frames of 24x24 are too small to evaluate .*multiple of 32 pixels"):
        video_clip(tiny, 3, 4, 8, None)


def test_evaluate_cli_region_and_names(tmp_path, tiny_checkpoint_path, monkeypatch):
    """Two clips with one file name (Vid4's calendar/%08d.png, city/%08d.png) keep their own rows and their own
    bicubic baseline (the second clip's overwrote the first's: its bicubic row read -0.18 dB vs bicubic), and a
    video scored on a part of its frames says which part, in the table's lines and the JSON."""
    import io

    from rich.console import Console

    import vggx.cli

    gen = torch.Generator().manual_seed(3)
    smooth = torch.linspace(0, 255, 64).round().to(torch.uint8)[None, None, :, None].expand(6, 64, 64, 3)
    noisy = torch.randint(0, 256, (6, 64, 64, 3), generator=gen, dtype=torch.uint8)
    for folder, frames in (("calendar", smooth), ("city", noisy)):
        (tmp_path / folder).mkdir()
        _write(tmp_path / folder / "clip.mkv", frames.contiguous().numpy())
    out = io.StringIO()
    monkeypatch.setattr(vggx.cli, "console", Console(file=out, width=120))
    result = CliRunner().invoke(vggx.cli.app, [
        "evaluate", str(tmp_path / "calendar" / "clip.mkv"), str(tmp_path / "city" / "clip.mkv"), "--no-held-out",
        "--frames", "6", "-c", str(tiny_checkpoint_path), "--region", "32x48", "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "s.json").read_text())
    assert [r["dataset"] for r in rows if r["method"] == "bicubic"] == ["calendar/clip.mkv", "city/clip.mkv"]
    psnr = {(r["dataset"], r["method"]): r["psnr"] for r in rows}
    assert psnr["calendar/clip.mkv", "bicubic"] > psnr["city/clip.mkv", "bicubic"] + 10
    table = out.getvalue()
    bicubic_lines = [line for line in table.splitlines() if "│ bicubic" in line]
    assert len(bicubic_lines) == 2 and all(line.rstrip(" │").endswith("+0.00") for line in bicubic_lines), table
    assert {tuple(r["scored_size"]) for r in rows} == {(32, 32)} and {tuple(r["source_size"]) for r in rows} == {
        (64, 64)}
    assert "calendar/clip.mkv: scored the centre 32x32 of 64x64 (--region full: whole frames)" in table
    out.truncate(0)
    result = CliRunner().invoke(vggx.cli.app, [
        "evaluate", str(tmp_path / "city" / "clip.mkv"), "--no-held-out", "--frames", "2", "-c",
        str(tiny_checkpoint_path), "--region", "full", "--json", str(tmp_path / "f.json")])
    assert result.exit_code == 0, result.output
    assert {tuple(r["scored_size"]) for r in json.loads((tmp_path / "f.json").read_text())} == {(64, 64)}
    assert "scored" not in out.getvalue()
    result = CliRunner().invoke(vggx.cli.app, ["evaluate", "--region", "wide", "-c", str(tiny_checkpoint_path)])
    assert result.exit_code == 1 and "--region takes HxW (e.g. 480x640) or full, got 'wide'" in result.output


def test_evaluate_held_out_at_the_checkpoints_scale(tmp_path):
    """The held-out clips were always made x4: a valid x8 checkpoint failed with a tensor-size traceback."""
    from vggx.checkpoint import save_checkpoint
    from vggx.cli import app
    from vggx.generator import Generator
    from vggx.generator.config import GeneratorConfig

    cfg = GeneratorConfig(name="x8", scale=8, window=2, enc_channels=(8, 8), hr_channels=(8, 8), prop_channels=8,
                          prop_blocks=1, flow_channels=(8,), flow_levels=1, attn_heads=1)
    path = save_checkpoint(Generator(cfg), tmp_path / "x8.safetensors")
    result = CliRunner().invoke(app, ["evaluate", "-c", str(path), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "s.json").read_text())
    assert {tuple(r["scored_size"]) for r in rows} == {(384, 512)}  # LR 48x64, x8


def test_train_cli_resumes_with_the_runs_own_settings(tmp_path, monkeypatch):
    """A resumed run goes on with what it was trained with: flags left out are the stored ones (a GAN run resumed
    without --adversarial dropped its discriminator from the state for good, and --batch 4 came back silently), and
    a flag that contradicts them is one line naming the stored value."""
    from safetensors import safe_open

    from vggx import cli
    from vggx.training import train as train_mod

    monkeypatch.setattr(train_mod, "get_config", lambda name: SMALL_MODEL)
    runner = CliRunner()
    out = tmp_path / "gan"
    first = runner.invoke(cli.app, ["train", "--out", str(out), "--steps", "1", "--batch", "1", "--frames", "2",
                                    "--patch", "16", "--seed", "3", "--adversarial", "--val-every", "100"])
    assert first.exit_code == 0, first.output
    stored = TrainConfig.stored(out / "state.safetensors")
    assert (stored.batch, stored.frames, stored.lr_patch, stored.seed, stored.adv_weight > 0, stored.val_every) == (
        1, 2, 16, 3, True, 100)
    resumed = runner.invoke(cli.app, ["train", "--out", str(out), "--steps", "2", "--resume"])
    assert resumed.exit_code == 0 and "resumed at step 1" in resumed.output, resumed.output
    assert TrainConfig.stored(out / "state.safetensors") == stored
    with safe_open(str(out / "state.safetensors"), framework="pt") as f:
        assert any(k.startswith("d.model.") for k in f.keys())  # noqa: SIM118 (safe_open is not iterable): the discriminator kept
    for flags, said in [(["--batch", "4"], "--batch 1"), (["--no-adversarial"], "--adversarial"),
                        (["--seed", "0", "--frames", "3"], "--frames 2, --seed 3"),
                        (["--config", "base"], "--config tiny")]:
        result = runner.invoke(cli.app, ["train", "--out", str(out), "--steps", "3", "--resume", *flags])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert f"was trained with {said}: a resumed run goes on with its own settings" in lines[0], lines[0]
    assert TrainConfig.stored(out / "state.safetensors") == stored and "step" in resumed.output
    # the same settings given again are no contradiction
    again = runner.invoke(cli.app, ["train", "--out", str(out), "--steps", "3", "--resume", "--batch", "1"])
    assert again.exit_code == 0 and "resumed at step 2" in again.output, again.output


def test_train_cli_steps_end_with_the_schedule(tmp_path, monkeypatch):
    """--steps past the schedule trained nothing and exited 0 under a bar stuck at 40000/40002 (the README's own
    "continue" command on the shipped state said to pass a larger --steps); a run at its schedule's end says so."""
    from vggx import cli
    from vggx.training import train as train_mod

    monkeypatch.setattr(train_mod, "get_config", lambda name: SMALL_MODEL)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["train", "--out", str(tmp_path / "a"), "--steps", "40002"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "--steps 40002 is past the run's 40000-step schedule" in lines[0] and not (tmp_path / "a").exists()
    done = Trainer(dataclasses.replace(SMALL_TRAIN, steps=2), tmp_path / "b", SMALL_MODEL)
    done.run()
    done.save_state()
    result = runner.invoke(cli.app, ["train", "--out", str(tmp_path / "b"), "--resume"])
    assert result.exit_code == 0 and "at step 2, already at or past --steps 2: nothing to train (it has finished its " \
        "schedule)" in " ".join(result.output.split()), result.output
    result = runner.invoke(cli.app, ["train", "--out", str(tmp_path / "b"), "--resume", "--steps", "3"])
    assert result.exit_code == 1 and "past the run's 2-step schedule" in result.output


def test_train_cli_out_is_a_folder(tmp_path):
    from vggx.cli import app

    (tmp_path / "afile").write_text("")
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "afile"), "--steps", "1"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "is a file; it names the run's folder" in lines[0]
    # a folder below a file: a traceback (NotADirectoryError) once ten steps had trained, from the log's mkdir
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "afile" / "run"), "--steps", "1"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert f"cannot be written: {tmp_path / 'afile'} is a file, not a folder" in lines[0]


@pytest.mark.parametrize(("args", "message"), [
    (["--frames", "1"], "--frames must be >= 2"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--val-every", "0"], "--val-every must be >= 1 steps, got 0"),
    (["--patch", "0"], "--patch must be a positive multiple of 8, got 0"),
    (["--patch", "12"], "--patch must be a positive multiple of 8, got 12"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--batch", "0"], "--batch must be >= 1, got 0"),  # named neither option: "steps and batch must be >= 1"
    (["--steps", "0"], "--steps must be >= 1, got 0"),
])
def test_train_cli_bad_values_are_one_line(tmp_path, args, message):
    """Each was a traceback (a ZeroDivisionError, numpy's "need at least one array to stack", ...)."""
    from vggx.cli import app

    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--steps", "1", *args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "run" / "state.safetensors").exists()


@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143)], ids=["ctrl-c", "sigterm"])
def test_a_stopped_run_saves_where_it_is_and_resumes_there(tmp_path, sig, code):
    """A stop saved nothing: a rerun went back to the last periodic save (every 50 steps; 49 lost) and logged those
    steps a second time. Now the step under way finishes, the state is saved at it, and the exit is the signal's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = [sys.executable, "-c", "from vggx.cli import main; main()", "train", "--out", str(out), "--steps", "400",
            "--batch", "1", "--frames", "2", "--patch", "8", "--val-every", "1000", "--threads", "1"]
    proc = subprocess.Popen(args, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = out / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 2):  # steps 10 and 20 logged
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    logged = max(json.loads(line)["step"] for line in log.read_text().splitlines())
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    stored = TrainConfig.stored(out / "state.safetensors")
    assert stored is not None
    from safetensors import safe_open

    with safe_open(str(out / "state.safetensors"), framework="pt") as f:
        step = int(f.metadata()["step"])
    assert step >= logged  # where it was stopped, not the last periodic save (every 50 steps) or nothing
    resumed = CliRunner().invoke(__import__("vggx.cli").cli.app, ["train", "--out", str(out), "--resume",
                                                                 "--steps", str(step + 11)])
    assert resumed.exit_code == 0 and f"resumed at step {step}" in resumed.output, resumed.output
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines() if "loss" in line]
    assert steps == sorted(set(steps)), steps  # each step logged once


def test_train_cli_out_that_cannot_be_written_fails_before_the_first_step(tmp_path, monkeypatch):
    """/proc/run passed the os.access check (root may write /proc), trained, then ended in a 53-line traceback from
    the log's mkdir. The run folder and its log are now made before the first step."""
    from vggx.cli import app
    from vggx.training import train as train_mod

    monkeypatch.setattr(train_mod, "get_config", lambda name: SMALL_MODEL)
    monkeypatch.setattr(Trainer, "train_step", lambda self: pytest.fail("trained with an --out it cannot write"))
    result = CliRunner().invoke(app, ["train", "--out", "/proc/vggx-run", "--steps", "1"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0] == "error: --out /proc/vggx-run cannot be written (No such file or directory)"


def test_a_failed_write_mid_run_is_one_line_and_keeps_the_last_state(tmp_path, monkeypatch):
    """A disk that filled during a run gave a traceback from save_file or the log; now one line naming the step whose
    state is kept, and that state (and latest.safetensors) still whole."""
    import errno

    from vggx.cli import app
    from vggx.training import train as train_mod

    monkeypatch.setattr(train_mod, "get_config", lambda name: SMALL_MODEL)
    args = ["train", "--out", str(tmp_path), "--batch", "1", "--frames", "2", "--patch", "16"]
    assert CliRunner().invoke(app, [*args, "--steps", "1"]).exit_code == 0
    state = (tmp_path / "state.safetensors").read_bytes()
    latest = (tmp_path / "latest.safetensors").read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train_mod, "save_checkpoint", full)
    result = CliRunner().invoke(app, [*args, "--steps", "2", "--resume"])
    lines = [line for line in result.output.splitlines() if line.strip() and "resumed" not in line
             and not line.startswith("train ")]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0] == (f"error: cannot write the run's files in {tmp_path} (No space left on device); the state "
                        f"saved at step 1 is kept: free the space or fix the folder, then rerun with --resume")
    assert (tmp_path / "state.safetensors").read_bytes() == state
    assert (tmp_path / "latest.safetensors").read_bytes() == latest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors", "latest.safetensors", "log.jsonl",
                                                             "state.safetensors"]


def test_a_failed_log_write_on_a_new_run_says_nothing_was_saved(tmp_path, monkeypatch):
    import errno

    trainer = Trainer(dataclasses.replace(SMALL_TRAIN, steps=2), tmp_path, SMALL_MODEL)

    def full(self, record):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Trainer, "_log", full)
    from vggx.errors import VggxError

    with pytest.raises(VggxError, match=r"\(Read-only file system\); no state had been saved yet$"):
        trainer.run()


@pytest.mark.parametrize("case", ["frames", "missing", "not-a-video"])
def test_evaluate_cli_checks_videos_and_frames_before_scoring(tmp_path, case, monkeypatch):
    """--frames -1 or a bad video was found only after the held-out clips were scored (minutes): now before the
    checkpoint is even loaded."""
    import vggx.checkpoint
    import vggx.cli

    monkeypatch.setattr(vggx.checkpoint, "load_checkpoint", lambda *a: pytest.fail("loaded before the checks"))
    good = _write(tmp_path / "good.mkv", torch.zeros(4, 32, 32, 3, dtype=torch.uint8).numpy())
    (tmp_path / "rand.mp4").write_bytes(bytes(range(256)) * 8)
    args = {"frames": ["--frames", "-1", str(good)], "missing": [str(good), str(tmp_path / "nope.mp4")],
            "not-a-video": [str(good), str(tmp_path / "rand.mp4")]}[case]
    result = CliRunner().invoke(vggx.cli.app, ["evaluate", *args])
    assert result.exit_code == 1, result.output
    message = {"frames": "--frames must be >= 2 (the temporal error compares consecutive frames), got -1",
               "missing": f"input not found: {tmp_path / 'nope.mp4'}",
               "not-a-video": f"{tmp_path / 'rand.mp4'} is not a video FFmpeg can read"}[case]
    assert result.stderr.startswith(f"error: {message}") and len(result.stderr.splitlines()) == 1, result.stderr


def test_evaluate_cli_keeps_the_scores_of_the_videos_before_one_that_fails(tmp_path, tiny_checkpoint_path,
                                                                            monkeypatch):
    """One video failing as it was decoded lost every score computed before it: now the table and --json hold the
    others, and the run exits 1 naming the one that failed."""
    import io

    from rich.console import Console

    import vggx.cli

    frames = torch.randint(0, 256, (8, 64, 64, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    good = _write(tmp_path / "good.mkv", frames.numpy())
    one = _write(tmp_path / "one.mkv", frames[:1].numpy())  # opens, then has too few frames to score
    out = io.StringIO()
    monkeypatch.setattr(vggx.cli, "console", Console(file=out, width=100))
    result = CliRunner().invoke(vggx.cli.app, ["evaluate", str(one), str(good), "--no-held-out", "--frames", "8",
                                               "-c", str(tiny_checkpoint_path), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"error: {one}: need at least 2 frames, got 1 (the table has the others)"
    rows = json.loads((tmp_path / "s.json").read_text())
    assert {r["dataset"] for r in rows} == {"good.mkv"} and "good.mkv" in out.getvalue()
    # the only video failing: its error alone, no empty table
    out.truncate(0)
    result = CliRunner().invoke(vggx.cli.app, ["evaluate", str(one), "--no-held-out", "-c", str(tiny_checkpoint_path)])
    assert result.exit_code == 1 and result.stderr.strip() == f"error: {one}: need at least 2 frames, got 1"
    assert out.getvalue() == ""
