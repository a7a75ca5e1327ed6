"""Presets: each equals the published config it cites; exact-name lookup; model/config resolution."""

from __future__ import annotations

import dataclasses
import json

import pytest

from profiler.config import load_config
from profiler.errors import ConfigError
from profiler.presets import PRESETS, get_preset, preset_names, resolve_model

PRESET_FILES = {
    "smollm2-135m": "smollm2-135m.json",
    "llama-3.2-1b": "llama-3.2-1b.json",
    "llama-3.1-8b": "llama-3.1-8b.json",
    "llama-3.1-70b": "llama-3.1-70b.json",
    "llama-2-7b": "llama-2-7b.json",
    "mistral-7b": "mistral-7b-v0.1.json",
    "qwen2.5-0.5b": "qwen2.5-0.5b.json",
    "qwen3-0.6b": "qwen3-0.6b.json",
    "qwen3-8b": "qwen3-8b.json",
    "mixtral-8x7b": "mixtral-8x7b.json",
    "qwen3-30b-a3b": "qwen3-30b-a3b.json",
}


def test_preset_names_are_exactly_the_documented_set():
    assert preset_names() == list(PRESET_FILES)


@pytest.mark.parametrize("name", PRESET_FILES)
def test_preset_equals_its_published_config(name, model_configs_dir):
    published = load_config(model_configs_dir / PRESET_FILES[name])
    preset = get_preset(name)
    assert preset.name == name
    assert dataclasses.replace(preset, name="", source="") == dataclasses.replace(
        published, name="", source=""
    )


@pytest.mark.parametrize("name", PRESET_FILES)
def test_preset_values_are_the_published_values(name, model_configs_dir):
    """Every key a preset writes has the published value (no key invented or altered)."""
    published = json.loads((model_configs_dir / PRESET_FILES[name]).read_text())
    for key, value in PRESETS[name].values.items():
        assert key in published and published[key] == value, key


def test_every_preset_cites_its_source_and_date(shared_reference):
    sources_md = (shared_reference / "model-configs" / "SOURCES.md").read_text()
    for name, row in PRESETS.items():
        assert row.date == "2026-11-30"
        assert row.source.startswith("https://huggingface.co/") and "SOURCES.md" in row.source
        assert f"`{PRESET_FILES[name]}`" in row.source and f"`{PRESET_FILES[name]}`" in sources_md
        assert get_preset(name).source == row.source


def test_unknown_or_partial_names_are_rejected_with_the_list():
    for bad in ("llama-3.1", "smollm2", "", "SmolLM2"):
        with pytest.raises(ConfigError, match="presets: smollm2-135m, llama-3.2-1b"):
            get_preset(bad)


def test_resolve_model(model_configs_dir):
    assert resolve_model(None, None).name == "smollm2-135m"
    assert resolve_model("qwen3-8b", None) == get_preset("qwen3-8b")
    path = str(model_configs_dir / "llama-2-7b.json")
    assert resolve_model(None, path).name == "llama-2-7b"
    with pytest.raises(ConfigError, match="not both"):
        resolve_model("qwen3-8b", path)
    with pytest.raises(ConfigError, match="gpt2.json: model_type 'gpt2' is not supported"):
        resolve_model(None, str(model_configs_dir / "gpt2.json"))


def test_moe_presets_are_marked_moe():
    assert get_preset("mixtral-8x7b").is_moe and get_preset("qwen3-30b-a3b").is_moe
    assert not any(get_preset(n).is_moe for n in PRESET_FILES if n not in ("mixtral-8x7b", "qwen3-30b-a3b"))


def test_preset_names_are_case_insensitive():
    from profiler.presets import get_preset

    assert get_preset("SmolLM2-135M") == get_preset("smollm2-135m")
