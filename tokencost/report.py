"""PNG plots and a Markdown summary from a results file's records (``tokencost report``).

Input: the records of a JSONL results file (profiler/results.py documents the schema), mixed kinds:
``run`` (measured decode points), ``kernel`` (kernel benchmarks) and ``breakdown`` (op-class shares of
a decode step). Output files in the chosen folder (every PNG saved with a tight bounding box, log axes
labelled with plain numbers):

- ``frontier.png``: throughput per device against interactivity (tok/s per sequence), the Pareto
  frontier of each model/device/dtype/backend series at each context length, annotated with $/Mtok
  output.
- ``batch.png`` / ``context.png``: output tok/s and MBU against batch size / context length.
- ``roofline.png``: kernels' arithmetic intensity (FLOP/byte) against achieved FLOP/s under the device
  ceilings min(peak FLOP/s, intensity × peak bandwidth) (Williams, Waterman & Patterson, "Roofline",
  CACM 2009; metrics.md section 3.2): every ceiling the records carry, labelled with its source
  (datasheet, measured read, and the ``--calibrate`` measured copy and matmul, dashed); marker shape =
  phase, colour = backend, points numbered with a key beside the chart.
- ``breakdown.png``: share of decode-step time per op class, one fixed colour per class.
- ``summary.md``: a table of the points (with the bandwidth their MBU and roofline floor are relative
  to) and the images, and notes: plots skipped for want of data, repeat spreads, the run records' own
  warnings (once per point; once for all when every point carries one), and bandwidths more than 10 %
  apart (MBU and floor multiples then not comparable).

Repeats of a point (records equal but for ``repeat``) are pooled as ``tokencost sweep`` pools them
(``tokencost.sweep_summary.pool_repeats``): median TTFT and TPOT, the tok/s, MBU and $/Mtok derived from
them, and a 95% interval of tok/s carried into dollars, drawn as error bars on the frontier and given in
the table. Runs priced differently (``usd_per_hour``, ``price_source``) are separate rows, never repeats.
Torch-free; matplotlib is used
through ``Figure`` objects (Agg canvas), never through pyplot's global state.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatterSciNotation

from tokencost.errors import CostError
from tokencost.frontier import INTERACTIVITY_KEY, THROUGHPUT_KEY, cost_vs_floor, pareto_frontier
from tokencost.sweep_summary import PRICE_KEYS, pool_repeats
from tokencost.units import si_prefixed

PLOT_FILES: dict[str, str] = {
    "frontier": "frontier.png",
    "batch": "batch.png",
    "context": "context.png",
    "roofline": "roofline.png",
    "breakdown": "breakdown.png",
}
_SERIES_KEYS = ("model", "device_name", "dtype", "backend")
# Short lines: a long title is cut at the figure's edge.
FRONTIER_TITLE = ("Throughput-interactivity frontier\n"
                  "labels: \\$/Mtok output [95% CI]; bars: 95% CI of tok/s over repeats")


@dataclasses.dataclass
class Report:
    """What :func:`write_report` wrote: plot name -> PNG path (None when skipped), notes, summary path."""

    plots: dict[str, Path | None]
    notes: list[str]
    summary_path: Path


# ----------------------------------------------------------------------------------------------
# Record selection


def _kind(record: dict) -> str:
    return record.get("kind", "run")


def _context(record: dict) -> Any:
    """The context of a point as ``tokencost sweep`` names it: the prompt length (``context_len``,
    the middle decode step's context, only for records without one)."""
    return record.get("prompt_len", record.get("context_len"))


def backend_label(record: dict) -> str:
    """The record's backend, plus the ops that ran another variant and CUDA graphs when used: runs that
    differ in any of these measured different code, so they are different series, never repeats."""
    base = str(record.get("backend", "?"))
    ops = record.get("ops") if isinstance(record.get("ops"), dict) else {}
    others = [f"{op}={name}" for op, name in sorted(ops.items()) if name != base]
    return base + (f" [{', '.join(others)}]" if others else "") + (" +cuda-graph" if record.get("cuda_graph") else "")


def _series_values(record: dict) -> tuple:
    return tuple(backend_label(record) if k == "backend" else record.get(k) for k in _SERIES_KEYS)


def _point_key(record: dict) -> tuple:
    """Repeats of one point share everything but ``repeat`` (their settings keys differ by it),
    including the price: runs priced differently are separate rows, each with its own $/Mtok."""
    return _series_values(record) + tuple(record.get(k) for k in ("batch_size", "prompt_len", "gen_len") + PRICE_KEYS)


def _is_number(value: Any, minimum: float = 0.0, strict: bool = True) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > minimum if strict else value >= minimum


def _run_problem(record: dict) -> str | None:
    status = record.get("status", "ok")
    if status not in ("ok", "skipped"):
        return f"a run record's status must be \"ok\" or \"skipped\", got {status!r}"
    need = [] if isinstance(record.get("batch_size"), int) and _is_number(record["batch_size"]) else ["batch_size"]
    if not _is_number(_context(record)):
        need.append("prompt_len (or context_len)")
    if status == "ok":
        need += [] if isinstance(record.get("model"), str) else ["model"]
        need += [k for k in ("tpot_s", THROUGHPUT_KEY, INTERACTIVITY_KEY) if not _is_number(record.get(k))]
    what = "run record" if status == "ok" else "skipped run record"
    return f"{what} without a valid {', '.join(need)} (present, numbers positive)" if need else None


def record_problem(record: dict) -> str | None:
    """Why ``record`` cannot go into a report (an unknown kind, or a field the report needs that is
    missing or not a positive number), or None when it can."""
    kind = _kind(record)
    if kind == "run":
        return _run_problem(record)
    if kind == "kernel":
        need = ([] if isinstance(record.get("op"), str) else ["op"]) + [
            k for k in ("flop", "bytes", "median_s") if not _is_number(record.get(k))]
        return f"kernel record without a valid {', '.join(need)} (present, numbers positive)" if need else None
    if kind == "breakdown":
        if not isinstance(record.get("op_class"), str):
            return "breakdown record without an op_class"
        if not any(_is_number(record.get(k), strict=False) for k in ("share", "time_s")):
            return "breakdown record without a share or time_s >= 0"
        return None
    return f"record kind {kind!r} is not one of run, kernel, breakdown"


def check_records(numbered: Iterable[tuple[Any, dict]], source: str) -> list[dict]:
    """The records of ``(line, record)`` pairs, once each passes :func:`record_problem`.

    Raises:
        CostError: ``"<source>:<line>: <problem>"`` for the first record that cannot be reported.
    """
    records = []
    for where, record in numbered:
        problem = record_problem(record)
        if problem is not None:
            raise CostError(f"{source}:{where}: {problem}")
        records.append(record)
    return records


# Figures of one run that pool_repeats does not pool: kept for a single run, dropped from a point of
# several repeats (the first repeat's value would pass for the point's).
_PER_RUN_KEYS = ("warnings", "tpot_p90_s", "tpot_p99_s", "tpot_mean_s", "step_times_s", "decode_wall_s", "mfu",
                 "request_usd", "request_usd_per_mtok_input", "request_usd_per_mtok_output",
                 "request_usd_per_mtok_blended", "usd_per_mtok_electricity", "gpu_energy_j",
                 "gpu_energy_per_output_token_j", "gpu_avg_power_w", "effective", "breakeven", "timestamp")


def aggregate_repeats(runs: Iterable[dict]) -> list[dict]:
    """One dict per point: the first repeat's settings, updated with the pooled figures of all its
    repeats (:func:`tokencost.sweep_summary.pool_repeats`; its warnings as ``repeat_warnings``),
    ``n_repeats`` (``context_len`` falls back to ``prompt_len``), ``record_warnings`` (the warnings the
    repeats' records carry, each once, :func:`tokencost.sweep_summary.record_warnings`) and the
    bandwidth the MBU and roofline floor are relative to: ``bandwidth_bytes_per_s`` (median over
    repeats), ``bandwidth_range_bytes_per_s`` ([min, max] over repeats) and ``bandwidth_source_kind``
    (:func:`source_kind`). Per-run figures that are not pooled (warnings, tail TPOT, MFU, energy,
    request costs) are left out of a point with several repeats. Records with
    status "skipped" are left out."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        if r.get("status", "ok") != "skipped":
            groups[_point_key(r)].append(r)
    points = []
    for group in groups.values():
        pooled = pool_repeats(group)
        first = group[0] if len(group) == 1 else {k: v for k, v in group[0].items() if k not in _PER_RUN_KEYS}
        point = {**first, "n_repeats": pooled.pop("repeats"), "context_len": _context(group[0]),
                 "repeat_warnings": pooled.pop("warnings")}
        point.update(pooled)
        point.update(_pooled_bandwidth(group))
        points.append(point)
    return points


def _pooled_bandwidth(group: list[dict]) -> dict[str, Any]:
    bws = [r["bandwidth_bytes_per_s"] for r in group if _is_number(r.get("bandwidth_bytes_per_s"))]
    kinds = dict.fromkeys(source_kind(r.get("bandwidth_source")) for r in group if "bandwidth_bytes_per_s" in r)
    if not bws:
        return {}
    return {"bandwidth_bytes_per_s": statistics.median(bws), "bandwidth_range_bytes_per_s": [min(bws), max(bws)],
            "bandwidth_source_kind": " / ".join(kinds)}


def _series(points: list[dict]) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = defaultdict(list)
    for p in points:
        by[" / ".join("?" if v is None else str(v) for v in _series_values(p))].append(p)
    return dict(by)


def _plottable(points: list[dict], *keys: str) -> list[dict]:
    return [p for p in points if all(isinstance(p.get(k), (int, float)) and p[k] > 0 for k in keys)]


# ----------------------------------------------------------------------------------------------
# Plots (each returns a Figure, or None with the reason when there is nothing to draw)


def _plain_number(x: float) -> str:
    """``x`` to 3 significant figures without an exponent, thousands separated: 1,040, 0.5, 64, 12,500."""
    x = float(f"{x:.3g}")
    return f"{x:,.0f}" if abs(x) >= 1e3 else np.format_float_positional(x, trim="-")


def _si_number(x: float) -> str:
    """``x`` to 3 significant figures with an SI prefix: 2.5 G, 40 M, 1 T (for FLOP/s and bytes/s)."""
    return si_prefixed(x, _plain_number)


class _PlainLogFormatter(LogFormatterSciNotation):
    """Labels the ticks matplotlib's log formatter would label (decades, and minor ticks on a short axis)
    as plain numbers (1040, 0.5, 64), never as 1.04×10³ or 2⁶; ``text`` formats the number."""

    def __init__(self, base: float = 10.0, minor: bool = False, text=_plain_number):
        super().__init__(base=base, labelOnlyBase=False, minor_thresholds=(1, 0.4) if minor else None)
        self._text = text

    def __call__(self, x, pos=None):
        return self._text(x) if super().__call__(x, pos) else ""


def _plain_log_ticks(axis, base: float = 10.0, text=_plain_number) -> None:
    """Put ``axis`` (an x or y Axis already on a log scale) on plain-number tick labels."""
    axis.set_major_formatter(_PlainLogFormatter(base, text=text))
    axis.set_minor_formatter(_PlainLogFormatter(base, minor=True, text=text))


def _no_math(text: str) -> str:
    """``text`` with its dollar signs escaped, so that two of them never start matplotlib mathtext."""
    return text.replace("$", r"\$")


def _point_label(p: dict) -> str:
    usd, ci = p.get("usd_per_mtok_output"), p.get("usd_per_mtok_output_ci95")
    text = f"B={p.get('batch_size', '?')}" + (f"\n${usd:.3g}/Mtok" if isinstance(usd, (int, float)) else "")
    return _no_math(text + (f" [{ci[0]:.3g}–{ci[1]:.3g}]" if ci else ""))


def _error_bars(ax, series: list[dict], color) -> None:
    """95% interval of output tok/s over repeats as vertical error bars (points with repeats only)."""
    pts = [p for p in series if p.get("output_tok_per_s_ci95")]
    if not pts:
        return
    ys = [p[THROUGHPUT_KEY] for p in pts]
    below = [max(0.0, y - p["output_tok_per_s_ci95"][0]) for y, p in zip(ys, pts)]
    above = [max(0.0, p["output_tok_per_s_ci95"][1] - y) for y, p in zip(ys, pts)]
    ax.errorbar([p[INTERACTIVITY_KEY] for p in pts], ys, yerr=[below, above], fmt="none", ecolor=color,
                elinewidth=1, capsize=3)


def _workloads(points: list[dict]) -> dict[str, list[dict]]:
    """Series split by context length: a frontier compares batch sizes on one workload."""
    out: dict[str, list[dict]] = {}
    for name, series in _series(points).items():
        for ctx in sorted({p.get("context_len") for p in series}, key=_numeric_first):
            out[f"{name}, ctx {ctx}"] = [p for p in series if p.get("context_len") == ctx]
    return out


def plot_frontier(points: list[dict]) -> tuple[Figure | None, str | None]:
    """Throughput per device vs interactivity; one frontier per series and context length, with
    $/Mtok output on the frontier points."""
    pts = _plottable(points, THROUGHPUT_KEY, INTERACTIVITY_KEY)
    if not pts:
        return None, "frontier plot skipped: no measured run points with output_tok_per_s and output_tok_per_s_per_seq"
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer, to measure the labels
    ax = fig.add_subplot()
    labels = []
    for name, series in _workloads(pts).items():
        front = pareto_frontier(series)
        line = ax.plot([p[INTERACTIVITY_KEY] for p in front], [p[THROUGHPUT_KEY] for p in front], "o-", label=name)
        ax.scatter([p[INTERACTIVITY_KEY] for p in series], [p[THROUGHPUT_KEY] for p in series], alpha=0.35, s=18,
                   color=line[0].get_color())
        _error_bars(ax, series, line[0].get_color())
        labels += [(_point_label(p), (p[INTERACTIVITY_KEY], p[THROUGHPUT_KEY]), line[0].get_color()) for p in front]
    ax.set(xlabel="interactivity: output tok/s per sequence (1 / TPOT)", ylabel="output tok/s per device")
    ax.set_title(FRONTIER_TITLE)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis)
    ax.margins(0.12)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    _place_labels(fig, ax, labels, [(p[INTERACTIVITY_KEY], p[THROUGHPUT_KEY]) for p in pts], "frontier-labels")
    return fig, None


def _numeric_first(value: Any) -> tuple:
    """Sort key: numbers in numeric order, then anything else by its text."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if is_number else (1, 0, str(value))


def _vs_plot(points: list[dict], x_key: str, group_key: str, x_label: str, group_label: str):
    pts = _plottable(points, x_key, THROUGHPUT_KEY)
    if len({p[x_key] for p in pts}) < 2:
        return None, f"plot against {x_label} skipped: fewer than two distinct values among the run points"
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    ax_tok, ax_mbu = fig.subplots(2, 1, sharex=True)
    multi = len(_series(pts)) > 1
    for name, series in _series(pts).items():
        for g in sorted({p.get(group_key) for p in series}, key=_numeric_first):
            line = sorted((p for p in series if p.get(group_key) == g), key=lambda p: p[x_key])
            label = f"{group_label}{g}" + (f" ({name})" if multi else "")
            ax_tok.plot([p[x_key] for p in line], [p[THROUGHPUT_KEY] for p in line], "o-", label=label)
            mbu = [(p[x_key], p["mbu"] * 100) for p in line if isinstance(p.get("mbu"), (int, float))]
            if mbu:
                ax_mbu.plot(*zip(*mbu), "o-", label=label)
    ax_tok.set(ylabel="output tok/s per device", title=f"Throughput and MBU against {x_label}")
    ax_mbu.set(xlabel=x_label, ylabel="MBU (%)")
    for ax in (ax_tok, ax_mbu):
        ax.set_xscale("log", base=2)
        _plain_log_ticks(ax.xaxis, base=2)
        ax.grid(True, alpha=0.3)
    ax_tok.legend(fontsize=7)
    return fig, None


def plot_vs_batch(points: list[dict]) -> tuple[Figure | None, str | None]:
    """Output tok/s and MBU against batch size, one line per context length."""
    return _vs_plot(points, "batch_size", "context_len", "batch size", "ctx ")


def plot_vs_context(points: list[dict]) -> tuple[Figure | None, str | None]:
    """Output tok/s and MBU against context length, one line per batch size."""
    return _vs_plot(points, "context_len", "batch_size", "context length (tokens)", "B=")


def _kernel_point(k: dict) -> tuple[float, float]:
    for key in ("flop", "bytes", "median_s"):
        if not isinstance(k.get(key), (int, float)) or k[key] <= 0:
            raise CostError(f"kernel record needs a positive {key!r}, got {k.get(key)!r}")
    return k["flop"] / k["bytes"], k["flop"] / k["median_s"]


def source_kind(source: Any) -> str:
    """What a ceiling's recorded source says it is: "datasheet", "measured read" (a read-bandwidth
    measurement), "measured copy", "measured matmul" (``tokencost kernels --calibrate``), "measured",
    "unknown" (no figure), or "source not recorded"."""
    text = str(source or "").strip().lower()
    if not text:
        return "source not recorded"
    if text.startswith("datasheet"):
        return "datasheet"
    if text.startswith("unknown"):
        return "unknown"
    if text.startswith("measured"):
        for word, kind in (("copy", "measured copy"), ("read", "measured read"), ("matmul", "measured matmul"),
                           ("--calibrate", "measured matmul")):
            if word in text:
                return kind
        return "measured"
    return text[:40]


@dataclasses.dataclass(frozen=True)
class Ceiling:
    """One roof of a roofline chart: min(compute, arithmetic intensity × bandwidth), either part None when
    unknown, each with the kind of its source (:func:`source_kind`); ``measured`` for the ``--calibrate``
    ceilings (drawn dashed beside the reference ones)."""

    bandwidth_bytes_per_s: float | None
    bandwidth_kind: str
    flop_per_s: float | None
    flop_kind: str
    measured: bool

    def roof(self, intensity: float) -> float:
        """The attainable FLOP/s at ``intensity`` FLOP/byte (inf where neither part bounds it)."""
        compute = self.flop_per_s if self.flop_per_s is not None else math.inf
        memory = intensity * self.bandwidth_bytes_per_s if self.bandwidth_bytes_per_s is not None else math.inf
        return min(compute, memory)

    def label(self) -> str:
        bw = ("bandwidth unknown" if self.bandwidth_bytes_per_s is None
              else f"{_si_number(self.bandwidth_bytes_per_s)}B/s ({self.bandwidth_kind})")
        flop = ("compute unknown" if self.flop_per_s is None
                else f"{_si_number(self.flop_per_s)}FLOP/s ({self.flop_kind})")
        return f"{'calibrated' if self.measured else 'reference'} ceiling: {bw}, {flop}"


def _optional_rate(record: dict, key: str) -> float | None:
    value = record.get(key)
    if value is not None and not _is_number(value):
        raise CostError(f"kernel record {key} must be positive or null (unknown), got {value!r}")
    return None if value is None else float(value)


def record_ceilings(k: dict) -> list[Ceiling]:
    """The ceilings a kernel record carries: the reference ones (``peak_*``: datasheet, or the measured
    read bandwidth where there is no datasheet) and, after ``--calibrate``, the measured copy bandwidth
    and matmul rate (``measured_peak_*``). A ``peak_flop_per_s`` whose source is the calibrated matmul
    (results files written before 2026-11-30 by ``tokencost kernels`` carry one where no datasheet peak
    exists) belongs to the calibrated roof, never paired with the reference bandwidth.

    Raises CostError for a missing reference bandwidth or a rate that is not positive or null.
    """
    bw = _optional_rate(k, "peak_bandwidth_bytes_per_s")
    if bw is None:
        raise CostError("kernel records need a positive peak_bandwidth_bytes_per_s")
    flop, flop_kind = _optional_rate(k, "peak_flop_per_s"), source_kind(k.get("peak_flop_source"))
    m_flop = _optional_rate(k, "measured_peak_flop_per_s")
    m_bw = _optional_rate(k, "measured_peak_bandwidth_bytes_per_s")
    if flop is not None and flop_kind == "measured matmul":
        m_flop, flop, flop_kind = (m_flop if m_flop is not None else flop), None, "unknown"
    out = [Ceiling(bw, source_kind(k.get("peak_bandwidth_source")), flop, flop_kind, False)]
    if m_bw is not None or m_flop is not None:
        out.append(Ceiling(m_bw, "measured copy", m_flop, "measured matmul", True))
    return out


def _kernel_runs(kernels: list[dict]) -> list[int]:
    """The run (1-based, by first appearance of its ``timestamp``) each kernel record comes from; records
    without a timestamp count as one run."""
    stamps = list(dict.fromkeys(k.get("timestamp") for k in kernels))
    return [stamps.index(k.get("timestamp")) + 1 for k in kernels]


def _ceilings(kernels: list[dict]) -> dict[Ceiling, list[int]]:
    """Every distinct ceiling of the records (reference ones first) -> the runs that carry it; all from
    one device (CostError otherwise)."""
    devices = {k.get("device_name") for k in kernels} - {None}
    if len(devices) > 1:
        raise CostError(f"kernel records come from several devices ({', '.join(sorted(map(str, devices)))}); "
                        "report one device at a time")
    found: dict[Ceiling, list[int]] = {}
    for k, run in zip(kernels, _kernel_runs(kernels)):
        for c in record_ceilings(k):
            found.setdefault(c, [])
            if run not in found[c]:
                found[c].append(run)
    return dict(sorted(found.items(), key=lambda item: item[0].measured))


def _runs_text(runs: list[int]) -> str:
    return f"run{'s' if len(runs) > 1 else ''} {', '.join(map(str, runs))}: "


def _kernel_name(k: dict) -> str:
    phase = k.get("phase")
    return f"{k.get('op', '?')}/{k.get('backend', '?')}" + (f" ({phase})" if phase else "")


def _above_roof(kernels: list[dict]) -> str | None:
    """Kernels above every ceiling their record carries (the highest roof at their intensity): their
    FLOP/byte counts or the peaks are wrong (metrics.md section 3.1 counter-check), or a warm cache beat
    the memory bandwidth."""
    above = []
    for k in kernels:
        ai, achieved = _kernel_point(k)
        if achieved > 1.01 * max(c.roof(ai) for c in record_ceilings(k)):
            above.append(_kernel_name(k))
    if not above:
        return None
    return (f"roofline: {', '.join(above)} above the device ceiling; check the FLOP and byte counts, "
            "the peak figures, or cache effects")


_PHASE_MARKERS = {"prefill": "o", "decode": "s", "square": "D"}
_OTHER_MARKER = "^"
_CEILING_COLOURS = ("black", "dimgray", "saddlebrown", "darkslategray")


def backend_colours(backends: Iterable[str]) -> dict[str, tuple]:
    """Backend -> tab10 colour: torch first, triton second, other backends by name."""
    order = sorted(set(backends), key=lambda b: (b != "torch", b != "triton", b))
    return {b: colormaps["tab10"].colors[i % 10] for i, b in enumerate(order)}


def _draw_ceilings(ax, ceilings: dict[Ceiling, list[int]], xs: list[float], several_runs: bool) -> list:
    """Each ceiling as a line over the kernels' intensities (dashed: calibrated), its ridge dotted; the
    label names the runs that carry it when the records come from several."""
    lo, hi = min(xs) / 4, max(xs) * 4
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    handles = []
    for i, (c, runs) in enumerate(ceilings.items()):
        colour, style = _CEILING_COLOURS[i % len(_CEILING_COLOURS)], "--" if c.measured else "-"
        ys = [c.roof(x) for x in grid]
        label = (_runs_text(runs) if several_runs else "") + c.label()
        handles += ax.plot([x for x, y in zip(grid, ys) if math.isfinite(y)], [y for y in ys if math.isfinite(y)],
                           color=colour, ls=style, lw=1.5, label=label)
        if c.flop_per_s is not None and c.bandwidth_bytes_per_s is not None:
            ax.axvline(c.flop_per_s / c.bandwidth_bytes_per_s, color=colour, ls=":", lw=0.8)
    return handles


def _draw_kernels(ax, kernels: list[dict]) -> tuple[list, list[str]]:
    """One scatter per (phase, backend): marker shape = phase, colour = backend. Returns the numbered
    key's handles and labels (1-based, in record order; with the run when there are several)."""
    colours = backend_colours(str(k.get("backend", "?")) for k in kernels)
    runs = _kernel_runs(kernels)
    handles, labels = [], []
    groups: dict[tuple, list] = defaultdict(list)
    for n, (k, run) in enumerate(zip(kernels, runs), 1):
        phase, backend = str(k.get("phase") or "n/a"), str(k.get("backend", "?"))
        marker, colour = _PHASE_MARKERS.get(phase, _OTHER_MARKER), colours[backend]
        groups[(phase, backend, marker)].append(_kernel_point(k))
        handles.append(Line2D([], [], ls="", marker=marker, color=colour))
        labels.append(f"{n}  {k.get('op', '?')} · {phase} · {backend}" + (f" · run {run}" if max(runs) > 1 else ""))
    for (phase, backend, marker), pts in groups.items():
        ax.scatter(*zip(*pts), marker=marker, color=colours[backend], s=36, zorder=3, gid=f"kernels:{phase}|{backend}")
    return handles, labels


def _encoding_handles(kernels: list[dict]) -> list:
    phases = dict.fromkeys(str(k.get("phase") or "n/a") for k in kernels)
    shapes = [Line2D([], [], ls="", marker=_PHASE_MARKERS.get(p, _OTHER_MARKER), color="grey", label=f"phase: {p}")
              for p in phases]
    colours = backend_colours(str(k.get("backend", "?")) for k in kernels)
    return shapes + [Patch(color=c, label=f"backend: {b}") for b, c in colours.items()]


def plot_roofline(kernels: list[dict]) -> tuple[Figure | None, str | None]:
    """Arithmetic intensity vs achieved FLOP/s per kernel under every ceiling the records carry
    (:func:`record_ceilings`, each labelled with its source), marker = phase, colour = backend, each
    point numbered (labels placed clear of each other) with a numbered key beside the chart.

    The note is set when a kernel lies above every ceiling its record carries."""
    if not kernels:
        return None, "roofline plot skipped: no kernel records (kind = \"kernel\") in the results"
    ceilings = _ceilings(kernels)
    points = [_kernel_point(k) for k in kernels]
    ridges = [c.flop_per_s / c.bandwidth_bytes_per_s for c in ceilings
              if c.flop_per_s is not None and c.bandwidth_bytes_per_s is not None]
    fig = Figure(figsize=(11, 6 + 0.12 * max(0, len(kernels) - 30)), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer, to measure the number labels
    ax = fig.add_subplot()
    lines = _draw_ceilings(ax, ceilings, [ai for ai, _ in points] + ridges, max(_kernel_runs(kernels)) > 1)
    key_handles, key_labels = _draw_kernels(ax, kernels)
    styles = ["solid: reference ceilings"] + (["dashed: calibrated (--calibrate)"] if any(c.measured for c in ceilings)
                                              else []) + (["dotted: ridge points"] if ridges else [])
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP/byte)", ylabel="achieved FLOP/s",
           title="Kernel roofline: achieved FLOP/s against arithmetic intensity\n" + "; ".join(styles))
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis, text=_si_number)
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(handles=lines + _encoding_handles(kernels), loc="outside lower center", ncols=2, fontsize=7)
    fig.legend(key_handles, key_labels, loc="outside right upper", fontsize=7, title="kernels",
               title_fontsize=8, ncols=1 + len(kernels) // 40)
    _number_points(fig, ax, points, [h.get_color() for h in key_handles])
    return fig, _above_roof(kernels)


# Label offsets tried around a point, nearest first: radii in points, 8 directions (E first).
_LABEL_RADII = (5, 10, 16, 24, 34, 46, 60)
_LABEL_DIRECTIONS = ((1, 0), (1, 1), (1, -1), (-1, 0), (-1, 1), (-1, -1), (0, 1), (0, -1))


def _label_offsets():
    """(radius, (dx, dy) in points, ha, va) of each label position tried, nearest first."""
    for r in _LABEL_RADII:
        for dx, dy in _LABEL_DIRECTIONS:
            norm = math.hypot(dx, dy)
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
            yield r, (r * dx / norm, r * dy / norm), ha, va


def _overlap(a: tuple, b: tuple) -> bool:
    """Whether boxes (x0, y0, x1, y1) overlap."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _best_offset(ax, text: str, point, obstacles: list[tuple], frame: tuple, renderer) -> tuple:
    """The nearest position for label ``text`` of ``point`` clear of ``obstacles`` and inside ``frame``
    (else the one with the fewest clashes): (radius, offset, ha, va, box)."""
    probe = ax.annotate(text, point, xytext=(0, 0), fontsize=7, textcoords="offset points")
    best = None
    for r, offset, ha, va in _label_offsets():
        probe.xyann = offset
        probe.set(ha=ha, va=va)
        box = tuple(probe.get_window_extent(renderer).extents)
        inside = frame[0] <= box[0] and box[2] <= frame[2] and frame[1] <= box[1] and box[3] <= frame[3]
        clashes = sum(_overlap(box, other) for other in obstacles) + (0 if inside else len(obstacles) + 1)
        if best is None or clashes < best[0]:
            best = (clashes, r, offset, ha, va, box)
        if clashes == 0:
            break
    probe.remove()
    return best[1:]


def _coinciding(centres: list, distance: float) -> list[list[int]]:
    """Point indices grouped where markers lie on top of each other: each point joins the first group
    whose first point is within ``distance`` (no chaining), else starts a group."""
    groups: list[list[int]] = []
    for i, (x, y) in enumerate(centres):
        home = next((g for g in groups if math.hypot(x - centres[g[0]][0], y - centres[g[0]][1]) < distance), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return groups


def number_text(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1–3,7"``: the numbers of points drawn on top of each other."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}{'–' if len(r) > 2 else ','}{r[-1]}" for r in runs)


def _place_labels(fig: Figure, ax, items: list[tuple[str, tuple[float, float], Any]], markers_at: list,
                  gid: str) -> list:
    """Write each ``(text, point, colour)`` of ``items`` beside its point, clear of the other labels and
    of every marker in ``markers_at`` (data coordinates), inside the axes (:func:`_best_offset`), with
    a leader line when it had to move away. The layout is fixed first (constrained layout run once,
    then switched off) so the measured positions stay true. Returns the annotations."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    renderer, pad = fig.canvas.get_renderer(), 3.5 * fig.dpi / 72
    markers = [(x - pad, y - pad, x + pad, y + pad) for x, y in ax.transData.transform(markers_at)]
    frame, placed, out = tuple(ax.get_window_extent(renderer).extents), [], []
    for text, point, colour in items:
        r, offset, ha, va, box = _best_offset(ax, text, point, placed + markers, frame, renderer)
        arrow = {"arrowstyle": "-", "color": colour, "lw": 0.6, "shrinkA": 0, "shrinkB": 3} if r >= 16 else None
        out.append(ax.annotate(text, point, xytext=offset, textcoords="offset points", fontsize=7, color=colour,
                               ha=ha, va=va, arrowprops=arrow, gid=gid))
        placed.append(box)
    return out


def _number_points(fig: Figure, ax, points: list[tuple[float, float]], colours: list) -> list:
    """Each point's number beside it (:func:`_place_labels`); points drawn on top of each other
    (:func:`_coinciding`) share one label ("3–5,9"). Returns the annotations."""
    fig.draw_without_rendering()
    centres = [tuple(c) for c in ax.transData.transform(points)]
    items = []
    for members in _coinciding(centres, 3.5 * fig.dpi / 72):
        colour = colours[members[0]] if len({tuple(colours[i]) for i in members}) == 1 else "black"
        items.append((number_text([i + 1 for i in members]), points[members[0]], colour))
    return _place_labels(fig, ax, items, points, "kernel-numbers")


def _breakdown_shares(records: list[dict]) -> dict[str, float]:
    if all(isinstance(r.get("share"), (int, float)) for r in records):
        shares = {r["op_class"]: float(r["share"]) for r in records}
    else:
        times = {r["op_class"]: r.get("time_s") for r in records}
        if not all(isinstance(t, (int, float)) and t >= 0 for t in times.values()) or sum(times.values()) <= 0:
            raise CostError("breakdown records need a share or a non-negative time_s per op_class")
        shares = {c: t / sum(times.values()) for c, t in times.items()}
    if any(s < 0 for s in shares.values()):
        raise CostError(f"breakdown shares must be >= 0, got {shares}")
    return shares


def _breakdown_groups(records: list[dict]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if "op_class" not in r:
            raise CostError("a breakdown record has no 'op_class'")
        label = r.get("label") or f"{r.get('model', '?')} B={r.get('batch_size', '?')} ctx={_context(r)}"
        groups[str(label)].append(r)
    return {label: _breakdown_shares(rs) for label, rs in groups.items()}


# One colour per op class, the same in every report (tab20 indices): the rows of
# profiler.breakdown.ROWS, then the coarse what-if classes; a row of the same stack never shares a colour.
# The stack follows this order; a class not listed takes a spare colour, in name order.
CLASS_COLOURS: dict[str, int] = {
    "matmul.qkv_proj": 0, "matmul.o_proj": 2, "matmul.gate_up_proj": 4, "matmul.down_proj": 6, "matmul.lm_head": 8,
    "attention.decode": 10, "attention.kv_write": 12, "norm": 16, "rope": 18, "activation": 1, "sampling": 3,
    "embed": 5, "other": 14, "matmul": 7, "attention": 11}
_SPARE_COLOURS = [i for i in range(20) if i not in CLASS_COLOURS.values()]


def class_colours(classes: Iterable[str]) -> dict[str, tuple]:
    """Op class -> RGB colour, in stacking order (:data:`CLASS_COLOURS` first, other classes by name,
    each taking a spare tab20 colour, then tab20b's, so no two classes of one plot share a colour)."""
    tab20, tab20b = colormaps["tab20"].colors, colormaps["tab20b"].colors
    known = [c for c in CLASS_COLOURS if c in set(classes)]
    others = sorted(set(classes) - set(CLASS_COLOURS))
    spare = [tab20[i] for i in _SPARE_COLOURS] + list(tab20b)
    if len(others) > len(spare):
        raise CostError(f"{len(known) + len(others)} op classes in one breakdown: more than the plot has colours")
    return {**{c: tab20[CLASS_COLOURS[c]] for c in known}, **dict(zip(others, spare))}


def plot_breakdown(records: list[dict]) -> tuple[Figure | None, str | None]:
    """One horizontal bar per profiled configuration, stacked by op-class share of step time; each class
    keeps its colour (:func:`class_colours`), the legend sits under the bars."""
    if not records:
        return None, "breakdown plot skipped: no breakdown records (kind = \"breakdown\") in the results"
    groups = _breakdown_groups(records)
    colours = class_colours({c for shares in groups.values() for c in shares})
    ncols = min(5, len(colours))
    legend_rows = -(-len(colours) // ncols)
    fig = Figure(figsize=(9, 1.5 + 0.5 * len(groups) + 0.25 * legend_rows), layout="constrained")
    ax = fig.add_subplot()
    labels = list(groups)
    left = [0.0] * len(labels)
    for c, colour in colours.items():
        widths = [groups[g].get(c, 0.0) * 100 for g in labels]
        bars = ax.barh(labels, widths, left=left, label=c, color=colour)
        ax.bar_label(bars, labels=[f"{w:.0f}%" if w >= 5 else "" for w in widths], label_type="center", fontsize=7)
        left = [a + w for a, w in zip(left, widths)]
    ax.set(xlabel="share of decode-step time (%)", title="Where the decode step time goes", xlim=(0, max(100, *left)))
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=ncols, fontsize=7)
    return fig, None


# ----------------------------------------------------------------------------------------------
# Summary and orchestration


def _fmt(value: Any, scale: float = 1.0, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return f"{value * scale:.{digits}g}"


def _floor_multiple(p: dict) -> str:
    try:
        return _fmt(cost_vs_floor(p["usd_per_hour"], p[THROUGHPUT_KEY], p["roofline_output_tok_per_s"])["multiple_of_floor"], digits=3)
    except (KeyError, TypeError, CostError):
        return "n/a"


def _interval(ci: Any) -> str:
    return f"{_fmt(ci[0])}–{_fmt(ci[1])}" if isinstance(ci, (list, tuple)) and len(ci) == 2 else "n/a"


def _bandwidth_cell(p: dict) -> str:
    """The point's bandwidth in GB/s, with its range when its repeats were measured against different ones."""
    bw, (low, high) = p.get("bandwidth_bytes_per_s"), p.get("bandwidth_range_bytes_per_s") or (None, None)
    text = _fmt(bw, 1e-9, 3)
    return text + (f" ({_fmt(low, 1e-9, 3)}–{_fmt(high, 1e-9, 3)})" if low is not None and high > low else "")


def _points_table(points: list[dict]) -> list[str]:
    header = ("| series | batch | context | repeats | $/hour | TTFT (ms) | TPOT (ms) | output tok/s | tok/s per seq "
              "| MBU (%) | bandwidth (GB/s) | bandwidth source | $/Mtok output | 95% CI $/Mtok output | $/Mtok input "
              "| × roofline floor |")
    lines = [header, "|" + "---|" * 16]
    for name, series in _series(points).items():
        for p in sorted(series, key=lambda p: (p.get("batch_size") or 0, _context(p) or 0,
                                               _numeric_first(p.get("usd_per_hour")))):
            lines.append(
                f"| {name} | {p.get('batch_size', 'n/a')} | {_context(p)} | {p.get('n_repeats', 1)} "
                f"| {_fmt(p.get('usd_per_hour'))} "
                f"| {_fmt(p.get('ttft_s'), 1e3)} | {_fmt(p.get('tpot_s'), 1e3)} | {_fmt(p.get(THROUGHPUT_KEY))} "
                f"| {_fmt(p.get(INTERACTIVITY_KEY))} | {_fmt(p.get('mbu'), 100, 3)} "
                f"| {_bandwidth_cell(p)} | {p.get('bandwidth_source_kind', 'n/a')} "
                f"| {_fmt(p.get('usd_per_mtok_output'))} | {_interval(p.get('usd_per_mtok_output_ci95'))} "
                f"| {_fmt(p.get('usd_per_mtok_input'))} | {_floor_multiple(p)} |")
    return lines


# Points (or repeats of one point) measured against bandwidths further apart than this, (max - min) / min,
# have MBU and roofline-floor multiples that cannot be compared (each is relative to its own bandwidth).
BANDWIDTH_SPREAD = 0.10


def _point_name(p: dict, multi_series: bool) -> str:
    name = f"B={p.get('batch_size')} ctx={p.get('context_len')}"
    return (" / ".join("?" if v is None else str(v) for v in _series_values(p)) + " " + name) if multi_series else name


def warning_notes(points: list[dict]) -> list[str]:
    """Per point, its repeat-spread warnings and then the warnings its records carry (each once per
    point, :func:`aggregate_repeats`); a record warning every point carries word for word is said once,
    for all of them, at the end."""
    multi = len(_series(points)) > 1
    first = points[0].get("record_warnings", []) if len(points) > 1 else []
    shared = [w for w in first if all(w in p.get("record_warnings", []) for p in points)]
    notes = [f"{_point_name(p, multi)}: {w}" for p in points
             for w in p.get("repeat_warnings", []) + [w for w in p.get("record_warnings", []) if w not in shared]]
    return notes + [f"all {len(points)} points: {w}" for w in shared]


def _gb(value: float) -> str:
    return f"{value / 1e9:.3g} GB/s"


def bandwidth_notes(points: list[dict]) -> list[str]:
    """A note for each device whose points were measured against bandwidths more than
    :data:`BANDWIDTH_SPREAD` apart, and for each point whose repeats were: MBU and × roofline floor
    are then relative to different bandwidths and not comparable across those rows (or runs)."""
    notes, multi = [], len(_series(points)) > 1
    devices: dict[Any, list[float]] = defaultdict(list)
    for p in points:
        if _is_number(p.get("bandwidth_bytes_per_s")):
            devices[p.get("device_name")].append(p["bandwidth_bytes_per_s"])
    for device, bws in devices.items():
        if max(bws) > (1 + BANDWIDTH_SPREAD) * min(bws):
            notes.append(f"{device or 'device'}: the points' bandwidths range from {_gb(min(bws))} to {_gb(max(bws))} "
                         f"({max(bws) / min(bws) - 1:.0%} apart, measured per run): their MBU and × roofline floor "
                         "are each relative to their own bandwidth and not comparable across them; compare tok/s "
                         "and $/Mtok, or measure the points in one sweep")
    for p in points:
        low, high = p.get("bandwidth_range_bytes_per_s") or (None, None)
        if low is not None and high > (1 + BANDWIDTH_SPREAD) * low:
            notes.append(f"{_point_name(p, multi)}: its {p.get('n_repeats')} repeats were measured against "
                         f"bandwidths from {_gb(low)} to {_gb(high)} ({high / low - 1:.0%} apart): the pooled MBU "
                         "and × roofline floor mix them and are not comparable to single runs")
    return notes


def _summary_markdown(points: list[dict], skipped: list[dict], plots: dict[str, Path | None], notes: list[str]) -> str:
    lines = ["# tokencost report", "",
             f"{len(points)} measured point(s), {len(skipped)} skipped. TPOT is the median decode step; "
             "output tok/s = batch / TPOT; tok/s per sequence = 1 / TPOT; over repeats, TTFT and TPOT are "
             "medians (the mean of the middle two for an even count) and tok/s, MBU and $/Mtok are derived "
             "from them, so each row is consistent; runs at different prices are separate rows; "
             "95% CI $/Mtok output: the Student-t interval of the mean tok/s "
             "over repeats carried into dollars (n/a for one repeat). "
             "× roofline floor = measured $/Mtok ÷ $/Mtok at the roofline throughput. MBU and the roofline "
             "floor are relative to the bandwidth column (median over repeats, their range in brackets when they "
             "differ): datasheet, or measured (a read-bandwidth measurement, per run on a CPU).", ""]
    prices = sorted({(p["usd_per_hour"], p.get("price_source") or "source not recorded") for p in points
                     if isinstance(p.get("usd_per_hour"), (int, float))})
    lines += [f"Price: ${hourly:.4g} per hour ({source})." for hourly, source in prices] or [
        "No price in these results: the $/Mtok columns are n/a."]
    lines.append("")
    if points:
        lines += ["## Points", ""] + _points_table(points) + [""]
    for r in skipped:
        lines.append(f"- skipped: B={r.get('batch_size')} ctx={_context(r)}: {r.get('skip_reason', 'no reason recorded')}")
    lines += ["", "## Plots", ""]
    for name, path in plots.items():
        if path is not None:
            lines += [f"### {name}", "", f"![{name}]({path.name})", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def write_report(records: list[dict], out_dir: str | Path) -> Report:
    """Render every plot that has data into ``out_dir`` and write ``summary.md`` embedding them.

    Raises CostError when there are no records, or a record has an unknown kind or lacks a field the
    report needs (:func:`record_problem`).
    """
    if not records:
        raise CostError("the results file has no records")
    for i, record in enumerate(records, 1):
        if (problem := record_problem(record)) is not None:
            raise CostError(f"record {i}: {problem}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [r for r in records if _kind(r) == "run"]
    points = aggregate_repeats(runs)
    inputs = {"frontier": (plot_frontier, points), "batch": (plot_vs_batch, points),
              "context": (plot_vs_context, points),
              "roofline": (plot_roofline, [r for r in records if _kind(r) == "kernel"]),
              "breakdown": (plot_breakdown, [r for r in records if _kind(r) == "breakdown"])}
    plots: dict[str, Path | None] = {}
    notes: list[str] = []
    for name, (fn, data) in inputs.items():
        fig, note = fn(data)
        plots[name] = None if fig is None else out / PLOT_FILES[name]
        if note:
            notes.append(note)
        if fig is not None:
            fig.savefig(plots[name], dpi=120, bbox_inches="tight")  # nothing cut at the edges
    notes += warning_notes(points) + bandwidth_notes(points)
    skipped = [r for r in runs if r.get("status") == "skipped"]
    summary = out / "summary.md"
    summary.write_text(_summary_markdown(points, skipped, plots, notes), encoding="utf-8")
    return Report(plots, notes, summary)
