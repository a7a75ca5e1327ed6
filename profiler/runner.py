"""One measured point: build the model, time prefill and decode, add the roofline figures.

Produces the flat result record (units in every key) that ``tokencost run`` prints and sweeps append.
Prices are not known here: the cost layer adds the ``usd_*`` keys.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Sequence

import torch

from profiler import roofline
from profiler.backends import VariantError, interpreter_requested, variant_in_traceback
from profiler.config import ModelConfig
from profiler.contention import contention_warnings
from profiler.errors import BackendUnavailableError, ConfigError, ProfilerError, one_line
from profiler.measure import DecodeSettings, ProgressFn, measure_decode

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}
MBU_HIGH, MBU_LOW = 1.0, 0.20


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything that defines one measurement."""

    cfg: ModelConfig
    batch_size: int = 1
    prompt_len: int = 128
    gen_len: int = 32
    device: str = "auto"
    dtype: str = "auto"
    backend: str = "torch"
    op_overrides: tuple[tuple[str, str], ...] = ()
    weights_dir: str | None = None
    seed: int = 0
    warmup_steps: int = 3
    cuda_graph: bool = False  # time each decode step as one CUDA-graph replay (CUDA only)

    def settings(self) -> DecodeSettings:
        return DecodeSettings(self.batch_size, self.prompt_len, self.gen_len, self.warmup_steps, self.seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` → the local CUDA GPU when there is one, else the CPU.

    Raises:
        ProfilerError: an unknown device string, or CUDA asked for where none is available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ProfilerError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProfilerError(f"device {name!r} requested but no CUDA GPU is available; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ProfilerError(f"device type {device.type!r} is not supported; use cpu or cuda")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` → bfloat16 on GPU, float32 on CPU (where bf16 matmuls are slow)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in _DTYPES:
        raise ProfilerError(f"unknown dtype {name!r}; use float32, bfloat16 or float16")
    return _DTYPES[name]


def check_positions(spec: RunSpec) -> None:
    """Raises ProfilerError when prompt + generated tokens would pass the model's max positions."""
    total = spec.prompt_len + spec.gen_len
    if total > spec.cfg.max_position_embeddings:
        raise ProfilerError(f"prompt-len + gen-len = {total} exceeds {spec.cfg.name}'s max_position_embeddings "
                            f"({spec.cfg.max_position_embeddings})")


def check_cuda_graph(spec: RunSpec, device: torch.device) -> None:
    """Raises ProfilerError when ``spec.cuda_graph`` is set for a device that is not a CUDA GPU."""
    if spec.cuda_graph and device.type != "cuda":
        raise ProfilerError(f"--cuda-graph needs a CUDA GPU; the device is {device}")


def decode_context_len(spec: RunSpec) -> int:
    """Context the middle decode step attends to; the roofline bytes of a run are taken there, so
    they pair with the median step time (contexts grow linearly over the run)."""
    return spec.prompt_len + spec.gen_len // 2


def preflight(spec: RunSpec, device: torch.device, dtype: torch.dtype, weights_resident: bool = False) -> None:
    """Everything that can be refused before allocating: sizes, positions, a config the decode model
    cannot build (MoE), what the triton ops cannot run (:func:`check_triton_ops`), and an estimated
    memory need above what the device has free.

    Raises:
        ProfilerError (ConfigError, BackendUnavailableError, InsufficientMemoryError): with a one-line
            reason.
    """
    from profiler.backends import resolve
    from profiler.memory import check_fits
    from profiler.model import check_build_args

    spec.settings().validate()
    check_positions(spec)
    check_build_args(spec.cfg, spec.batch_size, spec.settings().seq_len)
    check_triton_ops(resolve(spec.backend, dict(spec.op_overrides)).describe(), spec.cfg, device, dtype)
    elem = torch.tensor([], dtype=dtype).element_size()
    check_fits(spec.cfg, spec.batch_size, spec.prompt_len, spec.gen_len, elem, device.type,
               include_weights=not weights_resident)


def build_for(spec: RunSpec, device: torch.device, dtype: torch.dtype, reuse: "ModelPool | None" = None):
    """The model of ``spec`` with a cache sized exactly for it; from ``reuse`` when it holds the same
    weights (same config, dtype, device, seed/checkpoint), otherwise built.

    Raises:
        ConfigError: a config the decode model cannot build (MoE).
        InsufficientMemoryError: the estimated memory exceeds what the device has free.
    """
    from profiler.backends import resolve
    from profiler.model import build_model
    from profiler.variant_check import check_variants

    ops = resolve(spec.backend, dict(spec.op_overrides))
    seq_len = spec.settings().seq_len
    pooled = reuse.get(spec, device, dtype) if reuse is not None else None
    preflight(spec, device, dtype, weights_resident=pooled is not None)
    check_variants(ops, spec.cfg, device, dtype)
    if reuse is not None:
        model = pooled
        if model is not None:
            model.resize_cache(spec.batch_size, seq_len)
            model.set_ops(ops)
            return model, ops
    model = build_model(spec.cfg, dtype=dtype, device=device, max_batch_size=spec.batch_size,
                        max_seq_len=seq_len, ops=ops, seed=spec.seed, weights_dir=spec.weights_dir)
    if reuse is not None:
        reuse.put(spec, device, dtype, model)
    return model, ops


class ModelPool:
    """Keeps the last built model so a sweep builds (or loads) its weights once, not once per point."""

    def __init__(self):
        self._key, self._model = None, None

    @staticmethod
    def _key_of(spec: RunSpec, device: torch.device, dtype: torch.dtype) -> tuple:
        return (spec.cfg, str(device), dtype, spec.seed, spec.weights_dir)

    def get(self, spec: RunSpec, device: torch.device, dtype: torch.dtype):
        return self._model if self._key == self._key_of(spec, device, dtype) else None

    def put(self, spec: RunSpec, device: torch.device, dtype: torch.dtype, model) -> None:
        self._key, self._model = self._key_of(spec, device, dtype), model


def roofline_fields(spec: RunSpec, dtype: torch.dtype, tpot_s: float, bandwidth_bytes_per_s: float,
                    peak_flop_per_s: float | None = None) -> dict:
    """Bytes and FLOPs of a decode step at the run's median context (``roofline_context_len``: the KV
    positions the middle decode step attends to, prompt_len + gen_len // 2), the roofline bound, MBU
    and MFU.

    The bound step time is max(bytes ÷ bandwidth, batch × FLOPs per token ÷ peak FLOP/s) (metrics.md
    §3.1–3.2); without a known compute peak (CPU, fp32, unknown GPU) only the bandwidth side is used
    and ``mfu`` is None. Warnings flag MBU above 100% (the byte model or bandwidth is wrong, or a small
    model is served from cache) and below 20%.
    """
    elem = torch.tensor([], dtype=dtype).element_size()
    context = decode_context_len(spec)
    nbytes = roofline.decode_bytes_per_step(spec.cfg, spec.batch_size, context, elem, elem)
    flops_per_token = roofline.decode_flops_per_token(spec.cfg, context)
    bound_s = {"bandwidth": nbytes / bandwidth_bytes_per_s}
    if peak_flop_per_s:
        bound_s["compute"] = spec.batch_size * flops_per_token / peak_flop_per_s
    limit = max(bound_s, key=bound_s.get)
    mbu = roofline.mbu(nbytes, tpot_s, bandwidth_bytes_per_s)
    warnings = []
    if mbu > MBU_HIGH:
        warnings.append(f"MBU {mbu:.0%} is above 100%: the byte model or the bandwidth figure is wrong "
                        "(a small model may also be served from cache)")
    elif mbu < MBU_LOW:
        warnings.append(f"MBU {100 * mbu:.2g}% is below 20%: the decode step is far from the memory roofline "
                        "(launch overhead, small batch on a big device, or compute-bound)")
    return {
        "roofline_context_len": context,
        "bytes_per_step": nbytes,
        "decode_flops_per_token": flops_per_token,
        "roofline_output_tok_per_s": spec.batch_size / bound_s[limit],
        "roofline_bound": limit,
        "mbu": mbu,
        "mfu": (roofline.mfu(spec.batch_size * flops_per_token / tpot_s, peak_flop_per_s)
                if peak_flop_per_s else None),
        "warnings": warnings,
    }


def cpu_load_warnings(env: dict, device: torch.device) -> list[str]:
    """A warning when other work kept more runnable threads than cores before the run: CPU timings
    then include waits for the scheduler (OpenMP teams are hit hardest)."""
    load, cores = env.get("load_average_1m"), env.get("cpu_count_logical")
    if device.type != "cpu" or load is None or not cores or load <= cores:
        return []
    return [f"the CPU was busy before this run (1-minute load average {load:.1f} on {cores} cores): "
            "timings include waits for other processes; rerun on a quiet machine"]


def interpreted_ops(ops: dict[str, str], device: torch.device) -> list[str]:
    """The ops that run on the Triton interpreter: the triton ones, when the device is a CPU."""
    return sorted(op for op, backend in ops.items() if backend == "triton") if device.type == "cpu" else []


def check_triton_ops(ops: dict[str, str], cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse, before anything is built or measured, what the built-in triton ops cannot run: bfloat16
    on the Triton interpreter (it has no bfloat16 arithmetic: kernels.md, section 0), and a head_dim
    above the attention kernels' limit.

    Raises:
        BackendUnavailableError: bfloat16 with triton ops on a CPU.
        ConfigError: a triton attention op with ``cfg.head_dim`` above the kernels' maximum.
    """
    simulated = interpreted_ops(ops, device)
    if simulated and dtype == torch.bfloat16:
        raise BackendUnavailableError(
            f"{', '.join(simulated)} would run on the Triton interpreter, which has no bfloat16; "
            "use --dtype float32 or float16 on a CPU, or run on a CUDA GPU")
    attention = sorted(op for op, b in ops.items() if b == "triton" and op.startswith("attention"))
    if attention:
        from kernels.attention_prefill import MAX_HEAD_DIM

        if cfg.head_dim > MAX_HEAD_DIM:
            raise ConfigError(f"{cfg.name} has head_dim {cfg.head_dim}; the triton {', '.join(attention)} kernels "
                              f"support up to {MAX_HEAD_DIM} (use --op {attention[0]}=torch)")


def user_ops_under_interpreter(ops: dict[str, str], device: torch.device) -> list[str]:
    """The ops given to a user's variant (neither torch nor the built-in triton) on a CPU while
    ``TRITON_INTERPRET=1`` is set: any Triton kernel such a variant launches runs on the interpreter."""
    if device.type != "cpu" or not interpreter_requested():
        return []
    return sorted(f"{op}={backend}" for op, backend in ops.items() if backend not in ("torch", "triton"))


def interpreter_warnings(ops: dict[str, str], device: torch.device) -> list[str]:
    """Triton ops on a CPU run under TRITON_INTERPRET=1, a sequential numpy simulation meant for
    correctness (kernels.md §4): their times say nothing about the kernels, so neither do the dollars."""
    warnings = []
    simulated = interpreted_ops(ops, device)
    if simulated:
        warnings.append(f"{', '.join(simulated)} ran on the Triton interpreter (TRITON_INTERPRET=1), a CPU simulation "
                        "for correctness: these timings and the $/Mtok from them are not the kernels' performance")
    user = user_ops_under_interpreter(ops, device)
    if user:
        warnings.append(f"TRITON_INTERPRET=1 is set on a CPU: if {', '.join(user)} launch Triton kernels, those ran on "
                        "the interpreter and their timings are not the kernels' performance")
    return warnings


# Below this many decode steps a p90 is (nearly) the slowest step: interpolated between the top two.
_MIN_STEPS_FOR_P90 = 10


def tail_sample_warnings(n_steps: int) -> list[str]:
    """A p90 (and p99) of fewer than 10 decode steps is the slowest step in all but name: say so."""
    if n_steps >= _MIN_STEPS_FOR_P90:
        return []
    return [f"TPOT p90 and p99 come from only {n_steps} decode step(s): they are (close to) the slowest step, "
            f"not a tail estimate; use --gen-len >= {_MIN_STEPS_FOR_P90 + 1}"]


# The per-step samples may cover less of the independent decode wall clock than this only when work
# between steps (host overhead, other processes) was left out of TPOT.
_MIN_STEP_SHARE_OF_WALL = 0.5


def wall_clock_warnings(step_times_s: Sequence[float], decode_wall_s: float) -> list[str]:
    """Cross-check of the per-step timer against the independent wall clock around the whole decode
    loop: the steps lie inside it, so their sum may not exceed it (2 % + 0.1 ms allowed for clock
    granularity), and a sum under half of it means TPOT leaves out most of the decode time."""
    total = sum(step_times_s)
    if total > decode_wall_s * 1.02 + 1e-4:
        return [f"the decode steps sum to {total:.4g} s but the wall clock around them read {decode_wall_s:.4g} s: "
                "the per-step timer is not trustworthy on this device"]
    if total < _MIN_STEP_SHARE_OF_WALL * decode_wall_s:
        return [f"the timed decode steps cover only {100 * total / decode_wall_s:.0f} % of the decode wall clock "
                f"({total:.4g} of {decode_wall_s:.4g} s): time between steps (host work, other processes) is not "
                "in TPOT"]
    return []


# Relative interquartile range of the decode step times above which a run says its TPOT is uncertain.
_NOISY_STEP_SPREAD = 0.25


def step_spread_warnings(step_times_s: Sequence[float]) -> list[str]:
    """A warning when the decode steps disagree: relative IQR ((p75 − p25) ÷ median) above 25 %, the
    mark of contention from other processes (KV-cache growth widens it too, over a long generation)."""
    import statistics

    if len(step_times_s) < 4:
        return []
    q1, median, q3 = statistics.quantiles(step_times_s, n=4, method="inclusive")
    spread = (q3 - q1) / median if median > 0 else 0.0
    if spread <= _NOISY_STEP_SPREAD:
        return []
    return [f"the decode step times vary widely (relative IQR {100 * spread:.0f} %): TPOT is uncertain; other "
            "processes competing for the device are the usual cause (a long generation's growing KV cache "
            "widens it too)"]


def energy_fields(m, batch_size: int) -> dict:
    """GPU energy over the decode steps (NVML counter delta) per output token; None where unavailable."""
    mon = m.gpu_monitor or {}
    joules = mon.get("energy_j")
    tokens = batch_size * m.tpot.n
    return {
        "gpu_energy_j": joules, "energy_source": mon.get("energy_source", "unavailable"),
        "energy_unavailable_reason": mon.get("energy_unavailable_reason"),
        "gpu_energy_per_output_token_j": joules / tokens if joules else None,
        "gpu_avg_power_w": mon.get("avg_power_w"), "decode_output_tokens": tokens,
        "gpu_monitor_warnings": list(mon.get("warnings", [])),
        "nvml_decode_start": mon.get("nvml_start"), "nvml_decode_end": mon.get("nvml_end"),
    }


def _measure(model, ops, spec: RunSpec, progress: ProgressFn | None):
    """:func:`measure_decode`, with a user's variant that fails mid-run named in a one-line error."""
    try:
        return measure_decode(model, spec.settings(), progress=progress, cuda_graph=spec.cuda_graph)
    except ProfilerError:
        raise
    except Exception as exc:  # a user's variant failing mid-run: one line naming it, not a traceback
        culprit = variant_in_traceback(exc, ops)
        if culprit is None:
            raise
        raise VariantError(f"op {culprit} raised {type(exc).__name__}: {one_line(exc)}") from exc


def _timing_fields(m) -> dict:
    """The measured times and rates of a record."""
    c = m.contention  # None off Linux or for a window too short to judge
    return {"ttft_s": m.ttft_s, "prefill_tok_per_s": m.prefill_tok_per_s,
            "tpot_s": m.tpot.median_s, "tpot_p90_s": m.tpot.p90_s, "tpot_p99_s": m.tpot.p99_s,
            "tpot_mean_s": m.tpot.mean_s, "n_decode_steps": m.tpot.n, "decode_wall_s": m.decode_wall_s,
            "output_tok_per_s": m.output_tok_per_s, "output_tok_per_s_per_seq": m.output_tok_per_s_per_seq,
            "step_times_s": list(m.step_times_s),
            "cpu_others_cores": None if c is None else c.others_cores,
            "cpu_steal_fraction": None if c is None else c.steal_fraction}


def _timing_warnings(m, env: dict, ops: dict[str, str], device: torch.device) -> list[str]:
    """Every reason to distrust the timing of measurement ``m``."""
    return (cpu_load_warnings(env, device) + interpreter_warnings(ops, device) + tail_sample_warnings(m.tpot.n)
            + wall_clock_warnings(m.step_times_s, m.decode_wall_s) + step_spread_warnings(m.step_times_s)
            + contention_warnings(m.contention))


def run_point(spec: RunSpec, *, bandwidth_bytes_per_s: float, bandwidth_source: str,
              peak_flop_per_s: float | None = None, peak_flop_source: str | None = None,
              progress: ProgressFn | None = None, env: dict | None = None, reuse: ModelPool | None = None) -> dict:
    """Measure one point and return its result record (no price fields).

    Raises:
        ProfilerError: bad sizes, positions past the model's limit, unavailable device/backend, or a
            point that cannot fit in memory (:func:`preflight`, run by :func:`build_for`).
        VariantError: a user's op variant failed its probe call or raised while measuring.
    """
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    check_cuda_graph(spec, device)
    if env is None:
        from profiler.env import collect_env

        env = collect_env(device)
    model, ops = build_for(spec, device, dtype, reuse)
    m = _measure(model, ops, spec, progress)
    record = {
        "kind": "run", "model": spec.cfg.name, "device": str(device), "device_name": env.get("device_name", "unknown"),
        "dtype": str(dtype).removeprefix("torch."), "backend": spec.backend, "ops": ops.describe(),
        "cuda_graph": spec.cuda_graph, "weights": spec.weights_dir or f"dummy (seed {spec.seed})",
        "batch_size": spec.batch_size, "prompt_len": spec.prompt_len, "gen_len": spec.gen_len,
        **_timing_fields(m), "param_count": roofline.param_count(spec.cfg),
        "bandwidth_bytes_per_s": bandwidth_bytes_per_s, "bandwidth_source": bandwidth_source,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "peak_flop_per_s": peak_flop_per_s, "peak_flop_source": peak_flop_source or "not given",
    }
    record.update(roofline_fields(spec, dtype, m.tpot.median_s, bandwidth_bytes_per_s, peak_flop_per_s))
    record.update(energy_fields(m, spec.batch_size))
    record["warnings"] = (record["warnings"] + record["gpu_monitor_warnings"]
                          + _timing_warnings(m, env, ops.describe(), device))
    record["env"] = env
    return record
