"""A short measurement of the memory bandwidth a device actually achieves.

On CPU there is no datasheet figure to use, so MBU is reported against this measurement. On GPU the
datasheet figure comes from the catalog (the caller's job) and this measurement backs ``--calibrate``.

Method: read a buffer much larger than the last-level cache with a reduction (``sum``), the access
pattern of decode (weights streamed once, read-only). The buffer is ``nbytes`` of float32; each
repetition is timed between synchronised clock reads (``profiler.timing``), the first is discarded as
warm-up, and the best of the rest is reported (the achievable rate, as STREAM-style benchmarks do).
"""

from __future__ import annotations

import dataclasses

import torch

from profiler.timing import time_once

DEFAULT_NBYTES = 256 * 2**20  # 256 MiB: far above any CPU L3 and the 50 MB L2 of Hopper GPUs


@dataclasses.dataclass(frozen=True)
class BandwidthMeasurement:
    """Achieved read bandwidth of one device."""

    bytes_per_s: float
    nbytes: int
    repeats: int
    method: str


def measure_read_bandwidth(device: torch.device | str = "cpu", nbytes: int = DEFAULT_NBYTES,
                           repeats: int = 9) -> BandwidthMeasurement:
    """Measure read bandwidth in bytes/s by summing a float32 buffer of ``nbytes`` bytes.

    Raises:
        ValueError: ``nbytes`` below 1 MiB or ``repeats`` below 2.
    """
    if nbytes < 2**20 or repeats < 2:
        raise ValueError(f"need nbytes >= 1 MiB and repeats >= 2, got {nbytes}, {repeats}")
    device = torch.device(device)
    buf = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    times = [time_once(lambda: buf.sum(), device)[1] for _ in range(repeats)]
    best = min(times[1:])
    return BandwidthMeasurement(bytes_per_s=buf.numel() * 4 / best, nbytes=buf.numel() * 4,
                                repeats=repeats - 1, method=f"best of {repeats - 1} float32 sum reads of "
                                f"{buf.numel() * 4 / 2**20:.0f} MiB on {device.type}, torch threads "
                                f"{torch.get_num_threads()}")


def measure_copy_bandwidth(device: torch.device | str, nbytes: int = DEFAULT_NBYTES,
                           repeats: int = 5) -> BandwidthMeasurement:
    """Measure copy bandwidth (read + write bytes per second) with ``dst.copy_(src)``."""
    if nbytes < 2**20 or repeats < 2:
        raise ValueError(f"need nbytes >= 1 MiB and repeats >= 2, got {nbytes}, {repeats}")
    device = torch.device(device)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    times = [time_once(lambda: dst.copy_(src), device)[1] for _ in range(repeats)]
    moved = 2 * src.numel() * 4
    return BandwidthMeasurement(bytes_per_s=moved / min(times[1:]), nbytes=moved, repeats=repeats - 1,
                                method=f"best of {repeats - 1} copies of {nbytes / 2**20:.0f} MiB on {device.type}")
