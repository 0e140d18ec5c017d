"""`vggx evaluate` holds a window's frames at a time, not a clip's.

It decoded a video's whole clip (ground truth and LR, as uint8, and a list of the frames beside the stacked copy) before
scoring any of it, so its peak memory grew with ``--frames``: now a video is decoded a window at a time, every method
scores that window, and it is let go before the next is decoded. The scores are the same."""

from __future__ import annotations

import json
import weakref

import pytest
import torch
from test_train import _write  # lossless frames as an .mkv
from typer.testing import CliRunner


def _frames(t, h, w, seed):
    return torch.randint(0, 256, (t, h, w, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


class _CountingReader:
    """A video reader that counts the frames it has handed out."""

    def __init__(self, reader, counter):
        self.reader, self.counter = reader, counter

    def __enter__(self):
        self.reader.__enter__()
        return self

    def __exit__(self, *exc):
        return self.reader.__exit__(*exc)

    @property
    def path(self):
        return self.reader.path

    def __iter__(self):
        for frame in self.reader:
            self.counter["decoded"] += 1
            yield frame


def test_evaluate_cli_holds_a_window_of_frames_not_the_clip(tmp_path, tiny_checkpoint_path, tiny_checkpoint,
                                                            monkeypatch):
    """At every method call, the frames decoded but not yet scored are at most a window's (8), for a clip of 20
    frames (windows of 8, 8 and 4), and no method's output outlives its scoring: it decoded all 20 first. The
    scores are the metrics' over the whole clip at once."""
    import vggx.cli
    import vggx.training.evaluate as ev
    import vggx.video
    from vggx.training.evaluate import video_clip
    from vggx.training.metrics import psnr, ssim, temporal_error

    video = _write(tmp_path / "clip.mkv", _frames(20, 64, 64, 5).numpy())
    counter = {"decoded": 0}
    real_open = vggx.video.open_video
    monkeypatch.setattr(vggx.video, "open_video", lambda *a, **k: _CountingReader(real_open(*a, **k), counter))

    real_methods = ev.standard_methods
    in_flight: dict[str, list[int]] = {}  # per method, at each call: decoded - frames it was given before
    outputs_alive: list[int] = []  # at each call: output frames (of any method) not yet freed
    alive = {"frames": 0}

    def counted(name, fn):
        given = {"frames": 0}

        def run(lr):
            in_flight.setdefault(name, []).append(counter["decoded"] - given["frames"])
            outputs_alive.append(alive["frames"])
            given["frames"] += lr.shape[0]
            out = fn(lr)
            alive["frames"] += out.shape[0]
            weakref.finalize(out, lambda n=out.shape[0]: alive.__setitem__("frames", alive["frames"] - n))
            return out
        return run

    monkeypatch.setattr(ev, "standard_methods", lambda g: {k: counted(k, f) for k, f in real_methods(g).items()})
    result = CliRunner().invoke(vggx.cli.app, ["evaluate", str(video), "--no-held-out", "--frames", "20", "--region",
                                               "full", "-c", str(tiny_checkpoint_path), "--json",
                                               str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "s.json").read_text())
    assert counter["decoded"] == 20 and {r["frames"] for r in rows} == {20}
    assert set(in_flight) == {"vggx", "bicubic", "vggx frame-by-frame"}
    assert all(v == [8, 8, 4] for v in in_flight.values()), in_flight  # it was [20, 12, 4]
    assert max(outputs_alive) == 0, outputs_alive
    monkeypatch.undo()
    whole = video_clip(video, 20, 4, 8, None)
    hr, lr = whole.hr.float() / 255, whole.lr.float() / 255
    methods = real_methods(tiny_checkpoint.generator)
    assert [r["method"] for r in rows] == list(methods)
    for row, fn in zip(rows, methods.values(), strict=True):
        sr = fn(lr)
        assert row["psnr"] == pytest.approx(psnr(sr, hr), rel=1e-12)
        assert row["ssim"] == pytest.approx(ssim(sr, hr), rel=1e-12)
        assert row["temporal_error"] == pytest.approx(temporal_error(sr, hr), rel=1e-12)


def test_a_streamed_video_scores_as_the_whole_clip_at_once(tmp_path, tiny_checkpoint):
    """A video scored a window at a time as it is decoded (11 frames: windows of 8 and 3, the temporal error across
    their seam) scores exactly as the same frames held whole (the in-memory clip scored part by part), and as the
    metrics over the whole clip at once."""
    from vggx.training.evaluate import VideoClip, evaluate, standard_methods, video_clip
    from vggx.training.metrics import psnr, ssim, temporal_error

    video = _write(tmp_path / "clip.mkv", _frames(11, 72, 104, 6).numpy())
    methods = standard_methods(tiny_checkpoint.generator)
    stream = VideoClip(video, 11, 4, 8, (64, 96))
    streamed = evaluate(methods, [stream], "t", part=8)
    whole = video_clip(video, 11, 4, 8, (64, 96))
    held = evaluate(methods, [whole], "t", part=8)
    assert [r.as_dict() for r in streamed] == [r.as_dict() for r in held]  # bit for bit
    assert stream.frames == 11 and stream.size == (64, 96) and stream.source_size == (72, 104)
    assert {(r.frames, r.scored_size, r.source_size) for r in streamed} == {(11, (64, 96), (72, 104))}
    hr, lr = whole.hr.float() / 255, whole.lr.float() / 255
    for row, fn in zip(streamed, methods.values(), strict=True):
        sr = fn(lr)
        assert row.psnr == pytest.approx(psnr(sr, hr), rel=1e-12)
        assert row.ssim == pytest.approx(ssim(sr, hr), rel=1e-12)
        assert row.temporal_error == pytest.approx(temporal_error(sr, hr), rel=1e-12)


def test_a_video_clip_decodes_a_part_when_asked_and_keeps_none(tmp_path):
    """Parts of ``step`` frames (a shorter last one), each decoded when asked for and not held by the clip after;
    together they are :func:`video_clip`'s frames."""
    from vggx.errors import VideoError
    from vggx.training.evaluate import VideoClip, video_clip

    video = _write(tmp_path / "clip.mkv", _frames(10, 64, 64, 7).numpy())
    clip = VideoClip(video, 10, 4, 8, None)
    parts, refs = [], []
    for hr, lr in clip.parts(4):
        assert all(r() is None for r in refs)  # the earlier parts are gone once the caller lets them go
        refs += [weakref.ref(hr), weakref.ref(lr)]
        parts.append((hr.clone(), lr.clone()))
        del hr, lr
    assert [p[0].shape[0] for p in parts] == [4, 4, 2] and clip.frames == 10 and clip.size == (64, 64)
    whole = video_clip(video, 10, 4, 8, None)
    assert torch.equal(torch.cat([p[0] for p in parts]), whole.hr)
    assert torch.equal(torch.cat([p[1] for p in parts]), whole.lr)
    one = _write(tmp_path / "one.mkv", _frames(1, 64, 64, 8).numpy())
    with pytest.raises(VideoError, match="need at least 2 frames, got 1"):
        list(VideoClip(one, 5, 4, 8, None).parts(8))


def test_the_temporal_error_keeps_one_frame_between_parts():
    """The frames kept for the temporal error across a seam are the last one's, not views that keep the whole
    part's float64 frames alive (every method's, at once, now that the methods take turns on each part)."""
    from vggx.training.evaluate import _ClipScore

    score = _ClipScore()
    score.add(torch.rand(8, 3, 16, 16), torch.rand(8, 3, 16, 16))
    assert [t.untyped_storage().nbytes() for t in score._last] == [3 * 16 * 16 * 8] * 2
