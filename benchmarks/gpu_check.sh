#!/usr/bin/env bash
# One GPU check for issue 3, sized for one H200 in under 8 minutes:
#   kernel tests on the GPU (bf16 included), `tokencost kernels` at llama-3.1-8b shapes (context 8192;
#   batch 1 with --calibrate and the 4096/8192 square matmuls, batch 32 decode shapes), `tokencost run`
#   with the triton backend and `tokencost compare --backend torch --backend triton` at batch 1 and 32.
# Usage: benchmarks/gpu_check.sh OUTDIR
# Every step writes its log, JSON and CSV into OUTDIR; a failing or timed-out step is recorded in
# OUTDIR/steps.tsv and the script goes on, so partial results come back; the exit status is 1 when
# any step failed, timed out or was skipped. OUTDIR/summary.json and
# OUTDIR/summary.md hold the figures that benchmarks/RESULTS.md asks for (ratios and percentages
# computed from the measured JSON, nothing else).
#
# Environment:
#   PYTHON=...                      interpreter to use (default: .venv/bin/python if it imports torch, else python3)
#   TOKENCOST_GPU_CHECK_SMOKE=1     CPU smoke test of this script: a tiny config and tiny sizes instead of
#                                   llama-3.1-8b, the Triton interpreter instead of a GPU, a short test subset
#   TOKENCOST_GPU_CHECK_BUDGET_S    overall time budget in seconds (default 470)
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

SMOKE="${TOKENCOST_GPU_CHECK_SMOKE:-0}"
has_torch() { [[ -x "$(command -v "$1")" ]] && "$1" -c "import torch" >/dev/null 2>&1; }
has_cuda() { has_torch "$1" && "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; }
if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ "$SMOKE" == "1" ]]; then
    if has_torch .venv/bin/python; then PY=.venv/bin/python; else PY=python3; fi
elif has_cuda python3; then
    PY=python3
elif has_cuda .venv/bin/python; then
    PY=.venv/bin/python
else
    PY=python3
fi
BUDGET_S="${TOKENCOST_GPU_CHECK_BUDGET_S:-470}"
START_S=$SECONDS

if [[ "$SMOKE" == "1" ]]; then
    export TRITON_INTERPRET=1   # Triton on CPU tensors (correctness only; never timed)
    cat >"$OUT/tiny-config.json" <<'EOF'
{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
 "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false}
EOF
    MODEL=(--config "$OUT/tiny-config.json")
    CONTEXT=64; BIG_BATCH=4; PROMPT=16; GEN=4; SQUARE=64,128
    TESTS=(tests/test_kernel_bench.py)
else
    MODEL=(--model llama-3.1-8b)
    CONTEXT=8192; BIG_BATCH=32; PROMPT=512; GEN=32; SQUARE=4096,8192
    TESTS=(tests/test_kernel_*.py tests/test_triton_*.py)
fi

printf 'step\tstatus\texit_code\tseconds\n' >"$OUT/steps.tsv"

# step NAME TIMEOUT_S CMD...: run CMD with a timeout (cut to the budget left), log to OUT/NAME.log,
# record the outcome; never stops the script.
step() {
    local name="$1" limit="$2"
    shift 2
    local left=$((BUDGET_S - (SECONDS - START_S)))
    if ((left < 10)); then
        printf '%s\tskipped (time budget spent)\t-\t0\n' "$name" >>"$OUT/steps.tsv"
        echo "== $name: skipped, time budget spent" >&2
        return 0
    fi
    ((limit > left)) && limit=$left
    echo "== $name (timeout ${limit}s)" >&2
    local t0=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
    local status=ok
    ((rc == 124 || rc == 137)) && status=timeout
    ((rc != 0 && rc != 124 && rc != 137)) && status=failed
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$((SECONDS - t0))" >>"$OUT/steps.tsv"
    echo "   $status (exit $rc, $((SECONDS - t0)) s)" >&2
    return 0
}

TC=("$PY" -m tokencost.cli)
# --cuda-graph on run/compare when this checkout has it (the issue's MBU target is with CUDA graphs).
GRAPH=()
if [[ "$SMOKE" != "1" ]] && "${TC[@]}" run --help 2>/dev/null | grep -q -- "--cuda-graph"; then
    GRAPH=(--cuda-graph)
fi

step env 60 bash -c "
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,power.draw,power.limit --format=csv || true
    '$PY' -c 'import torch, triton; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"triton\", triton.__version__); print(\"gpu\", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'
"
cp "$OUT/env.log" "$OUT/env.txt" 2>/dev/null || true
if [[ "$SMOKE" != "1" ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA GPU visible to $PY; set TOKENCOST_GPU_CHECK_SMOKE=1 for the CPU smoke test" >&2
    exit 1
fi

step tests 200 "$PY" -m pytest "${TESTS[@]}" -m "not slow" -q -p no:cacheprovider -n 4 \
    --junitxml "$OUT/tests.xml"
step kernels_b1 150 "${TC[@]}" kernels "${MODEL[@]}" --batch-size 1 --context "$CONTEXT" --calibrate \
    --matmul-square "$SQUARE" --json "$OUT/kernels_b1.json" --csv "$OUT/kernels_b1.csv" --out "$OUT/results.jsonl"
step run_triton_b1 90 "${TC[@]}" run "${MODEL[@]}" --backend triton "${GRAPH[@]}" --batch-size 1 \
    --prompt-len "$PROMPT" --gen-len "$GEN" --json "$OUT/run_triton_b1.json"
step compare_b1 120 "${TC[@]}" compare "${MODEL[@]}" --backend torch --backend triton "${GRAPH[@]}" \
    --batch-size 1 --prompt-len "$PROMPT" --gen-len "$GEN" --json "$OUT/compare_b1.json"
# Batch 32: decode shapes only (prefill of 32 x 8192 tokens adds minutes of autotuning for shapes
# whose per-token cost batch 1 already shows).
step kernels_b32 90 "${TC[@]}" kernels "${MODEL[@]}" --batch-size "$BIG_BATCH" --context "$CONTEXT" --phase decode \
    --json "$OUT/kernels_b32.json" --csv "$OUT/kernels_b32.csv" --out "$OUT/results.jsonl"
step compare_b32 120 "${TC[@]}" compare "${MODEL[@]}" --backend torch --backend triton "${GRAPH[@]}" \
    --batch-size "$BIG_BATCH" --prompt-len "$PROMPT" --gen-len "$GEN" --json "$OUT/compare_b32.json"
step run_triton_b32 90 "${TC[@]}" run "${MODEL[@]}" --backend triton "${GRAPH[@]}" --batch-size "$BIG_BATCH" \
    --prompt-len "$PROMPT" --gen-len "$GEN" --json "$OUT/run_triton_b32.json"

# The figures of benchmarks/RESULTS.md, read from the JSON written above (missing ones stay null).
"$PY" - "$OUT" <<'EOF' || echo "summary failed" >&2
import json, sys
from pathlib import Path

out = Path(sys.argv[1])


def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.is_file() else None


def row(summary, phase, op, backend):
    for r in (summary or {}).get("rows", []):
        if (r["phase"], r["op"], r["backend"]) == (phase, op, backend) and r.get("status") == "ok":
            return r
    return None


s = {"gpu": None, "square_matmul": {}, "decode_attention": {}, "runs": {}, "compare": {}}
for name in ("kernels_b1.json", "kernels_b32.json"):
    k = load(name)
    if not k:
        continue
    s["gpu"] = k.get("device_name")
    for r in k["rows"]:
        if r["phase"] == "square" and r["backend"] == "triton" and r.get("status") == "ok":
            s["square_matmul"][r["op"]] = {"triton_vs_torch_speed": r["speedup_vs_torch"],
                                           "triton_tflop_per_s": r["achieved_flop_per_s"] / 1e12}
    a = row(k, "decode", "attention_decode", "triton")
    if a:
        s["decode_attention"][f"batch{k['batch_size']}_kv{k['context']}"] = {
            "pct_of_datasheet_bandwidth": a["bandwidth_peak_pct"],
            "pct_of_measured_copy_bandwidth": a.get("measured_bandwidth_peak_pct"),
            "achieved_gb_per_s": a["achieved_bytes_per_s"] / 1e9, "speedup_vs_torch": a["speedup_vs_torch"]}
for name in ("run_triton_b1.json", "run_triton_b32.json"):
    r = load(name)
    if r:
        s["runs"][name[:-5]] = {k: r.get(k) for k in ("batch_size", "mbu", "tpot_s", "output_tok_per_s",
                                                        "usd_per_mtok_output", "cuda_graph", "bandwidth_source")}
for name in ("compare_b1.json", "compare_b32.json"):
    c = load(name)
    if c:
        recs = {r["backend"]: r for r in c["records"]}
        s["compare"][name[:-5]] = {
            "tok_per_s": {b: r["output_tok_per_s"] for b, r in recs.items()},
            "usd_per_mtok_output": {b: r["usd_per_mtok_output"] for b, r in recs.items()},
            "mbu": {b: r["mbu"] for b, r in recs.items()},
            "triton_vs_torch_output_tok_per_s": c["differences"]["triton"]["output_tok_per_s"]["ratio"]}
(out / "summary.json").write_text(json.dumps(s, indent=2) + "\n")


def pct(v):
    return "n/a" if v is None else f"{v:.1f} %"


lines = [f"GPU: {s['gpu']}", "", "| figure | measured | target |", "|---|---|---|"]
for op, v in s["square_matmul"].items():
    lines.append(f"| {op} triton speed vs torch | {pct(100 * v['triton_vs_torch_speed'])} | >= 85 % |")
for key, v in s["decode_attention"].items():
    lines.append(f"| decode attention {key}: % of HBM bandwidth (datasheet) | {pct(v['pct_of_datasheet_bandwidth'])} "
                 f"| >= 70 % |")
for key, v in s["runs"].items():
    target = ">= 80 % (triton, CUDA graphs)" if v["batch_size"] == 1 else ""
    lines.append(f"| {key} MBU (cuda_graph={v['cuda_graph']}) | {pct(100 * v['mbu'] if v['mbu'] else None)} "
                 f"| {target} |")
for key, v in s["compare"].items():
    ratio = v["triton_vs_torch_output_tok_per_s"]
    lines.append(f"| {key}: triton / torch decode tok/s | {'n/a' if ratio is None else f'{ratio:.3f}'} | |")
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
cat "$OUT/steps.tsv" >&2
# Exit status: 0 only when every step succeeded (the results of the others are in OUTDIR either way).
if awk -F'\t' 'NR > 1 && $2 != "ok" { bad = 1 } END { exit !bad }' "$OUT/steps.tsv"; then
    exit 1
fi
