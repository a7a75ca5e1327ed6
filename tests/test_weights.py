"""Loading HF safetensors checkpoints (single file and sharded) into the fused layout, and its errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from profiler.config import load_config
from profiler.errors import ProfilerError
from profiler.model import build_model
from profiler.weights import checkpoint_files


def _tiny_hf(**overrides) -> torch.nn.Module:
    base = dict(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        intermediate_size=48,
        vocab_size=64,
        max_position_embeddings=64,
    )
    hc = transformers.Qwen2Config(**{**base, **overrides})
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(hc).float().eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.2)
    return hf


def _save(hf, path, max_shard_size: str = "5GB"):
    hf.save_pretrained(path, max_shard_size=max_shard_size)
    return path


def _load(path, cfg_path=None):
    return build_model(load_config(cfg_path or path), max_seq_len=16, weights_dir=str(path))


def test_single_and_sharded_checkpoints_load_the_same_weights(tmp_path):
    hf = _tiny_hf()
    single, sharded = _save(hf, tmp_path / "single"), _save(hf, tmp_path / "sharded", max_shard_size="8KB")
    assert (single / "model.safetensors").is_file()
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    a, b = _load(single), _load(sharded)
    for (name, x), y in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y), name
    state = hf.state_dict()
    q_rows = 4 * 8
    assert torch.equal(a.layers[1].attn.wqkv[:q_rows], state["model.layers.1.self_attn.q_proj.weight"])
    assert torch.equal(
        a.layers[1].attn.bqkv[q_rows : q_rows + 16], state["model.layers.1.self_attn.k_proj.bias"]
    )
    assert torch.equal(a.layers[0].mlp.w_gate_up[48:], state["model.layers.0.mlp.up_proj.weight"])
    tokens = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        torch.testing.assert_close(a(tokens, 0), hf(input_ids=tokens).logits[:, -1], atol=1e-4, rtol=0)


def test_tied_checkpoint_without_lm_head_uses_the_embedding(tmp_path):
    hf = _tiny_hf(tie_word_embeddings=True)
    path = _save(hf, tmp_path / "tied")
    assert "lm_head.weight" not in load_file(path / "model.safetensors")
    model = _load(path)
    assert model.lm_head is model.embed
    assert torch.equal(model.embed, hf.state_dict()["model.embed_tokens.weight"])


def _rewrite(path, edit) -> None:
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_is_named(tmp_path):
    path = _save(_tiny_hf(), tmp_path / "ckpt")
    _rewrite(path, lambda t: t.pop("model.layers.1.mlp.down_proj.weight"))
    with pytest.raises(ProfilerError, match="lacks tensor model.layers.1.mlp.down_proj.weight"):
        _load(path)


def test_untied_config_without_lm_head_is_an_error(tmp_path):
    path = _save(_tiny_hf(), tmp_path / "ckpt")
    _rewrite(path, lambda t: t.pop("lm_head.weight"))
    with pytest.raises(ProfilerError, match="lacks tensor lm_head.weight"):
        _load(path)


def test_shape_mismatch_is_named(tmp_path):
    path = _save(_tiny_hf(), tmp_path / "ckpt")
    _rewrite(path, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(8, 32)}))
    with pytest.raises(
        ProfilerError, match=r"tensor model.layers.0.self_attn.k_proj.weight has shape \(8, 32\)"
    ):
        _load(path)


def test_config_checkpoint_disagreement_is_an_error(tmp_path):
    path = _save(_tiny_hf(), tmp_path / "ckpt")
    llama_cfg = tmp_path / "llama.json"  # same shapes, but llama has no q/k/v biases
    llama_cfg.write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 32,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "num_hidden_layers": 2,
                "intermediate_size": 48,
                "vocab_size": 64,
                "max_position_embeddings": 64,
            }
        )
    )
    with pytest.raises(
        ProfilerError,
        match=r"has tensor model.layers.\d.self_attn.[qkv]_proj.bias that this config does not use",
    ):
        _load(path, llama_cfg)


def test_missing_or_broken_checkpoint_files(tmp_path):
    path = _save(_tiny_hf(), tmp_path / "ckpt")
    cfg = load_config(path)
    with pytest.raises(ProfilerError, match="absent does not exist"):
        build_model(cfg, max_seq_len=16, weights_dir=str(tmp_path / "absent"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ProfilerError, match="neither model.safetensors nor model.safetensors.index.json"):
        build_model(cfg, max_seq_len=16, weights_dir=str(empty))
    (empty / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ProfilerError, match="cannot read safetensors header"):
        build_model(cfg, max_seq_len=16, weights_dir=str(empty))
    sharded = _save(_tiny_hf(), tmp_path / "sharded", max_shard_size="8KB")
    shard = sorted(sharded.glob("model-*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(ProfilerError, match=f"shard\\(s\\) missing: .*{shard.name}"):
        build_model(cfg, max_seq_len=16, weights_dir=str(sharded))
    (sharded / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(ProfilerError, match="weight_map"):
        build_model(cfg, max_seq_len=16, weights_dir=str(sharded))


def test_dummy_weights_repeat_one_seeded_block_in_large_tensors(monkeypatch):
    from profiler import weights
    from profiler.presets import get_preset

    monkeypatch.setattr(weights, "DUMMY_BLOCK_NUMEL", 1000)
    cfg = dataclasses.replace(get_preset("smollm2-135m"), num_hidden_layers=1, vocab_size=100)
    fp32, bf16 = build_model(cfg, max_seq_len=4), build_model(cfg, max_seq_len=4, dtype=torch.bfloat16)
    flat = fp32.embed.view(-1)  # 57,600 values: 57 full blocks and a partial one
    assert torch.equal(flat[1000:2000], flat[:1000]) and torch.equal(flat[57000:], flat[:600])
    assert len(torch.unique(flat[:1000])) == 1000
    assert torch.equal(bf16.embed, fp32.embed.bfloat16())
    assert not torch.equal(fp32.layers[0].mlp.w_down.view(-1)[:1000], flat[:1000])  # next draw per tensor


def _cli_fails_while_measuring(capsys, argv) -> str:
    """Exit status 2 with the last stderr line ``tokencost: error: ...`` (after the "measuring" line:
    the checkpoint is read when the model is built); returns that line."""
    from tokencost.cli import main, measure_hook

    measure_hook._POOL = None  # one process keeps the last model for reuse; a new CLI call would not
    with pytest.raises(SystemExit) as exc:
        main(argv)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and last.startswith("tokencost: error:"), last
    return last


def test_cli_runs_on_a_sharded_checkpoint_and_really_loads_it(tmp_path, capsys):
    """`run --weights DIR` on a sharded checkpoint: it measures, and what it measures are the loaded
    tensors: the same checkpoint with one weight set to infinity (which dummy weights never hold) ends
    in the non-finite-logits error, and a tensor of the wrong shape is named in a one-line error."""
    from tokencost.cli import main

    hf = _tiny_hf()
    ckpt = _save(hf, tmp_path / "ckpt", max_shard_size="8KB")
    argv = ["run", "--weights", str(ckpt), "--prompt-len", "4", "--gen-len", "3", "--price-per-gpu-hour", "1"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["weights"] == str(ckpt)

    index = json.loads((ckpt / "model.safetensors.index.json").read_text())
    name = "model.norm.weight"
    shard = ckpt / index["weight_map"][name]
    tensors = load_file(shard)
    tensors[name] = torch.full_like(tensors[name], float("inf"))
    save_file(tensors, shard, metadata={"format": "pt"})
    assert "non-finite logits" in _cli_fails_while_measuring(capsys, argv)

    tensors[name] = torch.ones(tensors[name].shape[0] + 1)
    save_file(tensors, shard, metadata={"format": "pt"})
    assert name in _cli_fails_while_measuring(capsys, argv)


def _sharded(tmp_path, name="sharded"):
    """A checkpoint saved in several shards; returns (dir, weight_map)."""
    path = _save(_tiny_hf(), tmp_path / name, max_shard_size="8KB")
    weight_map = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(weight_map.values())) > 2
    return path, weight_map


def _write_index(path, weight_map) -> None:
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_index_weight_map_must_map_tensor_names_to_shard_files(tmp_path):
    path, weight_map = _sharded(tmp_path)
    _write_index(path, sorted(weight_map))  # a list of names instead of a name -> file object
    with pytest.raises(ProfilerError, match="weight_map must be an object .* got list"):
        _load(path)
    _write_index(path, {**weight_map, "model.norm.weight": 3})
    with pytest.raises(ProfilerError, match=r"weight_map\['model.norm.weight'\] must be a shard file name"):
        _load(path)


def test_corrupt_shard_is_named(tmp_path):
    path, weight_map = _sharded(tmp_path)
    shard = path / weight_map["model.layers.1.mlp.down_proj.weight"]
    shard.write_bytes(b"\xff" * 64)
    with pytest.raises(ProfilerError, match=f"{shard.name}: cannot read safetensors header"):
        checkpoint_files(path)


def test_index_that_puts_a_tensor_in_the_wrong_shard_is_an_error(tmp_path):
    path, weight_map = _sharded(tmp_path)
    name = "model.layers.1.mlp.down_proj.weight"
    other = sorted(s for s in set(weight_map.values()) if s != weight_map[name])[0]
    _write_index(path, {**weight_map, name: other})
    with pytest.raises(ProfilerError, match=f"index puts {name} in {other}, which does not hold it"):
        _load(path)


def test_a_stray_copy_in_another_shard_does_not_override_the_indexed_one(tmp_path):
    """A tensor is loaded from the shard the index names, even if a later shard also holds a copy."""
    path, weight_map = _sharded(tmp_path)
    name = "model.embed_tokens.weight"
    later = max(weight_map.values())
    assert later > weight_map[name]  # the stray copy is read after the indexed one
    tensors = load_file(path / later)
    tensors[name] = torch.zeros(64, 32)
    save_file(tensors, path / later, metadata={"format": "pt"})
    expected = load_file(path / weight_map[name])[name]
    assert torch.equal(_load(path).embed, expected) and expected.abs().sum() > 0


def test_tensor_the_loader_never_copied_is_an_error(tmp_path, monkeypatch):
    """The copy loop itself refuses to leave a needed tensor unloaded (its values would be garbage),
    even if the file map it is given is wrong."""
    from profiler import weights

    path, weight_map = _sharded(tmp_path)
    name = "model.layers.0.mlp.up_proj.weight"
    other = sorted(s for s in set(weight_map.values()) if s != weight_map[name])[0]
    lying = {n: path / (other if n == name else s) for n, s in weight_map.items()}
    monkeypatch.setattr(weights, "checkpoint_files", lambda _root: lying)
    with pytest.raises(ProfilerError, match=f"tensor {name} was not found in {other}"):
        _load(path)


def test_weights_path_that_is_a_file_says_so(tmp_path):
    path = _save(_tiny_hf(), tmp_path / "ckpt")
    with pytest.raises(ProfilerError, match="config.json is a file, not a directory"):
        checkpoint_files(path / "config.json")
    with pytest.raises(ProfilerError, match="is a file, not a directory"):
        build_model(load_config(path), max_seq_len=16, weights_dir=str(path / "model.safetensors"))


def test_integer_tensor_is_refused(tmp_path):
    path = _save(_tiny_hf(), tmp_path / "ckpt")
    name = "model.layers.0.self_attn.o_proj.weight"
    _rewrite(path, lambda t: t.update({name: (t[name] * 10).to(torch.int32)}))
    with pytest.raises(ProfilerError, match=f"tensor {name} has dtype torch.int32"):
        _load(path)
