"""Housekeeping of a cache folder around its Zarr tree: per-sequence writer locks, temporary files
that killed writers left, and the optional consolidated metadata."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zarr
from zarr.core.buffer import cpu, default_buffer_prototype
from zarr.core.sync import sync

from srkd.cache.schema import open_store

LOCKS = ".srkd-locks"
"""Folder of a schema-3 cache holding one lock file per sequence (never part of the Zarr
hierarchy: readers skip names that start with a dot)."""


@contextlib.contextmanager
def sequence_lock(store: Any, sequence: str) -> Iterator[None]:
    """Hold the writer lock of one sequence (an OS lock on `<cache>/.srkd-locks/<sequence>`,
    waiting for its holder): two writers of one sequence, e.g. a task of a killed build's driver
    still running on a dask worker and the re-run's task, write it one after the other, never at
    once. The lock dies with its process. Stores other than a local directory are not locked
    (one process writes them)."""
    if not isinstance(store, zarr.storage.LocalStore):
        yield
        return
    folder = Path(store.root) / LOCKS
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / sequence, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):  # a filesystem without flock: unlocked (srkd.locking)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def clean_leftovers(path: Path) -> list[Path]:
    """Delete the temporary files (`*.partial`) that writers killed mid-write left under a cache
    directory (zarr's LocalStore writes each key to `<key>.<hex>.partial`, then renames it); a
    leftover is never part of the cache, and zarr warns about it on every listing. Call it only
    while no writer runs (under the build's lock). Returns the paths deleted."""
    removed = []
    for parent, _, files in os.walk(path):
        for name in files:
            if name.endswith(".partial"):
                leftover = Path(parent) / name
                leftover.unlink(missing_ok=True)
                removed.append(leftover)
    return removed


def consolidate_metadata(path_or_store: Any) -> None:
    """Write every node's metadata into the root document (Zarr's consolidated metadata): xarray's
    `open_datatree` then reads one document instead of listing every group (about 2x faster at
    30,000 samples, bench/cache_scale.py). Not done by a build: the document grows with the cache
    (~20 MB at 30,000 samples) and every open of the root parses it, srkd's readers included.
    srkd never reads it (use_consolidated=False) and a build drops it when it starts
    (`drop_consolidated`), so it is never stale after a build; consolidate again after one."""
    with warnings.catch_warnings():  # "not part of the Zarr v3 specification": known, documented
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(open_store(path_or_store, read_only=False))


def drop_consolidated(path_or_store: Any) -> None:
    """Remove the consolidated metadata from the root document, if it holds any."""
    store = open_store(path_or_store, read_only=False)
    doc = sync(store.get("zarr.json", prototype=default_buffer_prototype()))
    if doc is None:
        return
    meta = json.loads(doc.to_bytes())
    if meta.pop("consolidated_metadata", None) is not None:
        sync(store.set("zarr.json", cpu.Buffer.from_bytes(json.dumps(meta, indent=2).encode())))
