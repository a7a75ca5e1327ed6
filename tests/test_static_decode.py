"""The static decode step (position on the device, for CUDA graphs) against the eager decode step, its
freedom from host syncs, and the --cuda-graph option's errors where no CUDA GPU is present.

The reference is ``Transformer.forward`` with T == 1 on a second model with the same seeded weights,
so a wrong KV write position, RoPE row, length or window in ``decode_static`` shows up as different
logits, a different greedy token or a different cache."""

import dataclasses

import pytest
import torch

from profiler.backends import resolve
from profiler.config import config_from_dict
from profiler.errors import ProfilerError
from profiler.measure import DecodeSettings, measure_decode
from profiler.model import build_model
from profiler.runner import RunSpec, run_point
from tests.cli_helpers import cli_error
from tests.conftest import gpu
from tests.tiny import TINY_LLAMA, write_config

# Base TINY_LLAMA: hidden 64, 4 heads of head_dim 16, 2 KV heads (GQA 2), 2 layers.
CONFIGS = {
    "llama-gqa2": {},
    "mistral-gqa4-window4": {"model_type": "mistral", "architectures": ["MistralForCausalLM"],
                             "num_key_value_heads": 1, "sliding_window": 4},
    "qwen3-qknorm": {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "head_dim": 16},
}
PROMPT_LEN, STEPS, BATCH = 5, 8, 2  # 13 positions: well past the window of 4


def _cfg(name: str):
    return config_from_dict({**TINY_LLAMA, **CONFIGS[name]}, name=name)


def _models(cfg, ops_static=None, max_batch=3, max_seq=PROMPT_LEN + STEPS + 1, device="cpu"):
    """Two models with identical seeded weights; the first decodes eagerly, the second statically.
    The cache holds one more sequence than the batch, so ``decode_static`` must slice it."""
    eager = build_model(cfg, max_batch_size=max_batch, max_seq_len=max_seq, device=device)
    static = build_model(cfg, max_batch_size=max_batch, max_seq_len=max_seq, device=device,
                         ops=ops_static or resolve("torch"))
    return eager, static


def _prompt(cfg, device="cpu"):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, cfg.vocab_size, (BATCH, PROMPT_LEN), generator=g).to(device)


def _decode_both(eager, static, steps=STEPS, tol=1e-5):
    """Prefill both models, then decode ``steps`` greedy steps: eager forward vs decode_static.
    Returns the static model's logits per step."""
    prompt = _prompt(eager.cfg, eager.device)
    with torch.inference_mode():
        nxt_e = eager(prompt, 0).argmax(-1, keepdim=True)
        nxt_s = static(prompt, 0).argmax(-1, keepdim=True)
        assert torch.equal(nxt_e, nxt_s)
        out = []
        for p in range(PROMPT_LEN, PROMPT_LEN + steps):
            le = eager(nxt_e, p)
            ls = static.decode_static(nxt_s, torch.tensor([p], device=static.device))
            assert ls.dtype == torch.float32 and ls.shape == (BATCH, eager.cfg.vocab_size)
            torch.testing.assert_close(ls, le, rtol=tol, atol=tol, msg=lambda m: f"position {p}: {m}")
            nxt_e, nxt_s = le.argmax(-1, keepdim=True), ls.argmax(-1, keepdim=True)
            assert torch.equal(nxt_e, nxt_s), f"greedy tokens differ at position {p}"
            out.append(ls)
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decode_static_matches_eager_decode(name):
    eager, static = _models(_cfg(name))
    _decode_both(eager, static)
    end = PROMPT_LEN + STEPS  # the KV rows written by both, for the batch's sequences only
    for le, ls in zip(eager.layers, static.layers):
        torch.testing.assert_close(ls.attn.k_cache[:BATCH, :, :end], le.attn.k_cache[:BATCH, :, :end])
        torch.testing.assert_close(ls.attn.v_cache[:BATCH, :, :end], le.attn.v_cache[:BATCH, :, :end])
    assert not static.layers[0].attn.k_cache[BATCH:].any()  # the unused sequence slot is untouched


def test_sliding_window_changes_the_static_logits():
    """The window case above can fail: without the window the same weights give other logits."""
    cfg = _cfg("mistral-gqa4-window4")
    _, windowed = _models(cfg)
    _, full = _models(dataclasses.replace(cfg, sliding_window=None))
    prompt = _prompt(cfg)
    with torch.inference_mode():
        for m in (windowed, full):
            m(prompt, 0)
        tok = prompt[:, :1]
        pos = torch.tensor([PROMPT_LEN])
        diff = (windowed.decode_static(tok, pos) - full.decode_static(tok, pos)).abs().max()
    assert diff > 1e-3


def test_decode_static_with_triton_backend_matches_torch_eager():
    """Triton kernels under TRITON_INTERPRET=1 (head_dim 16), full-cache decode attention masked by
    seq_lens on the device; float32 with tl.dot in IEEE mode, so the torch tolerance of the op tests."""
    cfg = _cfg("mistral-gqa4-window4")
    eager, static = _models(cfg, ops_static=resolve("triton"), max_seq=16)
    _decode_both(eager, static, steps=8, tol=1e-4)


def test_decode_static_never_reads_tensors_back(monkeypatch):
    """No .item(), .tolist(), numpy() and no Python branch or int conversion of a tensor value: each
    of these would be a device sync on CUDA (and is illegal during capture)."""
    eager, static = _models(_cfg("mistral-gqa4-window4"))
    prompt = _prompt(static.cfg)
    with torch.inference_mode():
        nxt = static(prompt, 0).argmax(-1, keepdim=True)

    def refuse(*args, **kwargs):
        raise AssertionError("host read-back of a tensor value")

    for name in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    with pytest.raises(AssertionError):  # the guard itself works
        bool(torch.tensor(True))
    with torch.inference_mode():
        logits = static.decode_static(nxt, torch.tensor([PROMPT_LEN]))
    monkeypatch.undo()
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("tokens_shape, pos, dtype", [
    ((2, 2), torch.tensor([3]), torch.int64),           # two tokens per sequence
    ((4, 1), torch.tensor([3]), torch.int64),           # batch past max_batch_size 3
    ((2, 1), 3, torch.int64),                           # a Python int position
    ((2, 1), torch.tensor([3], dtype=torch.int32), torch.int64),
    ((2, 1), torch.tensor([3, 4]), torch.int64),
    ((2, 1), torch.tensor([3]), torch.float32),         # float tokens
])
def test_decode_static_rejects_bad_input(tokens_shape, pos, dtype):
    _, static = _models(_cfg("llama-gqa2"))
    with pytest.raises(ProfilerError):
        static.decode_static(torch.zeros(tokens_shape, dtype=dtype), pos)


def test_cuda_graph_without_cuda_is_a_profiler_error():
    from profiler.cuda_graph import GraphedDecodeStep

    model = build_model(_cfg("llama-gqa2"), max_batch_size=1, max_seq_len=8)
    with pytest.raises(ProfilerError, match="CUDA"):
        measure_decode(model, DecodeSettings(1, 4, 3), cuda_graph=True)
    with pytest.raises(ProfilerError, match="CUDA"):
        GraphedDecodeStep(model, 1)
    spec = RunSpec(cfg=_cfg("llama-gqa2"), prompt_len=4, gen_len=3, device="cpu", cuda_graph=True)
    with pytest.raises(ProfilerError, match="--cuda-graph needs a CUDA GPU"):
        run_point(spec, bandwidth_bytes_per_s=1e11, bandwidth_source="test", env={})


def test_run_record_says_whether_cuda_graphs_were_used():
    spec = RunSpec(cfg=_cfg("llama-gqa2"), prompt_len=4, gen_len=3, device="cpu")
    assert spec.cuda_graph is False
    record = run_point(spec, bandwidth_bytes_per_s=1e11, bandwidth_source="test", env={})
    assert record["cuda_graph"] is False and record["n_decode_steps"] == 2


@pytest.mark.parametrize("command", [["run"], ["sweep", "--out", "unused.jsonl"],
                                     ["compare", "--backend", "torch", "--backend", "triton"]])
def test_cli_cuda_graph_on_cpu_is_a_one_line_error(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    argv = [*command, "--config", str(write_config(tmp_path)), "--device", "cpu", "--cuda-graph"]
    assert "--cuda-graph needs a CUDA GPU" in cli_error(capsys, argv)
    assert not (tmp_path / "unused.jsonl").exists()


# ---- GraphedDecodeStep's host logic on CPU, capture replaced by eager replay -------------------------

class _EagerReplay:
    """CPU stand-in for a captured graph: replay re-runs the step eagerly on the same static buffers
    and writes the same static outputs. Valid as a model of replay because decode_static has no
    Python-side dependence on tensor values (test above); the real capture runs in the GPU tests."""

    def __init__(self, owner):
        self.owner, self.replays = owner, 0

    def replay(self):
        logits, nxt = self.owner._run_once()
        self.owner.logits.copy_(logits)
        self.owner.next_tokens.copy_(nxt)
        self.replays += 1


@pytest.fixture
def eager_capture(monkeypatch):
    """Lets GraphedDecodeStep run on CPU: no CUDA check, and _capture does the warm-up iterations
    eagerly then returns an :class:`_EagerReplay`. Yields the list of stand-ins created."""
    import profiler.cuda_graph as graphs

    made = []

    def capture(self, device, warmup_iters):
        for _ in range(warmup_iters):
            self._run_once()
        self.logits, self.next_tokens = (t.clone() for t in self._run_once())
        made.append(_EagerReplay(self))
        return made[-1]

    monkeypatch.setattr(graphs, "require_cuda", lambda device: None)
    monkeypatch.setattr(graphs.GraphedDecodeStep, "_capture", capture)
    return made


def test_graphed_step_feeds_back_and_leaves_the_cache_intact(eager_capture):
    """Warm-up after the prefill at the first decode position, then replays with the position in the
    buffer and the greedy pick fed back: the same logits and tokens as eager forward on a second model."""
    from profiler.cuda_graph import GraphedDecodeStep

    cfg = _cfg("mistral-gqa4-window4")
    eager, model = _models(cfg)
    prompt = _prompt(cfg)
    with torch.inference_mode():
        nxt = eager(prompt, 0).argmax(-1, keepdim=True)
        first = model(prompt, 0).argmax(-1, keepdim=True)
    graphed = GraphedDecodeStep(model, BATCH, warmup_pos=PROMPT_LEN)
    graphed.set_tokens(first)
    for p in range(PROMPT_LEN, PROMPT_LEN + STEPS):
        tokens = graphed.step(p)
        with torch.inference_mode():
            ref = eager(nxt, p)
        torch.testing.assert_close(graphed.logits, ref, rtol=1e-5, atol=1e-5)
        nxt = ref.argmax(-1, keepdim=True)
        assert tokens is graphed.next_tokens and torch.equal(tokens, nxt)
    assert eager_capture[0].replays == STEPS


def test_graphed_step_refuses_changed_models_and_bad_positions(eager_capture):
    from profiler.cuda_graph import GraphedDecodeStep
    from profiler.errors import KVCacheOverflowError

    model = build_model(_cfg("llama-gqa2"), max_batch_size=2, max_seq_len=8)
    with pytest.raises(ProfilerError):
        GraphedDecodeStep(model, 3)  # batch past the cache
    with pytest.raises(KVCacheOverflowError):
        GraphedDecodeStep(model, 2, warmup_pos=8)
    graphed = GraphedDecodeStep(model, 2)
    with pytest.raises(KVCacheOverflowError):
        graphed.step(8)
    with pytest.raises(ProfilerError):
        graphed.set_tokens(torch.zeros(1, 1, dtype=torch.int64))
    model.set_ops(resolve("torch"))  # a new bundle: the graph would still run the old kernels
    with pytest.raises(ProfilerError, match="set_ops"):
        graphed.step(1)
    graphed = GraphedDecodeStep(model, 2)
    graphed.step(1)
    model.resize_cache(2, 16)
    with pytest.raises(ProfilerError, match="resize_cache"):
        graphed.step(2)


def test_measure_decode_times_graph_replays(eager_capture):
    """measure_decode(cuda_graph=True) times one replay per decode step, and decodes the same tokens as
    the eager loop: the KV cache both leave behind (every input token's K/V) is the same."""
    s = DecodeSettings(batch_size=2, prompt_len=6, gen_len=7, warmup_steps=1)
    eager, graphed = (build_model(_cfg("llama-gqa2"), max_batch_size=2, max_seq_len=s.seq_len) for _ in "ab")
    measure_decode(eager, s)
    m = measure_decode(graphed, s, cuda_graph=True)
    assert [g.replays for g in eager_capture] == [s.gen_len - 1]
    assert m.logits_finite and len(m.step_times_s) == s.gen_len - 1
    assert 0 < sum(m.step_times_s) <= m.decode_wall_s
    for le, lg in zip(eager.layers, graphed.layers):
        torch.testing.assert_close(lg.attn.k_cache, le.attn.k_cache, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lg.attn.v_cache, le.attn.v_cache, rtol=1e-5, atol=1e-5)


# ---- GPU only ---------------------------------------------------------------------------------------

@gpu
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_graph_replay_matches_eager_decode_static(backend):
    """Replays of one captured step give the logits and greedy tokens of eager decode_static at every
    position, on a second model whose cache saw no warm-up: so the warm-up did not corrupt the cache
    and the graph reads the position from its buffer. Eager decode_static must not sync."""
    from profiler.cuda_graph import GraphedDecodeStep

    cfg = _cfg("mistral-gqa4-window4")
    eager, graphed_model = _models(cfg, ops_static=resolve(backend), device="cuda")
    eager.set_ops(resolve(backend))
    prompt = _prompt(cfg, "cuda")
    with torch.inference_mode():
        nxt = eager(prompt, 0).argmax(-1, keepdim=True)
        first = graphed_model(prompt, 0).argmax(-1, keepdim=True)
    graphed = GraphedDecodeStep(graphed_model, BATCH, warmup_pos=PROMPT_LEN)
    graphed.set_tokens(first)
    for p in range(PROMPT_LEN, PROMPT_LEN + STEPS):
        tokens = graphed.step(p).clone()
        logits = graphed.logits.clone()
        pos = torch.tensor([p], device="cuda")  # a host-to-device copy: outside the no-sync region
        torch.cuda.set_sync_debug_mode("error")
        try:
            with torch.inference_mode():
                ref = eager.decode_static(nxt, pos)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        # Same kernels and shapes, but cuBLAS may pick another algorithm on the capture stream: a
        # relative 1e-4 allows that and is far below the change a wrong position or row makes.
        torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)
        nxt = ref.argmax(-1, keepdim=True)
        assert torch.equal(tokens, nxt)


@gpu
def test_graph_refuses_a_resized_cache_and_measures():
    from profiler.cuda_graph import GraphedDecodeStep

    model = build_model(_cfg("llama-gqa2"), max_batch_size=2, max_seq_len=16, device="cuda")
    graphed = GraphedDecodeStep(model, 2, warmup_pos=4)
    graphed.step(4)
    model.resize_cache(2, 32)
    with pytest.raises(ProfilerError, match="resize_cache"):
        graphed.step(5)
    s = DecodeSettings(batch_size=2, prompt_len=7, gen_len=6)
    m = measure_decode(model, s, cuda_graph=True)
    assert m.logits_finite and len(m.step_times_s) == s.gen_len - 1
    assert 0 < sum(m.step_times_s) <= m.decode_wall_s
