"""CE and Lovasz-softmax: brute-force Lovasz, ignore handling, bad inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from srkd.errors import ConfigError
from srkd.losses import cross_entropy_loss, lovasz_softmax_loss
from tests.losses.reference import jaccard_loss_of_set, softmax


def brute_force_lovasz(logits: np.ndarray, segment: np.ndarray) -> float:
    """Lovasz extension of a submodular set function = max over ALL orderings of the points of
    sum_k m_(k) (Delta(S_k) - Delta(S_{k-1})) (the greedy vertices of its base polytope)."""
    valid = [p for p in range(len(segment)) if segment[p] != -1]
    per_class = []
    for c in sorted({int(segment[p]) for p in valid}):
        fg = {p for p in valid if segment[p] == c}
        err = {p: abs((p in fg) - softmax(logits[p])[c]) for p in valid}
        best = -np.inf
        for order in itertools.permutations(valid):
            value, prefix = 0.0, set()
            for p in order:
                before = jaccard_loss_of_set(prefix, fg)
                prefix.add(p)
                value += err[p] * (jaccard_loss_of_set(prefix, fg) - before)
            best = max(best, value)
        per_class.append(best)
    return sum(per_class) / len(per_class)


@pytest.mark.parametrize("seed", range(4))
def test_lovasz_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(7, 3)) * 2
    segment = rng.integers(0, 3, 7)
    segment[rng.integers(0, 7)] = -1  # one ignored point: 6 valid -> 720 orderings per class
    got = lovasz_softmax_loss(torch.tensor(logits, dtype=torch.float64), torch.tensor(segment))
    assert float(got) == pytest.approx(brute_force_lovasz(logits, segment), rel=1e-9)


def test_lovasz_perfect_and_gradient():
    segment = torch.tensor([0, 1, 2, -1, 1])
    perfect = torch.nn.functional.one_hot(segment.clamp(min=0), 3).double() * 1e3
    assert float(lovasz_softmax_loss(perfect, segment)) == pytest.approx(0.0, abs=1e-9)
    logits = torch.zeros(5, 3, requires_grad=True)
    lovasz_softmax_loss(logits, segment).backward()
    assert logits.grad[3].abs().sum() == 0  # the ignored point gets no gradient
    assert logits.grad.abs().sum() > 0


def test_ce_ignores_minus_one():
    logits = torch.randn(6, 4)
    segment = torch.tensor([0, -1, 3, 2, -1, 1])
    keep = segment != -1
    want = torch.nn.functional.cross_entropy(logits[keep], segment[keep])
    assert torch.allclose(cross_entropy_loss(logits, segment), want)


@pytest.mark.parametrize("fn", [cross_entropy_loss, lovasz_softmax_loss])
def test_all_ignored_is_zero_with_graph(fn):
    logits = torch.randn(4, 3, requires_grad=True)
    loss = fn(logits, torch.full((4,), -1))
    assert float(loss.detach()) == 0.0
    loss.backward()  # must not fail; no gradient signal
    assert logits.grad.abs().sum() == 0


@pytest.mark.parametrize("fn", [cross_entropy_loss, lovasz_softmax_loss])
def test_bad_labels_and_shapes(fn):
    with pytest.raises(ConfigError, match="label 5"):
        fn(torch.randn(3, 4), torch.tensor([0, 5, 1]))
    with pytest.raises(ConfigError, match="shape"):
        fn(torch.randn(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match=r"\(N, K\)"):
        fn(torch.randn(3), torch.tensor([0, 1, 2]))
