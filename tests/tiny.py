"""Tiny model configs shared by tests (a few thousand parameters; milliseconds per step on CPU)."""

import json
from pathlib import Path

TINY_LLAMA = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
}


def write_config(tmp_path: Path, overrides: dict | None = None, name: str = "config.json") -> Path:
    path = Path(tmp_path) / name
    path.write_text(json.dumps({**TINY_LLAMA, **(overrides or {})}))
    return path
