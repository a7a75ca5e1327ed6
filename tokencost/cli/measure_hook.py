"""Glue between the profiler (measurement, torch) and the cost layer (prices, no torch).

The profiler never sees a price; the cost layer never imports torch. This module, used only by the
CLI, runs a measurement and adds the ``usd_*`` fields to its record.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from tokencost.cli.pricing import add_cost_fields, resolve_price


def device_bandwidth(device) -> tuple[float, str]:
    """Peak bandwidth for the roofline: the catalog's datasheet figure for a known GPU, else a short
    measurement (CPU, or a GPU missing from the catalog — reported as such, never guessed)."""
    from profiler.bandwidth import measure_read_bandwidth
    from tokencost.hardware import lookup_gpu

    if device.type == "cuda":
        import torch

        name = torch.cuda.get_device_name(device)
        spec = lookup_gpu(name)
        if spec is not None:
            return spec.bandwidth_bytes_per_s, f"datasheet: {spec.name} ({spec.source}, {spec.date})"
        m = measure_read_bandwidth(device)
        return m.bytes_per_s, f"measured, GPU {name!r} is not in the catalog: {m.method}"
    m = measure_read_bandwidth(device)
    return m.bytes_per_s, f"measured: {m.method}"


@contextlib.contextmanager
def progress_display(label: str):
    """A rich progress bar on stderr (stdout stays parseable); yields a ``(phase, done, total)`` callback."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=1)

        def update(phase: str, done: int, total: int) -> None:
            bar.update(task, description=f"{label}: {phase}", completed=done, total=max(total, 1))

        yield update
        if not console.is_terminal:
            pass


def measure_and_price(spec, args: argparse.Namespace) -> dict:
    """Measure ``spec`` (a RunSpec) on its device and return the priced result record."""
    from profiler.env import collect_env
    from profiler.backends import resolve
    from profiler.runner import check_positions, resolve_device, resolve_dtype, run_point

    spec.settings().validate()
    check_positions(spec)
    device = resolve_device(spec.device)
    resolve_dtype(spec.dtype, device)  # fail fast on bad options, before any output
    resolve(spec.backend, dict(spec.op_overrides))
    price = resolve_price(args, device_type=device.type, device=device)  # fail fast on a bad price
    bandwidth, bw_source = device_bandwidth(device)
    env = collect_env(device)
    print(f"measuring {spec.cfg.name} on {device} (batch {spec.batch_size}, prompt {spec.prompt_len}, "
          f"gen {spec.gen_len}, backend {spec.backend})", file=sys.stderr)
    with progress_display(spec.cfg.name) as update:
        record = run_point(spec, bandwidth_bytes_per_s=bandwidth, bandwidth_source=bw_source,
                           progress=update, env=env)
    add_cost_fields(record, price)
    for warning in record.get("warnings", []):
        print(f"tokencost: warning: {warning}", file=sys.stderr)
    return record


def measure_claim(claim) -> dict:
    """Run the setup of a vendor claim on the local GPU (``tokencost validate --measure``)."""
    raise ValueError("--measure is wired by the lead; not available yet")
