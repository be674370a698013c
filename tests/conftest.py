"""Shared fixtures: paths to the optional real data, small synthetic scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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

