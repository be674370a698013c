"""What every segmentation model returns, and the small interface the pipeline relies on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelOutput:
    """Per-point outputs of a segmentation model for a PointBatch of N points.

    logits:  float32 (N, num_classes), before softmax.
    feature: float (N, feature_dim), the distilled feature: the last decoder feature before the
             segmentation head (what the relation and feature-MSE losses compare).
    """

    logits: torch.Tensor
    feature: torch.Tensor


def recorded_values(model: nn.Module) -> dict:
    """{name: value} of the model's `recorded_args` (what a checkpoint must state explicitly)."""
    return {k: getattr(model, k) for k in getattr(model, "recorded_args", ())}


class SegmentationModel(nn.Module):
    """Base class: subclasses set `num_classes`, `in_channels`, `feature_dim` and implement
    `forward(batch: PointBatch) -> ModelOutput` with outputs in the batch's point order."""

    num_classes: int
    in_channels: int
    feature_dim: int
    recorded_args: tuple[str, ...] = ()
    """Constructor arguments whose values srkd checkpoints always store (semantics that a preset
    default must never silently change for a saved model); read back as attributes."""
