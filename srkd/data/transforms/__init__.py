"""Replayable point-cloud transforms and the named augmentation chains.

    base      the Transform protocol, the transform registry, Compose, records
    geometry  centre shift, rotation, scale, flip, jitter, elastic distortion
    color     chromatic auto-contrast / translation / jitter, colour normalisation
    sampling  random dropout, grid sampling, sphere crop
    outdoor   the outdoor (lidar) chains
    chains    the ScanNet chains (train / view / student / test views), replay, matrices

Every public name of `chains` (which also re-exports the transform classes) is importable from
here, e.g. `from srkd.data.transforms import train_transforms, replay`. They are loaded on first
use (PEP 562 module `__getattr__`), so importing one submodule such as
`srkd.data.transforms.color` does not load the geometric transforms (and scipy) with it.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """Return `chains.<name>` for a public name of the chains module, loading it on first use."""
    if not name.startswith("_"):
        chains = importlib.import_module("srkd.data.transforms.chains")
        if hasattr(chains, name):
            return getattr(chains, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
