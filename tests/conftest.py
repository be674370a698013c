"""Shared fixtures (paths to the optional real data, small synthetic scenes) and how the suite
runs in parallel: pytest-xdist workers (`-n auto` in pyproject.toml), one CPU thread each."""

from __future__ import annotations

import os
from pathlib import Path

# One CPU thread per test process, so two xdist workers keep two cores busy, not four or more
# threads spinning on them. Every process a test starts (commands, dask workers, DDP ranks)
# inherits these variables: torch (OpenMP, MKL) and numpy (OpenBLAS) read them when imported, and
# srkd's commands read SRKD_THREADS; torch in this process is set in pytest_configure. A value set
# outside the suite wins; a test that needs another count sets it itself
# (tests/models/test_cpu_attention.py).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "SRKD_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

WIDE = {"COLUMNS": "300", "TERMINAL_WIDTH": "300"}
"""`CliRunner.invoke(..., env=WIDE)`: a console wide enough that rich never wraps a message, so a
test can look for a message that holds a temporary path (its length differs per run and per
xdist worker, and rich may break a line inside a long path)."""

MAX_AUTO_WORKERS = 4
"""`-n auto` starts one worker per CPU this process may use, at most this many: past that the
longest tests bound the run, while every worker collects the suite (about 15 s of CPU), builds
the session fixtures again (about 7 s) and holds up to about 2 GB."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """Workers for `-n auto`: the CPUs this process may run on (taskset / cpuset aware, unlike a
    count of the machine's cores), at most MAX_AUTO_WORKERS; $PYTEST_XDIST_AUTO_NUM_WORKERS wins
    (None hands over to pytest-xdist, which reads it)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(usable, MAX_AUTO_WORKERS))


def _is_xdist_controller(config: pytest.Config) -> bool:
    """The process that only hands tests to xdist workers (it runs none itself)."""
    return not hasattr(config, "workerinput") and getattr(config.option, "dist", "no") != "no"


def pytest_configure(config: pytest.Config) -> None:
    if not _is_xdist_controller(config):  # the controller never needs torch
        import torch

        torch.set_num_threads(1)


def _unit(item: pytest.Item) -> str:
    """The work unit xdist's loadgroup scheduler hands out whole: an xdist_group, else the test."""
    names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                    for m in item.iter_markers("xdist_group")})  # fmt: skip
    return "@" + "_".join(names) if names else item.nodeid


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, put the work units that hold a `slow` test first (otherwise collection
    order), so the long tests start early and the short ones fill the workers' ends evenly. The
    order is a pure function of the collection, so every worker derives the same one (xdist
    requires that). A serial run keeps pytest's order."""
    if not hasattr(config, "workerinput"):
        return
    slow = {_unit(item) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: _unit(item) not in slow)  # stable: collection order otherwise


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

