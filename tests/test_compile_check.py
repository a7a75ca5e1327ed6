"""The Triton kernels compile for an H100/H200 (sm_90) with the GPU compiler, on a machine without a GPU.

The interpreter tests cannot see GPU-only compile errors, shared-memory or register limits
(kernels.md 4.7). ``benchmarks.compile_check`` compiles every kernel, in bfloat16 (which the
interpreter cannot run at all), with Triton's bundled ptxas through a stand-in driver, and replays
the launches that change between eager decode steps to show that no step after the first compiles
or autotunes. It runs in a subprocess because the kernels must be defined without TRITON_INTERPRET,
which conftest sets for this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.compile_check import TARGETS, max_threads
from tests.tiny import write_config

REPO = Path(__file__).resolve().parents[1]

# Wide enough that the decode GEMMs split K (K // 2 >= 256) and the attention uses several KV splits;
# GQA 4, head_dim 96 (padded to 128), and a sliding window shorter than the context, so that the
# eager decode steps' cache view both grows and slides.
CONFIG = {"model_type": "mistral", "architectures": ["MistralForCausalLM"], "hidden_size": 768,
          "intermediate_size": 1024, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 96,
          "num_hidden_layers": 1, "vocab_size": 512, "max_position_embeddings": 4096, "sliding_window": 128}


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")  # compile for real, not from an old cache
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    return subprocess.run([sys.executable, "-m", "benchmarks.compile_check", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compile")
    cfg = write_config(tmp, CONFIG)
    out = tmp / "kernels.json"
    proc = _run(["--config", str(cfg), "--dtype", "bfloat16", "--batch-sizes", "1,3", "--context", "301",
                 "--square", "64", "--max-configs", "1", "--decode-steps", "40", "--json", str(out)], tmp)
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def test_every_kernel_compiles_for_sm90(compiled):
    proc, result = compiled
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kernels = {r["kernel"] for r in result["kernels"]}
    assert kernels == {"_matmul_kernel", "_splitk_reduce_kernel", "_prefill_kernel", "_decode_split_kernel",
                       "_decode_combine_kernel", "_rmsnorm_kernel", "_rope_kernel", "_swiglu_kernel"}
    attention = [r["config"] for r in result["kernels"] if r["kernel"] in ("_prefill_kernel", "_decode_split_kernel")]
    assert attention and all("HAS_WINDOW=True" in c and "HEAD_DIM=96" in c for c in attention)
    limit = TARGETS[90]["max_shared_mem"]
    for row in result["kernels"]:
        assert row["status"] == "ok", row
        assert 0 <= row["shared_bytes"] <= limit, row
        if row["registers"] is not None:  # cuobjdump ships with Triton's NVIDIA backend
            assert 1 <= row["registers"] <= 255, row
            assert row["max_threads"] == max_threads(row["registers"])
    summary = result["summary"]
    assert summary["arch"] == 90 and summary["dtype"] == "bfloat16"
    assert summary["compiled"] == len(result["kernels"])
    assert summary["config_errors"] == summary["failed_calls"] == 0


def test_no_eager_decode_step_after_the_first_compiles(compiled):
    proc, result = compiled
    assert result["summary"]["decode_steps_checked"] == 40
    assert result["decode_steps_that_compiled"] == [], result["decode_steps_that_compiled"]


def test_bad_arguments_are_one_line_errors(tmp_path):
    proc = _run(["--context", "0"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--context" in proc.stderr
    proc = _run(["--model", "no-such-model"], tmp_path)
    assert proc.returncode == 2 and "no-such-model" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run(["--decode-steps", "1"], tmp_path)
    assert proc.returncode == 2 and "--decode-steps" in proc.stderr
    proc = _run(["--json", "/proc/x.json"], tmp_path)  # refused before compiling anything
    assert proc.returncode == 2 and "cannot write" in proc.stderr and "Traceback" not in proc.stderr


def test_refuses_to_run_under_the_interpreter(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.compile_check"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "TRITON_INTERPRET" in proc.stderr


@pytest.mark.parametrize("regs,threads", [(32, 1024), (64, 1024), (128, 512), (168, 384), (255, 256)])
def test_max_threads_follows_the_register_file(regs, threads):
    # 64K registers per SM allocated per warp in units of 256: 168 regs -> 5376 per warp -> 12 warps.
    assert max_threads(regs) == threads
