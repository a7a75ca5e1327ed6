"""Kernel benchmark: every hot op of the decode model, timed at the shapes a model uses, against its roofline.

Three parts, used by ``tokencost kernels``:

1. **Cases** (:func:`model_cases`, :func:`square_matmul_cases`): the op calls of one prefill of
   ``batch x context`` tokens and one decode step of ``batch`` tokens over a KV cache of ``context``
   positions, with the shapes :mod:`profiler.model` passes (fused QKV and gate/up projections,
   logits of the last position only, the residual add fused into RMSNorm).
2. **Formulas**: FLOP and bytes moved per call (the ``*_flop`` / ``*_bytes`` functions below; each
   docstring names its source). Bytes are the compulsory traffic: every input read once, every
   output written once; a kernel that re-reads data (a tiled GEMM, flash attention) moves more.
3. **Timing** (:func:`time_gpu`, :func:`time_cpu`) and :func:`run_cases`, which times every
   (case, backend) pair and derives achieved FLOP/s and bytes/s, the fraction of each device peak
   (:func:`roofline_metrics`) and the speed-up over the torch baseline.

Timing discipline (shared/reference/kernels.md §2): on a GPU, ``triton.testing.do_bench`` with the
quantiles (0.5, 0.2, 0.8): it calls the op once untimed (compilation and autotuning stay out), zeroes
a 256 MiB buffer before every timed call to flush L2, and times each call with its own CUDA events.
On a CPU, :mod:`profiler.timing` with warm-up calls excluded. Triton variants are not timed on a CPU:
there they run in the Triton interpreter, a correctness simulator and not a timing target
(kernels.md §2.6, §4). The profiler never sees prices; device peaks are passed in by the caller.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch

from profiler.backends import interpreter_requested
from profiler.config import ModelConfig
from profiler.errors import BackendUnavailableError, ConfigError, ProfilerError, one_line
from profiler.timing import RegionTimer, percentile, time_once

PHASES: tuple[str, ...] = ("prefill", "decode")
QUANTILES: tuple[float, float, float] = (0.5, 0.2, 0.8)
# Below this median, CPU launch overhead (included by do_bench) dominates a GPU kernel (kernels.md 2.5, 2.6).
LAUNCH_BOUND_S = 20e-6
# A timing is flagged noisy when its 80th-percentile call took more than this many times its 20th. An
# undisturbed op repeats within a few % under do_bench and within tens of % on a CPU; past 2x, the median
# (which lies between p20 and p80) is uncertain by up to that factor, more than the gaps the table is read
# for (a kernel at 85 % of torch, at 70 % of bandwidth). Typical causes: other processes on the CPU or GPU,
# or Python-interpreter work (garbage collection, a timer interrupt) landing inside some calls.
NOISY_SPREAD = 2.0
NOISY_NOTE = ("noisy timing: the 80th-percentile call took more than twice the 20th (contention from other "
              "processes, or the Python interpreter between calls); the median is uncertain, rerun on an "
              "idle machine")
INTERPRETER_SKIP = ("Triton kernels run on a CPU only in the Triton interpreter (TRITON_INTERPRET=1), a "
                    "correctness simulator that is not a timing target (kernels.md §4); "
                    "time them on a CUDA GPU")


# ----------------------------------------------------------------------------------------------
# FLOP and byte formulas (per call)


def linear_flop(m: int, n: int, k: int, bias: bool = False) -> int:
    """``x [M, K] @ w.T [K, N]``: 2·M·N·K (Triton tutorial 03 benchmark; tritonbench ``gemm`` flops),
    plus M·N for a bias add (one add per output; tritonbench counts 2·M·N)."""
    return 2 * m * n * k + (m * n if bias else 0)


def linear_bytes(m: int, n: int, k: int, elem: int, bias: bool = False) -> int:
    """(M·K + K·N + M·N)·elem: inputs read once and the output written once (tritonbench ``gemm`` gbps),
    plus N·elem for a bias."""
    return (m * k + k * n + m * n + (n if bias else 0)) * elem


def causal_pairs(t: int, s: int, window: int | None = None) -> int:
    """Visible (query, key) pairs of causal attention with ``t`` queries aligned to the end of ``s`` keys
    (query i at position s - t + i sees keys j <= s - t + i, and j > s - t + i - w with a window w).

    Query at position p sees min(p + 1, w) keys, so the count is sum over x = s - t + 1 .. s of min(x, w):
    t(t + 1)/2 for t = s without a window (metrics.md §3.3 gives w(w+1)/2 + (T - w)·w for t = s).

    Raises:
        ProfilerError: t > s, t < 1 or window < 1.
    """
    if not 1 <= t <= s or (window is not None and window < 1):
        raise ProfilerError(f"need 1 <= t <= s and window >= 1, got t={t}, s={s}, window={window}")
    lo, hi = s - t + 1, s
    w = hi if window is None else window
    below_hi = min(hi, w)  # x in [lo, below_hi] contributes x, the rest contribute w
    full = (lo + below_hi) * (below_hi - lo + 1) // 2 if below_hi >= lo else 0
    return full + (hi - max(below_hi, lo - 1)) * w


def attention_prefill_flop(b: int, hq: int, d: int, t: int, s: int, window: int | None = None) -> int:
    """4·B·Hq·D per visible (query, key) pair: QK^T and PV, 2 FLOP per multiply-add each
    (nanochat, metrics.md §3.3). Triton tutorial 06 counts 0.5·T² pairs for causal instead of T(T+1)/2."""
    return 4 * b * hq * d * causal_pairs(t, s, window)


def attention_prefill_bytes(b: int, hq: int, hkv: int, d: int, t: int, s: int, elem: int) -> int:
    """q and output [B, Hq, T, D], k and v [B, Hkv, S, D], each read or written once: the compulsory
    traffic (a flash-attention kernel re-reads K/V once per query tile)."""
    return (2 * b * hq * t * d + 2 * b * hkv * s * d) * elem


def attention_decode_flop(hq: int, d: int, seq_lens: Sequence[int]) -> int:
    """4·Σ kv_len·Hq·D for one query per sequence (tritonbench ``decoding_attention``, seq_q = 1;
    metrics.md §4)."""
    return 4 * sum(seq_lens) * hq * d


def attention_decode_bytes(hq: int, hkv: int, d: int, seq_lens: Sequence[int], elem: int) -> int:
    """q + K + V over the actual cache lengths (tritonbench ``decoding_attention``) + the output:
    (2·B·Hq·D + 2·Hkv·D·Σ kv_len)·elem; the int32 lengths (4·B bytes) are left out."""
    return (2 * len(seq_lens) * hq * d + 2 * hkv * d * sum(seq_lens)) * elem


def rmsnorm_flop(rows: int, h: int, residual: bool = True) -> int:
    """Counted here: per element a square, an accumulate, the normalising multiply and the weight
    multiply (4), plus the residual add (1); the per-row rsqrt is left out. A convention, not a source:
    the op is bandwidth-bound, its intensity far below any ridge point."""
    return rows * h * (5 if residual else 4)


def rmsnorm_bytes(rows: int, h: int, elem: int, residual: bool = True) -> int:
    """Read x (and the residual) and the weight, write y (and the new residual):
    (rows·H·(2 + 2r) + H)·elem."""
    return (rows * h * (4 if residual else 2) + h) * elem


def rope_flop(b: int, h: int, t: int, d: int) -> int:
    """Each output element of the half-split rotation is x1·cos ∓ x2·sin: 2 multiplies and 1 add (3)."""
    return 3 * b * h * t * d


def rope_bytes(b: int, h: int, t: int, d: int, elem: int) -> int:
    """Read and write x [B, H, T, D] once, read the float32 cos and sin tables [T, D/2] once."""
    return 2 * b * h * t * d * elem + 2 * t * (d // 2) * 4


def swiglu_flop(rows: int, f: int) -> int:
    """silu(g)·u = g / (1 + exp(-g)) · u counted as 4 FLOP per element (exp, add, divide, multiply; the
    exponential as one: a convention, the op is bandwidth-bound)."""
    return 4 * rows * f


def swiglu_bytes(rows: int, f: int, elem: int) -> int:
    """Read gate and up, write the output: 3·rows·F·elem."""
    return 3 * rows * f * elem


# ----------------------------------------------------------------------------------------------
# Cases: the op calls of one prefill and one decode step


@dataclasses.dataclass(frozen=True)
class KernelCase:
    """One op call to time: ``phase`` (prefill, decode or square), ``name`` (e.g. "linear.qkv"), the
    backend ``op`` it calls, the sizes :func:`build_inputs` needs (``dims``) and a readable ``shape``."""

    phase: str
    name: str
    op: str
    dims: tuple[tuple[str, object], ...]
    shape: str

    def flop(self) -> int:
        """FLOP of one call."""
        return _flop_and_bytes(self.op, dict(self.dims), 1)[0]

    def nbytes(self, elem: int) -> int:
        """Bytes one call moves with ``elem``-byte elements."""
        return _flop_and_bytes(self.op, dict(self.dims), elem)[1]


def _flop_and_bytes(op: str, d: dict, elem: int) -> tuple[int, int]:
    """(FLOP, bytes) of one call of ``op`` with dims ``d`` (see the formulas above)."""
    if op == "linear":
        m, n, k, bias = d["m"], d["n"], d["k"], d["bias"]
        return linear_flop(m, n, k, bias), linear_bytes(m, n, k, elem, bias)
    if op == "attention_prefill":
        return (attention_prefill_flop(d["b"], d["hq"], d["d"], d["t"], d["s"], d["window"]),
                attention_prefill_bytes(d["b"], d["hq"], d["hkv"], d["d"], d["t"], d["s"], elem))
    if op == "attention_decode":
        lens = [d["kv_len"]] * d["b"]
        return (attention_decode_flop(d["hq"], d["d"], lens),
                attention_decode_bytes(d["hq"], d["hkv"], d["d"], lens, elem))
    if op == "rmsnorm":
        return rmsnorm_flop(d["rows"], d["h"]), rmsnorm_bytes(d["rows"], d["h"], elem)
    if op == "rope":
        return rope_flop(d["b"], d["h"], d["t"], d["d"]), rope_bytes(d["b"], d["h"], d["t"], d["d"], elem)
    if op == "swiglu":
        return swiglu_flop(d["rows"], d["f"]), swiglu_bytes(d["rows"], d["f"], elem)
    raise ProfilerError(f"no FLOP/byte formula for op {op!r}")


def _linear(phase: str, name: str, m: int, n: int, k: int, bias: bool) -> KernelCase:
    shape = f"M={m} N={n} K={k}" + (" +bias" if bias else "")
    return KernelCase(phase, f"linear.{name}", "linear", (("m", m), ("n", n), ("k", k), ("bias", bias)), shape)


def _linear_cases(cfg: ModelConfig, phase: str, tokens: int, batch: int) -> list[KernelCase]:
    h, d, f = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size
    hq, hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    return [
        _linear(phase, "qkv", tokens, (hq + 2 * hkv) * d, h, cfg.qkv_bias),
        _linear(phase, "o", tokens, h, hq * d, cfg.o_bias),
        _linear(phase, "gate_up", tokens, 2 * f, h, cfg.mlp_bias),
        _linear(phase, "down", tokens, h, f, cfg.mlp_bias),
        # Transformer.forward takes the logits of the last position only, in prefill too: M = batch.
        _linear(phase, "lm_head", batch, cfg.vocab_size, h, False),
    ]


def _elementwise_cases(cfg: ModelConfig, phase: str, batch: int, t: int) -> list[KernelCase]:
    h, d, f, hq = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size, cfg.num_attention_heads
    rows = batch * t
    # The model rotates q and k heads in one call, except after q/k RMSNorm (Qwen3): one call each.
    ropes = ([("rope.q", hq), ("rope.k", cfg.num_key_value_heads)] if cfg.qk_norm
             else [("rope.qk", hq + cfg.num_key_value_heads)])
    return [
        KernelCase(phase, "rmsnorm", "rmsnorm", (("rows", rows), ("h", h)), f"rows={rows} H={h} +residual"),
        *(KernelCase(phase, name, "rope", (("b", batch), ("h", heads), ("t", t), ("d", d)),
                     f"B={batch} H={heads} T={t} D={d}") for name, heads in ropes),
        KernelCase(phase, "swiglu", "swiglu", (("rows", rows), ("f", f)), f"rows={rows} F={f}"),
    ]


def _attention_case(cfg: ModelConfig, phase: str, batch: int, context: int) -> KernelCase:
    hq, hkv, d, window = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.sliding_window
    if phase == "prefill":
        dims = (("b", batch), ("hq", hq), ("hkv", hkv), ("d", d), ("t", context), ("s", context),
                ("window", window))
        shape = f"B={batch} Hq={hq} Hkv={hkv} T=S={context} D={d}" + (f" window={window}" if window else "")
        return KernelCase(phase, "attention_prefill", "attention_prefill", dims, shape)
    # The model slices the cache to the positions a query can see: min(context, window).
    kv_len = context if window is None else min(context, window)
    dims = (("b", batch), ("hq", hq), ("hkv", hkv), ("d", d), ("kv_len", kv_len), ("window", window))
    return KernelCase(phase, "attention_decode", "attention_decode", dims,
                      f"B={batch} Hq={hq} Hkv={hkv} KV={kv_len} D={d}")


def model_cases(cfg: ModelConfig, batch_size: int, context: int,
                phases: Sequence[str] = PHASES) -> list[KernelCase]:
    """The op calls of one layer (plus the LM head) of ``cfg`` in prefill and/or decode.

    Prefill: ``batch_size x context`` tokens through every projection, causal attention with T = S =
    context. Decode: ``batch_size`` tokens, attention of one query per sequence over ``context`` cached
    positions (its own included). RMSNorm is the fused residual form; RoPE is timed on the query heads.

    Raises:
        ConfigError: a mixture-of-experts config (the decode model is dense only).
        ProfilerError: batch or context below 1, or an unknown phase.
    """
    if cfg.is_moe:
        raise ConfigError(f"{cfg.name} is a mixture-of-experts config; kernel shapes follow the dense "
                          "decode model")
    if batch_size < 1 or context < 1:
        raise ProfilerError(f"batch size and context must be >= 1, got {batch_size}, {context}")
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise ProfilerError(f"unknown phase {unknown[0]!r}; phases are {', '.join(PHASES)}")
    cases = []
    for phase in phases:
        t = context if phase == "prefill" else 1
        cases += _linear_cases(cfg, phase, batch_size * t, batch_size)
        cases.append(_attention_case(cfg, phase, batch_size, context))
        cases += _elementwise_cases(cfg, phase, batch_size, t)
    return cases


# Inputs and output of a case, plus the torch baseline's output kept for the comparison and room for
# an op's own temporaries: a guard against the OOM killer, not a precise model.
_CASE_MEMORY_FACTOR = 3


def check_cases_fit(cases: Sequence[KernelCase], elem_bytes: int, device_type: str) -> None:
    """Refuse, before allocating anything, cases whose largest inputs and outputs (``nbytes``) times 3
    exceed the device's free memory (:func:`profiler.memory.available_memory_bytes`).

    Raises:
        InsufficientMemoryError: with the case, the estimate and the free memory.
    """
    from profiler.memory import InsufficientMemoryError, available_memory_bytes

    if not cases:
        return
    big = max(cases, key=lambda c: c.nbytes(elem_bytes))
    need = _CASE_MEMORY_FACTOR * big.nbytes(elem_bytes)
    free = available_memory_bytes(device_type)
    if free is not None and need > free:
        raise InsufficientMemoryError(
            f"{big.phase} {big.name} ({big.shape}) needs about {need / 2**30:.1f} GiB (inputs, outputs and "
            f"temporaries) but {device_type} has {max(free, 0) / 2**30:.1f} GiB free; lower --batch-size or --context")


def square_matmul_cases(sizes: Sequence[int]) -> list[KernelCase]:
    """``linear`` at M = N = K = n for each n (phase "square"): the GEMM throughput comparison."""
    if any(n < 1 for n in sizes):
        raise ProfilerError(f"square matmul sizes must be >= 1, got {list(sizes)}")
    return [_linear("square", f"square{n}", n, n, n, False) for n in sizes]


# ----------------------------------------------------------------------------------------------
# Inputs


def build_inputs(case: KernelCase, cfg: ModelConfig, device: torch.device, dtype: torch.dtype,
                 seed: int = 0) -> tuple:
    """Random-normal arguments of ``case.op`` in the op signature of :mod:`profiler.backends` (random
    data: regular data changes GEMM speed, kernels.md §2.5). Swiglu gets the two halves of one
    [rows, 2F] tensor, as the model's fused gate/up output."""
    gen = torch.Generator(device=device).manual_seed(seed)
    d = dict(case.dims)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=device, dtype=dtype)

    if case.op == "linear":
        bias = randn(d["n"]) if d["bias"] else None
        return randn(d["m"], d["k"]), randn(d["n"], d["k"]) * d["k"] ** -0.5, bias
    if case.op == "attention_prefill":
        scale = d["d"] ** -0.5
        return randn(d["b"], d["hq"], d["t"], d["d"]), randn(d["b"], d["hkv"], d["s"], d["d"]), \
            randn(d["b"], d["hkv"], d["s"], d["d"]), scale, d["window"]
    if case.op == "attention_decode":
        lens = torch.full((d["b"],), d["kv_len"], dtype=torch.int32, device=device)
        cache = (d["b"], d["hkv"], d["kv_len"], d["d"])
        return randn(d["b"], d["hq"], d["d"]), randn(*cache), randn(*cache), lens, d["d"] ** -0.5, d["window"]
    if case.op == "rmsnorm":
        return randn(d["rows"], d["h"]), randn(d["h"]), cfg.rms_norm_eps, randn(d["rows"], d["h"])
    if case.op == "rope":
        return randn(d["b"], d["h"], d["t"], d["d"]), *_rope_tables(cfg, d["t"], device)
    gate_up = randn(d["rows"], 2 * d["f"])
    return gate_up[:, : d["f"]], gate_up[:, d["f"]:]


def _rope_tables(cfg: ModelConfig, t: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    from profiler.model import rope_tables

    cos, sin = rope_tables(cfg, t)
    return cos.to(device), sin.to(device)


# ----------------------------------------------------------------------------------------------
# Timing


@dataclasses.dataclass(frozen=True)
class KernelTiming:
    """Median and 20th/80th percentiles of one op's call time, in seconds."""

    median_s: float
    p20_s: float
    p80_s: float
    n: int | None
    method: str


def time_gpu(fn: Callable[[], object]) -> KernelTiming:
    """``triton.testing.do_bench(fn, quantiles=(0.5, 0.2, 0.8))``: first call untimed, L2 flushed
    before every timed call, per-call CUDA events (kernels.md §2.1); ms converted to seconds."""
    from triton.testing import do_bench

    med, p20, p80 = do_bench(fn, quantiles=list(QUANTILES))
    return KernelTiming(med / 1e3, p20 / 1e3, p80 / 1e3, None,
                        "triton.testing.do_bench (L2 flushed, 25 ms warm-up, 100 ms of repeats)")


def cpu_cache_flush_bytes() -> int:
    """Bytes to overwrite between timed CPU calls: twice the last-level cache (sysfs), 64 MiB when
    the size cannot be read, so every timed call starts with cold caches."""
    try:
        text = open("/sys/devices/system/cpu/cpu0/cache/index3/size").read().strip()
        llc = int(text.rstrip("KMG")) * {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
    except (OSError, ValueError):
        return 64 * 2**20
    return min(2 * llc, 512 * 2**20)


def time_cpu(fn: Callable[[], object], device: torch.device | str = "cpu", warmup: int = 2,
             target_s: float = 0.2, min_repeats: int = 5, max_repeats: int = 200) -> KernelTiming:
    """Time ``fn`` with :mod:`profiler.timing`: ``warmup`` calls run and discarded, then enough timed
    calls to fill about ``target_s`` (clamped to [min_repeats, max_repeats]), each its own region.
    Before every timed call a buffer of twice the last-level cache is overwritten, outside the timed
    region, as ``triton.testing.do_bench`` zeroes a buffer to flush L2 on GPUs (kernels.md §2.1): a
    decode weight matrix of a few MB would otherwise be re-read from cache and beat DRAM bandwidth.

    Raises:
        ProfilerError: warmup < 1 or min_repeats < 2 or max_repeats < min_repeats.
    """
    if warmup < 1 or min_repeats < 2 or max_repeats < min_repeats:
        raise ProfilerError(f"need warmup >= 1 and 2 <= min_repeats <= max_repeats, got "
                            f"{warmup}, {min_repeats}, {max_repeats}")
    device = torch.device(device)
    estimate = min(time_once(fn, device)[1] for _ in range(warmup))
    n = int(min(max_repeats, max(min_repeats, math.ceil(target_s / max(estimate, 1e-9)))))
    flush = torch.empty(cpu_cache_flush_bytes() // 4, dtype=torch.float32)
    timer = RegionTimer(device)
    for _ in range(n):
        flush.zero_()
        with timer.region():
            fn()
    samples = timer.seconds()
    return KernelTiming(percentile(samples, 50), percentile(samples, 20), percentile(samples, 80), n,
                        f"profiler.timing: {warmup} warm-up calls excluded, {n} timed calls (perf_counter), "
                        f"caches flushed ({flush.numel() * 4 / 2**20:.0f} MiB written) before each")


# ----------------------------------------------------------------------------------------------
# Roofline figures


@dataclasses.dataclass(frozen=True)
class Peaks:
    """One set of device ceilings; ``None`` with a reason in the source when unknown (never guessed)."""

    flop_per_s: float | None
    flop_source: str
    bandwidth_bytes_per_s: float | None
    bandwidth_source: str


def roofline_metrics(flop: float, nbytes: float, median_s: float, peaks: Peaks | None,
                     prefix: str = "") -> dict:
    """Achieved rates and the fraction of each ceiling, in percent.

    - ``compute_peak_pct`` = (FLOP ÷ time) ÷ peak FLOP/s; ``bandwidth_peak_pct`` = (bytes ÷ time) ÷ peak
      bytes/s (the FlashInfer/tritonbench kernel bandwidth utilisation, metrics.md §1.4).
    - ``roofline_pct`` = roofline time ÷ measured time, the roofline time being
      max(FLOP ÷ peak FLOP/s, bytes ÷ peak bandwidth) (Williams et al. 2009 roofline model);
      ``bound`` says which term is larger. Either needs both peaks, else None.

    Keys get ``prefix`` (e.g. "measured_") except the achieved rates. Raises ProfilerError for a
    non-positive time.
    """
    if not median_s > 0:
        raise ProfilerError(f"median time must be positive, got {median_s}")
    out = {} if prefix else {"achieved_flop_per_s": flop / median_s, "achieved_bytes_per_s": nbytes / median_s}
    pf = peaks.flop_per_s if peaks else None
    pb = peaks.bandwidth_bytes_per_s if peaks else None
    out[f"{prefix}compute_peak_pct"] = 100 * flop / median_s / pf if pf else None
    out[f"{prefix}bandwidth_peak_pct"] = 100 * nbytes / median_s / pb if pb else None
    if pf and pb:
        t_compute, t_memory = flop / pf, nbytes / pb
        out[f"{prefix}roofline_pct"] = 100 * max(t_compute, t_memory) / median_s
        out[f"{prefix}bound"] = "compute" if t_compute > t_memory else "memory"
    else:
        out[f"{prefix}roofline_pct"], out[f"{prefix}bound"] = None, None
    return out


# ----------------------------------------------------------------------------------------------
# Running the cases


def backend_skip_reason(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` is not timed on ``device`` (None: it is). The built-in triton backend is never
    timed off a GPU; a backend that cannot load here says why.

    Raises:
        ProfilerError: an unknown backend name.
    """
    from profiler.backends import resolve

    if backend == "triton" and device.type != "cuda":
        return INTERPRETER_SKIP
    try:
        resolve(backend)
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def variant_for(backend: str, op: str) -> Callable | None:
    """The ``backend`` variant of ``op``, or None when the backend has none (it would fall back to torch)."""
    from profiler.backends import resolve

    ops = resolve(backend)
    return getattr(ops, op) if ops.describe()[op] == backend else None


@dataclasses.dataclass
class BenchSettings:
    """What :func:`run_cases` needs besides the cases: model, device, dtype, backends and ceilings."""

    cfg: ModelConfig
    device: torch.device
    dtype: torch.dtype
    backends: Sequence[str]
    peaks: Peaks | None = None
    measured_peaks: Peaks | None = None
    seed: int = 0
    timer: Callable[[Callable[[], object]], KernelTiming] | None = None

    def time(self, fn: Callable[[], object]) -> KernelTiming:
        if self.timer is not None:
            return self.timer(fn)
        return time_gpu(fn) if self.device.type == "cuda" else time_cpu(fn, self.device)


def _first_tensor(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _base_row(case: KernelCase, backend: str, s: BenchSettings) -> dict:
    elem = torch.tensor([], dtype=s.dtype).element_size()
    flop, nbytes = case.flop(), case.nbytes(elem)
    return {"kind": "kernel", "phase": case.phase, "op": case.name, "op_kind": case.op, "backend": backend,
            "shape": case.shape, "dims": dict(case.dims), "dtype": str(s.dtype).removeprefix("torch."),
            "flop": flop, "bytes": nbytes, "arithmetic_intensity_flop_per_byte": flop / nbytes}


def _peak_fields(s: BenchSettings) -> dict:
    """The ceilings as numbers (their sources are the caller's, once per run, not per row)."""
    p, m = s.peaks, s.measured_peaks
    return {"peak_flop_per_s": p.flop_per_s if p else None,
            "peak_bandwidth_bytes_per_s": p.bandwidth_bytes_per_s if p else None,
            "measured_peak_flop_per_s": m.flop_per_s if m else None,
            "measured_peak_bandwidth_bytes_per_s": m.bandwidth_bytes_per_s if m else None}


# Row keys that cannot exceed 100 % unless a cache serves the data or a ceiling is too low, with the
# names `tokencost kernels` gives their columns.
_OVER_100_NAMES = {"bandwidth_peak_pct": "% BW", "measured_bandwidth_peak_pct": "% BW copy (meas.)",
                   "roofline_pct": "% roof", "measured_roofline_pct": "% roof meas."}


def is_noisy(p20_s: float, p80_s: float) -> bool:
    """True when p80 > :data:`NOISY_SPREAD` × p20 (or p20 is not positive): a timing too spread to trust."""
    return not p20_s > 0 or p80_s > NOISY_SPREAD * p20_s


def _notes(row: dict, s: BenchSettings) -> list[str]:
    """Warnings a reader needs next to a timed row (interpreter, launch-bound GPU call, noisy timing,
    a rate above a ceiling). All but the last are the same text on every row, so the table groups them."""
    notes = []
    if (s.device.type == "cpu" and row["backend"] != "torch" and interpreter_requested()):
        notes.append("TRITON_INTERPRET=1 is set: if this variant launches Triton kernels, they ran on the "
                     "interpreter and this time is not the kernel's performance")
    if s.device.type == "cuda" and row["median_s"] < LAUNCH_BOUND_S:
        notes.append("median below 20 µs: CPU launch overhead (inside do_bench's timing) dominates")
    if is_noisy(row["p20_s"], row["p80_s"]):
        notes.append(NOISY_NOTE)
    over = [name for key, name in _OVER_100_NAMES.items() if (row.get(key) or 0) > 100]
    if over:
        notes.append(f"{', '.join(over)} above 100 %: the {row['bytes'] / 1e6:.3g} MB working set is (partly) "
                     "served from a cache, or a ceiling is too low (metrics.md §3.1 counter-check)")
    return notes


def _time_row(row: dict, fn: Callable, args: tuple, s: BenchSettings,
              baseline: torch.Tensor | None) -> torch.Tensor:
    """Time one call of ``fn(*args)`` into ``row`` (in place); returns its output for the torch check."""
    out = _first_tensor(fn(*args))  # also compiles / autotunes before timing
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the {row['backend']} variant returned {type(out).__name__}, not a tensor")
    if baseline is not None and (out.shape != baseline.shape or out.dtype != baseline.dtype):
        raise TypeError(f"the {row['backend']} variant returned shape {tuple(out.shape)} {out.dtype}, torch's op "
                        f"{tuple(baseline.shape)} {baseline.dtype}: not timed, it computes something else")
    timing = s.time(lambda: fn(*args))
    row.update(status="ok", median_s=timing.median_s, p20_s=timing.p20_s, p80_s=timing.p80_s,
               n_timed_calls=timing.n, timer=timing.method)
    row.update(roofline_metrics(row["flop"], row["bytes"], timing.median_s, s.peaks))
    row.update(roofline_metrics(row["flop"], row["bytes"], timing.median_s, s.measured_peaks, "measured_"))
    notes = _notes(row, s)
    if baseline is not None:
        diff = max_abs_diff(out, baseline)
        row["max_abs_diff_vs_torch"] = diff if diff is not None and math.isfinite(diff) else None
        if diff is not None and not math.isfinite(diff):
            notes.append("output has NaN or infinity where torch's has not: the timing is of a wrong result")
    row["notes"] = notes
    return out


def max_abs_diff(a: torch.Tensor, b: torch.Tensor, chunk: int = 1 << 24) -> float | None:
    """max |a - b| in float32, a chunk of rows at a time (a prefill output can be gigabytes); inf when
    either holds a NaN or infinity where the other does not; None when the shapes differ."""
    if a.shape != b.shape:
        return None
    fa, fb = a.reshape(-1), b.reshape(-1)
    worst = 0.0
    for start in range(0, fa.numel(), chunk):
        d = (fa[start:start + chunk].float() - fb[start:start + chunk].float()).abs()
        d = torch.nan_to_num(d, nan=float("inf"))
        worst = max(worst, d.max().item() if d.numel() else 0.0)
    return worst


def _run_case(case: KernelCase, s: BenchSettings, skips: dict[str, str | None]) -> list[dict]:
    rows, baseline = [], None
    try:
        args = build_inputs(case, s.cfg, s.device, s.dtype, s.seed)
    except (RuntimeError, MemoryError) as exc:  # out of memory for the inputs: every backend fails
        args, input_error = None, _error_text(exc)
    for backend in s.backends:
        row = _base_row(case, backend, s)
        fn = None if skips[backend] else variant_for(backend, case.op)
        if skips[backend] or fn is None:
            reason = skips[backend] or f"backend {backend!r} has no {case.op} variant (it would run torch's)"
            rows.append({**row, "status": "skipped", "skip_reason": reason})
            continue
        row.update(_peak_fields(s))
        if args is None:
            rows.append({**row, "status": "failed", "error": f"building the inputs: {input_error}"})
            continue
        try:
            out = _time_row(row, fn, args, s, baseline if backend != "torch" else None)
            baseline = out if backend == "torch" else baseline
        except (RuntimeError, ValueError, TypeError, MemoryError) as exc:
            row.update(status="failed", error=_error_text(exc))
        rows.append(row)
    add_speedups(rows)
    return rows


def _error_text(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}", 500)


def add_speedups(rows: list[dict]) -> None:
    """``speedup_vs_torch`` = torch median ÷ this median for every timed row with a timed torch row of
    the same (phase, op); None otherwise. In place."""
    base = {(r["phase"], r["op"]): r["median_s"] for r in rows
            if r["backend"] == "torch" and r.get("status") == "ok"}
    for r in rows:
        ref = base.get((r["phase"], r["op"]))
        r["speedup_vs_torch"] = ref / r["median_s"] if ref and r.get("status") == "ok" else None


def run_cases(cases: Sequence[KernelCase], settings: BenchSettings,
              on_row: Callable[[dict], None] | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> list[dict]:
    """Time every case with every backend (torch first when listed, so others are checked against it).

    Returns one row per (case, backend): ``status`` "ok" (timings and roofline figures), "skipped"
    (``skip_reason``) or "failed" (``error``: a case that raised, e.g. out of memory; the run goes on).
    ``on_row`` gets each finished row at once (for crash-safe appends), ``speedup_vs_torch`` included.

    Raises:
        ProfilerError: an unknown backend (before anything is timed).
    """
    backends = sorted(dict.fromkeys(settings.backends), key=lambda b: b != "torch")
    settings = dataclasses.replace(settings, backends=backends)
    skips = {b: backend_skip_reason(b, settings.device) for b in backends}
    rows: list[dict] = []
    for i, case in enumerate(cases):
        if progress:
            progress(f"{case.phase} {case.name}", i, len(cases))
        for row in _run_case(case, settings, skips):
            rows.append(row)
            if on_row:
                on_row(row)
        if settings.device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


__all__ = [
    "PHASES", "KernelCase", "KernelTiming", "Peaks", "BenchSettings", "model_cases", "square_matmul_cases",
    "build_inputs", "time_gpu", "time_cpu", "roofline_metrics", "run_cases", "add_speedups",
    "backend_skip_reason", "variant_for", "is_noisy", "NOISY_SPREAD", "NOISY_NOTE", "max_abs_diff",
    "linear_flop", "linear_bytes", "causal_pairs",
    "attention_prefill_flop", "attention_prefill_bytes", "attention_decode_flop", "attention_decode_bytes",
    "rmsnorm_flop", "rmsnorm_bytes", "rope_flop", "rope_bytes", "swiglu_flop", "swiglu_bytes",
]
