"""The outdoor recipe's pieces: dataset specs (ScanNet's unchanged), loss recipes, transform
chains and test-time views, `open_scenes` and its split file, presets, and the example
examples/outdoor/stages.yaml (validated by the `srkd run` parser, not run)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from srkd.data.scannet import ScanNetScenes, get_dataset_spec
from srkd.data.sources import SPLITS_FILE, open_scenes, split_file_options
from srkd.data.transforms import (
    canonical_chain,
    canonical_view_record,
    fragment_transforms,
    outdoor_train_transforms,
    replay,
    tta_view_records,
)
from srkd.errors import ConfigError, DataError
from srkd.losses.recipes import METHODS, SCARCE_KL_WEIGHT, recipe
from srkd.types import PointCloud

REPO = Path(__file__).resolve().parents[2]


def scan(n: int = 500, seed: int = 0) -> PointCloud:
    rng = np.random.default_rng(seed)
    return PointCloud(coord=rng.uniform(-30, 30, (n, 3)).astype(np.float32),
                      origin_index=np.arange(n), strength=rng.random((n, 1)),
                      segment=rng.integers(-1, 16, n), num_classes=16, scene_id="s")  # fmt: skip


def test_outdoor_specs_and_scannet_unchanged():
    for name, classes in (("nuscenes", 16), ("semantickitti", 19)):
        spec = get_dataset_spec(name)
        assert (spec.num_classes, len(spec.class_names), len(spec.class_colors)) == (classes,) * 3
        assert spec.feature_names == ("coord", "strength") and spec.feature_dim == 4
        assert (spec.grid_size, spec.domain, spec.layout, spec.weight_decay) == (0.05, "outdoor", name, 0.005)
    for name in ("scannet", "scannet200"):
        spec = get_dataset_spec(name)
        assert spec.feature_names == ("color", "normal") and spec.feature_dim == 6
        assert (spec.grid_size, spec.domain, spec.layout, spec.weight_decay) == (0.02, "indoor", "scannet", 0.05)


@pytest.mark.parametrize("method", METHODS)
def test_semantickitti_takes_the_nuscenes_loss_numbers(method):
    nu, sk, sn = recipe(method, "nuscenes"), recipe(method, "semantickitti"), recipe(method, "scannet")
    assert (nu.weights, nu.temperature, nu.tau) == (sk.weights, sk.temperature, sk.tau)
    assert (nu.temperature, nu.tau) == (1.0, 1.0) and (sn.temperature, sn.tau) == (2.0, 2.0)
    if method == "srkd-scarce":  # its KL weight is its own on every dataset
        assert nu.weights.kl == sn.weights.kl == SCARCE_KL_WEIGHT
    elif "kl" in nu.weights.active():
        assert nu.weights.kl == 0.1 and sn.weights.kl == 0.3


def test_outdoor_training_chain_is_the_nuscenes_one():
    chain = outdoor_train_transforms()
    assert chain.names == ["rotate", "scale", "flip", "jitter", "grid_sample"]
    rot, scale, flip, jitter, grid = chain.transforms
    assert rot.angle == (-math.pi, math.pi) and rot.center == [0.0] * 3 and rot.p == 0.5
    assert scale.scale == (0.9, 1.1) and flip.p == 0.5
    assert (jitter.sigma, jitter.clip, grid.grid_size) == (0.005, 0.02, 0.05)
    pc = scan()
    out, _ = chain(pc, np.random.default_rng(1))
    assert out.strength is not None and out.color is None and out.num_points <= pc.num_points
    np.testing.assert_array_equal(out.strength, pc.strength[out.origin_index])  # no colour ops


def test_outdoor_views_canonical_and_fragments_leave_coordinates_alone():
    pc = scan()
    assert len(canonical_chain("outdoor")) == 0 and len(fragment_transforms(domain="outdoor")) == 0
    same = replay(pc, canonical_view_record(pc, "outdoor"))
    np.testing.assert_array_equal(same.coord, pc.coord)  # no centre shift: coord is an input
    views = tta_view_records(pc, "outdoor")
    assert len(views) == 10 and len(tta_view_records(pc)) == 13  # ScanNet's 13 unchanged
    seen = set()
    for record in views:
        out = replay(pc, record)
        s = record[1]["params"]["scale"][0]
        flipped = record[2]["params"]["x"] and record[2]["params"]["y"]
        sign = np.array([-1.0, -1.0, 1.0]) if flipped else np.ones(3)
        np.testing.assert_allclose(out.coord, pc.coord * s * sign, rtol=1e-6, atol=1e-5)
        seen.add((s, flipped))
    assert seen == {(s, f) for s in (0.9, 0.95, 1.0, 1.05, 1.1) for f in (False, True)}
    with pytest.raises(ConfigError, match="transform domain"):
        tta_view_records(pc, "underwater")


def test_open_scenes_reads_scannet_and_refuses_bad_requests(tmp_path):
    from srkd.data.synthetic.rooms import generate_dataset

    generate_dataset(tmp_path / "rooms", scenes=2, seed=0, val_fraction=0.5, n_points=1000)
    source = open_scenes("scannet", tmp_path / "rooms", "train")
    assert isinstance(source, ScanNetScenes) and len(source.scene_ids) == 1
    with pytest.raises(ConfigError, match="takes no options"):
        open_scenes("scannet", tmp_path / "rooms", "train", sweeps=3)
    with pytest.raises(ConfigError, match="open_scenes"):
        ScanNetScenes(tmp_path / "rooms", "train", "nuscenes")
    with pytest.raises(ConfigError, match="does not take"):
        open_scenes("semantickitti", tmp_path / "rooms", "train", sweeps=3)


@pytest.mark.parametrize("text, match", [
    ("{not json", "not readable JSON"),
    ('["train"]', "JSON object of objects"),
    ('{"train": {"sequences": ["00"], "sweeps": 2}}', r"sets \['sweeps'\]"),
    ('{"train": {"sequences": "00"}}', "bad 'sequences'"),
])  # fmt: skip
def test_a_bad_split_file_is_one_error_naming_it(tmp_path, text, match):
    (tmp_path / SPLITS_FILE).write_text(text)
    with pytest.raises(DataError, match=match) as info:
        split_file_options("semantickitti", tmp_path, "train")
    assert str(tmp_path / SPLITS_FILE) in str(info.value)


def test_split_file_options_and_caller_options_win(tmp_path):
    (tmp_path / SPLITS_FILE).write_text('{"val": {"version": "v1.0-x", "scenes": ["a", "b"]}}')
    assert split_file_options("nuscenes", tmp_path, "val") == {"version": "v1.0-x", "scenes": ("a", "b")}
    assert split_file_options("nuscenes", tmp_path, "train") == {}


def test_outdoor_presets_take_coord_and_strength():
    from srkd.models import count_parameters, create_model

    tiny = create_model("test_ptv3_outdoor")
    assert (tiny.in_channels, tiny.num_classes) == (4, 16)
    student = create_model("ptv3_half_outdoor", num_classes=19)
    assert student.num_classes == 19 and count_parameters(student) < 15_000_000


def test_the_outdoor_example_pipeline_is_accepted_by_srkd_run():
    from pipeline.params import check_params
    from pipeline.spec import load_spec

    spec = load_spec(REPO / "examples" / "outdoor" / "stages.yaml")
    check_params(spec)  # every params key is one its command reads
    stages = {s.name: s for s in spec.stages} if isinstance(spec.stages, list) else spec.stages
    assert {"generate", "cache_teacher", "distill", "baseline", "evaluate"} <= set(stages)
    assert spec.params["cache"]["dataset"] == "nuscenes" and spec.params["distill"]["grid_size"] == 0.05
    assert "--kind outdoor" in stages["generate"].cmd
