"""PNG plots and a Markdown summary from a results file's records (``tokencost report``).

Input: the records of a JSONL results file (profiler/results.py documents the schema), mixed kinds:
``run`` (measured decode points), ``kernel`` (kernel benchmarks) and ``breakdown`` (op-class shares of
a decode step). Output files in the chosen folder:

- ``frontier.png``: throughput per device against interactivity (tok/s per sequence), the Pareto
  frontier of each model/device/dtype/backend series at each context length, annotated with $/Mtok
  output.
- ``batch.png`` / ``context.png``: output tok/s and MBU against batch size / context length.
- ``roofline.png``: kernels' arithmetic intensity (FLOP/byte) against achieved FLOP/s under the device
  ceilings min(peak FLOP/s, intensity × peak bandwidth) (Williams, Waterman & Patterson, "Roofline",
  CACM 2009; metrics.md section 3.2).
- ``breakdown.png``: share of decode-step time per op class.
- ``summary.md``: a table of the points and the images; a plot without data is skipped with a note.

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
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from matplotlib.figure import Figure

from tokencost.errors import CostError
from tokencost.frontier import INTERACTIVITY_KEY, THROUGHPUT_KEY, cost_vs_floor, pareto_frontier
from tokencost.sweep_summary import PRICE_KEYS, pool_repeats

PLOT_FILES: dict[str, str] = {
    "frontier": "frontier.png",
    "batch": "batch.png",
    "context": "context.png",
    "roofline": "roofline.png",
    "breakdown": "breakdown.png",
}
_SERIES_KEYS = ("model", "device_name", "dtype", "backend")


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
_PER_RUN_KEYS = ("tpot_p90_s", "tpot_p99_s", "tpot_mean_s", "step_times_s", "decode_wall_s", "mfu",
                 "request_usd", "request_usd_per_mtok_input", "request_usd_per_mtok_output",
                 "request_usd_per_mtok_blended", "usd_per_mtok_electricity", "gpu_energy_j",
                 "gpu_energy_per_output_token_j", "gpu_avg_power_w", "effective", "breakeven", "timestamp")


def aggregate_repeats(runs: Iterable[dict]) -> list[dict]:
    """One dict per point: the first repeat's settings, updated with the pooled figures of all its
    repeats (:func:`tokencost.sweep_summary.pool_repeats`; its warnings as ``repeat_warnings``) and
    ``n_repeats`` (``context_len`` falls back to ``prompt_len``); per-run figures that are not pooled
    (tail TPOT, MFU, energy, request costs) are left out of a point with several repeats. Records with
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
        points.append(point)
    return points


def _series(points: list[dict]) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = defaultdict(list)
    for p in points:
        by[" / ".join("?" if v is None else str(v) for v in _series_values(p))].append(p)
    return dict(by)


def _plottable(points: list[dict], *keys: str) -> list[dict]:
    return [p for p in points if all(isinstance(p.get(k), (int, float)) and p[k] > 0 for k in keys)]


# ----------------------------------------------------------------------------------------------
# Plots (each returns a Figure, or None with the reason when there is nothing to draw)


def _point_label(p: dict) -> str:
    usd, ci = p.get("usd_per_mtok_output"), p.get("usd_per_mtok_output_ci95")
    text = f"B={p.get('batch_size', '?')}" + (f"\n${usd:.3g}/Mtok" if isinstance(usd, (int, float)) else "")
    return text + (f" [{ci[0]:.3g}–{ci[1]:.3g}]" if ci else "")


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
    ax = fig.add_subplot()
    for name, series in _workloads(pts).items():
        front = pareto_frontier(series)
        line = ax.plot([p[INTERACTIVITY_KEY] for p in front], [p[THROUGHPUT_KEY] for p in front], "o-", label=name)
        ax.scatter([p[INTERACTIVITY_KEY] for p in series], [p[THROUGHPUT_KEY] for p in series], alpha=0.35, s=18,
                   color=line[0].get_color())
        _error_bars(ax, series, line[0].get_color())
        for p in front:
            ax.annotate(_point_label(p), (p[INTERACTIVITY_KEY], p[THROUGHPUT_KEY]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points", color=line[0].get_color())
    ax.set(xlabel="interactivity: output tok/s per sequence (1 / TPOT)", ylabel="output tok/s per device",
           title="Throughput-interactivity frontier\n$/Mtok output [95% interval] on frontier points; "
                 "error bars: 95% interval of tok/s over repeats")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(0.12)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
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


def _ceilings(kernels: list[dict]) -> tuple[float | None, float]:
    """(peak FLOP/s or None when the device's compute peak is unknown, e.g. a CPU; peak bytes/s)."""
    peaks = {(k.get("peak_flop_per_s"), k.get("peak_bandwidth_bytes_per_s")) for k in kernels}
    if len(peaks) != 1:
        raise CostError(f"kernel records mix device ceilings {sorted(map(str, peaks))}; report one device at a time")
    flops, bw = peaks.pop()
    if not (isinstance(bw, (int, float)) and bw > 0):
        raise CostError("kernel records need a positive peak_bandwidth_bytes_per_s")
    if flops is not None and not (isinstance(flops, (int, float)) and flops > 0):
        raise CostError("peak_flop_per_s must be positive or null (unknown)")
    return (float(flops) if flops is not None else None), float(bw)


def _above_roof(pts: list, peak_flops: float, peak_bw: float) -> str | None:
    """Kernels above min(peak, AI × bandwidth): their FLOP/byte counts or the peaks are wrong
    (metrics.md section 3.1 counter-check), or a warm cache beat HBM bandwidth."""
    above = [label for (ai, achieved), label in pts if achieved > 1.01 * min(peak_flops, ai * peak_bw)]
    if not above:
        return None
    return (f"roofline: {', '.join(above)} above the device ceiling; check the FLOP and byte counts, "
            "the peak figures, or cache effects")


def plot_roofline(kernels: list[dict]) -> tuple[Figure | None, str | None]:
    """Arithmetic intensity vs achieved FLOP/s per kernel, under min(peak FLOP/s, AI × bandwidth).

    The note is set when a kernel lies above the ceiling."""
    if not kernels:
        return None, "roofline plot skipped: no kernel records (kind = \"kernel\") in the results"
    peak_flops, peak_bw = _ceilings(kernels)
    pts = [(_kernel_point(k), f"{k.get('op', '?')}/{k.get('backend', '?')}") for k in kernels]
    ridge = peak_flops / peak_bw if peak_flops is not None else None
    xs = [ai for (ai, _), _ in pts] + ([ridge] if ridge else [])
    x_grid = [min(xs) / 4 * (max(xs) * 16 / min(xs)) ** (i / 200) for i in range(201)]
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    roof = peak_flops if peak_flops is not None else float("inf")
    ax.plot(x_grid, [min(roof, x * peak_bw) for x in x_grid], "k-", lw=1.5,
            label="device ceilings" if ridge else "bandwidth ceiling (compute peak unknown)")
    if ridge:
        ax.axvline(ridge, color="grey", ls=":", lw=1, label=f"ridge {ridge:.3g} FLOP/byte")
    for (ai, achieved), label in pts:
        ax.scatter([ai], [achieved], s=30, zorder=3)
        ax.annotate(label, (ai, achieved), fontsize=7, xytext=(4, -10), textcoords="offset points")
    peak_text = f"peak {peak_flops:.3g} FLOP/s" if peak_flops is not None else "compute peak unknown"
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP/byte)", ylabel="achieved FLOP/s",
           title=f"Kernel roofline ({peak_text}, {peak_bw:.3g} B/s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return fig, _above_roof(pts, roof, peak_bw)


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


def plot_breakdown(records: list[dict]) -> tuple[Figure | None, str | None]:
    """One horizontal bar per profiled configuration, stacked by op-class share of step time."""
    if not records:
        return None, "breakdown plot skipped: no breakdown records (kind = \"breakdown\") in the results"
    groups = _breakdown_groups(records)
    classes = sorted({c for shares in groups.values() for c in shares})
    fig = Figure(figsize=(9, 1.6 + 0.6 * len(groups)), layout="constrained")
    ax = fig.add_subplot()
    labels = list(groups)
    left = [0.0] * len(labels)
    for c in classes:
        widths = [groups[g].get(c, 0.0) * 100 for g in labels]
        bars = ax.barh(labels, widths, left=left, label=c)
        ax.bar_label(bars, labels=[f"{w:.0f}%" if w >= 5 else "" for w in widths], label_type="center", fontsize=7)
        left = [a + w for a, w in zip(left, widths)]
    ax.set(xlabel="share of decode-step time (%)", title="Where the decode step time goes", xlim=(0, max(100, *left)))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
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


def _points_table(points: list[dict]) -> list[str]:
    header = ("| series | batch | context | repeats | $/hour | TTFT (ms) | TPOT (ms) | output tok/s | tok/s per seq "
              "| MBU (%) | $/Mtok output | 95% CI $/Mtok output | $/Mtok input | × roofline floor |")
    lines = [header, "|" + "---|" * 14]
    for name, series in _series(points).items():
        for p in sorted(series, key=lambda p: (p.get("batch_size") or 0, _context(p) or 0,
                                               _numeric_first(p.get("usd_per_hour")))):
            lines.append(
                f"| {name} | {p.get('batch_size', 'n/a')} | {_context(p)} | {p.get('n_repeats', 1)} "
                f"| {_fmt(p.get('usd_per_hour'))} "
                f"| {_fmt(p.get('ttft_s'), 1e3)} | {_fmt(p.get('tpot_s'), 1e3)} | {_fmt(p.get(THROUGHPUT_KEY))} "
                f"| {_fmt(p.get(INTERACTIVITY_KEY))} | {_fmt(p.get('mbu'), 100, 3)} "
                f"| {_fmt(p.get('usd_per_mtok_output'))} | {_interval(p.get('usd_per_mtok_output_ci95'))} "
                f"| {_fmt(p.get('usd_per_mtok_input'))} | {_floor_multiple(p)} |")
    return lines


def _summary_markdown(points: list[dict], skipped: list[dict], plots: dict[str, Path | None], notes: list[str]) -> str:
    lines = ["# tokencost report", "",
             f"{len(points)} measured point(s), {len(skipped)} skipped. TPOT is the median decode step; "
             "output tok/s = batch / TPOT; tok/s per sequence = 1 / TPOT; over repeats, TTFT and TPOT are "
             "medians (the mean of the middle two for an even count) and tok/s, MBU and $/Mtok are derived "
             "from them, so each row is consistent; runs at different prices are separate rows; "
             "95% CI $/Mtok output: the Student-t interval of the mean tok/s "
             "over repeats carried into dollars (n/a for one repeat). "
             "× roofline floor = measured $/Mtok ÷ $/Mtok at the roofline throughput.", ""]
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
            fig.savefig(plots[name], dpi=120)
    notes += [f"B={p.get('batch_size')} ctx={p.get('context_len')}: {w}" for p in points for w in p["repeat_warnings"]]
    skipped = [r for r in runs if r.get("status") == "skipped"]
    summary = out / "summary.md"
    summary.write_text(_summary_markdown(points, skipped, plots, notes), encoding="utf-8")
    return Report(plots, notes, summary)
