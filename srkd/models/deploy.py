"""A plain-tensor entry point for deployment: (coord, feat, offset) -> logits.

srkd models take a `PointBatch` (srkd.data.collate) and return a `ModelOutput`. A deployment (a
service, another framework, an exporter) wants plain tensors in and out. `PlainSegmenter` wraps a
model so that

    logits = PlainSegmenter(model, grid_size)(coord, feat, offset)

with
    coord:  float32 (N, 3) point coordinates in metres (any origin: the voxel grid is shifted per
            sample so that its minimum is 0).
    feat:   float32 (N, C) the model's input features, already normalised the way the model was
            trained: `PointCloud.feature(checkpoint feature names)` after
            `NormalizeColor(checkpoint color_norm)`, e.g. [color * 1/255, normal] (as
            `srkd.predict.run.predict_cloud` builds them).
    offset: int64 (B,) cumulative end index of each sample (offset[-1] == N; Pointcept convention).
    logits: float32 (N, K), one row per input point, in input order.

Voxelisation happens inside: every point gets the voxel ``floor(coord / grid_size)`` (computed in
float64, exactly as `srkd.data.voxelize.grid_sample` does) minus its sample's minimum voxel; points
that share a voxel are averaged by the model (both SpUNet and PTv3 reduce duplicate voxels to one
row and map the row's logits back to every point), so the caller needs no grid sampling and
gets logits for every point. For Pointcept's test-mode protocol (one point per voxel per fragment,
votes summed over fragments and TTA views), `srkd.predict.run.predict_cloud` calls this module once
per fragment; with the fragment's coordinates as grid-sampled (before the x/y centre shift),
the voxels are exactly those of `srkd evaluate`, and since the models use coordinates only through
their voxels, the logits are the same.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from srkd.data.collate import PointBatch
from srkd.errors import ConfigError, DataError

if TYPE_CHECKING:
    from srkd.models.checkpoint import CheckpointMeta


def voxel_coords(coord: torch.Tensor, offset: torch.Tensor, grid_size: float) -> torch.Tensor:
    """int32 (N, 3) voxel coordinates ``floor(coord / grid_size)`` minus each sample's minimum.

    coord float (N, 3) metres; offset int64 (B,) cumulative sample ends. The division runs in
    float64 so a point's voxel matches `srkd.data.voxelize.grid_sample` bit for bit.
    """
    b = offset.shape[0]
    counts = offset - torch.cat([offset.new_zeros(1), offset[:-1]])  # not torch.diff: ONNX lacks it
    sample = torch.repeat_interleave(torch.arange(b, device=coord.device), counts)
    cell = torch.floor(coord.double() / grid_size).long()
    big = torch.iinfo(torch.int64).max
    lowest = torch.full((b, 3), big, dtype=torch.int64, device=coord.device)
    lowest = lowest.scatter_reduce(0, sample[:, None].expand(-1, 3), cell, reduce="amin")
    return (cell - lowest[sample]).int()


def check_plain_inputs(coord: torch.Tensor, feat: torch.Tensor, offset: torch.Tensor, channels: int) -> None:
    """DataError unless coord float (N, 3) finite, feat float (N, channels) finite and offset int
    (B,) strictly increasing with offset[-1] == N."""
    if coord.ndim != 2 or coord.shape[1] != 3 or coord.shape[0] == 0:
        raise DataError(f"coord must be float (N, 3) with N > 0, got shape {tuple(coord.shape)}")
    n = coord.shape[0]
    if feat.ndim != 2 or feat.shape[0] != n or (channels > 0 and feat.shape[1] != channels):
        want = f"({n}, {channels})" if channels > 0 else f"({n}, C)"
        raise DataError(f"feat must have shape {want}, got {tuple(feat.shape)}")
    if not (coord.is_floating_point() and feat.is_floating_point()):
        raise DataError(f"coord and feat must be floating point, got {coord.dtype} and {feat.dtype}")
    if offset.ndim != 1 or offset.numel() == 0 or offset.is_floating_point():
        raise DataError(f"offset must be int64 (B,) with B >= 1, got {offset.dtype} {tuple(offset.shape)}")
    if int(offset[-1]) != n or bool((torch.diff(offset, prepend=offset.new_zeros(1)) <= 0).any()):
        raise DataError(
            f"offset {offset.tolist()[:8]} must be strictly increasing cumulative sample ends "
            f"with offset[-1] == N = {n}"
        )
    if not (bool(torch.isfinite(coord).all()) and bool(torch.isfinite(feat).all())):
        raise DataError("coord or feat holds a non-finite value (NaN or inf)")


class PlainSegmenter(nn.Module):
    """Wraps an srkd segmentation model: ``forward(coord, feat, offset) -> logits`` (see the
    module docstring for shapes). The model is used as it is (call ``.eval()`` for inference).

    Args:
        model: a `SegmentationModel` (PointBatch -> ModelOutput).
        grid_size: voxel edge in metres the model was trained with (a checkpoint's
            ``train_params["grid_size"]``).
        check: validate inputs on every call (turn off for tracing / export, where the checks'
            data-dependent branches would be baked in or refused).
    """

    def __init__(self, model: nn.Module, grid_size: float, check: bool = True) -> None:
        super().__init__()
        if isinstance(grid_size, bool) or not (isinstance(grid_size, int | float)
                                               and math.isfinite(grid_size) and grid_size > 0):
            raise ConfigError(f"grid_size must be a positive number of metres, got {grid_size!r}")
        self.model = model
        self.grid_size = float(grid_size)
        self.check = check
        self.in_channels = int(getattr(model, "in_channels", -1))
        self.num_classes = int(getattr(model, "num_classes", -1))

    def forward(self, coord: torch.Tensor, feat: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """float32 (N, K) logits for coord float32 (N, 3), feat float32 (N, C), offset int64 (B,)."""
        if self.check:
            check_plain_inputs(coord, feat, offset, self.in_channels)
        n = coord.shape[0]
        batch = PointBatch(
            coord=coord.float(),
            grid_coord=voxel_coords(coord, offset, self.grid_size),
            feat=feat.float(),
            offset=offset.long(),
            origin_index=torch.arange(n, device=coord.device),
            segment=torch.full((n,), -1, dtype=torch.int64, device=coord.device),
            scene_ids=[""] * offset.shape[0],
            views=torch.full((offset.shape[0],), -1, dtype=torch.int64),
        )
        return self.model(batch).logits.float()


def load_plain_segmenter(
    path: str | Path, *, grid_size: float | None = None, map_location: str | torch.device = "cpu"
) -> tuple[PlainSegmenter, CheckpointMeta]:
    """(PlainSegmenter in eval mode, CheckpointMeta) for the srkd checkpoint at ``path``.

    grid_size: default the checkpoint's ``train_params["grid_size"]``, else the grid size of the
    registered dataset with the checkpoint's classes, else the default dataset's
    (srkd.data.registry.dataset_default). Raises CheckpointError / ConfigError.
    """
    from srkd.data.registry import dataset_default, dataset_for_classes
    from srkd.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(path, map_location=map_location)
    recorded = grid_size if grid_size is not None else meta.train_params.get("grid_size")
    grid = dataset_default("grid_size", recorded, dataset_for_classes(meta.class_names))
    if isinstance(grid, bool) or not isinstance(grid, int | float):
        raise ConfigError(f"grid size for {path} must be a positive number of metres, got {grid!r}")
    return PlainSegmenter(model, float(grid)).eval(), meta
