"""Bad inputs to `tokencost report` and `tokencost sweep`: foreign records, corrupt or torn lines, a
--json document, an --out that is a file, a grid past the model's positions, a silent re-run."""

import json

import pytest

from profiler.config import config_from_dict
from profiler.errors import ProfilerError
from profiler.memory import InsufficientMemoryError
from profiler.results import append_result, read_records
from profiler.runner import RunSpec
from profiler.sweep import plan_points
from tests.cli_helpers import cli_error
from tests.tiny import TINY_LLAMA, write_config
from tokencost.cli import main


def _run_record(batch: int = 1, ctx: int = 16) -> dict:
    tpot = 0.01
    return {"kind": "run", "model": "tiny", "device_name": "cpu", "dtype": "float32", "backend": "torch",
            "batch_size": batch, "prompt_len": ctx, "gen_len": 4, "ttft_s": 0.02, "tpot_s": tpot,
            "output_tok_per_s": batch / tpot, "output_tok_per_s_per_seq": 1 / tpot, "status": "ok"}


# ---------------------------------------------------------------------------------------------- report


@pytest.mark.parametrize("bad, needle", [({"kind": "run", "foo": 1}, "batch_size"),
                                         ({"kind": "run", "batch_size": 1, "prompt_len": 8}, "tpot_s"),
                                         ({"kind": "sweep_summary"}, "'sweep_summary'"),
                                         ({"kind": "kernel", "op": "linear"}, "flop"),
                                         ({"kind": "breakdown", "time_s": 1.0}, "op_class")])
def test_report_rejects_a_record_it_cannot_render_naming_file_and_line(tmp_path, capsys, bad, needle):
    results = tmp_path / "r.jsonl"
    append_result(results, _run_record())
    results.write_text(results.read_text() + json.dumps(bad) + "\n")
    err = cli_error(capsys, ["report", str(results), "--out", str(tmp_path / "rep")])
    assert f"{results}:2:" in err and needle in err
    assert not (tmp_path / "rep" / "summary.md").exists()  # never rendered as a point


def test_report_invalid_last_line_with_newline_is_corrupt_not_truncated(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    results.write_text("garbage\n")
    err = cli_error(capsys, ["report", str(results), "--out", str(tmp_path / "rep")])
    assert f"{results}:1:" in err and "not valid JSON" in err and "truncated" not in err


def test_report_torn_last_line_is_one_clean_warning(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    append_result(results, _run_record())
    with open(results, "a") as fh:
        fh.write('{"kind": "run", "batch')  # interrupted write: no trailing newline
    assert main(["report", str(results), "--out", str(tmp_path / "rep")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tokencost: warning: {results}:2: ignoring a truncated last line (no trailing newline: "
                   "an interrupted write)"]
    assert "1 measured point(s)" in (tmp_path / "rep" / "summary.md").read_text()


def test_report_of_a_json_document_says_it_is_not_jsonl(tmp_path, capsys):
    doc = tmp_path / "k.json"
    doc.write_text(json.dumps({"command": "kernels", "rows": [{"op": "linear"}]}, indent=2) + "\n")
    err = cli_error(capsys, ["report", str(doc), "--out", str(tmp_path / "rep")])
    assert "not a JSONL results file" in err and "one JSON object per line" in err and "corrupt" not in err


def test_report_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("mine\n")
    err = cli_error(capsys, ["report", str(tmp_path / "missing.jsonl"), "--out", str(out)])
    assert err == f"tokencost: error: --out {out} exists and is a file; give a folder"
    assert out.read_text() == "mine\n"


# ---------------------------------------------------------------------------------------------- sweep


def _sweep(cfg, out, *extra: str, contexts: str = "8,24") -> list[str]:
    return ["sweep", "--config", str(cfg), "--device", "cpu", "--batch-sizes", "1", "--context-lens", contexts,
            "--gen-len", "3", "--warmup-steps", "0", "--out", str(out), *extra]


def test_sweep_checks_every_point_against_positions_before_measuring(tmp_path, capsys):
    cfg = write_config(tmp_path)  # max_position_embeddings 256
    out = tmp_path / "s.jsonl"
    err = cli_error(capsys, _sweep(cfg, out, contexts="16,255"))
    assert "context length 255 + gen-len 3 = 258 exceeds" in err and "(256)" in err and "253" in err
    assert "prompt-len" not in err
    assert not out.exists()  # the context-16 point was not measured first


def test_grid_memory_estimate_skips_or_refuses_before_measuring(monkeypatch):
    import torch

    from profiler import memory
    from profiler.sweep import check_grid

    cfg = config_from_dict(TINY_LLAMA, name="tiny")
    points = plan_points(RunSpec(cfg=cfg, gen_len=4, device="cpu", dtype="float32"), [1, 64], [16], 2)
    small = memory.estimate_memory_bytes(cfg, 1, 16, 4, 4)
    monkeypatch.setattr(memory, "available_memory_bytes", lambda device_type: small)
    skips = check_grid(points, torch.device("cpu"), torch.float32)
    assert list(skips) == [(64, 16)] and "GiB" in skips[(64, 16)]
    monkeypatch.setattr(memory, "available_memory_bytes", lambda device_type: small - 1)
    with pytest.raises(InsufficientMemoryError, match="no point of the sweep fits"):
        check_grid(points, torch.device("cpu"), torch.float32)
    with pytest.raises(ProfilerError, match="context lengths 250, 300 \\+ gen-len 8 exceed"):
        check_grid(plan_points(RunSpec(cfg=cfg, gen_len=8), [1], [16, 250, 300]), torch.device("cpu"), torch.float32)


def test_sweep_rerun_into_the_same_file_needs_resume_or_append(tmp_path, capsys):
    cfg = write_config(tmp_path)
    out = tmp_path / "s.jsonl"
    assert main(_sweep(cfg, out)) == 0
    first = out.read_text()
    capsys.readouterr()
    err = cli_error(capsys, _sweep(cfg, out))
    assert "already holds 2 record(s)" in err and "--resume" in err and "--append" in err
    assert out.read_text() == first  # nothing measured, nothing removed
    cli_error(capsys, _sweep(cfg, out, "--resume", "--append"))
    assert main(_sweep(cfg, out, "--append")) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [p["repeats"] for p in summary["points"]] == [1, 1]  # this run's points only, not pooled
    assert all("output_tok_per_s_ci95" not in p for p in summary["points"])
    assert out.read_text().startswith(first) and len(read_records(out)) == 4  # old lines kept


@pytest.mark.parametrize("field, value, needle", [("output_tok_per_s", -5, "output_tok_per_s"),
                                                  ("tpot_s", float("nan"), "tpot_s")])
def test_sweep_checks_the_existing_out_file_before_measuring(tmp_path, capsys, field, value, needle):
    # A hand-edited record (negative tok/s, NaN TPOT) is refused as `tokencost report` refuses it, with
    # file:line, before any point is measured: --resume must not spend the sweep and then fail.
    cfg = write_config(tmp_path)
    out = tmp_path / "s.jsonl"
    good, bad = _run_record(), {**_run_record(ctx=24), field: value}
    out.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")  # json writes NaN as NaN, as an editor might
    before = out.read_text()
    for extra in (["--resume"], ["--append"], []):
        err = cli_error(capsys, _sweep(cfg, out, *extra))
        assert f"{out}:2:" in err and needle in err
        assert out.read_text() == before  # nothing measured, nothing appended
    report_err = cli_error(capsys, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert report_err.split(f"{out}:2:")[1] == err.split(f"{out}:2:")[1]  # the same validator, the same words


def test_sweep_help_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--warmup-steps WARMUP_STEPS untimed decode steps" in help_text
