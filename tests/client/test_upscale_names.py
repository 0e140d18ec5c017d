"""``vggx upscale`` on names and settings FFmpeg reads its own way: a colon in a local file's name (a protocol to
FFmpeg), an output name as long as the file system takes (its hidden part-name is longer), a CRF the encoder
refuses (opened with the audio's first packet), Rich's emoji codes in messages, and a dry run of a folder."""

from __future__ import annotations

import shutil

import pytest
from videoclips import make_video


def _one_error(result, text: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Six frames with AAC audio: the first muxed packet is an audio one, which opens the file and encoder."""
    return make_video(tmp_path_factory.mktemp("names") / "clip.mp4", frames=6, size=(24, 32), audio="aac")


def test_a_colon_in_the_input_and_output_names_is_a_file_not_a_protocol(cli, clip, tmp_path):
    """Screen and camera recorders name files by time (``2024-01-01T10:30:00.mp4``); FFmpeg read "2024-01-01T10" as
    a protocol ("Protocol not found") for the input and for the output's hidden part file."""
    import av

    src = tmp_path / "2024-01-01T10:30:00.mp4"
    shutil.copyfile(clip, src)
    out = tmp_path / "up T10:30.mp4"
    result = cli(src, out, "--frames", "4")
    assert result.exit_code == 0, result.output
    with av.open(f"file:{out}") as c:
        assert len(c.streams.audio) == 1
        assert sum(1 for _ in c.decode(video=0)) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, out.name])


def test_an_output_name_as_long_as_the_file_system_takes_is_written(cli, clip, tmp_path):
    """255 bytes, the longest name: the hidden part file's name is shortened to fit (it was not, and the run ended
    in a traceback and SIGABRT)."""
    out = tmp_path / ("a" * 251 + ".mp4")
    result = cli(clip, out, "--frames", "2")
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


@pytest.mark.parametrize(("codec", "crf"), [("libx265", "55"), ("libx264", "52")])
def test_a_crf_past_the_encoders_scale_is_refused_before_any_work(cli, clip, tmp_path, codec, crf):
    """x265 refused to open at CRF 55 (a traceback where the audio's first packet opened it), x264 clamped 52..63
    to 51 without a word."""
    _one_error(cli(clip, tmp_path / "o.mkv", "--codec", codec, "--crf", crf),
               f"--crf must be in 0..51 for {codec}, got {crf}")
    assert not list(tmp_path.iterdir())


def test_messages_keep_colon_words_as_text(cli, clip, tmp_path):
    """``--crop 100:100:0:0`` was printed "100💯0:0" (Rich's emoji code :100:)."""
    line = _one_error(cli(clip, tmp_path / "o.mp4", "--crop", "100:100:0:0"), "--crop 100:100:0:0 ")
    assert "\U0001f4af" not in line


def test_a_dry_run_of_a_folder_writes_no_folder(cli, clip, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copyfile(clip, src / "a.mp4")
    shutil.copyfile(clip, src / "sub" / "b.mp4")
    result = cli(src, tmp_path / "out", "--recursive", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "2 to upscale, 0 skipped, 0 failed" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_a_y4m_file_is_written_uncompressed(cli, clip, tmp_path):
    """A ``.y4m`` name: uncompressed frames as on standard output (the default x264 went to the y4m muxer and failed
    after the work); another codec is refused before it."""
    import av

    out = tmp_path / "o.y4m"
    result = cli(clip, out, "--frames", "3")
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as c:
        assert c.format.name == "yuv4mpegpipe" and c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in c.decode(video=0)) == 3
    _one_error(cli(clip, tmp_path / "p.y4m", "--codec", "libx265"),
               "p.y4m: y4m holds uncompressed frames; --codec libx265 needs another container")
    assert [p.name for p in tmp_path.iterdir()] == ["o.y4m"]

