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
                       description="Sweep batch size and context (prompt) length with the method of `run`. Every "
                                   "point is checked (positions, memory estimate) before any is measured; each "
                                   "finished point is appended to --out at once. When --out already holds points "
                                   "of this sweep (same settings), the sweep refuses to start unless --resume "
                                   "(measure only the missing points) or --append (measure every point again) is "
                                   "given; existing lines are never removed. The summary covers the newest record "
                                   "of each point of this sweep.")
    add_model_args(p, batch=False)
    p.add_argument("--batch-sizes", type=int_list, default=[1, 2, 4, 8], help="comma-separated, e.g. 1,8,32")
    p.add_argument("--context-lens", type=int_list, default=[128, 512], help="prompt lengths, e.g. 512,2048")
    p.add_argument("--gen-len", type=positive_int, default=16, help="output tokens per sequence (>= 2)")
    p.add_argument("--warmup-steps", type=non_negative_int, default=3,
                   help="untimed decode steps before the timed ones at each point (default 3)")
    p.add_argument("--repeats", type=positive_int, default=1, help="measure each point K times (K >= 2 gives a 95%% CI)")
    p.add_argument("--out", required=True, metavar="RESULTS.jsonl", help="results file (appended to)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="skip points already in --out with the same settings")
    again.add_argument("--append", action="store_true",
                       help="measure every point even if --out already holds it (the old lines stay; the summary "
                            "uses the new ones)")
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
    from profiler.sweep import check_grid, latest_records, plan_points, run_sweep
    from tokencost.cli.measure_hook import device_peaks, measure_spec
    from tokencost.cli.pricing import resolve_price
    from tokencost.cli.render import print_sweep_table
    from tokencost.cli.common import one_line_warnings
    from tokencost.sweep_summary import summarize_sweep

    base = spec_from_args(args, batch_size=args.batch_sizes[0], prompt_len=args.context_lens[0])
    device = resolve_device(base.device)
    dtype = resolve_dtype(base.dtype, device)
    # Points carry the resolved device and dtype, so records and resume keys name what really ran.
    base = dataclasses.replace(base, device=str(device), dtype=str(dtype).removeprefix("torch."))
    points = plan_points(base, args.batch_sizes, args.context_lens, args.repeats)
    with one_line_warnings():
        _refuse_silent_rerun(args, points)
        memory_skips = check_grid(points, device, dtype)  # everything checkable, before measuring anything
        price = resolve_price(args, device_type=device.type, device=device)
        peaks = device_peaks(device, dtype)

        def measure(spec) -> dict:
            return measure_spec(spec, price, peaks)

        with _Display(len(points)) as display:
            run_sweep(points, args.out, measure, resume=args.resume, on_point=display.point,
                      memory_check=lambda spec: memory_skips.get((spec.batch_size, spec.prompt_len)))
        summary = summarize_sweep(latest_records(read_records(args.out), points), args.target_interactivity)
    print_sweep_table(summary)
    print_json_line(summary)  # first: a file that fails to write must not cost the summary
    write_json(args.json, summary)
    return 0


def _refuse_silent_rerun(args: argparse.Namespace, points) -> None:
    """A second measurement of the same points into one file needs --resume or --append: appended
    silently, it would be pooled with the first as extra repeats."""
    from profiler.sweep import points_in_file

    if args.resume or args.append:
        return
    found = points_in_file(args.out, points)
    if found:
        raise ValueError(f"--out {args.out} already holds {found} record(s) of this sweep's points; add --resume to "
                         "measure only the missing ones, --append to measure them all again, or choose another file")
