"""The "triton" op backend: registration, adapters against the torch backend, and the refusal to load
without a GPU or the interpreter."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from kernels.reference import attention_decode_ref, attention_prefill_ref, rope_ref
from profiler.backends import OP_NAMES, resolve
from tests.tolerance import check_kernel

REPO = Path(__file__).resolve().parents[1]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # the interpreter runs on CPU tensors


def test_resolve_triton_gives_triton_variants():
    import profiler.triton_ops as triton_ops

    ops = resolve("triton")
    assert ops.describe() == {op: "triton" for op in OP_NAMES}
    for op in OP_NAMES:
        assert getattr(ops, op) is getattr(triton_ops, op)


def test_triton_ops_agree_with_torch_ops():
    """Each adapter, called with the op signature of profiler.backends, matches a float64 evaluation of
    the op at most 2x as far off as the torch variant in float32 (the kernel tests' rule,
    tests/tolerance.py), so both backends agree within 3x torch's own error plus one float32 ulp. A
    wiring error (argument order, transposed weight, GQA head order) is off by O(1)."""
    tri, ref = resolve("triton"), resolve("torch")
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(DEVICE)

    def f64(*args):
        return [a.double() if isinstance(a, torch.Tensor) else a for a in args]

    def check(op, args, truth):
        actual, baseline = getattr(tri, op)(*args), getattr(ref, op)(*args)
        if isinstance(actual, tuple):  # rmsnorm with a residual: (y, x + residual)
            for a, t, b in zip(actual, truth, baseline, strict=True):
                check_kernel(a, t, b)
        else:
            check_kernel(actual, truth, baseline)

    # float64 truth: the torch variant itself where it runs float64 as is (linear, rmsnorm, swiglu);
    # kernels.reference for rope and decode (the torch variants compute in float32) and for prefill.
    x, w, bias = randn(2, 3, 48), randn(40, 48), randn(40)
    check("linear", (x, w, bias), ref.linear(*f64(x, w, bias)))
    check("linear", (x, w, None), ref.linear(*f64(x, w), None))
    q, k, v = randn(1, 4, 5, 64), randn(1, 2, 9, 64), randn(1, 2, 9, 64)  # GQA 2 over 2 KV heads
    for window in (None, 3):
        truth = attention_prefill_ref(*f64(q, k, v), 0.125, window)
        check("attention_prefill", (q, k, v, 0.125, window), truth)
    lens, q1 = torch.tensor([9], dtype=torch.int32, device=DEVICE), q[:, :, 0]
    truth = attention_decode_ref(*f64(q1, k, v), lens, 0.125)
    check("attention_decode", (q1, k, v, lens, 0.125, None), truth)
    h, res, weight = randn(2, 3, 48), randn(2, 3, 48), randn(48)
    check("rmsnorm", (h, weight, 1e-5), ref.rmsnorm(*f64(h, weight), 1e-5))
    check("rmsnorm", (h, weight, 1e-5, res), ref.rmsnorm(*f64(h, weight), 1e-5, res.double()))
    cos, sin = randn(5, 32), randn(5, 32)
    check("rope", (q, cos, sin), rope_ref(*f64(q, cos, sin)))
    gate, up = randn(2, 3, 2 * 40).split(40, dim=-1)
    check("swiglu", (gate, up), ref.swiglu(*f64(gate, up)))


def test_import_without_gpu_or_interpreter_raises_backend_unavailable():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # hide any GPU, so the check fails on every machine
    code = (
        "import sys\n"
        "from profiler.errors import BackendUnavailableError\n"
        "try:\n"
        "    import profiler.triton_ops\n"
        "except BackendUnavailableError as exc:\n"
        "    print(str(exc)); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr
    message = proc.stdout.strip()
    assert "\n" not in message
    assert "triton backend needs a CUDA GPU or TRITON_INTERPRET=1" in message and "--backend torch" in message
