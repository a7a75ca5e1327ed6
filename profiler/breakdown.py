"""Where the time of a decode step goes: ``torch.profiler`` attribution of step time to op classes.

Method (:func:`profile_decode`):

1. Prefill ``context_len - 1`` prompt tokens, then run every decode step at position
   ``context_len - 1``: each step rewrites the same cache slot and attends to exactly ``context_len``
   KV positions, so all timed and profiled steps have one shape. A step is the model forward of one
   token per sequence plus the greedy pick (``argmax``), as in :mod:`profiler.measure`.
2. Warm-up steps (discarded), then ``steps`` steps timed with :class:`profiler.timing.RegionTimer`
   with the profiler off and the model's profiling labels off: ``step_s`` is their median, the
   same statistic as TPOT in ``tokencost run``.
3. ``steps`` more steps under ``torch.profiler.profile`` (one discarded profiler warm-up step via
   ``torch.profiler.schedule``), each also timed by a RegionTimer (``profiled_step_s``: their median),
   with the model's labels (:meth:`profiler.model.Transformer.set_profiling_labels`) and a
   ``"sampling"`` label around ``argmax`` in this loop.
4. Per profiled step, each row's time (the sum of its label regions in that step): on CUDA the
   device time of the kernels launched inside the regions (``FunctionEvent.device_time_total``); on
   CPU their host time (``cpu_time_total``), CPU ops being synchronous, plus the row ``other``: the
   part of the step's ``ProfilerStep`` region no label covers (the KV-cache views, Python between
   ops). A region nested inside another label counts only for the inner one. Then the median of each
   row over the steps, the statistic TPOT uses: a step that the OS preempted inflates one row of one
   step, which moves a mean but not a median. The labels map to rows (:data:`LABEL_ROWS`); the rows
   fold into the what-if classes (:data:`OP_CLASSES`).
5. The rows are mapped onto the unprofiled ``step_s`` (:func:`attribute`, next paragraph), so they
   add up to the measured step time exactly.

On the CPU with one torch thread (all work in the calling thread), each timed and profiled step
also records its thread CPU time; a step that got less than 90 % of its wall time on the CPU was
preempted by another process and is left out of the medians, as long as three steps remain
(``preempted_steps`` counts them). With more threads, or on CUDA, every step counts.

Profiler overhead, and why the shares are mapped onto the unprofiled step. The profiler records
every aten op, about a microsecond of host time each, so profiled steps run slower than unprofiled
ones (measured here on CPU: 15-30 % slower for a 512-wide 2-layer model, up to 2× for a 64-wide
one). The step time reported is always the unprofiled one (``step_s``, profiler.timing, independent
of the profiler's clock); the profiled step (``profiled_step_s``) is kept beside it in the result.

- CPU (host time, ``time_basis="cpu"``): the overhead lands inside the regions as well as between
  them, so every row, ``other`` included, keeps its share of the profiled step and the shares are
  applied to ``step_s`` (``scale = step_s / Σ profiled rows``). This assumes the overhead is spread
  in proportion to time, which holds when ops are large beside a microsecond. The what-if test
  (tests/test_breakdown.py) checks it against a real A/B measurement: on a 512-wide 2-layer model
  the predicted change of the step time was within 3-7 % of the measured one; on a 256-wide model,
  whose ops take a few microseconds, it was 25-50 % off (attention's share understated), so on CPU
  treat the breakdown of a tiny model as a rough guide.
- CUDA (kernel time, ``time_basis="device"``): kernel durations do not include host overhead, so
  rows are kept unscaled; ``other`` (idle gaps between kernels, launch overhead, unlabelled
  kernels) is the unprofiled step minus the kernel time. Should the kernel sum exceed the step time
  (clock noise), the rows are scaled down to fit and a warning says so.

Byte counts for the roofline what-if (:func:`row_bytes_per_step`) follow metrics.md §3.1: a matmul
class reads its weights once per step (the LM head once, tied or not, metrics.md §6), attention
reads each sequence's KV cache at its context.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Iterable

import torch

from profiler import roofline
from profiler.config import ModelConfig
from profiler.errors import ConfigError, ProfilerError
from profiler.runner import RunSpec, resolve_device, resolve_dtype
from profiler.timing import RegionTimer, synchronize

SAMPLING_LABEL = "sampling"
# record_function label (profiler/model.py LABELS, plus SAMPLING_LABEL here) -> breakdown row. The
# KV-cache write belongs to the attention class (a fused attention kernel appends to the cache itself).
LABEL_ROWS: dict[str, str] = {
    "attn.qkv_proj": "matmul.qkv_proj", "attn.o_proj": "matmul.o_proj",
    "mlp.gate_up_proj": "matmul.gate_up_proj", "mlp.down_proj": "matmul.down_proj",
    "lm_head": "matmul.lm_head",
    "attn.attention": "attention.decode", "attn.kv_write": "attention.kv_write",
    "norm": "norm", "attn.qk_norm": "norm", "attn.rope": "rope", "mlp.swiglu": "activation",
    SAMPLING_LABEL: "sampling", "embed": "embed",
}
OTHER = "other"
ROWS: tuple[str, ...] = ("matmul.qkv_proj", "matmul.o_proj", "matmul.gate_up_proj", "matmul.down_proj",
                         "matmul.lm_head", "attention.decode", "attention.kv_write", "norm", "rope",
                         "activation", "sampling", "embed", OTHER)
LABELLED_ROWS: tuple[str, ...] = tuple(row for row in ROWS if row != OTHER)
# What-if classes; must equal tokencost.whatif.OP_CLASSES (a test checks it; the profiler cannot import
# the cost layer).
OP_CLASSES: tuple[str, ...] = ("matmul", "attention", "norm", "rope", "activation", "sampling", "embed",
                               OTHER)
# Classes with a byte model, i.e. those a "roofline" what-if can apply to.
ROOFLINE_CLASSES: tuple[str, ...] = ("matmul", "attention")
SCALE_TOLERANCE = 1e-9
# A CPU step whose thread got less of the CPU than this share of its wall time was preempted.
PREEMPTED_CPU_SHARE = 0.9
# Host-time basis: the profiled step measured here ran 15-30 % slower than the unprofiled one on a
# 512-wide model and up to 2× on a 64-wide one (module docstring), i.e. scale 0.5-0.87. Outside
# [0.5, 2] the two phases did not run the same step (load came or went between them, or the profiler
# overhead dwarfs the ops), so the shares may not describe the measured step.
SCALE_RANGE = (0.5, 2.0)
MIN_KEPT_STEPS = 3


def class_of(row: str) -> str:
    """The what-if class of a row: ``"matmul.qkv_proj"`` -> ``"matmul"``, ``"norm"`` -> ``"norm"``."""
    return row.split(".", 1)[0]


@dataclasses.dataclass(frozen=True)
class Breakdown:
    """Per-decode-step time of each row (seconds, whole batch); the rows sum to ``step_s``.

    ``step_s``: median unprofiled step time; ``step_times_s``: its samples. ``profiled_step_s``:
    median step time under the profiler (RegionTimer); ``attributed_profiled_s``: labelled time per profiled
    step before scaling (sum of the row medians but ``other``); ``scale``: factor applied to the
    profiled rows (see module docstring). ``time_basis``: ``"cpu"`` (host time of the regions) or
    ``"device"`` (kernel time). ``preempted_steps``: timed and profiled steps left out because
    another process preempted them (CPU, one torch thread only; see module docstring).
    """

    row_times_s: dict[str, float]
    step_s: float
    step_times_s: tuple[float, ...]
    profiled_step_s: float
    attributed_profiled_s: float
    scale: float
    time_basis: str
    batch_size: int
    context_len: int
    n_steps: int
    preempted_steps: int = 0
    warnings: tuple[str, ...] = ()

    def shares(self) -> dict[str, float]:
        """Row -> share of the step time (0..1, summing to 1)."""
        return {row: t / self.step_s for row, t in self.row_times_s.items()}

    def class_times_s(self) -> dict[str, float]:
        """The rows folded into :data:`OP_CLASSES` (seconds per step)."""
        out = dict.fromkeys(OP_CLASSES, 0.0)
        for row, t in self.row_times_s.items():
            out[class_of(row)] += t
        return out

    def records(self, **common) -> list[dict]:
        """One ``kind="breakdown"`` result record per row (non-overlapping, so shares stack to 1),
        with ``common`` fields (model, device...) added to each."""
        shares = self.shares()
        return [{"kind": "breakdown", **common, "batch_size": self.batch_size,
                 "context_len": self.context_len, "op_class": row, "op_group": class_of(row), "time_s": t,
                 "share": shares[row], "step_s": self.step_s, "time_basis": self.time_basis}
                for row, t in self.row_times_s.items()]


# ----------------------------------------------------------------------------------------------
# Attribution of profiler events (pure functions of the event tree and the measured step times)


def _is_label(event) -> bool:
    cpu = event.device_type == torch.autograd.DeviceType.CPU
    return event.name in LABEL_ROWS and cpu and not event.is_async


def _total_us(event, device_time: bool) -> float:
    return float(event.device_time_total if device_time else event.cpu_time_total)


def _inner_labels_us(event, device_time: bool) -> float:
    """Time of the outermost label regions strictly inside ``event``."""
    total = 0.0
    for child in event.cpu_children:
        inner = _total_us(child, device_time) if _is_label(child) else _inner_labels_us(child, device_time)
        total += inner
    return total


def _step_region(event):
    """The ``ProfilerStep`` region (opened by ``prof.step()``) an event lies in, or None."""
    parent = event.cpu_parent
    while parent is not None and not parent.name.startswith("ProfilerStep"):
        parent = parent.cpu_parent
    return parent


def label_times_us(events: Iterable, device_time: bool) -> list[dict[str, float]]:
    """Per profiler step, in order: row -> exclusive time (µs) of its label regions in ``events``
    (``prof.events()``).

    ``device_time``: kernel time of the region's kernels (CUDA) instead of the region's host time.
    CUDA-side copies of the labels (``gpu_user_annotation``) are ignored; only host events count.
    Steps are the ``ProfilerStep`` regions that ``prof.step()`` opens (the profiler renames every
    ``ProfilerStep#N`` to ``ProfilerStep*``, so they are told apart by object). With host time, each
    step also gets ``"other"``: the part of its step region no label covers.
    """
    steps: dict[int, tuple[object, dict[str, float]]] = {}
    for event in events:
        if _is_label(event):
            region = _step_region(event)
            _, rows = steps.setdefault(id(region), (region, dict.fromkeys(LABELLED_ROWS, 0.0)))
            exclusive = _total_us(event, device_time) - _inner_labels_us(event, device_time)
            rows[LABEL_ROWS[event.name]] += exclusive
    ordered = sorted(steps.values(), key=lambda item: -1.0 if item[0] is None else item[0].time_range.start)
    for region, rows in ordered:
        if region is not None and not device_time:
            rows[OTHER] = max(0.0, region.cpu_time_total - sum(rows.values()))
    return [rows for _, rows in ordered]


def median_row_times_s(per_step_us: list[dict[str, float]]) -> dict[str, float]:
    """Row -> median over steps of its time, in seconds, in :data:`ROWS` order (a row present in
    some steps only counts 0 in the others).

    Raises:
        ProfilerError: no profiled step carries a label (profiling labels not enabled?).
    """
    if not per_step_us:
        raise ProfilerError("the profiler recorded no labelled op regions; nothing to attribute")
    present = [row for row in ROWS if any(row in step for step in per_step_us)]
    return {row: statistics.median(step.get(row, 0.0) for step in per_step_us) / 1e6 for row in present}


def _check_attribute_args(row_s: dict[str, float], step_s: float, time_basis: str) -> None:
    if not step_s > 0:
        raise ProfilerError(f"step time must be positive, got {step_s}")
    if any(not t >= 0 for t in row_s.values()):
        raise ProfilerError(f"row times must be >= 0, got {row_s}")
    if time_basis not in ("cpu", "device"):
        raise ProfilerError(f"time_basis must be 'cpu' or 'device', got {time_basis!r}")
    if time_basis == "cpu" and (OTHER not in row_s or sum(row_s.values()) <= 0):
        raise ProfilerError("host-time rows need the profiled 'other' row and a positive total")


def _scale_warnings(scale: float) -> list[str]:
    """A warning when the unprofiled step ÷ the profiled one (host-time basis) is outside SCALE_RANGE."""
    low, high = SCALE_RANGE
    if low <= scale <= high:
        return []
    return [f"profiler scale {scale:.3g} (unprofiled step ÷ profiled step) is outside [{low:g}, {high:g}]: the "
            f"profiled steps took {1 / scale:.3g}× the time of the unprofiled ones, so other load came or went "
            "between the two phases or profiler overhead dwarfs the ops; the shares may not describe the measured "
            "step (rerun on a quiet machine, or profile a larger model)"]


def attribute(row_s: dict[str, float], step_s: float,
              time_basis: str) -> tuple[dict[str, float], float, list[str]]:
    """Map profiled row times (seconds per step) onto the unprofiled step time ``step_s``.

    ``"cpu"``: ``row_s`` holds every row including the profiled ``"other"``; all are scaled by
    ``step_s / Σ row_s`` (each keeps its share of the profiled step). ``"device"``: kernel times are
    kept and ``"other" = step_s − Σ``; should the kernels exceed the step they are scaled down to fit,
    with a warning. On ``"cpu"`` a scale outside :data:`SCALE_RANGE` is warned about too. Returns (row
    times summing to ``step_s``, the scale applied, warnings).

    Raises:
        ProfilerError: non-positive step time, negative row times, an unknown time basis, or host-time
            rows without "other".
    """
    _check_attribute_args(row_s, step_s, time_basis)
    if time_basis == "cpu":
        scale = step_s / sum(row_s.values())
        return {row: t * scale for row, t in row_s.items()}, scale, _scale_warnings(scale)
    labelled = {row: t for row, t in row_s.items() if row != OTHER}
    attributed, scale, warnings = sum(labelled.values()), 1.0, []
    if attributed > step_s * (1 + SCALE_TOLERANCE):
        warnings.append(f"kernel time {attributed * 1e3:.4g} ms exceeds the measured step "
                        f"{step_s * 1e3:.4g} ms; kernel times scaled down to fit (noisy clocks?)")
        scale = step_s / attributed
    rows = {row: t * scale for row, t in labelled.items()}
    rows[OTHER] = max(0.0, step_s - sum(rows.values()))
    return rows, scale, warnings


# ----------------------------------------------------------------------------------------------
# The decode loop


def _no_label(_name: str):
    return contextlib.nullcontext()


def _step(model, tok: torch.Tensor, pos: int, label: Callable) -> torch.Tensor:
    logits = model(tok, pos)
    with label(SAMPLING_LABEL):
        return logits.argmax(-1, keepdim=True)


def _prefill(model, batch_size: int, context_len: int, seed: int) -> tuple[torch.Tensor, int]:
    """Fill cache positions 0..context_len-2; returns (next tokens [B, 1], the decode position)."""
    gen = torch.Generator().manual_seed(seed)
    pos = context_len - 1
    vocab = model.cfg.vocab_size
    if pos == 0:
        return torch.randint(0, vocab, (batch_size, 1), generator=gen).to(model.device), 0
    prompt = torch.randint(0, vocab, (batch_size, pos), generator=gen).to(model.device)
    return model(prompt, 0).argmax(-1, keepdim=True), pos


class _StepClock:
    """A RegionTimer per step, plus each step's thread CPU time where that can reveal a preemption by
    another process: on the CPU device with one torch thread all work runs in this thread, so a step
    whose CPU time is well below its wall time was waiting for a core."""

    def __init__(self, device: torch.device):
        self.timer = RegionTimer(device)
        self.track = device.type == "cpu" and torch.get_num_threads() == 1
        self.cpu_s: list[float] = []

    @contextlib.contextmanager
    def step(self):
        cpu0 = time.thread_time()
        with self.timer.region():
            yield
        self.cpu_s.append(time.thread_time() - cpu0)

    def kept(self) -> list[bool]:
        """Per step: False where it was preempted, unless fewer than MIN_KEPT_STEPS would remain."""
        wall = self.timer.seconds()
        if not self.track:
            return [True] * len(wall)
        keep = [cpu >= PREEMPTED_CPU_SHARE * w for cpu, w in zip(self.cpu_s, wall)]
        return keep if sum(keep) >= min(MIN_KEPT_STEPS, len(wall)) else [True] * len(wall)


def _timed_steps(model, tok: torch.Tensor, pos: int, steps: int) -> _StepClock:
    clock = _StepClock(model.device)
    for _ in range(steps):
        with clock.step():
            tok = _step(model, tok, pos, _no_label)
    return clock


_KINETO_TRACE_PREFIXES = ("USDT:", "STAGE:")


@contextlib.contextmanager
def _without_kineto_trace_lines():
    """Drop the "USDT:"/"STAGE:" lines that torch.profiler's C++ backend (Kineto) writes straight to
    file descriptor 2 on every profiler start and stop whatever ``KINETO_LOG_LEVEL`` says (they come
    from pytorch/kineto PR #1325; pytorch/kineto#726 for the STAGE lines). fd 2 goes to a temporary
    file while the profiler runs; every other line is passed on to stderr afterwards, in order."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines(keepends=True):
                if not line.startswith(_KINETO_TRACE_PREFIXES):
                    sys.stderr.write(line)
            sys.stderr.flush()


def _profiled_steps(model, tok: torch.Tensor, pos: int, steps: int, warmup: int = 1):
    """``warmup`` discarded then ``steps`` recorded steps under the profiler; (events, step clock)."""
    device = model.device
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    schedule = torch.profiler.schedule(wait=0, warmup=warmup, active=steps, repeat=1)
    clock = _StepClock(device)
    model.set_profiling_labels(True)
    try:
        with _without_kineto_trace_lines(), torch.profiler.profile(activities=activities,
                                                                   schedule=schedule) as prof:
            for i in range(warmup + steps):
                if i < warmup:
                    tok = _step(model, tok, pos, torch.profiler.record_function)
                else:
                    with clock.step():
                        tok = _step(model, tok, pos, torch.profiler.record_function)
                if i == warmup + steps - 1:
                    synchronize(device)  # every kernel done before the trace is collected
                prof.step()
    finally:
        model.set_profiling_labels(False)
    return prof.events(), clock


def _check_args(model, batch_size: int, context_len: int, steps: int, warmup_steps: int) -> None:
    if not 1 <= batch_size <= model.max_batch_size:
        raise ProfilerError(f"batch size must be in 1..{model.max_batch_size} (the model's cache), "
                            f"got {batch_size}")
    if not 1 <= context_len <= model.max_seq_len:
        raise ProfilerError(f"context must be in 1..{model.max_seq_len} (the model's cache), "
                            f"got {context_len}")
    if steps < 1 or warmup_steps < 0:
        raise ProfilerError(f"need steps >= 1 and warmup steps >= 0, got {steps} and {warmup_steps}")


def profile_decode(model, batch_size: int, context_len: int, *, steps: int = 16, warmup_steps: int = 3,
                   seed: int = 0) -> Breakdown:
    """Time and profile decode steps of ``model`` (a :class:`profiler.model.Transformer`) at
    ``batch_size`` sequences attending to ``context_len`` KV positions; see the module docstring.

    Raises:
        ProfilerError: batch or context outside the model's cache, steps < 1, warmup_steps < 0.
    """
    _check_args(model, batch_size, context_len, steps, warmup_steps)
    device_time = model.device.type == "cuda"
    with torch.inference_mode():
        tok, pos = _prefill(model, batch_size, context_len, seed)
        for _ in range(warmup_steps):
            tok = _step(model, tok, pos, _no_label)
        timed = _timed_steps(model, tok, pos, steps)
        events, profiled = _profiled_steps(model, tok, pos, steps)
    step_times, keep_timed, keep_profiled = timed.timer.seconds(), timed.kept(), profiled.kept()
    per_step = label_times_us(events, device_time)
    if len(per_step) == len(keep_profiled):
        per_step = [rows for rows, keep in zip(per_step, keep_profiled) if keep]
    row_s = median_row_times_s(per_step)
    step_s = statistics.median(t for t, keep in zip(step_times, keep_timed) if keep)
    profiled_s = statistics.median(t for t, keep in zip(profiled.timer.seconds(), keep_profiled) if keep)
    basis = "device" if device_time else "cpu"
    rows, scale, warnings = attribute(row_s, step_s, basis)
    return Breakdown(row_times_s=rows, step_s=step_s, step_times_s=tuple(step_times),
                     profiled_step_s=profiled_s, scale=scale, time_basis=basis,
                     attributed_profiled_s=sum(t for row, t in row_s.items() if row != OTHER),
                     batch_size=batch_size, context_len=context_len, n_steps=steps,
                     preempted_steps=keep_timed.count(False) + keep_profiled.count(False),
                     warnings=tuple(warnings))


def _check_context(cfg: ModelConfig, context_len: int) -> None:
    if not 1 <= context_len <= cfg.max_position_embeddings:
        raise ProfilerError(f"context must be in 1..{cfg.max_position_embeddings} ({cfg.name}'s "
                            f"max_position_embeddings), got {context_len}")


def check_point(spec: RunSpec, context_len: int, device: torch.device, dtype: torch.dtype) -> None:
    """Everything refusable before allocating: the context against the model's positions, and the
    memory of a run with the same KV length (prompt + gen = ``context_len`` positions).

    Raises:
        ProfilerError: context outside 1..max_position_embeddings, or a point that cannot fit.
    """
    from profiler.runner import preflight

    _check_context(spec.cfg, context_len)
    preflight(dataclasses.replace(spec, prompt_len=max(context_len - 2, 1), gen_len=2), device, dtype)


def breakdown_point(spec: RunSpec, context_len: int) -> tuple[Breakdown, dict]:
    """Build the model of ``spec`` with a cache of exactly ``context_len`` positions and profile
    ``spec.gen_len`` decode steps after ``spec.warmup_steps`` (see :func:`profile_decode`).

    Returns (breakdown, ``{"device", "dtype", "ops", "elem_bytes"}`` of the run).

    Raises:
        ProfilerError: context outside 1..max_position_embeddings, bad batch/steps, unavailable
            device, dtype or backend (:func:`profiler.runner.resolve_device`,
            :func:`profiler.backends.resolve`).
        ConfigError: an MoE or unsupported config.
    """
    from profiler.backends import resolve
    from profiler.model import build_model
    from profiler.variant_check import check_variants

    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    ops = resolve(spec.backend, dict(spec.op_overrides))
    check_point(spec, context_len, device, dtype)
    check_variants(ops, spec.cfg, device, dtype)
    model = build_model(spec.cfg, dtype=dtype, device=device, max_batch_size=spec.batch_size,
                        max_seq_len=context_len, ops=ops, seed=spec.seed, weights_dir=spec.weights_dir)
    result = profile_decode(model, spec.batch_size, context_len, steps=spec.gen_len,
                            warmup_steps=spec.warmup_steps, seed=spec.seed)
    meta = {"device": str(device), "dtype": str(dtype).removeprefix("torch."), "ops": ops.describe(),
            "elem_bytes": torch.tensor([], dtype=dtype).element_size()}
    return result, meta


# ----------------------------------------------------------------------------------------------
# Bytes per class, for the roofline what-if (torch-free arithmetic on the config)


def matmul_row_params(cfg: ModelConfig) -> dict[str, int]:
    """Weight (and bias) parameters each projection row reads per decode step, over all layers.

    qkv: H × (Hq + 2 Hkv)·D; o: Hq·D × H; gate_up: 2 F × H; down: F × H (+ biases where the config
    has them); lm_head: V × H, read once per step whether or not it is tied to the embedding
    (metrics.md §6).

    Raises:
        ConfigError: an MoE config (experts are not modelled per projection here).
    """
    if cfg.is_moe:
        raise ConfigError(f"{cfg.name}: per-projection bytes are defined for dense models only")
    h, d, f, n = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size, cfg.num_hidden_layers
    q_out, kv_out = cfg.num_attention_heads * d, cfg.num_key_value_heads * d
    qkv = h * (q_out + 2 * kv_out) + ((q_out + 2 * kv_out) if cfg.qkv_bias else 0)
    o = q_out * h + (h if cfg.o_bias else 0)
    gate_up = 2 * f * h + (2 * f if cfg.mlp_bias else 0)
    down = f * h + (h if cfg.mlp_bias else 0)
    return {"matmul.qkv_proj": n * qkv, "matmul.o_proj": n * o, "matmul.gate_up_proj": n * gate_up,
            "matmul.down_proj": n * down, "matmul.lm_head": cfg.vocab_size * h}


def row_bytes_per_step(cfg: ModelConfig, batch_size: int, context_len: int,
                       elem_bytes: float) -> dict[str, float]:
    """Bytes each row with a byte model must move per decode step (metrics.md §3.1).

    Matmul rows: their weights once (:func:`matmul_row_params` × ``elem_bytes``).
    ``attention.decode``: each of the ``batch_size`` sequences reads its KV cache at ``context_len``
    (B·KV(c) of metrics.md §3.1, via :func:`profiler.roofline.kv_tokens_read` and
    :func:`profiler.roofline.kv_bytes_per_token`).
    ``attention.kv_write``: each sequence writes one token's K and V in every layer (derived: B × the
    KV bytes per token of metrics.md §3.1). Activations are left out, as in the W + B·KV(c) form.

    Raises:
        ProfilerError: batch < 1, context < 1 or elem_bytes <= 0.
    """
    if batch_size < 1 or context_len < 1 or not elem_bytes > 0:
        raise ProfilerError(f"need batch >= 1, context >= 1, elem_bytes > 0; got {batch_size}, "
                            f"{context_len}, {elem_bytes}")
    out: dict[str, float] = {row: p * elem_bytes for row, p in matmul_row_params(cfg).items()}
    per_token = roofline.kv_bytes_per_token(cfg, elem_bytes)
    out["attention.decode"] = float(batch_size * roofline.kv_tokens_read(cfg, context_len) * per_token)
    out["attention.kv_write"] = float(batch_size * per_token)
    return out


__all__ = ["Breakdown", "LABEL_ROWS", "OP_CLASSES", "OTHER", "ROOFLINE_CLASSES", "ROWS", "SAMPLING_LABEL",
           "attribute", "breakdown_point", "class_of", "label_times_us", "matmul_row_params",
           "median_row_times_s", "profile_decode", "row_bytes_per_step"]
