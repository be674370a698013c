"""The sample index of a schema-3 cache (`srkd.cache.packed`), built when a reader opens: one
listing of the root and one concurrent read of every sequence's attributes, so opening costs a
read per sequence, not per sample or per array."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import zarr
from zarr.core.array import AsyncArray
from zarr.core.sync import sync

from srkd.cache.arrays import REBUILD_ADVICE
from srkd.cache.codec_base import Codec
from srkd.cache.packed import SAMPLES, read_sample_rows, read_sequence_attrs
from srkd.errors import CacheError, CacheMissError


class Location(NamedTuple):
    """Where a sample lives: its sequence, its position there, and its point rows [start, stop)."""

    sequence: str
    position: int
    start: int
    stop: int


def child_names(group: zarr.Group) -> list[str]:
    """Names directly under `group` from one store listing, without reading their metadata."""

    async def names() -> list[str]:
        return [key async for key in group.store.list_dir(group.path)]

    return sorted(name for name in sync(names()) if name != "zarr.json" and not name.startswith(".")
                  and not name.endswith(".partial"))  # fmt: skip


def committed_sequences(root: zarr.Group) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """({committed sequence: its attributes}, [names of the other children]) of a schema-3 root."""
    names = child_names(root)
    attrs = read_sequence_attrs(root, names)
    committed = {name: a for name, a in attrs.items() if a.get("committed") is True}
    return committed, [n for n in names if n not in committed]


class PackedIndex:
    """sample id -> Location over the committed sequences of a schema-3 cache.

    A sample listed by two committed sequences (a split re-planned into other sequences while an
    old one stayed committed) is served from the first by name; `duplicates` lists them."""

    def __init__(self, root: zarr.Group, where: str) -> None:
        self._root = root
        self._where = where
        self.sequences, self.uncommitted = committed_sequences(root)
        names = sorted(self.sequences)
        samples = [list(self.sequences[seq].get(SAMPLES, [])) for seq in names]
        sizes = [np.asarray(self.sequences[seq].get("num_points", []), dtype=np.int64) for seq in names]
        for seq, ids, n in zip(names, samples, sizes, strict=True):
            if len(ids) != len(n):
                raise CacheError(f"{where}: sequence {seq!r} lists {len(ids)} samples but {len(n)} point counts; "
                                 f"it is damaged: {REBUILD_ADVICE}")  # fmt: skip
        counts = np.asarray([len(ids) for ids in samples], dtype=np.int64)
        first = np.cumsum(counts) - counts  # row of each sequence's first sample
        # one row per sample, in (sequence, position) order: its sequence, position and point rows
        self._names = names
        self._sizes = np.concatenate([np.zeros(0, np.int64), *sizes])
        ends = np.concatenate([[0], np.cumsum(self._sizes)])
        self._seq = np.repeat(np.arange(len(names)), counts)
        self._pos = np.arange(len(self._sizes)) - np.repeat(first, counts)
        self._stop = ends[1:] - np.repeat(ends[first], counts)
        self._spans = [(int(a), int(a + n)) for a, n in zip(first, counts, strict=True)]  # rows of each sequence
        self._rows = list(itertools.chain.from_iterable(samples))  # sample id of each row
        self._index: dict[str, int] = {}
        self.duplicates: list[str] = []
        for row, sample in enumerate(self._rows):
            if self._index.setdefault(sample, row) != row:  # served from the first sequence by name
                self.duplicates.append(sample)
        self.sample_ids: tuple[str, ...] = tuple(sorted(self._index))
        self._groups: dict[str, zarr.Group] = {}
        self._arrays: dict[str, dict[str, AsyncArray]] = {}

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._index

    def locate(self, sample_id: str) -> Location:
        row = self._index.get(sample_id)
        if row is None:
            raise CacheMissError(
                f"scene {sample_id!r} is not in the cache at {self._where} (absent or its sequence not "
                "committed); run `srkd cache-teacher` to (re)build it"
            )
        stop = int(self._stop[row])
        return Location(self._names[self._seq[row]], int(self._pos[row]), stop - int(self._sizes[row]), stop)

    def sequence_samples(self) -> list[tuple[list[str], np.ndarray]]:
        """Per committed sequence (by name): the samples it serves, in position order, and their
        point counts (S,) int64. A duplicate served from another sequence is left out."""
        out = []
        for start, stop in self._spans:
            rows = [r for r in range(start, stop) if self._index[self._rows[r]] == r]
            out.append(([self._rows[r] for r in rows], self._sizes[rows]))
        return out

    def group(self, sequence: str) -> zarr.Group:
        """The sequence's group (opened once)."""
        if sequence not in self._groups:
            self._groups[sequence] = self._root[sequence]
        return self._groups[sequence]

    def sample_attrs(self, sample_id: str) -> dict[str, Any]:
        """A sample's record in schema 2's terms: num_points, views, ensemble, view_params,
        ensemble_params, data_sha256, committed (+ sequence, position)."""
        loc = self.locate(sample_id)
        attrs = self.sequences[loc.sequence]
        pick = lambda key: (attrs.get(key) or [None] * (loc.position + 1))[loc.position]  # noqa: E731
        return {
            "num_points": loc.stop - loc.start, "views": attrs.get("views"), "ensemble": bool(attrs.get("ensemble")),
            "view_params": pick("view_params") or [], "ensemble_params": pick("ensemble_params"),
            "data_sha256": pick("data_sha256"), "committed": True, "sequence": loc.sequence,
            "position": loc.position,
        }  # fmt: skip

    def read(self, sample_id: str, entry: str, codec: Codec, num_classes: int, feature_dim: int) -> tuple[
        dict[str, np.ndarray], dict[str, np.ndarray]
    ]:  # fmt: skip
        """One sample's encoded arrays of one entry: (point rows (N, ...), side arrays), checked
        against the codec's layouts."""
        return self.read_span([sample_id], entry, codec, num_classes, feature_dim)[0]

    def read_span(self, sample_ids: Sequence[str], entry: str, codec: Codec, num_classes: int, feature_dim: int,
                  ) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:  # fmt: skip
        """`read` for several samples of ONE sequence at once: one read of the rows and side rows
        their positions span (a whole sequence: one pass over each shard), then one slice each."""
        locs = [self.locate(s) for s in sample_ids]
        if not locs or len({loc.sequence for loc in locs}) != 1:
            raise CacheError(f"read_span takes samples of one sequence, got {sorted({loc.sequence for loc in locs})}")
        seq = locs[0].sequence
        layouts = {"point": codec.point_layout(num_classes, feature_dim),
                   "side": codec.side_layout(num_classes, feature_dim)}  # fmt: skip
        start, stop = min(loc.start for loc in locs), max(loc.stop for loc in locs)
        first, last = min(loc.position for loc in locs), max(loc.position for loc in locs)
        where = f"scene {sample_ids[0]!r}" if len(locs) == 1 else f"sequence {seq!r}"
        memo = self._arrays.setdefault(seq, {})  # opened once per reader and sequence
        point, side = read_sample_rows(self._root, seq, entry, layouts, slice(first, last + 1), start, stop, where,
                                       memo)  # fmt: skip
        out = []
        for sample, loc in zip(sample_ids, locs, strict=True):
            rows = {name: data[loc.start - start : loc.stop - start] for name, data in point.items()}
            one = {name: data[loc.position - first] for name, data in side.items()}
            _check_layouts(f"scene {sample!r}", entry, layouts, rows, one, loc.stop - loc.start)
            out.append((rows, one))
        return out


def _check_layouts(where: str, entry: str, layouts: dict[str, Any], point: dict[str, np.ndarray],
                   side: dict[str, np.ndarray], n: int) -> None:  # fmt: skip
    """CacheError when an array's dtype or row shape differs from the codec's layout, or a point
    array does not hold n rows."""
    for kind, arrays in (("point", point), ("side", side)):
        for name, data in arrays.items():
            lay = layouts[kind][name]
            if str(data.dtype) != lay.dtype or (data.shape[1:] if kind == "point" else data.shape) != lay.shape:
                raise CacheError(f"{where}, array {entry}/{name} has shape {data.shape} {data.dtype}, expected "
                                 f"rows of {lay.shape} {lay.dtype}")  # fmt: skip
            if kind == "point" and len(data) != n:
                raise CacheError(f"{where}, array {entry}/{name}: {len(data)} rows, expected {n}")
