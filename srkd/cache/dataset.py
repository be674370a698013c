"""A whole cache entry as ONE lazy xarray Dataset of decoded targets, for analysis with xarray/dask.

    logits   (point, class)    float32   the teacher's logits, every sample's rows concatenated
    feature  (point, channel)  float32   its features, the same rows
    coords   sample (sample,) str, num_points (sample,) int64, sample_offsets (sample_edge,) int64:
             sample s owns rows [sample_offsets[s], sample_offsets[s + 1])

Nothing is read when the Dataset is built: its index comes from the cache's sample index (one
listing and one document per sequence, see `srkd.cache.packed_index`), and each dask block holds
one sequence (schema 3) or up to `SEQUENCE_SAMPLES` samples (schema 1 and 2), decoded by
`CacheReader.read_all` with all of srkd's checks when it is computed. Blocks are independent
tasks, so a dask cluster reads a cache in parallel (one reader per worker process).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from srkd.cache.reader import CacheReader, View
from srkd.errors import CacheError
from srkd.types import SEQUENCE_SAMPLES


@functools.lru_cache(maxsize=4)
def _reader(cache: str) -> CacheReader:
    """One reader per process and cache (opening builds the sample index once; no entry LRU)."""
    return CacheReader(cache, cache_bytes=0)


def read_block(cache: str, samples: Sequence[str], view: View) -> tuple[np.ndarray, np.ndarray]:
    """Decoded (logits (N, K), feature (N, D)) float32 of `samples`, rows concatenated in order."""
    pairs = _reader(cache).read_many(samples, view)
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def blocks(reader: CacheReader) -> tuple[list[list[str]], np.ndarray]:
    """(the samples of each dask block, in cache order; their point counts (S,) int64). A block
    is a schema-3 sequence (its samples in position order) or a run of up to SEQUENCE_SAMPLES
    sample ids of an older cache."""
    if reader.packed is None:
        ids = reader.scene_ids
        groups = [list(ids[i : i + SEQUENCE_SAMPLES]) for i in range(0, len(ids), SEQUENCE_SAMPLES)]
        return groups, np.asarray([reader.num_points(s) for g in groups for s in g], dtype=np.int64)
    served = [(samples, counts) for samples, counts in reader.packed.sequence_samples() if samples]
    return [samples for samples, _ in served], np.concatenate([np.zeros(0, np.int64)] + [c for _, c in served])


def open_dataset(cache: str | Path, view: View = 0) -> Any:
    """The decoded targets of entry `view` (0..V-1 or "ensemble") of every committed sample of
    the cache at `cache`, as a lazy `xarray.Dataset` (layout in the module docstring).

    Needs xarray and dask. CacheError for anything CacheReader refuses (no cache, foreign store,
    an entry the cache does not hold)."""
    import dask.array as da
    import xarray as xr
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    path = str(Path(cache).resolve())
    reader = CacheReader(path, cache_bytes=0)
    groups, counts = blocks(reader)
    if groups and view not in (held := reader.entries(groups[0][0])):
        raise CacheError(f"the cache at {path} holds no entry {view!r} (it holds {held})")
    k, d = reader.spec.num_classes, reader.spec.feature_dim
    order = [s for g in groups for s in g]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    bounds = np.cumsum([0] + [len(g) for g in groups])  # each block's first and end sample
    rows = tuple(int(n) for n in np.diff(offsets[bounds]))
    # one read task per block; logits and feature are its two halves (one graph, no per-block layers)
    token = tokenize(path, view, reader.spec.fingerprint(), order)
    read = f"srkd-read-{token}"
    layers: dict[str, dict] = {read: {(read, i): (functools.partial(read_block, path, tuple(g), view),)
                                      for i, g in enumerate(groups)}}  # fmt: skip
    variables = {}
    for var, part, width, dim in (("logits", 0, k, "class"), ("feature", 1, d, "channel")):
        name = f"srkd-{var}-{token}"
        layers[name] = {(name, i, 0): (operator.getitem, (read, i), part) for i in range(len(groups))}
        graph = HighLevelGraph(layers={read: layers[read], name: layers[name]}, dependencies={read: set(), name: {read}})
        variables[var] = (("point", dim), da.Array(graph, name, chunks=(rows, (width,)), dtype=np.float32)
                          if groups else da.zeros((0, width), dtype=np.float32))  # fmt: skip
    return xr.Dataset(
        variables,
        coords={"sample": ("sample", np.asarray(order, dtype=object)), "num_points": ("sample", counts),
                "sample_offsets": ("sample_edge", offsets)},
        attrs={"cache": path, "view": str(view), "schema_version": reader.schema_version,
               "fingerprint": reader.spec.fingerprint(), "codec": str(reader.spec.codec)},
    )  # fmt: skip
