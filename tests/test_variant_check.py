"""A user's op variant that breaks the op contract, or raises, ends the run with one line naming it."""

import itertools

import pytest
import torch

from profiler import torch_ops
from profiler.backends import VariantError, register, resolve
from profiler.config import config_from_dict
from profiler.variant_check import check_variants
from tests.tiny import TINY_LLAMA, write_config
from tokencost.cli import main

CFG = config_from_dict(TINY_LLAMA, name="tiny")
_calls = itertools.count()


@register("swiglu", "test_wrong_shape")
def _swiglu_wrong_shape(gate, up):
    return torch.cat([gate, up], dim=-1)  # [..., 2F] instead of [..., F]


@register("swiglu", "test_wrong_dtype")
def _swiglu_wrong_dtype(gate, up):
    return torch_ops.swiglu(gate, up).double()


@register("swiglu", "test_raises")
def _swiglu_raises(gate, up):
    raise RuntimeError("my kernel is not finished\nsecond line")


@register("swiglu", "test_nan")
def _swiglu_nan(gate, up):
    return torch_ops.swiglu(gate, up) * float("nan")


@register("rmsnorm", "test_no_residual_out")
def _rmsnorm_drops_residual(x, weight, eps, residual=None):
    out = torch_ops.rmsnorm(x, weight, eps, residual)
    return out[0] if residual is not None else out


@register("swiglu", "test_good")
def _swiglu_good(gate, up):
    return torch.nn.functional.silu(gate) * up


@register("swiglu", "test_wrong_values")
def _swiglu_wrong_values(gate, up):
    return gate * up  # the activation forgotten: right shape and dtype, another computation


@register("swiglu", "test_one_percent_off")
def _swiglu_one_percent_off(gate, up):
    return torch_ops.swiglu(gate, up) * 1.01


@register("attention_decode", "test_approximate")
def _decode_approximate(q, k_cache, v_cache, seq_lens, scale=None, window=None):
    out = torch_ops.attention_decode(q, k_cache, v_cache, seq_lens, scale, window)
    return out * (1 + 5e-4)  # an approximation inside the float32 tolerance


@register("linear", "test_fails_mid_run")
def _linear_fails_later(x, w, bias=None):
    if x.shape[-2] == 1 and next(_calls) > 40:  # passes the probe and the prefill, fails in decode
        raise RuntimeError("illegal memory access (simulated)")
    return torch_ops.linear(x, w, bias)


def _check(op, name):
    check_variants(resolve("torch", {op: name}), CFG, torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("op, name, needle", [
    ("swiglu", "test_wrong_shape", "the op must return shape (1, 3, 96)"),
    ("swiglu", "test_wrong_dtype", "float64"),
    ("swiglu", "test_raises", "raised RuntimeError on a small probe call: my kernel is not finished second line"),
    ("swiglu", "test_nan", "non-finite"),
    ("rmsnorm", "test_no_residual_out", "(y, x + residual)"),
    ("swiglu", "test_wrong_values", "disagrees with torch's swiglu"),
    ("swiglu", "test_one_percent_off", "disagrees with torch's swiglu"),
])
def test_contract_violations_are_named(op, name, needle):
    with pytest.raises(VariantError) as err:
        _check(op, name)
    assert f"op {op}={name}" in str(err.value) and needle in str(err.value)
    assert "\n" not in str(err.value)


def test_a_correct_variant_and_the_builtins_pass():
    _check("swiglu", "test_good")
    _check("attention_decode", "test_approximate")
    check_variants(resolve("torch"), CFG, torch.device("cpu"), torch.float32)  # built-ins are not probed


def _run_error(capsys, argv) -> str:
    """Exit status 2 and one error line after the "measuring ..." announcement; returns the error."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("tokencost: error: ") and not any("Traceback" in line for line in lines)
    return lines[-1].removeprefix("tokencost: error: ")


def test_run_stops_before_the_model_is_built(tmp_path, capsys):
    cfg = write_config(tmp_path)
    msg = _run_error(capsys, ["run", "--config", str(cfg), "--op", "swiglu=test_wrong_shape", "--prompt-len", "4",
                              "--gen-len", "2"])
    assert msg.startswith("op swiglu=test_wrong_shape returned shape (1, 3, 192)")


def test_a_variant_failing_mid_run_is_named(tmp_path, capsys):
    cfg = write_config(tmp_path)
    msg = _run_error(capsys, ["run", "--config", str(cfg), "--op", "linear=test_fails_mid_run", "--prompt-len", "4",
                              "--gen-len", "30"])
    assert msg == "op linear=test_fails_mid_run raised RuntimeError: illegal memory access (simulated)"


def test_compare_probes_every_backend_before_measuring_any(tmp_path, capsys):
    cfg = write_config(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--config", str(cfg), "--backend", "torch", "--backend", "test_raises",
              "--prompt-len", "4", "--gen-len", "2"])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [lines[-1]] and lines[-1].startswith("tokencost: error: op swiglu=test_raises raised RuntimeError")


def test_good_variant_runs(tmp_path):
    cfg = write_config(tmp_path)
    assert main(["run", "--config", str(cfg), "--op", "swiglu=test_good", "--prompt-len", "4", "--gen-len", "3"]) == 0


def test_the_builtin_backends_cannot_be_replaced_by_a_plugin():
    from profiler.errors import ProfilerError

    for name in ("torch", "triton"):
        with pytest.raises(ProfilerError, match="built-in backend"):
            register("swiglu", name)(lambda gate, up: torch.zeros_like(gate))
    assert resolve("torch").swiglu is torch_ops.swiglu
