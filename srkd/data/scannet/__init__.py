"""ScanNet-format data: the scene layout on disk and its reader.

    layout      the Pointcept scene layout `<root>/<split>/<scene_id>/<field>.npy`; atomic writer
    reader      ScanNetScenes, load_scene, list_scenes
    classes     ScanNet-20 / ScanNet-200 class names, ids and colours
    ply         PLY reader (meshes, points) and area-weighted vertex normals; ply_writer writes
    prepare     raw ScanNet v2 release -> the layout (`srkd prepare scannet`)

The dataset registry (DatasetSpec, DATASETS, get_dataset_spec, ...) lives in srkd.data.registry;
its names and the reader's stay importable from here (`from srkd.data.scannet import
get_dataset_spec, ScanNetScenes`), loaded on first use (PEP 562), so importing a submodule such
as `srkd.data.scannet.classes` does not import the reader. numpy only, no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES: dict[str, str] = {
    **dict.fromkeys(("DATASETS", "INDOOR_WEIGHT_DECAY", "LAYOUTS", "OUTDOOR_WEIGHT_DECAY",
                     "DatasetSpec", "dataset_for_classes", "get_dataset_spec"), "srkd.data.registry"),
    **dict.fromkeys(("ScanNetScenes", "list_scenes", "load_scene"), "srkd.data.scannet.reader"),
}
"""Public name -> the module that defines it."""

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
