"""Split-KV flash-decoding over a static KV cache: one new query token per sequence.

Flash-decoding (Dao, Haziza, Massa, Sizov, "Flash-Decoding for long-context inference", Oct 2023;
kernels.md 1.3) in one or two kernels:

1. ``_decode_split_kernel``, grid (B x Hkv, num_splits): program (b, kv head, s) reads keys
   [s x SPLIT_LEN, (s + 1) x SPLIT_LEN) of sequence b, clipped to its valid prefix ``seq_lens[b]``
   (and to the sliding window), for every query head of the KV head's GQA group. The query heads
   sharing a KV head form the M dimension of ``tl.dot``, padded to >= 16 rows (FlashInfer/sglang's
   tensor-core GQA decode, kernels.md 1.4-1.5), so each K/V tile is loaded once per group. With one
   split the program normalises and writes the output itself; with several it writes the
   normalised partial output and its log-sum-exp (base 2) in fp32, and a split past the sequence's
   end reads nothing and writes LSE = -inf.
2. ``_decode_combine_kernel`` (several splits only), grid (B x Hq,): rescales the partials by
   exp2(lse_s - max lse) and sums them.

``num_splits`` (:func:`choose_num_splits`) depends only on shapes and the SM count, never on the
values in ``seq_lens``, so one launch configuration serves every decode step and can be captured in a
CUDA graph. On a GPU pass 1 is autotuned on its first call for a batch size and cache allocation:
warm up before capture (kernels.md 2.5).

An eager decode loop passes a cache view that grows by one position per step, so ``S_max`` and with
it ``num_splits`` change between steps. Nothing that changes with that length may trigger a recompile
or a new autotune inside a timed step, so: ``S_MAX`` and ``NUM_SPLITS`` are not specialised (Triton
would otherwise compile a new variant whenever the value becomes 1 or divisible by 16, kernels.md
2.5), and the one-split path is a branch on ``NUM_SPLITS`` at run time, not a compile-time constant;
the partials are laid out split-major (``[splits, B, Hq, D]``), so no stride the kernels see depends
on the split count; the combine pass walks the splits in fixed 16-wide chunks instead of a
power-of-two block sized to ``num_splits``; the autotune key is the batch size and the cache's head
stride (its allocated length), not the current length; and the first one-split call compiles the
combine pass ahead (without launching it), so a run whose cache grows past the one-split limit
compiles nothing when it gets there. ``SPLIT_LEN`` is always a multiple of 16, so its
specialisation never changes. ``benchmarks/compile_check.py`` and tests/test_compile_check.py check
this with the GPU compiler.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._common import (autotune_or_fixed, cdiv, check_positive_int, check_shape, check_tensor, dot_precision,
                             is_interpreter, next_power_of_2, output, sm_count)
from kernels.attention_prefill import LOG2_E, check_attention_args

# When is one split per (sequence, KV head) enough? Splitting costs the combine launch, about 2-3 us
# even inside a CUDA graph on an H200 (the figure of the project's performance review), and saves
# the part of the single program's stream that the other splits take over. One program streams about
# 150-200 GB/s (an estimate, not measured yet: 2-4 pipeline stages of 32 KB K and V tiles in flight
# over a ~0.6 us HBM round trip), so splitting pays only once a program would read more than about
# 2.5 us x 200 GB/s = 512 KB of K and V: 1024 cached positions at head_dim 128 in 16-bit.
_SINGLE_SPLIT_MAX_BYTES = 512 * 1024
# Past that, each split covers at least 256 cached tokens: a split writes group x D x 4 bytes of
# partial output and reads 2 x split_len x D x 2 bytes of K and V (16-bit), so at 256 tokens and a
# GQA group of 8 the partials add 8 / 256 = 3% to the traffic. When B x Hkv is small (at most a
# quarter of the SMs), 256-token splits could leave most SMs idle at contexts of a few thousand
# tokens, so splits go down to 64 tokens there (12% extra traffic at a group of 8, on a GPU that
# would otherwise idle).
_MIN_SPLIT_TOKENS = 256
_MIN_SPLIT_TOKENS_FEW_PROGRAMS = 64
_MAX_SPLITS = 64
_SPLIT_ALIGN = 16  # split boundaries on 16-token multiples
_COMBINE_BLOCK_S = 16  # splits the combine pass reads at a time (a fixed size: no recompiles)


def _config(bn: int, stages: int, warps: int) -> triton.Config:
    return triton.Config({"BLOCK_N": bn}, num_stages=stages, num_warps=warps)


# Pass 1 is a stream over K and V: the search is over tile length and pipeline depth (loads in
# flight), 4 warps for a 16-64 row GQA tile as in sglang's GQA decode kernel (kernels.md 1.5).
_CONFIGS = [_config(bn, stages, 4) for bn in (32, 64, 128) for stages in (2, 3, 4)]
_FIXED = _config(32, 1, 4)


def _prune(configs, named_args, **kwargs):
    """Skip 128-token tiles at head_dim 256: 3-4 stages of K and V tiles would not fit shared memory."""
    if kwargs["BLOCK_D"] < 256:
        return configs
    return [c for c in configs if c.kwargs["BLOCK_N"] * c.num_stages <= 192] or configs[:1]


# Arguments that change between eager decode steps and must not be specialised (module docstring).
_GROWING_ARGS = ["S_MAX", "NUM_SPLITS"]


@triton.jit(do_not_specialize=_GROWING_ARGS)
def _decode_split_kernel(
    q_ptr, k_ptr, v_ptr, seq_lens_ptr, part_ptr, lse_ptr, o_ptr,
    stride_qb, stride_qh, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_ps, stride_pb, stride_ph,
    stride_ls, stride_lb, stride_lh,
    stride_ob, stride_oh, stride_od,
    H_KV, S_MAX, SPLIT_LEN, NUM_SPLITS, WINDOW, qk_scale, BATCH,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_WINDOW: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    split = tl.program_id(1)
    b = (pid_bh // H_KV).to(tl.int64)
    kvh = (pid_bh % H_KV).to(tl.int64)

    # Clamp so that a bad length can never read outside the cache (the launcher documents that
    # lengths are checked on the host only when that costs no device sync).
    seq_len = tl.minimum(tl.maximum(tl.load(seq_lens_ptr + b), 0), S_MAX)
    start = split * SPLIT_LEN
    end = tl.minimum(start + SPLIT_LEN, seq_len)
    if HAS_WINDOW:  # the query sits at position seq_len - 1 and sees keys j > seq_len - 1 - WINDOW
        start = tl.maximum(start, seq_len - WINDOW)

    offs_h = tl.arange(0, BLOCK_H)
    h_mask = offs_h < GROUP
    heads = kvh * GROUP + offs_h  # query heads of this KV head's group
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    q_ptrs = q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=h_mask[:, None] & d_mask[None, :], other=0.0)
    k_base = k_ptr + b * stride_kb + kvh * stride_kh
    v_base = v_ptr + b * stride_vb + kvh * stride_vh

    # Every block below holds at least one valid key, so the row maximum is finite after the first
    # block and m may start at -inf.
    m_i = tl.full((BLOCK_H,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_H,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_H, BLOCK_D), dtype=tl.float32)
    for n0 in tl.range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        kt = tl.load(k_base + offs_n.to(tl.int64)[None, :] * stride_ks + offs_d[:, None] * stride_kd,
                     mask=d_mask[:, None] & n_mask[None, :], other=0.0)
        v = tl.load(v_base + offs_n.to(tl.int64)[:, None] * stride_vs + offs_d[None, :] * stride_vd,
                    mask=n_mask[:, None] & d_mask[None, :], other=0.0)
        qk = tl.dot(q, kt, input_precision=DOT_PRECISION) * qk_scale  # log2 units
        qk = tl.where(n_mask[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new

    has_keys = l_i > 0.0  # False for an empty split (or a sequence of length 0: a row of zeros)
    part = acc / tl.where(has_keys, l_i, 1.0)[:, None]
    if NUM_SPLITS == 1:  # the whole sequence: this is the output (a run-time branch, see the docstring)
        o_ptrs = o_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :] * stride_od
        tl.store(o_ptrs, part.to(o_ptr.dtype.element_ty), mask=h_mask[:, None] & d_mask[None, :])
    else:
        lse = tl.where(has_keys, m_i + tl.log2(tl.where(has_keys, l_i, 1.0)), float("-inf"))
        s64 = split.to(tl.int64)
        part_ptrs = part_ptr + s64 * stride_ps + b * stride_pb + heads[:, None] * stride_ph + offs_d[None, :]
        tl.store(part_ptrs, part, mask=h_mask[:, None])
        tl.store(lse_ptr + s64 * stride_ls + b * stride_lb + heads * stride_lh, lse, mask=h_mask)


# Tuned per batch size (BATCH, otherwise unused by the kernel) and cache allocation (the head stride),
# never per current length: see the module docstring.
_decode_split = autotune_or_fixed(_CONFIGS, _FIXED, key=["BATCH", "stride_kh", "BLOCK_D", "BLOCK_H"],
                                  prune=_prune)(_decode_split_kernel)


@triton.jit(do_not_specialize=["NUM_SPLITS"])
def _decode_combine_kernel(
    part_ptr, lse_ptr, o_ptr,
    stride_ps, stride_pb, stride_ph, stride_ls, stride_lb, stride_lh, stride_ob, stride_oh, stride_od,
    H_Q, NUM_SPLITS,
    HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // H_Q).to(tl.int64)
    h = (pid % H_Q).to(tl.int64)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    lse_base = lse_ptr + b * stride_lb + h * stride_lh
    part_base = part_ptr + b * stride_pb + h * stride_ph
    # Pass 1: the largest LSE over all splits, BLOCK_S at a time.
    m = tl.full((BLOCK_S,), float("-inf"), dtype=tl.float32)
    for s0 in tl.range(0, NUM_SPLITS, BLOCK_S):
        splits = s0 + offs_s
        lse = tl.load(lse_base + splits.to(tl.int64) * stride_ls, mask=splits < NUM_SPLITS,
                      other=float("-inf"))
        m = tl.maximum(m, lse)
    m_all = tl.max(m, 0)
    m_all = tl.where(m_all == float("-inf"), 0.0, m_all)  # all splits empty (length 0): weights become 0
    # Pass 2: sum the partial outputs weighted by exp2(lse - max).
    total = tl.zeros((BLOCK_S,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_S, BLOCK_D), dtype=tl.float32)
    for s0 in tl.range(0, NUM_SPLITS, BLOCK_S):
        splits = s0 + offs_s
        s_mask = splits < NUM_SPLITS
        lse = tl.load(lse_base + splits.to(tl.int64) * stride_ls, mask=s_mask, other=float("-inf"))
        w = tl.exp2(lse - m_all)
        parts = tl.load(part_base + splits.to(tl.int64)[:, None] * stride_ps + offs_d[None, :],
                        mask=s_mask[:, None], other=0.0)
        total += w
        acc += parts * w[:, None]
    total_all = tl.sum(total, 0)
    out = tl.sum(acc, 0) / tl.where(total_all > 0.0, total_all, 1.0)
    tl.store(o_ptr + b * stride_ob + h * stride_oh + offs_d * stride_od, out.to(o_ptr.dtype.element_ty),
             mask=offs_d < HEAD_DIM)


def choose_num_splits(batch: int, kv_heads: int, s_max: int, num_sms: int, head_dim: int,
                      elem_bytes: int) -> int:
    """KV splits per sequence for a cache of ``s_max`` positions; depends on shapes and the SM count
    only, so it is stable across the steps of a CUDA graph.

    1 (one kernel, no combine launch) when ``batch x kv_heads`` programs already give every SM one,
    or when one program's K and V stream (``s_max x 2 x head_dim x elem_bytes`` bytes) is at most
    512 KB, below which the combine launch costs about what splitting saves (see
    ``_SINGLE_SPLIT_MAX_BYTES``). Otherwise enough splits for two programs per SM, none shorter than
    256 tokens (64 when ``batch x kv_heads`` is at most a quarter of the SM count), at most 64.
    Never decreases as ``s_max`` grows.

    Llama-3.1-8b (8 KV heads, head_dim 128, bf16) on 132 SMs: 1 split at batch 1 up to 1024
    positions, then 16-33; 1 split from batch 17 on.

    Args:
        batch, kv_heads: B and Hkv of the cache; s_max: its positions; num_sms: the GPU's SMs;
        head_dim: D; elem_bytes: bytes per cached K or V value (2 for float16/bfloat16).

    Returns:
        splits per (sequence, KV head), 1 to 64.
    """
    programs = batch * kv_heads
    if programs >= num_sms or s_max * 2 * head_dim * elem_bytes <= _SINGLE_SPLIT_MAX_BYTES:
        return 1
    min_len = _MIN_SPLIT_TOKENS_FEW_PROGRAMS if 4 * programs <= num_sms else _MIN_SPLIT_TOKENS
    want = cdiv(2 * num_sms, programs)
    return max(1, min(want, s_max // min_len, _MAX_SPLITS))


def _check_seq_lens(seq_lens: torch.Tensor, batch: int, s_max: int, device: torch.device) -> None:
    check_tensor("seq_lens", seq_lens, ndim=1, dtypes=(torch.int32,))
    check_shape("seq_lens", seq_lens, (batch,))
    if seq_lens.device != device:
        raise ValueError(f"seq_lens is on {seq_lens.device}; expected {device} like q")
    if seq_lens.device.type == "cpu":  # reading it back is free here (no device sync)
        low, high = int(seq_lens.min()), int(seq_lens.max())
        if low < 1 or high > s_max:
            raise ValueError(f"seq_lens must lie in [1, S_max={s_max}], got values in [{low}, {high}]")


def attention_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, seq_lens: torch.Tensor,
                     scale: float | None = None, window: int | None = None, num_splits: int | None = None, *,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of one new query per sequence over its cached keys (split-KV flash-decoding).

    Args:
        q: [B, Hq, D] queries of the newest token, float16 / bfloat16 / float32, any strides.
        k_cache, v_cache: [B, Hkv, S_max, D], q's dtype, any strides; Hq a multiple of Hkv, query head
            h reads KV head h // (Hq // Hkv).
        seq_lens: [B] int32 on q's device: sequence b attends to cache positions 0 .. seq_lens[b] - 1,
            the query being the token at position seq_lens[b] - 1 (bottom-right alignment).
        scale: softmax scale, default 1 / sqrt(D).
        window: sliding window w >= 1: keys j > seq_lens[b] - 1 - w only.
        num_splits: KV splits per sequence (1: one kernel launch, no combine pass); None lets
            :func:`choose_num_splits` decide from B, Hkv, S_max, D, the dtype and the SM count (never
            from the values in seq_lens, so CUDA-graph capture works).
        out: optional [B, Hq, D] output of q's dtype (any strides).

    ``seq_lens`` must lie in [1, S_max]. A CPU ``seq_lens`` (the interpreter) is checked here; a CUDA one
    is not read back, because a device sync per layer would distort decode timing and is illegal during
    CUDA-graph capture. Validating lengths there is the caller's job (the decode loop raises
    KVCacheOverflowError before writing); the kernel clamps lengths to [0, S_max] so it never reads
    outside the cache, and a length of 0 yields a row of zeros.

    Returns:
        [B, Hq, D] in q's dtype.

    Raises:
        TypeError: unsupported or mismatched dtypes, seq_lens not int32, bfloat16 under the interpreter.
        ValueError: wrong ranks or shapes, head counts that do not divide, head_dim > 256, bad
            scale/window/num_splits, seq_lens out of range (CPU only), mixed or non-CUDA devices, bad ``out``.
    """
    device = check_attention_args(q, k_cache, v_cache, 3, scale, window)
    B, Hq, D = q.shape
    Hkv, S_max = k_cache.shape[1], k_cache.shape[2]
    if S_max == 0:
        raise ValueError("k_cache has no positions (S_max = 0)")
    _check_seq_lens(seq_lens, B, S_max, device)
    if num_splits is None:
        num_splits = choose_num_splits(B, Hkv, S_max, sm_count(device), D, q.element_size())
    check_positive_int("num_splits", num_splits)
    split_len = cdiv(cdiv(S_max, num_splits), _SPLIT_ALIGN) * _SPLIT_ALIGN
    o = output("out", out, (B, Hq, D), q.dtype, device)
    group = Hq // Hkv
    block_d = max(16, next_power_of_2(D))
    # Split-major partials: their strides do not depend on num_splits (see the module docstring). With
    # one split they are never written, but passing the same kind of tensor keeps one kernel variant.
    part = torch.empty((num_splits, B, Hq, block_d), dtype=torch.float32, device=device)
    lse = torch.empty((num_splits, B, Hq), dtype=torch.float32, device=device)
    sm_scale = D ** -0.5 if scale is None else float(scale)

    _decode_split[(B * Hkv, num_splits)](
        q, k_cache, v_cache, seq_lens, part, lse, o,
        *q.stride(), *k_cache.stride(), *v_cache.stride(), *part.stride()[:3], *lse.stride(), *o.stride(),
        Hkv, S_max, split_len, num_splits, window or 0, sm_scale * LOG2_E, B,
        GROUP=group, HEAD_DIM=D, HAS_WINDOW=window is not None, DOT_PRECISION=dot_precision(q.dtype),
        BLOCK_H=max(16, next_power_of_2(group)), BLOCK_D=block_d,
    )
    combine_args = (part, lse, o, *part.stride()[:3], *lse.stride(), *o.stride(), Hq, num_splits)
    combine_meta = {"HEAD_DIM": D, "BLOCK_S": _COMBINE_BLOCK_S, "BLOCK_D": block_d}
    if num_splits > 1:
        _decode_combine_kernel[(B * Hq,)](*combine_args, **combine_meta)
    else:
        _compile_combine_ahead(combine_args, combine_meta)
    return o


# Signatures of the combine pass already compiled ahead by _compile_combine_ahead (this process).
_combine_ready: set[tuple] = set()


def _compile_combine_ahead(args: tuple, meta: dict) -> None:
    """Compile (and load) the combine pass for these arguments without launching it, once per
    signature, so that an eager run whose cache view grows from one split to several does not compile
    it inside a timed step. Nothing to do under the interpreter. The key holds everything Triton
    specialises the combine pass on: the output's dtype, strides and 16-byte alignment, the batch and
    head counts (the partials' strides follow from them and ``BLOCK_D``) and the head dim; the split
    count is not specialised."""
    if is_interpreter():
        return
    part, _, o = args[:3]
    key = (o.device, o.dtype, o.stride(), o.data_ptr() % 16 == 0, tuple(part.shape[1:]),
           meta["HEAD_DIM"])
    if key in _combine_ready:
        return
    kernel = _decode_combine_kernel.warmup(*args, grid=(1,), **meta)
    # Load the module too: Triton loads it lazily, on the first launch (private, present in 3.6-3.9).
    load = getattr(kernel, "_init_handles", None)
    if load is not None:
        load()
    _combine_ready.add(key)
