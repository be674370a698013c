"""Point Transformer V3 segmentation model (Wu et al., "Point Transformer V3: Simpler, Faster,
Stronger", CVPR 2024), with parameter names and shapes of Pointcept's `PT-v3m1` + `seg_head`.

Pipeline of one forward pass (shapes for a batch of N points in M occupied voxels):
    voxels:   points sharing a (sample, voxel) are averaged into one row        (M, C_in)
    serialize along `order` curves (z / z-trans / hilbert / hilbert-trans), shuffled in training
    embedding: 5x5x5 SubMConv + BN + GELU                                       (M, enc_channels[0])
    encoder:  per stage s: [SerializedPooling (s > 0)] + enc_depths[s] blocks
    decoder:  per stage s = S-2..0: SerializedUnpooling + dec_depths[s] blocks   (M, dec_channels[0])
    feature = last decoder output (the distilled feature), logits = seg_head(feature)
    both lifted back to the N input points, in the batch's point order.

Decoder semantics follow the checkpoint: `unpooling="v3m1"` (the default, Pointcept's PT-v3m1:
the first block of each decoder stage convolves the projected skip features in its xCPE) or
"v3m2" (it convolves the sum, as Pointcept's later models and srkd's own presets do); see
SerializedUnpooling. The choice is a constructor argument, so srkd checkpoints record it.

Layer layout follows the checkpoint too: `variant="v3m1"` (the default) builds PT-v3m1's sparse-conv
stem, serialized pooling and BatchNorms; "v3m2" builds Pointcept's PT-v3m2 (the Sonata family:
linear stem, grid pooling, LayerNorms; srkd/models/ptv3_v3m2.py), with the v3m2 decoder.

Differences from Pointcept, on purpose: orders are shuffled only in training (Pointcept also
shuffles at test time, so its own test outputs vary from run to run); duplicate voxels are
averaged instead of being fed to the sparse conv twice; patches follow flash-attn's semantics on
every device (see srkd/models/attention.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from srkd.data.collate import PointBatch
from srkd.errors import ConfigError, DataError
from srkd.models._registry import MODELS
from srkd.models.base import ModelOutput, SegmentationModel
from srkd.models.ptv3_blocks import (
    Block,
    Embedding,
    PointLevel,
    SerializedPooling,
    SerializedUnpooling,
    check_unpooling,
    make_level,
)
from srkd.models.ptv3_v3m2 import GridPooling, LinearEmbedding, check_variant
from srkd.models.serialization import ORDERS, encode, serialization_depth, serialize


def voxelize_batch(batch: PointBatch) -> tuple[torch.Tensor, ...]:
    """Unique (sample, voxel) rows of a batch.

    Returns (feat (M, C) mean, coord (M, 3) mean, grid (M, 3) int64, bidx (M,) int64,
    inverse (N,) int64 row of each point). Rows are sorted by sample, then z-order.
    """
    grid = batch.grid_coord.long()
    bidx = batch.batch_index.to(grid.device)
    key = encode(grid, bidx, serialization_depth(grid), "z")  # unique per (sample, voxel)
    _, inverse, counts = torch.unique(key, sorted=True, return_inverse=True, return_counts=True)
    m = counts.numel()
    n = inverse.numel()
    first = torch.full((m,), n, dtype=torch.long, device=grid.device)
    first.scatter_reduce_(0, inverse, torch.arange(n, device=grid.device), reduce="amin")
    weights = counts.to(batch.feat.dtype)[:, None]

    def mean(x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros((m, x.shape[1])).index_add_(0, inverse, x) / weights

    return mean(batch.feat), mean(batch.coord), grid[first], bidx[first], inverse


def _check_lengths(name: str, values: Sequence, expected: int) -> None:
    if len(values) != expected:
        raise ConfigError(f"PTv3: {name} has {len(values)} entries, expected {expected}")


def check_ptv3_args(order: str | Sequence[str], in_channels: int, num_classes: int,
                enc: tuple[Sequence[int], ...], dec: tuple[Sequence[int], ...], stages: int) -> tuple[str, ...]:
    """Validate PTv3's constructor arguments; returns `order` as a tuple of curve names.

    enc: (enc_channels, enc_num_head, enc_patch_size), one value per stage; dec: (stride,
    dec_depths, dec_channels, dec_num_head, dec_patch_size), one per stage but the last.
    Raises ConfigError naming the argument."""
    order = (order,) if isinstance(order, str) else tuple(order)
    for o in order:
        if o not in ORDERS:
            raise ConfigError(f"PTv3: unknown order {o!r}; known: {', '.join(ORDERS)}")
    if stages < 1:
        raise ConfigError("PTv3 needs at least one encoder stage")
    for name, values in zip(("stride", "dec_depths", "dec_channels", "dec_num_head", "dec_patch_size"),
                            dec, strict=True):
        _check_lengths(name, values, stages - 1)
    for name, values in zip(("enc_channels", "enc_num_head", "enc_patch_size"), enc, strict=True):
        _check_lengths(name, values, stages)
    if in_channels < 1 or num_classes < 1:
        raise ConfigError(
            f"PTv3: in_channels ({in_channels}) and num_classes ({num_classes}) must be >= 1"
        )
    return order


def build_encoder(depths: Sequence[int], channels: Sequence[int], num_head: Sequence[int],
             patch_size: Sequence[int], stride: Sequence[int], drop_path: float, order: tuple[str, ...],
             shuffle_orders: bool, block_args: dict[str, Any], variant: str = "v3m1") -> nn.ModuleDict:
    """enc0..enc{S-1}: each stage a pooling (but the first; serialized for variant v3m1, grid for
    v3m2) and its blocks; the drop-path rate grows linearly with depth over the whole encoder."""
    rates_all = torch.linspace(0, drop_path, sum(depths), device="cpu").tolist()
    enc = nn.ModuleDict()
    for s in range(len(depths)):
        stage = nn.ModuleDict()
        if s > 0:
            if variant == "v3m2":
                stage["down"] = GridPooling(channels[s - 1], channels[s], stride[s - 1], order, shuffle_orders)
            else:
                stage["down"] = SerializedPooling(channels[s - 1], channels[s], stride[s - 1], shuffle_orders)
        rates = rates_all[sum(depths[:s]) : sum(depths[: s + 1])]
        _add_blocks(stage, s, channels[s], num_head[s], patch_size[s], rates, len(order), block_args)
        enc[f"enc{s}"] = stage
    return enc


def _add_blocks(stage: nn.ModuleDict, level: int, channels: int, heads: int, patch: int,
                rates: Sequence[float], orders: int, block_args: dict[str, Any]) -> None:
    """Append one stage's transformer blocks block0..block{len(rates)-1}: block i serializes with
    curve i % orders and has drop-path rate rates[i]; the stage's blocks share one conv key.
    block_args may name the block class ("block", default Block) besides its arguments."""
    args = dict(block_args)
    block = args.pop("block", Block)
    for i, rate in enumerate(rates):
        stage[f"block{i}"] = block(channels, heads, patch, drop_path=rate, order_index=i % orders,
                                   cpe_indice_key=f"stage{level}", **args)


def build_decoder(depths: Sequence[int], channels: Sequence[int], num_head: Sequence[int],
             patch_size: Sequence[int], enc_channels: Sequence[int], drop_path: float, orders: int,
             unpooling: str, block_args: dict[str, Any], norm: str = "batch",
             up: type[nn.Module] = SerializedUnpooling) -> nn.ModuleDict:
    """dec{S-2}..dec0 (coarse to fine): each stage an unpooling (`up`) onto the encoder's skip
    level and its blocks; drop-path rates as in the encoder, reversed within a stage."""
    rates_all = torch.linspace(0, drop_path, max(sum(depths), 1), device="cpu").tolist()
    widths = list(channels) + [enc_channels[-1]]
    dec = nn.ModuleDict()
    for s in reversed(range(len(enc_channels) - 1)):
        stage = nn.ModuleDict()
        stage["up"] = up(widths[s + 1], enc_channels[s], widths[s], unpooling, norm)
        rates = rates_all[sum(depths[:s]) : sum(depths[: s + 1])][::-1]
        _add_blocks(stage, s, widths[s], num_head[s], patch_size[s], rates, orders, block_args)
        dec[f"dec{s}"] = stage
    return dec


def run_stages(stages: nn.ModuleDict, level: PointLevel) -> PointLevel:
    """Run every module of every stage (poolings, blocks, unpoolings) in order on `level`."""
    for stage in stages.values():
        for module in stage.values():
            level = module(level)
    return level


class PointTransformerV3(SegmentationModel):
    """PTv3 U-Net + linear head. forward(PointBatch) -> ModelOutput(logits (N, K), feature (N, D)).

    D = feature_dim = dec_channels[0]. Constructor arguments are plain ints/floats/tuples/strs so
    a checkpoint can store them and `create_model(name, **args)` rebuilds the same model.
    unpooling: "v3m1" (Pointcept PT-v3m1 checkpoints) or "v3m2"; see SerializedUnpooling.
    variant: the layer layout, "v3m1" (Pointcept PT-v3m1) or "v3m2" (PT-v3m2, Sonata: linear
        stem, grid pooling, LayerNorm; needs unpooling "v3m2"); see srkd.models.ptv3_v3m2.
    """

    recorded_args: tuple[str, ...] = ("unpooling",)
    """Constructor arguments every srkd checkpoint stores explicitly (see save_checkpoint)."""

    def __init__(
        self,
        in_channels: int = 6,
        num_classes: int = 20,
        order: Sequence[str] = ORDERS,
        stride: Sequence[int] = (2, 2, 2, 2),
        enc_depths: Sequence[int] = (2, 2, 2, 6, 2),
        enc_channels: Sequence[int] = (32, 64, 128, 256, 512),
        enc_num_head: Sequence[int] = (2, 4, 8, 16, 32),
        enc_patch_size: Sequence[int] = (1024, 1024, 1024, 1024, 1024),
        dec_depths: Sequence[int] = (2, 2, 2, 2),
        dec_channels: Sequence[int] = (64, 64, 128, 256),
        dec_num_head: Sequence[int] = (4, 4, 8, 16),
        dec_patch_size: Sequence[int] = (1024, 1024, 1024, 1024),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.3,
        shuffle_orders: bool = True,
        enable_flash: bool = True,
        unpooling: str = "v3m1",
        variant: str = "v3m1",
    ) -> None:
        super().__init__()
        self.unpooling = check_unpooling(unpooling)
        self.variant = check_variant(variant)
        if variant == "v3m2" and unpooling != "v3m2":
            raise ConfigError("PTv3 variant 'v3m2' refreshes the sparse-conv features after each "
                              "unpooling: it needs unpooling='v3m2'")
        stages = len(enc_depths)
        order = check_ptv3_args(order, in_channels, num_classes, stages=stages,
                            enc=(enc_channels, enc_num_head, enc_patch_size),
                            dec=(stride, dec_depths, dec_channels, dec_num_head, dec_patch_size))
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.feature_dim = int(dec_channels[0]) if stages > 1 else int(enc_channels[0])
        self.order = order
        self.shuffle_orders = shuffle_orders
        block_args = dict(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                          attn_drop=attn_drop, proj_drop=proj_drop, enable_flash=enable_flash)
        # built in this order (embedding, encoder, decoder, head): it fixes both the state_dict
        # keys and what a seeded random init gives each parameter
        stem = LinearEmbedding if variant == "v3m2" else Embedding
        self.embedding = stem(in_channels, enc_channels[0])
        self.enc = build_encoder(enc_depths, enc_channels, enc_num_head, enc_patch_size, stride,
                            drop_path, order, shuffle_orders, block_args, variant)
        self.dec = build_decoder(dec_depths, dec_channels, dec_num_head, dec_patch_size, enc_channels,
                            drop_path, len(order), unpooling, block_args,
                            norm="layer" if variant == "v3m2" else "batch")
        self.seg_head = nn.Linear(self.feature_dim, num_classes)

    @property
    def pointcept_family(self) -> str:
        """The Pointcept network whose checkpoints this layout loads: "PT-v3m1" or "PT-v3m2"."""
        return "PT-v3m2" if self.variant == "v3m2" else "PT-v3m1"

    def _check(self, batch: PointBatch) -> None:
        n = batch.grid_coord.shape[0]
        if batch.feat.ndim != 2 or batch.feat.shape[1] != self.in_channels:
            raise DataError(
                f"PTv3 expects feat of shape (N, {self.in_channels}), got {tuple(batch.feat.shape)}; "
                "check the input feature spec (e.g. colour + normal = 6)"
            )
        if batch.feat.shape[0] != n or batch.coord.shape[0] != n:
            raise DataError(f"PointBatch rows differ: grid_coord {n}, feat {batch.feat.shape[0]}, "
                            f"coord {batch.coord.shape[0]}")
        if n == 0 or int(batch.offset[-1]) != n:
            raise DataError(f"PointBatch offset {batch.offset.tolist()} does not end at N = {n}")
        if bool((torch.diff(batch.offset, prepend=batch.offset.new_zeros(1)) <= 0).any()):
            raise DataError(f"every sample needs at least one point; offset = {batch.offset.tolist()}")

    def encode_levels(self, batch: PointBatch) -> tuple[PointLevel, torch.Tensor]:
        """Run stem, encoder and decoder. Returns the finest level (feat (M, D)) and the int64
        (N,) map from batch points to its rows."""
        self._check(batch)
        feat, coord, grid, bidx, inverse = voxelize_batch(batch)
        ser = serialize(grid, bidx, self.order, batch_size=batch.batch_size)
        if self.training and self.shuffle_orders:
            ser = ser.shuffled()
        level = make_level(feat, coord, grid, bidx, batch.batch_size, ser)
        level = run_stages(self.dec, run_stages(self.enc, self.embedding(level)))
        return level, inverse

    def forward(self, batch: PointBatch) -> ModelOutput:
        """batch: PointBatch of N points (feat (N, in_channels)). Returns logits float (N,
        num_classes) and feature float (N, feature_dim), in the batch's point order."""
        level, inverse = self.encode_levels(batch)
        feature = level.feat[inverse]
        return ModelOutput(logits=self.seg_head(feature), feature=feature)


# ---- presets -------------------------------------------------------------------------------

PTV3_BASE: dict = dict(  # Pointcept configs/scannet/semseg-pt-v3m1-0-base.py
    enc_depths=(2, 2, 2, 6, 2), enc_channels=(32, 64, 128, 256, 512), enc_num_head=(2, 4, 8, 16, 32),
    dec_depths=(2, 2, 2, 2), dec_channels=(64, 64, 128, 256), dec_num_head=(4, 4, 8, 16),
)
PTV3_LARGE: dict = dict(  # widths/depths of Pointcept configs/scannet/semseg-pt-v3m2-0-sonata-scratch.py
    enc_depths=(3, 3, 3, 12, 3), enc_channels=(48, 96, 192, 384, 512), enc_num_head=(3, 6, 12, 24, 32),
    dec_depths=(2, 2, 2, 2), dec_channels=(64, 96, 192, 384), dec_num_head=(4, 6, 12, 24),
    unpooling="v3m2",
)
SONATA_SEMSEG: dict = dict(  # Pointcept configs/sonata/semseg-sonata-v1m1-0c-scannet-ft.py (PT-v3m2)
    PTV3_LARGE, in_channels=9, variant="v3m2",
)
PTV3_HALF: dict = dict(  # SRKD student: every width of the base halved
    enc_depths=(2, 2, 2, 6, 2), enc_channels=(16, 32, 64, 128, 256), enc_num_head=(2, 4, 8, 16, 32),
    dec_depths=(2, 2, 2, 2), dec_channels=(32, 32, 64, 128), dec_num_head=(4, 4, 8, 16),
)
TEST_PTV3: dict = dict(  # three stages, tiny widths and patches, for tests
    order=("z", "hilbert-trans"), stride=(2, 2), enc_depths=(1, 1, 2), enc_channels=(8, 16, 16),
    enc_num_head=(1, 2, 2), enc_patch_size=(32, 32, 32), dec_depths=(1, 1), dec_channels=(16, 16),
    dec_num_head=(2, 2), dec_patch_size=(32, 32), drop_path=0.1,
)
DEMO_STUDENT: dict = dict(  # the demo's student: a 4-stage PTv3 at a few percent of ptv3_half
    stride=(2, 2, 2), enc_depths=(1, 1, 1, 1), enc_channels=(16, 32, 48, 64), enc_num_head=(1, 2, 3, 4),
    enc_patch_size=(128,) * 4, dec_depths=(1, 1, 1), dec_channels=(16, 32, 48),
    dec_num_head=(1, 2, 3), dec_patch_size=(128,) * 3, drop_path=0.0, unpooling="v3m2",
)
TEST_PTV3_TWO_STAGE: dict = dict(
    order=ORDERS, stride=(2,), enc_depths=(2, 2), enc_channels=(8, 16), enc_num_head=(2, 2),
    enc_patch_size=(16, 16), dec_depths=(1,), dec_channels=(8,), dec_num_head=(1,), dec_patch_size=(16,),
    drop_path=0.0,
)


def _build(preset: dict, overrides: dict) -> PointTransformerV3:
    return PointTransformerV3(**{**preset, **overrides})


@MODELS.register
def ptv3_large(**overrides) -> PointTransformerV3:
    """Teacher-sized PTv3 (>= 100M parameters)."""
    return _build(PTV3_LARGE, overrides)


@MODELS.register
def sonata_semseg(**overrides) -> PointTransformerV3:
    """Pointcept's Sonata semseg network (PT-v3m2, 9 input channels: coord + colour + normal)."""
    return _build(SONATA_SEMSEG, overrides)


@MODELS.register
def ptv3_base(**overrides) -> PointTransformerV3:
    """Pointcept's ScanNet PTv3 base (PT-v3m1)."""
    return _build(PTV3_BASE, overrides)


@MODELS.register
def ptv3_half(**overrides) -> PointTransformerV3:
    """SRKD student: PTv3 base with every width halved."""
    return _build(PTV3_HALF, overrides)


@MODELS.register
def test_ptv3(**overrides) -> PointTransformerV3:
    """Tiny three-stage PTv3 for tests."""
    return _build(TEST_PTV3, overrides)


@MODELS.register
def test_sonata(**overrides) -> PointTransformerV3:
    """Tiny three-stage PT-v3m2 (Sonata layout, 9 input channels) for tests."""
    return _build({**TEST_PTV3, "in_channels": 9, "variant": "v3m2", "unpooling": "v3m2"}, overrides)


@MODELS.register
def test_ptv3_two_stage(**overrides) -> PointTransformerV3:
    """Tiny two-stage PTv3 with all four curves, for tests."""
    return _build(TEST_PTV3_TWO_STAGE, overrides)


@MODELS.register
def demo_student(**overrides) -> PointTransformerV3:
    """The demo's student (CPU-sized PTv3)."""
    return _build(DEMO_STUDENT, overrides)
