"""Test set-up. TRITON_INTERPRET (and TOKENCOST_AUTOTUNE) must be set before any module defining
Triton kernels is imported, so they are set here, at collection time: the interpreter whenever no
CUDA GPU is present."""

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# On a GPU: one config per kernel instead of autotuning every test shape (kernels/_common.py); each
# config is checked on its own in tests/test_kernel_configs.py.
os.environ.setdefault("TOKENCOST_AUTOTUNE", "0")

# pytest-xdist runs two workers on the two cores: one intra-op thread each (and in the CLI
# subprocesses they start, through OMP_NUM_THREADS), so OpenMP teams never oversubscribe the cores,
# which makes tiny ops wait a scheduler quantum and timings meaningless.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# ../shared/reference beside the checkout (the CI clone has a copy of shared/ beside it too).
SHARED_REF = Path(__file__).resolve().parents[2] / "shared" / "reference"
MODEL_CONFIGS = SHARED_REF / "model-configs"


@pytest.fixture(scope="session")
def model_configs_dir() -> Path:
    if not MODEL_CONFIGS.is_dir():
        pytest.fail(f"reference model configs not found at {MODEL_CONFIGS}")
    return MODEL_CONFIGS


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    if not SHARED_REF.is_dir():
        pytest.fail(f"shared reference pack not found at {SHARED_REF}")
    return SHARED_REF


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
