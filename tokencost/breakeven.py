"""Break-even utilisation: how busy self-hosted hardware must be to cost what an API charges (torch-free).

For requests of ``input_len`` prompt and ``output_len`` generated tokens, measured at
``output_tok_per_s`` per GPU (a throughput of that request shape, so prefill time is inside it):

    self-hosted $/request at full use = usd_per_gpu_hour × (output_len / output_tok_per_s) / 3600
    API $/request                      = (input_len × input $/Mtok + output_len × output $/Mtok) / 1e6
    break-even utilisation             = self-hosted $/request at full use ÷ API $/request

since idle time divides the self-hosted cost by the utilisation (softwareseni.com; prices.md §5.1).
Above 1 the hardware cannot match the API price even when fully busy. Break-even should be computed on
goodput at the latency the API offers, not peak offline throughput (sohailmo.ai; claims.md §4,
mistake 7): the caller chooses which throughput to pass.
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


def breakeven_utilization(usd_per_gpu_hour: float, output_tok_per_s: float, input_len: int, output_len: int,
                          api: ApiPrice) -> BreakEven:
    """Utilisation at which self-hosting at ``output_tok_per_s`` output tokens/s per GPU and
    ``usd_per_gpu_hour`` costs the same per request as ``api`` (formula in the module docstring).

    Raises:
        CostError: non-positive price, throughput or lengths (``input_len`` may be 0), or a result that
            overflows.
    """
    price = _positive("usd_per_gpu_hour", usd_per_gpu_hour)
    rate = _positive("output_tok_per_s", output_tok_per_s)
    if isinstance(input_len, bool) or not isinstance(input_len, int) or input_len < 0:
        raise CostError(f"input_len must be an integer >= 0, got {input_len!r}")
    o = _count("output_len", output_len)
    selfhost = price * (o / rate) / SECONDS_PER_HOUR
    api_cost = (input_len * api.usd_per_mtok_input + o * api.usd_per_mtok_output) / TOKENS_PER_MTOK
    utilization = _finite("break-even utilization", selfhost / _finite("API $/request", api_cost))
    return BreakEven(utilization=utilization, breaks_even=utilization <= 1.0,
                     selfhost_usd_per_request_full_use=selfhost, api_usd_per_request=api_cost,
                     selfhost_usd_per_mtok_output_full_use=selfhost / o * TOKENS_PER_MTOK, api_name=api.name)
