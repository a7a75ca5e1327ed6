"""Roofline byte and FLOP formulas against the worked values in ../shared/reference/metrics.md.

metrics.md §6 lists unique parameter counts and weight bytes per decode step (batch 1, bf16) derived
from the published configs; §3.1 lists KV bytes per token; §5 the distinct-expert expectation.
"""

import pytest

from profiler import roofline
from profiler.config import load_config

# metrics.md §6, "Unique parameters (derived)".
PARAMS = {
    "smollm2-135m": 134_515_008,
    "qwen2.5-0.5b": 494_032_768,
    "qwen3-0.6b": 596_049_920,
    "llama-3.2-1b": 1_235_814_400,
    "llama-2-7b": 6_738_415_616,
    "mistral-7b-v0.1": 7_241_732_096,
    "llama-3.1-8b": 8_030_261_248,
    "qwen3-8b": 8_190_735_360,
    "llama-3.1-70b": 70_553_706_496,
    "mixtral-8x7b": 46_702_792_704,
    "qwen3-30b-a3b": 30_532_122_624,
}

# metrics.md §6, weight bytes read per decode step at batch 1 in bf16, in GB (3 decimals).
WEIGHT_GB_BATCH1 = {
    "smollm2-135m": 0.269, "qwen2.5-0.5b": 0.988, "qwen3-0.6b": 1.192, "llama-3.2-1b": 2.472,
    "llama-2-7b": 13.215, "mistral-7b-v0.1": 14.221, "llama-3.1-8b": 15.010, "qwen3-8b": 15.137,
    "llama-3.1-70b": 139.006, "mixtral-8x7b": 25.498, "qwen3-30b-a3b": 6.084,
}

# metrics.md §3.1, KV bytes per token in bf16 over all layers, in KiB.
KV_KIB = {"llama-2-7b": 512, "llama-3.1-8b": 128, "mistral-7b-v0.1": 128, "mixtral-8x7b": 128,
          "llama-3.1-70b": 320, "llama-3.2-1b": 32, "qwen3-8b": 144, "qwen3-0.6b": 112,
          "qwen3-30b-a3b": 96, "qwen2.5-0.5b": 12, "smollm2-135m": 22.5}


@pytest.fixture(scope="module")
def configs(model_configs_dir):
    return {name: load_config(model_configs_dir / f"{name}.json") for name in PARAMS}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_count_matches_metrics_md(configs, name):
    assert roofline.param_count(configs[name]) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(WEIGHT_GB_BATCH1))
def test_weight_bytes_per_decode_step_batch1_bf16(configs, name):
    cfg = configs[name]
    # Context 0: weights only. metrics.md excludes the input-table row gather (B × hidden × 2 bytes,
    # a few KB), which is far below the 0.5 MB rounding of the table.
    nbytes = roofline.decode_bytes_per_step(cfg, batch_size=1, context_len=0, weight_bytes_per_param=2)
    assert nbytes / 1e9 == pytest.approx(WEIGHT_GB_BATCH1[name], abs=0.0006)


@pytest.mark.parametrize("name", sorted(KV_KIB))
def test_kv_bytes_per_token_bf16(configs, name):
    assert roofline.kv_bytes_per_token(configs[name], 2) == KV_KIB[name] * 1024


def test_head_read_once_and_input_table_gathered(configs):
    # metrics.md §6: the LM head is read every step, tied or not; the input table is a row gather.
    for name in ("smollm2-135m", "llama-3.1-8b"):
        cfg = configs[name]
        table = cfg.vocab_size * cfg.hidden_size
        read = roofline.weight_params_read_per_step(cfg, batch_size=3)
        gather = 3 * cfg.hidden_size
        if cfg.tie_word_embeddings:  # the one shared matrix is read as the head
            assert read == roofline.param_count(cfg) + gather
        else:  # the head is read, the separate input table only gathered
            assert read == roofline.param_count(cfg) - table + gather


def test_kv_read_grows_with_batch_and_context_and_caps_at_window(configs):
    cfg = configs["llama-3.1-8b"]
    base = roofline.decode_bytes_per_step(cfg, 1, 0, 2)
    kv = roofline.kv_bytes_per_token(cfg, 2)
    assert roofline.decode_bytes_per_step(cfg, 1, 1000, 2) - base == 1000 * kv
    assert roofline.decode_bytes_per_step(cfg, 4, 1000, 2) == pytest.approx(
        roofline.decode_bytes_per_step(cfg, 4, 0, 2) + 4 * 1000 * kv)
    mistral = configs["mistral-7b-v0.1"]  # sliding window 4096 caps the KV read
    assert roofline.decode_bytes_per_step(mistral, 1, 8192, 2) == roofline.decode_bytes_per_step(mistral, 1, 4096, 2)


@pytest.mark.parametrize("experts, k, table", [
    (8, 2, {1: 2.0, 2: 3.5, 4: 5.5, 8: 7.2, 16: 7.9, 32: 8.0}),
    (128, 8, {1: 8.0, 2: 15.5, 4: 29.1, 8: 51.6, 16: 82.4, 32: 111.8, 64: 125.9}),
    (256, 8, {1: 8.0, 2: 15.8, 4: 30.5, 8: 57.4, 16: 102.0, 32: 163.3, 64: 222.4, 128: 251.6}),
])
def test_distinct_experts_table_of_metrics_md(experts, k, table):
    for batch, expected in table.items():
        assert roofline.expected_distinct_experts(experts, k, batch) == pytest.approx(expected, abs=0.051)


def test_moe_bytes_grow_with_batch_towards_all_experts(configs):
    cfg = configs["mixtral-8x7b"]
    b1, b64 = (roofline.decode_bytes_per_step(cfg, b, 0, 2) for b in (1, 64))
    assert b1 < b64 <= roofline.param_count(cfg) * 2 + 64 * cfg.hidden_size * 2


def test_decode_flops_and_prefill_flops_consistent(configs):
    cfg = configs["llama-3.1-8b"]
    n_matmul = roofline.matmul_params_per_token(cfg)
    # 2·N_matmul at zero context; the attention term adds 4·L·H·D per cached token (nanochat).
    assert roofline.decode_flops_per_token(cfg, 0) == 2 * n_matmul
    per_ctx = cfg.num_hidden_layers * 4 * cfg.num_attention_heads * cfg.head_dim
    assert roofline.decode_flops_per_token(cfg, 100) == 2 * n_matmul + 100 * per_ctx
    # Prefill of T tokens = Σ over positions of the decode FLOPs at context t+1 (causal).
    t = 37
    assert roofline.prefill_flops(cfg, t) == pytest.approx(sum(roofline.decode_flops_per_token(cfg, c + 1) for c in range(t)))


def test_mbu_and_bound_arithmetic():
    # Databricks example (metrics.md §1.4): 14 GB per 14 ms on a 2 TB/s part is 50% MBU.
    assert roofline.mbu(14e9, 0.014, 2e12) == pytest.approx(0.5)
    assert roofline.roofline_decode_tok_per_s(14e9, 8, 2e12) == pytest.approx(8 / 0.007)
    with pytest.raises(ValueError):
        roofline.mbu(1.0, 0.0, 1.0)
