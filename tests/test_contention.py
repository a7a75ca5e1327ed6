"""CPU contention over a timed window (profiler/contention.py): parsing, arithmetic, and a real busy
process seen from our side."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from profiler.contention import (Contention, ContentionProbe, Snapshot, between, contention_warnings,
                                 parse_proc_stat)

PROC_STAT = """cpu  1000 20 300 5000 40 5 6 70 0 0
cpu0 500 10 150 2500 20 2 3 35 0 0
intr 12345
"""


def test_busy_and_steal_ticks_from_the_aggregate_line():
    # busy = user + nice + system + irq + softirq (proc(5)); idle and iowait are not busy
    assert parse_proc_stat(PROC_STAT) == (1000 + 20 + 300 + 5 + 6, 70)
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1\n")


def test_others_are_the_machine_busy_time_minus_our_own():
    a = Snapshot(busy_ticks=0, steal_ticks=0, own_cpu_s=0.0, wall_s=0.0)
    # 2 s of wall: the machine was busy 300 ticks = 3 CPU-s at 100 ticks/s, we used 2 CPU-s: others 0.5 core
    b = Snapshot(busy_ticks=300, steal_ticks=20, own_cpu_s=2.0, wall_s=2.0)
    c = between(a, b, ticks_per_s=100, cpus=2)
    assert c.others_cores == pytest.approx(0.5) and c.steal_fraction == pytest.approx(0.2 / 4)
    assert c.window_s == 2.0 and c.cpus == 2
    assert between(a, Snapshot(300, 0, 2.0, 0.05), 100, 2) is None  # too short a window to judge
    # our own time counted by another clock can exceed the machine's: never below zero
    assert between(a, Snapshot(100, 0, 2.0, 2.0), 100, 2).others_cores == 0.0


def test_warnings_only_past_the_thresholds():
    quiet = Contention(others_cores=0.1, steal_fraction=0.0, window_s=1.0, cpus=2)
    busy = Contention(others_cores=1.2, steal_fraction=0.1, window_s=1.0, cpus=2)
    assert contention_warnings(quiet) == [] and contention_warnings(None) == []
    other, steal = contention_warnings(busy)
    assert "1.2 of the 2 CPU cores" in other and "10 %" in steal


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_busy_process_is_seen_by_the_probe():
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        with ContentionProbe() as probe:
            time.sleep(0.8)  # we use next to no CPU; the spinning process keeps a core busy
    finally:
        busy.kill()
        busy.wait()
    c = probe.result
    assert c is not None and 0.5 <= c.others_cores <= c.cpus
