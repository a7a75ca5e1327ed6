"""Choosing the hourly price of a measurement from CLI options, and adding the $/Mtok fields.

Order: ``--price-per-gpu-hour``, then ``--price-per-instance-hour`` ÷ ``--gpus-per-instance``, then
``--price-from NAME``, then the catalog's default price for the detected device (GPU: its on-demand
per-GPU row; CPU: per-vCPU price × the torch threads used). No price found is not an error: the
record then carries ``usd_per_hour: null`` and says why, rather than a guessed figure.
"""

from __future__ import annotations

import argparse

from tokencost.catalog import use_catalogs
from tokencost.cost import usd_per_gpu_hour_from_instance, usd_per_mtok
from tokencost.errors import CostError
from tokencost.prices import default_price_for_device, price_from_name


def _device_identity(device_type: str, device) -> tuple[str | None, int | None]:
    """(GPU name as the driver reports it, CPU threads used) of a torch device."""
    import torch

    if device_type == "cuda":
        return torch.cuda.get_device_name(device), None
    return None, torch.get_num_threads()


def resolve_price(args: argparse.Namespace, *, device_type: str, device=None) -> dict:
    """``{"usd_per_hour": float | None, "price_source": str}`` for the device that is measured.

    Raises:
        CostError: an instance price without its GPU count, or an unknown ``--price-from`` name.
    """
    if getattr(args, "catalog", None):
        use_catalogs(args.catalog)
    if args.gpus_per_instance is not None and args.price_per_instance_hour is None:
        raise CostError("--gpus-per-instance needs --price-per-instance-hour")
    if args.price_per_gpu_hour is not None:
        if args.price_per_instance_hour is not None:
            raise CostError("give either --price-per-gpu-hour or --price-per-instance-hour, not both")
        return {"usd_per_hour": args.price_per_gpu_hour, "price_source": "--price-per-gpu-hour (user)"}
    if args.price_per_instance_hour is not None:
        if args.gpus_per_instance is None:
            raise CostError("--price-per-instance-hour needs --gpus-per-instance: throughput is per GPU, so the "
                            "instance price must be split over its GPUs")
        per_gpu = usd_per_gpu_hour_from_instance(args.price_per_instance_hour, args.gpus_per_instance)
        return {"usd_per_hour": per_gpu, "price_source": f"--price-per-instance-hour {args.price_per_instance_hour} "
                f"÷ {args.gpus_per_instance} GPUs (user)"}
    name, threads = _device_identity(device_type, device)
    if args.price_from:
        quote = price_from_name(args.price_from, cpu_threads=threads)
    else:
        quote = default_price_for_device(name, device_type, cpu_threads=threads)
    if quote is None:
        return {"usd_per_hour": None, "price_source": f"no catalog price for {name or device_type}; pass "
                "--price-per-gpu-hour"}
    return {"usd_per_hour": quote.usd_per_gpu_hour, "price_source": _describe(quote)}


def _describe(quote) -> str:
    what = f"{quote.name}: {quote.provider} {quote.tier}"
    if quote.cpu_threads:
        what += f", ${quote.usd_per_vcpu_hour:.4g}/vCPU-h × {quote.cpu_threads} threads"
    return f"{what} ({quote.source}, {quote.date})"


def add_cost_fields(record: dict, price: dict) -> dict:
    """Add ``usd_per_hour``, ``price_source``, ``usd_per_mtok_output`` (from decode throughput) and
    ``usd_per_mtok_input`` (from prefill throughput) to a result record, in place."""
    record.update(price)
    hourly = price["usd_per_hour"]
    record["usd_per_mtok_output"] = usd_per_mtok(hourly, record["output_tok_per_s"]) if hourly else None
    record["usd_per_mtok_input"] = usd_per_mtok(hourly, record["prefill_tok_per_s"]) if hourly else None
    return record
