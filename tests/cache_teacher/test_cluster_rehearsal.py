"""The dask.distributed rehearsal of bench/cache_cluster.py at a tiny size: `dask scheduler` and two
`dask worker` processes, `srkd cache-teacher --scheduler` as the driver; a worker and then the
driver SIGKILLed mid-build; the re-run loses and corrupts nothing."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

# a scheduler, two workers and the driver at once: never beside test_cache_crash.py's builds
pytestmark = pytest.mark.xdist_group("many_processes")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dask") is None, reason="the `dask` command (dask.distributed) is not installed")
def test_killed_worker_and_driver_lose_nothing(tmp_path: Path) -> None:
    from cache_cluster import rehearse

    result = rehearse(tmp_path, drives=4, keyframes=3, workers=2, sequence_samples=2, timeout=600)
    assert result["rerun_exit"] == 0, result["rerun_output"]
    assert result["killed_worker_at"] < result["samples"]
    assert result["lost"] == 0 and result["corrupt"] == 0, result["problems"]
    # the re-run counts what it planned, not the killed build's writes its workers finished
    assert result["rerun_wrote"] == result["rerun_planned"] is not None, result["rerun_output"]
    assert any(line.startswith("dask worker") or " worker " in line for line in result["runbook"])
