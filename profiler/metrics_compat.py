"""TTFT, TPOT, ITL and throughput under the definitions other benchmarking tools use.

The same name means different things in different tools (../shared/reference/metrics.md, sections
1.1-1.2 and 2). This module recomputes a tokencost measurement the way each tool would, so a local
number can be set beside a published one. Two kinds of input:

- :class:`RequestTrace`: one streamed request (send time, arrival time of each chunk, tokens per
  chunk), the view a serving client has. Tools: ``vllm``, ``trtllm-bench``, ``genai-perf``,
  ``guidellm``, ``llmperf``, ``inferencex``.
- :class:`BatchDecode`: our static-batch decode (TTFT = prefill step including the first token, then
  one decode step per further token for every sequence). Tools: ``sglang``, ``nanochat``, ``gpt-fast``.

A :class:`BatchDecode` converts to request traces (every sequence sent at 0, its first token at
TTFT, one token per step after), so every tool can be applied to a tokencost record with
:func:`emit_compat`. Metric names follow the tool's own keys, with the unit appended where the tool's
key has none (``output_throughput`` -> ``output_throughput_tok_per_s``). A statistic with no samples
(e.g. TPOT when every request produced one token) is None, where some tools print 0.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Callable, Sequence

import numpy as np

from profiler.errors import ProfilerError


@dataclasses.dataclass(frozen=True)
class RequestTrace:
    """One streamed request. Times in seconds on any common clock.

    send_s: when the client sent it; chunk_times_s: arrival of each streamed chunk (non-decreasing,
    >= send_s); chunk_tokens: output tokens carried by each chunk (>= 1); input_tokens: prompt length.
    Raises ProfilerError for inconsistent input.
    """

    send_s: float
    chunk_times_s: tuple[float, ...]
    chunk_tokens: tuple[int, ...]
    input_tokens: int = 0

    def __post_init__(self) -> None:
        times, tokens = tuple(self.chunk_times_s), tuple(self.chunk_tokens)
        if not times or len(times) != len(tokens):
            raise ProfilerError("a request trace needs one token count per chunk and at least one chunk")
        if any(b < a for a, b in zip((self.send_s,) + times, times)):
            raise ProfilerError("chunk times must be non-decreasing and not before the send time")
        if any(n < 1 for n in tokens) or self.input_tokens < 0:
            raise ProfilerError("each chunk carries >= 1 token and input_tokens is >= 0")
        object.__setattr__(self, "chunk_times_s", times)
        object.__setattr__(self, "chunk_tokens", tokens)

    @property
    def ttft_s(self) -> float:
        return self.chunk_times_s[0] - self.send_s

    @property
    def e2e_s(self) -> float:
        return self.chunk_times_s[-1] - self.send_s

    @property
    def output_tokens(self) -> int:
        return sum(self.chunk_tokens)

    @property
    def gaps_s(self) -> list[float]:
        """Time between successive chunks (len = chunks - 1)."""
        return [b - a for a, b in zip(self.chunk_times_s, self.chunk_times_s[1:])]


@dataclasses.dataclass(frozen=True)
class BatchDecode:
    """A static-batch decode: ttft_s (prefill + first token), step_times_s (one per further token,
    each step emits one token for every sequence), batch_size, prompt_len (tokens per sequence)."""

    ttft_s: float
    step_times_s: tuple[float, ...]
    batch_size: int
    prompt_len: int = 0

    def __post_init__(self) -> None:
        steps = tuple(float(s) for s in self.step_times_s)
        if not steps or any(not math.isfinite(s) or s <= 0 for s in steps):
            raise ProfilerError("step_times_s must be a non-empty list of positive seconds")
        if not math.isfinite(self.ttft_s) or self.ttft_s <= 0:
            raise ProfilerError(f"ttft_s must be positive seconds, got {self.ttft_s}")
        if self.batch_size < 1 or self.prompt_len < 0:
            raise ProfilerError("batch_size must be >= 1 and prompt_len >= 0")
        object.__setattr__(self, "step_times_s", steps)

    @property
    def output_tokens_per_seq(self) -> int:
        return 1 + len(self.step_times_s)

    def to_traces(self) -> list[RequestTrace]:
        """One trace per sequence: sent at 0, first token at TTFT, then one token per decode step."""
        times = tuple(self.ttft_s + float(t) for t in np.concatenate(([0.0], np.cumsum(self.step_times_s))))
        trace = RequestTrace(0.0, times, (1,) * len(times), self.prompt_len)
        return [trace] * self.batch_size


# ----------------------------------------------------------------------------------------------
# Aggregation helpers


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000.0


def _linear_pct(values: Sequence[float], pct: float) -> float | None:
    """numpy's default (linear interpolation) percentile, as vLLM, GenAI-Perf and guidellm use."""
    return float(np.percentile(values, pct)) if len(values) else None


def _nearest_rank_pct(values: Sequence[float], fraction: float) -> float | None:
    """sorted(values)[int(n * fraction)]: trtllm-bench ``PercentileStats.from_iterable``."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(int(len(ordered) * fraction), len(ordered) - 1)])


def _duration_s(traces: Sequence[RequestTrace]) -> float:
    """Benchmark duration: first send to last chunk."""
    return max(t.chunk_times_s[-1] for t in traces) - min(t.send_s for t in traces)


def _require(traces: Sequence[RequestTrace]) -> None:
    if not traces:
        raise ProfilerError("at least one request trace is needed")
    if _duration_s(traces) <= 0:
        raise ProfilerError("the traces span zero time")


# ----------------------------------------------------------------------------------------------
# Request-level tools


def _vllm_stats(name: str, values_s: Sequence[float]) -> dict[str, float | None]:
    std = float(np.std(values_s)) if len(values_s) else None  # population std, as numpy's default
    return {
        f"mean_{name}_ms": _ms(_mean(values_s)),
        f"median_{name}_ms": _ms(_linear_pct(values_s, 50)),
        f"std_{name}_ms": _ms(std),
        f"p99_{name}_ms": _ms(_linear_pct(values_s, 99)),
    }


def vllm_serve(traces: Sequence[RequestTrace]) -> dict[str, float | int | None]:
    """vLLM ``vllm bench serve`` (vllm-project/vllm ``vllm/benchmarks/serve.py``, calculate_metrics).

    TPOT per request = (E2E - TTFT) / (output_tokens - 1), only for requests with > 1 token, then
    mean/median/p99 over requests (request-weighted). ITL = every gap between successive chunks,
    pooled over requests (a multi-token chunk is one sample). Throughputs divide by the benchmark
    duration, which includes TTFT.
    """
    _require(traces)
    dur = _duration_s(traces)
    out = sum(t.output_tokens for t in traces)
    inp = sum(t.input_tokens for t in traces)
    tpots = [(t.e2e_s - t.ttft_s) / (t.output_tokens - 1) for t in traces if t.output_tokens > 1]
    metrics: dict[str, float | int | None] = {
        "duration_s": dur, "completed": len(traces), "total_input_tokens": inp, "total_output_tokens": out,
        "request_throughput_req_per_s": len(traces) / dur,
        "output_throughput_tok_per_s": out / dur,
        "total_token_throughput_tok_per_s": (inp + out) / dur,
    }
    metrics.update(_vllm_stats("ttft", [t.ttft_s for t in traces]))
    metrics.update(_vllm_stats("tpot", tpots))
    metrics.update(_vllm_stats("itl", [g for t in traces for g in t.gaps_s]))
    metrics.update(_vllm_stats("e2el", [t.e2e_s for t in traces]))
    return metrics


def _trt_stats(name: str, values: Sequence[float], scale: float, unit: str) -> dict[str, float | None]:
    stats = {"average": _mean(values), "minimum": min(values, default=None), "maximum": max(values, default=None)}
    stats.update({f"p{p}": _nearest_rank_pct(values, p / 100) for p in (50, 90, 95, 99)})
    return {f"{name}_{k}_{unit}": None if v is None else v * scale for k, v in stats.items()}


def trtllm_bench(traces: Sequence[RequestTrace], world_size: int = 1) -> dict[str, float | None]:
    """TensorRT-LLM ``trtllm-bench`` (NVIDIA/TensorRT-LLM ``tensorrt_llm/bench/dataclasses/``
    ``statistics.py`` RequestRecord and ``reporting.py``).

    TPOT per request = (last token - first token) / (output_tokens - 1); percentiles are nearest-rank
    (sorted[int(n * p)]). "Per User Output Throughput [w/ ctx]" = mean over requests of
    output_tokens / E2E (includes the first token and TTFT); "Per User Output Speed" = mean of
    (output_tokens - 1) / (E2E - TTFT). Per-GPU output = system output throughput / world size.
    """
    _require(traces)
    dur = _duration_s(traces)
    out = sum(t.output_tokens for t in traces)
    gen = [t for t in traces if t.output_tokens > 1 and t.e2e_s > t.ttft_s]
    tpots = [(t.e2e_s - t.ttft_s) / (t.output_tokens - 1) for t in gen]
    metrics: dict[str, float | None] = {
        "request_throughput_req_s": len(traces) / dur,
        "system_output_throughput_tok_s": out / dur,
        "system_total_throughput_tok_s": (out + sum(t.input_tokens for t in traces)) / dur,
        "output_throughput_per_user_tok_s": _mean([t.output_tokens / t.e2e_s for t in traces if t.e2e_s > 0]),
        "output_throughput_per_gpu_tok_s": out / dur / world_size,
        "token_output_speed_tok_s": _mean([(t.output_tokens - 1) / (t.e2e_s - t.ttft_s) for t in gen]),
        "total_latency_ms": dur * 1000.0,
        "avg_request_latency_ms": _ms(_mean([t.e2e_s for t in traces])),
    }
    metrics.update(_trt_stats("tpot", tpots, 1000.0, "ms"))
    metrics.update(_trt_stats("ttft", [t.ttft_s for t in traces], 1000.0, "ms"))
    return metrics


def _genai_stats(name: str, values: Sequence[float]) -> dict[str, float | None]:
    stats = {"avg": _mean(values), "min": min(values, default=None), "max": max(values, default=None)}
    stats.update({f"p{p}": _linear_pct(values, p) for p in (50, 75, 90, 99)})
    return {f"{name}.{k}": v for k, v in stats.items()}


def genai_perf(traces: Sequence[RequestTrace]) -> dict[str, float | None]:
    """GenAI-Perf (triton-inference-server/perf_analyzer ``genai-perf/README.md``, Metrics table).

    ITL: gap between a response and the previous one divided by the tokens in the later response,
    one value per response after the first, pooled over requests. Output Token Throughput Per User:
    per request, (output_tokens - 1) / (last response - first response). Output Token Throughput:
    total output tokens / benchmark duration. Times in ms.
    """
    _require(traces)
    itls = [g / n for t in traces for g, n in zip(t.gaps_s, t.chunk_tokens[1:])]
    per_user = [(t.output_tokens - 1) / (t.e2e_s - t.ttft_s) for t in traces if t.e2e_s > t.ttft_s]
    metrics = {"output_token_throughput_tok_per_s": sum(t.output_tokens for t in traces) / _duration_s(traces),
               "request_throughput_req_per_s": len(traces) / _duration_s(traces)}
    metrics.update(_genai_stats("time_to_first_token_ms", [t.ttft_s * 1000.0 for t in traces]))
    metrics.update(_genai_stats("inter_token_latency_ms", [v * 1000.0 for v in itls]))
    metrics.update(_genai_stats("output_token_throughput_per_user_tok_per_s", per_user))
    metrics.update(_genai_stats("request_latency_ms", [t.e2e_s * 1000.0 for t in traces]))
    return metrics


def _weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float | None:
    total = float(sum(weights))
    return float(np.dot(values, weights) / total) if total > 0 else None


def guidellm(traces: Sequence[RequestTrace]) -> dict[str, float | None]:
    """guidellm (vllm-project/guidellm request stats; issue #1144).

    time_per_output_token_ms per request = (last token - request start) / output_tokens, so it
    includes TTFT and the first token (matches no other tool). inter_token_latency_ms per request =
    (last token - first token) / (output_tokens - 1) (the vLLM TPOT formula). Means are
    token-weighted (issue #1144); we weight each request by the tokens its value averages over
    (output_tokens for TPOT, output_tokens - 1 for ITL), our reading of that issue.
    """
    _require(traces)
    gen = [t for t in traces if t.output_tokens > 1]
    itl = [(t.e2e_s - t.ttft_s) / (t.output_tokens - 1) * 1000.0 for t in gen]
    tpot = [t.e2e_s / t.output_tokens * 1000.0 for t in traces]
    return {
        "time_to_first_token_ms.mean": _ms(_mean([t.ttft_s for t in traces])),
        "time_to_first_token_ms.median": _ms(_linear_pct([t.ttft_s for t in traces], 50)),
        "time_per_output_token_ms.mean": _weighted_mean(tpot, [t.output_tokens for t in traces]),
        "inter_token_latency_ms.mean": _weighted_mean(itl, [t.output_tokens - 1 for t in gen]),
        "output_tokens_per_second": sum(t.output_tokens for t in traces) / _duration_s(traces),
    }


def llmperf(traces: Sequence[RequestTrace]) -> dict[str, float | None]:
    """llmperf (ray-project/llmperf ``token_benchmark_ray.py``).

    inter_token_latency_s per request = sum of all gaps *including TTFT* / number of streamed chunks
    (= E2E / chunks); request_output_throughput_token_per_s = output_tokens / E2E; the summary
    mean_output_throughput_token_per_s = total output tokens / wall time of the test.
    """
    _require(traces)
    itl = [t.e2e_s / len(t.chunk_times_s) for t in traces]
    per_request = [t.output_tokens / t.e2e_s for t in traces if t.e2e_s > 0]
    return {
        "results_ttft_s_mean": _mean([t.ttft_s for t in traces]),
        "results_inter_token_latency_s_mean": _mean(itl),
        "results_end_to_end_latency_s_mean": _mean([t.e2e_s for t in traces]),
        "results_request_output_throughput_token_per_s_mean": _mean(per_request),
        "results_mean_output_throughput_token_per_s": sum(t.output_tokens for t in traces) / _duration_s(traces),
    }


def inferencex(traces: Sequence[RequestTrace], n_gpus: int = 1) -> dict[str, float | None]:
    """InferenceX (SemiAnalysisAI/InferenceX ``utils/process_result.py``) on vLLM serve results.

    interactivity = 1000 / median TPOT in ms (tok/s per user); tput_per_gpu = total token
    throughput / GPUs; output_tput_per_gpu and input_tput_per_gpu split it by output and input.
    """
    vllm = vllm_serve(traces)
    median_tpot = vllm["median_tpot_ms"]
    total, output = vllm["total_token_throughput_tok_per_s"], vllm["output_throughput_tok_per_s"]
    return {
        "interactivity_tok_per_s_per_user": None if not median_tpot else 1000.0 / median_tpot,
        "tput_per_gpu_tok_per_s": total / n_gpus,
        "output_tput_per_gpu_tok_per_s": output / n_gpus,
        "input_tput_per_gpu_tok_per_s": (total - output) / n_gpus,
    }


# ----------------------------------------------------------------------------------------------
# Batch-level tools


def sglang_bench_one_batch(decode: BatchDecode) -> dict[str, float]:
    """SGLang ``bench_one_batch`` (sgl-project/sglang ``python/sglang/bench_one_batch.py``).

    prefill throughput = batch x input_len / prefill latency; decode throughput = batch / median
    decode-step latency; overall = batch x (input_len + output_len) / (prefill + all decode steps).
    """
    b, steps = decode.batch_size, decode.step_times_s
    median_step = statistics.median(steps)
    total = decode.ttft_s + sum(steps)
    return {
        "prefill_latency_s": decode.ttft_s,
        "prefill_throughput_tok_per_s": b * decode.prompt_len / decode.ttft_s,
        "median_decode_latency_s": median_step,
        "median_decode_throughput_tok_per_s": b / median_step,
        "total_latency_s": total,
        "overall_throughput_tok_per_s": b * (decode.prompt_len + decode.output_tokens_per_seq) / total,
    }


def nanochat_infer_bench(decode: BatchDecode) -> dict[str, float]:
    """nanochat ``scripts/infer_bench.py`` (karpathy/nanochat): TTFT = first generator step; TPOT =
    median decode step; throughput = batch x decode steps / sum of decode-step times."""
    steps = decode.step_times_s
    return {
        "ttft_sec": decode.ttft_s,
        "tpot_sec": statistics.median(steps),
        "tok_per_sec": decode.batch_size * len(steps) / sum(steps),
    }


def gpt_fast(decode: BatchDecode) -> dict[str, float]:
    """gpt-fast ``generate.py`` (pytorch-labs/gpt-fast): tokens generated per sequence / wall time of
    generate(), which includes prefill; with batch > 1 it still counts one sequence (issues #26, #27)."""
    return {"tokens_per_sec": decode.output_tokens_per_seq / (decode.ttft_s + sum(decode.step_times_s))}


# ----------------------------------------------------------------------------------------------
# Registry and the record adapter

REQUEST_TOOLS: dict[str, Callable[[Sequence[RequestTrace]], dict]] = {
    "vllm": vllm_serve,
    "trtllm-bench": trtllm_bench,
    "genai-perf": genai_perf,
    "guidellm": guidellm,
    "llmperf": llmperf,
    "inferencex": inferencex,
}
BATCH_TOOLS: dict[str, Callable[[BatchDecode], dict]] = {
    "sglang": sglang_bench_one_batch,
    "nanochat": nanochat_infer_bench,
    "gpt-fast": gpt_fast,
}
TOOLS: tuple[str, ...] = tuple(REQUEST_TOOLS) + tuple(BATCH_TOOLS)
TOOL_SOURCES: dict[str, str] = {
    "vllm": "vllm-project/vllm vllm/benchmarks/serve.py (calculate_metrics)",
    "trtllm-bench": "NVIDIA/TensorRT-LLM tensorrt_llm/bench/dataclasses/statistics.py and reporting.py",
    "genai-perf": "triton-inference-server/perf_analyzer genai-perf/README.md (Metrics)",
    "guidellm": "vllm-project/guidellm request stats; guidellm issue #1144",
    "llmperf": "ray-project/llmperf token_benchmark_ray.py",
    "inferencex": "SemiAnalysisAI/InferenceX utils/process_result.py",
    "sglang": "sgl-project/sglang python/sglang/bench_one_batch.py",
    "nanochat": "karpathy/nanochat scripts/infer_bench.py",
    "gpt-fast": "pytorch-labs/gpt-fast generate.py",
}


def decode_from_record(record: dict) -> BatchDecode:
    """BatchDecode from a tokencost run record (keys ttft_s, step_times_s, batch_size, prompt_len).

    step_times_s holds one entry per token after the first (the first comes with TTFT), as
    profiler.measure does: gen_len, when present, must equal len(step_times_s) + 1.
    Raises ProfilerError naming a missing or bad key.
    """
    for key in ("ttft_s", "step_times_s", "batch_size"):
        if record.get(key) is None:
            raise ProfilerError(f"record has no {key!r}; compatible metrics need it")
    if not isinstance(record["step_times_s"], list):
        raise ProfilerError("record 'step_times_s' must be a list of seconds")
    gen_len = record.get("gen_len")
    if gen_len is not None and gen_len != len(record["step_times_s"]) + 1:
        raise ProfilerError(f"record gen_len {gen_len} does not match {len(record['step_times_s'])} decode steps + 1")
    return BatchDecode(float(record["ttft_s"]), tuple(record["step_times_s"]),
                       int(record["batch_size"]), int(record.get("prompt_len") or 0))


def emit_compat(record: dict, tool: str) -> dict:
    """A tokencost run record's metrics under ``tool``'s definitions.

    Returns {"tool", "source" (file the definition comes from), "metrics" (tool's metric names,
    unit appended where the tool has none)}. Raises ProfilerError for an unknown tool or a
    record without ttft_s / step_times_s / batch_size.
    """
    if tool not in TOOLS:
        raise ProfilerError(f"unknown tool {tool!r}; known: {', '.join(TOOLS)}")
    decode = decode_from_record(record)
    fn = REQUEST_TOOLS.get(tool)
    metrics = fn(decode.to_traces()) if fn is not None else BATCH_TOOLS[tool](decode)
    return {"tool": tool, "source": TOOL_SOURCES[tool], "metrics": metrics}
