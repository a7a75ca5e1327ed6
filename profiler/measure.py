"""Timed prefill and decode of a model with a static KV cache.

What is measured (metrics.md §1.1–1.2 give the competing definitions; these follow nanochat and
SGLang ``bench_one_batch`` for the decode step):

- TTFT: one synchronised region around the prefill forward of the whole prompt batch plus the greedy
  pick of the first token. Prefill throughput counts **input** tokens: batch × prompt_len ÷ TTFT.
- Decode: ``gen_len − 1`` steps (the first output token comes from prefill), each its own timed
  region: forward of one token per sequence + greedy pick. TPOT is the **median** step time; p90/p99
  come from the same samples. Output throughput of the device = batch ÷ TPOT; per sequence = 1 ÷ TPOT.
  Input and output tokens are never mixed.
- A warm-up pass at the same shapes (prefill + a few decode steps) runs first and is discarded.
- With ``cuda_graph=True`` (CUDA only) each timed decode step is one replay of a captured graph of
  the step (:class:`profiler.cuda_graph.GraphedDecodeStep`: position written to a device buffer,
  replay, greedy pick fed back in the graph); capture and its own warm-up happen in the warm-up
  phase, untimed. The prefill stays eager.
- NVML snapshots (``profiler.env.GpuMonitor``) bracket the decode steps: GPU energy over them, and
  warnings when clocks dropped or the GPU throttled; on CPU energy is reported unavailable.
- An independent wall clock spans the whole decode loop, so the per-step samples can be checked
  against it, and the logits of the timed run are checked to be finite.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import torch

from profiler import cuda_graph as graphs
from profiler.contention import Contention, ContentionProbe
from profiler.env import GpuMonitor
from profiler.errors import ProfilerError
from profiler.timing import RegionTimer, Summary, summarize, synchronize

ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    """Shape of one measurement: ``batch_size`` sequences of ``prompt_len`` input tokens, each
    generating ``gen_len`` output tokens (the first from prefill, ``gen_len − 1`` decode steps)."""

    batch_size: int
    prompt_len: int
    gen_len: int
    warmup_steps: int = 3
    seed: int = 0

    def validate(self) -> None:
        """Raises ProfilerError for non-positive sizes or fewer than one decode step."""
        for name in ("batch_size", "prompt_len", "gen_len"):
            if getattr(self, name) < 1:
                raise ProfilerError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.gen_len < 2:
            raise ProfilerError(f"gen-len must be at least 2 (one decode step after prefill), got {self.gen_len}")
        if self.warmup_steps < 0:
            raise ProfilerError(f"warmup steps must be >= 0, got {self.warmup_steps}")

    @property
    def seq_len(self) -> int:
        """KV-cache positions the run writes: the prompt plus every generated token but the last."""
        return self.prompt_len + self.gen_len - 1


@dataclasses.dataclass(frozen=True)
class DecodeMeasurement:
    """Raw timings of one measurement, in seconds and tokens per second."""

    ttft_s: float
    prefill_tok_per_s: float
    step_times_s: tuple[float, ...]
    tpot: Summary
    output_tok_per_s: float
    output_tok_per_s_per_seq: float
    decode_wall_s: float
    logits_finite: bool
    gpu_monitor: dict = dataclasses.field(default_factory=dict)  # profiler.env.GpuMonitor result over decode
    contention: Contention | None = None  # CPU used by other processes during the decode steps


def _prompt(settings: DecodeSettings, vocab_size: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(settings.seed)
    tokens = torch.randint(0, vocab_size, (settings.batch_size, settings.prompt_len), generator=gen)
    return tokens.to(device)


def _warm_up(model, prompt: torch.Tensor, settings: DecodeSettings) -> None:
    model.reset_cache()
    nxt = model(prompt, 0).argmax(-1, keepdim=True)
    steps = min(settings.warmup_steps, settings.gen_len - 1)
    for i in range(steps):
        nxt = model(nxt, settings.prompt_len + i).argmax(-1, keepdim=True)
    synchronize(prompt.device)
    model.reset_cache()


StepFn = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]  # (tokens, pos) -> (logits, next)


def _eager_stepper(model) -> StepFn:
    def step(tokens: torch.Tensor, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(tokens, pos)
        return logits, logits.argmax(-1, keepdim=True)

    return step


def _graphed_stepper(model, settings: DecodeSettings) -> tuple[StepFn, Callable[[torch.Tensor], None]]:
    """Capture the decode step (inside the warm-up phase) and return ``(step, set_first_tokens)``.

    The capture's warm-up writes only K/V row ``prompt_len``, which the first timed step rewrites
    before reading it; the cache is zeroed afterwards anyway, as after the eager warm-up.
    """
    graphed = graphs.GraphedDecodeStep(model, settings.batch_size, warmup_pos=settings.prompt_len,
                                       warmup_iters=max(graphs.MIN_WARMUP_ITERS, settings.warmup_steps))
    model.reset_cache()

    def step(tokens: torch.Tensor, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        nxt = graphed.step(pos)  # the graph decodes its own previous pick: ``tokens`` is already in it
        return graphed.logits, nxt

    return step, graphed.set_tokens


@dataclasses.dataclass
class _DecodeSteps:
    """What the timed decode loop saw (internal to :func:`measure_decode`)."""

    step_times_s: list[float]
    wall_s: float
    finite: torch.Tensor
    monitor: dict
    contention: Contention | None


def _time_decode_steps(step: "StepFn", nxt: torch.Tensor, settings: DecodeSettings, device: torch.device,
                       finite: torch.Tensor, progress: ProgressFn) -> _DecodeSteps:
    """Every decode step in its own timed region, inside an independent wall clock, the GPU monitor
    (energy, clocks) and the CPU contention probe."""
    steps = settings.gen_len - 1
    step_timer = RegionTimer(device)
    monitor = GpuMonitor(device).start()  # energy counter and clocks around the decode steps
    synchronize(device)  # nothing queued before the first step may land inside the wall clock
    with ContentionProbe() as probe:
        wall0 = time.perf_counter()
        for i in range(steps):
            with step_timer.region():
                logits, nxt = step(nxt, settings.prompt_len + i)
            finite = finite & torch.isfinite(logits).all()
            if device.type == "cpu" or i % 16 == 15 or i == steps - 1:
                progress("decode", i + 1, steps)
        synchronize(device)
        wall = time.perf_counter() - wall0
    return _DecodeSteps(step_timer.seconds(), wall, finite, monitor.stop(), probe.result)


def measure_decode(model, settings: DecodeSettings, *, progress: ProgressFn | None = None,
                   cuda_graph: bool = False) -> DecodeMeasurement:
    """Measure TTFT and per-step decode time of ``model`` (a :class:`profiler.model.Transformer`).

    The model's cache must hold ``settings.seq_len`` positions and ``settings.batch_size`` sequences.
    ``cuda_graph``: time each decode step as one CUDA-graph replay (see the module docstring).

    Raises:
        ProfilerError: invalid settings, a cache too small for them, cuda_graph on a non-CUDA
            device, or non-finite logits.
    """
    settings.validate()
    if settings.seq_len > model.max_seq_len:
        raise ProfilerError(f"prompt-len + gen-len - 1 = {settings.seq_len} exceeds the KV cache "
                            f"({model.max_seq_len} positions)")
    device = next(model.buffers()).device
    if cuda_graph:
        graphs.require_cuda(device)
    prompt = _prompt(settings, model.cfg.vocab_size, device)
    progress = progress or (lambda *a: None)
    with torch.inference_mode():
        progress("warm-up", 0, 1)
        _warm_up(model, prompt, settings)
        step, set_first_tokens = (_graphed_stepper(model, settings) if cuda_graph
                                  else (_eager_stepper(model), None))
        progress("prefill", 0, 1)
        prefill_timer = RegionTimer(device)
        with prefill_timer.region():
            logits = model(prompt, 0)
            nxt = logits.argmax(-1, keepdim=True)
        ttft = prefill_timer.seconds()[0]
        if set_first_tokens is not None:
            set_first_tokens(nxt)  # untimed, like the eager path's input already being in place
        d = _time_decode_steps(step, nxt, settings, device, torch.isfinite(logits).all(), progress)
    ok = bool(d.finite.item())
    if not ok:
        raise ProfilerError("the timed run produced non-finite logits (overflow in this dtype?); no result recorded")
    tpot = summarize(d.step_times_s)
    b = settings.batch_size
    return DecodeMeasurement(
        ttft_s=ttft, prefill_tok_per_s=b * settings.prompt_len / ttft, step_times_s=tuple(d.step_times_s),
        tpot=tpot, output_tok_per_s=b / tpot.median_s, output_tok_per_s_per_seq=1.0 / tpot.median_s,
        decode_wall_s=d.wall_s, logits_finite=ok, gpu_monitor=d.monitor, contention=d.contention)
