"""How teacher outputs are turned into compact arrays (and back), and what that costs in accuracy.

A codec maps one cache entry (one scene, one view) of teacher outputs,
`logits` float32 (N, K) and `feature` float32 (N, D), to named arrays:

- *point arrays*: first dimension N, one row per original point (these are what `gather` indexes);
- *side arrays*: small per-entry arrays (e.g. a rotation basis), read whole.

The store layer (`srkd.cache.schema`) writes each array as its own Zarr v3 array compressed with
Blosc-zstd; a codec only decides the numbers and dtypes. Codecs:

- ``compact`` (default; `srkd.cache.compact`): logits as int8 residuals of a per-entry linear head
  on the decoded feature, features as int8 coordinates in the entry's principal axes; about half
  the bytes of ``int8`` within the same error bounds.
- ``int8``: logits as per-point affine codes, ``l ~= offset + scale * code`` with a uint8
  code in [0, logit_levels] and float16 scale/offset, spanning [max - logit_range, max] (logits
  further below the point's maximum are stored at that floor: their softmax weight is below
  e^-24 of the top class at T = 1, and spending codes on them would coarsen the ones that
  matter); features as a float16 norm plus the unit
  direction quantised with a fixed step (int8), optionally (``rotate``, off by default: it
  saved nothing on the benchmark's outputs and costs a D x D matmul per gather) after rotating
  into the entry's own principal axes, so low-variance axes quantise to near-constant codes. Softmax and cosine affinities, the two things distillation consumes, are invariant to
  the parts this drops (a per-point logit shift; the feature scale is kept separately).
- ``float16``: both arrays as float16.
- ``lossless``: both arrays as float32 (only compression).

`srkd.cache.arrays.measure_codec` reports bytes per point on disk and the two errors the project bounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from srkd.cache.codec_base import ArrayLayout, Codec, Encoded, JSONScalar, principal_axes, to_float16
from srkd.cache.compact import CompactCodec
from srkd.errors import CacheError, ConfigError
from srkd.types import DEFAULT_CODEC

_DEFAULT_PARAMS: dict[str, dict[str, JSONScalar]] = {
    # Defaults measured on a trained teacher's outputs (bench/cache_codec.py, docs/cache.md "Codecs"):
    # a 1/40 feature step gives ~39 B/point with KL ~2e-5 nats and affinity error ~4e-3.
    "int8": {"logit_levels": 127, "logit_range": 24.0, "feature_step": 1.0 / 40.0, "rotate": False, "clevel": 5},
    "float16": {"clevel": 5},
    "lossless": {"clevel": 5},
    # Measured on the demo teacher over synthetic rooms and real scans (bench/cache_codec.py,
    # docs/cache-at-scale.md): ~20 B/point, KL ~5e-4 nats at T = 2, affinity error ~7e-3.
    "compact": {"top_k": 0, "logit_step": 0.3, "logit_range": 24.0, "floor_temperature": 2.0,
                "feature_rank": 32, "feature_step": 1.0 / 40.0, "clevel": 5},
}
"""Codec name -> its parameters with defaults (every parameter is stored, so fingerprints are
explicit about what was used)."""

@dataclasses.dataclass(frozen=True)
class CodecSpec:
    """A codec name plus its parameters (sorted (key, value) pairs of JSON scalars).

    Build one with `CodecSpec.create("int8", feature_step=1/32)`: unknown names or parameters
    raise ConfigError, and missing parameters take their defaults.
    """

    name: str = DEFAULT_CODEC
    params: tuple[tuple[str, JSONScalar], ...] = tuple(sorted(_DEFAULT_PARAMS[DEFAULT_CODEC].items()))

    @classmethod
    def create(cls, name: str = DEFAULT_CODEC, **params: Any) -> CodecSpec:
        if name not in _DEFAULT_PARAMS:
            raise ConfigError(f"unknown cache codec {name!r}; choose one of {sorted(_DEFAULT_PARAMS)}")
        defaults = _DEFAULT_PARAMS[name]
        unknown = set(params) - set(defaults)
        if unknown:
            raise ConfigError(
                f"codec {name!r} has no parameter(s) {sorted(unknown)}; it takes {sorted(defaults)}"
            )
        merged: dict[str, JSONScalar] = {}
        for key, default in defaults.items():
            value = params.get(key, default)
            # Zarr/JSON need plain Python scalars, never numpy scalars.
            merged[key] = type(default)(value.item() if isinstance(value, np.generic) else value)
        spec = cls(name, tuple(sorted(merged.items())))
        make_codec(spec)  # validate the values now, not at the first write
        return spec

    @property
    def options(self) -> dict[str, JSONScalar]:
        return dict(self.params)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CodecSpec:
        try:
            return cls.create(str(obj["name"]), **dict(obj.get("params", {})))
        except (KeyError, TypeError) as exc:
            raise CacheError(f"malformed codec record {obj!r} in cache attributes") from exc

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.name}({args})"


class LosslessCodec(Codec):
    """float32 logits and features; compression only."""

    dtype = "float32"

    def point_layout(self, num_classes: int, feature_dim: int) -> dict[str, ArrayLayout]:
        return {
            "logits": ArrayLayout((num_classes,), self.dtype),
            "feature": ArrayLayout((feature_dim,), self.dtype),
        }

    def encode(self, logits: np.ndarray, feature: np.ndarray) -> Encoded:
        return Encoded({"logits": logits.astype(np.float32), "feature": feature.astype(np.float32)}, {})

    def decode(self, point, side):  # type: ignore[no-untyped-def]
        return point["logits"].astype(np.float32), point["feature"].astype(np.float32)


class Float16Codec(LosslessCodec):
    """float16 logits and features (about 3 significant decimal digits)."""

    dtype = "float16"

    def encode(self, logits: np.ndarray, feature: np.ndarray) -> Encoded:
        return Encoded(
            {"logits": to_float16(logits, "teacher logits"),
             "feature": to_float16(feature, "teacher feature")},
            {},
        )  # fmt: skip


class Int8Codec(Codec):
    """Per-point affine uint8 logits; float16 norm + fixed-step int8 direction for features."""

    # Principal axes are estimated from at most this many evenly spaced points: enough for a
    # D x D covariance, and the cost stays flat for large scenes.
    _BASIS_SAMPLE = 32768

    def __init__(self, spec: CodecSpec, num_classes: int | None = None) -> None:
        super().__init__(spec, num_classes)
        opts = spec.options
        self.logit_levels = int(opts["logit_levels"])
        self.logit_range = float(opts["logit_range"])
        self.feature_step = float(opts["feature_step"])
        self.rotate = bool(opts["rotate"])
        if not 1 <= self.logit_levels <= 255:
            raise ConfigError(f"codec {spec}: logit_levels must be in 1..255 (a uint8 code)")
        if not self.logit_range >= 0:  # 0 = no floor; `not >=` also rejects NaN
            raise ConfigError(f"codec {spec}: logit_range must be >= 0 (0 keeps the full range)")
        # Unit-direction components lie in [-1, 1], so a step >= 1/127 always fits an int8.
        if not 1.0 / 127.0 <= self.feature_step <= 1.0:
            raise ConfigError(f"codec {spec}: feature_step must be in [1/127, 1]")

    def point_layout(self, num_classes: int, feature_dim: int) -> dict[str, ArrayLayout]:
        return {
            "logits_code": ArrayLayout((num_classes,), "uint8"),
            "logits_scale": ArrayLayout((), "float16"),
            "logits_offset": ArrayLayout((), "float16"),
            "feature_code": ArrayLayout((feature_dim,), "int8"),
            "feature_norm": ArrayLayout((), "float16"),
        }

    def side_layout(self, num_classes: int, feature_dim: int) -> dict[str, ArrayLayout]:
        return {"feature_basis": ArrayLayout((feature_dim, feature_dim), "float32")} if self.rotate else {}

    def encode(self, logits: np.ndarray, feature: np.ndarray) -> Encoded:
        lo = logits.min(axis=1) if logits.shape[1] else np.zeros(len(logits), np.float32)
        hi = logits.max(axis=1) if logits.shape[1] else lo
        if self.logit_range > 0:
            lo = np.maximum(lo, hi - np.float32(self.logit_range))
        offset = to_float16(lo, "teacher logits")
        # Quantise against the float16-rounded scale/offset actually stored, so decode matches.
        scale = to_float16((hi - lo) / self.logit_levels, "teacher logit range")
        off32 = offset.astype(np.float32)[:, None]
        sc32 = scale.astype(np.float32)[:, None]
        safe = np.where(sc32 > 0, sc32, 1.0)
        code = np.clip(np.rint((logits - off32) / safe), 0, self.logit_levels).astype(np.uint8)

        norm64 = np.linalg.norm(feature.astype(np.float64), axis=1)
        norm = to_float16(norm64, "teacher feature norm")
        direction = feature / np.where(norm64 > 0, norm64, 1.0)[:, None]
        side: dict[str, np.ndarray] = {}
        if self.rotate:
            basis = principal_axes(direction, self._BASIS_SAMPLE)
            direction = direction @ basis
            side["feature_basis"] = basis
        fcode = np.clip(np.rint(direction / self.feature_step), -127, 127).astype(np.int8)
        return Encoded(
            {"logits_code": code, "logits_scale": scale, "logits_offset": offset,
             "feature_code": fcode, "feature_norm": norm},
            side,
        )  # fmt: skip

    def decode(self, point, side):  # type: ignore[no-untyped-def]
        scale = point["logits_scale"].astype(np.float32)[:, None]
        logits = point["logits_offset"].astype(np.float32)[:, None] + scale * point["logits_code"]
        direction = point["feature_code"].astype(np.float32) * np.float32(self.feature_step)
        if self.rotate:
            direction = direction @ side["feature_basis"].T
        length = np.sqrt(np.einsum("ij,ij->i", direction, direction))[:, None]  # faster than norm()
        # Re-normalise: quantisation shortens/lengthens the direction; the norm is stored apart.
        feature = direction * (point["feature_norm"].astype(np.float32)[:, None] / np.where(length > 0, length, 1.0))
        return logits.astype(np.float32), feature.astype(np.float32)


def make_codec(spec: CodecSpec, num_classes: int | None = None) -> Codec:
    """The codec object for a spec (ConfigError for bad names/values); `num_classes` K is needed
    to decode the ``compact`` codec with top_k."""
    if spec.name not in _CODECS:
        raise ConfigError(f"unknown cache codec {spec.name!r}; choose one of {sorted(_CODECS)}")
    return _CODECS[spec.name](spec, num_classes)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_kl(exact_logits: np.ndarray, decoded_logits: np.ndarray, temperature: float = 2.0) -> np.ndarray:
    """Per-point KL(p || q) in nats, p = softmax(exact / T), q = softmax(decoded / T); (N,) float64."""
    log_p = _log_softmax(exact_logits / temperature)
    log_q = _log_softmax(decoded_logits / temperature)
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=1)


def affinity_error(exact: np.ndarray, decoded: np.ndarray) -> float:
    """Mean |A - A'| over all pairs, A = F F^T of L2-normalised rows of F (M, D)."""

    def unit(f: np.ndarray) -> np.ndarray:
        f = f.astype(np.float64)
        n = np.linalg.norm(f, axis=1, keepdims=True)
        return f / np.where(n > 0, n, 1.0)

    a, b = unit(exact), unit(decoded)
    return float(np.abs(a @ a.T - b @ b.T).mean())


_CODECS: dict[str, type[Codec]] = {"int8": Int8Codec, "float16": Float16Codec, "lossless": LosslessCodec,
                                   "compact": CompactCodec}  # fmt: skip
