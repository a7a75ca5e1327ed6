"""Helpers shared by the CLI subcommands: one-line errors, argument types, price options, output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import NoReturn


def fail(message: str, status: int = 2) -> NoReturn:
    """Print ``tokencost: error: <message>`` on one line to stderr and exit."""
    one_line = " ".join(str(message).split())
    print(f"tokencost: error: {one_line}", file=sys.stderr)
    raise SystemExit(status)


class OneLineParser(argparse.ArgumentParser):
    """argparse parser whose errors are one line (no usage dump) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message}")


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def int_list(text: str) -> list[int]:
    """``"1,8,32"`` → ``[1, 8, 32]``; every item must be a positive integer."""
    items = [t for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of positive integers")
    return [positive_int(t.strip()) for t in items]


def key_value_list(text: str) -> tuple[str, str]:
    """``"attention=2"`` → ``("attention", "2")``."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def add_price_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("price (default: the catalog's on-demand price for the detected device)")
    g.add_argument("--price-per-gpu-hour", type=positive_float, metavar="USD", help="$ per GPU-hour")
    g.add_argument("--price-per-instance-hour", type=positive_float, metavar="USD",
                   help="$ per instance-hour; needs --gpus-per-instance")
    g.add_argument("--gpus-per-instance", type=positive_int, metavar="N", help="GPUs in the priced instance")
    g.add_argument("--price-from", metavar="NAME", help="a named row of `tokencost prices`")
    g.add_argument("--catalog", metavar="PATH", help="a CSV adding or overriding catalog rows")


def write_json(path: str | None, payload: object) -> None:
    """Write ``payload`` as indented JSON to ``path`` (if given), creating parent folders."""
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def print_json_line(payload: object) -> None:
    """The last line of stdout: one JSON object."""
    sys.stdout.flush()
    print(json.dumps(payload, default=str), flush=True)
