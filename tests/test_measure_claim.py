"""`validate --measure` turns a claim into a local run only when this machine can reproduce it."""

import pytest

from tokencost.claims import Claim
from tokencost.cli.measure_hook import claim_run_spec


def _claim(**kw):
    base = dict(claim_id="t", model="Llama 3.1 8B", gpu="h100-sxm", gpus=1, tok_per_s=100.0,
                model_preset="llama-3.1-8b", precision="bf16", batch_size=8, input_len=128, output_len=64)
    base.update(kw)
    return Claim(**base)


def test_matching_claim_becomes_a_run_spec():
    spec = claim_run_spec(_claim(), "NVIDIA H100 80GB HBM3")  # the H100 SXM's driver name
    assert (spec.batch_size, spec.prompt_len, spec.gen_len, spec.dtype) == (8, 128, 64, "bfloat16")
    assert spec.cfg.name == "llama-3.1-8b"


@pytest.mark.parametrize("kw, local, match", [
    ({}, None, "no CUDA GPU"),
    ({}, "NVIDIA L4", "needs a local h100-sxm"),
    ({"precision": "fp8"}, "NVIDIA H100 80GB HBM3", "bf16 or fp16"),
    ({"batch_size": None}, "NVIDIA H100 80GB HBM3", "batch size"),
    ({"gpus": 2}, "NVIDIA H100 80GB HBM3", "one GPU"),
])
def test_claims_that_cannot_run_here(kw, local, match):
    with pytest.raises(ValueError, match=match):
        claim_run_spec(_claim(**kw), local)
