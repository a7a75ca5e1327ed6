"""$/Mtok arithmetic against worked examples from shared/reference (claims.md §3, prices.md §6.2) and
the unit guards (claims.md §4)."""

from __future__ import annotations

import math

import pytest

from tokencost.cost import (MAX_USD_PER_HOUR, billed_seconds, blended_usd_per_mtok, check_usd_per_hour,
                            check_usd_per_mtok, effective_cost, hourly_price_for_throughput, output_tok_per_s,
                            request_cost, tok_per_s_for_usd_per_mtok, usd_per_gpu_hour_from_instance, usd_per_mtok)
from tokencost.errors import CostError


@pytest.mark.parametrize("price, tok_per_s, expected, tol", [
    (1.41, 90, 4.35, 0.005),      # NVIDIA H200 example, recomputed (claims.md §3.2; stated 4.20)
    (2.65, 6000, 0.123, 0.0005),  # NVIDIA GB300 example
    (6.88, 2209, 0.87, 0.005), (2.99, 2209, 0.38, 0.005), (1.30, 2209, 0.16, 0.005),  # prices.md §6.2
    (6.88, 15220, 0.126, 0.0005), (2.99, 15220, 0.055, 0.0005), (1.30, 15220, 0.024, 0.0005),
    (1.61, 4715, 0.095, 0.0005),  # caleta.io, claims.md §1.6
])
def test_usd_per_mtok_worked_examples(price, tok_per_s, expected, tol):
    assert usd_per_mtok(price, tok_per_s) == pytest.approx(expected, abs=tol)


def test_usd_per_mtok_formula_and_inverse():
    assert usd_per_mtok(3.6, 1.0) == pytest.approx(1e6 / 1000)  # $3.6/h at 1 tok/s = $1 per 1000 tokens
    assert tok_per_s_for_usd_per_mtok(1.41, 4.20) == pytest.approx(93.25, abs=0.01)  # claims.md: "≈93"
    assert usd_per_mtok(1.41, tok_per_s_for_usd_per_mtok(1.41, 4.20)) == pytest.approx(4.20)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "3", None])
def test_usd_per_mtok_rejects_bad_inputs(bad):
    with pytest.raises(CostError, match="tok_per_s must be a positive finite number"):
        usd_per_mtok(2.0, bad)
    with pytest.raises(CostError, match="usd_per_hour must be a positive finite number"):
        usd_per_mtok(bad, 100.0)


def test_instance_price_to_gpu_price():
    assert usd_per_gpu_hour_from_instance(55.04, 8) == pytest.approx(6.88)  # p5.48xlarge, prices.md §2
    for bad in (0, 2.5, -8):
        with pytest.raises(CostError, match="gpus_per_instance"):
            usd_per_gpu_hour_from_instance(55.04, bad)


def test_mixed_units_need_gpu_counts():
    with pytest.raises(CostError, match="GPUs per instance"):
        hourly_price_for_throughput(55.04, "instance", "per-gpu")
    with pytest.raises(CostError, match="per-node throughput needs the number of GPUs"):
        hourly_price_for_throughput(6.88, "gpu", "per-node")
    node = hourly_price_for_throughput(55.04, "instance", "per-node", gpus=8, gpus_per_instance=8)
    assert node == pytest.approx(55.04)
    # A node figure with the node price and a per-GPU figure with the GPU price give the same $/Mtok.
    assert usd_per_mtok(node, 8 * 1000.0) == pytest.approx(usd_per_mtok(6.88, 1000.0))
    with pytest.raises(CostError, match="price unit"):
        hourly_price_for_throughput(1.0, "vcpu", "per-gpu")


def test_total_tokens_are_not_output_tokens():
    with pytest.raises(CostError, match="total tokens are not output tokens"):
        output_tok_per_s(94022.0, "total")
    assert output_tok_per_s(22853.0, "total", 1000, 1000) == pytest.approx(11426.5)
    assert output_tok_per_s(900.0, "total", 128, 128 * 8) == pytest.approx(800.0)
    assert output_tok_per_s(5.0, "output") == 5.0
    with pytest.raises(CostError, match="tokens must be"):
        output_tok_per_s(5.0, "input")


def test_request_cost_splits_gpu_time():
    # $2/GPU-h, 0.5 s prefill for this request, 20 ms decode steps shared by 8 requests, 1000 in / 200 out:
    # the first output token comes from the prefill, so 199 decode steps (E2E = TTFT + (n - 1) TPOT).
    c = request_cost(2.0, prefill_s=0.5, decode_step_s=0.02, batch_size=8, input_len=1000, output_len=200)
    assert c.decode_s == pytest.approx(199 * 0.02 / 8)
    assert c.usd_per_request == pytest.approx(2.0 * (0.5 + 0.4975) / 3600)
    assert c.usd_per_mtok_input == pytest.approx(2.0 * 0.5 / 3600 / 1000 * 1e6)
    assert c.usd_per_mtok_output == pytest.approx(2.0 * 0.4975 / 3600 / 200 * 1e6)
    # Charges per token add back up to the request's GPU time: never the whole hour twice.
    total = (c.usd_per_mtok_input * 1000 + c.usd_per_mtok_output * 200) / 1e6
    assert total == pytest.approx(c.usd_per_request)
    assert c.usd_per_mtok_blended == pytest.approx((3 * c.usd_per_mtok_input + c.usd_per_mtok_output) / 4)
    assert c.usd_per_mtok_output_all_in == pytest.approx(c.usd_per_request / 200 * 1e6)
    two_gpus = request_cost(2.0, 0.5, 0.02, 8, 1000, 200, gpus=2, blend=(1, 1))
    assert two_gpus.usd_per_request == pytest.approx(2 * c.usd_per_request)
    assert two_gpus.usd_per_mtok_blended == pytest.approx((two_gpus.usd_per_mtok_input + two_gpus.usd_per_mtok_output) / 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size"), (dict(output_len=0), "output_len"), (dict(input_len=0), "input_len"),
    (dict(decode_step_s=0.0), "decode_step_s"), (dict(prefill_s=-1.0), "prefill_s"), (dict(gpus=0), "gpus"),
])
def test_request_cost_rejects_bad_inputs(kwargs, message):
    args = dict(usd_per_gpu_hour=2.0, prefill_s=0.5, decode_step_s=0.02, batch_size=8, input_len=10, output_len=5)
    with pytest.raises(CostError, match=message):
        request_cost(**{**args, **kwargs})


def test_blended_price_is_3_to_1():
    assert blended_usd_per_mtok(0.59, 0.79) == pytest.approx((3 * 0.59 + 0.79) / 4)  # findllm.org convention
    assert blended_usd_per_mtok(1.0, 3.0, blend=(1, 1)) == pytest.approx(2.0)


def test_effective_cost_equals_peak_without_overheads():
    e = effective_cost(3.6, 1000.0, tokens=3_600_000)
    assert e.busy_s == pytest.approx(3600) and e.usd_per_mtok_effective == pytest.approx(e.usd_per_mtok_peak)


def test_effective_cost_overheads():
    assert effective_cost(3.6, 1000.0, 1e6, utilization=0.5).overhead_ratio == pytest.approx(2.0)
    spin = effective_cost(3.6, 1000.0, 540_000, spinup_s=60)
    assert spin.billed_s == pytest.approx(600) and spin.overhead_ratio == pytest.approx(600 / 540)
    hourly = effective_cost(3.6, 1000.0, 3_601_000, billing="hour")
    assert hourly.billed_s == 7200 and hourly.usd_total == pytest.approx(7.2)
    assert effective_cost(3.6, 1000.0, 10_000, billing="minute", minimum_billed_s=300).billed_s == 300


def test_billing_rounding_tolerates_float_noise():
    assert billed_seconds(3600.0000000001, 3600) == 3600
    assert billed_seconds(3600.1, 3600) == 7200


@pytest.mark.parametrize("kwargs, message", [
    (dict(utilization=0.0), "utilization"), (dict(utilization=1.5), "utilization"),
    (dict(spinup_s=-1.0), "spinup_s"), (dict(billing="fortnight"), "billing"), (dict(tokens=0), "tokens"),
])
def test_effective_cost_rejects_bad_inputs(kwargs, message):
    with pytest.raises(CostError, match=message):
        effective_cost(**{"usd_per_hour": 2.0, "tok_per_s": 100.0, "tokens": 1000, **kwargs})


def test_price_bounds():
    assert check_usd_per_hour("p", MAX_USD_PER_HOUR) == MAX_USD_PER_HOUR and check_usd_per_mtok("p", 600.0) == 600.0
    for check, value in ((check_usd_per_hour, 1e308), (check_usd_per_hour, 2e6), (check_usd_per_mtok, 1e7)):
        with pytest.raises(CostError, match="must be at most 1,000,000"):
            check("--price", value)
    with pytest.raises(CostError, match="positive finite"):
        check_usd_per_hour("--price", math.inf)


def test_overflowing_results_are_errors_not_inf_or_nan():
    # 1e308 $/hour: the billed job cost overflows to inf, and inf / inf would be a NaN overhead ratio.
    with pytest.raises(CostError, match="not a finite number"):
        effective_cost(1e308, 1.4, 1e6, utilization=0.5)
    with pytest.raises(CostError, match="not a finite number"):
        usd_per_mtok(2.0, 5e-324)  # a denormal throughput: the $/Mtok overflows
    with pytest.raises(CostError, match="not a finite number"):
        request_cost(1e308, prefill_s=100.0, decode_step_s=100.0, batch_size=1, input_len=1, output_len=1)
    from tokencost.breakeven import breakeven_utilization
    from tokencost.prices import api_price_from_name

    with pytest.raises(CostError, match="not a finite number"):
        breakeven_utilization(1e308, 1e-3, 10, 10, api_price_from_name("groq-llama-3.1-8b-instant"))
