"""The teacher cache: a Zarr v3 store of per-original-point teacher logits and features.

numpy, zarr, numcodecs and dask only (no torch), so the cache can be read and inspected anywhere.
See docs/cache.md for the on-disk schema.
"""

from srkd.cache.arrays import measure_codec
from srkd.cache.codecs import CodecSpec, make_codec
from srkd.cache.reader import CacheReader
from srkd.cache.schema import SCHEMA_VERSION, CacheSpec, ViewTargets, ensemble_of
from srkd.cache.writer import CacheWriter

__all__ = [
    "SCHEMA_VERSION",
    "CacheReader",
    "CacheSpec",
    "CacheWriter",
    "CodecSpec",
    "ViewTargets",
    "ensemble_of",
    "make_codec",
    "measure_codec",
]
