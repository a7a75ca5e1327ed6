"""The decode model against Hugging Face transformers on the same weights (CPU, float32).

Each case builds a tiny random HF model, randomises *every* parameter (HF zero-initialises biases and
sets norm weights to 1, which would hide bias and norm bugs), saves it with ``save_pretrained`` and
loads it into our model through ``weights_dir`` (so the loader is on the path too). Logits are
compared after the prefill and after each greedy decode step, both models fed the same tokens.

Tolerance: |ours - HF| <= 1e-4 * max(1, max|HF logits|). Both run in float32 (unit roundoff 6e-8) but
in a different op order: fused QKV / gate-up GEMMs, SDPA or grouped GEMMs instead of eager attention,
fused residual adds, RoPE tables rounded from float64. Over two layers with reductions of <= 600
terms that gives relative differences of order 1e-6, so 1e-4 leaves a wide margin, while every bug
this test targets (wrong rotation layout or frequencies, GQA head order, mask off by one, a missing
bias or norm) moves logits by more than 1e-2 of their scale; test_tolerance_detects_* below checks
that for the two subtlest ones.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import transformers

from profiler import torch_ops
from profiler.backends import Ops, resolve
from profiler.config import load_config
from profiler.errors import ConfigError, KVCacheOverflowError, ProfilerError
from profiler.generate import greedy_generate
from profiler.model import LABELS, Transformer, build_model, default_max_seq_len, rope_inv_freq
from profiler.presets import get_preset
from profiler.roofline import param_count

REL_TOL = 1e-4
PROMPT_LEN, N_STEPS = 7, 9
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}  # with theta 5e5 and D 16: kept, blended and scaled bands

# name -> (config class, overrides, batch size). Base: hidden 64, 4 heads, 2 KV heads, 2 layers.
CASES = {
    "llama-gqa4-untied": ("LlamaConfig", dict(num_key_value_heads=1), 2),
    "llama-llama3-rope": ("LlamaConfig", dict(rope_scaling=LLAMA3_ROPE, rope_theta=500000.0), 2),
    "llama-tied-mha5": (
        "LlamaConfig",
        dict(tie_word_embeddings=True, hidden_size=80, num_attention_heads=5, num_key_value_heads=5),
        1,
    ),
    "llama-bias-odd9": (
        "LlamaConfig",
        dict(
            attention_bias=True, mlp_bias=True, hidden_size=72, num_attention_heads=9, num_key_value_heads=3
        ),
        3,
    ),
    "mistral-window5": ("MistralConfig", dict(sliding_window=5), 2),
    "qwen2-gqa7": (
        "Qwen2Config",
        dict(hidden_size=112, num_attention_heads=7, num_key_value_heads=1, tie_word_embeddings=True),
        2,
    ),
    "qwen3-headdim96": (
        "Qwen3Config",
        dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=3, head_dim=96, attention_bias=True),
        2,
    ),
}


def _hf_model(cls_name: str, **overrides) -> torch.nn.Module:
    base = dict(
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        intermediate_size=96,
        vocab_size=101,
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
    )
    hc = getattr(transformers, cls_name)(**{**base, **overrides})
    hf = transformers.AutoModelForCausalLM.from_config(hc, attn_implementation="eager").float().eval()
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(1 + 0.2 * noise if "norm" in name else 0.3 * noise)  # sharp attention, O(1) logits
    return hf


def _ours(hf, path, *, max_batch_size: int = 4, max_seq_len: int = 32, dtype=torch.float32) -> Transformer:
    hf.save_pretrained(path)
    return build_model(
        load_config(path),
        dtype=dtype,
        max_batch_size=max_batch_size,
        max_seq_len=max_seq_len,
        weights_dir=str(path),
    )


def _prompt(batch: int, length: int = PROMPT_LEN, vocab: int = 101) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(7))


@torch.no_grad()
def _hf_greedy(hf, prompt: torch.Tensor, n_steps: int):
    """HF logits after the prefill and after each step, and the greedy tokens fed at each step."""
    out = hf(input_ids=prompt, use_cache=True)
    logits, fed = [out.logits[:, -1]], []
    for _ in range(n_steps):
        fed.append(logits[-1].argmax(-1, keepdim=True))
        out = hf(input_ids=fed[-1], cache=out.cache, use_cache=True)
        logits.append(out.logits[:, -1])
    return logits, fed


def _assert_close(ours: torch.Tensor, ref: torch.Tensor, what: str, rel: float = REL_TOL) -> None:
    assert ours.dtype == torch.float32 and ours.shape == ref.shape, what
    tol = rel * max(1.0, ref.abs().max().item())
    err = (ours - ref).abs().max().item()
    assert err <= tol, f"{what}: max |ours - HF| = {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_prefill_and_decode_match_hf(case, tmp_path):
    cls_name, overrides, batch = CASES[case]
    hf = _hf_model(cls_name, **overrides)
    model = _ours(hf, tmp_path)
    # metrics.md §6: the parameter count from the config formula, our built model and HF's agree
    # (parameters() lists a tied embedding / LM head once).
    assert param_count(model.cfg) == sum(p.numel() for p in model.parameters()) == \
        sum(p.numel() for p in hf.parameters())
    prompt = _prompt(batch)
    ref_logits, fed = _hf_greedy(hf, prompt, N_STEPS)
    _assert_close(model(prompt, 0), ref_logits[0], f"{case} prefill")
    for i, token in enumerate(fed):
        _assert_close(model(token, PROMPT_LEN + i), ref_logits[i + 1], f"{case} decode step {i}")


@pytest.mark.parametrize("case", ["llama-gqa4-untied", "mistral-window5"])
@torch.no_grad()
def test_chunked_prefill_all_logits_match_hf(case, tmp_path):
    """Prefill in chunks of 4 + 3 + 4 (start_pos > 0 with T > 1; the window crosses chunk borders)."""
    cls_name, overrides, _ = CASES[case]
    hf = _hf_model(cls_name, **overrides)
    model = _ours(hf, tmp_path)
    prompt = _prompt(2, 11)
    ref = hf(input_ids=prompt).logits
    chunks = [model(prompt[:, a:b], a, all_logits=True) for a, b in ((0, 4), (4, 7), (7, 11))]
    _assert_close(torch.cat(chunks, dim=1), ref, f"{case} chunked prefill")


@torch.no_grad()
def test_greedy_generate_matches_hf_generate(tmp_path):
    hf = _hf_model("Qwen2Config", **CASES["qwen2-gqa7"][1])
    model = _ours(hf, tmp_path)
    prompt = _prompt(2)
    ref = hf.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)[:, PROMPT_LEN:]
    tokens, step_logits = greedy_generate(model, prompt, 8)
    assert tokens.shape == (2, 8) and len(step_logits) == 8
    assert torch.equal(tokens, ref)
    assert all(torch.equal(lg.argmax(-1), tokens[:, i]) for i, lg in enumerate(step_logits))


@pytest.mark.parametrize(
    "case, mutate",
    [
        ("llama-llama3-rope", lambda cfg: dataclasses.replace(cfg, rope_scaling=None)),
        ("mistral-window5", lambda cfg: dataclasses.replace(cfg, sliding_window=None)),
    ],
)
@torch.no_grad()
def test_tolerance_detects_wrong_rope_scaling_and_window(case, mutate, tmp_path):
    """The comparison is sensitive: dropping llama3 scaling or the window breaks it by >> tolerance."""
    cls_name, overrides, batch = CASES[case]
    hf = _hf_model(cls_name, **overrides)
    hf.save_pretrained(tmp_path)
    wrong = build_model(
        mutate(load_config(tmp_path)), max_batch_size=2, max_seq_len=32, weights_dir=str(tmp_path)
    )
    prompt = _prompt(batch, 16)
    ref = hf(input_ids=prompt).logits
    err = (wrong(prompt, 0, all_logits=True) - ref).abs().max().item()
    assert err > 100 * REL_TOL * ref.abs().max().item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_half_precision_error_is_comparable_to_hf_own(dtype, tmp_path):
    """Ours in half precision vs HF fp32 is within 3x (+1e-3 of scale) of HF-in-that-dtype vs HF fp32
    (the reference-relative rule of FlashAttention's tests, kernels.md section 3.3)."""
    hf = _hf_model("LlamaConfig", num_key_value_heads=1)
    model = _ours(hf, tmp_path, dtype=dtype)
    prompt = _prompt(2)
    ref = hf(input_ids=prompt).logits
    hf_low = hf.to(dtype)(input_ids=prompt).logits.float()
    ours = model(prompt, 0, all_logits=True)
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    scale = ref.abs().max().item()
    assert (ours - ref).abs().max().item() <= 3 * (hf_low - ref).abs().max().item() + 1e-3 * scale


@torch.no_grad()
def test_kv_cache_may_fill_exactly_then_overflow_raises_without_writing(tmp_path):
    hf = _hf_model("LlamaConfig")
    max_seq_len = PROMPT_LEN + 5
    model = _ours(hf, tmp_path, max_batch_size=2, max_seq_len=max_seq_len)
    prompt = _prompt(2)
    tokens, _ = greedy_generate(model, prompt, max_seq_len - PROMPT_LEN + 1)  # writes every position
    assert tokens.shape == (2, 6)
    before = [(layer.attn.k_cache.clone(), layer.attn.v_cache.clone()) for layer in model.layers]
    with pytest.raises(KVCacheOverflowError, match="max_seq_len 12"):
        model(tokens[:, -1:], max_seq_len)
    with pytest.raises(KVCacheOverflowError):
        model(_prompt(2, 3), max_seq_len - 2)
    with pytest.raises(KVCacheOverflowError):
        greedy_generate(model, prompt, max_seq_len - PROMPT_LEN + 2)
    for (k, v), layer in zip(before, model.layers, strict=True):
        assert torch.equal(k, layer.attn.k_cache) and torch.equal(v, layer.attn.v_cache)


def test_bad_forward_and_build_arguments_raise_profiler_errors():
    cfg = dataclasses.replace(get_preset("smollm2-135m"), num_hidden_layers=1, vocab_size=64)
    model = build_model(cfg, max_batch_size=2, max_seq_len=8)
    with pytest.raises(ProfilerError, match="max_batch_size 2"):
        model(torch.zeros(3, 1, dtype=torch.long), 0)
    with pytest.raises(ProfilerError, match="int64"):
        model(torch.zeros(2, 1), 0)
    with pytest.raises(ProfilerError, match="max_seq_len"):
        build_model(cfg, max_seq_len=cfg.max_position_embeddings + 1)
    with pytest.raises(ProfilerError, match="max_batch_size"):
        build_model(cfg, max_batch_size=0)
    assert default_max_seq_len(cfg) == 4096 and default_max_seq_len(get_preset("llama-2-7b")) == 4096
    assert default_max_seq_len(dataclasses.replace(cfg, max_position_embeddings=100)) == 100
    for moe in ("mixtral-8x7b", "qwen3-30b-a3b"):
        with pytest.raises(ConfigError, match="roofline"):
            build_model(get_preset(moe), max_seq_len=8)


def test_dummy_weights_are_seeded_with_init_std_and_cast_after_generation():
    cfg = dataclasses.replace(
        get_preset("qwen2.5-0.5b"),
        num_hidden_layers=2,
        vocab_size=300,
        hidden_size=112,
        num_attention_heads=7,
        num_key_value_heads=1,
        intermediate_size=160,
    )
    a, b = build_model(cfg, max_seq_len=8, seed=3), build_model(cfg, max_seq_len=8, seed=3)
    c = build_model(cfg, max_seq_len=8, seed=4)
    half = build_model(cfg, max_seq_len=8, seed=3, dtype=torch.bfloat16)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.embed, c.embed)
    assert torch.equal(half.layers[0].attn.wqkv, a.layers[0].attn.wqkv.bfloat16())  # same draw, then cast
    assert a.lm_head is a.embed  # tied
    std = a.layers[0].mlp.w_gate_up.std().item()
    assert abs(std - cfg.initializer_range) < 0.05 * cfg.initializer_range
    assert torch.all(a.layers[1].attn_norm == 1) and torch.all(a.norm == 1)
    assert a.layers[0].attn.bqkv.abs().min() >= 0 and a.layers[0].attn.bqkv.abs().max() > 0
    logits = a(torch.tensor([[1, 2, 3]]), 0)
    assert logits.shape == (1, 300) and torch.isfinite(logits).all()


def _counting_ops(counts: dict[str, int]) -> Ops:
    torch_fns = resolve("torch")

    def wrap(op):
        fn = getattr(torch_fns, op)

        def counted(*args, **kwargs):
            counts[op] = counts.get(op, 0) + 1
            return fn(*args, **kwargs)

        return counted

    names = ("linear", "attention_prefill", "attention_decode", "rmsnorm", "rope", "swiglu")
    return Ops(**{op: wrap(op) for op in names})


@torch.no_grad()
def test_every_hot_op_goes_through_the_ops_bundle_and_labels_are_optional():
    cfg = dataclasses.replace(
        get_preset("qwen3-0.6b"),
        num_hidden_layers=3,
        vocab_size=64,
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=48,
    )
    model = build_model(cfg, max_seq_len=8)
    counts: dict[str, int] = {}
    model.set_ops(_counting_ops(counts))
    model(torch.tensor([[1, 2, 3]]), 0)
    model(torch.tensor([[4]]), 3)
    n = cfg.num_hidden_layers
    # per forward: 4 linears per layer (qkv, o, gate_up, down) + lm_head;
    # 2 (+2 q/k) norms per layer + the final one; 2 ropes per layer
    assert counts == {
        "linear": 2 * (4 * n + 1),
        "rmsnorm": 2 * (4 * n + 1),
        "rope": 2 * 2 * n,
        "swiglu": 2 * n,
        "attention_prefill": n,
        "attention_decode": n,
    }

    def labels() -> set[str]:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(torch.tensor([[5]]), 4)
        return {e.key for e in prof.key_averages()}

    assert not labels() & set(LABELS)
    model.set_profiling_labels(True)
    assert set(LABELS) <= labels()  # a qwen3 model uses every label, attn.qk_norm included


def _naive_attention(q, k, v, scale, allowed):
    """Per-sequence, per-head loop in float64; allowed(b, i, j) says whether query i sees key j."""
    b, hq, t, d = q.shape
    out = torch.zeros(b, hq, t, d, dtype=torch.float64)
    group = hq // k.shape[1]
    for bi in range(b):
        for h in range(hq):
            kh, vh = k[bi, h // group].double(), v[bi, h // group].double()
            for i in range(t):
                keep = torch.tensor([allowed(bi, i, j) for j in range(k.shape[2])])
                s = (kh[keep] @ q[bi, h, i].double()) * scale
                out[bi, h, i] = torch.softmax(s, 0) @ vh[keep]
    return out


@pytest.mark.parametrize("window", [None, 4])
def test_torch_attention_decode_masks_each_sequence_and_prefill_aligns_bottom_right(window):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*s, generator=gen) for s in ((3, 6, 1, 8), (3, 2, 13, 8), (3, 2, 13, 8)))
    lens = torch.tensor([1, 13, 7], dtype=torch.int32)

    def in_window(pos, j):
        return j <= pos and (window is None or j > pos - window)

    got = torch_ops.attention_decode(q[:, :, 0], k, v, lens, 0.3, window)
    ref = _naive_attention(q, k, v, 0.3, lambda b, i, j: in_window(int(lens[b]) - 1, j))
    torch.testing.assert_close(got.double(), ref[:, :, 0], atol=1e-5, rtol=1e-5)
    qp = torch.randn(3, 6, 5, 8, generator=gen)
    got = torch_ops.attention_prefill(qp, k, v, 0.3, window)
    ref = _naive_attention(qp, k, v, 0.3, lambda b, i, j: in_window(13 - 5 + i, j))
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)


def test_llama3_inv_freq_matches_transformers():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hc = transformers.LlamaConfig(
        hidden_size=512,
        num_attention_heads=4,
        rope_theta=500000.0,
        rope_scaling={**LLAMA3_ROPE, "original_max_position_embeddings": 8192},
    )
    ref, _ = ROPE_INIT_FUNCTIONS["llama3"](hc)
    ours = rope_inv_freq(128, 500000.0, _scaling_of(hc))
    torch.testing.assert_close(ours.float(), ref, rtol=1e-6, atol=0)


def _scaling_of(hc):
    from profiler.config import config_from_dict

    return config_from_dict(hc.to_dict(), name="x").rope_scaling
