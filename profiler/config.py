"""Model shape description parsed from a Hugging Face ``config.json`` (torch-free).

:func:`config_from_dict` turns the JSON of a Llama-family or MoE checkpoint into a frozen
:class:`ModelConfig`; :func:`load_config` reads the file. The cost layer imports this module, so it
must never import torch.

Keys missing from a file take the defaults of the architecture's reference implementation: the
configuration classes of Hugging Face transformers 5.24.0 (``LlamaConfig``, ``MistralConfig``,
``Qwen2Config``, ``Qwen3Config``, ``MixtralConfig``, ``Qwen3MoeConfig`` in
``transformers/models/<family>/configuration_<family>.py``), plus the attention modules in the
matching ``modeling_<family>.py`` for what the model type itself implies (biases, q/k norm, sliding
windows). Shape keys (sizes of weight tensors) are required instead: a benchmark of a silently
defaulted 7B-sized model would be a guess.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from profiler.errors import ConfigError

SUPPORTED_MODEL_TYPES: tuple[str, ...] = ("llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen3_moe")
DENSE_MODEL_TYPES: tuple[str, ...] = ("llama", "mistral", "qwen2", "qwen3")

# `architectures[0]` -> model_type, used only when a file has no `model_type` key.
_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "MixtralForCausalLM": "mixtral",
    "Qwen3MoeForCausalLM": "qwen3_moe",
}

# Defaults of the transformers 5.24.0 configuration classes (class attributes of each *Config).
# head_dim None means hidden_size // num_attention_heads (LlamaConfig.__post_init__, MistralAttention,
# MixtralAttention, Qwen3MoeAttention `getattr(config, "head_dim", hidden // heads)`); Qwen3Config
# declares head_dim = 128. num_key_value_heads None means num_attention_heads.
# rope_theta: RotaryEmbeddingConfigMixin.default_theta = 10000.0, overridden to 1e6 by MixtralConfig.
# sliding_window: LlamaConfig has none; MistralConfig 4096; MixtralConfig None; the Qwen classes
# declare 4096 but keep it only when use_sliding_window is true (their __post_init__).
_COMMON = {
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
    "head_dim": None,
    "hidden_act": "silu",
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {
        **_COMMON,
        "num_key_value_heads": None,
        "max_position_embeddings": 2048,
        "attention_bias": False,
        "mlp_bias": False,
        "sliding_window": None,
    },
    "mistral": {
        **_COMMON,
        "num_key_value_heads": 8,
        "max_position_embeddings": 4096 * 32,
        "sliding_window": 4096,
    },
    "qwen2": {
        **_COMMON,
        "num_key_value_heads": 32,
        "max_position_embeddings": 32768,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": 28,
    },
    "qwen3": {
        **_COMMON,
        "num_key_value_heads": 32,
        "head_dim": 128,
        "max_position_embeddings": 32768,
        "attention_bias": False,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": 28,
    },
    "mixtral": {
        **_COMMON,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1e6,
        "num_key_value_heads": 8,
        "max_position_embeddings": 4096 * 32,
        "sliding_window": None,
    },
    "qwen3_moe": {
        **_COMMON,
        "num_key_value_heads": 4,
        "max_position_embeddings": 32768,
        "attention_bias": False,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "decoder_sparse_step": 1,
        "mlp_only_layers": None,
        "intermediate_size": 6144,
    },
}
_SHAPE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
_MOE_KEYS = {
    "mixtral": ("num_local_experts", "num_experts_per_tok"),
    "qwen3_moe": ("num_experts", "num_experts_per_tok", "moe_intermediate_size"),
}


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """llama3 RoPE frequency scaling (Meta Llama 3.1; transformers ``_compute_llama3_parameters``).

    Raises :class:`ConfigError` unless the factors are finite with factor > 0 and
    high_freq_factor > low_freq_factor > 0, and original_max_position_embeddings is positive.
    """

    rope_type: str
    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int

    def __post_init__(self) -> None:
        floats = {k: getattr(self, k) for k in ("factor", "low_freq_factor", "high_freq_factor")}
        for key, value in floats.items():
            if not math.isfinite(value):
                raise ConfigError(f"{key} must be finite, got {value}")
        if not (self.factor > 0 and self.high_freq_factor > self.low_freq_factor > 0):
            raise ConfigError(
                "llama3 rope scaling needs factor > 0 and high_freq_factor > low_freq_factor > 0, got "
                + ", ".join(f"{k}={v}" for k, v in floats.items())
            )
        if self.original_max_position_embeddings <= 0:  # divides in the wavelength thresholds
            raise ConfigError(
                "original_max_position_embeddings must be positive, got "
                f"{self.original_max_position_embeddings}"
            )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and options of one decoder-only model; sizes in elements, not bytes.

    ``head_dim`` is the per-head width (explicit ``head_dim`` key or hidden // heads);
    ``sliding_window`` is the effective window in tokens (None when every layer attends to the whole
    prefix); MoE fields are 0 for dense models. Raises :class:`ConfigError` on inconsistent values.
    """

    name: str
    model_type: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: RopeScaling | None
    tie_word_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    qk_norm: bool
    max_position_embeddings: int
    sliding_window: int | None
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    torch_dtype: str | None = None
    initializer_range: float = 0.02
    source: str = ""

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def is_moe(self) -> bool:
        """True for mixture-of-experts models (every layer routed)."""
        return self.num_experts > 0

    @property
    def gqa_ratio(self) -> int:
        """Query heads per KV head (1 = multi-head attention)."""
        return self.num_attention_heads // self.num_key_value_heads


def _validate(c: ModelConfig) -> None:
    if c.model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"model_type {c.model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
    ):
        if getattr(c, key) <= 0:
            raise ConfigError(f"{key} must be positive, got {getattr(c, key)}")
    for key in ("rms_norm_eps", "rope_theta"):  # eps is added to a mean square; theta is a RoPE base
        if not (math.isfinite(getattr(c, key)) and getattr(c, key) > 0):
            raise ConfigError(f"{key} must be positive and finite, got {getattr(c, key)}")
    if not 0.0 <= c.initializer_range <= 1.0:  # LlamaConfig: interval(min=0.0, max=1.0); NaN fails too
        raise ConfigError(f"initializer_range must be in [0, 1], got {c.initializer_range}")
    if c.num_attention_heads % c.num_key_value_heads:
        raise ConfigError(
            f"num_attention_heads ({c.num_attention_heads}) is not divisible by "
            f"num_key_value_heads ({c.num_key_value_heads})"
        )
    if c.head_dim % 2:
        raise ConfigError(f"head_dim must be even for half-split RoPE, got {c.head_dim}")
    if c.sliding_window is not None and c.sliding_window <= 0:
        raise ConfigError(f"sliding_window must be positive or null, got {c.sliding_window}")
    if c.is_moe and not (0 < c.num_experts_per_tok <= c.num_experts and c.moe_intermediate_size > 0):
        raise ConfigError(
            f"num_experts_per_tok ({c.num_experts_per_tok}) must be in 1..num_experts "
            f"({c.num_experts}) and moe_intermediate_size positive ({c.moe_intermediate_size})"
        )


def _get(d: dict, key: str, kind: type, defaults: dict) -> Any:
    """``d[key]`` checked against ``kind``, else the family default; ConfigError names the key."""
    if key in d and d[key] is not None:
        value = d[key]
    elif key in defaults:
        value = defaults[key]
        if value is None:
            return None
    else:
        raise ConfigError(f"missing required key {key!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):  # JSON Infinity/NaN or an overflowing 1e999
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return value


def _derived(d: dict, key: str, kind: type, defaults: dict) -> Any:
    """Like :func:`_get`, but an explicit null stays None (meaning "derive it" or "unused")."""
    if key in d and d[key] is None:
        return None
    return _get(d, key, kind, defaults)


def _model_type(d: dict) -> str:
    model_type = d.get("model_type")
    if model_type is None:
        archs = d.get("architectures") or []
        if not archs:
            raise ConfigError("missing required key 'model_type' (and no 'architectures' to infer it from)")
        if not (isinstance(archs, list) and all(isinstance(a, str) for a in archs)):
            raise ConfigError(
                f"architectures must be a list of class names such as [\"LlamaForCausalLM\"], got {archs!r}"
            )
        if archs[0] not in _ARCHITECTURES:
            raise ConfigError(
                f"architectures {archs[0]!r} is not supported; supported: {', '.join(_ARCHITECTURES)}"
            )
        model_type = _ARCHITECTURES[archs[0]]
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return model_type


def _rope(d: dict, defaults: dict, max_pos: int) -> tuple[float, RopeScaling | None]:
    """rope_theta and llama3 scaling from `rope_scaling` (<= 4.x files) or `rope_parameters` (5.x).

    As in transformers' RotaryEmbeddingConfigMixin, `rope_scaling` wins over `rope_parameters`, the type
    is `rope_type` or else the legacy `type`, and a missing original_max_position_embeddings is the
    config's max_position_embeddings.
    """
    key = "rope_scaling" if d.get("rope_scaling") else "rope_parameters"
    params = d.get(key) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{key} must be an object or null, got {params!r}")
    if any(isinstance(v, dict) for v in params.values()):
        raise ConfigError(f"{key} with one entry per layer type is not supported: {sorted(params)}")
    theta = _get(params if params.get("rope_theta") is not None else d, "rope_theta", float, defaults)
    if params.get("partial_rotary_factor", 1.0) != 1.0 or d.get("partial_rotary_factor", 1.0) != 1.0:
        raise ConfigError("partial_rotary_factor != 1 is not supported")
    if d.get("rope_interleaved"):
        raise ConfigError("rope_interleaved: true is not supported (HF half-split rotation only)")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "default":
        return theta, None
    if rope_type != "llama3":
        raise ConfigError(f"{key}.rope_type {rope_type!r} is not supported; supported: default, llama3")
    p = {"original_max_position_embeddings": max_pos, **params}
    try:  # RopeScaling checks the values (finite, ordered, positive)
        scaling = RopeScaling(
            "llama3",
            *(_get(p, k, float, {}) for k in ("factor", "low_freq_factor", "high_freq_factor")),
            _get(p, "original_max_position_embeddings", int, {}),
        )
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return theta, scaling


def _sliding_window(d: dict, model_type: str, defaults: dict, n_layers: int) -> int | None:
    """Effective window; a window applied to only some layers is rejected (one window per model)."""
    if model_type == "llama":
        return None  # LlamaAttention has no sliding window
    window = _derived(d, "sliding_window", int, defaults)  # explicit null: no window
    if model_type in ("mistral", "mixtral") or window is None:
        return window
    if not _get(d, "use_sliding_window", bool, defaults):
        return None  # Qwen*Config.__post_init__: sliding_window = None unless use_sliding_window
    if model_type == "qwen3_moe":
        return window  # Qwen3MoeAttention applies config.sliding_window on every layer
    layer_types = d.get("layer_types")
    if layer_types is None:  # Qwen2Config/Qwen3Config: sliding from layer max_window_layers on
        first = _get(d, "max_window_layers", int, defaults)
        layer_types = ["sliding_attention" if i >= first else "full_attention" for i in range(n_layers)]
    kinds = set(layer_types)
    if kinds == {"full_attention"}:
        return None
    if kinds == {"sliding_attention"}:
        return window
    raise ConfigError(
        "layer_types/max_window_layers mixing sliding and full attention layers is not supported: "
        f"{sorted(kinds)}"
    )


def _moe(d: dict, model_type: str, defaults: dict, intermediate: int) -> dict[str, int]:
    if model_type == "mixtral":  # every expert is a full-width SwiGLU MLP (MixtralExperts)
        return {
            "num_experts": _get(d, "num_local_experts", int, {}),
            "num_experts_per_tok": _get(d, "num_experts_per_tok", int, {}),
            "moe_intermediate_size": intermediate,
        }
    if model_type == "qwen3_moe":
        if _get(d, "mlp_only_layers", list, {"mlp_only_layers": []}):
            raise ConfigError(
                "mlp_only_layers must be empty (dense layers inside an MoE model are not supported), "
                f"got {d['mlp_only_layers']}"
            )
        if _get(d, "decoder_sparse_step", int, defaults) != 1:
            raise ConfigError(
                f"decoder_sparse_step must be 1 (every layer MoE), got {d['decoder_sparse_step']}"
            )
        return {k: _get(d, k, int, {}) for k in _MOE_KEYS[model_type]}
    return {}


def _attention_options(d: dict, model_type: str, defaults: dict) -> dict[str, bool]:
    """Biases and q/k norm as each family's modeling file builds them (transformers 5.24.0)."""
    if model_type == "qwen2":  # Qwen2Attention: q/k/v bias=True, o_proj bias=False, MLP without bias
        return {"qkv_bias": True, "o_bias": False, "mlp_bias": False, "qk_norm": False}
    if model_type in ("mistral", "mixtral"):  # Mistral/MixtralAttention: bias=False everywhere
        return {"qkv_bias": False, "o_bias": False, "mlp_bias": False, "qk_norm": False}
    attn_bias = _get(d, "attention_bias", bool, defaults)  # LlamaAttention/Qwen3Attention: q, k, v and o
    mlp_bias = _get(d, "mlp_bias", bool, defaults) if model_type == "llama" else False
    return {
        "qkv_bias": attn_bias,
        "o_bias": attn_bias,
        "mlp_bias": mlp_bias,
        "qk_norm": model_type in ("qwen3", "qwen3_moe"),
    }


def _head_dim(d: dict, defaults: dict, hidden: int, heads: int) -> int:
    """``head_dim`` as given, else hidden_size ÷ num_attention_heads (LlamaAttention's default).

    Raises:
        ConfigError: num_attention_heads not positive, or hidden_size not divisible by it when
            head_dim is absent.
    """
    if heads <= 0:
        raise ConfigError(f"num_attention_heads must be positive, got {heads}")
    head_dim = _derived(d, "head_dim", int, defaults)
    if head_dim is not None:
        return head_dim
    if hidden % heads:
        raise ConfigError(f"hidden_size ({hidden}) is not divisible by num_attention_heads ({heads}) and "
                          "head_dim is absent")
    return hidden // heads


def config_from_dict(d: dict, *, name: str, source: str = "") -> ModelConfig:
    """Parse the contents of a HF ``config.json``.

    Raises:
        ConfigError: unsupported model_type/architecture (or ``architectures`` not a list of
            strings), rope type, activation or layer layout; a missing shape key; a wrong type,
            non-positive size or non-finite number (JSON ``Infinity``/``NaN``, ``1e999``); a
            non-positive rms_norm_eps, rope_theta or llama3 original_max_position_embeddings;
            initializer_range outside [0, 1]; heads not divisible by KV heads; hidden_size not
            divisible by heads when head_dim is absent. The message names the key.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
    model_type = _model_type(d)
    defaults = _DEFAULTS[model_type]
    shape = {k: _get(d, k, int, defaults) for k in _SHAPE_KEYS}
    heads = shape["num_attention_heads"]
    if _get(d, "hidden_act", str, defaults) != "silu":
        raise ConfigError(f"hidden_act {d['hidden_act']!r} is not supported; only silu (SwiGLU) is")
    head_dim = _head_dim(d, defaults, shape["hidden_size"], heads)
    max_pos = _get(d, "max_position_embeddings", int, defaults)
    if max_pos <= 0:  # checked before llama3 scaling takes it as original_max_position_embeddings
        raise ConfigError(f"max_position_embeddings must be positive, got {max_pos}")
    theta, scaling = _rope(d, defaults, max_pos)
    dtype = d.get("torch_dtype", d.get("dtype"))
    kv_heads = _derived(d, "num_key_value_heads", int, defaults)
    return ModelConfig(
        name=name,
        model_type=model_type,
        **shape,
        head_dim=head_dim,
        num_key_value_heads=heads if kv_heads is None else kv_heads,  # 0 stays 0 and is refused
        rms_norm_eps=_get(d, "rms_norm_eps", float, defaults),
        rope_theta=theta,
        rope_scaling=scaling,
        tie_word_embeddings=_get(d, "tie_word_embeddings", bool, defaults),
        **_attention_options(d, model_type, defaults),
        max_position_embeddings=max_pos,
        sliding_window=_sliding_window(d, model_type, defaults, shape["num_hidden_layers"]),
        **_moe(d, model_type, defaults, shape["intermediate_size"]),
        torch_dtype=dtype if isinstance(dtype, str) else None,
        initializer_range=_get(d, "initializer_range", float, defaults),
        source=source,
    )


def load_config(path: str | Path) -> ModelConfig:
    """Read a HF ``config.json`` (or a checkpoint directory holding one) into a :class:`ModelConfig`.

    The config's ``name`` is the file stem (the directory name for ``<dir>/config.json``).

    Raises:
        ConfigError: the file is missing, unreadable or not valid JSON, or its contents are rejected
            by :func:`config_from_dict`; the message starts with the path.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    name = path.resolve().parent.name if path.name == "config.json" else path.stem
    try:
        return config_from_dict(data, name=name, source=str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


__all__ = [
    "ModelConfig",
    "RopeScaling",
    "config_from_dict",
    "load_config",
    "SUPPORTED_MODEL_TYPES",
    "DENSE_MODEL_TYPES",
]
