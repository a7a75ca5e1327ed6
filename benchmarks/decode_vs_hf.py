"""Our decode loop against Hugging Face ``generate`` on the same weights, side by side in one process.

Both run greedy decoding of the same prompt for the same number of tokens, batch 1, float32, on the
same device. Decode throughput is measured the same black-box way for both (optimum-benchmark's
definition, metrics.md §1.2): batch × (new_tokens − 1) ÷ (time of generate(new_tokens) − time of
generate(1)), each the median of ``--repeats`` runs, so prefill is excluded on both sides. Our own
median TPOT and MBU (bytes per step ÷ TPOT ÷ measured read bandwidth) are printed too.

Run:  python -m benchmarks.decode_vs_hf [--model smollm2-135m] [--prompt-len 64] [--gen-len 33]
Target (issue 2): on 2 CPU cores ours ≥ 2.5× theirs and MBU ≥ 50%. The ratio is printed, not asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from profiler import roofline
from profiler.bandwidth import measure_read_bandwidth
from profiler.measure import DecodeSettings, measure_decode
from profiler.model import build_model
from profiler.presets import PRESETS, get_preset
from profiler.timing import time_once


def hf_model_from_preset(name: str, seed: int):
    import transformers

    values = {k: v for k, v in PRESETS[name].values.items() if k != "torch_dtype"}
    config = transformers.AutoConfig.for_model(values.pop("model_type"), **values)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    return model.eval()


def ours_generate(model, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    nxt = model(prompt, 0).argmax(-1, keepdim=True)
    for i in range(new_tokens - 1):
        nxt = model(nxt, prompt.shape[1] + i).argmax(-1, keepdim=True)
    return nxt


def median_time(fn, repeats: int, device) -> float:
    fn()  # warm-up
    return statistics.median(time_once(fn, device)[1] for _ in range(repeats))


def decode_tok_per_s(run, gen_len: int, batch: int, repeats: int, device) -> float:
    t_full = median_time(lambda: run(gen_len), repeats, device)
    t_first = median_time(lambda: run(1), repeats, device)
    return batch * (gen_len - 1) / (t_full - t_first)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--gen-len", type=int, default=33)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    device = torch.device("cpu")
    cfg = get_preset(args.model)
    hf = hf_model_from_preset(args.model, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp, safe_serialization=True)
        ours = build_model(cfg, max_batch_size=1, max_seq_len=args.prompt_len + args.gen_len, weights_dir=tmp)
    prompt = torch.randint(0, cfg.vocab_size, (1, args.prompt_len), generator=torch.Generator().manual_seed(args.seed))
    mask = torch.ones_like(prompt)

    def hf_run(n: int, cache: str | None):
        kw = {"cache_implementation": cache} if cache else {}
        return hf.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           pad_token_id=0, **kw)

    with torch.inference_mode():
        same = torch.equal(hf_run(8, None)[0, args.prompt_len:], _ours_tokens(ours, prompt, 8))
        theirs = {c or "dynamic": decode_tok_per_s(lambda n, c=c: hf_run(n, c), args.gen_len, 1, args.repeats, device)
                  for c in (None, "static")}
        mine = decode_tok_per_s(lambda n: ours_generate(ours, prompt, n), args.gen_len, 1, args.repeats, device)
        m = measure_decode(ours, DecodeSettings(1, args.prompt_len, args.gen_len))
    best_cache, best = max(theirs.items(), key=lambda kv: kv[1])
    bw = measure_read_bandwidth(device)
    nbytes = roofline.decode_bytes_per_step(cfg, 1, args.prompt_len + args.gen_len // 2, 4)
    mbu = roofline.mbu(nbytes, m.tpot.median_s, bw.bytes_per_s)
    print(f"model {args.model}, float32, batch 1, prompt {args.prompt_len}, new tokens {args.gen_len}, "
          f"torch threads {torch.get_num_threads()}; same greedy tokens for 8 steps: {same}")
    for cache, tps in theirs.items():
        print(f"  transformers generate ({cache} cache): {tps:8.2f} tok/s")
    print(f"  tokencost decode loop:                 {mine:8.2f} tok/s  (median TPOT {m.tpot.median_s * 1e3:.2f} ms)")
    print(f"  ratio ours / transformers (best, {best_cache}): {mine / best:.2f}x   (target >= 2.5x)")
    print(f"  MBU: {nbytes / 1e9:.3f} GB per step / {m.tpot.median_s * 1e3:.2f} ms / {bw.bytes_per_s / 1e9:.1f} GB/s "
          f"measured = {mbu:.0%}   (target >= 50%)")


def _ours_tokens(model, prompt: torch.Tensor, n: int) -> torch.Tensor:
    out, nxt = [], model(prompt, 0).argmax(-1, keepdim=True)
    out.append(nxt)
    for i in range(n - 1):
        nxt = model(nxt, prompt.shape[1] + i).argmax(-1, keepdim=True)
        out.append(nxt)
    return torch.cat(out, dim=1)[0]


if __name__ == "__main__":
    main()
