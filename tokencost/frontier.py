"""The throughput-interactivity Pareto frontier, the cost at a target interactivity, and the roofline floor.

Axes (metrics.md section 1.2, "Per user vs per GPU"): throughput per device = ``output_tok_per_s``
(aggregate output tok/s of the batch) and interactivity = ``output_tok_per_s_per_seq`` (1 / TPOT,
the speed one user sees; InferenceX plots the same pair). Both are maximised: a point is on the
frontier when no other point is at least as good on both axes and better on one.

Between measured frontier points the throughput is interpolated linearly in interactivity and the
dollars are computed from it (stated as ``interpolated: True``); outside the measured range nothing
is extrapolated: a target slower than every point is priced at the least interactive point, which
already meets it, as an upper bound (``upper_bound: True``), and one faster than every point has no
cost. Torch-free.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from tokencost.cost import usd_per_mtok
from tokencost.errors import CostError

THROUGHPUT_KEY = "output_tok_per_s"
INTERACTIVITY_KEY = "output_tok_per_s_per_seq"


def _axis(point: dict, key: str) -> float:
    value = point.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CostError(f"point needs a positive finite {key!r}, got {value!r}")
    return float(value)


def _measured(points: Iterable[dict]) -> list[dict]:
    """Points that were measured: records with status "skipped" (e.g. out of memory) are left out."""
    kept = [p for p in points if p.get("status", "ok") != "skipped"]
    for p in kept:
        _axis(p, THROUGHPUT_KEY)
        _axis(p, INTERACTIVITY_KEY)
    return kept


def pareto_frontier(points: Iterable[dict]) -> list[dict]:
    """The non-dominated points, sorted by rising interactivity (hence falling throughput).

    ``points``: dicts (run records) with positive ``output_tok_per_s`` and
    ``output_tok_per_s_per_seq``; skipped records are ignored. Of exact duplicates the first is kept.
    Raises CostError for a point missing either axis, or when no measured point remains.
    """
    pts = _measured(points)
    if not pts:
        raise CostError("no measured points to build a frontier from")
    order = sorted(range(len(pts)), key=lambda i: (-_axis(pts[i], INTERACTIVITY_KEY), -_axis(pts[i], THROUGHPUT_KEY), i))
    frontier, best = [], -math.inf
    for i in order:  # most interactive first: keep a point only if it beats every more interactive one
        throughput = _axis(pts[i], THROUGHPUT_KEY)
        if throughput > best:
            frontier.append(pts[i])
            best = throughput
    return frontier[::-1]


def _neighbours(frontier: list[dict], target: float) -> tuple[dict, dict]:
    xs = [_axis(p, INTERACTIVITY_KEY) for p in frontier]
    if xs != sorted(xs):
        raise CostError("frontier must be sorted by rising interactivity (use pareto_frontier)")
    lo, hi = xs[0], xs[-1]
    if not lo <= target <= hi:
        raise CostError(f"target {target:.4g} tok/s per sequence is outside the measured range "
                        f"[{lo:.4g}, {hi:.4g}]; no extrapolation")
    for a, b in zip(frontier, frontier[1:]):
        if _axis(a, INTERACTIVITY_KEY) <= target <= _axis(b, INTERACTIVITY_KEY):
            return a, b
    return frontier[0], frontier[0]  # a single-point frontier whose interactivity equals the target


def cost_at_interactivity(frontier: list[dict], target_tok_per_s_per_seq: float, usd_per_hour: float) -> dict[str, Any]:
    """Throughput and $/Mtok output on the frontier at a target interactivity (tok/s per sequence).

    Between two frontier points the throughput is interpolated linearly in interactivity and
    ``interpolated`` is True (a measured point hit exactly gives False); $/Mtok is computed from that
    throughput. A target below every measured interactivity is met by the least interactive frontier
    point (the highest throughput): its cost is returned with ``upper_bound`` True, since a larger
    batch, not measured, could serve the target for less; nothing is extrapolated. Raises CostError
    for a target above the measured range (no point is that fast), a non-positive target or price, or
    an unsorted frontier.
    """
    if not math.isfinite(target_tok_per_s_per_seq) or target_tok_per_s_per_seq <= 0:
        raise CostError(f"target interactivity must be positive, got {target_tok_per_s_per_seq}")
    if not frontier:
        raise CostError("empty frontier")
    slowest = frontier[0]
    if target_tok_per_s_per_seq < _axis(slowest, INTERACTIVITY_KEY):
        _neighbours(frontier, _axis(slowest, INTERACTIVITY_KEY))  # the frontier's order, checked
        throughput = _axis(slowest, THROUGHPUT_KEY)
        return {"target_tok_per_s_per_seq": target_tok_per_s_per_seq, "output_tok_per_s": throughput,
                "usd_per_mtok_output": usd_per_mtok(usd_per_hour, throughput), "usd_per_hour": usd_per_hour,
                "interpolated": False, "upper_bound": True,
                "between": [{INTERACTIVITY_KEY: _axis(slowest, INTERACTIVITY_KEY), THROUGHPUT_KEY: throughput}]}
    a, b = _neighbours(frontier, target_tok_per_s_per_seq)
    xa, xb = _axis(a, INTERACTIVITY_KEY), _axis(b, INTERACTIVITY_KEY)
    ya, yb = _axis(a, THROUGHPUT_KEY), _axis(b, THROUGHPUT_KEY)
    exact = target_tok_per_s_per_seq in (xa, xb)
    if exact:
        throughput = ya if target_tok_per_s_per_seq == xa else yb
    else:
        throughput = ya + (target_tok_per_s_per_seq - xa) * (yb - ya) / (xb - xa)
    return {
        "target_tok_per_s_per_seq": target_tok_per_s_per_seq,
        "output_tok_per_s": throughput,
        "usd_per_mtok_output": usd_per_mtok(usd_per_hour, throughput),
        "usd_per_hour": usd_per_hour,
        "interpolated": not exact,
        "upper_bound": False,
        "between": [{INTERACTIVITY_KEY: xa, THROUGHPUT_KEY: ya}, {INTERACTIVITY_KEY: xb, THROUGHPUT_KEY: yb}],
    }


def roofline_floor_usd_per_mtok(usd_per_hour: float, roofline_output_tok_per_s: float) -> float:
    """The lowest $/Mtok output a point could reach: its price at the roofline throughput (the decode
    step at its bandwidth or compute bound, metrics.md section 3). Raises CostError for bad input."""
    return usd_per_mtok(usd_per_hour, roofline_output_tok_per_s)


def cost_vs_floor(usd_per_hour: float, output_tok_per_s: float, roofline_output_tok_per_s: float) -> dict[str, float]:
    """Measured $/Mtok output, the roofline floor, and measured as a multiple of the floor.

    multiple_of_floor = measured $/Mtok ÷ floor $/Mtok = roofline tok/s ÷ measured tok/s; it is >= 1
    unless the bytes model undercounts (or a warm cache beats HBM bandwidth, metrics.md section 3.1).
    """
    measured = usd_per_mtok(usd_per_hour, output_tok_per_s)
    floor = roofline_floor_usd_per_mtok(usd_per_hour, roofline_output_tok_per_s)
    return {"usd_per_mtok_output": measured, "floor_usd_per_mtok_output": floor, "multiple_of_floor": measured / floor}
