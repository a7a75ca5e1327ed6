"""The CSV catalogs behind the cost layer: loading, validation and user overrides (torch-free).

Built-in tables live in ``tokencost/data/*.csv``: GPU specs, GPU-hour prices, CPU (vCPU) prices,
open-model API prices, owned-hardware TCO defaults and published throughput claims. Every row carries
a non-empty ``source`` and ``date`` (the price or document date, or ``undated`` when the source gives
none, as in shared/reference/prices.md). A user file passed with ``--catalog PATH`` has the columns of
one of these tables; its rows are validated the same way and add to, or replace (same key), the
built-in rows.

Every problem is a :class:`~tokencost.errors.CostError` naming the file, the row (line number) and the
column: unknown or missing columns, a missing source or date, a number that is not a positive finite
number, a price above its generous bound (``tokencost.cost.MAX_USD_PER_HOUR``, ``MAX_USD_PER_MTOK``),
an unknown choice, a price row that mixes per-instance and per-GPU units.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from tokencost.cost import MAX_USD_PER_HOUR, MAX_USD_PER_MTOK
from tokencost.errors import CostError

DATA_DIR = Path(__file__).resolve().parent / "data"

PRECISIONS = ("bf16", "fp16", "fp8", "int8", "fp4", "int4")
PRICE_TIERS = ("on-demand", "spot", "interruptible", "reserved-1yr", "reserved-3yr", "capacity-block",
               "owned-hyperscaler", "owned-neocloud", "rental-3yr")
TCO_PARAMETERS = ("depreciation_years", "interest_rate", "electricity_usd_per_kwh", "pue",
                  "colocation_usd_per_kw_month", "utilization", "capex_usd", "allin_power_kw")
_PER_GPU_TCO = ("capex_usd", "allin_power_kw")
_DATE_RE = re.compile(r"^(?:~|before |until )?(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_TRUE, _FALSE = ("yes", "true", "1"), ("", "no", "false", "0")


@dataclasses.dataclass(frozen=True)
class Column:
    """One CSV column: ``kind`` is text, positive, non_negative, int, bool or choice; ``maximum``: the
    largest value a number may take (prices: ``tokencost.cost.MAX_USD_PER_HOUR`` / ``MAX_USD_PER_MTOK``)."""

    name: str
    kind: str = "text"
    required: bool = False
    choices: tuple[str, ...] = ()
    maximum: float | None = None


@dataclasses.dataclass(frozen=True)
class Schema:
    """A catalog table: file name, key columns, columns, and an optional whole-row check that returns
    an error message or None. ``default_group``: the columns within which at most one row may carry
    ``is_default``."""

    kind: str
    filename: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    row_check: Callable[[dict], str | None] | None = None
    default_group: tuple[str, ...] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


def _src_date() -> tuple[Column, Column]:
    return Column("source", required=True), Column("date", required=True)


def _usd_per_hour(name: str, required: bool = False) -> Column:
    return Column(name, "positive", required, maximum=MAX_USD_PER_HOUR)


def _usd_per_mtok(name: str, required: bool = False) -> Column:
    return Column(name, "positive", required, maximum=MAX_USD_PER_MTOK)


def _check_price_row(row: dict) -> str | None:
    per_instance, per_gpu = row["usd_per_instance_hour"], row["usd_per_gpu_hour"]
    if (per_instance is None) == (per_gpu is None):
        return "give either usd_per_instance_hour (with gpus_per_instance) or usd_per_gpu_hour, not both or neither"
    if per_instance is not None and row["gpus_per_instance"] is None:
        return "usd_per_instance_hour needs gpus_per_instance (an instance price is not a GPU price)"
    if per_gpu is not None and row["gpus_per_instance"] is not None:
        return "a per-GPU price row must leave gpus_per_instance empty"
    return None


def _check_tco_row(row: dict) -> str | None:
    if row["parameter"] in _PER_GPU_TCO and not row["gpu"]:
        return f"parameter {row['parameter']!r} is per GPU: fill the gpu column"
    if row["parameter"] not in _PER_GPU_TCO and row["gpu"]:
        return f"parameter {row['parameter']!r} applies to every GPU: leave the gpu column empty"
    return None


def _check_claim_row(row: dict) -> str | None:
    if row["batch_size"] is not None and row["concurrency"] is not None:
        return "give batch_size or concurrency, not both"
    return None


SCHEMAS: dict[str, Schema] = {s.kind: s for s in (
    Schema("gpu_specs", "gpu_specs.csv", ("name",), (
        Column("name", required=True), Column("aliases"), Column("bf16_tflops", "positive", True),
        Column("fp8_tflops", "positive"), Column("fp4_tflops", "positive"),
        Column("memory_gb", "positive", True), Column("bandwidth_tb_s", "positive", True),
        Column("power_w", "positive", True), Column("sms", "int"), Column("unverified_fields"),
        *_src_date(), Column("note"))),
    Schema("prices", "prices.csv", ("name",), (
        Column("name", required=True), Column("provider", required=True), Column("gpu", required=True),
        Column("tier", "choice", True, PRICE_TIERS), _usd_per_hour("usd_per_instance_hour"),
        Column("gpus_per_instance", "int"), _usd_per_hour("usd_per_gpu_hour"), Column("region"),
        Column("is_default", "bool"), *_src_date(), Column("note")),
        _check_price_row, ("gpu",)),
    Schema("cpu_prices", "cpu_prices.csv", ("name",), (
        Column("name", required=True), Column("provider", required=True), Column("instance", required=True),
        Column("vcpus_per_instance", "int", True), Column("tier", "choice", True, PRICE_TIERS),
        _usd_per_hour("usd_per_instance_hour", True), Column("region"), Column("is_default", "bool"),
        *_src_date(), Column("note")),
        None, ()),
    Schema("api_prices", "api_prices.csv", ("name",), (
        Column("name", required=True), Column("model", required=True), Column("provider", required=True),
        Column("variant"), _usd_per_mtok("usd_per_mtok_input", True),
        _usd_per_mtok("usd_per_mtok_output", True), *_src_date(), Column("note"))),
    Schema("tco_defaults", "tco_defaults.csv", ("parameter", "gpu"), (
        Column("parameter", "choice", True, TCO_PARAMETERS), Column("gpu"),
        Column("value", "non_negative", True), Column("unit", required=True), *_src_date(), Column("note")),
        _check_tco_row),
    Schema("claims", "claims.csv", ("claim_id",), (
        Column("claim_id", required=True), Column("model", required=True), Column("model_preset"),
        Column("gpu", required=True), Column("gpus", "int", True), Column("precision", "choice", False, PRECISIONS),
        Column("kv_precision", "choice", False, PRECISIONS), Column("batch_size", "int"),
        Column("concurrency", "int"), Column("input_len", "int"), Column("output_len", "int"),
        Column("tok_per_s", "positive", True), Column("unit", "choice", True, ("per-gpu", "per-node")),
        Column("tokens", "choice", True, ("output", "total", "unstated")),
        _usd_per_hour("price_usd_per_gpu_hour"), _usd_per_mtok("stated_usd_per_mtok"),
        *_src_date(), Column("note")),
        _check_claim_row),
)}


@dataclasses.dataclass
class Catalog:
    """Validated tables: ``tables[kind]`` maps a row key to its parsed row (a dict with ``_origin``,
    "file:line", added). Row order is file order, user rows after built-in ones."""

    tables: dict[str, dict[tuple, dict]]
    user_files: tuple[str, ...] = ()

    def rows(self, kind: str) -> list[dict]:
        return list(self.tables[kind].values())

    def get(self, kind: str, *key: str) -> dict | None:
        return self.tables[kind].get(tuple(key))


def _parse_value(col: Column, text: str, where: str) -> object:
    """One cell → its typed value (None when empty); CostError naming ``where`` on a bad value."""
    text = text.strip()
    if col.kind == "bool":
        if text.lower() not in _TRUE + _FALSE:
            raise CostError(f"{where}: column {col.name!r} must be yes or empty, got {text!r}")
        return text.lower() in _TRUE
    if not text:
        return None
    if col.kind == "text":
        return text
    if col.kind == "choice":
        if text not in col.choices:
            raise CostError(f"{where}: column {col.name!r} must be one of {', '.join(col.choices)}; got {text!r}")
        return text
    return _parse_number(col, text, where)


def _parse_number(col: Column, text: str, where: str) -> float | int:
    try:
        value = int(text) if col.kind == "int" else float(text.replace("_", ""))
    except ValueError:
        kind = "a whole number" if col.kind == "int" else "a number"
        raise CostError(f"{where}: column {col.name!r} must be {kind}, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and col.kind != "non_negative"):
        need = "a finite number >= 0" if col.kind == "non_negative" else "a positive finite number"
        raise CostError(f"{where}: column {col.name!r} must be {need}, got {text!r}")
    if col.maximum is not None and value > col.maximum:
        raise CostError(f"{where}: column {col.name!r} must be at most {col.maximum:,.0f}, got {text!r}")
    return value


def _check_header(schema: Schema, header: list[str], path: str) -> None:
    unknown = [h for h in header if h not in schema.names]
    if unknown:
        raise CostError(f"{path}: unknown column(s) {', '.join(map(repr, unknown))} for the {schema.kind} "
                        f"catalog; its columns are: {', '.join(schema.names)}")
    missing = [c for c in schema.required if c not in header]
    if missing:
        raise CostError(f"{path}: missing column(s) {', '.join(missing)} for the {schema.kind} catalog")


def _valid_date(text: str) -> bool:
    """True for ``undated`` or a calendar date YYYY[-MM[-DD]], optionally after ~, 'before ', 'until '
    (month and day checked with :class:`datetime.date`, so 2026-13-45 or 2025-02-29 is refused)."""
    if text == "undated":
        return True
    match = _DATE_RE.match(text)
    if not match:
        return False
    year, month, day = (int(g) if g else 1 for g in match.groups())
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def _parse_row(schema: Schema, raw: dict, where: str) -> dict:
    if None in raw:
        raise CostError(f"{where}: more fields than the header has columns")
    for name in ("source", "date"):
        if not (raw.get(name) or "").strip():
            raise CostError(f"{where}: missing {name} (every catalog row needs a source and a date)")
    row = {c.name: _parse_value(c, raw.get(c.name) or "", where) for c in schema.columns}
    for name in schema.required:
        if row[name] is None:
            raise CostError(f"{where}: column {name!r} is empty")
    if not _valid_date(row["date"]):
        raise CostError(f"{where}: date {row['date']!r} is not YYYY[-MM[-DD]] with a real month and day "
                        "(optionally after ~, 'before ' or 'until ') or 'undated'")
    problem = schema.row_check(row) if schema.row_check else None
    if problem:
        raise CostError(f"{where}: {problem}")
    row["_origin"] = where
    return row


def read_table(schema: Schema, path: str | Path) -> dict[tuple, dict]:
    """Read and validate one CSV file of ``schema``'s kind; rows keyed by the schema key.

    Raises:
        CostError: unreadable or non-UTF-8 file, bad header, bad row, a key repeated within the file,
            or two ``is_default`` rows for one group (e.g. one GPU) within the file.
    """
    rows: dict[tuple, dict] = {}
    reader = csv.DictReader(_open(path))
    try:
        _check_header(schema, [h.strip() for h in (reader.fieldnames or [])], str(path))
        reader.fieldnames = [h.strip() for h in reader.fieldnames or []]
        for raw in reader:
            where = f"{path}:{reader.line_num}"
            row = _parse_row(schema, raw, where)
            key = tuple(row[k] or "" for k in schema.key)
            if key in rows:
                raise CostError(f"{where}: {'/'.join(schema.key)} {'/'.join(key)!r} repeats {rows[key]['_origin']}")
            rows[key] = row
    except csv.Error as exc:
        raise CostError(f"{path}:{reader.line_num}: not a readable CSV file ({exc})") from None
    if schema.default_group is not None:
        _check_defaults(rows, schema)
    return rows


def _open(path: str | Path) -> io.StringIO:
    """The whole file as text (UTF-8, optional BOM); CostError naming the file when it cannot be read
    or is not UTF-8 text (a binary or UTF-16 file)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return io.StringIO(handle.read(), newline="")
    except OSError as exc:
        raise CostError(f"cannot read catalog {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CostError(f"cannot read catalog {path}: not UTF-8 text (byte {exc.start}: {exc.reason}); "
                        "save it as UTF-8 CSV") from None


def detect_kind(path: str | Path) -> Schema:
    """The schema whose columns a user file has: every required column present, no unknown column.

    Raises:
        CostError: the header matches no catalog, or has columns the closest catalog does not know.
    """
    try:
        header = [h.strip() for h in next(csv.reader(_open(path)), [])]
    except csv.Error as exc:
        raise CostError(f"{path}:1: not a readable CSV header ({exc})") from None
    if not header or not any(header):
        raise CostError(f"{path}: empty file (expected a CSV header)")
    candidates = [s for s in SCHEMAS.values() if all(c in header for c in s.required)]
    if not candidates:
        best = max(SCHEMAS.values(), key=lambda s: len(set(s.required) & set(header)))
        missing = [c for c in best.required if c not in header]
        raise CostError(f"{path}: columns match no catalog; closest is {best.kind}, missing {', '.join(missing)}")
    best = max(candidates, key=lambda s: len(set(s.names) & set(header)))
    _check_header(best, header, str(path))
    return best


def _merge(base: dict[tuple, dict], extra: dict[tuple, dict], schema: Schema) -> None:
    """Add or replace rows; a new default row clears the old default of its group."""
    for key, row in extra.items():
        if schema.default_group is not None and row.get("is_default"):
            group = tuple(row[c] for c in schema.default_group)
            for other in base.values():
                if tuple(other[c] for c in schema.default_group) == group:
                    other["is_default"] = False
        base[key] = row


def _check_defaults(table: dict[tuple, dict], schema: Schema) -> None:
    seen: dict[tuple, str] = {}
    for row in table.values():
        if not row.get("is_default"):
            continue
        group = tuple(row[c] for c in schema.default_group or ())
        if group in seen:
            raise CostError(f"{row['_origin']}: a second default row for {'/'.join(map(str, group)) or 'CPU'} "
                            f"(the first is {seen[group]})")
        seen[group] = row["_origin"]


def _check_references(tables: dict[str, dict[tuple, dict]]) -> None:
    """Price and TCO rows must name a GPU of the spec table (an unknown GPU is never priced by guess)."""
    gpus = {row["name"] for row in tables["gpu_specs"].values()}
    for kind in ("prices", "tco_defaults"):
        for row in tables[kind].values():
            if row["gpu"] and row["gpu"] not in gpus:
                raise CostError(f"{row['_origin']}: gpu {row['gpu']!r} is not in the GPU spec catalog "
                                f"(known: {', '.join(sorted(gpus))}); add its spec row first")


def load_catalog(user_paths: Iterable[str | Path] = ()) -> Catalog:
    """Built-in tables plus user files (in order), validated.

    Raises:
        CostError: any problem in any file (the message names file, line and column).
    """
    tables = {kind: read_table(s, DATA_DIR / s.filename) for kind, s in SCHEMAS.items()}
    paths = tuple(str(p) for p in user_paths if p)
    for path in paths:
        schema = detect_kind(path)
        _merge(tables[schema.kind], read_table(schema, path), schema)
    for kind, schema in SCHEMAS.items():
        if schema.default_group is not None:
            _check_defaults(tables[kind], schema)
    _check_references(tables)
    return Catalog(tables, paths)


_ACTIVE: Catalog | None = None


def use_catalogs(paths: str | Path | Iterable[str | Path] | None) -> Catalog:
    """Load built-ins plus ``paths`` (one path, several, or None) and make it the catalog every lookup
    uses by default (the CLI calls this once for ``--catalog``)."""
    global _ACTIVE
    if paths is None:
        paths = ()
    elif isinstance(paths, (str, Path)):
        paths = (paths,)
    _ACTIVE = load_catalog(paths)
    return _ACTIVE


def active_catalog() -> Catalog:
    """The catalog set by :func:`use_catalogs`, else the built-in one (loaded once)."""
    global _ACTIVE
    if _ACTIVE is None:
        _ACTIVE = load_catalog()
    return _ACTIVE


def resolve(catalog: Catalog | None) -> Catalog:
    """``catalog`` if given, else :func:`active_catalog`."""
    return catalog if catalog is not None else active_catalog()
