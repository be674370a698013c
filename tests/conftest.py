"""Shared fixtures: paths to the optional real data, small synthetic scenes."""

from __future__ import annotations

import os
from pathlib import Path

# One CPU thread per test process. Every process a test starts (commands, dask workers, DDP ranks)
# inherits these variables: torch (OpenMP, MKL) and numpy (OpenBLAS) read them when imported, and
# srkd's commands read SRKD_THREADS; torch in this process is set below. A value set outside the
# suite wins; a test that needs another count sets it itself (tests/models/test_cpu_attention.py).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "SRKD_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

WIDE = {"COLUMNS": "300", "TERMINAL_WIDTH": "300"}
"""`CliRunner.invoke(..., env=WIDE)`: a console wide enough that rich never wraps a message, so a
test can look for a message that holds a temporary path (its length differs per run and per
xdist worker, and rich may break a line inside a long path)."""

torch.set_num_threads(1)


@pytest.fixture
def scannet_real() -> Path:
    """Root of the 13 real ScanNet scans (Pointcept layout); skips when ../shared/data is absent."""
    root = SHARED_DATA / "scannet_real"
    if not root.is_dir():
        pytest.skip("../shared/data/scannet_real is not present")
    return root


@pytest.fixture
def scannet_raw_sample() -> Path:
    """Root of the raw ScanNet sample scan; skips when ../shared/data is absent."""
    root = SHARED_DATA / "scannet_raw_sample"
    if not root.is_dir():
        pytest.skip("../shared/data/scannet_raw_sample is not present")
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy Generator."""
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _run_outside_the_repo(tmp_path_factory, monkeypatch):
    """Commands read ./stages.yaml for defaults; tests must not pick up the repository's demo
    settings, so every test starts in an empty folder (tests that need a stages.yaml write one)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    monkeypatch.delenv("SRKD_SET", raising=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder as the working directory, with no runner environment (modules
    may override it with a project of their own)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    monkeypatch.delenv("SRKD_SET", raising=False)
    return tmp_path

