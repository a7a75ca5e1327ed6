"""Causal flash attention for prefill, with GQA and an optional sliding window.

FlashAttention-2's forward algorithm (Dao, arXiv 2307.08691): each program owns BLOCK_M query rows
of one head and streams BLOCK_N keys at a time, keeping a running row maximum ``m``, running sum
``l`` and unnormalised output in fp32 (online softmax), so the T x S score matrix never exists.
Softmax uses ``exp2`` with the scale multiplied by log2(e) = 1.44269504 (as Triton's fused-attention
tutorial does).

Key blocks are visited in up to three ranges: blocks partly cut by the sliding window (masked),
blocks every row of the query block fully sees (no mask), and blocks cut by the causal diagonal
or the end of the keys (masked). Blocks nobody sees are skipped.

Causal alignment is bottom-right: query i sits at absolute position S - T + i.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._common import (autotune_or_fixed, check_device, check_number, check_positive_int, check_same_dtype,
                             check_tensor, dot_precision, next_power_of_2, output)

LOG2_E = 1.4426950408889634  # 1 / ln 2: exp(x) = exp2(x * log2(e))
MAX_HEAD_DIM = 256


def _config(bm: int, bn: int, stages: int, warps: int) -> triton.Config:
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_stages=stages, num_warps=warps)


# Hopper configs, after Triton's 06-fused-attention tutorial (BLOCK_M 64/128, BLOCK_N 32-128,
# 2-4 stages, 4-8 warps; kernels.md 1.1 and 1.7). 128-row query tiles with 8 warps give two wgmma
# warpgroups of 64 rows each; deeper pipelines only pay off for the smaller K/V tiles. The two 64-row
# 8-warp configs are for head_dim 256, where every 4-warp tile spills (see _prune).
_CONFIGS = [
    _config(128, 64, 3, 8),
    _config(128, 128, 2, 8),
    _config(128, 64, 2, 4),
    _config(128, 32, 3, 4),
    _config(64, 64, 3, 4),
    _config(64, 64, 4, 4),
    _config(64, 128, 2, 4),
    _config(64, 32, 4, 4),
    _config(64, 64, 2, 8),
    _config(64, 32, 3, 8),
]
# Interpreter: 32 x 32 tiles, small enough that the test shapes cross several query and key blocks.
_FIXED = _config(32, 32, 1, 4)
_SMEM_BUDGET_BYTES = 200 * 1024  # below Hopper's 227 KB per block, leaving room for the compiler
# fp32 values each thread holds for the output accumulator (BLOCK_M x BLOCK_D) and the score tile
# (BLOCK_M x BLOCK_N), out of 255 registers. Compiled for sm_90 (python -m benchmarks.compile_check,
# Triton 3.9, bf16), configs above 128 spilled at head_dim 128 (128x64 tiles with 4 warps: 192 values,
# a 336-byte stack) and 256 (1.4 KB stacks); configs at or below it did not, or by < 50 bytes.
_MAX_TILE_VALUES_PER_THREAD = 128


def _prune(configs, named_args, **kwargs):
    """Drop configs whose Q tile plus pipelined K and V tiles (16-bit) would not fit shared memory
    (this matters at head_dim 256), and configs whose fp32 tiles would spill registers; when none
    is left, keep the one with the smallest register footprint."""
    block_d = kwargs["BLOCK_D"]

    def smem(c):
        return 2 * block_d * (c.kwargs["BLOCK_M"] + 2 * c.kwargs["BLOCK_N"] * c.num_stages)

    def tile_values(c):
        return c.kwargs["BLOCK_M"] * (block_d + c.kwargs["BLOCK_N"]) // (32 * c.num_warps)

    fits = [c for c in configs if smem(c) <= _SMEM_BUDGET_BYTES] or configs[-1:]
    return [c for c in fits if tile_values(c) <= _MAX_TILE_VALUES_PER_THREAD] or [min(fits, key=tile_values)]


@triton.jit
def _attend_range(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                  offs_d, d_mask, q_pos, start, end, S, WINDOW, qk_scale,
                  MASKED: tl.constexpr, HAS_WINDOW: tl.constexpr, BLOCK_N: tl.constexpr,
                  DOT_PRECISION: tl.constexpr):
    """Online-softmax update of (acc, l, m) over key blocks start, start + BLOCK_N, ... < end."""
    for n0 in tl.range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        kt_ptrs = k_base + offs_n.to(tl.int64)[None, :] * stride_kn + offs_d[:, None] * stride_kd
        v_ptrs = v_base + offs_n.to(tl.int64)[:, None] * stride_vn + offs_d[None, :] * stride_vd
        if MASKED:
            kt = tl.load(kt_ptrs, mask=d_mask[:, None] & (offs_n < S)[None, :], other=0.0)
            v = tl.load(v_ptrs, mask=(offs_n < S)[:, None] & d_mask[None, :], other=0.0)
        else:
            kt = tl.load(kt_ptrs, mask=d_mask[:, None], other=0.0)
            v = tl.load(v_ptrs, mask=d_mask[None, :], other=0.0)
        qk = tl.dot(q, kt, input_precision=DOT_PRECISION) * qk_scale  # log2 units
        if MASKED:
            visible = offs_n[None, :] <= q_pos[:, None]
            if HAS_WINDOW:
                visible = visible & (offs_n[None, :] > q_pos[:, None] - WINDOW)
            qk = tl.where(visible, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _prefill_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr,
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_ob, stride_oh, stride_ot, stride_od,
    H_Q, GROUP, T, S, WINDOW, qk_scale,
    HEAD_DIM: tl.constexpr, HAS_WINDOW: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # Longest-first (as FlashAttention-2/3 schedule causal blocks): the last query block attends to the
    # most keys, so it starts first and the short blocks fill the tail of the grid.
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H_Q).to(tl.int64)
    h = pid_bh % H_Q
    kvh = (h // GROUP).to(tl.int64)
    h = h.to(tl.int64)

    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM  # head dims that are not a power of two are padded and masked
    # int64 row offsets: in the fused-QKV view the token stride is (Hq + 2 Hkv) * D elements, which
    # times a long prompt passes 2^31 (e.g. 18,432 x 116,509 for Llama-3.1-405B).
    q_ptrs = (q_ptr + b * stride_qb + h * stride_qh + offs_m.to(tl.int64)[:, None] * stride_qt
              + offs_d[None, :] * stride_qd)
    q = tl.load(q_ptrs, mask=(offs_m < T)[:, None] & d_mask[None, :], other=0.0)
    k_base = k_ptr + b * stride_kb + kvh * stride_kh
    v_base = v_ptr + b * stride_vb + kvh * stride_vh

    # Query row i sits at absolute position S - T + i (bottom-right alignment).
    q_pos = (S - T) + offs_m
    first_pos = S - T + m0
    lo = 0
    full_lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(first_pos - WINDOW + 1, 0) // BLOCK_N * BLOCK_N
        # first block whose keys lie inside the window of the block's last row
        full_lo = tl.cdiv(tl.maximum(first_pos + BLOCK_M - WINDOW, 0), BLOCK_N) * BLOCK_N
    hi = tl.minimum(S, first_pos + BLOCK_M)
    full_hi = (first_pos + 1) // BLOCK_N * BLOCK_N  # blocks ending at or before the first row's diagonal
    mid_end = tl.maximum(tl.minimum(full_hi, hi), lo)
    mid_start = tl.minimum(tl.maximum(full_lo, lo), mid_end)

    # m starts finite (not -inf) so that a block fully masked for some row gives alpha = 1, p = 0
    # instead of exp2(-inf - -inf) = NaN; every valid row sees at least its own position.
    m_i = tl.full((BLOCK_M,), -1.0e30, dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    acc, l_i, m_i = _attend_range(acc, l_i, m_i, q, k_base, v_base, stride_ks, stride_kd, stride_vs,
                                  stride_vd, offs_d, d_mask, q_pos, lo, mid_start, S, WINDOW, qk_scale,
                                  True, HAS_WINDOW, BLOCK_N, DOT_PRECISION)
    acc, l_i, m_i = _attend_range(acc, l_i, m_i, q, k_base, v_base, stride_ks, stride_kd, stride_vs,
                                  stride_vd, offs_d, d_mask, q_pos, mid_start, mid_end, S, WINDOW, qk_scale,
                                  False, HAS_WINDOW, BLOCK_N, DOT_PRECISION)
    acc, l_i, m_i = _attend_range(acc, l_i, m_i, q, k_base, v_base, stride_ks, stride_kd, stride_vs,
                                  stride_vd, offs_d, d_mask, q_pos, mid_end, hi, S, WINDOW, qk_scale,
                                  True, HAS_WINDOW, BLOCK_N, DOT_PRECISION)

    l_i = tl.where(l_i > 0.0, l_i, 1.0)  # only padding rows (i >= T) could have l = 0
    out = acc / l_i[:, None]
    o_ptrs = (o_ptr + b * stride_ob + h * stride_oh + offs_m.to(tl.int64)[:, None] * stride_ot
              + offs_d[None, :] * stride_od)
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=(offs_m < T)[:, None] & d_mask[None, :])


_prefill = autotune_or_fixed(_CONFIGS, _FIXED, key=["T", "S", "BLOCK_D", "HAS_WINDOW"],
                             prune=_prune)(_prefill_kernel)


def check_attention_args(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_rank: int,
                         scale: float | None, window: int | None) -> torch.device:
    """Checks shared by prefill and decode: ranks, dtypes, devices, head counts, head_dim, scale,
    window. Returns the device."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, ndim=q_rank if name == "q" else 4)
    check_same_dtype([("q", q), ("k", k), ("v", v)])
    device = check_device([("q", q), ("k", k), ("v", v)])
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    B, Hq, D = q.shape[0], q.shape[1], q.shape[-1]
    if B == 0 or Hq == 0:
        raise ValueError(f"q has shape {tuple(q.shape)}; batch and head counts must be >= 1")
    if k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} disagree on batch size or head_dim")
    if k.shape[1] == 0 or Hq % k.shape[1] != 0:
        raise ValueError(f"query heads ({Hq}) must be a multiple of KV heads ({k.shape[1]})")
    if not 1 <= D <= MAX_HEAD_DIM:
        raise ValueError(f"head_dim {D} is not supported (1..{MAX_HEAD_DIM})")
    if scale is not None:
        check_number("scale", scale)
    if window is not None:
        check_positive_int("window", window)
    return device


def attention_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                      window: int | None = None, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """Causal flash attention with GQA and an optional sliding window.

    Args:
        q: [B, Hq, T, D] queries, float16 / bfloat16 / float32, any strides.
        k, v: [B, Hkv, S, D] keys and values, q's dtype, any strides, S >= T. Hq must be a multiple of
            Hkv; query head h reads KV head h // (Hq // Hkv).
        scale: softmax scale, default 1 / sqrt(D).
        window: sliding window w >= 1 or None.
        out: optional [B, Hq, T, D] output of q's dtype (any strides).

    Masking is bottom-right aligned (FlashAttention >= 2.1): query i sits at absolute position
    S - T + i and sees keys j <= S - T + i, and with ``window`` also needs j > S - T + i - w. Note that
    torch SDPA with ``is_causal=True`` aligns top-left instead (kernels.md 3.6); both agree when S == T.
    head_dim up to 256; a head_dim that is not a power of two is padded to the next one and masked.

    Returns:
        [B, Hq, T, D] in q's dtype (fp32 softmax and accumulation, probabilities rounded to the input
        dtype before the P @ V product, as FlashAttention does).

    Raises:
        TypeError: non-tensor, unsupported or mismatched dtypes, bfloat16 under the interpreter.
        ValueError: wrong ranks or shapes, S < T, head counts that do not divide, head_dim > 256,
            bad scale/window, mixed or non-CUDA devices, bad ``out``.
    """
    device = check_attention_args(q, k, v, 4, scale, window)
    B, Hq, T, D = q.shape
    S = k.shape[2]
    if T == 0 or S < T:
        raise ValueError(f"attention_prefill needs 1 <= T <= S, got T={T}, S={S}")
    o = output("out", out, (B, Hq, T, D), q.dtype, device)
    sm_scale = D ** -0.5 if scale is None else float(scale)

    def grid(meta):
        return (triton.cdiv(T, meta["BLOCK_M"]), B * Hq)

    _prefill[grid](
        q, k, v, o, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        Hq, Hq // k.shape[1], T, S, window or 0, sm_scale * LOG2_E,
        HEAD_DIM=D, HAS_WINDOW=window is not None, DOT_PRECISION=dot_precision(q.dtype),
        BLOCK_D=max(16, next_power_of_2(D)),
    )
    return o
