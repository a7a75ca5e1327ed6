"""Sweeps: every point appended at once, crash-safe, resumable, out-of-memory points skipped."""

import json
import subprocess
import sys

import pytest

from profiler import load_results
from profiler.config import config_from_dict
from profiler.errors import ProfilerError
from profiler.results import read_records
from profiler.runner import RunSpec
from profiler.memory import InsufficientMemoryError, check_fits, estimate_memory_bytes
from profiler.sweep import is_out_of_memory, plan_points, run_sweep
from tests.tiny import TINY_LLAMA, write_config
from tokencost.sweep_summary import summarize_sweep

CFG = config_from_dict(TINY_LLAMA, name="tiny")


def _fake_record(spec: RunSpec) -> dict:
    tpot = 0.001 * (1 + spec.batch_size / 8) * (1 + spec.prompt_len / 1000)
    return {"kind": "run", "model": spec.cfg.name, "device": "cpu", "dtype": "float32", "backend": "torch",
            "batch_size": spec.batch_size, "prompt_len": spec.prompt_len, "gen_len": spec.gen_len,
            "tpot_s": tpot, "ttft_s": 0.01, "mbu": 0.5, "prefill_tok_per_s": 1000.0,
            "output_tok_per_s": spec.batch_size / tpot, "output_tok_per_s_per_seq": 1 / tpot,
            "roofline_output_tok_per_s": 2 * spec.batch_size / tpot, "usd_per_hour": 2.0}


def _points(repeats=1):
    return plan_points(RunSpec(cfg=CFG, gen_len=4), [1, 4], [16, 32], repeats)


def test_plan_is_the_full_grid_and_rejects_bad_sizes():
    pts = _points(repeats=2)
    assert len(pts) == 8
    assert {(p.spec.batch_size, p.spec.prompt_len, p.repeat) for p in pts} == {
        (b, c, r) for b in (1, 4) for c in (16, 32) for r in (0, 1)}
    for bad in (([], [16]), ([1], []), ([0], [16])):
        with pytest.raises(ProfilerError):
            plan_points(RunSpec(cfg=CFG), *bad)


def test_each_point_is_in_the_file_before_the_next_starts(tmp_path):
    out = tmp_path / "r.jsonl"
    seen = []

    def measure(spec):
        seen.append(len(read_records(out)) if out.exists() else 0)
        return _fake_record(spec)

    run_sweep(_points(), out, measure)
    assert seen == [0, 1, 2, 3]
    assert [r["status"] for r in read_records(out)] == ["ok"] * 4


def test_crash_keeps_measured_points_and_resume_finishes(tmp_path):
    out = tmp_path / "r.jsonl"
    calls = []

    def crashing(spec):
        calls.append(spec)
        if len(calls) == 3:
            raise KeyError("simulated crash")
        return _fake_record(spec)

    with pytest.raises(KeyError):
        run_sweep(_points(), out, crashing)
    assert len(read_records(out)) == 2  # both finished points survived the crash
    calls.clear()
    written = run_sweep(_points(), out, lambda s: (calls.append(s), _fake_record(s))[1], resume=True)
    assert len(calls) == 2 and len(written) == 2  # only the two missing points ran
    keys = [r["settings_key"] for r in read_records(out)]
    assert len(keys) == len(set(keys)) == 4


def test_out_of_memory_is_a_skipped_point_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "r.jsonl"

    def measure(spec):
        if spec.batch_size == 4 and spec.prompt_len == 16:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return _fake_record(spec)

    def memory_check(spec):
        return "estimated 99 GiB exceeds the 1 GiB free" if spec.prompt_len == 32 and spec.batch_size == 4 else None

    run_sweep(_points(), out, measure, memory_check=memory_check)
    recs = read_records(out)
    assert [r["status"] for r in recs] == ["ok", "skipped", "ok", "skipped"]
    assert "out of memory" in recs[1]["skip_reason"] and "exceeds" in recs[3]["skip_reason"]
    summary = summarize_sweep(recs)
    assert len(summary["points"]) == 2 and len(summary["skipped"]) == 2


def test_other_errors_are_not_mistaken_for_oom():
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_memory_estimate_grows_with_batch_and_context():
    small = estimate_memory_bytes(CFG, 1, 16, 4, 4)
    assert small < estimate_memory_bytes(CFG, 8, 16, 4, 4)
    assert small < estimate_memory_bytes(CFG, 1, 200, 4, 4)
    assert estimate_memory_bytes(CFG, 1, 16, 4, 4, include_weights=False) < small


def test_a_point_that_cannot_fit_is_an_error_before_allocating():
    from profiler.presets import get_preset

    with pytest.raises(InsufficientMemoryError, match="GiB free"):
        check_fits(get_preset("llama-3.1-70b"), 1, 32, 8, 4, "cpu")  # 282 GB of float32 weights
    check_fits(CFG, 1, 16, 4, 4, "cpu")


def test_insufficient_memory_from_the_runner_is_a_skipped_point(tmp_path):
    out = tmp_path / "r.jsonl"

    def measure(spec):
        if spec.batch_size == 4:
            raise InsufficientMemoryError("needs about 99 GiB but cpu has 1 GiB free")
        return _fake_record(spec)

    run_sweep(_points(), out, measure)
    assert [r["status"] for r in read_records(out)] == ["ok", "skipped", "ok", "skipped"]


def test_summary_frontier_and_confidence_interval(tmp_path):
    out = tmp_path / "r.jsonl"
    wobble = iter([1.0, 1.04] * 4)
    run_sweep(_points(repeats=2), out, lambda s: {**(r := _fake_record(s)),
                                                   "output_tok_per_s": r["output_tok_per_s"] * next(wobble)})
    summary = summarize_sweep(read_records(out))
    assert all(p["repeats"] == 2 for p in summary["points"])
    for p in summary["points"]:
        low, high = p["output_tok_per_s_ci95"]
        assert low < p["output_tok_per_s"] < high
        usd_low, usd_high = p["usd_per_mtok_output_ci95"]
        assert usd_low < p["usd_per_mtok_output"] < usd_high  # dollars carry the interval, inverted
        assert p["multiple_of_floor"] == pytest.approx(p["roofline_output_tok_per_s"] / p["output_tok_per_s"])
    # One frontier per context length; at each, batch 4 wins on throughput and batch 1 on interactivity.
    assert [f["prompt_len"] for f in summary["frontiers"]] == [16, 32]
    for f in summary["frontiers"]:
        assert [p["batch_size"] for p in f["points"]] == [4, 1]  # sorted by rising interactivity


def test_dominated_point_is_off_the_frontier_and_target_cost_is_interpolated(tmp_path):
    out = tmp_path / "r.jsonl"

    def measure(spec):
        r = _fake_record(spec)
        if spec.batch_size == 2:  # slower per sequence AND less throughput than batch 4: dominated
            r.update(output_tok_per_s=r["output_tok_per_s"] / 3, output_tok_per_s_per_seq=1.0)
        return r

    run_sweep(plan_points(RunSpec(cfg=CFG, gen_len=4), [1, 2, 4], [16]), out, measure)
    records = read_records(out)
    by_batch = {r["batch_size"]: r for r in records}
    mid = (by_batch[1]["output_tok_per_s_per_seq"] + by_batch[4]["output_tok_per_s_per_seq"]) / 2
    (f,) = summarize_sweep(records, target_tok_per_s_per_seq=mid)["frontiers"]
    assert [p["batch_size"] for p in f["points"]] == [4, 1]
    t = f["at_target"]
    assert t["interpolated"] and t["output_tok_per_s"] == pytest.approx(
        (by_batch[1]["output_tok_per_s"] + by_batch[4]["output_tok_per_s"]) / 2)
    far = summarize_sweep(records, target_tok_per_s_per_seq=1e9)["frontiers"][0]["at_target"]
    assert "outside" in far["error"]  # no extrapolation


def test_sweep_cli_end_to_end_and_dataframe(tmp_path):
    cfg = write_config(tmp_path)
    out = tmp_path / "sweep.jsonl"
    cmd = [sys.executable, "-m", "tokencost", "sweep", "--config", str(cfg), "--batch-sizes", "1,3",
           "--context-lens", "8,24", "--gen-len", "4", "--out", str(out), "--price-per-gpu-hour", "1.5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["kind"] == "sweep_summary" and len(summary["points"]) == 4
    df = load_results(out)
    assert len(df) == 4
    for col in ("output_tok_per_s", "tpot_s", "ttft_s", "usd_per_mtok_output", "bytes_per_step", "mbu"):
        assert col in df.columns
    again = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and len(read_records(out)) == 4  # nothing re-measured
