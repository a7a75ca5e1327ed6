"""Owned-hardware TCO, energy per token and break-even utilisation against the worked numbers of
shared/reference/prices.md §5.1, §5.2 and §6.2."""

from __future__ import annotations

import pytest

from tokencost import catalog as catalog_mod
from tokencost.breakeven import breakeven_from_request_cost, breakeven_utilization
from tokencost.energy import describe, energy_per_output_token, j_per_token_from_power
from tokencost.errors import CostError
from tokencost.prices import api_price_from_name
from tokencost.tco import (TcoParams, capital_recovery_factor, chip_energy_params, default_tco_params,
                           owned_usd_per_gpu_hour)


@pytest.fixture(autouse=True)
def _fresh_catalog():
    catalog_mod._ACTIVE = None
    yield
    catalog_mod._ACTIVE = None


def _params(**kw) -> TcoParams:
    base = dict(gpu="h100-sxm", capex_usd=50_000, depreciation_years=4, interest_rate=0.0, power_kw=1.73, pue=1.0,
                electricity_usd_per_kwh=0.083, colocation_usd_per_kw_month=0.0, utilization=0.7, sources={})
    return TcoParams(**{**base, **kw})


def test_tco_matches_prices_md_illustration():
    # prices.md §5.1: $50k over 4 years = $1.43/h; 1.73 kW × $0.083 = $0.14/h; ≈ $1.57/h; ≈ $2.24 per utilised hour.
    r = owned_usd_per_gpu_hour(_params())
    assert r.capex_usd_per_hour == pytest.approx(1.43, abs=0.005)
    assert r.power_usd_per_hour == pytest.approx(0.14, abs=0.005)
    assert r.usd_per_gpu_hour == pytest.approx(1.57, abs=0.005)
    assert r.usd_per_utilized_gpu_hour == pytest.approx(2.24, abs=0.005)


def test_capital_recovery_factor():
    assert capital_recovery_factor(0.0, 4) == 0.25
    assert capital_recovery_factor(0.08, 4) == pytest.approx(0.301921, rel=1e-5)  # standard annuity factor
    assert capital_recovery_factor(1e-9, 4) == pytest.approx(0.25, rel=1e-6)      # continuous at r → 0
    with pytest.raises(CostError, match="depreciation_years"):
        capital_recovery_factor(0.05, 0)


def test_colocation_and_pue_terms():
    r = owned_usd_per_gpu_hour(_params(power_kw=1.0, pue=1.5, colocation_usd_per_kw_month=184.06))
    assert r.colocation_usd_per_hour == pytest.approx(184.06 * 12 / 8760)
    assert r.power_usd_per_hour == pytest.approx(1.0 * 1.5 * 0.083)


def test_default_tco_params_are_sourced_and_overridable():
    p = default_tco_params("h100-sxm")
    assert (p.capex_usd, p.power_kw, p.pue, p.depreciation_years) == (32_500, 1.73, 1.0, 4)
    assert all(p.sources[name] for name in p.sources) and "InferenceX" in p.sources["power_kw"]
    q = default_tco_params("h100-sxm", utilization=0.5, electricity_usd_per_kwh=0.06)
    assert q.sources["utilization"] == "user" and q.utilization == 0.5
    slow, busy = owned_usd_per_gpu_hour(q), owned_usd_per_gpu_hour(default_tco_params("h100-sxm", utilization=1.0))
    assert slow.usd_per_utilized_gpu_hour > busy.usd_per_utilized_gpu_hour


def test_tco_defaults_for_gpu_without_allin_power_use_tdp_and_pue():
    with pytest.raises(CostError, match="no default capex_usd for l4"):
        default_tco_params("l4")
    p = default_tco_params("l4", capex_usd=2500)
    assert p.power_kw == pytest.approx(0.072) and p.pue == pytest.approx(1.56)


@pytest.mark.parametrize("override, message", [
    (dict(utilization=0.0), "utilization"), (dict(utilization=1.2), "utilization"), (dict(pue=0.9), "pue"),
    (dict(capex_usd=-1.0), "capex_usd"), (dict(power_kw=-0.5), "power_kw"), (dict(colour="red"), "unknown TCO"),
])
def test_tco_rejects_bad_parameters(override, message):
    with pytest.raises(CostError, match=message):
        default_tco_params("h100-sxm", **override)


def test_energy_matches_prices_md_check():
    # prices.md §5.2: 1.73 kW at 2,209 tok/s → 0.78 J/token → 0.22 kWh/Mtok → ≈ $0.018/Mtok at 8.3 ¢/kWh.
    assert j_per_token_from_power(1.73, 2209) == pytest.approx(0.78, abs=0.005)
    seconds = 100
    e = energy_per_output_token(joules=1730.0 * seconds, output_tokens=2209 * seconds, usd_per_kwh=0.083)
    assert e.j_per_output_token == pytest.approx(0.78, abs=0.005)
    assert e.kwh_per_mtok == pytest.approx(0.22, abs=0.005)
    assert e.usd_per_mtok_electricity == pytest.approx(0.018, abs=0.0005)
    facility = energy_per_output_token(1730.0 * seconds, 2209 * seconds, usd_per_kwh=0.083, pue=1.5)
    assert facility.usd_per_mtok_electricity == pytest.approx(1.5 * e.usd_per_mtok_electricity)


def test_energy_unavailable_is_none_never_zero():
    assert energy_per_output_token(None, 100) is None
    assert describe(None) == "unavailable"
    assert energy_per_output_token(500.0, 100).usd_per_mtok_electricity is None  # no $/kWh given
    for joules in (0.0, -3.0, float("nan")):
        with pytest.raises(CostError, match="energy delta"):
            energy_per_output_token(joules, 100)
    with pytest.raises(CostError, match="output_tokens"):
        energy_per_output_token(10.0, 0)


def test_breakeven_against_groq():
    # H100 TP2 Llama 3.3 70B FP8, 2,209 output tok/s per GPU at 1000/1000 (claims.md §1.1), AWS $6.88/GPU-h,
    # against Groq 70B at $0.59 / $0.79 per Mtok (prices.md §6).
    b = breakeven_utilization(6.88, 2209.0, 1000, 1000, api_price_from_name("groq-llama-3.x-70b-versatile"))
    selfhost = 6.88 * (1000 / 2209.0) / 3600
    api = (1000 * 0.59 + 1000 * 0.79) / 1e6
    assert b.selfhost_usd_per_request_full_use == pytest.approx(selfhost)
    assert b.api_usd_per_request == pytest.approx(api)
    assert b.utilization == pytest.approx(selfhost / api) and b.breaks_even
    assert b.selfhost_usd_per_mtok_output_full_use == pytest.approx(0.87, abs=0.005)  # prices.md §6.2


def test_breakeven_never_when_too_slow():
    b = breakeven_utilization(6.88, 1000.0, 1000, 1000, api_price_from_name("groq-llama-3.1-8b-instant"))
    assert b.utilization > 1 and not b.breaks_even
    with pytest.raises(CostError, match="output_tok_per_s"):
        breakeven_utilization(6.88, 0.0, 1000, 1000, api_price_from_name("groq-llama-3.1-8b-instant"))


def test_cli_prices_tco(capsys):
    import json

    from tokencost.cli import main

    assert main(["prices", "--tco", "NVIDIA H200", "--tco-param", "utilization=1", "--json"]) == 0
    tco = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tco"]
    assert tco["params"]["gpu"] == "h200" and tco["params"]["sources"]["utilization"] == "user"
    assert tco["usd_per_utilized_gpu_hour"] == pytest.approx(tco["usd_per_gpu_hour"])
    assert main(["prices", "--tco", "h100-sxm"]) == 0
    out = capsys.readouterr().out
    assert "capex_usd" in out and "InferenceX" in out and "aws-p5" not in out
    with pytest.raises(SystemExit) as exc:
        main(["prices", "--tco", "l4"])
    assert exc.value.code == 2 and "--tco-param capex_usd=VALUE" in capsys.readouterr().err


def test_breakeven_from_a_request_cost_charges_prefill():
    # 1000 in / 1000 out at $6.88/GPU-h: a request of 0.2 s prefill + 0.45 s of decode share, against Groq 70B.
    api = api_price_from_name("groq-llama-3.x-70b-versatile")
    request = 6.88 * (0.2 + 0.45) / 3600
    b = breakeven_from_request_cost(request, 1000, 1000, api)
    assert b.selfhost_usd_per_request_full_use == pytest.approx(request)
    assert b.utilization == pytest.approx(request / ((1000 * 0.59 + 1000 * 0.79) / 1e6))
    # The end-to-end throughput form is the same model: 1000 output tokens in 0.65 GPU-seconds.
    assert breakeven_utilization(6.88, 1000 / 0.65, 1000, 1000, api).utilization == pytest.approx(b.utilization)
    with pytest.raises(CostError, match="self-hosted"):
        breakeven_from_request_cost(0.0, 1000, 1000, api)


def test_chip_energy_params_need_no_capex_row():
    # prices.md §5.1: PUE applies to chip power; the NVML counter measures the chip, on any GPU.
    params = chip_energy_params()
    assert params["pue"][0] == 1.56 and "Uptime" in params["pue"][1]
    assert params["electricity_usd_per_kwh"][0] == 0.083 and "EIA" in params["electricity_usd_per_kwh"][1]
    with pytest.raises(CostError, match="capex"):
        default_tco_params("a100-sxm-80gb")  # no capex row, yet electricity of measured energy is priced


@pytest.mark.parametrize("name, value, hint", [("interest_rate", 5.0, "for 5 % give 0.05"),
                                               ("utilization", 70.0, "for 70 % give 0.7")])
def test_a_fraction_given_as_a_percentage_is_refused(name, value, hint):
    with pytest.raises(CostError, match=rf"{name} must be in .0, 1\] \(fraction") as exc:
        default_tco_params("h100-sxm", **{name: value})
    assert hint in str(exc.value) and "from --tco-param" in str(exc.value)
    assert default_tco_params("h100-sxm", interest_rate=0.05).interest_rate == 0.05
    assert default_tco_params("h100-sxm", interest_rate=1.0).interest_rate == 1.0  # 100 %/yr: dear, not a slip


def test_a_catalog_interest_rate_over_one_names_the_catalog(tmp_path):
    path = tmp_path / "tco.csv"
    path.write_text("parameter,gpu,value,unit,source,date\ninterest_rate,,100,per year,my bank,2026\n")
    catalog_mod.use_catalogs(str(path))
    with pytest.raises(CostError, match="interest_rate must be in .0, 1\\].*from the TCO catalog: my bank, 2026"):
        default_tco_params("h100-sxm")


def test_every_tco_parameter_has_its_unit_in_the_help_and_table(capsys):
    from tokencost.cli import main
    from tokencost.tco import _OVERRIDABLE, TCO_UNITS

    assert set(TCO_UNITS) == set(_OVERRIDABLE)
    with pytest.raises(SystemExit):
        main(["prices", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name in _OVERRIDABLE:
        assert f"{name} ({' '.join(TCO_UNITS[name].split())})" in help_text.replace("- ", "-"), name
    assert "interest_rate (fraction per year, 0.05 = 5 %/yr)" in help_text
    assert "show only the owned-hardware" in help_text  # what `prices --tco GPU` does (no price lists)
    assert main(["prices", "--tco", "h100-sxm"]) == 0
    assert "fraction per year" in capsys.readouterr().out
