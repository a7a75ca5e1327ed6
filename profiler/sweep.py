"""Sweeps over batch size and context length, crash-safe and resumable.

Every point is measured with the same method as ``tokencost run`` (``profiler.runner``). Each finished
point is appended to the JSONL results file at once (``profiler.results.append_result``), so an
interrupted sweep loses nothing; with ``resume`` the points whose settings key is already in the file
are skipped. A point that does not fit in memory (device or host) is recorded as ``status: "skipped"``
with the reason, and the sweep goes on.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from typing import Callable, Iterable

from profiler.errors import ProfilerError, one_line
from profiler.memory import InsufficientMemoryError
from profiler.results import append_result, completed_keys, read_records, settings_key
from profiler.runner import RunSpec

MeasureFn = Callable[[RunSpec], dict]
PointCallback = Callable[[int, int, dict], None]  # (index, total, record)

@dataclasses.dataclass(frozen=True)
class SweepPoint:
    spec: RunSpec
    repeat: int

    def settings(self) -> dict:
        """What defines the point (the resume key): model shape, weights, device, dtype, ops, sizes, repeat."""
        s = self.spec
        return {"model": s.cfg.name, "config": dataclasses.asdict(s.cfg), "weights": s.weights_dir, "seed": s.seed,
                "device": s.device, "dtype": s.dtype, "backend": s.backend, "ops": sorted(s.op_overrides),
                "batch_size": s.batch_size, "prompt_len": s.prompt_len, "gen_len": s.gen_len,
                "warmup_steps": s.warmup_steps, "repeat": self.repeat}


def plan_points(base: RunSpec, batch_sizes: Iterable[int], context_lens: Iterable[int], repeats: int = 1) -> list[SweepPoint]:
    """Every (context, batch, repeat) combination, contexts outermost, as prompt lengths of ``base``.

    Raises:
        ProfilerError: an empty list, a non-positive size, or ``repeats < 1``.
    """
    batch_sizes, context_lens = list(batch_sizes), list(context_lens)
    if not batch_sizes or not context_lens:
        raise ProfilerError("a sweep needs at least one batch size and one context length")
    if repeats < 1 or min(batch_sizes) < 1 or min(context_lens) < 1:
        raise ProfilerError("batch sizes, context lengths and repeats must be positive")
    return [SweepPoint(dataclasses.replace(base, batch_size=b, prompt_len=c), r)
            for c in context_lens for b in batch_sizes for r in range(repeats)]


def _positions_error(points: list[SweepPoint]) -> ProfilerError | None:
    """Context lengths whose prompt plus generated tokens pass the model's positions, in the sweep's
    own terms (context length + gen-len)."""
    cfg, gen = points[0].spec.cfg, points[0].spec.gen_len
    limit = cfg.max_position_embeddings
    bad = sorted({p.spec.prompt_len for p in points if p.spec.prompt_len + p.spec.gen_len > limit})
    if not bad:
        return None
    what = (f"context length {bad[0]} + gen-len {gen} = {bad[0] + gen} exceeds" if len(bad) == 1 else
            f"context lengths {', '.join(map(str, bad))} + gen-len {gen} exceed")
    hint = (f"the largest context length that fits with this gen-len is {limit - gen}" if limit - gen >= 1
            else f"gen-len must be below {limit}")
    return ProfilerError(f"{what} {cfg.name}'s max_position_embeddings ({limit}); {hint}")


def check_grid(points: list[SweepPoint], device, dtype) -> dict[tuple[int, int], str]:
    """Check every point before anything is measured: sizes, positions, backend and config, then the
    memory estimate. Returns ``{(batch_size, prompt_len): reason}`` for the points whose estimate
    exceeds the device's free memory now (they are recorded as skipped, not measured).

    Raises:
        ProfilerError: a point that can never run (context length + gen-len past the model's
            positions, a bad size, an unknown backend, a config the decode model cannot build,
            --cuda-graph off CUDA, bfloat16 on the Triton interpreter, a head_dim the triton attention
            kernels do not support), or no point estimated to fit in memory.
    """
    from profiler.runner import check_cuda_graph, preflight

    if not points:
        raise ProfilerError("a sweep needs at least one point")
    error = _positions_error(points)
    if error is not None:
        raise error
    base = points[0].spec
    check_cuda_graph(base, device)
    specs = {(p.spec.batch_size, p.spec.prompt_len): p.spec for p in points}
    skips: dict[tuple[int, int], str] = {}
    for size, spec in specs.items():
        try:
            preflight(spec, device, dtype)  # sizes, positions, backend, config, the memory estimate
        except InsufficientMemoryError as exc:
            skips[size] = str(exc)
    if skips and len(skips) == len(specs):
        smallest = min(skips, key=lambda bc: bc[0] * bc[1])
        raise InsufficientMemoryError(f"no point of the sweep fits in memory; the smallest: {skips[smallest]}")
    return skips


def points_in_file(path: str | os.PathLike, points: list[SweepPoint]) -> int:
    """How many records of ``path`` (0 for a missing file) belong to ``points`` (same settings key)."""
    if not os.path.exists(path):
        return 0
    wanted = {settings_key(p.settings()) for p in points}
    return sum(1 for r in read_records(path) if r.get("settings_key") in wanted)


def latest_records(records: list[dict], points: list[SweepPoint]) -> list[dict]:
    """The newest record (last in file order) of each of ``points``: what one sweep measured, even in
    a file that also holds other sweeps or an earlier measurement of the same points."""
    wanted = {settings_key(p.settings()) for p in points}
    latest = {r["settings_key"]: r for r in records if r.get("settings_key") in wanted}
    return list(latest.values())


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's device OOM, a host MemoryError, or an allocator 'can't allocate' error."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _skip_record(point: SweepPoint, reason: str) -> dict:
    s = point.spec
    return {"kind": "run", "status": "skipped", "skip_reason": reason, "model": s.cfg.name, "device": s.device,
            "dtype": s.dtype, "backend": s.backend, "batch_size": s.batch_size, "prompt_len": s.prompt_len,
            "gen_len": s.gen_len, "repeat": point.repeat}


def measure_point(point: SweepPoint, measure: MeasureFn, memory_check: Callable[[RunSpec], str | None]) -> dict:
    """Measure one point, or return its skip record when it cannot fit in memory (the runner's
    estimate before allocating, or an out-of-memory error while measuring)."""
    reason = memory_check(point.spec)
    if reason is not None:
        return _skip_record(point, reason)
    try:
        record = measure(point.spec)
    except InsufficientMemoryError as exc:  # the estimate says it cannot fit: nothing was allocated
        return _skip_record(point, str(exc))
    except Exception as exc:  # noqa: BLE001 - only OOM is turned into a skip; everything else propagates
        if not is_out_of_memory(exc):
            raise
        _release_memory()
        return _skip_record(point, f"out of memory: {one_line(exc, 200)}")
    record.setdefault("status", "ok")
    record["repeat"] = point.repeat
    return record


def _release_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def run_sweep(points: list[SweepPoint], out_path: str | os.PathLike, measure: MeasureFn, *,
              resume: bool = False, memory_check: Callable[[RunSpec], str | None] | None = None,
              on_point: PointCallback | None = None) -> list[dict]:
    """Measure ``points`` in order, appending each record to ``out_path`` as soon as it is done.

    Returns the records written by this call (skipped-by-resume points are not re-written).
    Errors other than out-of-memory stop the sweep; everything measured before stays in the file.
    """
    done = completed_keys(out_path) if resume else set()
    memory_check = memory_check or (lambda spec: None)
    written = []
    for i, point in enumerate(points):
        key = settings_key(point.settings())
        if key in done:
            if on_point:
                on_point(i, len(points), {"status": "resumed", "settings_key": key})
            continue
        record = measure_point(point, measure, memory_check)
        record["settings_key"] = key
        record.setdefault("timestamp", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        append_result(out_path, record)
        written.append(record)
        if on_point:
            on_point(i, len(points), record)
    return written
