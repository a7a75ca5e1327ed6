"""``tokencost run``: measure one model on the local device and print tok/s and $/Mtok."""

from __future__ import annotations

import argparse

from tokencost.cli.common import (add_cost_model_args, add_price_args, non_negative_int, positive_int, print_json_line,
                                  seed_int, write_json)
from tokencost.cli.plugins import add_plugin_arg, load_plugins

DEFAULT_MODEL = "smollm2-135m"


def add_model_args(parser: argparse.ArgumentParser, *, batch: bool = True) -> None:
    """Options shared by run, compare, kernels, sweep and breakdown."""
    parser.add_argument("--model", default=None, help=f"preset name (default {DEFAULT_MODEL}; see `tokencost models`)")
    parser.add_argument("--config", metavar="PATH", help="a Hugging Face config.json instead of a preset")
    parser.add_argument("--weights", metavar="DIR", help="local HF checkpoint dir (safetensors; its config.json "
                        "is the model unless --model/--config is given); default: dummy weights")
    parser.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16")
    parser.add_argument("--backend", default="torch", help="op implementations: torch, triton, or a registered variant")
    parser.add_argument("--op", action="append", default=[], metavar="OP=BACKEND",
                        help="per-op override, e.g. --op attention_decode=torch (repeatable)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="time each decode step as one CUDA-graph replay (CUDA GPU only; "
                             "prefill stays eager)")
    if batch:
        parser.add_argument("--batch-size", type=positive_int, default=1, help="sequences decoded together")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the dummy weights and prompt")
    add_plugin_arg(parser)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="measure prefill and decode of one model and price it",
                       description="Measure TTFT, TPOT and tok/s of a model on the local device and print $/Mtok.")
    add_model_args(p)
    p.add_argument("--prompt-len", type=positive_int, default=128, help="input tokens per sequence")
    p.add_argument("--gen-len", type=positive_int, default=32, help="output tokens per sequence (>= 2)")
    p.add_argument("--warmup-steps", type=non_negative_int, default=3, help="untimed decode steps before timing")
    p.add_argument("--compat", action="append", default=[], metavar="TOOL",
                   help="also give the metrics under another tool's definitions, in the JSON record's \"compat\" "
                        "field (vllm, trtllm-bench, genai-perf, guidellm, llmperf, inferencex, sglang, nanochat, "
                        "gpt-fast; repeatable, or 'all')")
    add_price_args(p)
    add_cost_model_args(p)
    p.add_argument("--json", metavar="PATH", help="also write the result record to PATH")
    p.add_argument("--out", metavar="RESULTS.jsonl", help="also append the record to a JSONL results file "
                   "(what `tokencost report` and `profiler.load_results` read)")
    return p


def parse_overrides(items: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"--op expects OP=BACKEND, got {item!r}")
        op, backend = item.split("=", 1)
        out.append((op.strip(), backend.strip()))
    return tuple(out)


def spec_from_args(args: argparse.Namespace, **extra):
    """Build a :class:`profiler.runner.RunSpec` from parsed options (model resolution included).

    Raises:
        ValueError: ``--cuda-graph`` where the device is not a CUDA GPU (checked first, before the
            model is resolved), or any error of the model and override options.
    """
    from profiler.presets import resolve_model
    from profiler.runner import RunSpec, resolve_device

    load_plugins(getattr(args, "plugin", None))  # --plugin modules register their op variants first
    cuda_graph = bool(getattr(args, "cuda_graph", False))
    if cuda_graph and resolve_device(args.device).type != "cuda":
        raise ValueError("--cuda-graph needs a CUDA GPU")
    if args.model is not None and not args.model.strip():
        raise ValueError("--model needs a preset name (see `tokencost models`), got an empty string")
    if args.weights is not None:
        from profiler.weights import checkpoint_dir

        checkpoint_dir(args.weights)  # a missing folder or a file: one line, before anything is built
    config = args.config
    if config is None and args.model is None and args.weights:
        config = args.weights  # a checkpoint directory carries its own config.json
    cfg = resolve_model(args.model if (args.model or config) else DEFAULT_MODEL, config)
    fields = dict(cfg=cfg, device=args.device, dtype=args.dtype, backend=args.backend,
                  op_overrides=parse_overrides(args.op), weights_dir=args.weights, seed=args.seed,
                  cuda_graph=cuda_graph)
    for name in ("batch_size", "prompt_len", "gen_len", "warmup_steps"):
        if hasattr(args, name):
            fields[name] = getattr(args, name)
    fields.update(extra)
    return RunSpec(**fields)


def compat_tools(names: list[str]) -> list[str]:
    """Validate ``--compat`` names up front (before measuring); 'all' means every known tool."""
    from profiler.metrics_compat import TOOLS

    if "all" in names:
        return list(TOOLS)
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        raise ValueError(f"unknown --compat tool {unknown[0]!r}; known: {', '.join(TOOLS)}, all")
    return names


def run(args: argparse.Namespace) -> int:
    from tokencost.cli.measure_hook import measure_and_price
    from tokencost.cli.render import print_run_table

    from tokencost.cli.pricing import add_cost_model_fields, cost_options

    spec = spec_from_args(args)
    tools = compat_tools(args.compat)
    opts = cost_options(args)
    record = measure_and_price(spec, args)
    add_cost_model_fields(record, opts)
    if tools:
        from profiler.metrics_compat import emit_compat

        record["compat"] = {tool: emit_compat(record, tool) for tool in tools}
    print_run_table(record)
    print_json_line(record)  # first: a file that fails to write below must not cost the measured record
    if args.out:
        from profiler.results import append_result

        append_result(args.out, record)
    write_json(args.json, record)
    return 0
