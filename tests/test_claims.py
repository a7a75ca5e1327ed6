"""Claim normalisation, roofline verdicts worked out by hand, and the NVIDIA cost-per-token example.

Hand values come from shared/reference: weight bytes per decode step from metrics.md §6 (computed there
from the configs, independently of profiler/roofline.py), datasheet bandwidths from gpu-specs.md, the
compute-side check from claims.md §2 and the NVIDIA example from claims.md §3.2.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from tokencost import catalog as catalog_mod
from tokencost.catalog import PRECISIONS, load_catalog
from tokencost.claims import PRECISION_BYTES, Claim, check_all, check_claim, load_claims, normalise
from tests.cli_helpers import cli_error
from tokencost.cli import main
from tokencost.errors import CostError
from tokencost.prices import price_from_name


@pytest.fixture(autouse=True)
def _fresh_catalog():
    catalog_mod._ACTIVE = None
    yield
    catalog_mod._ACTIVE = None


def _builtin(claim_id: str) -> Claim:
    return next(c for c in load_claims() if c.claim_id == claim_id)


def _claim(**kw) -> Claim:
    base = dict(claim_id="t", model="llama-3.1-8b", model_preset="llama-3.1-8b", gpu="h100-sxm", gpus=1,
                tok_per_s=100.0, precision="bf16", batch_size=1, input_len=1)
    return Claim(**{**base, **kw})


def test_precision_tables_agree():
    assert set(PRECISION_BYTES) == set(PRECISIONS)


def test_nvidia_cost_per_token_example():
    h200 = check_claim(_builtin("nvidia-cost-per-token-h200"))
    assert h200.usd_per_mtok_claimed_tokens == pytest.approx(4.35, abs=0.005)        # not the stated 4.20
    assert h200.implied_tok_per_s_for_stated_price == pytest.approx(93, abs=0.5)      # what 4.20 implies
    assert h200.usd_per_gpu_hour == 1.41 and "stated with the claim" in h200.price_source
    assert h200.status == "model-not-in-catalog"                                      # DeepSeek-R1: no preset
    gb300 = check_claim(_builtin("nvidia-cost-per-token-gb300"))
    assert gb300.usd_per_mtok_claimed_tokens == pytest.approx(0.123, abs=0.0005)
    assert "GPU 'gb300' is unknown" in gb300.reason
    ratio = h200.usd_per_mtok_claimed_tokens / gb300.usd_per_mtok_claimed_tokens
    assert ratio == pytest.approx(35.5, abs=0.1)                                      # "~35× lower $/Mtok"
    aws = check_claim(_builtin("nvidia-cost-per-token-h200"), price_from_name("aws-p5en.48xlarge-on-demand").usd_per_gpu_hour)
    assert aws.usd_per_mtok_claimed_tokens / h200.usd_per_mtok_claimed_tokens == pytest.approx(5.6, abs=0.05)


def test_gpt_fast_llama2_7b_is_possible_by_hand():
    # Batch 1, bf16: 13.215 GB of weights per step (metrics.md §6) + KV of 5 prompt tokens at 512 KiB each;
    # A100-80GB SXM 2.039 TB/s. Bound ≈ 154 tok/s, so 104.9 tok/s is ≈ 68% (claims.md §2: MBU ≈ 69%).
    v = check_claim(_builtin("gpt-fast-llama-2-7b-bf16-a100"))
    bound = 2.039e12 / (13.215e9 + 5 * 512 * 1024)
    assert v.bound.output_tok_per_s_per_gpu == pytest.approx(bound, rel=1e-3)
    assert v.fraction_of_bound == pytest.approx(104.9 / bound, rel=1e-3)
    assert v.status == "possible" and v.physically_possible and v.bound.binding == "bandwidth"


def test_claim_over_the_bound_is_impossible_by_hand():
    # Llama-3.1-8B bf16 batch 1 reads 15.010 GB per step (metrics.md §6) + 128 KiB of KV at context 1;
    # on H100 SXM (3.35 TB/s) at most ≈ 223 tok/s, so 300 tok/s is over the roofline.
    v = check_claim(_claim(tok_per_s=300.0))
    bound = 3.35e12 / (15.010e9 + 128 * 1024)
    assert v.bound.output_tok_per_s_per_gpu == pytest.approx(bound, rel=1e-3)
    assert v.fraction_of_bound == pytest.approx(300 / bound, rel=1e-3) and v.fraction_of_bound > 1.3
    assert v.status == "impossible" and v.physically_possible is False and "over the roofline" in v.reason


def test_trtllm_70b_compute_side_matches_claims_md():
    # claims.md §2: Llama 3.3 70B FP8, H100 TP2, 1000/1000, 2,209 per GPU: ≈282 GFLOP per output token,
    # implied MFU ≈ 32% of the 1,979 TFLOP/s FP8 peak. At maximum batch the compute side binds.
    v = check_claim(_builtin("trtllm-a-llama3.3-70b-h100-fp8-tp2-1k1k"))
    assert v.bound.flops_per_output_token == pytest.approx(282e9, rel=0.01)
    assert v.bound.binding == "compute" and v.bound.peak_column == "fp8_tflops"
    assert v.fraction_of_bound == pytest.approx(0.32, abs=0.01) and v.status == "possible"


def test_trtllm_8b_flops_per_output_token_matches_claims_md():
    v = check_claim(_builtin("trtllm-b-llama3.1-8b-h100-fp8-tp1-1k1k"))  # claims.md §2: 4 × 8.03e9 ≈ 32.1 GFLOP
    assert v.bound.flops_per_output_token == pytest.approx(32.1e9, rel=0.05)
    assert v.status == "possible"


def test_moe_bytes_use_distinct_experts():
    # Qwen3-30B-A3B bf16: 6.084 GB of weights per step at batch 1 (metrics.md §6); at batch 8, 51.6 distinct
    # experts per layer instead of 8 (metrics.md §5), each 3 × 2048 × 768 weights.
    kv_per_token = 96 * 1024  # metrics.md §3.1, bf16
    one = check_claim(_claim(model_preset="qwen3-30b-a3b", batch_size=1)).bound
    assert one.bytes_per_output_token == pytest.approx(6.084e9 + kv_per_token, rel=1e-3)
    eight = check_claim(_claim(model_preset="qwen3-30b-a3b", batch_size=8)).bound
    extra_experts = 48 * (51.6 - 8) * 3 * 2048 * 768 * 2
    step_bytes = 6.084e9 + extra_experts + 7 * 2048 * 2 + 8 * kv_per_token
    assert eight.bytes_per_output_token * 8 == pytest.approx(step_bytes, rel=2e-3)


def test_weights_that_do_not_fit_are_impossible():
    v = check_claim(_claim(model_preset="llama-3.1-70b", gpu="l4", tok_per_s=1.0))
    assert v.status == "impossible" and "weights alone" in v.reason
    v = check_claim(_claim(batch_size=10_000, input_len=4096, tok_per_s=1.0))
    assert v.status == "impossible" and "batch 10000" in v.reason


def test_unknown_model_and_gpu_are_not_guessed():
    v = check_claim(_claim(model="llama-9b", model_preset="llama-9b"))
    assert v.status == "model-not-in-catalog" and v.bound is None
    v = check_claim(_claim(gpu="NVIDIA H100 NVL"))
    assert v.status == "unknown-gpu" and v.bound is None and v.usd_per_gpu_hour is None
    v = check_claim(_claim(precision=None))
    assert v.status == "incomplete" and "precision" in v.reason


def test_request_longer_than_the_model_is_invalid(capsys):
    # Llama-3.1-8B has max_position_embeddings 131072 (its config.json, shared/reference/model-configs).
    with pytest.raises(CostError, match="131073 tokens exceeds llama-3.1-8b's max_position_embeddings 131072"):
        check_claim(_claim(input_len=131_072, output_len=1))
    assert check_claim(_claim(input_len=131_071, output_len=1, batch_size=1)).bound is not None  # exactly fits
    err = cli_error(capsys, ["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--precision", "bf16",
                             "--tok-per-s", "10", "--input-len", "200000"])
    assert "max_position_embeddings 131072" in err


def test_claim_prices_are_bounded():
    with pytest.raises(CostError, match="price_usd_per_gpu_hour must be at most"):
        check_claim(_claim(price_usd_per_gpu_hour=1e308))
    with pytest.raises(CostError, match="stated_usd_per_mtok must be at most"):
        check_claim(_claim(stated_usd_per_mtok=1e308))
    with pytest.raises(CostError, match="at most"):
        check_claim(_claim(), usd_per_gpu_hour=1e308)


def test_unit_normalisation():
    node = _builtin("trtllm-b-llama3.3-70b-h100-fp8-tp2-1k1k")   # 4,205 per TP group of 2 GPUs
    assert normalise(node) == (pytest.approx(2102.5), pytest.approx(2102.5))
    total = _claim(tokens="total", tok_per_s=1000.0, input_len=300, output_len=100, unit="per-node", gpus=2)
    assert normalise(total) == (pytest.approx(500.0), pytest.approx(125.0))
    with pytest.raises(CostError, match="total tokens are not output tokens"):
        check_claim(_claim(tokens="total", output_len=None))
    with pytest.raises(CostError, match="batch size or concurrency"):
        check_claim(_claim(concurrency=4))
    with pytest.raises(CostError, match="gpus must be a positive integer"):
        check_claim(_claim(gpus=0))


def test_bound_grows_with_batch_and_unstated_batch_uses_memory():
    small = check_claim(_claim(batch_size=4, output_len=64)).bound
    large = check_claim(_claim(batch_size=64, output_len=64)).bound
    assert large.output_tok_per_s_per_gpu > small.output_tok_per_s_per_gpu
    auto = check_claim(_claim(batch_size=None, input_len=1000, output_len=64)).bound
    kv_seq = 128 * 1024 * 1000
    assert auto.batch_size == int((80e9 - 8_030_261_248 * 2) // kv_seq) and "fits in memory" in auto.batch_source


def test_config_path_gives_the_same_bound_as_the_preset(model_configs_dir):
    by_preset = check_claim(_claim(output_len=16)).bound
    by_file = check_claim(_claim(model_preset=None, config_path=str(model_configs_dir / "llama-3.1-8b.json"),
                                 output_len=16)).bound
    assert by_file.output_tok_per_s_per_gpu == pytest.approx(by_preset.output_tok_per_s_per_gpu)


def test_builtin_claims_batch():
    verdicts = {v.claim.claim_id: v for v in check_all()}
    assert len(verdicts) == len(load_catalog().rows("claims")) and "invalid" not in {v.status for v in verdicts.values()}
    for cid in ("trtllm-a-gpt-oss-120b-h200-fp8-tp1-1k1k", "trtllm-b-llama3.1-405b-h100-fp8-tp8-1k1k",
                "trtllm-a-deepseek-r1-h200-fp8-dep8-1k1k", "llm-analysis-llama-2-70b-2xa100-b1"):
        assert verdicts[cid].status == "model-not-in-catalog"
    assert verdicts["trtllm-a-llama3.3-70b-gb200-fp4-tp1-1k1k"].status == "unknown-gpu"
    bounded = [v for v in verdicts.values() if v.bound is not None]
    assert len(bounded) >= 15
    for v in bounded:  # every published point checked here is under its roofline
        assert 0 < v.fraction_of_bound <= 1, v.claim.claim_id
    llm_analysis = verdicts["llm-analysis-llama-2-70b-2xa100-b1"]   # $2.21/GPU-h, 2 GPUs, 25.568 tok/s
    assert llm_analysis.usd_per_mtok_claimed_tokens == pytest.approx(48.0, abs=0.05)  # stated $0.0478 per 1k


def test_cli_validate_single_and_all(capsys):
    args = ["validate", "--gpu", "NVIDIA H100 80GB HBM3", "--model", "llama-3.1-8b", "--precision", "bf16",
            "--batch-size", "1", "--input-len", "1", "--tok-per-s", "300", "--price-per-gpu-hour", "2", "--json"]
    assert main(args) == 0
    claim = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["claims"][0]
    assert claim["status"] == "impossible" and claim["physically_possible"] is False
    assert claim["usd_per_mtok_output"] == pytest.approx(2 / (300 * 3600) * 1e6)
    assert main(["validate", "--all", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["claims"]) == len(load_claims())
    assert main(["validate", "--all"]) == 0 and "trtllm" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    ([], "validate needs --gpu"),
    (["--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tok-per-s", "10", "--price-per-instance-hour", "55"],
     "needs --gpus-per-instance"),
    (["--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tok-per-s", "10", "--tokens", "total"],
     "total tokens are not output tokens"),
    (["--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tok-per-s", "-5"], "must be a positive"),
    (["--all", "--price-from", "nope"], "no price named 'nope'"),
])
def test_cli_validate_errors_are_one_line(capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        main(["validate", *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokencost: error:") and message in err and "\n" not in err


def test_cli_measure_without_hook_exits_2(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "tokencost.cli.measure_hook", None)  # import now fails
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tok-per-s", "10", "--measure"])
    assert exc.value.code == 2
    assert "--measure needs" in capsys.readouterr().err


def test_claim_dataclass_round_trip():
    claim = _builtin("gpt-fast-llama-2-7b-bf16-a100")
    assert dataclasses.replace(claim) == claim and claim.source and claim.date == "2024-09-15"


def test_an_implied_price_over_the_bound_is_refused(capsys):
    with pytest.raises(CostError, match=r"implies \$1\.389e\+303/Mtok, over the 1,000,000 \$/Mtok bound"):
        check_claim(_claim(tok_per_s=1e-300), usd_per_gpu_hour=5.0)
    (v,) = check_all(5.0, claims=[_claim(tok_per_s=1e-300)])
    assert v.status == "invalid" and "1,000,000 $/Mtok" in v.reason
    err = cli_error(capsys, ["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tok-per-s", "1e-300"])
    assert "over the 1,000,000 $/Mtok bound" in err


def test_a_claim_without_precision_is_bounded_at_the_most_favourable_one():
    # 4-bit weights, 4-bit KV and the GPU's highest dense peak bound every precision from above.
    favourable = check_claim(_claim(precision=None, tok_per_s=1.0)).bound
    for precision in PRECISIONS:
        stated = check_claim(_claim(precision=precision, kv_precision=precision, tok_per_s=1.0)).bound
        assert stated.output_tok_per_s_per_gpu <= favourable.output_tok_per_s_per_gpu * (1 + 1e-12), precision
    assert favourable.weight_precision == "int4" and favourable.peak_column == "fp8_tflops"  # H100: no FP4 column
    assert check_claim(_claim(gpu="b200", precision=None)).bound.weight_precision == "fp4"
    impossible = check_claim(_claim(precision=None, tok_per_s=1e300))
    assert impossible.status == "impossible" and impossible.physically_possible is False
    assert "even at the most favourable precision" in impossible.reason
    neither = check_claim(_claim(precision=None, input_len=None, batch_size=None, tok_per_s=1e300))
    assert neither.status == "impossible" and "precision and input length" in neither.reason
    plausible = check_claim(_claim(precision=None, tok_per_s=100.0))
    assert plausible.status == "incomplete" and plausible.physically_possible is None
    assert plausible.fraction_of_bound == pytest.approx(100.0 / favourable.output_tok_per_s_per_gpu)


def test_cli_calls_an_absurd_claim_without_precision_impossible(capsys):
    assert main(["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--tok-per-s", "1e300", "--json"]) == 0
    claim = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["claims"][0]
    assert claim["status"] == "impossible" and claim["bound"]["weight_precision"] == "int4"


@pytest.mark.parametrize("fraction, text", [(0.196, "19.6%"), (0.2, "20%"), (0.5, "50%"), (0.19996, "19.996%"),
                                            (1.004, "100.4%"), (0.9996, "99.96%"), (1.0, "100%"), (0.001, "0.1%"),
                                            (0.0001234, "0.012%"),
                                            (1e6, "1e+08%")])
def test_percent_keeps_the_side_of_each_threshold(fraction, text):
    from tokencost.claims import percent

    assert percent(fraction) == text


def test_a_low_verdict_never_prints_the_threshold_itself(capsys):
    bound = check_claim(_claim()).bound.output_tok_per_s_per_gpu
    v = check_claim(_claim(tok_per_s=0.196 * bound))
    assert v.status == "low" and "under 20% of the roofline" in v.reason
    assert ": 19.6% of the bandwidth bound" in v.reason
    args = ["validate", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--precision", "bf16", "--batch-size", "1",
            "--input-len", "1", "--tok-per-s", str(0.196 * bound)]
    assert main(args) == 0
    assert "19.6% of the bandwidth bound" in capsys.readouterr().out


def test_a_compute_bound_read_from_the_bf16_fallback_does_not_prove_impossible():
    """An A100 has no FP8/INT8/INT4 column: an 8- or 4-bit compute bound reads its BF16 peak, which
    understates its INT8/INT4 tensor cores (GpuSpec.peak_flops_per_s), so a claim above that bound but
    under the bandwidth bound is not shown impossible."""
    from tokencost.claims import Claim, check_claim

    base = dict(claim_id="t", source="test", date="2026-11-30", model="llama-3.1-8b", model_preset="llama-3.1-8b",
                gpu="a100-sxm-80gb", gpus=1, tok_per_s=15.0, unit="per-gpu", tokens="output", batch_size=32,
                input_len=8000, output_len=4)
    v = check_claim(Claim(**base, precision="int8"))
    assert v.bound.binding == "compute" and v.bound.peak_column == "bf16_tflops"
    assert v.status == "incomplete" and "BF16 peak" in v.reason
    assert check_claim(Claim(**base, precision="bf16")).status == "impossible"  # its own column: a real bound


def test_validate_all_keeps_every_number_whole_at_100_columns():
    import io

    from rich.console import Console

    from tokencost.claims import check_all
    from tokencost.cli.validate_cmd import _summary_table

    verdicts = check_all(None, None)
    buf = io.StringIO()
    Console(file=buf, width=100).print(_summary_table(verdicts))
    out = buf.getvalue()
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 100
    for v in verdicts:  # every number and verdict whole, on its row
        if v.bound is not None:
            assert f"{v.bound.output_tok_per_s_per_gpu:,.0f}" in out
        assert v.status in out
