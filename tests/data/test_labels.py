"""Limited annotations (srkd.data.labels): drawn and file budgets, safe reading, clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from srkd.data.labels import LabelBudget, LimitedLabels, read_la_file, read_lr_file
from srkd.errors import ConfigError, DataError
from srkd.types import IGNORE_INDEX, PointCloud

SCENES = [f"scene{i:04d}_00" for i in range(10)]


def cloud(scene_id: str, n: int = 500, unlabelled_every: int = 7) -> PointCloud:
    rng = np.random.default_rng(len(scene_id))
    segment = rng.integers(0, 20, n)
    segment[::unlabelled_every] = IGNORE_INDEX
    return PointCloud(coord=rng.random((n, 3), dtype=np.float32), origin_index=np.arange(n),
                      scene_id=scene_id, segment=segment, num_classes=20)


def test_points_per_scene_keeps_n_labelled_points_reproducibly():
    labels = LimitedLabels(SCENES, LabelBudget(points_per_scene=20, seed=3))
    pc = cloud(SCENES[0])
    out = labels.apply(SCENES[0], pc)
    kept = out.segment != IGNORE_INDEX
    assert kept.sum() == 20
    assert np.array_equal(out.segment[kept], pc.segment[kept])  # kept labels are the true ones
    assert (pc.segment[kept] != IGNORE_INDEX).all()  # drawn among labelled points only
    again = LimitedLabels(SCENES, LabelBudget(points_per_scene=20, seed=3)).apply(SCENES[0], pc)
    assert np.array_equal(again.segment, out.segment)
    other_seed = LimitedLabels(SCENES, LabelBudget(points_per_scene=20, seed=4)).apply(SCENES[0], pc)
    assert not np.array_equal(other_seed.segment, out.segment)
    other_scene = labels.apply(SCENES[1], cloud(SCENES[0]))  # the scene name drives the draw
    assert not np.array_equal(other_scene.segment, out.segment)
    # the rest of the cloud is untouched
    assert np.array_equal(out.coord, pc.coord) and np.array_equal(out.origin_index, pc.origin_index)


def test_scene_fraction_labels_a_reproducible_subset_of_scenes():
    labels = LimitedLabels(SCENES, LabelBudget(scene_fraction=0.3, seed=1))
    assert len(labels.labelled_scenes) == 3
    assert labels.labelled_scenes == LimitedLabels(SCENES, LabelBudget(scene_fraction=0.3, seed=1)).labelled_scenes
    for scene in SCENES:
        out = labels.apply(scene, cloud(scene))
        has = (out.segment != IGNORE_INDEX).any()
        assert has == (scene in labels.labelled_scenes)
    # a tiny fraction still labels one scene
    assert len(LimitedLabels(SCENES, LabelBudget(scene_fraction=0.01)).labelled_scenes) == 1


def test_la_file_of_numpy_arrays_and_tensors(tmp_path):
    path = tmp_path / "points20.pth"
    torch.save({SCENES[0]: np.array([3, 4, 5]), SCENES[1]: torch.tensor([0, 1])}, path)
    assert {k: v.tolist() for k, v in read_la_file(path).items()} == {SCENES[0]: [3, 4, 5], SCENES[1]: [0, 1]}
    labels = LimitedLabels(SCENES, LabelBudget(la_file=path))
    pc = cloud(SCENES[0], unlabelled_every=10**6)
    out = labels.apply(SCENES[0], pc)
    assert np.flatnonzero(out.segment != IGNORE_INDEX).tolist() == [3, 4, 5]
    assert (labels.apply(SCENES[2], cloud(SCENES[2])).segment == IGNORE_INDEX).all()  # not listed


def test_la_file_never_runs_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / "evil.pth"
    torch.save({SCENES[0]: Evil()}, path)
    with pytest.raises(DataError, match="evil.pth"):
        read_la_file(path)
    assert not (tmp_path / "pwned").exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(DataError, match="raw.pkl"):
        read_la_file(raw)


def test_la_file_indices_out_of_range_name_the_scene(tmp_path):
    path = tmp_path / "la.pth"
    torch.save({SCENES[0]: np.array([1, 10_000])}, path)
    labels = LimitedLabels(SCENES, LabelBudget(la_file=path))
    with pytest.raises(DataError, match=f"{SCENES[0]}.*10000"):
        labels.apply(SCENES[0], cloud(SCENES[0]))


def test_lr_file(tmp_path):
    path = tmp_path / "lr.txt"
    path.write_text(f"# labelled\n{SCENES[2]}\n\n{SCENES[5]}\n")
    assert read_lr_file(path) == [SCENES[2], SCENES[5]]
    labels = LimitedLabels(SCENES, LabelBudget(lr_file=path))
    assert labels.labelled_scenes == {SCENES[2], SCENES[5]}
    path.write_text("scene9999_00\n")
    with pytest.raises(ConfigError, match="scene9999_00"):
        LimitedLabels(SCENES, LabelBudget(lr_file=path))


@pytest.mark.parametrize("kwargs, match", [
    (dict(points_per_scene=0), "--labelled-points"),
    (dict(scene_fraction=1.5), "--labelled-scenes"),
    (dict(scene_fraction=0.0), "--labelled-scenes"),
    (dict(la_file="missing.pth"), "--la-file missing.pth"),
])
def test_bad_budgets_are_named(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LabelBudget(**kwargs)


def test_exclusive_budgets(tmp_path):
    la = tmp_path / "la.pth"
    torch.save({}, la)
    with pytest.raises(ConfigError, match="not both"):
        LabelBudget(points_per_scene=5, la_file=la)
    assert not LabelBudget().active and LabelBudget().describe() == "dense labels"
    assert "20 labelled points" in LabelBudget(points_per_scene=20).describe()


def test_unlabelled_scene_stays_unlabelled():
    pc = PointCloud(coord=np.zeros((4, 3), np.float32), origin_index=np.arange(4), scene_id=SCENES[0])
    assert LimitedLabels(SCENES, LabelBudget(points_per_scene=2)).apply(SCENES[0], pc).segment is None
