"""JSONL results files: crash-safe appends, resume keys, truncated lines, DataFrame columns."""

import json
import math
import os

import pytest

from profiler.errors import ProfilerError
from profiler.results import append_result, completed_keys, load_results, read_records, settings_key


def _run(key: str, batch: int, status: str = "ok", **extra) -> dict:
    rec = {"kind": "run", "model": "m", "batch_size": batch, "context_len": 512, "ttft_s": 0.05,
           "tpot_s": 0.01, "output_tok_per_s": batch / 0.01, "step_times_s": [0.01, 0.011, 0.009],
           "env": {"torch_version": "x", "warnings": ["clock dropped", "throttled"]},
           "status": status, "settings_key": key, "repeat": 0}
    rec.update(extra)
    return rec


def test_append_then_read_round_trips_one_line_per_record(tmp_path):
    path = tmp_path / "sub" / "r.jsonl"
    recs = [_run("a", 1), _run("b", 8)]
    for r in recs:
        append_result(path, r)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(ln) for ln in lines)
    assert read_records(path) == recs


def test_append_fsyncs_every_record(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    append_result(tmp_path / "r.jsonl", _run("a", 1))
    append_result(tmp_path / "r.jsonl", _run("b", 2))
    assert len(calls) == 2


@pytest.mark.parametrize("bad", [{"tpot_s": math.nan}, {"tpot_s": math.inf}, {"kind": "nope"}, {"x": object()}])
def test_append_rejects_non_finite_or_unknown_records(tmp_path, bad):
    with pytest.raises(ProfilerError):
        append_result(tmp_path / "r.jsonl", {**_run("a", 1), **bad})
    assert not (tmp_path / "r.jsonl").exists() or read_records(tmp_path / "r.jsonl") == []


def test_append_rejects_non_dict(tmp_path):
    with pytest.raises(ProfilerError, match="dict"):
        append_result(tmp_path / "r.jsonl", [1, 2])


def test_truncated_last_line_is_skipped_with_warning(tmp_path):
    path = tmp_path / "r.jsonl"
    append_result(path, _run("a", 1))
    append_result(path, _run("b", 2))
    with open(path, "a") as fh:
        fh.write('{"kind": "run", "batch_size": 4, "tpot')  # crash mid-write
    with pytest.warns(UserWarning, match="truncated"):
        recs = read_records(path)
    assert [r["settings_key"] for r in recs] == ["a", "b"]


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_run("a", 1)) + "\n{broken\n" + json.dumps(_run("b", 2)) + "\n")
    with pytest.raises(ProfilerError, match=":2:"):
        read_records(path)


def test_invalid_last_line_with_its_newline_is_corrupt_not_truncated(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_run("a", 1)) + "\n{broken\n")
    with pytest.raises(ProfilerError, match=":2: not valid JSON"):
        read_records(path)


def test_a_json_document_is_named_as_not_jsonl(tmp_path):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"rows": [1, 2]}, indent=2))
    with pytest.raises(ProfilerError, match="single JSON document.*not a JSONL results file"):
        read_records(path)


def test_non_object_line_is_an_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(ProfilerError, match="JSON object"):
        read_records(path)


def test_resuming_after_a_crash_drops_the_partial_line(tmp_path):
    path = tmp_path / "r.jsonl"
    append_result(path, _run("a", 1))
    with open(path, "a") as fh:
        fh.write('{"kind": "run", "batch')
    with pytest.warns(UserWarning, match="partial"):
        append_result(path, _run("b", 2))
    assert [r["settings_key"] for r in read_records(path)] == ["a", "b"]


def test_complete_last_record_without_newline_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_run("a", 1)))  # valid, only the newline is missing
    append_result(path, _run("b", 2))
    assert [r["settings_key"] for r in read_records(path)] == ["a", "b"]


def test_missing_file_is_a_profiler_error(tmp_path):
    with pytest.raises(ProfilerError, match="not found"):
        read_records(tmp_path / "none.jsonl")


def test_settings_key_is_stable_and_order_independent():
    a = {"model": "m", "batch_size": 8, "context_len": 2048, "backend": "torch"}
    b = dict(reversed(list(a.items())))
    assert settings_key(a) == settings_key(b)
    assert len(settings_key(a)) == 16 and int(settings_key(a), 16) >= 0
    assert settings_key(a) != settings_key({**a, "batch_size": 16})
    assert settings_key({"ops": {"x": "torch", "y": "triton"}}) == settings_key({"ops": {"y": "triton", "x": "torch"}})


@pytest.mark.parametrize("bad", [{"x": object()}, {"x": math.nan}, "not a dict"])
def test_settings_key_rejects_non_json(bad):
    with pytest.raises(ProfilerError):
        settings_key(bad)


def test_completed_keys_counts_ok_and_skipped_only(tmp_path):
    path = tmp_path / "r.jsonl"
    assert completed_keys(path) == set()
    append_result(path, _run("a", 1))
    append_result(path, _run("b", 2, status="skipped", skip_reason="out of memory"))
    append_result(path, _run("c", 4, status="failed"))
    append_result(path, {"kind": "kernel", "op": "linear"})
    assert completed_keys(path) == {"a", "b"}


def test_load_results_columns_keep_units_and_flatten(tmp_path):
    path = tmp_path / "r.jsonl"
    append_result(path, _run("a", 1))
    append_result(path, _run("b", 8))
    append_result(path, {"kind": "kernel", "op": "linear", "flop": 10, "bytes": 5, "median_s": 1e-6})
    df = load_results(path)
    assert len(df) == 2
    for col in ("ttft_s", "tpot_s", "output_tok_per_s", "batch_size", "env.torch_version", "n_decode_steps"):
        assert col in df.columns
    assert "step_times_s" not in df.columns and "op" not in df.columns
    assert list(df["n_decode_steps"]) == [3, 3]
    assert df["env.warnings"].iloc[0] == "clock dropped; throttled"
    assert df["output_tok_per_s"].dtype.kind == "f"


def test_load_results_explodes_step_times(tmp_path):
    path = tmp_path / "r.jsonl"
    append_result(path, _run("a", 1))
    append_result(path, _run("b", 8, step_times_s=[0.02, 0.03]))
    df = load_results(path, explode_steps=True)
    assert len(df) == 5
    assert list(df["step_index"]) == [0, 1, 2, 0, 1]
    assert list(df["step_time_s"]) == [0.01, 0.011, 0.009, 0.02, 0.03]
    assert list(df["settings_key"]) == ["a"] * 3 + ["b"] * 2


def test_load_results_kinds_and_errors(tmp_path):
    path = tmp_path / "r.jsonl"
    with pytest.raises(ProfilerError, match="not found"):
        load_results(path)
    path.write_text("")
    with pytest.raises(ProfilerError, match="no run records"):
        load_results(path)
    append_result(path, {"kind": "kernel", "op": "linear", "flop": 10, "bytes": 5, "median_s": 1e-6})
    with pytest.raises(ProfilerError, match="no run records"):
        load_results(path)
    assert list(load_results(path, kind="kernel")["op"]) == ["linear"]
    assert len(load_results(path, kind=None)) == 1
    with pytest.raises(ProfilerError, match="kind"):
        load_results(path, kind="bogus")


def test_record_without_kind_reads_as_run(tmp_path):
    path = tmp_path / "r.jsonl"
    rec = _run("a", 1)
    del rec["kind"]
    append_result(path, rec)
    assert list(load_results(path)["kind"]) == ["run"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_is_named_in_the_error():
    from profiler.results import append_result

    with pytest.raises(ProfilerError, match="/dev/full: cannot append the result"):
        append_result("/dev/full", {"kind": "run", "tpot_s": 0.1})
