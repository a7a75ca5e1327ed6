"""Throughput claims: unit normalisation, a roofline bound for the claimed setup, a verdict and the
implied $/Mtok (torch-free).

A claim names a GPU and GPU count, a model (preset or config.json), weight and KV precision, batch or
concurrency, input and output lengths, a tokens/s figure, what it is per (GPU or node) and which tokens
it counts (claims.md §1). Checking follows claims.md §2:

1. normalise to output tokens/s per GPU (node figure ÷ GPUs; total → output as total × O / (I + O));
2. bound the run of B requests on the GPUs, weights sharded across them (tensor parallel, the most
   favourable layout), from the byte and FLOP counts of ``profiler.roofline``:
   time ≥ max(Σ_steps decode bytes / (GPUs × bandwidth), (B × prefill FLOPs + Σ_steps B × decode FLOPs) /
   (GPUs × dense peak)), over decode steps at contexts I, I+1, …, I+O−1 (metrics.md §3.1, §3.3, §4;
   MoE steps read E·(1−(1−k/E)^B) distinct experts, metrics.md §5). The bound is
   B × O ÷ time ÷ GPUs. Without a stated batch, B is the largest batch whose KV cache at the prompt
   length fits beside the weights in the GPUs' memory — every running sequence holds at least its
   prompt, and the bound grows with B, so this is the highest the hardware allows. Without an output
   length only the first decode step is bounded (later steps read more KV, so this is favourable too);
3. verdict: above 100% of the bound is impossible (its byte/FLOP model or token count is wrong); below
   20% suggests a wrong code path or a unit slip (claims.md §2, step 4). A claim that does not state
   its precision or input length is still bounded, at the values most favourable to it (4-bit weights
   and, unless stated, 4-bit KV cache, the GPU's highest dense peak, a 1-token prompt): above that
   bound it is impossible at any precision and length; under it the verdict stays "incomplete";
4. the $/Mtok a claim implies is refused above ``tokencost.cost.MAX_USD_PER_MTOK`` (a throughput that
   small is a unit slip, not a claim to price).

A model without a preset is reported as "model not in catalog", a GPU missing from the spec table as
"unknown GPU": nothing is guessed. A request longer than the model's ``max_position_embeddings`` is an
invalid setup (CostError), not a claim to bound.
"""

from __future__ import annotations

import dataclasses
import math

from profiler.config import ModelConfig, load_config
from profiler.errors import ConfigError
from profiler.presets import get_preset, preset_names
from profiler.roofline import (decode_bytes_per_step, decode_flops_per_token, kv_bytes_per_token, kv_tokens_read,
                               param_count, prefill_flops)
from tokencost.catalog import PRECISIONS, Catalog, resolve
from tokencost.cost import (MAX_USD_PER_MTOK, check_usd_per_hour, check_usd_per_mtok, output_tok_per_s,
                            tok_per_s_for_usd_per_mtok, usd_per_mtok)
from tokencost.errors import CostError
from tokencost.hardware import GpuSpec, lookup_gpu
from tokencost.prices import default_price_for_device

PRECISION_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5, "int4": 0.5}
LOW_FRACTION = 0.2  # claims.md §2 step 4: under ~20% of the bound suggests a wrong path or unit slip
STATUSES = ("possible", "low", "impossible", "incomplete", "unknown-gpu", "model-not-in-catalog", "invalid")


@dataclasses.dataclass(frozen=True)
class Claim:
    """A published or user-given throughput figure with its units. ``tok_per_s`` is per GPU
    (``unit="per-gpu"``) or for all ``gpus`` together (``"per-node"``); ``tokens`` is output, total
    (input + output) or unstated. ``model_preset``/``config_path``: the shape to check against
    (neither → model not in catalog)."""

    claim_id: str
    model: str
    gpu: str
    gpus: int
    tok_per_s: float
    unit: str = "per-gpu"
    tokens: str = "output"
    model_preset: str | None = None
    config_path: str | None = None
    precision: str | None = None
    kv_precision: str | None = None
    batch_size: int | None = None
    concurrency: int | None = None
    input_len: int | None = None
    output_len: int | None = None
    price_usd_per_gpu_hour: float | None = None
    stated_usd_per_mtok: float | None = None
    source: str = "command line"
    date: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Bound:
    """Roofline bound of a claim's setup; bytes and FLOPs summed over the whole run of ``batch_size``
    requests; ``output_tok_per_s_per_gpu`` is the ceiling on the claimed figure."""

    batch_size: int
    batch_source: str
    weight_precision: str
    kv_precision: str
    decode_steps: int
    bytes_total: float
    flops_total: float
    bandwidth_time_s: float
    compute_time_s: float
    binding: str
    peak_column: str
    output_tok_per_s_per_gpu: float
    bytes_per_output_token: float
    flops_per_output_token: float


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Result of checking one claim. ``fraction_of_bound`` = claimed output tok/s per GPU ÷ bound."""

    claim: Claim
    status: str
    reason: str
    claimed_tok_per_s_per_gpu: float | None = None
    claimed_output_tok_per_s_per_gpu: float | None = None
    bound: Bound | None = None
    fraction_of_bound: float | None = None
    usd_per_gpu_hour: float | None = None
    price_source: str | None = None
    usd_per_mtok_claimed_tokens: float | None = None
    usd_per_mtok_output: float | None = None
    implied_tok_per_s_for_stated_price: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def physically_possible(self) -> bool | None:
        return {"possible": True, "low": True, "impossible": False}.get(self.status)

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["physically_possible"] = self.physically_possible
        return out


class _Infeasible(Exception):
    """The setup cannot even hold its weights or KV cache in the GPUs' memory."""


def validate_claim(claim: Claim) -> None:
    """Check field values and units.

    Raises:
        CostError: a non-positive number, an unknown unit, token type or precision, batch and
            concurrency both given, a price over ``tokencost.cost.MAX_USD_PER_HOUR``/``MAX_USD_PER_MTOK``.
    """
    ints = {"gpus": claim.gpus, "batch_size": claim.batch_size, "concurrency": claim.concurrency,
            "input_len": claim.input_len, "output_len": claim.output_len}
    for name, value in ints.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise CostError(f"claim {claim.claim_id}: {name} must be a positive integer, got {value!r}")
    if claim.unit not in ("per-gpu", "per-node"):
        raise CostError(f"claim {claim.claim_id}: unit must be per-gpu or per-node, got {claim.unit!r}")
    if claim.tokens not in ("output", "total", "unstated"):
        raise CostError(f"claim {claim.claim_id}: tokens must be output, total or unstated, got {claim.tokens!r}")
    for name in ("precision", "kv_precision"):
        value = getattr(claim, name)
        if value is not None and value not in PRECISION_BYTES:
            raise CostError(f"claim {claim.claim_id}: {name} must be one of {', '.join(PRECISIONS)}, got {value!r}")
    if claim.batch_size is not None and claim.concurrency is not None:
        raise CostError(f"claim {claim.claim_id}: give batch size or concurrency, not both")
    if not (isinstance(claim.tok_per_s, (int, float)) and math.isfinite(claim.tok_per_s) and claim.tok_per_s > 0):
        raise CostError(f"claim {claim.claim_id}: tok_per_s must be a positive finite number, got {claim.tok_per_s!r}")
    if claim.price_usd_per_gpu_hour is not None:
        check_usd_per_hour(f"claim {claim.claim_id}: price_usd_per_gpu_hour", claim.price_usd_per_gpu_hour)
    if claim.stated_usd_per_mtok is not None:
        check_usd_per_mtok(f"claim {claim.claim_id}: stated_usd_per_mtok", claim.stated_usd_per_mtok)


def normalise(claim: Claim) -> tuple[float, float]:
    """(claimed tok/s per GPU in the claim's own tokens, output tok/s per GPU).

    Unstated token type is read as output tokens, the most demanding reading.

    Raises:
        CostError: total tokens without both lengths (output tokens cannot be recovered).
    """
    per_gpu = claim.tok_per_s / claim.gpus if claim.unit == "per-node" else claim.tok_per_s
    if claim.tokens == "total":
        return per_gpu, output_tok_per_s(per_gpu, "total", claim.input_len, claim.output_len)
    return per_gpu, per_gpu


def resolve_model(claim: Claim) -> ModelConfig | None:
    """The claim's model shape: its config file, or its preset; None when it has neither or the preset
    name is unknown (reported as "model not in catalog").

    Raises:
        ConfigError: an unreadable or unsupported config file (a user error, not a missing model).
    """
    if claim.config_path:
        return load_config(claim.config_path)
    if not claim.model_preset:
        return None
    try:
        return get_preset(claim.model_preset)
    except ConfigError:
        return None


def default_kv_precision(precision: str) -> str:
    """KV precision when a claim does not state it: the weight precision, but 8-bit for 4-bit weights
    (the smallest KV format in common use; a smaller KV only raises the bound)."""
    return "fp8" if PRECISION_BYTES[precision] < 1 else precision


def _batch(cfg: ModelConfig, spec: GpuSpec, gpus: int, stated: int | None, label: str,
           wb: float, kv_seq: float) -> tuple[int, str]:
    """Batch for the bound: the stated one (checked to fit) or the most that fits in memory."""
    memory = gpus * spec.memory_bytes
    weights = param_count(cfg) * wb
    if weights >= memory:
        raise _Infeasible(f"the weights alone need {weights / 1e9:.1f} GB but {gpus} × {spec.name} hold "
                          f"{memory / 1e9:.0f} GB")
    if stated is not None:
        if weights + stated * kv_seq > memory:
            raise _Infeasible(f"{label} {stated} needs {(weights + stated * kv_seq) / 1e9:.1f} GB for weights "
                              f"and KV cache at the prompt length, more than the {memory / 1e9:.0f} GB of "
                              f"{gpus} × {spec.name}")
        return stated, label
    most = int((memory - weights) // kv_seq)
    if most < 1:
        raise _Infeasible(f"not even one sequence's KV cache fits beside the weights in {memory / 1e9:.0f} GB")
    return most, "largest batch whose KV cache at the prompt length fits in memory"


def roofline_bound(cfg: ModelConfig, spec: GpuSpec, gpus: int, precision: str, input_len: int,
                   output_len: int | None = None, batch_size: int | None = None, batch_label: str = "stated batch",
                   kv_precision: str | None = None) -> Bound:
    """Upper bound on output tok/s per GPU for this setup (method in the module docstring).

    Raises:
        _Infeasible: weights or the stated batch's KV cache do not fit in the GPUs' memory.
    """
    kv = kv_precision or default_kv_precision(precision)
    wb, kvb = PRECISION_BYTES[precision], PRECISION_BYTES[kv]
    kv_seq = kv_bytes_per_token(cfg, kvb) * kv_tokens_read(cfg, input_len)
    batch, label = _batch(cfg, spec, gpus, batch_size, batch_label, wb, kv_seq)
    contexts = range(input_len, input_len + output_len) if output_len else range(input_len, input_len + 1)
    bytes_total = float(sum(decode_bytes_per_step(cfg, batch, c, wb, kvb) for c in contexts))
    flops_total = batch * sum(decode_flops_per_token(cfg, c) for c in contexts)
    if output_len:
        flops_total += batch * prefill_flops(cfg, input_len)
    peak, column = spec.peak_flops_per_s(precision)
    t_bw = bytes_total / (gpus * spec.bandwidth_bytes_per_s)
    t_compute = flops_total / (gpus * peak)
    out_tokens = batch * len(contexts)
    return Bound(batch_size=batch, batch_source=label, weight_precision=precision, kv_precision=kv,
                 decode_steps=len(contexts), bytes_total=bytes_total, flops_total=flops_total,
                 bandwidth_time_s=t_bw, compute_time_s=t_compute,
                 binding="bandwidth" if t_bw >= t_compute else "compute", peak_column=column,
                 output_tok_per_s_per_gpu=out_tokens / max(t_bw, t_compute) / gpus,
                 bytes_per_output_token=bytes_total / out_tokens, flops_per_output_token=flops_total / out_tokens)


def _price(claim: Claim, spec: GpuSpec | None, usd_per_gpu_hour: float | None, price_source: str | None,
           catalog: Catalog) -> tuple[float | None, str | None]:
    if usd_per_gpu_hour is not None:
        return usd_per_gpu_hour, price_source or "command line"
    if claim.price_usd_per_gpu_hour is not None:
        return claim.price_usd_per_gpu_hour, f"stated with the claim ({claim.source})"
    quote = default_price_for_device(spec.name, "cuda", catalog=catalog) if spec else None
    return (quote.usd_per_gpu_hour, f"{quote.name} ({quote.source}, {quote.date})") if quote else (None, None)


def _cost_fields(claim: Claim, per_gpu: float, out_per_gpu: float, price: float | None) -> dict:
    """$/Mtok of the claimed and output tokens at ``price``.

    Raises:
        CostError: an implied $/Mtok above ``MAX_USD_PER_MTOK`` (the README's bound on a token price).
    """
    if price is None:
        return {}
    fields = {"usd_per_mtok_claimed_tokens": usd_per_mtok(price, per_gpu),
              "usd_per_mtok_output": usd_per_mtok(price, out_per_gpu) if claim.tokens != "unstated" else None}
    worst = max(v for v in fields.values() if v is not None)
    if worst > MAX_USD_PER_MTOK:
        raise CostError(f"claim {claim.claim_id}: {claim.tok_per_s:g} tok/s at ${price:.4g}/GPU-hour implies "
                        f"${worst:.4g}/Mtok, over the {MAX_USD_PER_MTOK:,.0f} $/Mtok bound: check the figure "
                        "and its unit")
    if claim.stated_usd_per_mtok is not None:
        fields["implied_tok_per_s_for_stated_price"] = tok_per_s_for_usd_per_mtok(price, claim.stated_usd_per_mtok)
    return fields


def _missing(claim: Claim, cfg: ModelConfig | None, spec: GpuSpec | None) -> tuple[str, str] | None:
    """(status, reason) when the claim cannot be bounded, else None."""
    if cfg is None:
        why = f"model {claim.model!r} is not in the catalog (presets: {', '.join(preset_names())}; or pass --config)"
        if spec is None:
            why += f"; GPU {claim.gpu!r} is unknown too"
        return "model-not-in-catalog", why
    if spec is None:
        return "unknown-gpu", f"GPU {claim.gpu!r} is not in the GPU catalog; no peak to bound against"
    return None


def _unstated(claim: Claim) -> list[str]:
    return [n for n in ("precision", "input_len") if getattr(claim, n) is None]


def most_favourable_precision(spec: GpuSpec) -> str:
    """The weight precision that gives ``spec`` its highest bound: the fewest bytes per weight (4-bit)
    with its highest dense peak (``GpuSpec.peak_flops_per_s`` falls back from FP4 to FP8 to BF16); named
    fp4 where the GPU has an FP4 column, else int4 (4-bit weights run on any GPU, e.g. weight-only)."""
    return "fp4" if spec.fp4_tflops is not None else "int4"


def percent(fraction: float) -> str:
    """``fraction`` as a percentage with as few decimals as keep it on the right side of the verdict
    thresholds (20% and 100%): 0.196 is "19.6%", never "20%" next to "under 20%"; 3 significant digits
    from 1000% up, 2 under 1% (never "0%" for a claim that is not zero)."""
    if fraction >= 10 or 0 < fraction < 0.01:
        return f"{fraction * 100:.{3 if fraction >= 10 else 2}g}%"
    for digits in range(6):
        text = f"{fraction:.{digits}%}"
        shown = float(text[:-1]) / 100
        if all((shown < t) == (fraction < t) and (shown > t) == (fraction > t) for t in (LOW_FRACTION, 1.0)):
            return text
    return text


def _where(fraction: float, bound: Bound) -> str:
    return (f"{percent(fraction)} of the {bound.binding} bound {bound.output_tok_per_s_per_gpu:,.0f} output tok/s "
            f"per GPU (batch {bound.batch_size}: {bound.batch_source}; weights {bound.weight_precision}, "
            f"KV {bound.kv_precision})")


def _names(unstated: list[str]) -> str:
    return " and ".join({"precision": "precision", "input_len": "input length"}[n] for n in unstated)


def _compute_peak_understated(bound: Bound) -> bool:
    """True when the bound binds on compute read from the BF16 column for an 8- or 4-bit precision the
    catalog has no column for (an A100's INT8/INT4 tensor cores: ``GpuSpec.peak_flops_per_s``): that
    peak is too low, so exceeding it proves nothing."""
    return (bound.binding == "compute" and bound.peak_column == "bf16_tflops"
            and bound.weight_precision not in ("bf16", "fp16"))


def _judge(fraction: float, bound: Bound, unstated: list[str]) -> tuple[str, str]:
    where = _where(fraction, bound)
    if fraction > 1 and _compute_peak_understated(bound):
        over_bandwidth = fraction * bound.bandwidth_time_s / bound.compute_time_s  # claim ÷ bandwidth bound
        if over_bandwidth <= 1:
            return "incomplete", (f"above the compute bound, but that bound reads the BF16 peak for "
                                  f"{bound.weight_precision} (the catalog has no {bound.weight_precision} column "
                                  f"for this GPU, whose tensor cores may be faster): {where}; "
                                  f"{percent(over_bandwidth)} of the bandwidth bound, so not shown impossible")
    if unstated:
        what = _names(unstated)
        favourable = f"the most favourable {what} ({', '.join(_favourable_text(n, bound) for n in unstated)})"
        if fraction > 1:
            return "impossible", f"over the roofline even at {favourable}: {where}"
        return "incomplete", (f"the claim does not state {what}; at {favourable} it would be {where}, "
                              "so no verdict beyond 'not impossible'")
    if fraction > 1:
        return "impossible", f"over the roofline: {where}"
    if fraction < LOW_FRACTION:
        return "low", f"possible but under 20% of the roofline (wrong code path or unit slip?): {where}"
    return "possible", f"physically possible: {where}"


def _favourable_text(name: str, bound: Bound) -> str:
    if name == "precision":
        return f"{bound.weight_precision} weights, {bound.kv_precision} KV, peak column {bound.peak_column}"
    return "a 1-token prompt"


def check_claim(claim: Claim, usd_per_gpu_hour: float | None = None, price_source: str | None = None,
                catalog: Catalog | None = None) -> Verdict:
    """Normalise ``claim``, bound it, judge it and price it.

    Price: ``usd_per_gpu_hour`` if given, else the price stated with the claim, else the catalog's
    default on-demand price for its GPU, else none ($/Mtok left empty).

    Raises:
        CostError: invalid fields, mixed units (total tokens without lengths), a request longer than the
            model's ``max_position_embeddings``, a price over ``tokencost.cost.MAX_USD_PER_HOUR``, or an
            implied $/Mtok over ``tokencost.cost.MAX_USD_PER_MTOK``.
        ConfigError: an unreadable ``config_path``.
    """
    validate_claim(claim)
    cat = resolve(catalog)
    per_gpu, out_per_gpu = normalise(claim)
    spec, cfg = lookup_gpu(claim.gpu, cat), resolve_model(claim)
    _check_context(claim, cfg)
    price, source = _price(claim, spec, usd_per_gpu_hour, price_source, cat)
    if price is not None:
        check_usd_per_hour("price per GPU-hour", price)
    common = dict(claim=claim, claimed_tok_per_s_per_gpu=per_gpu, claimed_output_tok_per_s_per_gpu=out_per_gpu,
                  usd_per_gpu_hour=price, price_source=source, notes=_notes(claim),
                  **_cost_fields(claim, per_gpu, out_per_gpu, price))
    missing = _missing(claim, cfg, spec)
    if missing is not None:
        return Verdict(status=missing[0], reason=missing[1], **common)
    return Verdict(**_bound_and_judge(claim, cfg, spec, out_per_gpu), **common)


def _bound_and_judge(claim: Claim, cfg: ModelConfig, spec: GpuSpec, out_per_gpu: float) -> dict:
    """status, reason, bound and fraction_of_bound of a claim whose model and GPU are known; an unstated
    precision or input length is bounded at its most favourable value (module docstring, step 3)."""
    stated = claim.batch_size if claim.batch_size is not None else claim.concurrency
    label = "stated batch" if claim.batch_size is not None else "stated concurrency"
    unstated = _unstated(claim)
    precision = claim.precision or most_favourable_precision(spec)
    kv = claim.kv_precision or (precision if claim.precision is None else None)  # unstated: 4-bit KV too
    try:
        bound = roofline_bound(cfg, spec, claim.gpus, precision, claim.input_len or 1, claim.output_len,
                               stated, label, kv)
    except _Infeasible as exc:  # at a larger precision or prompt it would fit even less
        even = f" even at the most favourable {_names(unstated)}" if unstated else ""
        return {"status": "impossible", "reason": f"does not fit{even}: {exc}"}
    fraction = out_per_gpu / bound.output_tok_per_s_per_gpu
    status, reason = _judge(fraction, bound, unstated)
    return {"status": status, "reason": reason, "bound": bound, "fraction_of_bound": fraction}


def _notes(claim: Claim) -> tuple[str, ...]:
    notes = []
    if claim.unit == "per-node" and claim.gpus > 1:
        notes.append(f"per-node figure divided by {claim.gpus} GPUs")
    if claim.tokens == "total":
        notes.append("total tokens converted to output tokens as total × O / (I + O)")
    if claim.tokens == "unstated":
        notes.append("token type not stated: bounded as output tokens (the most demanding reading)")
    if claim.precision and claim.kv_precision is None:
        notes.append(f"KV precision not stated: {default_kv_precision(claim.precision)} assumed")
    if claim.precision is None:
        notes.append("precision not stated: bounded at 4-bit weights (and KV unless stated) with the GPU's highest "
                     "peak, the most favourable reading")
    if claim.input_len is None:
        notes.append("input length not stated: bounded with a 1-token prompt, the most favourable reading")
    if claim.output_len is None:
        notes.append("output length not stated: bound at the first decode step only")
    return tuple(notes)


def _check_context(claim: Claim, cfg: ModelConfig | None) -> None:
    """A request longer than the model's positions is an invalid setup, not a claim to bound.

    Raises:
        CostError: input + output length over ``cfg.max_position_embeddings``.
    """
    length = (claim.input_len or 0) + (claim.output_len or 0)
    if cfg is not None and length > cfg.max_position_embeddings:
        raise CostError(f"claim {claim.claim_id}: input + output = {length} tokens exceeds {cfg.name}'s "
                        f"max_position_embeddings {cfg.max_position_embeddings}")


def claim_from_row(row: dict) -> Claim:
    """A :class:`Claim` from a parsed ``claims.csv`` row."""
    fields = {f.name for f in dataclasses.fields(Claim)} - {"config_path", "note"}
    return Claim(**{name: row[name] for name in fields if name in row}, note=row.get("note") or "")


def load_claims(catalog: Catalog | None = None) -> list[Claim]:
    """Every claim in the (active) catalog, in file order."""
    return [claim_from_row(r) for r in resolve(catalog).rows("claims")]


def check_all(usd_per_gpu_hour: float | None = None, price_source: str | None = None,
              catalog: Catalog | None = None, claims: list[Claim] | None = None) -> list[Verdict]:
    """Check every catalog claim (or only ``claims``); a claim whose fields are inconsistent is reported
    as "invalid" with the error message instead of stopping the batch."""
    verdicts = []
    for claim in load_claims(catalog) if claims is None else claims:
        try:
            verdicts.append(check_claim(claim, usd_per_gpu_hour, price_source, catalog))
        except (CostError, ConfigError) as exc:
            verdicts.append(Verdict(claim=claim, status="invalid", reason=str(exc)))
    return verdicts
