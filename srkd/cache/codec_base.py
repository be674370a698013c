"""What every cache codec shares: the encoded-array layout, the `Codec` interface and the numeric
helpers the codecs build on (`srkd.cache.codecs` holds the codecs themselves and `CodecSpec`)."""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from srkd.errors import CacheError, ConfigError

if TYPE_CHECKING:
    from srkd.cache.codecs import CodecSpec

JSONScalar = bool | int | float | str
"""A codec parameter value (stored as plain JSON)."""

_FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclasses.dataclass(frozen=True)
class ArrayLayout:
    """Storage of one encoded array: trailing shape (after N for point arrays), dtype, and
    whether Blosc's byte shuffle helps (multi-byte dtypes)."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def shuffle(self) -> str:
        return "shuffle" if np.dtype(self.dtype).itemsize > 1 else "noshuffle"


@dataclasses.dataclass
class Encoded:
    """One entry's encoded arrays: `point` (each (N, ...)) and `side` (small, read whole)."""

    point: dict[str, np.ndarray]
    side: dict[str, np.ndarray]


class Codec(ABC):
    """Encode/decode one entry of teacher outputs. Subclasses are pure numpy."""

    def __init__(self, spec: CodecSpec, num_classes: int | None = None) -> None:
        self.spec = spec
        self.num_classes = num_classes
        """K of the entries this codec decodes (a codec that drops classes needs it to decode)."""
        self.clevel = int(spec.options["clevel"])
        if not 0 <= self.clevel <= 9:
            raise ConfigError(f"codec {spec}: clevel must be in 0..9, got {self.clevel}")

    @abstractmethod
    def point_layout(self, num_classes: int, feature_dim: int) -> dict[str, ArrayLayout]:
        """Per-point arrays: name -> layout of one row."""

    def side_layout(self, num_classes: int, feature_dim: int) -> dict[str, ArrayLayout]:
        """Per-entry arrays: name -> full layout."""
        return {}

    @abstractmethod
    def encode(self, logits: np.ndarray, feature: np.ndarray) -> Encoded:
        """logits float32 (N, K), feature float32 (N, D), both finite -> Encoded."""

    @abstractmethod
    def decode(
        self, point: Mapping[str, np.ndarray], side: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the point arrays (M, ...) plus side arrays -> (logits (M, K), feature (M, D)),
        both float32."""


def to_float16(values: np.ndarray, what: str) -> np.ndarray:
    if values.size and float(np.max(np.abs(values))) > _FLOAT16_MAX:
        raise CacheError(
            f"{what} exceeds the float16 range (|x| > {_FLOAT16_MAX:g}); "
            "use the 'lossless' cache codec for this teacher"
        )
    return values.astype(np.float16)



def principal_axes(direction: np.ndarray, max_rows: int = 32768) -> np.ndarray:
    """Orthonormal basis (D, D) float32 of the rows' principal axes, largest variance first.

    Deterministic: rows are sampled at an even stride and each axis' sign is fixed so that its
    largest-magnitude component is positive (a clean rebuild reproduces the same codes).
    """
    n, d = direction.shape
    if n == 0:
        return np.eye(d, dtype=np.float32)
    rows = direction[:: max(1, math.ceil(n / max_rows))].astype(np.float64)
    _, vectors = np.linalg.eigh(rows.T @ rows)
    vectors = vectors[:, ::-1]
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(d)])
    return (vectors * np.where(signs == 0, 1.0, signs)).astype(np.float32)
