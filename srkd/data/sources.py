"""One door to every scene source: `open_scenes` picks the reader of a dataset's on-disk layout.

    layout          reader (srkd.data.registry.READERS)              data
    "scannet"       srkd.data.scannet.reader.ScanNetScenes           Pointcept ScanNet .npy folders
    "nuscenes"      srkd.data.outdoor.nuscenes.NuScenesScenes         nuScenes-lidarseg release
    "semantickitti" srkd.data.outdoor.semantickitti.SemanticKittiScenes  SemanticKITTI sequences

Every reader has the same shape (`root`, `split`, `spec`, `scene_ids`, `__len__`,
`load(scene_id) -> PointCloud`); code that reads scenes (training, validation, the teacher cache,
evaluation) goes through `open_scenes` and never names a reader. Readers are imported only when
asked for.

Split file: a lidar dataset root may hold SPLITS_FILE ("srkd_splits.json"), a JSON object mapping
a split name to reader options, e.g.

    {"train": {"version": "v1.0-synthetic", "scenes": ["synth-0000", "synth-0001"]},
     "val":   {"version": "v1.0-synthetic", "scenes": ["synth-0002"]}}          (nuScenes)
    {"train": {"sequences": ["00"]}, "val": {"sequences": ["08"]}}           (SemanticKITTI)

`open_scenes` then reads that split with those options (options passed by the caller win). It is
how `srkd generate-synthetic --kind outdoor` declares its splits, and how a user defines a custom
split of a partial download without passing options to every command. Only the keys in
SPLIT_OPTION_KEYS are accepted; the file is plain JSON, nothing in it runs.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srkd.data.registry import LAYOUTS, READERS, DatasetSpec, get_dataset_spec
from srkd.errors import ConfigError, DataError

if TYPE_CHECKING:  # srkd.data.dataset imports torch; a source is only a protocol here
    from srkd.data.dataset import SceneSource

SPLITS_FILE = "srkd_splits.json"
"""Optional file at a lidar dataset root: split name -> reader options (module docstring)."""

SPLIT_OPTION_KEYS: dict[str, tuple[str, ...]] = {
    "nuscenes": ("version", "scenes", "sweeps"),
    "semantickitti": ("sequences",),
}
"""Reader options a split file may set, per layout."""


def split_file_options(layout: str, root: Path, split: str) -> dict[str, Any]:
    """The reader options SPLITS_FILE under `root` gives `split` ({} without the file or the split).

    Raises DataError naming the file when it is not valid JSON or not a mapping of split name to
    an object of SPLIT_OPTION_KEYS[layout] with the right value types.
    """
    path = Path(root) / SPLITS_FILE
    if not path.is_file():
        return {}
    fix = (f"fix or delete {path}; it maps split names to reader options, e.g. "
           '{"train": {"scenes": ["scene-0061"]}}')  # fmt: skip
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"split file {path} is not readable JSON ({exc}); {fix}") from None
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise DataError(f"split file {path} must be a JSON object of objects; {fix}")
    options = dict(table.get(split, {}))
    allowed = SPLIT_OPTION_KEYS.get(layout, ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(f"split file {path}: split {split!r} sets {unknown}; a {layout} split may "
                        f"set {', '.join(allowed)}; {fix}")  # fmt: skip
    for key, value in options.items():
        ok = (isinstance(value, str) if key == "version" else
              isinstance(value, int) and not isinstance(value, bool) if key == "sweeps" else
              isinstance(value, list) and all(isinstance(v, str) for v in value))  # fmt: skip
        if not ok:
            raise DataError(f"split file {path}: split {split!r} has a bad {key!r}: {value!r}; {fix}")
        if isinstance(value, list):
            options[key] = tuple(value)
    return options


def open_scenes(
    spec: DatasetSpec | str,
    root: Path | str,
    split: str,
    *,
    require_labels: bool = True,
    **options: Any,
) -> SceneSource:
    """The scenes of `split` under `root`, read by the reader of `spec.layout`.

    Args:
        spec: a DatasetSpec or a registered dataset name ("scannet", "nuscenes", ...).
        root: the dataset root (the layout's top folder).
        split: split name ("train", "val", ...; each layout says which it knows).
        require_labels: False for unlabelled data (segment None instead of an error).
        options: reader options, e.g. `sweeps=10` for nuScenes; the ScanNet reader takes none.
            They override the options of the root's SPLITS_FILE for this split.
    Returns:
        A scene source: `scene_ids` (list of str) and `load(scene_id) -> PointCloud`.
    Raises:
        ConfigError for an unknown dataset or layout, or options the reader does not take;
        DataError for a malformed split file, or the reader's for missing or malformed data.
    """
    spec = get_dataset_spec(spec) if isinstance(spec, str) else spec
    if spec.layout not in LAYOUTS:
        raise ConfigError(
            f"dataset {spec.name!r} names layout {spec.layout!r}; known: {', '.join(LAYOUTS)}"
        )
    module, name = READERS[spec.layout]
    reader = getattr(importlib.import_module(module), name)
    if spec.layout == "scannet":
        if options:
            raise ConfigError(
                f"the ScanNet layout reader takes no options, got {', '.join(sorted(options))}"
            )
        return reader(Path(root), split, spec, require_labels=require_labels)
    options = {**split_file_options(spec.layout, Path(root), split), **options}
    try:
        return reader(Path(root), split, spec, require_labels=require_labels, **options)
    except TypeError as exc:  # an option the reader does not know
        if options and "unexpected keyword" in str(exc):
            raise ConfigError(f"{name} does not take option(s) {sorted(options)}: {exc}") from None
        raise
