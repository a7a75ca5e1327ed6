"""Fused SwiGLU activation ``silu(gate) * up`` (the Llama MLP's gating, Shazeer, arXiv 2002.05202).

One read of each input and one write, computed in fp32 and rounded once; an unfused PyTorch version
writes and re-reads ``silu(gate)`` and rounds twice. ``gate`` and ``up`` may be column slices of
one fused gate/up projection output (rows strided, last dim contiguous).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._common import cdiv, check_device, check_same_dtype, check_tensor, next_power_of_2, output, \
    row_layout

_BLOCK_F_MAX = 1024


@triton.jit
def _swiglu_kernel(
    gate_ptr, up_ptr, out_ptr,
    sg_outer, sg_inner, su_outer, su_inner, so_outer, so_inner,
    N_INNER, F,
    BLOCK_F: tl.constexpr,
):
    # Row r of the [..., F] tensors sits at (r // N_INNER) * s_outer + (r % N_INNER) * s_inner.
    row = tl.program_id(0).to(tl.int64)
    outer = row // N_INNER
    inner = row % N_INNER
    offs = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    mask = offs < F
    g = tl.load(gate_ptr + outer * sg_outer + inner * sg_inner + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(up_ptr + outer * su_outer + inner * su_inner + offs, mask=mask, other=0.0).to(tl.float32)
    out = g / (1.0 + tl.exp(-g)) * u  # silu(g) = g * sigmoid(g)
    out = out.to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + outer * so_outer + inner * so_inner + offs, out, mask=mask)


def swiglu(gate: torch.Tensor, up: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """``silu(gate) * up`` elementwise.

    Args:
        gate, up: [..., F], same shape and dtype (float16 / bfloat16 / float32), last dim contiguous,
            rows strided in at most two levels (column slices of a fused gate/up output work).
        out: optional output shaped like gate, gate's dtype, last dim contiguous.

    Returns:
        [..., F] in gate's dtype (fp32 math, one rounding).

    Raises:
        TypeError: unsupported or mismatched dtypes, bfloat16 under the interpreter.
        ValueError: shape mismatch, strided last dim, mixed or non-CUDA devices, bad ``out``.
    """
    check_tensor("gate", gate)
    check_tensor("up", up)
    check_same_dtype([("gate", gate), ("up", up)])
    device = check_device([("gate", gate), ("up", up)])
    if gate.shape != up.shape:
        raise ValueError(f"gate {tuple(gate.shape)} and up {tuple(up.shape)} must have the same shape")
    o = output("out", out, gate.shape, gate.dtype, device)
    n_outer, n_inner, strides = row_layout([("gate", gate), ("up", up), ("out", o)])
    if gate.numel() == 0:
        return o
    F = gate.shape[-1]
    block_f = min(next_power_of_2(F), _BLOCK_F_MAX)
    _swiglu_kernel[(n_outer * n_inner, cdiv(F, block_f))](
        gate, up, o, *strides[0], *strides[1], *strides[2], n_inner, F, BLOCK_F=block_f,
    )
    return o
