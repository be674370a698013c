"""Rewriting a cache of any readable schema (1, 2 or 3) as schema 3 (`srkd inspect-cache CACHE
--migrate OUT`): the encoded arrays are copied, never re-encoded, so every decoded value of the
new cache is bit-identical to the old one's; the settings (hence the identity) are the old ones.

Resumable like a build: OUT is written one sequence at a time, each committed last, and a re-run
skips the committed complete sequences. The caller holds OUT's lock (and the source's shared one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srkd.cache.codec_base import Encoded
from srkd.cache.housekeeping import clean_leftovers
from srkd.cache.packed import PackedSample, plan_sequences
from srkd.cache.reader import CacheReader
from srkd.cache.schema import ENSEMBLE, entry_name
from srkd.cache.writer import CacheWriter
from srkd.errors import CacheError


@dataclass
class MigrateReport:
    """What `migrate` did: scenes written and skipped (already in OUT), sequences written."""

    out: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    sequences: int = 0


def migrate(source: Any, out: Path, on_sequence: Callable[[str, int], None] | None = None) -> MigrateReport:
    """Write every committed scene of the cache `source` into a schema-3 cache at `out`, then
    check that each decodes bit-identically in both.

    Raises CacheError when `out` holds a cache with other settings, or when a decoded value
    differs (nothing of `out` is then trusted: re-run to rewrite what differs)."""
    reader = CacheReader(source, cache_bytes=0)
    out = Path(out).expanduser().resolve()
    if isinstance(source, (str, Path)) and Path(source).expanduser().resolve() == out:
        raise CacheError(f"--migrate needs a new directory, not the cache itself ({out})")
    writer = CacheWriter.create(out, reader.spec, schema_version=3)
    clean_leftovers(out)
    report = MigrateReport(out)
    committed = writer.committed_sequences()
    planned = plan_sequences(reader.scene_ids)
    damaged = writer.damaged_sequences([name for name in planned if name in committed])
    for name, samples in planned.items():
        if name in committed and name not in damaged and set(samples) <= set(committed[name]):
            report.skipped.extend(samples)
            continue
        writer.write_sequence(name, [_packed(reader, s) for s in samples])
        report.written.extend(samples)
        report.sequences += 1
        if on_sequence:
            on_sequence(name, len(samples))
    _check_identical(reader, CacheReader(out, cache_bytes=0))
    return report


def _packed(reader: CacheReader, scene: str) -> PackedSample:
    """One scene of `reader` as its encoded arrays and record."""
    attrs = reader.attributes(scene)
    entries = {entry_name(view): Encoded(*reader.encoded(scene, view)) for view in reader.entries(scene)}
    return PackedSample(
        scene, reader.num_points(scene), entries, [dict(p) for p in attrs.get("view_params") or []],
        dict(attrs["ensemble_params"]) if attrs.get(ENSEMBLE) and attrs.get("ensemble_params") else None,
        reader.data_sha256(scene),
    )  # fmt: skip


def _check_identical(old: CacheReader, new: CacheReader) -> None:
    if old.scene_ids != new.scene_ids:
        missing = sorted(set(old.scene_ids) - set(new.scene_ids))[:3]
        raise CacheError(f"the migrated cache at {new.where} lacks scenes of {old.where} (e.g. {missing})")
    for scene in old.scene_ids:
        if old.attributes(scene).get("view_params") != new.attributes(scene).get("view_params"):
            raise CacheError(f"scene {scene!r}: replay records differ after migration")
        for view in old.entries(scene):
            for a, b in zip(old.read_all(scene, view), new.read_all(scene, view), strict=True):
                if a.shape != b.shape or not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
                    raise CacheError(f"scene {scene!r}, {entry_name(view)}: decoded values differ after migration; "
                                     f"the new cache at {new.where} is not a faithful copy: remove it and "
                                     "migrate again")  # fmt: skip
