"""SI prefixes for numbers shown to people (torch-free): one rule for every table and plot."""

from __future__ import annotations

from typing import Callable

SI_PREFIXES: tuple[tuple[float, str], ...] = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si_prefixed(value: float, plain: Callable[[float], str]) -> str:
    """``value`` scaled by the largest SI prefix its 3-significant-digit rounding reaches (so 999,960
    is "1 M", not "1,000 k"), the mantissa written by ``plain``: 2.88 k, 113 M, 13.2 T."""
    rounded = abs(float(f"{value:.3g}"))
    for scale, prefix in SI_PREFIXES:
        if rounded >= scale:
            return f"{plain(value / scale)} {prefix}"
    return plain(value)
