"""Helpers shared by the CLI subcommands: one-line errors, argument types, price options, output."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import warnings
from pathlib import Path
from typing import NoReturn

from tokencost.tco import tco_param_help


# `models` and `validate` take --json alone (JSON instead of the table) or --json PATH (as elsewhere).
JSON_ONLY = "-"
JSON_FLAG_HELP = ("print one JSON object instead of the table; --json PATH instead prints the table and the "
                  "JSON line and writes the JSON to PATH, as the other commands do")


def fail(message: str, status: int = 2) -> NoReturn:
    """Print ``tokencost: error: <message>`` on one line to stderr and exit."""
    one_line = " ".join(str(message).split())
    print(f"tokencost: error: {one_line}", file=sys.stderr)
    raise SystemExit(status)


class OneLineParser(argparse.ArgumentParser):
    """argparse parser whose errors are one line (no usage dump) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        sub = self.prog.removeprefix("tokencost").strip()  # "run" for a subcommand, "" for the top level
        fail(f"{sub}: {message}" if sub else message)


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


_SEED_LIMIT = 2 ** 63  # torch.manual_seed takes a signed 64-bit seed


def seed_int(text: str) -> int:
    """A random seed: an integer in [0, 2^63)."""
    value = _int_at_least(text, 0, "an integer >= 0")
    if value >= _SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be below 2^63, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def int_list(text: str) -> list[int]:
    """``"1,8,32"`` → ``[1, 8, 32]``: positive integers, no empty items, no repeats."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of positive integers, got {text!r}")
    values = [positive_int(t) for t in items]
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r} repeats a value (use --repeats to measure a point again)")
    return values


def key_value_list(text: str) -> tuple[str, str]:
    """``"attention=2"`` → ``("attention", "2")``."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def add_price_args(parser: argparse.ArgumentParser, default_for: str = "the detected device") -> None:
    g = parser.add_argument_group(f"price (default: the catalog's on-demand price for {default_for})")
    g.add_argument("--price-per-gpu-hour", type=positive_float, metavar="USD", help="$ per GPU-hour")
    g.add_argument("--price-per-instance-hour", type=positive_float, metavar="USD",
                   help="$ per instance-hour; needs --gpus-per-instance")
    g.add_argument("--gpus-per-instance", type=positive_int, metavar="N", help="GPUs in the priced instance")
    g.add_argument("--price-from", metavar="NAME", help="a named row of `tokencost prices`")
    g.add_argument("--price-owned", action="store_true",
                   help=f"owned-hardware $/GPU-hour of {default_for} from the TCO model (see `tokencost prices --tco`)")
    g.add_argument("--tco-param", metavar="NAME=VALUE", type=key_value_list, action="append", default=[],
                   help="with --price-owned: override a TCO parameter, in its unit: "
                        + tco_param_help().replace("%", "%%"))
    g.add_argument("--catalog", metavar="PATH", action="append",
                   help="a CSV adding or overriding catalog rows (repeatable; later files override earlier ones)")


def add_cost_model_args(parser: argparse.ArgumentParser) -> None:
    """Options of the cost models applied to a measured run (tokencost.cost, tokencost.breakeven)."""
    g = parser.add_argument_group("cost models")
    g.add_argument("--blend", default="3:1", metavar="IN:OUT",
                   help="input:output token weights of the blended $/Mtok (default 3:1)")
    g.add_argument("--utilization", type=positive_float, default=1.0, metavar="F",
                   help="share of paid time the hardware is busy, in (0, 1] (default 1)")
    g.add_argument("--billing", default="second", choices=("second", "minute", "hour"),
                   help="billing granularity for the effective $/Mtok (default second)")
    g.add_argument("--spin-up-s", type=float, default=0.0, metavar="S", help="paid seconds before the first token")
    g.add_argument("--job-mtok", type=positive_float, default=1.0, metavar="X",
                   help="million output tokens in the billed job, for the effective $/Mtok (default 1)")
    g.add_argument("--api-price", metavar="NAME",
                   help="an API price row (`tokencost prices --tier api`): break-even utilization against it")


def parse_blend(text: str) -> tuple[float, float]:
    """``"3:1"`` → ``(3.0, 1.0)``; both weights positive."""
    parts = text.split(":")
    try:
        weights = tuple(float(p) for p in parts)
    except ValueError:
        weights = ()
    if len(weights) != 2 or not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"--blend expects two positive weights IN:OUT such as 3:1, got {text!r}")
    return weights


def check_output_path(path: str | None, option: str) -> None:
    """Refuse an output path that cannot be written, before anything is measured: the file is opened
    for appending when it exists (nothing is written), else a temporary file is created and removed
    in its nearest existing folder (missing folders are created only when the results are written).

    Raises:
        ValueError: an empty path, a directory, a parent that is not a directory, or a place where
            nothing can be written.
    """
    if path is None:
        return
    target = Path(path)
    if not str(path).strip():
        raise ValueError(f"{option} needs a file path, got an empty string")
    if target.is_dir():
        raise ValueError(f"{option} {path} is a directory; give a file path")
    parent = _nearest_existing(target.parent, option, path)
    try:  # probe for real: permissions alone miss read-only and virtual file systems (and root)
        if target.exists():
            with open(target, "a"):
                pass
        else:
            with tempfile.TemporaryFile(dir=parent):
                pass
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None


def _nearest_existing(folder: Path, option: str, path: str) -> Path:
    """The nearest existing folder at or above ``folder``; ValueError when that is a file."""
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{option} {path}: {folder} is a file, not a folder")
    return folder


def check_output_folder(path: str, option: str) -> None:
    """Refuse an output *folder* that is a file or where nothing can be created, before any work.

    Raises:
        ValueError: with the option and path.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{option} {path} exists and is a file; give a folder")
    folder = _nearest_existing(target, option, path)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None


def finite_json(payload: object, _path: str = "", _bad: list | None = None):
    """``payload`` with every NaN or infinite float replaced by None (JSON has no such numbers), and
    the list of the replaced keys' paths."""
    bad = [] if _bad is None else _bad
    if isinstance(payload, float) and not math.isfinite(payload):
        bad.append(_path or "(top level)")
        return None, bad
    if isinstance(payload, dict):
        return {k: finite_json(v, f"{_path}.{k}" if _path else str(k), bad)[0] for k, v in payload.items()}, bad
    if isinstance(payload, (list, tuple)):
        return [finite_json(v, f"{_path}[{i}]", bad)[0] for i, v in enumerate(payload)], bad
    return payload, bad


def _dumps(payload: object, **kwargs) -> str:
    clean, bad = finite_json(payload)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        print(f"tokencost: warning: non-finite value(s) written as null: {shown}", file=sys.stderr)
    return json.dumps(clean, default=str, allow_nan=False, **kwargs)


def write_json(path: str | None, payload: object) -> None:
    """Write ``payload`` as indented JSON to ``path`` (if given), creating parent folders; a NaN or
    infinity becomes null, with a warning."""
    if not path:
        return
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_dumps(payload, indent=2) + "\n")
    except OSError as exc:
        raise ValueError(f"--json {path}: cannot write ({exc.strerror or exc})") from None


def print_json_line(payload: object) -> None:
    """The last line of stdout: one JSON object (a NaN or infinity becomes null, with a warning)."""
    sys.stdout.flush()
    print(_dumps(payload), flush=True)


@contextlib.contextmanager
def one_line_warnings(always: bool = True):
    """Show Python warnings raised inside as ``tokencost: warning: ...``, one stderr line each (the
    default format adds the file name and a source line). ``always``: every occurrence, not just the
    first per code location."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"tokencost: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        if always:
            warnings.simplefilter("always")
        warnings.showwarning = show
        yield
