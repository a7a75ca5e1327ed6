"""Price lookups over the catalog: GPU-hour, vCPU-hour and API token prices (torch-free).

GPU rows are priced either per GPU-hour or per instance-hour with the instance's GPU count; the
per-GPU value of an instance row is derived (instance price ÷ GPUs, prices.md §1) and flagged
``derived``. CPU rows are instance prices ÷ vCPUs; a CPU measurement is priced per vCPU-hour × the
threads it used. Each GPU has at most one default row (``is_default``): AWS on-demand where AWS rents
the GPU (tsaol/aws-gpu, 2026-08-26), otherwise a dated on-demand row from prices.md §3.
"""

from __future__ import annotations

import dataclasses

from tokencost.catalog import Catalog, resolve
from tokencost.cost import usd_per_gpu_hour_from_instance
from tokencost.errors import CostError
from tokencost.hardware import lookup_gpu

GPU_DEVICE_TYPES = ("cuda", "gpu", "rocm", "hip")


@dataclasses.dataclass(frozen=True)
class PriceQuote:
    """An hourly price for the hardware a measurement ran on.

    ``usd_per_gpu_hour``: $ per hour of one GPU, or — for a CPU quote — of the ``cpu_threads`` vCPUs
    used (``usd_per_vcpu_hour`` × threads). ``derived`` is True when it was computed from an instance
    price (``usd_per_instance_hour`` ÷ ``units_per_instance``).
    """

    name: str
    usd_per_gpu_hour: float
    source: str
    date: str
    tier: str
    provider: str
    device: str
    usd_per_instance_hour: float | None = None
    units_per_instance: int | None = None
    derived: bool = False
    is_default: bool = False
    region: str | None = None
    note: str = ""
    usd_per_vcpu_hour: float | None = None
    cpu_threads: int | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ApiPrice:
    """A hosted-API price for an open model, $ per million input and output tokens."""

    name: str
    model: str
    provider: str
    variant: str
    usd_per_mtok_input: float
    usd_per_mtok_output: float
    source: str
    date: str
    note: str = ""


def _gpu_quote(row: dict) -> PriceQuote:
    per_instance = row["usd_per_instance_hour"]
    per_gpu = (usd_per_gpu_hour_from_instance(per_instance, row["gpus_per_instance"])
               if per_instance is not None else row["usd_per_gpu_hour"])
    return PriceQuote(
        name=row["name"], usd_per_gpu_hour=per_gpu, source=row["source"], date=row["date"], tier=row["tier"],
        provider=row["provider"], device=row["gpu"], usd_per_instance_hour=per_instance,
        units_per_instance=row["gpus_per_instance"], derived=per_instance is not None,
        is_default=bool(row["is_default"]), region=row["region"], note=row["note"] or "")


def _cpu_quote(row: dict, cpu_threads: int | None) -> PriceQuote:
    per_vcpu = row["usd_per_instance_hour"] / row["vcpus_per_instance"]
    threads = cpu_threads if cpu_threads is not None else 1
    return PriceQuote(
        name=row["name"], usd_per_gpu_hour=per_vcpu * threads, source=row["source"], date=row["date"],
        tier=row["tier"], provider=row["provider"], device="cpu", usd_per_instance_hour=row["usd_per_instance_hour"],
        units_per_instance=row["vcpus_per_instance"], derived=True, is_default=bool(row["is_default"]),
        region=row["region"], note=row["note"] or "", usd_per_vcpu_hour=per_vcpu, cpu_threads=cpu_threads)


def list_prices(tier: str | None = None, gpu: str | None = None, catalog: Catalog | None = None) -> list[PriceQuote]:
    """GPU price rows, optionally only one ``tier`` and/or one catalog GPU name, in file order."""
    quotes = [_gpu_quote(r) for r in resolve(catalog).rows("prices")]
    return [q for q in quotes if (tier is None or q.tier == tier) and (gpu is None or q.device == gpu)]


def list_cpu_prices(catalog: Catalog | None = None) -> list[PriceQuote]:
    """CPU price rows, each priced per single vCPU-hour (``usd_per_gpu_hour`` = ``usd_per_vcpu_hour``)."""
    return [_cpu_quote(r, None) for r in resolve(catalog).rows("cpu_prices")]


def list_api_prices(catalog: Catalog | None = None) -> list[ApiPrice]:
    """API price rows in file order."""
    return [ApiPrice(r["name"], r["model"], r["provider"], r["variant"] or "", r["usd_per_mtok_input"],
                     r["usd_per_mtok_output"], r["source"], r["date"], r["note"] or "")
            for r in resolve(catalog).rows("api_prices")]


def _check_threads(cpu_threads: int | None, name: str) -> int:
    if isinstance(cpu_threads, bool) or not isinstance(cpu_threads, int) or cpu_threads < 1:
        raise CostError(f"CPU price {name!r} is per vCPU-hour: the number of CPU threads used is needed "
                        f"(a positive integer), got {cpu_threads!r}")
    return cpu_threads


def price_from_name(name: str, cpu_threads: int | None = None, catalog: Catalog | None = None) -> PriceQuote:
    """The price row called exactly ``name`` (``--price-from NAME``). A CPU row is priced for
    ``cpu_threads`` vCPUs.

    Raises:
        CostError: no row has this name (the message lists some), or a CPU row without ``cpu_threads``.
    """
    cat = resolve(catalog)
    row = cat.get("prices", name)
    if row is not None:
        return _gpu_quote(row)
    row = cat.get("cpu_prices", name)
    if row is not None:
        return _cpu_quote(row, _check_threads(cpu_threads, name))
    names = [r["name"] for r in cat.rows("prices")] + [r["name"] for r in cat.rows("cpu_prices")]
    raise CostError(f"no price named {name!r} (run `tokencost prices` for the list; e.g. {', '.join(names[:4])}, ...)")


def api_price_from_name(name: str, catalog: Catalog | None = None) -> ApiPrice:
    """The API price row called exactly ``name``.

    Raises:
        CostError: unknown name.
    """
    for price in list_api_prices(catalog):
        if price.name == name:
            return price
    raise CostError(f"no API price named {name!r} (run `tokencost prices --tier api` for the list)")


def default_price_for_device(device_name: str | None, device_type: str, cpu_threads: int | None = None,
                             catalog: Catalog | None = None) -> PriceQuote | None:
    """The default price for the device a measurement ran on, or None when there is none.

    GPU (``device_type`` cuda/gpu/rocm/hip): the default on-demand per-GPU price of the GPU whose alias is
    exactly ``device_name``; None for a GPU not in the catalog or without a price row (never another
    GPU's price). CPU: the default per-vCPU price × ``cpu_threads``. Other device types: None.

    Raises:
        CostError: a CPU device without a positive ``cpu_threads``.
    """
    cat = resolve(catalog)
    if device_type == "cpu":
        rows = [r for r in cat.rows("cpu_prices") if r["is_default"]]
        return _cpu_quote(rows[0], _check_threads(cpu_threads, rows[0]["name"])) if rows else None
    if device_type not in GPU_DEVICE_TYPES:
        return None
    spec = lookup_gpu(device_name or "", cat)
    if spec is None:
        return None
    rows = [r for r in cat.rows("prices") if r["gpu"] == spec.name and r["is_default"]]
    return _gpu_quote(rows[0]) if rows else None
