"""The "triton" op backend: registration, adapters against the torch backend, and the refusal to load
without a GPU or the interpreter."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from profiler.backends import OP_NAMES, resolve

REPO = Path(__file__).resolve().parents[1]


def test_resolve_triton_gives_triton_variants():
    import profiler.triton_ops as triton_ops

    ops = resolve("triton")
    assert ops.describe() == {op: "triton" for op in OP_NAMES}
    for op in OP_NAMES:
        assert getattr(ops, op) is getattr(triton_ops, op)


def test_triton_ops_agree_with_torch_ops():
    """Each adapter, called with the op signature of profiler.backends, matches the torch variant."""
    tri, ref = resolve("triton"), resolve("torch")
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    def close(a, b):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)

    x, w, bias = randn(2, 3, 48), randn(40, 48), randn(40)
    close(tri.linear(x, w, bias), ref.linear(x, w, bias))
    close(tri.linear(x, w, None), ref.linear(x, w, None))
    q, k, v = randn(1, 4, 5, 64), randn(1, 2, 9, 64), randn(1, 2, 9, 64)
    close(tri.attention_prefill(q, k, v, 0.125, None), ref.attention_prefill(q, k, v, 0.125, None))
    close(tri.attention_prefill(q, k, v, 0.125, 3), ref.attention_prefill(q, k, v, 0.125, 3))
    lens = torch.tensor([9], dtype=torch.int32)
    q1 = q[:, :, 0]
    close(tri.attention_decode(q1, k, v, lens, 0.125, None),
          ref.attention_decode(q1, k, v, lens, 0.125, None))
    h, res, weight = randn(2, 3, 48), randn(2, 3, 48), randn(48)
    close(tri.rmsnorm(h, weight, 1e-5), ref.rmsnorm(h, weight, 1e-5))
    for a, b in zip(tri.rmsnorm(h, weight, 1e-5, res), ref.rmsnorm(h, weight, 1e-5, res)):
        close(a, b)
    cos, sin = randn(5, 32), randn(5, 32)
    close(tri.rope(q, cos, sin), ref.rope(q, cos, sin))
    gate_up = randn(2, 3, 2 * 40)
    close(tri.swiglu(gate_up[..., :40], gate_up[..., 40:]), ref.swiglu(gate_up[..., :40], gate_up[..., 40:]))


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
