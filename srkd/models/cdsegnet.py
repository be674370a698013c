"""CDSegNet (Qu et al., CVPR 2025; github.com/QWTforGithub/CDSegNet) as a frozen teacher: the
segmentation output its test-time inference (`DefaultSegmentorV2.inference`) computes.

The network is two PT-v3m1 U-Nets that meet at their coarsest level:
    noise branch (_n_*):       the segmentation network, input = colour + normal (6 channels)
    conditional branch (_c_*): a 3-stage encoder with stride-4 poolings whose blocks add a time
                               embedding; input = Gaussian noise (c_in_channels)
    fusion (_tm_dec0):         the noise branch's coarsest features attend to the conditional
                               branch's (srkd.models.cdsegnet_blocks.CrossBlock)
At test time CDSegNet takes one step from pure noise: the conditional input is N(0, 1) noise
drawn per input point, at step t = T - 1, and the logits are the noise branch's head. The output
therefore depends on the noise draw: srkd draws it per forward call from a generator seeded with
`noise_seed` (a constructor argument, so checkpoints and caches record it), in the batch's point
order, exactly as `torch.manual_seed(noise_seed)` followed by CDSegNet's own draw does.

What srkd does not run: the conditional decoder and its head (`_c_dec`, `_c_head`, the noise
prediction used in training) do not influence the segmentation output; they are built so a
checkpoint loads strictly and the parameter count is CDSegNet's, but `forward` skips them.
Differences, on purpose: CDSegNet shuffles serialization orders at test time (its pooling and
backbone default shuffle_orders=True; with shuffling its two branches may even serialize their
shared coarsest cells along different curves); srkd shuffles only in training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from srkd.data.collate import PointBatch
from srkd.errors import ConfigError
from srkd.models._registry import MODELS
from srkd.models.base import ModelOutput, SegmentationModel
from srkd.models.cdsegnet_blocks import (
    CatUnpooling,
    CrossBlock,
    TimeBlock,
    time_embedding,
)
from srkd.models.ptv3 import build_decoder, build_encoder, check_ptv3_args, run_stages, voxelize_batch
from srkd.models.ptv3_blocks import Embedding, PointLevel, make_level
from srkd.models.serialization import ORDERS, serialize

BRANCH_KEYS = ("stride", "enc_depths", "enc_channels", "enc_num_head", "enc_patch_size",
               "dec_depths", "dec_channels", "dec_num_head", "dec_patch_size")  # fmt: skip


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class CDSegNet(SegmentationModel):
    """forward(PointBatch) -> ModelOutput(logits (N, K), feature (N, n_dec_channels[0])).

    n / c: the noise and conditional branches' PTv3 shapes, dicts of BRANCH_KEYS (tuples per
    stage). noise_seed: the seed of the conditional branch's N(0, 1) input (see module docstring).
    T: diffusion steps (the test step is T - 1); t_dim: time-embedding width.
    """

    pointcept_family = "CDSegNet"
    recorded_args: tuple[str, ...] = ("noise_seed",)
    """Always recorded (checkpoints, caches): the output depends on it."""

    def __init__(
        self,
        in_channels: int = 6,
        num_classes: int = 20,
        c_in_channels: int = 6,
        n: dict[str, Sequence[int]] | None = None,
        c: dict[str, Sequence[int]] | None = None,
        order: Sequence[str] = ORDERS,
        T: int = 1000,
        t_dim: int = 128,
        noise_seed: int = 0,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.3,
        shuffle_orders: bool = True,
        enable_flash: bool = True,
    ) -> None:
        super().__init__()
        n = {k: tuple(v) for k, v in (n or CDSEGNET_SCANNET["n"]).items()}
        c = {k: tuple(v) for k, v in (c or CDSEGNET_SCANNET["c"]).items()}
        for name, branch in (("n", n), ("c", c)):
            if set(branch) != set(BRANCH_KEYS):
                raise ConfigError(f"CDSegNet {name}: needs exactly {', '.join(BRANCH_KEYS)}")
        order = check_ptv3_args(order, in_channels, num_classes, stages=len(n["enc_depths"]),
                            enc=(n["enc_channels"], n["enc_num_head"], n["enc_patch_size"]),
                            dec=tuple(n[k] for k in BRANCH_KEYS if k.startswith("dec") or k == "stride"))
        check_ptv3_args(order, c_in_channels, num_classes, stages=len(c["enc_depths"]),
                    enc=(c["enc_channels"], c["enc_num_head"], c["enc_patch_size"]),
                    dec=tuple(c[k] for k in BRANCH_KEYS if k.startswith("dec") or k == "stride"))
        n_stride, c_stride = _total_stride(n["stride"]), _total_stride(c["stride"])
        if n_stride != c_stride:
            raise ConfigError(f"CDSegNet: the branches' coarsest strides differ ({n_stride} vs {c_stride})")
        self.in_channels, self.num_classes, self.c_in_channels = int(in_channels), int(num_classes), int(c_in_channels)
        self.feature_dim = int(n["dec_channels"][0])
        self.order, self.shuffle_orders = order, shuffle_orders
        self.T, self.t_dim, self.noise_seed = int(T), int(t_dim), int(noise_seed)
        common = dict(mlp_ratio=mlp_ratio, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0,
                      enable_flash=enable_flash)  # fmt: skip
        timed = dict(common, block=TimeBlock, t_dim=t_dim)
        # attribute names are CDSegNet's (its checkpoints' keys)
        self._n_embedding = Embedding(in_channels, n["enc_channels"][0])
        self._n_enc = build_encoder(n["enc_depths"], n["enc_channels"], n["enc_num_head"], n["enc_patch_size"],
                               n["stride"], drop_path, order, shuffle_orders, common)
        self._n_dec = build_decoder(n["dec_depths"], n["dec_channels"], n["dec_num_head"], n["dec_patch_size"],
                               n["enc_channels"], drop_path, len(order), "v3m1", common)
        self._n_head = nn.Linear(self.feature_dim, num_classes)
        self._c_embedding = Embedding(c_in_channels, c["enc_channels"][0])
        self.fc_t1 = nn.Linear(t_dim, 4 * t_dim)
        self.fc_t2 = nn.Linear(4 * t_dim, t_dim)
        self._c_enc = build_encoder(c["enc_depths"], c["enc_channels"], c["enc_num_head"], c["enc_patch_size"],
                               c["stride"], drop_path, order, shuffle_orders, timed)
        self._c_dec = build_decoder(c["dec_depths"], c["dec_channels"], c["dec_num_head"], c["dec_patch_size"],
                               c["enc_channels"], drop_path, len(order), "v3m1", timed, up=CatUnpooling)
        self._c_head = nn.Linear(self.feature_dim, c_in_channels)
        rates = torch.linspace(0, drop_path, sum(c["enc_depths"]), device="cpu").tolist()
        self._tm_dec0 = nn.Module()
        self._tm_dec0.cross_block2 = CrossBlock(
            n["enc_channels"][-1], c["enc_channels"][-1], n["enc_num_head"][-1], n["enc_patch_size"][-1],
            mlp_ratio, drop_path=rates[2], enable_flash=enable_flash,
        )  # fmt: skip

    def draw_noise(self, n: int, device: torch.device) -> torch.Tensor:
        """The conditional branch's input: float32 (n, c_in_channels) N(0, 1), seeded."""
        gen = torch.Generator().manual_seed(self.noise_seed)
        return torch.normal(0.0, 1.0, size=(n, self.c_in_channels), generator=gen).to(device)

    def _levels(self, batch: PointBatch) -> tuple[PointLevel, PointLevel, torch.Tensor]:
        n_in = batch.feat.shape[1]
        if batch.feat.ndim != 2 or n_in != self.in_channels:
            raise ConfigError(f"CDSegNet expects feat (N, {self.in_channels}), got {tuple(batch.feat.shape)}")
        noise = self.draw_noise(batch.feat.shape[0], batch.feat.device).to(batch.feat.dtype)
        both = dataclasses.replace(batch, feat=torch.cat([batch.feat, noise], dim=1))
        feat, coord, grid, bidx, inverse = voxelize_batch(both)
        # CDSegNet's own Point.serialization: depth = bit_length(max), not Pointcept's max + 1
        depth = max(1, int(grid.max().item()).bit_length())
        ser = serialize(grid, bidx, self.order, depth=depth, batch_size=batch.batch_size)
        if self.training and self.shuffle_orders:
            ser = ser.shuffled()
        n_level = make_level(feat[:, :n_in].contiguous(), coord, grid, bidx, batch.batch_size, ser)
        c_level = make_level(feat[:, n_in:].contiguous(), coord, grid, bidx, batch.batch_size, ser)
        return n_level, c_level, inverse

    def forward(self, batch: PointBatch) -> ModelOutput:
        """batch: N points, feat (N, in_channels). Returns the noise branch's logits (N, K) and
        its last decoder feature (N, feature_dim), in the batch's point order."""
        n_level, c_level, inverse = self._levels(batch)
        t_emb = time_embedding(self.T - 1, self.t_dim).to(c_level.feat.device, c_level.feat.dtype)
        t_emb = _swish(self.fc_t2(_swish(self.fc_t1(t_emb))))
        n_level = self._n_embedding(n_level)
        c_level = self._c_embedding(c_level)
        n_level = run_stages(self._n_enc, n_level)
        for stage in self._c_enc.values():
            for module in stage.values():
                c_level = module(c_level, t_emb) if isinstance(module, TimeBlock) else module(c_level)
        n_level = run_stages(self._n_dec, self._tm_dec0.cross_block2(n_level, c_level))
        feature = n_level.feat[inverse]
        return ModelOutput(logits=self._n_head(feature), feature=feature)


def _total_stride(strides: Sequence[int]) -> int:
    total = 1
    for s in strides:
        total *= int(s)
    return total


def _branch(depths, channels, heads, stride, dec_depths, dec_channels, dec_heads) -> dict[str, tuple[int, ...]]:
    return dict(stride=stride, enc_depths=depths, enc_channels=channels, enc_num_head=heads,
                enc_patch_size=(1024,) * len(depths), dec_depths=dec_depths, dec_channels=dec_channels,
                dec_num_head=dec_heads, dec_patch_size=(1024,) * len(dec_depths))  # fmt: skip


CDSEGNET_SCANNET: dict[str, Any] = dict(  # QWTforGithub/CDSegNet configs/scannet/CDSegNet.py
    n=_branch((2, 2, 2, 6, 6), (32, 64, 128, 256, 512), (2, 4, 8, 16, 32), (2, 2, 2, 2),
              (2, 2, 2, 2), (64, 64, 128, 256), (4, 4, 8, 16)),
    c=_branch((2, 2, 2), (32, 64, 128), (2, 4, 8), (4, 4), (2, 2), (64, 64), (4, 4)),
)
"""ScanNet's CDSegNet; ScanNet200 (num_classes=200) and nuScenes (in_channels=4,
c_in_channels=4, num_classes=16) differ only in those."""

TEST_CDSEGNET: dict[str, Any] = dict(  # a tiny CDSegNet for tests: the same topology, small widths
    n=dict(_branch((1, 1, 1, 1, 1), (8, 8, 16, 16, 32), (1, 1, 2, 2, 2), (2, 2, 2, 2),
                   (1, 1, 1, 1), (8, 8, 16, 16), (1, 1, 2, 2)), enc_patch_size=(16,) * 5, dec_patch_size=(16,) * 4),
    c=dict(_branch((1, 1, 1), (8, 8, 16), (1, 1, 2), (4, 4), (1, 1), (8, 8), (1, 1)),
           enc_patch_size=(16,) * 3, dec_patch_size=(16,) * 2),
    t_dim=16, drop_path=0.0,
)


@MODELS.register
def cdsegnet(**overrides) -> CDSegNet:
    """CDSegNet as released for ScanNet (noise_seed selects the test-time noise draw)."""
    return CDSegNet(**{**CDSEGNET_SCANNET, **overrides})


@MODELS.register
def test_cdsegnet(**overrides) -> CDSegNet:
    """Tiny CDSegNet for tests."""
    return CDSegNet(**{**TEST_CDSEGNET, **overrides})
