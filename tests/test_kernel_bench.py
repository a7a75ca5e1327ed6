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


def test_kernels_cli_on_cpu(tmp_path, capsys):
    cfg = write_config(tmp_path)
    paths = {k: tmp_path / f"k.{k}" for k in ("json", "csv", "jsonl")}
    assert main(["kernels", "--config", str(cfg), "--batch-size", "2", "--context", "16", "--device", "cpu",
                 "--json", str(paths["json"]), "--csv", str(paths["csv"]), "--out", str(paths["jsonl"])]) == 0
    summary, out = _last_json(capsys)
    assert "prefill: kernels of" in out and "decode: kernels of" in out  # the human table first
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
                 "--backend", "torch", "--backend", "test-kb-mine", "--out", str(out_jsonl)]) == 0
    summary, _ = _last_json(capsys)
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
    # With no datasheet compute peak on a CPU, the report's ceiling falls back to the measured one.
    records = read_records(out_jsonl)
    assert records and all(r["peak_flop_per_s"] == measured["flop_per_s"] for r in records)


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
