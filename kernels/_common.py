"""Shared pieces of the kernel launchers: interpreter detection, input checks, output allocation,
device facts and the "autotune on a GPU, one fixed config under the interpreter" decorator.

Every launcher raises ``TypeError`` for a wrong type or dtype and ``ValueError`` for a wrong shape,
device, stride or value, with a one-line message that names the argument.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Iterable, Sequence

import torch
import triton

# ``@triton.jit`` consults TRITON_INTERPRET when a kernel is *defined* (kernels.md, section 4.1), so the
# mode is read once, here, before any kernel module defines its kernels; changing the variable later
# does not change how the already-defined kernels run.
# ``triton.knobs`` exists from Triton 3.4 on; older releases read the environment variable directly.
_knobs = getattr(triton, "knobs", None)
_INTERPRET: bool = (bool(_knobs.runtime.interpret) if _knobs is not None
                    else os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes"))

# TOKENCOST_AUTOTUNE=0 (read once, here, like TRITON_INTERPRET): on a GPU every launcher uses the
# first config of its list that survives pruning instead of benchmarking them all. The test suite sets
# it, because autotuning every test shape compiles hundreds of kernels; each config is then checked on
# its own (tests/test_kernel_configs.py) and compiled for sm_90 (tests/test_compile_check.py).
_AUTOTUNE: bool = os.environ.get("TOKENCOST_AUTOTUNE", "1").lower() not in ("0", "false", "off")

FLOAT_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)

# Under the interpreter there is no GPU to ask for its SM count; this nominal count keeps the
# launch heuristics (split-K, KV splits) deterministic and the simulated grids small.
_INTERPRETER_SM_COUNT = 4

# Compile-only mode (benchmarks/compile_check.py): launchers accept tensors on any device and report
# this SM count, so that a stand-in Triton driver can compile every kernel for a GPU target on a
# machine without one. Nothing is launched in this mode. None: off.
_compile_only_sms: int | None = None


def is_interpreter() -> bool:
    """True when the kernels were defined for the Triton CPU interpreter (``TRITON_INTERPRET=1`` was
    set before ``kernels`` was imported)."""
    return _INTERPRET


def set_compile_only(num_sms: int | None) -> None:
    """Switch compile-only mode on (``num_sms``: the SM count of the target GPU) or off (None).

    Only for ahead-of-time compile checks with a stand-in Triton driver that compiles but never
    launches (``python -m benchmarks.compile_check``): launchers then skip the CUDA-device check and
    size their grids for ``num_sms``. Outputs are never written in this mode.

    Raises:
        ValueError: ``num_sms`` not a positive int (or None).
    """
    global _compile_only_sms
    if num_sms is not None and (not isinstance(num_sms, int) or num_sms < 1):
        raise ValueError(f"num_sms must be a positive int or None, got {num_sms!r}")
    _compile_only_sms = num_sms


def is_compile_only() -> bool:
    """True while :func:`set_compile_only` mode is on."""
    return _compile_only_sms is not None


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative ints."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def check_tensor(name: str, t: object, ndim: int | None = None,
                 dtypes: Sequence[torch.dtype] = FLOAT_DTYPES) -> torch.Tensor:
    """Check that ``t`` is a tensor of an allowed dtype (and rank); return it.

    Raises:
        TypeError: not a tensor, a dtype outside ``dtypes``, or bfloat16 under the interpreter
            (Triton 3.9's interpreter has no bfloat16 arithmetic: kernels.md, section 0).
        ValueError: wrong number of dimensions.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} has dtype {str(t.dtype).replace('torch.', '')}; expected one of {allowed}")
    if t.dtype == torch.bfloat16 and _INTERPRET:
        raise TypeError(f"{name} is bfloat16, which the Triton interpreter (TRITON_INTERPRET=1) cannot "
                        "compute with; use float16 or float32 on CPU, or run on a CUDA GPU")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    return t


def check_same_dtype(named: Iterable[tuple[str, torch.Tensor]]) -> torch.dtype:
    """All tensors share one dtype; return it. Raises TypeError otherwise."""
    items = list(named)
    dtype = items[0][1].dtype
    for name, t in items[1:]:
        if t.dtype != dtype:
            raise TypeError(f"{name} has dtype {str(t.dtype).removeprefix('torch.')} but {items[0][0]} has "
                            f"{str(dtype).removeprefix('torch.')}; they must match")
    return dtype


def check_device(named: Iterable[tuple[str, torch.Tensor]]) -> torch.device:
    """All tensors on one device, and a CUDA device unless running under the interpreter.

    Raises:
        ValueError: mixed devices, or a non-CUDA tensor outside the interpreter.
    """
    items = list(named)
    device = items[0][1].device
    for name, t in items[1:]:
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but {items[0][0]} is on {device}; "
                             "all inputs must be on one device")
    if not _INTERPRET and _compile_only_sms is None and device.type != "cuda":
        raise ValueError(f"{items[0][0]} is on {device}; the Triton kernels need CUDA tensors "
                         "(or TRITON_INTERPRET=1 set before import, for CPU tensors)")
    return device


def check_number(name: str, value: object, minimum: float = 0.0, inclusive: bool = False) -> float:
    """A finite real number (not a bool) above ``minimum`` (or equal to it when ``inclusive``); returned
    as a float.

    Raises:
        ValueError: anything else (bool, NaN, infinity, out of range, not a number).
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (value == minimum and not inclusive):
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_positive_int(name: str, value: object) -> int:
    """An int >= 1 (not a bool); returned.

    Raises:
        ValueError: anything else.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_shape(name: str, t: torch.Tensor, shape: Sequence[int]) -> None:
    """Raise ValueError unless ``t.shape == shape``."""
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected {tuple(shape)}")


def output(name: str, out: torch.Tensor | None, shape: Sequence[int], dtype: torch.dtype,
           device: torch.device) -> torch.Tensor:
    """Allocate an output, or check a caller-provided one (any strides) and return it.

    Raises:
        TypeError / ValueError: ``out`` has the wrong type, dtype, shape or device.
    """
    if out is None:
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    check_tensor(name, out, dtypes=(dtype,))
    check_shape(name, out, shape)
    if out.device != device:
        raise ValueError(f"{name} is on {out.device}; expected {device}")
    return out


def row_layout(named: Sequence[tuple[str, torch.Tensor]]) -> tuple[int, int, list[tuple[int, int]]]:
    """Describe the rows of same-shaped tensors ``[..., H]`` as a two-level grid without copying.

    Leading dimensions are merged wherever every tensor's strides allow it; row r then lives at
    ``(r // n_inner) * s_outer + (r % n_inner) * s_inner``. This covers contiguous tensors, column
    slices of a wider tensor (a fused gate/up output) and per-head slices of a fused QKV output
    (``[b, t, heads, d]`` with a token stride larger than heads x d).

    Returns:
        (n_outer, n_inner, [(s_outer, s_inner) per tensor]).

    Raises:
        ValueError: a tensor's last dimension is strided, or the rows need more than two levels.
    """
    for name, t in named:
        if t.dim() == 0:
            raise ValueError(f"{name} must have at least one dimension")
        if t.stride(-1) != 1 and t.shape[-1] > 1:
            raise ValueError(f"{name} needs a contiguous last dimension (stride {t.stride(-1)}); "
                             "call .contiguous() first")
    shape = named[0][1].shape[:-1]
    merged: list[tuple[int, list[int]]] = []
    for i, size in enumerate(shape):
        if size == 1:
            continue
        strides = [t.stride(i) for _, t in named]
        if merged and all(outer == inner * size for outer, inner in zip(merged[-1][1], strides)):
            merged[-1] = (merged[-1][0] * size, strides)
        else:
            merged.append((size, strides))
    while len(merged) < 2:
        merged.insert(0, (1, [0] * len(named)))
    if len(merged) > 2:
        raise ValueError(f"{named[0][0]} with shape {tuple(named[0][1].shape)} and strides "
                         f"{named[0][1].stride()} has rows the kernel cannot index; call .contiguous() first")
    (n_outer, s_outer), (n_inner, s_inner) = merged
    return n_outer, n_inner, list(zip(s_outer, s_inner))


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors on ``device`` (a nominal 4 under the interpreter, the target's count
    in compile-only mode)."""
    if _compile_only_sms is not None:
        return _compile_only_sms
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return _INTERPRETER_SM_COUNT


def dot_precision(dtype: torch.dtype) -> str:
    """``input_precision`` for ``tl.dot``: for float32 inputs follow torch's own TF32 policy
    (``torch.backends.cuda.matmul.allow_tf32``, off by default, so fp32 results compare like for like
    with torch; Triton would otherwise default to TF32, kernels.md section 2.5); for 16-bit inputs
    "tf32" is Triton's default and has no effect."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


def autotune_or_fixed(configs: list[triton.Config], fixed: triton.Config, key: list[str],
                      prune: Callable | None = None) -> Callable:
    """Decorator: ``triton.autotune`` over ``configs`` on a GPU; under the interpreter the single
    ``fixed`` config, because multi-config autotune fails without a GPU driver while a one-config
    autotune works (kernels.md, section 0, item 2); with ``TOKENCOST_AUTOTUNE=0`` on a GPU, the first
    config left by ``prune``. Launchers therefore always launch through a grid function of ``META``
    and never pass tuned parameters themselves. The wrapped kernel's ``configs`` attribute can be set
    to one config to force it (tests do, to check each config)."""
    if _INTERPRET:
        return triton.autotune(configs=[fixed], key=key)
    if not _AUTOTUNE:
        def first_only(cfgs, named_args, **kwargs):
            return (prune(cfgs, named_args, **kwargs) if prune is not None else cfgs)[:1]

        return triton.autotune(configs=configs, key=key, prune_configs_by={"early_config_prune": first_only})
    prune_by = {"early_config_prune": prune} if prune is not None else None
    return triton.autotune(configs=configs, key=key, prune_configs_by=prune_by)


def autotuning() -> bool:
    """False when ``TOKENCOST_AUTOTUNE=0`` was set before ``kernels`` was imported."""
    return _AUTOTUNE
