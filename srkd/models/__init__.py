"""Segmentation models: a registry of presets, `create_model`, checkpoints.

    from srkd.models import create_model, list_models
    model = create_model("spunet_small", num_classes=20, in_channels=6)
    out = model(batch)            # ModelOutput(logits (N, K), feature (N, D)) in batch point order

Presets (timm style, each a 3-line function registered on ``MODELS``):
    spunet_base, spunet_small, test_spunet            srkd/models/spunet.py
    ptv3_large, ptv3_base, ptv3_half, test_ptv3*      srkd/models/ptv3.py
    sonata_semseg, test_sonata (Pointcept PT-v3m2)    srkd/models/ptv3.py
    cdsegnet, test_cdsegnet                           srkd/models/cdsegnet.py
Model modules register through ``srkd.models._registry.MODELS`` (never through this package, to
avoid import cycles); importing this package imports them all. Sparse convs live in
``srkd.models.sparse`` (the only module that imports spconv).
"""

from __future__ import annotations

from torch import nn

from srkd.models import (  # noqa: F401  (imported to register their presets)
    cdsegnet,
    presets_outdoor,  # noqa: F401  (the outdoor PTv3 presets)
    ptv3,
    spunet,
)
from srkd.models._registry import MODELS, create_model, list_models
from srkd.models.base import ModelOutput, SegmentationModel
from srkd.models.checkpoint import (
    compact_checkpoint,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from srkd.models.pointcept import load_pointcept_checkpoint

__all__ = [
    "MODELS",
    "ModelOutput",
    "SegmentationModel",
    "create_model",
    "list_models",
    "count_parameters",
    "save_checkpoint",
    "compact_checkpoint",
    "load_checkpoint",
    "file_sha256",
    "load_pointcept_checkpoint",
]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
