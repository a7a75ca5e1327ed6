"""The timed decode loop: invariants of its measurements and its errors (tiny model, CPU)."""

import pytest
import torch

from profiler.config import config_from_dict
from profiler.errors import ProfilerError
from profiler.measure import DecodeSettings, measure_decode
from profiler.model import build_model
from tests.tiny import TINY_LLAMA


def _model(batch=2, seq_len=40):
    cfg = config_from_dict(TINY_LLAMA, name="tiny")
    return build_model(cfg, max_batch_size=batch, max_seq_len=seq_len)


def test_measurement_invariants():
    s = DecodeSettings(batch_size=2, prompt_len=17, gen_len=12, warmup_steps=2)
    m = measure_decode(_model(), s)
    assert len(m.step_times_s) == s.gen_len - 1 == m.tpot.n
    assert all(t > 0 for t in m.step_times_s)
    assert m.tpot.min_s <= m.tpot.median_s <= m.tpot.p90_s <= m.tpot.p99_s <= m.tpot.max_s
    # Output and input throughputs come from their own timings and never mix.
    assert m.output_tok_per_s == pytest.approx(s.batch_size / m.tpot.median_s)
    assert m.output_tok_per_s_per_seq == pytest.approx(1 / m.tpot.median_s)
    assert m.prefill_tok_per_s == pytest.approx(s.batch_size * s.prompt_len / m.ttft_s)
    # The per-step regions sit inside the independent wall clock of the decode loop.
    assert sum(m.step_times_s) <= m.decode_wall_s
    assert sum(m.step_times_s) >= 0.5 * m.decode_wall_s
    assert m.logits_finite


def test_cache_exactly_full_is_allowed_and_too_small_is_an_error():
    s = DecodeSettings(batch_size=1, prompt_len=10, gen_len=5)
    measure_decode(_model(batch=1, seq_len=s.seq_len), s)  # exactly fits: 10 + 5 - 1 positions
    with pytest.raises(ProfilerError, match="exceeds the KV cache"):
        measure_decode(_model(batch=1, seq_len=s.seq_len - 1), s)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0, "prompt_len": 4, "gen_len": 4}, "batch-size"),
    ({"batch_size": 1, "prompt_len": 0, "gen_len": 4}, "prompt-len"),
    ({"batch_size": 1, "prompt_len": 4, "gen_len": 1}, "gen-len"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ProfilerError, match=match):
        measure_decode(_model(), DecodeSettings(**kwargs))


def test_non_finite_logits_are_rejected():
    model = _model()
    with torch.no_grad():
        model.norm.fill_(float("inf"))
    with pytest.raises(ProfilerError, match="non-finite"):
        measure_decode(model, DecodeSettings(batch_size=1, prompt_len=4, gen_len=3))


def test_warm_up_runs_first_and_is_not_timed():
    """The first forward (a stand-in for compilation / autotuning) sleeps 0.2 s: it must fall in the
    warm-up, which runs one prefill and ``warmup_steps`` steps, and never in TTFT or a decode step."""
    import time

    model = _model(batch=1)
    calls = []
    forward = model.forward

    def slow_first(tokens, pos):
        calls.append(tokens.shape[1])
        if len(calls) == 1:
            time.sleep(0.2)
        return forward(tokens, pos)

    model.forward = slow_first
    s = DecodeSettings(batch_size=1, prompt_len=9, gen_len=6, warmup_steps=2)
    m = measure_decode(model, s)
    # warm-up: prefill (9 tokens) + 2 steps; timed: prefill + 5 steps
    assert calls == [9, 1, 1, 9, 1, 1, 1, 1, 1]
    assert m.ttft_s < 0.2 and max(m.step_times_s) < 0.2
