"""The one timing discipline used everywhere in the profiler.

- Warm-up is run and discarded by the caller before anything is timed (compilation, autotuning,
  allocator growth and cold caches stay out of the numbers).
- The device is synchronised before every clock read. On CUDA each timed region gets its own pair of
  CUDA events; on CPU ``time.perf_counter`` is read after ``torch.cpu.synchronize``-equivalent
  completion (CPU ops are synchronous).
- Every timed region is kept (per decode step), so medians and tail percentiles come from the raw
  samples rather than from a mean.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable, Sequence

import numpy as np
import torch


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (a no-op on CPU, whose ops return when done)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RegionTimer:
    """Times a sequence of regions on one device and keeps every sample (seconds).

    Usage::

        timer = RegionTimer(device)
        for _ in range(n):
            with timer.region():
                step()
        timer.seconds()  # list of floats, one per region

    On CUDA the regions are bracketed by CUDA events, recorded without a host sync per region,
    and resolved (one synchronise) when :meth:`seconds` is called; on CPU each region is bracketed
    by ``perf_counter`` reads.
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._cpu: list[float] = []

    def region(self) -> "_Region":
        return _Region(self)

    def seconds(self) -> list[float]:
        if self.device.type == "cuda":
            synchronize(self.device)
            return [start.elapsed_time(end) / 1e3 for start, end in self._events]
        return list(self._cpu)


class _Region:
    def __init__(self, timer: RegionTimer):
        self.timer = timer

    def __enter__(self) -> "_Region":
        if self.timer.device.type == "cuda":
            self.start = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.timer.device.type == "cuda":
            self.end.record()
            self.timer._events.append((self.start, self.end))
        else:
            self.timer._cpu.append(time.perf_counter() - self.t0)


def time_once(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """Run ``fn`` once between two synchronised clock reads; returns (result, seconds)."""
    device = torch.device(device)
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - t0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``numpy.percentile``'s default), ``q`` in [0, 100].

    Raises:
        ValueError: empty input or q outside [0, 100].
    """
    if len(values) == 0:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@dataclasses.dataclass(frozen=True)
class Summary:
    """Order statistics of a sample of durations, in seconds."""

    n: int
    median_s: float
    p90_s: float
    p99_s: float
    mean_s: float
    min_s: float
    max_s: float
    stdev_s: float


def summarize(samples_s: Sequence[float]) -> Summary:
    """Median, p90, p99, mean, min, max and sample standard deviation of ``samples_s``."""
    if not samples_s:
        raise ValueError("cannot summarise an empty sample")
    return Summary(
        n=len(samples_s),
        median_s=statistics.median(samples_s),
        p90_s=percentile(samples_s, 90),
        p99_s=percentile(samples_s, 99),
        mean_s=statistics.fmean(samples_s),
        min_s=min(samples_s),
        max_s=max(samples_s),
        stdev_s=statistics.stdev(samples_s) if len(samples_s) > 1 else 0.0,
    )
