"""The model registry object, in its own module so model files can register without import cycles.

Model modules (``srkd/models/spunet.py``, ``srkd/models/ptv3.py``) do::

    from srkd.models._registry import MODELS

    @MODELS.register
    def spunet_small(**overrides) -> SpUNet:
        return SpUNet(**{**SPUNET_SMALL, **overrides})

Users call ``srkd.models.create_model(name, **overrides)`` (defined here, re-exported there);
importing ``srkd.models`` imports every model module, which fills the registry. A preset is a
function ``(**overrides) -> SegmentationModel`` whose keyword overrides are constructor arguments
(at least ``num_classes`` and ``in_channels``), so ``create_model(name, **args)`` rebuilds a model
exactly from a checkpoint's stored args.
"""

from __future__ import annotations

from srkd.errors import ConfigError
from srkd.models.base import SegmentationModel
from srkd.registry import Registry

MODELS: Registry[SegmentationModel] = Registry("model")


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
