"""``tokencost prices``: the price catalog (GPU-hour, vCPU-hour and API token prices) with sources."""

from __future__ import annotations

import argparse

from tokencost.cli.common import key_value_list, print_json_line
from tokencost.tco import TCO_UNITS, tco_param_help

_GROUPS = ("gpu", "cpu", "api")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("prices", help="list GPU-hour, vCPU-hour and API token prices with source and date",
                       description="List the price catalog. A per-GPU value next to an instance price is "
                                   "derived (instance price ÷ GPUs). Names work with --price-from.")
    p.add_argument("--catalog", metavar="PATH", action="append",
                   help="a CSV adding or overriding catalog rows (repeatable; later files override earlier ones)")
    p.add_argument("--tier", metavar="TIER",
                   help="only this tier (on-demand, spot, reserved-1yr, owned-hyperscaler, ...), or cpu / api")
    p.add_argument("--gpu", metavar="NAME", help="only prices of this GPU (catalog or driver name)")
    p.add_argument("--tco", metavar="GPU", help="show only the owned-hardware $/GPU-hour of this GPU, every "
                   "parameter with its unit and source (the price lists, --json ones included, stay empty); add "
                   "--tier or --gpu to list those prices as well")
    units = tco_param_help().replace("%", "%%")  # argparse formats help with %
    p.add_argument("--tco-param", metavar="NAME=VALUE", type=key_value_list, action="append", default=[],
                   help=f"override a TCO parameter, in its unit: {units}; fractions above 1 are refused; repeatable")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    return p


def _tco(args: argparse.Namespace):
    """The owned-hardware cost for ``--tco`` with ``--tco-param`` overrides, or None.

    Raises:
        CostError: unknown GPU or parameter, a value that is not a number, a missing default.
    """
    from tokencost.cli.pricing import owned_tco
    from tokencost.errors import CostError

    if args.tco is None:
        if args.tco_param:
            raise CostError("--tco-param needs --tco GPU")
        return None
    return owned_tco(args.tco, args.tco_param)


def _tco_table(result):
    from rich.table import Table

    p = result.params
    table = Table(title=f"Owned {p.gpu}: ${result.usd_per_gpu_hour:.4g}/GPU-hour around the clock, "
                        f"${result.usd_per_utilized_gpu_hour:.4g} per utilised hour")
    for col in ("parameter", "value", "unit", "source"):
        table.add_column(col, overflow="fold")
    for name, source in p.sources.items():
        table.add_row(name, f"{getattr(p, name):g}", TCO_UNITS[name], source)
    table.add_row("= capex $/h", f"{result.capex_usd_per_hour:.4g}", "USD per hour",
                  "capex × CRF(rate, years) ÷ 8760")
    table.add_row("= power $/h", f"{result.power_usd_per_hour:.4g}", "USD per hour", "kW × PUE × $/kWh")
    table.add_row("= colocation $/h", f"{result.colocation_usd_per_hour:.4g}", "USD per hour",
                  "kW × $/kW-month × 12 ÷ 8760")
    return table


def _selected(args: argparse.Namespace) -> dict[str, list]:
    """Rows per group after the --tier / --gpu filters.

    Raises:
        CostError: an unknown tier or GPU.
    """
    from tokencost.catalog import PRICE_TIERS, use_catalogs
    from tokencost.errors import CostError
    from tokencost.hardware import gpu_by_name
    from tokencost.prices import list_api_prices, list_cpu_prices, list_prices

    use_catalogs(args.catalog)
    gpu = gpu_by_name(args.gpu).name if args.gpu else None
    tier = args.tier
    if tier is not None and tier not in PRICE_TIERS + ("cpu", "api"):
        raise CostError(f"unknown tier {tier!r}; tiers: {', '.join(PRICE_TIERS)}, cpu, api")
    groups = {"gpu": list_prices(None if tier in ("cpu", "api") else tier, gpu),
              "cpu": list_cpu_prices(), "api": list_api_prices()}
    keep = {"cpu": ("cpu",), "api": ("api",)}.get(tier, ("gpu",) if tier or gpu else _GROUPS)
    return {name: rows if name in keep else [] for name, rows in groups.items()}


def _gpu_table(quotes):
    from rich.table import Table

    table = Table(title="GPU prices ($/GPU-hour; 'derived' = instance price ÷ GPUs)")
    for col in ("name", "gpu", "tier", "$/GPU-h", "$/instance-h", "GPUs", "default", "date", "source"):
        table.add_column(col, justify="right" if col.startswith("$") or col == "GPUs" else "left",
                         overflow="fold")
    for q in quotes:
        table.add_row(q.name, q.device, q.tier, f"{q.usd_per_gpu_hour:.4g}" + (" (derived)" if q.derived else ""),
                      f"{q.usd_per_instance_hour:.6g}" if q.usd_per_instance_hour else "",
                      str(q.units_per_instance or ""), "yes" if q.is_default else "", q.date, q.source)
    return table


def _cpu_table(quotes):
    from rich.table import Table

    table = Table(title="CPU prices ($/vCPU-hour derived = instance price ÷ vCPUs)")
    for col in ("name", "$/vCPU-h", "$/instance-h", "vCPUs", "default", "date", "source"):
        table.add_column(col, overflow="fold")
    for q in quotes:
        table.add_row(q.name, f"{q.usd_per_vcpu_hour:.4g} (derived)", f"{q.usd_per_instance_hour:.4g}",
                      str(q.units_per_instance), "yes" if q.is_default else "", q.date, q.source)
    return table


def _api_table(prices):
    from rich.table import Table

    table = Table(title="Open-model API prices ($ per million tokens)")
    for col in ("name", "model", "provider", "input $/Mtok", "output $/Mtok", "date", "source"):
        table.add_column(col, overflow="fold")
    for p in prices:
        table.add_row(p.name, p.model, p.provider, f"{p.usd_per_mtok_input:.4g}", f"{p.usd_per_mtok_output:.4g}",
                      p.date, p.source)
    return table


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from tokencost.cli.render import Console

    groups = _selected(args)
    tco = _tco(args)
    if tco is not None and not (args.tier or args.gpu):  # --tco alone: just the TCO breakdown
        groups = {name: [] for name in groups}
    if args.json:
        print_json_line({"gpu_prices": [q.as_dict() for q in groups["gpu"]],
                         "cpu_prices": [q.as_dict() for q in groups["cpu"]],
                         "api_prices": [dataclasses.asdict(p) for p in groups["api"]],
                         "tco": dataclasses.asdict(tco) if tco else None})
        return 0
    console = Console()
    for name, build in (("gpu", _gpu_table), ("cpu", _cpu_table), ("api", _api_table)):
        if groups[name]:
            console.print(build(groups[name]))
    if tco is not None:
        console.print(_tco_table(tco))
    if not any(groups.values()) and tco is None:
        console.print("no prices match these filters")
    return 0
