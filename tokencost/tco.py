"""Owned-hardware cost per GPU-hour: capex recovery + power + colocation, over utilisation (torch-free).

Formulas (shared/reference/prices.md §5.1):

- capital recovery factor CRF(r, n) = r·(1+r)^n / ((1+r)^n − 1), and 1/n at r = 0 (straight line)
  (inferecon.com/assumptions v0.2);
- capex per hour = capex × CRF(r, n) / 8760;
- power per hour = kW × PUE × $/kWh — PUE is 1 for an all-in provisioned kW figure (InferenceX GPU_SPECS),
  which already includes facility overhead, and the survey PUE for a chip TDP;
- colocation per hour = kW × $/kW-month × 12 / 8760, charged on the same kW as power. A colocation
  lease counts the tenant's IT load, the facility's cooling and conversion losses being the landlord's
  (a reading of how CBRE's $/kW-month, prices.md §5, is quoted; the source does not spell it out). On
  an all-in provisioned kW (InferenceX's 1.73 kW for an H100, facility overhead included) the rent is
  therefore overstated, by up to the PUE factor (≈1.56, prices.md §5). prices.md gives no
  IT/facility split of the all-in figure, so none is subtracted here: to price an IT-kW lease,
  override ``colocation_usd_per_kw_month`` (e.g. the rent ÷ PUE) or set it to 0 for an owned site;
- cost per utilised hour = hourly cost ÷ utilisation (softwareseni.com).

Defaults come from ``data/tco_defaults.csv`` (each with source and date) and the GPU's TDP in the spec
catalog; every parameter is reported with where it came from and can be overridden.
"""

from __future__ import annotations

import dataclasses
import math

from tokencost.catalog import Catalog, resolve
from tokencost.errors import CostError
from tokencost.hardware import gpu_by_name

HOURS_PER_YEAR = 8760.0
MONTHS_PER_YEAR = 12.0
_OVERRIDABLE = ("capex_usd", "depreciation_years", "interest_rate", "power_kw", "pue",
                "electricity_usd_per_kwh", "colocation_usd_per_kw_month", "utilization")
# The unit of every parameter, as --tco-param takes it. The two fractions are refused above 1: a user
# who means 5 % and types 5 would otherwise get 500 % a year (or a GPU busy 500 % of the time).
TCO_UNITS: dict[str, str] = {
    "capex_usd": "USD per GPU", "depreciation_years": "years",
    "interest_rate": "fraction per year, 0.05 = 5 %/yr", "power_kw": "kW per GPU", "pue": "ratio >= 1",
    "electricity_usd_per_kwh": "USD per kWh", "colocation_usd_per_kw_month": "USD per kW-month",
    "utilization": "fraction of hours busy, 0.7 = 70 %",
}
FRACTION_PARAMETERS = ("interest_rate", "utilization")


def tco_param_help() -> str:
    """Every overridable parameter with its unit, for the ``--tco-param`` help text."""
    return "; ".join(f"{name} ({unit})" for name, unit in TCO_UNITS.items())


@dataclasses.dataclass(frozen=True)
class TcoParams:
    """Inputs of an owned GPU-hour; ``sources`` maps each field to "source, date" or "user"."""

    gpu: str
    capex_usd: float
    depreciation_years: float
    interest_rate: float
    power_kw: float
    pue: float
    electricity_usd_per_kwh: float
    colocation_usd_per_kw_month: float
    utilization: float
    sources: dict[str, str]


@dataclasses.dataclass(frozen=True)
class TcoResult:
    """Hourly cost of one owned GPU (running around the clock) and per utilised hour."""

    params: TcoParams
    capex_usd_per_hour: float
    power_usd_per_hour: float
    colocation_usd_per_hour: float
    usd_per_gpu_hour: float
    usd_per_utilized_gpu_hour: float


def capital_recovery_factor(rate: float, years: float) -> float:
    """CRF(r, n) = r(1+r)^n / ((1+r)^n − 1); 1/n when r = 0 (prices.md §5.1)."""
    if not math.isfinite(years) or years <= 0:
        raise CostError(f"depreciation_years must be positive, got {years!r}")
    if not math.isfinite(rate) or rate < 0:
        raise CostError(f"interest_rate must be >= 0, got {rate!r}")
    if rate == 0:
        return 1.0 / years
    growth = (1.0 + rate) ** years
    return rate * growth / (growth - 1.0)


def _default(cat: Catalog, parameter: str, gpu: str = "") -> tuple[float, str] | None:
    row = cat.get("tco_defaults", parameter, gpu)
    return None if row is None else (row["value"], f"{row['source']}, {row['date']}")


def _power_default(cat: Catalog, gpu: str) -> tuple[tuple[float, str], tuple[float, str]]:
    """(power_kw, pue) defaults: all-in kW with PUE 1 when the catalog has it, else chip TDP × survey PUE."""
    allin = _default(cat, "allin_power_kw", gpu)
    if allin is not None:
        return allin, (1.0, "1: the all-in kW already includes facility overhead (prices.md §5.1)")
    spec = gpu_by_name(gpu, cat)
    pue = _default(cat, "pue")
    if pue is None:
        raise CostError("the TCO catalog has no pue row; pass pue")
    return (spec.power_w / 1000.0, f"chip TDP from the GPU catalog: {spec.source}, {spec.date}"), pue


def chip_energy_params(catalog: Catalog | None = None) -> dict[str, tuple[float, str]]:
    """``{"pue": (value, source), "electricity_usd_per_kwh": (value, source)}`` to price energy measured at
    the GPU chip (the NVML energy counter sees the GPU board only, not cooling or power conversion).

    The survey PUE applies to chip power (prices.md §5.1), whatever the GPU: unlike
    :func:`default_tco_params`, this needs no capex row and ignores the all-in kW rows (whose PUE is 1
    because their kW already holds the facility overhead; a measured chip energy does not).

    Raises:
        CostError: the TCO catalog lacks the pue or electricity_usd_per_kwh row.
    """
    cat = resolve(catalog)
    out = {}
    for name in ("pue", "electricity_usd_per_kwh"):
        found = _default(cat, name)
        if found is None:
            raise CostError(f"the TCO catalog has no {name} row; electricity cost of measured energy unavailable")
        out[name] = found
    return out


def default_tco_params(gpu: str, catalog: Catalog | None = None, **overrides: float) -> TcoParams:
    """TCO inputs for catalog GPU ``gpu`` from the catalog defaults, with ``overrides`` (any field of
    :class:`TcoParams` except gpu/sources) taking precedence and marked "user".

    Raises:
        CostError: unknown GPU or parameter; a parameter with no default and no override (e.g. capex
            for a GPU without a purchase-price row); an invalid value.
    """
    cat = resolve(catalog)
    spec = gpu_by_name(gpu, cat)
    unknown = sorted(set(overrides) - set(_OVERRIDABLE))
    if unknown:
        raise CostError(f"unknown TCO parameter(s) {', '.join(unknown)}; known: {', '.join(_OVERRIDABLE)}")
    power, pue = _power_default(cat, spec.name)
    found = {"capex_usd": _default(cat, "capex_usd", spec.name), "power_kw": power, "pue": pue}
    for name in ("depreciation_years", "interest_rate", "electricity_usd_per_kwh",
                 "colocation_usd_per_kw_month", "utilization"):
        found[name] = _default(cat, name)
    values, sources = {}, {}
    for name in _OVERRIDABLE:
        if overrides.get(name) is not None:
            values[name], sources[name] = float(overrides[name]), "user"
        elif found[name] is not None:
            values[name], sources[name] = found[name]
        else:
            raise CostError(f"no default {name} for {spec.name} in the TCO catalog; pass it explicitly "
                            f"(tokencost prices --tco {spec.name} --tco-param {name}=VALUE)")
    params = TcoParams(gpu=spec.name, sources=sources, **values)
    _validate(params)
    return params


def _validate(p: TcoParams) -> None:
    """Raises CostError naming the parameter, its rule and its unit (a fraction above 1 is refused:
    ``interest_rate=5`` means 500 %/yr, not the 5 % its user meant)."""
    checks = {"capex_usd": p.capex_usd > 0, "depreciation_years": p.depreciation_years > 0,
              "interest_rate": 0 <= p.interest_rate <= 1, "power_kw": p.power_kw >= 0, "pue": p.pue >= 1,
              "electricity_usd_per_kwh": p.electricity_usd_per_kwh >= 0,
              "colocation_usd_per_kw_month": p.colocation_usd_per_kw_month >= 0,
              "utilization": 0 < p.utilization <= 1}
    for name, ok in checks.items():
        value = getattr(p, name)
        if not (math.isfinite(value) and ok):
            rule = {"pue": ">= 1", "utilization": "in (0, 1]", "interest_rate": "in [0, 1]", "capex_usd": "> 0",
                    "depreciation_years": "> 0"}.get(name, ">= 0")
            hint = f"; for {value:g} % give {value / 100:g}" if name in FRACTION_PARAMETERS and value > 1 else ""
            source = p.sources.get(name, "user")
            where = "--tco-param" if source == "user" else f"the TCO catalog: {source}"
            raise CostError(f"TCO parameter {name} must be {rule} ({TCO_UNITS[name]}), got {value!r}{hint} "
                            f"(from {where})")


def owned_usd_per_gpu_hour(params: TcoParams) -> TcoResult:
    """Hourly cost of one owned GPU from ``params`` (formulas in the module docstring).

    Raises:
        CostError: invalid parameters.
    """
    _validate(params)
    capex = params.capex_usd * capital_recovery_factor(params.interest_rate, params.depreciation_years) / HOURS_PER_YEAR
    power = params.power_kw * params.pue * params.electricity_usd_per_kwh
    colo = params.power_kw * params.colocation_usd_per_kw_month * MONTHS_PER_YEAR / HOURS_PER_YEAR
    total = capex + power + colo
    return TcoResult(params=params, capex_usd_per_hour=capex, power_usd_per_hour=power,
                     colocation_usd_per_hour=colo, usd_per_gpu_hour=total,
                     usd_per_utilized_gpu_hour=total / params.utilization)
