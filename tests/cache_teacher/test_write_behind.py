"""The write-behind thread of a cache worker: each build gets the events of its own writes only."""

from __future__ import annotations

import threading

import pytest

from srkd.cache_teacher.worker import SceneDone, WriteBehind
from srkd.errors import CacheError


def _event(name: str) -> list[SceneDone]:
    return [SceneDone(name, 10, 0.1)]


def test_a_build_does_not_count_the_write_an_earlier_build_left_pending() -> None:
    """A `dask worker` that outlived a killed build serves the next one: the old build's last
    write is finished (committed) by the new build's first task but counted for the old build."""
    behind, written = WriteBehind(), []
    assert behind.put(lambda: written.append("old-seq"), _event("old-scene"), "old-seq", build="old") == []
    assert behind.put(lambda: written.append("new-1"), _event("new-1"), "new-1", build="new") == []
    assert written == ["old-seq"]  # the old write completed before the new one started
    assert behind.put(lambda: written.append("new-2"), _event("new-2"), "new-2", build="new") == _event("new-1")
    assert behind.drain("new") == _event("new-2")
    assert behind.drain("old") == _event("old-scene") and behind.drain("old") == []
    assert written == ["old-seq", "new-1", "new-2"]


def test_a_failed_write_is_raised_by_the_next_call_and_counts_nothing() -> None:
    behind, gate = WriteBehind(), threading.Event()

    def fail() -> None:
        gate.wait(5)
        raise OSError("disk full")

    behind.put(fail, _event("a"), "seq-a", build="b1")
    gate.set()
    with pytest.raises(CacheError, match="writing 'seq-a' into the cache failed: OSError: disk full"):
        behind.drain("b1")
    assert behind.drain("b1") == []
