"""Fixtures of the distill tests: a tiny synthetic dataset, a tiny teacher and teacher caches.

The caches are built here directly (teacher outputs through `srkd.cache_teacher.views.scene_targets`,
written with `CacheWriter`), so these tests do not depend on `srkd cache-teacher`'s
orchestration; the CLI test builds its own cache with the command itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

GRID = 0.1  # ~2000-point synthetic rooms: most points keep their own voxel
SCENES, VAL_FRACTION, POINTS = 5, 0.2, 2000  # 4 train + 1 val scenes


def make_data(root: Path) -> Path:
    from srkd.data.synthetic.rooms import generate_dataset

    generate_dataset(root, scenes=SCENES, seed=0, val_fraction=VAL_FRACTION, n_points=POINTS)
    return root


def make_teacher(path: Path, name: str = "test_spunet", seed: int = 0) -> Path:
    """A randomly initialised tiny ScanNet-20 model saved as an srkd checkpoint."""
    import torch

    from srkd.data.scannet import get_dataset_spec
    from srkd.models import create_model, save_checkpoint

    ds = get_dataset_spec("scannet")
    torch.manual_seed(seed)
    model = create_model(name, num_classes=ds.num_classes, in_channels=ds.feature_dim)
    return save_checkpoint(path, model, class_names=ds.class_names, feature_names=ds.feature_names, color_norm="pointcept")


def build_cache(out: Path, data_root: Path, teacher: Path, views: int = 3, ensemble: bool = True,
                codec: str = "lossless", split: str = "train", class_names=None,
                scenes: int | None = None, require_labels: bool = True) -> Path:
    """Run the teacher over the (first `scenes`) scenes of `split` and write the cache."""
    from dataclasses import replace

    from srkd.cache import CacheWriter, CodecSpec
    from srkd.cache_teacher.targets import scene_targets
    from srkd.cache_teacher.views import ViewSettings, make_spec
    from srkd.data.scannet import ScanNetScenes, get_dataset_spec
    from srkd.models.teacher import TeacherRef, load_teacher

    ds = get_dataset_spec("scannet")
    model, info = load_teacher(TeacherRef(teacher), ds, "cpu")
    settings = ViewSettings(views=views, seed=3)
    spec = make_spec(ds, data_root, split, info, settings, CodecSpec.create(codec), GRID, ensemble)
    if class_names is not None:  # a cache that claims another label set (bad-input tests)
        spec = replace(spec, class_names=tuple(class_names))
    writer = CacheWriter.create(out, spec)
    source = ScanNetScenes(data_root, split, ds, require_labels=require_labels)
    for scene in source.scene_ids[:scenes]:
        pc = source.load(scene)
        targets, ens = scene_targets(model, pc, settings, GRID, ds.feature_names, "cpu", ensemble,
                                     color_norm=info.color_norm)
        if class_names is not None:
            import numpy as np

            k = len(class_names)
            targets = [t._replace(logits=np.resize(t.logits, (len(t.logits), k))) for t in targets]
        writer.write_scene(scene, targets, ens, pc.content_sha256())
    return out


def tiny_run_config(out: Path, cache: Path | None, **overrides):
    """A seconds-long distillation RunConfig of test_ptv3 on the tiny rooms (override any field)."""
    from srkd.distill.config import RunConfig

    # DropPath (test_ptv3), relation sampling, Mix3D coins and the augmentations all draw random
    # numbers, so any stream that a resumed run does not continue exactly shows up in the model
    values = dict(model="test_ptv3", out=out, cache=cache, method="srkd", epochs=2, batch_size=2,
                  grid_size=0.1, device="cpu", checkpoint_every=1, mix3d_prob=0.8, workers=0,
                  val_max_scenes=1, loss_overrides={"n_relation_points": 64}, seed=5)
    values.update(overrides)
    return RunConfig(**values)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("distill_data") / "data")


@pytest.fixture(scope="session")
def teacher_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("distill_teacher") / "teacher.pt")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory, data_root: Path, teacher_ckpt: Path) -> Path:
    """Lossless cache of the train split: 3 views (0 = canonical) + the ensemble entry."""
    return build_cache(tmp_path_factory.mktemp("distill_cache") / "cache", data_root, teacher_ckpt)


@pytest.fixture(scope="session")
def plain_cache_dir(tmp_path_factory: pytest.TempPathFactory, data_root: Path, teacher_ckpt: Path) -> Path:
    """int8 cache with a single view and no ensemble entry."""
    return build_cache(tmp_path_factory.mktemp("distill_plain") / "cache", data_root, teacher_ckpt,
                       views=1, ensemble=False, codec="int8")
