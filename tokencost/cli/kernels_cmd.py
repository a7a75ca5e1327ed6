"""``tokencost kernels``: time every hot op at a model's prefill and decode shapes, against the roofline.

Per op and backend: median latency with the p20–p80 spread, FLOP, bytes moved, achieved TFLOP/s and
GB/s, % of the device's compute and bandwidth peaks and of the roofline, and the speed-up over torch
(:mod:`profiler.kernel_bench`). Ceilings: on a GPU the catalog's datasheet peaks (an unknown GPU or
a precision without a catalog peak is reported as unknown); on a CPU the measured read bandwidth and
an unknown compute peak. ``--calibrate`` adds the measured copy bandwidth and matmul rate
(:mod:`profiler.calibrate`) as a second set of percentages. Output: a rich table, optional JSON/CSV,
``kind = "kernel"`` records appended to ``--out``, and one JSON object as the last stdout line.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import sys

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
    """The JSONL record: the row plus model/device, with ``peak_flop_per_s`` falling back to the measured
    rate where no datasheet peak exists (the report's roofline chart needs one ceiling per device)."""
    rec = {**row, **{k: meta[k] for k in ("model", "device", "device_name", "batch_size", "context", "timestamp")},
           "peak_flop_source": meta["peaks"]["flop_source"], "peak_bandwidth_source": meta["peaks"]["bandwidth_source"]}
    if rec.get("peak_flop_per_s") is None and rec.get("measured_peak_flop_per_s") is not None:
        rec["peak_flop_per_s"] = rec["measured_peak_flop_per_s"]
        rec["peak_flop_source"] = "measured (--calibrate)"
    return rec


def _meta(cfg, device, dtype, args, backends, peaks, calibration) -> dict:
    from profiler.env import collect_env

    env = collect_env(device)
    return {"command": "kernels", "model": cfg.name, "device": str(device),
            "device_name": env.get("device_name", "unknown"), "dtype": str(dtype).removeprefix("torch."),
            "batch_size": args.batch_size, "context": args.context, "backends": backends,
            "plugins": list(args.plugin), "peaks": dataclasses.asdict(peaks), "calibration": calibration,
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "env": env}


def run(args: argparse.Namespace) -> int:
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
    with _progress_bar() as update:
        rows = run_cases(cases, settings, on_row=on_row, progress=update)
    summary = {**meta, "measured_peaks": dataclasses.asdict(measured) if measured else None, "rows": rows}
    print_kernel_table(summary)
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
# Table


def _time_text(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e6:.3g} µs" if seconds < 1e-3 else f"{seconds * 1e3:.4g} ms"


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} %"


def _row_cells(r: dict, calibrated: bool, reasons: list[str]) -> list[str]:
    from tokencost.cli.render import _fmt

    head = [r["op"], r["shape"], r["backend"]]
    if r["status"] != "ok":
        why = r.get("skip_reason") or r.get("error") or ""
        if why not in reasons:
            reasons.append(why)
        return head + [f"{r['status']} [{reasons.index(why) + 1}]"] + [""] * (9 + 3 * calibrated)
    cells = head + [_time_text(r["median_s"]), f"{_time_text(r['p20_s'])} – {_time_text(r['p80_s'])}",
                    _fmt(r["flop"] / 1e9, "", 4), _fmt(r["bytes"] / 1e6, "", 4),
                    _fmt(r["achieved_flop_per_s"] / 1e12, "", 3), _fmt(r["achieved_bytes_per_s"] / 1e9, "", 4),
                    _pct(r["compute_peak_pct"]), _pct(r["bandwidth_peak_pct"]), _pct(r["roofline_pct"])]
    if calibrated:
        cells += [_pct(r["measured_compute_peak_pct"]), _pct(r["measured_bandwidth_peak_pct"]),
                  _pct(r["measured_roofline_pct"])]
    speedup = r.get("speedup_vs_torch")
    return cells + ["n/a" if speedup is None else f"{speedup:.3g}×"]


def kernel_table(summary: dict, phase: str, reasons: list[str]):
    """Rich table of one phase: a line per (op, backend) with timings, rates, % of each ceiling and the
    torch speed-up; the reasons of skipped or failed rows are collected, numbered, into ``reasons``."""
    from rich.table import Table

    calibrated = summary.get("measured_peaks") is not None
    t = Table(title=f"{phase}: kernels of {summary['model']} on {summary['device_name']} ({summary['device']}, "
                    f"{summary['dtype']}), batch {summary['batch_size']}, context {summary['context']}")
    cols = ["op", "shape", "backend", "median", "p20 – p80", "GFLOP", "MB", "TFLOP/s", "GB/s",
            "% FLOP/s peak", "% BW peak", "% roofline"]
    cols += ["% FLOP/s meas.", "% BW meas.", "% roofline meas."] if calibrated else []
    for name in cols + ["× torch"]:
        left = name in ("op", "shape", "backend")
        t.add_column(name, justify="left" if left else "right", no_wrap=True)
    for r in summary["rows"]:
        if r["phase"] == phase:
            t.add_row(*_row_cells(r, calibrated, reasons))
    return t


def _peak_lines(summary: dict) -> list[str]:
    def part(value: float | None, scale: float, unit: str, source: str) -> str:
        return source if value is None else f"{value / scale:.4g} {unit} ({source})"

    def line(label: str, p: dict) -> str:
        return (f"{label}: compute {part(p['flop_per_s'], 1e12, 'TFLOP/s', p['flop_source'])}; "
                f"bandwidth {part(p['bandwidth_bytes_per_s'], 1e9, 'GB/s', p['bandwidth_source'])}")

    lines = [line("peaks", summary["peaks"])]
    if summary.get("measured_peaks"):
        lines.append(line("measured peaks (--calibrate)", summary["measured_peaks"]))
    return lines


def print_kernel_table(summary: dict) -> None:
    """The table, the ceilings it is measured against, and the notes of any row."""
    from tokencost.cli.render import Console

    console = Console()
    if not sys.stdout.isatty():  # a file or pipe: room for every column without wrapping
        console.width = max(console.width, 240)
    reasons: list[str] = []
    for phase in dict.fromkeys(r["phase"] for r in summary["rows"]):
        console.print(kernel_table(summary, phase, reasons))
    for i, why in enumerate(reasons, 1):
        console.print(f"[{i}] {why}", highlight=False, markup=False)
    for line in _peak_lines(summary):
        console.print(line, highlight=False, markup=False)
    for r in summary["rows"]:
        for note in r.get("notes") or ():
            console.print(f"note ({r['phase']} {r['op']}, {r['backend']}): {note}", highlight=False, markup=False)
