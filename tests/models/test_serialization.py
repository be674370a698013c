"""Space-filling-curve codes, orders and inverses (srkd.models.serialization)."""

from __future__ import annotations

import itertools

import pytest
import torch

from srkd.errors import ConfigError, DataError
from srkd.models.serialization import (
    ORDERS,
    encode,
    hilbert_encode,
    invert_permutation,
    serialization_depth,
    serialize,
    z_order_encode,
)


def all_cells(depth: int) -> torch.Tensor:
    side = range(1 << depth)
    return torch.tensor(list(itertools.product(side, side, side)), dtype=torch.int64)


def test_z_order_hand_values():
    # bit i of x, y, z goes to code bit 3i+2, 3i+1, 3i
    grid = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [2, 0, 0], [3, 1, 2]])
    assert z_order_encode(grid, depth=2).tolist() == [0, 4, 2, 1, 7, 32, 46]


def test_hilbert_depth1_is_the_gray_code_walk():
    # Skilling at one bit: H = 4x + 2(x^y) + (x^y^z); worked out by hand
    walk = [[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 1, 0], [1, 1, 1], [1, 0, 1], [1, 0, 0]]
    assert hilbert_encode(torch.tensor(walk), depth=1).tolist() == list(range(8))


@pytest.mark.parametrize("depth", [2, 3])
def test_hilbert_is_a_bijection_with_face_adjacent_steps(depth):
    cells = all_cells(depth)
    code = hilbert_encode(cells, depth)
    assert torch.equal(torch.sort(code).values, torch.arange(8**depth))
    path = cells[torch.argsort(code)]
    steps = (path[1:] - path[:-1]).abs().sum(dim=1)
    assert bool((steps == 1).all()), "consecutive Hilbert codes must be neighbouring voxels"
    assert path[0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("depth", [1, 3])
def test_z_order_is_a_bijection(depth):
    code = z_order_encode(all_cells(depth), depth)
    assert torch.equal(torch.sort(code).values, torch.arange(8**depth))


@pytest.mark.parametrize("curve", [z_order_encode, hilbert_encode])
def test_code_shift_gives_parent_cell_code(curve):
    # pooling relies on: code(depth d) >> 3 == code of (grid >> 1) at depth d - 1
    g = torch.Generator().manual_seed(1)
    grid = torch.randint(0, 64, (500, 3), generator=g)
    assert torch.equal(curve(grid, 6) >> 3, curve(grid >> 1, 5))


def test_trans_orders_swap_x_and_y():
    grid = torch.randint(0, 16, (100, 3), generator=torch.Generator().manual_seed(2))
    swapped = grid[:, [1, 0, 2]]
    assert torch.equal(encode(grid, None, 4, "z-trans"), z_order_encode(swapped, 4))
    assert torch.equal(encode(grid, None, 4, "hilbert-trans"), hilbert_encode(swapped, 4))
    assert not torch.equal(encode(grid, None, 4, "z-trans"), encode(grid, None, 4, "z"))


def test_batch_index_sits_above_the_curve_code():
    grid = torch.tensor([[1, 2, 3], [1, 2, 3]])
    code = encode(grid, torch.tensor([0, 2]), depth=4, order="hilbert")
    assert code[1] - code[0] == 2 << 12
    assert code[0] == hilbert_encode(grid[:1], 4)[0]


def test_serialize_orders_are_permutations_with_correct_inverses():
    gen = torch.Generator().manual_seed(3)
    counts = [37, 5, 60]
    grid = torch.cat([torch.randperm(1000, generator=gen)[:n].reshape(-1, 1) for n in counts])
    grid = torch.cat([grid % 10, grid // 10 % 10, grid // 100], dim=1)  # unique voxels per sample
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
    s = serialize(grid, batch, ORDERS)
    n = len(grid)
    assert s.code.shape == s.order.shape == s.inverse.shape == (4, n)
    assert s.depth == serialization_depth(grid) == 4
    for k in range(4):
        assert torch.equal(torch.sort(s.order[k]).values, torch.arange(n))
        assert torch.equal(s.inverse[k][s.order[k]], torch.arange(n))
        assert torch.equal(s.order[k][s.inverse[k]], torch.arange(n))
        assert bool((torch.diff(s.code[k][s.order[k]]) > 0).all())  # strictly sorted: unique voxels
        assert bool((torch.diff(batch[s.order[k]]) >= 0).all())  # samples stay contiguous, in order
    shuffled = s.shuffled(torch.Generator().manual_seed(0))
    rows = {tuple(r.tolist()) for r in shuffled.code}
    assert rows == {tuple(r.tolist()) for r in s.code}


def test_invert_permutation_batched():
    order = torch.stack([torch.randperm(9), torch.randperm(9)])
    inv = invert_permutation(order)
    assert torch.equal(torch.gather(inv, 1, order), torch.arange(9).expand(2, 9))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DataError, match="grid_coord values"):
        z_order_encode(torch.tensor([[-1, 0, 0]]), 2)
    with pytest.raises(DataError, match="grid_coord values"):
        hilbert_encode(torch.tensor([[4, 0, 0]]), 2)
    with pytest.raises(DataError, match="integer"):
        z_order_encode(torch.zeros(2, 3), 2)
    with pytest.raises(ConfigError, match="unknown serialization order"):
        encode(torch.zeros(2, 3, dtype=torch.long), None, 2, "peano")
    with pytest.raises(ConfigError, match="depth"):
        z_order_encode(torch.zeros(2, 3, dtype=torch.long), 17)
    with pytest.raises(DataError, match="63-bit"):
        serialize(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long), ["z"],
                  depth=16, batch_size=1 << 20)


def _reference_z(g: torch.Tensor, depth: int) -> torch.Tensor:
    """Morton code by the bit-by-bit definition (the pre-table implementation)."""
    code = torch.zeros(len(g), dtype=torch.long)
    for i in range(depth):
        for axis in range(3):
            code |= ((g[:, axis] >> i) & 1) << (3 * i + 2 - axis)
    return code


def _reference_hilbert(g: torch.Tensor, depth: int) -> torch.Tensor:
    """Skilling's transpose algorithm written loop by loop on int64 (the pre-table version)."""
    x = [g[:, i].clone() for i in range(3)]
    q = 1 << (depth - 1)
    while q > 1:
        p = q - 1
        x[0] = torch.where((x[0] & q) != 0, x[0] ^ p, x[0])
        for i in (1, 2):
            on = (x[i] & q) != 0
            swap = (x[0] ^ x[i]) & p
            x[0], x[i] = torch.where(on, x[0] ^ p, x[0] ^ swap), torch.where(on, x[i], x[i] ^ swap)
        q >>= 1
    x[1] ^= x[0]
    x[2] ^= x[1]
    t = torch.zeros_like(x[0])
    q = 1 << (depth - 1)
    while q > 1:
        t = torch.where((x[2] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    return _reference_z(torch.stack([xi ^ t for xi in x], 1), depth)


@pytest.mark.parametrize("depth", [1, 2, 5, 9, 13, 16])
def test_table_encoders_match_the_bitwise_definitions(depth):
    g = torch.randint(0, 1 << depth, (5000, 3), generator=torch.Generator().manual_seed(depth))
    g[0] = (1 << depth) - 1  # the top corner uses every bit
    assert torch.equal(z_order_encode(g, depth), _reference_z(g, depth))
    assert torch.equal(hilbert_encode(g, depth), _reference_hilbert(g, depth))
    assert torch.equal(hilbert_encode(g.int(), depth), _reference_hilbert(g, depth))
