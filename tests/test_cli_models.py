"""`tokencost models`: every preset with figures that agree with the roofline formulas."""

import json

from profiler import roofline
from profiler.presets import get_preset, preset_names
from tokencost.cli import main


def test_models_lists_every_preset_with_consistent_figures(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["models"]
    assert [r["model"] for r in rows] == preset_names()
    for r in rows:
        cfg = get_preset(r["model"])
        assert r["param_count"] == roofline.param_count(cfg)
        # batch 1, bf16 weights, one token of KV: the weights read plus 2 bytes per KV element of that token.
        assert r["bytes_per_step_bf16_batch1"] == roofline.decode_bytes_per_step(cfg, 1, 1, 2)
        assert r["kv_bytes_per_token_bf16"] == roofline.kv_bytes_per_token(cfg, 2)
        assert r["decode_loop"] == (not cfg.is_moe) and r["source"]
    smol = next(r for r in rows if r["model"] == "smollm2-135m")
    assert smol["param_count"] == 134_515_008  # metrics.md §6


def test_models_table_names_every_preset(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in preset_names())


def test_json_alone_or_with_a_path(tmp_path, capsys):
    """`models --json` prints only the JSON; `--json PATH` prints the table and the JSON line, and writes
    the same JSON to PATH (as run, sweep, kernels... do)."""
    import json

    from tokencost.cli import main

    assert main(["models", "--json"]) == 0
    alone = capsys.readouterr().out.strip().splitlines()
    assert len(alone) == 1 and json.loads(alone[0])["models"]
    path = tmp_path / "m.json"
    assert main(["models", "--json", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) > 1 and json.loads(lines[-1]) == json.loads(path.read_text()) == json.loads(alone[0])
