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

from srkd.errors import ConfigError
from srkd.models import (  # noqa: F401  (imported to register their presets)
    cdsegnet,
    presets_outdoor,  # noqa: F401  (the outdoor PTv3 presets)
    ptv3,
    spunet,
)
from srkd.models._registry import MODELS
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


def create_model(name: str, **overrides) -> SegmentationModel:
    """Build the preset registered as ``name``; ``overrides`` replace its constructor arguments.

    Every preset accepts at least ``num_classes`` (default 20) and ``in_channels`` (default 6),
    e.g. ``create_model("ptv3_half", num_classes=200)``. The model remembers how it was built in
    ``model.srkd_name`` and ``model.srkd_args`` (the overrides), which checkpoints store, so
    ``create_model(model.srkd_name, **model.srkd_args)`` rebuilds the same architecture.
    Raises ConfigError for an unknown name (listing the known ones) or an unknown argument.
    """
    factory = MODELS.get(name)
    try:
        model = factory(**overrides)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise ConfigError(f"model {name!r} does not take argument(s) {sorted(overrides)}: {e}") from None
        raise
    model.srkd_name = name
    model.srkd_args = dict(overrides)
    return model


def list_models() -> list[str]:
    """Names of every registered preset, sorted."""
    return MODELS.names()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
