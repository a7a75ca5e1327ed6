"""Glue between the profiler (measurement, torch) and the cost layer (prices, no torch).

The profiler never sees a price; the cost layer never imports torch. This module, used only by the
CLI, runs a measurement and adds the ``usd_*`` fields to its record.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from tokencost.cli.pricing import add_cost_fields, resolve_price


_TENSOR_PRECISIONS = {"bfloat16": "bf16", "float16": "fp16"}


def device_peaks(device, dtype):
    """Roofline ceilings of ``device`` for ``dtype`` as :class:`profiler.kernel_bench.Peaks`.

    Bandwidth: the catalog's datasheet figure for a known GPU, else a short measurement (CPU, or a GPU
    missing from the catalog, reported as such, never guessed). Compute: the catalog's dense bf16/fp16
    tensor peak for a known GPU at those dtypes; None with the reason elsewhere (CPU, fp32, unknown GPU).
    """
    import torch

    from profiler.bandwidth import measure_read_bandwidth
    from profiler.kernel_bench import Peaks
    from tokencost.hardware import lookup_gpu

    name = str(dtype).removeprefix("torch.")
    if device.type != "cuda":
        bw = measure_read_bandwidth(device)
        return Peaks(None, "unknown: no datasheet compute peak for a CPU; `tokencost kernels --calibrate` "
                     "measures a matmul rate", bw.bytes_per_s, f"measured: {bw.method}")
    gpu_name = torch.cuda.get_device_name(device)
    spec = lookup_gpu(gpu_name)
    if spec is None:
        bw = measure_read_bandwidth(device)
        return Peaks(None, f"unknown: GPU {gpu_name!r} is not in the catalog",
                     bw.bytes_per_s, f"measured, GPU {gpu_name!r} is not in the catalog: {bw.method}")
    where = f"datasheet: {spec.name} ({spec.source}, {spec.date})"
    if name not in _TENSOR_PRECISIONS:
        return Peaks(None, f"unknown: the catalog lists dense bf16/fp16 tensor peaks only, not {name}",
                     spec.bandwidth_bytes_per_s, where)
    flop, column = spec.peak_flops_per_s(_TENSOR_PRECISIONS[name])
    return Peaks(flop, f"{where}, {column}", spec.bandwidth_bytes_per_s, where)


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


_POOL = None


def measure_spec(spec, price: dict, peaks, progress=None) -> dict:
    """Measure ``spec`` and add the cost fields; ``peaks`` from :func:`device_peaks`. Weights are reused
    between calls with the same model."""
    from profiler.runner import ModelPool, run_point

    global _POOL
    _POOL = _POOL or ModelPool()
    record = run_point(spec, bandwidth_bytes_per_s=peaks.bandwidth_bytes_per_s, bandwidth_source=peaks.bandwidth_source,
                       peak_flop_per_s=peaks.flop_per_s, peak_flop_source=peaks.flop_source,
                       progress=progress, reuse=_POOL)
    add_cost_fields(record, price)
    return record


def warn_interpreter_up_front(ops: dict[str, str], device) -> None:
    """Before a run that uses the Triton interpreter starts: say that it is slow and not a timing."""
    from profiler.runner import interpreted_ops

    simulated = interpreted_ops(ops, device)
    if simulated:
        print(f"tokencost: warning: {', '.join(simulated)} will run on the Triton interpreter (TRITON_INTERPRET=1): "
              "a CPU simulation for correctness, often seconds to minutes per decode step for a real model; "
              "its timings are not the kernels' performance (a tiny --config keeps it short)", file=sys.stderr)


def measure_and_price(spec, args: argparse.Namespace) -> dict:
    """Measure ``spec`` (a RunSpec) on its device and return the priced result record."""
    from profiler.backends import resolve
    from profiler.runner import preflight, resolve_device, resolve_dtype

    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)  # fail fast on bad options, before any output
    ops = resolve(spec.backend, dict(spec.op_overrides))
    preflight(spec, device, dtype)
    price = resolve_price(args, device_type=device.type, device=device)
    peaks = device_peaks(device, dtype)
    warn_interpreter_up_front(ops.describe(), device)
    print(f"measuring {spec.cfg.name} on {device} (batch {spec.batch_size}, prompt {spec.prompt_len}, "
          f"gen {spec.gen_len}, backend {spec.backend})", file=sys.stderr)
    with progress_display(spec.cfg.name) as update:
        record = measure_spec(spec, price, peaks, progress=update)
    if price.get("price_warning"):
        record["warnings"].append(price["price_warning"])
    for warning in record.get("warnings", []):
        print(f"tokencost: warning: {warning}", file=sys.stderr)
    return record


_CLAIM_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}


def claim_run_spec(claim, local_gpu_name: str | None):
    """The RunSpec that reproduces ``claim`` on this machine, or a ValueError saying why it cannot.

    The local GPU must be the claim's GPU (exact catalog match of the driver name), the model a preset
    or config the decode loop builds, the precision one the loop runs (bf16/fp16), and batch (or
    concurrency), input and output lengths must be stated. One local GPU runs the claim's per-GPU share.
    """
    from profiler.presets import resolve_model
    from profiler.runner import RunSpec
    from tokencost.hardware import lookup_gpu

    spec = lookup_gpu(local_gpu_name) if local_gpu_name else None
    if spec is None or spec.name != claim.gpu:
        raise ValueError(f"--measure needs a local {claim.gpu}; this machine has "
                         f"{local_gpu_name or 'no CUDA GPU'}")
    dtype = _CLAIM_DTYPES.get((claim.precision or "").lower())
    if dtype is None:
        raise ValueError(f"--measure runs bf16 or fp16 only; the claim is {claim.precision or 'of unstated precision'}")
    batch = claim.batch_size or claim.concurrency
    if not (batch and claim.input_len and claim.output_len):
        raise ValueError("--measure needs the claim's batch size (or concurrency), input and output lengths")
    if claim.gpus != 1:
        raise ValueError(f"--measure runs one GPU; the claim uses {claim.gpus} (tensor parallelism is not modelled)")
    cfg = resolve_model(claim.model_preset, claim.config_path)
    return RunSpec(cfg=cfg, batch_size=batch, prompt_len=claim.input_len, gen_len=claim.output_len,
                   device="cuda", dtype=dtype)


def measure_claim(claim) -> dict:
    """Run the setup of a vendor claim on the local GPU (``tokencost validate --measure``) and return
    the measured figures in the claim's terms (output tok/s per GPU, TTFT, TPOT, MBU).

    Raises:
        ValueError: the claim cannot be reproduced here (see :func:`claim_run_spec`).
    """
    import torch

    from profiler.runner import run_point

    local = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    spec = claim_run_spec(claim, local)
    peaks = device_peaks(torch.device("cuda"), getattr(torch, spec.dtype))
    with progress_display(f"claim {claim.claim_id}") as update:
        record = run_point(spec, bandwidth_bytes_per_s=peaks.bandwidth_bytes_per_s,
                           bandwidth_source=peaks.bandwidth_source, peak_flop_per_s=peaks.flop_per_s,
                           peak_flop_source=peaks.flop_source, progress=update)
    keys = ("device_name", "dtype", "batch_size", "prompt_len", "gen_len", "ttft_s", "tpot_s", "output_tok_per_s",
            "prefill_tok_per_s", "mbu", "mfu", "roofline_output_tok_per_s", "roofline_bound")
    return {k: record[k] for k in keys}
