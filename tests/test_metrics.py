"""Confusion matrix and split-level scores against hand-computed values."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from srkd.errors import ConfigError, DataError
from srkd.metrics import (
    ConfusionAccumulator,
    SegmentationScores,
    confusion_matrix,
    default_class_names,
)

# 4 classes: 0 and 1 ordinary, 2 predicted but never in the ground truth (false-positive-only),
# 3 neither labelled nor predicted at a labelled point (absent). The last two points are ignored
# (-1); their predictions (3, and the out-of-range 9) must not count anywhere.
TARGET = np.array([0, 0, 0, 1, 1, 1, 1, -1, -1])
PRED = np.array([0, 0, 1, 1, 1, 2, 0, 3, 9])
# Worked by hand, rows = ground truth:
#   gt 0 -> pred 0,0,1            row 0 = [2, 1, 0, 0]
#   gt 1 -> pred 1,1,2,0          row 1 = [1, 2, 1, 0]
# I = [2, 2, 0, 0], G = [3, 4, 0, 0], P = [3, 3, 1, 0], U = G + P - I = [4, 5, 1, 0]
HAND_CM = [[2, 1, 0, 0], [1, 2, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
HAND_IOU = [2 / 4, 2 / 5, 0.0, math.nan]
HAND_ACC = [2 / 3, 2 / 4, math.nan, math.nan]


def test_hand_built_four_class_example():
    cm = confusion_matrix(PRED, TARGET, 4)
    assert cm.dtype == np.int64
    assert cm.tolist() == HAND_CM
    s = SegmentationScores.from_confusion(cm)
    np.testing.assert_allclose(s.iou, HAND_IOU, equal_nan=True)
    np.testing.assert_allclose(s.acc, HAND_ACC, equal_nan=True)
    assert s.present.tolist() == [True, True, True, False]
    assert s.classes_in_mean == 3 and s.classes_with_gt == 2
    assert s.miou == pytest.approx((0.5 + 0.4 + 0.0) / 3)  # absent class 3 left out
    assert s.macc == pytest.approx((2 / 3 + 1 / 2) / 2)  # only classes with ground truth
    assert s.allacc == pytest.approx(4 / 7)
    assert s.num_points == 7
    assert s.intersection.tolist() == [2, 2, 0, 0]
    assert s.union.tolist() == [4, 5, 1, 0]


def test_hand_built_three_class_example_with_torch_inputs():
    # class 0 ordinary, class 1 false-positive-only, class 2 absent; 2 ignored points.
    target = torch.tensor([0, 0, 0, 0, 0, -1, -1])
    pred = torch.tensor([0, 0, 0, 0, 1, 2, 1])
    cm = confusion_matrix(pred, target, 3)
    assert isinstance(cm, np.ndarray)
    assert cm.tolist() == [[4, 1, 0], [0, 0, 0], [0, 0, 0]]
    s = SegmentationScores.from_confusion(cm)
    # IoU_0 = 4 / (5 + 4 - 4); IoU_1 = 0 / (0 + 1 - 0); class 2 absent
    np.testing.assert_allclose(s.iou, [0.8, 0.0, math.nan], equal_nan=True)
    assert s.miou == pytest.approx(0.4)
    assert s.classes_in_mean == 2
    assert s.macc == pytest.approx(0.8) and s.allacc == pytest.approx(0.8)
    # numpy and torch (int32 too) give the same counts
    assert (confusion_matrix(pred.int().numpy(), target.numpy(), 3) == cm).all()


def test_matches_brute_force_count(rng):
    k = 7
    target = rng.integers(-1, k, size=5000)
    pred = rng.integers(0, k, size=5000)
    expected = np.zeros((k, k), np.int64)
    for t, p in zip(target, pred, strict=True):
        if t != -1:
            expected[t, p] += 1
    assert (confusion_matrix(pred, target, k) == expected).all()
    assert (confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), k) == expected).all()


def test_accumulating_scenes_equals_the_concatenation(rng):
    k = 5
    scenes = []
    for n in (300, 17, 1000, 1):
        target = rng.integers(-1, k - 1, size=n)  # class 4 never labelled
        pred = np.where(rng.random(n) < 0.7, np.clip(target, 0, None), rng.integers(0, k, n))
        scenes.append((pred, target))
    acc = ConfusionAccumulator(k)
    for pred, target in scenes:
        acc.add(pred, target)
    whole = SegmentationScores.from_confusion(
        confusion_matrix(np.concatenate([p for p, _ in scenes]),
                         np.concatenate([t for _, t in scenes]), k)  # fmt: skip
    )
    got = acc.scores()
    assert (got.confusion == whole.confusion).all()
    np.testing.assert_array_equal(got.iou, whole.iou)
    assert got.miou == whole.miou and got.allacc == whole.allacc
    # split-level mIoU is not the mean of per-scene mIoUs (intersections/unions are summed)
    per_scene = [SegmentationScores.from_confusion(confusion_matrix(*s, k)).miou for s in scenes]
    assert not math.isclose(float(np.mean(per_scene)), got.miou)

    # merging accumulators of two halves (e.g. two processes) gives the same counts
    a, b = ConfusionAccumulator(k), ConfusionAccumulator(k)
    for i, (pred, target) in enumerate(scenes):
        (a if i % 2 else b).add(pred, target)
    assert (a.merge(b).matrix == acc.matrix).all()
    c = ConfusionAccumulator(k)
    c.add_matrix(acc.matrix)
    labelled = int(sum((t >= 0).sum() for _, t in scenes))
    assert c.num_points == acc.num_points == labelled
    c.reset()
    assert c.num_points == 0


def test_perfect_prediction_scores_one(rng):
    target = rng.integers(-1, 20, size=2000)
    pred = np.where(target < 0, 5, target)
    s = SegmentationScores.from_confusion(confusion_matrix(pred, target, 20))
    assert s.miou == 1.0 and s.macc == 1.0 and s.allacc == 1.0
    assert s.classes_in_mean == len(np.unique(target[target >= 0]))


def test_nothing_labelled_gives_nan_and_zero_classes():
    s = ConfusionAccumulator(3).scores()
    assert s.classes_in_mean == 0 and s.num_points == 0
    assert math.isnan(s.miou) and math.isnan(s.macc) and math.isnan(s.allacc)
    d = s.to_dict(["a", "b", "c"])
    assert d["miou"] is None and d["per_class"][0]["iou"] is None
    json.dumps(d, allow_nan=False)


def test_to_dict_is_strict_json():
    s = SegmentationScores.from_confusion(confusion_matrix(PRED, TARGET, 4))
    d = s.to_dict(["w", "x", "y", "z"])
    text = json.dumps(d, allow_nan=False)
    assert d["classes_in_mean"] == 3 and d["num_points"] == 7
    assert [c["iou"] for c in d["per_class"]] == [0.5, 0.4, 0.0, None]
    assert [c["present"] for c in d["per_class"]] == [True, True, True, False]
    assert json.loads(text)["confusion"] == s.confusion.tolist() and d["miou"] == s.miou
    with pytest.raises(ConfigError, match="3 class names"):
        s.to_dict(["a", "b", "c"])


def test_scores_are_immutable():
    s = SegmentationScores.from_confusion(np.eye(3, dtype=np.int64))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.miou = 0.5  # type: ignore[misc]
    with pytest.raises(ValueError):
        s.iou[0] = 0.0
    acc = ConfusionAccumulator(3)
    acc.matrix[0, 0] = 99  # a copy: the accumulator is untouched
    assert acc.num_points == 0


@pytest.mark.parametrize(
    ("pred", "target", "k", "match"),
    [
        (np.zeros(3, int), np.zeros(4, int), 2, "shape"),
        (np.zeros(3), np.zeros(3, int), 2, "integer"),
        (np.zeros((3, 1), int), np.zeros((3, 1), int), 2, "1-D"),
        (np.zeros(3, int), np.array([0, 2, 1]), 2, "label 2"),
        (np.zeros(3, int), np.array([0, -5, 1]), 2, "label -5"),
        (np.array([0, 3, 0]), np.array([0, 1, 1]), 2, "pred has class 3"),
        (torch.zeros(3, dtype=torch.long), np.zeros(3, int), 2, "both"),
        (torch.zeros(3), torch.zeros(3, dtype=torch.long), 2, "integer"),
    ],
)
def test_bad_inputs_name_the_problem(pred, target, k, match):
    with pytest.raises(DataError, match=match):
        confusion_matrix(pred, target, k)


def test_bad_configuration():
    with pytest.raises(ConfigError, match="at least 1"):
        ConfusionAccumulator(0)
    with pytest.raises(ConfigError, match="merge a 3-class"):
        ConfusionAccumulator(4).merge(ConfusionAccumulator(3))
    with pytest.raises(DataError, match="square"):
        SegmentationScores.from_confusion(np.zeros((2, 3), int))
    with pytest.raises(DataError, match="negative"):
        SegmentationScores.from_confusion(-np.eye(2, dtype=int))
    with pytest.raises(DataError, match="3x3 but 4"):
        ConfusionAccumulator(4).add_matrix(np.eye(3, dtype=int))


def test_default_class_names():
    assert default_class_names(20)[0] == "wall"
    assert len(default_class_names(200)) == 200
    assert default_class_names(3) == ("class_0", "class_1", "class_2")
