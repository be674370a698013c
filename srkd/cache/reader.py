"""Reading a teacher cache: identity checks on open, then `gather` of targets by original index.

`gather(scene, view, origin_index)` is the distillation hot path. The first request for a
(scene, entry) reads the entry's arrays whole (one zstd pass per chunk) and keeps them ENCODED in
a byte-bounded LRU (1 byte per value for the int8 codec); every gather then fancy-indexes the
requested rows and decodes only those. A student batch therefore costs one indexing pass plus a
decode of M rows, with no per-point I/O.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr

from srkd.cache.arrays import read_entry
from srkd.cache.codecs import make_codec
from srkd.cache.packed_index import PackedIndex
from srkd.cache.schema import (
    COMMITTED,
    DATA_SHA256,
    ENSEMBLE,
    CacheSpec,
    check_scene_id,
    committed_scene_ids,
    describe,
    entry_name,
    open_store,
    read_root,
    stale_message,
)
from srkd.errors import CacheError, CacheMissError

View = int | str
"""A view index 0..V-1, or "ensemble"."""


class CacheReader:
    """Read-only access to a srkd teacher cache.

    Args:
        path_or_store: cache directory (zarr LocalStore) or a zarr Store.
        expect: if given, the cache's fingerprint must equal `expect.fingerprint()`; otherwise a
            CacheError lists the differing settings.
        cache_bytes: bound of the in-memory LRU of encoded entries (0 disables it).
    Raises:
        CacheError: no store, a foreign store (not a srkd cache), another schema version, or a
            stale cache (fingerprint differs from `expect`).
    """

    def __init__(self, path_or_store: Any, expect: CacheSpec | None = None, cache_bytes: int = 1 << 30) -> None:
        self.where = describe(path_or_store)
        self._source = path_or_store
        self._expect = expect
        self.cache_bytes = int(cache_bytes)
        store = open_store(path_or_store, read_only=True)
        try:
            self._root = zarr.open_group(store, mode="r", use_consolidated=False)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise CacheError(f"no teacher cache at {self.where}; build one with `srkd cache-teacher`") from exc
        except zarr.errors.ContainsArrayError as exc:
            raise CacheError(f"{self.where} holds a Zarr array, not a srkd teacher cache") from exc
        self.record, self.spec = read_root(self._root, self.where)
        if expect is not None and expect.fingerprint() != self.spec.fingerprint():
            raise CacheError(stale_message(self.where, self.spec, expect))
        self._codec = make_codec(self.spec.codec, self.spec.num_classes)
        self._packed = PackedIndex(self._root, self.where) if self.schema_version >= 3 else None
        self._lru: OrderedDict[tuple[str, str], tuple[dict, dict, int]] = OrderedDict()
        self._lru_bytes = 0
        self._attrs_memo: dict[str, dict[str, Any]] = {}

    # Readers are handed to data-loader worker processes: pickle the location, not zarr objects.
    def __getstate__(self) -> dict[str, Any]:
        return {"source": self._source, "expect": self._expect, "cache_bytes": self.cache_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"], state["expect"], state["cache_bytes"])  # type: ignore[misc]

    @property
    def root(self) -> zarr.Group:
        """The cache's root group, opened read-only (scene groups below it, committed or not)."""
        return self._root

    @property
    def fingerprint(self) -> str:
        return str(self.record["fingerprint"])

    @functools.cached_property
    def scene_ids(self) -> tuple[str, ...]:
        """Committed scenes (samples), sorted (computed once; uncommitted ones are absent)."""
        if self._packed is not None:
            return self._packed.sample_ids
        return tuple(sorted(committed_scene_ids(self._root)))

    @property
    def packed(self) -> PackedIndex | None:
        """The sample index of a schema-3 cache (samples packed per sequence), else None."""
        return self._packed

    def _scene(self, scene_id: str) -> zarr.Group:
        check_scene_id(scene_id)
        if self._packed is not None:
            return self._packed.group(self._packed.locate(scene_id)[0])
        try:
            group = self._root[scene_id]
            committed = isinstance(group, zarr.Group) and group.attrs.get(COMMITTED) is True
        except KeyError:
            committed = False
        except Exception:  # unreadable scene metadata: a torn write, i.e. not committed
            committed = False
        if not committed:
            raise CacheMissError(
                f"scene {scene_id!r} is not in the cache at {self.where} (absent or not committed); "
                "run `srkd cache-teacher` to (re)build it"
            )
        return group

    def _attrs(self, scene_id: str) -> dict[str, Any]:
        """A committed scene's attributes, read once per reader (a training sample asks for
        several of them, and committed scenes do not change while a reader is open)."""
        memo = self._attrs_memo.get(scene_id)
        if memo is None:
            if self._packed is not None:
                memo = self._attrs_memo[scene_id] = self._packed.sample_attrs(check_scene_id(scene_id))
            else:
                memo = self._attrs_memo[scene_id] = dict(self._scene(scene_id).attrs)
        return memo

    def attributes(self, scene_id: str) -> dict[str, Any]:
        """A committed scene's record: num_points, views, ensemble, view_params, ensemble_params,
        data_sha256 (+ sequence and position in schema 3)."""
        return dict(self._attrs(scene_id))

    def num_points(self, scene_id: str) -> int:
        """Number of original points N of a scene."""
        return int(self._attrs(scene_id)["num_points"])

    def views(self, scene_id: str) -> int:
        """Number of cached views V of a scene (the ensemble entry not counted)."""
        return int(self._attrs(scene_id)["views"])

    @property
    def schema_version(self) -> int:
        return int(self.record["schema_version"])

    def data_sha256(self, scene_id: str) -> str | None:
        """The content hash of the data the teacher saw for this scene (None: not recorded, in
        caches of schema 1)."""
        value = self._attrs(scene_id).get(DATA_SHA256)
        return str(value) if value else None

    def check_scene_data(self, scene_id: str, data_sha256: str, source: str = "") -> None:
        """CacheError unless the scene's recorded content hash equals `data_sha256` (the hash of
        the scene as loaded now; `source` names where it was loaded from). Scenes without a
        recorded hash pass (caches of schema 1 cannot be checked)."""
        recorded = self.data_sha256(scene_id)
        if recorded is not None and recorded != data_sha256:
            where = f" ({source})" if source else ""
            raise CacheError(
                f"scene {scene_id!r}{where} is not the data the teacher cache at {self.where} was "
                f"built from (content hash {data_sha256[:12]} != cached {recorded[:12]}): the data "
                "was changed or regenerated since, or --data-root points at another dataset; "
                "rebuild the cache (`srkd cache-teacher --overwrite`) or use the data it was built from"
            )

    def has_ensemble(self, scene_id: str) -> bool:
        return bool(self._attrs(scene_id).get(ENSEMBLE, False))

    def view_params(self, scene_id: str, view: View) -> dict[str, Any]:
        """The JSON replay record stored with a view (or the ensemble's record)."""
        attrs = self._attrs(scene_id)
        if view == ENSEMBLE:
            if not attrs.get(ENSEMBLE):
                raise CacheMissError(f"scene {scene_id!r} has no ensemble entry in the cache at {self.where}")
            return dict(attrs["ensemble_params"])
        self._check_view(scene_id, view, int(attrs["views"]), bool(attrs.get(ENSEMBLE)))
        return dict(attrs["view_params"][int(view)])

    def _check_view(self, scene_id: str, view: View, num_views: int, ensemble: bool) -> str:
        name = entry_name(view)
        if name == ENSEMBLE and not ensemble:
            raise CacheMissError(f"scene {scene_id!r} has no ensemble entry in the cache at {self.where}")
        if name != ENSEMBLE and int(view) >= num_views:
            raise CacheMissError(f"scene {scene_id!r} has views 0..{num_views - 1}, not {view!r}")
        return name

    def _entry(self, scene_id: str, view: View) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
        key = (scene_id, entry_name(view))
        hit = self._lru.get(key)
        if hit is not None:
            self._lru.move_to_end(key)
            return hit
        if self._packed is not None:
            attrs = self._attrs(scene_id)
            name = self._check_view(scene_id, view, int(attrs["views"]), bool(attrs.get(ENSEMBLE)))
            point, side = self._packed.read(scene_id, name, self._codec, self.spec.num_classes, self.spec.feature_dim)
        else:
            group = self._scene(scene_id)
            attrs = group.attrs
            name = self._check_view(scene_id, view, int(attrs["views"]), bool(attrs.get(ENSEMBLE)))
            point, side = read_entry(group, name, self._codec, scene_id, self.spec.num_classes,
                                     self.spec.feature_dim)  # fmt: skip
        n = int(attrs["num_points"])
        got = len(next(iter(point.values()))) if point else n
        if got != n:
            raise CacheError(f"scene {scene_id!r}, entry {name}: {got} rows stored, {n} points recorded")
        size = sum(a.nbytes for a in point.values()) + sum(a.nbytes for a in side.values())
        value = (point, side, n)
        if size <= self.cache_bytes:
            self._lru[key] = value
            self._lru_bytes += size
            while self._lru_bytes > self.cache_bytes:
                _, (p, s, _) = self._lru.popitem(last=False)
                self._lru_bytes -= sum(a.nbytes for a in p.values()) + sum(a.nbytes for a in s.values())
        return value

    def gather(self, scene_id: str, view: View, origin_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decoded targets of a subset of original points, in the given order (repeats allowed).

        Args:
            scene_id: a committed scene.
            view: 0..V-1 or "ensemble".
            origin_index: int (M,) indices into the scene's original points.
        Returns:
            (logits float32 (M, K), feature float32 (M, D)).
        Raises:
            CacheMissError: scene/view not cached. CacheError: bad indices or damaged data.
        """
        point, side, n = self._entry(scene_id, view)
        idx = np.asarray(origin_index)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise CacheError(f"origin_index must be a 1-D integer array, got shape {idx.shape} {idx.dtype}")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise CacheError(
                f"scene {scene_id!r}: origin_index out of range [0, {n}) (min {idx.min()}, max {idx.max()})"
            )
        if idx.size == 0:
            idx = idx.astype(np.intp)
        rows = {name: np.take(arr, idx, axis=0) for name, arr in point.items()}
        return self._codec.decode(rows, side)

    def read_all(self, scene_id: str, view: View) -> tuple[np.ndarray, np.ndarray]:
        """Decoded targets of every original point: (logits (N, K), feature (N, D)) float32."""
        point, side, _ = self._entry(scene_id, view)
        return self._codec.decode(point, side)

    def read_many(self, scene_ids: Sequence[str], view: View) -> list[tuple[np.ndarray, np.ndarray]]:
        """`read_all` of several scenes, in order. In a schema-3 cache the scenes of one sequence
        are read together (one pass over each array's span), which is much faster than one read
        per scene when a whole sequence is wanted; nothing is kept in the LRU."""
        if self._packed is None:
            return [self.read_all(s, view) for s in scene_ids]
        by_sequence: dict[str, list[str]] = {}
        for s in scene_ids:
            attrs = self._attrs(s)
            name = self._check_view(s, view, int(attrs["views"]), bool(attrs.get(ENSEMBLE)))
            by_sequence.setdefault(attrs["sequence"], []).append(s)
        decoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        k, d = self.spec.num_classes, self.spec.feature_dim
        for samples in by_sequence.values():
            for s, (point, side) in zip(samples, self._packed.read_span(samples, name, self._codec, k, d), strict=True):
                decoded[s] = self._codec.decode(point, side)
        return [decoded[s] for s in scene_ids]

    def encoded(self, scene_id: str, view: View) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The stored (encoded) arrays of one entry: (point arrays (N, ...), side arrays), as the
        codec wrote them (what `srkd.cache.migrate` copies)."""
        point, side, _ = self._entry(scene_id, view)
        return dict(point), dict(side)

    def entries(self, scene_id: str) -> list[View]:
        """The views a scene holds: [0, ..., V-1] plus "ensemble" if stored."""
        attrs = self._attrs(scene_id)
        out: list[View] = list(range(int(attrs["views"])))
        return out + [ENSEMBLE] if attrs.get(ENSEMBLE) else out

    def clear(self) -> None:
        """Drop the in-memory LRU and the memoised scene attributes."""
        self._lru.clear()
        self._lru_bytes = 0
        self._attrs_memo.clear()
