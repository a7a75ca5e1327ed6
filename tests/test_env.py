"""Environment capture and the NVML monitor: the no-NVML fallback and the warning logic."""

import json
import sys
import types

import pytest
import torch

from profiler import env as envmod
from profiler.env import (GpuMonitor, NvmlSnapshot, collect_env, energy_between, monitor_result,
                          snapshot_warnings, throttle_reason_names)
from profiler.errors import ProfilerError
from tests.conftest import gpu


def _snap(t, sm=1980, mem=2619, reasons=0, energy=1_000_000, pv=0, tv=0):
    return NvmlSnapshot(time_s=t, sm_clock_mhz=sm, mem_clock_mhz=mem, power_w=300.0, temperature_c=60,
                        throttle_reasons=reasons, energy_mj=energy, power_violation_ns=pv, thermal_violation_ns=tv)


def test_collect_env_on_cpu_records_versions_and_cpu():
    e = collect_env(torch.device("cpu"))
    assert e["torch_version"] == torch.__version__
    assert e["python_version"].count(".") == 2
    assert e["torch_num_threads"] == torch.get_num_threads()
    assert e["cpu_count_logical"] >= 1
    assert e["device_type"] == "cpu" and e["device_name"] and e["cpu_model"]
    assert "nvml_unavailable_reason" in e
    json.dumps(e)  # serialisable into a result record


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when CUDA is absent")
def test_collect_env_for_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ProfilerError, match="cuda"):
        collect_env(torch.device("cuda"))


def test_monitor_on_cpu_reports_unavailable_energy_never_zero():
    with GpuMonitor("cpu") as mon:
        sum(range(1000))
    r = mon.result
    assert r["energy_j"] is None and r["energy_source"] == "unavailable"
    assert "cpu" in r["energy_unavailable_reason"]
    assert r["warnings"] == []


def test_monitor_without_nvidia_ml_py(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    r = GpuMonitor("cuda").start().stop()
    assert r["energy_j"] is None and r["energy_source"] == "unavailable"
    assert "nvidia-ml-py" in r["energy_unavailable_reason"]


def test_monitor_when_nvml_init_fails(monkeypatch):
    fake = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init():
        raise NVMLError("Driver Not Loaded")

    fake.NVMLError, fake.nvmlInit = NVMLError, init
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    r = GpuMonitor("cuda").start().stop()
    assert r["energy_j"] is None and "Driver Not Loaded" in r["energy_unavailable_reason"]


def test_stop_without_start_is_unavailable():
    assert GpuMonitor("cpu").stop()["energy_source"] == "unavailable"


def test_monitor_energy_and_power_from_fake_snapshots():
    snaps = iter([_snap(10.0, energy=5_000_000), _snap(12.0, energy=5_600_000)])
    r = GpuMonitor("cuda", snapshot_fn=lambda: next(snaps)).start().stop()
    assert r["energy_j"] == pytest.approx(600.0)  # 600,000 mJ
    assert r["avg_power_w"] == pytest.approx(300.0)
    assert r["duration_s"] == pytest.approx(2.0)
    assert r["energy_source"] == "nvml_total_energy_consumption"
    assert r["warnings"] == []
    assert r["nvml_start"]["sm_clock_mhz"] == 1980


def test_idle_reason_alone_does_not_warn():
    assert snapshot_warnings(_snap(0, reasons=0x1), _snap(1, reasons=0x1)) == []


def test_throttle_reasons_other_than_idle_warn():
    warns = snapshot_warnings(_snap(0, reasons=0x1), _snap(1, reasons=0x4 | 0x40))
    assert len(warns) == 1 and "sw_power_cap" in warns[0] and "hw_thermal_slowdown" in warns[0] and "end" in warns[0]


def test_clock_drop_beyond_tolerance_warns():
    assert snapshot_warnings(_snap(0, sm=1980), _snap(1, sm=1900)) == []  # 4% < 5%
    warns = snapshot_warnings(_snap(0, sm=1980), _snap(1, sm=1400))
    assert len(warns) == 1 and "SM clock dropped from 1980 MHz to 1400 MHz" in warns[0]
    assert "memory" in snapshot_warnings(_snap(0, mem=2619), _snap(1, mem=1593))[0]


def test_violation_counters_growing_warn():
    warns = snapshot_warnings(_snap(0, pv=1_000_000), _snap(1, pv=51_000_000))
    assert warns == ["GPU clocks were held down by the power policy for 50.0 ms"]


def test_energy_unknown_when_counter_missing_or_backwards():
    assert energy_between(_snap(0, energy=None), _snap(1))[0] is None
    joules, reason = energy_between(_snap(0, energy=10), _snap(1, energy=5))
    assert joules is None and "backwards" in reason
    joules, reason = energy_between(_snap(0, energy=10), _snap(1, energy=10))
    assert joules is None and "did not advance" in reason  # a zero reading is not a measurement
    r = monitor_result(_snap(0, energy=None), _snap(1, energy=None))
    assert r["energy_j"] is None and r["avg_power_w"] is None and r["energy_source"] == "unavailable"


def test_throttle_reason_names():
    assert throttle_reason_names(0) == []
    assert throttle_reason_names(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert throttle_reason_names(0x1 | 0x10000) == ["gpu_idle", "0x10000"]


def test_bits_match_nvidia_ml_py_constants():
    pynvml = pytest.importorskip("pynvml")
    assert envmod.THROTTLE_REASON_BITS[0x4] == "sw_power_cap" and pynvml.nvmlClocksThrottleReasonSwPowerCap == 0x4
    assert pynvml.nvmlClocksThrottleReasonHwThermalSlowdown == 0x40
    assert pynvml.nvmlClocksThrottleReasonGpuIdle == envmod.IDLE_REASON


@gpu
def test_monitor_on_a_real_gpu_measures_energy_or_says_why():
    with GpuMonitor(torch.device("cuda")) as mon:
        x = torch.randn(4096, 4096, device="cuda")
        for _ in range(50):
            x = x @ x
            x = x / x.norm()
        torch.cuda.synchronize()
    r = mon.result
    assert r["energy_j"] is None or r["energy_j"] > 0
    assert r["energy_j"] is not None or r["energy_unavailable_reason"]
    e = collect_env(torch.device("cuda"))
    assert e["gpu_sm_count"] > 0 and e["gpu_memory_bytes"] > 0
