"""``tokencost compare``: the same model, weights and prompt measured with two or more op backends.

Each ``--backend`` is measured as ``tokencost run`` measures (:func:`profiler.runner.run_point`), one
after the other in one process; the weights are built once and reused, only the op bundle changes
(``ModelPool`` + ``Transformer.set_ops``). ``--op OP=BACKEND`` overrides apply to every backend
measured. Every backend is resolved before anything is measured, so one that cannot run here (triton
on a CPU without the interpreter) is a one-line error. Output: a table of tok/s, TPOT, TTFT, MBU and
$/Mtok per backend with each one's ratio and % change against the first (the baseline), then one JSON
object as the last stdout line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from tokencost.cli.common import add_price_args, non_negative_int, positive_int, print_json_line, write_json
from tokencost.cli.run_cmd import add_model_args

# (record key, label, unit scale, unit, higher is better)
METRICS: tuple[tuple[str, str, float, str, bool], ...] = (
    ("output_tok_per_s", "decode output tok/s", 1.0, "", True),
    ("prefill_tok_per_s", "prefill input tok/s", 1.0, "", True),
    ("tpot_s", "TPOT (median)", 1e3, " ms", False),
    ("ttft_s", "TTFT", 1e3, " ms", False),
    ("mbu", "MBU", 100.0, " %", True),
    ("usd_per_mtok_output", "$/Mtok output", 1.0, "", False),
    ("usd_per_mtok_input", "$/Mtok input", 1.0, "", False),
)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", conflict_handler="resolve",
                       help="measure one model with several backends and print tok/s and $/Mtok side by side",
                       description="Measure the same model, weights and prompt with each --backend (the first is "
                                   "the baseline) and print tok/s, TPOT and $/Mtok with the differences.")
    add_model_args(p)
    # Replaces run's single --backend (conflict_handler="resolve").
    p.add_argument("--backend", action="append", default=[], metavar="NAME",
                   help="a backend to measure: torch, triton or a registered variant (give two or more; "
                        "the first is the baseline)")
    p.add_argument("--prompt-len", type=positive_int, default=128, help="input tokens per sequence")
    p.add_argument("--gen-len", type=positive_int, default=32, help="output tokens per sequence (>= 2)")
    p.add_argument("--warmup-steps", type=non_negative_int, default=3, help="untimed decode steps before timing")
    add_price_args(p)
    p.add_argument("--json", metavar="PATH", help="also write the comparison to PATH")
    return p


def _specs(args: argparse.Namespace) -> list:
    """One RunSpec per backend, every option checked (nothing measured yet).

    Raises:
        ValueError: fewer than two distinct backends, or any bad option (unknown or unavailable backend,
            sizes, device, dtype, overrides).
    """
    from profiler.backends import resolve
    from profiler.runner import check_triton_ops, check_positions, resolve_device, resolve_dtype
    from tokencost.cli.run_cmd import spec_from_args

    backends = args.backend
    if len(backends) < 2:
        raise ValueError("compare needs at least two --backend options, e.g. --backend torch --backend triton")
    if len(set(backends)) != len(backends):
        raise ValueError(f"--backend given twice: {', '.join(backends)}")
    base = spec_from_args(args, backend=backends[0])
    base.settings().validate()
    check_positions(base)
    device = resolve_device(base.device)
    dtype = resolve_dtype(base.dtype, device)
    specs = [dataclasses.replace(base, backend=b) for b in backends]
    for spec in specs:
        ops = resolve(spec.backend, dict(spec.op_overrides))  # BackendUnavailableError / ProfilerError here
        check_triton_ops(ops.describe(), spec.cfg, device, dtype)
    return specs


# Metrics computed from the decode steps (one sample per step); the others come from the one prefill.
_DECODE_KEYS = frozenset({"output_tok_per_s", "tpot_s", "mbu", "usd_per_mtok_output"})
_MIN_STEPS_FOR_VERDICT = 4


def step_noise(record: dict) -> float | None:
    """Relative interquartile range of a record's decode step times, (p75 − p25) ÷ median; None with
    fewer than 4 steps."""
    import statistics

    steps = record.get("step_times_s") or []
    if len(steps) < _MIN_STEPS_FOR_VERDICT:
        return None
    q1, median, q3 = statistics.quantiles(steps, n=4, method="inclusive")
    return (q3 - q1) / median if median > 0 else None


def _verdict(key: str, ratio: float | None, higher_better: bool, noise: float | None) -> str:
    if ratio is None:
        return "n/a"
    if key not in _DECODE_KEYS:
        return "one sample each"  # TTFT and prefill come from one prefill per backend
    if noise is None:
        return "too few decode steps"
    if abs(ratio - 1) <= noise:
        return "within noise"
    return "better" if (ratio > 1) == higher_better else "worse"


def _simulated(record: dict) -> bool:
    """True when some op of the record ran on the Triton interpreter (triton ops on a CPU): its times
    are a correctness simulation, not a performance to compare."""
    return str(record.get("device", "")).startswith("cpu") and "triton" in (record.get("ops") or {}).values()


def differences(records: list[dict]) -> dict[str, dict[str, dict]]:
    """Per non-baseline backend and metric: ``ratio`` (value ÷ baseline value), ``pct_change``
    ((ratio − 1) × 100), both None where either value is missing or the baseline is zero, and a
    ``verdict``. Decode metrics are called "better" or "worse" only when the ratio differs from 1 by
    more than the step-time noise (the larger relative interquartile range of the two backends' decode
    steps, ``noise_pct``), else "within noise"; prefill metrics rest on one prefill per backend and
    get no better/worse verdict; a pair in which either ran ops on the Triton interpreter gets "not
    comparable (interpreter)"."""
    base = records[0]
    base_noise = step_noise(base)
    out = {}
    for r in records[1:]:
        r_noise = step_noise(r)
        noise = None if base_noise is None or r_noise is None else max(base_noise, r_noise)
        diff = {}
        for key, _label, _scale, _unit, higher in METRICS:
            a, b = base.get(key), r.get(key)
            ratio = b / a if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else None
            verdict = ("not comparable (interpreter)" if ratio is not None and (_simulated(base) or _simulated(r))
                       else _verdict(key, ratio, higher, noise))
            diff[key] = {"ratio": ratio, "pct_change": None if ratio is None else (ratio - 1) * 100,
                         "verdict": verdict,
                         "noise_pct": None if noise is None or key not in _DECODE_KEYS else noise * 100}
        out[r["backend"]] = diff
    return out


def _measure_all(specs: list, args: argparse.Namespace) -> list[dict]:
    from profiler.runner import preflight, resolve_device, resolve_dtype
    from profiler.backends import resolve
    from profiler.variant_check import check_variants
    from tokencost.cli.measure_hook import device_peaks, measure_spec, progress_display, warn_interpreter_up_front
    from tokencost.cli.pricing import resolve_price

    device = resolve_device(specs[0].device)
    price = resolve_price(args, device_type=device.type, device=device)
    dtype = resolve_dtype(specs[0].dtype, device)
    preflight(specs[0], device, dtype)  # a point that cannot fit fails before anything is measured
    peaks = device_peaks(device, dtype)
    for spec in specs:  # every backend's variants probed before the first one is measured
        ops = resolve(spec.backend, dict(spec.op_overrides))
        check_variants(ops, spec.cfg, device, dtype)
        warn_interpreter_up_front(ops.describe(), device)
    records = []
    for spec in specs:
        print(f"measuring {spec.cfg.name} on {device} with backend {spec.backend} (batch {spec.batch_size}, "
              f"prompt {spec.prompt_len}, gen {spec.gen_len})", file=sys.stderr)
        with progress_display(f"{spec.cfg.name} [{spec.backend}]") as update:
            records.append(measure_spec(spec, price, peaks, progress=update))
    return records


def run(args: argparse.Namespace) -> int:
    specs = _specs(args)
    records = _measure_all(specs, args)
    for r in records:
        for warning in r.get("warnings", []):
            print(f"tokencost: warning ({r['backend']}): {warning}", file=sys.stderr)
    diffs = differences(records)
    payload = {"command": "compare", "model": records[0]["model"], "baseline": records[0]["backend"],
               "backends": [r["backend"] for r in records], "op_overrides": dict(specs[0].op_overrides),
               "differences": diffs, "records": records}
    print_compare_table(payload)
    print_json_line(payload)  # first: a file that fails to write must not cost the measurements
    write_json(args.json, payload)
    return 0


def _value_text(value, scale: float, unit: str) -> str:
    from tokencost.cli.render import _fmt

    return "n/a" if value is None else _fmt(value * scale, unit, 4)


def _diff_text(d: dict) -> str:
    if d["ratio"] is None:
        return "n/a"
    pct = d["pct_change"]
    return f"×{d['ratio']:.3g} ({'+' if pct >= 0 else '−'}{abs(pct):.3g} %, {d['verdict']})"


def print_compare_table(payload: dict) -> None:
    """Metrics as rows; per backend its value, and for each non-baseline its ratio and % change."""
    from rich.table import Table

    from tokencost.cli.render import Console

    records, base = payload["records"], payload["baseline"]
    r0 = records[0]
    t = Table(title=f"{r0['model']} on {r0['device_name']} ({r0['device']}, {r0['dtype']}), batch {r0['batch_size']}, "
                    f"prompt {r0['prompt_len']}, gen {r0['gen_len']}: backends compared to {base}")
    t.add_column("metric")
    for r in records:
        t.add_column(r["backend"], justify="right")
    for r in records[1:]:
        t.add_column(f"{r['backend']} vs {base}", justify="right")
    for key, label, scale, unit, _higher in METRICS:
        cells = [_value_text(r.get(key), scale, unit) for r in records]
        cells += [_diff_text(payload["differences"][r["backend"]][key]) for r in records[1:]]
        t.add_row(label, *cells)
    console = Console()
    console.print(t)
    price = r0.get("usd_per_hour")
    console.print(f"price: ${price:.4g}/h ({r0['price_source']})" if price else f"price: n/a ({r0['price_source']})",
                  highlight=False, markup=False)
    for r in records[1:]:
        noise = payload["differences"][r["backend"]]["tpot_s"]["noise_pct"]
        verdicts = (f"better/worse only beyond the decode step-time noise ({noise:.1f} %, the larger relative "
                    "IQR of the steps)" if noise is not None else
                    f"no better/worse verdict: it needs >= {_MIN_STEPS_FOR_VERDICT} decode steps per backend "
                    f"(--gen-len >= {_MIN_STEPS_FOR_VERDICT + 1})")
        console.print(f"{r['backend']} vs {base}: {verdicts}; TTFT and prefill rest on one prefill each",
                      highlight=False, markup=False)
    for r in records:
        ops = ", ".join(f"{op}={b}" for op, b in r["ops"].items())
        console.print(f"{r['backend']}: ops {ops}", highlight=False, markup=False)
