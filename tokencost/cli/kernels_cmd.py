"""``tokencost kernels``: time every hot op at a model's prefill and decode shapes, against the roofline.

Per op and backend: median latency with the p20–p80 spread, FLOP, bytes moved, achieved TFLOP/s and
GB/s, % of the device's compute and bandwidth peaks and of the roofline, and the speed-up over torch
(:mod:`profiler.kernel_bench`). Ceilings: on a GPU the catalog's datasheet peaks (an unknown GPU or
a precision without a catalog peak is reported as unknown); on a CPU the measured read bandwidth (sum
of a buffer) and an unknown compute peak. ``--calibrate`` adds the measured copy bandwidth and matmul
rate (:mod:`profiler.calibrate`) as a second set of percentages ("meas.").

Output: one rich table per phase, then a plain-words line per ceiling (which bandwidth and which
compute rate each "%" column divides by) and the rows' notes; optional JSON/CSV, ``kind = "kernel"``
records appended to ``--out``, and one JSON object as the last stdout line. The default table fits
100 columns (op, shape, backend, median, spread, GB/s, % BW, % roof, × torch; numbers are never cut,
only op and shape fold); ``--wide`` adds p20–p80, FLOP, bytes, FLOP/s and every ceiling's %. The
JSON/CSV always hold every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import math
import re
import sys
from typing import Callable

from tokencost.cli.common import int_list, positive_int, print_json_line, seed_int, write_json
from tokencost.cli.plugins import add_plugin_arg, load_plugins

DEFAULT_BACKENDS = ("torch", "triton")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("kernels", help="time each op at a model's prefill/decode shapes against the roofline",
                       description="Time linear (qkv, o, gate_up, down, lm_head), attention (prefill, decode), "
                                   "rmsnorm, rope and swiglu at the shapes of one prefill of batch x context "
                                   "tokens and one decode step at that context, per backend.")
    p.add_argument("--model", default=None, help="preset name (default smollm2-135m; see `tokencost models`)")
    p.add_argument("--config", metavar="PATH", help="a Hugging Face config.json instead of a preset")
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16")
    p.add_argument("--batch-size", type=positive_int, default=1, help="sequences (default 1)")
    p.add_argument("--context", type=positive_int, default=512,
                   help="prefill length and decode KV length in tokens (default 512)")
    p.add_argument("--backend", action="append", default=None, metavar="NAME",
                   help="backend to time (repeatable; default torch and triton on a CUDA GPU, torch on a CPU, "
                        "where triton rows are skipped: the interpreter is not a timing target)")
    p.add_argument("--phase", choices=("all", "prefill", "decode"), default="all", help="shapes to time (default all)")
    p.add_argument("--matmul-square", type=int_list, default=[], metavar="N[,N...]",
                   help="also time linear at M = N = K = each size, e.g. 4096,8192")
    p.add_argument("--calibrate", action="store_true",
                   help="measure the device's copy bandwidth and matmul rate and report against them too")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the random inputs")
    p.add_argument("--wide", action="store_true",
                   help="table with every column: p20–p80, FLOP, bytes, FLOP/s and %% of each ceiling, measured "
                        "ones included (the default fits 100 columns; --json/--csv always hold every figure)")
    add_plugin_arg(p)
    p.add_argument("--json", metavar="PATH", help="also write the summary and rows to PATH")
    p.add_argument("--csv", metavar="PATH", help="also write one row per (op, backend) to PATH (pandas)")
    p.add_argument("--out", metavar="RESULTS.jsonl", help="append kind=\"kernel\" records to a results file")
    return p


def _plan(args: argparse.Namespace):
    """Every check that needs no timing: (cfg, cases, device, dtype, backends)."""
    from profiler.backends import resolve
    import torch

    from profiler.kernel_bench import PHASES, check_cases_fit, model_cases, square_matmul_cases
    from profiler.presets import resolve_model
    from profiler.runner import resolve_device, resolve_dtype

    load_plugins(args.plugin)
    cfg = resolve_model(args.model, args.config)
    if args.context > cfg.max_position_embeddings:
        raise ValueError(f"--context {args.context} exceeds {cfg.name}'s max_position_embeddings "
                         f"({cfg.max_position_embeddings})")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    # Default: torch and triton on a GPU, torch alone elsewhere (the triton kernels are never timed on a
    # CPU; asking for them there gives rows marked skipped, with the reason).
    default = DEFAULT_BACKENDS if device.type == "cuda" else ("torch",)
    backends = list(dict.fromkeys(args.backend or default))
    from profiler.kernel_bench import backend_skip_reason
    from profiler.variant_check import check_variants

    skips = {name: backend_skip_reason(name, device) for name in backends}
    if all(skips.values()):
        raise ValueError(f"nothing to time: {'; '.join(f'{b}: {r}' for b, r in skips.items())}")
    for name in backends:
        if not skips[name]:  # triton off a GPU is skipped, not resolved
            check_variants(resolve(name), cfg, device, dtype)  # a user's broken variant: one line, now
    phases = PHASES if args.phase == "all" else (args.phase,)
    cases = model_cases(cfg, args.batch_size, args.context, phases) + square_matmul_cases(args.matmul_square)
    check_cases_fit(cases, torch.tensor([], dtype=dtype).element_size(), device.type)
    return cfg, cases, device, dtype, backends


def reference_peaks(device, dtype):
    """Datasheet ceilings of a catalogued GPU, the measured read bandwidth elsewhere
    (:func:`tokencost.cli.measure_hook.device_peaks`)."""
    from tokencost.cli.measure_hook import device_peaks

    return device_peaks(device, dtype)


def measured_peaks(device, dtype):
    """(Peaks, calibration dict) from :func:`profiler.calibrate.calibrate`."""
    from profiler.calibrate import calibrate
    from profiler.kernel_bench import Peaks

    cal = calibrate(device, dtype)
    peaks = Peaks(cal.matmul_flop_per_s, f"measured: {cal.matmul_method}",
                  cal.copy_bandwidth_bytes_per_s, f"measured: {cal.copy_method}")
    return peaks, cal.as_dict()


def _progress_bar():
    from tokencost.cli.measure_hook import progress_display

    return progress_display("kernels")


def _record_for_report(row: dict, meta: dict) -> dict:
    """The JSONL record: the row plus model/device and the sources of its ceilings. ``peak_*`` stay the
    reference ceilings the row's percentages were computed with (null where unknown); a ``--calibrate``
    rate stays in ``measured_peak_*``."""
    return {**row, **{k: meta[k] for k in ("model", "device", "device_name", "batch_size", "context", "timestamp")},
            "peak_flop_source": meta["peaks"]["flop_source"], "peak_bandwidth_source": meta["peaks"]["bandwidth_source"]}


def _meta(cfg, device, dtype, args, backends, peaks, calibration) -> dict:
    from profiler.env import collect_env

    env = collect_env(device)
    return {"command": "kernels", "model": cfg.name, "device": str(device),
            "device_name": env.get("device_name", "unknown"), "dtype": str(dtype).removeprefix("torch."),
            "batch_size": args.batch_size, "context": args.context, "backends": backends,
            "plugins": list(args.plugin), "peaks": dataclasses.asdict(peaks), "calibration": calibration,
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "env": env}


def run(args: argparse.Namespace) -> int:
    from profiler.contention import ContentionProbe, contention_warnings
    from profiler.kernel_bench import BenchSettings, run_cases
    from profiler.results import append_result

    cfg, cases, device, dtype, backends = _plan(args)
    print(f"timing {len(cases)} op shapes of {cfg.name} on {device} ({str(dtype).removeprefix('torch.')}, "
          f"batch {args.batch_size}, context {args.context}, backends {', '.join(backends)})", file=sys.stderr)
    peaks = reference_peaks(device, dtype)
    measured, calibration = measured_peaks(device, dtype) if args.calibrate else (None, None)
    meta = _meta(cfg, device, dtype, args, backends, peaks, calibration)
    settings = BenchSettings(cfg, device, dtype, backends, peaks, measured, seed=args.seed)

    def on_row(row: dict) -> None:
        if args.out and row["status"] == "ok":
            append_result(args.out, _record_for_report(row, meta))

    if args.out and peaks.flop_per_s is None and measured is None:
        print("tokencost: warning: the kernel records get no compute ceiling (peak_flop_per_s null), which the "
              "roofline chart of `tokencost report` needs; add --calibrate to measure one", file=sys.stderr)
    with _progress_bar() as update, ContentionProbe() as probe:
        rows = run_cases(cases, settings, on_row=on_row, progress=update)
    c = probe.result
    summary = {**meta, "measured_peaks": dataclasses.asdict(measured) if measured else None,
               "cpu_others_cores": None if c is None else c.others_cores,
               "cpu_steal_fraction": None if c is None else c.steal_fraction,
               "warnings": contention_warnings(c, "the kernel timings"), "rows": rows}
    for warning in summary["warnings"]:
        print(f"tokencost: warning: {warning}", file=sys.stderr)
    print_kernel_table(summary, wide=args.wide)
    print_json_line(summary)  # first: a file that fails to write must not cost the measurements
    write_json(args.json, summary)
    if args.csv:
        _write_csv(args.csv, rows, meta)
    return 0


def _write_csv(path: str, rows: list[dict], meta: dict) -> None:
    """One line per (op, backend); nested dims flattened to ``dims.m`` etc., notes joined with "; "."""
    from pathlib import Path

    import pandas as pd

    flat = [{**{k: meta[k] for k in ("model", "device", "device_name", "batch_size", "context")}, **r,
             "notes": "; ".join(r.get("notes") or [])} for r in rows]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    pd.json_normalize(flat, sep=".").to_csv(target, index=False)


# ----------------------------------------------------------------------------------------------
# Table: a compact default that fits 100 columns; --wide adds p20–p80, FLOP, bytes, FLOP/s and every
# ceiling (the JSON/CSV always hold every figure).

_TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))


def _num(value: float, digits: int = 3, max_decimals: int = 6) -> str:
    """``digits`` significant digits (at most ``max_decimals`` decimals), no exponent; thousands
    separators from 10^(digits-1) up."""
    value = float(f"{value:.{digits}g}")  # round first: 0.0099996 -> 0.0100, not 0.01000
    if value == 0 or abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{min(max_decimals, digits - 1 - math.floor(math.log10(abs(value))))}f}"


def _si(value: float) -> str:
    """3 significant digits with an SI prefix: 2.88 k, 113 M, 13.2 T (wide columns span 10^3 to 10^15)."""
    from tokencost.units import si_prefixed

    return si_prefixed(value, _num)


def _time_parts(seconds: float) -> tuple[str, str]:
    """(3-digit number, unit): the largest of s, ms, µs, ns that keeps the rounded number >= 1."""
    rounded = float(f"{seconds:.3g}")
    scale, unit = next(((s, u) for s, u in _TIME_UNITS if rounded >= s), _TIME_UNITS[-1])
    return _num(rounded / scale), unit


def _time_text(seconds: float | None) -> str:
    return "n/a" if seconds is None else " ".join(_time_parts(seconds))


def _range_text(r: dict) -> str:
    """p20–p80 with the unit once when both ends share it: "97.1–105 µs", else "281 µs–1.10 ms"."""
    (a, ua), (b, ub) = _time_parts(r["p20_s"]), _time_parts(r["p80_s"])
    return f"{a}–{b} {ub}" if ua == ub else f"{a} {ua}–{b} {ub}"


def _spread_text(r: dict) -> str:
    """(p80 ÷ p20 − 1) in %, "* " before it when the timing is noisy
    (:func:`profiler.kernel_bench.is_noisy`)."""
    from profiler.kernel_bench import is_noisy

    text = _num(100 * (r["p80_s"] / r["p20_s"] - 1)) if r["p20_s"] > 0 else "n/a"
    return ("* " if is_noisy(r["p20_s"], r["p80_s"]) else "") + text  # on the left: digits stay aligned


def _pct_text(value: float | None) -> str:
    return "unknown" if value is None else _num(value, max_decimals=2)


def _speedup_text(r: dict) -> str:
    s = r.get("speedup_vs_torch")
    return "n/a" if s is None else _num(s)


@dataclasses.dataclass(frozen=True)
class _Column:
    """One table column: header (units in it, "\\n" splits it over two lines) and the text of an ok row."""

    header: str
    cell: Callable[[dict], str]
    left: bool = False  # names left-aligned, numbers right-aligned
    fold: bool = False  # op and shape may fold onto a second line; numbers keep their full width


def _bw_label(source: str) -> tuple[str, str]:
    """(header word, plain description) of a bandwidth ceiling, from the source text of its Peaks."""
    if source.startswith("datasheet"):
        return "spec", "the datasheet memory (HBM or GDDR) bandwidth"
    if "sum read" in source:
        return "read", "the read bandwidth measured on this device"
    if "copies" in source:
        return "copy", "the copy bandwidth measured on this device, read + write bytes"
    return "ceiling", "the bandwidth ceiling"


def _flop_label(source: str) -> tuple[str, str]:
    """(header word, plain description) of a compute ceiling, from the source text of its Peaks."""
    if source.startswith("datasheet"):
        return "spec", "the datasheet dense tensor peak"
    if source.startswith("measured"):
        return "matmul", "the torch.matmul rate measured on this device"
    return "unknown", "no compute ceiling"


def _source(text: str) -> str:
    """A ceiling's source without the "measured: " prefix its description already says, and without
    the timer details (they stay in the JSON)."""
    text = re.split(r", (?:profiler\.timing|triton\.testing)", text)[0]
    return text.removeprefix("measured: ")


_PCT_KEYS = ("compute_peak_pct", "bandwidth_peak_pct", "roofline_pct")


def _pct_header(summary: dict, key: str, measured: bool) -> str:
    """Two lines: what the % is of, then which ceiling ("% BW" over "spec", "read", "copy"; "% roof" over
    "spec" or "meas.")."""
    p = summary["measured_peaks" if measured else "peaks"]
    flop, bw = _flop_label(p["flop_source"])[0], _bw_label(p["bandwidth_source"])[0]
    if key == "compute_peak_pct":
        return f"% FLOP\n{flop}"
    if key == "bandwidth_peak_pct":
        return f"% BW\n{bw}"
    return "% roof\n" + ("meas." if measured else flop if flop == bw else "ref.")


def _pct_columns(summary: dict, wide: bool) -> list[_Column]:
    """The "% of a ceiling" columns that have a value. --wide: all of both ceilings. Default: % of the
    reference bandwidth and the roofline, the measured roofline standing in where the reference one is
    unknown (a CPU with --calibrate)."""
    calibrated = summary.get("measured_peaks") is not None
    pairs = [(k, m) for m in (False, True)[:1 + calibrated] for k in _PCT_KEYS]
    if not wide:
        roof = [("roofline_pct", m) for m in (False, True)[:1 + calibrated]]
        pairs = [("bandwidth_peak_pct", False)] + [p for p in roof if _known(summary, p)][:1]
    return [_pct_column(summary, k, m) for k, m in pairs if _known(summary, (k, m))]


def _pct_column(summary: dict, key: str, measured: bool) -> _Column:
    full = ("measured_" if measured else "") + key
    return _Column(_pct_header(summary, key, measured), lambda r: _pct_text(r[full]))


def _known(summary: dict, pair: tuple[str, bool]) -> bool:
    """Whether any timed row has the % for (key, measured): a column of unknowns is left out."""
    full = ("measured_" if pair[1] else "") + pair[0]
    return any(r.get(full) is not None for r in summary["rows"] if r["status"] == "ok")


def _columns(summary: dict, wide: bool) -> list[_Column]:
    """The table's columns. By default the backend column only when more than one backend is listed (the
    title names a single one), and × torch only when a non-torch backend was timed."""
    backends = {r["backend"] for r in summary["rows"]}
    cols = [_Column("op", lambda r: r["op"], left=True, fold=True),
            _Column("shape", lambda r: r["shape"], left=True, fold=True)]
    cols += [_Column("backend", lambda r: r["backend"], left=True)] if wide or len(backends) > 1 else []
    cols.append(_Column("median", lambda r: _time_text(r["median_s"])))
    cols += [_Column("p20–p80", _range_text)] if wide else []
    cols.append(_Column("spread\n%", _spread_text))
    if wide:
        cols += [_Column("FLOP", lambda r: _si(r["flop"])), _Column("bytes", lambda r: _si(r["bytes"])),
                 _Column("FLOP/s", lambda r: _si(r["achieved_flop_per_s"]))]
    cols.append(_Column("GB/s", lambda r: _num(r["achieved_bytes_per_s"] / 1e9)))
    cols += _pct_columns(summary, wide)
    if wide or any(r["backend"] != "torch" and r["status"] == "ok" for r in summary["rows"]):
        cols.append(_Column("×\ntorch", _speedup_text))
    return cols


def _row_cells(r: dict, cols: list[_Column], reasons: list[str]) -> list[str]:
    """An ok row's cells; a skipped or failed row gets its status and a numbered reason under "median"."""
    if r["status"] == "ok":
        return [c.cell(r) for c in cols]
    why = r.get("skip_reason") or r.get("error") or ""
    if why not in reasons:
        reasons.append(why)
    status = {"skipped": "skip", "failed": "fail"}.get(r["status"], r["status"])
    return [f"{status} [{reasons.index(why) + 1}]" if c.header == "median" else c.cell(r) if c.left else ""
            for c in cols]


def _title(summary: dict, phase: str) -> str:
    one = {r["backend"] for r in summary["rows"]}
    backend = f", backend {one.pop()}" if len(one) == 1 else ""
    return (f"{phase}: kernels of {summary['model']} on {summary['device_name']} ({summary['device']}, "
            f"{summary['dtype']}{backend}), batch {summary['batch_size']}, context {summary['context']}")


def kernel_table(summary: dict, phase: str, reasons: list[str], wide: bool = False):
    """Rich table of one phase: a line per (op, backend) with the median, its spread, GB/s, % of the
    ceilings and the torch speed-up (``wide``: p20–p80, FLOP, bytes, FLOP/s and every ceiling too).
    Numbers never wrap and are never cut (no_wrap, full width); only the op and shape names may fold
    onto a second line when the terminal is narrow. The reasons of skipped or failed rows are collected,
    numbered, into ``reasons``."""
    from rich import box
    from rich.table import Table

    cols = _columns(summary, wide)
    t = Table(title=_title(summary, phase), box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
              padding=(0, 1), collapse_padding=True)
    for c in cols:
        t.add_column(c.header, justify="left" if c.left else "right", vertical="bottom", no_wrap=not c.fold,
                     overflow="fold", min_width=8 if c.fold else None)
    for r in summary["rows"]:
        if r["phase"] == phase:
            t.add_row(*_row_cells(r, cols, reasons))
    return t


def _rate(value: float | None, scale: float, unit: str) -> str:
    return "unknown" if value is None else f"{_num(value / scale)} {unit}"


def _ceiling_lines(summary: dict, wide: bool) -> list[str]:
    """Plain-words footer: what each "%" column divides by, and where each ceiling comes from."""
    p, m = summary["peaks"], summary.get("measured_peaks")
    bw_word, bw_plain = _bw_label(p["bandwidth_source"])
    fl_word, fl_plain = _flop_label(p["flop_source"])
    lines = ["spread = p80 ÷ p20 − 1 over the timed calls; * marks a noisy timing (p80 > 2 × p20, "
             "see the notes).",
             f"% BW {bw_word} = GB/s ÷ {_rate(p['bandwidth_bytes_per_s'], 1e9, 'GB/s')}, {bw_plain} "
             f"({_source(p['bandwidth_source'])})."]
    if p["flop_per_s"] is not None:
        lines.append(f"% FLOP {fl_word} = FLOP/s ÷ {_rate(p['flop_per_s'], 1e12, 'TFLOP/s')}, {fl_plain} "
                     f"({_source(p['flop_source'])}); % roof {fl_word} = roofline time ÷ median, the "
                     "roofline time being max(FLOP ÷ that peak, bytes ÷ that bandwidth) "
                     "(Williams et al. 2009).")
    elif m:
        why = p["flop_source"].removeprefix("unknown: ").split(";")[0]
        lines.append(f"no reference compute ceiling ({why}): "
                     "the roofline % is against the measured ceilings below (% roof meas.).")
    else:
        why = p["flop_source"].removeprefix("unknown: ")
        lines.append(f"no compute ceiling ({why}), hence no % FLOP and no % roof.")
    return lines + ([_measured_line(m, wide)] if m else [])


def _measured_line(m: dict, wide: bool) -> str:
    """The --calibrate ceilings in plain words: which is the copy bandwidth, which the matmul rate."""
    bw, flop = _rate(m["bandwidth_bytes_per_s"], 1e9, "GB/s"), _rate(m["flop_per_s"], 1e12, "TFLOP/s")
    return (f"measured by --calibrate: % BW copy = GB/s ÷ {bw}, {_bw_label(m['bandwidth_source'])[1]} "
            f"({_source(m['bandwidth_source'])}); % FLOP matmul = FLOP/s ÷ {flop}, "
            f"{_flop_label(m['flop_source'])[1]} ({_source(m['flop_source'])}); % roof meas. = "
            "max(FLOP ÷ matmul rate, bytes ÷ copy bandwidth) ÷ median."
            + ("" if wide else " --wide shows all three."))


def _note_lines(rows: list[dict]) -> list[str]:
    """Each distinct note once, with the rows it applies to: "note (torch: decode linear.o, rope.qk): ..."."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        for note in r.get("notes") or ():
            groups.setdefault(note, []).append(r)
    lines = []
    for note, rs in groups.items():
        backends = list(dict.fromkeys(r["backend"] for r in rs))
        name = (lambda r: r["op"]) if len(backends) == 1 else (lambda r: f"{r['op']} ({r['backend']})")
        where = "; ".join(f"{ph} {', '.join(name(r) for r in rs if r['phase'] == ph)}"
                          for ph in dict.fromkeys(r["phase"] for r in rs))
        lines.append(f"note ({backends[0] + ': ' if len(backends) == 1 else ''}{where}): {note}")
    return lines


def _console():
    """rich Console on stdout: the terminal's width; a pipe or file gets $COLUMNS when set, else 200."""
    import os

    from tokencost.cli.render import Console

    console = Console()
    columns = os.environ.get("COLUMNS", "")
    if not sys.stdout.isatty() and columns.isdigit() and int(columns) > 0:
        console.width = int(columns)
    return console


def _print_uncut(console, table, warn: bool) -> bool:
    """Print ``table`` at the console's width, or at the width its numbers need when the console is
    narrower (the terminal then wraps those lines; rich would otherwise crop the right-hand columns).
    Returns whether it was too narrow; ``warn``: say so on stderr."""
    from rich.measure import Measurement

    need = Measurement.get(console, console.options.update_width(10_000), table).minimum
    width = console.width
    if need > width and warn:
        print(f"tokencost: warning: the kernel table needs {need} columns, the terminal has {width}; "
              "its lines wrap (widen the terminal, or read --json/--csv)", file=sys.stderr)
    console.width = max(need, width)
    try:
        console.print(table)
    finally:
        console.width = width
    return need > width


def print_kernel_table(summary: dict, wide: bool = False) -> None:
    """The tables (one per phase), the reasons of skipped rows, what each ceiling is, and the notes."""
    console = _console()
    reasons: list[str] = []
    narrow = False
    for phase in dict.fromkeys(r["phase"] for r in summary["rows"]):
        narrow = _print_uncut(console, kernel_table(summary, phase, reasons, wide), warn=not narrow) or narrow
    lines = [f"[{i}] {why}" for i, why in enumerate(reasons, 1)]
    for line in lines + _ceiling_lines(summary, wide) + _note_lines(summary["rows"]):
        console.print(line, highlight=False, markup=False)
