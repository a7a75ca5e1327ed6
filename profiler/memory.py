"""Will a point fit? A rough estimate of the memory a measurement needs against what is free now.

Every command checks this before it allocates anything, so a model or batch that cannot fit ends with
a one-line error (a sweep records the point as skipped) instead of the kernel's out-of-memory killer.
"""

from __future__ import annotations

from profiler import roofline
from profiler.errors import ProfilerError

# Host memory the estimate must leave free for torch, Python and the OS.
HOST_HEADROOM_BYTES = 1 * 2**30


class InsufficientMemoryError(ProfilerError):
    """The estimated memory of a point exceeds what the device has free."""


def estimate_memory_bytes(cfg, batch_size: int, prompt_len: int, gen_len: int, elem_bytes: int,
                          include_weights: bool = True) -> int:
    """Weights (unless already resident) + KV cache + prefill activations (hidden and MLP
    intermediates of the whole prompt batch) + float32 logits. An estimate, not a measurement."""
    weights = roofline.param_count(cfg) * elem_bytes if include_weights else 0
    kv = batch_size * (prompt_len + gen_len) * roofline.kv_bytes_per_token(cfg, elem_bytes)
    tokens = batch_size * prompt_len
    activations = tokens * (4 * cfg.hidden_size + 3 * cfg.intermediate_size) * elem_bytes
    logits = batch_size * cfg.vocab_size * 4
    return int(weights + kv + activations + logits)


def available_memory_bytes(device_type: str) -> int | None:
    """Free memory of the device (CUDA: ``mem_get_info``; CPU: MemAvailable less a headroom)."""
    if device_type == "cuda":
        import torch

        return torch.cuda.mem_get_info()[0]
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 - HOST_HEADROOM_BYTES
    except OSError:
        return None
    return None


def check_fits(cfg, batch_size: int, prompt_len: int, gen_len: int, elem_bytes: int, device_type: str,
               include_weights: bool = True) -> None:
    """Raises InsufficientMemoryError when the estimate exceeds the free memory of ``device_type``."""
    need = estimate_memory_bytes(cfg, batch_size, prompt_len, gen_len, elem_bytes, include_weights)
    free = available_memory_bytes(device_type)
    if free is not None and need > free:
        raise InsufficientMemoryError(
            f"{cfg.name} at batch {batch_size}, prompt {prompt_len} + gen {gen_len} needs about "
            f"{need / 2**30:.1f} GiB (weights + KV cache + activations) but {device_type} has "
            f"{max(free, 0) / 2**30:.1f} GiB free; use a smaller model, batch or context")
