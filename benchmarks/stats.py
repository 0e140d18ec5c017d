"""Pure statistics of the benchmark harness (no torch, no clients): tested on known latencies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LatencyStats", "WindowStats", "latency_stats", "window_stats"]


@dataclass(frozen=True)
class LatencyStats:
    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def latency_stats(latencies_s: list[float] | np.ndarray) -> LatencyStats:
    """Percentiles of request latencies given in seconds, reported in ms.

    Nearest-rank percentiles (the smallest latency with at least q% of requests at or below it), as
    perf_analyzer reports them, so the two agree on the same samples.
    """
    lat = np.sort(np.asarray(latencies_s, dtype=np.float64)) * 1e3
    if lat.size == 0:
        raise ValueError("no latencies to summarise")

    def rank(q: float) -> float:
        k = max(1, int(np.ceil(q / 100.0 * lat.size)))
        return float(lat[k - 1])

    return LatencyStats(int(lat.size), float(lat.mean()), rank(50), rank(90), rank(99), float(lat[-1]))


@dataclass(frozen=True)
class WindowStats:
    """Throughput over several measurement windows: the median, and how far the windows spread."""

    windows: tuple[float, ...]
    median: float
    spread: float  # (max - min) / median
    stable: bool


def window_stats(throughputs: list[float], max_spread: float) -> WindowStats:
    """Summarise per-window throughputs; a run is unstable when their spread exceeds ``max_spread``."""
    if not throughputs:
        raise ValueError("no measurement windows")
    arr = np.asarray(throughputs, dtype=np.float64)
    med = float(np.median(arr))
    spread = float((arr.max() - arr.min()) / med) if med > 0 else float("inf")
    return WindowStats(tuple(float(x) for x in arr), med, spread, spread <= max_spread)
