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
4. Each row's time in each profiled step (the sum of its label regions in that step), then the
   median over steps, the statistic TPOT uses (a step disturbed by the OS moves a mean, not a
   median). A region's time is, on CUDA, the device time of the kernels launched inside it
   (``FunctionEvent.device_time_total``); on CPU its host time (``cpu_time_total``), CPU ops being
   synchronous. A region nested inside another label counts only for the inner one. The labels map
   to rows (:data:`LABEL_ROWS`); the rows fold into the what-if classes (:data:`OP_CLASSES`).
5. ``other`` (launch gaps, the KV-cache write, views, Python) = measured step time − attributed sum,
   so the rows add up to ``step_s`` exactly.

Profiler overhead. The profiler records every aten op, which slows the host by a few microseconds
per op, so profiled steps run slower than unprofiled ones (on CPU often by tens of percent). The
step time reported is always the unprofiled one (``step_s``); both step times are kept in the
result. How the profiled rows are mapped onto it:

- CPU (host time, ``time_basis="cpu"``): the overhead lands inside the regions as well as between
  them, so the rows are rescaled by ``scale = step_s / profiled_step_s``, i.e. every row keeps its
  share of the profiled step. This assumes the overhead is spread in proportion to time, which holds
  when the op density (aten ops per second) is similar across classes; it is the assumption the
  what-if test (tests/test_breakdown.py) checks against a real A/B measurement.
- CUDA (kernel time, ``time_basis="device"``): kernel durations do not include host overhead, so
  rows are kept unscaled and the overhead appears nowhere; ``other`` (idle gaps between kernels,
  unlabelled kernels) is the unprofiled step minus the kernel time. Should the kernel sum exceed
  the step time (clock noise), the rows are scaled down to fit and a warning says so.

Byte counts for the roofline what-if (:func:`row_bytes_per_step`) follow metrics.md §3.1: a matmul
class reads its weights once per step (the LM head once, tied or not, metrics.md §6), attention
reads each sequence's KV cache at its context.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
from typing import Callable, Iterable

import torch

from profiler import roofline
from profiler.config import ModelConfig
from profiler.errors import ConfigError, ProfilerError
from profiler.runner import RunSpec, resolve_device, resolve_dtype
from profiler.timing import RegionTimer, synchronize

SAMPLING_LABEL = "sampling"
# record_function label (profiler/model.py LABELS, plus SAMPLING_LABEL here) -> breakdown row. The KV-cache
# write belongs to the attention class (a fused attention kernel appends to the cache itself).
LABEL_ROWS: dict[str, str] = {
    "attn.qkv_proj": "matmul.qkv_proj", "attn.o_proj": "matmul.o_proj",
    "mlp.gate_up_proj": "matmul.gate_up_proj", "mlp.down_proj": "matmul.down_proj", "lm_head": "matmul.lm_head",
    "attn.attention": "attention.decode", "attn.kv_write": "attention.kv_write",
    "norm": "norm", "attn.qk_norm": "norm", "attn.rope": "rope", "mlp.swiglu": "activation",
    SAMPLING_LABEL: "sampling", "embed": "embed",
}
OTHER = "other"
ROWS: tuple[str, ...] = ("matmul.qkv_proj", "matmul.o_proj", "matmul.gate_up_proj", "matmul.down_proj",
                         "matmul.lm_head", "attention.decode", "attention.kv_write", "norm", "rope", "activation",
                         "sampling", "embed", OTHER)
# What-if classes; must equal tokencost.whatif.OP_CLASSES (a test checks it; the profiler cannot import
# the cost layer).
OP_CLASSES: tuple[str, ...] = ("matmul", "attention", "norm", "rope", "activation", "sampling", "embed", OTHER)
# Classes with a byte model, i.e. those a "roofline" what-if can apply to.
ROOFLINE_CLASSES: tuple[str, ...] = ("matmul", "attention")
SCALE_TOLERANCE = 1e-9


def class_of(row: str) -> str:
    """The what-if class of a row: ``"matmul.qkv_proj"`` -> ``"matmul"``, ``"norm"`` -> ``"norm"``."""
    return row.split(".", 1)[0]


@dataclasses.dataclass(frozen=True)
class Breakdown:
    """Per-decode-step time of each row (seconds, whole batch); the rows sum to ``step_s``.

    ``step_s``: median unprofiled step time; ``step_times_s``: its samples. ``profiled_step_s``: median
    step time under the profiler; ``attributed_profiled_s``: label time per profiled step before
    scaling; ``scale``: factor applied to the label times (see module docstring). ``time_basis``:
    ``"cpu"`` (host time of the regions) or ``"device"`` (kernel time).
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
        return [{"kind": "breakdown", **common, "batch_size": self.batch_size, "context_len": self.context_len,
                 "op_class": row, "op_group": class_of(row), "time_s": t, "share": shares[row],
                 "step_s": self.step_s, "time_basis": self.time_basis} for row, t in self.row_times_s.items()]


# ----------------------------------------------------------------------------------------------
# Attribution of profiler events (pure functions of the event tree and the measured step times)


def _is_label(event) -> bool:
    return event.name in LABEL_ROWS and event.device_type == torch.autograd.DeviceType.CPU and not event.is_async


def _total_us(event, device_time: bool) -> float:
    return float(event.device_time_total if device_time else event.cpu_time_total)


def _inner_labels_us(event, device_time: bool) -> float:
    """Time of the outermost label regions strictly inside ``event``."""
    total = 0.0
    for child in event.cpu_children:
        total += _total_us(child, device_time) if _is_label(child) else _inner_labels_us(child, device_time)
    return total


def _step_key(event) -> int:
    """Identity of the ``ProfilerStep`` region an event lies in (0 outside any). The profiler renames
    every ``ProfilerStep#N`` to ``ProfilerStep*``, so regions are told apart by object, not name."""
    parent = event.cpu_parent
    while parent is not None and not parent.name.startswith("ProfilerStep"):
        parent = parent.cpu_parent
    return 0 if parent is None else id(parent)


def label_times_us(events: Iterable, device_time: bool) -> list[dict[str, float]]:
    """Per profiler step, row -> exclusive time (µs) of its label regions, from ``prof.events()``.

    ``device_time``: kernel time of the region's kernels (CUDA) instead of the region's host time.
    CUDA-side copies of the labels (``gpu_user_annotation``) are ignored; only host events count.
    Steps are told apart by the ``ProfilerStep#N`` region that ``prof.step()`` opens.
    """
    steps: dict[int, dict[str, float]] = {}
    for event in events:
        if _is_label(event):
            rows = steps.setdefault(_step_key(event), {row: 0.0 for row in ROWS if row != OTHER})
            rows[LABEL_ROWS[event.name]] += _total_us(event, device_time) - _inner_labels_us(event, device_time)
    return list(steps.values())


def median_row_times_s(per_step_us: list[dict[str, float]]) -> dict[str, float]:
    """Row -> median over steps of its time, in seconds (a row missing from a step counts 0 there).

    Raises:
        ProfilerError: no profiled step carries a label (profiling labels not enabled?).
    """
    if not per_step_us:
        raise ProfilerError("the profiler recorded no labelled op regions; nothing to attribute")
    rows = [row for row in ROWS if row != OTHER]
    return {row: statistics.median(step.get(row, 0.0) for step in per_step_us) / 1e6 for row in rows}


def attribute(per_step_s: dict[str, float], step_s: float, profiled_step_s: float,
              time_basis: str) -> tuple[dict[str, float], float, list[str]]:
    """Map label times per profiled step onto the unprofiled step time (see module docstring).

    Returns (row times with ``"other"`` summing to ``step_s``, the scale applied, warnings).

    Raises:
        ProfilerError: non-positive step times, negative label times or an unknown time basis.
    """
    if step_s <= 0 or profiled_step_s <= 0:
        raise ProfilerError(f"step times must be positive, got {step_s} and {profiled_step_s}")
    if any(t < 0 for t in per_step_s.values()):
        raise ProfilerError(f"label times must be >= 0, got {per_step_s}")
    if time_basis not in ("cpu", "device"):
        raise ProfilerError(f"time_basis must be 'cpu' or 'device', got {time_basis!r}")
    attributed = sum(per_step_s.values())
    scale = step_s / profiled_step_s if time_basis == "cpu" else 1.0
    warnings = []
    if attributed * scale > step_s * (1 + SCALE_TOLERANCE):
        warnings.append(f"profiled op time {attributed * scale * 1e3:.4g} ms exceeds the measured step "
                        f"{step_s * 1e3:.4g} ms; op times scaled down to fit (noisy clocks?)")
        scale = step_s / attributed
    rows = {row: t * scale for row, t in per_step_s.items()}
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


def _timed_steps(model, tok: torch.Tensor, pos: int, steps: int) -> list[float]:
    timer = RegionTimer(model.device)
    for _ in range(steps):
        with timer.region():
            tok = _step(model, tok, pos, _no_label)
    return timer.seconds()


def _profiled_steps(model, tok: torch.Tensor, pos: int, steps: int, warmup: int = 1):
    """``warmup`` discarded then ``steps`` recorded steps under the profiler; (events, step seconds)."""
    device = model.device
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    schedule = torch.profiler.schedule(wait=0, warmup=warmup, active=steps, repeat=1)
    timer = RegionTimer(device)
    model.set_profiling_labels(True)
    try:
        with torch.profiler.profile(activities=activities, schedule=schedule) as prof:
            for i in range(warmup + steps):
                if i < warmup:
                    tok = _step(model, tok, pos, torch.profiler.record_function)
                else:
                    with timer.region():
                        tok = _step(model, tok, pos, torch.profiler.record_function)
                if i == warmup + steps - 1:
                    synchronize(device)  # every kernel done before the trace is collected
                prof.step()
    finally:
        model.set_profiling_labels(False)
    return prof.events(), timer.seconds()


def _check_args(model, batch_size: int, context_len: int, steps: int, warmup_steps: int) -> None:
    if not 1 <= batch_size <= model.max_batch_size:
        raise ProfilerError(f"batch size must be in 1..{model.max_batch_size} (the model's cache), got {batch_size}")
    if not 1 <= context_len <= model.max_seq_len:
        raise ProfilerError(f"context must be in 1..{model.max_seq_len} (the model's cache), got {context_len}")
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
        step_times = _timed_steps(model, tok, pos, steps)
        events, profiled_times = _profiled_steps(model, tok, pos, steps)
    per_step = median_row_times_s(label_times_us(events, device_time))
    step_s, profiled_s = statistics.median(step_times), statistics.median(profiled_times)
    basis = "device" if device_time else "cpu"
    rows, scale, warnings = attribute(per_step, step_s, profiled_s, basis)
    return Breakdown(row_times_s=rows, step_s=step_s, step_times_s=tuple(step_times), profiled_step_s=profiled_s,
                     attributed_profiled_s=sum(per_step.values()), scale=scale, time_basis=basis,
                     batch_size=batch_size, context_len=context_len, n_steps=steps, warnings=tuple(warnings))


def _check_context(cfg: ModelConfig, context_len: int) -> None:
    if not 1 <= context_len <= cfg.max_position_embeddings:
        raise ProfilerError(f"context must be in 1..{cfg.max_position_embeddings} ({cfg.name}'s "
                            f"max_position_embeddings), got {context_len}")


def breakdown_point(spec: RunSpec, context_len: int) -> tuple[Breakdown, dict]:
    """Build the model of ``spec`` with a cache of exactly ``context_len`` positions and profile
    ``spec.gen_len`` decode steps after ``spec.warmup_steps`` (see :func:`profile_decode`).

    Returns (breakdown, ``{"device", "dtype", "ops", "elem_bytes"}`` of the run).

    Raises:
        ProfilerError: context outside 1..max_position_embeddings, bad batch/steps, unavailable device,
            dtype or backend (see :func:`profiler.runner.resolve_device`, :func:`profiler.backends.resolve`).
        ConfigError: an MoE or unsupported config.
    """
    from profiler.backends import resolve
    from profiler.model import build_model

    _check_context(spec.cfg, context_len)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    ops = resolve(spec.backend, dict(spec.op_overrides))
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

    qkv: H × (Hq + 2 Hkv)·D; o: Hq·D × H; gate_up: 2 F × H; down: F × H (+ biases where the config has
    them); lm_head: V × H, read once per step whether or not it is tied to the embedding (metrics.md §6).

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


def row_bytes_per_step(cfg: ModelConfig, batch_size: int, context_len: int, elem_bytes: float) -> dict[str, float]:
    """Bytes each row with a byte model must move per decode step (metrics.md §3.1).

    Matmul rows: their weights once (:func:`matmul_row_params` × ``elem_bytes``). ``attention.decode``:
    each of the ``batch_size`` sequences reads its KV cache at ``context_len`` (B·KV(c) of metrics.md
    §3.1, via :func:`profiler.roofline.kv_tokens_read` and :func:`profiler.roofline.kv_bytes_per_token`).
    ``attention.kv_write``: each sequence writes one token's K and V in every layer (derived: B × the
    KV bytes per token of metrics.md §3.1). Activations are left out, as in the W + B·KV(c) form.

    Raises:
        ProfilerError: batch < 1, context < 1 or elem_bytes <= 0.
    """
    if batch_size < 1 or context_len < 1 or not elem_bytes > 0:
        raise ProfilerError(f"need batch >= 1, context >= 1, elem_bytes > 0; got {batch_size}, {context_len}, "
                            f"{elem_bytes}")
    out: dict[str, float] = {row: p * elem_bytes for row, p in matmul_row_params(cfg).items()}
    per_token = roofline.kv_bytes_per_token(cfg, elem_bytes)
    out["attention.decode"] = float(batch_size * roofline.kv_tokens_read(cfg, context_len) * per_token)
    out["attention.kv_write"] = float(batch_size * per_token)
    return out


__all__ = ["Breakdown", "breakdown_point", "LABEL_ROWS", "OP_CLASSES", "ROOFLINE_CLASSES", "ROWS", "SAMPLING_LABEL", "attribute",
           "class_of", "label_times_us", "matmul_row_params", "median_row_times_s", "profile_decode", "row_bytes_per_step"]
