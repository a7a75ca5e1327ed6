"""kernels.matmul against the fp64 reference, on awkward and skinny (decode) shapes.

Tolerance (tests/tolerance.py; kernels.md 3.3, FlashAttention's rule): the kernel's max error against
a float64 reference must be at most 2x the error of torch's own matmul in the same dtype, plus one
float32 ulp at the largest output magnitude for the case where torch happens to round exactly. The
kernel accumulates the K products in fp32 and rounds once, like torch's CPU matmul, so 2x leaves room
only for a different summation order (split-K adds one more fp32 sum of the partial results).

Outputs are pre-filled with NaN (``out=``) so that any element the kernel fails to write fails the
check. Runs on CPU under TRITON_INTERPRET=1 (tests/conftest.py); bf16 only on a CUDA GPU.
"""

import importlib

import pytest
import torch

from kernels import is_interpreter, matmul
from kernels._common import cdiv, sm_count
from kernels.matmul import choose_split_k
from kernels.reference import matmul_ref
from tests.conftest import gpu
from tests.tolerance import check_kernel

DEVICE = "cpu" if is_interpreter() else "cuda"
matmul_mod = importlib.import_module("kernels.matmul")


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


# (M, N, K, split_k): decode rows of the GEMV family (M = 1, 3, 16) and the skinny family (17) with
# and without split-K, including more splits than K tiles (empty splits); the family boundaries
# (16/17, 64/65); odd sizes; a 256^3 GEMM.
CASES = [
    (1, 97, 113, None),
    (1, 97, 113, 3),
    (3, 64, 256, 4),
    (16, 113, 97, None),
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


# llama-3.1-8b's decode linears (hidden 4096, 32 + 2 x 8 heads of 128, intermediate 14336, vocab
# 128256; shared/reference/model-configs) as (N, K) of x [M, K] @ W.T.
LLAMA_8B_LINEARS = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
                    "lm_head": (128256, 4096)}
H100_SMS = 132


@pytest.mark.parametrize("M", [1, 2, 8, 16])
def test_choose_split_k_runs_every_llama_8b_decode_linear_as_one_kernel(M):
    # 16-column tiles: N = 4096 gives 256 programs >= 132 SMs, so no split and no reduce launch
    for name, (N, K) in LLAMA_8B_LINEARS.items():
        assert choose_split_k(M, N, K, H100_SMS) == 1, name


def test_choose_split_k_splits_only_what_cannot_fill_the_gpu():
    assert choose_split_k(1, 1024, 4096, H100_SMS) == 4  # 64 tiles of 16 columns: x4 fills 132 SMs
    assert choose_split_k(1, 256, 8192, H100_SMS) == 16  # 16 tiles: x8 = 128 < 132, so x16
    assert choose_split_k(1, 64, 1 << 20, H100_SMS) == 16  # capped at 16
    assert choose_split_k(1, 64, 300, H100_SMS) == 1  # K too short to split (< 2 x 256)
    assert choose_split_k(1, 64, 1024, H100_SMS) == 4  # 4 x 256 of K: no further
    assert choose_split_k(1, 2112, 4096, H100_SMS) == 1  # 132 tiles: exactly one per SM
    assert choose_split_k(1, 2096, 4096, H100_SMS) == 2  # 131 tiles: one SM short
    assert choose_split_k(32, 4096, 4096, H100_SMS) == 2  # skinny: 128 tiles of 32 x 32
    assert choose_split_k(64, 28672, 4096, H100_SMS) == 1
    assert choose_split_k(128, 4096, 4096, H100_SMS) == 8  # large: 32 tiles of 128 x 128 (rule unchanged)
    assert choose_split_k(4096, 4096, 4096, H100_SMS) == 1  # large prefill GEMM
    assert choose_split_k(1, 4096, 4096, 4) == 1  # the interpreter's nominal 4 SMs


@pytest.mark.parametrize("M", [1, 3, 16, 17, 32, 33, 64])
@pytest.mark.parametrize("N", [64, 1000, 2096, 4096, 6144])
@pytest.mark.parametrize("K", [300, 4096, 14336])
def test_split_k_agrees_with_the_configs_the_autotuner_may_pick(M, N, K):
    """The split is taken only when no config left after pruning fills the GPU with one split less,
    and no split is taken when the narrowest allowed tile already fills it (or K is too short)."""
    split = choose_split_k(M, N, K, H100_SMS)
    if M <= 16:
        configs, prune = matmul_mod._GEMV_CONFIGS, matmul_mod._prune_gemv
    else:
        configs, prune = matmul_mod._SKINNY_CONFIGS, matmul_mod._prune_skinny
    kept = prune(configs, {"M": M, "K": K}, SPLIT_K=split)
    most = max(cdiv(M, c.kwargs["BLOCK_M"]) * cdiv(N, c.kwargs["BLOCK_N"]) for c in kept)
    if split > 1:
        assert most * (split // 2) < H100_SMS
        assert K // split >= 256
    else:
        assert most >= H100_SMS or K // 2 < 256


def test_gpu_autotune_pruning_keeps_fitting_configs():
    """The GPU-only config pruning (not exercised by the interpreter's single config): each decode
    family keeps exactly the row tile covering its M, the GEMV family only K steps that fit one
    split's share of K, and the large family no row tile much taller than M."""
    from kernels.matmul import (_GEMV_CONFIGS, _LARGE_CONFIGS, _SKINNY_CONFIGS, _prune_gemv,
                                _prune_large, _prune_skinny)

    for M in (1, 5, 16):
        assert matmul_mod._kernel_for(M) is matmul_mod._matmul_gemv
    for M, block_m in ((17, 32), (32, 32), (33, 64), (64, 64)):
        assert matmul_mod._kernel_for(M) is matmul_mod._matmul_skinny
        kept = _prune_skinny(_SKINNY_CONFIGS, {"M": M})
        assert kept and {c.kwargs["BLOCK_M"] for c in kept} == {block_m}
    assert matmul_mod._kernel_for(65) is matmul_mod._matmul_large
    assert {c.kwargs["BLOCK_M"] for c in _GEMV_CONFIGS} == {16}
    assert {c.kwargs["BLOCK_N"] for c in _GEMV_CONFIGS} == {16, 32}
    assert len(_prune_gemv(_GEMV_CONFIGS, {"M": 1, "K": 4096}, SPLIT_K=1)) == len(_GEMV_CONFIGS)
    for K, split in ((300, 1), (100, 1), (4096, 16), (1000, 2)):
        kept = _prune_gemv(_GEMV_CONFIGS, {"M": 1, "K": K}, SPLIT_K=split)
        assert kept and {c.kwargs["BLOCK_K"] for c in kept} == {256}, (K, split)
    kept = _prune_gemv(_GEMV_CONFIGS, {"M": 1, "K": 1100}, SPLIT_K=2)  # 550 of K per split
    assert {c.kwargs["BLOCK_K"] for c in kept} == {256, 512}
    assert {c.kwargs["BLOCK_M"] for c in _prune_large(_LARGE_CONFIGS, {"M": 65})} == {64, 128}
    assert len(_prune_large(_LARGE_CONFIGS, {"M": 4096})) == len(_LARGE_CONFIGS)
    assert all(c.kwargs["BLOCK_K"] >= 16 for c in _LARGE_CONFIGS + _SKINNY_CONFIGS + _GEMV_CONFIGS)


class _CountingKernel:
    """Stands in for a module-level Triton kernel: counts launches, then launches the real one."""

    def __init__(self, kernel):
        self.kernel, self.launches = kernel, 0

    def __getitem__(self, grid):
        self.launches += 1
        return self.kernel[grid]


@pytest.mark.parametrize("split_k", [None, 1, 2, 5])
def test_split_k_reduce_is_launched_only_for_several_splits(monkeypatch, split_k):
    counter = _CountingKernel(matmul_mod._splitk_reduce_kernel)
    monkeypatch.setattr(matmul_mod, "_splitk_reduce_kernel", counter)
    _check(1, 97, 600, torch.float16, split_k=split_k)
    splits = split_k or choose_split_k(1, 97, 600, sm_count(torch.device(DEVICE)))
    assert counter.launches == (1 if splits > 1 else 0)


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
@pytest.mark.parametrize("M", [1, 3, 16, 17, 64, 65, 256, 1000])
def test_matmul_bf16_on_gpu(M):
    _check(M, 4096 + 64, 1024 + 16, torch.bfloat16)


@gpu
def test_matmul_offsets_past_2_pow_31_elements():
    """Row-major b and column-major a whose K x stride passes 2**31 elements (4.6 GB of bf16): with
    16 splits the last split starts at k = 122880, 122880 x 17500 > 2**31, which overflowed the int32
    offsets of an earlier version."""
    K, stride = 131072, 17500
    big = torch.empty(K, stride, dtype=torch.bfloat16, device=DEVICE)
    big[:, :64].normal_()
    big[-1, -1] = 1.0  # the far end of the buffer is touched: the allocation really spans it
    a = big[:, :3].t()  # [3, K], column-major: stride_ak = 17500
    b = big[:, 16:64]  # [K, 48], row-major: stride_bk = 17500
    out = torch.full((3, 48), float("nan"), dtype=torch.bfloat16, device=DEVICE)
    matmul(a, b, out=out, split_k=16)
    check_kernel(out, matmul_ref(a.double(), b.double()), matmul_ref(a, b, upcast=False))
