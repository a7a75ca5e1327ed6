"""Errors the profiler raises for bad input.

Every one of them is a ``ValueError`` whose message names the offending key or value, so the CLI can
print it on one line and exit with status 2.
"""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` (an exception or message) on one line, whitespace collapsed, cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


class ProfilerError(ValueError):
    """Base class: bad input to the profiler (a config, a size, a device, a backend)."""


class ConfigError(ProfilerError):
    """A model ``config.json`` is unsupported or inconsistent; the message names the key."""


class KVCacheOverflowError(ProfilerError):
    """A forward pass would write past the end of the static KV cache (raised before any write)."""


class BackendUnavailableError(ProfilerError):
    """An op backend cannot run here (e.g. Triton without a GPU and without ``TRITON_INTERPRET=1``)."""
