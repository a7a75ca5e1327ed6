"""Named model presets: the architecture numbers of published Hugging Face ``config.json`` files.

Each entry holds the keys of the published file that the profiler reads, written out as a Python dict
(the JSON files themselves are not vendored), with the Hugging Face repository it describes and the
row of ``shared/reference/model-configs/SOURCES.md`` whose copy the numbers were checked against
(tests/test_presets.py compares every preset with ``load_config`` of that copy). Collection date
2026-11-30 for every row. Torch-free.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from profiler.config import ModelConfig, config_from_dict, load_config
from profiler.errors import ConfigError

DEFAULT_MODEL = "smollm2-135m"
_DATE = "2026-11-30"
_CHECKED = "numbers checked against shared/reference/model-configs/SOURCES.md row"


@dataclasses.dataclass(frozen=True)
class Preset:
    """One published config: ``values`` are config.json keys; ``source`` and ``date`` its provenance."""

    name: str
    values: dict[str, Any]
    source: str
    date: str
    note: str = ""


def _hf(repo: str, row: str) -> str:
    return f"https://huggingface.co/{repo}/blob/main/config.json; {_CHECKED} `{row}`"


_LLAMA31_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}

_ROWS: tuple[Preset, ...] = (
    Preset(
        "smollm2-135m",
        {
            "model_type": "llama",
            "hidden_size": 576,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "intermediate_size": 1536,
            "vocab_size": 49152,
            "rms_norm_eps": 1e-5,
            "rope_theta": 100000,
            "rope_scaling": None,
            "tie_word_embeddings": True,
            "attention_bias": False,
            "max_position_embeddings": 8192,
            "initializer_range": 0.041666666666666664,
            "torch_dtype": "bfloat16",
            "hidden_act": "silu",
        },
        _hf("HuggingFaceTB/SmolLM2-135M", "smollm2-135m.json"),
        _DATE,
        "SOURCES.md doubt: max_position_embeddings may have been revised to 2048 on the Hub",
    ),
    Preset(
        "llama-3.2-1b",
        {
            "model_type": "llama",
            "hidden_size": 2048,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 64,
            "intermediate_size": 8192,
            "vocab_size": 128256,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "rope_scaling": {**_LLAMA31_ROPE, "factor": 32.0},
            "tie_word_embeddings": True,
            "attention_bias": False,
            "mlp_bias": False,
            "max_position_embeddings": 131072,
            "initializer_range": 0.02,
            "torch_dtype": "bfloat16",
            "hidden_act": "silu",
        },
        _hf("meta-llama/Llama-3.2-1B", "llama-3.2-1b.json"),
        _DATE,
    ),
    Preset(
        "llama-3.1-8b",
        {
            "model_type": "llama",
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "intermediate_size": 14336,
            "vocab_size": 128256,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "rope_scaling": _LLAMA31_ROPE,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "mlp_bias": False,
            "max_position_embeddings": 131072,
            "initializer_range": 0.02,
            "torch_dtype": "bfloat16",
            "hidden_act": "silu",
        },
        _hf("meta-llama/Llama-3.1-8B", "llama-3.1-8b.json"),
        _DATE,
    ),
    Preset(
        "llama-3.1-70b",
        {
            "model_type": "llama",
            "hidden_size": 8192,
            "num_hidden_layers": 80,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "intermediate_size": 28672,
            "vocab_size": 128256,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "rope_scaling": _LLAMA31_ROPE,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "mlp_bias": False,
            "max_position_embeddings": 131072,
            "initializer_range": 0.02,
            "torch_dtype": "bfloat16",
            "hidden_act": "silu",
        },
        _hf("meta-llama/Llama-3.1-70B", "llama-3.1-70b.json"),
        _DATE,
    ),
    Preset(
        "llama-2-7b",
        {
            "model_type": "llama",
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "intermediate_size": 11008,
            "vocab_size": 32000,
            "rms_norm_eps": 1e-5,
            "rope_scaling": None,
            "tie_word_embeddings": False,
            "max_position_embeddings": 4096,
            "initializer_range": 0.02,
            "torch_dtype": "float16",
            "hidden_act": "silu",
        },
        _hf("meta-llama/Llama-2-7b-hf", "llama-2-7b.json"),
        _DATE,
        "no rope_theta key: LlamaConfig default 10000; "
        "SOURCES.md doubt: an earlier revision had 2048 positions",
    ),
    Preset(
        "mistral-7b",
        {
            "model_type": "mistral",
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "intermediate_size": 14336,
            "vocab_size": 32000,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "sliding_window": 4096,
            "tie_word_embeddings": False,
            "max_position_embeddings": 32768,
            "initializer_range": 0.02,
            "torch_dtype": "bfloat16",
            "hidden_act": "silu",
        },
        _hf("mistralai/Mistral-7B-v0.1", "mistral-7b-v0.1.json"),
        _DATE,
    ),
    Preset(
        "qwen2.5-0.5b",
        {
            "model_type": "qwen2",
            "hidden_size": 896,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "intermediate_size": 4864,
            "vocab_size": 151936,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "sliding_window": 32768,
            "use_sliding_window": False,
            "max_window_layers": 24,
            "tie_word_embeddings": True,
            "max_position_embeddings": 32768,
            "initializer_range": 0.02,
            "torch_dtype": "bfloat16",
            "hidden_act": "silu",
        },
        _hf("Qwen/Qwen2.5-0.5B", "qwen2.5-0.5b.json"),
        _DATE,
    ),
    Preset(
        "qwen3-0.6b",
        {
            "model_type": "qwen3",
            "hidden_size": 1024,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "intermediate_size": 3072,
            "vocab_size": 151936,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000,
            "rope_scaling": None,
            "sliding_window": None,
            "use_sliding_window": False,
            "max_window_layers": 28,
            "tie_word_embeddings": True,
            "attention_bias": False,
            "max_position_embeddings": 40960,
            "initializer_range": 0.02,
            "torch_dtype": "bfloat16",
            "hidden_act": "silu",
        },
        _hf("Qwen/Qwen3-0.6B", "qwen3-0.6b.json"),
        _DATE,
    ),
    Preset(
        "qwen3-8b",
        {
            "model_type": "qwen3",
            "hidden_size": 4096,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "intermediate_size": 12288,
            "vocab_size": 151936,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000,
            "rope_scaling": None,
            "sliding_window": None,
            "use_sliding_window": False,
            "max_window_layers": 36,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "max_position_embeddings": 40960,
            "initializer_range": 0.02,
            "torch_dtype": "bfloat16",
            "hidden_act": "silu",
        },
        _hf("Qwen/Qwen3-8B", "qwen3-8b.json"),
        _DATE,
    ),
    Preset(
        "mixtral-8x7b",
        {
            "model_type": "mixtral",
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "intermediate_size": 14336,
            "vocab_size": 32000,
            "rms_norm_eps": 1e-5,
            "rope_theta": 1000000.0,
            "sliding_window": None,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
            "tie_word_embeddings": False,
            "max_position_embeddings": 32768,
            "initializer_range": 0.02,
            "torch_dtype": "bfloat16",
            "hidden_act": "silu",
        },
        _hf("mistralai/Mixtral-8x7B-v0.1", "mixtral-8x7b.json"),
        _DATE,
        "MoE: roofline only, no decode model",
    ),
    Preset(
        "qwen3-30b-a3b",
        {
            "model_type": "qwen3_moe",
            "hidden_size": 2048,
            "num_hidden_layers": 48,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "head_dim": 128,
            "intermediate_size": 6144,
            "moe_intermediate_size": 768,
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "vocab_size": 151936,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "rope_scaling": None,
            "sliding_window": None,
            "use_sliding_window": False,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "max_position_embeddings": 40960,
            "initializer_range": 0.02,
            "torch_dtype": "bfloat16",
            "hidden_act": "silu",
        },
        _hf("Qwen/Qwen3-30B-A3B", "qwen3-30b-a3b.json"),
        _DATE,
        "MoE: roofline only, no decode model",
    ),
)

PRESETS: dict[str, Preset] = {row.name: row for row in _ROWS}


def preset_names() -> list[str]:
    """Preset names in table order (dense models first, then the MoE ones)."""
    return list(PRESETS)


def get_preset(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of a preset, by name in any letter case (``SmolLM2-135M`` is
    ``smollm2-135m``, as the Hub spells it).

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    row = PRESETS.get(name.lower()) if isinstance(name, str) else None
    if row is None:
        raise ConfigError(
            f"unknown model {name!r}; presets: {', '.join(PRESETS)} (or pass a config.json path)"
        )
    return config_from_dict(row.values, name=row.name, source=row.source)


def resolve_model(model: str | None, config_path: str | None) -> ModelConfig:
    """A preset name or a ``config.json`` path (file or checkpoint directory) to a :class:`ModelConfig`.

    Neither given: the default preset ``smollm2-135m``.

    Raises:
        ConfigError: both given, unknown preset, or a bad config file.
    """
    if model is not None and config_path is not None:
        raise ConfigError(
            f"give either a preset model ({model!r}) or a config path ({config_path!r}), not both"
        )
    if config_path is not None:
        return load_config(config_path)
    return get_preset(model or DEFAULT_MODEL)


__all__ = ["PRESETS", "Preset", "DEFAULT_MODEL", "get_preset", "preset_names", "resolve_model"]
