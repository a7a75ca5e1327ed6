"""Every autotune config of every autotuned kernel, forced one at a time, matches the reference.

The other kernel tests run one config per kernel: the interpreter's fixed config on CPU, the first
config left by pruning on a GPU (tests set TOKENCOST_AUTOTUNE=0). A GPU run outside the tests may
pick any config of the lists, so each is checked here on a shape that leaves partial tiles in every
direction for the largest tiles (M, N, K, T, S not multiples of 16) and, for decode, empty splits.
Under the interpreter num_warps and num_stages have no effect, so CPU runs check the tile sizes'
masking and indexing (fp32, fp16); a GPU run checks every compiled config in bf16. Same tolerance as
the other kernel tests (tests/tolerance.py). The GQA cases have several KV heads, so a query head
reading the wrong KV head fails.
"""

from __future__ import annotations

import contextlib
import importlib

import pytest
import torch

from kernels import attention_decode, is_interpreter
from kernels.reference import attention_decode_ref
from tests.test_kernel_attention import DEVICE, _check_prefill, _decode_inputs
from tests.test_kernel_matmul import _check as check_matmul
from tests.tolerance import check_kernel

matmul_mod = importlib.import_module("kernels.matmul")
prefill_mod = importlib.import_module("kernels.attention_prefill")
decode_mod = importlib.import_module("kernels.attention_decode")

# CPU: fp32 and fp16 under the interpreter. GPU: bf16 only, the dtype a GPU run uses, which keeps the
# compile count of this file (about 2 kernels per config) inside gpu_check.sh's test budget.
DTYPES = [torch.float32, torch.float16] if is_interpreter() else [torch.bfloat16]
DTYPE_IDS = ["fp32", "fp16"] if is_interpreter() else ["bf16"]


@contextlib.contextmanager
def forced(tuner, config):
    """Run ``tuner`` (a ``triton.autotune`` wrapper) with ``config`` only: with a single config the
    autotuner launches it without pruning or benchmarking."""
    saved = tuner.configs
    tuner.configs = [config]
    tuner.cache.clear()
    try:
        yield
    finally:
        tuner.configs = saved
        tuner.cache.clear()


def _tiles(configs):
    """All configs on a GPU; under the interpreter one per distinct tile shape (warps and stages
    change nothing there)."""
    if not is_interpreter():
        return configs
    seen, kept = set(), []
    for c in configs:
        key = tuple(sorted(c.kwargs.items()))
        if key not in seen:
            seen.add(key)
            kept.append(c)
    return kept


LARGE = _tiles(matmul_mod._LARGE_CONFIGS)
SKINNY = _tiles(matmul_mod._SKINNY_CONFIGS)
GEMV = _tiles(matmul_mod._GEMV_CONFIGS)
PREFILL = _tiles(prefill_mod._CONFIGS)
DECODE = _tiles(decode_mod._CONFIGS)


def _ids(configs):
    return [",".join(f"{k}{v}" for k, v in c.kwargs.items()) + f",w{c.num_warps}s{c.num_stages}"
            for c in configs]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", LARGE, ids=_ids(LARGE))
def test_every_large_matmul_config(config, dtype):
    with forced(matmul_mod._matmul_large, config):
        check_matmul(130, 200, 100, dtype)  # partial tiles in M, N and K for every config
        check_matmul(97, 70, 300, dtype, bias=False, split_k=3)  # split-K with uneven splits


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", SKINNY, ids=_ids(SKINNY))
def test_every_skinny_matmul_config(config, dtype):
    with forced(matmul_mod._matmul_skinny, config):
        check_matmul(37, 150, 300, dtype)  # two row tiles for BLOCK_M 32, a K tail for 256
        check_matmul(17, 70, 600, dtype, split_k=2)


# GEMV family (M <= 16). In fp32 under the interpreter each BLOCK_K step is one numpy matmul over up
# to 512 products, and the tolerance (2x torch's own fp32 error) has little margin there: on these
# shapes the kernel's error was 0.3-0.9 of the bound over seeds 0-3 for every config, while a
# 1 x 70 x 600 GEMV (torch's M = 1 path) reached 1.3x the bound for seed 0 with BLOCK_K 512.
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", GEMV, ids=_ids(GEMV))
def test_every_gemv_matmul_config(config, dtype):
    with forced(matmul_mod._matmul_gemv, config):
        check_matmul(16, 150, 300, dtype)  # M = 16 fills the row tile; partial N tiles; a K tail
        check_matmul(3, 70, 1100, dtype, split_k=2)  # split 0: full steps, split 1: the tail


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", PREFILL, ids=_ids(PREFILL))
def test_every_prefill_config(config, dtype):
    with forced(prefill_mod._prefill, config):
        _check_prefill(1, 8, 2, 97, 150, 96, None, dtype)  # GQA 4 over 2 KV heads, head_dim 96, S > T
        _check_prefill(1, 2, 2, 130, 130, 64, 45, dtype)  # sliding window across blocks


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", DECODE, ids=_ids(DECODE))
def test_every_decode_config(config, dtype):
    q, k, v = _decode_inputs(3, 8, 2, 300, 64, dtype, seed=5)  # GQA 4 over 2 KV heads
    lens = torch.tensor([300, 1, 150], dtype=torch.int32, device=DEVICE)
    with forced(decode_mod._decode_split, config):
        for window, splits in ((None, 5), (40, 2)):
            out = torch.full((3, 8, 64), float("nan"), dtype=dtype, device=DEVICE)
            attention_decode(q, k, v, lens, None, window, splits, out=out)
            truth = attention_decode_ref(q.double(), k.double(), v.double(), lens, None, window)
            baseline = attention_decode_ref(q, k, v, lens, None, window, upcast=False)
            check_kernel(out, truth, baseline)
