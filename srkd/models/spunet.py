"""A sparse-convolution U-Net student (the shape of Pointcept's SpUNet-v1m1).

Architecture, for S = len(channels) // 2 stages:
    stem:     SubMConv3d(in, base, k=5) -> BN -> ReLU                     (full resolution)
    encoder:  for s in 0..S-1: SparseConv3d(k=2, stride=2) -> BN -> ReLU, then layers[s]
              residual blocks at 1/2^(s+1) resolution, width channels[s]
    decoder:  for s in S-1..0: SparseInverseConv3d(k=2) back to the resolution of encoder level s
              -> BN -> ReLU, concatenate the skip of that level, then layers[2S-1-s] residual blocks
              of width channels[2S-1-s] (so the last decoder stage, s = 0, has width channels[-1])
    head:     1x1 SubMConv3d(channels[-1] -> num_classes) with bias
The distilled feature is the output of the last decoder stage (full resolution, channels[-1]).
Module and parameter names (conv_input, down, enc, up, dec, final) follow Pointcept's, so a
Pointcept SpUNet-v1m1 state_dict with the same channels/layers maps one to one.

Points that share a voxel share a prediction: the network runs on unique voxels and results are
gathered back to every point of the batch (``batch_to_sparse``'s inverse map).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from srkd.data.collate import PointBatch
from srkd.errors import ConfigError, DataError
from srkd.models._registry import MODELS
from srkd.models.base import ModelOutput, SegmentationModel
from srkd.models.sparse import (
    SparseConv3d,
    SparseInverseConv3d,
    SparseModule,
    SparseSequential,
    SparseTensor,
    SubMConv3d,
    batch_to_sparse,
    is_sparse_conv,
)


def _norm(channels: int) -> nn.BatchNorm1d:
    # Pointcept's setting: a small momentum keeps running stats stable with small batches.
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


class ResidualBlock(SparseModule):
    """Two 3x3x3 submanifold convs with BN/ReLU plus a (projected when widths differ) shortcut.

    features float (M, in_channels) -> float (M, channels); indices unchanged.
    """

    def __init__(self, in_channels: int, channels: int, indice_key: str) -> None:
        super().__init__()
        if in_channels == channels:
            self.proj = SparseSequential(nn.Identity())
        else:
            self.proj = SparseSequential(SubMConv3d(in_channels, channels, 1, bias=False), _norm(channels))
        self.conv1 = SubMConv3d(in_channels, channels, 3, indice_key=indice_key, bias=False)
        self.bn1 = _norm(channels)
        self.conv2 = SubMConv3d(channels, channels, 3, indice_key=indice_key, bias=False)
        self.bn2 = _norm(channels)
        self.relu = nn.ReLU()

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.conv1(x)
        out = out.replace_feature(self.relu(self.bn1(out.features)))
        out = self.conv2(out)
        shortcut = self.proj(x).features
        return out.replace_feature(self.relu(self.bn2(out.features) + shortcut))


def _blocks(first_in: int, channels: int, count: int, indice_key: str) -> SparseSequential:
    return SparseSequential(
        OrderedDict(
            (f"block{i}", ResidualBlock(first_in if i == 0 else channels, channels, indice_key))
            for i in range(count)
        )
    )


class SpUNet(SegmentationModel):
    """Sparse-conv U-Net segmentation model.

    in_channels:   input feature width C of ``PointBatch.feat`` (default 6 = colour + normal).
    num_classes:   K.
    base_channels: stem width.
    channels:      2S widths: S encoder stages then S decoder stages (last = feature_dim).
    layers:        2S residual block counts, same order.
    forward(batch) -> ModelOutput(logits float (N, K), feature float (N, channels[-1])), N = points
    of the batch, in batch order.
    """

    def __init__(
        self,
        in_channels: int = 6,
        num_classes: int = 20,
        base_channels: int = 32,
        channels: Sequence[int] = (32, 64, 128, 256, 256, 128, 96, 96),
        layers: Sequence[int] = (2, 3, 4, 6, 2, 2, 2, 2),
    ) -> None:
        super().__init__()
        channels, layers = tuple(int(c) for c in channels), tuple(int(n) for n in layers)
        if len(channels) != len(layers) or len(channels) % 2 or not channels:
            raise ConfigError(
                f"SpUNet needs channels and layers of the same even length; got {len(channels)} "
                f"channels and {len(layers)} layers"
            )
        if min(channels + layers + (in_channels, num_classes, base_channels)) < 1:
            raise ConfigError("SpUNet widths, depths, in_channels and num_classes must be >= 1")
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.feature_dim = channels[-1]
        self.num_stages = stages = len(channels) // 2

        self.conv_input = SparseSequential(
            SubMConv3d(in_channels, base_channels, 5, indice_key="stem", bias=False),
            _norm(base_channels),
            nn.ReLU(),
        )
        self.down, self.enc, self.up, self.dec = (nn.ModuleList() for _ in range(4))
        enc_in = base_channels  # width of the encoder level the next stage starts from
        for s in range(stages):
            self.down.append(
                SparseSequential(
                    SparseConv3d(enc_in, channels[s], 2, stride=2, indice_key=f"spconv{s + 1}"),
                    _norm(channels[s]),
                    nn.ReLU(),
                )
            )
            self.enc.append(_blocks(channels[s], channels[s], layers[s], f"subm{s + 1}"))
            # Decoder stage s brings level s+1 back to level s; its input is the output of decoder
            # stage s+1 (or the bottleneck) and its width channels[2S-2-s] (channels[-1] for s=0).
            dec_in = channels[2 * stages - s - 2]
            dec_out = channels[2 * stages - s - 1]
            self.up.append(
                SparseSequential(
                    SparseInverseConv3d(dec_in, dec_out, 2, indice_key=f"spconv{s + 1}"),
                    _norm(dec_out),
                    nn.ReLU(),
                )
            )
            self.dec.append(_blocks(dec_out + enc_in, dec_out, layers[2 * stages - s - 1], f"subm{s}"))
            enc_in = channels[s]
        self.final = SubMConv3d(channels[-1], num_classes, 1, bias=True)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if is_sparse_conv(m) or isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, batch: PointBatch) -> ModelOutput:
        if batch.feat.shape[1] != self.in_channels:
            raise DataError(
                f"SpUNet expects {self.in_channels} input feature channels, the batch has "
                f"{batch.feat.shape[1]}"
            )
        # 2**stages padding keeps every voxel inside the grid through all strided convs.
        x, inverse = batch_to_sparse(batch, pad_to=2**self.num_stages)
        x = self.conv_input(x)
        skips = [x]
        for down, enc in zip(self.down, self.enc):
            x = enc(down(x))
            skips.append(x)
        x = skips.pop()
        for s in reversed(range(self.num_stages)):
            x = self.up[s](x)
            skip = skips.pop()
            x = self.dec[s](x.replace_feature(torch.cat((x.features, skip.features), dim=1)))
        feature = x.features
        logits = self.final(x).features
        return ModelOutput(logits=logits[inverse], feature=feature[inverse])


# Presets: exact parameter counts are in docs/models.md (bench/models.py prints them).
SPUNET_SMALL = dict(
    base_channels=32, channels=(32, 64, 128, 192, 128, 96, 64, 32), layers=(2, 2, 2, 2, 2, 2, 2, 2)
)
TEST_SPUNET = dict(base_channels=8, channels=(8, 16, 16, 8), layers=(1, 1, 1, 1))


@MODELS.register
def spunet_base(**overrides) -> SpUNet:
    """Pointcept's SpUNet-v1m1 ScanNet configuration (a reference point, not an SRKD student)."""
    return SpUNet(**overrides)


@MODELS.register
def spunet_small(**overrides) -> SpUNet:
    """The sparse-conv student (< 15M parameters, 32-d distilled feature)."""
    return SpUNet(**{**SPUNET_SMALL, **overrides})


@MODELS.register
def test_spunet(**overrides) -> SpUNet:
    """A tiny 2-stage U-Net for tests."""
    return SpUNet(**{**TEST_SPUNET, **overrides})


DEMO_TEACHER = dict(
    base_channels=32, channels=(32, 64, 96, 128, 96, 64, 48, 48), layers=(1, 1, 2, 2, 1, 1, 1, 1)
)


DEMO_TEACHER_MINI = dict(
    base_channels=16, channels=(24, 32, 48, 64, 48, 32, 24, 24), layers=(1, 1, 1, 1, 1, 1, 1, 1)
)


@MODELS.register
def demo_teacher(**overrides) -> SpUNet:
    """A mid-size U-Net (4.9M): the teacher of the quality bench's reported tables."""
    return SpUNet(**{**DEMO_TEACHER, **overrides})


@MODELS.register
def demo_teacher_mini(**overrides) -> SpUNet:
    """The shipped demo teacher's U-Net (0.91M, under 2 MB in float16)."""
    return SpUNet(**{**DEMO_TEACHER_MINI, **overrides})
