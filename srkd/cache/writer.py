"""Writing a teacher cache: create/resume the root once, then whole scenes, each committed last.

Concurrency contract (Zarr loses data when two writers touch one chunk): the root attributes are
written only by `CacheWriter.create`, in one process; any number of processes may then open the
same cache with `CacheWriter.open` and write DIFFERENT scenes at once, since every scene lives in
its own group and no scene write touches the root.

Crash safety: a scene's `committed` attribute is written after all of its arrays, and only once
`scene_damage` finds every array the codec writes present with all its chunks. Rewriting a scene
first clears the marker, then deletes the group, so a crash at any moment leaves either the old
committed scene, or a scene readers treat as absent (and `committed_scenes` excludes).

Two builds of one cache are kept apart by `srkd.cache.lock` (a lock on the cache directory held by
the process that runs the build), not by this module.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from srkd import __version__
from srkd.cache.arrays import write_entry
from srkd.cache.codecs import make_codec
from srkd.cache.housekeeping import sequence_lock
from srkd.cache.packed import (
    SAMPLES,
    PackedSample,
    sequence_attrs,
    sequence_damage,
    write_sequence_arrays,
)
from srkd.cache.packed_index import committed_sequences
from srkd.cache.schema import (
    COMMITTED,
    DATA_SHA256,
    ENSEMBLE,
    ROOT_KEY,
    SCHEMA_VERSION,
    WRITABLE_SCHEMAS,
    CacheSpec,
    SampleTargets,
    ViewTargets,
    as_recorded,
    canonical_json,
    check_scene_id,
    committed_scene_ids,
    describe,
    entry_name,
    open_store,
    read_root,
    root_record,
    scene_damage,
    stale_message,
)
from srkd.errors import CacheError, ConfigError


def _has_root(store: Any) -> bool:
    try:
        zarr.open_group(store, mode="r", use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return False
    except Exception:  # an array or unreadable metadata at the root still "exists"
        return True
    return True


def uncommit(path_or_store: Any, scene_ids: Sequence[str]) -> list[str]:
    """Clear the committed marker of `scene_ids` (e.g. scenes `verify` found damaged), so the next
    `srkd cache-teacher` with the same settings computes them again. Returns the ids changed."""
    where = describe(path_or_store)
    group = zarr.open_group(open_store(path_or_store, read_only=False), mode="r+", use_consolidated=False)
    read_root(group, where)
    changed = []
    for scene_id in scene_ids:
        check_scene_id(scene_id)
        if scene_id in group:
            group[scene_id].update_attributes({COMMITTED: False})
            changed.append(scene_id)
    return changed


def refuse_foreign_dir(path: Path, label: str) -> None:
    """CacheError when `path` is a non-empty directory that is not a Zarr store (no zarr.json):
    creating a cache there would delete what it holds. `label` names it in the message
    (e.g. "--out DIR")."""
    if path.is_dir() and not (path / "zarr.json").is_file() and any(path.iterdir()):
        raise CacheError(f"{label} is a non-empty directory that is not a teacher cache; creating a cache there "
                         "would delete its contents: choose a new or empty directory")  # fmt: skip


def _empty_dir(path: Path) -> None:
    """Delete everything inside `path` (which may not exist yet), keeping `path` itself."""
    if not path.is_dir():
        return
    marker = path / "zarr.json"  # last: until then an interrupted overwrite still looks like a cache
    for child in sorted(path.iterdir(), key=lambda p: p == marker):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


class CacheWriter:
    """Writes scenes into a cache whose root was created (once) by `create`.

    Use `CacheWriter.create(path_or_store, spec)` in the coordinating process (creates, resumes an
    identical cache, or refuses a different one), and `CacheWriter.open(path_or_store, spec)` in
    worker processes (never writes the root).
    """

    def __init__(self, group: zarr.Group, spec: CacheSpec, where: str, schema_version: int = SCHEMA_VERSION) -> None:
        self._group = group
        self.spec = spec
        self.where = where
        self.schema_version = schema_version
        self._codec = make_codec(spec.codec, spec.num_classes)

    @classmethod
    def create(
        cls, path_or_store: Any, spec: CacheSpec, overwrite: bool = False, schema_version: int = SCHEMA_VERSION
    ) -> CacheWriter:  # fmt: skip
        """Create a new cache, resume one with the same fingerprint, or refuse another one.

        overwrite=True deletes the cache the location holds first. A non-empty directory that
        is not a Zarr store is always refused (CacheError): nothing outside a cache is deleted. `schema_version` is the layout
        of a NEW cache (3: packed sequences; 2: a group per scene); a resumed cache keeps its own.
        """
        if schema_version not in WRITABLE_SCHEMAS:
            raise ConfigError(f"a new cache has schema version {WRITABLE_SCHEMAS}, not {schema_version!r}")
        where = describe(path_or_store)
        if isinstance(path_or_store, (str, Path)) and Path(path_or_store).is_file():
            raise CacheError(f"{where} is a file; a cache is a directory")
        if isinstance(path_or_store, (str, Path)):
            refuse_foreign_dir(Path(path_or_store), where)  # even with overwrite: that replaces a CACHE
        store = open_store(path_or_store, read_only=False)
        if _has_root(store) and not overwrite:
            try:
                read_root(zarr.open_group(store, mode="r", use_consolidated=False), where)
            except zarr.errors.ContainsArrayError as exc:
                raise CacheError(f"{where} holds a Zarr array, not a srkd cache; use a new directory") from exc
            return cls.open(store, spec, where=where)
        try:
            if isinstance(path_or_store, (str, Path)):
                # Empty the directory but keep it (the same inode): a build holds its lock on the
                # directory itself (srkd.locking), and zarr's mode "w" would delete and recreate it.
                _empty_dir(Path(path_or_store))
                group = zarr.open_group(store, mode="a", use_consolidated=False)
            else:
                group = zarr.open_group(store, mode="w", use_consolidated=False)
            group.update_attributes({ROOT_KEY: root_record(spec, __version__, schema_version)})
        except OSError as exc:  # read-only or full disk: nothing written looks like a cache
            raise CacheError(
                f"cannot write the teacher cache at {where} ({exc.strerror or exc}); choose a "
                "writable --out"
            ) from None
        return cls(group, spec, where, schema_version)

    @classmethod
    def open(cls, path_or_store: Any, spec: CacheSpec, where: str | None = None) -> CacheWriter:
        """Open an existing cache for writing scenes (checks the fingerprint; root untouched)."""
        where = where or describe(path_or_store)
        store = open_store(path_or_store, read_only=False)
        if not _has_root(store):
            raise CacheError(f"no cache at {where}; create it first (CacheWriter.create)")
        group = zarr.open_group(store, mode="r+", use_consolidated=False)
        record, found = read_root(group, where)
        spec = as_recorded(spec, found)
        if found.fingerprint() != spec.fingerprint():
            raise CacheError(stale_message(where, found, spec))
        return cls(group, spec, where, schema_version=int(record["schema_version"]))

    @property
    def packed(self) -> bool:
        """True for a schema-3 cache (samples packed per sequence)."""
        return self.schema_version >= 3

    def check_extendable(self) -> None:
        """CacheError unless new scenes may be written: a cache of schema 1 can be read (and found
        complete) but not extended, since its scenes would mix two layouts."""
        if self.schema_version not in WRITABLE_SCHEMAS:
            raise CacheError(
                f"the cache at {self.where} was written by an older srkd (schema version "
                f"{self.schema_version}); it can still be read, but not extended or repaired: "
                "rewrite it as schema 3 with `srkd inspect-cache CACHE --migrate NEW`, or rebuild it "
                "with `srkd cache-teacher --overwrite`"
            )

    def committed_scenes(self) -> set[str]:
        """Ids of the committed scenes (samples of committed sequences, in schema 3)."""
        if self.packed:
            return {s for samples in self.committed_sequences().values() for s in samples}
        return committed_scene_ids(self._group)

    def committed_sequences(self) -> dict[str, list[str]]:
        """Schema 3: {committed sequence: its sample ids in order}."""
        committed, _ = committed_sequences(self._group)
        return {name: list(attrs.get(SAMPLES, [])) for name, attrs in committed.items()}

    def remove_sequences(self, names: Sequence[str]) -> None:
        """Schema 3: clear the marker of each named sequence, then delete its group."""
        for name in names:
            if name in self._group:
                self._uncommit_and_delete(name)

    def _uncommit_and_delete(self, name: str) -> None:
        old = self._group[name]
        if isinstance(old, zarr.Group) and old.attrs.get(COMMITTED):
            old.update_attributes({COMMITTED: False})  # clear the marker before deleting
        del self._group[name]

    def encode_sample(self, sample: SampleTargets) -> PackedSample:
        """Validate and encode one sample's entries (done per sample, as soon as it is computed, so
        a sequence's float32 targets are never all in memory)."""
        check_scene_id(sample.sample_id)
        entries = self._validate(sample.sample_id, sample.views, sample.ensemble)
        return PackedSample(
            sample.sample_id, len(sample.views[0].logits),
            {name: self._codec.encode(t.logits, t.feature) for name, t in entries.items()},
            [dict(v.params) for v in sample.views],
            None if sample.ensemble is None else dict(sample.ensemble.params), sample.data_sha256,
        )  # fmt: skip

    def write_sequence(self, sequence: str, samples: Sequence[PackedSample], unless_complete: bool = False) -> bool:
        """Schema 3: write (or rewrite) one sequence whole, its marker last, holding the
        sequence's writer lock (`sequence_lock`) throughout.

        Args:
            sequence: a plain name (see `srkd.cache.packed.plan_sequences`).
            samples: `encode_sample` of each sample, in the sequence's order (at least one).
            unless_complete: leave the sequence as it is when, once the lock is held, it is
                committed, complete and holds every sample (another writer, e.g. a task of an
                earlier build still running on a dask worker, finished it meanwhile).
        Returns False when `unless_complete` left it, else True. Raises CacheError (the sequence
        left uncommitted) when an array is not there after writing.
        """
        check_scene_id(sequence)
        self.check_extendable()
        if not self.packed:
            raise CacheError(f"the cache at {self.where} has schema {self.schema_version}: it holds scenes, not sequences")
        if not samples:
            raise ConfigError(f"sequence {sequence!r} has no samples")
        if len({s.sample_id for s in samples}) != len(samples):
            raise ConfigError(f"sequence {sequence!r} lists a sample twice")
        with sequence_lock(self._group.store, sequence):
            if unless_complete and self._complete(sequence, [s.sample_id for s in samples]):
                return False
            self._write_sequence(sequence, samples)
        return True

    def _complete(self, sequence: str, sample_ids: Sequence[str]) -> bool:
        try:
            attrs = dict(self._group[sequence].attrs)
        except Exception:  # absent or torn: not complete
            return False
        return (attrs.get(COMMITTED) is True and set(sample_ids) <= set(attrs.get(SAMPLES, []))
                and not self.damaged_sequences([sequence]))  # fmt: skip

    def _write_sequence(self, sequence: str, samples: Sequence[PackedSample]) -> None:
        root = self._group
        if sequence in root:
            self._uncommit_and_delete(sequence)
        group = root.create_group(sequence, overwrite=True,
                                  attributes=sequence_attrs(samples, self.spec.views, self.spec.ensemble))  # fmt: skip
        write_sequence_arrays(group, samples, self._codec)
        damage = self.damaged_sequences([sequence]).get(sequence)
        if damage:
            raise CacheError(f"sequence {sequence!r} was not committed: {'; '.join(damage[:3])}")
        group.update_attributes({COMMITTED: True})  # last: its samples now exist for readers

    def damaged_sequences(self, names: Sequence[str], threads: int = 16) -> dict[str, list[str]]:
        """Schema 3: sequences among `names` that are incomplete (`sequence_damage`), with why."""
        spec, k, d = self.spec, self.spec.num_classes, self.spec.feature_dim
        entries = [entry_name(v) for v in range(spec.views)] + ([ENSEMBLE] if spec.ensemble else [])
        layouts = {"point": self._codec.point_layout(k, d), "side": self._codec.side_layout(k, d)}

        def check(name: str) -> tuple[str, list[str]]:
            return name, sequence_damage(self._group, name, spec.views, spec.ensemble, entries, layouts)

        with ThreadPoolExecutor(max(1, threads)) as pool:
            return {name: problems for name, problems in pool.map(check, names) if problems}

    def write_scene(
        self, scene_id: str, views: Sequence[ViewTargets], ensemble: ViewTargets | None = None,
        data_sha256: str | None = None,
    ) -> None:  # fmt: skip
        """Write (or rewrite) one scene: every view, the optional ensemble, then the marker.

        Args:
            scene_id: a plain name (no '/', no '..').
            views: exactly `spec.views` ViewTargets, each logits float32 (N, K) and feature
                float32 (N, D) for every ORIGINAL point, N the same for all.
            ensemble: required iff `spec.ensemble`; same shapes.
            data_sha256: `PointCloud.content_sha256()` of the scene the teacher saw; readers
                compare it with the data they load (None: not recorded, not checked).
        Raises CacheError (the scene left uncommitted) when an array is not there after writing.
        """
        check_scene_id(scene_id)
        self.check_extendable()
        if self.packed:  # schema 3: a sequence of one sample, named after it
            self.write_sequence(f"seq-{scene_id}", [self.encode_sample(SampleTargets(scene_id, views, ensemble,
                                                                                     data_sha256))])  # fmt: skip
            return
        entries = self._validate(scene_id, views, ensemble)
        # Encode everything before touching the store: a bad input never clears a good scene.
        encoded = {name: self._codec.encode(t.logits, t.feature) for name, t in entries.items()}
        root = self._group
        if scene_id in root:
            old = root[scene_id]
            if isinstance(old, zarr.Group) and old.attrs.get(COMMITTED):
                old.update_attributes({COMMITTED: False})  # clear the marker before deleting
            del root[scene_id]
        num_points = len(views[0].logits)
        attrs = {
            "num_points": num_points,
            "views": len(views),
            ENSEMBLE: ensemble is not None,
            "view_params": [dict(v.params) for v in views],
            "ensemble_params": None if ensemble is None else dict(ensemble.params),
            DATA_SHA256: data_sha256,
            COMMITTED: False,
        }
        scene = root.create_group(scene_id, overwrite=True, attributes=attrs)
        for name, enc in encoded.items():
            write_entry(scene, name, self._codec, enc)
        damage = scene_damage(root, scene_id, self.spec, self._codec)
        if damage:
            raise CacheError(f"scene {scene_id!r} was not committed: {'; '.join(damage[:3])}")
        scene.update_attributes({COMMITTED: True})  # last: the scene now exists for readers

    def damaged_scenes(self, scenes: Sequence[str], threads: int = 16) -> dict[str, list[str]]:
        """Committed scenes among `scenes` that are incomplete (`scene_damage`), with why.

        Metadata reads only, `threads` at a time (the check is I/O-bound: about 18 ms per
        5-entry scene on a local disk, one at a time)."""
        with ThreadPoolExecutor(max(1, threads)) as pool:
            found = pool.map(lambda s: (s, scene_damage(self._group, s, self.spec, self._codec)), scenes)
            return {scene_id: problems for scene_id, problems in found if problems}

    def _validate(
        self, scene_id: str, views: Sequence[ViewTargets], ensemble: ViewTargets | None
    ) -> dict[str, ViewTargets]:
        spec = self.spec
        if len(views) != spec.views:
            raise ConfigError(f"scene {scene_id!r}: got {len(views)} view(s), the cache holds {spec.views}")
        if (ensemble is not None) != spec.ensemble:
            need = "needs" if spec.ensemble else "does not store"
            raise ConfigError(f"scene {scene_id!r}: this cache {need} an ensemble entry")
        entries = {entry_name(i): v for i, v in enumerate(views)}
        if ensemble is not None:
            entries[ENSEMBLE] = ensemble
        n = None
        for name, t in entries.items():
            logits, feature = np.asarray(t.logits), np.asarray(t.feature)
            where = f"scene {scene_id!r}, {name}"
            if logits.ndim != 2 or logits.shape[1] != spec.num_classes:
                raise ConfigError(f"{where}: logits have shape {logits.shape}, expected (N, {spec.num_classes})")
            if feature.ndim != 2 or feature.shape[1] != spec.feature_dim:
                raise ConfigError(f"{where}: feature has shape {feature.shape}, expected (N, {spec.feature_dim})")
            n = len(logits) if n is None else n
            if len(logits) != n or len(feature) != n:
                raise ConfigError(f"{where}: {len(logits)} logit rows and {len(feature)} feature rows, expected {n}")
            if not (np.isfinite(logits).all() and np.isfinite(feature).all()):
                raise ConfigError(f"{where}: teacher outputs contain NaN or infinity")
            canonical_json(dict(t.params))  # replay records must be plain JSON
            entries[name] = ViewTargets(logits.astype(np.float32), feature.astype(np.float32), dict(t.params))
        return entries
