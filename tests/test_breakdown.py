"""profiler.breakdown and `tokencost breakdown`: attribution invariants, byte counts, the CLI, and the
what-if prediction checked against a real A/B measurement with a deliberately slowed attention."""

import json
import statistics
import time

import pytest
import torch

from profiler import breakdown, roofline, torch_ops
from profiler.backends import register, resolve
from profiler.config import config_from_dict
from profiler.errors import ProfilerError
from profiler.measure import DecodeSettings, measure_decode
from profiler.model import build_model
from profiler.results import load_results
from tests.tiny import TINY_LLAMA, write_config
from tokencost import whatif
from tokencost.cli import main

SLOW_K = 4  # the slowed attention takes this many times as long as the real decode attention
SLOW_BACKEND = "test-slow-attention-x4"


@register("attention_decode", SLOW_BACKEND)
def _slow_attention_decode(q, k_cache, v_cache, seq_lens, scale, window):
    """The torch decode attention, then a busy wait of SLOW_K - 1 times its own duration.

    Why not the attention computed SLOW_K times: repeats find K and V in cache and run 2-3x faster
    than the first call (measured here on the A/B model: 0.84 ms for the first call of a step vs
    0.29 ms for each repeat), so the slowed op would not be SLOW_K times slower and the A/B would
    have no known factor to predict. The wait keeps the CPU busy (the profiler's CPU region time
    and the step time both see it) and scales with whatever the real call cost in that step.
    """
    t0 = time.perf_counter()
    out = torch_ops.attention_decode(q, k_cache, v_cache, seq_lens, scale, window)
    end = time.perf_counter() + (SLOW_K - 1) * (time.perf_counter() - t0)
    while time.perf_counter() < end:
        pass
    return out


@pytest.fixture
def one_thread():
    """One intra-op thread: two test workers on two cores then do not fight over OpenMP threads,
    whose barrier waits inflate step times by orders of magnitude on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_model(batch=2, context=16, overrides=None):
    cfg = config_from_dict({**TINY_LLAMA, **(overrides or {})}, name="tiny")
    return build_model(cfg, max_batch_size=batch, max_seq_len=context)


# ----------------------------------------------------------------------------------------------
# Attribution on a real profile


def test_breakdown_rows_add_up_to_the_measured_step(one_thread):
    model = _tiny_model()
    b = breakdown.profile_decode(model, 2, 16, steps=4, warmup_steps=1)
    assert tuple(b.row_times_s) == breakdown.ROWS
    assert all(t >= 0 for t in b.row_times_s.values())
    assert sum(b.row_times_s.values()) == pytest.approx(b.step_s, rel=1e-9)
    assert sum(b.shares().values()) == pytest.approx(1.0, rel=1e-9)
    assert sum(b.class_times_s().values()) == pytest.approx(b.step_s, rel=1e-9)
    assert tuple(b.class_times_s()) == breakdown.OP_CLASSES
    # The step time is the median of the independently timed (unprofiled) steps.
    assert len(b.step_times_s) == 4 and b.step_s == statistics.median(b.step_times_s)
    assert b.profiled_step_s > 0 and b.time_basis == "cpu" and b.n_steps == 4
    # Every labelled op of the model was seen (a missing label would silently fall into "other").
    for row in breakdown.ROWS:
        if row != breakdown.OTHER:
            assert b.row_times_s[row] > 0, row
    assert b.scale == pytest.approx(b.step_s / b.profiled_step_s) or b.warnings


def test_label_regions_lie_inside_their_profiler_step(one_thread):
    model = _tiny_model()
    with torch.inference_mode():
        tok, pos = breakdown._prefill(model, 2, 16, seed=0)
        events, _ = breakdown._profiled_steps(model, tok, pos, steps=3)
    per_step = breakdown.label_times_us(events, device_time=False)
    step_regions = [e for e in events if e.name.startswith("ProfilerStep")]
    assert len(per_step) == len(step_regions) == 3
    # Label regions do not overlap, so in each step they sum to at most the step's own region.
    for labels, region in zip(per_step, sorted(step_regions, key=lambda e: e.time_range.start)):
        assert 0 < sum(labels.values()) <= region.cpu_time_total


def test_nested_label_counts_only_for_the_inner_one(one_thread):
    x = torch.randn(256, 256)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with torch.profiler.record_function("attn.attention"):
            y = x @ x
            with torch.profiler.record_function("norm"):
                y = torch.nn.functional.rms_norm(y @ x, (256,))
    events = prof.events()
    outer = next(e for e in events if e.name == "attn.attention")
    inner = next(e for e in events if e.name == "norm")
    (step,) = breakdown.label_times_us(events, device_time=False)
    assert step["norm"] == pytest.approx(inner.cpu_time_total)
    assert step["attention.decode"] == pytest.approx(outer.cpu_time_total - inner.cpu_time_total)
    assert step["attention.decode"] + step["norm"] == pytest.approx(outer.cpu_time_total)


def test_every_model_label_has_a_row():
    from profiler import model as model_module

    labels = getattr(model_module, "LABELS", None)
    if labels is None:
        pytest.skip("profiler.model has no LABELS tuple")
    assert set(labels) <= set(breakdown.LABEL_ROWS), set(labels) - set(breakdown.LABEL_ROWS)
    assert {breakdown.class_of(r) for r in breakdown.ROWS} == set(breakdown.OP_CLASSES)
    assert breakdown.OP_CLASSES == whatif.OP_CLASSES  # the profiler cannot import the cost layer


def test_attribute_scales_cpu_time_and_keeps_kernel_time():
    per_step = {"matmul.qkv_proj": 2e-3, "attention.decode": 1e-3}
    # CPU: profiled step 4 ms vs 2 ms unprofiled -> every region keeps its share of the profiled step.
    rows, scale, warnings = breakdown.attribute(per_step, 2e-3, 4e-3, "cpu")
    assert scale == pytest.approx(0.5) and not warnings
    assert rows == pytest.approx({"matmul.qkv_proj": 1e-3, "attention.decode": 0.5e-3, "other": 0.5e-3})
    # Device: kernel time is not inflated by host overhead, so it is kept; the rest is gaps.
    rows, scale, _ = breakdown.attribute(per_step, 5e-3, 9e-3, "device")
    assert scale == 1.0 and rows["other"] == pytest.approx(2e-3) and rows["matmul.qkv_proj"] == 2e-3
    # Kernel time above the step (clock noise) is scaled down to fit, with a warning; never negative.
    rows, scale, warnings = breakdown.attribute(per_step, 2e-3, 2e-3, "device")
    assert scale == pytest.approx(2 / 3) and rows["other"] == 0.0 and warnings
    assert sum(rows.values()) == pytest.approx(2e-3)


@pytest.mark.parametrize("args", [({"a": 1.0}, 0.0, 1.0, "cpu"), ({"a": -1.0}, 1.0, 1.0, "cpu"),
                                  ({"a": 1.0}, 1.0, 1.0, "gpu")])
def test_attribute_rejects_bad_input(args):
    with pytest.raises(ProfilerError):
        breakdown.attribute(*args)


@pytest.mark.parametrize("kwargs, needle", [
    ({"batch_size": 3}, "batch size"), ({"batch_size": 0}, "batch size"), ({"context_len": 17}, "context"),
    ({"context_len": 0}, "context"), ({"steps": 0}, "steps"),
])
def test_profile_decode_bad_input(kwargs, needle):
    args = {"batch_size": 2, "context_len": 16, **kwargs}
    with pytest.raises(ProfilerError, match=needle):
        breakdown.profile_decode(_tiny_model(), args.pop("batch_size"), args.pop("context_len"), **args)


def test_context_one_needs_no_prefill(one_thread):
    b = breakdown.profile_decode(_tiny_model(context=1), 2, 1, steps=2, warmup_steps=0)
    assert b.context_len == 1 and sum(b.row_times_s.values()) == pytest.approx(b.step_s)


# ----------------------------------------------------------------------------------------------
# Byte counts for the roofline what-if


@pytest.mark.parametrize("overrides", [{}, {"model_type": "qwen2"}, {"model_type": "qwen3", "head_dim": 24},
                                       {"tie_word_embeddings": True, "mlp_bias": True, "attention_bias": True}])
def test_row_bytes_match_the_decode_byte_model(overrides):
    cfg = config_from_dict({**TINY_LLAMA, **overrides}, name="tiny")
    batch, context, elem = 3, 50, 2
    rows = breakdown.row_bytes_per_step(cfg, batch, context, elem)
    norms = cfg.num_hidden_layers * (2 * cfg.hidden_size + (2 * cfg.head_dim if cfg.qk_norm else 0)) + cfg.hidden_size
    gather = batch * cfg.hidden_size
    kv_read = batch * context * cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim * elem
    matmul = sum(v for r, v in rows.items() if r.startswith("matmul."))
    # The rows plus what no row covers (norm weights, embedding gather) are the metrics.md §3.1 total.
    assert matmul + rows["attention.decode"] + (norms + gather) * elem == roofline.decode_bytes_per_step(
        cfg, batch, context, elem)
    assert rows["attention.decode"] == kv_read
    assert rows["attention.kv_write"] == kv_read / context


def test_matmul_params_without_biases_are_the_flop_model_params():
    cfg = config_from_dict(TINY_LLAMA, name="tiny")
    assert sum(breakdown.matmul_row_params(cfg).values()) == roofline.matmul_params_per_token(cfg)


def test_row_bytes_bad_input():
    cfg = config_from_dict(TINY_LLAMA, name="tiny")
    with pytest.raises(ProfilerError):
        breakdown.row_bytes_per_step(cfg, 0, 10, 2)


# ----------------------------------------------------------------------------------------------
# The what-if against a real A/B


# Ops large enough (a 512-wide model, 256 cached positions) that the profiler's per-op bookkeeping,
# about a microsecond per recorded op, stays small beside them; 2 layers keep the test fast.
AB_CONFIG = {**TINY_LLAMA, "hidden_size": 512, "intermediate_size": 1024, "num_attention_heads": 8,
             "num_key_value_heads": 4, "vocab_size": 1024, "max_position_embeddings": 512}
AB_BATCH, AB_CONTEXT = 4, 256
AB_PAIRS, AB_MAX_PAIRS = 5, 14
MIN_CPU_SHARE = 0.9  # a run whose thread got less of the CPU than this was preempted by other processes


def _on_cpu(fn):
    """(result, share of the wall time this thread spent on the CPU) of ``fn()``. With one torch
    thread all work runs in this thread, so a share well below 1 means other processes preempted it."""
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    out = fn()
    return out, (time.thread_time() - cpu0) / (time.perf_counter() - wall0)


def _measured_ratios(model, normal, slow) -> list[float]:
    """Ratios normal TPOT ÷ slowed TPOT (median step, profiler.measure), each pair measured back to
    back so that drifts of machine load cancel in the ratio. Pairs during which either run was
    preempted (see MIN_CPU_SHARE) are measured again, up to AB_MAX_PAIRS in all; if too few clean
    pairs come, every pair is kept and the spread shows the noise."""
    settings = DecodeSettings(batch_size=AB_BATCH, prompt_len=AB_CONTEXT - 12, gen_len=25, warmup_steps=2)

    def tpot(ops):
        model.set_ops(ops)
        return _on_cpu(lambda: measure_decode(model, settings).tpot.median_s)

    clean, every = [], []
    while len(clean) < AB_PAIRS and len(every) < AB_MAX_PAIRS:
        (t_normal, cpu_normal), (t_slow, cpu_slow) = tpot(normal), tpot(slow)
        every.append(t_normal / t_slow)
        if min(cpu_normal, cpu_slow) >= MIN_CPU_SHARE:
            clean.append(every[-1])
    return clean if len(clean) >= 3 else every


def _robust_spread(values: list[float]) -> float:
    """Relative robust standard deviation: 1.4826 × median absolute deviation ÷ median (one outlier
    does not blow it up, as it would a range or a standard deviation)."""
    mid = statistics.median(values)
    return 1.4826 * statistics.median(abs(v - mid) for v in values) / mid


def _profile_unpreempted(model, tries: int = 3):
    """Profile the model; again (up to ``tries`` times) if other processes preempted the run."""
    for _ in range(tries):
        b, cpu_share = _on_cpu(lambda: breakdown.profile_decode(model, AB_BATCH, AB_CONTEXT, steps=8, warmup_steps=2))
        if cpu_share >= MIN_CPU_SHARE:
            break
    return b


def test_whatif_prediction_matches_a_real_ab(one_thread):
    """The what-if must predict the measured change of the step time between the normal and the
    slowed attention, both ways: breakdown of the slowed run + "attention.decode SLOW_K× faster",
    and breakdown of the normal run + "attention.decode 1/SLOW_K× as fast".

    Measured change: the median of the per-pair ratios normal TPOT ÷ slowed TPOT. Run-to-run
    spread: the robust relative standard deviation of those ratios. Each prediction must agree within
    max(15 %, 3 × spread). The check only means something if the real effect (the slowed step takes
    about 1.6× as long) lies outside that band, so that a prediction of "no change", or of a badly
    wrong attention share, would fail; the test asserts that too, so a machine too noisy to resolve
    the effect fails the test rather than passing it vacuously.
    """
    model = build_model(config_from_dict(AB_CONFIG, name="ab"), max_batch_size=AB_BATCH, max_seq_len=AB_CONTEXT + 16)
    normal, slow = resolve("torch"), resolve("torch", {"attention_decode": SLOW_BACKEND})
    ratios = _measured_ratios(model, normal, slow)
    measured = statistics.median(ratios)
    tolerance = max(0.15, 3 * _robust_spread(ratios))
    predictions = {}
    for ops, factor in ((slow, SLOW_K), (normal, 1 / SLOW_K)):
        model.set_ops(ops)
        b = _profile_unpreempted(model)
        wi = whatif.what_if(b.row_times_s, AB_BATCH, {"attention.decode": factor})
        predictions[factor] = (wi.new_step_s / wi.old_step_s) ** (1 if factor > 1 else -1)
    detail = (f"measured ratios {[round(r, 3) for r in ratios]}, tolerance {tolerance:.2f}, predicted from the "
              f"slowed run {predictions[SLOW_K]:.3f}, from the normal run {predictions[1 / SLOW_K]:.3f}")
    assert abs(1.0 / measured - 1.0) > tolerance, f"A/B effect not resolvable on this machine: {detail}"
    for predicted in predictions.values():
        assert abs(predicted / measured - 1.0) <= tolerance, detail


# ----------------------------------------------------------------------------------------------
# The CLI


def _last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) > 1  # tables first
    return json.loads(out[-1])


def test_cli_breakdown_with_whatif(tmp_path, capsys, one_thread):
    cfg = write_config(tmp_path)
    results, out_json = tmp_path / "results.jsonl", tmp_path / "b.json"
    argv = ["breakdown", "--config", str(cfg), "--batch-size", "2", "--context", "24", "--gen-len", "4",
            "--warmup-steps", "1", "--speedup", "attention=2", "--speedup", "matmul=roofline",
            "--price-per-gpu-hour", "2.5", "--json", str(out_json), "--out", str(results)]
    assert main(argv) == 0
    payload = _last_json(capsys)
    s, records = payload["summary"], payload["records"]
    assert payload == json.loads(out_json.read_text())
    assert [r["op_class"] for r in records] == list(breakdown.ROWS)
    assert all(r["kind"] == "breakdown" and r["time_s"] >= 0 and r["batch_size"] == 2 for r in records)
    assert sum(r["share"] for r in records) == pytest.approx(1.0)
    assert sum(r["time_s"] for r in records) == pytest.approx(s["step_s"])
    assert s["output_tok_per_s"] == pytest.approx(2 / s["step_s"])
    assert s["usd_per_mtok_output"] == pytest.approx(2.5 / (s["output_tok_per_s"] * 3600) * 1e6)
    # What-if: matmul rows at their bound, attention halved, the rest unchanged; step = their sum.
    w, bounds, rows = s["whatif"], s["roofline"]["row_bound_s"], s["row_times_s"]
    expected = {r: bounds[r] if r.startswith("matmul.") else t / 2 if r.startswith("attention.") else t
                for r, t in rows.items()}
    assert w["new_row_times_s"] == pytest.approx(expected)
    assert w["new_step_s"] == pytest.approx(sum(expected.values()))
    assert w["new_output_tok_per_s"] == pytest.approx(2 / w["new_step_s"])
    assert w["new_usd_per_mtok_output"] == pytest.approx(2.5 / (w["new_output_tok_per_s"] * 3600) * 1e6)
    assert s["roofline"]["bandwidth_bytes_per_s"] > 0
    df = load_results(results, kind="breakdown")
    assert len(df) == len(breakdown.ROWS) and df["share"].sum() == pytest.approx(1.0)


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tokencost: error:"), err
    return err


@pytest.mark.parametrize("extra, needle", [
    (["--speedup", "softmax=2"], "softmax"), (["--speedup", "attention=0"], "attention"),
    (["--speedup", "attention=-1"], "attention"), (["--speedup", "attention=nan"], "attention"),
    (["--speedup", "attention"], "CLASS=FACTOR"), (["--speedup", "norm=roofline"], "roofline"),
    (["--speedup", "matmul.nope=2"], "matmul.nope"), (["--speedup", "attention=2", "--speedup", "attention=3"], "twice"),
    (["--context", "0"], "context"), (["--context", "100000"], "max_position_embeddings"),
    (["--batch-size", "0"], "batch-size"), (["--backend", "nope"], "nope"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, extra, needle):
    cfg = write_config(tmp_path)
    assert needle in _error(capsys, ["breakdown", "--config", str(cfg), "--context", "16", *extra])
