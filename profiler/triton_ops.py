"""The "triton" variant of every op in :mod:`profiler.backends` (registered on import).

Thin adapters from the op signatures in the :mod:`profiler.backends` docstring to the launchers in
:mod:`kernels`: ``linear`` flattens ``x`` to 2-D and passes the weight as a transposed view (no copy);
the other ops map one to one.

Importing this module needs a CUDA GPU, or ``TRITON_INTERPRET=1`` set before start (the Triton CPU
interpreter: slow, and without bfloat16), or the kernels' compile-only mode (ahead-of-time compile
checks, ``benchmarks/compile_check.py``); otherwise it raises BackendUnavailableError.
"""

from __future__ import annotations

import sys

import torch

from profiler.backends import interpreter_requested, register
from profiler.errors import BackendUnavailableError


def _compile_only() -> bool:
    common = sys.modules.get("kernels._common")  # compile-only mode is set after importing kernels
    return common is not None and common.is_compile_only()


if not torch.cuda.is_available() and not interpreter_requested() and not _compile_only():
    raise BackendUnavailableError(
        "the triton backend needs a CUDA GPU or TRITON_INTERPRET=1 (set before start); use --backend torch")

import kernels  # noqa: E402  (after the check: kernel definitions depend on TRITON_INTERPRET)


@register("linear", "triton")
def linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x [..., K] @ w [N, K].T + bias [N]`` -> ``[..., N]`` through :func:`kernels.matmul`."""
    y = kernels.matmul(x.reshape(-1, x.shape[-1]), w.t(), bias)
    return y.view(*x.shape[:-1], w.shape[0])


@register("attention_prefill", "triton")
def attention_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                      window: int | None = None) -> torch.Tensor:
    """Causal GQA flash attention, bottom-right aligned: :func:`kernels.attention_prefill`."""
    return kernels.attention_prefill(q, k, v, scale, window)


@register("attention_decode", "triton")
def attention_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, seq_lens: torch.Tensor,
                     scale: float | None = None, window: int | None = None) -> torch.Tensor:
    """Split-KV flash-decoding over the first ``seq_lens[b]`` positions: :func:`kernels.attention_decode`."""
    return kernels.attention_decode(q, k_cache, v_cache, seq_lens, scale, window)


@register("rmsnorm", "triton")
def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    """RMSNorm (optionally fused with the residual add): :func:`kernels.rmsnorm`."""
    return kernels.rmsnorm(x, weight, eps, residual)


@register("rope", "triton")
def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Half-split rotary embedding: :func:`kernels.rope`."""
    return kernels.rope(x, cos, sin)


@register("swiglu", "triton")
def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up``: :func:`kernels.swiglu`."""
    return kernels.swiglu(gate, up)


__all__ = ["linear", "attention_prefill", "attention_decode", "rmsnorm", "rope", "swiglu"]
