"""Pareto frontier, cost at a target interactivity (interpolated, never extrapolated), roofline floor."""

import itertools
import random

import pytest

from tokencost.cost import usd_per_mtok
from tokencost.errors import CostError
from tokencost.frontier import (cost_at_interactivity, cost_vs_floor, pareto_frontier,
                                roofline_floor_usd_per_mtok)


def _pt(per_seq: float, per_device: float, **extra) -> dict:
    return {"output_tok_per_s_per_seq": per_seq, "output_tok_per_s": per_device, **extra}


# A batch sweep: B=1 fastest per user, B=64 highest throughput; "dominated" loses on both axes to B=8.
B1, B8, B32, B64 = _pt(100.0, 100.0), _pt(80.0, 640.0), _pt(50.0, 1600.0), _pt(30.0, 1920.0)
DOMINATED = _pt(60.0, 500.0)


def test_frontier_keeps_non_dominated_points_sorted_by_interactivity():
    front = pareto_frontier([B32, DOMINATED, B1, B64, B8])
    assert front == [B64, B32, B8, B1]


def test_frontier_skips_skipped_records_and_keeps_first_duplicate():
    dup = _pt(80.0, 640.0, tag="second")
    skipped = {"status": "skipped", "skip_reason": "out of memory"}
    front = pareto_frontier([B8, dup, skipped, B1])
    assert front == [B8, B1] and front[0] is B8


def test_frontier_is_correct_on_random_points():
    rng = random.Random(0)
    pts = [_pt(rng.uniform(1, 100), rng.uniform(1, 100)) for _ in range(60)]
    front = pareto_frontier(pts)
    on = {id(p) for p in front}
    for p in pts:  # brute force: a point is on the frontier iff nothing dominates it
        dominated = any(q["output_tok_per_s"] >= p["output_tok_per_s"] and
                        q["output_tok_per_s_per_seq"] >= p["output_tok_per_s_per_seq"] and q is not p and
                        (q["output_tok_per_s"], q["output_tok_per_s_per_seq"]) !=
                        (p["output_tok_per_s"], p["output_tok_per_s_per_seq"]) for q in pts)
        assert (id(p) in on) == (not dominated)
    for a, b in itertools.pairwise(front):
        assert a["output_tok_per_s_per_seq"] < b["output_tok_per_s_per_seq"]
        assert a["output_tok_per_s"] > b["output_tok_per_s"]


@pytest.mark.parametrize("bad", [[], [{"output_tok_per_s": 5.0}], [_pt(0.0, 5.0)], [_pt(5.0, float("nan"))]])
def test_frontier_rejects_bad_points(bad):
    with pytest.raises(CostError):
        pareto_frontier(bad)


def test_cost_at_measured_point_is_not_interpolated():
    front = pareto_frontier([B1, B8, B32, B64])
    r = cost_at_interactivity(front, 50.0, 3.6)
    assert r["interpolated"] is False
    assert r["output_tok_per_s"] == 1600.0
    assert r["usd_per_mtok_output"] == pytest.approx(usd_per_mtok(3.6, 1600.0))


def test_cost_between_points_is_linear_in_interactivity_and_flagged():
    front = pareto_frontier([B1, B8, B32, B64])
    r = cost_at_interactivity(front, 65.0, 3.6)  # halfway between B32 (50, 1600) and B8 (80, 640)
    assert r["interpolated"] is True
    assert r["output_tok_per_s"] == pytest.approx(1120.0)
    assert r["usd_per_mtok_output"] == pytest.approx(3.6 / (1120.0 * 3600) * 1e6)
    assert [p["output_tok_per_s"] for p in r["between"]] == [1600.0, 640.0]


@pytest.mark.parametrize("target", [100.1, 0.0, -5.0])
def test_cost_above_the_measured_range_is_an_error(target):
    front = pareto_frontier([B1, B8, B32, B64])
    with pytest.raises(CostError):
        cost_at_interactivity(front, target, 3.6)


def test_a_target_below_the_measured_range_is_met_at_most_at_the_slowest_points_cost():
    front = pareto_frontier([B1, B8, B32, B64])
    r = cost_at_interactivity(front, 29.9, 3.6)  # B64 (30 tok/s per seq) already meets it: no extrapolation
    assert r["upper_bound"] is True and r["interpolated"] is False
    assert r["output_tok_per_s"] == front[0]["output_tok_per_s"]
    assert cost_at_interactivity(front, 65.0, 3.6)["upper_bound"] is False


def test_cost_needs_a_sorted_frontier_and_a_price():
    with pytest.raises(CostError, match="sorted"):
        cost_at_interactivity([B1, B64], 50.0, 3.6)
    with pytest.raises(CostError):
        cost_at_interactivity(pareto_frontier([B1, B64]), 50.0, 0.0)
    with pytest.raises(CostError):
        cost_at_interactivity([], 50.0, 3.6)


def test_single_point_frontier():
    assert cost_at_interactivity([B8], 80.0, 3.6)["interpolated"] is False
    assert cost_at_interactivity([B8], 79.0, 3.6)["upper_bound"] is True
    with pytest.raises(CostError):
        cost_at_interactivity([B8], 81.0, 3.6)


def test_roofline_floor_and_multiple():
    assert roofline_floor_usd_per_mtok(3.6, 2000.0) == pytest.approx(0.5)
    r = cost_vs_floor(3.6, output_tok_per_s=500.0, roofline_output_tok_per_s=2000.0)
    assert r["usd_per_mtok_output"] == pytest.approx(2.0)
    assert r["floor_usd_per_mtok_output"] == pytest.approx(0.5)
    assert r["multiple_of_floor"] == pytest.approx(4.0)  # = roofline tok/s / measured tok/s
    with pytest.raises(CostError):
        roofline_floor_usd_per_mtok(3.6, 0.0)
