"""``tokencost sweep``: measure a grid of batch sizes × context lengths into a JSONL results file."""

from __future__ import annotations

import argparse
import sys
import time

from tokencost.cli.common import (add_price_args, int_list, non_negative_int, positive_float, positive_int,
                                  print_json_line, write_json)
from tokencost.cli.run_cmd import add_model_args, spec_from_args


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="measure every batch size × context length; append each point to JSONL",
                       description="Sweep batch size and context (prompt) length with the method of `run`. Each "
                                   "finished point is appended to --out at once; --resume skips points already there.")
    add_model_args(p, batch=False)
    p.add_argument("--batch-sizes", type=int_list, default=[1, 2, 4, 8], help="comma-separated, e.g. 1,8,32")
    p.add_argument("--context-lens", type=int_list, default=[128, 512], help="prompt lengths, e.g. 512,2048")
    p.add_argument("--gen-len", type=positive_int, default=16, help="output tokens per sequence (>= 2)")
    p.add_argument("--warmup-steps", type=non_negative_int, default=3)
    p.add_argument("--repeats", type=positive_int, default=1, help="measure each point K times (K >= 2 gives a 95%% CI)")
    p.add_argument("--out", required=True, metavar="RESULTS.jsonl", help="results file (appended to)")
    p.add_argument("--resume", action="store_true", help="skip points already in --out with the same settings")
    p.add_argument("--target-interactivity", type=positive_float, metavar="TOK_PER_S_PER_SEQ",
                   help="also report $/Mtok on the frontier at this per-sequence speed (interpolated)")
    add_price_args(p)
    p.add_argument("--json", metavar="PATH", help="also write the summary to PATH")
    return p


class _Display:
    """Progress on stderr: the point being measured, the last tok/s, and time left."""

    def __init__(self, total: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=console)
        self.task = self.progress.add_task("sweep", total=total)
        self.plain = not console.is_terminal
        self.t0 = time.perf_counter()

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def point(self, index: int, total: int, record: dict) -> None:
        status = record.get("status")
        if status == "ok":
            what = f"b={record['batch_size']} ctx={record['prompt_len']}: {record['output_tok_per_s']:.1f} tok/s"
        elif status == "skipped":
            what = f"b={record.get('batch_size')} ctx={record.get('prompt_len')}: skipped ({record['skip_reason']})"
        else:
            what = "already measured (resume)"
        self.progress.update(self.task, completed=index + 1, description=f"point {index + 1}/{total} {what}")
        if self.plain:
            elapsed = time.perf_counter() - self.t0
            left = elapsed / (index + 1) * (total - index - 1)
            print(f"point {index + 1}/{total} {what}; about {left:.0f} s left", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from profiler.results import read_records
    from profiler.runner import resolve_device, resolve_dtype
    from profiler.sweep import plan_points, run_sweep
    from tokencost.cli.measure_hook import device_peaks, measure_spec
    from tokencost.cli.pricing import resolve_price
    from tokencost.cli.render import print_sweep_table
    from tokencost.sweep_summary import summarize_sweep

    base = spec_from_args(args, batch_size=args.batch_sizes[0], prompt_len=args.context_lens[0])
    device = resolve_device(base.device)
    dtype = resolve_dtype(base.dtype, device)
    # Points carry the resolved device and dtype, so records and resume keys name what really ran.
    base = dataclasses.replace(base, device=str(device), dtype=str(dtype).removeprefix("torch."))
    points = plan_points(base, args.batch_sizes, args.context_lens, args.repeats)
    price = resolve_price(args, device_type=device.type, device=device)
    peaks = device_peaks(device, dtype)

    def measure(spec) -> dict:
        return measure_spec(spec, price, peaks)

    with _Display(len(points)) as display:
        run_sweep(points, args.out, measure, resume=args.resume,
                  on_point=display.point)
    summary = summarize_sweep(_records_of(read_records(args.out), points), args.target_interactivity)
    print_sweep_table(summary)
    write_json(args.json, summary)
    print_json_line(summary)
    return 0


def _records_of(records: list[dict], points) -> list[dict]:
    """The records of this sweep's points (the file may hold other sweeps too)."""
    from profiler.results import settings_key

    wanted = {settings_key(p.settings()) for p in points}
    return [r for r in records if r.get("settings_key") in wanted]
