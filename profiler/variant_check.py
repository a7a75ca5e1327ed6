"""Check a user's op variants against the op signatures before anything is measured.

A variant that returns the wrong shape or dtype does not fail where it runs: the model fails later,
in another op, with an error that does not name the culprit (or, worse, runs on and measures a
different model). :func:`check_variants` calls every registered variant of an :class:`Ops` bundle
once, on small inputs with the model's real head counts, head_dim, hidden and intermediate sizes, and
checks the outputs against the signatures in :mod:`profiler.backends` and against torch's op on the
same inputs. The built-in torch and triton ops are not checked here (their tests do that).
"""

from __future__ import annotations

import torch

from profiler.backends import Ops, VariantError, user_variants
from profiler.config import ModelConfig
from profiler.errors import one_line

_TOKENS = 3  # prefill length of the probe inputs (odd on purpose)


def probe_calls(op: str, cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> list[tuple[tuple, tuple]]:
    """``[(args, expected output shapes)]`` for ``op``: the call forms the decode model makes, with
    batch 1 and ``_TOKENS`` tokens. rmsnorm is probed with and without the fused residual."""
    gen = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    h, d, f = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size
    hq, hkv, t, window = cfg.num_attention_heads, cfg.num_key_value_heads, _TOKENS, cfg.sliding_window
    scale = d ** -0.5
    if op == "linear":
        x, w = randn(1, t, h), randn(hq * d, h) * h ** -0.5
        return [((x, w, None), ((1, t, hq * d),)), ((x, w, randn(hq * d)), ((1, t, hq * d),))]
    if op == "attention_prefill":
        q, k, v = randn(1, hq, t, d), randn(1, hkv, t, d), randn(1, hkv, t, d)
        return [((q, k, v, scale, window), ((1, hq, t, d),))]
    if op == "attention_decode":
        lens = torch.full((1,), t, dtype=torch.int32, device=device)
        q, k, v = randn(1, hq, d), randn(1, hkv, t + 1, d), randn(1, hkv, t + 1, d)
        return [((q, k, v, lens, scale, window), ((1, hq, d),))]
    if op == "rmsnorm":
        x, wgt = randn(1, t, h), torch.ones(h, dtype=dtype, device=device)
        return [((x, wgt, cfg.rms_norm_eps, None), ((1, t, h),)),
                ((x, wgt, cfg.rms_norm_eps, randn(1, t, h)), ((1, t, h), (1, t, h)))]
    if op == "rope":
        angles = torch.outer(torch.arange(t, dtype=torch.float32), torch.linspace(0.0, 1.0, d // 2))
        return [((randn(1, hq, t, d), angles.cos().to(device), angles.sin().to(device)), ((1, hq, t, d),))]
    if op == "swiglu":
        gate_up = randn(1, t, 2 * f)  # the model passes the two halves of its fused gate/up output
        return [((gate_up[..., :f], gate_up[..., f:]), ((1, t, f),))]
    raise VariantError(f"no probe for op {op!r}")


# Largest error a variant may show against torch's op on a probe call, relative to the largest
# magnitude of torch's output: about 4 rounding units of bfloat16 (machine epsilon 2^-7) and 10 of
# float16 (2^-10); in float32 2e-3, loose enough for a TF32 matmul (10-bit mantissa, eps 2^-10) and
# fast-math approximations. What it catches is a different computation: a missing activation or a
# wrong head mapping (errors of order 1), or an output off by 1 % in float32 or float16.
_REL_TOL = {torch.float32: 2e-3, torch.float16: 1e-2, torch.bfloat16: 3e-2}


def _check_against_torch(op: str, name: str, args: tuple, outputs: tuple, dtype: torch.dtype) -> None:
    """Raises VariantError when ``outputs`` of variant ``name`` differ from torch's op on ``args``."""
    from profiler.backends import resolve

    with torch.inference_mode():
        ref = _outputs(op, getattr(resolve("torch"), op)(*args), tuple(o.shape for o in outputs))
    tol = _REL_TOL.get(dtype, _REL_TOL[torch.float32])
    for got, want in zip(outputs, ref):
        scale = want.abs().max().item() or 1.0
        err = (got.float() - want.float()).abs().max().item() / scale
        if err > tol:
            raise VariantError(
                f"op {op}={name} disagrees with torch's {op} on a small probe call (max error {err:.3g} of the "
                f"output's largest magnitude; allowed {tol:g} in {str(dtype).removeprefix('torch.')}): "
                "it computes something else, so its timings would not be of this op")


def _outputs(op: str, out, expected: tuple) -> tuple:
    if len(expected) == 1:
        return (out,)
    if isinstance(out, (tuple, list)) and len(out) == len(expected):
        return tuple(out)
    raise VariantError(f"{op} with a residual must return (y, x + residual), got {type(out).__name__}")


def check_variants(ops: Ops, cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> None:
    """Call each user variant in ``ops`` on probe inputs and check its outputs.

    Raises:
        VariantError: a variant raised, returned the wrong number of outputs, or an output whose shape,
            dtype or device differs from the op's signature, non-finite values, or values that differ
            from torch's op on the same inputs by more than ``_REL_TOL`` of their largest magnitude.
    """
    for op, name in user_variants(ops).items():
        fn = getattr(ops, op)
        for args, shapes in probe_calls(op, cfg, device, dtype):
            try:
                with torch.inference_mode():
                    out = fn(*args)
            except VariantError:
                raise
            except Exception as exc:  # noqa: BLE001  (user code: any failure, reported in one line)
                raise VariantError(f"op {op}={name} raised {type(exc).__name__} on a small probe call: "
                                   f"{one_line(exc)}") from None
            try:
                outputs = _outputs(op, out, shapes)
            except VariantError as exc:
                raise VariantError(f"op {op}={name}: {exc}") from None
            for got, shape in zip(outputs, shapes):
                if not isinstance(got, torch.Tensor):
                    raise VariantError(f"op {op}={name} returned {type(got).__name__}, expected a tensor")
                if tuple(got.shape) != shape or got.dtype != dtype or got.device.type != device.type:
                    raise VariantError(
                        f"op {op}={name} returned shape {tuple(got.shape)}, {str(got.dtype).removeprefix('torch.')} "
                        f"on {got.device}; the op must return shape {shape}, "
                        f"{str(dtype).removeprefix('torch.')} on {device}")
                if not torch.isfinite(got).all():
                    raise VariantError(f"op {op}={name} returned non-finite values on a small probe call")
            _check_against_torch(op, name, args, outputs, dtype)
