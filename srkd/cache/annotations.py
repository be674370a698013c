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

`srkd.cache.upgrade.upgrade_metadata` adds both to caches written before srkd recorded them, rewriting array
metadata documents (`zarr.json`) only: chunks and the root record, hence the fingerprint, stay
as they were.
"""

from __future__ import annotations

from typing import Any

from srkd.cache.codec_base import Codec
from srkd.cache.codecs import Int8Codec
from srkd.cache.compact import CompactCodec

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
