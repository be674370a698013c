"""Metadata documents and shard files of a Zarr v3 store, read in bulk without opening arrays.

Opening a Zarr array parses its metadata into codec objects (about 1-2 ms each here), and every
synchronous zarr call is a round trip to zarr's event-loop thread. Checks that touch thousands of
arrays (a resumed build's completeness check, a reader's sample index) only need the JSON
documents and whether the shard files exist, so they read those directly: from the file system
when the store is a `LocalStore` (srkd opens every cache by its absolute path), else through the
store's async API, all keys at once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore


class StoreFiles:
    """Bulk access to the documents and chunk files of `store` under the prefix `base`."""

    def __init__(self, store: Store, base: str = "") -> None:
        self._store = store
        self._base = base.strip("/")
        self._local = Path(store.root) if isinstance(store, LocalStore) else None

    def _key(self, key: str) -> str:
        return f"{self._base}/{key}" if self._base else key

    def read_json(self, keys: Sequence[str]) -> dict[str, Any]:
        """{key: parsed document} for `keys`; a missing, unreadable or torn document gives None."""
        if self._local is not None:
            return {key: _parse(_read_local(self._local / self._key(key))) for key in keys}

        async def one(key: str) -> Any:
            try:
                buf = await self._store.get(self._key(key), prototype=default_buffer_prototype())
            except Exception:  # unreadable: reported as absent
                return None
            return _parse(buf.to_bytes() if buf is not None else None)

        async def every() -> list[Any]:
            return await asyncio.gather(*(one(k) for k in keys))

        return dict(zip(keys, sync(every()), strict=True))

    def exists(self, keys: Sequence[str]) -> dict[str, bool]:
        """{key: whether the store holds it} for `keys`, each asked directly (no listing)."""
        if self._local is not None:
            return {key: os.path.isfile(self._local / self._key(key)) for key in keys}

        async def every() -> list[bool]:
            return await asyncio.gather(*(self._store.exists(self._key(k)) for k in keys))

        return dict(zip(keys, sync(every()), strict=True))


def _read_local(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _parse(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:  # torn or not JSON
        return None


def shard_keys(meta: dict[str, Any]) -> list[str]:
    """The chunk (shard) file keys, relative to the array, of a Zarr v3 array document with a
    regular chunk grid: `c/0/0` style for the default key encoding, `0.0` for the v2 one.
    ValueError for a document this does not cover (another grid or key encoding)."""
    grid, encoding = meta.get("chunk_grid") or {}, meta.get("chunk_key_encoding") or {"name": "default"}
    if grid.get("name") != "regular" or encoding.get("name") not in ("default", "v2"):
        raise ValueError(f"unsupported chunk grid {grid.get('name')!r} or key encoding {encoding.get('name')!r}")
    default = encoding["name"] == "default"
    separator = (encoding.get("configuration") or {}).get("separator", "/" if default else ".")
    shape, chunk = meta["shape"], grid["configuration"]["chunk_shape"]
    ranges: Iterable[range] = [range(math.ceil(s / c)) for s, c in zip(shape, chunk, strict=True)]
    keys = []
    for coords in itertools.product(*ranges):
        parts = [str(c) for c in coords]
        keys.append(separator.join(["c", *parts]) if default else (separator.join(parts) or "0"))
    return keys
