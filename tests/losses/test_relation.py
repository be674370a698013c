"""The cross-sample relation loss: invariances, cross pairs, sampling, memory, gradients."""

from __future__ import annotations

import time

import pytest
import torch

from srkd.errors import ConfigError
from srkd.losses import relation_loss, sample_relation_indices, sampled_relation_loss
from tests.losses.reference import ref_relation


def _feats(sizes, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, dim, generator=g, dtype=torch.float64) for n in sizes]


def _orthogonal(d_in, d_out, seed):
    """A (d_in, d_out) matrix with orthonormal rows (d_out >= d_in): x -> x Q keeps dot products."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d_out, d_out, generator=g, dtype=torch.float64))
    return q[:d_in]


def test_zero_when_student_equals_teacher():
    t = _feats([9, 7, 11], 6)
    assert float(relation_loss(t, [x.clone() for x in t], 2.0)) == pytest.approx(0, abs=1e-12)


def test_positive_for_unrelated_features_and_matches_loops():
    t, s = _feats([9, 7, 11], 6), _feats([9, 7, 11], 4, seed=1)
    got = float(relation_loss(t, s, 2.0))
    assert got > 1e-3
    want = ref_relation([x.numpy() for x in t], [x.numpy() for x in s], 2.0)
    assert got == pytest.approx(want, rel=1e-10)


def test_invariant_to_feature_scale():
    t, s = _feats([9, 7], 6), _feats([9, 7], 4, seed=1)
    base = relation_loss(t, s, 2.0)
    assert torch.allclose(relation_loss(t, [3.0 * x for x in s], 2.0), base, rtol=1e-12)
    assert torch.allclose(relation_loss([0.1 * x for x in t], s, 2.0), base, rtol=1e-12)


def test_invariant_to_student_width():
    # student = teacher mapped isometrically into a wider space: affinities are unchanged
    t = _feats([10, 8, 12], 6)
    q = _orthogonal(6, 48, seed=3)
    assert float(relation_loss(t, [x @ q for x in t], 2.0)) == pytest.approx(0, abs=1e-10)


def test_cross_sample_pairs_are_used():
    # Each student sample is its teacher sample under a DIFFERENT orthogonal map: every self
    # affinity F_i F_i^T agrees, so a loss over i = j pairs only would be exactly 0; the
    # cross affinities F_i Q_i Q_j^T F_j^T differ, so the full loss must be > 0.
    t = _feats([10, 12], 5)
    s = [t[0] @ _orthogonal(5, 5, seed=10), t[1] @ _orthogonal(5, 5, seed=11)]
    for i in range(2):
        assert float(relation_loss([t[i]], [s[i]], 2.0)) == pytest.approx(0, abs=1e-10)
    assert float(relation_loss(t, s, 2.0)) > 1e-3


def test_softmax_is_per_pair_not_over_the_batch():
    # unequal sizes go through the split path, equal sizes through the reshaped path
    for sizes in ([6, 9, 4], [7, 7, 7]):
        t, s = _feats(sizes, 5, seed=4), _feats(sizes, 3, seed=5)
        want = ref_relation([x.numpy() for x in t], [x.numpy() for x in s], 1.5)
        assert float(relation_loss(t, s, 1.5)) == pytest.approx(want, rel=1e-10)


def test_gradient_only_to_student_and_equal_with_and_without_recompute():
    t = [x.requires_grad_() for x in _feats([8, 6], 6)]
    s = [x.requires_grad_() for x in _feats([8, 6], 4, seed=1)]
    relation_loss(t, s, 2.0).backward()
    assert all(x.grad is None for x in t)
    grads = [x.grad.clone() for x in s]
    assert all(g.abs().sum() > 0 for g in grads)
    # gradient through activation checkpointing == gradient of a naive autograd implementation
    s2 = [x.detach().clone().requires_grad_() for x in s]
    naive = 0
    for i in range(2):
        for j in range(2):
            ti, tj = (torch.nn.functional.normalize(x.detach(), dim=1) for x in (t[i], t[j]))
            si, sj = (torch.nn.functional.normalize(x, dim=1) for x in (s2[i], s2[j]))
            log_q = torch.log_softmax(ti @ tj.T / 2, 1)
            log_r = torch.log_softmax(si @ sj.T / 2, 1)
            naive = naive + (log_q.exp() * (log_q - log_r)).sum(1).mean() / 4
    naive.backward()
    for g, x in zip(grads, s2):
        assert torch.allclose(g, x.grad, rtol=1e-9, atol=1e-12)


def test_sampling_shares_indices_and_respects_samples():
    offset = torch.tensor([5, 105, 1105])
    idx = sample_relation_indices(offset, 50, torch.Generator().manual_seed(0))
    assert [len(i) for i in idx] == [5, 50, 50]  # a short sample uses all its points
    assert idx[0].tolist() == list(range(5))
    for i, (lo, hi) in zip(idx, [(0, 5), (5, 105), (105, 1105)]):
        assert i.min() >= lo and i.max() < hi and len(set(i.tolist())) == len(i)
    again = sample_relation_indices(offset, 50, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(idx, again))


def test_large_samples_do_not_build_n_by_n():
    # 2 samples of 200k points each: an N x N float matrix would need 640 GB
    n_per, n = 200_000, 256
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2 * n_per, 64, generator=g)
    student = torch.randn(2 * n_per, 32, generator=g, requires_grad=True)
    offset = torch.tensor([n_per, 2 * n_per])
    start = time.perf_counter()
    loss = sampled_relation_loss(teacher, student, offset, n, 2.0, generator=g)
    loss.backward()
    assert time.perf_counter() - start < 30  # generous: only a sanity bound, not a benchmark
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    assert int((student.grad.abs().sum(1) > 0).sum()) == 2 * n  # only sampled points get grad


def test_gather_fn_is_applied_to_both_sides():
    seen = []

    def gather(feats):
        seen.append(len(feats))
        return feats

    t, s = torch.randn(20, 4), torch.randn(20, 3)
    sampled_relation_loss(t, s, torch.tensor([8, 20]), 5, gather_fn=gather)
    assert seen == [2, 2]


def test_bad_inputs():
    with pytest.raises(ConfigError, match="same n_i"):
        relation_loss([torch.randn(3, 4)], [torch.randn(4, 4)])
    with pytest.raises(ConfigError, match="number"):
        relation_loss([torch.randn(3, 4)], [])
    with pytest.raises(ConfigError, match="tau"):
        relation_loss([torch.randn(3, 4)], [torch.randn(3, 4)], tau=-1.0)
    with pytest.raises(ConfigError, match="indices"):
        sampled_relation_loss([torch.randn(3, 4)], torch.randn(3, 4), torch.tensor([3]), 3)
    with pytest.raises(ConfigError, match=">= 1"):
        sample_relation_indices(torch.tensor([3]), 0)
    with pytest.raises(ConfigError, match="ends at"):
        sampled_relation_loss(torch.randn(5, 4), torch.randn(5, 4), torch.tensor([3]), 3)


@pytest.mark.parametrize("chunk", [128, 10_000])  # CPU row chunks; one whole block (the CUDA path)
def test_float32_keeps_a_small_loss_of_large_blocks(monkeypatch, chunk):
    # near convergence the loss is ~1e-6 while every (row, pair) log-sum-exp is ~log n: the
    # float32 result must still be the float64 one, not the rounding of two large totals
    import srkd.losses.relation as rel

    monkeypatch.setattr(rel, "ROW_CHUNK", chunk)
    t = [x.float() for x in _feats([512, 512, 512, 384], 32, seed=7)]
    g = torch.Generator().manual_seed(8)
    s = [x + 0.02 * torch.randn(x.shape, generator=g) for x in t]
    want = float(relation_loss([x.double() for x in t], [x.double() for x in s], 2.0))
    got = float(relation_loss(t, s, 2.0))
    assert 0 < want < 1e-4
    assert got == pytest.approx(want, rel=0.02)
