"""KL over every point, class-balanced means, relation pairs by source scene, target diagnostics."""

from __future__ import annotations

import math

import pytest
import torch

from srkd.errors import ConfigError
from srkd.losses import cross_entropy_loss, kl_distill_loss, relation_loss
from srkd.losses._checks import class_balanced_mean
from srkd.losses.recipes import recipe
from srkd.losses.relation import relation_target_stats
from srkd.models.base import ModelOutput

from .reference import ref_kl


def _logits(seed: int, n: int = 40, k: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(n, k, generator=g, dtype=torch.float64), torch.randn(n, k, generator=g, dtype=torch.float64) * 3
    segment = torch.randint(0, k, (n,), generator=g)
    segment[::3] = -1
    return s, t, segment


def test_kl_over_every_point_equals_the_reference_with_every_point_labelled():
    s, t, segment = _logits(0)
    every = kl_distill_loss(s, t, segment, 2.0, points="all")
    assert math.isclose(float(every), ref_kl(s.numpy(), t.numpy(), segment.clamp(min=0).numpy(), 2.0), rel_tol=1e-9)
    labelled = kl_distill_loss(s, t, segment, 2.0)
    assert math.isclose(float(labelled), ref_kl(s.numpy(), t.numpy(), segment.numpy(), 2.0), rel_tol=1e-9)
    # no label at all: the release's KL is silent, "all" still hears the teacher
    none = torch.full_like(segment, -1)
    assert float(kl_distill_loss(s, t, none, 2.0)) == 0.0
    assert float(kl_distill_loss(s, t, none, 2.0, points="all")) == pytest.approx(float(every))
    with pytest.raises(ConfigError, match="kl_points"):
        kl_distill_loss(s, t, segment, 2.0, points="some")


def test_class_balanced_mean_weighs_every_present_class_equally():
    values = torch.tensor([1.0, 1.0, 1.0, 4.0, 10.0])
    classes = torch.tensor([0, 0, 0, 2, 2])
    assert float(class_balanced_mean(values, classes, 4)) == pytest.approx((1.0 + 7.0) / 2)


def test_balanced_kl_and_ce_match_per_class_averages():
    s, t, segment = _logits(1)
    tt = 2.0
    log_q = torch.log_softmax(t / tt, 1)
    per_point = (log_q.exp() * (log_q - torch.log_softmax(s / tt, 1))).sum(1)
    cls = t.argmax(1)
    expected = torch.stack([per_point[cls == c].mean() for c in cls.unique()]).mean() * tt * tt
    got = kl_distill_loss(s, t, segment, tt, points="all", balanced=True)
    assert float(got) == pytest.approx(float(expected), rel=1e-9)
    valid = segment >= 0
    ce = torch.nn.functional.cross_entropy(s[valid], segment[valid], reduction="none")
    expected_ce = torch.stack([ce[segment[valid] == c].mean() for c in segment[valid].unique()]).mean()
    assert float(cross_entropy_loss(s, segment, balanced=True)) == pytest.approx(float(expected_ce), rel=1e-9)
    # with classes of equal size, the balanced CE is the plain one
    even = torch.arange(40) % 5
    assert float(cross_entropy_loss(s, even, balanced=True)) == pytest.approx(float(cross_entropy_loss(s, even)))


def test_recipes_average_kl_over_every_point_except_the_release():
    assert recipe("srkd").kl_points == "all" and recipe("kd").kl_points == "all"
    assert recipe("srkd-release").kl_points == "labelled"
    r = recipe("kd", kl_points="labelled", balanced_kl=True, balanced_ce=True)
    assert (r.kl_points, r.balanced_kl, r.balanced_ce) == ("labelled", True, True)
    assert r.as_dict()["balanced_kl"] is True
    with pytest.raises(ConfigError, match="kl_points"):
        recipe("kd", kl_points="most")
    with pytest.raises(ConfigError, match="balanced_kl must be true or false"):
        recipe("kd", balanced_kl=1.0)


def test_relation_pairs_source_scenes_of_a_mixed_sample():
    """A Mix3D sample holds two scenes: with relation_offset they are two samples of the
    relation term (cross-scene pairs exist), not one."""
    g = torch.Generator().manual_seed(2)
    n, k = 30, 4
    student = ModelOutput(torch.randn(n, k, generator=g), torch.randn(n, 6, generator=g))
    teacher = ModelOutput(torch.randn(n, k, generator=g), torch.randn(n, 8, generator=g))
    segment, offset, sources = torch.randint(0, k, (n,), generator=g), torch.tensor([n]), torch.tensor([12, n])
    loss = recipe("srkd", n_relation_points=64).build(student_dim=6, teacher_dim=8)
    _, one = loss(student, teacher, segment, offset)
    _, two = loss(student, teacher, segment, offset, relation_offset=sources)
    expected = relation_loss([teacher.feature[:12], teacher.feature[12:]],
                             [student.feature[:12], student.feature[12:]], tau=loss.tau)
    assert float(two["relation"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(one["relation"]) != pytest.approx(float(two["relation"]), rel=1e-3)


def test_relation_target_stats_see_class_structure():
    g = torch.Generator().manual_seed(3)
    classes = torch.arange(64) % 4
    centres = torch.randn(4, 16, generator=g)
    features = centres[classes] + 0.05 * torch.randn(64, 16, generator=g)
    offset = torch.tensor([32, 64])
    sharp = relation_target_stats(features, classes, offset, 32, tau=0.1)
    flat = relation_target_stats(features, classes, offset, 32, tau=100.0)
    assert sharp["relation_same_class_chance"] == pytest.approx(0.25)
    assert sharp["relation_same_class_mass"] > 0.9 > sharp["relation_target_entropy"]
    assert flat["relation_target_entropy"] > 0.999
    assert flat["relation_same_class_mass"] == pytest.approx(0.25, abs=0.01)
