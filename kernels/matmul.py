"""Tiled GEMM ``c = a @ b (+ bias)`` with fp32 accumulation, grouped tile ordering and split-K.

Three tile families share one kernel, chosen by M:

- **large M (> 64)**: 64-256 row tiles, programs ordered in groups of ``GROUP_M`` row tiles so that
  consecutive programs reuse the same ``b`` column panels from L2 (the "super-grouping" of Triton's
  03-matrix-multiplication tutorial, credited there with more than 10%; kernels.md 1.1);
- **skinny M (17-64)**: one row tile of ``next_pow2(M)`` rows, 32-128 columns;
- **GEMV M (<= 16, batch-1 to batch-16 decode)**: one 16-row tile and narrow 16- or 32-column
  panels with a long K step (256-512), so that even the narrowest decode linear (N = 4096) has
  hundreds of programs streaming the weight and needs no split-K.

In the two decode families the cost is reading ``b`` (the weight) once. When even the family's
narrowest tile leaves SMs idle (N small next to the SM count), the launcher splits the K loop across
programs (split-K, :func:`choose_split_k`); each split writes an fp32 partial product and a second
small kernel sums the partials in a fixed order (deterministic, no atomics), adds the bias and
casts. Split-K applies to large M too when its tiles cannot fill the GPU (e.g. M = 128, N = 4096).

On a GPU every family is autotuned (configs below, keyed on M, N, K, SPLIT_K, b's K stride and
the dtypes); the first call for a new key benchmarks the configs, so warm a shape up before
capturing it in a CUDA graph (kernels.md 2.5). Under ``TRITON_INTERPRET=1`` one fixed config per
family is used.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._common import (autotune_or_fixed, cdiv, check_device, check_positive_int, check_same_dtype,
                             check_shape, check_tensor, dot_precision, next_power_of_2, output, sm_count)


def _config(bm: int, bn: int, bk: int, stages: int, warps: int, group: int = 8) -> triton.Config:
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group},
                         num_stages=stages, num_warps=warps)


# Large-M configs for Hopper (H100/H200, 227 KB shared memory per block, kernels.md 1.7). They start
# from the CUDA list of Triton's matmul tutorial (kernels.md 1.1) and move to BLOCK_K = 64: a 64-element
# fp16/bf16 row is 128 bytes, the widest shared-memory swizzle, and wgmma consumes K in steps of 16.
# 128-row tiles with 4 or 8 warps map onto one or two wgmma warpgroups. Shared memory per config is
# stages x (BM + BN) x BK x 2 bytes: 144 KB for 128x256x64 and 256x128x64 at 3 stages, 128 KB for
# 128x128x64 at 4 stages, all under the 227 KB limit.
_LARGE_CONFIGS = [
    _config(128, 256, 64, 3, 8),
    _config(256, 128, 64, 3, 8),
    _config(128, 128, 64, 4, 8),
    _config(128, 128, 64, 4, 4),
    _config(128, 64, 64, 4, 4),
    _config(64, 128, 64, 4, 4),
    _config(128, 128, 32, 4, 4),
    _config(64, 64, 64, 5, 4),
]

# Skinny-M configs (17 <= M <= 64): the weight stream dominates, so the search is over the panel
# shape (BLOCK_N x BLOCK_K) and pipeline depth that keep enough loads in flight; BLOCK_M is pruned to
# the one tile that covers M. Long BLOCK_K (up to 256) gives each program long contiguous reads of a
# K-major weight.
_SKINNY_CONFIGS = [
    _config(bm, bn, bk, stages, 4, group=1)
    for bm in (32, 64)
    for bn, bk, stages in ((32, 128, 4), (32, 256, 3), (64, 64, 4), (64, 128, 4), (64, 256, 3),
                           (128, 64, 4), (128, 128, 3))
]

# GEMV configs (M <= 16): 16 rows, the smallest M of a tensor-core dot (mma m16n8k16), and panels of
# 16 or 32 weight rows read 256-512 values (0.5-1 KB of a 16-bit K-major weight) at a time. Narrow
# panels give llama-3.1-8b's narrowest decode linear (N = 4096) 256 programs at BLOCK_N 16, so it
# fills a 132-SM GPU without split-K; the long K step and 3-4 stages keep many loads in flight per
# program. Compiled for sm_90 (benchmarks.compile_check, Triton 3.9): 48 KB of shared memory
# (16x16x256, 4 stages) to 144 KB (16x32x512, 4 stages), 48-86 registers, no spills; 16x32x512 at
# 3 stages spilled 8 bytes and is left out.
_GEMV_CONFIGS = [
    _config(16, bn, bk, stages, 4, group=1)
    for bn, bk, stages in ((16, 256, 4), (16, 512, 3), (16, 512, 4), (32, 256, 4), (32, 512, 4))
]

# Interpreter configs: small tiles keep the simulated grid short while still giving several tiles,
# several groups (GROUP_M = 2) and a K tail on the test shapes. BLOCK_K >= 16, as a GPU requires.
_LARGE_FIXED = _config(64, 64, 32, 1, 4, group=2)
_SKINNY_FIXED = _config(32, 64, 32, 1, 4, group=1)
_GEMV_FIXED = _config(16, 32, 32, 1, 4, group=1)

_GEMV_MAX_M = 16
_SKINNY_MAX_M = 64
# Nominal tile of the large family, used only to count tiles when choosing split-K (the decode
# families count with their narrowest config: _nominal_tile).
_LARGE_NOMINAL = (128, 128)
# Each split keeps at least 256 values of K (>= 4 BLOCK_K=64 steps, one GEMV step of 256) so that the
# extra fp32 partial write (M x N x 4 bytes per split) stays small next to the operand reads of that
# split.
_MIN_K_PER_SPLIT = 256
_MAX_SPLIT_K = 16


def _prune_large(configs, named_args, **kwargs):
    cap = max(64, next_power_of_2(named_args["M"]))
    return [c for c in configs if c.kwargs["BLOCK_M"] <= cap] or configs


def _prune_skinny(configs, named_args, **kwargs):
    bm = max(16, next_power_of_2(named_args["M"]))
    return [c for c in configs if c.kwargs["BLOCK_M"] == bm] or configs


def _prune_gemv(configs, named_args, **kwargs):
    """Drop K steps longer than one split's share of K (they would leave splits empty or run one
    mostly masked step), keeping the shortest step when every config's is too long."""
    per_split = cdiv(named_args["K"], kwargs["SPLIT_K"])
    kept = [c for c in configs if c.kwargs["BLOCK_K"] <= per_split]
    if kept:
        return kept
    shortest = min(c.kwargs["BLOCK_K"] for c in configs)
    return [c for c in configs if c.kwargs["BLOCK_K"] == shortest]


@triton.jit
def _matmul_kernel(
    a_ptr, b_ptr, bias_ptr, c_ptr, ws_ptr,
    M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, stride_ws_s, stride_ws_m,
    SPLIT_K: tl.constexpr, HAS_BIAS: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    # Grouped ordering: GROUP_M row tiles are walked column panel by column panel, so the programs
    # running together share b panels in L2.
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    pids_per_group = GROUP_M * num_pid_n
    first_m = (pid // pids_per_group) * GROUP_M
    group_rows = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % pids_per_group) % group_rows
    pid_n = (pid % pids_per_group) // group_rows

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    # Rows/columns past the edge wrap onto valid ones (their results are never stored), so only the
    # K direction needs a load mask. Offsets are int64 so that no index x stride can overflow on large
    # tensors: rows x stride_am, and k x stride_bk of a row-major b (or k x stride_ak of a
    # column-major a), which passes 2**31 once K x N does. The casts run once, before the K loop.
    rows = (offs_m % M).to(tl.int64)
    cols = (offs_n % N).to(tl.int64)

    # This program's share of the K loop: a whole number of BLOCK_K tiles; trailing splits may be
    # empty when K is short, and then write zeros.
    tiles_per_split = tl.cdiv(tl.cdiv(K, BLOCK_K), SPLIT_K)
    k_start = pid_k * tiles_per_split * BLOCK_K
    k_end = tl.minimum(K, k_start + tiles_per_split * BLOCK_K)

    ks = (k_start + offs_k).to(tl.int64)
    a_ptrs = a_ptr + rows[:, None] * stride_am + ks[None, :] * stride_ak
    b_ptrs = b_ptr + ks[:, None] * stride_bk + cols[None, :] * stride_bn
    a_step = tl.cast(stride_ak, tl.int64) * BLOCK_K
    b_step = tl.cast(stride_bk, tl.int64) * BLOCK_K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in tl.range(k_start, k_end, BLOCK_K):
        k_mask = (k + offs_k) < k_end
        a = tl.load(a_ptrs, mask=k_mask[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=k_mask[:, None], other=0.0)
        acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
        a_ptrs += a_step
        b_ptrs += b_step

    out_mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    if SPLIT_K == 1:
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0)
            acc += bias.to(tl.float32)[None, :]
        c_ptrs = c_ptr + offs_m.to(tl.int64)[:, None] * stride_cm + offs_n.to(tl.int64)[None, :] * stride_cn
        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=out_mask)
    else:
        ws_ptrs = (ws_ptr + pid_k.to(tl.int64) * stride_ws_s + offs_m.to(tl.int64)[:, None] * stride_ws_m
                   + offs_n[None, :])
        tl.store(ws_ptrs, acc, mask=out_mask)


_TUNING_KEY = ["M", "N", "K", "SPLIT_K", "stride_bk"]
_matmul_large = autotune_or_fixed(_LARGE_CONFIGS, _LARGE_FIXED, _TUNING_KEY, _prune_large)(_matmul_kernel)
_matmul_skinny = autotune_or_fixed(_SKINNY_CONFIGS, _SKINNY_FIXED, _TUNING_KEY, _prune_skinny)(_matmul_kernel)
_matmul_gemv = autotune_or_fixed(_GEMV_CONFIGS, _GEMV_FIXED, _TUNING_KEY, _prune_gemv)(_matmul_kernel)


@triton.jit
def _splitk_reduce_kernel(
    ws_ptr, bias_ptr, c_ptr,
    M, N,
    stride_ws_s, stride_ws_m, stride_cm, stride_cn,
    SPLIT_K: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    ws_ptrs = ws_ptr + offs_m.to(tl.int64)[:, None] * stride_ws_m + offs_n[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for s in tl.static_range(SPLIT_K):  # fixed order: the sum is deterministic
        acc += tl.load(ws_ptrs + s * stride_ws_s, mask=mask, other=0.0)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
    c_ptrs = c_ptr + offs_m.to(tl.int64)[:, None] * stride_cm + offs_n.to(tl.int64)[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask)


def _nominal_tile(M: int) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N) that :func:`choose_split_k` counts tiles with: for the decode families the
    row tile their pruning leaves for M and the narrowest column tile of their configs (so the split
    is only taken when no config the autotuner may pick can fill the GPU); for large M a nominal
    128 x 128."""
    if M <= _GEMV_MAX_M:
        return 16, min(c.kwargs["BLOCK_N"] for c in _GEMV_CONFIGS)
    if M <= _SKINNY_MAX_M:
        return next_power_of_2(M), min(c.kwargs["BLOCK_N"] for c in _SKINNY_CONFIGS)
    return _LARGE_NOMINAL


def choose_split_k(M: int, N: int, K: int, num_sms: int) -> int:
    """Split-K factor the launcher uses: 1 when the output tiles of M's family (counted at its
    narrowest tile, :func:`_nominal_tile`) already give every SM a program; otherwise the smallest
    power of two that does, at most 16, and only while every split keeps >= 256 values of K.

    At M <= 16 this counts 16-column tiles, so every llama-3.1-8b decode linear (N >= 4096) runs
    as one kernel on a 132-SM GPU. Depends on shapes and the SM count only (never on data), so the
    choice is stable across decode steps."""
    bm, bn = _nominal_tile(M)
    tiles = cdiv(M, bm) * cdiv(N, bn)
    split = 1
    while (tiles * split < num_sms and split * 2 <= _MAX_SPLIT_K
           and K // (split * 2) >= _MIN_K_PER_SPLIT):
        split *= 2
    return split


def _kernel_for(M: int):
    """The autotuned kernel of M's tile family."""
    if M <= _GEMV_MAX_M:
        return _matmul_gemv
    return _matmul_skinny if M <= _SKINNY_MAX_M else _matmul_large


def _check_inputs(a, b, bias):
    check_tensor("a", a, ndim=2)
    check_tensor("b", b, ndim=2)
    check_same_dtype([("a", a), ("b", b)])
    named = [("a", a), ("b", b)]
    if bias is not None:
        check_tensor("bias", bias, ndim=1)
        check_shape("bias", bias, (b.shape[1],))
        named.append(("bias", bias))
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul shapes do not match: a is {tuple(a.shape)}, b is {tuple(b.shape)} "
                         "(a's dim 1 must equal b's dim 0)")
    if min(a.shape[0], a.shape[1], b.shape[1]) == 0:
        raise ValueError(f"matmul needs non-empty operands, got a {tuple(a.shape)} and b {tuple(b.shape)}")
    if bias is not None and bias.stride(0) != 1 and bias.shape[0] > 1:
        raise ValueError("bias must be contiguous")
    return check_device(named)


def matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, *,
           out: torch.Tensor | None = None, split_k: int | None = None) -> torch.Tensor:
    """``a @ b + bias`` on the GPU (or the Triton interpreter).

    Args:
        a: [M, K], float16 / bfloat16 / float32, any strides.
        b: [K, N], same dtype as ``a``, any strides: ``w.T`` of an ``nn.Linear`` weight ``w [N, K]``
            works without a copy.
        bias: [N] or None, any float dtype (added in fp32), contiguous.
        out: optional [M, N] output of ``a``'s dtype (any strides); allocated when None.
        split_k: K-splits (1 = none); None lets :func:`choose_split_k` decide from the shapes and the
            SM count.

    Returns:
        [M, N] in ``a``'s dtype: products accumulated in fp32 (fp32 inputs use IEEE fp32 dots unless
        torch's ``allow_tf32`` is on), bias added in fp32, rounded once.

    Raises:
        TypeError: non-tensor, unsupported or mismatched dtypes, bfloat16 under the interpreter.
        ValueError: wrong ranks, mismatched or empty shapes, mixed or non-CUDA devices, bad ``out``,
            ``split_k`` < 1.
    """
    device = _check_inputs(a, b, bias)
    M, K = a.shape
    N = b.shape[1]
    c = output("out", out, (M, N), a.dtype, device)
    if split_k is None:
        split_k = choose_split_k(M, N, K, sm_count(device))
    check_positive_int("split_k", split_k)
    kernel = _kernel_for(M)
    ws = torch.empty((split_k, M, N), dtype=torch.float32, device=device) if split_k > 1 else c
    bias_arg = bias if bias is not None else c  # never read when HAS_BIAS is False

    def grid(meta):
        return (cdiv(M, meta["BLOCK_M"]) * cdiv(N, meta["BLOCK_N"]), split_k)

    kernel[grid](
        a, b, bias_arg, c, ws, M, N, K,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
        ws.stride(0) if split_k > 1 else 0, ws.stride(1) if split_k > 1 else 0,
        SPLIT_K=split_k, HAS_BIAS=bias is not None, DOT_PRECISION=dot_precision(a.dtype),
    )
    if split_k > 1:
        block_m = min(16, next_power_of_2(M))
        _splitk_reduce_kernel[(cdiv(M, block_m), cdiv(N, 128))](
            ws, bias_arg, c, M, N, ws.stride(0), ws.stride(1), c.stride(0), c.stride(1),
            SPLIT_K=split_k, HAS_BIAS=bias is not None, BLOCK_M=block_m, BLOCK_N=128,
        )
    return c
