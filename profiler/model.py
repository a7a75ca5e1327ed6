"""Llama-family decoder (llama, mistral, qwen2, qwen3) with a static KV cache, for timing decode.

The layer structure follows the Hugging Face transformers modeling files of these families (pre-norm
RMSNorm blocks, GQA attention with half-split RoPE, SwiGLU MLP; Qwen2 q/k/v biases; Qwen3 per-head
q/k RMSNorm). Differences that are only about speed: Q/K/V share one fused weight and gate/up another
(one GEMM each), the residual add is fused into the following RMSNorm, and the KV cache is one
preallocated buffer per layer. Every hot op goes through an :class:`~profiler.backends.Ops` bundle.
"""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import torch
from torch import nn

from profiler.backends import Ops, resolve
from profiler.config import DENSE_MODEL_TYPES, ModelConfig, RopeScaling
from profiler.errors import ConfigError, KVCacheOverflowError, ProfilerError

DEFAULT_MAX_SEQ_LEN_CAP = 4096
# record_function labels of set_profiling_labels(True); "norm" covers every RMSNorm but the q/k ones.
LABELS: tuple[str, ...] = (
    "embed",
    "norm",
    "attn.qkv_proj",
    "attn.qk_norm",
    "attn.rope",
    "attn.kv_write",
    "attn.attention",
    "attn.o_proj",
    "mlp.gate_up_proj",
    "mlp.swiglu",
    "mlp.down_proj",
    "lm_head",
)
_NO_LABEL = contextlib.nullcontext()


class _Labels:
    """Shared on/off switch for ``torch.profiler.record_function`` regions (off: a reused null context)."""

    enabled = False

    def __call__(self, label: str):
        return torch.profiler.record_function(label) if self.enabled else _NO_LABEL


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None) -> torch.Tensor:
    """Inverse frequencies ``theta^(-2i/D)``, i < D/2, float64 [D/2] (Su et al. 2021, RoFormer).

    With llama3 scaling, wavelengths longer than ``orig / low_freq_factor`` are divided by ``factor``,
    those shorter than ``orig / high_freq_factor`` kept, and the band between blended linearly in
    ``orig / wavelength`` (Meta Llama 3.1 ``apply_scaling``; transformers ``_compute_llama3_parameters``).
    """
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    if scaling is None:
        return inv
    orig = scaling.original_max_position_embeddings
    wavelen = 2 * math.pi / inv
    smooth = (orig / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    blended = (1 - smooth) * inv / scaling.factor + smooth * inv
    out = torch.where(wavelen > orig / scaling.low_freq_factor, inv / scaling.factor, blended)
    return torch.where(wavelen < orig / scaling.high_freq_factor, inv, out)


def rope_tables(cfg: ModelConfig, max_seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of ``position * inv_freq`` for positions 0..max_seq_len-1: float32 [S, D/2] each.

    Angles are computed in float64 on the CPU and rounded once to float32.
    """
    angles = torch.outer(
        torch.arange(max_seq_len, dtype=torch.float64),
        rope_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling),
    )
    return angles.cos().float(), angles.sin().float()


class StaticPos(NamedTuple):
    """Position of a static decode step, held on the device (see :meth:`Transformer.decode_static`).

    ``pos``: int64 [1], the cache position written and the query's position; ``seq_lens``: int32 [B],
    contiguous, every entry ``pos + 1`` (the attention kernels read one length per sequence).
    """

    pos: torch.Tensor
    seq_lens: torch.Tensor


def _param(*shape: int, dtype: torch.dtype, device) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape, dtype=dtype, device=device), requires_grad=False)


class Attention(nn.Module):
    """GQA self-attention with fused QKV weight ``wqkv [(Hq + 2 Hkv) D, H]`` and a static KV cache."""

    def __init__(
        self, cfg: ModelConfig, ops: Ops, labels: _Labels, cache_shape: tuple[int, ...], dtype, device
    ):
        super().__init__()
        self.cfg, self.ops, self.label = cfg, ops, labels
        self.hq, self.hkv, self.d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        qkv_rows = (self.hq + 2 * self.hkv) * self.d
        self.wqkv = _param(qkv_rows, cfg.hidden_size, dtype=dtype, device=device)
        self.bqkv = _param(qkv_rows, dtype=dtype, device=device) if cfg.qkv_bias else None
        self.wo = _param(cfg.hidden_size, self.hq * self.d, dtype=dtype, device=device)
        self.bo = _param(cfg.hidden_size, dtype=dtype, device=device) if cfg.o_bias else None
        self.q_norm = _param(self.d, dtype=dtype, device=device) if cfg.qk_norm else None
        self.k_norm = _param(self.d, dtype=dtype, device=device) if cfg.qk_norm else None
        self.register_buffer(
            "k_cache", torch.zeros(cache_shape, dtype=dtype, device=device), persistent=False
        )
        self.register_buffer(
            "v_cache", torch.zeros(cache_shape, dtype=dtype, device=device), persistent=False
        )
        self.scale = self.d**-0.5

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        b, t, _ = x.shape
        with self.label("attn.qkv_proj"):
            qkv = self.ops.linear(x, self.wqkv, self.bqkv).view(b, t, self.hq + 2 * self.hkv, self.d)
        q, k, v = qkv.split([self.hq, self.hkv, self.hkv], dim=2)
        if self.q_norm is None:
            # q and k heads sit side by side in the fused output: one rope call rotates both.
            with self.label("attn.rope"):
                qk = self.ops.rope(qkv[:, :, : self.hq + self.hkv].transpose(1, 2), cos, sin)
            return qk[:, : self.hq], qk[:, self.hq :], v.transpose(1, 2)
        with self.label("attn.qk_norm"):
            q = self.ops.rmsnorm(q, self.q_norm, self.cfg.rms_norm_eps)
            k = self.ops.rmsnorm(k, self.k_norm, self.cfg.rms_norm_eps)
        with self.label("attn.rope"):
            q = self.ops.rope(q.transpose(1, 2), cos, sin)
            k = self.ops.rope(k.transpose(1, 2), cos, sin)
        return q, k, v.transpose(1, 2)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos: int | StaticPos
    ) -> torch.Tensor:
        if isinstance(start_pos, StaticPos):
            return self._decode_static(x, cos, sin, start_pos)
        b, t, _ = x.shape
        q, k, v = self._qkv(x, cos, sin)
        end = start_pos + t
        with self.label("attn.kv_write"):
            self.k_cache[:b, :, start_pos:end] = k
            self.v_cache[:b, :, start_pos:end] = v
        window = self.cfg.sliding_window
        first = 0 if window is None else max(0, start_pos + 1 - window)  # oldest key any query can see
        keys, values = self.k_cache[:b, :, first:end], self.v_cache[:b, :, first:end]
        with self.label("attn.attention"):
            if t == 1:
                seq_lens = torch.full((b,), end - first, dtype=torch.int32, device=x.device)
                out = self.ops.attention_decode(q[:, :, 0], keys, values, seq_lens, self.scale, window)
            else:
                out = self.ops.attention_prefill(q, keys, values, self.scale, window).transpose(1, 2)
        with self.label("attn.o_proj"):
            return self.ops.linear(out.reshape(b, t, self.hq * self.d), self.wo, self.bo)

    def _decode_static(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, at: StaticPos
    ) -> torch.Tensor:
        """One token per sequence (``x [B, 1, H]``) at the device position ``at.pos``: the K/V rows are
        written with ``index_copy_`` and attention runs over the whole cache, masked by ``at.seq_lens``
        (and the sliding window), so no shape or launch argument depends on the position."""
        b = x.shape[0]
        q, k, v = self._qkv(x, cos, sin)
        keys, values = self.k_cache[:b], self.v_cache[:b]
        with self.label("attn.kv_write"):
            keys.index_copy_(2, at.pos, k)
            values.index_copy_(2, at.pos, v)
        with self.label("attn.attention"):
            out = self.ops.attention_decode(q[:, :, 0], keys, values, at.seq_lens, self.scale,
                                            self.cfg.sliding_window)
        with self.label("attn.o_proj"):
            return self.ops.linear(out.reshape(b, 1, self.hq * self.d), self.wo, self.bo)


class MLP(nn.Module):
    """SwiGLU MLP with fused ``w_gate_up [2F, H]`` (rows 0..F-1 gate, F..2F-1 up) and ``w_down [H, F]``."""

    def __init__(self, cfg: ModelConfig, ops: Ops, labels: _Labels, dtype, device):
        super().__init__()
        self.ops, self.label, self.f = ops, labels, cfg.intermediate_size
        self.w_gate_up = _param(2 * self.f, cfg.hidden_size, dtype=dtype, device=device)
        self.b_gate_up = _param(2 * self.f, dtype=dtype, device=device) if cfg.mlp_bias else None
        self.w_down = _param(cfg.hidden_size, self.f, dtype=dtype, device=device)
        self.b_down = _param(cfg.hidden_size, dtype=dtype, device=device) if cfg.mlp_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.label("mlp.gate_up_proj"):
            gate_up = self.ops.linear(x, self.w_gate_up, self.b_gate_up)
        with self.label("mlp.swiglu"):
            h = self.ops.swiglu(gate_up[..., : self.f], gate_up[..., self.f :])
        with self.label("mlp.down_proj"):
            return self.ops.linear(h, self.w_down, self.b_down)


class Block(nn.Module):
    """Pre-norm decoder layer: ``h = x + attn(norm(x)); out = h + mlp(norm(h))`` (residual adds fused)."""

    def __init__(self, cfg: ModelConfig, ops: Ops, labels: _Labels, cache_shape, dtype, device):
        super().__init__()
        self.ops, self.label, self.eps = ops, labels, cfg.rms_norm_eps
        self.attn_norm = _param(cfg.hidden_size, dtype=dtype, device=device)
        self.attn = Attention(cfg, ops, labels, cache_shape, dtype, device)
        self.mlp_norm = _param(cfg.hidden_size, dtype=dtype, device=device)
        self.mlp = MLP(cfg, ops, labels, dtype, device)

    def forward(self, x, residual, cos, sin, start_pos: int | StaticPos):
        """``x`` is the last sub-layer output not yet added to ``residual`` (None before layer 0);
        ``start_pos`` a StaticPos on the static decode path (:meth:`Transformer.decode_static`)."""
        with self.label("norm"):
            if residual is None:
                h, residual = self.ops.rmsnorm(x, self.attn_norm, self.eps), x
            else:
                h, residual = self.ops.rmsnorm(x, self.attn_norm, self.eps, residual)
        x = self.attn(h, cos, sin, start_pos)
        with self.label("norm"):
            h, residual = self.ops.rmsnorm(x, self.mlp_norm, self.eps, residual)
        return self.mlp(h), residual


class Transformer(nn.Module):
    """Decoder-only Llama-family model with a static KV cache of ``[max_batch_size, Hkv, max_seq_len, D]``
    per layer (K and V), in the model dtype.

    Parameters: ``embed [V, H]``, ``layers[i]`` (see :class:`Block`), ``norm [H]``, ``lm_head [V, H]``
    (the same Parameter as ``embed`` when ``cfg.tie_word_embeddings``).
    """

    def __init__(
        self, cfg: ModelConfig, *, max_batch_size: int, max_seq_len: int, ops: Ops, dtype: torch.dtype, device
    ) -> None:
        super().__init__()
        self.cfg, self.ops = cfg, ops
        self.max_batch_size, self.max_seq_len = max_batch_size, max_seq_len
        self.labels = _Labels()
        cache_shape = (max_batch_size, cfg.num_key_value_heads, max_seq_len, cfg.head_dim)
        self.embed = _param(cfg.vocab_size, cfg.hidden_size, dtype=dtype, device=device)
        self.layers = nn.ModuleList(
            Block(cfg, ops, self.labels, cache_shape, dtype, device) for _ in range(cfg.num_hidden_layers)
        )
        self.norm = _param(cfg.hidden_size, dtype=dtype, device=device)
        self.lm_head = (
            self.embed
            if cfg.tie_word_embeddings
            else _param(cfg.vocab_size, cfg.hidden_size, dtype=dtype, device=device)
        )
        cos, sin = rope_tables(cfg, max_seq_len)
        self.register_buffer("rope_cos", cos.to(device), persistent=False)
        self.register_buffer("rope_sin", sin.to(device), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.dtype

    @property
    def device(self) -> torch.device:
        return self.embed.device

    def set_profiling_labels(self, enabled: bool) -> None:
        """Wrap every op call in ``torch.profiler.record_function`` regions while enabled; off by default
        (no profiler events). Labels: ``LABELS``."""
        self.labels.enabled = bool(enabled)

    def set_ops(self, ops: Ops) -> None:
        """Switch every module to another op bundle (e.g. ``resolve("triton")``) without rebuilding."""
        for module in self.modules():
            if hasattr(module, "ops"):
                module.ops = ops

    def resize_cache(self, max_batch_size: int, max_seq_len: int) -> None:
        """Reallocate the KV cache (and RoPE tables) for a new shape, keeping the weights: a sweep
        builds the weights once and gives each point a cache of exactly its size.

        Raises:
            ProfilerError: sizes outside 1..max_position_embeddings / below 1.
        """
        check_build_args(self.cfg, max_batch_size, max_seq_len)
        shape = (max_batch_size, self.cfg.num_key_value_heads, max_seq_len, self.cfg.head_dim)
        for layer in self.layers:
            layer.attn.k_cache = layer.attn.v_cache = None  # free the old cache before allocating
            layer.attn.k_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
            layer.attn.v_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        cos, sin = rope_tables(self.cfg, max_seq_len)
        self.rope_cos, self.rope_sin = cos.to(self.device), sin.to(self.device)
        self.max_batch_size, self.max_seq_len = max_batch_size, max_seq_len

    def reset_cache(self) -> None:
        """Zero the KV cache of every layer (not needed between runs that start at position 0)."""
        for layer in self.layers:
            layer.attn.k_cache.zero_()
            layer.attn.v_cache.zero_()

    def _check(self, tokens: torch.Tensor, start_pos: int) -> None:
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32) or tokens.shape[1] == 0:
            raise ProfilerError(
                f"tokens must be an int64 tensor [batch, seq_len >= 1], got {tuple(tokens.shape)} "
                f"{tokens.dtype}"
            )
        b, t = tokens.shape
        if b > self.max_batch_size:
            raise ProfilerError(f"batch size {b} exceeds max_batch_size {self.max_batch_size}")
        if start_pos < 0:
            raise ProfilerError(f"start_pos must be >= 0, got {start_pos}")
        if start_pos + t > self.max_seq_len:
            raise KVCacheOverflowError(
                f"KV cache overflow: positions {start_pos}..{start_pos + t - 1} do not fit "
                f"max_seq_len {self.max_seq_len}"
            )

    def forward(self, tokens: torch.Tensor, start_pos: int, *, all_logits: bool = False) -> torch.Tensor:
        """Run ``tokens [B, T]`` at positions ``start_pos .. start_pos+T-1`` and update the KV cache there.

        T > 1 is a prefill (``ops.attention_prefill`` over cache positions ``[0, start_pos+T)``); T == 1
        a decode step (``ops.attention_decode`` with ``seq_lens = start_pos + 1``). The cache must
        already hold positions ``[0, start_pos)`` of these sequences. No host synchronisation.

        Returns:
            float32 logits ``[B, V]`` of the last position, or ``[B, T, V]`` with ``all_logits``.

        Raises:
            KVCacheOverflowError: ``start_pos + T > max_seq_len`` (raised before anything is written).
            ProfilerError: ``B > max_batch_size``, negative start_pos, or tokens not an int tensor [B, T].
        """
        self._check(tokens, start_pos)
        t = tokens.shape[1]
        cos, sin = self.rope_cos[start_pos : start_pos + t], self.rope_sin[start_pos : start_pos + t]
        with self.labels("embed"):
            x = nn.functional.embedding(tokens, self.embed)
        residual = None
        for layer in self.layers:
            x, residual = layer(x, residual, cos, sin, start_pos)
        with self.labels("norm"):
            x, _ = self.ops.rmsnorm(x, self.norm, self.cfg.rms_norm_eps, residual)
        if not all_logits:
            x = x[:, -1]
        with self.labels("lm_head"):
            return self.ops.linear(x, self.lm_head, None).float()

    def decode_static(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """One decode step with the position held on the device, for CUDA-graph capture.

        The same math as ``forward(tokens, start_pos)`` with T == 1 and ``start_pos == pos``, but no
        shape, slice or launch argument depends on the position: RoPE rows are picked with
        ``index_select``, K/V are written with ``index_copy_`` at ``pos``, and ``ops.attention_decode``
        runs over the whole cache ``[:B]`` with ``seq_lens = pos + 1`` (and the sliding window) on the
        device. So one captured graph replays at every position after ``pos`` is rewritten in place.
        No host synchronisation and no branch on tensor values; the cost is that the attention op is
        given all ``max_seq_len`` positions (the Triton kernel skips the masked ones; the torch
        variant reads and masks them, which needs them finite: the cache starts zeroed and only ever
        holds computed K/V).

        Args:
            tokens: int64/int32 [B, 1], B <= max_batch_size.
            pos: int64 [1] on the model's device, 0 <= pos < max_seq_len; the cache must hold
                positions ``[0, pos)`` of these sequences. The value is not checked (that would need a
                device sync): an index past the cache makes ``index_select`` fail (CPU) or a CUDA
                device-side assert.

        Returns:
            float32 logits [B, V].

        Raises:
            ProfilerError: tokens not an int tensor [B, 1], B > max_batch_size, or pos not an int64
                tensor [1] on the model's device.
        """
        self._check_static(tokens, pos)
        b = tokens.shape[0]
        at = StaticPos(pos, (pos + 1).to(torch.int32).repeat(b))  # repeat: contiguous [B]
        cos, sin = self.rope_cos.index_select(0, pos), self.rope_sin.index_select(0, pos)
        with self.labels("embed"):
            x = nn.functional.embedding(tokens, self.embed)
        residual = None
        for layer in self.layers:
            x, residual = layer(x, residual, cos, sin, at)
        with self.labels("norm"):
            x, _ = self.ops.rmsnorm(x, self.norm, self.cfg.rms_norm_eps, residual)
        with self.labels("lm_head"):
            return self.ops.linear(x[:, -1], self.lm_head, None).float()

    def _check_static(self, tokens: torch.Tensor, pos: torch.Tensor) -> None:
        self._check(tokens, 0)
        if tokens.shape[1] != 1:
            raise ProfilerError(
                f"decode_static takes one token per sequence [B, 1], got {tuple(tokens.shape)}"
            )
        if not isinstance(pos, torch.Tensor) or pos.shape != (1,) or pos.dtype != torch.int64:
            got = f"{tuple(pos.shape)} {pos.dtype}" if isinstance(pos, torch.Tensor) else type(pos).__name__
            raise ProfilerError(f"pos must be an int64 tensor of shape [1], got {got}")
        if pos.device != self.device or tokens.device != self.device:
            raise ProfilerError(f"tokens ({tokens.device}) and pos ({pos.device}) must be on the model's "
                                f"device ({self.device})")


def default_max_seq_len(cfg: ModelConfig) -> int:
    """``min(max_position_embeddings, 4096)``: a cache that fits typical prompt + generation lengths
    without allocating 128k positions per layer for long-context models."""
    return min(cfg.max_position_embeddings, DEFAULT_MAX_SEQ_LEN_CAP)


def check_build_args(cfg: ModelConfig, max_batch_size: int, max_seq_len: int) -> None:
    if cfg.model_type not in DENSE_MODEL_TYPES or cfg.is_moe:
        raise ConfigError(
            f"model_type {cfg.model_type!r} ({cfg.name}) has no decode model: mixture-of-experts "
            f"configs are for roofline estimates only; decode supports {', '.join(DENSE_MODEL_TYPES)}"
        )
    if max_batch_size < 1:
        raise ProfilerError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if not 1 <= max_seq_len <= cfg.max_position_embeddings:
        raise ProfilerError(
            f"max_seq_len must be in 1..max_position_embeddings ({cfg.max_position_embeddings}), "
            f"got {max_seq_len}"
        )


def build_model(
    cfg: ModelConfig,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    max_batch_size: int = 1,
    max_seq_len: int | None = None,
    ops: Ops | None = None,
    seed: int = 0,
    weights_dir: str | None = None,
) -> Transformer:
    """Build a :class:`Transformer` in eval mode with its KV cache allocated.

    Weights: from the HF safetensors checkpoint in ``weights_dir`` when given, else seeded dummy
    weights (:func:`profiler.weights.init_dummy_weights`, identical on every device for one seed).
    ``max_seq_len`` defaults to :func:`default_max_seq_len`; ``ops`` to ``resolve("torch")``.

    Raises:
        ConfigError: MoE or non-Llama-family config.
        ProfilerError: max_batch_size < 1, max_seq_len outside 1..max_position_embeddings, or a bad
            checkpoint (see :func:`profiler.weights.load_hf_weights`).
    """
    from profiler.weights import init_dummy_weights, load_hf_weights

    max_seq_len = default_max_seq_len(cfg) if max_seq_len is None else max_seq_len
    check_build_args(cfg, max_batch_size, max_seq_len)
    model = Transformer(
        cfg,
        max_batch_size=max_batch_size,
        max_seq_len=max_seq_len,
        ops=ops if ops is not None else resolve("torch"),
        dtype=dtype,
        device=torch.device(device),
    )
    if weights_dir is not None:
        load_hf_weights(model, weights_dir)
    else:
        init_dummy_weights(model, seed=seed)
    return model.eval()


__all__ = [
    "LABELS", "StaticPos", "Transformer", "build_model", "default_max_seq_len", "rope_inv_freq", "rope_tables",
]
