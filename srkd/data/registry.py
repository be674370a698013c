"""The dataset registry: what a dataset name means, and which reader opens its layout.

    DatasetSpec      label file, classes, input features and the recipe numbers that depend on
                     the data (grid size, weight decay, transform domain)
    DATASETS         dataset name -> DatasetSpec factory ("scannet", "scannet200", "nuscenes",
                     "semantickitti"); register more with `@DATASETS.register`
    LAYOUTS / READERS  on-disk layout -> (module, class) of its reader, imported on first use by
                     `srkd.data.sources.open_scenes`
    dataset_default  the one place a dataset-derived default is filled in (a value given on the
                     command line, in stages.yaml or in a checkpoint's record always wins)
    DATASET_FLAG     the --dataset option of every command that reads a dataset (its choices:
                     the registered names)

A new dataset is one reader module (same shape as `ScanNetScenes`: `scene_ids`, `len()`,
`load(scene_id) -> PointCloud`) plus one registration here. Light on purpose (class tables and
numpy): the command configs import it to describe dataset-dependent defaults in `--help`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from srkd.data.outdoor.classes import (
    NUSCENES16_CLASSES,
    NUSCENES16_COLORS,
    SEMANTICKITTI19_CLASSES,
    SEMANTICKITTI19_COLORS,
)
from srkd.data.scannet.classes import (
    SCANNET20_CLASSES,
    SCANNET20_COLORS,
    SCANNET200_CLASSES,
    SCANNET200_COLORS,
)
from srkd.data.transforms.sampling import INDOOR_GRID_SIZE, OUTDOOR_GRID_SIZE
from srkd.errors import ConfigError
from srkd.registry import Registry
from srkd.settings import Flag
from srkd.types import DEFAULT_DATASET, FEATURE_WIDTHS

INDOOR_WEIGHT_DECAY = 0.05
"""AdamW weight decay of the release's ScanNet recipe."""

OUTDOOR_WEIGHT_DECAY = 0.005
"""AdamW weight decay of the release's nuScenes recipe (Pointcept's nuScenes PTv3 config)."""

READERS: dict[str, tuple[str, str]] = {
    "scannet": ("srkd.data.scannet.reader", "ScanNetScenes"),
    "nuscenes": ("srkd.data.outdoor.nuscenes", "NuScenesScenes"),
    "semantickitti": ("srkd.data.outdoor.semantickitti", "SemanticKittiScenes"),
}
"""On-disk layout -> (module, class) of its reader, imported only when asked for."""

LAYOUTS: tuple[str, ...] = tuple(READERS)
"""On-disk layouts `srkd.data.sources.open_scenes` can read."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset name means: label file, classes, the model's input features and the
    recipe numbers that depend on the data.

    segment_file: stem of the label file of the ScanNet layout ("segment20", "segment200");
        "" for the lidar layouts, whose readers map raw label ids themselves.
    grid_size: the recipe's voxel edge in metres.
    domain: the transform chains and test-time views (srkd.data.transforms.DOMAINS).
    layout: which reader opens the data (LAYOUTS).
    weight_decay: the recipe's AdamW weight decay.
    """

    name: str
    num_classes: int
    segment_file: str
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...]
    feature_names: tuple[str, ...] = ("color", "normal")
    grid_size: float = INDOOR_GRID_SIZE
    domain: str = "indoor"
    layout: str = "scannet"
    weight_decay: float = INDOOR_WEIGHT_DECAY

    @property
    def feature_dim(self) -> int:
        """Width of `PointCloud.feature(self.feature_names)` (6 for colour + normal)."""
        return sum(FEATURE_WIDTHS[name] for name in self.feature_names)


DATASETS: Registry[DatasetSpec] = Registry("dataset")
"""Dataset name -> DatasetSpec factory. Register more with `@DATASETS.register`."""


@DATASETS.register
def scannet() -> DatasetSpec:
    """ScanNet v2 with the 20 benchmark classes (segment20.npy)."""
    return DatasetSpec("scannet", 20, "segment20", SCANNET20_CLASSES, SCANNET20_COLORS)


@DATASETS.register
def scannet200() -> DatasetSpec:
    """ScanNet v2 with the 200 ScanNet200 classes (segment200.npy)."""
    return DatasetSpec("scannet200", 200, "segment200", SCANNET200_CLASSES, SCANNET200_COLORS)


@DATASETS.register
def nuscenes() -> DatasetSpec:
    """nuScenes-lidarseg, 16 classes; input coord + intensity ("strength"), outdoor recipe."""
    return DatasetSpec(
        "nuscenes", 16, "", NUSCENES16_CLASSES, NUSCENES16_COLORS,
        feature_names=("coord", "strength"), grid_size=OUTDOOR_GRID_SIZE, domain="outdoor",
        layout="nuscenes", weight_decay=OUTDOOR_WEIGHT_DECAY,
    )  # fmt: skip


@DATASETS.register
def semantickitti() -> DatasetSpec:
    """SemanticKITTI, 19 classes; input coord + remission ("strength"), with the nuScenes recipe's
    numbers (the release publishes no SemanticKITTI recipe of its own)."""
    return DatasetSpec(
        "semantickitti", 19, "", SEMANTICKITTI19_CLASSES, SEMANTICKITTI19_COLORS,
        feature_names=("coord", "strength"), grid_size=OUTDOOR_GRID_SIZE, domain="outdoor",
        layout="semantickitti", weight_decay=OUTDOOR_WEIGHT_DECAY,
    )  # fmt: skip


DATASET_FLAG = Flag(
    "scannet, scannet200, nuscenes or semantickitti; picks the reader, classes, input features, grid "
    "size and view chain (lidar: coord + strength input, grid 0.05 m, weight decay 0.005, 10-view TTA).",
    choices=tuple(DATASETS.names()))
"""--dataset of train-teacher, cache-teacher, distill and evaluate."""


def get_dataset_spec(name: str) -> DatasetSpec:
    """The DatasetSpec registered as `name`; ConfigError listing the known names otherwise."""
    return DATASETS.get(name)()


def dataset_for_classes(class_names: Sequence[str]) -> DatasetSpec | None:
    """The registered DatasetSpec whose class list is exactly `class_names` (e.g. a checkpoint's),
    or None when no registered dataset has these classes."""
    for name in DATASETS.names():
        spec = get_dataset_spec(name)
        if tuple(spec.class_names) == tuple(class_names):
            return spec
    return None


DATASET_DEFAULTS: tuple[str, ...] = ("grid_size", "weight_decay")
"""Settings whose default is the dataset's (the DatasetSpec field of the same name)."""


def dataset_default(name: str, value: Any, spec: DatasetSpec | None) -> Any:
    """`value` when one was given (not None), else the dataset's: `spec.<name>`, or the default
    dataset's when no dataset is known (e.g. a checkpoint whose classes no registered dataset has).

    The one place where a setting in DATASET_DEFAULTS becomes the dataset's value: distill,
    train-teacher, cache-teacher, evaluate and predict all resolve through it, so a value from the
    command line, stages.yaml or a checkpoint's record always wins. ConfigError for another name.
    """
    if name not in DATASET_DEFAULTS:
        raise ConfigError(f"{name!r} is not a dataset-derived setting; known: {', '.join(DATASET_DEFAULTS)}")
    if value is not None:
        return value
    return getattr(spec if spec is not None else get_dataset_spec(DEFAULT_DATASET), name)


def per_dataset(name: str) -> str:
    """'the dataset's: 0.02 scannet / scannet200, 0.05 nuscenes / semantickitti': the `--help`
    note of a default that each registered dataset sets (DatasetSpec.<name>)."""
    groups: dict[Any, list[str]] = {}
    for dataset in DATASETS.names():
        groups.setdefault(getattr(get_dataset_spec(dataset), name), []).append(dataset)
    return "the dataset's: " + ", ".join(f"{value} {' / '.join(names)}" for value, names in groups.items())
