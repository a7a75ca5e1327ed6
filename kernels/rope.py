"""Rotary position embedding, half-split layout (HF ``rotate_half``: element i pairs with i + D/2).

For each (batch, head, token) row of ``x [B, H, T, D]`` with ``x1 = x[:D/2]``, ``x2 = x[D/2:]``:
``out[:D/2] = x1 cos - x2 sin`` and ``out[D/2:] = x2 cos + x1 sin`` (RoFormer, Su et al., arXiv
2104.09864, in the half-split arrangement HF's Llama uses; kernels.md 3.7). ``cos``/``sin`` are
float32 and already carry any frequency scaling (e.g. llama3's); computing them is the model's job.
The rotation is done in fp32 and rounded once, where HF first rounds cos/sin to the model dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._common import check_device, check_shape, check_tensor, next_power_of_2, output


@triton.jit
def _rope_kernel(
    x_ptr, cos_ptr, sin_ptr, o_ptr,
    stride_xb, stride_xh, stride_xt, stride_xd,
    stride_ob, stride_oh, stride_ot, stride_od,
    stride_ct, stride_cd, stride_st, stride_sd,
    H, T,
    HALF: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    rows = offs_t.to(tl.int64)  # a token stride of a fused-QKV view times a long prompt can pass 2^31
    offs_d = tl.arange(0, BLOCK_HALF)
    mask = (offs_t < T)[:, None] & (offs_d < HALF)[None, :]
    x_base = x_ptr + b * stride_xb + h * stride_xh + rows[:, None] * stride_xt
    x1 = tl.load(x_base + offs_d[None, :] * stride_xd, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_base + (offs_d + HALF)[None, :] * stride_xd, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(cos_ptr + rows[:, None] * stride_ct + offs_d[None, :] * stride_cd, mask=mask, other=0.0)
    s = tl.load(sin_ptr + rows[:, None] * stride_st + offs_d[None, :] * stride_sd, mask=mask, other=0.0)
    o_base = o_ptr + b * stride_ob + h * stride_oh + rows[:, None] * stride_ot
    o_ty = o_ptr.dtype.element_ty
    tl.store(o_base + offs_d[None, :] * stride_od, (x1 * c - x2 * s).to(o_ty), mask=mask)
    tl.store(o_base + (offs_d + HALF)[None, :] * stride_od, (x2 * c + x1 * s).to(o_ty), mask=mask)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *,
         out: torch.Tensor | None = None) -> torch.Tensor:
    """Apply half-split rotary embedding to ``x``.

    Args:
        x: [B, H, T, D] (queries or keys), float16 / bfloat16 / float32, any strides, D even.
        cos, sin: [T, D/2] float32 (any strides): row t rotates x[:, :, t].
        out: optional [B, H, T, D] output of x's dtype (any strides; may not overlap x).

    Returns:
        [B, H, T, D] in x's dtype (contiguous unless ``out`` is given).

    Raises:
        TypeError: x dtype unsupported, cos/sin not float32, bfloat16 under the interpreter.
        ValueError: wrong ranks, odd D, cos/sin shape mismatch, mixed or non-CUDA devices, bad ``out``.
    """
    check_tensor("x", x, ndim=4)
    check_tensor("cos", cos, ndim=2, dtypes=(torch.float32,))
    check_tensor("sin", sin, ndim=2, dtypes=(torch.float32,))
    device = check_device([("x", x), ("cos", cos), ("sin", sin)])
    B, H, T, D = x.shape
    if D % 2 != 0:
        raise ValueError(f"rope needs an even head_dim, got {D}")
    check_shape("cos", cos, (T, D // 2))
    check_shape("sin", sin, (T, D // 2))
    o = output("out", out, x.shape, x.dtype, device)
    if x.numel() == 0:
        return o
    half = D // 2
    block_half = next_power_of_2(half)
    block_t = min(next_power_of_2(T), max(1, 2048 // block_half))
    _rope_kernel[(B * H, triton.cdiv(T, block_t))](
        x, cos, sin, o, *x.stride(), *o.stride(), *cos.stride(), *sin.stride(), H, T,
        HALF=half, BLOCK_T=block_t, BLOCK_HALF=block_half,
    )
    return o
