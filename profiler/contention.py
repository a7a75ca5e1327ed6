"""CPU contention over a timed window: how much CPU other processes (and the hypervisor) took while
we were timing, from the kernel's counters rather than a load average.

Over the window, the machine's busy time (``user + nice + system + irq + softirq`` of the first line
of ``/proc/stat``, in clock ticks; proc(5)) minus this process's own CPU time (``time.process_time``,
all its threads) is the CPU other processes used; divided by the wall time it is the number of cores
they kept busy on average. ``steal`` is time the hypervisor ran something else on our virtual CPUs.
The 1-minute load average that ``profiler.runner.cpu_load_warnings`` reads before a run lags by a
minute and cannot see contention that starts during it; this can. Linux only: elsewhere
:class:`ContentionProbe` reports nothing (None), never a guess.
"""

from __future__ import annotations

import dataclasses
import os
import time

_BUSY_FIELDS = (0, 1, 2, 5, 6)  # user, nice, system, irq, softirq (guest time is inside user)
_STEAL_FIELD = 7
# Windows shorter than this carry too few clock ticks (10 ms each, so ±0.1 core at 0.1 s) to judge.
_MIN_WINDOW_S = 0.1
# Other processes keeping half a core busy on average already slow a timing that uses every core.
OTHERS_CORES_WARN = 0.5
STEAL_WARN = 0.05


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Counters at one instant: machine busy and steal ticks, this process's CPU seconds, wall seconds."""

    busy_ticks: int
    steal_ticks: int
    own_cpu_s: float
    wall_s: float


@dataclasses.dataclass(frozen=True)
class Contention:
    """Over a window: cores other processes kept busy on average, the share of the CPUs' time stolen by
    the hypervisor, the window's wall time (s) and the machine's CPU count."""

    others_cores: float
    steal_fraction: float
    window_s: float
    cpus: int


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(busy ticks, steal ticks) from the aggregate ``cpu`` line of /proc/stat.

    Raises:
        ValueError: no aggregate cpu line.
    """
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = [int(v) for v in parts[1:]]
            steal = values[_STEAL_FIELD] if len(values) > _STEAL_FIELD else 0
            return sum(values[i] for i in _BUSY_FIELDS if i < len(values)), steal
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def snapshot() -> Snapshot | None:
    """The counters now, or None where /proc/stat cannot be read (not Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            busy, steal = parse_proc_stat(fh.read())
    except (OSError, ValueError):
        return None
    return Snapshot(busy, steal, time.process_time(), time.perf_counter())


def between(a: Snapshot, b: Snapshot, ticks_per_s: float, cpus: int) -> Contention | None:
    """The contention from snapshot ``a`` to ``b``; None for a window too short to judge."""
    wall = b.wall_s - a.wall_s
    if wall < _MIN_WINDOW_S or ticks_per_s <= 0 or cpus < 1:
        return None
    busy_s = (b.busy_ticks - a.busy_ticks) / ticks_per_s
    others = max(0.0, busy_s - (b.own_cpu_s - a.own_cpu_s)) / wall
    steal = (b.steal_ticks - a.steal_ticks) / ticks_per_s / (wall * cpus)
    return Contention(others_cores=min(others, float(cpus)), steal_fraction=min(max(steal, 0.0), 1.0),
                      window_s=wall, cpus=cpus)


class ContentionProbe:
    """``with ContentionProbe() as probe: ...`` then ``probe.result``: a :class:`Contention`, or None
    (not Linux, or a window under 0.1 s)."""

    def __init__(self):
        self.result: Contention | None = None
        self._start: Snapshot | None = None

    def __enter__(self) -> "ContentionProbe":
        self._start = snapshot()
        return self

    def __exit__(self, *exc) -> None:
        end = snapshot()
        if self._start is not None and end is not None:
            self.result = between(self._start, end, float(os.sysconf("SC_CLK_TCK")), os.cpu_count() or 1)


def contention_warnings(c: Contention | None, what: str = "the timed decode steps") -> list[str]:
    """Warnings when other processes kept at least half a core busy, or the hypervisor stole 5 % of the
    CPUs' time, during ``what``."""
    if c is None:
        return []
    out = []
    if c.others_cores >= OTHERS_CORES_WARN:
        out.append(f"other processes kept {c.others_cores:.2g} of the {c.cpus} CPU cores busy during {what}: "
                   "the timings include waits for them; rerun on a quiet machine")
    if c.steal_fraction >= STEAL_WARN:
        out.append(f"the hypervisor took {100 * c.steal_fraction:.2g} % of the CPUs' time during {what} "
                   "(steal): the timings include it")
    return out


__all__ = ["Contention", "ContentionProbe", "Snapshot", "between", "contention_warnings", "parse_proc_stat",
           "snapshot"]
