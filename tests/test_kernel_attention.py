"""kernels.attention_prefill and kernels.attention_decode against the fp64 reference.

Tolerance (tests/tolerance.py, kernels.md 3.3, FlashAttention's tests): the kernel's max error
against a float64 reference must be at most 2x the error of a plain PyTorch attention computed in the
input dtype (``upcast=False``: scores, softmax and P @ V all in that dtype), plus one float32 ulp at
the largest output magnitude. FlashAttention's own KV-cache test allows 3x; the kernels here keep
fp32 statistics, so 2x is used for both.

Shapes cover odd lengths (1, 7, 97, 113), S > T (bottom-right alignment), GQA ratios 1, 4 and 7 with
one and with several KV heads (a query head reading the wrong KV head fails only when there are
several), head_dim 64, 96 (padded to 128), 128 and 256, sliding windows, strided views, and decode
batches with mixed sequence lengths, one split (the split kernel writes the output, no combine pass)
and more splits than needed. Outputs are pre-filled with NaN.
"""

import importlib

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from kernels import attention_decode, attention_prefill, is_interpreter
from kernels._common import sm_count
from kernels.attention_decode import choose_num_splits
from kernels.reference import attention_decode_ref, attention_prefill_ref
from tests.conftest import gpu
from tests.tolerance import check_kernel

DEVICE = "cpu" if is_interpreter() else "cuda"
decode_mod = importlib.import_module("kernels.attention_decode")
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])


def _randn(*shape, gen, dtype):
    return torch.randn(*shape, generator=gen).to(DEVICE, dtype)


def _check_prefill(B, Hq, Hkv, T, S, D, window, dtype, scale=None):
    g = torch.Generator().manual_seed(T * 1000 + S + D)
    q = _randn(B, T, Hq, D, gen=g, dtype=dtype).transpose(1, 2)  # the model's layout: a strided view
    k = _randn(B, Hkv, S, D, gen=g, dtype=dtype)
    v = _randn(B, Hkv, S, D, gen=g, dtype=dtype)
    out = torch.full((B, Hq, T, D), float("nan"), dtype=dtype, device=DEVICE)
    assert attention_prefill(q, k, v, scale, window, out=out) is out
    truth = attention_prefill_ref(q.double(), k.double(), v.double(), scale, window)
    baseline = attention_prefill_ref(q, k, v, scale, window, upcast=False)
    check_kernel(out, truth, baseline)


# (B, Hq, Hkv, T, S, D, window)
PREFILL_CASES = [
    (1, 2, 2, 1, 1, 64, None),
    (2, 4, 1, 7, 7, 64, None),  # GQA 4
    (1, 7, 1, 97, 97, 96, None),  # GQA 7, head_dim 96
    (1, 2, 2, 113, 203, 128, None),  # S > T: bottom-right alignment
    (1, 4, 1, 97, 113, 64, 17),  # sliding window smaller than a block
    (1, 2, 2, 50, 50, 64, 1),  # window 1: each query sees itself only
    (1, 2, 1, 65, 130, 64, 40),  # window with fully visible middle blocks
    (1, 2, 1, 16, 40, 256, None),  # head_dim 256
    (2, 8, 2, 19, 19, 64, None),  # GQA 4 over 2 KV heads, 2 sequences
    (1, 14, 2, 7, 23, 96, None),  # GQA 7 over 2 KV heads, S > T
    (1, 3, 3, 9, 9, 64, None),  # GQA 1 over 3 KV heads
]


@DTYPES
@pytest.mark.parametrize("B,Hq,Hkv,T,S,D,window", PREFILL_CASES)
def test_prefill_matches_reference(B, Hq, Hkv, T, S, D, window, dtype):
    _check_prefill(B, Hq, Hkv, T, S, D, window, dtype)


def test_prefill_custom_scale_and_default_output():
    _check_prefill(1, 2, 1, 33, 33, 64, None, torch.float16, scale=0.3)
    q = torch.randn(1, 2, 5, 64, device=DEVICE)
    o = attention_prefill(q, q[:, :1], q[:, :1])
    assert o.shape == (1, 2, 5, 64) and o.is_contiguous() and torch.isfinite(o).all()


def test_reference_masking_matches_torch_sdpa():
    """The reference's bottom-right mask and GQA order agree with torch's own implementations."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 5, 16, generator=g), torch.randn(1, 2, 9, 16, generator=g),
               torch.randn(1, 2, 9, 16, generator=g))
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(5, 9), enable_gqa=True)
    torch.testing.assert_close(attention_prefill_ref(q, k, v), expected)
    kk, vv = k[:, :, :5], v[:, :, :5]  # T == S: SDPA's top-left is_causal is the same mask
    expected = F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(attention_prefill_ref(q, kk, vv), expected)


def _decode_inputs(B, Hq, Hkv, S_max, D, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = _randn(B, Hq, D, gen=g, dtype=dtype)
    # caches sliced out of a longer buffer, as the decode loop passes them (strided in S)
    k = _randn(B, Hkv, S_max + 5, D, gen=g, dtype=dtype)[:, :, 2:S_max + 2]
    v = _randn(B, Hkv, S_max + 5, D, gen=g, dtype=dtype)[:, :, 3:S_max + 3]
    return q, k, v


# (Hq, Hkv, S_max, seq_lens, D, window, num_splits). num_splits 1: the split kernel writes the output
# itself (no combine pass); None: the launcher's choice, which is 1 for these small caches.
DECODE_CASES = [
    (2, 2, 64, [1, 64, 33], 64, None, None),  # MHA, mixed lengths, launcher's choice of splits
    (7, 1, 113, [113, 5, 60], 96, None, 1),  # one split: GQA 7, head_dim 96, mixed lengths
    (8, 2, 150, [150, 60, 7], 64, 17, 1),  # one split with a sliding window
    (2, 2, 40, [40], 256, None, 1),  # one split at head_dim 256
    (4, 1, 200, [1, 97, 200], 96, None, 3),  # GQA 4, head_dim 96, splits past short sequences
    (7, 1, 113, [113, 5], 128, None, 8),  # GQA 7, more splits than 16-token chunks of some sequences
    (8, 2, 150, [150, 60, 7], 64, 17, 4),  # sliding window
    (2, 2, 40, [40], 256, None, 2),  # head_dim 256
    (2, 1, 400, [400, 37], 64, None, 20),  # more splits than one 16-wide combine chunk, some empty
    (14, 2, 50, [50, 9], 96, None, 2),  # GQA 7 over 2 KV heads
    (3, 3, 30, [30, 1], 64, None, None),  # GQA 1 over 3 KV heads
]


@DTYPES
@pytest.mark.parametrize("Hq,Hkv,S_max,seq_lens,D,window,num_splits", DECODE_CASES)
def test_decode_matches_reference(Hq, Hkv, S_max, seq_lens, D, window, num_splits, dtype):
    B = len(seq_lens)
    q, k, v = _decode_inputs(B, Hq, Hkv, S_max, D, dtype)
    lens = torch.tensor(seq_lens, dtype=torch.int32, device=DEVICE)
    out = torch.full((B, Hq, D), float("nan"), dtype=dtype, device=DEVICE)
    assert attention_decode(q, k, v, lens, None, window, num_splits, out=out) is out
    truth = attention_decode_ref(q.double(), k.double(), v.double(), lens, None, window)
    baseline = attention_decode_ref(q, k, v, lens, None, window, upcast=False)
    check_kernel(out, truth, baseline)


def test_fp32_tolerance_rejects_an_error_the_old_fixed_floor_let_through():
    """The fp32 bound is 2x torch's own fp32 error plus one ulp, not a fixed 1e-5 (about 40 ulps of
    these outputs): one element off by 1e-5 must fail the check that the unperturbed output passes."""
    q, k, v = _decode_inputs(2, 2, 2, 64, 64, torch.float32)
    lens = torch.tensor([64, 33], dtype=torch.int32, device=DEVICE)
    out = attention_decode(q, k, v, lens)
    truth = attention_decode_ref(q.double(), k.double(), v.double(), lens)
    baseline = attention_decode_ref(q, k, v, lens, upcast=False)
    check_kernel(out, truth, baseline)
    out[1, 0, 5] += 1e-5
    with pytest.raises(AssertionError, match="exceeds"):
        check_kernel(out, truth, baseline)


def test_decode_agrees_with_prefill_of_one_token():
    q, k, v = _decode_inputs(2, 8, 2, 97, 64, torch.float32, seed=3)
    lens = torch.tensor([97, 40], dtype=torch.int32, device=DEVICE)
    dec = attention_decode(q, k, v, lens, 0.2, 9, num_splits=3)
    for b, n in enumerate(lens.tolist()):
        pre = attention_prefill(q[b:b + 1, :, None], k[b:b + 1, :, :n], v[b:b + 1, :, :n], 0.2, 9)
        torch.testing.assert_close(dec[b], pre[0, :, 0], rtol=1e-5, atol=1e-5)


def test_decode_split_count_only_changes_rounding():
    q, k, v = _decode_inputs(2, 4, 2, 300, 64, torch.float32, seed=4)
    lens = torch.tensor([300, 123], dtype=torch.int32, device=DEVICE)
    one = attention_decode(q, k, v, lens, num_splits=1)
    for splits in (2, 7):
        split = attention_decode(q, k, v, lens, num_splits=splits)
        torch.testing.assert_close(split, one, rtol=1e-5, atol=1e-5)


H100_SMS = 132


def test_choose_num_splits_for_llama_8b():
    """llama-3.1-8b: 8 KV heads, head_dim 128, bf16 (2 bytes), on a 132-SM GPU."""
    def splits(batch, s_max):
        return choose_num_splits(batch, 8, s_max, H100_SMS, 128, 2)

    assert splits(1, 544) == 1  # prompt 512 + 32 tokens: one kernel, no combine launch
    assert splits(1, 1024) == 1  # 1024 x 2 x 128 x 2 bytes = 512 KB per program: the limit
    assert splits(1, 1025) == 16  # past it: 64-token splits (8 programs is few), 1025 // 64
    assert splits(1, 8192) == 33  # 8 x 33 = 264 programs: two per SM
    assert splits(4, 2048) == 9  # 32 programs: cdiv(264, 32)
    assert splits(16, 8192) == 3  # 128 programs: 256-token minimum, cdiv(264, 128)
    for batch in (17, 32, 64):  # >= 132 programs already: one split at any length
        assert splits(batch, 8192) == 1 and splits(batch, 1 << 17) == 1


def test_choose_num_splits_bounds():
    assert choose_num_splits(1, 1, 1 << 20, H100_SMS, 128, 2) == 64  # at most 64
    assert choose_num_splits(1, 8, 2048, H100_SMS, 64, 2) == 1  # head_dim 64: 2048 x 256 B = 512 KB
    assert choose_num_splits(1, 8, 513, H100_SMS, 128, 4) == 8  # fp32: 513 x 1 KB > 512 KB
    assert choose_num_splits(1, 8, 1 << 16, H100_SMS, 128, 2) == 33
    assert choose_num_splits(2, 1, 4000, 4, 64, 4) == 4  # the interpreter's 4 SMs: cdiv(8, 2)
    for batch, kv_heads, d, elem in ((1, 8, 128, 2), (2, 8, 128, 2), (8, 8, 128, 2), (16, 8, 128, 2),
                                     (1, 1, 64, 2), (3, 2, 256, 4)):
        programs = batch * kv_heads
        min_len = 64 if 4 * programs <= H100_SMS else 256
        last = 1
        for s_max in range(1, 20000, 37):
            n = choose_num_splits(batch, kv_heads, s_max, H100_SMS, d, elem)
            assert last <= n <= 64  # never decreases as an eager run's cache grows
            if n > 1:
                assert s_max // n >= min_len and programs * (n - 1) < 2 * H100_SMS
                assert s_max * 2 * d * elem > 512 * 1024
            last = n


class _Recorder:
    """Stands in for a module-level Triton kernel (or an autotuned one): records the arguments of
    each launch and launches nothing, or counts launches and launches the real kernel."""

    def __init__(self, kernel=None):
        self.kernel, self.calls = kernel, []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.calls.append((grid, args, kwargs))
            if self.kernel is not None:
                return self.kernel[grid](*args, **kwargs)
            return None
        return launch


@pytest.mark.parametrize("num_splits", [None, 1, 4])
def test_combine_pass_is_launched_only_for_several_splits(monkeypatch, num_splits):
    combine = _Recorder(decode_mod._decode_combine_kernel)
    monkeypatch.setattr(decode_mod, "_decode_combine_kernel", combine)
    q, k, v = _decode_inputs(2, 4, 2, 150, 64, torch.float16)
    lens = torch.tensor([150, 61], dtype=torch.int32, device=DEVICE)
    out = torch.full((2, 4, 64), float("nan"), dtype=torch.float16, device=DEVICE)
    attention_decode(q, k, v, lens, num_splits=num_splits, out=out)
    check_kernel(out, attention_decode_ref(q.double(), k.double(), v.double(), lens),
                 attention_decode_ref(q, k, v, lens, upcast=False))
    chosen = num_splits or choose_num_splits(2, 2, 150, sm_count(q.device), 64, 2)
    assert len(combine.calls) == (1 if chosen > 1 else 0)


def test_launcher_splits_a_long_cache_and_matches_the_reference():
    """The launcher's own choice past the one-split limit (interpreter: 4 SMs, so 4 splits for 2
    programs), against the reference, next to a forced single split."""
    q, k, v = _decode_inputs(1, 4, 2, 2100, 64, torch.float16, seed=7)
    lens = torch.tensor([2100], dtype=torch.int32, device=DEVICE)
    assert choose_num_splits(1, 2, 2100, sm_count(q.device), 64, 2) > 1
    truth = attention_decode_ref(q.double(), k.double(), v.double(), lens)
    baseline = attention_decode_ref(q, k, v, lens, upcast=False)
    for splits in (None, 1):
        out = torch.full((1, 4, 64), float("nan"), dtype=torch.float16, device=DEVICE)
        attention_decode(q, k, v, lens, num_splits=splits, out=out)
        check_kernel(out, truth, baseline)


def _specialisation(value):
    """What Triton compiles a kernel variant for, per argument: a tensor's dtype and 16-byte
    alignment, an int's ``== 1`` and ``% 16 == 0`` (kernels.md 2.5), any other value itself."""
    if isinstance(value, torch.Tensor):
        return value.dtype, value.data_ptr() % 16 == 0
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    return value == 1, value % 16 == 0


def test_growing_cache_never_changes_what_the_decode_kernels_specialise_on(monkeypatch):
    """An eager decode loop passes a cache view one position longer each step, across the one-split
    limit and through split counts of 1, 4, 15, 16 and 17: every argument the split and combine kernels
    specialise on (all but ``_GROWING_ARGS``) stays the same, so no step compiles a new variant."""
    split, combine, ahead = _Recorder(), _Recorder(), []
    monkeypatch.setattr(decode_mod, "_decode_split", split)
    monkeypatch.setattr(decode_mod, "_decode_combine_kernel", combine)
    monkeypatch.setattr(decode_mod, "_compile_combine_ahead", lambda args, meta: ahead.append((args, meta)))
    q, k, v = _decode_inputs(1, 4, 2, 2100, 64, torch.float16)
    out = torch.empty(1, 4, 64, dtype=torch.float16, device=DEVICE)
    steps = [(2040, None), (2049, None), (2100, None), (2100, 15), (2100, 16), (2100, 17)]
    for length, splits in steps:
        lens = torch.tensor([length], dtype=torch.int32, device=DEVICE)
        attention_decode(q, k[:, :, :length], v[:, :, :length], lens, num_splits=splits, out=out)
    chosen = [n or choose_num_splits(1, 2, length, sm_count(q.device), 64, 2) for length, n in steps]
    assert chosen[0] == 1 and min(chosen[1:]) > 1  # 2040 x 2 x 64 x 2 bytes <= 512 KB < 2049 x ...
    assert [grid[1] for grid, _, _ in split.calls] == chosen
    names = decode_mod._decode_split_kernel.arg_names
    keys = {tuple(_specialisation(a) for name, a in zip(names, args) if name not in decode_mod._GROWING_ARGS)
            + tuple(sorted(kw.items())) for _, args, kw in split.calls}
    assert len(keys) == 1
    launched = [(args, kw) for _, args, kw in combine.calls] + ahead
    keys = {tuple(_specialisation(a) for a in args[:-1]) + tuple(sorted(kw.items())) for args, kw in launched}
    assert len(combine.calls) == 5 and len(ahead) == 1 and len(keys) == 1  # the last arg: NUM_SPLITS


def test_gpu_autotune_pruning_fits_shared_memory_at_head_dim_256():
    """The GPU-only config pruning (the interpreter runs one fixed config) leaves configs whose
    16-bit Q, K and V tiles fit Hopper's shared memory at head_dim 256, and prunes nothing at 64."""
    from kernels.attention_decode import _CONFIGS as DECODE_CONFIGS, _prune as prune_decode
    from kernels.attention_prefill import _CONFIGS as PREFILL_CONFIGS, _prune as prune_prefill

    kept = prune_prefill(PREFILL_CONFIGS, {}, BLOCK_D=256)
    assert kept and all(2 * 256 * (c.kwargs["BLOCK_M"] + 2 * c.kwargs["BLOCK_N"] * c.num_stages) <= 200 * 1024
                        for c in kept)
    assert len(prune_prefill(PREFILL_CONFIGS, {}, BLOCK_D=64)) == len(PREFILL_CONFIGS)
    # Register rule (fp32 accumulator + score tile <= 128 values per thread): the 128-row 4-warp tiles
    # that spilled on sm_90 go at head_dim >= 96; only the 64-row 8-warp tiles are left at 256.
    for d, dropped in ((128, {(128, 64, 4), (128, 32, 4)}), (256, None)):
        kept = prune_prefill(PREFILL_CONFIGS, {}, BLOCK_D=d)
        shapes = {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps) for c in kept}
        assert all(c.kwargs["BLOCK_M"] * (d + c.kwargs["BLOCK_N"]) <= 128 * 32 * c.num_warps for c in kept)
        if dropped:
            assert not shapes & dropped and len(kept) == len(PREFILL_CONFIGS) - 2
        else:
            assert shapes == {(64, 64, 8), (64, 32, 8)}
    kept = prune_decode(DECODE_CONFIGS, {}, BLOCK_D=256)
    assert kept and max(c.kwargs["BLOCK_N"] * c.num_stages for c in kept) <= 192
    assert all(c.kwargs["BLOCK_N"] >= 16 for c in PREFILL_CONFIGS + DECODE_CONFIGS)


def test_attention_rejects_bad_inputs():
    q4 = torch.randn(1, 4, 3, 64, device=DEVICE)
    kv = torch.randn(1, 2, 5, 64, device=DEVICE)
    with pytest.raises(ValueError, match="multiple of KV heads"):
        attention_prefill(q4[:, :3], kv, kv)
    with pytest.raises(ValueError, match="T <= S"):
        attention_prefill(q4, kv[:, :, :2], kv[:, :, :2])
    with pytest.raises(ValueError, match="window"):
        attention_prefill(q4, kv, kv, window=0)
    with pytest.raises(ValueError, match="head_dim 512"):
        big = torch.zeros(1, 1, 1, 512, device=DEVICE)
        attention_prefill(big, big, big)
    with pytest.raises(ValueError, match="same shape"):
        attention_prefill(q4, kv, kv[:, :, :4])
    with pytest.raises(TypeError, match="dtype"):
        attention_prefill(q4, kv.half(), kv.half())
    with pytest.raises(ValueError, match="4 dimensions"):
        attention_prefill(q4[0], kv, kv)


def test_decode_rejects_bad_seq_lens():
    q, k, v = _decode_inputs(2, 4, 2, 16, 64, torch.float32)
    good = torch.tensor([16, 3], dtype=torch.int32, device=DEVICE)
    with pytest.raises(TypeError, match="int32"):
        attention_decode(q, k, v, good.long())
    with pytest.raises(ValueError, match="seq_lens has shape"):
        attention_decode(q, k, v, good[:1])
    if DEVICE == "cpu":  # checked on the host only where that needs no device sync
        with pytest.raises(ValueError, match=r"\[1, S_max=16\]"):
            attention_decode(q, k, v, torch.tensor([0, 3], dtype=torch.int32))
        with pytest.raises(ValueError, match=r"\[1, S_max=16\]"):
            attention_decode(q, k, v, torch.tensor([17, 3], dtype=torch.int32))
    with pytest.raises(ValueError, match="num_splits"):
        attention_decode(q, k, v, good, num_splits=0)


@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16], ids=["bf16"])
@pytest.mark.parametrize("Hq,Hkv,T,S,D", [(32, 8, 113, 1000, 128), (14, 2, 256, 256, 64), (8, 8, 97, 97, 96),
                                          (8, 4, 17, 33, 256)])
def test_attention_bf16_on_gpu(Hq, Hkv, T, S, D, dtype):
    _check_prefill(2, Hq, Hkv, T, S, D, None, dtype)
    _check_prefill(2, Hq, Hkv, T, S, D, 64, dtype)
    q, k, v = _decode_inputs(3, Hq, Hkv, S, D, dtype)
    lens = torch.tensor([S, 1, S // 2 + 1], dtype=torch.int32, device=DEVICE)
    for splits in (None, 1, 5):  # the launcher's choice, the one-kernel path, the combine pass
        out = torch.full((3, Hq, D), float("nan"), dtype=dtype, device=DEVICE)
        assert attention_decode(q, k, v, lens, num_splits=splits, out=out) is out
        check_kernel(out, attention_decode_ref(q.double(), k.double(), v.double(), lens),
                     attention_decode_ref(q, k, v, lens, upcast=False))
