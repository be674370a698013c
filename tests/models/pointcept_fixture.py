"""Shared definitions of the Pointcept PT-v3m1 / PT-v3m2 equivalence fixtures (tests/models/fixtures/).

The fixtures hold Pointcept's own logits for fixed inputs, computed once in a scratch folder by
running Pointcept's `PT-v3m1` code (see docs/models.md, "Pointcept PTv3 checkpoints"). This module is
imported both by the test and by the script that regenerates the fixtures, so the two agree on
the configurations and on the weights of the base configuration, which are too large to commit
and are instead generated from their parameter names (`generated_weights`).

Fixture file (torch.save of plain tensors and str/int/float/list/dict, loadable weights_only):
    config:       dict of PT-v3m1 keyword arguments shared by Pointcept and srkd (values are
                  ints, floats, None and lists), + num_classes
    state_dict:   dict[str, Tensor] keyed as in a Pointcept training checkpoint of a DDP run
                  (`module.backbone.*`, `module.seg_head.*`), or absent when the weights are
                  `generated_weights(shapes)`
    coord:        float32 (N, 3), grid_coord: int64 (N, 3), feat: float32 (N, C),
    offset:       int64 (B,) cumulative end row of each sample (one row per occupied voxel)
    logits:       float32 (N, num_classes) Pointcept's output for those rows
    pointcept_commit: str, the Pointcept commit that produced the logits
"""

from __future__ import annotations

import math
import zlib

import torch

ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")

SMALL_CONFIG: dict = dict(
    in_channels=6, num_classes=20, order=ORDERS, stride=(2, 2, 2),
    enc_depths=(1, 1, 1, 2), enc_channels=(8, 8, 16, 16), enc_num_head=(1, 1, 2, 2),
    enc_patch_size=(16, 16, 16, 16), dec_depths=(1, 1, 1), dec_channels=(8, 8, 16),
    dec_num_head=(1, 1, 2), dec_patch_size=(16, 16, 16), mlp_ratio=4, qkv_bias=True,
    qk_scale=None, attn_drop=0.0, proj_drop=0.0, drop_path=0.0,
)
"""A small PT-v3m1: four stages, every curve, two blocks in the last encoder stage."""

BASE_CONFIG: dict = dict(
    in_channels=6, num_classes=20, order=ORDERS, stride=(2, 2, 2, 2),
    enc_depths=(2, 2, 2, 6, 2), enc_channels=(32, 64, 128, 256, 512), enc_num_head=(2, 4, 8, 16, 32),
    enc_patch_size=(1024,) * 5, dec_depths=(2, 2, 2, 2), dec_channels=(64, 64, 128, 256),
    dec_num_head=(4, 4, 8, 16), dec_patch_size=(1024,) * 4, mlp_ratio=4, qkv_bias=True,
    qk_scale=None, attn_drop=0.0, proj_drop=0.0, drop_path=0.3,
)
"""Pointcept's configs/scannet/semseg-pt-v3m1-0-base.py backbone (46.2M parameters)."""

V3M2_SMALL_CONFIG: dict = dict(SMALL_CONFIG, in_channels=9)
"""A small PT-v3m2 (grid pooling, linear stem) with Sonata's 9 input channels, SMALL's shape."""

V3M2_BASE_CONFIG: dict = dict(
    in_channels=9, num_classes=20, order=ORDERS, stride=(2, 2, 2, 2),
    enc_depths=(3, 3, 3, 12, 3), enc_channels=(48, 96, 192, 384, 512), enc_num_head=(3, 6, 12, 24, 32),
    enc_patch_size=(1024,) * 5, dec_depths=(2, 2, 2, 2), dec_channels=(64, 96, 192, 384),
    dec_num_head=(4, 6, 12, 24), dec_patch_size=(1024,) * 4, mlp_ratio=4, qkv_bias=True,
    qk_scale=None, attn_drop=0.0, proj_drop=0.0, drop_path=0.3,
)
"""Pointcept's configs/sonata/semseg-sonata-v1m1-0c-scannet-ft.py backbone (PT-v3m2)."""


def generated_weights(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Deterministic float32 weights for a state dict, a function of each key and shape only.

    Matrices and conv kernels: N(0, 1/fan_in) (fan_in = product of all dims but the first);
    norm weights 1 + N(0, 0.1^2); biases and running means N(0, 0.1^2); running variances
    U(0.5, 1.5); `num_batches_tracked` 0. Each key draws from its own generator seeded with
    crc32(key), so the result does not depend on the order of the keys. Keys are named as in srkd
    (Pointcept's names without the `module.` / `backbone.` wrappers, e.g. `enc.enc0.block0.cpe.0.weight`,
    `seg_head.weight`).
    """
    out: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[key] = torch.zeros(shape, dtype=torch.long)
        elif leaf == "running_var":
            out[key] = 0.5 + torch.rand(shape, generator=gen)
        elif len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            out[key] = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        elif leaf == "weight":
            out[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            out[key] = 0.1 * torch.randn(shape, generator=gen)
    return out


def _cdsegnet_small() -> dict:
    from srkd.models.cdsegnet import TEST_CDSEGNET

    return {"in_channels": 6, "c_in_channels": 6, "num_classes": 20, "T": 1000, **TEST_CDSEGNET}


CDSEGNET_SMALL: dict = _cdsegnet_small()
"""srkd's test_cdsegnet preset (CDSegNet's topology at tiny widths) with ScanNet's inputs."""
CDSEGNET_SMALL_SCENES = ((5, 2, 1500),)
NOISE_SEED = 7
"""The seed of the conditional branch's noise in the CDSegNet fixture."""
