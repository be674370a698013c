"""One cache entry's arrays on disk: how `<scene>/<entry>/<array>` is written (chunks, Blosc-zstd,
crc32c, dimension names and decode attributes) and read back whole, with damage reported as
CacheError naming the scene and array; `measure_codec` (a codec's size and errors through this
storage, used by bench/cache_codec.py)."""

from __future__ import annotations

import numpy as np
import zarr
import zarr.codecs as zc
from zarr.core.sync import sync

from srkd.cache.annotations import annotate
from srkd.cache.codecs import (
    Codec,
    CodecSpec,
    Encoded,
    affinity_error,
    make_codec,
    softmax_kl,
)
from srkd.errors import CacheError, ConfigError

CHUNK_ROWS = 131072
"""Rows per chunk of a per-point array: >= 1 MB for the code arrays of a 20-class/64-d entry, and
one to a few chunks per typical scene (readers load whole entries)."""


def _array_codecs(layout_shape: tuple[int, ...], dtype: str, shuffle: str, clevel: int, point: bool):
    filters = [zc.TransposeCodec(order=(1, 0))] if point and len(layout_shape) == 1 else []
    compressors = [
        zc.BloscCodec(cname="zstd", clevel=int(clevel), shuffle=shuffle, typesize=int(np.dtype(dtype).itemsize)),
        zc.Crc32cCodec(),  # a damaged chunk fails loudly instead of decoding to garbage
    ]
    return filters, compressors


def write_entry(group: zarr.Group, entry: str, codec: Codec, encoded: Encoded) -> None:
    """Write one entry's encoded arrays as `<group>/<entry>/<name>`, each with its dimension
    names and decode attributes (`srkd.cache.annotations`)."""
    sub = group.create_group(entry, overwrite=True)
    for kind, arrays in (("point", encoded.point), ("side", encoded.side)):
        for name, data in arrays.items():
            data = np.ascontiguousarray(data)
            point = kind == "point"
            filters, compressors = _array_codecs(data.shape[1:], data.dtype.str, _shuffle(data), codec.clevel, point)
            chunks = (min(max(len(data), 1), CHUNK_ROWS), *data.shape[1:]) if point else data.shape
            fill = float("nan") if data.dtype.kind == "f" else 0
            dims, attrs = annotate(codec, kind, name, data.ndim)
            arr = sub.create_array(
                name, shape=data.shape, dtype=data.dtype, chunks=tuple(max(c, 1) for c in chunks),
                filters=filters, compressors=compressors, fill_value=fill, attributes=attrs,
                dimension_names=dims, config={"write_empty_chunks": True},  # completeness = every chunk file
            )  # fmt: skip
            arr[...] = data


def missing_chunk_keys(arr: zarr.Array) -> list[str]:
    """Store keys of `arr`'s chunks (shards, for a sharded array) that are absent.

    The store's listing (`nchunks_initialized`) answers first; only when it reports chunks missing
    is every chunk key asked for directly (`Store.exists`), and only keys absent both ways are
    returned. A listing alone can be wrong (zarr 3.1's LocalStore mangles keys under a root that
    recurs inside them), and its verdict would call a healthy scene damaged."""
    if arr.nchunks_initialized == arr.nchunks:
        return []
    keys = [f"{arr.path}/{arr.metadata.encode_chunk_key(c)}" for c in arr.metadata.chunk_grid.all_chunk_coords(arr.shape)]
    return [key for key in keys if not sync(arr.store.exists(key))]


REBUILD_ADVICE = (
    "mark it for rebuilding with `srkd inspect-cache CACHE --verify --repair`, then re-run "
    "`srkd cache-teacher` with the cache's settings"
)
"""What to do about a damaged scene (nothing is deleted by hand: repair only clears its marker)."""


def _shuffle(data: np.ndarray) -> str:
    return "shuffle" if data.dtype.itemsize > 1 else "noshuffle"


def read_entry(
    group: zarr.Group, entry: str, codec: Codec, scene: str, num_classes: int | None = None,
    feature_dim: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Read one entry's arrays whole: (point arrays, side arrays).

    Raises CacheError naming the scene and array when an array is missing, has a missing chunk
    (zarr would silently return fill values), or fails to decode (bad checksum, truncation).
    """
    point: dict[str, np.ndarray] = {}
    side: dict[str, np.ndarray] = {}
    k = num_classes if num_classes is not None else 0
    d = feature_dim if feature_dim is not None else 0
    layouts = [("point", codec.point_layout(k, d)), ("side", codec.side_layout(k, d))]
    for kind, layout in layouts:
        for name, lay in layout.items():
            where = f"scene {scene!r}, array {entry}/{name}"
            try:
                arr = group[f"{entry}/{name}"]
                missing = missing_chunk_keys(arr)
                if missing:
                    raise CacheError(
                        f"{where}: {len(missing)} chunk file(s) are missing (e.g. {missing[0]}); the "
                        f"scene is damaged: {REBUILD_ADVICE}"
                    )
                data = arr[...]
            except CacheError:
                raise
            except Exception as exc:  # zarr/blosc/crc raise many types; all mean "unreadable"
                raise CacheError(
                    f"{where} cannot be read ({type(exc).__name__}: {exc}); the scene is damaged: "
                    f"{REBUILD_ADVICE}"
                ) from exc
            if str(data.dtype) != lay.dtype or (
                num_classes is not None and feature_dim is not None
                and (data.shape[1:] if kind == "point" else data.shape) != lay.shape
            ):  # fmt: skip
                raise CacheError(f"{where} has shape {data.shape} {data.dtype}, expected rows of {lay.shape} {lay.dtype}")
            (point if kind == "point" else side)[name] = data
    rows = {len(a) for a in point.values()}
    if len(rows) > 1:
        raise CacheError(f"scene {scene!r}, entry {entry}: point arrays disagree on the point count {sorted(rows)}")
    return point, side


def entry_nbytes(group: zarr.Group, entry: str) -> int:
    """Stored bytes (chunks + array metadata) of one entry's arrays."""
    sub = group[entry]
    return int(sum(arr.nbytes_stored() for _, arr in sub.arrays()))


def measure_codec(
    codec: Codec | CodecSpec,
    logits: np.ndarray,
    feature: np.ndarray,
    T: float = 2.0,
    n_affinity: int = 4096,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """Encode one entry, store it (in memory, exactly as on disk) and decode it back.

    Args:
        codec: codec or its spec.
        logits: float32 (N, K) exact teacher logits.
        feature: float32 (N, D) exact teacher features.
        T: softmax temperature of the KL error (the distillation temperature).
        n_affinity: points sampled (without replacement) for the affinity error.
        rng: generator for that sample (default: seeded 0).
    Returns:
        dict with bytes_per_point (stored bytes of every array incl. its metadata, side arrays), raw_bytes_per_point
        (encoded, uncompressed), kl_mean and kl_max (nats), affinity_mae, feature_rel_mse
        (||f - f'||^2 / ||f||^2 averaged over points), argmax_agreement, encode_s, decode_s.
    """
    import time

    logits = np.ascontiguousarray(logits, dtype=np.float32)
    codec = make_codec(codec if isinstance(codec, CodecSpec) else codec.spec, logits.shape[1])
    rng = np.random.default_rng(0) if rng is None else rng
    feature = np.ascontiguousarray(feature, dtype=np.float32)
    n = len(logits)
    if n == 0 or feature.shape[0] != n:
        raise ConfigError(f"measure_codec needs matching non-empty inputs, got {logits.shape} and {feature.shape}")
    store = zarr.storage.MemoryStore()
    group = zarr.create_group(store)
    start = time.perf_counter()
    encoded = codec.encode(logits, feature)
    write_entry(group, "entry", codec, encoded)
    encode_s = time.perf_counter() - start
    stored = entry_nbytes(group, "entry")
    start = time.perf_counter()
    point, side = read_entry(group, "entry", codec, "measure", logits.shape[1], feature.shape[1])
    dec_logits, dec_feature = codec.decode(point, side)
    decode_s = time.perf_counter() - start
    raw = sum(a.nbytes for a in encoded.point.values()) + sum(a.nbytes for a in encoded.side.values())
    kl = softmax_kl(logits, dec_logits, T)
    pick = rng.choice(n, size=min(n_affinity, n), replace=False)
    err = dec_feature.astype(np.float64) - feature
    denom = np.maximum((feature.astype(np.float64) ** 2).sum(axis=1), 1e-30)
    return {
        "bytes_per_point": stored / n,
        "raw_bytes_per_point": raw / n,
        "kl_mean": float(kl.mean()),
        "kl_max": float(kl.max()),
        "affinity_mae": affinity_error(feature[pick], dec_feature[pick]),
        "feature_rel_mse": float(((err**2).sum(axis=1) / denom).mean()),
        "argmax_agreement": float((logits.argmax(1) == dec_logits.argmax(1)).mean()),
        "encode_s": encode_s,
        "decode_s": decode_s,
    }
