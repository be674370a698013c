"""Schema 3: the samples of a sequence packed into one set of arrays.

    <root>/<sequence>/zarr.json            attributes: samples (ids, in order), num_points, views,
                                           ensemble, view_params (per sample, per view),
                                           ensemble_params, data_sha256 (per sample), committed
                                           (written LAST)
    <root>/<sequence>/sample_offsets       (S + 1,) int64: sample s owns point rows
                                           [offsets[s], offsets[s + 1]) of every point array
    <root>/<sequence>/<entry>/<array>      point arrays: (sum of N, ...) rows of every sample, in
                                           sample order; side arrays: (S, ...) one per sample

A sequence is a build task: one worker computes all its samples and writes every array whole, each
as ONE shard (Zarr v3 sharding codec) of inner chunks sized so that reading one sample touches two
or three of them. No shard ever has two writers (concurrent partial-shard writes lose data,
zarr-python #3514/#3682). Readers index the committed sequences' attributes when they open.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
import zarr.codecs as zc
from zarr.api.asynchronous import open_array as open_async_array
from zarr.core.array import AsyncArray
from zarr.core.sync import sync

from srkd.cache.annotations import annotate
from srkd.cache.arrays import REBUILD_ADVICE
from srkd.cache.codec_base import Codec, Encoded
from srkd.cache.store_files import StoreFiles, shard_keys
from srkd.errors import CacheError
from srkd.types import SEQUENCE_SAMPLES

SAMPLE_OFFSETS = "sample_offsets"
SAMPLES = "samples"
MIN_INNER_ROWS = 4096
_GROUP_SUFFIX = re.compile(r"_\d+$")


def group_key(sample_id: str) -> str:
    """The recording a sample belongs to: its id without a trailing `_<digits>` (nuScenes
    `<scene>_<keyframe>`, SemanticKITTI `<sequence>_<frame>`, ScanNet `scene<room>_<scan>`)."""
    return _GROUP_SUFFIX.sub("", sample_id) or sample_id


def plan_sequences(sample_ids: Sequence[str], max_samples: int = SEQUENCE_SAMPLES) -> dict[str, list[str]]:
    """Pack sorted sample ids into sequences: whole recordings (`group_key`) go together while a
    sequence holds at most `max_samples`; a longer recording is split into blocks. A sequence is
    named `seq-<its first sample id>`, so the same split plans the same sequences."""
    if max_samples < 1:
        raise CacheError(f"a sequence holds at least one sample, got max_samples={max_samples}")
    groups: dict[str, list[str]] = {}
    for sample in sorted(sample_ids):
        groups.setdefault(group_key(sample), []).append(sample)
    blocks: list[list[str]] = []
    for members in groups.values():
        pieces = [members[i : i + max_samples] for i in range(0, len(members), max_samples)]
        if blocks and len(pieces) == 1 and len(blocks[-1]) + len(pieces[0]) <= max_samples:
            blocks[-1].extend(pieces[0])  # small recordings share a sequence
        else:
            blocks.extend(pieces)
    return {f"seq-{block[0]}": block for block in blocks}


@dataclass
class PackedSample:
    """One sample's encoded entries and its record, ready to be packed."""

    sample_id: str
    num_points: int
    entries: dict[str, Encoded]
    view_params: list[dict[str, Any]]
    ensemble_params: dict[str, Any] | None
    data_sha256: str | None


def inner_rows(sizes: Sequence[int]) -> int:
    """Rows per inner chunk: half the median sample, so one sample spans two or three chunks."""
    median = int(np.median(sizes)) if len(sizes) else 1
    return max(MIN_INNER_ROWS, math.ceil(median / 2))


def _codecs(dtype: np.dtype, clevel: int, transpose: bool) -> tuple[list, list]:
    filters = [zc.TransposeCodec(order=(1, 0))] if transpose else []
    compressors = [
        zc.BloscCodec(cname="zstd", clevel=int(clevel), shuffle="shuffle" if dtype.itemsize > 1 else "noshuffle",
                      typesize=int(dtype.itemsize)),
        zc.Crc32cCodec(),
    ]  # fmt: skip
    return filters, compressors


def sequence_attrs(samples: Sequence[PackedSample], views: int, ensemble: bool) -> dict[str, Any]:
    """The sequence group's attributes (committed False: set last by the writer)."""
    return {
        SAMPLES: [s.sample_id for s in samples],
        "num_points": [s.num_points for s in samples],
        "views": views,
        "ensemble": ensemble,
        "view_params": [s.view_params for s in samples],
        "ensemble_params": [s.ensemble_params for s in samples],
        "data_sha256": [s.data_sha256 for s in samples],
        "committed": False,
    }


def write_sequence_arrays(group: zarr.Group, samples: Sequence[PackedSample], codec: Codec) -> None:
    """Write `sample_offsets` and every entry's arrays of `samples` into `group`, each array whole
    (one shard, one writer)."""
    sizes = [s.num_points for s in samples]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    arr = group.create_array(SAMPLE_OFFSETS, shape=offsets.shape, dtype=np.int64, chunks=offsets.shape,
                             compressors=[zc.Crc32cCodec()], fill_value=-1, dimension_names=("sample_edge",),
                             attributes={"long_name": "sample s owns point rows [offsets[s], offsets[s + 1])"})  # fmt: skip
    arr[...] = offsets
    rows = inner_rows(sizes)
    for entry in samples[0].entries:
        sub = group.create_group(entry)
        first = samples[0].entries[entry]
        for kind, names in (("point", first.point), ("side", first.side)):
            for name in names:
                parts = [getattr(s.entries[entry], kind)[name] for s in samples]
                data = np.ascontiguousarray(np.concatenate(parts) if kind == "point" else np.stack(parts))
                _write_array(sub, kind, name, data, codec, rows)


def _write_array(group: zarr.Group, kind: str, name: str, data: np.ndarray, codec: Codec, rows: int) -> None:
    point = kind == "point"
    dims, attrs = annotate(codec, kind, name, data.ndim if point else data.ndim - 1)
    if not point:
        dims = ("sample", *dims)
    filters, compressors = _codecs(data.dtype, codec.clevel, point and data.ndim == 2)  # column-major rows
    fill = float("nan") if data.dtype.kind == "f" else 0
    if point:
        inner = (min(rows, max(len(data), 1)), *data.shape[1:])
        shard = (max(1, math.ceil(len(data) / inner[0])) * inner[0], *data.shape[1:])
        chunks = {"chunks": tuple(max(c, 1) for c in inner), "shards": tuple(max(c, 1) for c in shard)}
    else:
        chunks = {"chunks": tuple(max(c, 1) for c in data.shape)}
    # write_empty_chunks: a chunk equal to the fill value (e.g. all-zero residuals) is written too,
    # so "every shard file exists" stays the completeness test
    arr = group.create_array(name, shape=data.shape, dtype=data.dtype, filters=filters, compressors=compressors,
                             fill_value=fill, attributes=attrs, dimension_names=dims,
                             config={"write_empty_chunks": True}, **chunks)  # fmt: skip
    arr[...] = data


def read_sample_rows(
    root: zarr.Group, sequence: str, entry: str, layouts: Mapping[str, Mapping[str, Any]], position: int | slice,
    start: int, stop: int, where: str, memo: dict[str, AsyncArray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    """Rows [start, stop) of every point array ({name: (stop - start, ...)}) and row(s)
    `position` of every side array of one entry of `sequence` under `root`. The arrays are opened
    concurrently (one round trip to zarr's event loop) and read concurrently (one more).
    CacheError naming the sequence, sample and array when one is missing, has no shard file or
    cannot be decoded. `memo` keeps the opened arrays by path (one per reader and sequence)."""
    memo = {} if memo is None else memo
    paths = {f"{entry}/{name}": kind for kind, layout in layouts.items() for name in layout}
    damaged = f"its sequence {sequence!r} is damaged: {REBUILD_ADVICE}"

    async def open_one(path: str) -> AsyncArray:
        full = "/".join(p for p in (root.path, sequence, path) if p)
        return await open_async_array(store=root.store, path=full, mode="r", zarr_format=3)

    async def open_all(todo: list[str]) -> list[Any]:
        return await asyncio.gather(*(open_one(p) for p in todo), return_exceptions=True)

    todo = [p for p in paths if p not in memo]
    for path, arr in zip(todo, sync(open_all(todo)) if todo else [], strict=True):
        if isinstance(arr, BaseException):  # absent or torn metadata
            raise CacheError(f"{where}, array {path} cannot be read ({type(arr).__name__}: {arr}); {damaged}") from arr
        memo[path] = arr
    for path in paths:
        if missing := absent_chunk_keys(memo[path]):
            raise CacheError(f"{where}, array {path}: {len(missing)} shard file(s) missing (e.g. {missing[0]}); "
                             f"{damaged}")  # fmt: skip

    async def read_all() -> list[Any]:
        rows = {"point": slice(start, stop), "side": position}
        return await asyncio.gather(*(memo[p].getitem(rows[k]) for p, k in paths.items()), return_exceptions=True)

    out: dict[str, dict[str, np.ndarray]] = {"point": {}, "side": {}}
    for (path, kind), data in zip(paths.items(), sync(read_all()), strict=True):
        if isinstance(data, BaseException):  # zarr/blosc/crc raise many types; all mean "unreadable"
            raise CacheError(f"{where}, array {path} cannot be read ({type(data).__name__}: {data}); "
                             f"{damaged}") from data  # fmt: skip
        out[kind][path.split("/", 1)[1]] = np.asarray(data)
    return out["point"], out["side"]


def absent_chunk_keys(arr: zarr.Array | AsyncArray) -> list[str]:
    """Keys of `arr`'s chunk (shard) files that are absent, each asked for directly (a sequence's
    array has one shard: one stat, no listing)."""
    keys = [f"{arr.path}/{arr.metadata.encode_chunk_key(c)}" for c in arr.metadata.chunk_grid.all_chunk_coords(arr.shape)]
    return [key for key, there in StoreFiles(arr.store).exists(keys).items() if not there]


def sequence_damage(root: zarr.Group, sequence: str, views: int, ensemble: bool, entries: Sequence[str],
                    layouts: Mapping[str, Mapping[str, Any]]) -> list[str]:  # fmt: skip
    """What keeps a sequence from being complete, from its metadata documents and whether each
    array's shard file exists (asked key by key, no listing, no array opened: cheap enough to run
    on every committed sequence when a build resumes). Empty list = complete."""
    files = StoreFiles(root.store, f"{root.path}/{sequence}" if root.path else sequence)
    where = f"sequence {sequence!r}"
    arrays = {SAMPLE_OFFSETS: None} | {f"{e}/{n}": kind for e in entries for kind, lay in layouts.items() for n in lay}
    docs = files.read_json(["zarr.json", *(f"{a}/zarr.json" for a in arrays)])
    group = docs["zarr.json"]
    try:
        attrs = dict(group["attributes"]) if group.get("node_type") == "group" else {}
        sizes = [int(n) for n in attrs["num_points"]]
        samples = list(attrs[SAMPLES])
    except Exception as exc:  # torn metadata, or not a sequence group
        return [f"{where}: metadata unreadable or incomplete ({type(exc).__name__}: {exc})"]
    problems = []
    s = len(samples)
    if attrs.get("views") != views or len(attrs.get("view_params") or []) != s or any(
        len(p) != views for p in attrs.get("view_params") or []
    ):
        problems.append(f"{where}: its views / replay records differ from the cache settings ({views} views)")
    if bool(attrs.get("ensemble")) != ensemble or len(attrs.get("data_sha256") or []) != s or len(sizes) != s:
        problems.append(f"{where}: per-sample records are incomplete or the ensemble flag differs")
    rows = {None: s + 1, "point": sum(sizes), "side": s}
    shards: dict[str, str] = {}  # shard key -> array
    for name, kind in arrays.items():
        label = f"{where}, array {name}"
        meta = docs[f"{name}/zarr.json"]
        try:
            if meta.get("node_type") != "array":
                raise ValueError("not an array")
            keys = shard_keys(meta)
            shape = list(meta["shape"])
        except Exception as exc:  # absent, torn or foreign metadata
            problems.append(f"{label} is missing or unreadable ({type(exc).__name__})")
            continue
        if not shape or shape[0] != rows[kind] or (kind is None and len(shape) != 1):
            problems.append(f"{label}: shape {shape}, expected {rows[kind]} rows")
        shards.update({f"{name}/{key}": name for key in keys})
    missing: dict[str, list[str]] = {}
    for key, there in files.exists(list(shards)).items():
        if not there:
            missing.setdefault(shards[key], []).append(key)
    problems += [f"{where}, array {name}: {len(keys)} shard file(s) missing (e.g. {keys[0]})"
                 for name, keys in missing.items()]  # fmt: skip
    return problems


def read_sequence_attrs(root: zarr.Group, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Attributes of the sequence groups `names` (their documents read in bulk), skipping
    unreadable ones (a torn document is an uncommitted sequence)."""
    docs = StoreFiles(root.store, root.path).read_json([f"{name}/zarr.json" for name in names])
    out = {}
    for name in names:
        doc = docs[f"{name}/zarr.json"]
        if isinstance(doc, dict) and doc.get("node_type") == "group":
            out[name] = dict(doc.get("attributes") or {})
    return out
