"""Fixtures of the cache-teacher tests: a tiny ScanNet-layout dataset and tiny teacher checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srkd.data.scannet.classes import SCANNET20_CLASSES
from srkd.data.scannet.layout import write_scene

SCENES = ("scene0000_00", "scene0001_00", "scene0002_00")
GRID = 0.05  # with ~2 points per 5 cm voxel every scene splits into several test-mode fragments


def make_dataset(root: Path, scenes: tuple[str, ...] = SCENES, points: int = 1500, seed: int = 0) -> Path:
    """Write small scenes (a 0.6 x 0.6 x 0.3 m box of points) in the Pointcept layout under
    `<root>/train/`; returns `root`."""
    rng = np.random.default_rng(seed)
    for i, scene in enumerate(scenes):
        n = points + 100 * i
        coord = rng.random((n, 3)) * np.array([0.6, 0.6, 0.3]) + np.array([1.0 + i, -2.0, 0.5])
        normal = rng.normal(size=(n, 3))
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        arrays = {
            "coord": coord.astype(np.float32),
            "color": rng.integers(0, 256, (n, 3)).astype(np.uint8),
            "normal": normal.astype(np.float32),
            "segment20": rng.integers(-1, 20, n).astype(np.int64),
        }
        write_scene(root, "train", scene, arrays)
    return root


def make_teacher(path: Path, num_classes: int = 20, seed: int = 0, name: str = "test_spunet",
                 color_norm: str = "legacy") -> Path:
    """Save a randomly initialised tiny model as an srkd checkpoint for `num_classes` classes.
    Its colour input is recorded as "legacy" by default (not the default of new runs), so the
    tests see that caching feeds the teacher the normalisation its checkpoint records."""
    import torch

    from srkd.models import create_model, save_checkpoint

    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes)
    names = SCANNET20_CLASSES if num_classes == 20 else tuple(f"c{i}" for i in range(num_classes))
    return save_checkpoint(path, model, class_names=names, feature_names=("color", "normal"), color_norm=color_norm)


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def teacher_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("teacher") / "teacher.pt")
