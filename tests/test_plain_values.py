"""srkd.io.to_plain, the one to-plain function: what each record it feeds stores must not change.

It replaced three functions (srkd/cache/schema.py `_plain`, srkd/models/checkpoint.py `_plain`,
srkd/distill/run.py `_plain`). The expected values below were computed by those three functions
at commit 85da322 (before the change) with the same inputs, by a script that printed
`CacheSpec.fingerprint()`, `repr(...)` of each converted value, and `_resume_identity(...)`;
they are pinned here so that cache fingerprints, checkpoint train_params and the resume
identity of existing run folders stay what they were.
"""

from __future__ import annotations

import enum
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from srkd.errors import CheckpointError, ConfigError
from srkd.io import to_plain

TEACHER_ARGS = {"in_channels": 6, "num_classes": 20, "enc_depths": (1, 1), "enc_channels": (8, 16),
                "order": ("z", "z-trans"), "unpooling": "v3m2", "drop_path": 0.0, "grid": 0.02,
                "nested": {"b": [1, (2.5, "x")], "a": None, "flag": True}}
VIEW_SETTINGS = {"seed": 0, "canonical_view": "view 0: center_shift(apply_z=True) only",
                 "chain": "view_transforms", "chain_names": ("center_shift", "rotate_z", "scale"),
                 "rng": "numpy default_rng([seed, crc32(scene_id), view])", "rotate_z": [-1.0, 1.0],
                 "tilt": 0.05, "scale": [0.9, 1.1], "p_rotate": 0.95, "p_flip": 0.5}
OPTIM = {"lr": 0.002, "weight_decay": 0.05, "block_lr_scale": 0.1, "block_keyword": "block",
         "pct_start": 0.5, "div_factor": 10.0, "final_div_factor": 1000.0, "grad_clip": None}
RECIPE = {"method": "srkd", "dataset": "scannet",
          "weights": {"ce": 1.0, "lovasz": 1.0, "kl": 2.0, "relation": 1.0},
          "temperature": 2.0, "tau": 0.5, "n_relation_points": 256}
TRAIN_PARAMS = {"model": "test_spunet", "out": "/runs/a", "dataset": "scannet",
                "data_root": "/data/scannet",
                "model_args": {"base_channels": 8, "channels": (8, 16), "drop": 0.1},
                "train_split": "train", "val_split": "val", "grid_size": 0.02,
                "color_norm": "pointcept", "method": "srkd", "loss_overrides": {"kl": 2.0, "tau": None},
                "targets": "view", "cache": "/caches/c", "online_teacher": None,
                "teacher_model": None, "teacher_color_norm": None, "epochs": 3, "batch_size": 2,
                "optim": OPTIM, "workers": 0, "seed": 0, "eval_every": 1, "checkpoint_every": 50,
                "max_points": 102400, "mix3d_prob": 0.8, "augment": True, "repeats": 1,
                "val_max_scenes": None, "amp": True, "device": "auto", "resume": False,
                "tensorboard": False, "recipe": RECIPE, "world_size": 1,
                "cache_fingerprint": "cd" * 32}


def typed(value: Any) -> Any:
    """`value` with the exact type of every part spelt out (3 == 3.0 and [1] == (1,) elsewhere)."""
    if isinstance(value, dict):
        return ("dict", [(type(k).__name__, k, typed(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value).__name__, value)


# ---- cache metadata (the fingerprint's input): json=True --------------------------------------


def test_cache_fingerprint_is_the_one_computed_before_to_plain():
    from srkd.cache import CacheSpec, CodecSpec

    spec = CacheSpec(dataset="scannet", data_root="/data/scannet", split="train",
                     class_names=tuple(f"c{i}" for i in range(20)), teacher_name="ptv3_v1m1",
                     teacher_args=TEACHER_ARGS, teacher_sha256="ab" * 32, feature_dim=64,
                     codec=CodecSpec.create("int8"), views=4, ensemble=True,
                     view_settings=VIEW_SETTINGS, grid_size=0.02, color_norm="pointcept")
    # printed by the old CacheSpec (schema.py `_plain`: a sorted JSON round trip) at 85da322
    assert spec.fingerprint() == "2f4fa9755582c671450a968aae175f0b2f32052749560fa6e016f9f9a0da0ba6"
    assert spec.fingerprint(schema_version=1) == (
        "53b53fa70db4d191e21b6663c389f6176e73f50a90d52e4f9d87684af0450684")
    stored = spec.to_json()
    assert typed(stored["teacher_args"]) == typed(
        {"drop_path": 0.0, "enc_channels": [8, 16], "enc_depths": [1, 1], "grid": 0.02,
         "in_channels": 6, "nested": {"a": None, "b": [1, [2.5, "x"]], "flag": True},
         "num_classes": 20, "order": ["z", "z-trans"], "unpooling": "v3m2"})
    assert typed(stored["view_settings"]) == typed(
        {"canonical_view": "view 0: center_shift(apply_z=True) only", "chain": "view_transforms",
         "chain_names": ["center_shift", "rotate_z", "scale"], "p_flip": 0.5, "p_rotate": 0.95,
         "rng": "numpy default_rng([seed, crc32(scene_id), view])", "rotate_z": [-1.0, 1.0],
         "scale": [0.9, 1.1], "seed": 0, "tilt": 0.05})


class Mode(enum.StrEnum):
    FAST = "fast"


class Level(enum.IntEnum):
    TWO = 2


@pytest.mark.parametrize("value", [
    {"b": (1, 2), "a": {2: np.float64(0.5), 1: True}},
    {"x": [Mode.FAST, Level.TWO, np.float64(1 / 3), (), {}], "n": None, "t": {True: 1}, "u": {None: 2}, "v": {1.5: 0}},
    {"deep": [[[{"k": -0.0}]]], "big": 2**70, "f": 1e-300, "s": "ü\n"},
], ids=["int-keys", "subclasses", "odd-numbers"])
def test_json_rules_are_a_sorted_json_round_trip(value):
    expected = json.loads(json.dumps(value, sort_keys=True, allow_nan=False))
    got = to_plain(value, json=True)
    assert typed(got) == typed(expected)
    assert json.dumps(got) == json.dumps(expected)  # the same key order too


@pytest.mark.parametrize("bad", [np.int64(3), np.float32(1), float("nan"), float("inf"),
                                 Path("/a"), object()])
def test_json_rules_refuse_what_json_refuses(bad):
    with pytest.raises(ConfigError, match=r"view_settings\.seed\[1\]: .*plain JSON"):
        to_plain({"seed": [0, bad]}, where="view_settings", json=True)


# ---- checkpoints: keep_tuples, error=CheckpointError -------------------------------------------


def test_checkpoint_rules_keep_what_checkpoints_stored():
    from srkd.models.checkpoint import _plain

    assert typed(_plain(TRAIN_PARAMS, "train_params")) == typed(
        {**TRAIN_PARAMS, "model_args": {"base_channels": 8, "channels": (8, 16), "drop": 0.1}})
    odd = {"a": np.float32(0.25), "b": np.int64(3), "c": Path("/x/y"), "d": (1, [2, (3,)]),
           "e": np.bool_(True), "f": float("nan")}
    got = _plain(odd, "extra")
    assert math.isnan(got.pop("f"))
    # printed by the old checkpoint.py `_plain` at 85da322: {'a': 0.25, 'b': 3, 'c': '/x/y',
    # 'd': (1, [2, (3,)]), 'e': True, 'f': nan}
    assert typed(got) == typed({"a": 0.25, "b": 3, "c": "/x/y", "d": (1, [2, (3,)]), "e": True})
    with pytest.raises(CheckpointError, match=r"extra\.x: key 1 is not a string"):
        _plain({"x": {1: 2}}, "extra")
    with pytest.raises(CheckpointError, match=r"extra\.x\[0\]: value of type builtin_function_or_method"):
        _plain({"x": [print]}, "extra")


# ---- a run's resume identity and checkpoint metadata: lenient=True ------------------------------


def test_resume_identity_is_the_one_recorded_before_to_plain():
    from srkd.distill.model import resume_identity

    identity = resume_identity(TRAIN_PARAMS)
    # printed by the old run.py `_resume_identity` at 85da322 (train_state.pt "run" + epochs and
    # steps_per_epoch): RESUMABLE_CHANGES dropped, tuples as lists
    expected = {k: v for k, v in TRAIN_PARAMS.items()
                if k not in ("out", "resume", "device", "workers", "eval_every", "checkpoint_every",
                             "cache", "data_root", "tensorboard")}
    expected["model_args"] = {"base_channels": 8, "channels": [8, 16], "drop": 0.1}
    assert typed(identity) == typed(expected)


def test_lenient_rules_make_numbers_float_and_keys_str():
    meta = {"step": 4, "val": {"mIoU": np.float64(0.5), "mAcc": 0.25, "allAcc": np.float32(0.75),
                               "scenes": 2, "per": {1: np.int64(7)}},
            "lr_schedule": [[0, 4], (4, 8)], "flag": np.bool_(False)}
    # printed by the old run.py `_plain` at 85da322
    assert typed(to_plain(meta, lenient=True)) == typed(
        {"step": 4, "val": {"mIoU": 0.5, "mAcc": 0.25, "allAcc": 0.75, "scenes": 2,
                            "per": {"1": 7.0}}, "lr_schedule": [[0, 4], [4, 8]], "flag": 0.0})
    with pytest.raises(ConfigError, match=r"meta\.where: value of type PosixPath"):
        to_plain({"where": Path("/a")}, where="meta", lenient=True)


def test_json_excludes_the_other_rules():
    with pytest.raises(ValueError, match="json=True"):
        to_plain({}, json=True, keep_tuples=True)
