"""``tokencost validate``: check a throughput claim (or the built-in published ones) against the roofline
and price it. The cost layer does the work (``tokencost.claims``); this module parses and prints."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from tokencost.cli.common import (JSON_FLAG_HELP, JSON_ONLY, add_price_args, positive_float, positive_int,
                                  print_json_line, write_json)

_PRECISIONS = ("bf16", "fp16", "fp8", "int8", "fp4", "int4")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("validate", help="check a tokens/s claim against the roofline and price it",
                       description="Normalise a throughput claim to output tok/s per GPU, bound it by the "
                                   "roofline of its setup (bandwidth and compute), say whether it is physically "
                                   "possible and what it implies in $/Mtok. --all checks the built-in claims.")
    claim = p.add_argument_group("claim")
    claim.add_argument("--gpu", metavar="NAME", help="GPU catalog name (h100-sxm, ...) or exact driver name")
    claim.add_argument("--gpus", type=positive_int, metavar="N",
                       help="GPUs that produced the figure (default 1; required with --unit per-node)")
    model = claim.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="PRESET", help="model preset (see `tokencost models`)")
    model.add_argument("--config", metavar="PATH", help="a Hugging Face config.json")
    claim.add_argument("--precision", choices=_PRECISIONS, help="weight precision")
    claim.add_argument("--kv-precision", choices=_PRECISIONS, help="KV-cache precision (default: the weight "
                       "precision, 8-bit for 4-bit weights)")
    batch = claim.add_mutually_exclusive_group()
    batch.add_argument("--batch-size", type=positive_int, metavar="B")
    batch.add_argument("--concurrency", type=positive_int, metavar="C")
    claim.add_argument("--input-len", type=positive_int, metavar="I", help="prompt tokens per request")
    claim.add_argument("--output-len", type=positive_int, metavar="O", help="generated tokens per request")
    claim.add_argument("--tok-per-s", type=positive_float, metavar="X", help="the claimed throughput")
    claim.add_argument("--unit", choices=("per-gpu", "per-node"), default="per-gpu",
                       help="what the figure is per (per-node = all --gpus together)")
    claim.add_argument("--tokens", choices=("output", "total"), default="output",
                       help="which tokens it counts (total = input + output)")
    add_price_args(p, default_for="the claim's GPU")
    p.add_argument("--all", action="store_true", help="check every built-in (and --catalog) claim")
    p.add_argument("--measure", action="store_true", help="also run the claim's setup on the local GPU")
    p.add_argument("--json", nargs="?", const=JSON_ONLY, metavar="PATH", help=JSON_FLAG_HELP)
    return p


def _claim_from_args(args: argparse.Namespace):
    from tokencost.claims import Claim
    from tokencost.errors import CostError

    missing = [flag for flag, value in (("--gpu", args.gpu), ("--tok-per-s", args.tok_per_s),
                                        ("--model or --config", args.model or args.config)) if value is None]
    if missing:
        raise CostError(f"validate needs {', '.join(missing)} (or --all for the built-in claims)")
    from tokencost.hardware import gpu_by_name, lookup_gpu

    if lookup_gpu(args.gpu) is None:
        gpu_by_name(args.gpu)  # a catalog name, else a CostError listing the known GPUs
    _check_preset(args.model)
    if args.unit == "per-node" and args.gpus is None:
        raise CostError("--unit per-node needs --gpus N, the number of GPUs that produced the figure "
                        "(a node's throughput is not one GPU's)")
    gpus = 1 if args.gpus is None else args.gpus
    return Claim(claim_id="command-line", model=args.model or args.config, gpu=args.gpu, gpus=gpus,
                 tok_per_s=args.tok_per_s, unit=args.unit, tokens=args.tokens, model_preset=args.model,
                 config_path=args.config, precision=args.precision, kv_precision=args.kv_precision,
                 batch_size=args.batch_size, concurrency=args.concurrency, input_len=args.input_len,
                 output_len=args.output_len)


def _check_preset(model: str | None) -> None:
    """A --model that is not a preset is an error (other models go through --config; the "model not in
    catalog" verdict is kept for built-in claims of models without a preset).

    Raises:
        CostError: unknown preset name.
    """
    from profiler.presets import preset_names
    from tokencost.errors import CostError

    if model is not None and model not in preset_names():
        raise CostError(f"unknown model {model!r} (run `tokencost models` for the presets; for another model "
                        "pass --config PATH to its Hugging Face config.json)")


_ONE_CLAIM = ("tok_per_s", "config", "precision", "kv_precision", "batch_size", "concurrency", "input_len",
              "output_len")


def _gpu_key(name: str) -> str:
    """The catalog name of a GPU given by catalog or driver name; an unknown name as itself, lower case."""
    from tokencost.hardware import lookup_gpu

    return getattr(lookup_gpu(name), "name", None) or name.lower()


def _selected_claims(args: argparse.Namespace):
    """The catalog claims --all checks: all of them, or those on --gpu and/or of --model.

    Raises:
        CostError: an option describing a single claim, or filters that match no claim.
    """
    from tokencost.cli.pricing import same_model
    from tokencost.claims import load_claims
    from tokencost.errors import CostError

    given = [f"--{n.replace('_', '-')}" for n in _ONE_CLAIM if getattr(args, n) is not None]
    given += [f"--{n}" for n, default in (("gpus", None), ("unit", "per-gpu"), ("tokens", "output"))
              if getattr(args, n) != default]
    if given:
        raise CostError(f"--all checks the catalog claims, filtered only by --gpu and --model; "
                        f"{', '.join(given)} belong to a single claim (drop --all)")
    gpu = None if args.gpu is None else _gpu_key(args.gpu)
    claims = [c for c in load_claims()
              if (gpu is None or _gpu_key(c.gpu) == gpu)
              and (args.model is None or c.model_preset == args.model or same_model(c.model, args.model))]
    if not claims:
        wanted = " and ".join(f"{flag} {v}" for flag, v in (("--gpu", args.gpu), ("--model", args.model)) if v)
        raise CostError(f"no catalog claim matches {wanted} (run `tokencost validate --all` for every claim)")
    return claims


def _price(args: argparse.Namespace) -> tuple[float | None, str | None]:
    """Hourly price per GPU from the options, or (None, None) to use each claim's own or default price.

    Raises:
        CostError: an instance price without its GPU count, both price forms, a price over
            ``tokencost.cost.MAX_USD_PER_HOUR``, an unknown --price-from.
    """
    from tokencost.cli.pricing import quote_from_name
    from tokencost.cost import check_usd_per_hour, usd_per_gpu_hour_from_instance
    from tokencost.errors import CostError

    owned = getattr(args, "price_owned", False)
    given = [a for a in (args.price_per_gpu_hour, args.price_per_instance_hour, args.price_from) if a is not None]
    if len(given) + bool(owned) > 1:
        raise CostError("give one of --price-per-gpu-hour, --price-per-instance-hour, --price-from or --price-owned")
    if getattr(args, "tco_param", None) and not owned:
        raise CostError("--tco-param needs --price-owned")
    if owned:
        from tokencost.cli.pricing import _owned_price

        if args.gpu is None:
            raise CostError("--price-owned needs --gpu (the owned GPU whose TCO prices the claims)")
        price = _owned_price(_gpu_key(args.gpu), args.tco_param)
        if price.get("price_warning"):
            print(f"tokencost: warning: {price['price_warning']}", file=sys.stderr)
        return price["usd_per_hour"], price["price_source"]
    if args.gpus_per_instance is not None and args.price_per_instance_hour is None:
        raise CostError("--gpus-per-instance needs --price-per-instance-hour")
    if args.price_per_gpu_hour is not None:
        return check_usd_per_hour("--price-per-gpu-hour", args.price_per_gpu_hour), "--price-per-gpu-hour (user)"
    if args.price_per_instance_hour is not None:
        check_usd_per_hour("--price-per-instance-hour", args.price_per_instance_hour)
        if args.gpus_per_instance is None:
            raise CostError("--price-per-instance-hour needs --gpus-per-instance (an instance price is not a "
                            "GPU price)")
        return (usd_per_gpu_hour_from_instance(args.price_per_instance_hour, args.gpus_per_instance),
                f"{args.price_per_instance_hour} per instance-hour ÷ {args.gpus_per_instance} GPUs (user)")
    if args.price_from is not None:
        quote = quote_from_name(args.price_from)
        if quote.device == "cpu":
            raise CostError(f"{args.price_from!r} is a CPU price; claims are priced per GPU-hour")
        if args.gpu is not None and quote.device != _gpu_key(args.gpu):
            print(f"tokencost: warning: the price row {quote.name} is for {quote.device}, not {_gpu_key(args.gpu)}: "
                  "the $/Mtok prices one GPU's throughput at another GPU's rate", file=sys.stderr)
        return quote.usd_per_gpu_hour, f"{quote.name} ({quote.source}, {quote.date})"
    return None, None


def _measure(claim) -> dict:
    """Run the claim's setup locally through the lead's hook; exit 2 with one line if it is missing."""
    from tokencost.cli.common import fail
    from tokencost.errors import CostError

    try:
        from tokencost.cli.measure_hook import measure_claim
    except ImportError as exc:
        fail(f"--measure needs the measurement hook tokencost.cli.measure_hook.measure_claim ({exc})")
    if claim is None:
        raise CostError("--measure runs one claim; it cannot be combined with --all")
    return measure_claim(claim)


def _fmt(value, spec: str = ".3g", suffix: str = "") -> str:
    if value is not None and spec.startswith(",") and spec.endswith("f") and abs(value) >= 1e15:
        spec = ".4g"  # an absurd claim: a number, not a line of digits
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def _percent(value) -> str:
    from tokencost.claims import percent

    return "n/a" if value is None else percent(value)


def _summary_table(verdicts):
    """One row per claim. Numbers and verdicts never wrap or shorten (their columns are as wide as
    their widest cell); the claim id and setup fold onto more lines in a narrow terminal."""
    from rich.table import Table

    rows = []
    for v in verdicts:
        c, b = v.claim, v.bound
        rows.append((c.claim_id, f"{c.gpus}× {c.gpu} {c.precision or ''}".strip(),
                     _fmt(v.claimed_output_tok_per_s_per_gpu, ",.0f"),
                     _fmt(b.output_tok_per_s_per_gpu if b else None, ",.0f"),
                     _percent(v.fraction_of_bound), v.status, _fmt(v.usd_per_mtok_claimed_tokens, ".4g"),
                     _fmt(c.stated_usd_per_mtok, ".4g")))
    table = Table(title="Throughput claims against the roofline (output tok/s per GPU)")
    headers = ("claim", "setup", "claimed", "bound", "of\nbound", "verdict", "$/Mtok\nrecomputed", "$/Mtok\nstated")
    for i, head in enumerate(headers):
        if i < 2:
            table.add_column(head, overflow="fold", min_width=10)
            continue
        widest = max([len(r[i]) for r in rows] + [max(len(line) for line in head.split("\n"))])
        table.add_column(head, justify="left" if head == "verdict" else "right", no_wrap=True, min_width=widest)
    for row in rows:
        table.add_row(*row)
    table.caption = ("$/Mtok recomputed: the claimed tokens/s at the price used (the claim's own price where it "
                     "states one); stated: the $/Mtok the source published, if any")
    return table


def with_unverified_note(v):
    """``v`` with a note when its verdict rests on a catalog figure marked unverified (memory for the
    batch that fits, bandwidth and the peak column for the bound; ``tokencost.hardware.unverified_note``)."""
    from tokencost.hardware import lookup_gpu, unverified_note

    spec = lookup_gpu(v.claim.gpu)
    if spec is None or v.status not in _BOUNDED:
        return v
    used = ["memory_gb"] + (["bandwidth_tb_s", v.bound.peak_column] if v.bound is not None else [])
    note = unverified_note(spec, used)
    return v if note is None else dataclasses.replace(v, notes=v.notes + (note,))


_BOUNDED = ("possible", "low", "impossible")  # the verdicts that come with a roofline bound


def _detail_table(v):
    from rich.table import Table

    c, b = v.claim, v.bound
    table = Table(title=f"claim {c.claim_id}: {c.model} on {c.gpus}× {c.gpu}", show_header=False)
    rows = [("claimed", f"{c.tok_per_s:,.6g} tok/s {c.unit}, {c.tokens} tokens"),
            ("normalised", f"{_fmt(v.claimed_output_tok_per_s_per_gpu, ',.1f')} output tok/s per GPU"),
            ("verdict", f"{v.status}: {v.reason}")]
    if b is not None:
        rows += [("bytes per output token", f"{b.bytes_per_output_token / 1e9:,.4g} GB"),
                 ("FLOPs per output token", f"{b.flops_per_output_token / 1e9:,.2f} GFLOP"
                                            + (" (prefill included, spread over the output)" if c.output_len else "")),
                 (f"bandwidth / compute time over {b.decode_steps} decode step(s)"
                  + (" (compute: prefill FLOPs included)" if c.output_len else ""),
                  f"{b.bandwidth_time_s:.4g} s / {b.compute_time_s:.4g} s (peak column {b.peak_column})")]
    rows += [("price", f"${_fmt(v.usd_per_gpu_hour, '.4g')}/GPU-h ({v.price_source})" if v.usd_per_gpu_hour
              else "n/a (no catalog price for this GPU; give --price-per-gpu-hour or --price-from)"),
             ("$/Mtok (claimed tokens)", _fmt(v.usd_per_mtok_claimed_tokens, ".4g")),
             ("$/Mtok (output tokens)", _fmt(v.usd_per_mtok_output, ".4g"))]
    if c.stated_usd_per_mtok is not None:
        rows.append(("stated $/Mtok", f"{c.stated_usd_per_mtok:g} (implies "
                                      f"{_fmt(v.implied_tok_per_s_for_stated_price, ',.1f')} tok/s at this price)"))
    rows += [("note", n) for n in v.notes]
    for key, value in rows:
        table.add_row(key, value)
    return table


def run(args: argparse.Namespace) -> int:
    from tokencost.cli.render import Console

    from tokencost.catalog import use_catalogs
    from tokencost.claims import check_all, check_claim

    use_catalogs(args.catalog)
    price, source = _price(args)
    claim = None if args.all else _claim_from_args(args)
    measured = _measure(claim) if args.measure else None
    if args.all:
        verdicts = check_all(price, source, claims=_selected_claims(args))
    else:
        verdicts = [check_claim(claim, price, source)]
    verdicts = [with_unverified_note(v) for v in verdicts]
    payload = {"claims": [v.as_dict() for v in verdicts]}
    if measured is not None:
        payload["measured"] = measured
    if args.json == JSON_ONLY:
        print_json_line(payload)
        return 0
    console = Console()
    if args.all:
        console.print(_summary_table(verdicts))
        for v in verdicts:
            if v.status not in _BOUNDED:  # no bound, so the table shows n/a: say why, once per claim
                console.print(f"{v.status} ({v.claim.claim_id}): {v.reason}", highlight=False, markup=False)
            for note in v.notes:
                if "unverified" in note:
                    console.print(f"note ({v.claim.claim_id}): {note}", highlight=False, markup=False)
    else:
        console.print(_detail_table(verdicts[0]))
    if measured is not None:
        console.print({"measured": measured})
    if args.json:  # a PATH: the JSON line last, as every command prints it, and the file
        print_json_line(payload)
        write_json(args.json, payload)
    return 0
