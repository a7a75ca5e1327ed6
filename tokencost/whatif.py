"""What-if arithmetic on a decode-step breakdown: Amdahl's law, then tok/s and $/Mtok (torch-free).

A breakdown (``profiler.breakdown``) gives the time per decode step of each op class, or of finer
rows named ``"class.part"`` (``"matmul.qkv_proj"``). Speeding class c up by a factor f_c > 0
(f_c < 1 slows it down) changes only that class's time, so the new step time is Amdahl's law
(G. Amdahl, "Validity of the single processor approach to achieving large scale computing
capabilities", AFIPS 1967) in its per-part form:

    new_step_s = Σ_c time_c / f_c

A speed-up may also name one row (``"attention.decode=8"``); a row's own factor overrides its
class's. ``"roofline"`` instead of a factor sets each row of the class to its bandwidth bound,
bytes ÷ peak bandwidth (metrics.md §3.1), or keeps its measured time where that is already faster
(with a warning: the byte model or bandwidth does not fit); the caller passes the bound times. Throughput of the
device is batch ÷ step time and per sequence 1 ÷ step time (metrics.md §1.2, SGLang
``bench_one_batch``); $/Mtok is :func:`tokencost.cost.usd_per_mtok` of the device throughput.

The model assumes the classes run one after another and that speeding one up leaves the others as
they are: true of a decode step on one CUDA stream or one CPU thread pool. Overlap that a faster
launch path would bring (CUDA graphs hiding launch gaps) is the "other" class's factor.

Every function raises :class:`~tokencost.errors.CostError` for bad input.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Union

from tokencost.cost import usd_per_mtok
from tokencost.errors import CostError

# Must equal profiler.breakdown.OP_CLASSES (tests/test_breakdown.py checks it).
OP_CLASSES: tuple[str, ...] = ("matmul", "attention", "norm", "rope", "activation", "sampling", "embed",
                               "other")
ROOFLINE = "roofline"
Speedup = Union[float, str]  # a factor > 0, or ROOFLINE


def class_of(name: str) -> str:
    """``"matmul.qkv_proj"`` -> ``"matmul"``; a class name maps to itself."""
    return name.split(".", 1)[0]


def _check_class(name: str) -> str:
    if name not in OP_CLASSES:
        raise CostError(f"unknown op class {name!r}; classes are {', '.join(OP_CLASSES)}")
    return name


def _check_name(name: str) -> str:
    """A class name, or ``class.part`` of a known class."""
    _check_class(class_of(name))
    if "." in name and not name.split(".", 1)[1]:
        raise CostError(f"empty row name in {name!r}")
    return name


def _finite(value, minimum: float, strict: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > minimum if strict else value >= minimum


def _factor(name: str, value) -> Speedup:
    if isinstance(value, str):
        if value.strip().lower() == ROOFLINE:
            return ROOFLINE
        try:
            value = float(value)
        except ValueError:
            raise CostError(f"speedup of {name} must be a number > 0 or 'roofline', got {value!r}") from None
    if not _finite(value, 0.0, strict=True):
        raise CostError(f"speedup of {name} must be a finite number > 0 or 'roofline', got {value!r}")
    return float(value)


# The op names of the decode loop's registry (profiler/backends.py), accepted for what they time in a
# decode step: a class, or the one row of it that is the op (attention_decode is the kernel, not the
# KV-cache write beside it). attention_prefill has no part in a decode step and is refused.
OP_NAME_CLASSES: dict[str, str] = {"linear": "matmul", "attention_decode": "attention.decode", "rmsnorm": "norm",
                                   "swiglu": "activation"}


def parse_speedup(text: str) -> tuple[str, Speedup]:
    """``"attention=2"`` -> ``("attention", 2.0)``; ``"matmul=roofline"`` -> ``("matmul", "roofline")``;
    a row of a class (``"matmul.lm_head=2"``) is accepted too, and an op name stands for its class
    (``"linear=2"`` -> ``("matmul", 2.0)``, :data:`OP_NAME_CLASSES`).

    Raises:
        CostError: no ``=``, an unknown class, or a factor that is neither a finite number > 0 nor
            "roofline".
    """
    if "=" not in text:
        raise CostError(f"--speedup expects CLASS=FACTOR (e.g. attention=2 or attention=roofline), "
                        f"got {text!r}")
    name, value = (part.strip() for part in text.split("=", 1))
    if not name:
        raise CostError(f"--speedup {text!r} names no class (expected CLASS=FACTOR, e.g. attention=2)")
    if name == "attention_prefill":
        raise CostError("--speedup attention_prefill: the what-if models the decode step, which has no prefill "
                        "attention; use attention_decode (or attention)")
    name = OP_NAME_CLASSES.get(name, name)
    return _check_name(name), _factor(name, value)


def parse_speedups(items: Iterable[str]) -> dict[str, Speedup]:
    """Parse repeated ``CLASS=FACTOR`` options (:func:`parse_speedup`); a class given twice is an error
    (no silent last-wins)."""
    out: dict[str, Speedup] = {}
    given: dict[str, str] = {}
    for item in items:
        name, factor = parse_speedup(item)
        if name in out:
            raise CostError(f"--speedup {name} given twice ({given[name]} and {item.strip()})")
        out[name], given[name] = factor, item.strip()
    return out


def check_roofline_classes(speedups: Mapping[str, Speedup], supported: Iterable[str]) -> None:
    """Raises CostError when "roofline" is asked of a class (or a row of one) without a byte model."""
    supported = tuple(supported)
    for name, factor in speedups.items():
        if factor == ROOFLINE and class_of(name) not in supported:
            raise CostError(f"{name}=roofline: no byte model for {class_of(name)}; roofline applies to "
                            f"{', '.join(supported)}")


def check_names(speedups: Mapping[str, Speedup], names: Iterable[str]) -> None:
    """Raises CostError when a speed-up names neither a class nor one of ``names`` (breakdown rows)."""
    names = tuple(names)
    for key in speedups:
        if key not in OP_CLASSES and key not in names:
            rows = ", ".join(n for n in names if "." in n)
            raise CostError(f"--speedup {key}: no such class or row; classes are {', '.join(OP_CLASSES)}; "
                            f"rows {rows}")


def check_times(times_s: Mapping[str, float]) -> dict[str, float]:
    """Validate a breakdown: names of known classes (or ``class.part``), finite times >= 0, sum > 0."""
    out = {}
    for name, t in times_s.items():
        _check_class(class_of(name))
        if not _finite(t, 0.0, strict=False):
            raise CostError(f"time of {name} must be a finite number of seconds >= 0, got {t!r}")
        out[name] = float(t)
    if sum(out.values()) <= 0:
        raise CostError("a breakdown needs a positive total step time")
    return out


def _parse_all(speedups: Mapping[str, Speedup], names: Iterable[str]) -> dict[str, Speedup]:
    parsed = {_check_name(key): _factor(key, f) for key, f in speedups.items()}
    check_names(parsed, names)
    return parsed


def _factor_of(name: str, parsed: Mapping[str, Speedup]) -> Speedup:
    """A row's own factor, else its class's, else 1."""
    return parsed.get(name, parsed.get(class_of(name), 1.0))


def amdahl_step_s(times_s: Mapping[str, float], factors: Mapping[str, float]) -> float:
    """Σ_c time_c / f_c over the entries of ``times_s`` (class or row names); entries without a factor
    (of their own or of their class) keep their time."""
    times = check_times(times_s)
    parsed = _parse_all(factors, times)
    if ROOFLINE in parsed.values():
        raise CostError("amdahl_step_s takes numeric factors; use new_times_s for 'roofline'")
    return sum(t / _factor_of(name, parsed) for name, t in times.items())


def new_times_s(times_s: Mapping[str, float], speedups: Mapping[str, Speedup],
                roofline_s: Mapping[str, float] | None = None) -> dict[str, float]:
    """Time of each entry after the speed-ups: ``t / f`` (the entry's own factor, else its class's), or
    ``roofline_s[name]`` where that factor is "roofline".

    Raises:
        CostError: bad times or factors, a speed-up naming no class or entry, or "roofline" for an
            entry without a bound time.
    """
    times = check_times(times_s)
    parsed = _parse_all(speedups, times)
    out = {}
    for name, t in times.items():
        factor = _factor_of(name, parsed)
        if factor != ROOFLINE:
            out[name] = t / factor
        elif roofline_s is None or name not in roofline_s:
            raise CostError(f"{class_of(name)}=roofline: no bandwidth-bound time for {name}")
        elif not _finite(roofline_s[name], 0.0, strict=False):
            raise CostError(f"roofline time of {name} must be a finite number of seconds >= 0, "
                            f"got {roofline_s[name]!r}")
        else:  # a row already faster than its bound keeps its measured time (see _roofline_warnings)
            out[name] = min(t, float(roofline_s[name]))
    return out


def class_totals_s(times_s: Mapping[str, float]) -> dict[str, float]:
    """Entries folded into every class of :data:`OP_CLASSES` (0 for a class with no entry)."""
    out = dict.fromkeys(OP_CLASSES, 0.0)
    for name, t in times_s.items():
        out[_check_class(class_of(name))] += t
    return out


@dataclasses.dataclass(frozen=True)
class WhatIf:
    """Measured vs predicted decode step of a batch of ``batch_size`` sequences (times in seconds)."""

    batch_size: int
    speedups: dict[str, Speedup]
    old_times_s: dict[str, float]
    new_times_s: dict[str, float]
    usd_per_hour: float | None = None
    warnings: tuple[str, ...] = ()

    @property
    def old_step_s(self) -> float:
        return sum(self.old_times_s.values())

    @property
    def new_step_s(self) -> float:
        return sum(self.new_times_s.values())

    @property
    def step_speedup(self) -> float:
        """old step ÷ new step (> 1: faster)."""
        return self.old_step_s / self.new_step_s

    def tok_per_s(self, which: str = "new") -> float:
        """Output tokens/s of the device: batch ÷ step time (``which`` = "old" or "new")."""
        return self.batch_size / (self.old_step_s if which == "old" else self.new_step_s)

    def usd_per_mtok(self, which: str = "new") -> float | None:
        """$/Mtok output at ``usd_per_hour`` (None without a price)."""
        return None if self.usd_per_hour is None else usd_per_mtok(self.usd_per_hour, self.tok_per_s(which))

    def class_factors(self) -> dict[str, float | None]:
        """Effective speed-up of each class, old ÷ new time (None where either is 0)."""
        old, new = class_totals_s(self.old_times_s), class_totals_s(self.new_times_s)
        return {c: (old[c] / new[c] if old[c] > 0 and new[c] > 0 else None) for c in OP_CLASSES}

    def as_dict(self) -> dict:
        """JSON-ready summary; keys carry their units."""
        old_step, new_step = self.old_step_s, self.new_step_s
        return {
            "speedups": dict(self.speedups), "class_factors": self.class_factors(),
            "old_class_times_s": class_totals_s(self.old_times_s),
            "new_class_times_s": class_totals_s(self.new_times_s), "new_row_times_s": dict(self.new_times_s),
            "old_step_s": old_step, "new_step_s": new_step, "step_speedup": self.step_speedup,
            "old_output_tok_per_s": self.tok_per_s("old"), "new_output_tok_per_s": self.tok_per_s("new"),
            "old_output_tok_per_s_per_seq": 1.0 / old_step, "new_output_tok_per_s_per_seq": 1.0 / new_step,
            "usd_per_hour": self.usd_per_hour, "old_usd_per_mtok_output": self.usd_per_mtok("old"),
            "new_usd_per_mtok_output": self.usd_per_mtok("new"), "warnings": list(self.warnings),
        }


def _total(times: Mapping[str, float], key: str) -> float:
    """Time of a class (all its entries) or of one entry."""
    return sum(t for name, t in times.items() if name == key or class_of(name) == key)


def _roofline_warnings(old: Mapping[str, float], speedups: Mapping[str, Speedup],
                       roofline_s: Mapping[str, float] | None) -> list[str]:
    """Rows measured faster than their bandwidth bound (over 100% of it): kept at their measured time."""
    rows = [name for name in old if _factor_of(name, speedups) == ROOFLINE and roofline_s
            and roofline_s.get(name, 0.0) > old[name]]
    return [f"{name} measured {old[name] * 1e3:.4g} ms is faster than its bandwidth bound "
            f"({roofline_s[name] * 1e3:.4g} ms, {roofline_s[name] / old[name]:.0%} of it): the byte model or the "
            "bandwidth figure does not fit this device (data served from cache?); kept at its measured time"
            for name in rows]


def what_if(times_s: Mapping[str, float], batch_size: int, speedups: Mapping[str, Speedup], *,
            usd_per_hour: float | None = None, roofline_s: Mapping[str, float] | None = None) -> WhatIf:
    """Apply ``speedups`` (class or row -> factor or "roofline") to a breakdown ``times_s`` (seconds per
    decode step, by class or row; their sum is the measured step) and price old and new.

    Raises:
        CostError: bad times, classes, factors, batch size or price; "roofline" without bound times.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CostError(f"batch_size must be a positive integer, got {batch_size!r}")
    if usd_per_hour is not None:
        usd_per_mtok(usd_per_hour, 1.0)  # validates the price
    old = check_times(times_s)
    new = new_times_s(old, speedups, roofline_s)
    if sum(new.values()) <= 0:
        raise CostError("the what-if step time is zero; a class cannot take no time at all")
    parsed = {key: _factor(key, f) for key, f in speedups.items()}
    return WhatIf(batch_size=batch_size, speedups=parsed, old_times_s=old, new_times_s=new,
                  usd_per_hour=usd_per_hour, warnings=tuple(_roofline_warnings(old, parsed, roofline_s)))


__all__ = ["OP_CLASSES", "ROOFLINE", "Speedup", "WhatIf", "amdahl_step_s", "check_names",
           "check_roofline_classes", "check_times", "class_of", "class_totals_s", "new_times_s",
           "parse_speedup", "parse_speedups", "what_if"]
