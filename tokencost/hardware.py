"""GPU peak specifications from the catalog, looked up by the exact name the driver reports (torch-free).

Figures: dense (no 2:4 sparsity) tensor TFLOP/s, memory, bandwidth and power per GPU, from
shared/reference/gpu-specs.md §1 with the sources listed per row in ``data/gpu_specs.csv``. Matching
is exact against an explicit alias column holding the names ``torch.cuda.get_device_name()`` /
NVML report (gpu-specs.md §4); there is no fuzzy matching, so a part missing from the table (an H100
NVL, an A100 PCIe, an H800) is reported as unknown (None) rather than given another part's peaks
(karpathy/nanochat ``get_peak_flops`` does the same).
"""

from __future__ import annotations

import dataclasses

from tokencost.catalog import Catalog, resolve
from tokencost.errors import CostError

# Which peak column serves a precision: the fastest tensor path at or above it that the GPU has
# (a GPU without FP8 units runs FP8 weights through BF16 tensor cores; without FP4, through FP8).
# The catalog has no INT8/INT4 columns (gpu-specs.md §1 lists none), so int8 reads the FP8 column and,
# on a GPU without one (A100, A10G), the BF16 peak. An A100 does have INT8 tensor cores faster than
# its BF16 ones, so there the int8 compute peak is understated and a compute-bound int8 bound is
# lower than the hardware's; decode steps are bandwidth-bound, where this does not matter.
_PEAK_ORDER = {
    "bf16": ("bf16_tflops",), "fp16": ("bf16_tflops",),
    "fp8": ("fp8_tflops", "bf16_tflops"), "int8": ("fp8_tflops", "bf16_tflops"),
    "fp4": ("fp4_tflops", "fp8_tflops", "bf16_tflops"), "int4": ("fp4_tflops", "fp8_tflops", "bf16_tflops"),
}


@dataclasses.dataclass(frozen=True)
class GpuSpec:
    """One GPU's datasheet peaks. TFLOP/s are dense; ``memory_gb`` in 1e9 bytes; bandwidth in TB/s
    (1e12 bytes/s); ``power_w`` the board limit (max TDP/TGP), not the draw of a workload."""

    name: str
    aliases: tuple[str, ...]
    bf16_tflops: float
    fp8_tflops: float | None
    fp4_tflops: float | None
    memory_gb: float
    bandwidth_tb_s: float
    power_w: float
    sms: int | None
    unverified_fields: tuple[str, ...]
    source: str
    date: str
    note: str = ""

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_tb_s * 1e12

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9

    def peak_flops_per_s(self, precision: str) -> tuple[float, str]:
        """Dense peak FLOP/s for ``precision`` and the column it came from (see ``_PEAK_ORDER``).

        int8/int4 have no column of their own: they read the FP8 (FP4) column, else BF16. On an A100
        (no FP8 column) int8 therefore gets the BF16 peak, below its INT8 tensor-core rate, which is
        not in the catalog: the compute side of an int8 bound there is conservative (too low).

        Raises:
            CostError: unknown precision.
        """
        order = _PEAK_ORDER.get(precision)
        if order is None:
            raise CostError(f"unknown precision {precision!r}; expected one of {', '.join(_PEAK_ORDER)}")
        for column in order:
            value = getattr(self, column)
            if value is not None:
                return value * 1e12, column
        raise AssertionError("bf16_tflops is required by the catalog")  # pragma: no cover


def _spec_from_row(row: dict) -> GpuSpec:
    split = lambda text: tuple(p.strip() for p in (text or "").split(";") if p.strip())  # noqa: E731
    return GpuSpec(
        name=row["name"], aliases=split(row["aliases"]), bf16_tflops=row["bf16_tflops"],
        fp8_tflops=row["fp8_tflops"], fp4_tflops=row["fp4_tflops"], memory_gb=row["memory_gb"],
        bandwidth_tb_s=row["bandwidth_tb_s"], power_w=row["power_w"], sms=row["sms"],
        unverified_fields=split(row["unverified_fields"]), source=row["source"], date=row["date"],
        note=row["note"] or "")


def unverified_note(spec: GpuSpec, fields) -> str | None:
    """A note naming those of ``fields`` (GpuSpec attribute names, e.g. ``"bf16_tflops"``) that the
    catalog marks unverified for ``spec`` (no vendor document, or a third-party source only;
    gpu-specs.md conventions), or None when every figure used is verified."""
    used = [f for f in dict.fromkeys(fields) if f in spec.unverified_fields]
    if not used:
        return None
    return (f"{spec.name}'s {', '.join(used)} {'is' if len(used) == 1 else 'are'} unverified in the GPU catalog "
            "(no vendor document; gpu-specs.md §1): a result computed from it is only as good as that figure; "
            "confirm it on the device")


def list_gpus(catalog: Catalog | None = None) -> list[GpuSpec]:
    """Every GPU in the (active) catalog, in file order."""
    return [_spec_from_row(r) for r in resolve(catalog).rows("gpu_specs")]


def lookup_gpu(device_name: str, catalog: Catalog | None = None) -> GpuSpec | None:
    """The spec whose alias (a driver-reported name such as ``"NVIDIA H100 80GB HBM3"``) or catalog
    name (``"h100-sxm"``) equals ``device_name`` exactly (surrounding spaces ignored); None when no
    row matches — the caller reports the GPU as unknown."""
    wanted = (device_name or "").strip()
    if not wanted:
        return None
    for spec in list_gpus(catalog):
        if wanted == spec.name or wanted in spec.aliases:
            return spec
    return None


def gpu_by_name(name: str, catalog: Catalog | None = None) -> GpuSpec:
    """Like :func:`lookup_gpu` but for user input: an unknown name is an error.

    Raises:
        CostError: no catalog row has this name or alias (the message lists the known names).
    """
    spec = lookup_gpu(name, catalog)
    if spec is None:
        known = ", ".join(s.name for s in list_gpus(catalog))
        raise CostError(f"unknown GPU {name!r}; catalog names: {known} (or the exact driver name; "
                        "add a row with --catalog)")
    return spec
