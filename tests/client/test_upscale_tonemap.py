"""HDR to SDR (``--tonemap``, ``vggx.video.tonemap``): the standard curves checked at their known points, and an HDR10
file read, upscaled and written as SDR BT.709."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from test_upscale_depth import MASTERING, make_hdr, read16
from videoclips import stream_facts

from vggx.client import UpscaleConfig, upscale
from vggx.video import open_video
from vggx.video.depth import ColorInfo, round_to_8
from vggx.video.tonemap import SDR_PEAK, ToneMap, bt2390, pq_eotf, pq_inverse


class TestCurves:
    def test_pq_at_its_known_points(self):
        # ST 2084: 100 cd/m² is signal 0.5081, 1000 is 0.7518, 10000 is 1
        np.testing.assert_allclose(pq_inverse(np.array([0, 100, 1000, 10000])), [0, 0.50808, 0.75183, 1], atol=1e-4)
        nits = np.geomspace(0.01, 10000, 50)
        np.testing.assert_allclose(pq_eotf(pq_inverse(nits)), nits, rtol=1e-9)

    def test_bt2390_keeps_the_shadows_and_lands_the_peak(self):
        below_knee = np.array([0.1, 1, 10, 25])  # 1000 -> 100 cd/m²: the knee is at 27
        np.testing.assert_allclose(bt2390(below_knee, 1000), below_knee, rtol=1e-9)
        assert bt2390(np.array([1000.0]), 1000)[0] == pytest.approx(SDR_PEAK)  # the source's peak: SDR's
        assert bt2390(np.array([4000.0]), 1000)[0] == pytest.approx(SDR_PEAK)  # brighter than its peak: clipped
        curve = bt2390(np.geomspace(0.01, 4000, 400), 4000)
        assert np.all(np.diff(curve) > 0) and curve[-1] == pytest.approx(SDR_PEAK)  # smooth, no reversal
        np.testing.assert_allclose(bt2390(np.array([20.0, 80.0, 150.0]), 90), [20, 80, 100])  # an SDR-range source

    def test_the_mapping_keeps_greys_grey_and_clips_bt2020s_own_colours(self):
        tm = ToneMap("PQ", 1000)
        codes = np.rint(pq_inverse(np.array([0, 1, 10, 100, 1000])) * 65535).astype(np.uint16)
        grey = tm(np.repeat(codes[:, None], 3, axis=1))
        assert (grey[:, 0] == grey[:, 1]).all() and (grey[:, 1] == grey[:, 2]).all()
        assert grey[0, 0] == 0 and grey[-1, 0] == 65535 and np.all(np.diff(grey[:, 0].astype(int)) > 0)
        # 10 cd/m² is 10 % of SDR's white, below the knee: BT.1886's 0.1^(1/2.4)
        assert grey[2, 0] / 65535 == pytest.approx(0.1 ** (1 / 2.4), abs=2e-4)
        green = tm(np.array([[0, codes[4], 0]], np.uint16))[0]  # BT.2020's green at its peak: outside BT.709
        assert green[1] == 65535 and green[0] == 0 and green[2] == 0

    def test_hlg_reference_white_and_peak(self):
        tm = ToneMap("HLG", 1000)
        peak, white = tm(np.array([[65535] * 3, [round(0.75 * 65535)] * 3], np.uint16)) / 65535
        assert peak == pytest.approx(1.0, abs=1e-4)
        assert 0.9 < white[0] < 1.0  # BT.2408's HLG reference white (75 %, 203 cd/m² on the 1000 one) near SDR's

    @pytest.mark.parametrize(("color", "want"), [
        (ColorInfo(9, 16, 9, MASTERING, (1000, 400)), ("PQ", 1000)),  # MaxCLL
        (ColorInfo(9, 16, 9, MASTERING.replace("L(10000000", "L(40000000"), None), ("PQ", 4000)),  # the display
        (ColorInfo(9, 16, 9), ("PQ", 1000)),  # nothing said: HDR10's usual 1000
        (ColorInfo(9, 18, 9), ("HLG", 1000)),
        (ColorInfo(1, 1, 1), None),
    ])
    def test_the_peak_comes_from_the_metadata(self, color, want):
        tm = ToneMap.of(color)
        assert (tm.transfer, tm.peak) == want if want else tm is None


class TestUpscale:
    def test_the_reader_hands_the_model_sdr(self, tmp_path):
        src = make_hdr(tmp_path / "hdr.mkv", frames=3)
        with open_video(src, tonemap=True) as r:
            assert r.info.color is None  # what the rest of the run sees: SDR
            frames = [f.image for f in r]
            assert r.tone == ToneMap("PQ", 1000) and r.color is None
        for got, hdr in zip(frames, read16(src), strict=True):
            np.testing.assert_array_equal(got, round_to_8(ToneMap("PQ", 1000)(hdr)))

    def test_an_hdr10_file_comes_out_sdr_bt709(self, tmp_path, torch_runner):
        import av

        src = make_hdr(tmp_path / "hdr.mkv", frames=6)
        out = tmp_path / "sdr.mp4"
        result = upscale(UpscaleConfig(src, out, tonemap=True), runner=torch_runner)
        assert result.tonemap == "PQ HDR (peak 1000 cd/m²) tone-mapped to SDR BT.709 (100 cd/m²)"
        assert result.hdr is None and result.output_bits == 8
        facts = stream_facts(out)
        assert facts["pix_fmt"] == "yuv420p" and facts["color"] == (1, 1, 1, 1)  # BT.709, limited range
        with av.open(str(out)) as c:
            assert ColorInfo.of_frame(next(c.decode(video=0))).mastering is None  # no HDR10 metadata

    def test_an_sdr_input_is_left_as_it_is_with_a_warning(self, clips, tmp_path, torch_runner, caplog):
        with caplog.at_level(logging.WARNING, logger="vggx.video.decode"):
            result = upscale(UpscaleConfig(clips["aac"], tmp_path / "o.mp4", tonemap=True, frames=3),
                             runner=torch_runner)
        assert result.tonemap is None and "is not HDR (PQ or HLG): --tonemap leaves it" in caplog.text


@pytest.mark.parametrize("threads", [2, 3])
def test_frames_converted_ahead_in_threads_are_the_same_frames_in_order(tmp_path, threads):
    """Deep inputs (and tone mapping) convert frames in a pool on many-core machines: the very frames, in order,
    fine levels included; a read stopped early leaves no thread behind."""
    import threading

    src = make_hdr(tmp_path / "hdr.mkv", frames=9)

    def read(n, **kw):
        with open_video(src, tonemap=True, max_frames=kw.pop("max_frames", None)) as r:
            r.fine, r.convert_threads = True, n
            return [(f.index, f.pts, f.image.tobytes(), f.fine.tobytes()) for f in r]

    alone = read(1)
    assert len(alone) == 9 and read(threads) == alone
    before = threading.active_count()
    with open_video(src, tonemap=True) as r:
        r.convert_threads = threads
        for i, _ in enumerate(r):
            if i == 2:
                break
    assert threading.active_count() <= before


def test_the_cli_says_the_tone_mapping(cli, tmp_path):
    src = make_hdr(tmp_path / "hdr.mkv", frames=4)
    result = cli(src, tmp_path / "sdr.mp4", "--tonemap")
    assert result.exit_code == 0, result.output
    assert ("PQ HDR (peak 1000 cd/m²) tone-mapped to SDR BT.709 (100 cd/m²); 10-bit input -> 8-bit output"
            in result.stdout)
