"""The harness's statistics on known latencies and throughputs."""

from __future__ import annotations

import numpy as np
import pytest

from vggx.benchmarks.stats import latency_stats, window_stats


def test_nearest_rank_percentiles_of_1_to_100_ms():
    stats = latency_stats(np.arange(1, 101) / 1e3)  # 1 ms .. 100 ms, shuffled order must not matter
    assert stats.count == 100
    assert stats.p50_ms == pytest.approx(50.0)
    assert stats.p90_ms == pytest.approx(90.0)
    assert stats.p99_ms == pytest.approx(99.0)
    assert stats.max_ms == pytest.approx(100.0)
    assert stats.mean_ms == pytest.approx(50.5)


def test_percentiles_ignore_order_and_handle_few_samples():
    rng = np.random.default_rng(0)
    lat = rng.permutation(np.arange(1, 11) / 1e3)
    stats = latency_stats(lat)
    assert (stats.p50_ms, stats.p90_ms, stats.p99_ms) == pytest.approx((5.0, 9.0, 10.0))
    single = latency_stats([0.25])
    assert single.p50_ms == single.p99_ms == pytest.approx(250.0)
    with pytest.raises(ValueError):
        latency_stats([])


def test_window_spread_and_stability_flag():
    stable = window_stats([10.0, 10.5, 9.5], max_spread=0.15)
    assert stable.median == 10.0 and stable.spread == pytest.approx(0.1) and stable.stable
    unstable = window_stats([10.0, 14.0, 9.0], max_spread=0.15)
    assert unstable.spread == pytest.approx(0.5) and not unstable.stable
