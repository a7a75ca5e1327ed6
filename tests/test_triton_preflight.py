"""What the triton ops cannot run is refused before anything is measured (one line, exit 2), and bad
scalar arguments to the kernel launchers are refused instead of turning into NaN."""

from __future__ import annotations

import math
import os

import pytest
import torch

import kernels
from profiler.config import load_config
from profiler.runner import interpreter_warnings, user_ops_under_interpreter
from tests.cli_helpers import cli_error
from tests.tiny import write_config

SMALL = ["--prompt-len", "8", "--gen-len", "3"]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# What only the Triton interpreter refuses: on a GPU machine the same commands run (and are tested
# elsewhere), so these tests are for machines without one.
interpreter_only = pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter runs only without a GPU")


@interpreter_only
@pytest.mark.parametrize("argv", [
    ["run", "--backend", "triton"],
    ["run", "--op", "rmsnorm=triton"],
    ["compare", "--backend", "torch", "--backend", "triton"],
    ["sweep", "--backend", "triton", "--batch-sizes", "1", "--context-lens", "8"],
    ["breakdown", "--backend", "triton", "--context", "8"],
])
def test_bfloat16_on_the_interpreter_is_refused_up_front(tmp_path, capsys, argv):
    cfg = write_config(tmp_path)
    sizes = {"sweep": ["--gen-len", "3", "--out", str(tmp_path / "s.jsonl")],
             "breakdown": ["--gen-len", "2"]}.get(argv[0], SMALL)
    err = cli_error(capsys, [*argv, "--config", str(cfg), "--dtype", "bfloat16", *sizes])
    assert "no bfloat16" in err and "--dtype float32" in err
    assert not (tmp_path / "s.jsonl").exists()  # refused before the sweep wrote anything


def test_bfloat16_with_torch_ops_only_still_runs_on_cpu(tmp_path, capsys):
    from tokencost.cli import main

    cfg = write_config(tmp_path)
    assert main(["run", "--config", str(cfg), "--device", "cpu", "--dtype", "bfloat16", *SMALL]) == 0
    capsys.readouterr()


def test_head_dim_above_the_attention_kernels_limit_is_refused(tmp_path, capsys):
    cfg = write_config(tmp_path, {"head_dim": 320})
    err = cli_error(capsys, ["run", "--config", str(cfg), "--backend", "triton", *SMALL])
    assert "head_dim 320" in err and "256" in err and "attention_decode=torch" in err


@interpreter_only
def test_kernels_with_nothing_timeable_is_an_error(tmp_path, capsys):
    cfg = write_config(tmp_path)
    err = cli_error(capsys, ["kernels", "--config", str(cfg), "--context", "16", "--backend", "triton"])
    assert "nothing to time" in err and "interpreter" in err


def test_user_variants_under_the_interpreter_are_flagged(monkeypatch):
    ops = {"linear": "torch", "swiglu": "mine", "rope": "triton"}
    cpu = torch.device("cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert user_ops_under_interpreter(ops, cpu) == ["swiglu=mine"]
    assert any("swiglu=mine" in w for w in interpreter_warnings(ops, cpu))
    assert user_ops_under_interpreter(ops, torch.device("cuda")) == []
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert user_ops_under_interpreter(ops, cpu) == []


def test_a_relative_config_json_is_named_after_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "my-model"
    folder.mkdir()
    write_config(folder)
    monkeypatch.chdir(folder)
    assert load_config("config.json").name == "my-model"


# --- launcher scalar arguments -------------------------------------------------------------------

def _attn_inputs(t: int = 3, s: int = 3):
    q = torch.randn(1, 2, t, 16, device=DEVICE)
    k = torch.randn(1, 1, s, 16, device=DEVICE)
    return q, k, k.clone()


@pytest.mark.parametrize("scale", [math.inf, math.nan, -1.0, 0.0, True, "0.1"])
def test_attention_scale_must_be_a_finite_positive_number(scale):
    q, k, v = _attn_inputs()
    with pytest.raises(ValueError, match="scale"):
        kernels.attention_prefill(q, k, v, scale)
    cache_k = torch.randn(1, 1, 8, 16, device=DEVICE)
    lens = torch.tensor([3], dtype=torch.int32, device=DEVICE)
    with pytest.raises(ValueError, match="scale"):
        kernels.attention_decode(q[:, :, 0], cache_k, cache_k.clone(), lens, scale)


@pytest.mark.parametrize("window", [0, True, 2.5])
def test_attention_window_must_be_a_positive_int(window):
    q, k, v = _attn_inputs()
    with pytest.raises(ValueError, match="window"):
        kernels.attention_prefill(q, k, v, None, window)


@pytest.mark.parametrize("eps", [math.nan, math.inf, -1e-6, True])
def test_rmsnorm_eps_must_be_finite_and_non_negative(eps):
    with pytest.raises(ValueError, match="eps"):
        kernels.rmsnorm(torch.randn(2, 8, device=DEVICE), torch.ones(8, device=DEVICE), eps)


def test_rmsnorm_residual_out_without_residual_is_refused():
    x = torch.randn(2, 8, device=DEVICE)
    with pytest.raises(ValueError, match="residual_out"):
        kernels.rmsnorm(x, torch.ones(8, device=DEVICE), 1e-5, residual_out=torch.empty_like(x))


@pytest.mark.parametrize("split_k", [0, True, 2.0])
def test_matmul_split_k_must_be_a_positive_int(split_k):
    with pytest.raises(ValueError, match="split_k"):
        kernels.matmul(torch.randn(2, 16, device=DEVICE), torch.randn(16, 8, device=DEVICE), split_k=split_k)


def test_mismatched_dtypes_are_named_without_the_torch_prefix():
    with pytest.raises(TypeError) as exc:
        kernels.rmsnorm(torch.randn(2, 8, device=DEVICE), torch.ones(8, device=DEVICE), 1e-5,
                        torch.randn(2, 8, dtype=torch.float16, device=DEVICE))
    assert "torch." not in str(exc.value) and "float16" in str(exc.value)


@interpreter_only
def test_interpreter_is_judged_as_triton_judges_it(monkeypatch):
    from profiler.backends import interpreter_requested

    assert os.environ.get("TRITON_INTERPRET") == "1"  # tests/conftest.py
    assert interpreter_requested()
    monkeypatch.setenv("TRITON_INTERPRET", "true")
    assert interpreter_requested()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not interpreter_requested()
