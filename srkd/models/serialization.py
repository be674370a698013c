"""Space-filling-curve serialization of voxelised point clouds (Point Transformer V3, Sec. 3.2).

A point cloud is turned into a 1-D sequence by sorting its voxels along a space-filling curve;
PTv3 then runs attention over windows ("patches") of consecutive points of that sequence.
Each point gets, per curve, the 64-bit code

    code = (batch << 3 * depth) | curve(grid_coord)

so sorting by code keeps the samples of a batch contiguous and in batch order, and orders the
points of each sample along the curve. `depth` is the number of bits per axis: the cube of side
2**depth voxels must hold every grid coordinate.

Curves (the four used by Pointcept's PT-v3m1):
- "z":       Morton order; bit i of x, y, z lands at code bit 3i+2, 3i+1, 3i (x most significant).
- "hilbert": Hilbert order by Skilling's transpose algorithm ("Programming the Hilbert curve",
             AIP Conf. Proc. 707, 2004), axis 0 (x) most significant within each 3-bit digit.
- "z-trans", "hilbert-trans": the same curves with x and y swapped before encoding, so a second
             pass sees other neighbours.

A useful property both curves share: `code >> 3` is the code of the parent cell one level up
(2x2x2 voxels merged), which is what serialized pooling uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from srkd.errors import ConfigError, DataError
from srkd.runtime import curves

ORDERS = curves.ORDERS
MAX_DEPTH = curves.MAX_DEPTH  # 3 * 16 = 48 bits of curve code leave 15 bits for the batch index


def _check_grid(grid_coord: torch.Tensor, depth: int) -> torch.Tensor:
    if grid_coord.ndim != 2 or grid_coord.shape[1] != 3:
        raise DataError(f"grid_coord must have shape (N, 3), got {tuple(grid_coord.shape)}")
    if grid_coord.dtype.is_floating_point:
        raise DataError(f"grid_coord must be an integer tensor, got {grid_coord.dtype}")
    if not 1 <= depth <= MAX_DEPTH:
        raise ConfigError(f"serialization depth must be in [1, {MAX_DEPTH}], got {depth}")
    g = grid_coord.long()
    if g.numel() and (int(g.min()) < 0 or int(g.max()) >= (1 << depth)):
        raise DataError(
            f"grid_coord values must lie in [0, {1 << depth}) for depth {depth}; got range "
            f"[{int(g.min())}, {int(g.max())}] (shift each sample to start at 0)"
        )
    return g


_SPREAD: dict[torch.device, torch.Tensor] = {}


def _spread(v: torch.Tensor) -> torch.Tensor:
    """Bit i of each int (< 2**16) moved to bit 3i, by two byte-table lookups; int64 (N,)."""
    table = _SPREAD.get(v.device)
    if table is None:
        table = _SPREAD[v.device] = torch.from_numpy(curves.spread_table()).to(v.device)
    return curves.spread(v.long(), table)


def _interleave(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Bits of x, y, z (each < 2**16) interleaved: bit i lands at 3i+2, 3i+1, 3i. int64 (N,)."""
    return curves.interleave(x, y, z, _spread)


def z_order_encode(grid_coord: torch.Tensor, depth: int) -> torch.Tensor:
    """Morton code of integer voxel coordinates.

    grid_coord: integer (N, 3), each value in [0, 2**depth).  Returns int64 (N,) in [0, 8**depth).
    """
    g = _check_grid(grid_coord, depth)
    return _interleave(g[:, 0], g[:, 1], g[:, 2])


def hilbert_encode(grid_coord: torch.Tensor, depth: int) -> torch.Tensor:
    """Hilbert index of integer voxel coordinates (3-D, `depth` bits per axis).

    Skilling's algorithm: undo the excess rotations/reflections level by level (from the most
    significant bit down), Gray-encode, then read the "transposed" index bit by bit, axis 0 first.
    grid_coord: integer (N, 3) in [0, 2**depth).  Returns int64 (N,) in [0, 8**depth); codes of
    consecutive integers are face-adjacent voxels.
    The per-axis work runs on int32 (coordinates have <= 16 bits); the final bit interleave is
    the Morton spread of the transformed axes.
    """
    g = _check_grid(grid_coord, depth).to(torch.int32)
    x = curves.hilbert_axes([g[:, 0].contiguous(), g[:, 1].contiguous(), g[:, 2].contiguous()], depth)
    return _interleave(*x)


def encode(
    grid_coord: torch.Tensor, batch: torch.Tensor | None, depth: int, order: str
) -> torch.Tensor:
    """Batched serialization code of one curve.

    grid_coord: integer (N, 3) in [0, 2**depth); batch: int (N,) sample index or None.
    Returns int64 (N,): (batch << 3 * depth) | curve code.
    """
    if order not in ORDERS:
        raise ConfigError(f"unknown serialization order {order!r}; known: {', '.join(ORDERS)}")
    if order.endswith("-trans"):
        grid_coord = grid_coord[:, [1, 0, 2]]
    curve = z_order_encode if order.startswith("z") else hilbert_encode
    code = curve(grid_coord, depth)
    if batch is not None:
        code = (batch.long() << (3 * depth)) | code
    return code


def serialization_depth(grid_coord: torch.Tensor) -> int:
    """Smallest depth whose cube holds every coordinate: bit_length(max + 1), as in Pointcept."""
    if grid_coord.numel() == 0:
        return 1
    return max(1, int(grid_coord.max().item() + 1).bit_length())


def invert_permutation(order: torch.Tensor) -> torch.Tensor:
    """Inverse of permutations along the last dim: inverse[..., order[..., j]] = j. int64."""
    src = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, src)


@dataclass
class Serialization:
    """Serialization of N points along K curves.

    code:    int64 (K, N) batched curve codes (see module docstring).
    order:   int64 (K, N) point indices sorted by code: order[k, j] is the j-th point on curve k.
    inverse: int64 (K, N) position of each point on curve k (inverse permutation of order[k]).
    depth:   bits per axis the codes were computed with.
    """

    code: torch.Tensor
    order: torch.Tensor
    inverse: torch.Tensor
    depth: int

    @classmethod
    def from_code(cls, code: torch.Tensor, depth: int) -> Serialization:
        """Sort (K, N) codes into orders and inverses."""
        order = torch.argsort(code, dim=-1)
        return cls(code=code, order=order, inverse=invert_permutation(order), depth=depth)

    def shuffled(self, generator: torch.Generator | None = None) -> Serialization:
        """The same curves in a random order (PTv3's order shuffling in training)."""
        perm = torch.randperm(self.code.shape[0], generator=generator).to(self.code.device)
        return Serialization(self.code[perm], self.order[perm], self.inverse[perm], self.depth)


def serialize(
    grid_coord: torch.Tensor,
    batch: torch.Tensor,
    orders: Sequence[str],
    depth: int | None = None,
    batch_size: int | None = None,
) -> Serialization:
    """Serialize a batch along every curve in `orders`.

    grid_coord: integer (N, 3) >= 0; batch: int64 (N,) sample index (non-decreasing).
    depth: bits per axis (default: `serialization_depth(grid_coord)`).
    batch_size: number of samples B (default: batch.max() + 1), to check that the batch index
    fits above the curve code in 63 bits.
    """
    if not orders:
        raise ConfigError("serialize() needs at least one order")
    if depth is None:
        depth = serialization_depth(grid_coord)
    if batch_size is None:
        batch_size = int(batch.max().item()) + 1 if batch.numel() else 1
    if 3 * depth + int(batch_size).bit_length() > 63:
        raise DataError(
            f"a batch of {batch_size} samples with grid depth {depth} does not fit a 63-bit "
            "serialization code; use a coarser grid or a smaller batch"
        )
    code = torch.stack([encode(grid_coord, batch, depth, o) for o in orders])
    return Serialization.from_code(code, depth)
