"""The decode loop on the triton backend against the torch backend, and user variants (the examples of
docs/adding-a-variant.md) through a per-op override and `tokencost compare`.

On a CPU the Triton kernels run in the interpreter (conftest sets TRITON_INTERPRET=1); on a GPU this
file runs on CUDA and adds bfloat16.

Tolerance (the FlashAttention rule the kernel tests use, kernels.md §3.3): both backends run the same
weights and tokens; a float64 copy of the model, whose attention and RoPE are the float64 references
of kernels/reference.py, gives the truth. The triton logits may be at most twice as far from the truth
as the torch logits, plus one unit in the last place of the model dtype at the largest logit (the
logits are rounded to the model dtype before the final cast to float32, so half an ulp of error is
unavoidable for any backend). By the triangle inequality triton and torch then agree within three
times torch's own error plus that ulp. `test_the_tolerance_catches_a_slightly_wrong_kernel` shows the
bound is tight enough to fail for a RoPE whose sine is off by 1 %.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels.reference import (attention_decode_ref, attention_prefill_ref, check_against_reference,
                               rope_ref)
from profiler.backends import OP_NAMES, register, resolve
from profiler.config import config_from_dict
from profiler.model import build_model
from tests.tiny import TINY_LLAMA, write_config
from tokencost.cli import main
from tokencost.cli.plugins import load_plugin

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "adding-a-variant.md"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE.type == "cuda" else [])
# hidden 64, 4 query heads over 2 KV heads (GQA 2), head_dim 16 (the smallest tl.dot K), 2 layers.
# initializer_range 0.1 instead of the usual 0.02: with larger weights every op moves the logits
# enough that a wrong kernel shows above the rounding noise (see the sensitivity test).
CFG = config_from_dict({**TINY_LLAMA, "initializer_range": 0.1}, name="tiny-gqa")
PROMPT_LEN, DECODE_STEPS, BATCH = 7, 5, 2

# Float64 truth: the torch backend runs float64 as is except for RoPE (rotates in float32) and decode
# attention (softmax in float32), so those two (and prefill attention) use the float64 references.
register("rope", "test-fp64")(lambda x, cos, sin: rope_ref(x, cos, sin))
register("attention_prefill", "test-fp64")(attention_prefill_ref)
register("attention_decode", "test-fp64")(attention_decode_ref)
TRUTH_OPS = {"rope": "test-fp64", "attention_prefill": "test-fp64", "attention_decode": "test-fp64"}


def doc_examples(folder: Path) -> dict[str, Path]:
    """Write every code block of docs/adding-a-variant.md whose first line is ``# name.py`` to ``folder``."""
    text = DOC.read_text(encoding="utf-8")
    out = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        first = block.splitlines()[0]
        if re.fullmatch(r"# [\w-]+\.py", first):
            path = Path(folder) / first[2:]
            path.write_text(block, encoding="utf-8")
            out[path.name] = path
    return out


def decode_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """Logits after the prefill of ``tokens`` and after each of DECODE_STEPS decode steps, with fixed
    (teacher-forced) next tokens so every backend sees the same inputs: [1 + steps, B, V] float32."""
    out = [model(tokens, 0)]
    pos = tokens.shape[1]
    for step in range(DECODE_STEPS):
        nxt = (torch.arange(tokens.shape[0], device=tokens.device)[:, None] * 31 + 7 * step + 3) % CFG.vocab_size
        out.append(model(nxt, pos))
        pos += 1
    return torch.stack(out)


def _setup(dtype: torch.dtype):
    """(model of dtype with the torch backend, prompt tokens, float64 truth logits)."""
    model = build_model(CFG, dtype=dtype, device=DEVICE, max_batch_size=BATCH,
                        max_seq_len=PROMPT_LEN + DECODE_STEPS, seed=0)
    tokens = torch.randint(0, CFG.vocab_size, (BATCH, PROMPT_LEN), generator=torch.Generator().manual_seed(1))
    tokens = tokens.to(DEVICE)
    truth_model = build_model(CFG, dtype=torch.float64, device=DEVICE, max_batch_size=BATCH,
                              max_seq_len=PROMPT_LEN + DECODE_STEPS, ops=resolve("torch", TRUTH_OPS))
    truth_model.load_state_dict({k: v.double() for k, v in model.state_dict().items()}, strict=False)
    return model, tokens, decode_logits(truth_model, tokens)


def _check(actual: torch.Tensor, truth: torch.Tensor, baseline: torch.Tensor, dtype: torch.dtype):
    ulp = torch.finfo(dtype).eps * truth.abs().max().item()
    for step in range(truth.shape[0]):  # prefill, then each decode step
        check_against_reference(actual[step], truth[step], baseline[step], factor=2.0, atol=ulp)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_triton_decode_loop_matches_torch(dtype):
    model, tokens, truth = _setup(dtype)
    torch_logits = decode_logits(model, tokens)
    ops = resolve("triton")
    assert ops.describe() == {op: "triton" for op in OP_NAMES}
    model.set_ops(ops)
    triton_logits = decode_logits(model, tokens)
    assert torch.isfinite(triton_logits).all()
    _check(triton_logits, truth, torch_logits, dtype)


def test_the_tolerance_catches_a_slightly_wrong_kernel():
    """A RoPE whose sine is 1 % too small passes for a working kernel nowhere: the check must fail."""
    base = resolve("torch")
    register("rope", "test-wrong")(lambda x, cos, sin: base.rope(x, cos, sin * 0.99))
    model, tokens, truth = _setup(torch.float16)
    torch_logits = decode_logits(model, tokens)
    model.set_ops(resolve("torch", {"rope": "test-wrong"}))
    with pytest.raises(AssertionError, match="exceeds"):
        _check(decode_logits(model, tokens), truth, torch_logits, torch.float16)


def test_user_variants_through_per_op_override(tmp_path):
    """The two examples of docs/adding-a-variant.md, each used for swiglu only, match the torch model."""
    examples = doc_examples(tmp_path)
    assert {"my_variants.py", "my_triton_variants.py"} <= set(examples)
    mine = load_plugin(str(examples["my_variants.py"])).swiglu_mine
    my_triton = load_plugin(str(examples["my_triton_variants.py"])).swiglu_my_triton
    dtype = torch.float16
    model, tokens, truth = _setup(dtype)
    torch_logits = decode_logits(model, tokens)
    for backend, variant, fn in (("triton", "mine", mine), ("torch", "my-triton", my_triton)):
        ops = resolve(backend, {"swiglu": variant})
        assert ops.swiglu is fn and ops.describe()["swiglu"] == variant
        assert ops.describe()["linear"] == backend  # the other ops keep the chosen backend
        model.set_ops(ops)
        _check(decode_logits(model, tokens), truth, torch_logits, dtype)


def test_doc_correctness_snippet_runs(tmp_path, monkeypatch):
    """The 'check it before you time it' block of the doc passes for the doc's own variant."""
    doc_examples(tmp_path)
    blocks = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
              if "check_against_reference(" in b and not b.startswith("# ")]
    assert len(blocks) == 1
    monkeypatch.syspath_prepend(str(tmp_path))
    exec(compile(blocks[0], "adding-a-variant.md", "exec"), {})  # raises AssertionError if the check fails


def test_compare_cli_torch_vs_user_variant(tmp_path, capsys):
    plugin = doc_examples(tmp_path)["my_variants.py"]
    cfg = write_config(tmp_path)
    out_json = tmp_path / "compare.json"
    assert main(["compare", "--config", str(cfg), "--backend", "torch", "--backend", "mine", "--plugin", str(plugin),
                 "--batch-size", "2", "--prompt-len", "6", "--gen-len", "4", "--price-per-gpu-hour", "2",
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    payload = json.loads(out.strip().splitlines()[-1])
    assert "mine vs torch" in out  # the side-by-side table with the difference column
    assert payload["baseline"] == "torch" and payload["backends"] == ["torch", "mine"]
    base, mine = payload["records"]
    assert base["ops"]["swiglu"] == "torch" and mine["ops"]["swiglu"] == "mine" and mine["ops"]["linear"] == "torch"
    for key in ("batch_size", "prompt_len", "gen_len", "weights", "model", "param_count"):
        assert base[key] == mine[key]  # same model, weights and shape
    diff = payload["differences"]["mine"]
    for key in ("output_tok_per_s", "prefill_tok_per_s", "tpot_s", "usd_per_mtok_output"):
        assert diff[key]["ratio"] == pytest.approx(mine[key] / base[key])
        assert diff[key]["pct_change"] == pytest.approx((mine[key] / base[key] - 1) * 100)
    # $/Mtok of each backend from its own measured tok/s at the same price.
    for r in (base, mine):
        assert r["usd_per_mtok_output"] == pytest.approx(2 / (r["output_tok_per_s"] * 3600) * 1e6)
    assert json.loads(out_json.read_text())["differences"] == payload["differences"]


@pytest.mark.skipif(DEVICE.type == "cuda", reason="checks the CPU refusal; a GPU runs the backend")
def test_compare_with_triton_without_gpu_or_interpreter_fails_before_measuring(tmp_path):
    cfg = write_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run([sys.executable, "-m", "tokencost.cli", "compare", "--config", str(cfg), "--backend", "torch",
                           "--backend", "triton", "--prompt-len", "4", "--gen-len", "2"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tokencost: error:") and "triton" in err, err
    assert "measuring" not in proc.stderr and proc.stdout == ""
