"""The model registry object, in its own module so model files can register without import cycles.

Model modules (``srkd/models/spunet.py``, ``srkd/models/ptv3.py``) do::

    from srkd.models._registry import MODELS

    @MODELS.register
    def spunet_small(**overrides) -> SpUNet:
        return SpUNet(**{**SPUNET_SMALL, **overrides})

Users call ``srkd.models.create_model(name, **overrides)``; importing ``srkd.models`` imports every
model module, which fills the registry. A preset is a function ``(**overrides) -> SegmentationModel``
whose keyword overrides are constructor arguments (at least ``num_classes`` and ``in_channels``),
so ``create_model(name, **args)`` rebuilds a model exactly from a checkpoint's stored args.
"""

from __future__ import annotations

from srkd.models.base import SegmentationModel
from srkd.registry import Registry

MODELS: Registry[SegmentationModel] = Registry("model")
