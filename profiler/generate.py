"""Greedy decoding with a :class:`profiler.model.Transformer` (correctness tests, examples)."""

from __future__ import annotations

import torch

from profiler.errors import KVCacheOverflowError, ProfilerError


@torch.inference_mode()
def greedy_generate(model, prompt: torch.Tensor, n_new: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Prefill ``prompt [B, T]`` at position 0, then take ``n_new`` argmax tokens one decode step at a time.

    Returns:
        ``(tokens [B, n_new] int64, step_logits)`` where ``step_logits[i]`` is the float32 ``[B, V]``
        logits that chose ``tokens[:, i]`` (index 0 comes from the prefill).

    Raises:
        ProfilerError: ``n_new < 1``; KVCacheOverflowError when ``T + n_new - 1 > model.max_seq_len``
            (raised before the prefill writes anything).
    """
    if n_new < 1:
        raise ProfilerError(f"n_new must be >= 1, got {n_new}")
    t = prompt.shape[-1]
    if prompt.dim() == 2 and t + n_new - 1 > model.max_seq_len:
        raise KVCacheOverflowError(
            f"prompt of {t} tokens + {n_new} new tokens needs {t + n_new - 1} cache "
            f"positions, max_seq_len is {model.max_seq_len}"
        )
    logits = model(prompt, 0)
    step_logits, tokens = [logits], [logits.argmax(dim=-1)]
    for i in range(n_new - 1):
        logits = model(tokens[-1][:, None], t + i)
        step_logits.append(logits)
        tokens.append(logits.argmax(dim=-1))
    return torch.stack(tokens, dim=1), step_logits


__all__ = ["greedy_generate"]
