"""The timing helper: percentiles, summaries, and CPU timing checked from both sides: a sleep gives a
lower bound (it never returns early), ``time.perf_counter_ns`` read around the timed call an upper
bound (the helper's own reads, float ``perf_counter``, sit between those two)."""

import statistics
import time

import numpy as np
import pytest
import torch

from profiler.timing import RegionTimer, percentile, summarize, time_once


def test_percentile_matches_numpy_and_bounds():
    xs = [0.3, 0.1, 0.2, 0.5, 0.4, 0.9, 0.05]
    for q in (0, 10, 50, 90, 99, 100):
        assert percentile(xs, q) == pytest.approx(np.percentile(xs, q))
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_summary_orders_and_median():
    xs = [0.010, 0.011, 0.012, 0.050, 0.013]
    s = summarize(xs)
    assert s.n == 5 and s.median_s == statistics.median(xs)
    assert s.min_s <= s.median_s <= s.p90_s <= s.p99_s <= s.max_s
    with pytest.raises(ValueError):
        summarize([])


def test_region_timer_agrees_with_wall_clock():
    timer = RegionTimer(torch.device("cpu"))
    t0 = time.perf_counter_ns()
    for _ in range(5):
        with timer.region():
            time.sleep(0.004)
    wall = (time.perf_counter_ns() - t0) / 1e9
    samples = timer.seconds()
    assert len(samples) == 5
    assert all(s >= 0.004 for s in samples)  # sleep lasts at least what was asked
    assert sum(samples) <= wall  # regions are inside the wall-clock span
    assert sum(samples) >= 0.8 * wall  # and cover nearly all of it


def test_time_once_lies_between_the_sleep_and_an_outer_clock():
    t0 = time.perf_counter_ns()
    out, seconds = time_once(lambda: (time.sleep(0.003), 7)[1], torch.device("cpu"))
    outer = (time.perf_counter_ns() - t0) / 1e9
    assert out == 7
    # Lower bound: the sleep never returns early. Upper bound: the outer reads enclose the helper's
    # own; 1 us covers float perf_counter's rounding (about 1e-12 s after days of uptime).
    assert 0.003 <= seconds <= outer + 1e-6
