"""Confidence intervals over repeats, carried into dollars, and a warning for noisy repeats.

Torch-free and scipy-free: the Student t quantile is computed exactly for the integer degrees of
freedom a set of repeats has, from the closed-form t distribution function of Abramowitz & Stegun,
*Handbook of Mathematical Functions* (1964), 26.7.3 (odd ν) and 26.7.4 (even ν), inverted by
bisection. Tests check it against the NIST/SEMATECH e-Handbook t table (section 1.3.6.7.2) and the
normal limit.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from tokencost.cost import usd_per_mtok
from tokencost.errors import CostError


def _t_two_sided_mass(t: float, dof: int) -> float:
    """A(t|ν) = P(|T| <= t) for Student's t with ν = dof degrees of freedom (A&S 26.7.3-26.7.4)."""
    theta = math.atan(t / math.sqrt(dof))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if dof % 2 == 1:  # 26.7.3: (2/π)[θ + sinθ cosθ (1 + (2/3)cos²θ + ... + (2·4…(ν−3))/(1·3…(ν−2)) cos^(ν−3)θ)]
        term, total = 1.0, 1.0 if dof > 1 else 0.0
        for k in range(1, (dof - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2.0 / math.pi * (theta + s * math.cos(theta) * total)
    term, total = 1.0, 1.0  # 26.7.4: sinθ (1 + (1/2)cos²θ + ... + (1·3…(ν−3))/(2·4…(ν−2)) cos^(ν−2)θ)
    for k in range(1, dof // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile_two_sided(level: float, dof: int) -> float:
    """t such that P(|T| <= t) = level for Student's t with ``dof`` >= 1 degrees of freedom.

    E.g. level 0.95, dof 4 -> 2.776. Raises CostError for level outside (0, 1) or dof < 1.
    """
    if not 0.0 < level < 1.0:
        raise CostError(f"confidence level must be between 0 and 1, got {level}")
    if dof < 1:
        raise CostError(f"degrees of freedom must be >= 1, got {dof}")
    low, high = 0.0, 1.0
    while _t_two_sided_mass(high, dof) < level:
        high *= 2.0
    for _ in range(200):  # bisection to float precision
        mid = 0.5 * (low + high)
        if _t_two_sided_mass(mid, dof) < level:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * high:
            break
    return 0.5 * (low + high)


def _finite_values(values: Sequence[float], what: str) -> list[float]:
    out = [float(v) for v in values]
    if any(not math.isfinite(v) for v in out):
        raise CostError(f"{what} must be finite numbers, got {list(values)}")
    return out


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean, mean ± t(level, n−1) · s / √n.

    s is the sample standard deviation (n − 1 denominator). Needs at least 2 finite values; raises
    CostError otherwise or for a level outside (0, 1).
    """
    xs = _finite_values(values, "repeat values")
    if len(xs) < 2:
        raise CostError(f"a confidence interval needs at least 2 repeats, got {len(xs)}")
    mean = statistics.fmean(xs)
    half = t_quantile_two_sided(level, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return mean, mean - half, mean + half


def usd_per_mtok_interval(usd_per_hour: float, tok_per_s_interval: tuple[float, float, float]) -> tuple[float, float, float]:
    """($/Mtok at the mean, low, high) from a (mean, low, high) tok/s interval.

    $/Mtok = $/h ÷ (tok/s × 3600) × 1e6 falls as tok/s rises, so the *high* throughput bound gives
    the *low* dollar bound and vice versa. Because the map is monotonic the dollar interval has the
    same coverage as the throughput interval; it is not symmetric about the centre, which is $/Mtok at
    the mean tok/s (not the mean of per-repeat dollars). Raises CostError when the throughput
    interval is not ordered or reaches zero (the upper dollar bound would be unbounded).
    """
    mean, low, high = _finite_values(tok_per_s_interval, "tok/s interval")
    if not low <= mean <= high:
        raise CostError(f"tok/s interval must satisfy low <= mean <= high, got {tok_per_s_interval}")
    if low <= 0:
        raise CostError(f"tok/s interval reaches {low:.4g} <= 0: the $/Mtok upper bound is unbounded; "
                        "take more repeats or reduce noise")
    return usd_per_mtok(usd_per_hour, mean), usd_per_mtok(usd_per_hour, high), usd_per_mtok(usd_per_hour, low)


def relative_spread(values: Sequence[float]) -> float:
    """(max − min) / median of the repeats: the spread the warning tests."""
    xs = _finite_values(values, "repeat values")
    if not xs:
        raise CostError("no repeat values")
    centre = statistics.median(xs)
    if centre <= 0:
        raise CostError(f"repeat values must have a positive median, got {centre}")
    return (max(xs) - min(xs)) / centre


def spread_warning(values: Sequence[float], threshold: float = 0.05) -> str | None:
    """A warning when the repeats spread more than ``threshold`` ((max − min) / median), else None.

    Fewer than 2 values cannot show a spread and give None.
    """
    if threshold <= 0:
        raise CostError(f"spread threshold must be positive, got {threshold}")
    if len(values) < 2:
        return None
    spread = relative_spread(values)
    if spread <= threshold:
        return None
    return (f"repeats spread {spread:.1%} ((max - min) / median over {len(values)} repeats), above the "
            f"{threshold:.0%} threshold: the measurement is noisy; check clocks, other load, or add repeats")
