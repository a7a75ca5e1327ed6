"""``tokencost report RESULTS.jsonl --out DIR``: PNG plots and a Markdown summary of a results file."""

from __future__ import annotations

import argparse
from pathlib import Path

from tokencost.cli.common import check_output_folder, one_line_warnings, print_json_line


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="plots and a Markdown summary from a results file",
                       description="Render the throughput-interactivity frontier with $/Mtok, tok/s and MBU against "
                                   "batch and context, the kernel roofline and the time breakdown from a JSONL "
                                   "results file, plus summary.md embedding them.")
    p.add_argument("results", metavar="RESULTS.jsonl", help="results file written by `tokencost run/sweep/kernels/breakdown`")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files and summary.md")
    return p


def run(args: argparse.Namespace) -> int:
    from profiler.results import read_numbered_records  # lazy: the profiler package may import torch
    from tokencost.report import check_records, write_report

    check_output_folder(args.out, "--out")
    with one_line_warnings():
        records = check_records(read_numbered_records(args.results), args.results)
    if not records:
        raise ValueError(f"{args.results} holds no records")
    report = write_report(records, Path(args.out))
    for name, path in report.plots.items():
        print(f"{name:10s} {path if path is not None else 'skipped'}")
    for note in report.notes:
        print(f"note: {note}")
    print(f"summary    {report.summary_path}")
    print_json_line({"summary_md": str(report.summary_path), "notes": report.notes,
                     "plots": {k: (str(v) if v is not None else None) for k, v in report.plots.items()}})
    return 0
