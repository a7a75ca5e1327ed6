"""Choosing the hourly price of a measurement from CLI options, and adding the $/Mtok fields.

Order: ``--price-per-gpu-hour``, then ``--price-per-instance-hour`` ÷ ``--gpus-per-instance``, then
``--price-from NAME``, then the catalog's default price for the detected device (GPU: its on-demand
per-GPU row; CPU: per-vCPU price × the torch threads used). No price found is not an error: the
record then carries ``usd_per_hour: null`` and says why, rather than a guessed figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys

from tokencost.catalog import active_catalog, use_catalogs
from tokencost.cost import check_usd_per_hour, request_cost, usd_per_gpu_hour_from_instance, usd_per_mtok
from tokencost.errors import CostError
from tokencost.prices import api_price_from_name, default_price_for_device, list_api_prices, price_from_name


def _device_identity(device_type: str, device) -> tuple[str | None, int | None]:
    """(GPU name as the driver reports it, CPU threads used) of a torch device."""
    import torch

    if device_type == "cuda":
        return torch.cuda.get_device_name(device), None
    return None, torch.get_num_threads()


def resolve_price(args: argparse.Namespace, *, device_type: str, device=None) -> dict:
    """``{"usd_per_hour": float | None, "price_source": str}`` for the device that is measured.

    Raises:
        CostError: an instance price without its GPU count, a price over ``tokencost.cost.MAX_USD_PER_HOUR``,
            or an unknown ``--price-from`` name.
    """
    if getattr(args, "catalog", None):
        use_catalogs(args.catalog)
    given = [name for name, value in (("--price-per-gpu-hour", args.price_per_gpu_hour),
                                      ("--price-per-instance-hour", args.price_per_instance_hour),
                                      ("--price-from", args.price_from),
                                      ("--price-owned", getattr(args, "price_owned", False))) if value]
    if len(given) > 1:
        raise CostError(f"give one price, not {' and '.join(given)}")
    if args.gpus_per_instance is not None and args.price_per_instance_hour is None:
        raise CostError("--gpus-per-instance needs --price-per-instance-hour")
    if getattr(args, "tco_param", None) and not getattr(args, "price_owned", False):
        raise CostError("--tco-param needs --price-owned")
    if args.price_per_gpu_hour is not None:
        return {"usd_per_hour": check_usd_per_hour("--price-per-gpu-hour", args.price_per_gpu_hour),
                "price_source": "--price-per-gpu-hour (user)"}
    if args.price_per_instance_hour is not None:
        check_usd_per_hour("--price-per-instance-hour", args.price_per_instance_hour)
        if args.gpus_per_instance is None:
            raise CostError("--price-per-instance-hour needs --gpus-per-instance: throughput is per GPU, so the "
                            "instance price must be split over its GPUs")
        per_gpu = usd_per_gpu_hour_from_instance(args.price_per_instance_hour, args.gpus_per_instance)
        return {"usd_per_hour": per_gpu, "price_source": f"--price-per-instance-hour {args.price_per_instance_hour} "
                f"÷ {args.gpus_per_instance} GPUs (user)"}
    name, threads = _device_identity(device_type, device)
    if getattr(args, "price_owned", False):
        return _owned_price(name, args.tco_param)
    if getattr(args, "tco_param", None):
        raise CostError("--tco-param needs --price-owned")
    if args.price_from:
        quote = quote_from_name(args.price_from, cpu_threads=threads)
    else:
        quote = default_price_for_device(name, device_type, cpu_threads=threads)
    if quote is None:
        return {"usd_per_hour": None, "price_source": f"no catalog price for {name or device_type}; pass "
                "--price-per-gpu-hour"}
    price = {"usd_per_hour": quote.usd_per_gpu_hour, "price_source": _describe(quote)}
    mismatch = _hardware_mismatch(quote.device, device_type, name)
    if mismatch:
        price["price_warning"] = mismatch
    return price


def quote_from_name(name: str, cpu_threads: int | None = None):
    """``tokencost.prices.price_from_name`` for ``--price-from``, saying so when ``name`` is an API price
    row (those price tokens, not hardware hours: ``--api-price``).

    Raises:
        CostError: no GPU or CPU price row has this name.
    """
    try:
        return price_from_name(name, cpu_threads=cpu_threads)
    except CostError:
        if any(api.name == name for api in list_api_prices()):
            raise CostError(f"{name!r} is an API price row ($ per Mtok, not per hour): --price-from takes a GPU or "
                            f"CPU row of `tokencost prices`; API rows go to `tokencost run --api-price {name}`") from None
        raise


def api_from_name(name: str):
    """``tokencost.prices.api_price_from_name`` for ``--api-price``, saying so when ``name`` is a GPU or
    CPU price row (those price hardware hours: ``--price-from``).

    Raises:
        CostError: no API price row has this name.
    """
    try:
        return api_price_from_name(name)
    except CostError:
        catalog = active_catalog()
        if catalog.get("prices", name) is None and catalog.get("cpu_prices", name) is None:
            raise
        raise CostError(f"{name!r} is a GPU/CPU price row ($ per hour, not per Mtok): use --price-from {name} to "
                        "price the run with it; --api-price takes a row of `tokencost prices --tier api`") from None


def _name_tokens(name: str) -> list[str]:
    """``"Llama 3.1 8B"`` and ``"llama-3.1-8b"`` → ``["llama", "3", "1", "8", "b"]``."""
    return re.findall(r"[a-z]+|\d+", name.lower())


def same_model(api_model: str, measured: str) -> bool:
    """Whether an API row's model names the measured model: equal name tokens, where one list may
    extend the other (``llama-3.1-8b-instruct``) and an ``x`` in the API name matches any number
    (``Llama 3.x 70B``)."""
    a, m = _name_tokens(api_model), _name_tokens(measured)
    if not a or not m:
        return False
    n = min(len(a), len(m))
    return all(x == y or (x == "x" and y.isdigit()) for x, y in zip(a[:n], m[:n]))


def _api_model_mismatch(api, measured: str | None) -> str | None:
    if measured and same_model(api.model, measured):
        return None
    return (f"the API price {api.name} is for {api.model} but the measurement ran {measured or 'another model'}: "
            "the break-even compares different models")


def _hardware_mismatch(priced: str, device_type: str, device_name: str | None) -> str | None:
    """Say so when a named price row is for other hardware than the one measured (allowed: a user
    may price a CPU run as if it were rented, but the record must not pass for a like-for-like price)."""
    from tokencost.hardware import lookup_gpu

    measured = "cpu" if device_type == "cpu" else getattr(lookup_gpu(device_name or ""), "name", device_name)
    if priced == measured:
        return None
    return f"the price row is for {priced} but the measurement ran on {measured}: $/Mtok prices this throughput at other hardware's rate"


def owned_tco(gpu: str, params: list[tuple[str, str]]):
    """The owned-hardware TCO of catalog GPU ``gpu`` with NAME=VALUE overrides (``tokencost.tco``).

    Raises:
        CostError: unknown GPU or parameter, a value that is not a number, a missing default.
    """
    from tokencost.tco import default_tco_params, owned_usd_per_gpu_hour

    overrides = {}
    for name, text in params:
        try:
            overrides[name] = float(text)
        except ValueError:
            raise CostError(f"--tco-param {name}: expected a number, got {text!r}") from None
    return owned_usd_per_gpu_hour(default_tco_params(gpu, **overrides))


def _owned_price(device_name: str | None, params: list[tuple[str, str]]) -> dict:
    """The owned-hardware price of the measured GPU: ``usd_per_hour`` is per *utilised* GPU-hour (the
    around-the-clock TCO ÷ its utilisation, prices.md §5.1), so $/Mtok at it already pays for the idle
    hours; ``usd_per_gpu_hour_around_the_clock`` is kept beside it for the cost models that apply a
    utilisation themselves (effective $/Mtok, break-even)."""
    from tokencost.hardware import lookup_gpu, unverified_note

    spec = lookup_gpu(device_name or "")
    if spec is None:
        raise CostError(f"--price-owned needs a GPU in the catalog; this device is {device_name or 'a CPU'}")
    tco = owned_tco(spec.name, params)
    check_usd_per_hour("the owned TCO price per GPU-hour (check --tco-param)", tco.usd_per_utilized_gpu_hour)
    u = tco.params.utilization
    price = {"usd_per_hour": tco.usd_per_utilized_gpu_hour, "price_basis": "per utilised GPU-hour",
             "usd_per_gpu_hour_around_the_clock": tco.usd_per_gpu_hour,
             "price_source": f"owned {spec.name}: TCO ${tco.usd_per_gpu_hour:.4g}/GPU-h around the clock ÷ "
                             f"utilization {u:g} = per utilised GPU-hour (tokencost prices --tco {spec.name})",
             "tco": {k: v for k, v in dataclasses.asdict(tco).items() if k != "params"}
             | {"params": dataclasses.asdict(tco.params)}}
    if tco.params.sources.get("power_kw", "").startswith("chip TDP"):
        note = unverified_note(spec, ["power_w"])
        if note:
            price["price_warning"] = f"owned TCO power: {note}"
    return price


def _describe(quote) -> str:
    what = f"{quote.name}: {quote.provider} {quote.tier}"
    if quote.cpu_threads:
        what += f", ${quote.usd_per_vcpu_hour:.4g}/vCPU-h × {quote.cpu_threads} threads"
    return f"{what} ({quote.source}, {quote.date})"


@dataclasses.dataclass(frozen=True)
class CostOptions:
    """The cost-model options of a run, checked before anything is measured."""

    blend: tuple[float, float]
    utilization: float
    billing: str
    spin_up_s: float
    job_output_tokens: float
    api: object | None  # tokencost.prices.ApiPrice


def cost_options(args: argparse.Namespace) -> CostOptions:
    """Validate ``--blend``, ``--utilization``, ``--spin-up-s``, ``--job-mtok``, ``--api-price`` up front.

    Raises:
        CostError / ValueError: a value out of range or an unknown API price name.
    """
    from tokencost.cli.common import parse_blend

    if not 0 < args.utilization <= 1:
        raise CostError(f"--utilization must be in (0, 1], got {args.utilization}")
    if getattr(args, "price_owned", False) and args.utilization != 1.0:
        raise CostError("--price-owned takes its utilisation from the TCO model (the owned price is per utilised "
                        "GPU-hour); set it with --tco-param utilization=F instead of --utilization")
    if not 0 <= args.spin_up_s < float("inf"):
        raise CostError(f"--spin-up-s must be a finite number >= 0, got {args.spin_up_s}")
    if not args.job_mtok * 1e6 < float("inf"):
        raise CostError(f"--job-mtok is too large to count in tokens, got {args.job_mtok}")
    if getattr(args, "catalog", None):
        use_catalogs(args.catalog)
    api = api_from_name(args.api_price) if args.api_price else None
    return CostOptions(parse_blend(args.blend), args.utilization, args.billing, args.spin_up_s,
                       args.job_mtok * 1e6, api)


def add_cost_model_fields(record: dict, opts: CostOptions) -> dict:
    """Cost models on a priced run record, in place: the blended request cost at ``--blend``, the
    effective $/Mtok at ``--utilization``/``--billing``/``--spin-up-s`` for a ``--job-mtok`` job
    (``tokencost.cost.effective_cost``), and break-even against ``--api-price``
    (``tokencost.breakeven``), with a warning when the API row is for another model than the one
    measured. Without a price they are null.

    Both models apply a utilisation themselves, so they start from the price of a paid hour at full
    use (:func:`_full_use_price`): for an owned GPU the around-the-clock TCO, not the per-utilised-hour
    price in ``usd_per_hour`` (which has the TCO utilisation in it already). Break-even compares the
    cost of one request at full use, its prefill plus its share of the decode steps
    (``tokencost.cost.request_cost``), with the API's price for the same request."""
    from tokencost.breakeven import breakeven_from_request_cost

    hourly = record.get("usd_per_hour")
    record["blend_input_output"] = list(opts.blend)
    record.update(effective=None, breakeven=None)
    if not hourly:
        return record
    full_use, utilization, util_source = _full_use_price(record, opts)
    b = record["batch_size"]
    shape = dict(prefill_s=record["ttft_s"] / b, decode_step_s=record["tpot_s"], batch_size=b,
                 input_len=record["prompt_len"], output_len=record["gen_len"], blend=opts.blend)
    record["request_usd_per_mtok_blended"] = request_cost(hourly, **shape).usd_per_mtok_blended
    # The measurement is already made: a cost model that cannot be computed (an overflow from extreme
    # options) becomes a warning and a null field, never an error that would lose the record.
    _add_effective(record, opts, full_use, utilization, util_source)
    if opts.api is not None:
        try:
            per_request = request_cost(full_use, **shape).usd_per_request
            be = breakeven_from_request_cost(per_request, record["prompt_len"], record["gen_len"], opts.api)
            record["breakeven"] = dataclasses.asdict(be) | {"api_model": opts.api.model,
                                                            "usd_per_gpu_hour_full_use": full_use}
        except CostError as exc:
            _warn(record, f"break-even against {opts.api.name} not computed: {exc}")
        _warn(record, _api_model_mismatch(opts.api, record.get("model")))
    return record


def _full_use_price(record: dict, opts: CostOptions) -> tuple[float, float, str]:
    """(price of a paid hour at full use, utilisation, where the utilisation comes from)."""
    around_the_clock = record.get("usd_per_gpu_hour_around_the_clock")
    if around_the_clock:  # owned: --utilization is refused with --price-owned (cost_options)
        return around_the_clock, record["tco"]["params"]["utilization"], "TCO model (--tco-param utilization)"
    return record["usd_per_hour"], opts.utilization, "--utilization"


def _add_effective(record: dict, opts: CostOptions, usd_per_hour: float, utilization: float, source: str) -> None:
    from tokencost.cost import effective_cost

    try:
        eff = effective_cost(usd_per_hour, record["output_tok_per_s"], opts.job_output_tokens,
                             utilization=utilization, spinup_s=opts.spin_up_s, billing=opts.billing)
    except CostError as exc:
        _warn(record, f"effective $/Mtok not computed: {exc}")
        return
    record["effective"] = {"utilization": utilization, "utilization_source": source, "usd_per_hour": usd_per_hour,
                           "billing": opts.billing, "spin_up_s": opts.spin_up_s, "job_output_tokens": eff.tokens,
                           "usd_per_mtok_output_peak": eff.usd_per_mtok_peak,
                           "usd_per_mtok_output_effective": eff.usd_per_mtok_effective,
                           "overhead_ratio": eff.overhead_ratio, "billed_s": eff.billed_s}


def _warn(record: dict, warning: str | None) -> None:
    """Add ``warning`` to the record's warnings and print it on stderr (as the measurement's own are)."""
    if warning:
        record.setdefault("warnings", []).append(warning)
        print(f"tokencost: warning: {warning}", file=sys.stderr)


def add_cost_fields(record: dict, price: dict) -> dict:
    """Add the price and $/Mtok fields to a result record, in place.

    - ``usd_per_mtok_output``: price ÷ (decode output tok/s × 3600) × 1e6, the device's rate while it
      decodes; ``usd_per_mtok_input``: the same from prefill (input) throughput. Each is a per-phase
      rate: adding them would charge the GPU-hour twice (claims.md §4, mistake 5).
    - ``request_usd_per_mtok_*``: one request of this shape (prompt_len in, gen_len out, batch_size
      together) costed by GPU time: its share of the batched prefill for its input tokens and its
      share of the decode steps for its output tokens (``tokencost.cost.request_cost``), with the 3:1
      blended figure.
    - the electricity cost of the measured GPU energy (:func:`_add_energy_cost`), and a warning in
      ``warnings`` when a catalog figure the record uses is unverified (:func:`_unverified_warning`).
    """
    record.update(price)
    _add_energy_cost(record)
    warning = _unverified_warning(record)
    if warning:
        record.setdefault("warnings", []).append(warning)
    hourly = price["usd_per_hour"]
    keys = ("usd_per_mtok_output", "usd_per_mtok_input", "request_usd_per_mtok_input",
            "request_usd_per_mtok_output", "request_usd_per_mtok_blended", "request_usd")
    if not hourly:
        record.update(dict.fromkeys(keys))
        return record
    b = record["batch_size"]
    req = request_cost(hourly, prefill_s=record["ttft_s"] / b, decode_step_s=record["tpot_s"], batch_size=b,
                       input_len=record["prompt_len"], output_len=record["gen_len"])
    record.update(zip(keys, (usd_per_mtok(hourly, record["output_tok_per_s"]),
                             usd_per_mtok(hourly, record["prefill_tok_per_s"]), req.usd_per_mtok_input,
                             req.usd_per_mtok_output, req.usd_per_mtok_blended, req.usd_per_request)))
    return record


_TENSOR_PRECISIONS = {"bfloat16": "bf16", "float16": "fp16"}


def _unverified_warning(record: dict) -> str | None:
    """Name the unverified catalog figures (``GpuSpec.unverified_fields``) a run record was computed
    from: the datasheet bandwidth behind MBU and the roofline, and the dense tensor peak behind MFU."""
    from tokencost.hardware import lookup_gpu, unverified_note

    spec = lookup_gpu(record.get("device_name") or "")
    if spec is None:
        return None
    used = []
    if str(record.get("bandwidth_source", "")).startswith("datasheet"):
        used.append("bandwidth_tb_s")
    precision = _TENSOR_PRECISIONS.get(str(record.get("dtype")))
    if precision and str(record.get("peak_flop_source", "")).startswith("datasheet"):
        used.append(spec.peak_flops_per_s(precision)[1])
    return unverified_note(spec, used)


def _add_energy_cost(record: dict) -> None:
    """Electricity $/Mtok of the decode steps from the measured GPU energy, or None where no energy
    counter exists (never zero): chip energy × PUE × $/kWh (prices.md §5.1; metrics.md §1.5), with the
    survey PUE and $/kWh of the TCO table (``tokencost.tco.chip_energy_params``). The NVML counter
    measures the GPU alone, so the PUE applies whatever the GPU, with or without a TCO capex row."""
    from tokencost.energy import energy_per_output_token
    from tokencost.tco import chip_energy_params

    record["usd_per_mtok_electricity"] = None
    joules, tokens = record.get("gpu_energy_j"), record.get("decode_output_tokens")
    if not joules or not tokens:
        return
    try:
        params = chip_energy_params()
    except CostError as exc:  # a user catalog without the rows: the cost stays unavailable, and says why
        record.setdefault("warnings", []).append(str(exc))
        return
    (pue, pue_source), (usd_per_kwh, kwh_source) = params["pue"], params["electricity_usd_per_kwh"]
    energy = energy_per_output_token(joules, tokens, usd_per_kwh=usd_per_kwh, pue=pue)
    record.update(usd_per_mtok_electricity=energy.usd_per_mtok_electricity, electricity_pue=pue,
                  electricity_usd_per_kwh=usd_per_kwh,
                  electricity_sources={"pue": pue_source, "electricity_usd_per_kwh": kwh_source})
