"""Energy per output token and its electricity cost, from an energy-counter delta (torch-free).

The profiler reads the counter (NVML ``nvmlDeviceGetTotalEnergyConsumption``, as vLLM's
``benchmarks/lib/energy.py`` does for ``gpu_energy_per_output_token_j``) and passes joules here.
Where no counter exists (CPU runs) the result is None — reported as "unavailable", never as zero.

Formulas (metrics.md §1.5; InferenceX-app ``docs/data-transforms.md``; clune.org "per-token energy
costs"): J/token = joules ÷ output tokens, or kW × 1000 ÷ tok/s from a power figure;
kWh/Mtok = J/token × 1e6 ÷ 3.6e6; electricity $/Mtok = kWh/Mtok × PUE × $/kWh.
"""

from __future__ import annotations

import dataclasses
import math

from tokencost.errors import CostError

JOULES_PER_KWH = 3.6e6
TOKENS_PER_MTOK = 1e6
UNAVAILABLE = "unavailable"


@dataclasses.dataclass(frozen=True)
class EnergyPerToken:
    """Energy of a run per output token; ``usd_per_mtok_electricity`` is None without a $/kWh."""

    joules: float
    output_tokens: int
    j_per_output_token: float
    kwh_per_mtok: float
    pue: float
    usd_per_kwh: float | None
    usd_per_mtok_electricity: float | None


def _finite(name: str, value: float, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        need = ">= 0" if allow_zero else "positive"
        raise CostError(f"{name} must be a {need} finite number, got {value!r}")
    return float(value)


def energy_per_output_token(joules: float | None, output_tokens: int, usd_per_kwh: float | None = None,
                            pue: float = 1.0) -> EnergyPerToken | None:
    """J per output token from an energy-counter delta over the run; None when ``joules`` is None.

    ``pue`` scales device energy to facility energy for the electricity cost only (1 = device energy).

    Raises:
        CostError: a zero or negative energy delta (a counter that did not advance is a broken reading,
            not a free run), non-positive token count, negative price, PUE below 1.
    """
    if joules is None:
        return None
    energy = _finite("energy delta (J)", joules)
    if isinstance(output_tokens, bool) or not isinstance(output_tokens, int) or output_tokens < 1:
        raise CostError(f"output_tokens must be a positive integer, got {output_tokens!r}")
    if not math.isfinite(pue) or pue < 1:
        raise CostError(f"pue must be >= 1, got {pue!r}")
    j_per_token = energy / output_tokens
    kwh_per_mtok = j_per_token * TOKENS_PER_MTOK / JOULES_PER_KWH
    price = None if usd_per_kwh is None else _finite("usd_per_kwh", usd_per_kwh, allow_zero=True)
    usd = None if price is None else kwh_per_mtok * pue * price
    return EnergyPerToken(joules=energy, output_tokens=output_tokens, j_per_output_token=j_per_token,
                          kwh_per_mtok=kwh_per_mtok, pue=float(pue), usd_per_kwh=price, usd_per_mtok_electricity=usd)


def j_per_token_from_power(power_kw: float, tok_per_s: float) -> float:
    """J/token = kW × 1000 ÷ tok/s (InferenceX-app ``docs/data-transforms.md``)."""
    return _finite("power_kw", power_kw) * 1000.0 / _finite("tok_per_s", tok_per_s)


def describe(energy: EnergyPerToken | None) -> str:
    """A short human string: "0.78 J/token" or "unavailable" (never "0")."""
    if energy is None:
        return UNAVAILABLE
    return f"{energy.j_per_output_token:.3g} J/token"
