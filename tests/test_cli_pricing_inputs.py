"""Price and claim inputs the CLI must refuse or flag: unknown models in `validate`, `validate --all`
filters, prices so large the arithmetic overflows, API rows and hardware rows swapped between
--price-from and --api-price, and break-even against another model's API price."""

from __future__ import annotations

import json

import pytest

from tests.cli_helpers import cli_error
from tests.tiny import write_config
from tokencost import catalog as catalog_mod
from tokencost.claims import load_claims
from tokencost.cli import main
from tokencost.cli.pricing import same_model
from tokencost.hardware import lookup_gpu


@pytest.fixture(autouse=True)
def _fresh_catalog():
    catalog_mod._ACTIVE = None
    yield
    catalog_mod._ACTIVE = None


def _no_constant(name: str):
    raise AssertionError(f"JSON contains {name}")


def _last_json(out: str) -> dict:
    """The last stdout line as strict JSON (NaN / Infinity refused)."""
    return json.loads(out.strip().splitlines()[-1], parse_constant=_no_constant)


def _run(tmp_path, *extra: str, name: str = "tiny.json") -> list[str]:
    cfg = write_config(tmp_path, name=name)
    return ["run", "--config", str(cfg), "--prompt-len", "8", "--gen-len", "2", *extra]


# 1. validate --model takes a preset; other models go through --config.
def test_validate_unknown_model_is_an_error(capsys):
    err = cli_error(capsys, ["validate", "--gpu", "h100-sxm", "--model", "nosuch", "--tok-per-s", "100"])
    assert "'nosuch'" in err and "tokencost models" in err and "--config" in err


# 2. --all is filtered by --gpu (catalog or driver name) and --model.
def test_validate_all_filters_by_gpu_and_model(capsys):
    assert main(["validate", "--all", "--gpu", "h100-sxm", "--json"]) == 0
    got = [c["claim"]["claim_id"] for c in _last_json(capsys.readouterr().out)["claims"]]
    on_h100 = [c.claim_id for c in load_claims() if getattr(lookup_gpu(c.gpu), "name", None) == "h100-sxm"]
    assert got == on_h100 and 0 < len(got) < len(load_claims())
    assert main(["validate", "--all", "--gpu", "NVIDIA H100 80GB HBM3", "--model", "llama-3.1-8b", "--json"]) == 0
    claims = [c["claim"] for c in _last_json(capsys.readouterr().out)["claims"]]
    assert claims and all(c["gpu"] == "h100-sxm" and c["model_preset"] == "llama-3.1-8b" for c in claims)


@pytest.mark.parametrize("extra, needle", [
    (["--gpu", "h100-sxm", "--tok-per-s", "5"], "--tok-per-s"),
    (["--input-len", "100"], "--input-len"),
    (["--gpu", "nosuch-gpu"], "no catalog claim matches --gpu nosuch-gpu"),
    (["--model", "nosuch"], "no catalog claim matches --model nosuch"),
])
def test_validate_all_refuses_single_claim_options_and_empty_filters(capsys, extra, needle):
    assert needle in cli_error(capsys, ["validate", "--all", *extra])


# 4. break-even against an API row for another model is flagged.
def test_api_price_for_another_model_warns(tmp_path, capsys):
    assert main(_run(tmp_path, "--price-per-gpu-hour", "2", "--api-price", "deepseek-reasoner")) == 0
    captured = capsys.readouterr()
    record = _last_json(captured.out)
    warning = next(w for w in record["warnings"] if "deepseek-reasoner" in w)
    assert "DeepSeek-R1" in warning and "tiny" in warning
    assert f"tokencost: warning: {warning}" in captured.err
    assert record["breakeven"]["api_model"] == "DeepSeek-R1"


def test_api_price_for_the_measured_model_does_not_warn(tmp_path, capsys):
    argv = _run(tmp_path, "--price-per-gpu-hour", "2", "--api-price", "together-llama-3.1-8b-turbo",
                name="llama-3.1-8b.json")  # the config's name is its file stem
    assert main(argv) == 0
    record = _last_json(capsys.readouterr().out)
    assert record["breakeven"] and not any("API price" in w for w in record["warnings"])


@pytest.mark.parametrize("api_model, measured, same", [
    ("Llama 3.1 8B", "llama-3.1-8b", True), ("Llama 3.1 8B", "llama-3.1-8b-instruct", True),
    ("Llama 3.x 70B", "llama-3.1-70b", True), ("Llama 3.1 8B", "llama-3.1-70b", False),
    ("Llama 3.x 70B", "llama-3.2-1b", False), ("DeepSeek-R1", "smollm2-135m", False),
    ("Qwen3-235B-A22B", "qwen3-8b", False), ("Qwen2.5-72B", "qwen2.5-0.5b", False), ("", "llama-3.1-8b", False),
])
def test_same_model_names(api_model, measured, same):
    assert same_model(api_model, measured) is same


# 5. prices so large that the cost arithmetic would overflow are refused; JSON stays finite.
@pytest.mark.parametrize("extra, needle", [
    (["--price-per-gpu-hour", "1e308"], "--price-per-gpu-hour must be at most 1,000,000"),
    (["--price-per-instance-hour", "1e308", "--gpus-per-instance", "8"], "--price-per-instance-hour must be at most"),
])
def test_run_refuses_overflowing_prices(tmp_path, capsys, extra, needle):
    assert needle in cli_error(capsys, _run(tmp_path, *extra))


def test_validate_refuses_overflowing_prices(capsys):
    err = cli_error(capsys, ["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tok-per-s", "100",
                             "--price-per-gpu-hour", "1e308"])
    assert "at most 1,000,000" in err


def test_largest_accepted_price_gives_finite_json(tmp_path, capsys):
    assert main(_run(tmp_path, "--price-per-gpu-hour", "1e6", "--utilization", "0.5",
                     "--api-price", "groq-llama-3.1-8b-instant")) == 0
    record = _last_json(capsys.readouterr().out)  # raises on NaN / Infinity
    assert record["usd_per_hour"] == 1e6 and record["effective"]["overhead_ratio"] >= 1


# 6. API rows and hardware rows given to the wrong option say which option takes them.
def test_price_from_an_api_row_points_to_api_price(tmp_path, capsys):
    err = cli_error(capsys, _run(tmp_path, "--price-from", "deepseek-reasoner"))
    assert "API price row" in err and "--api-price deepseek-reasoner" in err
    err = cli_error(capsys, ["validate", "--all", "--price-from", "deepseek-reasoner"])
    assert "API price row" in err


def test_api_price_given_a_hardware_row_points_to_price_from(tmp_path, capsys):
    for name in ("aws-p5.48xlarge-on-demand", "aws-m7i.xlarge-on-demand"):  # a GPU row, a CPU row
        err = cli_error(capsys, _run(tmp_path, "--api-price", name))
        assert f"--price-from {name}" in err
    assert "no API price named 'nope'" in cli_error(capsys, _run(tmp_path, "--api-price", "nope"))


def test_a_cost_model_that_overflows_after_measuring_keeps_the_record(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(_run(tmp_path, "--price-per-gpu-hour", "1e6", "--utilization", "1e-300", "--out", str(out))) == 0
    captured = capsys.readouterr()
    record = _last_json(captured.out)
    assert record["effective"] is None and record["usd_per_mtok_output"] > 0
    assert any(w.startswith("effective $/Mtok not computed") for w in record["warnings"])
    assert "effective $/Mtok not computed" in captured.err
    assert json.loads(out.read_text().splitlines()[-1])["effective"] is None


def test_printed_json_never_holds_nan_or_infinity(capsys):
    from tokencost.cli.common import finite_json, print_json_line

    payload = {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf"), "e": 2}}
    assert finite_json(payload) == ({"a": None, "b": [1.0, None], "c": {"d": None, "e": 2}}, ["a", "b[1]", "c.d"])
    print_json_line(payload)
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"a": None, "b": [1.0, None], "c": {"d": None, "e": 2}}
    assert "non-finite value(s) written as null: a, b[1], c.d" in captured.err


def test_validate_prices_an_owned_gpu_by_its_tco(capsys):
    assert main(["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tok-per-s", "100",
                 "--price-owned", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["claims"][0]
    assert verdict["price_source"].startswith("owned h100-sxm")
    assert main(["prices", "--tco", "h100-sxm", "--json"]) == 0
    tco = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tco"]
    assert verdict["usd_per_gpu_hour"] == pytest.approx(tco["usd_per_utilized_gpu_hour"])
    assert "--price-owned needs --gpu" in cli_error(capsys, ["validate", "--all", "--price-owned"])
    assert "at most 1,000,000" in cli_error(capsys, ["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b",
                                                    "--tok-per-s", "100", "--price-owned",
                                                    "--tco-param", "capex_usd=1e15"])


def test_tco_param_without_price_owned_is_an_error(tmp_path, capsys):
    assert "--tco-param needs --price-owned" in cli_error(capsys, _run(tmp_path, "--tco-param", "pue=1.2"))
    assert "--tco-param needs --price-owned" in cli_error(
        capsys, ["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tok-per-s", "100",
                 "--tco-param", "pue=1.2"])


def test_validate_warns_when_the_price_row_is_another_gpu(capsys):
    assert main(["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tok-per-s", "100",
                 "--price-from", "aws-p4d.24xlarge-on-demand"]) == 0
    assert "is for a100-sxm-40gb, not h100-sxm" in capsys.readouterr().err


# 7. A per-node figure needs the GPU count that produced it; nothing is assumed.
def test_validate_per_node_needs_gpus(capsys):
    claim = ["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tok-per-s", "800", "--unit", "per-node"]
    err = cli_error(capsys, claim)
    assert "--unit per-node needs --gpus" in err
    assert main([*claim, "--gpus", "8", "--json"]) == 0
    verdict = _last_json(capsys.readouterr().out)["claims"][0]
    assert verdict["claimed_output_tok_per_s_per_gpu"] == pytest.approx(100.0)
    assert "--gpus" in cli_error(capsys, ["validate", "--all", "--gpus", "1"])  # --all takes no claim fields


# 8. A verdict that rests on an unverified catalog figure says so.
def test_validate_notes_unverified_gpu_figures(capsys):
    claim = ["validate", "--gpu", "a10g", "--model", "llama-3.1-8b", "--precision", "bf16", "--input-len", "128",
             "--output-len", "128", "--batch-size", "8", "--tok-per-s", "100"]
    assert main([*claim, "--json"]) == 0
    verdict = _last_json(capsys.readouterr().out)["claims"][0]
    note = next(n for n in verdict["notes"] if "unverified" in n)
    assert "a10g's bf16_tflops is unverified" in note  # its 600 GB/s and 24 GB are sourced
    assert main(claim) == 0
    assert "bf16_tflops is unverified" in " ".join(capsys.readouterr().out.split())
    assert main(["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--precision", "bf16",
                 "--input-len", "128", "--tok-per-s", "100", "--json"]) == 0
    assert not any("unverified" in n for n in _last_json(capsys.readouterr().out)["claims"][0]["notes"])


# 10. The --all table sets the $/Mtok a source stated beside the one recomputed from its tokens/s.
def test_validate_all_table_shows_stated_and_recomputed_dollars(capsys):
    assert main(["validate", "--all", "--gpu", "h200"]) == 0
    out = capsys.readouterr().out
    assert "stated" in out and "recomputed" in out and "$/Mtok" in out  # two-line headers
    row = next(line for line in out.splitlines() if "nvidia-cost-per-token-h200" in line)
    cells = [c.strip() for c in row.split("│")]
    assert cells[-3:-1] == ["4.352", "4.2"]  # claims.md §3.2: $1.41/h at 90 tok/s is $4.35, not the stated $4.20
