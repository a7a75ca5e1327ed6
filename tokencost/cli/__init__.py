"""The ``tokencost`` command line.

Subcommands live one per module (``*_cmd.py``), each exposing ``add_parser(subparsers)`` and
``run(args) -> int``. Modules import torch and the profiler lazily, inside ``run``, so that
``tokencost prices`` and ``tokencost validate`` work without touching torch.

Bad input ends with one line on stderr, ``tokencost: error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from tokencost.cli.common import JSON_ONLY, OneLineParser, check_output_path, fail, one_line_warnings

# Order = order in --help.
_COMMANDS = ("run", "compare", "models", "kernels", "sweep", "breakdown", "report", "prices", "validate")


def _load(name: str):
    try:
        return importlib.import_module(f"tokencost.cli.{name}_cmd")
    except ModuleNotFoundError as exc:
        if exc.name == f"tokencost.cli.{name}_cmd":
            return None  # not built yet in this checkout
        raise


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tokencost")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tokencost", description="Measure tokens/s on this device and turn it into $ per million tokens.")
    parser.add_argument("--version", action="version", version=f"tokencost {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in _COMMANDS:
        module = _load(name)
        if module is not None:
            module.add_parser(sub).set_defaults(_run=module.run)
    return parser


# Options naming an output *file*, checked before any command measures anything (report's --out is a folder).
_OUTPUT_FILE_OPTIONS = ("json", "out", "csv")


def _check_output_files(args: argparse.Namespace) -> None:
    if args.command == "report":
        return
    for name in _OUTPUT_FILE_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str) and value != JSON_ONLY:
            check_output_path(value, f"--{name}")
    out = getattr(args, "out", None)
    if isinstance(out, str) and os.path.isfile(out) and os.path.getsize(out) > 0:
        _check_results_file(out)


def _check_results_file(path: str) -> None:
    """``--out`` appends to a results file: one that exists must already hold result records that
    ``tokencost report`` accepts (``tokencost.report.check_records``), so that nothing is appended to a
    foreign JSON file or one the report would then refuse."""
    from profiler.errors import ProfilerError
    from profiler.results import read_numbered_records
    from tokencost.errors import CostError
    from tokencost.report import check_records

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a torn last line is skipped (and repaired) when appending
            check_records(read_numbered_records(path), path)
    except (ProfilerError, CostError) as exc:
        raise ValueError(f"--out {path} exists but is not a results file (JSONL records, one per line) to "
                         f"append to: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        _check_output_files(args)
        with one_line_warnings(always=False):
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("tokencost: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # bad input, or a path that cannot be read or written
        fail(str(exc))
    except MemoryError:
        fail("out of host memory; try a smaller --batch-size, --prompt-len or model")
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            fail("out of device memory; try a smaller --batch-size, --prompt-len or model")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
