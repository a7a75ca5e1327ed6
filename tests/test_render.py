"""The CLI's human-readable tables (tokencost/cli/render.py): what they say and where warnings go."""

from __future__ import annotations

from tokencost.cli.render import _cost_model_rows, print_sweep_table
from tokencost.sweep_summary import summarize_sweep


def _effective(utilization: float, source: str) -> dict:
    return {"effective": {"utilization": utilization, "utilization_source": source, "billing": "second",
                          "usd_per_mtok_output_effective": 2.0, "overhead_ratio": 1.0 / utilization}}


def test_effective_cost_row_only_when_it_differs_and_utilization_named_only_when_set():
    assert _cost_model_rows(_effective(1.0, "--utilization")) == []  # the defaults change nothing: no row
    hourly = _effective(1.0, "--utilization")
    hourly["effective"].update(billing="hour", overhead_ratio=1.2)
    (label, value), = _cost_model_rows(hourly)
    assert "utiliz" not in label and "per-hour billing" in label and "1.2× peak" in value
    (label, _), = _cost_model_rows(_effective(0.5, "--utilization"))
    assert "utilization 0.5 from --utilization" in label
    (label, _), = _cost_model_rows(_effective(0.7, "TCO model (--tco-param utilization)"))
    assert "utilization 0.7 from TCO model" in label
    assert _cost_model_rows(_effective(1.0, "TCO model (--tco-param utilization)")) == []


def _run(repeat: int, tpot_s: float) -> dict:
    return {"kind": "run", "model": "tiny", "device": "cpu", "dtype": "float32", "backend": "torch", "batch_size": 1,
            "prompt_len": 8, "gen_len": 4, "ttft_s": 0.01, "prefill_tok_per_s": 800.0, "tpot_s": tpot_s,
            "output_tok_per_s": 1 / tpot_s, "output_tok_per_s_per_seq": 1 / tpot_s, "mbu": 0.001 / tpot_s,
            "repeat": repeat}


def test_sweep_noise_warning_has_the_prefix_of_every_warning(capsys):
    summary = summarize_sweep([_run(0, 0.037), _run(1, 0.666)])
    assert summary["points"][0]["warnings"]  # a 18× spread between repeats
    print_sweep_table(summary)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert lines and all(line.startswith("tokencost: warning: batch 1, context 8: ") for line in lines)
    assert "warning" not in captured.out


def test_run_title_names_op_overrides():
    from tokencost.cli.render import backend_label

    r = {"backend": "torch", "ops": {"linear": "torch", "swiglu": "mine"}}
    assert backend_label(r) == "backend torch, swiglu=mine"
    assert backend_label({"backend": "triton", "ops": {"linear": "triton"}}) == "backend triton"


def test_sweep_shows_each_points_record_warnings_once(capsys):
    runs = [{**_run(i, 0.037), "warnings": ["MBU 1% is below 20%", f"only {i} steps" if i else "MBU 1% is below 20%"]}
            for i in range(2)]
    print_sweep_table(summarize_sweep(runs))
    err = capsys.readouterr().err
    assert err.count("MBU 1% is below 20%") == 1 and "only 1 steps" in err
