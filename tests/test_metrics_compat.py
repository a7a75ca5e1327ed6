"""Each tool's metric definitions on small synthetic traces, checked against values worked by hand.

Trace A: sent at 0 s, chunks at 0.1 s (1 token), 0.3 s (2 tokens), 0.5 s (2 tokens): 5 output tokens,
TTFT 0.1 s, E2E 0.5 s, gaps 0.2 s and 0.2 s, 10 input tokens.
Trace B: sent at 0.2 s, chunks at 0.25, 0.45, 0.85 s (1 token each): 3 tokens, TTFT 0.05 s, E2E 0.65 s,
gaps 0.2 s and 0.4 s, 20 input tokens. Benchmark duration: 0 s to 0.85 s.
"""

import pytest

from profiler.errors import ProfilerError
from profiler.metrics_compat import (TOOLS, BatchDecode, RequestTrace, decode_from_record, emit_compat,
                                     genai_perf, gpt_fast, guidellm, inferencex, llmperf, nanochat_infer_bench,
                                     sglang_bench_one_batch, trtllm_bench, vllm_serve)

A = RequestTrace(0.0, (0.1, 0.3, 0.5), (1, 2, 2), input_tokens=10)
B = RequestTrace(0.2, (0.25, 0.45, 0.85), (1, 1, 1), input_tokens=20)
TRACES = [A, B]
approx = pytest.approx


def test_trace_properties():
    assert (A.ttft_s, A.e2e_s, A.output_tokens) == (approx(0.1), approx(0.5), 5)
    assert A.gaps_s == [approx(0.2), approx(0.2)]
    assert (B.ttft_s, B.e2e_s, B.output_tokens) == (approx(0.05), approx(0.65), 3)


def test_vllm_tpot_is_per_request_and_itl_pools_chunk_gaps():
    m = vllm_serve(TRACES)
    # TPOT: A (0.5 - 0.1) / (5 - 1) = 0.1 s; B (0.65 - 0.05) / 2 = 0.3 s; request-weighted mean 0.2 s.
    assert m["mean_tpot_ms"] == approx(200.0)
    assert m["median_tpot_ms"] == approx(200.0)
    # ITL: gaps 0.2, 0.2, 0.2, 0.4 pooled (a 2-token chunk is one sample): mean 0.25, median 0.2.
    assert m["mean_itl_ms"] == approx(250.0)
    assert m["median_itl_ms"] == approx(200.0)
    assert m["p99_itl_ms"] == approx(394.0)  # linear: rank 0.99 * 3 = 2.97 -> 0.2 + 0.97 * 0.2
    assert m["mean_itl_ms"] != approx(m["mean_tpot_ms"])  # multi-token chunks separate ITL from TPOT
    assert m["mean_ttft_ms"] == approx(75.0)
    assert m["mean_e2el_ms"] == approx(575.0)
    assert m["output_throughput_tok_per_s"] == approx(8 / 0.85)
    assert m["total_token_throughput_tok_per_s"] == approx(38 / 0.85)
    assert m["request_throughput_req_per_s"] == approx(2 / 0.85)


def test_vllm_tpot_skips_single_token_requests():
    one = RequestTrace(0.0, (0.1,), (1,))
    m = vllm_serve([one])
    assert m["mean_tpot_ms"] is None and m["mean_itl_ms"] is None  # no samples: None, not 0
    assert vllm_serve([one, A])["mean_tpot_ms"] == approx(100.0)


def test_trtllm_nearest_rank_percentiles_and_per_user_rates():
    m = trtllm_bench(TRACES, world_size=2)
    assert m["tpot_average_ms"] == approx(200.0)
    assert m["tpot_p50_ms"] == approx(300.0)  # sorted([0.1, 0.3])[int(2 * 0.5)] = 0.3, not the 0.2 median
    assert m["tpot_minimum_ms"] == approx(100.0) and m["tpot_maximum_ms"] == approx(300.0)
    # [w/ ctx]: mean(5 / 0.5, 3 / 0.65); speed: mean(4 / 0.4, 2 / 0.6)
    assert m["output_throughput_per_user_tok_s"] == approx((10 + 3 / 0.65) / 2)
    assert m["token_output_speed_tok_s"] == approx((10 + 2 / 0.6) / 2)
    assert m["system_output_throughput_tok_s"] == approx(8 / 0.85)
    assert m["output_throughput_per_gpu_tok_s"] == approx(8 / 0.85 / 2)
    assert m["ttft_average_ms"] == approx(75.0)


def test_genai_perf_itl_divides_each_gap_by_the_later_response_tokens():
    m = genai_perf(TRACES)
    # A: 0.2 / 2, 0.2 / 2; B: 0.2 / 1, 0.4 / 1 -> 0.1, 0.1, 0.2, 0.4
    assert m["inter_token_latency_ms.avg"] == approx(200.0)
    assert m["inter_token_latency_ms.min"] == approx(100.0)
    assert m["inter_token_latency_ms.max"] == approx(400.0)
    # per user: A (5 - 1) / (0.5 - 0.1) = 10; B (3 - 1) / (0.65 - 0.05) = 3.333
    assert m["output_token_throughput_per_user_tok_per_s.avg"] == approx((10 + 2 / 0.6) / 2)
    assert m["time_to_first_token_ms.avg"] == approx(75.0)
    assert m["output_token_throughput_tok_per_s"] == approx(8 / 0.85)


def test_guidellm_tpot_includes_ttft_and_means_are_token_weighted():
    m = guidellm(TRACES)
    # TPOT: A 0.5 / 5 = 100 ms (weight 5), B 0.65 / 3 = 216.7 ms (weight 3) -> (500 + 650) / 8
    assert m["time_per_output_token_ms.mean"] == approx(143.75)
    # ITL: A 100 ms (weight 4), B 300 ms (weight 2) -> (400 + 600) / 6; request-weighted would be 200
    assert m["inter_token_latency_ms.mean"] == approx(1000 / 6)
    assert m["output_tokens_per_second"] == approx(8 / 0.85)


def test_llmperf_itl_counts_ttft_and_divides_by_chunks():
    m = llmperf(TRACES)
    assert m["results_inter_token_latency_s_mean"] == approx((0.5 / 3 + 0.65 / 3) / 2)
    assert m["results_request_output_throughput_token_per_s_mean"] == approx((10 + 3 / 0.65) / 2)
    assert m["results_mean_output_throughput_token_per_s"] == approx(8 / 0.85)
    assert m["results_ttft_s_mean"] == approx(0.075)


def test_inferencex_interactivity_is_1000_over_median_tpot_ms():
    m = inferencex(TRACES, n_gpus=4)
    assert m["interactivity_tok_per_s_per_user"] == approx(1000 / 200.0)
    assert m["output_tput_per_gpu_tok_per_s"] == approx(8 / 0.85 / 4)
    assert m["input_tput_per_gpu_tok_per_s"] == approx(30 / 0.85 / 4)


# Batch decode: TTFT 0.05 s, decode steps 0.01, 0.01, 0.04 s, batch 4, prompt 100 -> 4 tokens per sequence.
DEC = BatchDecode(0.05, (0.01, 0.01, 0.04), batch_size=4, prompt_len=100)


def test_batch_decode_as_traces():
    traces = DEC.to_traces()
    assert len(traces) == 4
    assert traces[0].chunk_times_s == approx((0.05, 0.06, 0.07, 0.11))
    assert traces[0].output_tokens == 4 and traces[0].input_tokens == 100


def test_vllm_on_a_batch_decode_uses_mean_step_and_includes_prefill():
    m = vllm_serve(DEC.to_traces())
    assert m["mean_tpot_ms"] == approx(20.0)  # (0.11 - 0.05) / 3: the mean step, not the 10 ms median
    assert m["median_itl_ms"] == approx(10.0)
    assert m["output_throughput_tok_per_s"] == approx(16 / 0.11)  # tokencost's batch / median step = 400


def test_sglang_nanochat_gpt_fast():
    s = sglang_bench_one_batch(DEC)
    assert s["prefill_throughput_tok_per_s"] == approx(4 * 100 / 0.05)
    assert s["median_decode_latency_s"] == approx(0.01)
    assert s["median_decode_throughput_tok_per_s"] == approx(400.0)
    assert s["overall_throughput_tok_per_s"] == approx(4 * 104 / 0.11)
    n = nanochat_infer_bench(DEC)
    assert (n["ttft_sec"], n["tpot_sec"]) == (approx(0.05), approx(0.01))
    assert n["tok_per_sec"] == approx(4 * 3 / 0.06)
    assert gpt_fast(DEC)["tokens_per_sec"] == approx(4 / 0.11)  # one sequence's tokens, prefill included


RECORD = {"ttft_s": 0.05, "step_times_s": [0.01, 0.01, 0.04], "batch_size": 4, "prompt_len": 100,
          "tpot_s": 0.01, "output_tok_per_s": 400.0}


@pytest.mark.parametrize("tool", TOOLS)
def test_emit_compat_every_tool(tool):
    out = emit_compat(RECORD, tool)
    assert out["tool"] == tool and out["source"]
    assert out["metrics"] and all(v is None or v >= 0 for v in out["metrics"].values())


def test_emit_compat_matches_the_direct_functions():
    assert emit_compat(RECORD, "vllm")["metrics"] == vllm_serve(DEC.to_traces())
    assert emit_compat(RECORD, "sglang")["metrics"] == sglang_bench_one_batch(DEC)
    assert emit_compat(RECORD, "inferencex")["metrics"]["interactivity_tok_per_s_per_user"] == approx(50.0)


def test_emit_compat_errors():
    with pytest.raises(ProfilerError, match="unknown tool"):
        emit_compat(RECORD, "nope")
    with pytest.raises(ProfilerError, match="step_times_s"):
        emit_compat({k: v for k, v in RECORD.items() if k != "step_times_s"}, "vllm")
    with pytest.raises(ProfilerError, match="step_times_s"):
        decode_from_record({**RECORD, "step_times_s": []})
    with pytest.raises(ProfilerError):
        decode_from_record({**RECORD, "ttft_s": 0.0})
    assert decode_from_record({**RECORD, "gen_len": 4}).output_tokens_per_seq == 4
    with pytest.raises(ProfilerError, match="gen_len"):
        decode_from_record({**RECORD, "gen_len": 3})


@pytest.mark.parametrize("args", [
    (0.0, (), ()),                       # no chunk
    (0.0, (0.1, 0.2), (1,)),             # counts do not match
    (0.5, (0.1,), (1,)),                 # chunk before send
    (0.0, (0.2, 0.1), (1, 1)),           # time goes backwards
    (0.0, (0.1,), (0,)),                 # empty chunk
])
def test_request_trace_validation(args):
    with pytest.raises(ProfilerError):
        RequestTrace(*args)


def test_empty_trace_list_is_an_error():
    with pytest.raises(ProfilerError):
        vllm_serve([])
