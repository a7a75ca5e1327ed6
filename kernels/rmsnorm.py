"""RMSNorm with an optional fused residual add, matching HF ``LlamaRMSNorm``'s rounding order.

One program per row: the row is loaded once, its mean square reduced in fp32, normalised, rounded
to the input dtype, scaled by the weight in fp32 and rounded again. The two roundings reproduce
transformers' ``LlamaRMSNorm.forward`` (``models/llama/modeling_llama.py``: ``hidden.to(fp32)``,
``* rsqrt(mean(hidden^2) + eps)``, ``.to(input_dtype)``, ``weight *``), whose last product of two
16-bit numbers is exact in fp32 and rounded once, as here.

With ``residual`` the kernel also forms ``s = x + residual`` (rounded to x's dtype, as the decoder's
``residual + hidden_states`` in the model dtype is), stores it and normalises it: one read of each
input instead of a separate add kernel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._common import (check_device, check_number, check_same_dtype, check_tensor, next_power_of_2, output,
                             row_layout)

# Whole-row kernel: like Triton's layer-norm tutorial (05-layer-norm), a row of at most 64 KB (here
# counted in fp32, the math type) is held by one program: hidden sizes up to 16,384 (Llama-3.1-405B's).
_MAX_ROW_BYTES = 65536


@triton.jit
def _rmsnorm_kernel(
    x_ptr, res_ptr, w_ptr, y_ptr, sum_ptr,
    sx_outer, sx_inner, sr_outer, sr_inner, sy_outer, sy_inner, ss_outer, ss_inner,
    N_INNER, H, eps,
    HAS_RESIDUAL: tl.constexpr, BLOCK_H: tl.constexpr,
):
    # Row r of the [..., H] tensors sits at (r // N_INNER) * s_outer + (r % N_INNER) * s_inner.
    row = tl.program_id(0).to(tl.int64)
    outer = row // N_INNER
    inner = row % N_INNER
    offs = tl.arange(0, BLOCK_H)
    mask = offs < H
    x = tl.load(x_ptr + outer * sx_outer + inner * sx_inner + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + outer * sr_outer + inner * sr_inner + offs, mask=mask, other=0.0).to(tl.float32)
        s = (x + r).to(sum_ptr.dtype.element_ty)
        tl.store(sum_ptr + outer * ss_outer + inner * ss_inner + offs, s, mask=mask)
        x = s.to(tl.float32)
    mean_sq = tl.sum(x * x, axis=0) / H
    h = (x * tl.rsqrt(mean_sq + eps)).to(y_ptr.dtype.element_ty).to(tl.float32)  # HF: .to(input_dtype)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = (h * w).to(y_ptr.dtype.element_ty)
    tl.store(y_ptr + outer * sy_outer + inner * sy_inner + offs, y, mask=mask)


def _check(x, weight, eps, residual):
    check_tensor("x", x)
    check_tensor("weight", weight, ndim=1)
    named = [("x", x), ("weight", weight)]
    if residual is not None:
        check_tensor("residual", residual)
        check_same_dtype([("x", x), ("residual", residual)])
        if residual.shape != x.shape:
            raise ValueError(f"residual has shape {tuple(residual.shape)}; expected x's {tuple(x.shape)}")
        named.append(("residual", residual))
    device = check_device(named)
    H = x.shape[-1] if x.dim() else 0
    if x.dim() == 0 or weight.shape[0] != H:
        raise ValueError(f"weight has shape {tuple(weight.shape)}; expected ({H},) "
                         f"for x of shape {tuple(x.shape)}")
    if H * 4 > _MAX_ROW_BYTES or H == 0:
        raise ValueError(f"rmsnorm supports hidden sizes 1..{_MAX_ROW_BYTES // 4}, got {H}")
    if weight.stride(0) != 1 and H > 1:
        raise ValueError("weight must be contiguous")
    check_number("eps", eps, inclusive=True)
    return device


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None, *,
            out: torch.Tensor | None = None, residual_out: torch.Tensor | None = None,
            ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``y = x / sqrt(mean(x^2, -1) + eps) * weight`` over the last dimension.

    Args:
        x: [..., H], float16 / bfloat16 / float32, last dim contiguous; rows may be strided as long as
            the leading dims merge into two strided levels (e.g. a head slice of a fused QKV output).
        weight: [H], any float dtype, contiguous.
        eps: added to the mean square (e.g. config ``rms_norm_eps``).
        residual: optional [..., H] of x's dtype: then ``s = x + residual`` is normalised instead.
        out, residual_out: optional outputs shaped like x in x's dtype (last dim contiguous).
            x, residual and the outputs may alias only if identical (same element read, then written).

    Returns:
        ``y`` [..., H] in x's dtype, or ``(y, s)`` when ``residual`` is given (``y = rmsnorm(s)``).
        Math in fp32 with HF LlamaRMSNorm's rounding order (module docstring); unlike HF, an fp32
        weight with a 16-bit x still gives an output in x's dtype.

    Raises:
        TypeError: unsupported or mismatched dtypes, bfloat16 under the interpreter.
        ValueError: weight/residual shape mismatch, H above 16,384, strided last dim, bad eps,
            mixed or non-CUDA devices, bad ``out``/``residual_out``, ``residual_out`` without ``residual``.
    """
    device = _check(x, weight, eps, residual)
    if residual is None and residual_out is not None:
        raise ValueError("residual_out is given without residual; it holds x + residual, so pass residual too")
    H = x.shape[-1]
    y = output("out", out, x.shape, x.dtype, device)
    s = None if residual is None else output("residual_out", residual_out, x.shape, x.dtype, device)
    named = [("x", x), ("out", y)] + ([] if s is None else [("residual", residual), ("residual_out", s)])
    n_outer, n_inner, strides = row_layout(named)
    if x.numel() == 0:
        return y if s is None else (y, s)
    (sx, sy), (sr, ss) = strides[:2], (strides[2:] or [(0, 0), (0, 0)])
    block_h = next_power_of_2(H)
    # one warp per 256 elements, 1..8 warps (the layer-norm tutorial's rule)
    num_warps = min(max(block_h // 256, 1), 8)
    _rmsnorm_kernel[(n_outer * n_inner,)](
        x, residual if s is not None else x, weight, y, s if s is not None else y,
        *sx, *sr, *sy, *ss, n_inner, H, float(eps),
        HAS_RESIDUAL=s is not None, BLOCK_H=block_h, num_warps=num_warps,
    )
    return y if s is None else (y, s)
