"""Pieces of the run record: roofline fields, warnings, device and dtype resolution."""

import pytest
import torch

from profiler.config import config_from_dict
from profiler.errors import ProfilerError
from profiler.runner import (RunSpec, check_positions, cpu_load_warnings, decode_context_len, resolve_device,
                             resolve_dtype, roofline_fields)
from tests.tiny import TINY_LLAMA

CFG = config_from_dict(TINY_LLAMA, name="tiny")


def test_roofline_fields_mbu_and_warnings():
    spec = RunSpec(cfg=CFG, batch_size=2, prompt_len=10, gen_len=6)
    fast = roofline_fields(spec, torch.float32, tpot_s=1e-9, bandwidth_bytes_per_s=1e9)
    assert fast["mbu"] > 1 and "above 100%" in fast["warnings"][0]
    slow = roofline_fields(spec, torch.float32, tpot_s=1.0, bandwidth_bytes_per_s=1e9)
    assert slow["mbu"] < 0.2 and "below 20%" in slow["warnings"][0]
    tpot = fast["bytes_per_step"] / 1e9 / 0.5  # exactly half the bandwidth bound
    mid = roofline_fields(spec, torch.float32, tpot_s=tpot, bandwidth_bytes_per_s=1e9)
    assert mid["mbu"] == pytest.approx(0.5) and mid["warnings"] == []
    assert mid["roofline_context_len"] == decode_context_len(spec) == 13
    assert mid["roofline_output_tok_per_s"] == pytest.approx(2 / (mid["bytes_per_step"] / 1e9))


def test_busy_cpu_warning_only_when_oversubscribed():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert cpu_load_warnings({"load_average_1m": 3.5, "cpu_count_logical": 2}, cpu)
    assert cpu_load_warnings({"load_average_1m": 1.5, "cpu_count_logical": 2}, cpu) == []
    assert cpu_load_warnings({"load_average_1m": 9.0, "cpu_count_logical": 2}, cuda) == []
    assert cpu_load_warnings({"load_average_1m": None, "cpu_count_logical": 2}, cpu) == []


def test_device_dtype_and_positions():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ProfilerError, match="unknown device"):
        resolve_device("tpu:0x")
    with pytest.raises(ProfilerError, match="dtype"):
        resolve_dtype("int4", torch.device("cpu"))
    check_positions(RunSpec(cfg=CFG, prompt_len=200, gen_len=56))  # exactly max_position_embeddings
    with pytest.raises(ProfilerError, match="max_position_embeddings"):
        check_positions(RunSpec(cfg=CFG, prompt_len=200, gen_len=57))


def test_compute_bound_takes_over_when_flops_dominate():
    spec = RunSpec(cfg=CFG, batch_size=64, prompt_len=10, gen_len=6)
    mem_only = roofline_fields(spec, torch.float32, tpot_s=1e-3, bandwidth_bytes_per_s=1e12)
    assert mem_only["roofline_bound"] == "bandwidth" and mem_only["mfu"] is None
    # A tiny compute peak makes FLOPs the limit: bound = batch ÷ (batch × FLOPs per token ÷ peak).
    slow_alu = roofline_fields(spec, torch.float32, tpot_s=1e-3, bandwidth_bytes_per_s=1e12, peak_flop_per_s=1e9)
    assert slow_alu["roofline_bound"] == "compute"
    assert slow_alu["roofline_output_tok_per_s"] == pytest.approx(1e9 / slow_alu["decode_flops_per_token"])
    assert slow_alu["roofline_output_tok_per_s"] < mem_only["roofline_output_tok_per_s"]
    # MFU = achieved model FLOP/s ÷ peak (PaLM appendix B).
    assert slow_alu["mfu"] == pytest.approx(64 * slow_alu["decode_flops_per_token"] / 1e-3 / 1e9)
    huge_alu = roofline_fields(spec, torch.float32, tpot_s=1e-3, bandwidth_bytes_per_s=1e12, peak_flop_per_s=1e18)
    assert huge_alu["roofline_bound"] == "bandwidth"
    assert huge_alu["roofline_output_tok_per_s"] == pytest.approx(mem_only["roofline_output_tok_per_s"])


def test_interpreter_timings_are_flagged():
    from profiler.runner import interpreter_warnings

    ops = {"linear": "triton", "rope": "torch", "swiglu": "triton"}
    (warning,) = interpreter_warnings(ops, torch.device("cpu"))
    assert "linear, swiglu" in warning and "interpreter" in warning
    assert interpreter_warnings(ops, torch.device("cuda")) == []
    assert interpreter_warnings({"linear": "torch"}, torch.device("cpu")) == []


def test_wall_clock_cross_check_flags_a_timer_that_disagrees():
    from profiler.runner import wall_clock_warnings

    assert wall_clock_warnings([0.01] * 10, 0.105) == []
    (over,) = wall_clock_warnings([0.01] * 10, 0.05)  # steps cannot sum past the clock around them
    assert "not trustworthy" in over
    (gap,) = wall_clock_warnings([0.001] * 10, 0.1)  # 10 % of the wall inside the timed steps
    assert "cover only 10 %" in gap


def test_a_run_record_carries_the_wall_clock_check(tmp_path):
    """A real run: the steps lie inside the independent wall clock, and the record says so by having
    no timer-disagreement warning."""
    from profiler.presets import resolve_model
    from profiler.runner import RunSpec, run_point
    from tests.tiny import write_config

    spec = RunSpec(cfg=resolve_model(None, str(write_config(tmp_path))), prompt_len=8, gen_len=6)
    r = run_point(spec, bandwidth_bytes_per_s=1e10, bandwidth_source="test")
    assert sum(r["step_times_s"]) <= r["decode_wall_s"] * 1.02 + 1e-4
    assert not any("not trustworthy" in w for w in r["warnings"])


def test_widely_varying_decode_steps_are_flagged():
    from profiler.runner import step_spread_warnings

    assert step_spread_warnings([0.010, 0.0101, 0.0099, 0.0102, 0.010]) == []
    (w,) = step_spread_warnings([0.010, 0.030, 0.011, 0.045, 0.010, 0.012, 0.040])
    assert "vary widely" in w
    assert step_spread_warnings([0.01, 0.5, 0.01]) == []  # too few steps to judge
