"""``tokencost breakdown``: where a decode step's time goes, and what a faster op class would be worth.

Profiles decode steps at one batch and context (:mod:`profiler.breakdown`), attributes the measured
step time to op classes, and with ``--speedup CLASS=FACTOR`` (or ``CLASS=roofline``) recomputes the
step time by Amdahl's law (:mod:`tokencost.whatif`), then tok/s and $/Mtok, measured and what-if side
by side. Output: two rich tables, then one JSON line ``{"command": "breakdown", "summary": {...},
"records": [...]}`` whose records are ``kind="breakdown"`` rows (``op_class``, ``op_group``,
``time_s``, ``share``); ``--out`` appends those records to a results file for ``tokencost report``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys

from tokencost.cli.common import add_price_args, non_negative_int, positive_int, print_json_line, write_json
from tokencost.cli.run_cmd import add_model_args

OTHER_LABEL = "other / launch gaps"
SPEEDUP_HELP = ("what-if: run CLASS FACTOR times faster (FACTOR < 1: slower), or at its bandwidth bound with "
                "CLASS=roofline (matmul, attention); classes: matmul, attention, norm, rope, activation, "
                "sampling, embed, other, or one row such as matmul.lm_head (repeatable)")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("breakdown", help="profile decode steps: time per op class, and what-if speed-ups",
                       description="Profile decode steps with torch.profiler, attribute the step time to op "
                                   "classes, and price what a faster class would give (Amdahl).")
    add_model_args(p)
    p.add_argument("--context", type=positive_int, default=512,
                   help="KV positions each profiled decode step attends to (default 512)")
    p.add_argument("--gen-len", type=positive_int, default=16,
                   help="decode steps timed without the profiler, and as many profiled (default 16)")
    p.add_argument("--warmup-steps", type=non_negative_int, default=3, help="untimed decode steps first")
    p.add_argument("--speedup", action="append", default=[], metavar="CLASS=FACTOR", help=SPEEDUP_HELP)
    add_price_args(p)
    p.add_argument("--json", metavar="PATH", help="also write the summary and records to PATH")
    p.add_argument("--out", metavar="RESULTS.jsonl", help="append the breakdown records to a results file")
    return p


def _fail_fast(args: argparse.Namespace):
    """Check every option that needs no measurement; returns (speedups, spec, device, price)."""
    from profiler.backends import resolve
    from profiler.breakdown import ROOFLINE_CLASSES, ROWS
    from profiler.runner import resolve_device, resolve_dtype
    from tokencost.cli.pricing import resolve_price
    from tokencost.cli.run_cmd import spec_from_args
    from tokencost.whatif import check_names, check_roofline_classes, parse_speedups

    speedups = parse_speedups(args.speedup)
    check_names(speedups, ROWS)
    check_roofline_classes(speedups, ROOFLINE_CLASSES)
    spec = spec_from_args(args)
    if getattr(spec, "cuda_graph", False):
        raise ValueError("--cuda-graph is not supported by breakdown: it profiles eager decode steps, whose "
                         "labelled op regions do not exist inside a graph replay")
    if args.context > spec.cfg.max_position_embeddings:
        raise ValueError(f"--context {args.context} exceeds {spec.cfg.name}'s max_position_embeddings "
                         f"({spec.cfg.max_position_embeddings})")
    device = resolve_device(spec.device)
    resolve_dtype(spec.dtype, device)
    resolve(spec.backend, dict(spec.op_overrides))
    return speedups, spec, device, resolve_price(args, device_type=device.type, device=device)


def _measure(spec, context: int, device) -> tuple:
    from profiler.breakdown import breakdown_point, check_point
    from profiler.env import collect_env
    from profiler.runner import resolve_dtype
    from tokencost.cli.measure_hook import progress_display

    # Refuse a point that cannot fit before printing anything (the breakdown's cache holds `context`).
    check_point(spec, context, device, resolve_dtype(spec.dtype, device))
    env = collect_env(device)
    print(f"profiling {spec.cfg.name} on {device} (batch {spec.batch_size}, context {context}, "
          f"{spec.gen_len} steps, backend {spec.backend})", file=sys.stderr)
    with progress_display(spec.cfg.name) as update:
        update("profiling decode steps", 0, 1)
        bd, meta = breakdown_point(spec, context)
    return bd, meta, env


def _summary(spec, bd, meta: dict, env: dict, price: dict) -> dict:
    import torch

    from profiler.runner import cpu_load_warnings
    from profiler.timing import percentile
    from tokencost.cost import usd_per_mtok

    hourly, tok_per_s = price["usd_per_hour"], bd.batch_size / bd.step_s
    return {
        "model": spec.cfg.name, "device": meta["device"], "device_name": env.get("device_name", "unknown"),
        "dtype": meta["dtype"], "backend": spec.backend, "ops": meta["ops"],
        "weights": spec.weights_dir or f"dummy (seed {spec.seed})", "batch_size": bd.batch_size,
        "context_len": bd.context_len, "n_steps": bd.n_steps, "warmup_steps": spec.warmup_steps,
        "time_basis": bd.time_basis, "step_s": bd.step_s, "step_p90_s": percentile(bd.step_times_s, 90),
        "step_times_s": list(bd.step_times_s), "profiled_step_s": bd.profiled_step_s,
        "profiler_scale": bd.scale, "attributed_profiled_s": bd.attributed_profiled_s,
        "preempted_steps": bd.preempted_steps,
        "output_tok_per_s": tok_per_s, "output_tok_per_s_per_seq": 1.0 / bd.step_s, **price,
        "usd_per_mtok_output": usd_per_mtok(hourly, tok_per_s) if hourly else None,
        "row_times_s": dict(bd.row_times_s), "row_shares": bd.shares(), "class_times_s": bd.class_times_s(),
        "class_shares": {c: t / bd.step_s for c, t in bd.class_times_s().items()},
        "warnings": list(bd.warnings) + cpu_load_warnings(env, torch.device(meta["device"]))
        + ([price["price_warning"]] if price.get("price_warning") else []), "env": env,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _roofline_inputs(spec, meta: dict, context: int, device) -> dict:
    """Bytes per row, the device bandwidth, and each row's bandwidth-bound time."""
    from profiler.breakdown import row_bytes_per_step
    import torch

    from tokencost.cli.measure_hook import device_peaks

    peaks = device_peaks(device, getattr(torch, meta["dtype"]))
    bandwidth, source = peaks.bandwidth_bytes_per_s, peaks.bandwidth_source
    nbytes = row_bytes_per_step(spec.cfg, spec.batch_size, context, meta["elem_bytes"])
    return {"bandwidth_bytes_per_s": bandwidth, "bandwidth_source": source, "row_bytes_per_step": nbytes,
            "row_bound_s": {row: b / bandwidth for row, b in nbytes.items()}}


def _what_if(summary: dict, bd, speedups: dict, price: dict, spec, meta: dict, device):
    """The what-if of ``speedups`` (None without any); adds "whatif" (and "roofline") to ``summary``."""
    from tokencost.whatif import ROOFLINE, what_if

    summary["whatif"] = None
    if not speedups:
        return None
    bounds = None
    if ROOFLINE in speedups.values():
        summary["roofline"] = _roofline_inputs(spec, meta, bd.context_len, device)
        bounds = summary["roofline"]["row_bound_s"]
    wi = what_if(bd.row_times_s, bd.batch_size, speedups, usd_per_hour=price["usd_per_hour"],
                 roofline_s=bounds)
    summary["whatif"] = wi.as_dict()
    return wi


def run(args: argparse.Namespace) -> int:
    from profiler.results import append_result

    speedups, spec, device, price = _fail_fast(args)
    bd, meta, env = _measure(spec, args.context, device)
    summary = _summary(spec, bd, meta, env, price)
    wi = _what_if(summary, bd, speedups, price, spec, meta, device)
    for warning in summary["warnings"] + (list(wi.warnings) if wi else []):
        print(f"tokencost: warning: {warning}", file=sys.stderr)
    print_tables(summary, wi)
    common = {k: summary[k] for k in ("model", "device", "device_name", "dtype", "backend", "timestamp")}
    records = bd.records(**common)
    payload = {"command": "breakdown", "summary": summary, "records": records}
    print_json_line(payload)  # first: a file that fails to write must not cost the measurements
    for record in records if args.out else ():
        append_result(args.out, record)
    write_json(args.json, payload)
    return 0


# ----------------------------------------------------------------------------------------------
# Tables


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms"


def _pct(share: float) -> str:
    return f"{share * 100:.1f} %"


def _display_rows(row_times: dict) -> list[tuple[str, str, list[str]]]:
    """(label, speed-up key, rows) in display order: each class total, then its rows if it has parts."""
    from tokencost.whatif import OP_CLASSES, class_of

    out = []
    for c in OP_CLASSES:
        members = [r for r in row_times if class_of(r) == c]
        out.append((OTHER_LABEL if c == "other" else c, c, members))
        if members != [c]:
            out.extend((f"  └ {r.split('.', 1)[1]}", r, [r]) for r in members)
    return out


def _factor_text(wi, key: str) -> str:
    factor = wi.speedups.get(key)
    if factor is None:
        return ""
    if factor != "roofline":
        return f"×{factor:g}"
    old, new = (sum(t for r, t in times.items() if r == key or r.startswith(key + "."))
                for times in (wi.old_times_s, wi.new_times_s))
    return f"roofline (×{old / new:.3g})" if old > 0 and new > 0 else "roofline"


def _caption(s: dict) -> str:
    if s["time_basis"] == "cpu":
        how = (f"host time per region, median of {s['n_steps']} profiled steps, shares of the profiled step "
               f"({_ms(s['profiled_step_s'])}) applied to the unprofiled one ({_ms(s['step_s'])})")
    else:
        how = f"kernel time per region, median of {s['n_steps']} profiled steps"
    if s["preempted_steps"]:
        how += f"; {s['preempted_steps']} steps preempted by other processes left out"
    return how


def breakdown_table(s: dict, wi=None):
    """Rich table: time and share per class (projection rows indented), what-if columns if any."""
    from rich.table import Table

    t = Table(title=f"Where the decode step goes: {s['model']} on {s['device_name']} ({s['device']}, "
                    f"{s['dtype']}, backend {s['backend']}), batch {s['batch_size']}, "
                    f"context {s['context_len']}", caption=_caption(s))
    t.add_column("op class", no_wrap=True)
    for name in ("time / step", "share") + (("speedup", "what-if time", "what-if share") if wi else ()):
        t.add_column(name, justify="left" if name == "speedup" else "right")
    rows = s["row_times_s"]
    for label, key, members in _display_rows(rows):
        old = sum(rows[r] for r in members)
        cells = [label, _ms(old), _pct(old / s["step_s"])]
        if wi:
            new = sum(wi.new_times_s[r] for r in members)
            cells += [_factor_text(wi, key), _ms(new), _pct(new / wi.new_step_s)]
        t.add_row(*cells, style=None if label.startswith(" ") else "bold")
    total = ["decode step (measured)", _ms(s["step_s"]), _pct(1.0)]
    if wi:
        total += [f"×{wi.step_speedup:.3g} overall", _ms(wi.new_step_s), _pct(1.0)]
    t.add_section()
    t.add_row(*total)
    return t


def cost_table(s: dict, wi=None):
    """Rich table: step time, tok/s and $/Mtok, measured and what-if side by side."""
    from rich.table import Table

    price = s["price_source"]
    if s.get("usd_per_hour"):
        price = f"${s['usd_per_hour']:.4g}/h ({price})"
    t = Table(title="Throughput and cost" + (" (what-if by Amdahl's law)" if wi else ""),
              caption=f"price: {price}")
    for name in ("metric", "measured") + (("what-if",) if wi else ()):
        t.add_column(name, justify="left" if name == "metric" else "right")
    usd = (lambda v: "n/a" if v is None else f"${v:.4g}")
    rows = [("decode step (TPOT)", _ms(s["step_s"]), lambda: _ms(wi.new_step_s)),
            ("output tok/s (device)", f"{s['output_tok_per_s']:.4g}", lambda: f"{wi.tok_per_s('new'):.4g}"),
            ("output tok/s per sequence", f"{s['output_tok_per_s_per_seq']:.4g}",
             lambda: f"{1 / wi.new_step_s:.4g}"),
            ("$/Mtok output", usd(s["usd_per_mtok_output"]), lambda: usd(wi.usd_per_mtok("new")))]
    for name, old, new in rows:
        t.add_row(name, old, *((new(),) if wi else ()))
    return t


def print_tables(summary: dict, wi=None) -> None:
    """Both tables to stdout (the JSON line follows them)."""
    from tokencost.cli.render import Console

    console = Console()
    console.print(breakdown_table(summary, wi))
    console.print(cost_table(summary, wi))
