"""``--calibrate``: the ceilings this device actually reaches, next to the datasheet's.

Datasheet peaks are not reachable (gpu-specs.md §2.6: best-case BF16 matmuls reach 77–87% of the dense
peak on NVIDIA parts, sustained HBM bandwidth about 82% on H100), so the kernel benchmark can report
each kernel against both. Two short measurements:

- **Copy bandwidth**: ``dst.copy_(src)`` of a 256 MiB float32 buffer, read + write bytes per second,
  best of 4 after one warm-up (:func:`profiler.bandwidth.measure_copy_bandwidth`).
- **Matmul rate**: ``torch.matmul`` of two random-normal n x n matrices in the benchmark dtype
  (bf16 on a GPU by default), 2·n³ FLOP per call (Triton tutorial 03 convention); on a GPU timed with
  ``triton.testing.do_bench`` (L2 flushed), on a CPU with :func:`profiler.kernel_bench.time_cpu`.
  The rate of the median call is reported (the stas00/ml-engineering MAMF method searches shapes and
  takes the best; one large square shape is a lower bound on that).
"""

from __future__ import annotations

import dataclasses

import torch

from profiler.bandwidth import DEFAULT_NBYTES, measure_copy_bandwidth
from profiler.errors import ProfilerError

GPU_MATMUL_N = 8192  # 1.1e12 FLOP per call: ~1.4 ms at 800 TFLOP/s, far above launch overhead
CPU_MATMUL_N = 1024  # 2.1e9 FLOP per call: tens of ms on a few cores


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Measured ceilings of one device: copy bandwidth (bytes/s) and matmul rate (FLOP/s) in ``dtype``."""

    copy_bandwidth_bytes_per_s: float
    copy_method: str
    matmul_flop_per_s: float
    matmul_method: str
    matmul_n: int
    dtype: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def measure_matmul_rate(device: torch.device | str, dtype: torch.dtype, n: int | None = None,
                        seed: int = 0) -> tuple[float, str]:
    """FLOP/s of ``torch.matmul`` at M = N = K = n (default 8192 on a GPU, 1024 on a CPU); returns
    (rate, method text).

    Raises:
        ProfilerError: n < 16.
    """
    from profiler.kernel_bench import time_cpu, time_gpu

    device = torch.device(device)
    n = n or (GPU_MATMUL_N if device.type == "cuda" else CPU_MATMUL_N)
    if n < 16:
        raise ProfilerError(f"matmul calibration size must be >= 16, got {n}")
    gen = torch.Generator(device=device).manual_seed(seed)
    a = torch.randn(n, n, generator=gen, device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen, device=device, dtype=dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)

    def call():
        return torch.matmul(a, b, out=c)

    timing = time_gpu(call) if device.type == "cuda" else time_cpu(call, device)
    name = str(dtype).removeprefix("torch.")
    return 2 * n**3 / timing.median_s, f"torch.matmul {n}x{n}x{n} {name}, median call, {timing.method}"


def calibrate(device: torch.device | str, dtype: torch.dtype, matmul_n: int | None = None,
              copy_nbytes: int = DEFAULT_NBYTES) -> Calibration:
    """Measure the copy bandwidth and the matmul rate of ``device`` (see the module docstring)."""
    device = torch.device(device)
    copy = measure_copy_bandwidth(device, nbytes=copy_nbytes)
    n = matmul_n or (GPU_MATMUL_N if device.type == "cuda" else CPU_MATMUL_N)
    rate, method = measure_matmul_rate(device, dtype, n)
    return Calibration(copy_bandwidth_bytes_per_s=copy.bytes_per_s, copy_method=copy.method,
                       matmul_flop_per_s=rate, matmul_method=method, matmul_n=n,
                       dtype=str(dtype).removeprefix("torch."))


__all__ = ["Calibration", "calibrate", "measure_matmul_rate"]
