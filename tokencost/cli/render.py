"""Human-readable tables (rich) for CLI results. Machine-readable output is the JSON line."""

from __future__ import annotations

import sys

from rich.console import Console as _RichConsole
from rich.table import Table


def Console() -> _RichConsole:  # noqa: N802 - a factory standing in for rich's class
    """rich Console on stdout; wide when stdout is a file or pipe, so tables are not squeezed to 80 columns."""
    return _RichConsole() if sys.stdout.isatty() else _RichConsole(width=200)


def _fmt(value, unit: str = "", digits: int = 3) -> str:
    """Numbers for people: thousands separators from 1,000 up, ``digits`` significant digits below."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"
        return f"{text}{unit}"
    return f"{value}{unit}"


def print_run_table(r: dict) -> None:
    """One measured point: latency, throughput, roofline and cost."""
    table = Table(title=f"{r['model']} on {r['device_name']} ({r['device']}, {r['dtype']}, {backend_label(r)})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("batch / prompt / gen tokens", f"{r['batch_size']} / {r['prompt_len']} / {r['gen_len']}"),
        ("TTFT (prefill)", _fmt(r["ttft_s"] * 1e3, " ms")),
        ("prefill throughput (input)", _fmt(r["prefill_tok_per_s"], " tok/s")),
        (f"TPOT median / p90 / p99 (of {r.get('n_decode_steps', '?')} steps)",
         " / ".join(_fmt(r[k] * 1e3, " ms") for k in ("tpot_s", "tpot_p90_s", "tpot_p99_s"))),
        ("decode throughput (output, device)", _fmt(r["output_tok_per_s"], " tok/s")),
        ("decode throughput per sequence", _fmt(r["output_tok_per_s_per_seq"], " tok/s")),
        ("bytes per decode step", _fmt(r["bytes_per_step"] / 1e9, " GB")),
        (f"roofline ({r.get('roofline_bound', 'bandwidth')} bound)", _fmt(r["roofline_output_tok_per_s"], " tok/s")),
        ("MBU", _fmt(r["mbu"] * 100, " %")),
        ("energy per output token (decode)", _energy(r)),
        ("price", f"${r['usd_per_hour']:.4g}/h (source below)" if r.get("usd_per_hour") else "n/a"),
        ("$/Mtok output", _fmt(r.get("usd_per_mtok_output"), "", 4)),
        ("$/Mtok input", _fmt(r.get("usd_per_mtok_input"), "", 4)),
    ]
    rows += _cost_model_rows(r)
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    if r.get("usd_per_hour"):
        console.print(f"price source: {r['price_source']}", highlight=False, markup=False)


def backend_label(r: dict) -> str:
    """"backend torch", plus the ops that run another variant: "backend torch, swiglu=mine"."""
    others = [f"{op}={b}" for op, b in (r.get("ops") or {}).items() if b != r["backend"]]
    return ", ".join([f"backend {r['backend']}", *others])


def _energy(r: dict) -> str:
    """J per output token from the GPU energy counter, or "unavailable" with the reason (never 0)."""
    j = r.get("gpu_energy_per_output_token_j")
    if j is not None:
        return _fmt(j, " J/token")
    reason = r.get("energy_unavailable_reason")
    return f"unavailable ({reason})" if reason else "unavailable"


def _cost_model_rows(r: dict) -> list[tuple[str, str]]:
    rows = []
    if r.get("request_usd_per_mtok_blended") is not None:
        w_in, w_out = r["blend_input_output"]
        rows.append(("$/Mtok per request in / out (prefill share; gen-len − 1 decode steps)",
                     f"{_fmt(r.get('request_usd_per_mtok_input'), '', 4)} / "
                     f"{_fmt(r.get('request_usd_per_mtok_output'), '', 4)}"))
        rows.append((f"$/Mtok per request, blended {w_in:g}:{w_out:g}", _fmt(r["request_usd_per_mtok_blended"], "", 4)))
    eff = r.get("effective")
    if eff and abs(eff["overhead_ratio"] - 1) > 1e-3:  # shown only when the options change the figure
        rows.append((f"effective $/Mtok out ({_utilization_note(eff)}per-{eff['billing']} billing)",
                     f"{eff['usd_per_mtok_output_effective']:.4g} ({_fmt(float(eff['overhead_ratio']))}× peak)"))
    be = r.get("breakeven")
    if be:
        verdict = "breaks even" if be["breaks_even"] else "never breaks even"
        rows.append((f"break-even utilization vs {be['api_name']}", f"{be['utilization']:.1%} ({verdict})"))
    if r.get("usd_per_mtok_electricity") is not None:
        rows.append(("electricity $/Mtok out (chip energy × PUE × $/kWh)",
                     f"{_fmt(r['usd_per_mtok_electricity'], '', 4)} (PUE {r.get('electricity_pue', '?')}, "
                     f"${r.get('electricity_usd_per_kwh', '?')}/kWh)"))
    return rows


def _utilization_note(eff: dict) -> str:
    """"utilization F from SOURCE, " when a utilisation below full use was set (``--utilization``) or
    comes from the TCO model; nothing at the default full use, which changes no figure."""
    source = eff.get("utilization_source", "--utilization")
    if eff["utilization"] == 1 and source == "--utilization":
        return ""
    return f"utilization {eff['utilization']:g} from {source}, "


def print_sweep_table(summary: dict) -> None:
    """Sweep points (repeats pooled) with the frontier marked, and the cost at a target if asked."""
    on_frontier = {(p["batch_size"], p["prompt_len"]) for f in summary["frontiers"] for p in f["points"]}
    table = Table(title="sweep: throughput vs interactivity (* = on the Pareto frontier of its context length)")
    for col in ("batch", "context", "output tok/s", "tok/s per seq", "TTFT", "MBU", "$/Mtok out",
                "95% CI $/Mtok", "× floor", "repeats"):
        table.add_column(col, justify="right")
    for p in sorted(summary["points"], key=lambda p: (p["prompt_len"], p["batch_size"])):
        ci = p.get("usd_per_mtok_output_ci95")
        star = "*" if (p["batch_size"], p["prompt_len"]) in on_frontier else ""
        table.add_row(f"{star}{p['batch_size']}", str(p["prompt_len"]), _fmt(p["output_tok_per_s"]),
                      _fmt(p["output_tok_per_s_per_seq"]), _fmt(p["ttft_s"] * 1e3, " ms"), _fmt(p["mbu"] * 100, " %"),
                      _fmt(p.get("usd_per_mtok_output"), "", 4), f"{ci[0]:.4g}–{ci[1]:.4g}" if ci else "n/a",
                      _fmt(p.get("multiple_of_floor")), str(p["repeats"]))
    console = Console()
    console.print(table)
    for s in summary["skipped"]:
        console.print(f"skipped: batch {s['batch_size']}, context {s['prompt_len']}: {s['skip_reason']}")
    for p in summary["points"]:
        for w in [*p["warnings"], *p.get("record_warnings", [])]:  # on stderr, prefixed as every warning
            print(f"tokencost: warning: batch {p['batch_size']}, context {p['prompt_len']}: {w}", file=sys.stderr)
    for f in summary["frontiers"]:
        t = f.get("at_target")
        if t is None:
            continue
        where = f"context {f['prompt_len']}, at {t['target_tok_per_s_per_seq']:.4g} tok/s per sequence"
        if "error" in t:
            console.print(f"{where}: no cost ({t['error']})")
            continue
        how = ("at most: the least interactive measured point already meets the target; a larger batch "
               "(not measured) may cost less" if t.get("upper_bound") else
               "interpolated between measured points" if t["interpolated"] else "measured")
        console.print(f"{where}: {t['output_tok_per_s']:.4g} output tok/s, ${t['usd_per_mtok_output']:.4g}/Mtok ({how})")
