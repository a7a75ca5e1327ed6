"""The "torch" variant of every op in :mod:`profiler.backends` (registered on import).

These are the baselines the Triton kernels are measured against, so each uses the fastest plain
PyTorch path in the tensors' own dtype: ``F.linear`` (cuBLAS; oneDNN for float32 on CPU), ``F.rms_norm``,
``F.scaled_dot_product_attention`` for prefill, two batched GEMMs around an fp32 softmax for decode.
Shapes follow the docstring of :mod:`profiler.backends`; inputs may be strided views whose last
dimension is contiguous (the model passes the q/k/v slices of its fused QKV projection).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from profiler.backends import register


# oneDNN's matmul, the op PyTorch's Inductor CPU backend lowers linear layers to. For float32 on CPU
# it reads an [N, K] weight about twice as fast as F.linear's MKL sgemv at decode's small M (measured
# on this project's AMD EPYC CI hosts: 25 vs 11 GB/s for a 49152 × 576 LM head at M = 1, and never
# slower for M = 1..128). Absent from builds without oneDNN, where F.linear is used.
_ONEDNN_LINEAR = (getattr(torch.ops.mkldnn, "_linear_pointwise", None)
                  if torch.backends.mkldnn.is_available() else None)


@register("linear", "torch")
def linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x [..., K] @ w[N, K].T + bias [N]`` -> ``[..., N]``: ``F.linear`` (cuBLAS on GPU), oneDNN for
    float32 on CPU."""
    if _ONEDNN_LINEAR is not None and x.device.type == "cpu" and x.dtype == torch.float32 == w.dtype:
        return _ONEDNN_LINEAR(x, w, bias, "none", [], "")
    return F.linear(x, w, bias)


@register("rmsnorm", "torch")
def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    """RMSNorm over the last dim (Zhang & Sennrich 2019): ``x / sqrt(mean(x^2) + eps) * weight``.

    With ``residual`` returns ``(rmsnorm(x + residual), x + residual)``. ``F.rms_norm`` accumulates the
    mean of squares in fp32 for half inputs.
    """
    if residual is not None:
        x = x + residual
        return F.rms_norm(x, (x.shape[-1],), weight, eps), x
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


@register("rope", "torch")
def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Half-split rotary embedding (HF ``rotate_half``: channel i pairs with i + D/2).

    ``x [B, H, T, D]``, ``cos``/``sin`` ``[T, D/2]`` float32. Rotates in float32, returns x.dtype.
    """
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return out.to(x.dtype)


@register("swiglu", "torch")
def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """SwiGLU gate (Shazeer 2020): ``silu(gate) * up``."""
    return F.silu(gate) * up


def _causal_mask(t: int, s: int, window: int | None, device: torch.device) -> torch.Tensor:
    """Bottom-right aligned boolean mask [t, s]: query i (absolute s - t + i) sees key j when allowed."""
    q_pos = torch.arange(s - t, s, device=device)[:, None]
    k_pos = torch.arange(s, device=device)[None, :]
    mask = k_pos <= q_pos
    if window is not None:
        mask &= k_pos > q_pos - window
    return mask


@register("attention_prefill", "torch")
def attention_prefill(q, k, v, scale: float, window: int | None) -> torch.Tensor:
    """Causal GQA attention, queries aligned to the end of the keys (see :mod:`profiler.backends`).

    ``q [B, Hq, T, D]``, ``k``/``v`` ``[B, Hkv, S, D]`` -> ``[B, Hq, T, D]``. With T == S and no window the
    fused causal path (``is_causal``) is used; otherwise an explicit bottom-right mask.
    """
    t, s = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if t == s and (window is None or window >= s):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    mask = _causal_mask(t, s, window, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


@register("attention_decode", "torch")
def attention_decode(
    q, k_cache, v_cache, seq_lens: torch.Tensor, scale: float, window: int | None
) -> torch.Tensor:
    """One query per sequence over its first ``seq_lens[b]`` cached keys (minus any window).

    ``q [B, Hq, D]``, caches ``[B, Hkv, S, D]``, ``seq_lens [B]`` int32 -> ``[B, Hq, D]``. Reads every
    cache position passed in and masks per sequence without a host sync, so callers pass the cache
    sliced to the longest valid prefix (the model slices with a Python int). The query heads of one KV
    head are grouped into a [G, D] block, so K/V are read once and never expanded; scores and softmax
    are in fp32 (as SDPA's math path does for half inputs).
    """
    b, hq, d = q.shape
    hkv, s = k_cache.shape[1], k_cache.shape[2]
    qg = q.reshape(b, hkv, hq // hkv, d)
    scores = torch.matmul(qg, k_cache.transpose(-1, -2)).float() * scale  # [B, Hkv, G, S]
    pos = torch.arange(s, device=q.device)
    lens = seq_lens.to(device=q.device, dtype=torch.long)[:, None]
    valid = pos[None, :] < lens
    if window is not None:
        valid &= pos[None, :] >= lens - window
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(v_cache.dtype)
    return torch.matmul(probs, v_cache).reshape(b, hq, d)


__all__ = ["linear", "rmsnorm", "rope", "swiglu", "attention_prefill", "attention_decode"]
