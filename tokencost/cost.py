"""$ per million tokens from a price and a throughput, with explicit units (torch-free).

Core formula (NVIDIA "cost per token" blog, claims.md §3.1; InferenceX ``useThroughputData.ts``):

    usd_per_mtok = usd_per_hour / (tok_per_s × 3600) × 1e6

where the hourly price covers exactly the hardware that produced ``tok_per_s`` (claims.md §4, mistake 1).
Request-shape costing splits one request's GPU time into its prefill time and its share of the decode
steps, so input and output are never each charged the whole GPU-hour (claims.md §4, mistake 5;
inferecon.com/assumptions). Utilisation, billing granularity and spin-up turn the peak $/Mtok into
an effective one (softwareseni.com: cost per utilised hour = hourly cost ÷ utilisation).

Every function raises :class:`~tokencost.errors.CostError` for non-positive or non-finite inputs, for
mixed units, and for a result that overflows (a cost is never inf or NaN).
"""

from __future__ import annotations

import dataclasses
import math

from tokencost.errors import CostError

SECONDS_PER_HOUR = 3600.0
TOKENS_PER_MTOK = 1e6
BILLING_GRANULARITY_S = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
# Generous upper bounds on a price given by a user or a catalog row, far above real prices (the dearest
# rows of prices.md: p5.48xlarge at $98.32/instance-hour before June 2025, §2; $8/Mtok output, §6). They
# only keep the cost arithmetic finite: 1e308 $/hour overflows to inf, and inf / inf is NaN.
MAX_USD_PER_HOUR = 1e6
MAX_USD_PER_MTOK = 1e6


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CostError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise CostError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _fraction(name: str, value: float) -> float:
    if not 0 < _positive(name, value) <= 1:
        raise CostError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CostError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_usd_per_hour(name: str, value: float) -> float:
    """``value`` as an hourly price ($/GPU-, vCPU- or instance-hour): positive, finite, at most
    :data:`MAX_USD_PER_HOUR`.

    Raises:
        CostError: otherwise (the message names ``name``, e.g. the CLI option).
    """
    if _positive(name, value) > MAX_USD_PER_HOUR:
        raise CostError(f"{name} must be at most {MAX_USD_PER_HOUR:,.0f} $/hour, got {value!r}")
    return float(value)


def check_usd_per_mtok(name: str, value: float) -> float:
    """``value`` as a token price ($/Mtok): positive, finite, at most :data:`MAX_USD_PER_MTOK`.

    Raises:
        CostError: otherwise.
    """
    if _positive(name, value) > MAX_USD_PER_MTOK:
        raise CostError(f"{name} must be at most {MAX_USD_PER_MTOK:,.0f} $/Mtok, got {value!r}")
    return float(value)


def _finite(name: str, value: float) -> float:
    """A computed cost, refused when the arithmetic overflowed (never inf or NaN in a result)."""
    if not math.isfinite(value):
        raise CostError(f"{name} is not a finite number ({value!r}): the price or throughput is out of range")
    return value


def usd_per_gpu_hour_from_instance(usd_per_instance_hour: float, gpus_per_instance: int) -> float:
    """Instance price ÷ GPUs in the instance (prices.md §1; a p5.48xlarge is 8 GPUs)."""
    return _positive("usd_per_instance_hour", usd_per_instance_hour) / _count("gpus_per_instance", gpus_per_instance)


def usd_per_mtok(usd_per_hour: float, tok_per_s: float) -> float:
    """$ per million tokens: usd_per_hour / (tok_per_s × 3600) × 1e6.

    ``usd_per_hour`` must price the same hardware that produced ``tok_per_s`` (per GPU with per-GPU
    throughput, per node with per-node throughput; see :func:`hourly_price_for_throughput`).
    """
    price = _positive("usd_per_hour", usd_per_hour)
    rate = _positive("tok_per_s", tok_per_s)
    return _finite("$/Mtok", price / (rate * SECONDS_PER_HOUR) * TOKENS_PER_MTOK)


def tok_per_s_for_usd_per_mtok(usd_per_hour: float, usd_per_mtok_value: float) -> float:
    """The throughput a stated $/Mtok implies at a price (the inverse of :func:`usd_per_mtok`)."""
    price = _positive("usd_per_hour", usd_per_hour)
    rate = price * TOKENS_PER_MTOK / (_positive("usd_per_mtok", usd_per_mtok_value) * SECONDS_PER_HOUR)
    return _finite("tok/s implied by the $/Mtok", rate)


def hourly_price_for_throughput(usd_per_hour: float, price_unit: str, throughput_unit: str,
                                gpus: int | None = None, gpus_per_instance: int | None = None) -> float:
    """The hourly price of exactly the hardware a throughput figure describes.

    ``price_unit``: ``"gpu"`` ($/GPU-hour) or ``"instance"`` ($/instance-hour, needs
    ``gpus_per_instance``). ``throughput_unit``: ``"per-gpu"`` or ``"per-node"`` (needs ``gpus``, the
    GPUs that produced it).

    Raises:
        CostError: mixed units without the GPU count that reconciles them (claims.md §4, mistake 1).
    """
    price = _positive("usd_per_hour", usd_per_hour)
    if price_unit not in ("gpu", "instance") or throughput_unit not in ("per-gpu", "per-node"):
        raise CostError(f"price unit must be gpu or instance and throughput unit per-gpu or per-node; "
                        f"got {price_unit!r}, {throughput_unit!r}")
    if price_unit == "instance":
        if gpus_per_instance is None:
            raise CostError("an instance price needs the number of GPUs per instance to be compared with a "
                            "throughput (an instance price is not a GPU price)")
        price = usd_per_gpu_hour_from_instance(price, gpus_per_instance)
    if throughput_unit == "per-gpu":
        return price
    if gpus is None:
        raise CostError("a per-node throughput needs the number of GPUs that produced it (--gpus)")
    return price * _count("gpus", gpus)


def output_tok_per_s(tok_per_s: float, tokens: str, input_len: int | None = None,
                     output_len: int | None = None) -> float:
    """Output-token throughput from a figure that counts ``tokens`` = ``"output"`` or ``"total"``.

    A total (input + output) figure for fixed-length requests converts as total × O / (I + O).

    Raises:
        CostError: total tokens without both lengths (output tokens cannot be recovered), or an unknown
            token type.
    """
    rate = _positive("tok_per_s", tok_per_s)
    if tokens == "output":
        return rate
    if tokens != "total":
        raise CostError(f"tokens must be 'output' or 'total', got {tokens!r}")
    if input_len is None or output_len is None:
        raise CostError("a total-token (input + output) throughput needs --input-len and --output-len to "
                        "give output tokens/s; total tokens are not output tokens")
    i, o = _non_negative("input_len", input_len), _positive("output_len", output_len)
    return rate * o / (i + o)


@dataclasses.dataclass(frozen=True)
class RequestCost:
    """Cost of one request from its share of GPU time. Times in GPU-seconds (× ``gpus``)."""

    prefill_s: float
    decode_s: float
    usd_per_request: float
    usd_input: float
    usd_output: float
    usd_per_mtok_input: float
    usd_per_mtok_output: float
    usd_per_mtok_blended: float
    usd_per_mtok_output_all_in: float
    blend_input_weight: float
    blend_output_weight: float


def request_cost(usd_per_gpu_hour: float, prefill_s: float, decode_step_s: float, batch_size: int,
                 input_len: int, output_len: int, gpus: int = 1, blend: tuple[float, float] = (3.0, 1.0)) -> RequestCost:
    """Cost of one request = its prefill time + its share (1/batch) of ``output_len − 1`` decode steps.

    The first output token comes out of the prefill, so a request of ``output_len`` tokens takes
    TTFT + (output_len − 1) × TPOT (vLLM's serve benchmark: TPOT = (E2E latency − TTFT) ÷
    (output_tokens − 1), metrics.md §1). ``prefill_s``: seconds spent prefilling this request's prompt
    and picking its first token (a batched TTFT ÷ its batch); ``decode_step_s``: time of one decode
    step of the whole batch. Input tokens pay for prefill time,
    output tokens for decode time (inferecon.com/assumptions), so the two are never each charged the
    whole GPU-hour (claims.md §4, mistake 5). ``usd_per_mtok_blended`` weights input and output
    $/Mtok ``blend`` = (3, 1) by default, the 3:1 input:output convention (findllm.org; Artificial
    Analysis; prices.md §6.1). ``usd_per_mtok_output_all_in`` charges the whole request to its output.

    Raises:
        CostError: non-positive price, time, batch, lengths or blend weights.
    """
    price = _positive("usd_per_gpu_hour", usd_per_gpu_hour) * _count("gpus", gpus)
    prefill = _non_negative("prefill_s", prefill_s)
    steps = _count("output_len", output_len) - 1
    decode = steps * _positive("decode_step_s", decode_step_s) / _count("batch_size", batch_size)
    w_in, w_out = (_positive("blend input weight", blend[0]), _positive("blend output weight", blend[1]))
    usd_in, usd_out = price * prefill / SECONDS_PER_HOUR, price * decode / SECONDS_PER_HOUR
    per_in = usd_in / _count("input_len", input_len) * TOKENS_PER_MTOK
    per_out = usd_out / output_len * TOKENS_PER_MTOK
    all_in = _finite("request $/Mtok", (usd_in + usd_out) / output_len * TOKENS_PER_MTOK)
    _finite("request $/Mtok", per_in + per_out)  # so the per-phase figures are finite too
    return RequestCost(
        prefill_s=prefill, decode_s=decode, usd_per_request=usd_in + usd_out, usd_input=usd_in,
        usd_output=usd_out, usd_per_mtok_input=per_in, usd_per_mtok_output=per_out,
        usd_per_mtok_blended=_finite("blended $/Mtok", (w_in * per_in + w_out * per_out) / (w_in + w_out)),
        usd_per_mtok_output_all_in=all_in,
        blend_input_weight=w_in, blend_output_weight=w_out)


def blended_usd_per_mtok(usd_per_mtok_input: float, usd_per_mtok_output: float,
                         blend: tuple[float, float] = (3.0, 1.0)) -> float:
    """(w_in × input + w_out × output) / (w_in + w_out); 3:1 by default (prices.md §6.1)."""
    w_in, w_out = _positive("blend input weight", blend[0]), _positive("blend output weight", blend[1])
    return (w_in * _non_negative("usd_per_mtok_input", usd_per_mtok_input)
            + w_out * _non_negative("usd_per_mtok_output", usd_per_mtok_output)) / (w_in + w_out)


@dataclasses.dataclass(frozen=True)
class EffectiveCost:
    """Peak vs effective $/Mtok for serving ``tokens`` with idle time, spin-up and billing rounding."""

    tokens: float
    busy_s: float
    wall_s: float
    billed_s: float
    usd_total: float
    usd_per_mtok_peak: float
    usd_per_mtok_effective: float
    overhead_ratio: float


def billed_seconds(wall_s: float, granularity_s: float, minimum_s: float = 0.0) -> float:
    """Wall time rounded up to whole billing units (at least ``minimum_s``); rounding tolerates 1e-9
    of float noise so 3600.0000000001 s is one hour, not two."""
    g = _positive("billing granularity (s)", granularity_s)
    units = math.ceil(round(_non_negative("wall_s", wall_s) / g, 9))
    return max(units * g, _non_negative("minimum billed seconds", minimum_s))


def effective_cost(usd_per_hour: float, tok_per_s: float, tokens: float, utilization: float = 1.0,
                   spinup_s: float = 0.0, billing: str | float = "second", minimum_billed_s: float = 0.0) -> EffectiveCost:
    """Effective $/Mtok of producing ``tokens`` at peak ``tok_per_s`` when the hardware is busy only a
    ``utilization`` share of the paid time, needs ``spinup_s`` before the first token, and is billed in
    whole ``billing`` units ("second", "minute", "hour" or seconds).

    busy = tokens / tok_per_s; wall = busy / utilization + spin-up; billed = wall rounded up;
    effective = usd_per_hour × billed / 3600 / tokens × 1e6. At utilization 1, no spin-up and per-second
    billing of a whole number of seconds, effective == peak.

    Raises:
        CostError: non-positive price, rate or tokens; utilization outside (0, 1]; unknown billing unit.
    """
    if isinstance(billing, str):
        if billing not in BILLING_GRANULARITY_S:
            raise CostError(f"billing must be one of {', '.join(BILLING_GRANULARITY_S)} or seconds, got {billing!r}")
        billing = BILLING_GRANULARITY_S[billing]
    peak = usd_per_mtok(usd_per_hour, tok_per_s)
    busy = _positive("tokens", tokens) / tok_per_s
    wall = busy / _fraction("utilization", utilization) + _non_negative("spinup_s", spinup_s)
    billed = billed_seconds(wall, billing, minimum_billed_s)
    usd_total = _finite("job cost", usd_per_hour * billed / SECONDS_PER_HOUR)
    effective = _finite("effective $/Mtok", usd_total / tokens * TOKENS_PER_MTOK)
    return EffectiveCost(tokens=float(tokens), busy_s=busy, wall_s=wall, billed_s=billed, usd_total=usd_total,
                         usd_per_mtok_peak=peak, usd_per_mtok_effective=effective,
                         overhead_ratio=_finite("overhead ratio", effective / peak))
