"""Compile every Triton kernel for an NVIDIA GPU target on a machine without a GPU.

The Triton interpreter runs the kernels on CPU tensors but cannot show what only the GPU compiler
sees: unsupported ops or layouts, shared-memory and register limits, register spills (kernels.md
4.7). This check closes that gap without a GPU. It installs a stand-in Triton driver that reports the
target GPU (compute capability, SM count, shared-memory limit), puts the launchers in compile-only
mode, and calls every op through the ``triton`` backend at a model's prefill and decode shapes (plus
square GEMMs). Each call goes through the real launcher and, for autotuned kernels, through Triton's
autotuner, whose benchmark step is replaced by "compile this config": so every config the autotuner
would try on that GPU is compiled to a cubin by Triton's bundled ``ptxas``, and nothing is launched.

Per compiled kernel it reports the config, shared memory (bytes, against the target's per-block
limit), registers per thread and stack bytes (from ``cuobjdump -res-usage``; a stack frame means
registers spilled to local memory), and any compile error. No timing is involved: this is a
correctness-of-compilation check, not a benchmark.

Run:  python -m benchmarks.compile_check [--model llama-3.1-8b] [--arch 90] [--dtype bfloat16]
      [--batch-sizes 1,32] [--context 8192] [--square 4096,8192] [--max-configs N] [--json PATH]

It then runs ``--decode-steps`` eager decode steps of the real decode model (one layer, triton
backend) at each batch size and fails if any step after the first compiles a kernel or re-runs the
autotuner: on a GPU that would stall a timed decode step for up to seconds (kernels.md 2.5 on
integer specialisation).

Exit status: 0 when every op call compiled, no config failed for a reason other than running out
of shared memory or threads (such configs are skipped by the autotuner on a real GPU too and are
listed as warnings) and no decode step after the first compiled anything; 1 otherwise; 2 for bad
arguments.

Must run without ``TRITON_INTERPRET`` set (it exits with status 2 otherwise).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from profiler.errors import one_line

# Target properties per compute capability. Shared memory per block (opt-in maximum): 227 KB on
# Hopper and 99 KB on Ada (kernels.md 2.5, quoting NVIDIA's tuning guides), 163 KB on A100 (CUDA C++
# Programming Guide, "Technical Specifications per Compute Capability", 8.0); 64K 32-bit registers
# per SM and 255 per thread (same table). SM counts from gpu-specs.md: H100/H200 SXM 132, A100 108,
# L40S 142.
TARGETS: dict[int, dict[str, Any]] = {
    90: {"gpu": "H100/H200 SXM", "sms": 132, "max_shared_mem": 227 * 1024},
    80: {"gpu": "A100", "sms": 108, "max_shared_mem": 163 * 1024},
    89: {"gpu": "L40S", "sms": 142, "max_shared_mem": 99 * 1024},
}
_REGS_PER_SM = 65536
_MAX_THREADS_PER_BLOCK = 1024


class CheckError(Exception):
    """A bad argument or an environment this check cannot run in (one-line message, exit 2)."""


# ----------------------------------------------------------------------------------------------
# Resource usage of a cubin


def _cuobjdump() -> str | None:
    import triton

    bundled = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    return bundled if os.path.exists(bundled) else shutil.which("cuobjdump")


def resource_usage(cubin: bytes) -> dict[str, int] | None:
    """Registers per thread, stack frame bytes and local bytes of the kernel in ``cubin``, read with
    ``cuobjdump -res-usage`` (None when cuobjdump is not available or prints nothing usable)."""
    tool = _cuobjdump()
    if tool is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True).stdout
    found = {key: int(val) for key, val in re.findall(r"\b(REG|STACK|LOCAL):(\d+)", out)}
    if "REG" not in found:
        return None
    return {"registers": found["REG"], "stack_bytes": found.get("STACK", 0), "local_bytes": found.get("LOCAL", 0)}


def max_threads(registers: int) -> int:
    """Threads per block the register file allows: registers are allocated per warp in units of 256
    (CUDA occupancy calculator's allocation granularity), 64K per SM, 1024 threads at most."""
    per_warp = -(-registers * 32 // 256) * 256
    return min(_MAX_THREADS_PER_BLOCK, (_REGS_PER_SM // max(per_warp, 1)) * 32)


# ----------------------------------------------------------------------------------------------
# The stand-in driver


@dataclasses.dataclass
class Compiled:
    """One compiled kernel variant: which op call first needed it and what it costs in resources."""

    case: str
    kernel: str
    config: str
    status: str = "ok"
    shared_bytes: int | None = None
    registers: int | None = None
    stack_bytes: int | None = None
    max_threads: int | None = None
    error: str | None = None


class Recorder:
    """Collects :class:`Compiled` rows while the stand-in driver compiles."""

    def __init__(self) -> None:
        self.rows: list[Compiled] = []
        self.case = ""
        self.config: Any = None  # the autotune config being compiled, set by the patched _bench
        self.tunings = 0  # configs the autotuner has benchmarked (compiled), all calls together
        self._pending: Compiled | None = None

    def launcher(self, src, metadata) -> Compiled:
        names = list(getattr(src.fn, "arg_names", []))
        consts = {}
        for key, val in (getattr(src, "constants", None) or getattr(src, "constexprs", None) or {}).items():
            idx = key[0] if isinstance(key, tuple) and len(key) == 1 else key
            name = names[idx] if isinstance(idx, int) and idx < len(names) else str(idx)
            if name.isupper() and not isinstance(val, str):
                consts[name] = val
        cfg = " ".join(f"{k}={v}" for k, v in sorted(consts.items()))
        cfg += f" warps={metadata.num_warps} stages={metadata.num_stages}"
        row = Compiled(self.case, metadata.name, cfg.strip(), shared_bytes=metadata.shared)
        self.rows.append(row)
        self._pending = row
        return row

    def loaded(self, cubin: bytes) -> tuple[int, int, int]:
        usage = resource_usage(cubin) if isinstance(cubin, (bytes, bytearray)) else None
        row = self._pending
        regs = usage["registers"] if usage else 0
        stack = usage["stack_bytes"] + usage["local_bytes"] if usage else 0
        threads = max_threads(regs) if usage else _MAX_THREADS_PER_BLOCK
        if row is not None and usage is not None:
            row.registers, row.stack_bytes, row.max_threads = regs, stack, threads
        return regs, stack, threads

    def failed(self, exc: BaseException) -> None:
        from triton.runtime.errors import OutOfResources

        text = one_line(exc)
        status = "out of resources" if isinstance(exc, OutOfResources) else "error"
        row = self._pending
        if row is not None and row.case == self.case and row.status == "ok" and status == "out of resources":
            row.status, row.error = status, text
        else:
            cfg = str(self.config) if self.config is not None else ""
            self.rows.append(Compiled(self.case, "?", cfg, status=status, error=f"{type(exc).__name__}: {text}"))
        self._pending = None


class _Utils:
    def __init__(self, target: dict, recorder: Recorder) -> None:
        self._target, self._rec = target, recorder

    def get_device_properties(self, device):
        return {"max_shared_mem": self._target["max_shared_mem"], "multiprocessor_count": self._target["sms"],
                "max_num_regs": _REGS_PER_SM, "warpSize": 32, "sm_clock_rate": 0, "mem_clock_rate": 0,
                "mem_bus_width": 0}

    def load_binary(self, name, kernel, shared, device):
        regs, spills, threads = self._rec.loaded(kernel)
        return object(), object(), regs, spills, threads


class _NoLaunch:
    """Launcher that never launches (compile-only)."""

    def __call__(self, *args, **kwargs):
        return None


class StandInDriver:
    """A Triton driver that reports a CUDA target and compiles, but never loads or launches anything.

    Covers what Triton 3.6-3.9's JIT, compiler and autotuner ask of ``driver.active``."""

    def __init__(self, arch: int, recorder: Recorder) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)
        self.props = TARGETS[arch]
        self.recorder = recorder
        self.utils = _Utils(self.props, recorder)
        self.backend = "cuda"

    def is_active(self) -> bool:
        return True

    def get_current_target(self):
        return self.target

    def get_current_device(self) -> int:
        return 0

    def set_current_device(self, device) -> None:
        return None

    def get_current_stream(self, device=None) -> int:
        return 0

    def get_active_torch_device(self):
        import torch

        return torch.device("cpu")

    def map_python_to_cpp_type(self, ty: str) -> str:
        return ty

    def launcher_cls(self, src, metadata):
        self.recorder.launcher(src, metadata)
        return _NoLaunch()

    def get_benchmarker(self):
        rec = self.recorder

        def compile_only_bench(kernel_call, quantiles=None, **kwargs):
            try:
                kernel_call()
                t = 1.0
            except Exception as exc:  # noqa: BLE001  (recorded per config; the autotuner skips it)
                rec.failed(exc)
                t = float("inf")
            return [t] * len(quantiles) if quantiles else t

        return compile_only_bench

    def get_empty_cache_for_benchmark(self):
        import torch

        return torch.empty(1)

    def clear_cache(self, cache) -> None:
        return None


def install(arch: int, recorder: Recorder, max_configs: int | None) -> None:
    """Make the stand-in driver active, switch the launchers to compile-only mode for ``arch``'s SM
    count, and make the autotuner tell ``recorder`` which config it compiles (optionally only the
    first ``max_configs`` configs each autotuned call would try)."""
    from triton.runtime import driver
    from triton.runtime.autotuner import Autotuner

    from kernels._common import set_compile_only

    driver.set_active(StandInDriver(arch, recorder))
    set_compile_only(TARGETS[arch]["sms"])

    original_bench = Autotuner._bench
    original_prune = Autotuner.prune_configs

    def bench(self, *args, config, **meta):
        recorder.config = config
        recorder.tunings += 1
        try:
            return original_bench(self, *args, config=config, **meta)
        finally:
            recorder.config = None

    def prune(self, kwargs):
        configs = original_prune(self, kwargs)
        return configs[:max_configs] if max_configs else configs

    Autotuner._bench = bench
    Autotuner.prune_configs = prune


# ----------------------------------------------------------------------------------------------
# The op calls


def op_cases(cfg, dtype_name: str, batch_sizes: list[int], context: int, square: list[int]):
    """(label, op function, args) for every op call of model config ``cfg`` in prefill and decode at
    each batch size, plus the square GEMMs, with CPU inputs of ``dtype_name``."""
    import torch

    from profiler import triton_ops
    from profiler.kernel_bench import build_inputs, model_cases, square_matmul_cases

    dtype = getattr(torch, dtype_name)
    cases = []
    for i, batch in enumerate(batch_sizes):
        phases = ("prefill", "decode") if i == 0 else ("decode",)
        cases += model_cases(cfg, batch, context, phases)
    cases += square_matmul_cases(square)
    seen = set()
    for case in cases:
        key = (case.op, case.dims)
        if key in seen:
            continue
        seen.add(key)
        label = f"{case.phase} {case.name} {case.shape}"
        yield label, getattr(triton_ops, case.op), build_inputs(case, cfg, torch.device("cpu"), dtype)


def decode_steps_recompiles(cfg, dtype_name: str, batch: int, context: int, steps: int,
                            recorder: Recorder) -> list[str]:
    """Run ``steps`` eager decode steps of the real decode model (``profiler.model``, triton backend,
    one layer, dummy weights, CPU tensors) at positions ``context ..``, and list every compile or
    autotune run after the first step: on a GPU each would stall a timed decode step.

    From one eager step to the next the attention gets a cache view one position longer (sliding
    with a window) and RoPE the next table rows; everything else keeps its shapes. No prefill is run:
    in compile-only mode nothing is computed, so the cache contents do not matter.
    """
    import torch

    from profiler.backends import resolve
    from profiler.model import build_model

    one_layer = dataclasses.replace(cfg, num_hidden_layers=1)
    model = build_model(one_layer, dtype=getattr(torch, dtype_name), device="cpu", max_batch_size=batch,
                        max_seq_len=context + steps, ops=resolve("triton"))
    tokens = torch.zeros(batch, 1, dtype=torch.long)
    late: list[str] = []
    with torch.no_grad():
        for i in range(steps):
            pos = context + i
            before = (len(recorder.rows), recorder.tunings)
            recorder.case = f"eager decode step at position {pos} (B={batch})"
            model(tokens, pos)
            if i > 0 and (len(recorder.rows), recorder.tunings) != before:
                new = [f"{r.kernel} {r.config}" for r in recorder.rows[before[0]:]]
                late.append(f"position {pos}, batch {batch}: "
                            + (", ".join(new) if new else "autotuner re-ran with already compiled configs"))
    return late


# ----------------------------------------------------------------------------------------------
# CLI


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CheckError(f"--{name} must be comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise CheckError(f"--{name} values must be >= 1, got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compile_check", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="preset name (default llama-3.1-8b)")
    p.add_argument("--config", default=None, help="path to a Hugging Face config.json instead of a preset")
    p.add_argument("--arch", type=int, default=90, choices=sorted(TARGETS), help="compute capability x 10")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--batch-sizes", default="1,32", help="decode batch sizes (prefill uses the first)")
    p.add_argument("--context", type=int, default=8192, help="prefill length and decode KV length")
    p.add_argument("--square", default="4096,8192", help="square GEMM sizes ('' for none)")
    p.add_argument("--decode-steps", type=int, default=64,
                   help="eager decode steps replayed to check that no step after the first compiles")
    p.add_argument("--max-configs", type=int, default=None,
                   help="compile at most this many autotune configs per call (default: all)")
    p.add_argument("--json", default=None, help="write every compiled kernel as JSON to this path")
    return p.parse_args(argv)


def _render(rows: list[Compiled], arch: int, failures: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    limit = TARGETS[arch]["max_shared_mem"]
    table = Table(title=f"Triton kernels compiled for sm_{arch} ({TARGETS[arch]['gpu']}, "
                        f"{limit // 1024} KB shared memory per block)")
    for col in ("kernel", "config", "first needed by", "shared KB", "regs", "stack B", "status"):
        table.add_column(col, justify="right" if col in ("shared KB", "regs", "stack B") else "left")
    for r in rows:
        shared = f"{r.shared_bytes / 1024:.0f}" if r.shared_bytes is not None else "-"
        status = r.status if r.error is None else f"{r.status}: {r.error}"
        table.add_row(r.kernel, r.config, r.case, shared, str(r.registers if r.registers is not None else "-"),
                      str(r.stack_bytes if r.stack_bytes is not None else "-"), status)
    console = Console(width=200)
    console.print(table)
    for line in failures:
        console.print(f"[red]FAILED[/red] {line}")


def _check_args(args: argparse.Namespace) -> None:
    """Refuse what no compile check can run with (CheckError), before anything is imported or built."""
    from profiler.backends import interpreter_requested  # imports triton, not the kernels

    if interpreter_requested():
        raise CheckError("unset TRITON_INTERPRET: this check compiles for a GPU, not the interpreter")
    if "kernels" in sys.modules:
        raise CheckError("run compile_check in a fresh process (the kernels are already imported)")
    if args.context < 1:
        raise CheckError(f"--context must be >= 1, got {args.context}")
    if args.decode_steps < 0 or args.decode_steps == 1:
        raise CheckError(f"--decode-steps must be 0 (skip the check) or >= 2 (the first step may compile, "
                         f"the others must not), got {args.decode_steps}")
    if args.max_configs is not None and args.max_configs < 1:
        raise CheckError(f"--max-configs must be >= 1, got {args.max_configs}")
    if args.json:
        from tokencost.cli.common import check_output_path

        try:
            check_output_path(args.json, "--json")
        except ValueError as exc:
            raise CheckError(str(exc)) from None


def _model(args: argparse.Namespace):
    """The dense model config to check (llama-3.1-8b by default); CheckError for MoE or short positions."""
    from profiler.errors import ConfigError
    from profiler.presets import resolve_model

    try:
        cfg = resolve_model(args.model or (None if args.config else "llama-3.1-8b"), args.config)
    except ConfigError as exc:
        raise CheckError(str(exc)) from None
    if cfg.is_moe:
        raise CheckError(f"{cfg.name} is a mixture-of-experts config; the decode model is dense only")
    if args.context + args.decode_steps > cfg.max_position_embeddings:
        raise CheckError(f"--context {args.context} plus --decode-steps {args.decode_steps} exceeds "
                         f"{cfg.name}'s max_position_embeddings ({cfg.max_position_embeddings})")
    return cfg


def _compile_all(cases, cfg, args, batch_sizes: list[int], recorder: "Recorder") -> tuple[list[str], list[str]]:
    """Call every op case (each compiles through the stand-in driver), then replay eager decode steps.
    Returns (failed calls, decode steps that compiled or autotuned)."""
    failures: list[str] = []
    for label, fn, op_args in cases:
        recorder.case = label
        try:
            fn(*op_args)
        except Exception as exc:  # noqa: BLE001  (every op call is reported, then the next one runs)
            failures.append(f"{label}: {type(exc).__name__}: {one_line(exc)}")
    late: list[str] = []
    if args.decode_steps:
        for batch in batch_sizes:
            late += decode_steps_recompiles(cfg, args.dtype, batch, args.context, args.decode_steps, recorder)
    return failures, late


def _report(rows: list, args: argparse.Namespace, cfg, failures: list[str], late: list[str]) -> dict:
    """Print the table, write --json, and return the summary printed as the last stdout line."""
    _render(rows, args.arch, failures + [f"compiled or autotuned during eager decode at {x}" for x in late])
    summary = {
        "arch": args.arch, "gpu": TARGETS[args.arch]["gpu"], "dtype": args.dtype, "model": cfg.name,
        "compiled": sum(r.status == "ok" for r in rows),
        "out_of_resources": sum(r.status == "out of resources" for r in rows),
        "config_errors": sum(r.status == "error" for r in rows), "failed_calls": len(failures),
        "decode_steps_checked": args.decode_steps, "decode_steps_that_compiled": len(late),
        "spilling": sum(1 for r in rows if r.stack_bytes), "triton_version": _triton_version(),
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "kernels": [dataclasses.asdict(r) for r in rows],
                       "failed_calls": failures, "decode_steps_that_compiled": late}, f, indent=1)
    if args.decode_steps == 0:
        print("warning: eager decode steps not checked (--decode-steps 0)", file=sys.stderr)
    print(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        _check_args(args)
        os.environ["TOKENCOST_AUTOTUNE"] = "1"  # every config the autotuner would try (kernels/_common.py)
        batch_sizes = _ints(args.batch_sizes, "batch-sizes")
        if not batch_sizes:
            raise CheckError("--batch-sizes needs at least one value")
        square = _ints(args.square, "square")
        cfg = _model(args)
        recorder = Recorder()
        install(args.arch, recorder, args.max_configs)
        cases = op_cases(cfg, args.dtype, batch_sizes, args.context, square)
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        failures, late = _compile_all(cases, cfg, args, batch_sizes, recorder)
    except MemoryError:
        print("error: not enough host memory for the inputs of these shapes; lower --context or "
              "--batch-sizes", file=sys.stderr)
        return 2
    summary = _report(recorder.rows, args, cfg, failures, late)
    return 1 if summary["config_errors"] or failures or late else 0


def _triton_version() -> str:
    import triton

    return triton.__version__


if __name__ == "__main__":
    sys.exit(main())
