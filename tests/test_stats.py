"""Student-t intervals against published tables, dollar error bars, and the spread warning."""

import math
import statistics

import pytest

from tokencost.cost import usd_per_mtok
from tokencost.errors import CostError
from tokencost.stats import (confidence_interval, relative_spread, spread_warning, t_quantile_two_sided,
                             usd_per_mtok_interval)

# NIST/SEMATECH e-Handbook of Statistical Methods, 1.3.6.7.2 "Critical Values of the Student's t
# Distribution" (upper-tail 0.05, 0.025, 0.005 -> two-sided 90 %, 95 %, 99 %), three decimals.
NIST_T = {
    (0.90, 1): 6.314, (0.90, 5): 2.015, (0.90, 30): 1.697,
    (0.95, 1): 12.706, (0.95, 2): 4.303, (0.95, 3): 3.182, (0.95, 4): 2.776, (0.95, 9): 2.262,
    (0.95, 10): 2.228, (0.95, 29): 2.045, (0.95, 100): 1.984,
    (0.99, 1): 63.657, (0.99, 4): 4.604, (0.99, 15): 2.947,
}


@pytest.mark.parametrize("level_dof,expected", NIST_T.items())
def test_t_quantile_matches_nist_table(level_dof, expected):
    level, dof = level_dof
    assert t_quantile_two_sided(level, dof) == pytest.approx(expected, abs=6e-4)


def test_t_quantile_matches_the_large_dof_expansion():
    # Abramowitz & Stegun 26.7.5: t ≈ z + (z³ + z)/(4ν) + (5z⁵ + 16z³ + 3z)/(96ν²), z the normal quantile.
    z = statistics.NormalDist().inv_cdf(0.975)
    for dof in (500, 5000):
        expansion = z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
        assert t_quantile_two_sided(0.95, dof) == pytest.approx(expansion, rel=1e-7)
    assert t_quantile_two_sided(0.95, 5000) > z  # t tails are heavier than the normal's


def test_t_quantile_closed_forms():
    # dof 1 is Cauchy: t = tan(π·level/2); dof 2: t = sqrt(2 L² / (1 - L²)).
    assert t_quantile_two_sided(0.8, 1) == pytest.approx(math.tan(math.pi * 0.4), rel=1e-9)
    assert t_quantile_two_sided(0.8, 2) == pytest.approx(math.sqrt(2 * 0.64 / (1 - 0.64)), rel=1e-9)


@pytest.mark.parametrize("level,dof", [(0.0, 3), (1.0, 3), (1.5, 3), (0.95, 0)])
def test_t_quantile_rejects_bad_input(level, dof):
    with pytest.raises(CostError):
        t_quantile_two_sided(level, dof)


def test_confidence_interval_worked_example():
    values = [100.0, 102.0, 98.0, 101.0, 99.0]  # mean 100, s = sqrt(2.5), n = 5, t(0.95, 4) = 2.776
    mean, low, high = confidence_interval(values)
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)
    assert mean == pytest.approx(100.0)
    assert (low, high) == (pytest.approx(100 - half, rel=1e-6), pytest.approx(100 + half, rel=1e-6))


def test_wider_level_gives_wider_interval_and_identical_values_zero_width():
    values = [10.0, 11.0, 12.0, 10.5]
    _, lo95, hi95 = confidence_interval(values, 0.95)
    _, lo99, hi99 = confidence_interval(values, 0.99)
    assert lo99 < lo95 < hi95 < hi99
    assert confidence_interval([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)


@pytest.mark.parametrize("values", [[1.0], [], [1.0, math.nan], [1.0, math.inf]])
def test_confidence_interval_rejects_too_few_or_non_finite(values):
    with pytest.raises(CostError):
        confidence_interval(values)


def test_dollar_interval_swaps_bounds():
    mean_usd, low_usd, high_usd = usd_per_mtok_interval(3.6, (1000.0, 800.0, 1250.0))
    assert mean_usd == pytest.approx(usd_per_mtok(3.6, 1000.0)) == pytest.approx(1.0)
    assert low_usd == pytest.approx(0.8)   # from the high throughput bound, 1250 tok/s
    assert high_usd == pytest.approx(1.25)  # from the low throughput bound, 800 tok/s
    assert low_usd < mean_usd < high_usd


def test_dollar_interval_errors():
    with pytest.raises(CostError, match="unbounded"):
        usd_per_mtok_interval(2.0, (10.0, -1.0, 21.0))
    with pytest.raises(CostError, match="low <= mean <= high"):
        usd_per_mtok_interval(2.0, (10.0, 12.0, 11.0))
    with pytest.raises(CostError):
        usd_per_mtok_interval(0.0, (10.0, 9.0, 11.0))


def test_spread_warning():
    assert spread_warning([100.0, 101.0, 102.0]) is None  # 2 % spread
    msg = spread_warning([100.0, 110.0, 104.0])  # (110 - 100) / 104 = 9.6 %
    assert msg is not None and "9.6%" in msg and "5%" in msg
    assert spread_warning([100.0]) is None
    assert spread_warning([100.0, 103.0], threshold=0.02) is not None
    assert relative_spread([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    with pytest.raises(CostError):
        spread_warning([1.0, 2.0], threshold=0)
    with pytest.raises(CostError):
        spread_warning([0.0, 0.0])
