"""The layers in which Pointcept's `PT-v3m2` (point_transformer_v3m2_sonata.py, the Sonata family)
differs from PT-v3m1: a linear stem, grid pooling, and LayerNorm wherever PT-v3m1 has BatchNorm.

Parameter names follow PT-v3m2 so its checkpoints load by name: the stem is
`embedding.stem.{linear,norm}`, a pooling `down.proj` + `down.norm.0`, an unpooling
`up.proj.{0,1}` + `up.proj_skip.{0,1}` (srkd.models.ptv3_blocks.SerializedUnpooling with
norm="layer"). Blocks are PT-v3m1's (srkd.models.ptv3_blocks.Block).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from srkd.errors import ConfigError
from srkd.models.ptv3_blocks import PointLevel, make_level, segment_mean
from srkd.models.serialization import encode, serialization_depth, serialize

VARIANTS: tuple[str, ...] = ("v3m1", "v3m2")
"""PTv3 layer layouts (srkd.models.ptv3.PointTransformerV3's `variant`): "v3m1" = Pointcept's
PT-v3m1 (5x5x5 sparse-conv stem with BatchNorm, serialized pooling, BatchNorm in pooling and
unpooling); "v3m2" = PT-v3m2 (linear stem, grid pooling, LayerNorm throughout)."""


def check_variant(variant: str) -> str:
    """`variant` if it is one of VARIANTS, else ConfigError."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown PTv3 variant {variant!r}: use 'v3m1' (Pointcept PT-v3m1) or 'v3m2' (PT-v3m2)")
    return variant


class LinearEmbedding(nn.Module):
    """PT-v3m2's stem: Linear -> LayerNorm -> GELU per voxel; (M, in) -> (M, C). No convolution,
    so the stem sees no neighbours (the first block's xCPE is the first spatial operation)."""

    def __init__(self, in_channels: int, embed_channels: int) -> None:
        super().__init__()
        self.stem = nn.ModuleDict(
            {"linear": nn.Linear(in_channels, embed_channels), "norm": nn.LayerNorm(embed_channels),
             "act": nn.GELU()}
        )  # fmt: skip

    def forward(self, level: PointLevel) -> PointLevel:
        level.feat = self.stem["act"](self.stem["norm"](self.stem["linear"](level.feat)))
        return level


class GridPooling(nn.Module):
    """Merge the voxels of each cell of a `stride` times coarser grid (PT-v3m2's GridPooling).

    The cell of a voxel is floor(grid_coord / stride); a cell's feature is the max over its voxels
    of Linear(feat), then LayerNorm + GELU; coord is the mean. Unlike serialized pooling (which
    shifts the curve codes), the coarser level is serialized anew along `orders` with the depth
    its own grid needs (bit_length(max + 1)), as PT-v3m2 does; any stride >= 2 works.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, orders: Sequence[str],
                 shuffle_orders: bool = True) -> None:  # fmt: skip
        super().__init__()
        if stride < 2:
            raise ConfigError(f"grid pooling stride must be >= 2, got {stride}")
        self.stride = int(stride)
        self.orders = tuple(orders)
        self.shuffle_orders = shuffle_orders
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.Sequential(nn.LayerNorm(out_channels))
        self.act = nn.Sequential(nn.GELU())

    def forward(self, level: PointLevel) -> PointLevel:
        grid = torch.div(level.grid_coord, self.stride, rounding_mode="floor")
        # one key per (sample, cell); z-order keeps each sample's cells contiguous and in order
        key = encode(grid, level.batch, serialization_depth(grid), "z")
        _, cluster, counts = torch.unique(key, sorted=True, return_inverse=True, return_counts=True)
        m = counts.numel()
        rows = torch.arange(cluster.numel(), device=cluster.device)
        head = torch.full((m,), cluster.numel(), dtype=torch.long, device=cluster.device)
        head.scatter_reduce_(0, cluster, rows, reduce="amin")
        grid, batch = grid[head], level.batch[head]
        ser = serialize(grid, batch, self.orders, batch_size=level.batch_size)
        if self.training and self.shuffle_orders:
            ser = ser.shuffled()
        proj = self.proj(level.feat)
        feat = proj.new_zeros((m, proj.shape[1])).scatter_reduce(
            0, cluster[:, None].expand_as(proj), proj, reduce="amax", include_self=False
        )
        return make_level(
            feat=self.act(self.norm(feat)),
            coord=segment_mean(level.coord, cluster, m, counts),
            grid_coord=grid,
            batch=batch,
            batch_size=level.batch_size,
            serialization=ser,
            parent=level,
            cluster=cluster,
        )

    def extra_repr(self) -> str:
        return f"stride={self.stride}, orders={self.orders}"
