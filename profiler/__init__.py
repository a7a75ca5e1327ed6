"""tokencost profiler: model architectures from config.json, a timed decode loop, sweeps and breakdowns.

The profiler measures; it knows nothing of prices (see the ``tokencost`` package).
"""

from profiler.results import load_results

__all__ = ["load_results"]
