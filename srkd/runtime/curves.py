"""Space-filling-curve codes on integer arrays, for numpy and torch alike.

The bit operations below use only the operators that numpy arrays and torch tensors share
(``>>``, ``&``, ``^``, ``|``, ``~``, unary minus, integer indexing), so one implementation serves
srkd's models (torch, `srkd.models.serialization`) and the deployment runtime (numpy only). The
curve definitions and their conventions are documented in `srkd.models.serialization`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

ORDERS: tuple[str, ...] = ("z", "z-trans", "hilbert", "hilbert-trans")
MAX_DEPTH = 16  # 3 * 16 = 48 bits of curve code leave 15 bits for the batch index


def spread_table() -> np.ndarray:
    """int64 (256,): bit i of the index moved to bit 3i (the Morton spread of one byte)."""
    v = np.arange(256, dtype=np.int64)
    out = np.zeros_like(v)
    for i in range(8):
        out |= ((v >> i) & 1) << (3 * i)
    return out


def spread(v: Any, table: Any) -> Any:
    """Bit i of each int64 value (< 2**16) moved to bit 3i, by two lookups in `table`
    (`spread_table()` as an array of v's kind)."""
    return table[v & 255] | (table[v >> 8] << 24)


def interleave(x: Any, y: Any, z: Any, spread_fn: Callable[[Any], Any]) -> Any:
    """Bits of int64 x, y, z (each < 2**16) interleaved: bit i lands at 3i+2, 3i+1, 3i."""
    return (spread_fn(x) << 2) | (spread_fn(y) << 1) | spread_fn(z)


def hilbert_axes(x: list, depth: int) -> list:
    """Skilling's transform ("Programming the Hilbert curve", AIP Conf. Proc. 707, 2004) of three
    int32 coordinate arrays x = [x0, x1, x2] with `depth` bits each: returns the three arrays whose
    Morton interleave (axis 0 most significant) is the Hilbert index.

    Undo the excess rotations/reflections level by level (from the most significant bit down),
    then Gray-encode the interleaved bit string."""
    x = list(x)
    for level in range(depth - 1, 0, -1):
        p = (1 << level) - 1
        # branch-free selects: m is all ones where the axis has bit `level` set, else zero
        m = -((x[0] >> level) & 1)
        x[0] = x[0] ^ (m & p)  # axis 0: invert its own lower bits where its bit is set
        for i in (1, 2):
            m = -((x[i] >> level) & 1)
            swap = (x[0] ^ x[i]) & p  # exchange the lower bits of axis 0 and axis i
            x[0] = x[0] ^ ((m & p) | (~m & swap))  # bit set: invert axis 0, else swap
            x[i] = x[i] ^ (~m & swap)
    # Gray encode: prefix-XOR over the interleaved bit string (x, y, z of each level, MSB first).
    x[1] = x[1] ^ x[0]
    x[2] = x[2] ^ x[1]
    # t: bit b set when an odd number of the bits of axis 2 above b are set (bits 1..depth-1),
    # i.e. the prefix XOR from the top of (axis 2 >> 1), in log2(16) shift-XOR steps
    t = x[2] >> 1
    for shift in (1, 2, 4, 8):
        t = t ^ (t >> shift)
    return [x[0] ^ t, x[1] ^ t, x[2] ^ t]


_TABLE = spread_table()


def _spread_np(v: np.ndarray) -> np.ndarray:
    return spread(v.astype(np.int64), _TABLE)


def encode_np(grid: np.ndarray, batch: np.ndarray, depth: int, order: str) -> np.ndarray:
    """int64 (N,) batched code ``(batch << 3 * depth) | curve(grid)`` of one curve.

    grid: int (N, 3) in [0, 2**depth); batch: int (N,) sample index. Bit for bit equal to
    `srkd.models.serialization.encode` (the callers check ranges)."""
    g = np.asarray(grid, dtype=np.int64)
    if order.endswith("-trans"):
        g = g[:, [1, 0, 2]]
    axes = [g[:, 0], g[:, 1], g[:, 2]]
    if order.startswith("hilbert"):
        axes = [a.astype(np.int64) for a in hilbert_axes([a.astype(np.int32) for a in axes], depth)]
    code = interleave(*axes, spread_fn=_spread_np)
    return (np.asarray(batch, dtype=np.int64) << (3 * depth)) | code


def depth_for(grid: np.ndarray) -> int:
    """Bits per axis whose cube holds every coordinate: bit_length(max + 1) (as Pointcept)."""
    if grid.size == 0:
        return 1
    return max(1, int(grid.max() + 1).bit_length())
