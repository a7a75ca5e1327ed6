"""The cost layer must not import torch (brief: tokencost/ outside tokencost/cli is torch-free).

tests/conftest.py imports torch in this process, so the check runs in a fresh interpreter: import every
cost module, exercise the catalog, the claims batch (which pulls in profiler.config/presets/roofline),
TCO, energy and break-even, then assert torch never entered ``sys.modules``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COST_MODULES = ("tokencost", "tokencost.errors", "tokencost.catalog", "tokencost.hardware", "tokencost.prices",
                "tokencost.cost", "tokencost.tco", "tokencost.energy", "tokencost.breakeven", "tokencost.claims")

SCRIPT = f"""
import importlib, sys
for name in {COST_MODULES!r}:
    importlib.import_module(name)
from tokencost.claims import check_all
from tokencost.tco import default_tco_params, owned_usd_per_gpu_hour
from tokencost.energy import energy_per_output_token
from tokencost.breakeven import breakeven_utilization
from tokencost.prices import api_price_from_name, default_price_for_device, list_prices
assert list_prices() and default_price_for_device("NVIDIA H200", "cuda") is not None
assert [v for v in check_all() if v.bound is not None]
owned_usd_per_gpu_hour(default_tco_params("h100-sxm"))
energy_per_output_token(10.0, 5, usd_per_kwh=0.1)
breakeven_utilization(2.0, 100.0, 10, 10, api_price_from_name("groq-llama-3.1-8b-instant"))
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("TORCH:" + ",".join(loaded))
"""


def test_cost_layer_never_imports_torch():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "TORCH:", result.stdout
