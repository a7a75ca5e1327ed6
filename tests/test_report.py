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


# ---------------------------------------------------------------------------------------------- plot layout


def _drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _inside(box, frame) -> bool:
    return frame.x0 - 0.5 <= box.x0 and box.x1 <= frame.x1 + 0.5 and frame.y0 - 0.5 <= box.y0 and box.y1 <= frame.y1 + 0.5


def test_frontier_title_is_short_and_log_ticks_are_plain_numbers():
    from tokencost.report import plot_frontier

    # A narrow range (1000-1100 tok/s, 30-33 tok/s per sequence) used to get ticks like 1.04×10³.
    recs = [{**_run(b, 128, 0, 0.004), "output_tok_per_s": tps, "output_tok_per_s_per_seq": ips}
            for b, tps, ips in ((1, 1000.0, 33.0), (2, 1040.0, 31.0), (4, 1100.0, 30.0))]
    fig, _ = plot_frontier(aggregate_repeats(recs))
    _drawn(fig)
    ax = fig.axes[0]
    assert all(len(line) <= 72 for line in ax.get_title().splitlines())
    labels = [t.get_text() for axis in (ax.xaxis, ax.yaxis) for minor in (False, True)
              for t in axis.get_ticklabels(minor=minor) if t.get_text()]
    assert labels and not any(mark in t for t in labels for mark in ("\\times", "^", "$", "e+", "e-"))
    assert "1040" in labels or "1,040" in labels  # the minor ticks of a short axis, written out
    assert all(float(t.replace(",", "")) > 0 for t in labels)


def test_every_plot_is_saved_with_a_tight_bounding_box(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    calls, save = [], Figure.savefig

    def spy(fig, path, **kwargs):
        calls.append(kwargs)
        return save(fig, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    results = tmp_path / "results.jsonl"
    _write_results(results)
    write_report(read_records(results), tmp_path / "out")
    assert len(calls) == len(PLOT_FILES) and all(c.get("bbox_inches") == "tight" for c in calls)


_ROWS = ("matmul.qkv_proj", "matmul.o_proj", "matmul.gate_up_proj", "matmul.down_proj", "matmul.lm_head",
         "attention.decode", "attention.kv_write", "norm", "rope", "activation", "sampling", "embed", "other")


def _breakdown_colours(fig) -> dict:
    from matplotlib.container import BarContainer

    return {c.get_label(): c.patches[0].get_facecolor() for c in fig.axes[0].containers if isinstance(c, BarContainer)}


def test_breakdown_gives_every_class_its_own_fixed_colour_and_keeps_the_legend_in_the_figure():
    from tokencost.report import plot_breakdown

    recs = [{"kind": "breakdown", "model": "m", "batch_size": 1, "context_len": 64, "op_class": c, "time_s": 1e-3 * (i + 1)}
            for i, c in enumerate(_ROWS)]  # the 13 rows of profiler.breakdown, one record
    fig, _ = plot_breakdown(recs)
    colours = _breakdown_colours(fig)
    assert set(colours) == set(_ROWS) and len(set(colours.values())) == len(_ROWS)
    # Another report with fewer classes, listed in another order: each class keeps its colour.
    fig2, _ = plot_breakdown([r for r in reversed(recs) if r["op_class"] in ("other", "rope", "sampling", "norm")])
    assert all(colour == colours[c] for c, colour in _breakdown_colours(fig2).items())
    # Nothing is cut: the legend and the "100" tick lie inside the figure, clear of each other.
    renderer = _drawn(fig)
    legends = fig.legends + [leg for leg in [fig.axes[0].get_legend()] if leg is not None]
    (legend,) = legends
    legend_box = legend.get_window_extent(renderer)
    assert _inside(legend_box, fig.bbox)
    (hundred,) = [t for t in fig.axes[0].get_xticklabels() if t.get_text() == "100"]
    tick_box = hundred.get_window_extent(renderer)
    assert _inside(tick_box, fig.bbox) and not tick_box.overlaps(legend_box)
    assert [t.get_text() for t in legend.get_texts()] == list(_ROWS)  # stacked in the profiler's row order


def _kernel(op, phase, backend, ai, flop_per_s, **peaks):
    nbytes = 1e6
    flop = ai * nbytes
    return {"kind": "kernel", "op": op, "phase": phase, "backend": backend, "flop": flop, "bytes": nbytes,
            "median_s": flop / flop_per_s, "device_name": "cpu", "timestamp": "t0",
            **({"peak_flop_per_s": None, "peak_bandwidth_bytes_per_s": 2e10,
                "peak_flop_source": "unknown: no datasheet compute peak for a CPU",
                "peak_bandwidth_source": "measured: best of 8 float32 sum reads of 256 MiB on cpu"} | peaks)}


def _crowded_kernels(**peaks):
    """Decode matmuls at intensity ~0.5 with close rates, attention_prefill over gate_up, and the same
    ops in prefill and decode, for two backends (the crowding seen in a real report)."""
    out = []
    for backend, scale in (("torch", 1.0), ("triton", 1.15)):
        for phase in ("prefill", "decode"):
            for i, op in enumerate(("linear.qkv", "linear.o", "linear.gate_up", "linear.down", "linear.lm_head")):
                out.append(_kernel(op, phase, backend, 0.499 + 0.0002 * i, scale * (1.0 + 0.05 * i) * 1e8, **peaks))
        out.append(_kernel("attention_prefill", "prefill", backend, 0.5, scale * 1.1e8, **peaks))
    return out


def _label_numbers(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        low, _, high = part.partition("–")
        out += list(range(int(low), int(high or low) + 1))
    return out


def test_number_text_compresses_runs():
    from tokencost.report import number_text

    assert number_text([7, 1, 2, 3]) == "1–3,7" and number_text([4, 5]) == "4,5" and number_text([9]) == "9"
    assert _label_numbers("1–3,7,9,10") == [1, 2, 3, 7, 9, 10]


def test_roofline_marks_phase_by_shape_backend_by_colour_and_numbers_points_without_overlap():
    from matplotlib.collections import PathCollection

    from tokencost.report import plot_roofline

    kernels = _crowded_kernels()
    fig, note = plot_roofline(kernels)
    assert note is None
    renderer = _drawn(fig)
    ax = fig.axes[0]
    groups = {c.get_gid(): c for c in ax.collections if isinstance(c, PathCollection)}
    assert set(groups) == {f"kernels:{p}|{b}" for p in ("prefill", "decode") for b in ("torch", "triton")}

    def marker(gid):
        return groups[gid].get_paths()[0].vertices.round(3).tolist()

    def colour(gid):
        return tuple(groups[gid].get_facecolor()[0])

    assert marker("kernels:prefill|torch") == marker("kernels:prefill|triton") != marker("kernels:decode|torch")
    assert colour("kernels:prefill|torch") == colour("kernels:decode|torch") != colour("kernels:prefill|triton")
    labels = [t for t in ax.texts if t.get_gid() == "kernel-numbers"]
    assert sorted(n for t in labels for n in _label_numbers(t.get_text())) == list(range(1, len(kernels) + 1))
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert len(boxes) > 1 and not [(i, j) for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]
    key = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "10  linear.lm_head · decode · torch" in key and "5  linear.lm_head · prefill · torch" in key
    assert any("phase: prefill" in t for t in key) and any("backend: triton" in t for t in key)


def test_roofline_note_names_the_phase_of_each_kernel_above_the_ceiling():
    from tokencost.report import plot_roofline

    kernels = [_kernel("linear.lm_head", phase, "torch", 0.5, 3e10) for phase in ("prefill", "decode")]  # 1e10 roof
    _, note = plot_roofline(kernels)
    assert "linear.lm_head/torch (prefill), linear.lm_head/torch (decode) above the device ceiling" in note


def _ceiling_lines(fig) -> dict:
    return {line.get_label(): line for line in fig.axes[0].get_lines() if "ceiling" in line.get_label()}


def test_roofline_draws_each_ceiling_with_its_source_and_never_pairs_a_calibrated_rate_with_the_read_bandwidth():
    from tokencost.report import plot_roofline

    # A CPU after --calibrate: `tokencost kernels` copies the matmul rate into peak_flop_per_s.
    cal = {"peak_flop_per_s": 4e10, "peak_flop_source": "measured (--calibrate)", "measured_peak_flop_per_s": 4e10,
           "measured_peak_bandwidth_bytes_per_s": 1.4e10}
    fig, _ = plot_roofline([_kernel("linear.qkv", "decode", "torch", 0.5, 1e8, **cal),
                            _kernel("linear.qkv", "prefill", "torch", 27.0, 1e10, **cal)])
    lines = _ceiling_lines(fig)
    (ref,) = [line for label, line in lines.items() if "measured read" in label]
    (measured,) = [line for label, line in lines.items() if "measured copy" in label]
    assert "compute unknown" in ref.get_label() and "20 GB/s" in ref.get_label() and ref.get_linestyle() == "-"
    assert "measured matmul" in measured.get_label() and "40 GFLOP/s" in measured.get_label()
    assert measured.get_linestyle() == "--" and max(measured.get_ydata()) == pytest.approx(4e10)
    assert max(ref.get_ydata()) > 4e10  # the read-bandwidth roof is not capped by the calibrated matmul rate
    assert "14 GB/s" in measured.get_label() and not any(c.isdigit() for c in fig.axes[0].get_title())
    # A GPU: datasheet ceilings, and the calibrated ones beside them.
    sheet = {"peak_flop_per_s": 9.89e14, "peak_bandwidth_bytes_per_s": 3.35e12, "device_name": "H100",
             "peak_flop_source": "datasheet: H100 SXM (nvidia.com, 2023-03), dense bf16",
             "peak_bandwidth_source": "datasheet: H100 SXM (nvidia.com, 2023-03)",
             "measured_peak_flop_per_s": 6e14, "measured_peak_bandwidth_bytes_per_s": 2.9e12}
    fig, _ = plot_roofline([_kernel("linear.qkv", "decode", "torch", 0.5, 1e12, **sheet)])
    labels = list(_ceiling_lines(fig))
    assert any("(datasheet)" in label and "989 TFLOP/s (datasheet)" in label for label in labels)
    assert any("2.9 TB/s (measured copy)" in label and "600 TFLOP/s (measured matmul)" in label for label in labels)


def test_roofline_of_two_kernel_runs_on_one_cpu_draws_both_ceilings_and_names_the_runs():
    from tokencost.report import plot_roofline

    first = _kernel("linear.qkv", "decode", "torch", 0.5, 1e8)
    second = {**_kernel("linear.qkv", "decode", "torch", 0.5, 2e8, peak_bandwidth_bytes_per_s=1.5e10), "timestamp": "t1"}
    fig, _ = plot_roofline([first, second])
    assert sorted(label.split(":")[0] for label in _ceiling_lines(fig)) == ["run 1", "run 2"]
    key = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "1  linear.qkv · decode · torch · run 1" in key and "2  linear.qkv · decode · torch · run 2" in key
    with pytest.raises(CostError, match="several devices"):
        plot_roofline([first, {**second, "device_name": "other"}])


# ---------------------------------------------------------------------------------------------- summary notes


def test_record_warnings_reach_the_summary_once_per_point_and_shared_ones_once(tmp_path):
    few = "only 5 decode steps: TPOT p90 is the slowest step"
    recs = []
    for batch in (1, 4):
        for repeat in (0, 1):
            warnings = [few, f"MBU {batch}% is below 20%"] + ([f"the CPU was busy (load {batch}.1)"] if repeat else [])
            recs.append({**_run(batch, 128, repeat, 0.01), "warnings": warnings})
    report = write_report(recs, tmp_path)
    summary = report.summary_path.read_text()
    notes = [line for line in summary.splitlines() if line.startswith("- ")]
    assert notes.count(f"- all 2 points: {few}") == 1 and sum(few in n for n in notes) == 1
    for batch in (1, 4):
        assert notes.count(f"- B={batch} ctx=128: MBU {batch}% is below 20%") == 1  # in both repeats: said once
        assert notes.count(f"- B={batch} ctx=128: the CPU was busy (load {batch}.1) (in 1 of 2 repeats)") == 1
    assert any(few in n for n in report.notes)
    (single,) = aggregate_repeats([recs[0]])
    assert single["record_warnings"] == recs[0]["warnings"]


def _bw_run(batch: int, repeat: int, bandwidth: float) -> dict:
    return {**_run(batch, 128, repeat, 0.01), "bandwidth_bytes_per_s": bandwidth,
            "bandwidth_source": "measured: best of 8 float32 sum reads of 256 MiB on cpu, torch threads 2"}


def _row(summary: str, batch: int) -> str:
    return next(line for line in summary.splitlines() if line.startswith(f"| tiny / cpu / float32 / torch | {batch} |"))


def test_summary_shows_each_points_bandwidth_and_warns_when_they_differ(tmp_path):
    # Two `tokencost run`s on a CPU measured 43.0 and 31.6 GB/s seconds apart.
    summary = write_report([_bw_run(1, 0, 43.0e9), _bw_run(4, 0, 31.6e9)], tmp_path / "a").summary_path.read_text()
    assert "| bandwidth (GB/s) | bandwidth source |" in summary
    assert "| 43 | measured read |" in _row(summary, 1) and "| 31.6 | measured read |" in _row(summary, 4)
    (note,) = [line for line in summary.splitlines() if "bandwidths range" in line]
    assert "31.6 GB/s to 43 GB/s" in note and "not comparable" in note
    # Within 10 %: no note.
    summary = write_report([_bw_run(1, 0, 43.0e9), _bw_run(4, 0, 40.0e9)], tmp_path / "b").summary_path.read_text()
    assert "not comparable" not in summary


def test_repeats_pooled_across_different_bandwidths_are_flagged(tmp_path):
    recs = [_bw_run(4, 0, 30e9), _bw_run(4, 1, 40e9)]
    (point,) = aggregate_repeats(recs)
    assert point["bandwidth_bytes_per_s"] == pytest.approx(35e9)
    assert point["bandwidth_range_bytes_per_s"] == [30e9, 40e9] and point["bandwidth_source_kind"] == "measured read"
    summary = write_report(recs, tmp_path).summary_path.read_text()
    assert "| 35 (30–40) | measured read |" in _row(summary, 4)
    (note,) = [line for line in summary.splitlines() if "repeats were measured against bandwidths" in line]
    assert "30 GB/s to 40 GB/s" in note and "33%" in note and "not comparable" in note
