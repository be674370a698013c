"""ScanNet-format data: the scene layout on disk, its reader and the dataset registry.

    layout      the Pointcept scene layout `<root>/<split>/<scene_id>/<field>.npy`; atomic writer
    reader      DatasetSpec registry (DATASETS, get_dataset_spec), ScanNetScenes, load_scene
    classes     ScanNet-20 / ScanNet-200 class names, ids and colours
    ply         PLY reader (meshes, points) and area-weighted vertex normals; ply_writer writes
    prepare     raw ScanNet v2 release -> the layout (`srkd prepare scannet`)

The reader's public names are importable from here (`from srkd.data.scannet import
get_dataset_spec`). Importing this package stays light: numpy only, no torch.
"""

from srkd.data.scannet.reader import (
    DATASETS,
    INDOOR_WEIGHT_DECAY,
    LAYOUTS,
    OUTDOOR_WEIGHT_DECAY,
    DatasetSpec,
    ScanNetScenes,
    dataset_for_classes,
    get_dataset_spec,
    list_scenes,
    load_scene,
)

__all__ = [
    "DATASETS",
    "INDOOR_WEIGHT_DECAY",
    "LAYOUTS",
    "OUTDOOR_WEIGHT_DECAY",
    "DatasetSpec",
    "ScanNetScenes",
    "dataset_for_classes",
    "get_dataset_spec",
    "list_scenes",
    "load_scene",
]
