"""Window and tile arithmetic (``client/windows.py``) and the tiled stitching of ``upscale_frames``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vggx.client import ModelInfo, upscale_frames
from vggx.client.windows import (
    WindowStream,
    balanced_tiles_1d,
    cut_windows,
    default_context,
    last_source_needed,
    memory_tile,
    mirror_index,
    plan_tiles,
    plan_tiles_1d,
    plan_windows,
    smaller_tile,
    smallest_tile,
)


class TestMirror:
    def test_reflects_without_repeating_the_edge(self):
        assert [mirror_index(i, 5) for i in range(-3, 9)] == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0]

    def test_single_frame_clip_maps_everything_to_it(self):
        assert {mirror_index(i, 1) for i in range(-4, 5)} == {0}


class TestWindows:
    @pytest.mark.parametrize("window", [1, 2, 3, 5, 8])
    @pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 12, 31])
    def test_kept_frames_cover_the_clip_once_in_order(self, n, window):
        windows = plan_windows(n, window)
        kept = [i for w in windows for i in range(w.keep_start, w.keep_end)]
        assert kept == list(range(n))
        for w in windows:
            assert len(w.sources) == window and all(0 <= s < n for s in w.sources)

    @pytest.mark.parametrize("n", [12, 30])
    def test_kept_frames_are_the_centre_of_their_window(self, n):
        window, context = 8, default_context(8)
        for w in plan_windows(n, window, context):
            assert w.offset == context == 2
            # position offset + j of the window holds kept frame keep_start + j
            centre = [w.sources[w.offset + j] for j in range(w.keep_count)]
            assert centre == list(range(w.keep_start, w.keep_end))

    def test_first_and_last_windows_are_mirror_padded(self):
        first, _, last = plan_windows(12, 8, 2)
        assert first.sources == (2, 1, 0, 1, 2, 3, 4, 5)
        assert last.sources == (6, 7, 8, 9, 10, 11, 10, 9)

    def test_clip_shorter_than_a_window_is_mirrored_to_fill_it(self):
        (only,) = plan_windows(3, 8, 2)
        assert only.sources == (2, 1, 0, 1, 2, 1, 0, 1) and (only.keep_start, only.keep_end) == (0, 3)

    def test_last_source_needed_is_the_window_end(self):
        assert [last_source_needed(k, 8, 2) for k in range(3)] == [5, 9, 13]

    def test_context_must_leave_a_centre(self):
        with pytest.raises(ValueError, match=r"context must be in 0\.\.3 for window 8"):
            plan_windows(10, 8, 4)


class TestTiles:
    @pytest.mark.parametrize("length", [1, 23, 32, 33, 57, 100, 1921])
    @pytest.mark.parametrize(("max_tile", "overlap"), [(32, 8), (64, 16), (40, 0)])
    def test_tiles_are_aligned_bounded_and_overlap(self, length, max_tile, overlap):
        tiles = plan_tiles_1d(length, max_tile, 8, overlap)
        assert tiles[0][0] == 0 and tiles[-1][1] == length
        for (a, b), (c, _) in itertools.pairwise(tiles):
            assert a % 8 == 0 and c % 8 == 0
            assert b - a <= max_tile and b - c >= overlap  # overlap with the next tile
            assert c > a
        assert tiles[-1][1] - tiles[-1][0] <= max_tile

    @pytest.mark.parametrize("length", [1, 23, 32, 33, 57, 100, 180, 1080, 1921])
    @pytest.mark.parametrize(("max_tile", "overlap"), [(32, 8), (64, 16), (40, 0), (128, 16), (960, 120)])
    def test_balanced_tiles_are_as_many_no_larger_and_still_valid(self, length, max_tile, overlap):
        plain = plan_tiles_1d(length, max_tile, 8, overlap)
        tiles = balanced_tiles_1d(length, max_tile, 8, overlap)
        assert len(tiles) == len(plain) and tiles[0][0] == 0 and tiles[-1][1] == length
        assert max(b - a for a, b in tiles) <= max(b - a for a, b in plain)
        for (a, b), (c, _) in itertools.pairwise(tiles):
            assert a % 8 == 0 and c % 8 == 0 and c > a and b - c >= overlap

    @pytest.mark.parametrize(("length", "max_tile", "overlap", "expected"), [
        (180, 128, 16, [(0, 104), (80, 180)]),  # not two of 128: 24 rows computed twice, not 72
        (1920, 960, 120, [(0, 720), (600, 1320), (1200, 1920)]),  # three of 720, not of 960
        (40, 24, 8, [(0, 24), (16, 40)]),  # already as small as two can be
    ])
    def test_balanced_tiles_shrink_to_what_their_number_needs(self, length, max_tile, overlap, expected):
        assert balanced_tiles_1d(length, max_tile, 8, overlap) == expected

    def test_frame_within_the_profile_is_one_tile(self):
        plan = plan_tiles((40, 56), (1088, 1920), 8, 4)
        assert plan.count == 1

    @pytest.mark.parametrize("size", [(40, 56), (41, 57), (97, 33)])
    def test_feather_weights_sum_to_one_everywhere(self, size):
        plan = plan_tiles(size, (24, 32), 8, 4)
        assert plan.count > 1
        total = np.zeros((size[0] * 4, size[1] * 4, 1), np.float64)
        for y0, y1, x0, x1, w in plan.tiles():
            assert w.shape == (4 * (y1 - y0), 4 * (x1 - x0), 1) and (w >= 0).all()
            total[4 * y0: 4 * y1, 4 * x0: 4 * x1] += w
        np.testing.assert_allclose(total, 1.0, atol=1e-6)

    @pytest.mark.parametrize(("rows", "scale", "tiles"), [
        (40, 4, [(0, 24), (16, 40)]),
        (97, 4, [(0, 40), (32, 72), (64, 97)]),
        (56, 3, [(0, 32), (24, 56)]),
    ])
    def test_feather_weights_ramp_linearly_and_symmetrically_across_each_overlap(self, rows, scale, tiles):
        """Each seam is a linear cross-fade over the overlap, in pixel centres: the tile before goes from 1 to 0 as
        the one after goes from 0 to 1, mirror images of each other, half and half at the overlap's middle; 1 where a
        tile is alone. A ramp shifted by half a pixel (a lopsided blend, the seam moved) or none at all (a box average)
        still sums to one."""
        plan = plan_tiles((rows, 16), (tiles[0][1], 16), 8, scale, overlap=8)
        assert plan.rows == tuple(tiles) and plan.cols == ((0, 16),)
        weights = [w[:, 0, 0].astype(np.float64) for *_, w in plan.tiles()]  # one column: the rows' 1-D weights
        for (a, b), w, (na, _), nw in zip(tiles, weights, tiles[1:], weights[1:], strict=False):
            n = (b - na) * scale  # the overlap, in output pixels
            up = (np.arange(n) + 0.5) / n  # the next tile's weight at each pixel centre of the overlap
            np.testing.assert_allclose(nw[:n], up, atol=1e-6)
            np.testing.assert_allclose(w[(na - a) * scale:], up[::-1], atol=1e-6)
            assert n % 2 == 0 and nw[n // 2 - 1] + nw[n // 2] == pytest.approx(1.0)  # 0.5 at the midpoint
        for i, ((a, b), w) in enumerate(zip(tiles, weights, strict=True)):  # alone: weight 1
            lo = (tiles[i - 1][1] - a) * scale if i else 0
            hi = (tiles[i + 1][0] - a) * scale if i + 1 < len(tiles) else (b - a) * scale
            assert lo < hi and (w[lo:hi] == 1.0).all()


class _NearestRunner:
    """A per-pixel model (nearest-neighbour ×4) with a small profile: tiling must not change its output."""

    def __init__(self, max_size=(24, 32), min_size=(16, 16)):
        self.info = ModelInfo(window=4, scale=4, size_multiple=8, min_size=min_size, max_size=max_size)
        self.description = "nearest"
        self.calls: list[tuple[int, ...]] = []

    def infer(self, lr):
        h, w = lr.shape[2:4]
        (min_h, min_w), (max_h, max_w) = self.info.min_size, self.info.max_size
        assert min_h <= h <= max_h and min_w <= w <= max_w
        self.calls.append(lr.shape)
        return lr.repeat(4, axis=2).repeat(4, axis=3)

    def close(self):
        pass


class TestUpscaleFrames:
    @pytest.mark.parametrize("size", [(40, 56), (41, 57), (70, 33)])
    def test_tiled_equals_untiled_for_a_per_pixel_model(self, size):
        frames = np.random.default_rng(0).integers(0, 256, (4, *size, 3), dtype=np.uint8)
        tiled = _NearestRunner()
        out = upscale_frames(tiled, frames, slice(1, 3))
        assert len(tiled.calls) > 1, "the frame should have been tiled"
        np.testing.assert_array_equal(out, frames[1:3].repeat(4, axis=1).repeat(4, axis=2))

    def test_frames_below_the_min_size_are_padded_and_cropped_back(self):
        runner = _NearestRunner(max_size=(64, 64), min_size=(16, 16))
        frames = np.random.default_rng(1).integers(0, 256, (4, 9, 13, 3), dtype=np.uint8)
        out = upscale_frames(runner, frames)
        assert runner.calls == [(1, 4, 16, 16, 3)]
        np.testing.assert_array_equal(out, frames.repeat(4, axis=1).repeat(4, axis=2))


class TestTileSizes:
    def test_smallest_tile_is_sixteen_or_the_models_minimum_on_whole_multiples(self):
        assert smallest_tile((16, 16), (1088, 1920), 8) == (16, 16)
        assert smallest_tile((8, 8), (1088, 1920), 8) == (16, 16)
        assert smallest_tile((20, 36), (1088, 1920), 8) == (24, 40)  # rounded up to the multiple
        assert smallest_tile((16, 16), (12, 1920), 4) == (12, 16)  # never above the max size

    def test_halves_the_longer_side_each_time_down_to_the_floor(self):
        sizes = [(1088, 1920)]
        while (nxt := smaller_tile(sizes[-1], (16, 16), 8)) is not None:
            sizes.append(nxt)
        assert sizes == [(1088, 1920), (1088, 960), (544, 960), (544, 480), (272, 480), (272, 240), (136, 240),
                         (136, 120), (64, 120), (64, 56), (32, 56), (32, 24), (16, 24), (16, 16)]

    def test_rounds_down_to_the_multiple_and_stops_at_the_floor(self):
        assert smaller_tile((40, 56), (16, 16), 8) == (40, 24)  # 56 / 2 = 28 -> 24
        assert smaller_tile((40, 24), (16, 16), 8) == (16, 24)  # 40 / 2 = 20 -> 16
        assert smaller_tile((24, 16), (16, 16), 8) == (16, 16)
        assert smaller_tile((16, 48), (16, 48), 8) is None  # neither side can shrink
        assert smaller_tile((16, 64), (16, 40), 8) == (16, 40)  # half is below the floor: the floor

    def test_a_square_tile_halves_one_side_then_the_other(self):
        assert smaller_tile((512, 512), (16, 16), 8) == (256, 512)
        assert smaller_tile((256, 512), (16, 16), 8) == (256, 256)

    def test_memory_tile_is_the_largest_of_a_fixed_ladder_whose_window_fits(self):
        """A fixed ladder: memory that comes and goes a little does not change the tiles (nor the output's bits)."""
        per_pixel = 50 * 1024  # the tiny model's estimate under onnxruntime before its memory pattern went
        fits = lambda budget, limit=(1088, 1920), floor=(16, 16), multiple=8: memory_tile(
            budget * 2**30, per_pixel, limit, floor, multiple)
        assert fits(1000) == fits(100) == (1088, 1920) and fits(99) == (720, 1280)  # 99.6 GiB whole
        assert fits(15.4) == fits(12) == (360, 640)  # 360x640: 11.0 GiB
        assert fits(10.9) == (264, 480)  # 270x480 on whole multiples of 8
        assert fits(1000, limit=(600, 800)) == (600, 800)  # never above the limit (the model's max, or --tile)
        assert fits(21, limit=(600, 800)) == (536, 800)
        assert fits(0.7, multiple=16) == (80, 160)  # 90x160 on whole multiples
        assert fits(0.001) == (16, 16) and fits(0.001, floor=(24, 40)) == (24, 40)  # none fits: the smallest
        # for a frame: sizes no larger than it (720 rows of 720x1280 fit where 720x1280 does not: 2 tiles, not 4)
        framed = lambda budget, frame: memory_tile(budget * 2**30, per_pixel, (1088, 1920), (16, 16), 8, frame)
        assert framed(25, (720, 1280)) == (720, 720) and fits(25) == (536, 960)
        assert plan_tiles((720, 1280), (720, 720), 8, 4).count == 2 < plan_tiles((720, 1280), fits(25), 8, 4).count
        # ... and turned where that makes fewer tiles (a phone's 1280x720 portrait: 320x176 in 25, 176x320 in 27),
        # not where it makes more (640x360 in 9, 360x640 in 8)
        assert framed(6, (1280, 720)) == (320, 176) and plan_tiles((1280, 720), (176, 320), 8, 4).count == 27
        assert plan_tiles((1280, 720), (320, 176), 8, 4).count == 25
        assert framed(12, (1280, 720)) == (360, 640) and plan_tiles((1280, 720), (640, 360), 8, 4).count == 9
        # what a tile of the frame holds is weighed: 400 rows of 720-wide tiles fit where 540x960 does not
        assert memory_tile(19 * 2**30, per_pixel, (1088, 1920), (16, 16), 8, frame=(400, 1900)) == (400, 720)
        assert fits(19) == (360, 640) and plan_tiles((400, 1900), (360, 640), 8, 4).count == 8
        assert plan_tiles((400, 1900), (400, 720), 8, 4).count == 3


class TestCutWindows:
    @pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9, 12, 13, 31])
    @pytest.mark.parametrize(("window", "context"), [(8, 2), (8, 0), (5, 1), (1, 0)])
    def test_a_stream_gives_the_windows_of_the_whole_clip(self, n, window, context):
        got = list(cut_windows(iter(range(n)), window, context))
        assert [w for w, _ in got] == plan_windows(n, window, context)
        for w, items in got:
            assert items == list(w.sources)  # the items themselves, in the window's order

    @pytest.mark.parametrize("first", [1, 2, 5])
    def test_from_a_later_window_on(self, first):
        assert [w for w, _ in cut_windows(iter(range(30)), 8, 2, first * 4)] == plan_windows(30, 8, 2)[first:]

    @pytest.mark.parametrize("first_frame", [1, 3, 6, 29])
    def test_a_window_half_done_keeps_only_the_frames_after(self, first_frame):
        whole = {w.index: w for w in plan_windows(30, 8, 2)}
        got = list(cut_windows(iter(range(30)), 8, 2, first_frame))
        assert got[0][0].keep_start == first_frame
        assert [i for w, _ in got for i in range(w.keep_start, w.keep_end)] == list(range(first_frame, 30))
        for w, items in got:  # the same runs as the whole clip's: the kept frames at the same positions
            full = whole[w.index]
            assert items == list(full.sources) and w.keep_end == full.keep_end
            assert w.offset - full.offset == w.keep_start - full.keep_start

    def test_each_window_comes_as_soon_as_its_frames_have(self):
        read = []

        def frames():
            for i in range(40):
                read.append(i)
                yield i

        for w, _ in cut_windows(frames(), 8, 2):
            if w.keep_end < 40 - 8:  # before the end: nothing read beyond the window's last frame
                assert read[-1] == last_source_needed(w.index, 8, 2)

    def test_at_most_two_windows_of_frames_are_held(self):
        import weakref

        class Frame:
            pass

        alive = weakref.WeakSet()

        def frames():
            for _ in range(200):
                f = Frame()
                alive.add(f)
                yield f

        most = 0
        for _, items in cut_windows(frames(), 8, 2):
            del items  # no cycles: the frames go as their last reference does (no gc pass needed)
            most = max(most, len(alive))
        assert 8 <= most <= 2 * 8, most  # a window's frames at least, never more than two windows


def _shot_windows(n, cuts, window, context):
    """The windows of each shot ``[a, b)`` planned as a clip on its own, shifted to the clip's frame numbers."""
    bounds = [0, *cuts, n]
    out = []
    for a, b in itertools.pairwise(bounds):
        for w in plan_windows(b - a, window, context):
            out.append((tuple(a + i for i in w.sources), a + w.keep_start, a + w.keep_end, w.offset))
    return out


class TestShots:
    """A scene cut ends a shot as the end of a clip would: each shot is windowed on its own."""

    @pytest.mark.parametrize("cuts", [[13], [1], [4, 8], [5, 6, 7], [2, 19, 20, 29], list(range(1, 30))])
    @pytest.mark.parametrize(("window", "context"), [(8, 2), (8, 0), (5, 1)])
    def test_each_shot_is_windowed_as_a_clip_of_its_own(self, cuts, window, context):
        stream = WindowStream(iter(range(30)), window, context, cut=lambda i: i in cuts)
        got = list(stream)
        assert [(tuple(w.sources), w.keep_start, w.keep_end, w.offset) for w, _ in got] == \
            _shot_windows(30, cuts, window, context)
        assert [w.index for w, _ in got] == list(range(len(got))) and stream.windows == len(got)
        assert stream.cuts == cuts
        for w, items in got:
            assert items == list(w.sources)
            shot = max([0, *[c for c in cuts if c <= w.keep_start]])
            end = min([30, *[c for c in cuts if c > w.keep_start]])
            assert all(shot <= i < end for i in items), (w, cuts)  # one shot's frames only

    def test_a_cut_on_frame_0_or_none_at_all_changes_nothing(self):
        assert [w for w, _ in cut_windows(iter(range(20)), 8, 2, cut=lambda i: i == 0)] == plan_windows(20, 8, 2)
        assert [w for w, _ in cut_windows(iter(range(20)), 8, 2, cut=lambda i: False)] == plan_windows(20, 8, 2)

    def test_the_cut_test_sees_every_item_once_in_order(self):
        seen = []
        list(cut_windows(iter(range(25)), 8, 2, cut=lambda i: seen.append(i) or i == 9))
        assert seen == list(range(25))

    @pytest.mark.parametrize("first_frame", [4, 9, 12, 13, 14, 22])
    def test_a_resumed_run_goes_on_with_the_same_windows(self, first_frame):
        def cuts(i):
            return i in (9, 14)

        whole = list(cut_windows(iter(range(30)), 8, 2, cut=cuts))
        got = list(cut_windows(iter(range(30)), 8, 2, first_frame, cut=cuts))
        assert [i for w, _ in got for i in range(w.keep_start, w.keep_end)] == list(range(first_frame, 30))
        by_index = {w.index: (w, items) for w, items in whole}
        for w, items in got:
            full, full_items = by_index[w.index]
            assert items == full_items and w.sources == full.sources and w.keep_end == full.keep_end

    def test_frames_of_an_ended_shot_are_let_go(self):
        import weakref

        class Frame:
            def __init__(self, i):
                self.i = i

        alive = weakref.WeakSet()

        def frames():
            for i in range(120):
                f = Frame(i)
                alive.add(f)
                yield f

        most = 0
        for _, items in cut_windows(frames(), 8, 2, cut=lambda f: f.i % 11 == 0):
            del items
            most = max(most, len(alive))
        assert most <= 2 * 8, most
