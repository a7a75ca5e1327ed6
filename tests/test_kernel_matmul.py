"""kernels.matmul against the fp64 reference, on awkward and skinny (decode) shapes.

Tolerance (tests/tolerance.py; kernels.md 3.3, FlashAttention's rule): the kernel's max error against
a float64 reference must be at most 2x the error of torch's own matmul in the same dtype, plus one
float32 ulp at the largest output magnitude for the case where torch happens to round exactly. The
kernel accumulates the K products in fp32 and rounds once, like torch's CPU matmul, so 2x leaves room
only for a different summation order (split-K adds one more fp32 sum of the partial results).

Outputs are pre-filled with NaN (``out=``) so that any element the kernel fails to write fails the
check. Runs on CPU under TRITON_INTERPRET=1 (tests/conftest.py); bf16 only on a CUDA GPU.
"""

import pytest
import torch

from kernels import is_interpreter, matmul
from kernels.matmul import choose_split_k
from kernels.reference import matmul_ref
from tests.conftest import gpu
from tests.tolerance import check_kernel

DEVICE = "cpu" if is_interpreter() else "cuda"


def _check(M, N, K, dtype, *, transposed_b=True, bias=True, split_k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(M, K, generator=g).to(DEVICE, dtype)
    if transposed_b:  # an nn.Linear weight [N, K] passed as w.T, as the linear op does
        b = torch.randn(N, K, generator=g).to(DEVICE, dtype).t()
    else:
        b = torch.randn(K, N, generator=g).to(DEVICE, dtype)
    c_bias = torch.randn(N, generator=g).to(DEVICE, dtype) if bias else None
    out = torch.full((M, N), float("nan"), dtype=dtype, device=DEVICE)
    result = matmul(a, b, c_bias, out=out, split_k=split_k)
    assert result is out
    truth = matmul_ref(a.double(), b.double(), None if c_bias is None else c_bias.double())
    baseline = matmul_ref(a, b, c_bias, upcast=False)
    check_kernel(out, truth, baseline)


# (M, N, K, split_k): skinny decode rows (M = 1, 3, 17) with and without split-K, including more
# splits than K tiles (empty splits); the skinny/large boundary (64/65); odd sizes; a 256^3 GEMM.
CASES = [
    (1, 97, 113, None),
    (1, 97, 113, 3),
    (3, 64, 256, 4),
    (17, 113, 97, 2),
    (17, 40, 40, 5),
    (64, 33, 7, None),
    (65, 97, 113, None),
    (97, 113, 200, 2),
    (256, 256, 256, None),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("M,N,K,split_k", CASES)
def test_matmul_matches_reference(M, N, K, split_k, dtype):
    _check(M, N, K, dtype, split_k=split_k)


@pytest.mark.parametrize("transposed_b,bias", [(False, False), (False, True), (True, False)])
def test_matmul_layouts_and_bias(transposed_b, bias):
    _check(17, 97, 113, torch.float16, transposed_b=transposed_b, bias=bias, split_k=2)
    _check(65, 97, 113, torch.float16, transposed_b=transposed_b, bias=bias)


def test_matmul_strided_a_and_default_output():
    a_full = torch.randn(9, 2 * 113).to(DEVICE, torch.float16)
    a = a_full[:, ::2]  # column stride 2
    w = torch.randn(50, 113).to(DEVICE, torch.float16)
    c = matmul(a, w.t())
    assert c.shape == (9, 50) and c.dtype == torch.float16 and c.is_contiguous()
    check_kernel(c, matmul_ref(a.double(), w.t().double()), matmul_ref(a, w.t(), upcast=False))


def test_split_k_does_not_change_the_result_beyond_rounding():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 512, generator=g).to(DEVICE)
    b = torch.randn(512, 64, generator=g).to(DEVICE)
    one, four = matmul(a, b, split_k=1), matmul(a, b, split_k=4)
    torch.testing.assert_close(four, one, rtol=1e-5, atol=1e-4)  # fp32, summation order only


def test_choose_split_k():
    # decode GEMV on an H100-sized GPU (132 SMs): 64 column tiles of 64 -> split to fill the SMs
    split = choose_split_k(1, 4096, 4096, 132)
    assert split > 1 and split & (split - 1) == 0 and 64 * split >= 132
    assert choose_split_k(1, 128256, 4096, 132) == 1  # lm_head: tiles already fill the GPU
    assert choose_split_k(4096, 4096, 4096, 132) == 1  # large prefill GEMM
    assert choose_split_k(1, 64, 300, 132) == 1  # K too short to split (< 2 x 256)
    assert choose_split_k(1, 64, 1 << 20, 132) <= 16


def test_gpu_autotune_pruning_keeps_fitting_configs():
    """The GPU-only config pruning (not exercised by the interpreter's single config) keeps exactly the
    row tile covering a skinny M, and no row tile much taller than a large M."""
    from kernels.matmul import _LARGE_CONFIGS, _SKINNY_CONFIGS, _prune_large, _prune_skinny

    for M, block_m in ((1, 16), (16, 16), (17, 32), (64, 64)):
        kept = _prune_skinny(_SKINNY_CONFIGS, {"M": M})
        assert kept and {c.kwargs["BLOCK_M"] for c in kept} == {block_m}
    assert {c.kwargs["BLOCK_M"] for c in _prune_large(_LARGE_CONFIGS, {"M": 65})} == {64, 128}
    assert len(_prune_large(_LARGE_CONFIGS, {"M": 4096})) == len(_LARGE_CONFIGS)
    assert all(c.kwargs["BLOCK_K"] >= 16 for c in _LARGE_CONFIGS + _SKINNY_CONFIGS)


def test_matmul_rejects_bad_inputs():
    a = torch.randn(4, 8, device=DEVICE)
    b = torch.randn(8, 5, device=DEVICE)
    with pytest.raises(ValueError, match="shapes do not match"):
        matmul(a, torch.randn(7, 5, device=DEVICE))
    with pytest.raises(TypeError, match="dtype"):
        matmul(a, b.half())
    with pytest.raises(TypeError, match="dtype int64"):
        matmul(a.long(), b.long())
    with pytest.raises(TypeError, match="torch.Tensor"):
        matmul(a.tolist(), b)
    with pytest.raises(ValueError, match="2 dimensions"):
        matmul(a[None], b)
    with pytest.raises(ValueError, match="bias has shape"):
        matmul(a, b, torch.zeros(4, device=DEVICE))
    with pytest.raises(ValueError, match="split_k"):
        matmul(a, b, split_k=0)
    with pytest.raises(ValueError, match="out has shape"):
        matmul(a, b, out=torch.empty(5, 4, device=DEVICE))
    with pytest.raises(ValueError, match="one device"):
        matmul(a, b.to("meta"))


@pytest.mark.skipif(not is_interpreter(), reason="interpreter-only restriction")
def test_bfloat16_is_refused_under_the_interpreter():
    with pytest.raises(TypeError, match="bfloat16.*interpreter"):
        matmul(torch.randn(2, 16).bfloat16(), torch.randn(16, 16).bfloat16())


@gpu
@pytest.mark.parametrize("M", [1, 3, 17, 64, 65, 256, 1000])
def test_matmul_bf16_on_gpu(M):
    _check(M, 4096 + 64, 1024 + 16, torch.bfloat16)
