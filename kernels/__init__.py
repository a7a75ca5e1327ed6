"""Triton kernels for the decode loop, one op per module, plus fp32 torch references.

Launchers (each validates its inputs and raises TypeError/ValueError with a one-line message):
``matmul``, ``attention_prefill``, ``attention_decode``, ``rmsnorm``, ``rope``, ``swiglu``.
References (``kernels.reference``): ``matmul_ref``, ``attention_prefill_ref``, ``attention_decode_ref``,
``rmsnorm_ref``, ``rope_ref``, ``swiglu_ref``.

Set ``TRITON_INTERPRET=1`` *before* importing this package to run the kernels on CPU tensors
(``@triton.jit`` reads it when the kernels are defined; ``is_interpreter()`` reports the mode).
The kernels know nothing of models or of the profiler.
"""

from kernels._common import is_interpreter
from kernels.attention_decode import attention_decode
from kernels.attention_prefill import attention_prefill
from kernels.matmul import matmul
from kernels.reference import (attention_decode_ref, attention_prefill_ref, matmul_ref, rmsnorm_ref, rope_ref,
                               swiglu_ref)
from kernels.rmsnorm import rmsnorm
from kernels.rope import rope
from kernels.swiglu import swiglu

__all__ = [
    "is_interpreter",
    "matmul", "attention_prefill", "attention_decode", "rmsnorm", "rope", "swiglu",
    "matmul_ref", "attention_prefill_ref", "attention_decode_ref", "rmsnorm_ref", "rope_ref", "swiglu_ref",
]
