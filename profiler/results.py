"""Crash-safe JSONL results files: one flat JSON object per line, appended as each point finishes.

Record kinds (the ``kind`` key; a record without it is read as ``"run"``):

- ``"run"``: one measured decode point (``tokencost run`` or one sweep point). Keys carry their unit:
  model, device, device_name, dtype, backend, batch_size, prompt_len, gen_len, context_len, ttft_s,
  prefill_tok_per_s, tpot_s (median decode step), tpot_p90_s, tpot_p99_s, step_times_s (list of
  per-decode-step seconds), output_tok_per_s (batch / tpot), output_tok_per_s_per_seq (1 / tpot),
  bytes_per_step, roofline_output_tok_per_s, mbu, bandwidth_bytes_per_s, bandwidth_source,
  usd_per_hour, price_source, usd_per_mtok_output, usd_per_mtok_input, env (nested dict), and for
  sweeps status ("ok" | "skipped"), skip_reason, settings_key, repeat, timestamp.
- ``"kernel"``: one kernel benchmark: op, backend, flop, bytes, median_s, peak_flop_per_s,
  peak_bandwidth_bytes_per_s (used for the roofline chart).
- ``"breakdown"``: one op class of a profiled decode step: op_class, time_s and/or share (0..1).

Writes are append-only, flushed and fsynced per record, so a crash loses at most the line being
written; :func:`read_records` drops such a truncated last line (one without its newline) with a
warning, and refuses any other line that does not parse.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

from profiler.errors import ProfilerError

RECORD_KINDS: tuple[str, ...] = ("run", "kernel", "breakdown")
# Statuses that count as "done" for --resume (a skipped point, e.g. out of memory, is not retried).
DONE_STATUSES: tuple[str, ...] = ("ok", "skipped")


def _to_json_line(record: dict) -> str:
    if not isinstance(record, dict):
        raise ProfilerError(f"a result record must be a dict, got {type(record).__name__}")
    kind = record.get("kind", "run")
    if kind not in RECORD_KINDS:
        raise ProfilerError(f"record kind {kind!r} is not one of {', '.join(RECORD_KINDS)}")
    try:
        return json.dumps(record, allow_nan=False, separators=(",", ":"))
    except ValueError as exc:  # NaN/inf, or a circular reference
        raise ProfilerError(f"result record is not finite JSON: {exc}") from None
    except TypeError as exc:
        raise ProfilerError(f"result record is not JSON-serialisable: {exc}") from None


def _repair_partial_tail(path: Path) -> None:
    """Drop a final line left without its newline by an interrupted write (keep it if it is valid)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return  # the usual case: only the last byte is read
        fh.seek(0)
        data = fh.read()
        cut = data.rfind(b"\n") + 1
        try:
            json.loads(data[cut:])
            fh.write(b"\n")  # a complete record that only lacked its newline
        except ValueError:
            warnings.warn(f"{path}: dropping a partial last line left by an interrupted write", stacklevel=3)
            fh.truncate(cut)


def append_result(path: str | os.PathLike, record: dict) -> None:
    """Append one record as a JSON line, then flush and fsync so a crash cannot lose it.

    Raises ProfilerError when the record is not a dict, has an unknown ``kind`` or is not finite JSON
    (NaN and infinity are rejected: a result is a number or absent, never NaN), or when the file cannot
    be written (the message names it).
    """
    line = _to_json_line(record)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _repair_partial_tail(path)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise ProfilerError(f"{path}: cannot append the result ({exc.strerror or exc})") from None


def _not_jsonl(path: Path, text: str, detail: str) -> ProfilerError:
    """The error for an unparsable line: a whole-file JSON document (another command's --json output)
    is named as such, anything else is corruption."""
    try:
        doc = json.loads(text)
    except ValueError:
        return ProfilerError(detail)
    return ProfilerError(f"{path} is a single JSON document ({type(doc).__name__}), not a JSONL results file "
                         "(one JSON object per line, as written by --out)")


def _parse_line(path: Path, number: int, line: str, torn: bool, text: str) -> dict | None:
    """One record; None for a torn last line (no trailing newline: an interrupted write), with a warning."""
    try:
        obj = json.loads(line)
    except ValueError:
        if torn:
            warnings.warn(f"{path}:{number}: ignoring a truncated last line (no trailing newline: an interrupted "
                          "write)", stacklevel=4)
            return None
        raise _not_jsonl(path, text, f"{path}:{number}: not valid JSON (the file is corrupt)") from None
    if not isinstance(obj, dict):
        raise _not_jsonl(path, text, f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_numbered_records(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """(line number, record) for every record of a JSONL results file, in file order.

    Only a last line without its trailing newline (a crash mid-write) may fail to parse: it is
    skipped with a warning. Any other unparsable or non-object line raises ProfilerError, as does a
    missing or non-UTF-8 file; a file that is one JSON document (e.g. a --json output) is named so.
    """
    path = Path(path)
    if path.is_dir():
        raise ProfilerError(f"{path} is a folder; give the JSONL results file written by --out")
    if not path.is_file():
        raise ProfilerError(f"results file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ProfilerError(f"{path} is not a UTF-8 text file (a JSONL results file is expected)") from None
    lines = text.splitlines()
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    unterminated = not text.endswith("\n")
    records = []
    for number, line in numbered:
        obj = _parse_line(path, number, line, unterminated and number == len(lines), text)
        if obj is not None:
            records.append((number, obj))
    return records


def read_records(path: str | os.PathLike) -> list[dict]:
    """All records of a JSONL results file, in file order (see :func:`read_numbered_records`)."""
    return [record for _, record in read_numbered_records(path)]


def settings_key(settings: dict[str, Any]) -> str:
    """Stable 16-hex-digit hash of the settings that define a point (key order does not matter).

    Floats hash by their JSON repr, so 1 and 1.0 differ: pass settings with consistent types.
    Raises ProfilerError for settings that are not finite JSON.
    """
    if not isinstance(settings, dict):
        raise ProfilerError(f"settings must be a dict, got {type(settings).__name__}")
    try:
        canonical = json.dumps(settings, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ProfilerError(f"settings are not finite JSON: {exc}") from None
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def completed_keys(path: str | os.PathLike) -> set[str]:
    """settings_key of every record whose status is "ok" or "skipped" (empty for a missing file).

    A sweep run with --resume skips these keys. A skipped point (e.g. out of memory) counts as done,
    so resuming does not retry it; delete its line to retry.
    """
    if not Path(path).exists():
        return set()
    return {
        r["settings_key"]
        for r in read_records(path)
        if r.get("status", "ok") in DONE_STATUSES and isinstance(r.get("settings_key"), str)
    }


def _record_kind(record: dict) -> str:
    return record.get("kind", "run")


def _flatten_list_columns(df, explode_steps: bool):
    """step_times_s -> n_decode_steps (or one row per step); lists of strings -> "; "-joined text;
    any other list column is dropped (its summary statistics are separate columns)."""
    if "step_times_s" in df.columns:
        df["n_decode_steps"] = df["step_times_s"].map(lambda v: len(v) if isinstance(v, list) else 0)
        if explode_steps:
            df = df.explode("step_times_s", ignore_index=False)
            df["step_index"] = df.groupby(level=0).cumcount()
            df = df.rename(columns={"step_times_s": "step_time_s"}).reset_index(drop=True)
            df["step_time_s"] = df["step_time_s"].astype(float)
        else:
            df = df.drop(columns=["step_times_s"])
    for col in list(df.columns):
        values = [v for v in df[col] if isinstance(v, list)]
        if not values:
            continue
        if all(isinstance(x, str) for v in values for x in v):
            df[col] = df[col].map(lambda v: "; ".join(v) if isinstance(v, list) else v)
        else:
            df = df.drop(columns=[col])
    return df


def load_results(path: str | os.PathLike, kind: str | None = "run", explode_steps: bool = False):
    """Load a results file as a pandas DataFrame, one row per record of ``kind`` (None: all kinds).

    Column names are the record keys, which carry their units (``tpot_s``, ``output_tok_per_s``...).
    Nested dicts are flattened with "." (``env.torch_version``). ``step_times_s`` becomes
    ``n_decode_steps``; with ``explode_steps=True`` each record instead becomes one row per decode
    step with ``step_index`` and ``step_time_s``. Lists of strings (warnings) are joined with "; ".
    Raises ProfilerError for a missing file, an unknown kind, or no records of that kind.
    """
    import pandas as pd

    if kind is not None and kind not in RECORD_KINDS:
        raise ProfilerError(f"kind {kind!r} is not one of {', '.join(RECORD_KINDS)}")
    records = [r for r in read_records(path) if kind is None or _record_kind(r) == kind]
    if not records:
        raise ProfilerError(f"{path}: no {kind or 'result'} records")
    for r in records:
        r.setdefault("kind", "run")
    df = pd.json_normalize(records, sep=".")
    return _flatten_list_columns(df, explode_steps)
