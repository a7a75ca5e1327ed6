"""The environment a measurement ran in, and an NVML monitor for clocks, throttling and energy.

:func:`collect_env` records versions, CPU and device properties (and, on NVIDIA GPUs, power limit,
clocks and throttle reasons through nvidia-ml-py). :class:`GpuMonitor` snapshots NVML at the start
and end of a measured region, reports the GPU energy used (``nvmlDeviceGetTotalEnergyConsumption``
delta, the method of vllm-project/vllm ``vllm/benchmarks/lib/energy.py``; metrics.md section 1.5)
and warns when clocks dropped or the GPU was throttled. Without NVML (CPU, AMD, nvidia-ml-py missing,
driver error) energy is ``None`` with ``energy_source = "unavailable"``, never zero.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Any

import torch

from profiler.errors import ProfilerError

# NVML clock-event ("throttle") reason bits, from nvml.h (nvmlClocksEventReason*/ThrottleReason*).
THROTTLE_REASON_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
IDLE_REASON = 0x1
# Relative drop of the SM or memory clock between the two snapshots that triggers a warning.
CLOCK_DROP_TOLERANCE = 0.05


def throttle_reason_names(mask: int) -> list[str]:
    """Names of the set bits of an NVML clock-event reason mask (unknown bits as hex)."""
    names = [name for bit, name in THROTTLE_REASON_BITS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASON_BITS)
    return names + ([hex(unknown)] if unknown else [])


# ----------------------------------------------------------------------------------------------
# NVML access (every call may fail: the module may be missing, or the driver may refuse)


def _load_nvml() -> tuple[Any, str | None]:
    """(pynvml module initialised, None) or (None, reason it is unavailable)."""
    try:
        import pynvml
    except ImportError as exc:
        return None, f"nvidia-ml-py not importable ({exc})"
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError) as exc:  # e.g. NVMLError_LibraryNotFound on a machine without a driver
        return None, f"NVML init failed ({exc})"
    return pynvml, None


def _nvml_call(nvml, name: str, *args) -> Any:
    """nvml.<name>(*args), or None when NVML raises (e.g. NVMLError_NotSupported on this GPU) or this
    nvidia-ml-py lacks the function."""
    fn = getattr(nvml, name, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except (nvml.NVMLError, OSError):
        return None


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _nvml_handle(nvml, device: torch.device) -> tuple[Any, str | None]:
    """NVML handle of the torch device, matched by UUID (CUDA_VISIBLE_DEVICES may renumber GPUs)."""
    if not torch.cuda.is_available():
        return None, "CUDA is not available to torch"
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        text = str(uuid)
        for candidate in (text, f"GPU-{text}"):
            handle = _nvml_call(nvml, "nvmlDeviceGetHandleByUUID", candidate)
            if handle is not None:
                return handle, None
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        handle = _nvml_call(nvml, "nvmlDeviceGetHandleByIndex", index)
        if handle is not None:
            return handle, None
    return None, f"could not match torch device {device} to an NVML device"


# ----------------------------------------------------------------------------------------------
# collect_env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _software_env() -> dict[str, Any]:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "triton_version": triton_version,
        "torch_cuda_version": torch.version.cuda,
        "torch_hip_version": getattr(torch.version, "hip", None),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count_logical": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _cuda_properties(device: torch.device) -> dict[str, Any]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {
        "device_name": props.name,
        "gpu_sm_count": props.multi_processor_count,
        "gpu_memory_bytes": props.total_memory,
        "gpu_compute_capability": f"{props.major}.{props.minor}",
        "gpu_l2_cache_bytes": getattr(props, "L2_cache_size", None),
    }


def _nvml_static(nvml, handle) -> dict[str, Any]:
    limit_mw = _nvml_call(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
    cuda_driver = _nvml_call(nvml, "nvmlSystemGetCudaDriverVersion")
    return {
        "driver_version": _decode(_nvml_call(nvml, "nvmlSystemGetDriverVersion")),
        "cuda_driver_version": None if cuda_driver is None else f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}",
        "power_limit_w": None if limit_mw is None else limit_mw / 1000.0,
        "max_sm_clock_mhz": _nvml_call(nvml, "nvmlDeviceGetMaxClockInfo", handle, nvml.NVML_CLOCK_SM),
        "max_mem_clock_mhz": _nvml_call(nvml, "nvmlDeviceGetMaxClockInfo", handle, nvml.NVML_CLOCK_MEM),
    }


def collect_env(device: torch.device) -> dict[str, Any]:
    """Environment of a measurement on ``device``: a flat-ish dict, JSON-serialisable.

    Always: python/torch/triton versions, platform, CPU model, logical CPUs, torch threads,
    device_type, device_name. On CUDA: SM count, memory bytes, compute capability, L2 bytes. On NVIDIA
    GPUs with NVML: driver and CUDA driver versions, enforced power limit (W), max clocks, and a
    snapshot (current clocks, throttle reasons). ``nvml_unavailable_reason`` says why NVML data is
    absent. Never raises for missing NVML; raises ProfilerError for a CUDA device without CUDA.
    """
    device = torch.device(device)
    env = _software_env()
    env["device_type"] = device.type
    if device.type != "cuda":
        env["device_name"] = env["cpu_model"] if device.type == "cpu" else device.type
        env["nvml_unavailable_reason"] = f"device type {device.type} has no NVML"
        return env
    if not torch.cuda.is_available():
        raise ProfilerError(f"device {device} requested but torch.cuda is not available")
    env.update(_cuda_properties(device))
    env.update(_nvml_env(device))
    return env


def _nvml_env(device: torch.device) -> dict[str, Any]:
    nvml, reason = _load_nvml()
    if nvml is None:
        return {"nvml_unavailable_reason": reason}
    try:
        handle, reason = _nvml_handle(nvml, device)
        if handle is None:
            return {"nvml_unavailable_reason": reason}
        snapshot = dataclasses.asdict(_take_snapshot(nvml, handle))
        snapshot["throttle_reason_names"] = throttle_reason_names(snapshot["throttle_reasons"] or 0)
        return {**_nvml_static(nvml, handle), "nvml_snapshot": snapshot}
    finally:
        _nvml_call(nvml, "nvmlShutdown")


# ----------------------------------------------------------------------------------------------
# Snapshots and the monitor


@dataclasses.dataclass(frozen=True)
class NvmlSnapshot:
    """One NVML reading. Any field is None when the GPU does not support it.

    time_s: time.perf_counter() at the reading; energy_mj: total energy counter since driver load,
    millijoules; power_w: instantaneous board power; throttle_reasons: clock-event reason bitmask;
    power/thermal_violation_ns: cumulative time clocks were held down by the power/thermal policy.
    """

    time_s: float
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    power_w: float | None = None
    temperature_c: int | None = None
    throttle_reasons: int | None = None
    energy_mj: int | None = None
    power_violation_ns: int | None = None
    thermal_violation_ns: int | None = None


def _violation_ns(nvml, handle, policy_name: str) -> int | None:
    policy = getattr(nvml, policy_name, None)
    status = None if policy is None else _nvml_call(nvml, "nvmlDeviceGetViolationStatus", handle, policy)
    return None if status is None else int(status.violationTime)


def _take_snapshot(nvml, handle) -> NvmlSnapshot:
    power_mw = _nvml_call(nvml, "nvmlDeviceGetPowerUsage", handle)
    return NvmlSnapshot(
        time_s=time.perf_counter(),
        sm_clock_mhz=_nvml_call(nvml, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_SM),
        mem_clock_mhz=_nvml_call(nvml, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_MEM),
        power_w=None if power_mw is None else power_mw / 1000.0,
        temperature_c=_nvml_call(nvml, "nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU),
        throttle_reasons=_nvml_call(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", handle),
        energy_mj=_nvml_call(nvml, "nvmlDeviceGetTotalEnergyConsumption", handle),
        power_violation_ns=_violation_ns(nvml, handle, "NVML_PERF_POLICY_POWER"),
        thermal_violation_ns=_violation_ns(nvml, handle, "NVML_PERF_POLICY_THERMAL"),
    )


def _clock_drop_warning(label: str, start: int | None, end: int | None, tolerance: float) -> list[str]:
    if start is None or end is None or start <= 0 or end >= start * (1.0 - tolerance):
        return []
    return [f"{label} clock dropped from {start} MHz to {end} MHz during the measurement"]


def _violation_warning(label: str, start: int | None, end: int | None) -> list[str]:
    if start is None or end is None or end <= start:
        return []
    return [f"GPU clocks were held down by the {label} policy for {(end - start) / 1e6:.1f} ms"]


def snapshot_warnings(start: NvmlSnapshot, end: NvmlSnapshot, tolerance: float = CLOCK_DROP_TOLERANCE) -> list[str]:
    """Warnings comparing two snapshots: an SM or memory clock more than ``tolerance`` (relative)
    lower at the end; any throttle reason other than idle in either snapshot; growth of the power or
    thermal violation counters (throttling between the snapshots)."""
    warns = _clock_drop_warning("SM", start.sm_clock_mhz, end.sm_clock_mhz, tolerance)
    warns += _clock_drop_warning("memory", start.mem_clock_mhz, end.mem_clock_mhz, tolerance)
    for label, snap in (("start", start), ("end", end)):
        reasons = (snap.throttle_reasons or 0) & ~IDLE_REASON
        if reasons:
            warns.append(f"GPU throttled at {label}: {', '.join(throttle_reason_names(reasons))}")
    warns += _violation_warning("power", start.power_violation_ns, end.power_violation_ns)
    warns += _violation_warning("thermal", start.thermal_violation_ns, end.thermal_violation_ns)
    return warns


def energy_between(start: NvmlSnapshot, end: NvmlSnapshot) -> tuple[float | None, str | None]:
    """(joules, None) from the NVML total-energy counter delta, or (None, reason) when unknown."""
    if start.energy_mj is None or end.energy_mj is None:
        return None, "NVML total energy counter not supported on this GPU"
    if end.energy_mj < start.energy_mj:
        return None, "NVML energy counter went backwards (driver reload?)"
    if end.energy_mj == start.energy_mj:
        return None, "NVML energy counter did not advance (region shorter than its update interval)"
    return (end.energy_mj - start.energy_mj) / 1000.0, None


def _unavailable(reason: str) -> dict[str, Any]:
    return {"energy_j": None, "energy_source": "unavailable", "energy_unavailable_reason": reason,
            "avg_power_w": None, "duration_s": None, "nvml_start": None, "nvml_end": None, "warnings": []}


def monitor_result(start: NvmlSnapshot, end: NvmlSnapshot, tolerance: float = CLOCK_DROP_TOLERANCE) -> dict[str, Any]:
    """Result dict of a monitored region from its two snapshots (see :class:`GpuMonitor`)."""
    joules, reason = energy_between(start, end)
    duration_s = end.time_s - start.time_s
    return {
        "energy_j": joules,
        "energy_source": "nvml_total_energy_consumption" if joules is not None else "unavailable",
        "energy_unavailable_reason": reason,
        "avg_power_w": joules / duration_s if joules is not None and duration_s > 0 else None,
        "duration_s": duration_s,
        "nvml_start": dataclasses.asdict(start),
        "nvml_end": dataclasses.asdict(end),
        "warnings": snapshot_warnings(start, end, tolerance),
    }


class GpuMonitor:
    """NVML snapshots around a measured region: energy (J), average power (W) and throttle warnings.

    Use as ``with GpuMonitor(device) as mon: ...`` then ``mon.result``, or ``start()`` / ``stop()``
    (which returns the result). Keys of the result: energy_j (float | None), energy_source
    ("nvml_total_energy_consumption" | "unavailable"), energy_unavailable_reason, avg_power_w,
    duration_s, nvml_start / nvml_end (snapshot dicts or None), warnings (list of str).
    ``snapshot_fn`` replaces the NVML reading (tests).
    """

    def __init__(self, device: torch.device | str, snapshot_fn=None, tolerance: float = CLOCK_DROP_TOLERANCE):
        self.device = torch.device(device)
        self.tolerance = tolerance
        self.result: dict[str, Any] | None = None
        self._user_fn = snapshot_fn
        self._snapshot_fn = None
        self._nvml = None
        self._start: NvmlSnapshot | None = None
        self._reason: str | None = None

    def _open(self) -> None:
        self._snapshot_fn, self._reason = self._user_fn, None
        if self._user_fn is not None:
            return
        if self.device.type != "cuda":
            self._reason = f"no NVML on device type {self.device.type}"
            return
        nvml, self._reason = _load_nvml()
        if nvml is None:
            return
        handle, self._reason = _nvml_handle(nvml, self.device)
        if handle is None:
            _nvml_call(nvml, "nvmlShutdown")
            return
        self._nvml = nvml
        self._snapshot_fn = lambda: _take_snapshot(nvml, handle)

    def _sync(self) -> None:
        """Wait for queued GPU work, so the snapshots bracket exactly the measured work."""
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.synchronize(self.device)

    def start(self) -> GpuMonitor:
        self.result = None
        self._open()
        self._sync()
        self._start = self._snapshot_fn() if self._snapshot_fn is not None else None
        return self

    def stop(self) -> dict[str, Any]:
        self._sync()
        if self._start is None:
            self.result = _unavailable(self._reason or "monitor was not started")
        else:
            self.result = monitor_result(self._start, self._snapshot_fn(), self.tolerance)
        if self._nvml is not None:
            _nvml_call(self._nvml, "nvmlShutdown")
            self._nvml = None
        self._start = None
        return self.result

    def __enter__(self) -> GpuMonitor:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
