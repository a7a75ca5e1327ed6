"""`tokencost run` cost wiring, end to end on a tiny config: break-even from the whole request's GPU
time, the owned price's utilisation counted once, electricity from chip energy × the survey PUE,
unverified catalog figures named, and the human table's energy and roofline lines.

A GPU cannot be measured on this CPU-only machine, so where a test needs one it replaces what only a
GPU gives (the driver's name, the NVML energy delta, the datasheet peaks) and lets everything else —
measurement, pricing, cost models, printing — run for real.
"""

from __future__ import annotations

import json

import pytest

from tests.cli_helpers import cli_error
from tests.tiny import write_config
from tokencost import catalog as catalog_mod
from tokencost.cli import main
from tokencost.prices import api_price_from_name


@pytest.fixture(autouse=True)
def _fresh_catalog():
    catalog_mod._ACTIVE = None
    yield
    catalog_mod._ACTIVE = None


def _record(capsys) -> tuple[dict, str, str]:
    captured = capsys.readouterr()
    return json.loads(captured.out.strip().splitlines()[-1]), captured.out, captured.err


def _run(tmp_path, *extra: str, prompt: int = 8, gen: int = 3) -> list[str]:
    cfg = write_config(tmp_path, {"max_position_embeddings": 1024}, name="tiny.json")
    return ["run", "--config", str(cfg), "--prompt-len", str(prompt), "--gen-len", str(gen), *extra]


def _as_gpu(monkeypatch, **fields) -> None:
    """Measure on the CPU for real, then overwrite ``fields`` of the record as a GPU run would set them
    (before the cost fields are added)."""
    import profiler.runner as runner

    real = runner.run_point

    def run_point(*args, **kwargs):
        return {**real(*args, **kwargs), **fields}

    monkeypatch.setattr(runner, "run_point", run_point)


def _owned_gpu(monkeypatch, driver_name: str) -> None:
    """--price-owned looks the measured device up by its driver name: answer as that GPU would."""
    import tokencost.cli.pricing as pricing

    monkeypatch.setattr(pricing, "_device_identity", lambda device_type, device: (driver_name, None))


# Must-fix 1: break-even charges the request's prefill as well as its decode steps.
def test_breakeven_is_based_on_the_whole_request_cost(tmp_path, capsys):
    # A long prompt and few output tokens: prefill is most of the request's GPU time.
    argv = _run(tmp_path, "--batch-size", "2", "--price-per-gpu-hour", "3.6", "--api-price",
                "groq-llama-3.1-8b-instant", prompt=512, gen=4)
    assert main(argv) == 0
    r, out, _ = _record(capsys)
    be = r["breakeven"]
    # One request's GPU time = TTFT ÷ batch + (gen − 1) decode steps ÷ batch (tokencost.cost.request_cost).
    gpu_s = r["ttft_s"] / 2 + 3 * r["tpot_s"] / 2
    assert r["request_usd"] == pytest.approx(3.6 * gpu_s / 3600)
    assert be["selfhost_usd_per_request_full_use"] == pytest.approx(r["request_usd"])
    api = api_price_from_name("groq-llama-3.1-8b-instant")
    assert be["api_usd_per_request"] == pytest.approx((512 * api.usd_per_mtok_input + 4 * api.usd_per_mtok_output) / 1e6)
    assert be["utilization"] == pytest.approx(r["request_usd"] / be["api_usd_per_request"])
    assert be["breaks_even"] is (be["utilization"] <= 1)
    assert ("never breaks even" in out) is (not be["breaks_even"])


# Must-fix 4: the owned price is per utilised hour; the cost models start from the around-the-clock one.
def test_owned_price_counts_utilization_once(tmp_path, capsys, monkeypatch):
    from tokencost.tco import default_tco_params, owned_usd_per_gpu_hour

    _owned_gpu(monkeypatch, "NVIDIA H100 80GB HBM3")
    assert main(_run(tmp_path, "--price-owned", "--api-price", "groq-llama-3.1-8b-instant")) == 0
    r, out, _ = _record(capsys)
    tco = owned_usd_per_gpu_hour(default_tco_params("h100-sxm"))
    u = tco.params.utilization
    assert r["usd_per_hour"] == pytest.approx(tco.usd_per_utilized_gpu_hour)
    # Break-even at full use: the request at the around-the-clock price, i.e. utilisation taken back out.
    assert r["breakeven"]["selfhost_usd_per_request_full_use"] == pytest.approx(r["request_usd"] * u)
    eff = r["effective"]
    assert eff["usd_per_mtok_output_peak"] == pytest.approx(tco.usd_per_gpu_hour / (r["output_tok_per_s"] * 3600) * 1e6)
    assert eff["usd_per_hour"] == pytest.approx(tco.usd_per_gpu_hour) and eff["utilization"] == u
    # Idle time is paid once: the effective $/Mtok is the per-utilised-hour $/Mtok (up to whole-second billing).
    assert eff["usd_per_mtok_output_effective"] == pytest.approx(r["usd_per_mtok_output"], rel=1e-3)
    assert r["usd_per_gpu_hour_around_the_clock"] == pytest.approx(tco.usd_per_gpu_hour)
    assert r["price_basis"] == "per utilised GPU-hour" and "around the clock" in r["price_source"]
    assert "per utilised GPU-hour" in out
    err = cli_error(capsys, _run(tmp_path, "--price-owned", "--utilization", "0.5"))
    assert "--tco-param utilization" in err


# Must-fix 3: measured chip energy is priced with the survey PUE, with or without a capex row.
@pytest.mark.parametrize("driver_name", ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"])
def test_electricity_applies_the_survey_pue_to_chip_energy(tmp_path, capsys, monkeypatch, driver_name):
    _as_gpu(monkeypatch, device_name=driver_name, gpu_energy_j=90.0)
    assert main(_run(tmp_path, "--price-per-gpu-hour", "2")) == 0
    r, out, _ = _record(capsys)
    # kWh/Mtok × PUE × $/kWh with the survey PUE 1.56 (Uptime 2024) and 8.3 ¢/kWh (EIA), prices.md §5.
    kwh_per_mtok = 90.0 / r["decode_output_tokens"] * 1e6 / 3.6e6
    assert r["usd_per_mtok_electricity"] == pytest.approx(kwh_per_mtok * 1.56 * 0.083)
    assert r["electricity_pue"] == 1.56 and "Uptime" in r["electricity_sources"]["pue"]
    assert "PUE 1.56" in out


# Should-fix 7: the human table has an energy line and names the bound that limits the roofline.
def test_run_table_energy_line_and_roofline_bound(tmp_path, capsys, monkeypatch):
    assert main(_run(tmp_path, "--price-per-gpu-hour", "2")) == 0
    r, out, _ = _record(capsys)
    assert r["gpu_energy_per_output_token_j"] is None
    assert "energy per output token" in out and "unavailable" in out  # on CPU: unavailable, never 0
    assert f"roofline ({r['roofline_bound']} bound)" in out
    _as_gpu(monkeypatch, roofline_bound="compute", gpu_energy_j=90.0, gpu_energy_per_output_token_j=1.5)
    assert main(_run(tmp_path, "--price-per-gpu-hour", "2")) == 0
    _, out, _ = _record(capsys)
    assert "roofline (compute bound)" in out and "bandwidth bound" not in out
    assert "1.5 J/token" in out


# Should-fix 8: a run computed from an unverified catalog figure says so.
def test_run_on_a_gpu_with_unverified_figures_warns(tmp_path, capsys, monkeypatch):
    import tokencost.cli.measure_hook as hook
    from profiler.kernel_bench import Peaks
    from tokencost.hardware import gpu_by_name

    a10g = gpu_by_name("a10g")
    where = f"datasheet: a10g ({a10g.source}, {a10g.date})"
    monkeypatch.setattr(hook, "device_peaks", lambda device, dtype: Peaks(
        a10g.peak_flops_per_s("bf16")[0], f"{where}, bf16_tflops", a10g.bandwidth_bytes_per_s, where))
    _as_gpu(monkeypatch, device_name="NVIDIA A10G")
    assert main(_run(tmp_path, "--dtype", "bfloat16", "--price-per-gpu-hour", "1")) == 0
    r, _, err = _record(capsys)
    warning = next(w for w in r["warnings"] if "unverified" in w)
    assert "a10g's bf16_tflops is unverified" in warning and "bandwidth" not in warning  # 600 GB/s is sourced
    assert f"tokencost: warning: {warning}" in err
    # The owned TCO of an A10G takes the chip TDP, itself unverified.
    _owned_gpu(monkeypatch, "NVIDIA A10G")
    assert main(_run(tmp_path, "--price-owned", "--tco-param", "capex_usd=3000")) == 0
    r, _, _ = _record(capsys)
    assert any("power_w is unverified" in w for w in r["warnings"])
