"""The sample index of a schema-3 cache (`srkd.cache.packed`), built when a reader opens: one
listing of the root and one concurrent read of every sequence's attributes, so opening costs a
read per sequence, not per sample or per array."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import zarr
from zarr.core.sync import sync

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
        self._index: dict[str, Location] = {}
        self.duplicates: list[str] = []
        for seq in sorted(self.sequences):
            attrs = self.sequences[seq]
            offsets = np.concatenate([[0], np.cumsum(np.asarray(attrs.get("num_points", []), dtype=np.int64))])
            for pos, sample in enumerate(attrs.get(SAMPLES, [])):
                if sample in self._index:
                    self.duplicates.append(sample)
                    continue
                self._index[sample] = Location(seq, pos, int(offsets[pos]), int(offsets[pos + 1]))
        self.sample_ids: tuple[str, ...] = tuple(sorted(self._index))
        self._groups: dict[str, zarr.Group] = {}
        self._arrays: dict[tuple[str, str], zarr.Array] = {}

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._index

    def locate(self, sample_id: str) -> Location:
        loc = self._index.get(sample_id)
        if loc is None:
            raise CacheMissError(
                f"scene {sample_id!r} is not in the cache at {self._where} (absent or its sequence not "
                "committed); run `srkd cache-teacher` to (re)build it"
            )
        return loc

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
        loc = self.locate(sample_id)
        layouts = {"point": codec.point_layout(num_classes, feature_dim),
                   "side": codec.side_layout(num_classes, feature_dim)}  # fmt: skip
        where = f"scene {sample_id!r}"
        group = self.group(loc.sequence)

        def array(path: str) -> zarr.Array:  # opened once per reader: samples of a sequence share it
            key = (loc.sequence, path)
            if key not in self._arrays:
                self._arrays[key] = group[path]
            return self._arrays[key]

        point, side = read_sample_rows(group, entry, codec, layouts, loc.position, loc.start, loc.stop, where,
                                       loc.sequence, array)  # fmt: skip
        for kind, arrays in (("point", point), ("side", side)):
            for name, data in arrays.items():
                lay = layouts[kind][name]
                if str(data.dtype) != lay.dtype or (data.shape[1:] if kind == "point" else data.shape) != lay.shape:
                    raise CacheError(f"{where}, array {entry}/{name} has shape {data.shape} {data.dtype}, expected "
                                     f"rows of {lay.shape} {lay.dtype}")  # fmt: skip
                if kind == "point" and len(data) != loc.stop - loc.start:
                    raise CacheError(f"{where}, array {entry}/{name}: {len(data)} rows, expected {loc.stop - loc.start}")
        return point, side
