"""Weights for :class:`profiler.model.Transformer`: seeded dummy weights or a local HF checkpoint.

A checkpoint is a directory with ``model.safetensors`` or a sharded ``model.safetensors.index.json``
(the layout ``save_pretrained`` writes), read with the safetensors library. Hugging Face tensor names
(``model.layers.N.self_attn.q_proj.weight`` ...) are mapped into the model's fused layout: q, k and v
become consecutive row blocks of ``wqkv``, gate and up of ``w_gate_up``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from profiler.errors import ProfilerError

_NORM_NAMES = ("attn_norm", "mlp_norm", "norm", "q_norm", "k_norm")
# Buffers some older checkpoints store; they are recomputed, not loaded.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


# Dummy weights draw at most this many values per tensor and repeat them to fill larger ones: the
# CPU generator yields ~7e7 normals/s on one core, so drawing all 8e9 of an 8B model would take
# minutes; 2**21 values per tensor takes seconds. Tensors up to this size are fully random.
DUMMY_BLOCK_NUMEL = 1 << 21


@torch.no_grad()
def init_dummy_weights(model: torch.nn.Module, *, seed: int = 0) -> None:
    """Fill every parameter from ``torch.Generator().manual_seed(seed)``, drawn on the CPU in float32
    and then cast and copied to the model's dtype and device, so a seed gives the same model on every
    device.

    Matrices and biases ~ N(0, initializer_range) (transformers ``PreTrainedModel._init_weights``
    draws Linear and Embedding weights from N(0, initializer_range); biases, which it zeroes, are
    drawn too so that bias paths are exercised); norm weights are 1, as there. A tensor larger than
    ``DUMMY_BLOCK_NUMEL`` repeats its first ``DUMMY_BLOCK_NUMEL`` values (flattened order); values do
    not change the speed of the ops timed here.
    """
    gen = torch.Generator().manual_seed(seed)
    std = model.cfg.initializer_range
    for name, param in model.named_parameters():  # tied lm_head is yielded once (as embed)
        if name.rsplit(".", 1)[-1] in _NORM_NAMES:
            param.fill_(1.0)
        else:
            _fill_repeating(
                param.view(-1), torch.randn(min(param.numel(), DUMMY_BLOCK_NUMEL), generator=gen) * std
            )


def _fill_repeating(flat: torch.Tensor, block: torch.Tensor) -> None:
    """``flat[i] = block[i % len(block)]`` with one cast/copy of ``block`` to the device."""
    block = block.to(device=flat.device, dtype=flat.dtype)
    n, b = flat.numel(), block.numel()
    full = n // b
    flat[: full * b].view(full, b).copy_(block.expand(full, b))
    flat[full * b :].copy_(block[: n - full * b])


def _targets(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, slice | None]]:
    """HF tensor name -> (model parameter, row slice of it or None for the whole tensor)."""
    cfg = model.cfg
    q_rows, kv_rows, f = (
        cfg.num_attention_heads * cfg.head_dim,
        cfg.num_key_value_heads * cfg.head_dim,
        cfg.intermediate_size,
    )
    qkv = {
        "q": slice(0, q_rows),
        "k": slice(q_rows, q_rows + kv_rows),
        "v": slice(q_rows + kv_rows, q_rows + 2 * kv_rows),
    }
    out: dict[str, tuple[torch.Tensor, slice | None]] = {
        "model.embed_tokens.weight": (model.embed, None),
        "model.norm.weight": (model.norm, None),
    }
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = (model.lm_head, None)
    for i, layer in enumerate(model.layers):
        p, attn, mlp = f"model.layers.{i}.", layer.attn, layer.mlp
        out[p + "input_layernorm.weight"] = (layer.attn_norm, None)
        out[p + "post_attention_layernorm.weight"] = (layer.mlp_norm, None)
        for proj, rows in qkv.items():
            out[f"{p}self_attn.{proj}_proj.weight"] = (attn.wqkv, rows)
            if attn.bqkv is not None:
                out[f"{p}self_attn.{proj}_proj.bias"] = (attn.bqkv, rows)
        out[p + "self_attn.o_proj.weight"] = (attn.wo, None)
        if attn.bo is not None:
            out[p + "self_attn.o_proj.bias"] = (attn.bo, None)
        if attn.q_norm is not None:
            out[p + "self_attn.q_norm.weight"] = (attn.q_norm, None)
            out[p + "self_attn.k_norm.weight"] = (attn.k_norm, None)
        for proj, rows in (("gate", slice(0, f)), ("up", slice(f, 2 * f))):
            out[f"{p}mlp.{proj}_proj.weight"] = (mlp.w_gate_up, rows)
            if mlp.b_gate_up is not None:
                out[f"{p}mlp.{proj}_proj.bias"] = (mlp.b_gate_up, rows)
        out[p + "mlp.down_proj.weight"] = (mlp.w_down, None)
        if mlp.b_down is not None:
            out[p + "mlp.down_proj.bias"] = (mlp.b_down, None)
    return out


def checkpoint_dir(weights_dir: str | Path) -> Path:
    """``weights_dir`` as a Path after checking it is an existing directory.

    Raises:
        ProfilerError: the path does not exist, or it is a file (a checkpoint is the directory that
            holds ``config.json`` and the safetensors files).
    """
    root = Path(weights_dir)
    if root.is_dir():
        return root
    if root.exists():
        raise ProfilerError(
            f"weights path {root} is a file, not a directory: give the checkpoint directory that holds "
            "config.json and model.safetensors (or model.safetensors.index.json)"
        )
    raise ProfilerError(f"weights dir {root} does not exist (give a local Hugging Face checkpoint folder "
                        "with config.json and *.safetensors)")


def checkpoint_files(weights_dir: str | Path) -> dict[str, Path]:
    """Tensor name -> safetensors file holding it, for a single-file or sharded checkpoint.

    Every file's header is read (``safe_open`` reads only the header, not the tensors), so a corrupt
    shard, or an index that puts a tensor in a shard which does not hold it, is caught here.

    Raises:
        ProfilerError: the directory, the index or a shard it names is missing or unreadable; the
            index is not ``{"weight_map": {tensor name: shard file name}}``; a shard lacks a tensor
            the index puts in it. The message names the file and, where there is one, the tensor.
    """
    root = checkpoint_dir(weights_dir)
    index, single = root / "model.safetensors.index.json", root / "model.safetensors"
    if index.is_file():
        files = {name: root / shard for name, shard in _read_weight_map(index).items()}
    elif single.is_file():
        files = {name: single for name in _header_names(single)}
    else:
        raise ProfilerError(
            f"weights dir {root} has neither model.safetensors nor model.safetensors.index.json"
        )
    missing = sorted({str(p) for p in files.values() if not p.is_file()})
    if missing:
        raise ProfilerError(f"checkpoint shard(s) missing: {', '.join(missing)}")
    if index.is_file():
        _check_shards_hold(index, files)
    return files


def _read_weight_map(index: Path) -> dict[str, str]:
    """The ``weight_map`` of a sharded-checkpoint index, checked to map tensor names to file names."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProfilerError(f"{index}: not a safetensors index with a weight_map ({exc})") from None
    if not isinstance(weight_map, dict):
        raise ProfilerError(
            f"{index}: weight_map must be an object mapping tensor names to shard files, "
            f"got {type(weight_map).__name__}"
        )
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise ProfilerError(f"{index}: weight_map[{name!r}] must be a shard file name, got {shard!r}")
    return weight_map


def _header_names(path: Path) -> set[str]:
    """Tensor names in a safetensors file's header (the tensors themselves are not read)."""
    try:
        with safe_open(path, framework="pt") as fh:
            return set(fh.keys())
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ProfilerError(f"{path}: cannot read safetensors header ({exc})") from None


def _check_shards_hold(index: Path, files: dict[str, Path]) -> None:
    """Each shard holds every tensor the index puts in it."""
    for shard in sorted(set(files.values())):
        held = _header_names(shard)
        absent = sorted(name for name, path in files.items() if path == shard and name not in held)
        if absent:
            raise ProfilerError(
                f"{index}: the index puts {absent[0]} in {shard.name}, which does not hold it"
                + (f" (and {len(absent) - 1} more)" if len(absent) > 1 else "")
            )


def _check_names(root: Path, files: dict[str, Path], targets: dict, tied: bool) -> None:
    missing = [name for name in targets if name not in files]
    if missing:
        raise ProfilerError(
            f"checkpoint {root} lacks tensor {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    ignored = ("lm_head.weight",) if tied else ()  # a tied checkpoint may still store the shared matrix
    extra = [n for n in files if n not in targets and n not in ignored and not n.endswith(_IGNORED_SUFFIXES)]
    if extra:
        raise ProfilerError(
            f"checkpoint {root} has tensor {extra[0]} that this config does not use "
            f"(config and checkpoint disagree)"
        )


@torch.no_grad()
def load_hf_weights(model: torch.nn.Module, weights_dir: str | Path) -> None:
    """Copy a HF safetensors checkpoint into ``model`` (cast to its dtype, moved to its device).

    With ``tie_word_embeddings`` the LM head is the embedding matrix; any stored ``lm_head.weight`` is
    ignored, as transformers does when it ties them.

    Raises:
        ProfilerError: missing directory or files, a tensor the model needs is absent, a tensor the
            model does not have is present, a shape mismatch or a non-floating-point dtype, or a tensor
            was not found where the index puts it (the message names the tensor).
    """
    root = Path(weights_dir)
    files = checkpoint_files(root)
    targets = _targets(model)
    _check_names(root, files, targets, model.cfg.tie_word_embeddings)
    copied: set[str] = set()
    for path in sorted(set(files[name] for name in targets)):
        with safe_open(path, framework="pt") as fh:
            for name in fh.keys():
                if name in targets and files.get(name) == path:  # the index's shard, not a stray copy
                    _copy(name, fh.get_tensor(name), *targets[name])
                    copied.add(name)
    not_loaded = sorted(set(targets) - copied)
    if not_loaded:
        raise ProfilerError(
            f"checkpoint {root}: tensor {not_loaded[0]} was not found in {files[not_loaded[0]].name}, "
            "where the index puts it; nothing was loaded for it"
        )


def _copy(name: str, src: torch.Tensor, dst: torch.Tensor, rows: slice | None) -> None:
    view = dst if rows is None else dst[rows]
    if not src.dtype.is_floating_point:  # e.g. quantized codes: casting them to float is not the model
        raise ProfilerError(
            f"tensor {name} has dtype {src.dtype} in the checkpoint; a floating-point dtype is expected"
        )
    if tuple(src.shape) != tuple(view.shape):
        raise ProfilerError(
            f"tensor {name} has shape {tuple(src.shape)} in the checkpoint, the config expects "
            f"{tuple(view.shape)}"
        )
    view.copy_(src)


__all__ = ["init_dummy_weights", "load_hf_weights", "checkpoint_files", "checkpoint_dir"]
