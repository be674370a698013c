"""KL_T, CWD and FeatMSE: zero at equality, hand-checked values, gradients only to the student."""

from __future__ import annotations

import math

import pytest
import torch

from srkd.errors import ConfigError
from srkd.losses import FeatMSE, cwd_loss, kl_distill_loss


def test_kl_zero_when_equal_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 5, generator=g)
    segment = torch.randint(-1, 5, (20,), generator=g)
    for t in (1.0, 2.0, 4.0):
        assert float(kl_distill_loss(logits, logits.clone(), segment, t)) == pytest.approx(0, abs=1e-6)
    assert float(kl_distill_loss(logits, torch.randn(20, 5, generator=g), segment, 2.0)) > 0.01


def test_kl_hand_checked_and_valid_points_only():
    # one valid point; teacher softmax at T=2 is (1/4, 3/4), the student's is uniform
    teacher = torch.tensor([[0.0, 2 * math.log(3.0)], [9.0, -9.0]])
    student = torch.tensor([[0.0, 0.0], [-9.0, 9.0]])
    want = 4 * (0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5))
    got = kl_distill_loss(student, teacher, torch.tensor([1, -1]), temperature=2.0)
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_cwd_hand_checked_single_sample():
    # one sample, one channel, two points: teacher spatial softmax (1/4, 3/4), student (1/2, 1/2)
    teacher = torch.tensor([[0.0], [math.log(3.0)]])
    student = torch.zeros(2, 1)
    want = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert float(cwd_loss(student, teacher, torch.tensor([2]), 1.0)) == pytest.approx(want, rel=1e-6)
    # at T=2 the logits are halved inside the softmax and the result is multiplied by 4
    q = torch.softmax(teacher[:, 0] / 2, 0)
    want2 = 4 * float((q * (q / 0.5).log()).sum())
    assert float(cwd_loss(student, teacher, torch.tensor([2]), 2.0)) == pytest.approx(want2, rel=1e-6)


def test_cwd_softmax_is_per_sample_and_divided_by_batch_times_channels():
    # sample 0 = the hand-checked case in channel 0; sample 1 and channel 1 agree exactly.
    # If the softmax spanned the whole batch, sample 1's points would change the value.
    teacher = torch.tensor([[0.0, 1.0], [math.log(3.0), 2.0], [5.0, 3.0], [7.0, 4.0], [1.0, 5.0]])
    student = teacher.clone()
    student[:2, 0] = 0.0
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    got = cwd_loss(student, teacher, torch.tensor([2, 5]), 1.0)
    assert float(got) == pytest.approx(kl / (2 * 2), rel=1e-6)


def test_cwd_equal_is_zero():
    logits = torch.randn(30, 4)
    assert float(cwd_loss(logits, logits.clone(), torch.tensor([10, 30]), 2.0)) == pytest.approx(0, abs=1e-6)


def test_gradients_reach_only_the_student():
    s = torch.randn(12, 3, requires_grad=True)
    t = torch.randn(12, 3, requires_grad=True)
    seg = torch.randint(0, 3, (12,))
    (kl_distill_loss(s, t, seg, 2.0) + cwd_loss(s, t, torch.tensor([5, 12]), 2.0)).backward()
    assert t.grad is None and s.grad.abs().sum() > 0
    m = FeatMSE(3, 7)
    tf = torch.randn(12, 7, requires_grad=True)
    m(s, tf).backward()
    assert tf.grad is None and m.proj.weight.grad.abs().sum() > 0


def test_feat_mse_zero_when_projection_reproduces_teacher():
    m = FeatMSE(3, 5)
    s = torch.randn(10, 3)
    with torch.no_grad():
        teacher = m.proj(s)
    assert float(m(s, teacher).detach()) == pytest.approx(0, abs=1e-10)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="same classes"):
        kl_distill_loss(torch.randn(4, 3), torch.randn(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match="gathered"):
        cwd_loss(torch.randn(4, 3), torch.randn(5, 3), torch.tensor([4]))
    with pytest.raises(ConfigError, match="temperature"):
        kl_distill_loss(torch.randn(4, 3), torch.randn(4, 3), torch.zeros(4, dtype=torch.long), 0.0)
    with pytest.raises(ConfigError, match="offset"):
        cwd_loss(torch.randn(4, 3), torch.randn(4, 3), torch.tensor([2, 2, 4]))
    with pytest.raises(ConfigError, match="feature_dim"):
        FeatMSE(3, 5)(torch.randn(4, 4), torch.randn(4, 5))
