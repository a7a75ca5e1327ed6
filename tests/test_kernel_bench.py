"""Kernel benchmark: FLOP/byte formulas on hand-worked shapes, shapes derived from a config, the CPU
timer against an independent clock, and `tokencost kernels` end to end on a tiny config."""

import json
import time

import pandas as pd
import pytest
import torch

from kernels.reference import causal_mask
from profiler import kernel_bench as kb
from profiler.backends import register
from profiler.config import config_from_dict
from profiler.presets import get_preset
from profiler.results import read_records
from tests.cli_helpers import cli_error
from tests.conftest import gpu
from tests.tiny import TINY_LLAMA, write_config
from tokencost.cli import main

TINY = config_from_dict(dict(TINY_LLAMA), name="tiny")


# ----------------------------------------------------------------------------------------------
# Formulas


def test_linear_formulas_hand_worked():
    # x [2, 4] @ w.T [4, 3]: 2·M·N·K = 2·2·3·4 = 48 FLOP; (MK + KN + MN)·elem = (8 + 12 + 6)·2 = 52 bytes (fp16).
    assert kb.linear_flop(2, 3, 4) == 48
    assert kb.linear_bytes(2, 3, 4, 2) == 52
    # A bias adds one add per output (M·N = 6) and N = 3 elements read.
    assert kb.linear_flop(2, 3, 4, bias=True) == 54
    assert kb.linear_bytes(2, 3, 4, 2, bias=True) == 58


@pytest.mark.parametrize("t,s,window", [(1, 1, None), (4, 4, None), (7, 7, 3), (3, 10, None), (3, 10, 4),
                                        (97, 113, None), (97, 113, 16), (5, 5, 100), (1, 9, 2)])
def test_causal_pairs_equal_the_reference_mask(t, s, window):
    """The closed form counts exactly the True entries of the bottom-right causal mask of the references."""
    assert kb.causal_pairs(t, s, window) == int(causal_mask(t, s, window).sum())


def test_causal_pairs_metrics_md_form():
    # metrics.md §3.3 for T = S: w(w+1)/2 + (T - w)·w; T = 10, w = 4: 10 + 24 = 34; no window: 55.
    assert kb.causal_pairs(10, 10, 4) == 34
    assert kb.causal_pairs(10, 10) == 55


def test_attention_prefill_formulas_hand_worked():
    # B=1, Hq=2, Hkv=1, D=16, T=S=4 causal: 10 pairs -> 4·1·2·16·10 = 1280 FLOP.
    assert kb.attention_prefill_flop(1, 2, 16, 4, 4) == 1280
    # q and out 2·(1·2·4·16) = 256 elements, k and v 2·(1·1·4·16) = 128; fp16: 768 bytes.
    assert kb.attention_prefill_bytes(1, 2, 1, 16, 4, 4, 2) == 768


def test_attention_decode_formulas_hand_worked():
    # tritonbench decoding_attention: 4·Σlen·Hq·D = 4·(5 + 3)·4·16 = 2048 FLOP.
    assert kb.attention_decode_flop(4, 16, [5, 3]) == 2048
    # q + out: 2·B·Hq·D = 2·2·4·16 = 256; K + V over actual lengths: 2·Hkv·D·Σlen = 2·2·16·8 = 512; fp16 ×2.
    assert kb.attention_decode_bytes(4, 2, 16, [5, 3], 2) == 1536


def test_elementwise_formulas_hand_worked():
    # rmsnorm with residual, rows=3, H=8, fp32: read x, res, write y, sum (4·24) + weight 8 = 104 elements.
    assert kb.rmsnorm_bytes(3, 8, 4) == 104 * 4
    assert kb.rmsnorm_flop(3, 8) == 5 * 24
    # rope x [1, 2, 3, 8] bf16: read + write 2·48·2 = 192 bytes, cos+sin fp32 2·3·4·4 = 96 bytes.
    assert kb.rope_bytes(1, 2, 3, 8, 2) == 288
    assert kb.rope_flop(1, 2, 3, 8) == 144
    assert kb.swiglu_bytes(5, 7, 2) == 3 * 35 * 2 and kb.swiglu_flop(5, 7) == 140


def test_case_flop_and_bytes_follow_the_formulas():
    case = next(c for c in kb.model_cases(TINY, 2, 16, ["decode"]) if c.name == "attention_decode")
    d = TINY.head_dim
    assert case.flop() == kb.attention_decode_flop(4, d, [16, 16])
    assert case.nbytes(2) == kb.attention_decode_bytes(4, 2, d, [16, 16], 2)


# ----------------------------------------------------------------------------------------------
# Shapes


def test_llama_3_1_8b_shapes():
    cfg = get_preset("llama-3.1-8b")
    cases = {(c.phase, c.name): dict(c.dims) for c in kb.model_cases(cfg, 4, 8192)}
    assert set(n for _, n in cases) == {"linear.qkv", "linear.o", "linear.gate_up", "linear.down", "linear.lm_head",
                                        "attention_prefill", "attention_decode", "rmsnorm", "rope.qk", "swiglu"}
    pre, dec = "prefill", "decode"
    # Fused QKV: (32 + 2·8)·128 = 6144 outputs; gate/up 2·14336; prefill M = batch × context.
    assert cases[(pre, "linear.qkv")] == {"m": 4 * 8192, "n": 6144, "k": 4096, "bias": False}
    assert cases[(dec, "linear.qkv")]["m"] == 4
    assert cases[(pre, "linear.gate_up")]["n"] == 2 * 14336 and cases[(pre, "linear.down")]["k"] == 14336
    # The model takes logits of the last position only: M = batch in both phases.
    assert cases[(pre, "linear.lm_head")] == {"m": 4, "n": 128256, "k": 4096, "bias": False}
    assert cases[(dec, "attention_decode")] == {"b": 4, "hq": 32, "hkv": 8, "d": 128, "kv_len": 8192, "window": None}
    assert cases[(pre, "attention_prefill")]["t"] == cases[(pre, "attention_prefill")]["s"] == 8192
    assert (pre, "attention_decode") not in cases and (dec, "attention_prefill") not in cases
    assert cases[(dec, "rope.qk")] == {"b": 4, "h": 32 + 8, "t": 1, "d": 128}  # q and k heads in one call
    qwen3 = {c.name: dict(c.dims) for c in kb.model_cases(get_preset("qwen3-8b"), 1, 64) if c.phase == dec}
    assert qwen3["rope.q"]["h"] == 32 and qwen3["rope.k"]["h"] == 8  # after q/k RMSNorm: one call each
    assert cases[(dec, "swiglu")] == {"rows": 4, "f": 14336}


def test_sliding_window_caps_the_decode_kv_length():
    cfg = get_preset("mistral-7b")
    case = next(c for c in kb.model_cases(cfg, 1, 8192, ["decode"]) if c.op == "attention_decode")
    assert dict(case.dims)["kv_len"] == cfg.sliding_window == 4096


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="mixture-of-experts"):
        kb.model_cases(get_preset("mixtral-8x7b"), 1, 16)
    with pytest.raises(ValueError, match="context"):
        kb.model_cases(TINY, 1, 0)
    with pytest.raises(ValueError, match="phase"):
        kb.model_cases(TINY, 1, 8, ["training"])
    with pytest.raises(ValueError):
        kb.causal_pairs(5, 4)


def test_build_inputs_match_the_op_signatures():
    """Every case's inputs run through the torch variant and give the op's output shape."""
    from profiler.backends import resolve

    ops = resolve("torch")
    for case in kb.model_cases(TINY, 2, 9) + kb.square_matmul_cases([32]):
        out = getattr(ops, case.op)(*kb.build_inputs(case, TINY, torch.device("cpu"), torch.float32))
        out = out[0] if isinstance(out, tuple) else out
        d = dict(case.dims)
        expected = {"linear": lambda: (d["m"], d["n"]), "attention_prefill": lambda: (d["b"], d["hq"], d["t"], d["d"]),
                    "attention_decode": lambda: (d["b"], d["hq"], d["d"]), "rmsnorm": lambda: (d["rows"], d["h"]),
                    "rope": lambda: (d["b"], d["h"], d["t"], d["d"]), "swiglu": lambda: (d["rows"], d["f"])}[case.op]()
        assert tuple(out.shape) == expected, case


# ----------------------------------------------------------------------------------------------
# Timing and roofline figures


def test_time_cpu_agrees_with_an_independent_clock():
    def nap():
        time.sleep(0.002)

    start = time.perf_counter_ns()
    t = kb.time_cpu(nap, target_s=0.03, min_repeats=5)
    outer_s = (time.perf_counter_ns() - start) / 1e9
    assert t.n >= 5
    assert 0.002 <= t.p20_s <= t.median_s <= t.p80_s  # sleep never returns early
    # At least half the timed calls took the median or longer, and all of them ran inside the outer clock.
    assert t.median_s * (t.n // 2) <= outer_s
    with pytest.raises(ValueError):
        kb.time_cpu(nap, min_repeats=1)


def test_roofline_metrics_are_consistent():
    peaks = kb.Peaks(1e12, "test", 1e9, "test")
    m = kb.roofline_metrics(flop=2e9, nbytes=5e6, median_s=0.01, peaks=peaks)
    assert m["achieved_flop_per_s"] == pytest.approx(2e11) and m["achieved_bytes_per_s"] == pytest.approx(5e8)
    assert m["compute_peak_pct"] == pytest.approx(20.0) and m["bandwidth_peak_pct"] == pytest.approx(50.0)
    # Roofline time = max(2e9 / 1e12, 5e6 / 1e9) = 5 ms (memory-bound) -> 50 % of the 10 ms measured.
    assert m["roofline_pct"] == pytest.approx(50.0) and m["bound"] == "memory"
    unknown = kb.roofline_metrics(2e9, 5e6, 0.01, kb.Peaks(None, "unknown", 1e9, "x"), prefix="measured_")
    assert unknown["measured_compute_peak_pct"] is None and unknown["measured_roofline_pct"] is None
    assert "achieved_flop_per_s" not in unknown
    with pytest.raises(ValueError):
        kb.roofline_metrics(1, 1, 0.0, peaks)


@register("rmsnorm", "test-raises")
def _raising_rmsnorm(x, weight, eps, residual=None):
    raise ValueError("this variant always fails")


@register("swiglu", "test-raises")
def _nan_swiglu(gate, up):
    return torch.full_like(gate, float("nan"))


def test_max_abs_diff_chunks_and_flags_nan():
    a = torch.randn(1000, 37)
    b = a.clone()
    b[3, 4] += 0.5
    assert kb.max_abs_diff(a, b, chunk=100) == pytest.approx(0.5)
    assert kb.max_abs_diff(a, torch.full_like(a, float("nan")), chunk=64) == float("inf")
    assert kb.max_abs_diff(a, b[:5]) is None


def test_a_failing_case_is_recorded_and_the_run_goes_on():
    rows = []
    settings = kb.BenchSettings(TINY, torch.device("cpu"), torch.float32, ["torch", "test-raises"],
                                kb.Peaks(None, "unknown", 1e10, "test"),
                                timer=lambda fn: kb.time_cpu(fn, target_s=0.005, min_repeats=3))
    out = kb.run_cases(kb.model_cases(TINY, 1, 8, ["decode"]), settings, on_row=rows.append)
    assert out == rows  # each row was handed over as it finished
    failed = [r for r in out if r["status"] == "failed"]
    assert [(r["op"], r["backend"]) for r in failed] == [("rmsnorm", "test-raises")]
    assert "always fails" in failed[0]["error"]
    skipped = {r["op"] for r in out if r["status"] == "skipped"}
    assert "linear.qkv" in skipped  # test-raises has no linear variant: not timed as a second torch
    assert all(r["status"] == "ok" for r in out if r["backend"] == "torch")
    nan_row = next(r for r in out if (r["op"], r["backend"]) == ("swiglu", "test-raises"))
    assert nan_row["status"] == "ok" and nan_row["max_abs_diff_vs_torch"] is None
    assert any("NaN" in n for n in nan_row["notes"])  # a fast wrong kernel is flagged, not hidden
    json.dumps(out, allow_nan=False)  # rows stay finite JSON


def _noted_row(p20_s: float, median_s: float, p80_s: float) -> dict:
    """A synthetic timed row (no op is run) with the fields :func:`kb._notes` reads."""
    row = {"backend": "torch", "bytes": 1e6, "flop": 1e6, "median_s": median_s, "p20_s": p20_s, "p80_s": p80_s}
    return {**row, **kb.roofline_metrics(1e6, 1e6, median_s, None)}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_noisy_timing_gets_a_note(device):
    """p80 > 2 × p20 (the 99.3 µs – 6.74 ms contention case) is flagged; a steady timing and the
    boundary p80 = 2 × p20 are not."""
    s = kb.BenchSettings(TINY, torch.device(device), torch.float32, ["torch"])
    noisy = kb._notes(_noted_row(99.3e-6, 0.5e-3, 6.74e-3), s)
    assert [n for n in noisy if n.startswith("noisy timing")] == [kb.NOISY_NOTE]
    assert "median is uncertain" in kb.NOISY_NOTE and "contention" in kb.NOISY_NOTE
    for p20, p80 in [(100e-6, 130e-6), (100e-6, 200e-6)]:
        assert not any("noisy" in n for n in kb._notes(_noted_row(p20, p20, p80), s))
    assert kb.is_noisy(1e-4, 2.0001e-4) and not kb.is_noisy(1e-4, 2e-4) and kb.is_noisy(0.0, 1e-4)


@gpu
def test_do_bench_timing_agrees_with_cuda_events():
    a = torch.randn(2048, 2048, device="cuda", dtype=torch.bfloat16)
    t = kb.time_gpu(lambda: a @ a)
    from profiler.timing import RegionTimer

    timer = RegionTimer(torch.device("cuda"))
    for _ in range(20):
        with timer.region():
            a @ a
    warm = sorted(timer.seconds())[10]
    assert t.p20_s <= t.median_s <= t.p80_s
    assert 0.5 * warm <= t.median_s <= 3 * warm  # cold-L2 do_bench vs warm back-to-back events


# ----------------------------------------------------------------------------------------------
# The command


def _last_json(capsys) -> tuple[dict, str]:
    out = capsys.readouterr().out
    return json.loads(out.strip().splitlines()[-1]), out


def test_kernels_cli_on_cpu(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # stdout is captured, not a terminal: $COLUMNS sets the table width
    cfg = write_config(tmp_path)
    paths = {k: tmp_path / f"k.{k}" for k in ("json", "csv", "jsonl")}
    assert main(["kernels", "--config", str(cfg), "--batch-size", "2", "--context", "16", "--device", "cpu",
                 "--json", str(paths["json"]), "--csv", str(paths["csv"]), "--out", str(paths["jsonl"])]) == 0
    summary, out = _last_json(capsys)
    assert "prefill: kernels of" in out and "decode: kernels of" in out  # the human table first
    assert max(len(line) for line in _table_lines(out)) <= 100 and "…" not in out
    rows = summary["rows"]
    assert {r["backend"] for r in rows} == {"torch"}  # the default on a CPU: the torch ops only
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 18 and all(r["backend"] == "torch" for r in ok)  # 9 op shapes × 2 phases
    assert summary["peaks"]["flop_per_s"] is None and "unknown" in summary["peaks"]["flop_source"]
    bw = summary["peaks"]["bandwidth_bytes_per_s"]
    assert bw > 0 and summary["peaks"]["bandwidth_source"].startswith("measured")
    for r in ok:
        assert r["p20_s"] <= r["median_s"] <= r["p80_s"]
        assert r["achieved_bytes_per_s"] == pytest.approx(r["bytes"] / r["median_s"])
        assert r["bandwidth_peak_pct"] == pytest.approx(100 * r["bytes"] / r["median_s"] / bw)
        assert r["compute_peak_pct"] is None and r["roofline_pct"] is None  # no CPU compute peak: unknown
        assert r["speedup_vs_torch"] == 1.0
    assert json.loads(paths["json"].read_text())["rows"] == rows
    csv = pd.read_csv(paths["csv"])
    assert len(csv) == len(rows) and {"op", "backend", "median_s", "bandwidth_peak_pct", "dims.m"} <= set(csv.columns)
    records = read_records(paths["jsonl"])
    assert len(records) == len(ok) and all(r["kind"] == "kernel" for r in records)
    for key in ("op", "backend", "flop", "bytes", "median_s", "peak_flop_per_s", "peak_bandwidth_bytes_per_s"):
        assert key in records[0]


def test_kernels_cli_triton_on_cpu_is_skipped_with_the_reason(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert main(["kernels", "--config", str(cfg), "--batch-size", "1", "--context", "8", "--device", "cpu",
                 "--phase", "decode", "--backend", "torch", "--backend", "triton"]) == 0
    rows = _last_json(capsys)[0]["rows"]
    triton_rows = [r for r in rows if r["backend"] == "triton"]
    assert triton_rows and all(r["status"] == "skipped" and "interpreter" in r["skip_reason"] for r in triton_rows)


def test_kernels_cli_calibrated_with_a_user_variant(tmp_path, capsys):
    """--calibrate on CPU gives a measured compute peak; a backend with a swiglu variant only is timed
    for swiglu and compared with torch; the measured percentages follow from the measured peaks."""

    @register("swiglu", "test-kb-mine")
    def _mine(gate, up):
        return gate * torch.sigmoid(gate) * up

    cfg = write_config(tmp_path)
    out_jsonl = tmp_path / "k.jsonl"
    assert main(["kernels", "--config", str(cfg), "--context", "8", "--phase", "decode", "--calibrate", "--device", "cpu",
                 "--backend", "torch", "--backend", "test-kb-mine", "--out", str(out_jsonl), "--wide"]) == 0
    summary, out = _last_json(capsys)
    assert "FLOP/s" in out and "p20–p80" in out and "% BW copy = GB/s ÷" in out  # --wide: every column
    measured = summary["measured_peaks"]
    assert measured["flop_per_s"] > 0 and measured["bandwidth_bytes_per_s"] > 0
    assert summary["calibration"]["matmul_n"] == 1024
    rows = {(r["op"], r["backend"]): r for r in summary["rows"]}
    mine, base = rows[("swiglu", "test-kb-mine")], rows[("swiglu", "torch")]
    assert mine["status"] == "ok" and rows[("linear.qkv", "test-kb-mine")]["status"] == "skipped"
    assert mine["speedup_vs_torch"] == pytest.approx(base["median_s"] / mine["median_s"])
    assert mine["max_abs_diff_vs_torch"] < 1e-5
    for r in (mine, base):
        assert r["measured_compute_peak_pct"] == pytest.approx(100 * r["flop"] / r["median_s"] / measured["flop_per_s"])
        t_roof = max(r["flop"] / measured["flop_per_s"], r["bytes"] / measured["bandwidth_bytes_per_s"])
        assert r["measured_roofline_pct"] == pytest.approx(100 * t_roof / r["median_s"])
    # The reference ceilings stay what the row's percentages used (no compute peak on a CPU); the
    # calibrated rate is kept apart, as the report's calibrated roof.
    records = read_records(out_jsonl)
    assert records and all(r["peak_flop_per_s"] is None and r["measured_peak_flop_per_s"] == measured["flop_per_s"]
                           for r in records)


@pytest.mark.parametrize("argv, needle", [
    (["kernels", "--model", "mixtral-8x7b", "--phase", "decode"], "mixture-of-experts"),
    (["kernels", "--model", "smollm2-135m", "--context", "9000"], "max_position_embeddings"),
    (["kernels", "--backend", "nope"], "nope"),
    (["kernels", "--context", "0"], "context"),
    (["kernels", "--matmul-square", "0"], "matmul-square"),
    (["kernels", "--plugin", "/nonexistent/plugin.py"], "plugin"),
])
def test_kernels_bad_input_is_one_line_exit_2(capsys, argv, needle):
    assert needle in cli_error(capsys, argv)


@register("swiglu", "test_kb_returns_none")
def _swiglu_none(gate, up):
    return None


def test_kernels_refuses_sizes_that_cannot_fit_and_broken_variants(tmp_path, capsys):
    assert "GiB free" in cli_error(capsys, ["kernels", "--batch-size", "100000", "--context", "8000",
                                            "--phase", "prefill", "--device", "cpu"])
    cfg = write_config(tmp_path)
    msg = cli_error(capsys, ["kernels", "--config", str(cfg), "--context", "8", "--device", "cpu",
                             "--backend", "torch", "--backend", "test_kb_returns_none"])
    assert "op swiglu=test_kb_returns_none returned NoneType" in msg


# ----------------------------------------------------------------------------------------------
# The table: compact, nothing cut, ceilings named

H200_PEAKS = kb.Peaks(989e12, "datasheet: h200 (test)", 4.8e12, "datasheet: h200 (test)")
CPU_PEAKS = kb.Peaks(None, "unknown: no datasheet compute peak for a CPU", 20e9,
                     "measured: best of 8 float32 sum reads of 256 MiB on cpu")
COPY_PEAKS = kb.Peaks(0.05e12, "measured: torch.matmul 1024x1024x1024 float32, median call",
                      25e9, "measured: best of 4 copies of 256 MiB on cpu")


def _synthetic_summary(peaks: kb.Peaks, measured: kb.Peaks | None, backends: list[str]) -> dict:
    """Rows of llama-3.1-8b's longest shapes (batch 32, context 8192) with made-up, widely spread timings
    and a skipped row: the widest cells the table meets, without running any op."""
    import dataclasses

    rows = []
    for i, case in enumerate(kb.model_cases(get_preset("llama-3.1-8b"), 32, 8192)):
        for j, backend in enumerate(backends):
            med = 10.0 ** (i % 7 - 6) * 1.2345 * (1 + j / 3)  # 1.23 µs .. 1.23 s
            row = {"phase": case.phase, "op": case.name, "backend": backend, "shape": case.shape,
                   "status": "ok", "flop": case.flop(), "bytes": case.nbytes(2), "median_s": med,
                   "p20_s": med / 1.5, "p80_s": med * (70 if i % 3 == 0 else 1.1), "notes": []}
            row.update(kb.roofline_metrics(row["flop"], row["bytes"], med, peaks))
            row.update(kb.roofline_metrics(row["flop"], row["bytes"], med, measured, "measured_"))
            rows.append(row)
    rows.append({**rows[0], "backend": backends[-1], "status": "skipped", "skip_reason": "no variant"})
    kb.add_speedups(rows)
    device = "cuda:0" if peaks is H200_PEAKS else "cpu"
    return {"model": "llama-3.1-8b", "device": device, "device_name": "test", "dtype": "bfloat16",
            "batch_size": 32, "context": 8192, "rows": rows, "peaks": dataclasses.asdict(peaks),
            "measured_peaks": dataclasses.asdict(measured) if measured else None}


def _render(summary: dict, width: int, wide: bool = False) -> tuple[str, str]:
    """(stdout, stderr) of print_kernel_table on a console of ``width`` columns (stdout is not a terminal
    here, so $COLUMNS sets the width)."""
    import contextlib
    import io
    import os

    from tokencost.cli import kernels_cmd

    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            kernels_cmd.print_kernel_table(summary, wide=wide)
    finally:
        os.environ.pop("COLUMNS") if old is None else os.environ.__setitem__("COLUMNS", old)
    return out.getvalue(), err.getvalue()


def _table_lines(text: str) -> list[str]:
    """The table part of the output: up to the first footer line."""
    return text.split("spread = ")[0].splitlines()


@pytest.mark.parametrize("peaks, measured, backends", [
    (H200_PEAKS, None, ["torch", "triton"]), (H200_PEAKS, COPY_PEAKS, ["torch", "triton"]),
    (CPU_PEAKS, COPY_PEAKS, ["torch"]), (CPU_PEAKS, None, ["torch", "test-kb-mine"])])
def test_the_default_table_fits_100_columns_with_every_value_whole(peaks, measured, backends):
    from tokencost.cli import kernels_cmd as kc

    summary = _synthetic_summary(peaks, measured, backends)
    out, err = _render(summary, 100)
    lines = _table_lines(out)
    assert max(len(line) for line in lines) <= 100 and "…" not in out and not err
    flat = " ".join(lines)
    for r in summary["rows"]:
        if r["status"] == "ok":  # each number as printed, in one piece (only op and shape may fold)
            for text in (kc._time_text(r["median_s"]), kc._spread_text(r),
                         kc._num(r["achieved_bytes_per_s"] / 1e9), kc._pct_text(r["bandwidth_peak_pct"])):
                assert f" {text} " in f" {flat} ", text
    assert "skip [1]" in out and "[1] no variant" in out
    assert "* " in flat  # the noisy rows (p80 = 70 × p20 / 1.5) are marked


def test_a_narrow_terminal_wraps_the_table_rather_than_cutting_numbers():
    summary = _synthetic_summary(H200_PEAKS, None, ["torch", "triton"])
    out, err = _render(summary, 50)
    assert "the kernel table needs" in err and err.count("\n") == 1  # said once, not per phase
    speedups = [r["speedup_vs_torch"] for r in summary["rows"] if r["status"] == "ok"]
    from tokencost.cli.kernels_cmd import _num

    assert all(f" {_num(x)}" in out for x in speedups)  # the last column is still there, whole
    assert "…" not in out


def test_wide_adds_the_detail_columns_and_every_ceiling():
    summary = _synthetic_summary(H200_PEAKS, COPY_PEAKS, ["torch", "triton"])
    default, wide = _table_lines(_render(summary, 200)[0]), _table_lines(_render(summary, 200, wide=True)[0])
    head = lambda lines: " ".join(lines[:4])  # title and the two header lines
    for name in ("FLOP/s", "bytes", "p20–p80", "% FLOP", "copy", "matmul"):
        assert name in head(wide) and name not in head(default), name
    assert max(len(line) for line in wide) <= 200


def test_the_footer_names_each_ceiling():
    gpu_out = _render(_synthetic_summary(H200_PEAKS, COPY_PEAKS, ["torch", "triton"]), 100)[0]
    assert "% BW spec = GB/s ÷ 4,800 GB/s, the datasheet memory" in gpu_out
    assert "% FLOP spec = FLOP/s ÷ 989 TFLOP/s, the datasheet" in gpu_out
    cpu_out = _render(_synthetic_summary(CPU_PEAKS, COPY_PEAKS, ["torch"]), 100)[0]
    assert "% BW read = GB/s ÷ 20.0 GB/s, the read bandwidth measured" in cpu_out
    assert "% BW copy = GB/s ÷ 25.0 GB/s, the copy bandwidth measured" in cpu_out
    assert "% FLOP matmul = FLOP/s ÷ 0.0500 TFLOP/s" in cpu_out
    assert "no reference compute ceiling" in cpu_out
    # On a CPU the roofline column is the measured one, and says so; the BW column is the read bandwidth.
    header = " ".join(_table_lines(cpu_out)[:4])
    assert "% BW" in header and "read" in header and "meas." in header
