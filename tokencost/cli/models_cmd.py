"""``tokencost models``: the built-in model presets with their sizes."""

from __future__ import annotations

import argparse

from tokencost.cli.common import JSON_FLAG_HELP, JSON_ONLY, print_json_line, write_json

BF16_BYTES = 2


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list the built-in model presets",
                       description="List presets with parameter count and bytes read per decode step "
                                   "(batch 1, bf16 weights, KV cache at 1 token of context).")
    p.add_argument("--json", nargs="?", const=JSON_ONLY, metavar="PATH", help=JSON_FLAG_HELP)
    return p


def model_rows() -> list[dict]:
    from profiler import roofline
    from profiler.presets import PRESETS, get_preset, preset_names

    rows = []
    for name in preset_names():
        cfg, preset = get_preset(name), PRESETS[name]
        rows.append({
            "model": name, "model_type": cfg.model_type, "param_count": roofline.param_count(cfg),
            "bytes_per_step_bf16_batch1": roofline.decode_bytes_per_step(cfg, 1, 1, BF16_BYTES),
            "kv_bytes_per_token_bf16": roofline.kv_bytes_per_token(cfg, BF16_BYTES),
            "max_position_embeddings": cfg.max_position_embeddings,
            "decode_loop": not cfg.is_moe, "source": cfg.source, "source_date": preset.date, "note": preset.note,
        })
    return rows


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from tokencost.cli.render import Console

    rows = model_rows()
    if args.json == JSON_ONLY:
        print_json_line({"models": rows})
        return 0
    table = Table(title="tokencost model presets (bytes: bf16, batch 1)")
    for col in ("model", "type", "params", "bytes/step", "KV/token", "positions", "decode loop", "source date"):
        table.add_column(col, justify="left" if col in ("model", "type") else "right", no_wrap=True)
    for r in rows:
        table.add_row(r["model"], r["model_type"], f"{r['param_count'] / 1e9:.3f} B",
                      f"{r['bytes_per_step_bf16_batch1'] / 1e9:.3f} GB", f"{r['kv_bytes_per_token_bf16'] / 1024:.1f} KiB",
                      f"{r['max_position_embeddings']:,}", "yes" if r["decode_loop"] else "roofline", r["source_date"])
    console = Console()
    console.print(table)
    console.print("bytes/step: bf16 weights a batch-1 decode step reads plus the KV cache at 1 token; decode loop "
                  "\"roofline\": MoE, priced from its roofline only; source URLs: tokencost models --json", highlight=False)
    for r in rows:
        if r["note"]:
            console.print(f"note ({r['model']}): {r['note']}", highlight=False, markup=False)
    if args.json:  # a PATH: the JSON line last, as every command prints it, and the file
        print_json_line({"models": rows})
        write_json(args.json, {"models": rows})
    return 0
