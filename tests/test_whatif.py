"""tokencost.whatif: Amdahl arithmetic on hand-made breakdowns, speed-up parsing and its errors (no torch)."""

import subprocess
import sys

import pytest

from tokencost.errors import CostError
from tokencost.whatif import (OP_CLASSES, ROOFLINE, amdahl_step_s, check_names, check_roofline_classes,
                              check_times, class_totals_s, new_times_s, parse_speedup, parse_speedups,
                              what_if)

# 10 ms step: matmul 6, attention 3, other 1.
TIMES = {"matmul": 6e-3, "attention": 3e-3, "other": 1e-3}
ROWS = {"matmul.qkv_proj": 2e-3, "matmul.lm_head": 1e-3, "attention.decode": 3e-3, "attention.kv_write": 1e-3,
        "norm": 0.5e-3, "other": 0.5e-3}


def test_amdahl_on_hand_numbers():
    # attention 3x faster: 6 + 3/3 + 1 = 8 ms.
    assert amdahl_step_s(TIMES, {"attention": 3}) == pytest.approx(8e-3)
    # attention 2x and matmul 1.2x: 6/1.2 + 3/2 + 1 = 7.5 ms.
    assert amdahl_step_s(TIMES, {"attention": 2, "matmul": 1.2}) == pytest.approx(7.5e-3)
    # A factor below 1 is a slow-down: attention 4x slower adds 9 ms.
    assert amdahl_step_s(TIMES, {"attention": 0.25}) == pytest.approx(19e-3)
    assert amdahl_step_s(TIMES, {}) == pytest.approx(10e-3)


def test_class_factor_applies_to_its_rows_and_a_row_factor_overrides_it():
    new = new_times_s(ROWS, {"matmul": 2, "attention": 3, "attention.kv_write": 1})
    assert new["matmul.qkv_proj"] == pytest.approx(1e-3) and new["matmul.lm_head"] == pytest.approx(0.5e-3)
    assert new["attention.decode"] == pytest.approx(1e-3) and new["attention.kv_write"] == pytest.approx(1e-3)
    assert new["norm"] == ROWS["norm"] and new["other"] == ROWS["other"]
    assert amdahl_step_s(ROWS, {"attention.decode": 3}) == pytest.approx(8e-3 - 2e-3)


def test_what_if_prices_old_and_new():
    wi = what_if(TIMES, 4, {"attention": 3}, usd_per_hour=2.0)
    assert wi.old_step_s == pytest.approx(10e-3) and wi.new_step_s == pytest.approx(8e-3)
    assert wi.step_speedup == pytest.approx(1.25)
    assert wi.tok_per_s("old") == pytest.approx(400.0) and wi.tok_per_s("new") == pytest.approx(500.0)
    # $/Mtok = $/h / (tok/s x 3600) x 1e6: 2 / (400 x 3600) x 1e6 = 1.3889; at 500 tok/s 1.1111.
    assert wi.usd_per_mtok("old") == pytest.approx(2 / (400 * 3600) * 1e6)
    assert wi.usd_per_mtok("new") == pytest.approx(2 / (500 * 3600) * 1e6)
    d = wi.as_dict()
    assert d["new_step_s"] == pytest.approx(8e-3) and d["class_factors"]["attention"] == pytest.approx(3.0)
    assert d["class_factors"]["matmul"] == pytest.approx(1.0) and d["class_factors"]["norm"] is None
    assert d["new_output_tok_per_s_per_seq"] == pytest.approx(125.0)
    assert sum(d["new_class_times_s"].values()) == pytest.approx(8e-3)


def test_what_if_without_price_has_no_dollars():
    wi = what_if(TIMES, 1, {"matmul": 2})
    assert wi.usd_per_mtok("new") is None and wi.as_dict()["new_usd_per_mtok_output"] is None


def test_roofline_sets_rows_to_their_bound_and_keeps_rows_already_faster():
    bounds = {"matmul.qkv_proj": 0.5e-3, "matmul.lm_head": 0.25e-3, "attention.decode": 5e-3,
              "attention.kv_write": 0.0}
    wi = what_if(ROWS, 2, {"matmul": ROOFLINE}, roofline_s=bounds)
    assert wi.new_times_s["matmul.qkv_proj"] == 0.5e-3 and wi.new_times_s["matmul.lm_head"] == 0.25e-3
    assert wi.new_step_s == pytest.approx(8e-3 - 3e-3 + 0.75e-3)
    assert wi.class_factors()["matmul"] == pytest.approx(3e-3 / 0.75e-3) and not wi.warnings
    # attention.decode measured faster than its bound: kept as measured (a what-if never slows an op
    # down), with a warning that its byte model or the bandwidth does not fit; kv_write goes to 0.
    faster = what_if(ROWS, 2, {"attention": ROOFLINE}, roofline_s=bounds)
    assert faster.new_times_s["attention.decode"] == ROWS["attention.decode"]
    assert faster.new_times_s["attention.kv_write"] == 0.0
    assert faster.new_step_s == pytest.approx(8e-3 - ROWS["attention.kv_write"])
    assert len(faster.warnings) == 1 and "faster than its bandwidth bound" in faster.warnings[0]
    assert all(faster.new_times_s[k] <= ROWS[k] for k in ROWS)


def test_roofline_without_a_bound_is_an_error():
    with pytest.raises(CostError, match="no bandwidth-bound time"):
        what_if(ROWS, 1, {"norm": ROOFLINE}, roofline_s={"matmul.qkv_proj": 1e-3})
    with pytest.raises(CostError, match="no bandwidth-bound time"):
        new_times_s(ROWS, {"matmul": ROOFLINE})
    with pytest.raises(CostError, match="numeric"):
        amdahl_step_s(ROWS, {"matmul": ROOFLINE})


def test_parse_speedups():
    assert parse_speedup("attention=2") == ("attention", 2.0)
    assert parse_speedup(" matmul = 1.2 ") == ("matmul", 1.2)
    assert parse_speedup("attention=Roofline") == ("attention", ROOFLINE)
    assert parse_speedup("matmul.lm_head=3") == ("matmul.lm_head", 3.0)
    assert parse_speedups(["attention=2", "matmul=1.2"]) == {"attention": 2.0, "matmul": 1.2}


@pytest.mark.parametrize("text, needle", [
    ("attention", "CLASS=FACTOR"), ("softmax=2", "unknown op class 'softmax'"), ("attention=0", "> 0"),
    ("attention=-2", "> 0"), ("attention=nan", "> 0"), ("attention=inf", "> 0"), ("attention=fast", "'fast'"),
    ("attention=", "''"), ("matmul.=2", "empty row name"),
])
def test_bad_speedup_is_a_clear_error(text, needle):
    with pytest.raises(CostError, match="speedup|class|row") as exc:
        parse_speedup(text)
    assert needle in str(exc.value)


def test_duplicate_and_unknown_names():
    with pytest.raises(CostError, match="twice"):
        parse_speedups(["attention=2", "attention=3"])
    with pytest.raises(CostError, match="no such class or row"):
        new_times_s(ROWS, {"matmul.o_proj": 2})  # a row this breakdown does not have
    check_names({"matmul": 2, "attention.decode": 2}, ROWS)
    with pytest.raises(CostError, match="roofline applies to matmul, attention"):
        check_roofline_classes({"norm": ROOFLINE}, ("matmul", "attention"))
    check_roofline_classes({"matmul.lm_head": ROOFLINE, "norm": 2.0}, ("matmul", "attention"))


@pytest.mark.parametrize("times, needle", [
    ({"matmul": -1e-3}, ">= 0"), ({"matmul": float("nan")}, ">= 0"), ({"softmax": 1e-3}, "unknown op class"),
    ({"matmul": 0.0, "other": 0.0}, "positive total"), ({"matmul": True}, ">= 0"),
])
def test_bad_breakdown_is_rejected(times, needle):
    with pytest.raises(CostError) as exc:
        check_times(times)
    assert needle in str(exc.value)


@pytest.mark.parametrize("kwargs, needle", [
    ({"batch_size": 0}, "batch_size"), ({"usd_per_hour": -1.0}, "usd_per_hour"),
    ({"usd_per_hour": float("inf")}, "usd_per_hour"),
])
def test_bad_what_if_inputs(kwargs, needle):
    args = {"batch_size": 1, **kwargs}
    with pytest.raises(CostError, match=needle):
        what_if(TIMES, args.pop("batch_size"), {"attention": 2}, **args)


def test_class_totals_cover_every_class():
    totals = class_totals_s(ROWS)
    assert tuple(totals) == OP_CLASSES
    assert totals["matmul"] == pytest.approx(3e-3) and totals["attention"] == pytest.approx(4e-3)
    assert totals["sampling"] == 0.0 and sum(totals.values()) == pytest.approx(sum(ROWS.values()))


def test_whatif_imports_no_torch():
    code = "import sys, tokencost.whatif; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_op_names_stand_for_their_classes():
    from tokencost.whatif import parse_speedups

    assert parse_speedups(["linear=1.5", "rmsnorm=2"]) == {"matmul": 1.5, "norm": 2.0}
    assert parse_speedups(["attention_decode=2"]) == {"attention.decode": 2.0}  # the kernel, not the KV write
    with pytest.raises(CostError, match="no prefill"):
        parse_speedups(["attention_prefill=2"])
    with pytest.raises(CostError, match=r"matmul given twice \(linear=1.5 and matmul=2\)"):
        parse_speedups(["linear=1.5", "matmul=2"])  # the error shows what was typed
    with pytest.raises(CostError, match="names no class"):
        parse_speedups(["=2"])
