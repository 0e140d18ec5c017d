"""FFmpeg filters on the frames before the model (``--vf``), as ffmpeg's ``-vf`` takes them.

A chain of filters separated by commas, written as FFmpeg's filtergraph syntax writes one (``nlmeans=s=2``,
``deblock,unsharp=5:5:0.5``, ``fps=24``, ``crop=iw:ih-140``, ``'eq=gamma=1.1:saturation=1.2'``; a ``\\`` or quotes
keep a comma inside a filter's options): what an upscaler's users run before it anyway (a denoiser or deblocker for
compressed sources, which a GAN would otherwise sharpen into detail; a rate change; a colour fix), in the run itself,
so the audio, subtitles, chapters, ``--resume`` and ``--crop auto`` go on working, which a pipe from ``ffmpeg -vf``
into ``vggx upscale -`` loses. A graph of several inputs or outputs (``[labels]``, ``;``) is refused: one stream in,
one out.

What the chain does to the frames' size, pixel shape, pixel format and rate is found before any work
(:meth:`FilterChain.probe`: a few made-up frames of the input's size, format and rate through it), so the rest of a run
plans with what the model will see.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import statistics
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from vggx.errors import VideoError

__all__ = ["DEINTERLACERS", "FilterChain", "FilterProbe", "buffer_of", "drain", "linear_graph", "replace_info"]

_WHITESPACE = " \n\t\r"
# Filters that deinterlace or inverse-telecine: a chain with one of them does not get the interlacing check's warning
DEINTERLACERS = frozenset({"yadif", "bwdif", "w3fdif", "estdif", "nnedi", "kerndeint", "mcdeint", "fieldmatch",
                           "pullup", "detelecine", "yadif_cuda", "bwdif_cuda", "bwdif_vulkan"})
# The probe: made-up frames pushed until this many come out (their spacing is the chain's rate), or ...
_PROBE_OUTPUTS = 3
# ... this many seconds of them went in (a rate decimated to 1 frame/s needs a few seconds), then the chain is flushed
_PROBE_SECONDS = 4.0
_PROBE_MOST = 300
_PROBE_TIMED_SECONDS = 1.0  # a chain that retimes the frames (setpts): frames pushed to see by how much ...
_TIMING_SIZE = 64  # ... of this many pixels square
# A chain that lets nothing through at first (trim=start=5, select=gte(n\,100)) is probed on, up to this long.
_PROBE_LONGEST_SECONDS = 120.0
_PROBE_LONGEST = 3000
_PROBE_LONGEST_PIXELS = 1.5e9  # and this many pixels pushed (4K: 180 frames; a chain out only at the end: reverse)
_DYNAMIC_INPUTS = 1  # AVFILTER_FLAG_DYNAMIC_INPUTS: inputs made as options ask (bm3d's ref), not none
_SAR = re.compile(r"\bsar:(\d+)/(\d+)")


def _token(text: str, i: int, stop: str) -> tuple[str, int]:
    """One token of a filtergraph description from ``text[i:]``, as FFmpeg's ``av_get_token`` reads it: leading white
    space skipped, up to an unquoted, unescaped character of ``stop``; ``\\`` takes the next character as it is and
    quotes take what they hold (both removed), trailing white space dropped unless quoted or escaped. Returns the
    token and where it stopped."""
    i += len(text[i:]) - len(text[i:].lstrip(_WHITESPACE))
    out: list[str] = []
    end = 0  # out[:end] is kept whatever white space follows
    while i < len(text) and text[i] not in stop:
        c = text[i]
        i += 1
        if c == "\\" and i < len(text):
            out.append(text[i])
            i += 1
            end = len(out)
        elif c == "'":
            while i < len(text) and text[i] != "'":
                out.append(text[i])
                i += 1
            if i < len(text):
                i += 1
                end = len(out)
        else:
            out.append(c)
    while len(out) > end and out[-1] in _WHITESPACE:
        out.pop()
    return "".join(out), i


@dataclass(frozen=True)
class FilterProbe:
    """What a chain makes of frames (:meth:`FilterChain.probe`)."""

    width: int
    height: int
    pix_fmt: str
    sample_aspect_ratio: Fraction | None  # None: square (or unknown)
    rate: Fraction  # frames per second out (the spacing of the frames that came out; the input's if one did)
    time_base: Fraction  # of the frames out
    # how the chain stretches time (``setpts``): a second of input comes out as this many (``setpts=0.5*PTS``: 1/2);
    # 1 where the timeline is kept (a rate change, ``fps=12``, spaces the frames differently in the same seconds)
    time_scale: Fraction = Fraction(1)


@dataclass(frozen=True)
class FilterChain:
    """A parsed ``--vf`` chain: ``filters`` are (name, options or None) in order; ``text`` as given."""

    text: str
    filters: tuple[tuple[str, str | None], ...]
    turned: int = 0  # the display rotation the chain first turns the frames upright from (:meth:`upright`)

    @classmethod
    def parse(cls, text: str) -> FilterChain:
        """The chain in ``text``; ``VideoError`` naming what is wrong: an empty chain or filter, a filter this FFmpeg
        lacks, a source (no input) or labels and ``;`` (a graph of several streams)."""
        import av

        filters: list[tuple[str, str | None]] = []
        i = 0
        while True:
            name, i = _token(text, i, "=,;[]")
            options = None
            if i < len(text) and text[i] == "=":
                options, i = _token(text, i + 1, "[],;")
            if i < len(text) and text[i] in "[];":
                raise VideoError(f"--vf takes one chain of filters separated by commas, as ffmpeg's -vf does for one "
                                 f"stream; labels ([in], [out]) and ';' (a graph of several) are not taken: {text!r}")
            if not name:
                raise VideoError(f"--vf has an empty filter in {text!r}" if text.strip() else
                                 "--vf is empty: give FFmpeg filters, e.g. --vf nlmeans=s=2")
            kind = name.split("@", 1)[0]
            if kind not in av.filter.filters_available:
                raise VideoError(f"--vf: this FFmpeg (PyAV's, {av.ffmpeg_version_info}) has no filter {kind!r} "
                                 f"(python -c 'import av; print(sorted(av.filter.filters_available))' lists them)")
            spec = av.filter.Filter(kind)
            if not spec.inputs and not spec.flags & _DYNAMIC_INPUTS:
                raise VideoError(f"--vf: {kind} makes frames of its own (a source); the chain filters the input's")
            filters.append((kind, options or None))
            if i >= len(text):
                break
            i += 1  # the comma
        return cls(text, tuple(filters))

    def upright(self, rotation: int) -> FilterChain:
        """The chain after what ffmpeg's command line puts before a ``-vf`` for a stream shown turned (a phone held
        upright: ``rotation`` 90, counter-clockwise): ``transpose`` (or both flips for 180), so that the filters see
        the frames as they are shown and the output needs no rotation."""
        turn = {90: (("transpose", "cclock"),), 180: (("hflip", None), ("vflip", None)),
                270: (("transpose", "clock"),)}.get(rotation % 360)
        return self if turn is None else dataclasses.replace(self, filters=(*turn, *self.filters),
                                                             turned=rotation % 360)

    @property
    def label(self) -> str:
        """The chain in messages: ``--vf '...'`` as given, or what vggx put there itself (a turn upright alone)."""
        if self.text.strip():
            return f"--vf {self.text!r}"
        return f"turning the frames upright (from {self.turned} degrees)"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.filters)

    @property
    def deinterlaces(self) -> bool:
        """Whether a filter of the chain deinterlaces (or inverse-telecines) the frames."""
        return any(name in DEINTERLACERS for name in self.names)

    def graph(self, width: int, height: int, pix_fmt: str, time_base: Fraction, rate: Fraction,
              sample_aspect_ratio: Fraction | None = None, *, probe: bool = False):
        """A configured PyAV filter graph: a buffer of frames so described, the chain, a sink. ``VideoError`` with
        FFmpeg's own reason where it refuses the chain (an option a filter lacks, a value out of range, an audio
        filter). ``probe``: with ``setsar`` first (PyAV cannot set a frame's pixel shape, which the filters read from
        the frames) and ``showinfo`` last (nor read it)."""
        import av

        from .encode import library_messages

        sar = sample_aspect_ratio or Fraction(1)
        chain = [("setsar", f"sar={sar}"), *self.filters, ("showinfo", None)] if probe else self.filters
        with library_messages() as said:
            try:
                graph = linear_graph(buffer_of(width, height, pix_fmt, time_base, rate, sar), chain)
            except (av.error.FFmpegError, ValueError) as exc:
                failed = exc
            else:
                failed = None
        if failed is not None:
            why = "; ".join(said.errors) or str(getattr(failed, "strerror", None) or failed).strip()
            raise VideoError(f"{self.label}: FFmpeg refuses it ({why})")
        return graph

    def probe(self, width: int, height: int, pix_fmt: str, time_base: Fraction, rate: Fraction,
              sample_aspect_ratio: Fraction | None = None) -> FilterProbe:
        """Made-up frames so described (noise: no two alike) through the chain, until :data:`_PROBE_OUTPUTS` come out
        or :data:`_PROBE_SECONDS` of them went in (while none has, up to :data:`_PROBE_LONGEST_SECONDS`): the size,
        pixel shape and format of the first out, and the rate their spacing gives. ``VideoError`` where the chain
        refuses such frames or lets none through."""
        import av
        import av.logging

        from .encode import ffmpeg_log

        graph = self.graph(width, height, pix_fmt, time_base, rate, sample_aspect_ratio, probe=True)
        pushes = _pushing(graph, _made_up(width, height, pix_fmt), rate, time_base)
        out = []
        pushed = 0
        most = min(_PROBE_MOST, max(_PROBE_OUTPUTS, int(_PROBE_SECONDS * rate)))
        longest = max(most, min(_PROBE_LONGEST, int(_PROBE_LONGEST_SECONDS * rate),
                                int(_PROBE_LONGEST_PIXELS / (width * height))))
        first_out = None  # frames pushed when the first came out
        try:
            with ffmpeg_log(av.logging.INFO) as logs:  # showinfo's lines
                while len(out) < _PROBE_OUTPUTS and pushed < (longest if first_out is None else first_out + most):
                    pushed, ready = next(pushes)
                    out.extend(ready)
                    if out and first_out is None:
                        first_out = pushed
                if len(out) < 2:
                    graph.push(None)
                    out.extend(drain(graph))
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.label}: FFmpeg fails on frames of the input's kind ({width}x{height} "
                             f"{pix_fmt}): {str(getattr(exc, 'strerror', None) or exc).strip()}") from None
        if not out:
            raise VideoError(f"{self.label} lets no frame through (none of the first {pushed} frames, "
                             f"{float(pushed / rate):.0f} s); to skip the start of a video, --start (and --frames) "
                             f"cut it without decoding what is skipped")
        first = out[0]
        times = [Fraction(f.pts) * f.time_base for f in out if f.pts is not None and f.time_base]
        steps = [b - a for a, b in itertools.pairwise(times) if b > a]
        tick = Fraction(first.time_base or time_base)
        rate_out = _rate(steps, tick, rate, tick == time_base) if steps else rate
        shown = [m.groups() for _, name, line in logs if name == "showinfo" and (m := _SAR.search(line))]
        num, den = (int(n) for n in shown[0]) if shown else (0, 0)
        sar = Fraction(num, den) if num and den else None  # 0/1 (and n/0): not set
        return FilterProbe(
            width=first.width, height=first.height, pix_fmt=first.format.name,
            sample_aspect_ratio=sar if sar != 1 else None,
            rate=rate_out, time_base=tick,
            time_scale=self._retiming(pix_fmt, time_base, rate, rate_out) if "setpts" in self.names else Fraction(1))

    def _retiming(self, pix_fmt: str, time_base: Fraction, rate: Fraction, rate_out: Fraction) -> Fraction:
        """How much the chain's setpts retimes the frames (every other filter keeps their times, or drops, adds or
        moves frames along the same timeline), looked at over a second of frames: a frame's worth of error in a
        second of them. On small frames, since setpts reads times, not pixels, while every filter in the chain runs
        on each frame (a second of 1080p through nlmeans: half a minute): the whole chain at
        :data:`_TIMING_SIZE`, else (a filter that needs the input's size) its setpts alone, else 1."""
        import av

        setpts = FilterChain(self.text, tuple(f for f in self.filters if f[0] == "setpts"))
        size = _TIMING_SIZE
        for chain in (self, setpts):
            try:
                pushes = _pushing(chain.graph(size, size, pix_fmt, time_base, rate), _made_up(size, size, pix_fmt),
                                  rate, time_base)
                came = {}  # frames pushed -> the time of the last frame out then, and how many
                pushed, enough = 0, max(_PROBE_OUTPUTS, int(_PROBE_TIMED_SECONDS * rate))
                while (pushed < enough or len(came) < 2) and pushed < _PROBE_MOST:
                    pushed, ready = next(pushes)
                    if ready and ready[-1].pts is not None and ready[-1].time_base:
                        came[pushed] = Fraction(ready[-1].pts) * ready[-1].time_base, len(ready)
            except (VideoError, av.error.FFmpegError):
                continue
            return _time_scale(came, rate, rate_out)
        return Fraction(1)

    def describe(self) -> str:
        turned = f" (on the frames turned upright, from {self.turned} degrees)" if self.turned else ""
        return self.text.strip() + turned


def _rate(steps: list[Fraction], tick: Fraction, rate_in: Fraction, rounded: bool) -> Fraction:
    """The rate of frames ``steps`` seconds apart in a time base of ``tick`` seconds. Where the time base rounds
    their times (``rounded``: it is the input's, whose frames were stamped at the input's rate, or the steps vary: 25
    frames/s in 1/12288 s are 491 or 492 ticks apart), the input's rate times the simple ratio within a tick of
    them (25, 50, 12.5); else their spacing as it is (a filter that sets its own rate, ``fps=24000/1001``, spaces
    them exactly in its own time base)."""
    step = statistics.median(steps)
    if rounded or len(set(steps)) > 1:
        ratio = (1 / step / rate_in).limit_denominator(8)
        if ratio and abs(1 / (rate_in * ratio) - step) <= tick:
            return rate_in * ratio
    return Fraction(1 / step).limit_denominator(1_000_000)


def _time_scale(came: dict[int, tuple[Fraction, int]], rate_in: Fraction, rate_out: Fraction) -> Fraction:
    """How much a chain stretches time, from ``came`` (frames pushed at ``rate_in`` -> the time of the last frame out
    then, and how many came out): the time between the first and the last such frame over the time pushed between
    them, which a filter's delay (``fps`` holds a frame back) does not move. Where each push let one frame out, those
    are the times of the frames pushed, moved: the simplest ratio within 2 %; else which push lets a frame of
    ``rate_out`` out is known to a frame: the simplest ratio within that, 1 first. 1 where frames came out at fewer
    than two pushes (a chain that gives its frames only when flushed: ``reverse``)."""
    if len(came) < 2:
        return Fraction(1)
    p0, p1 = min(came), max(came)
    pushed = Fraction(p1 - p0) / rate_in  # seconds
    scale = (came[p1][0] - came[p0][0]) / pushed
    if scale <= 0:
        return Fraction(1)
    one_each = all(came.get(p, (0, 0))[1] == 1 for p in range(p0 + 1, p1 + 1))
    near = scale / 50 if one_each else max(1 / (rate_out * pushed), scale / 50)
    for simple in (Fraction(1), *(scale.limit_denominator(d) for d in range(1, 9))):
        if simple and abs(simple - scale) <= near:
            return simple
    return scale.limit_denominator(1000)


def _pushing(graph, frames: list, rate: Fraction, time_base: Fraction):
    """Push ``frames`` (made up: :func:`_made_up`) into ``graph`` in turn, stamped a frame of ``rate`` apart in
    ``time_base``; after each push, (frames pushed so far, the frames that came out)."""
    step = 1 / (rate * time_base)
    for pushed in itertools.count():
        frame = frames[pushed % len(frames)]
        frame.pts, frame.time_base = round(pushed * step), time_base
        graph.push(frame)
        yield pushed + 1, list(drain(graph))


def _made_up(width: int, height: int, pix_fmt: str) -> list:
    """Three frames of noise of this size and pixel format (each unlike the others: a filter that drops repeated
    frames keeps them)."""
    import av

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(3):
        rgb = av.VideoFrame.from_ndarray(rng.integers(16, 236, (height, width, 3), dtype=np.uint8), format="rgb24")
        try:
            frame = rgb.reformat(format=pix_fmt)
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoError(f"--vf: frames of pixel format {pix_fmt} cannot be made up to look at what the filters "
                             f"do ({exc})") from None
        frames.append(frame)
    return frames


def buffer_of(width: int, height: int, pix_fmt: str, time_base: Fraction, rate: Fraction,
              sample_aspect_ratio: Fraction | None = None) -> str:
    """The options of FFmpeg's ``buffer`` source for frames so described."""
    return (f"video_size={width}x{height}:pix_fmt={pix_fmt}:time_base={time_base}:frame_rate={rate}:"
            f"pixel_aspect={sample_aspect_ratio or Fraction(1)}")


def linear_graph(buffer: str, filters) -> object:
    """A configured PyAV filter graph: a ``buffer`` source (its options: :func:`buffer_of`), ``filters`` ((name,
    options or None) in order), a sink."""
    import av

    graph = av.filter.Graph()
    nodes = [graph.add("buffer", buffer)]
    nodes += [graph.add(name, options) if options is not None else graph.add(name) for name, options in filters]
    nodes.append(graph.add("buffersink"))
    for a, b in itertools.pairwise(nodes):
        a.link_to(b)
    graph.configure()
    return graph


def drain(graph):
    """Frames a filter graph has ready (it raises BlockingIOError for more input, EOFError when flushed)."""
    while True:
        try:
            yield graph.pull()
        except (BlockingIOError, EOFError):
            return


def replace_info(info, probe: FilterProbe):
    """``info`` (a :class:`vggx.video.decode.VideoInfo`) as the chain leaves the frames: their size, pixel shape,
    format, bits, alpha and rate (the frame count scaled with the rate and with the time the chain stretches or
    shrinks: ``setpts=0.5*PTS`` doubles the rate and keeps every frame)."""
    from .decode import has_alpha
    from .depth import component_depth

    frames = info.frames
    if frames is not None and (probe.rate != info.rate or probe.time_scale != 1):
        frames = max(1, round(frames * probe.time_scale * probe.rate / info.rate))
    return dataclasses.replace(
        info, width=probe.width, height=probe.height, sample_aspect_ratio=probe.sample_aspect_ratio,
        pix_fmt=probe.pix_fmt, bit_depth=component_depth(probe.pix_fmt), has_alpha=has_alpha(probe.pix_fmt),
        rate=probe.rate, time_base=probe.time_base, frames=frames)
