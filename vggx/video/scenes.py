"""Scene cuts: where a clip's frames stop being views of one scene, found with FFmpeg's ``scdet`` filter.

A temporal model that runs on frames from two shots aligns one to the other (flow, propagation, attention
along time) and carries details across the cut: ghosts of the last shot in the first frames of the next
and the other way round. The upscale pipeline ends a shot at each cut, as the end of a clip would
(:class:`~vggx.client.windows.WindowStream`), so that no window mixes two shots.

``scdet`` (libavfilter) scores each frame against the one before: the mean absolute difference of their
pixels in percent of the largest (``mafd``), or, where smaller, how much that changed from the previous
frame's (so a steady fast pan or a clip of noise, which differ a lot from frame to frame but always as much,
are not cuts). A frame scoring ``threshold`` or more starts a new shot. FFmpeg's documentation: "Good
values are in the [8.0, 14.0] range", default 10. The second frame a detector sees has no earlier
difference to compare with (its score is its ``mafd`` alone), so it is never taken for a cut: a one-frame
first shot is upscaled with the next one's frames, which costs nothing visible.

Held frames: animation drawn "on twos" (each drawing shown twice, as most anime is) or a variable-rate source filled
to a constant rate repeats frames. After a repeat, whose difference is nothing, scdet scores the next drawing by its
whole difference (nothing to compare it with), and fast motion scores a cut at every drawing: measured on a pattern
moving 13 % a frame, shown on twos, scdet cut at all 23 drawings of 48 frames, each restarting the windows. A frame
within 1 % (``mafd``, on every fourth pixel each way) of the last one scored is a repeat: it is not shown to scdet, so
the next drawing is scored against the last one, as if the repeats were not there. The one place this cannot see is a
clip's first drawing change (scdet's second frame, with nothing before it): after one or two repeats it is not a cut
(a drawing held on twos or threes), after a longer still it may be (a title card, then the film).

Flashes: a camera flash, lightning or a strobe makes one frame unlike both of its neighbours, which scdet scores as a
cut (and the frame after it, back to the scene, as none: its difference is as large as the one before). Cutting there
would end the shot for one bright frame and start the rest of the scene without the frames before it.
:meth:`SceneCuts.flagged` decides each frame one frame late: a frame that scores a cut while the frame after it looks
like the frame before it (their ``mafd`` under the threshold) is a flash, not a cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from typing import TypeVar

import numpy as np

from vggx.errors import ConfigError

__all__ = ["DEFAULT_SCENE_THRESHOLD", "SceneCuts", "mafd"]

T = TypeVar("T")

DEFAULT_SCENE_THRESHOLD = 10.0  # scdet's own default, percent of the largest change
HELD_MAFD = 1.0  # percent: a frame this close to the last one scored repeats it (module doc)


class SceneCuts:
    """Called on each frame of a clip in order (uint8 ``(h, w, 3)`` RGB, or more channels after those, ignored): whether
    that frame starts a new shot. ``scores`` and ``cuts`` keep every frame's score and the cut frames' numbers.

    Raises:
        ConfigError: a threshold outside (0, 100].
    """

    def __init__(self, threshold: float = DEFAULT_SCENE_THRESHOLD) -> None:
        if not 0 < threshold <= 100:
            raise ConfigError(f"the scene-cut threshold is a percentage in (0, 100], got {threshold:g}")
        self.threshold = float(threshold)
        self.scores: list[float] = []
        self.cuts: list[int] = []
        self.flashes: list[int] = []  # frames that scored a cut but were flashes (flagged)
        self.held: list[int] = []  # frames that repeated the last one scored (not shown to scdet)
        self._graph = None
        self._size: tuple[int, int] | None = None
        self._last: np.ndarray | None = None  # every fourth pixel of the last frame scdet scored
        self._shown = 0  # frames shown to scdet
        self._run = self._run_before = 0  # repeats since the last frame shown; those before the one just shown

    def _open(self, h: int, w: int) -> None:
        from .filters import buffer_of, linear_graph

        self._graph = linear_graph(buffer_of(w, h, "rgb24", Fraction(1, 25), Fraction(25)),
                                   [("scdet", f"threshold={self.threshold}")])
        self._size = (h, w)

    def score(self, image: np.ndarray) -> float:
        """``image``'s scdet score against the frame before it (0 for the first)."""
        import av

        h, w = image.shape[:2]
        if self._graph is None:
            self._open(h, w)
        elif (h, w) != self._size:
            raise ConfigError(f"frame {len(self.scores)} is {w}x{h}, the frames before {self._size[1]}x{self._size[0]}:"
                              " scene cuts are found between frames of one size")
        rgb = image[..., :3] if image.shape[-1] > 3 else image
        small = rgb[::4, ::4]
        if self._last is not None and mafd(self._last, small) < HELD_MAFD:  # a repeat: nothing new to score
            self._run += 1
            self.held.append(len(self.scores))
            self.scores.append(0.0)
            return 0.0
        self._last = np.array(small)
        self._shown += 1
        self._run_before, self._run = self._run, 0
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = len(self.scores)
        self._graph.push(frame)
        out = self._graph.pull()  # scdet passes each frame on as it comes, its score in the frame's metadata
        if out.pts != frame.pts:  # pragma: no cover - a libavfilter that held frames back: a bug to know of
            raise RuntimeError(f"scdet returned frame {out.pts} for frame {frame.pts}")
        value = float(out.metadata.get("lavfi.scd.score", 0.0))
        self.scores.append(value)
        return value

    def __call__(self, image: np.ndarray) -> bool:
        index = len(self.scores)
        score = self.score(image)
        # scdet's second frame has no difference before it to be compared with: never a cut where it follows the first
        # at once or after a drawing's repeats (on twos or threes); after a longer still (a title card) it may be
        first = self._shown == 2 and self._run_before <= 2
        cut = score >= self.threshold and not first  # (frame 0 scores 0; frame 1 is scdet's second)
        if cut:
            self.cuts.append(index)
        return cut

    def flagged(self, items: Iterable[T], image: Callable[[T], np.ndarray] = lambda item: item
                ) -> Iterator[tuple[T, bool]]:
        """``(item, starts a shot)`` for each of ``items`` (``image(item)``: its RGB frame), one item late: a frame
        scoring a cut whose next frame looks like its previous one is a flash, not a cut (see the module doc). The
        frame straight after a cut is scdet's second frame of a shot: its score is its own change (the one before it,
        the cut's, is no motion to compare with), so in a shot of fast motion it scores a cut too; it is one only
        where the change after it differs from its own by the threshold (a one-frame shot between two others), not
        where the motion goes on (the changes between drawings: animation's repeats in between are passed over, and
        waited past, the items still coming back in order)."""
        before = held = None  # the image before the held item; (item, image, its index, scored a cut)
        after_cut = False  # no drawing but repeats since the item that started a shot
        waiting: list[T] = []  # the held item's repeats, behind it while its check waits for the next drawing
        repeats: set[int] = set()
        for item in items:
            frame = image(item)
            cut = self(frame)
            index = len(self.scores) - 1
            if self.held and self.held[-1] == index:
                repeats.add(index)
            if held is not None:
                h_item, h_frame, h_index, h_cut = held
                if h_cut and after_cut and index in repeats:  # a repeat of it: no change to compare with yet
                    waiting.append(item)
                    continue
                if h_cut and before is not None and mafd(before, frame) < self.threshold:
                    h_cut = False
                    self.cuts.remove(h_index)
                    self.flashes.append(h_index)
                elif h_cut and after_cut and abs(mafd(h_frame, frame) - mafd(before, h_frame)) < self.threshold:
                    h_cut = False  # the new shot's motion, going on
                    self.cuts.remove(h_index)
                yield h_item, h_cut
                yield from ((w, False) for w in waiting)
                waiting.clear()
                before, after_cut = h_frame, h_cut or (after_cut and h_index in repeats)
            held = (item, frame, index, cut)
        if held is not None:
            yield held[0], held[3]
            yield from ((w, False) for w in waiting)


def mafd(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 frames' RGB, in percent of the largest (scdet's ``mafd``, in RGB)."""
    return float(np.abs(a[..., :3].astype(np.int16) - b[..., :3]).mean() / 255 * 100)
