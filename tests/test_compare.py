"""`tokencost compare`: the differences it reports, torch vs triton end to end (the interpreter on a
CPU), its one-line errors before anything is measured, and `--plugin` loading."""

import json

import pytest

from tests.cli_helpers import cli_error
from tests.tiny import write_config
from tokencost.cli import main
from tokencost.cli.compare_cmd import METRICS, differences
from tokencost.cli.plugins import load_plugin


def test_differences_are_ratios_and_percent_changes():
    base = {"backend": "torch", "output_tok_per_s": 100.0, "tpot_s": 0.02, "usd_per_mtok_output": 5.0, "mbu": 0.5,
            "ttft_s": 0.1, "step_times_s": [0.019, 0.020, 0.020, 0.021, 0.020]}
    fast = {"backend": "x", "output_tok_per_s": 125.0, "tpot_s": 0.016, "usd_per_mtok_output": 4.0, "mbu": None,
            "ttft_s": 0.08, "step_times_s": [0.016, 0.0161, 0.0159, 0.016, 0.016]}
    d = differences([base, fast])["x"]
    assert d["output_tok_per_s"]["ratio"] == pytest.approx(1.25)
    assert d["output_tok_per_s"]["pct_change"] == pytest.approx(25.0)
    assert d["tpot_s"]["ratio"] == pytest.approx(0.8) and d["tpot_s"]["pct_change"] == pytest.approx(-20.0)
    assert d["usd_per_mtok_output"]["pct_change"] == pytest.approx(-20.0)
    assert d["mbu"]["ratio"] is None and d["mbu"]["pct_change"] is None  # a missing value is not a number
    assert set(d) == {key for key, *_ in METRICS}
    # Noise = the larger relative IQR of the two backends' step times: both quartiles equal here.
    assert d["tpot_s"]["noise_pct"] == pytest.approx(0.0, abs=1e-9)
    assert d["output_tok_per_s"]["verdict"] == "better" and d["tpot_s"]["verdict"] == "better"
    assert d["usd_per_mtok_output"]["verdict"] == "better"
    assert d["ttft_s"]["verdict"] == "one sample each" and d["ttft_s"]["noise_pct"] is None
    assert d["mbu"]["verdict"] == "n/a"


def test_a_difference_inside_the_step_noise_is_not_called_better():
    steps = [0.018, 0.019, 0.020, 0.021, 0.022, 0.020]  # IQR / median = (0.02075 - 0.01925) / 0.02 = 7.5 %
    base = {"backend": "torch", "tpot_s": 0.020, "output_tok_per_s": 50.0, "step_times_s": steps}
    near = {"backend": "x", "tpot_s": 0.0195, "output_tok_per_s": 51.3, "step_times_s": steps}
    far = {"backend": "y", "tpot_s": 0.025, "output_tok_per_s": 40.0, "step_times_s": steps}
    d = differences([base, near, far])
    assert d["x"]["tpot_s"]["noise_pct"] == pytest.approx(7.5)
    assert d["x"]["tpot_s"]["verdict"] == "within noise"
    assert d["y"]["tpot_s"]["verdict"] == "worse" and d["y"]["output_tok_per_s"]["verdict"] == "worse"
    few = dict(near, step_times_s=steps[:3])
    assert differences([base, few])["x"]["tpot_s"]["verdict"] == "too few decode steps"


def test_compare_torch_vs_triton_end_to_end(tmp_path, capsys):
    """The issue's command on a tiny config: both backends measured on one model, the difference printed."""
    cfg = write_config(tmp_path)
    assert main(["compare", "--config", str(cfg), "--backend", "torch", "--backend", "triton", "--prompt-len", "5",
                 "--gen-len", "3", "--warmup-steps", "1", "--price-per-gpu-hour", "3", "--op",
                 "attention_decode=torch"]) == 0
    out = capsys.readouterr().out
    payload = json.loads(out.strip().splitlines()[-1])
    assert "triton vs torch" in out
    base, tri = payload["records"]
    assert (base["backend"], tri["backend"]) == ("torch", "triton")
    # --op applies to every backend measured.
    assert base["ops"]["attention_decode"] == tri["ops"]["attention_decode"] == "torch"
    assert tri["ops"]["linear"] == "triton" and base["ops"]["linear"] == "torch"
    assert payload["op_overrides"] == {"attention_decode": "torch"}
    for r in (base, tri):
        assert r["output_tok_per_s"] == pytest.approx(r["batch_size"] / r["tpot_s"])
        assert r["usd_per_mtok_output"] == pytest.approx(3 / (r["output_tok_per_s"] * 3600) * 1e6)
    ratio = payload["differences"]["triton"]["output_tok_per_s"]["ratio"]
    assert ratio == pytest.approx(tri["output_tok_per_s"] / base["output_tok_per_s"])


@pytest.mark.parametrize("extra, needle", [
    (["--backend", "torch"], "at least two"),
    ([], "at least two"),
    (["--backend", "torch", "--backend", "torch"], "twice"),
    (["--backend", "torch", "--backend", "nope"], "nope"),
    (["--backend", "torch", "--backend", "triton", "--op", "swiglu=nope"], "nope"),
    (["--backend", "torch", "--backend", "triton", "--op", "notanop=torch"], "notanop"),
    (["--backend", "torch", "--backend", "triton", "--gen-len", "1"], "gen-len"),
    (["--backend", "torch", "--backend", "triton", "--prompt-len", "300"], "max_position_embeddings"),
    (["--backend", "torch", "--backend", "triton", "--price-per-instance-hour", "9"], "gpus-per-instance"),
    (["--backend", "torch", "--backend", "triton", "--plugin", "no_such_plugin_module_xyz"], "no_such_plugin"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, extra, needle):
    cfg = write_config(tmp_path)
    assert needle in cli_error(capsys, ["compare", "--config", str(cfg), *extra])


def test_plugin_errors_are_one_line(tmp_path):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("from profiler.backends import register\nregister('not_an_op', 'x')(print)\n")
    with pytest.raises(ValueError, match="broken_plugin.py: importing it failed: .*not_an_op"):
        load_plugin(str(broken))
    with pytest.raises(ValueError, match="file not found"):
        load_plugin(str(tmp_path / "missing.py"))


def test_plugin_is_imported_once(tmp_path):
    path = tmp_path / "counting_plugin.py"
    path.write_text("import builtins\nbuiltins._tokencost_plugin_loads = getattr(builtins, "
                    "'_tokencost_plugin_loads', 0) + 1\n")
    first = load_plugin(str(path))
    assert load_plugin(str(path)) is first
    import builtins

    assert builtins._tokencost_plugin_loads == 1


def test_interpreter_timings_get_no_verdict():
    from tokencost.cli.compare_cmd import differences

    base = {"backend": "torch", "device": "cpu", "ops": {"linear": "torch"}, "output_tok_per_s": 100.0,
            "step_times_s": [0.01] * 8}
    sim = {"backend": "triton", "device": "cpu", "ops": {"linear": "triton"}, "output_tok_per_s": 1.0,
           "step_times_s": [1.0] * 8}
    d = differences([base, sim])["triton"]
    assert d["output_tok_per_s"]["verdict"] == "not comparable (interpreter)"
    assert differences([base, {**sim, "device": "cuda:0"}])["triton"]["output_tok_per_s"]["verdict"] == "worse"
