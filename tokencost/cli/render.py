"""Human-readable tables (rich) for CLI results. Machine-readable output is the JSON line."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _fmt(value, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"


def print_run_table(r: dict) -> None:
    """One measured point: latency, throughput, roofline and cost."""
    table = Table(title=f"{r['model']} on {r['device_name']} ({r['device']}, {r['dtype']}, backend {r['backend']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("batch / prompt / gen tokens", f"{r['batch_size']} / {r['prompt_len']} / {r['gen_len']}"),
        ("TTFT (prefill)", _fmt(r["ttft_s"] * 1e3, " ms")),
        ("prefill throughput (input)", _fmt(r["prefill_tok_per_s"], " tok/s")),
        ("TPOT median / p90 / p99", " / ".join(_fmt(r[k] * 1e3, " ms") for k in ("tpot_s", "tpot_p90_s", "tpot_p99_s"))),
        ("decode throughput (output, device)", _fmt(r["output_tok_per_s"], " tok/s")),
        ("decode throughput per sequence", _fmt(r["output_tok_per_s_per_seq"], " tok/s")),
        ("bytes per decode step", _fmt(r["bytes_per_step"] / 1e9, " GB")),
        ("roofline (bandwidth bound)", _fmt(r["roofline_output_tok_per_s"], " tok/s")),
        ("MBU", _fmt(r["mbu"] * 100, " %")),
        ("price", f"${r['usd_per_hour']:.4g}/h ({r['price_source']})" if r.get("usd_per_hour") else "n/a"),
        ("$/Mtok output", _fmt(r.get("usd_per_mtok_output"), "", 4)),
        ("$/Mtok input", _fmt(r.get("usd_per_mtok_input"), "", 4)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
