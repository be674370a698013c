"""Add dimension names and decode attributes to the entry arrays of caches written before srkd
recorded them (`srkd inspect-cache --upgrade`; the attributes are described in
`srkd.cache.annotations`)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import zarr
from zarr.core.buffer import cpu, default_buffer_prototype
from zarr.core.sync import sync

from srkd.cache.annotations import annotate
from srkd.cache.codecs import make_codec
from srkd.cache.schema import describe, open_store, read_root
from srkd.errors import CacheError


def _entry_arrays(root: zarr.Group) -> list[zarr.Array]:
    """Every array two group levels below the root (<scene>/<entry>/<array>)."""
    out = []
    for _, scene in root.groups():
        for _, entry in scene.groups():
            out.extend(arr for _, arr in entry.arrays())
    return out


def upgrade_metadata(path_or_store: Any) -> int:
    """Add dimension names and decode attributes to every entry array of a cache that lacks
    them (caches written before srkd recorded them). Returns the number of arrays rewritten
    (0 when the cache is already up to date, so running it again is harmless).

    Only array metadata documents change, each replaced atomically on a local directory; chunks,
    scene attributes and the root record (so the fingerprint) are untouched, and srkd reads the
    cache the same at every moment of the upgrade. Do not run it while a build writes the cache.

    Raises CacheError when the location is not a readable srkd cache.
    """
    store = open_store(path_or_store, read_only=False)
    root = zarr.open_group(store, mode="r+", use_consolidated=False)
    record, spec = read_root(root, describe(path_or_store))
    if int(record["schema_version"]) >= 3:  # written with both since the first schema-3 srkd
        return 0
    codec = make_codec(spec.codec)
    try:
        arrays = _entry_arrays(root)
    except Exception as exc:  # zarr raises JSON/KeyError/... for a torn document
        raise CacheError(
            f"{describe(path_or_store)} has unreadable metadata ({type(exc).__name__}: {exc}); find "
            "the damaged scene with `srkd inspect-cache --verify`, rebuild it, then upgrade"
        ) from exc
    changed = 0
    for arr in arrays:
        kind = str(arr.attrs.get("kind", "point"))
        dims, attrs = annotate(codec, kind, arr.basename, arr.ndim)
        meta = arr.metadata
        if getattr(meta, "dimension_names", None) == dims and all(arr.attrs.get(k) == v for k, v in attrs.items()):
            continue
        key = f"{arr.path}/zarr.json"
        doc = json.loads(sync(store.get(key, prototype=default_buffer_prototype())).to_bytes())
        doc["dimension_names"] = list(dims)
        doc["attributes"] = {**doc.get("attributes", {}), **attrs}
        text = json.dumps(doc, indent=2, allow_nan=False, default=_json_scalar)
        sync(store.set(key, cpu.Buffer.from_bytes(text.encode())))
        changed += 1
    return changed


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")
