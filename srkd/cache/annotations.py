"""Dimension names and decode attributes of every array a cache entry holds.

They make a cache self-describing for the wider ecosystem: Zarr v3 `dimension_names` are what
xarray needs to open a group (`xr.open_zarr(cache, group="<scene>/view_0")`,
`xr.open_datatree(cache, engine="zarr")`), and the `srkd_decode` attribute of the arrays that
decode to logits or features says, at array level, which arrays take part and in which order
the float32 arithmetic runs (`srkd.cache.codecs`, the decoders srkd itself uses).

Dimension names inside one entry group (one scene, one view):

- ``point``: N, one row per original point of the scene (row i = origin_index i);
- ``class``: K, the cache's classes (root attribute ``srkd_cache.spec.class_names``);
- ``channel``: D, the teacher feature's channels;
- ``axis``: D, the entry's principal axes (int8 codec with ``rotate`` only: its feature codes
  are coordinates in those axes, and ``feature_basis`` (channel, axis) maps them back).

Arrays of different lengths never share a name, and K and D stay apart even when equal.
CF's ``scale_factor``/``add_offset`` are NOT used: they are per-array scalars, while the int8
codec's scale and offset are per-point arrays, so a CF decoder would compute something else.

`upgrade_metadata` adds both to caches written before srkd recorded them, rewriting array
metadata documents (`zarr.json`) only: chunks and the root record, hence the fingerprint, stay
as they were.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.core.buffer import cpu, default_buffer_prototype
from zarr.core.sync import sync

from srkd.cache.codecs import Codec, Int8Codec, make_codec

if TYPE_CHECKING:
    from srkd.cache.compact import CompactCodec
from srkd.errors import CacheError

POINT, CLASS, CHANNEL, AXIS = "point", "class", "channel", "axis"
DECODE = "srkd_decode"
"""Attribute of each array that decodes to a target: {"to", "dtype", "formula", ...names}."""

Annotation = tuple[tuple[str, ...], dict[str, Any]]
"""(dimension names, attributes) of one array."""

_LOGITS_INT8 = (
    "logits[point, class] = float32(logits_offset)[point] "
    "+ float32(logits_scale)[point] * float32(logits_code)[point, class]"
)


def _feature_formula(rotate: bool) -> str:
    rot = " @ float32(feature_basis).T" if rotate else ""
    return (
        f"u = (float32(feature_code) * float32(step)){rot}; "
        "length[point] = sqrt(sum over channel of u * u) (1 where it is 0); "
        "feature[point, channel] = u * (float32(feature_norm)[point] / length[point])"
    )


def _int8(codec: Int8Codec) -> dict[str, Annotation]:
    code_dims = (POINT, AXIS) if codec.rotate else (POINT, CHANNEL)
    feature = {"to": "feature", "dtype": "float32", "formula": _feature_formula(codec.rotate),
               "step": codec.feature_step, "norm": "feature_norm"}  # fmt: skip
    if codec.rotate:
        feature["basis"] = "feature_basis"
    return {
        "logits_code": ((POINT, CLASS), {
            "long_name": "teacher logits: per-point affine uint8 code",
            DECODE: {"to": "logits", "dtype": "float32", "formula": _LOGITS_INT8,
                     "scale": "logits_scale", "offset": "logits_offset"}}),
        "logits_scale": ((POINT,), {"long_name": "per-point step of logits_code (see its srkd_decode)"}),
        "logits_offset": ((POINT,), {"long_name": "per-point value of logits_code 0 (see its srkd_decode)"}),
        "feature_code": (code_dims, {"long_name": "teacher feature: unit direction, int8 code of step `step`",
                                     DECODE: feature}),
        "feature_norm": ((POINT,), {"long_name": "per-point L2 norm of the teacher feature (see feature_code)"}),
        "feature_basis": ((CHANNEL, AXIS), {"long_name": "principal axes of this entry's feature directions"}),
    }  # fmt: skip


def _plain(codec: Codec) -> dict[str, Annotation]:
    stored = codec.point_layout(1, 1)["logits"].dtype
    formula = "stored as float32" if stored == "float32" else f"float32(x) (stored as {stored})"
    return {
        "logits": ((POINT, CLASS), {"long_name": "teacher logits",
                                    DECODE: {"to": "logits", "dtype": "float32", "formula": formula}}),
        "feature": ((POINT, CHANNEL), {"long_name": "teacher feature",
                                       DECODE: {"to": "feature", "dtype": "float32", "formula": formula}}),
    }  # fmt: skip


RANK, TOP = "rank", "top"
_LOGITS_COMPACT = (
    "logits[point, class] = -float32(step) * float32(logits_floor)[point] for every class, then "
    "logits[point, logits_index[point, 0]] = 0 and logits[point, logits_index[point, t]] = "
    "-float32(step) * float32(logits_code)[point, t - 1] for t = 1..top-1 (logits relative to the top class)"
)


def _compact(codec: CompactCodec) -> dict[str, Annotation]:
    feature = {"to": "feature", "dtype": "float32", "step": codec.feature_step, "norm": "feature_norm",
               "basis": "feature_basis",
               "formula": "u = (float32(feature_code) * float32(step)) @ float32(feature_basis).T; "
                          "length[point] = sqrt(sum over channel of u * u) (1 where it is 0); "
                          "feature[point, channel] = u * (float32(feature_norm)[point] / length[point])"}  # fmt: skip
    logits = {"to": "logits", "dtype": "float32", "step": codec.logit_step, "formula": _LOGITS_COMPACT,
              "index": "logits_index", "code": "logits_code", "floor": "logits_floor"}  # fmt: skip
    return {
        "logits_index": ((POINT, TOP), {"long_name": "classes of the top logits, largest first", DECODE: logits}),
        "logits_code": ((POINT, f"{TOP}_below"), {"long_name": "top logits 2..k: uint8 code of (top - logit) / step"}),
        "logits_floor": ((POINT,), {"long_name": "every other class: uint8 code of (top - floor) / step"}),
        "feature_code": ((POINT, RANK), {"long_name": "teacher feature: unit direction in the entry's principal "
                                                      "axes, int8 code of step `step`", DECODE: feature}),
        "feature_norm": ((POINT,), {"long_name": "per-point L2 norm of the teacher feature (see feature_code)"}),
        "feature_basis": ((CHANNEL, RANK), {"long_name": "first principal axes of this entry's feature directions"}),
    }  # fmt: skip


def annotations(codec: Codec) -> dict[str, Annotation]:
    """Array name -> (dimension names, attributes) for every array `codec` may write."""
    from srkd.cache.compact import CompactCodec

    if isinstance(codec, CompactCodec):
        return _compact(codec)
    return _int8(codec) if isinstance(codec, Int8Codec) else _plain(codec)


def annotate(codec: Codec, kind: str, name: str, ndim: int) -> Annotation:
    """Dimension names and attributes (with {"kind": "point" | "side"}) of array `name` of
    dimensionality `ndim`. An array the codec does not describe gets srkd-internal names
    (``<name>_dim<i>``), which never collide with another array's."""
    dims, attrs = annotations(codec).get(name, ((), {}))
    if len(dims) != ndim:
        dims = tuple(POINT if i == 0 and kind == "point" else f"{name}_dim{i}" for i in range(ndim))
    return dims, {"kind": kind, **attrs}


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
    from srkd.cache.schema import describe, open_store, read_root

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
