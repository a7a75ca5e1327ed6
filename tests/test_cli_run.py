"""`tokencost run` end to end on a tiny config, and its one-line errors for bad input."""

import json
import subprocess
import sys

import pytest

from tests.cli_helpers import cli_error
from tests.tiny import write_config
from tokencost.cli import main

REQUIRED_KEYS = {
    "model", "device", "device_name", "dtype", "batch_size", "prompt_len", "gen_len", "ttft_s",
    "prefill_tok_per_s", "tpot_s", "tpot_p90_s", "tpot_p99_s", "output_tok_per_s", "output_tok_per_s_per_seq",
    "bytes_per_step", "roofline_output_tok_per_s", "mbu", "usd_per_hour", "price_source", "usd_per_mtok_output",
    "usd_per_mtok_input", "env",
}


def test_run_prints_table_and_json_last_line(tmp_path):
    cfg = write_config(tmp_path)
    out_json = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tokencost.cli", "run", "--config", str(cfg), "--batch-size", "2",
         "--prompt-len", "9", "--gen-len", "5", "--price-per-gpu-hour", "2.5", "--json", str(out_json),
         "--compat", "vllm", "--compat", "sglang"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    record = json.loads(lines[-1])
    assert REQUIRED_KEYS <= record.keys()
    assert len(lines) > 1  # a human-readable table comes first
    assert record["batch_size"] == 2 and record["prompt_len"] == 9 and record["gen_len"] == 5
    assert record["device"] == "cpu" and record["dtype"] == "float32"
    # $/Mtok = $/h ÷ (tok/s × 3600) × 1e6, output from decode and input from prefill throughput.
    assert record["usd_per_mtok_output"] == pytest.approx(2.5 / (record["output_tok_per_s"] * 3600) * 1e6)
    assert record["usd_per_mtok_input"] == pytest.approx(2.5 / (record["prefill_tok_per_s"] * 3600) * 1e6)
    assert record["output_tok_per_s"] == pytest.approx(2 / record["tpot_s"])
    assert 0 < record["mbu"] and record["bytes_per_step"] > 0
    assert record["env"]["torch_version"]
    assert json.loads(out_json.read_text())["ttft_s"] == record["ttft_s"]
    # Other tools' definitions of the same run (metrics.md §1): vLLM counts output tokens over the
    # whole request duration, prefill included; SGLang's decode throughput is batch ÷ median step.
    assert set(record["compat"]) == {"vllm", "sglang"}
    vllm = record["compat"]["vllm"]["metrics"]
    assert vllm["total_output_tokens"] == 2 * 5
    duration = record["ttft_s"] + sum(record["step_times_s"])
    assert vllm["duration_s"] == pytest.approx(duration)
    assert vllm["output_throughput_tok_per_s"] == pytest.approx(10 / duration)


@pytest.mark.parametrize("argv, needle", [
    (["run", "--model", "no-such-model"], "no-such-model"),
    (["run", "--config", "/nonexistent/config.json"], "/nonexistent/config.json"),
    (["run", "--batch-size", "0"], "batch-size"),
    (["run", "--gen-len", "-3"], "gen-len"),
    (["run", "--price-per-gpu-hour", "-1"], "price-per-gpu-hour"),
    (["run", "--price-per-gpu-hour", "nan"], "price-per-gpu-hour"),
    (["run", "--model", "smollm2-135m", "--prompt-len", "9000", "--gen-len", "10"], "max_position_embeddings"),
    (["run", "--price-per-instance-hour", "55"], "gpus-per-instance"),
    (["run", "--device", "cuda"], "cuda"),
    (["run", "--dtype", "float8"], "dtype"),
    (["run", "--backend", "nope"], "nope"),
    (["run", "--price-from", "no-such-price"], "no-such-price"),
    (["run", "--compat", "no-such-tool"], "no-such-tool"),
    (["run", "--price-per-gpu-hour", "2", "--price-from", "aws-p5.4xlarge-on-demand"], "give one price"),
    (["run", "--model", ""], "--model"),
    (["run", "--json", "/"], "is a directory"),
    (["run", "--out", "/proc/no-such.jsonl"], "cannot write"),
    (["run", "--weights", "/nonexistent-checkpoint"], "does not exist"),  # a folder nothing can be created in
    (["kernels", "--csv", "/proc/x.csv"], "cannot write"),
    (["compare", "--backend", "torch", "--json", "/proc/x.json"], "cannot write"),
    (["run", "--out", ""], "empty"),
    (["sweep", "--out", "/"], "is a directory"),
    (["sweep", "--out", "s.jsonl", "--batch-sizes", "1,,2"], "batch-sizes"),
    (["sweep", "--out", "s.jsonl", "--batch-sizes", "1,1"], "--repeats"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    assert needle in cli_error(capsys, argv)


def test_out_must_be_a_results_file_to_append_to(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("my notes\n")
    for cmd in (["run", "--gen-len", "2"], ["kernels", "--context", "8"], ["breakdown", "--context", "8"]):
        assert "not a results file" in cli_error(capsys, [*cmd, "--config", str(write_config(tmp_path)),
                                                          "--out", str(text)])
    assert text.read_text() == "my notes\n"  # untouched


def test_unreadable_config_file(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    assert str(bad) in cli_error(capsys, ["run", "--config", str(bad)])


def test_cost_model_options_on_a_run(tmp_path, capsys):
    cfg = write_config(tmp_path)
    argv = ["run", "--config", str(cfg), "--prompt-len", "8", "--gen-len", "4", "--price-per-gpu-hour", "2",
            "--utilization", "0.5", "--billing", "hour", "--blend", "1:1",
            "--api-price", "together-llama-3.1-8b-turbo"]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    eff = r["effective"]
    # 1e6 tokens at the measured rate, busy half the paid time, billed in whole hours.
    wall = 1e6 / r["output_tok_per_s"] / 0.5
    billed = -(-wall // 3600) * 3600
    assert eff["billed_s"] == pytest.approx(billed)
    assert eff["usd_per_mtok_output_effective"] == pytest.approx(2 * billed / 3600)
    assert r["request_usd_per_mtok_blended"] == pytest.approx(
        (r["request_usd_per_mtok_input"] + r["request_usd_per_mtok_output"]) / 2)
    # Break-even: the cost of one request's GPU time at full use (its prefill + its share of the 3
    # decode steps after the first token) ÷ the API's price for the same request.
    be = r["breakeven"]
    selfhost = 2 * (r["ttft_s"] + 3 * r["tpot_s"]) / 3600
    assert be["selfhost_usd_per_request_full_use"] == pytest.approx(selfhost)
    assert r["request_usd"] == pytest.approx(selfhost)
    assert be["utilization"] == pytest.approx(selfhost / be["api_usd_per_request"])
    from tokencost.prices import api_price_from_name

    api = api_price_from_name("together-llama-3.1-8b-turbo")
    assert be["api_usd_per_request"] == pytest.approx((8 * api.usd_per_mtok_input + 4 * api.usd_per_mtok_output) / 1e6)


@pytest.mark.parametrize("argv, needle", [
    (["run", "--utilization", "1.5"], "utilization"),
    (["run", "--blend", "3"], "blend"),
    (["run", "--api-price", "no-such-api"], "no-such-api"),
    (["run", "--price-owned"], "price-owned"),
    (["run", "--tco-param", "pue=1.2"], "tco-param"),
])
def test_bad_cost_model_options(capsys, argv, needle):
    assert needle in cli_error(capsys, argv)


def test_weights_dir_brings_its_own_config_and_run_appends_to_a_results_file(tmp_path, capsys):
    import transformers

    from profiler import load_results
    from tests.tiny import TINY_LLAMA

    ckpt = tmp_path / "ckpt"
    hf_cfg = transformers.LlamaConfig(**{k: v for k, v in TINY_LLAMA.items() if k not in ("model_type", "architectures")})
    transformers.LlamaForCausalLM(hf_cfg).save_pretrained(ckpt)
    results = tmp_path / "r.jsonl"
    assert main(["run", "--weights", str(ckpt), "--prompt-len", "4", "--gen-len", "3", "--out", str(results),
                 "--price-per-gpu-hour", "1"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["model"] == "ckpt" and record["weights"] == str(ckpt)
    df = load_results(results)
    assert len(df) == 1 and df["tpot_s"].iloc[0] == pytest.approx(record["tpot_s"])


def test_report_into_an_existing_file_is_a_one_line_error(tmp_path, capsys):
    from profiler.results import append_result

    results = tmp_path / "r.jsonl"
    append_result(results, {"kind": "run", "model": "m", "batch_size": 1, "prompt_len": 4, "tpot_s": 0.01,
                            "output_tok_per_s": 100.0, "output_tok_per_s_per_seq": 100.0, "mbu": 0.5, "ttft_s": 0.1})
    assert "exists" in cli_error(capsys, ["report", str(results), "--out", str(results)])


def test_pricing_a_cpu_run_at_a_gpu_row_is_flagged(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert main(["run", "--config", str(cfg), "--prompt-len", "4", "--gen-len", "2",
                 "--price-from", "aws-p5.4xlarge-on-demand"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert any("price row is for h100-sxm" in w for w in record["warnings"])
    from tokencost.prices import price_from_name

    assert record["usd_per_hour"] == price_from_name("aws-p5.4xlarge-on-demand").usd_per_gpu_hour  # as asked


def test_a_seed_past_64_bits_is_refused(capsys):
    assert "--seed" in cli_error(capsys, ["run", "--seed", str(2 ** 63)])


def test_a_plugin_calling_sys_exit_is_a_one_line_error(tmp_path, capsys):
    plugin = tmp_path / "exits.py"
    plugin.write_text("import sys\nsys.exit(3)\n")
    assert "sys.exit(3)" in cli_error(capsys, ["run", "--plugin", str(plugin)])


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"tokencost {version('tokencost')}"


def test_a_plugin_named_like_a_file_here_gets_a_hint(tmp_path, capsys, monkeypatch):
    (tmp_path / "my_local_variants.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert "--plugin ./my_local_variants.py" in cli_error(capsys, ["run", "--plugin", "my_local_variants"])


def test_out_refuses_a_json_file_the_report_could_not_read(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert "not a results file" in cli_error(capsys, ["run", "--config", str(cfg), "--out", str(cfg)])
    assert json.loads(cfg.read_text())["model_type"] == "llama"  # untouched


def test_catalog_is_repeatable(tmp_path, capsys):
    head = "name,provider,instance,vcpus_per_instance,tier,usd_per_instance_hour,region,is_default,source,date,note\n"
    for i, name in enumerate(("first-cpu", "second-cpu")):
        (tmp_path / f"c{i}.csv").write_text(head + f"{name},Me,box,2,on-demand,0.5,here,,me,2026-11-30,\n")
    cfg = write_config(tmp_path)
    assert main(["run", "--config", str(cfg), "--prompt-len", "4", "--gen-len", "3", "--device", "cpu",
                 "--catalog", str(tmp_path / "c0.csv"), "--catalog", str(tmp_path / "c1.csv"),
                 "--price-from", "first-cpu"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["price_source"].startswith("first-cpu")
