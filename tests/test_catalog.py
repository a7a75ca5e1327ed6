"""Catalog loading and validation, GPU lookup by driver name, price lookups and user overrides.

Expected figures are copied from shared/reference/gpu-specs.md and prices.md (their tables), so a
data-entry slip in the CSV files fails here.
"""

from __future__ import annotations

import json

import pytest

from tokencost import catalog as catalog_mod
from tokencost.catalog import SCHEMAS, load_catalog, use_catalogs
from tokencost.cli import main
from tokencost.errors import CostError
from tokencost.hardware import gpu_by_name, list_gpus, lookup_gpu
from tokencost.prices import (api_price_from_name, default_price_for_device, list_cpu_prices, list_prices,
                              price_from_name)


@pytest.fixture(autouse=True)
def _fresh_catalog():
    catalog_mod._ACTIVE = None
    yield
    catalog_mod._ACTIVE = None


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_builtin_row_has_source_and_date():
    cat = load_catalog()
    for kind in SCHEMAS:
        rows = cat.rows(kind)
        assert rows, kind
        for row in rows:
            assert row["source"].strip() and row["date"].strip(), (kind, row)


@pytest.mark.parametrize("driver_name, expected", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H200", "h200"),
    ("NVIDIA B200", "b200"), ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"), ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb"),
    ("NVIDIA L40S", "l40s"), ("NVIDIA L4", "l4"), ("NVIDIA A10G", "a10g"), ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("AMD Instinct MI300X", "mi300x"), ("AMD Instinct MI325X", "mi325x"), ("  NVIDIA L4 ", "l4"), ("h100-sxm", "h100-sxm"),
])
def test_lookup_gpu_driver_names(driver_name, expected):
    assert lookup_gpu(driver_name).name == expected


@pytest.mark.parametrize("near_miss", [
    "NVIDIA H100 NVL", "NVIDIA H100", "NVIDIA H100 80GB", "nvidia h100 80gb hbm3", "NVIDIA H800",
    "NVIDIA H200 NVL", "NVIDIA GH200 480GB", "NVIDIA A100-PCIE-40GB", "NVIDIA A100 80GB PCIe", "NVIDIA A100",
    "NVIDIA L40", "NVIDIA L4S", "NVIDIA A10", "NVIDIA GeForce RTX 4090 D", "NVIDIA GeForce RTX 4080",
    "AMD Instinct MI300A", "AMD Instinct MI300X VF", "H100", "cpu", "",
])
def test_lookup_gpu_near_misses_are_unknown(near_miss):
    assert lookup_gpu(near_miss) is None


def test_gpu_by_name_unknown_lists_names():
    with pytest.raises(CostError, match="unknown GPU 'NVIDIA H100 NVL'.*h100-sxm"):
        gpu_by_name("NVIDIA H100 NVL")


# Ridge point = dense BF16 TFLOP/s ÷ bandwidth (FLOP/byte), gpu-specs.md §1 last column.
RIDGE = {"h100-sxm": 295, "h100-pcie": 378, "h200": 206, "b200": 281, "a100-sxm-40gb": 201, "a100-sxm-80gb": 153,
         "l40s": 419, "l4": 403, "a10g": 117, "rtx-4090": 164, "mi300x": 247, "mi325x": 218}


# Memory (GB), dense FP8 TFLOP/s (None: no FP8 units) and power (W) of gpu-specs.md §1, row by row; the
# H100 PCIe's "300–350 W" is entered as its upper value, the B200's memory as the 180 GB usable.
SPEC_FIGURES = {
    "h100-sxm": (80, 1979, 700), "h100-pcie": (80, 1513, 350), "h200": (141, 1979, 700), "b200": (180, 4500, 1000),
    "a100-sxm-40gb": (40, None, 400), "a100-sxm-80gb": (80, None, 400), "l40s": (48, 733, 350), "l4": (24, 242.5, 72),
    "a10g": (24, None, 300), "rtx-4090": (24, 330.3, 450), "mi300x": (192, 2614.9, 750), "mi325x": (256, 2614.9, 1000),
}
# Figures gpu-specs.md marks "(unverified)" among the columns the catalog holds.
UNVERIFIED = {"h100-pcie": {"sms"}, "l4": {"sms"}, "a10g": {"bf16_tflops", "power_w", "sms"}}


def test_spec_table_matches_reference_memory_fp8_and_power():
    specs = {s.name: s for s in list_gpus()}
    assert set(specs) == set(SPEC_FIGURES)
    for name, (memory_gb, fp8, power_w) in SPEC_FIGURES.items():
        s = specs[name]
        assert (s.memory_gb, s.fp8_tflops, s.power_w) == (memory_gb, fp8, power_w), name
        assert set(s.unverified_fields) == UNVERIFIED.get(name, set()), name
    assert specs["b200"].fp4_tflops == 9000 and all(s.fp4_tflops is None for n, s in specs.items() if n != "b200")


def test_spec_table_matches_reference_ridge_points():
    specs = {s.name: s for s in list_gpus()}
    assert set(specs) == set(RIDGE)
    for name, ridge in RIDGE.items():
        s = specs[name]
        assert s.bf16_tflops * 1e12 / s.bandwidth_bytes_per_s == pytest.approx(ridge, abs=1.0), name


def test_peak_column_per_precision():
    assert gpu_by_name("a100-sxm-80gb").peak_flops_per_s("fp8") == (312e12, "bf16_tflops")  # no FP8 units
    # No INT8 column: int8 on an A100 reads the BF16 peak (documented as understating its INT8 cores).
    assert gpu_by_name("a100-sxm-80gb").peak_flops_per_s("int8") == (312e12, "bf16_tflops")
    assert gpu_by_name("b200").peak_flops_per_s("fp4") == (9000e12, "fp4_tflops")
    assert gpu_by_name("h100-sxm").peak_flops_per_s("int4") == (1979e12, "fp8_tflops")
    with pytest.raises(CostError, match="unknown precision"):
        gpu_by_name("h100-sxm").peak_flops_per_s("fp32")


@pytest.mark.parametrize("name, per_gpu", [  # prices.md §2, "$/GPU-hr (derived)" column
    ("aws-p5.48xlarge-on-demand", 6.88), ("aws-p5en.48xlarge-on-demand", 7.91),
    ("aws-p6-b200.48xlarge-on-demand", 14.24), ("aws-p4d.24xlarge-on-demand", 2.74),
    ("aws-p4de.24xlarge-reserved-1yr", 2.18), ("aws-g6e.48xlarge-on-demand", 3.77),
    ("lambda-8x-h100-sxm-on-demand", 2.99), ("aws-p5.48xlarge-capacity-block", 4.916),
])
def test_instance_prices_derive_the_reference_per_gpu_value(name, per_gpu):
    quote = price_from_name(name)
    assert quote.derived and quote.units_per_instance >= 1
    assert quote.usd_per_gpu_hour == pytest.approx(per_gpu, abs=0.006)


def test_per_gpu_rows_are_not_marked_derived():
    quote = price_from_name("semianalysis-h200-owned-hyperscaler")
    assert quote.usd_per_gpu_hour == 1.41 and not quote.derived and quote.usd_per_instance_hour is None


def test_price_from_name_is_exact():
    with pytest.raises(CostError, match="no price named"):
        price_from_name("AWS-P5.48XLARGE-ON-DEMAND")
    with pytest.raises(CostError, match="no price named"):
        price_from_name("aws-p5")


def test_cpu_price_needs_threads():
    with pytest.raises(CostError, match="per vCPU-hour"):
        price_from_name("aws-m7i.xlarge-on-demand")
    quote = price_from_name("aws-m7i.xlarge-on-demand", cpu_threads=3)
    assert quote.usd_per_vcpu_hour == pytest.approx(0.2016 / 4)
    assert quote.usd_per_gpu_hour == pytest.approx(3 * 0.2016 / 4)


def test_default_price_for_device():
    gpu = default_price_for_device("NVIDIA H100 80GB HBM3", "cuda")
    assert gpu.name == "aws-p5.48xlarge-on-demand" and gpu.usd_per_gpu_hour == pytest.approx(6.88)
    assert default_price_for_device("NVIDIA H100 NVL", "cuda") is None        # not in the spec catalog
    assert default_price_for_device("NVIDIA GeForce RTX 4090", "cuda") is None  # no price row: not guessed
    assert default_price_for_device(None, "mps") is None
    cpu = default_price_for_device(None, "cpu", cpu_threads=2)
    assert cpu.usd_per_gpu_hour == pytest.approx(2 * 0.2016 / 4) and cpu.cpu_threads == 2
    with pytest.raises(CostError, match="threads"):
        default_price_for_device(None, "cpu")


def test_each_priced_gpu_has_exactly_one_default():
    defaults = [q for q in list_prices() if q.is_default]
    assert len(defaults) == len({q.device for q in defaults})
    assert sum(q.is_default for q in list_cpu_prices()) == 1


def test_tier_filter_and_api_prices():
    assert {q.tier for q in list_prices("spot")} == {"spot"}
    groq = api_price_from_name("groq-llama-3.x-70b-versatile")
    assert (groq.usd_per_mtok_input, groq.usd_per_mtok_output) == (0.59, 0.79)
    with pytest.raises(CostError, match="no API price"):
        api_price_from_name("groq")


PRICE_HEADER = "name,provider,gpu,tier,usd_per_instance_hour,gpus_per_instance,usd_per_gpu_hour,source,date\n"


def test_user_catalog_adds_and_overrides(tmp_path):
    path = _write(tmp_path, "mine.csv", PRICE_HEADER
                  + "aws-p5.48xlarge-on-demand,AWS,h100-sxm,on-demand,48,8,,my quote,2026-10-01\n"
                  + "my-h100,Me,h100-sxm,reserved-1yr,,,1.5,contract,2026-10\n")
    use_catalogs(path)
    assert price_from_name("aws-p5.48xlarge-on-demand").usd_per_gpu_hour == pytest.approx(6.0)
    assert price_from_name("my-h100").usd_per_gpu_hour == 1.5
    assert price_from_name("aws-p5.48xlarge-on-demand").source == "my quote"


def test_user_default_replaces_builtin_default(tmp_path):
    path = _write(tmp_path, "d.csv", "name,provider,gpu,tier,usd_per_gpu_hour,is_default,source,date\n"
                                     "own-h100,Me,h100-sxm,owned-neocloud,1.1,yes,my books,2026\n")
    cat = load_catalog([path])
    assert default_price_for_device("NVIDIA H100 80GB HBM3", "cuda", catalog=cat).name == "own-h100"


def test_user_gpu_spec_and_its_price(tmp_path):
    spec = _write(tmp_path, "spec.csv", "name,aliases,bf16_tflops,memory_gb,bandwidth_tb_s,power_w,source,date\n"
                                        "h100-nvl,NVIDIA H100 NVL,835,94,3.9,400,my datasheet copy,2026-01\n")
    price = _write(tmp_path, "p.csv", PRICE_HEADER + "nvl,X,h100-nvl,on-demand,,,2.0,me,2026\n")
    cat = load_catalog([spec, price])
    assert lookup_gpu("NVIDIA H100 NVL", cat).bandwidth_tb_s == 3.9
    assert price_from_name("nvl", catalog=cat).usd_per_gpu_hour == 2.0


@pytest.mark.parametrize("row, message", [
    ("x,AWS,h100-sxm,on-demand,,,2.0,,2026", r"bad\.csv:2: missing source"),
    ("x,AWS,h100-sxm,on-demand,,,2.0,src,", r"bad\.csv:2: missing date"),
    ("x,AWS,h100-sxm,on-demand,,,abc,src,2026", r"'usd_per_gpu_hour' must be a number, got 'abc'"),
    ("x,AWS,h100-sxm,on-demand,,,-1,src,2026", "must be a positive finite number"),
    ("x,AWS,h100-sxm,on-demand,,,0,src,2026", "must be a positive finite number"),
    ("x,AWS,h100-sxm,on-demand,,,nan,src,2026", "must be a positive finite number"),
    ("x,AWS,h100-sxm,on-demand,,,inf,src,2026", "must be a positive finite number"),
    ("x,AWS,h100-sxm,on-demand,,,1e308,src,2026", "'usd_per_gpu_hour' must be at most 1,000,000"),
    ("x,AWS,h100-sxm,on-demand,2e6,8,,src,2026", "'usd_per_instance_hour' must be at most 1,000,000"),
    ("x,AWS,h100-sxm,on-demand,10,8,2.0,src,2026", "not both"),
    ("x,AWS,h100-sxm,on-demand,10,,,src,2026", "needs gpus_per_instance"),
    ("x,AWS,h100-sxm,on-demand,10,2.5,,src,2026", "must be a whole number"),
    ("x,AWS,h100-sxm,cheap,,,2.0,src,2026", "'tier' must be one of"),
    ("x,AWS,h100-sxm,on-demand,,,2.0,src,last week", "is not YYYY"),
    ("x,AWS,h100-nvl,on-demand,,,2.0,src,2026", "gpu 'h100-nvl' is not in the GPU spec catalog"),
    ("x,AWS,h100-sxm,on-demand,,,2.0,src,2026,extra", "more fields than the header"),
])
def test_bad_user_rows_are_clear_errors(tmp_path, row, message):
    path = _write(tmp_path, "bad.csv", PRICE_HEADER + row + "\n")
    with pytest.raises(CostError, match=message):
        load_catalog([path])


def test_api_price_over_the_bound_is_refused(tmp_path):
    path = _write(tmp_path, "api.csv", "name,model,provider,usd_per_mtok_input,usd_per_mtok_output,source,date\n"
                                       "x,Llama 3.1 8B,Me,0.1,1e300,src,2026\n")
    with pytest.raises(CostError, match="'usd_per_mtok_output' must be at most 1,000,000"):
        load_catalog([path])


def test_bad_user_headers(tmp_path):
    unknown = _write(tmp_path, "u.csv", PRICE_HEADER.strip() + ",discount\nx,A,h100-sxm,spot,,,1,s,2026,5\n")
    with pytest.raises(CostError, match="unknown column.*'discount'.*prices catalog"):
        load_catalog([unknown])
    nothing = _write(tmp_path, "n.csv", "foo,bar\n1,2\n")
    with pytest.raises(CostError, match="match no catalog"):
        load_catalog([nothing])
    dup = _write(tmp_path, "dup.csv", PRICE_HEADER + "x,A,h100-sxm,spot,,,1,s,2026\nx,A,h100-sxm,spot,,,2,s,2026\n")
    with pytest.raises(CostError, match="repeats"):
        load_catalog([dup])
    with pytest.raises(CostError, match="cannot read catalog"):
        load_catalog([str(tmp_path / "missing.csv")])


def test_cli_prices_json(capsys):
    assert main(["prices", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(payload["gpu_prices"]) == len(list_prices()) and payload["cpu_prices"] and payload["api_prices"]
    assert main(["prices", "--tier", "api", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not payload["gpu_prices"] and payload["api_prices"]


def test_cli_prices_bad_catalog_is_one_line_exit_2(tmp_path, capsys):
    path = _write(tmp_path, "bad.csv", PRICE_HEADER + "x,AWS,h100-sxm,on-demand,,,2.0,,2026\n")
    with pytest.raises(SystemExit) as exc:
        main(["prices", "--catalog", path])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokencost: error:") and "missing source" in err and "\n" not in err


@pytest.mark.parametrize("date", ["2026-13-45", "9999-99-99", "2025-02-29", "2026-00", "2026-04-31", "0000",
                                  "~2026-13", "before 2025-06-00", "until 2026-02-30"])
def test_impossible_dates_are_refused(tmp_path, date):
    path = _write(tmp_path, "bad.csv", PRICE_HEADER + f"x,AWS,h100-sxm,on-demand,,,2.0,src,{date}\n")
    expected = rf"bad\.csv:2: date '{date}' is not YYYY\[-MM\[-DD\]\] with a real month and day"
    with pytest.raises(CostError, match=expected):
        load_catalog([path])


@pytest.mark.parametrize("date", ["2024-02-29", "2026", "2026-12", "~2026", "before 2025-06", "until 2025-01-01",
                                  "undated"])
def test_real_dates_in_every_allowed_form_are_accepted(tmp_path, date):
    path = _write(tmp_path, "ok.csv", PRICE_HEADER + f"x,AWS,h100-sxm,on-demand,,,2.0,src,{date}\n")
    assert load_catalog([path]).get("prices", "x")["date"] == date


def test_two_defaults_for_one_gpu_in_one_user_file_are_refused(tmp_path):
    header = "name,provider,gpu,tier,usd_per_gpu_hour,is_default,source,date\n"
    path = _write(tmp_path, "two.csv", header + "a,Me,h100-sxm,on-demand,1.0,yes,me,2026\n"
                                                "b,Me,h200,on-demand,3.0,yes,me,2026\n"
                                                "c,Me,h100-sxm,spot,2.0,yes,me,2026\n")
    with pytest.raises(CostError) as exc:
        load_catalog([path])
    message = str(exc.value)
    assert "\n" not in message and f"{path}:4: a second default row for h100-sxm" in message
    assert f"(the first is {path}:2)" in message
    cpu = _write(tmp_path, "cpu.csv", "name,provider,instance,vcpus_per_instance,tier,usd_per_instance_hour,"
                                      "is_default,source,date\n"
                                      "c1,Me,big,4,spot,0.5,yes,me,2026\nc2,Me,big,4,spot,0.5,yes,me,2026\n")
    with pytest.raises(CostError, match=r"cpu\.csv:3: a second default row for CPU \(the first is .*cpu\.csv:2\)"):
        load_catalog([cpu])


@pytest.mark.parametrize("data", ["name,provider\n".encode("utf-16"), b"name,gpu\n\xff\xfe\x00bad\n"])
def test_a_catalog_that_is_not_utf8_names_the_file(tmp_path, capsys, data):
    path = tmp_path / "binary.csv"
    path.write_bytes(data)
    with pytest.raises(CostError, match=rf"cannot read catalog {path}: not UTF-8 text"):
        load_catalog([str(path)])
    with pytest.raises(SystemExit):
        main(["prices", "--catalog", str(path)])
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokencost: error:") and str(path) in err and "\n" not in err
