"""DistillLoss (named weighted terms, weight 0 = absent) and the --method recipes."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

from srkd.distill.loss import make_loss_fn
from srkd.errors import ConfigError
from srkd.losses import DATASETS, METHODS, DistillLoss, LossWeights, recipe
from srkd.losses import combined as combined_mod
from srkd.losses.recipes import RELATION_WEIGHT, SCARCE_KL_WEIGHT
from tests.losses.reference import Out as ModelOutput


def _outputs(n=24, k=4, ds=3, dt=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    student = ModelOutput(torch.randn(n, k, generator=g, requires_grad=True),
                          torch.randn(n, ds, generator=g, requires_grad=True))
    teacher = ModelOutput(torch.randn(n, k, generator=g), torch.randn(n, dt, generator=g))
    segment = torch.randint(-1, k, (n,), generator=g)
    return student, teacher, segment, torch.tensor([10, n])


def test_total_is_weighted_sum_of_logged_terms():
    student, teacher, segment, offset = _outputs()
    w = LossWeights(ce=1.0, lovasz=0.5, kl=0.3, relation=2.0, feat_mse=0.1, cwd=7.0)
    loss = DistillLoss(w, 2.0, 2.0, 6, student_dim=3, teacher_dim=5, generator=torch.Generator().manual_seed(1))
    total, terms = loss(student, teacher, segment, offset)
    assert set(terms) == {"ce", "lovasz", "kl", "relation", "feat_mse", "cwd"}
    assert all(not v.requires_grad and v.ndim == 0 for v in terms.values())
    want = sum(getattr(w, k) * v for k, v in terms.items())
    assert torch.allclose(total.detach(), want)
    total.backward()
    assert student.feature.grad.abs().sum() > 0
    assert loss.feat_mse.proj.weight.grad is not None


def test_zero_weight_terms_are_absent_and_not_computed():
    student, teacher, segment, offset = _outputs()
    loss = recipe("kd").build()
    assert loss.feat_mse is None and len(list(loss.parameters())) == 0
    with mock.patch.object(combined_mod, "sampled_relation_loss") as rel, \
            mock.patch.object(combined_mod, "cwd_loss") as cwd:
        _, terms = loss(student, teacher, segment, offset)
    rel.assert_not_called()
    cwd.assert_not_called()
    assert set(terms) == {"ce", "lovasz", "kl"}


def test_ce_only_without_teacher_and_error_when_teacher_missing():
    student, _, segment, offset = _outputs()
    total, terms = recipe("ce").build()(student, None, segment, offset)
    assert set(terms) == {"ce", "lovasz"} and torch.isfinite(total)
    with pytest.raises(ConfigError, match="need teacher targets"):
        recipe("kd").build()(student, None, segment, offset)
    with pytest.raises(ConfigError, match="features"):
        recipe("mse").build(3, 5)(student, ModelOutput(student.logits.detach(), None), segment, offset)


def test_relation_with_precomputed_teacher_features():
    student, teacher, segment, offset = _outputs()
    loss = DistillLoss(LossWeights(ce=0, lovasz=0, relation=1.0), tau=2.0)
    idx = [torch.tensor([0, 3, 7]), torch.tensor([10, 15, 20, 23])]
    _, a = loss(student, teacher, segment, offset, relation_index=idx)
    cached = [teacher.feature[i] for i in idx]
    _, b = loss(student, ModelOutput(teacher.logits, None), segment, offset,
                relation_index=idx, teacher_relation_feature=cached)
    assert torch.equal(a["relation"], b["relation"])


def test_loss_fn_adapter_matches_train_signature():
    student, teacher, segment, offset = _outputs()

    class Batch:  # the PointBatch fields the loss reads
        pass

    batch = Batch()
    batch.segment, batch.offset, batch.sample_offset = segment, offset, offset
    loss = recipe("kd").build()
    total, terms = make_loss_fn(loss)(student, batch, teacher)
    assert torch.allclose(total, loss(student, teacher, segment, offset)[0])
    # the run log sees every term's value, weighted value and share
    assert {"kl", "kl_weighted", "kl_share", "ce_share", "lovasz_share"} <= set(terms)


def test_contributions_are_weighted_values_and_shares_of_the_total():
    student, teacher, segment, offset = _outputs()
    w = LossWeights(ce=1.0, lovasz=0.5, kl=0.3, relation=2.0, feat_mse=0.1)
    loss = DistillLoss(w, 2.0, 2.0, 6, student_dim=3, teacher_dim=5, generator=torch.Generator().manual_seed(1))
    total, terms = loss(student, teacher, segment, offset)
    c = w.contributions(terms)
    assert set(c) == {f"{n}_{kind}" for n in terms for kind in ("weighted", "share")}
    for name, value in terms.items():
        assert c[f"{name}_weighted"] == pytest.approx(getattr(w, name) * float(value))
        assert c[f"{name}_share"] == pytest.approx(c[f"{name}_weighted"] / float(total.detach()), rel=1e-5)
    assert sum(v for k, v in c.items() if k.endswith("_share")) == pytest.approx(1.0)
    zero = w.contributions({"ce": torch.tensor(0.0), "kl": torch.tensor(0.0)})
    assert zero == {"ce_weighted": 0.0, "ce_share": 0.0, "kl_weighted": 0.0, "kl_share": 0.0}


def test_recipes_follow_method_md():
    release = recipe("srkd-release")
    assert release.weights.active() == {"ce": 1, "lovasz": 1, "kl": 0.3, "relation": 1e-3, "feat_mse": 0.1}
    assert (release.temperature, release.tau) == (2.0, 2.0)
    srkd = recipe("srkd")  # the release's recipe with the calibrated relation weight
    assert srkd.weights.active() == {**release.weights.active(), "relation": RELATION_WEIGHT}
    assert (srkd.temperature, srkd.tau) == (2.0, 2.0)
    scarce = recipe("srkd-scarce")  # srkd for limited labels: only the KL weight differs
    assert scarce.weights.active() == {**srkd.weights.active(), "kl": SCARCE_KL_WEIGHT} and SCARCE_KL_WEIGHT == 30
    assert (scarce.temperature, scarce.tau, scarce.kl_points) == (2.0, 2.0, "all")
    scarce_nus = recipe("srkd-scarce", dataset="nuscenes")  # the dataset's T and tau, its own KL weight
    assert (scarce_nus.weights.kl, scarce_nus.temperature, scarce_nus.tau) == (SCARCE_KL_WEIGHT, 1.0, 1.0)
    assert recipe("relation").weights.active() == {"ce": 1, "lovasz": 1, "relation": RELATION_WEIGHT}
    assert recipe("kd").weights.active() == {"ce": 1, "lovasz": 1, "kl": 0.3}
    assert recipe("mse").weights.active() == {"ce": 1, "lovasz": 1, "kl": 0.3, "feat_mse": 0.1}
    assert recipe("cwd").weights.active() == {"ce": 1, "lovasz": 1, "kl": 0.3, "cwd": 1e3}
    assert recipe("ce").weights.active() == {"ce": 1, "lovasz": 1}
    nus = recipe("srkd", dataset="nuscenes")
    assert (nus.weights.kl, nus.temperature, nus.tau) == (0.1, 1.0, 1.0)
    assert recipe("srkd", dataset="scannet200").weights == srkd.weights
    assert set(METHODS) == {"srkd", "srkd-scarce", "srkd-release", "kd", "mse", "cwd", "relation", "ce"}
    assert "nuscenes" in DATASETS


def test_recipe_overrides_and_errors():
    r = recipe("srkd", relation=0.01, feat_mse=0, tau=1.5, n_relation_points=512, kl=None)
    assert r.weights.relation == 0.01 and "feat_mse" not in r.weights.active()
    assert (r.tau, r.n_relation_points, r.weights.kl) == (1.5, 512, 0.3)
    assert r.build().feat_mse is None
    with pytest.raises(ConfigError, match="known methods: srkd, srkd-scarce, srkd-release, kd, mse, cwd, relation, ce"):
        recipe("fitnet")
    with pytest.raises(ConfigError, match="known"):
        recipe("srkd", dataset="kitti")
    with pytest.raises(ConfigError, match="relaton"):
        recipe("srkd", relaton=1.0)
    with pytest.raises(ConfigError, match=">= 0"):
        recipe("srkd", kl=-1.0)
    with pytest.raises(ConfigError, match="tau"):
        recipe("srkd", tau=0)
    with pytest.raises(ConfigError, match="student_dim"):
        recipe("srkd").build()
