"""Break-even utilisation: how busy self-hosted hardware must be to cost what an API charges (torch-free).

For requests of ``input_len`` prompt and ``output_len`` generated tokens:

    self-hosted $/request at full use = usd_per_gpu_hour × GPU-seconds per request / 3600
    API $/request                      = (input_len × input $/Mtok + output_len × output $/Mtok) / 1e6
    break-even utilisation             = self-hosted $/request at full use ÷ API $/request

since idle time divides the self-hosted cost by the utilisation (softwareseni.com; prices.md §5.1).
The GPU-seconds of a request are its prefill time plus its share of the decode steps
(``tokencost.cost.request_cost``: TTFT ÷ batch + (output_len − 1) × TPOT ÷ batch, metrics.md §1), so
the input tokens are paid for as well as the output. :func:`breakeven_from_request_cost` takes that
$/request directly (what ``tokencost run`` passes); :func:`breakeven_utilization` derives it from an
end-to-end output throughput of this request shape, which must include the prefill time
(GPU-seconds per request = output_len ÷ output tok/s). A decode-only throughput (batch ÷ TPOT) leaves
the prefill out and understates the self-hosted cost.

Above 1 the hardware cannot match the API price even when fully busy. Break-even should be computed on
goodput at the latency the API offers, not peak offline throughput (sohailmo.ai; claims.md §4,
mistake 7): the caller chooses which measurement to pass.
"""

from __future__ import annotations

import dataclasses

from tokencost.cost import SECONDS_PER_HOUR, TOKENS_PER_MTOK, _count, _finite, _positive
from tokencost.errors import CostError
from tokencost.prices import ApiPrice


@dataclasses.dataclass(frozen=True)
class BreakEven:
    """Break-even utilisation (a fraction; > 1 means never) and the per-request costs behind it."""

    utilization: float
    breaks_even: bool
    selfhost_usd_per_request_full_use: float
    api_usd_per_request: float
    selfhost_usd_per_mtok_output_full_use: float
    api_name: str


def breakeven_from_request_cost(selfhost_usd_per_request_full_use: float, input_len: int, output_len: int,
                                api: ApiPrice) -> BreakEven:
    """Utilisation at which a self-hosted request costing ``selfhost_usd_per_request_full_use`` when
    the hardware is always busy (prefill and decode GPU time, ``tokencost.cost.request_cost``) costs
    the same as the same request at ``api`` (formula in the module docstring).
    ``selfhost_usd_per_mtok_output_full_use`` charges the whole request to its output tokens.

    Raises:
        CostError: a non-positive cost or lengths (``input_len`` may be 0), or a result that overflows.
    """
    selfhost = _positive("self-hosted $/request", selfhost_usd_per_request_full_use)
    if isinstance(input_len, bool) or not isinstance(input_len, int) or input_len < 0:
        raise CostError(f"input_len must be an integer >= 0, got {input_len!r}")
    o = _count("output_len", output_len)
    api_cost = (input_len * api.usd_per_mtok_input + o * api.usd_per_mtok_output) / TOKENS_PER_MTOK
    utilization = _finite("break-even utilization", selfhost / _finite("API $/request", api_cost))
    return BreakEven(utilization=utilization, breaks_even=utilization <= 1.0,
                     selfhost_usd_per_request_full_use=selfhost, api_usd_per_request=api_cost,
                     selfhost_usd_per_mtok_output_full_use=selfhost / o * TOKENS_PER_MTOK, api_name=api.name)


def breakeven_utilization(usd_per_gpu_hour: float, output_tok_per_s: float, input_len: int, output_len: int,
                          api: ApiPrice) -> BreakEven:
    """Break-even utilisation at ``usd_per_gpu_hour`` for requests served at ``output_tok_per_s`` output
    tokens/s per GPU *end to end* (prefill time included, as a benchmark's request throughput is):
    self-hosted $/request = price × (output_len ÷ output_tok_per_s) ÷ 3600, then
    :func:`breakeven_from_request_cost`.

    Raises:
        CostError: non-positive price, throughput or lengths (``input_len`` may be 0), or a result that
            overflows.
    """
    price = _positive("usd_per_gpu_hour", usd_per_gpu_hour)
    rate = _positive("output_tok_per_s", output_tok_per_s)
    o = _count("output_len", output_len)
    selfhost = _finite("self-hosted $/request", price * (o / rate) / SECONDS_PER_HOUR)
    return breakeven_from_request_cost(selfhost, input_len, o, api)
