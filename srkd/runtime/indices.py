"""Host-side index building for the exported networks: numpy only.

Everything data-dependent in a PTv3 or SpUNet forward pass is computed here, from the points'
voxel coordinates, into plain integer (and mask) arrays; the network then runs only tensor ops
(gather, matmul, scatter-add, max over a padded axis, softmax) on shapes that follow the point
count. The arrays, by input name (M_l = voxels at level l, N = points):

    voxel_of_point  int64 (N,)          the level-0 voxel row of each point
    voxel_count     float32 (M_0, 1)    points per level-0 voxel (the network averages them)
    nbr{l}_k{k}     int64 (M_l, k**3)   submanifold neighbour map of kernel size k at level l:
                                        column j = kernel offset (j // k**2, j // k % k, j % k)
                                        - k // 2 (x-major, spconv's weight layout), entry = the
                                        row at that offset, or M_l (a zero row) where none is
  PTv3 (serialized pooling, Wu et al. 2024 Sec. 3.5; patch attention Sec. 3.3):
    pool{l}         int64 (M_l, W)      rows of level l-1 merged into each row of level l, padded
                                        to the widest cell by repeating a member (max-pooled)
    unpool{l}       int64 (M_{l-1},)    the level-l row each level-(l-1) row was merged into
    patch{l}_p{P}_c{c}    int64 (S, L)  the level-l row read by each slot of the (patches x
                                        length) grid of curve c at patch size P
    unpatch{l}_p{P}_c{c}  int64 (M_l,)  the grid slot (flattened) each row reads its output from
    mask{l}_p{P}    float32 (S, L)      0 for real slots, -inf for keys past a short patch's end
                                        (all 0 for one sample; plans without masks omit them)
  SpUNet (stride-2 sparse convs, kernel 2):
    down{l}         int64 (M_l, 8)      the level-(l-1) row at child offset j = (x%2, y%2, z%2)
                                        x-major of each level-l row, or M_{l-1} (a zero row)
    up{l}           int64 (M_{l-1},)    parent row * 8 + child offset of each level-(l-1) row

Rows and orders follow srkd's own models exactly (voxels sorted by sample then z-order, codes,
pooling heads, Pointcept's patch padding), so the network reproduces their logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from srkd.runtime import curves

_BIG = np.iinfo(np.int64).max


@dataclass(frozen=True)
class IndexPlan:
    """What a network needs built: its kind ("ptv3" or "spunet"), number of levels, the
    submanifold kernel sizes used at each level, and for PTv3 the curves, pooling strides and
    the (patch size, curve) pairs its attention blocks use at each level. `masks`: whether the
    network takes the patches' key masks; without them it takes one sample per call (a single
    sample's patches are always full, so its masks are all zero)."""

    kind: str
    kernels: tuple[tuple[int, ...], ...]
    orders: tuple[str, ...] = ()
    strides: tuple[int, ...] = ()
    patches: tuple[tuple[tuple[int, int], ...], ...] = ()
    masks: bool = True

    @property
    def levels(self) -> int:
        return len(self.kernels)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> IndexPlan:
        return cls(kind=str(d["kind"]), kernels=tuple(tuple(int(k) for k in ks) for ks in d["kernels"]),
                   orders=tuple(d.get("orders", ())), strides=tuple(int(s) for s in d.get("strides", ())),
                   patches=tuple(tuple((int(p), int(c)) for p, c in lv) for lv in d.get("patches", ())),
                   masks=bool(d.get("masks", True)))

    def dims(self) -> dict[str, tuple[str, ...]]:
        """{input name: symbolic shape} of every network input, in the network's argument order
        ("feat" first; dimension names: n points, m{l} rows of level l, s/len patch grids, w pool
        width; numbers are fixed sizes)."""
        d: dict[str, tuple[str, ...]] = {"feat": ("n", "c"), "voxel_of_point": ("n",), "voxel_count": ("m0", "1")}
        for lv in range(self.levels):
            m = f"m{lv}"
            for k in self.kernels[lv]:
                d[f"nbr{lv}_k{k}"] = (m, str(k**3))
            if lv and self.kind == "ptv3":
                d[f"pool{lv}"] = (m, f"w{lv}")
                d[f"unpool{lv}"] = (f"m{lv - 1}",)
            if lv and self.kind == "spunet":
                d[f"down{lv}"] = (m, "8")
                d[f"up{lv}"] = (f"m{lv - 1}",)
            for p in sorted({p for p, _ in self.patches[lv]} if self.patches else ()):
                if self.masks:
                    d[f"mask{lv}_p{p}"] = (f"s{lv}_{p}", f"len{lv}_{p}")
                for c in sorted({c for q, c in self.patches[lv] if q == p}):
                    d[f"patch{lv}_p{p}_c{c}"] = (f"s{lv}_{p}", f"len{lv}_{p}")
                    d[f"unpatch{lv}_p{p}_c{c}"] = (m,)
        return d


def voxel_grid(coord: np.ndarray, offset: np.ndarray, grid_size: float) -> tuple[np.ndarray, np.ndarray]:
    """(grid int64 (N, 3), sample int64 (N,)): ``floor(coord / grid_size)`` in float64 minus
    each sample's minimum voxel (as `srkd.models.deploy.voxel_coords`)."""
    offset = np.asarray(offset, dtype=np.int64)
    counts = np.diff(offset, prepend=0)
    sample = np.repeat(np.arange(len(offset)), counts)
    cell = np.floor(np.asarray(coord, dtype=np.float64) / float(grid_size)).astype(np.int64)
    lowest = np.full((len(offset), 3), _BIG, dtype=np.int64)
    np.minimum.at(lowest, sample, cell)
    return cell - lowest[sample], sample


def _unique_rows(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first int64 (M,) smallest index per distinct key, inverse int64 (N,), counts int64 (M,)),
    distinct keys in ascending order (torch.unique(sorted=True) + a scatter-min of indices)."""
    order = np.argsort(key, kind="stable")
    sk = key[order]
    new = np.empty(len(key), dtype=bool)
    new[:1] = True
    np.not_equal(sk[1:], sk[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    inverse = np.empty(len(key), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    counts = np.diff(np.append(starts, len(key)))
    return order[starts], inverse, counts


def neighbour_map(grid: np.ndarray, sample: np.ndarray, k: int) -> np.ndarray:
    """int64 (M, k**3) submanifold neighbour map of M distinct voxels (see the module docstring).

    Keys are exact (packed with the padded extents) and visited in sorted order. A voxel's
    neighbours at one (dx, dy) lie in one run of consecutive z keys, so one searchsorted per
    (dx, dy) finds the run and each dz step moves at most one position along it."""
    r = k // 2
    g = grid.astype(np.int64) + r
    ext = g.max(axis=0) + r + 1
    if float(sample.max() + 1) * float(ext.prod()) >= 2.0**62:
        raise ValueError(f"voxel extent {ext.tolist()} is too large to index")
    key = ((sample.astype(np.int64) * ext[0] + g[:, 0]) * ext[1] + g[:, 1]) * ext[2] + g[:, 2]
    order = np.argsort(key)
    skey = key[order]
    m = len(key)
    skey_end = np.append(skey, _BIG)  # position m reads a key no query equals
    row_end = np.append(order, m)
    found = np.empty((k**3, m), dtype=np.int64)  # offset-major: each offset writes one contiguous row
    steps = range(-r, r + 1)
    for ix, dx in enumerate(steps):
        for iy, dy in enumerate(steps):
            base = skey + (dx * ext[1] + dy) * ext[2]
            pos = np.searchsorted(skey, base - r)
            for iz in range(k):
                hit = skey_end[pos] == base + (iz - r)
                found[(ix * k + iy) * k + iz] = np.where(hit, row_end[pos], m)
                pos += hit
    out = np.empty((m, k**3), dtype=np.int64)
    out[order] = found.T
    return out


def pad_groups(members: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """int64 (G, max(counts)): group g's members (members sorted by group, counts per group),
    each row padded by repeating its last member."""
    starts = np.cumsum(counts) - counts
    j = np.arange(int(counts.max()))
    return members[starts[:, None] + np.minimum(j[None, :], counts[:, None] - 1)]


def patch_index(order: np.ndarray, inverse: np.ndarray, offset: np.ndarray,
                k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointcept's patch padding of one serialized level (as `srkd.models.attention.patch_layout`
    and `patch_gather_index`): (grid_point int64 (S, L), point_row int64 (M,), mask float32
    (S, L)). order/inverse: int64 (M,) one curve's order and its inverse; offset int64 (B,)."""
    counts = np.diff(np.asarray(offset, dtype=np.int64), prepend=0)
    padded = np.where(counts > k, (counts + k - 1) // k * k, counts)
    start, pstart = np.cumsum(counts) - counts, np.cumsum(padded) - padded
    b = np.arange(len(counts))
    slot_sample = np.repeat(b, padded)
    local = np.arange(int(padded.sum())) - pstart[slot_sample]
    local = np.where(local < counts[slot_sample], local, local - k)
    pad = start[slot_sample] + local
    unpad = np.arange(int(counts.sum())) + np.repeat(pstart - start, counts)
    n_patches = (padded + k - 1) // k
    patch_sample = np.repeat(b, n_patches)
    within = np.arange(int(n_patches.sum())) - np.repeat(np.cumsum(n_patches) - n_patches, n_patches)
    starts = pstart[patch_sample] + within * k
    lengths = np.diff(np.append(starts, padded.sum()))
    length = int(min(counts.max(), k))
    steps = np.arange(length)
    valid = steps[None, :] < lengths[:, None]
    slot = np.minimum(starts[:, None] + steps[None, :], len(pad) - 1)
    row_of_slot = np.flatnonzero(valid.reshape(-1))
    mask = np.where(valid, 0.0, -np.inf).astype(np.float32)
    return order[pad[slot]], row_of_slot[unpad][inverse], mask


def _serialize(grid: np.ndarray, sample: np.ndarray, orders, depth: int) -> np.ndarray:
    return np.stack([curves.encode_np(grid, sample, depth, o) for o in orders])


def _level_offset(sample: np.ndarray, batch_size: int) -> np.ndarray:
    return np.cumsum(np.bincount(sample, minlength=batch_size))


def _attention_indices(out: dict, plan: IndexPlan, lv: int, code: np.ndarray, offset: np.ndarray) -> None:
    order = np.argsort(code, axis=1)
    inverse = np.empty_like(order)
    np.put_along_axis(inverse, order, np.arange(order.shape[1])[None, :].repeat(len(order), 0), axis=1)
    for p, c in plan.patches[lv]:
        grid_point, point_row, mask = patch_index(order[c], inverse[c], offset, p)
        out[f"patch{lv}_p{p}_c{c}"], out[f"unpatch{lv}_p{p}_c{c}"] = grid_point, point_row
        out[f"mask{lv}_p{p}"] = mask


def _ptv3(out: dict, plan: IndexPlan, grid: np.ndarray, sample: np.ndarray, batch_size: int) -> None:
    depth = curves.depth_for(grid)
    code = _serialize(grid, sample, plan.orders, depth)
    for lv in range(plan.levels):
        if lv:
            shift = int(plan.strides[lv - 1]).bit_length() - 1
            shift = 0 if shift > depth else shift
            code = code >> (3 * shift)
            head, cluster, counts = _unique_rows(code[0])
            out[f"pool{lv}"] = pad_groups(np.argsort(cluster, kind="stable"), counts)
            out[f"unpool{lv}"] = cluster
            code, depth = code[:, head], depth - shift
            grid, sample = grid[head] >> shift, sample[head]
        for k in plan.kernels[lv]:
            out[f"nbr{lv}_k{k}"] = neighbour_map(grid, sample, k)
        _attention_indices(out, plan, lv, code, _level_offset(sample, batch_size))


def _spunet(out: dict, plan: IndexPlan, grid: np.ndarray, sample: np.ndarray) -> None:
    for lv in range(plan.levels):
        if lv:
            coarse = grid >> 1
            ext = coarse.max(axis=0) + 1
            key = ((sample * ext[0] + coarse[:, 0]) * ext[1] + coarse[:, 1]) * ext[2] + coarse[:, 2]
            head, parent, _ = _unique_rows(key)
            child = (grid[:, 0] & 1) * 4 + (grid[:, 1] & 1) * 2 + (grid[:, 2] & 1)
            down = np.full((len(head), 8), len(grid), dtype=np.int64)
            down[parent, child] = np.arange(len(grid))
            out[f"down{lv}"], out[f"up{lv}"] = down, parent * 8 + child
            grid, sample = coarse[head], sample[head]
        for k in plan.kernels[lv]:
            out[f"nbr{lv}_k{k}"] = neighbour_map(grid, sample, k)


def build_indices(plan: IndexPlan, coord: np.ndarray, offset: np.ndarray, grid_size: float) -> dict[str, np.ndarray]:
    """Every index input of the network described by `plan` for points coord float (N, 3) in
    metres, samples ending at offset int64 (B,) (see the module docstring; "feat" excluded).
    Raises ValueError for coordinates too far apart to encode."""
    grid, sample = voxel_grid(coord, offset, grid_size)
    batch_size = len(offset)
    depth = curves.depth_for(grid)
    if 3 * depth + int(batch_size).bit_length() > 63 or depth > curves.MAX_DEPTH:
        raise ValueError(f"the points span {int(grid.max()) + 1} voxels of {grid_size} m along an axis "
                         f"(more than {1 << curves.MAX_DEPTH}); split the scan or check its units")
    key = curves.encode_np(grid, sample, depth, "z")  # unique per (sample, voxel), as srkd's PTv3
    first, inverse, counts = _unique_rows(key)
    out: dict[str, np.ndarray] = {
        "voxel_of_point": inverse,
        "voxel_count": counts.astype(np.float32)[:, None],
    }
    if plan.kind == "ptv3":
        _ptv3(out, plan, grid[first], sample[first], batch_size)
    elif plan.kind == "spunet":
        _spunet(out, plan, grid[first], sample[first])
    else:
        raise ValueError(f"unknown network kind {plan.kind!r}")
    return out
