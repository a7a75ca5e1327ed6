"""Byte and FLOP counts of a decode step and a prefill, from the model shape alone (torch-free).

These are the denominators of MBU and MFU and of the roofline bound; the cost layer reuses them to
check vendor claims. Formulas and their sources (see ../shared/reference/metrics.md):

- Bytes per decode step = every weight the step reads + each sequence's KV cache read at its context
  (metrics.md §3.1; nanochat ``kv_read_bytes``). The LM head is read once per step whether or not it
  is tied; the input embedding is a row gather, one row per sequence (metrics.md §6).
- MoE layers read only the distinct experts the batch routes to; under uniform routing the expected
  count is E·(1 − (1 − k/E)^B) (metrics.md §5).
- FLOPs per decode token = 2·N_matmul + Σ_layers 4·H·Q·min(c, window) (nanochat ``estimate_decode_flops``,
  metrics.md §4); prefill FLOPs per sequence as in metrics.md §3.3.
"""

from __future__ import annotations

from profiler.config import ModelConfig


def _attn_linear_params(cfg: ModelConfig) -> int:
    """Q, K, V and O projection weights and biases of one layer."""
    h, d = cfg.hidden_size, cfg.head_dim
    q_out, kv_out = cfg.num_attention_heads * d, cfg.num_key_value_heads * d
    weights = h * q_out + 2 * h * kv_out + q_out * h
    biases = (q_out + 2 * kv_out if cfg.qkv_bias else 0) + (h if cfg.o_bias else 0)
    return weights + biases


def _expert_params(cfg: ModelConfig, width: int) -> int:
    """One gated MLP (gate, up, down) of inner width ``width``, with biases when the config has them."""
    h = cfg.hidden_size
    return 3 * h * width + ((2 * width + h) if cfg.mlp_bias else 0)


def _norm_params_per_layer(cfg: ModelConfig) -> int:
    return 2 * cfg.hidden_size + (2 * cfg.head_dim if cfg.qk_norm else 0)


def _mlp_params(cfg: ModelConfig, experts_read: float | None = None) -> float:
    """MLP parameters of one layer; for MoE, ``experts_read`` experts (all of them when None) + router."""
    if not cfg.is_moe:
        return _expert_params(cfg, cfg.intermediate_size)
    n = cfg.num_experts if experts_read is None else experts_read
    return n * _expert_params(cfg, cfg.moe_intermediate_size) + cfg.hidden_size * cfg.num_experts


def param_count(cfg: ModelConfig) -> int:
    """Unique parameters; a tied embedding/LM-head matrix is counted once (transformers issue #14960)."""
    layer = _attn_linear_params(cfg) + _mlp_params(cfg) + _norm_params_per_layer(cfg)
    embed = cfg.vocab_size * cfg.hidden_size
    head = 0 if cfg.tie_word_embeddings else embed
    return int(cfg.num_hidden_layers * layer + embed + head + cfg.hidden_size)


def expected_distinct_experts(num_experts: int, top_k: int, batch_size: int) -> float:
    """E·(1 − (1 − k/E)^B): distinct experts a batch of B tokens touches per layer under uniform
    routing (metrics.md §5). Equals k at B = 1 and tends to E."""
    if num_experts <= 0 or not 0 < top_k <= num_experts or batch_size < 1:
        raise ValueError(f"need 0 < top_k <= num_experts and batch_size >= 1, got E={num_experts}, "
                         f"k={top_k}, B={batch_size}")
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** batch_size)


def weight_params_read_per_step(cfg: ModelConfig, batch_size: int = 1) -> float:
    """Parameters read by one decode step of ``batch_size`` sequences: every layer's attention,
    norms and (distinct) experts, the final norm, the LM head once (tied or not), and one embedding
    row per sequence (a gather, not the whole table). Fractional for MoE (an expectation)."""
    experts = (expected_distinct_experts(cfg.num_experts, cfg.num_experts_per_tok, batch_size)
               if cfg.is_moe else None)
    layer = _attn_linear_params(cfg) + _mlp_params(cfg, experts) + _norm_params_per_layer(cfg)
    head = cfg.vocab_size * cfg.hidden_size
    gather = batch_size * cfg.hidden_size
    return cfg.num_hidden_layers * layer + head + gather + cfg.hidden_size


def kv_bytes_per_token(cfg: ModelConfig, kv_bytes_per_elem: float) -> int:
    """KV-cache bytes one token occupies over all layers: L × 2 × n_kv × head_dim × bytes (metrics.md §3.1)."""
    return int(cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim * kv_bytes_per_elem)


def kv_tokens_read(cfg: ModelConfig, context_len: int) -> int:
    """Cached positions one sequence's decode step reads: min(context, sliding window)."""
    return context_len if cfg.sliding_window is None else min(context_len, cfg.sliding_window)


def decode_bytes_per_step(cfg: ModelConfig, batch_size: int, context_len: int,
                          weight_bytes_per_param: float, kv_bytes_per_elem: float | None = None) -> int:
    """Bytes one decode step must move: weights read (see :func:`weight_params_read_per_step`) +
    batch × KV cache read at ``context_len`` (metrics.md §3.1). ``kv_bytes_per_elem`` defaults to the
    weight precision.

    Raises:
        ValueError: non-positive batch or negative context.
    """
    if batch_size < 1 or context_len < 0:
        raise ValueError(f"need batch_size >= 1 and context_len >= 0, got {batch_size}, {context_len}")
    kv_elem = weight_bytes_per_param if kv_bytes_per_elem is None else kv_bytes_per_elem
    weights = weight_params_read_per_step(cfg, batch_size) * weight_bytes_per_param
    kv = batch_size * kv_tokens_read(cfg, context_len) * kv_bytes_per_token(cfg, kv_elem)
    return int(round(weights + kv))


def matmul_params_per_token(cfg: ModelConfig) -> float:
    """N_matmul: Linear weights one token goes through (active experts only for MoE; LM head included)."""
    h = cfg.hidden_size
    q_out, kv_out = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    attn = h * q_out + 2 * h * kv_out + q_out * h
    if cfg.is_moe:
        mlp = cfg.num_experts_per_tok * 3 * h * cfg.moe_intermediate_size + h * cfg.num_experts
    else:
        mlp = 3 * h * cfg.intermediate_size
    return cfg.num_hidden_layers * (attn + mlp) + cfg.vocab_size * h


def decode_flops_per_token(cfg: ModelConfig, context_len: int) -> float:
    """2·N_matmul + Σ_layers 4·H·Q·min(c, window) (nanochat ``estimate_decode_flops``, metrics.md §4)."""
    attn = cfg.num_hidden_layers * 4 * cfg.num_attention_heads * cfg.head_dim * kv_tokens_read(cfg, context_len)
    return 2.0 * matmul_params_per_token(cfg) + attn


def prefill_flops(cfg: ModelConfig, prompt_len: int) -> float:
    """FLOPs to prefill one sequence of T tokens, causal, window w = min(window, T) (metrics.md §3.3):
    2·N_matmul·T + Σ_layers 4·H·Q·[w(w+1)/2 + (T−w)·w]."""
    t = prompt_len
    w = t if cfg.sliding_window is None else min(cfg.sliding_window, t)
    pairs = w * (w + 1) / 2 + (t - w) * w
    return 2.0 * matmul_params_per_token(cfg) * t + cfg.num_hidden_layers * 4 * cfg.num_attention_heads * cfg.head_dim * pairs


def roofline_decode_tok_per_s(bytes_per_step: float, batch_size: int, bandwidth_bytes_per_s: float) -> float:
    """Bandwidth bound on aggregate decode throughput: B ÷ (bytes per step ÷ bandwidth) (metrics.md §3.1)."""
    if bytes_per_step <= 0 or bandwidth_bytes_per_s <= 0:
        raise ValueError("bytes_per_step and bandwidth must be positive")
    return batch_size * bandwidth_bytes_per_s / bytes_per_step


def mbu(bytes_per_step: float, tpot_s: float, bandwidth_bytes_per_s: float) -> float:
    """Model bandwidth utilisation: (bytes per step ÷ TPOT) ÷ peak bandwidth (Databricks, metrics.md §1.4).

    Databricks' numerator is all parameter bytes + KV bytes; the bytes passed here
    (:func:`decode_bytes_per_step`) are those a step actually reads: one embedding row per sequence
    instead of the whole table, a tied LM head once. For Llama-3.1-8B in bf16 that is 15.01 GB
    against Databricks' 16.06 GB, so this MBU is the stricter (lower) figure for untied models."""
    if tpot_s <= 0 or bandwidth_bytes_per_s <= 0:
        raise ValueError("tpot_s and bandwidth must be positive")
    return bytes_per_step / tpot_s / bandwidth_bytes_per_s


def mfu(flops_per_s: float, peak_flops_per_s: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s ÷ peak (PaLM appendix B, metrics.md §1.4)."""
    if peak_flops_per_s <= 0:
        raise ValueError("peak_flops_per_s must be positive")
    return flops_per_s / peak_flops_per_s
