"""The layers CDSegNet (Qu et al., "An End-to-End Robust Point Cloud Semantic Segmentation Network
with Single-Step Conditional Diffusion Models", CVPR 2025) adds to PT-v3m1: time-conditioned
blocks, the concatenating unpooling of its conditional branch, and the cross-attention block that
lets the noise branch read the conditional branch. Names follow CDSegNet's
point_transformer_v3m1_base.py so its checkpoints load by name.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from srkd.errors import DataError
from srkd.models import sparse
from srkd.models.attention import SerializedAttention
from srkd.models.ptv3_blocks import (
    MLP,
    Block,
    DropPath,
    PointLevel,
    SerializedUnpooling,
)

SKIP_SCALE = 2**-0.5 / 0.8
"""Factor on the conditional decoder's projected skip features: CDSegNet's
skip_connection_scale (x 2^-1/2) and its exponential scaling with i = False, 0.8^(False - 1)
= 1 / 0.8, which the released configs switch on by passing False where None would turn it off."""


def time_embedding(t: int, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (1, dim) float32 of diffusion step `t`: (sin(t f), cos(t f)) with
    f_i = exp(-i ln(10000) / (dim/2 - 1)), i < dim/2 (CDSegNet's calc_t_emb; DDPM, Ho et al. 2020)."""
    half = dim // 2
    freq = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
    arg = torch.full((1, 1), int(t), dtype=torch.int64) * freq
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


class TimeBlock(Block):
    """A PTv3 block whose features get Linear(time embedding) after the xCPE residual."""

    def __init__(self, channels: int, *args, t_dim: int = 128, **kwargs) -> None:
        super().__init__(channels, *args, **kwargs)
        self.t_mlp = nn.Linear(t_dim, channels)

    def forward(self, level: PointLevel, t_emb: torch.Tensor) -> PointLevel:  # type: ignore[override]
        """t_emb: float (1, t_dim) or (M, t_dim), the branch's (already transformed) embedding."""
        return self.attend_and_mix(level, self.positional(level) + self.t_mlp(t_emb))


class CatUnpooling(SerializedUnpooling):
    """The conditional decoder's unpooling: parent.feat = proj_cat([s * P_skip(skip), P(feat)]),
    s = SKIP_SCALE; the first block's xCPE convolves P_skip(skip) (PT-v3m1 semantics)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, mode: str = "v3m1",
                 norm: str = "batch") -> None:  # fmt: skip
        super().__init__(in_channels, skip_channels, out_channels, mode, norm)
        self.proj_cat = nn.Sequential(nn.Linear(2 * out_channels, out_channels))

    def forward(self, level: PointLevel) -> PointLevel:
        parent, cluster = level.parent, level.cluster
        if parent is None or cluster is None:
            raise DataError("CatUnpooling needs a level produced by a pooling")
        skip = self.proj_skip(parent.feat)
        parent.feat = self.proj_cat(torch.cat([skip * SKIP_SCALE, self.proj(level.feat)[cluster]], dim=1))
        parent.cpe_input = skip
        return parent


class CrossAttention(SerializedAttention):
    """Patch attention whose queries come from one level and keys/values from another holding the
    same rows (q: Linear(Cq, Cq), kv: Linear(Ckv, 2 Cq)); patches follow the query level."""

    def __init__(self, q_channels: int, kv_channels: int, num_heads: int, patch_size: int,
                 enable_flash: bool = True) -> None:  # fmt: skip
        super().__init__(q_channels, num_heads, patch_size, enable_flash=enable_flash)
        del self.qkv
        self.q = nn.Linear(q_channels, q_channels)
        self.kv = nn.Linear(kv_channels, 2 * q_channels)

    def cross(self, q_level: PointLevel, q_feat: torch.Tensor, kv_feat: torch.Tensor) -> torch.Tensor:
        """q_feat (M, Cq), kv_feat (M, Ckv) row-aligned; returns (M, Cq)."""
        m, c = q_feat.shape
        h = self.num_heads
        qkv = torch.cat([self.q(q_feat).view(m, 1, h, c // h), self.kv(kv_feat).view(m, 2, h, c // h)], dim=1)
        s = q_level.serialization
        k = self.order_index % s.order.shape[0]
        out = self.attend(qkv.reshape(m, 3 * c), s.order[k], s.inverse[k], q_level.layout(self.patch_size),
                          q_level.patch_index(self.patch_size, k))  # fmt: skip
        return self.proj_drop(self.proj(out))


def _cpe(channels: int, key: str) -> nn.ModuleList:
    return nn.ModuleList([sparse.SubMConv3d(channels, channels, 3, indice_key=key, bias=True),
                          nn.Linear(channels, channels), nn.LayerNorm(channels)])  # fmt: skip


class CrossBlock(nn.Module):
    """CDSegNet's fusion block (its TransferModule's cross_block2, tm_feat = 1):
        q  = q + xCPE_q(q);  kv = kv + xCPE_kv(kv)
        q  = q + CrossAttn(LN(q), LN(kv));  q = q + MLP(LN(q))
    on the coarsest levels of the noise branch (q) and of the conditional branch (kv), which
    hold the same cells in the same order (checked)."""

    def __init__(self, q_channels: int, kv_channels: int, num_heads: int, patch_size: int,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0, cpe_indice_key: str = "stage2",
                 enable_flash: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.q_cpe = _cpe(q_channels, cpe_indice_key)
        self.kv_cpe = _cpe(kv_channels, cpe_indice_key)
        self.q_norm1 = nn.Sequential(nn.LayerNorm(q_channels))
        self.kv_norm1 = nn.Sequential(nn.LayerNorm(kv_channels))
        self.attn = CrossAttention(q_channels, kv_channels, num_heads, patch_size, enable_flash)
        self.q_norm2 = nn.Sequential(nn.LayerNorm(q_channels))
        self.mlp = nn.Sequential(MLP(q_channels, int(q_channels * mlp_ratio)))
        self.drop_path = nn.Sequential(DropPath(drop_path) if drop_path > 0 else nn.Identity())

    @staticmethod
    def _positional(cpe: nn.ModuleList, level: PointLevel) -> torch.Tensor:
        conv, linear, norm = cpe
        return level.feat + norm(linear(level.sparse_conv(conv, level.feat)))

    def forward(self, q_level: PointLevel, kv_level: PointLevel) -> PointLevel:
        if not (torch.equal(q_level.grid_coord, kv_level.grid_coord) and torch.equal(q_level.batch, kv_level.batch)):
            raise DataError(
                "CDSegNet's branches reached different coarsest cells (a scene smaller than the "
                "pooling strides?); its cross attention needs the same cells in both"
            )
        q = self._positional(self.q_cpe, q_level)
        kv = self._positional(self.kv_cpe, kv_level)
        kv_level.feat = kv
        q = q + self.drop_path(self.attn.cross(q_level, self.q_norm1(q), self.kv_norm1(kv)))
        q_level.feat = q + self.drop_path(self.mlp(self.q_norm2(q)))
        return q_level
