"""One decode step captured as a CUDA graph and replayed at every position.

An eager decode step launches several kernels per layer from Python, and at small batch the host's
launch overhead can rival the GPU's work (kernels.md 2.5, "CPU launch overhead dominates small
kernels"). A CUDA graph (``torch.cuda.CUDAGraph``) records the whole step once and replays it with a
single launch, as gpt-fast's decode does (kernels.md 1.6). A graph replays the exact
kernels, arguments and addresses it recorded, so the captured step is
:meth:`profiler.model.Transformer.decode_static`, whose position lives in a device tensor; every
other input and output is a buffer with a fixed address:

- ``tokens`` [B, 1] int64 and ``pos`` [1] int64: inputs, rewritten in place before a replay;
- ``logits`` [B, V] float32 and ``next_tokens`` [B, 1] int64 (the greedy pick): outputs, overwritten
  by every replay. The graph also copies ``next_tokens`` into ``tokens``, so consecutive replays
  continue the greedy sequence without any work outside the graph.
- the weights, RoPE tables and KV cache are read and written at the addresses they had at capture.

Capture follows the PyTorch recipe: a few eager iterations on a side stream first (they compile and
autotune the Triton kernels, since autotuning benchmarks and synchronises, which capture forbids,
and they settle the allocator), then ``torch.cuda.graph``.

Warm-up writes the KV cache: each eager iteration writes K/V rows at ``warmup_pos`` of the first B
sequences (capture itself only records, it runs nothing). That is harmless when ``warmup_pos`` is
the position of the first real decode step: a decode step at position p writes row p before its
attention reads rows ``[0, p]``, so the junk at p is overwritten before anything reads it, and rows
other than p are untouched.

``model.resize_cache`` (or anything that replaces the cache or RoPE tensors) and ``model.set_ops``
invalidate a graph: it would keep writing the old buffers, or running the old kernels. :meth:`step`
checks for both (host-side identity checks, no sync) and raises. The object keeps references to
the captured cache tensors, so their memory is not reused while the graph lives (a replay can never
write into someone else's allocation); drop the object to free both.

What only a GPU can check (tests/test_static_decode.py, ``gpu`` marker): that capture succeeds and
replays give eager ``decode_static``'s logits. On CPU the same host logic runs with replay replaced
by an eager call of the captured function.
"""

from __future__ import annotations

import torch

from profiler.errors import KVCacheOverflowError, ProfilerError

MIN_WARMUP_ITERS = 3


def require_cuda(device: torch.device) -> None:
    """Raises ProfilerError unless ``device`` is a CUDA device."""
    if torch.device(device).type != "cuda":
        raise ProfilerError(f"CUDA-graph decode needs a CUDA GPU; the model is on {device}")


def _model_buffers(model) -> tuple[torch.Tensor, ...]:
    """Every tensor a captured step holds by address that the model may replace: caches and RoPE tables."""
    caches = [t for layer in model.layers for t in (layer.attn.k_cache, layer.attn.v_cache)]
    return (*caches, model.rope_cos, model.rope_sin)


class GraphedDecodeStep:
    """``model.decode_static`` + greedy argmax for ``batch_size`` sequences, captured once, replayed per step.

    Usage (after the prefill has filled cache positions ``[0, p0)``)::

        graphed = GraphedDecodeStep(model, batch_size, warmup_pos=p0)
        graphed.set_tokens(first_tokens)          # [B, 1], e.g. the prefill's greedy pick
        for p in range(p0, p0 + n):
            next_tokens = graphed.step(p)         # [B, 1]; graphed.logits holds [B, V]

    ``next_tokens`` and ``logits`` are the graph's static outputs: read (or clone) them before the
    next :meth:`step`. Construction and replay run under ``torch.inference_mode``.

    Raises (constructor):
        ProfilerError: the model is not on a CUDA device, batch_size outside 1..max_batch_size,
            warmup_iters < 3, or warmup_pos outside the cache.
    """

    def __init__(self, model, batch_size: int, *, warmup_pos: int = 0, warmup_iters: int = MIN_WARMUP_ITERS):
        device = model.device
        require_cuda(device)
        if not 1 <= batch_size <= model.max_batch_size:
            raise ProfilerError(f"batch_size must be in 1..{model.max_batch_size} (the cache), "
                                f"got {batch_size}")
        if warmup_iters < MIN_WARMUP_ITERS:
            raise ProfilerError(f"warmup_iters must be >= {MIN_WARMUP_ITERS}, got {warmup_iters}")
        self.model, self.batch_size = model, batch_size
        self._check_pos(warmup_pos)
        self._ops, self._buffers = model.ops, _model_buffers(model)
        with torch.inference_mode():
            self.tokens = torch.zeros((batch_size, 1), dtype=torch.int64, device=device)
            self.pos = torch.full((1,), warmup_pos, dtype=torch.int64, device=device)
            self.graph = self._capture(device, warmup_iters)

    def _run_once(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The captured work: one static decode step of the buffers, greedy pick, pick fed back."""
        logits = self.model.decode_static(self.tokens, self.pos)
        next_tokens = logits.argmax(-1, keepdim=True)
        self.tokens.copy_(next_tokens)  # the next replay decodes this step's greedy pick
        return logits, next_tokens

    def _capture(self, device: torch.device, warmup_iters: int) -> torch.cuda.CUDAGraph:
        """The only GPU-specific part. Eager warm-up iterations on a side stream (they write K/V row
        ``pos`` only, see the module docstring), then capture; sets the static outputs."""
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup_iters):
                self._run_once()
        torch.cuda.current_stream(device).wait_stream(side)
        torch.cuda.synchronize(device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # records on its own stream; nothing executes
            self.logits, self.next_tokens = self._run_once()
        return graph

    def _check_pos(self, pos: int) -> None:
        if not 0 <= pos < self.model.max_seq_len:
            raise KVCacheOverflowError(f"decode position {pos} is outside the KV cache "
                                       f"(0..{self.model.max_seq_len - 1})")

    def _check_model(self) -> None:
        if self.model.ops is not self._ops:
            raise ProfilerError("the model's ops changed (set_ops) after CUDA-graph capture; "
                                "build a new GraphedDecodeStep")
        now = _model_buffers(self.model)
        if len(now) != len(self._buffers) or any(a is not b for a, b in zip(now, self._buffers)):
            raise ProfilerError("the model's KV cache or RoPE tables were reallocated (resize_cache) after "
                                "CUDA-graph capture; build a new GraphedDecodeStep")

    def set_tokens(self, tokens: torch.Tensor) -> None:
        """Copy ``tokens`` [B, 1] (int, on the model's device) into the graph's input buffer.

        Raises:
            ProfilerError: wrong shape.
        """
        if tuple(tokens.shape) != (self.batch_size, 1):
            raise ProfilerError(f"tokens must have shape ({self.batch_size}, 1), got {tuple(tokens.shape)}")
        with torch.inference_mode():
            self.tokens.copy_(tokens)

    def step(self, pos: int) -> torch.Tensor:
        """Decode the tokens in the input buffer at cache position ``pos`` (a Python int): writes K/V
        row ``pos``, attends over ``[0, pos]``, and returns the greedy ``next_tokens`` [B, 1] (a static
        buffer, also fed back as the next step's input). Positions ``[0, pos)`` must be in the cache.

        Raises:
            KVCacheOverflowError: pos outside ``0..max_seq_len - 1``.
            ProfilerError: the model's cache, RoPE tables or ops changed since capture.
        """
        self._check_pos(pos)
        self._check_model()
        with torch.inference_mode():
            self.pos.fill_(pos)  # a fill kernel with pos as its argument: no host-to-device sync
            self.graph.replay()
        return self.next_tokens


__all__ = ["GraphedDecodeStep", "MIN_WARMUP_ITERS", "require_cuda"]
