"""Building blocks of Point Transformer V3: the point state, xCPE block, stem, pooling, unpooling.

Module and parameter names mirror Pointcept's `PT-v3m1` (point_transformer_v3m1_base.py) so its
checkpoints load by name: e.g. a block holds `cpe.{0,1,2}`, `norm1.0`, `attn.{qkv,proj}`, `norm2.0`,
`mlp.0.{fc1,fc2}`; pooling holds `proj`, `norm.0`; unpooling `proj.{0,1}` and `proj_skip.{0,1}`;
the stem `embedding.stem.{conv,norm}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from srkd.errors import ConfigError
from srkd.models import sparse
from srkd.models.attention import (
    PatchLayout,
    SerializedAttention,
    patch_gather_index,
    patch_layout,
)
from srkd.models.serialization import Serialization
from srkd.types import UNPOOLING_MODES


def batch_norm(channels: int) -> nn.BatchNorm1d:
    """PTv3's BatchNorm (eps 1e-3, momentum 0.01, as in Pointcept)."""
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


@dataclass
class PointLevel:
    """The point cloud at one resolution of the U-Net (M points = occupied voxels at that level).

    feat:       float (M, C) current features.
    coord:      float (M, 3) mean coordinate of the input points each row stands for.
    grid_coord: int64 (M, 3) voxel coordinate at this level.
    batch:      int64 (M,) sample index (rows of a sample are contiguous, samples in order).
    offset:     int64 (B,) cumulative end row of each sample.
    serialization: the curves of this level (codes, orders, inverses; `depth` bits per axis).
    sparse_tensor: the level's sparse tensor (its rows, no neighbour maps).
    parent, cluster: the finer level this one was pooled from, and int64 (M_parent,) the row of
                this level each parent row was merged into (None at the finest level).
    cpe_input:  None, or float (M, C): what the next block's xCPE convolves instead of `feat`
                (set by a PT-v3m1 unpooling, see SerializedUnpooling; the block clears it).
    """

    feat: torch.Tensor
    coord: torch.Tensor
    grid_coord: torch.Tensor
    batch: torch.Tensor
    offset: torch.Tensor
    serialization: Serialization
    sparse_tensor: sparse.SparseTensor
    parent: PointLevel | None = None
    cluster: torch.Tensor | None = None
    cpe_input: torch.Tensor | None = None
    _layouts: dict[int, PatchLayout] = field(default_factory=dict, repr=False)
    _patch_index: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False
    )
    _neighbour_maps: dict[bool, dict] = field(default_factory=dict, repr=False)  # by conv.training

    @property
    def batch_size(self) -> int:
        return len(self.offset)

    def layout(self, patch_size: int) -> PatchLayout:
        """Patch padding for this level (computed once per patch size)."""
        if patch_size not in self._layouts:
            self._layouts[patch_size] = patch_layout(self.offset, patch_size)
        return self._layouts[patch_size]

    def patch_index(self, patch_size: int, curve: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`patch_gather_index` of curve `curve` (row of the serialization) at `patch_size`,
        computed once per level: the blocks of a stage cycle through the same few curves."""
        key = (patch_size, curve)
        if key not in self._patch_index:
            s = self.serialization
            self._patch_index[key] = patch_gather_index(
                s.order[curve], s.inverse[curve], self.layout(patch_size)
            )
        return self._patch_index[key]

    def sparse_conv(self, conv: nn.Module, feat: torch.Tensor) -> torch.Tensor:
        """Submanifold conv `conv` over this level's rows carrying `feat` float (M, C); returns
        its features float (M, C'). The level keeps the neighbour maps its convs build (one set
        per training mode), so the convs sharing an indice_key (a stage's blocks and the decoder
        stage at this level) build one map, as in Pointcept."""
        maps = self._neighbour_maps.setdefault(conv.training, {})
        x = sparse.replace_feature(self.sparse_tensor, feat)
        return sparse.subm_conv_with_maps(conv, x, maps).features


def make_level(
    feat: torch.Tensor,
    coord: torch.Tensor,
    grid_coord: torch.Tensor,
    batch: torch.Tensor,
    batch_size: int,
    serialization: Serialization,
    parent: PointLevel | None = None,
    cluster: torch.Tensor | None = None,
) -> PointLevel:
    """Assemble a PointLevel and its sparse tensor (rows in the given order)."""
    counts = torch.bincount(batch, minlength=batch_size)
    return PointLevel(
        feat=feat,
        coord=coord,
        grid_coord=grid_coord,
        batch=batch,
        offset=torch.cumsum(counts, 0),
        serialization=serialization,
        sparse_tensor=sparse.make_sparse(feat, grid_coord, batch, batch_size=batch_size),
        parent=parent,
        cluster=cluster,
    )


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., ECCV 2016) applied per point, as Pointcept does on (N, C)
    features: in training each row is zeroed with probability p and the rest scaled by 1/(1-p)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MLP(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout; (M, C) -> (M, C)."""

    def __init__(self, channels: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """One PTv3 block: x += xCPE(x); x += DropPath(Attn(LN(x))); x += DropPath(MLP(LN(x))).

    xCPE = SubMConv3d(3x3x3) -> Linear -> LayerNorm (a conditional positional encoding that
    replaces relative position bias, PTv3 Sec. 3.4).
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        patch_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        order_index: int = 0,
        cpe_indice_key: str | None = None,
        enable_flash: bool = True,
    ) -> None:
        super().__init__()
        self.order_index = order_index
        self.cpe = nn.ModuleList(
            [
                sparse.SubMConv3d(channels, channels, 3, indice_key=cpe_indice_key, bias=True),
                nn.Linear(channels, channels),
                nn.LayerNorm(channels),
            ]
        )
        self.norm1 = nn.Sequential(nn.LayerNorm(channels))
        self.attn = SerializedAttention(
            channels,
            num_heads,
            patch_size,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            order_index=order_index,
            enable_flash=enable_flash,
        )
        self.norm2 = nn.Sequential(nn.LayerNorm(channels))
        self.mlp = nn.Sequential(MLP(channels, int(channels * mlp_ratio), drop=proj_drop))
        self.drop_path = nn.Sequential(DropPath(drop_path) if drop_path > 0 else nn.Identity())

    def forward(self, level: PointLevel) -> PointLevel:
        return self.attend_and_mix(level, self.positional(level))

    def positional(self, level: PointLevel) -> torch.Tensor:
        """level.feat + xCPE(level.feat), (M, C) (the xCPE convolves level.cpe_input when set)."""
        x = level.feat
        conv_in = x if level.cpe_input is None else level.cpe_input
        level.cpe_input = None
        conv, linear, norm = self.cpe
        return x + norm(linear(level.sparse_conv(conv, conv_in)))

    def attend_and_mix(self, level: PointLevel, x: torch.Tensor) -> PointLevel:
        """The attention and MLP residuals on x (M, C); sets level.feat."""
        s = level.serialization
        k = self.order_index % s.order.shape[0]
        size = self.attn.patch_size
        attn = self.attn(
            self.norm1(x), s.order[k], s.inverse[k], level.layout(size), level.patch_index(size, k)
        )
        x = x + self.drop_path(attn)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        level.feat = x
        return level


class Embedding(nn.Module):
    """Stem: 5x5x5 submanifold conv (no bias) -> BatchNorm -> GELU; (M, in) -> (M, C)."""

    def __init__(self, in_channels: int, embed_channels: int) -> None:
        super().__init__()
        self.stem = nn.ModuleDict(
            {
                "conv": sparse.SubMConv3d(in_channels, embed_channels, 5, indice_key="stem", bias=False),
                "norm": batch_norm(embed_channels),
                "act": nn.GELU(),
            }
        )

    def forward(self, level: PointLevel) -> PointLevel:
        # not level.sparse_conv: no other conv uses the 5x5x5 map, which would hold (2, 125, M)
        # int32 for the whole forward if kept
        x = self.stem["conv"](level.sparse_tensor).features
        level.feat = self.stem["act"](self.stem["norm"](x))
        return level


def segment_mean(values: torch.Tensor, index: torch.Tensor, size: int, counts: torch.Tensor) -> torch.Tensor:
    """Mean of the rows of `values` (M, ...) per segment `index` int64 (M,) in [0, size), given the
    segment sizes `counts` (size,); returns (size, ...)."""
    out = values.new_zeros((size,) + values.shape[1:]).index_add_(0, index, values)
    return out / counts.to(values.dtype).reshape(-1, *([1] * (values.ndim - 1)))


class SerializedPooling(nn.Module):
    """Merge the points of each parent cell (stride s = 2**d: code >> 3d), PTv3 Sec. 3.5.

    feat of a merged cell = max over its points of Linear(feat), then BatchNorm + GELU; coord is
    the mean, grid_coord the first point's coordinate >> d, codes the first point's codes >> 3d
    (the parent cell's code on every curve). Returns the coarser level with `parent` set.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 2, shuffle_orders: bool = True
    ) -> None:
        super().__init__()
        if stride < 2 or stride & (stride - 1):
            raise ConfigError(f"pooling stride must be a power of two >= 2, got {stride}")
        self.stride = stride
        self.shuffle_orders = shuffle_orders
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.Sequential(batch_norm(out_channels))
        self.act = nn.Sequential(nn.GELU())

    def forward(self, level: PointLevel) -> PointLevel:
        s = level.serialization
        shift = int(math.log2(self.stride))
        if shift > s.depth:  # nothing left to merge (Pointcept keeps the points as they are)
            shift = 0
        code = s.code >> (3 * shift)
        # clusters in code order of the first curve: batch-contiguous because batch is the top bits
        _, cluster, counts = torch.unique(code[0], sorted=True, return_inverse=True, return_counts=True)
        m = counts.numel()
        rows = torch.arange(cluster.numel(), device=cluster.device)
        head = torch.full((m,), cluster.numel(), dtype=torch.long, device=cluster.device)
        head.scatter_reduce_(0, cluster, rows, reduce="amin")  # first point of each cell
        new_s = Serialization.from_code(code[:, head], s.depth - shift)
        if self.training and self.shuffle_orders:
            new_s = new_s.shuffled()

        proj = self.proj(level.feat)
        feat = proj.new_zeros((m, proj.shape[1])).scatter_reduce(
            0, cluster[:, None].expand_as(proj), proj, reduce="amax", include_self=False
        )
        feat = self.act(self.norm(feat))
        return make_level(
            feat=feat,
            coord=segment_mean(level.coord, cluster, m, counts),
            grid_coord=level.grid_coord[head] >> shift,
            batch=level.batch[head],
            batch_size=level.batch_size,
            serialization=new_s,
            parent=level,
            cluster=cluster,
        )


def check_unpooling(mode: str) -> str:
    """`mode` if it is one of UNPOOLING_MODES, else ConfigError."""
    if mode not in UNPOOLING_MODES:
        raise ConfigError(
            f"unknown unpooling {mode!r}: use 'v3m1' (Pointcept PT-v3m1 checkpoints) or 'v3m2'"
        )
    return mode


class SerializedUnpooling(nn.Module):
    """Back to the parent level: parent.feat = P_skip(parent.feat) + P(feat)[cluster], where each
    P is Linear -> BatchNorm -> GELU. The parent keeps its own rows, order and sparse tensor.

    mode "v3m1" reproduces Pointcept's PT-v3m1: its unpooling updates the point's sparse-conv
    tensor while projecting the skip features but not after adding the upsampled ones, so the
    first block of each decoder stage convolves P_skip(skip) in its xCPE (the residual stream is
    the sum). Every released PT-v3m1 checkpoint was trained that way. mode "v3m2" (Pointcept's
    later models) convolves the sum.
    norm: "batch" (PT-v3m1's BatchNorm) or "layer" (PT-v3m2's LayerNorm) inside both projections.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, mode: str = "v3m1",
                 norm: str = "batch") -> None:  # fmt: skip
        super().__init__()
        self.mode = check_unpooling(mode)
        if norm not in ("batch", "layer"):
            raise ConfigError(f"unpooling norm must be 'batch' or 'layer', got {norm!r}")
        make_norm = batch_norm if norm == "batch" else nn.LayerNorm
        self.proj = nn.Sequential(nn.Linear(in_channels, out_channels), make_norm(out_channels), nn.GELU())
        self.proj_skip = nn.Sequential(
            nn.Linear(skip_channels, out_channels), make_norm(out_channels), nn.GELU()
        )

    def forward(self, level: PointLevel) -> PointLevel:
        parent, cluster = level.parent, level.cluster
        if parent is None or cluster is None:
            raise ConfigError("SerializedUnpooling needs a level produced by SerializedPooling")
        skip = self.proj_skip(parent.feat)
        parent.feat = skip + self.proj(level.feat)[cluster]
        parent.cpe_input = skip if self.mode == "v3m1" else None
        return parent

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
