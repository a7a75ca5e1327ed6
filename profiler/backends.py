"""Registry of op implementations ("backends") used by the decode loop.

The model calls every hot op through an :class:`Ops` bundle, so one switch chooses torch or Triton
for the whole model, and per-op overrides mix them (``--backend triton --op attention_decode=torch``).

Adding a variant of an op is one function and one registration line::

    from profiler.backends import register

    @register("swiglu", "mine")
    def my_swiglu(gate, up):
        return torch.nn.functional.silu(gate) * up

after which ``--op swiglu=mine`` (or ``--backend mine`` for every op that has a ``mine`` variant,
the others falling back to torch) uses it. Before a run measures anything each registered variant
is called once on small inputs and its output checked against the signature below
(:func:`profiler.variant_check.check_variants`); an exception it raises later is reported in one
line naming the op and variant (:func:`variant_in_traceback`).

Op signatures (all tensors on the model's device and dtype unless stated):

- ``linear(x [..., K], w [N, K], bias [N] | None) -> [..., N]``: ``x @ w.T + bias``.
- ``attention_prefill(q [B, Hq, T, D], k [B, Hkv, S, D], v [B, Hkv, S, D], scale, window) -> [B, Hq, T, D]``:
  causal attention with queries aligned to the *end* of the keys (bottom-right: query i sits at
  absolute position S - T + i and sees keys j <= S - T + i; with ``window`` w it also needs
  j > S - T + i - w). Hq is a multiple of Hkv; query head h reads KV head h // (Hq // Hkv).
- ``attention_decode(q [B, Hq, D], k_cache [B, Hkv, S_max, D], v_cache, seq_lens [B] int32, scale, window)
  -> [B, Hq, D]``: one new query per sequence over the first ``seq_lens[b]`` cached positions.
- ``rmsnorm(x [..., H], weight [H], eps, residual [..., H] | None)``: returns ``y`` when residual is
  None, else ``(y, x + residual)`` where ``y = rmsnorm(x + residual)`` (the fused residual add).
- ``rope(x [B, H, T, D], cos [T, D//2], sin [T, D//2]) -> [B, H, T, D]``: half-split (HF
  ``rotate_half``) rotation; cos/sin already hold any llama3 frequency scaling, in float32.
- ``swiglu(gate [..., F], up [..., F]) -> [..., F]``: ``silu(gate) * up``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from profiler.errors import BackendUnavailableError, ProfilerError

OP_NAMES: tuple[str, ...] = ("linear", "attention_prefill", "attention_decode", "rmsnorm", "rope", "swiglu")

_REGISTRY: dict[str, dict[str, Callable]] = {op: {} for op in OP_NAMES}
# Backends whose modules register lazily (importing them may need a GPU or the Triton interpreter).
_LAZY_BACKENDS: dict[str, str] = {"torch": "profiler.torch_ops", "triton": "profiler.triton_ops"}


@dataclasses.dataclass(frozen=True)
class Ops:
    """One implementation per op, plus the backend name each came from (for reports)."""

    linear: Callable
    attention_prefill: Callable
    attention_decode: Callable
    rmsnorm: Callable
    rope: Callable
    swiglu: Callable
    sources: tuple[tuple[str, str], ...] = ()

    def describe(self) -> dict[str, str]:
        """Op name -> backend name, e.g. ``{"linear": "triton", ...}``."""
        return dict(self.sources)


def register(op: str, backend: str) -> Callable[[Callable], Callable]:
    """Decorator registering ``fn`` as the ``backend`` variant of ``op``.

    Raises:
        ProfilerError: unknown op name, or a function from outside :mod:`profiler.torch_ops` /
            :mod:`profiler.triton_ops` registered as "torch" or "triton".
    """
    if op not in _REGISTRY:
        raise ProfilerError(f"unknown op {op!r}; ops are {', '.join(OP_NAMES)}")

    def wrap(fn: Callable) -> Callable:
        builtin = _LAZY_BACKENDS.get(backend)
        if builtin is not None and getattr(fn, "__module__", None) != builtin:
            raise ProfilerError(f"{backend!r} is a built-in backend (the baseline of compare and kernels); "
                                f"register your {op} variant under another name")
        _REGISTRY[op][backend] = fn
        return fn

    return wrap


def _load_backend(backend: str) -> None:
    module = _LAZY_BACKENDS.get(backend)
    if module is not None:
        import importlib

        importlib.import_module(module)  # registers on import; may raise BackendUnavailableError


def available_backends() -> list[str]:
    """Names of backends registered so far plus the built-in lazy ones."""
    names = set(_LAZY_BACKENDS)
    for variants in _REGISTRY.values():
        names.update(variants)
    return sorted(names)


def resolve(backend: str = "torch", overrides: dict[str, str] | None = None) -> Ops:
    """Build an :class:`Ops` bundle: ``backend`` for every op that has it, torch for the others,
    then ``overrides`` (op -> backend) on top.

    Raises:
        ProfilerError: unknown op or backend name, or an override naming a variant that does not exist.
        BackendUnavailableError: the backend cannot run on this machine.
    """
    overrides = dict(overrides or {})
    for op in overrides:
        if op not in _REGISTRY:
            raise ProfilerError(f"unknown op {op!r} in override; ops are {', '.join(OP_NAMES)}")
    _load_backend("torch")
    for name in {backend, *overrides.values()}:
        _load_backend(name)
    if not any(backend in variants for variants in _REGISTRY.values()):
        raise ProfilerError(f"unknown backend {backend!r}; available: {', '.join(available_backends())}")
    chosen: dict[str, str] = {}
    for op in OP_NAMES:
        name = overrides.get(op, backend if backend in _REGISTRY[op] else "torch")
        if name not in _REGISTRY[op]:
            raise ProfilerError(f"op {op!r} has no {name!r} variant; it has {', '.join(sorted(_REGISTRY[op]))}")
        chosen[op] = name
    fns = {op: _REGISTRY[op][chosen[op]] for op in OP_NAMES}
    return Ops(**fns, sources=tuple(chosen.items()))


def interpreter_requested() -> bool:
    """True when the environment asks for the Triton CPU interpreter (``TRITON_INTERPRET`` set to a
    value Triton reads as true: 1, true, on, yes), judged as Triton itself judges it."""
    import os

    import triton

    knobs = getattr(triton, "knobs", None)  # Triton >= 3.4; older releases read the variable directly
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


class VariantError(ProfilerError):
    """A user-registered op variant raised, or returned something other than the op's contract."""


def user_variants(ops: Ops) -> dict[str, str]:
    """Op -> backend for the ops of ``ops`` served by a registered variant rather than the built-in
    torch or triton backends."""
    return {op: name for op, name in ops.describe().items() if name not in _LAZY_BACKENDS}


def variant_in_traceback(exc: BaseException, ops: Ops) -> str | None:
    """``"op=backend"`` of the user variant whose code is on ``exc``'s traceback (the innermost such
    frame), or None: names the culprit of a failure inside a user's kernel at no cost per call."""
    import traceback

    codes = {getattr(getattr(ops, op), "__code__", None): f"{op}={name}" for op, name in user_variants(ops).items()}
    found = None
    for frame, _line in traceback.walk_tb(exc.__traceback__):
        found = codes.get(frame.f_code, found)
    return found


__all__ = ["OP_NAMES", "Ops", "register", "resolve", "available_backends", "BackendUnavailableError",
           "VariantError", "user_variants", "variant_in_traceback"]
