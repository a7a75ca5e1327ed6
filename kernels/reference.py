"""Plain-torch references for every kernel, shared by the tests and the kernel benchmark.

Each reference computes in float32 (float64 when given float64 inputs, which the tests use as the
"truth") and casts the result back to the input dtype. ``upcast=False`` instead computes in the
input dtype, which is what an ordinary low-precision PyTorch implementation gets; the tests bound
a kernel's error by a multiple of that implementation's error (the FlashAttention rule,
Dao-AILab/flash-attention ``tests/test_flash_attn.py``; kernels.md 3.3), see
:func:`check_against_reference`.

Memory traffic is irrelevant here: the references materialise the full score matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 if any input is float64, else float32."""
    wide = any(t is not None and t.dtype == torch.float64 for t in tensors)
    return torch.float64 if wide else torch.float32


def _work_dtype(upcast: bool, *tensors: torch.Tensor | None) -> torch.dtype:
    return _compute_dtype(*tensors) if upcast else tensors[0].dtype


def matmul_ref(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, *,
               upcast: bool = True) -> torch.Tensor:
    """``a [M, K] @ b [K, N] + bias [N]`` -> [M, N] in ``a``'s dtype."""
    cd = _work_dtype(upcast, a, b, bias)
    c = a.to(cd) @ b.to(cd)
    if bias is not None:
        c = c + bias.to(cd)
    return c.to(a.dtype)


def causal_mask(T: int, S: int, window: int | None = None,
                device: torch.device | None = None) -> torch.Tensor:
    """[T, S] bool, True where query i may see key j under bottom-right causal alignment: query i
    sits at absolute position S - T + i and sees keys j <= S - T + i, and with a sliding window w
    also needs j > S - T + i - w (FlashAttention >= 2.1 convention; torch SDPA ``is_causal`` aligns
    top-left instead, kernels.md 3.6)."""
    pos = (S - T) + torch.arange(T, device=device)[:, None]
    j = torch.arange(S, device=device)[None, :]
    visible = j <= pos
    if window is not None:
        visible &= j > pos - window
    return visible


def attention_prefill_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                          window: int | None = None, *, upcast: bool = True) -> torch.Tensor:
    """Causal GQA attention, q [B, Hq, T, D], k/v [B, Hkv, S, D] -> [B, Hq, T, D] in q's dtype.

    Bottom-right causal alignment (:func:`causal_mask`); query head h reads KV head h // (Hq // Hkv)
    (the HF ``repeat_kv`` order); ``scale`` defaults to 1 / sqrt(D).
    """
    cd = _work_dtype(upcast, q, k, v)
    T, S, D = q.shape[2], k.shape[2], q.shape[3]
    group = q.shape[1] // k.shape[1]
    kx = k.to(cd).repeat_interleave(group, dim=1)
    vx = v.to(cd).repeat_interleave(group, dim=1)
    scale = D ** -0.5 if scale is None else scale
    scores = (q.to(cd) @ kx.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~causal_mask(T, S, window, q.device), float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return (probs @ vx).to(q.dtype)


def attention_decode_ref(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                         seq_lens: torch.Tensor, scale: float | None = None, window: int | None = None, *,
                         upcast: bool = True) -> torch.Tensor:
    """One query per sequence over its first ``seq_lens[b]`` cached positions.

    q [B, Hq, D], k_cache/v_cache [B, Hkv, S_max, D], seq_lens [B] -> [B, Hq, D]. The query is the
    token at position seq_lens[b] - 1 (bottom-right alignment with T = 1).
    """
    rows = []
    for b, length in enumerate(seq_lens.tolist()):
        k, v = k_cache[b:b + 1, :, :length], v_cache[b:b + 1, :, :length]
        o = attention_prefill_ref(q[b:b + 1, :, None], k, v, scale, window, upcast=upcast)
        rows.append(o[0, :, 0])
    return torch.stack(rows)


def rmsnorm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float,
                residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm over the last dim with HF ``LlamaRMSNorm``'s rounding order (transformers
    ``models/llama/modeling_llama.py``): ``h = x * rsqrt(mean(x^2) + eps)`` in fp32, rounded to x's
    dtype, then multiplied by ``weight`` and rounded to x's dtype again (HF multiplies in the model
    dtype; an fp16 x fp16 product is exact in fp32, so one fp32 multiply and one rounding is the
    same). With ``residual``: returns ``(rmsnorm(s), s)`` where ``s = x + residual`` rounded to x's
    dtype (the decoder's residual add).
    """
    cd = _compute_dtype(x, weight, residual)
    if residual is not None:
        x = (x.to(cd) + residual.to(cd)).to(x.dtype)
    xf = x.to(cd)
    h = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    y = (weight.to(cd) * h.to(x.dtype).to(cd)).to(x.dtype)
    return y if residual is None else (y, x)


def rope_ref(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, upcast: bool = True) -> torch.Tensor:
    """Half-split rotary embedding (HF ``rotate_half``: element i pairs with i + D/2).

    x [B, H, T, D], cos/sin [T, D/2] -> [B, H, T, D]:
    ``out[:D/2] = x1 cos - x2 sin``, ``out[D/2:] = x2 cos + x1 sin``. ``upcast=False`` rounds cos/sin to
    x's dtype first and computes in it, as HF's ``apply_rotary_pos_emb`` does.
    """
    cd = _work_dtype(upcast, x, cos, sin)
    half = x.shape[-1] // 2
    xf, c, s = x.to(cd), cos.to(cd), sin.to(cd)
    x1, x2 = xf[..., :half], xf[..., half:]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).to(x.dtype)


def swiglu_ref(gate: torch.Tensor, up: torch.Tensor, *, upcast: bool = True) -> torch.Tensor:
    """``silu(gate) * up`` for gate/up [..., F] -> [..., F] in gate's dtype."""
    cd = _work_dtype(upcast, gate, up)
    return (F.silu(gate.to(cd)) * up.to(cd)).to(gate.dtype)


def max_abs_error(actual: torch.Tensor, truth: torch.Tensor) -> float:
    """max |actual - truth| in float64; infinity if ``actual`` has a NaN or inf where ``truth`` is
    finite (an unwritten or overflowed element)."""
    diff = (actual.double() - truth.double()).abs()
    if not torch.isfinite(diff).all():
        return float("inf")
    return diff.max().item() if diff.numel() else 0.0


def check_against_reference(actual: torch.Tensor, truth: torch.Tensor, baseline: torch.Tensor,
                            factor: float = 2.0, atol: float = 0.0) -> tuple[float, float]:
    """Check ``max|actual - truth| <= factor * max|baseline - truth| + atol``.

    ``truth`` is a float64 (or float32) reference; ``baseline`` is a plain PyTorch computation in the
    kernel's dtype, so the bound scales with what that precision can achieve (factor 2 as in
    FlashAttention's tests, kernels.md 3.3). Returns (kernel error, baseline error).

    Raises:
        AssertionError: the bound is exceeded (message gives both errors), or shapes differ.
    """
    if actual.shape != truth.shape:
        raise AssertionError(f"shape {tuple(actual.shape)} != reference shape {tuple(truth.shape)}")
    err, base = max_abs_error(actual, truth), max_abs_error(baseline, truth)
    if not err <= factor * base + atol:
        raise AssertionError(f"kernel error {err:.3g} exceeds {factor} x torch low-precision error {base:.3g}"
                             f" + atol {atol:.3g}")
    return err, base
