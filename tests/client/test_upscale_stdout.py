"""``vggx upscale IN -``: the upscaled frames as a stream on standard output, for another program to read as they come
(y4m by default, Matroska with ``--codec``). Real subprocesses with a real pipe: FFmpeg writes to file descriptor 1."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from videoclips import decode_all, make_video, stream_facts

from vggx.client import UpscaleConfig
from vggx.errors import ConfigError, VideoError
from vggx.video import EncodeConfig
from vggx.video.encode import check_stdout


def _upscale(tiny_checkpoint_path, src, args, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vggx.cli", "upscale", str(src), "-", *map(str, args), "--backend", "torch",
           "--checkpoint", str(tiny_checkpoint_path), "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, env=env, timeout=300, **kw)


def _frames_of(data: bytes, fmt: str):
    import av

    with av.open(io.BytesIO(data), format=fmt) as c:
        stream = c.streams.video[0]
        info = {"pix_fmt": stream.codec_context.pix_fmt, "rate": stream.average_rate,
                "size": (stream.codec_context.height, stream.codec_context.width),
                "streams": [s.type for s in c.streams]}
        return info, [f.to_ndarray() for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("stdout") / "in.mp4", frames=9, size=(24, 32), audio="aac",
                      rate=Fraction(30000, 1001))


class TestY4m:
    @pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p", "yuv420p10le"])
    def test_the_stream_holds_the_frames_a_file_would(self, clip, tiny_checkpoint_path, tmp_path, pix_fmt):
        """The same frames, converted alike, as an FFV1 file in that pixel format; the summary on stderr."""
        extra = [] if pix_fmt == "yuv420p" else ["--pix-fmt", pix_fmt]
        done = _upscale(tiny_checkpoint_path, clip, extra)
        assert done.returncode == 0, done.stderr.decode()
        info, frames = _frames_of(done.stdout, "yuv4mpegpipe")
        assert info["pix_fmt"] == pix_fmt and info["rate"] == Fraction(30000, 1001) and info["size"] == (96, 128)
        assert info["streams"] == ["video"]
        err = done.stderr.decode()
        assert "9 frames in " in err and "-> standard output (y4m, 128x96)" in err
        assert "carries the video only" in err  # the clip's audio is not in a y4m stream: said once
        file = tmp_path / "ref.mkv"
        ref = subprocess.run([sys.executable, "-m", "vggx.cli", "upscale", str(clip), str(file), "--codec", "ffv1",
                              "--pix-fmt", pix_fmt, "--backend", "torch", "--checkpoint", str(tiny_checkpoint_path),
                              "--threads", "1"], capture_output=True, timeout=300)
        assert ref.returncode == 0, ref.stderr.decode()
        import av

        with av.open(str(file)) as c:
            want = [f.to_ndarray() for f in c.decode(video=0)]
        assert len(frames) == len(want) == 9
        for got, exp in zip(frames, want, strict=True):
            np.testing.assert_array_equal(got, exp)

    def test_a_reader_that_goes_away_is_one_error_line(self, tiny_checkpoint_path, tmp_path):
        src = make_video(tmp_path / "long.mp4", frames=40, size=(24, 32))
        cmd = [sys.executable, "-m", "vggx.cli", "upscale", str(src), "-", "--backend", "torch", "--checkpoint",
               str(tiny_checkpoint_path), "--threads", "1"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.read(200)  # the header and a little of frame 0, then the reader quits
        proc.stdout.close()
        _, err = proc.communicate(timeout=300)
        lines = err.decode().strip().splitlines()
        assert proc.returncode == 1, err.decode()
        assert lines == [lines[0]] and lines[0].startswith("error: the program reading standard output closed it "
                                                         "after "), err.decode()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]

    def test_rgb_is_refused_before_any_work(self):
        with pytest.raises(VideoError, match=r"y4m on standard output cannot carry rgb24.*--codec ffv1"):
            check_stdout(EncodeConfig(codec="rawvideo", pix_fmt="rgb24"))

    def test_a_terminal_is_refused(self, monkeypatch):
        monkeypatch.setattr(os, "isatty", lambda fd: fd == 1)
        with pytest.raises(VideoError, match="standard output is a terminal: pipe it into a program"):
            check_stdout(EncodeConfig(codec="rawvideo"))


class TestMatroska:
    def test_a_codec_streams_matroska_with_the_audio(self, clip, tiny_checkpoint_path, tmp_path):
        done = _upscale(tiny_checkpoint_path, clip, ["--codec", "ffv1"])
        assert done.returncode == 0, done.stderr.decode()
        assert "-> standard output (Matroska, 128x96)" in done.stderr.decode()
        saved = tmp_path / "stream.mkv"
        saved.write_bytes(done.stdout)
        facts = stream_facts(saved)
        assert facts["codec"] == "ffv1" and facts["audio"] == ["aac"] and facts["size"] == (96, 128)
        assert len(decode_all(saved)) == 9


class TestRefused:
    def test_resume_on_standard_output(self, clip):
        with pytest.raises(ConfigError, match="--resume needs an output file"):
            UpscaleConfig(clip, "-", resume=True)

    def test_a_folder_to_standard_output(self, tmp_path, tiny_checkpoint_path):
        from typer.testing import CliRunner

        from vggx.cli import app

        (tmp_path / "videos").mkdir()
        result = CliRunner().invoke(app, ["upscale", str(tmp_path / "videos"), "-", "--backend", "torch",
                                          "--checkpoint", str(tiny_checkpoint_path)])
        assert result.exit_code == 1
        assert "its videos go to a folder, not to standard output" in result.stderr
