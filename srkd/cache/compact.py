"""The ``compact`` codec: logits as small residuals of a prediction from the stored feature, and
features as fixed-step int8 unit directions (optionally in the entry's principal axes).

Features (N, D): the float16 L2 norm per point and the unit direction quantised with a fixed step
`feature_step` to int8, in the teacher's channels (`feature_rank` 0: a ReLU feature's many exact
zeros then code without error) or as coordinates in the entry's first `feature_rank` principal
axes (a side array (D, r)). Decoding re-normalises the direction and multiplies by the norm.
Cosine affinities, the relation loss's input, see only the direction.

Logits (N, K), `top_k` 0 (residual): the cached feature is the teacher's last feature before its
linear head, so the logits are nearly a linear function of it. Per entry, a least-squares head
H (D + 1, K) is fitted from the DECODED feature (with a constant column) to the logits centred per
point (softmax ignores a per-point shift) and floored at `logit_range` nats below each point's
top (weights below e^-12 at T = 2, never worth codes); the residual is stored as int8 codes of
step `logit_step`:

    logits[point] = [feature_dec[point], 1] @ H + logit_step * logits_residual[point]

The residuals are mostly 0 and +-1, which zstd stores in a few bits. Errors stay within
logit_step / 2 per logit wherever the residual fits the int8 range.

Logits, `top_k` k > 0 (top-k with a floor, as offline soft-label stores keep them, e.g. FKD, Shen
and Xing, ECCV 2022): the k largest classes by index (uint8; uint16 for K > 256), the next k - 1
as uint8 codes of (top - logit) / logit_step, and one per-point floor for every other class,
chosen so that they keep their softmax weight at `floor_temperature`:

    floor = -T log( mean over the other classes of exp(-(top - l) / T) )     (nats below the top)

It is cheap but coarse for a teacher whose distribution at T = 2 is broad (the bench table).
"""

from __future__ import annotations

import math

import numpy as np

from typing import TYPE_CHECKING

from srkd.cache.codec_base import ArrayLayout, Codec, Encoded, principal_axes, to_float16
from srkd.errors import ConfigError

if TYPE_CHECKING:
    from srkd.cache.codecs import CodecSpec


class CompactCodec(Codec):
    """Residual (or top-k + floor) logits; float16 norm + int8 direction for features."""

    _BASIS_SAMPLE = 32768  # rows the principal axes are estimated from (evenly spaced)

    def __init__(self, spec: CodecSpec, num_classes: int | None = None) -> None:
        super().__init__(spec, num_classes)
        opts = spec.options
        self.top_k = int(opts["top_k"])
        self.logit_step = float(opts["logit_step"])
        self.logit_range = float(opts["logit_range"])
        self.floor_temperature = float(opts["floor_temperature"])
        self.feature_rank = int(opts["feature_rank"])
        self.feature_step = float(opts["feature_step"])
        if self.top_k < 0:
            raise ConfigError(f"codec {spec}: top_k must be >= 0 (0: every class, as residuals)")
        if not 0 < self.logit_step <= 1:
            raise ConfigError(f"codec {spec}: logit_step must be in (0, 1] nats")
        if not self.logit_range > 0 or not self.floor_temperature > 0:
            raise ConfigError(f"codec {spec}: logit_range and floor_temperature must be > 0")
        if self.feature_rank < 0:
            raise ConfigError(f"codec {spec}: feature_rank must be >= 0 (0: the teacher's channels)")
        if not 1.0 / 127.0 <= self.feature_step <= 1.0:  # unit-vector coordinates lie in [-1, 1]
            raise ConfigError(f"codec {spec}: feature_step must be in [1/127, 1]")

    def _k(self, num_classes: int) -> int:
        """Classes kept by index; 0 = every class, as residuals."""
        return 0 if self.top_k == 0 or self.top_k >= num_classes else self.top_k

    def _r(self, feature_dim: int) -> int:
        """Principal axes kept; 0 = none (the teacher's channels)."""
        return 0 if self.feature_rank == 0 else min(self.feature_rank, feature_dim)

    def point_layout(self, num_classes: int, feature_dim: int) -> dict[str, ArrayLayout]:
        k = self._k(num_classes)
        features = {"feature_code": ArrayLayout((self._r(feature_dim) or feature_dim,), "int8"),
                    "feature_norm": ArrayLayout((), "float16")}  # fmt: skip
        if k == 0:
            return {"logits_residual": ArrayLayout((num_classes,), "int8"), **features}
        return {
            "logits_index": ArrayLayout((k,), "uint8" if num_classes <= 256 else "uint16"),
            "logits_code": ArrayLayout((k - 1,), "uint8"),
            "logits_floor": ArrayLayout((), "uint8"),
            **features,
        }

    def side_layout(self, num_classes: int, feature_dim: int) -> dict[str, ArrayLayout]:
        r = self._r(feature_dim)
        out = {"feature_basis": ArrayLayout((feature_dim, r), "float32")} if r else {}
        if self._k(num_classes) == 0:
            out["logits_head"] = ArrayLayout((feature_dim + 1, num_classes), "float32")
        return out

    # -- features
    def _encode_features(self, feature: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        norm64 = np.linalg.norm(feature.astype(np.float64), axis=1)
        norm = to_float16(norm64, "teacher feature norm")
        direction = feature / np.where(norm64 > 0, norm64, 1.0)[:, None]
        r = self._r(feature.shape[1])
        side = {}
        if r:
            basis = principal_axes(direction, self._BASIS_SAMPLE)[:, :r]
            direction = direction @ basis
            side["feature_basis"] = np.ascontiguousarray(basis, np.float32)
        code = np.clip(np.rint(direction / self.feature_step), -127, 127).astype(np.int8)
        return {"feature_code": code, "feature_norm": norm}, side

    def _decode_features(self, point, side) -> np.ndarray:  # type: ignore[no-untyped-def]
        direction = point["feature_code"].astype(np.float32) * np.float32(self.feature_step)
        if "feature_basis" in side:
            direction = direction @ side["feature_basis"].T
        length = np.sqrt(np.einsum("ij,ij->i", direction, direction))[:, None]
        return (direction * (point["feature_norm"].astype(np.float32)[:, None] / np.where(length > 0, length, 1.0))).astype(np.float32)

    # -- logits
    def _encode_residual(self, logits: np.ndarray, feature_dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(int8 residual codes (N, K), head (D + 1, K) float32)."""
        n, k = logits.shape
        top = logits.max(axis=1, keepdims=True) if k else np.zeros((n, 1), np.float32)
        target = np.maximum(logits, top - np.float32(self.logit_range)).astype(np.float64)
        target -= target.mean(axis=1, keepdims=True)
        design = _design(feature_dec)
        stride = max(1, math.ceil(n / self._BASIS_SAMPLE))
        rows, fit = design[::stride].astype(np.float64), target[::stride]
        # least squares by the normal equations (a tiny ridge keeps them solvable for constant
        # or all-zero channels); numpy's SVD-based lstsq is 100x slower at this shape
        gram = rows.T @ rows + 1e-6 * np.eye(rows.shape[1])
        head = np.linalg.solve(gram, rows.T @ fit).astype(np.float32)
        residual = target - (design @ head)
        return np.clip(np.rint(residual / self.logit_step), -127, 127).astype(np.int8), head

    def _code(self, below_top: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(below_top / np.float32(self.logit_step)), 0, 255).astype(np.uint8)

    def _encode_top_k(self, logits: np.ndarray, k: int) -> dict[str, np.ndarray]:
        n, num_classes = logits.shape
        order = np.argsort(-logits, axis=1, kind="stable")[:, :k]  # descending; ties: lower class first
        top = np.take_along_axis(logits, order[:, :1], axis=1)
        kept = np.take_along_axis(logits, order, axis=1)
        t = np.float64(self.floor_temperature)
        weight = np.exp(-(top - logits).astype(np.float64) / t).sum(axis=1)
        weight -= np.exp(-(top - kept).astype(np.float64) / t).sum(axis=1)
        floor = -t * np.log(np.maximum(weight, 1e-300) / (num_classes - k))
        return {"logits_index": order.astype(np.uint8 if num_classes <= 256 else np.uint16),
                "logits_code": self._code(top - kept[:, 1:]), "logits_floor": self._code(floor.astype(np.float32))}  # fmt: skip

    def encode(self, logits: np.ndarray, feature: np.ndarray) -> Encoded:
        point, side = self._encode_features(feature)
        k = self._k(logits.shape[1])
        if k:
            return Encoded({**self._encode_top_k(logits, k), **point}, side)
        residual, head = self._encode_residual(logits, self._decode_features(point, side))
        return Encoded({"logits_residual": residual, **point}, {**side, "logits_head": head})

    def decode(self, point, side):  # type: ignore[no-untyped-def]
        feature = self._decode_features(point, side)
        step = np.float32(self.logit_step)
        if "logits_residual" in point:
            logits = _design(feature) @ side["logits_head"] + step * point["logits_residual"].astype(np.float32)
            return logits.astype(np.float32), feature
        if self.num_classes is None:
            raise ConfigError("the compact codec with top_k decodes only with the cache's class count "
                              "(make_codec(spec, num_classes))")  # fmt: skip
        index = point["logits_index"].astype(np.intp)
        logits = np.repeat(-step * point["logits_floor"].astype(np.float32)[:, None], self.num_classes, axis=1)
        kept = np.concatenate([np.zeros((len(index), 1), np.float32), -step * point["logits_code"].astype(np.float32)], axis=1)
        np.put_along_axis(logits, index, kept, axis=1)
        return logits, feature


def _design(feature: np.ndarray) -> np.ndarray:
    """[feature, 1] (N, D + 1) float32: the inputs of the fitted logits head."""
    return np.concatenate([feature.astype(np.float32), np.ones((len(feature), 1), np.float32)], axis=1)
