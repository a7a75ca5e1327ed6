"""`tokencost report`: every plot renders from a small results file; summary.md embeds them."""

import subprocess
import sys

import pytest
from PIL import Image

from profiler.results import append_result, read_records
from tokencost.cli import main
from tokencost.errors import CostError
from tokencost.report import PLOT_FILES, aggregate_repeats, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(batch: int, ctx: int, repeat: int, tpot_s: float) -> dict:
    return {"kind": "run", "model": "tiny", "device_name": "cpu", "dtype": "float32", "backend": "torch",
            "batch_size": batch, "prompt_len": ctx, "gen_len": 8, "context_len": ctx, "ttft_s": 0.02,
            "prefill_tok_per_s": batch * ctx / 0.02,
            "tpot_s": tpot_s, "output_tok_per_s": batch / tpot_s, "output_tok_per_s_per_seq": 1 / tpot_s,
            "mbu": 0.1 * batch / (batch + 4), "usd_per_hour": 2.0, "roofline_output_tok_per_s": 4 * batch / tpot_s,
            "usd_per_mtok_output": 2.0 / (batch / tpot_s * 3600) * 1e6, "usd_per_mtok_input": 0.01,
            "step_times_s": [tpot_s] * 7, "status": "ok", "settings_key": f"b{batch}c{ctx}", "repeat": repeat}


def _write_results(path, kernels=True, breakdown=True):
    for batch in (1, 4, 16):
        for ctx in (128, 512):
            for repeat in (0, 1):
                append_result(path, _run(batch, ctx, repeat, 0.004 * (1 + batch / 8) * (1 + ctx / 1024) + 1e-4 * repeat))
    append_result(path, {"kind": "run", "model": "tiny", "batch_size": 256, "context_len": 512, "status": "skipped",
                         "skip_reason": "out of memory", "settings_key": "b256c512", "repeat": 0})
    if kernels:
        for op, flop, nbytes, secs in (("linear", 2e9, 2e7, 4e-3), ("attention_decode", 1e8, 5e7, 1e-3)):
            append_result(path, {"kind": "kernel", "op": op, "backend": "torch", "flop": flop, "bytes": nbytes,
                                 "median_s": secs, "peak_flop_per_s": 1e12, "peak_bandwidth_bytes_per_s": 1e11})
    if breakdown:
        for op_class, t in (("matmul.qkv", 3e-3), ("attention", 2e-3), ("norm", 5e-4), ("other", 5e-4)):
            append_result(path, {"kind": "breakdown", "model": "tiny", "batch_size": 4, "context_len": 512,
                                 "op_class": op_class, "time_s": t})


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.size[0] > 100 and img.size[1] > 100


def test_report_cli_renders_every_plot_and_summary(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    _write_results(results)
    out = tmp_path / "report"
    assert main(["report", str(results), "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    for name in PLOT_FILES.values():
        _assert_png(out / name)
        assert f"]({name})" in summary
    assert "out of memory" in summary and "| 2 |" in summary  # skipped point listed; 2 repeats per point
    assert '"summary_md"' in capsys.readouterr().out.strip().splitlines()[-1]
    assert "above the device ceiling" not in summary


def test_kernel_above_the_roof_is_flagged(tmp_path):
    recs = [{"kind": "kernel", "op": "linear", "backend": "torch", "flop": 2e9, "bytes": 2e7, "median_s": 1e-4,
             "peak_flop_per_s": 1e12, "peak_bandwidth_bytes_per_s": 1e11}]  # 2e13 FLOP/s > 1e12 peak
    report = write_report(recs, tmp_path)
    assert report.plots["roofline"] is not None
    assert any("linear/torch above the device ceiling" in n for n in report.notes)
    assert "above the device ceiling" in report.summary_path.read_text()


def test_plots_without_data_are_skipped_with_a_note(tmp_path):
    results = tmp_path / "results.jsonl"
    _write_results(results, kernels=False, breakdown=False)
    report = write_report(read_records(results), tmp_path / "out")
    assert report.plots["roofline"] is None and report.plots["breakdown"] is None
    assert not (tmp_path / "out" / "roofline.png").exists()
    summary = report.summary_path.read_text()
    assert "roofline plot skipped" in summary and "breakdown plot skipped" in summary
    _assert_png(report.plots["frontier"])


def test_aggregate_repeats_takes_medians():
    recs = [_run(4, 128, r, t) for r, t in enumerate((0.010, 0.012, 0.020))]
    (point,) = aggregate_repeats(recs)
    assert point["n_repeats"] == 3 and point["tpot_s"] == 0.012
    assert point["output_tok_per_s"] == pytest.approx(4 / 0.012)


def test_malformed_kernel_record_is_a_clear_error(tmp_path):
    recs = [{"kind": "kernel", "op": "linear", "flop": 0, "bytes": 1, "median_s": 1,
             "peak_flop_per_s": 1, "peak_bandwidth_bytes_per_s": 1}]
    with pytest.raises(CostError, match="flop"):
        write_report(recs, tmp_path)
    with pytest.raises(CostError, match="no records"):
        write_report([], tmp_path)


def test_report_cli_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokencost: error:") and "not found" in err and "\n" not in err


def test_cost_modules_do_not_import_torch():
    code = ("import sys, tokencost.report, tokencost.frontier, tokencost.stats, tokencost.cli.report_cmd; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cpu_kernel_records_without_a_compute_peak_plot_the_bandwidth_ceiling_only(tmp_path):
    # CPU kernel records carry peak_flop_per_s null (no datasheet compute peak for a CPU).
    recs = [{"kind": "kernel", "op": "linear", "backend": "torch", "flop": 2e9, "bytes": 2e7, "median_s": 4e-3,
             "peak_flop_per_s": None, "peak_bandwidth_bytes_per_s": 3e10},
            {"kind": "kernel", "op": "swiglu", "backend": "torch", "flop": 1e6, "bytes": 1e8, "median_s": 1e-3,
             "peak_flop_per_s": None, "peak_bandwidth_bytes_per_s": 3e10}]  # 1e11 B/s > 3e10 ceiling
    report = write_report(recs, tmp_path)
    _assert_png(report.plots["roofline"])
    assert any("swiglu/torch above the device ceiling" in n for n in report.notes)
    assert not any("linear/torch" in n for n in report.notes)


def _repeat(repeat: int, tpot_s: float, ttft_s: float) -> dict:
    """One repeat of a point whose input and output dollars follow its own prefill and decode rates."""
    r = {**_run(4, 128, repeat, tpot_s), "ttft_s": ttft_s, "prefill_tok_per_s": 4 * 128 / ttft_s}
    r["usd_per_mtok_output"] = 2.0 / (r["output_tok_per_s"] * 3600) * 1e6
    r["usd_per_mtok_input"] = 2.0 / (r["prefill_tok_per_s"] * 3600) * 1e6
    return r


def test_pooled_dollars_follow_the_median_throughput():
    # Noisy repeats whose first is not the median: the $/Mtok shown (output and input) must be the
    # price of the median tok/s, as for the TTFT and TPOT shown beside them.
    recs = [_repeat(0, 0.1, 0.5), _repeat(1, 0.001, 0.02), _repeat(2, 0.01, 0.1)]
    (point,) = aggregate_repeats(recs)
    assert point["tpot_s"] == 0.01 and point["ttft_s"] == 0.1
    assert point["usd_per_mtok_output"] == pytest.approx(2.0 / (point["output_tok_per_s"] * 3600) * 1e6)
    assert point["prefill_tok_per_s"] == pytest.approx(4 * 128 / 0.1)
    assert point["usd_per_mtok_input"] == pytest.approx(2.0 / (point["prefill_tok_per_s"] * 3600) * 1e6)
    # The same pooling as `tokencost sweep`.
    from tokencost.sweep_summary import summarize_point

    swept = summarize_point(recs)
    for key in ("usd_per_mtok_output", "usd_per_mtok_input", "ttft_s", "output_tok_per_s_ci95"):
        assert point[key] == pytest.approx(swept[key])


def test_report_shows_dollar_intervals_where_repeats_exist(tmp_path):
    from matplotlib.container import ErrorbarContainer

    from tokencost.report import plot_frontier
    from tokencost.stats import confidence_interval

    recs = [_repeat(r, t, 0.1) for r, t in enumerate((0.010, 0.011, 0.013))] + [_run(16, 128, 0, 0.02)]
    points = aggregate_repeats(recs)
    pooled = next(p for p in points if p["n_repeats"] == 3)
    mean, low, high = confidence_interval([4 / t for t in (0.010, 0.011, 0.013)])
    assert pooled["output_tok_per_s_ci95"] == pytest.approx([low, high])
    lo_usd, hi_usd = pooled["usd_per_mtok_output_ci95"]
    assert lo_usd == pytest.approx(2.0 / (high * 3600) * 1e6) and hi_usd == pytest.approx(2.0 / (low * 3600) * 1e6)
    single = next(p for p in points if p["n_repeats"] == 1)
    assert "usd_per_mtok_output_ci95" not in single  # one repeat: no interval, no bar
    fig, _ = plot_frontier(points)
    (bars,) = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars.lines[2][0].get_segments()) == 1  # one vertical bar: the point with repeats
    summary = write_report(recs, tmp_path).summary_path.read_text()
    assert "95% CI $/Mtok output" in summary and f"{lo_usd:.4g}–{hi_usd:.4g}" in summary


def test_runs_with_other_op_variants_or_cuda_graphs_are_other_series_not_repeats():
    from tokencost.report import backend_label

    base = {"kind": "run", "model": "m", "device_name": "d", "dtype": "float32", "backend": "torch",
            "batch_size": 1, "prompt_len": 8, "gen_len": 4, "tpot_s": 0.01, "output_tok_per_s": 100.0,
            "ops": {"linear": "torch", "swiglu": "torch"}}
    slow = {**base, "tpot_s": 0.03, "output_tok_per_s": 33.0, "ops": {"linear": "torch", "swiglu": "slow"}}
    graphed = {**base, "cuda_graph": True}
    again = {**base, "tpot_s": 0.012, "output_tok_per_s": 83.0}
    points = aggregate_repeats([base, slow, graphed, again])
    assert sorted(p["n_repeats"] for p in points) == [1, 1, 2]  # only the plain torch runs pool
    assert {backend_label(p) for p in points} == {"torch", "torch [swiglu=slow]", "torch +cuda-graph"}
    pooled = next(p for p in points if p["n_repeats"] == 2)
    assert pooled["tpot_s"] == pytest.approx(0.011)
    assert pooled["output_tok_per_s"] == pytest.approx(1 / 0.011, rel=3e-3)  # batch / pooled TPOT


def test_an_even_number_of_repeats_gives_a_consistent_row(tmp_path):
    # Two repeats of 37 ms and 666 ms: the pooled TPOT is their mean (351.5 ms); every rate and
    # dollar figure of the row must follow from it, not from a separate median of each column.
    from tokencost.sweep_summary import summarize_point

    recs = [{**_repeat(r, tpot, ttft), "mbu": 0.002 / tpot} for r, tpot, ttft in ((0, 0.037, 0.05), (1, 0.666, 0.15))]
    for point in (*aggregate_repeats(recs), summarize_point(recs)):
        tpot, ttft = point["tpot_s"], point["ttft_s"]
        assert tpot == pytest.approx(0.3515) and ttft == pytest.approx(0.1)
        assert point["output_tok_per_s_per_seq"] == pytest.approx(1 / tpot)
        assert point["output_tok_per_s"] == pytest.approx(4 / tpot)
        assert point["prefill_tok_per_s"] == pytest.approx(4 * 128 / ttft)
        assert point["mbu"] == pytest.approx(0.002 / tpot)  # bytes per step ÷ bandwidth: one value per point
        assert point["usd_per_mtok_output"] == pytest.approx(2.0 / (4 / tpot * 3600) * 1e6)
        assert point["usd_per_mtok_input"] == pytest.approx(2.0 / (4 * 128 / ttft * 3600) * 1e6)
    summary = write_report(recs, tmp_path).summary_path.read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| tiny"))
    assert "| 351.5 |" in row and f"| {1 / 0.3515:.4g} |" in row


def test_runs_at_different_prices_are_separate_rows(tmp_path):
    from tokencost.sweep_summary import summarize_sweep

    user = {**_run(4, 128, 0, 0.01), "usd_per_hour": 5.0, "price_source": "--price-per-gpu-hour (user)"}
    catalog = {**_run(4, 128, 1, 0.02), "usd_per_hour": 0.1008, "price_source": "cpu catalog row"}
    for points in (aggregate_repeats([user, catalog]), summarize_sweep([user, catalog])["points"]):
        assert sorted(p.get("n_repeats", p.get("repeats")) for p in points) == [1, 1]
        for p in points:
            assert not p.get("repeat_warnings", p.get("warnings"))
            assert p["usd_per_mtok_output"] == pytest.approx(p["usd_per_hour"] / (p["output_tok_per_s"] * 3600) * 1e6)
        assert {p["usd_per_hour"] for p in points} == {5.0, 0.1008}
    summary = write_report([user, catalog], tmp_path).summary_path.read_text()
    assert "| 5 |" in summary and "| 0.1008 |" in summary


def test_a_pooled_point_does_not_pass_off_the_first_repeats_per_run_figures():
    recs = [{**_repeat(i, 0.01 * (i + 1), 0.1), "mfu": 0.1 * (i + 1), "tpot_p90_s": 0.02 * (i + 1)} for i in range(3)]
    (point,) = aggregate_repeats(recs)
    assert point["n_repeats"] == 3 and "mfu" not in point and "tpot_p90_s" not in point
    (single,) = aggregate_repeats(recs[:1])
    assert single["mfu"] == 0.1 and single["tpot_p90_s"] == 0.02
