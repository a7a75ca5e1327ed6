"""config.json parsing: published files, family defaults against transformers, clear errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import transformers

from profiler.config import ModelConfig, RopeScaling, config_from_dict, load_config
from profiler.errors import ConfigError

SUPPORTED_FILES = [
    "llama-2-7b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.2-1b",
    "mistral-7b-v0.1",
    "mixtral-8x7b",
    "qwen2.5-0.5b",
    "qwen3-0.6b",
    "qwen3-8b",
    "qwen3-30b-a3b",
    "smollm2-135m",
]


def _hf_view(d: dict) -> dict:
    """The fields of ModelConfig as the transformers model classes derive them from the same dict."""
    hc = transformers.AutoConfig.for_model(**d)
    rope = hc.rope_parameters
    head_dim = getattr(hc, "head_dim", None) or hc.hidden_size // hc.num_attention_heads
    window = getattr(hc, "sliding_window", None) if d["model_type"] != "llama" else None
    layer_types = getattr(hc, "layer_types", None)
    if window is not None and layer_types and "sliding_attention" not in layer_types:
        window = None  # Qwen2/Qwen3 attention uses the window only on sliding layers
    return {
        "hidden_size": hc.hidden_size,
        "num_hidden_layers": hc.num_hidden_layers,
        "num_attention_heads": hc.num_attention_heads,
        "num_key_value_heads": hc.num_key_value_heads,
        "head_dim": head_dim,
        "vocab_size": hc.vocab_size,
        "rms_norm_eps": hc.rms_norm_eps,
        "rope_theta": float(rope["rope_theta"]),
        "rope_type": rope["rope_type"],
        "tie_word_embeddings": hc.tie_word_embeddings,
        "max_position_embeddings": hc.max_position_embeddings,
        "sliding_window": window,
        "initializer_range": hc.initializer_range,
    }


def _our_view(cfg: ModelConfig) -> dict:
    view = {
        k: getattr(cfg, k)
        for k in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "vocab_size",
            "rms_norm_eps",
            "rope_theta",
            "tie_word_embeddings",
            "max_position_embeddings",
            "sliding_window",
            "initializer_range",
        )
    }
    view["rope_type"] = cfg.rope_scaling.rope_type if cfg.rope_scaling else "default"
    return view


@pytest.mark.parametrize("stem", SUPPORTED_FILES)
def test_published_file_parses_like_transformers(stem, model_configs_dir):
    path = model_configs_dir / f"{stem}.json"
    cfg = load_config(path)
    assert cfg.name == stem and cfg.source == str(path)
    assert _our_view(cfg) == _hf_view(json.loads(path.read_text()))


def test_published_files_key_facts(model_configs_dir):
    cfgs = {stem: load_config(model_configs_dir / f"{stem}.json") for stem in SUPPORTED_FILES}
    assert cfgs["qwen3-0.6b"].head_dim == 128 and cfgs["qwen3-0.6b"].hidden_size // 16 == 64
    assert cfgs["qwen3-0.6b"].qk_norm and not cfgs["qwen3-0.6b"].qkv_bias
    assert cfgs["qwen2.5-0.5b"].qkv_bias and not cfgs["qwen2.5-0.5b"].o_bias
    assert cfgs["qwen2.5-0.5b"].sliding_window is None and cfgs["qwen2.5-0.5b"].gqa_ratio == 7
    assert cfgs["mistral-7b-v0.1"].sliding_window == 4096
    assert cfgs["llama-2-7b"].rope_theta == 10000.0 and cfgs["llama-2-7b"].gqa_ratio == 1
    assert cfgs["llama-3.2-1b"].rope_scaling == RopeScaling("llama3", 32.0, 1.0, 4.0, 8192)
    assert cfgs["llama-3.2-1b"].tie_word_embeddings and not cfgs["llama-3.1-8b"].tie_word_embeddings
    mixtral, qwen_moe = cfgs["mixtral-8x7b"], cfgs["qwen3-30b-a3b"]
    assert (mixtral.num_experts, mixtral.num_experts_per_tok, mixtral.moe_intermediate_size) == (8, 2, 14336)
    assert (qwen_moe.num_experts, qwen_moe.num_experts_per_tok, qwen_moe.moe_intermediate_size) == (
        128,
        8,
        768,
    )
    assert mixtral.is_moe and not cfgs["llama-3.1-8b"].is_moe


MINIMAL = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "intermediate_size": 96,
    "vocab_size": 100,
}


@pytest.mark.parametrize(
    "model_type, extra",
    [
        ("llama", {}),
        ("mistral", {}),
        ("qwen2", {"num_key_value_heads": 4}),
        ("qwen3", {"num_key_value_heads": 4}),
        ("mixtral", {"num_local_experts": 4, "num_experts_per_tok": 2}),
        ("qwen3_moe", {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32}),
        (
            "qwen2",
            {
                "num_key_value_heads": 2,
                "use_sliding_window": True,
                "max_window_layers": 0,
                "sliding_window": 9,
            },
        ),
        (
            "llama",
            {
                "rope_parameters": {
                    "rope_type": "llama3",
                    "rope_theta": 5e5,
                    "factor": 4.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 2.0,
                }
            },
        ),
    ],
)
def test_missing_keys_take_the_transformers_family_defaults(model_type, extra):
    d = {"model_type": model_type, **MINIMAL, **extra}
    assert _our_view(config_from_dict(d, name="t")) == _hf_view(d)


def test_defaults_and_derived_fields_explicitly():
    llama = config_from_dict({"model_type": "llama", **MINIMAL}, name="t")
    assert (llama.num_key_value_heads, llama.head_dim, llama.rope_theta, llama.tie_word_embeddings) == (
        8,
        8,
        1e4,
        False,
    )
    assert (
        llama.max_position_embeddings == 2048 and llama.rms_norm_eps == 1e-6 and llama.sliding_window is None
    )
    assert (
        config_from_dict({"model_type": "qwen3", **MINIMAL, "num_key_value_heads": 2}, name="t").head_dim
        == 128
    )
    assert (
        config_from_dict(
            {"model_type": "mixtral", **MINIMAL, "num_local_experts": 8, "num_experts_per_tok": 2}, name="t"
        ).rope_theta
        == 1e6
    )
    assert config_from_dict({"model_type": "mistral", **MINIMAL}, name="t").sliding_window == 4096
    biased = config_from_dict(
        {"model_type": "llama", **MINIMAL, "attention_bias": True, "mlp_bias": True}, name="t"
    )
    assert biased.qkv_bias and biased.o_bias and biased.mlp_bias
    # rope_parameters (transformers 5.x files) gives theta and llama3 scaling; orig defaults to max positions
    v5 = config_from_dict(
        {
            "model_type": "llama",
            **MINIMAL,
            "max_position_embeddings": 512,
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 5e5,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
            },
        },
        name="t",
    )
    assert v5.rope_theta == 5e5 and v5.rope_scaling == RopeScaling("llama3", 8.0, 1.0, 4.0, 512)
    from_arch = config_from_dict(
        {"architectures": ["Qwen2ForCausalLM"], **MINIMAL, "num_key_value_heads": 2}, name="t"
    )
    assert from_arch.model_type == "qwen2"


def _bad(**changes) -> dict:
    d = {"model_type": "llama", **MINIMAL}
    for key, value in changes.items():
        if value is _DROP:
            d.pop(key)
        else:
            d[key] = value
    return d


_DROP = object()
_LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}


@pytest.mark.parametrize(
    "d, key",
    [
        (_bad(model_type="gpt2"), "model_type 'gpt2' is not supported"),
        (_bad(model_type="deepseek_v3"), "model_type 'deepseek_v3' is not supported"),
        (
            _bad(model_type=_DROP, architectures=["GPT2LMHeadModel"]),
            "architectures 'GPT2LMHeadModel' is not supported",
        ),
        (_bad(model_type=_DROP), "model_type"),
        (_bad(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "rope_scaling.rope_type 'yarn'"),
        (_bad(rope_scaling={"type": "linear", "factor": 2.0}), "rope_scaling.rope_type 'linear'"),
        (_bad(rope_scaling={"rope_type": "dynamic", "factor": 2.0}), "rope_scaling.rope_type 'dynamic'"),
        (_bad(rope_parameters={"rope_type": "yarn", "factor": 2.0}), "rope_parameters.rope_type 'yarn'"),
        (
            _bad(rope_parameters={"full_attention": {"rope_type": "default"}}),
            "rope_parameters with one entry per layer",
        ),
        (
            _bad(rope_scaling={"rope_type": "llama3", "factor": 8.0}),
            "rope_scaling: missing required key 'low_freq_factor'",
        ),
        (
            _bad(
                rope_scaling={
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 4.0,
                    "high_freq_factor": 1.0,
                }
            ),
            "high_freq_factor > low_freq_factor",
        ),
        (_bad(num_key_value_heads=3), "num_attention_heads (8) is not divisible by num_key_value_heads (3)"),
        (_bad(hidden_size=0), "hidden_size must be positive"),
        (_bad(intermediate_size=-5), "intermediate_size must be positive"),
        (_bad(num_attention_heads=0), "num_attention_heads must be positive"),
        (_bad(vocab_size=_DROP), "missing required key 'vocab_size'"),
        (
            _bad(hidden_size=60),
            "hidden_size (60) is not divisible by num_attention_heads (8) and head_dim is absent",
        ),
        (_bad(hidden_size="64"), "hidden_size must be int"),
        (_bad(num_hidden_layers=2.5), "num_hidden_layers must be int"),
        (_bad(tie_word_embeddings="yes"), "tie_word_embeddings must be bool"),
        (_bad(hidden_act="gelu"), "hidden_act 'gelu'"),
        (_bad(head_dim=7), "head_dim must be even"),
        (_bad(rms_norm_eps=0), "rms_norm_eps must be positive"),
        (_bad(rope_interleaved=True), "rope_interleaved"),
        (
            {
                "model_type": "qwen3_moe",
                **MINIMAL,
                "num_experts": 4,
                "num_experts_per_tok": 2,
                "moe_intermediate_size": 8,
                "mlp_only_layers": [0],
            },
            "mlp_only_layers must be empty",
        ),
        (
            {
                "model_type": "qwen3_moe",
                **MINIMAL,
                "num_experts": 4,
                "num_experts_per_tok": 5,
                "moe_intermediate_size": 8,
            },
            "num_experts_per_tok (5)",
        ),
        (
            {"model_type": "mixtral", **MINIMAL, "num_experts_per_tok": 2},
            "missing required key 'num_local_experts'",
        ),
        (
            {
                "model_type": "qwen2",
                **MINIMAL,
                "num_key_value_heads": 2,
                "use_sliding_window": True,
                "max_window_layers": 1,
            },
            "mixing sliding and full attention",
        ),
        (["not", "a", "dict"], "JSON object"),
        (
            _bad(model_type=_DROP, architectures="LlamaForCausalLM"),
            "architectures must be a list of class names",
        ),
        (_bad(model_type=_DROP, architectures=[1]), "architectures must be a list of class names"),
        (_bad(rms_norm_eps=float("inf")), "rms_norm_eps must be a finite number"),
        (_bad(rope_theta=float("inf")), "rope_theta must be a finite number"),
        (_bad(rope_theta=float("nan")), "rope_theta must be a finite number"),
        (_bad(rope_theta=-1.0), "rope_theta must be positive and finite"),
        (_bad(rope_scaling={**_LLAMA3, "factor": float("inf")}), "rope_scaling: factor must be a finite"),
        (
            _bad(rope_parameters={**_LLAMA3, "high_freq_factor": float("inf")}),
            "rope_parameters: high_freq_factor must be a finite",
        ),
        (
            _bad(rope_scaling={**_LLAMA3, "original_max_position_embeddings": 0}),
            "rope_scaling: original_max_position_embeddings must be positive, got 0",
        ),
        (
            _bad(rope_scaling={**_LLAMA3, "original_max_position_embeddings": -5}),
            "rope_scaling: original_max_position_embeddings must be positive, got -5",
        ),
        (_bad(max_position_embeddings=0, rope_scaling=_LLAMA3), "max_position_embeddings must be positive"),
        (_bad(initializer_range=-0.02), "initializer_range must be in [0, 1]"),
        (_bad(initializer_range=2.0), "initializer_range must be in [0, 1]"),
        (_bad(initializer_range=float("nan")), "initializer_range must be a finite number"),
        ({"model_type": "llama", **MINIMAL, "num_key_value_heads": 0}, "num_key_value_heads must be positive"),
    ],
)
def test_bad_configs_raise_config_error_naming_the_key(d, key):
    with pytest.raises(ConfigError) as info:
        config_from_dict(d, name="bad")
    assert key in str(info.value)


def test_unsupported_published_files_are_rejected(model_configs_dir):
    for stem, model_type in (("gpt2", "gpt2"), ("deepseek-v3", "deepseek_v3")):
        with pytest.raises(ConfigError, match=f"model_type '{model_type}' is not supported"):
            load_config(model_configs_dir / f"{stem}.json")


def test_load_config_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match="nope.json: cannot read config"):
        load_config(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"model_type": "llama",')
    with pytest.raises(ConfigError, match="broken.json: not valid JSON"):
        load_config(broken)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_bad(num_key_value_heads=3)))
    with pytest.raises(ConfigError, match="bad.json: num_attention_heads"):
        load_config(bad)
    ckpt = tmp_path / "my-model"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llama", **MINIMAL}))
    assert load_config(ckpt).name == "my-model"


def test_json_infinity_and_overflowing_literals_are_refused(tmp_path):
    """Python's json reads `Infinity` and `1e999` as float('inf'); both name the key."""
    text = json.dumps({"model_type": "llama", **MINIMAL})[:-1]
    for key, literal in (("rms_norm_eps", "Infinity"), ("rope_theta", "1e999"), ("rope_theta", "NaN")):
        path = tmp_path / "c.json"
        path.write_text(f'{text}, "{key}": {literal}}}')
        with pytest.raises(ConfigError, match=f"c.json: {key} must be a finite number"):
            load_config(path)
    path.write_text(f'{text}, "rope_scaling": {json.dumps(_LLAMA3)[:-1]}, "factor": Infinity}}}}')
    with pytest.raises(ConfigError, match="c.json: rope_scaling: factor must be a finite number"):
        load_config(path)
    path.write_text(f'{text}, "initializer_range": 0.0}}')
    assert load_config(path).initializer_range == 0.0  # transformers' LlamaConfig accepts [0, 1]


def test_model_config_validates_on_construction():
    cfg = config_from_dict({"model_type": "llama", **MINIMAL}, name="t")
    for key, value in (("rms_norm_eps", float("inf")), ("rope_theta", float("inf")), ("initializer_range", -1.0)):
        with pytest.raises(ConfigError, match=key):
            dataclasses.replace(cfg, **{key: value})
    with pytest.raises(ConfigError, match="original_max_position_embeddings must be positive"):
        RopeScaling("llama3", 8.0, 1.0, 4.0, 0)
    with pytest.raises(ConfigError, match="factor must be finite"):
        RopeScaling("llama3", float("inf"), 1.0, 4.0, 8192)
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        dataclasses.replace(cfg, num_key_value_heads=3)
    assert cfg.gqa_ratio == 1 and dataclasses.replace(cfg, num_key_value_heads=2).gqa_ratio == 4


def test_config_and_presets_do_not_import_torch():
    code = "import sys, profiler.config, profiler.presets; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
