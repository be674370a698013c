"""`srkd generate-synthetic`: procedural indoor rooms in the ScanNet scene layout, or (with
`--kind outdoor`) simulated lidar drives in the nuScenes-lidarseg or SemanticKITTI format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.commands import options as O
from pipeline.commands._common import task_progress, user_errors
from srkd.data.synthetic.config import SyntheticConfig


@O.with_options(SyntheticConfig)
def generate_synthetic(**cli: Any) -> None:
    """Generate a synthetic dataset with train/val splits: ScanNet-20 rooms, or outdoor lidar scans.

    Unset options come from stages.yaml's params.data (root, scenes, seed, val_fraction, points).
    A run that fails part-way leaves <out>/unfinished.json instead of <out>/synthetic.json;
    readers refuse such a folder, and re-running the same command finishes it.
    """
    with user_errors():
        from pipeline.params import resolve
        from srkd.errors import ConfigError

        if cli["kind"] == "outdoor" and cli["points"] is not None:
            raise ConfigError("--points sets the size of an indoor room; an outdoor scan's size "
                              "follows from --beams and --azimuth-steps")
        config = resolve(SyntheticConfig, "data", cli)
        if config.out is None:
            raise ConfigError("pass --out DIR (or run where stages.yaml sets params.data.root)")
    if config.kind == "outdoor":
        _outdoor(config)
    else:
        _indoor(config)


def _indoor(config) -> None:  # type: ignore[no-untyped-def]
    """Furnished rooms in the ScanNet layout; print the points per class."""
    from rich.console import Console

    from srkd.data.scannet.layout import UNFINISHED
    from srkd.data.synthetic.rooms import generate_dataset, split_sizes
    from srkd.errors import DataError

    console = Console(stderr=True)
    out, scenes = Path(config.out), config.scene_count()
    with user_errors():
        n_train, n_val = split_sizes(scenes, config.val_fraction)
        with task_progress(console, "generate") as on_progress:
            done = [0]

            def on_scene(path: Path) -> None:
                done[0] += 1
                on_progress(done[0], scenes, f"{path.parent.name}/{path.name}")

            try:
                paths = generate_dataset(out, scenes, config.seed, config.val_fraction, config.points,
                                         config.workers, on_scene)
            except OSError as exc:  # e.g. a full disk: one line, and say what was left behind
                left = (
                    f"; the folder is marked unfinished ({UNFINISHED}): fix the cause and re-run "
                    "the same command"
                    if (out / UNFINISHED).is_file()
                    else ""
                )
                raise DataError(f"writing the dataset to {out} failed ({exc}){left}") from None
        table, total = _class_table(paths)
        console.print(table)
        console.print(
            f"wrote {len(paths)} scenes ({n_train} train, {n_val} val, {total:,} points) to {out}"
        )


def _class_table(paths: list[Path]):  # type: ignore[no-untyped-def]
    """(a rich table of the points per ScanNet-20 class over the written scenes, total points)."""
    import numpy as np
    from rich.table import Table

    from srkd.data.scannet.classes import SCANNET20_CLASSES

    counts = np.zeros(len(SCANNET20_CLASSES) + 1, dtype=np.int64)  # last slot: ignore (-1)
    for path in paths:
        seg = np.load(path / "segment20.npy")
        counts += np.bincount(np.where(seg < 0, len(SCANNET20_CLASSES), seg), minlength=len(counts))
    total = int(counts.sum())
    table = Table(title="points per class")
    table.add_column("class")
    table.add_column("points", justify="right")
    table.add_column("share", justify="right")
    for name, n in zip((*SCANNET20_CLASSES, "ignore (-1)"), counts.tolist(), strict=True):
        table.add_row(name, f"{n:,}", f"{100 * n / total:.1f}%")
    return table, total


def _outdoor(config) -> None:  # type: ignore[no-untyped-def]
    """`generate-synthetic --kind outdoor`: simulate the drives, write them, print the classes."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from srkd.data.registry import get_dataset_spec
    from srkd.data.sources import open_scenes
    from srkd.data.synthetic.lidar import LidarConfig
    from srkd.data.synthetic.lidar_dataset import generate_outdoor_dataset
    from srkd.data.synthetic.rooms import split_sizes
    from srkd.errors import DataError

    console = Console(stderr=True)
    out, scenes, fmt = Path(config.out), config.scene_count(), str(config.fmt)
    with user_errors():
        _, n_val = split_sizes(scenes, config.val_fraction)
        lidar = LidarConfig(beams=config.beams, azimuth_steps=config.azimuth_steps)
        with console.status(f"simulating {scenes} drives x {config.keyframes} keyframes"):
            try:
                done = generate_outdoor_dataset(out, scenes, config.seed, n_val, fmt=fmt,
                                                keyframes=config.keyframes, sweeps=config.sweeps, lidar=lidar)
            except OSError as exc:
                raise DataError(f"writing the dataset to {out} failed ({exc}); re-run the same "
                                "command into an empty folder") from None
        spec = get_dataset_spec(fmt)
        counts = np.zeros(spec.num_classes + 1, dtype=np.int64)  # last slot: ignore (-1)
        for split in ("train", "val")[: 2 if n_val else 1]:
            source = open_scenes(spec, out, split)
            for scene in source.scene_ids:
                seg = source.load(scene).segment
                counts += np.bincount(np.where(seg < 0, spec.num_classes, seg), minlength=len(counts))
        table = Table(title=f"points per class ({fmt} labels)")
        for column in ("class", "points", "share"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for name, n in zip((*spec.class_names, "ignore (-1)"), counts.tolist()):
            table.add_row(name, f"{n:,}", f"{100 * n / max(int(counts.sum()), 1):.1f}%")
        console.print(table)
        console.print(f"wrote {done['train']} train and {done['val']} val scans ({fmt} format, "
                      f"{done['points']:,} keyframe points) to {out}; read them with --dataset {fmt}")
