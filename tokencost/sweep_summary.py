"""Summaries of a sweep's records: repeats pooled per point with confidence intervals carried into
dollars, the throughput-interactivity frontier with $/Mtok along it, the cost at a target
interactivity, and each point's $/Mtok as a multiple of its roofline floor. Torch-free."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from tokencost.cost import usd_per_mtok
from tokencost.errors import CostError
from tokencost.frontier import cost_at_interactivity, cost_vs_floor, pareto_frontier
from tokencost.stats import confidence_interval, spread_warning, usd_per_mtok_interval

POINT_KEYS = ("model", "device", "dtype", "backend", "batch_size", "prompt_len", "gen_len")
# Repeats priced differently are different rows, never pooled (their $/Mtok would need one price).
PRICE_KEYS = ("usd_per_hour", "price_source")
# Pooled as the median over repeats: the measured times, and the roofline bound (no measured time in it).
POOLED_MEDIAN_KEYS = ("ttft_s", "tpot_s", "roofline_output_tok_per_s")
# Derived from the pooled times, never pooled column by column: key -> the time it is work / time of.
POOLED_RATE_KEYS = {"output_tok_per_s": "tpot_s", "output_tok_per_s_per_seq": "tpot_s", "mbu": "tpot_s",
                    "prefill_tok_per_s": "ttft_s"}


def _group(records: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("kind", "run") == "run" and r.get("status", "ok") == "ok":
            groups[tuple(r.get(k) for k in POINT_KEYS + PRICE_KEYS)].append(r)
    return groups


def _interval_fields(tok_per_s: list[float], usd_per_hour: float | None) -> dict[str, Any]:
    """95% Student-t interval of output tok/s over repeats and the $/Mtok interval it implies."""
    if len(tok_per_s) < 2:
        return {}
    mean, low, high = confidence_interval(tok_per_s)
    out = {"output_tok_per_s_ci95": [low, high]}
    if usd_per_hour and low > 0:
        _, usd_low, usd_high = usd_per_mtok_interval(usd_per_hour, (mean, low, high))
        out["usd_per_mtok_output_ci95"] = [usd_low, usd_high]
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if _number(r.get(key))]
    return statistics.median(values) if values else None


def _rate(runs: list[dict], key: str, time_s: float | None) -> float | None:
    """``key`` (a rate: work ÷ ``time key``) at the pooled time: the work of one repeat (rate × its own
    time: batch for output tok/s, 1 per sequence, batch × prompt for prefill, bytes ÷ bandwidth for MBU,
    the same in every repeat of a point) over ``time_s``. Without a pooled time: the median rate."""
    time_key = POOLED_RATE_KEYS[key]
    work = [r[key] * r[time_key] for r in runs if _number(r.get(key)) and _number(r.get(time_key))]
    if time_s is None or time_s <= 0 or not work:
        return _median(runs, key)
    return statistics.median(work) / time_s


def _usd(hourly: float | None, rate: float | None) -> float | None:
    return usd_per_mtok(hourly, rate) if hourly is not None and rate is not None and rate > 0 else None


def record_warnings(group: list[dict]) -> list[str]:
    """The warnings of a point's run records, each once, with "(in k of n repeats)" added to one that
    not every repeat carries (its figures are that repeat's, not the pooled row's)."""
    counts: dict[str, int] = {}
    for r in group:
        found = r.get("warnings")
        for w in dict.fromkeys([found] if isinstance(found, str) else found if isinstance(found, list) else []):
            counts[str(w)] = counts.get(str(w), 0) + 1
    return [w if k == len(group) else f"{w} (in {k} of {len(group)} repeats)" for w, k in counts.items()]


def pool_repeats(runs: list[dict], spread_threshold: float = 0.05) -> dict[str, Any]:
    """The figures of one point pooled over its repeats (run records of the same settings), the one
    pooling ``tokencost sweep`` and ``tokencost report`` share:

    - the median over repeats of TTFT and TPOT (and of the roofline tok/s), :data:`POOLED_MEDIAN_KEYS`;
      an even number of repeats gives the mean of the middle two;
    - the rates derived from those pooled times, :data:`POOLED_RATE_KEYS`, never pooled column by
      column (whose even-count medians would disagree with the TPOT beside them): output tok/s =
      batch / TPOT, tok/s per sequence = 1 / TPOT, MBU = bytes per step ÷ TPOT ÷ bandwidth, prefill
      tok/s = batch × prompt / TTFT (:func:`_rate`), so every pooled row is internally consistent;
    - ``usd_per_mtok_output`` / ``usd_per_mtok_input``: the first repeat's price at those pooled output /
      prefill throughputs (not the median of per-repeat dollars, which would not match the throughput
      shown beside them: $/Mtok is not linear in tok/s); None without a price or throughput;
    - ``output_tok_per_s_ci95`` and ``usd_per_mtok_output_ci95`` from 2 repeats on
      (``tokencost.stats.confidence_interval``, carried into dollars by ``usd_per_mtok_interval``);
    - ``record_warnings``: the warnings the repeats' records carry, each once (:func:`record_warnings`);
    - ``repeats``, ``usd_per_hour``, ``price_source``, and ``warnings`` (spread above
      ``spread_threshold``, an interval reaching zero, repeats priced differently: the callers group
      by :data:`PRICE_KEYS` as well, so that last one only reaches a direct caller).
    """
    first = runs[0]
    pooled: dict[str, Any] = {k: _median(runs, k) for k in POOLED_MEDIAN_KEYS if any(k in r for r in runs)}
    for key, time_key in POOLED_RATE_KEYS.items():
        if any(key in r for r in runs):
            pooled[key] = _rate(runs, key, pooled.get(time_key))
    hourly = first.get("usd_per_hour")
    if isinstance(hourly, bool) or not isinstance(hourly, (int, float)) or not hourly > 0:
        hourly = None
    pooled.update(repeats=len(runs), usd_per_hour=hourly, price_source=first.get("price_source"),
                  usd_per_mtok_output=_usd(hourly, pooled.get("output_tok_per_s")),
                  usd_per_mtok_input=_usd(hourly, pooled.get("prefill_tok_per_s")))
    tps = [r["output_tok_per_s"] for r in runs if isinstance(r.get("output_tok_per_s"), (int, float))]
    pooled.update(_interval_fields(tps, hourly))
    warning = spread_warning(tps, spread_threshold) if tps else None
    warnings = [warning] if warning else []
    ci = pooled.get("output_tok_per_s_ci95")
    if ci and ci[0] <= 0:
        warnings.append(f"the 95% interval of output tok/s reaches {ci[0]:.3g} with {len(runs)} repeats: "
                        "no $/Mtok interval; add repeats or reduce noise")
    if len({r.get("usd_per_hour") for r in runs}) > 1:
        warnings.append("repeats carry different prices; the first repeat's price is used")
    pooled["warnings"] = warnings
    pooled["record_warnings"] = record_warnings(runs)  # busy CPU, MBU far off the roofline, few steps...
    return pooled


def summarize_point(runs: list[dict], spread_threshold: float = 0.05) -> dict[str, Any]:
    """One sweep point from its repeats (:func:`pool_repeats`), with the roofline floor multiple."""
    point = {k: runs[0].get(k) for k in POINT_KEYS}
    point.update(pool_repeats(runs, spread_threshold))
    hourly, roof = point["usd_per_hour"], point.get("roofline_output_tok_per_s")
    if hourly and roof:
        point.update(cost_vs_floor(hourly, point["output_tok_per_s"], roof))
    return point


def summarize_sweep(records: list[dict], target_tok_per_s_per_seq: float | None = None) -> dict[str, Any]:
    """Points (repeats pooled), the Pareto frontier of throughput vs interactivity with $/Mtok for
    each context length (points at different contexts serve different workloads, so they are not
    compared), the cost at ``target_tok_per_s_per_seq`` on each frontier (interpolated between
    measured points, flagged as such), and the skipped points with their reasons.

    A target outside a frontier's measured interactivity range gives an ``error`` for that context
    instead of a figure.

    Raises:
        CostError: no measured point.
    """
    groups = _group(records)
    if not groups:
        raise CostError("the results hold no measured run points")
    points = [summarize_point(runs) for runs in groups.values()]
    frontiers = []
    for context in sorted({p["prompt_len"] for p in points}):
        frontier = pareto_frontier([p for p in points if p["prompt_len"] == context])
        entry = {"prompt_len": context, "points": frontier}
        if target_tok_per_s_per_seq is not None:
            entry["at_target"] = _at_target(frontier, target_tok_per_s_per_seq)
        frontiers.append(entry)
    return {"kind": "sweep_summary", "points": points, "frontiers": frontiers,
            "skipped": [{k: r.get(k) for k in ("batch_size", "prompt_len", "skip_reason")}
                        for r in records if r.get("status") == "skipped"]}


def _at_target(frontier: list[dict], target: float) -> dict[str, Any]:
    hourly = frontier[0].get("usd_per_hour")
    try:
        if not hourly:
            raise CostError("a cost at a target interactivity needs a price")
        return cost_at_interactivity(frontier, target, hourly)
    except CostError as exc:  # the measured points stay useful: say why there is no figure
        return {"target_tok_per_s_per_seq": target, "error": str(exc)}
