"""Cross-sample affinity relation alignment (the SRKD relation loss).

SRKD, "Structure- and Relation-aware Knowledge Distillation" (arXiv 2506.17290, 2025):
"affinity matrix relation alignment" over a "cross-sample mini-batch". Related: CIRKD, Yang
et al., "Cross-image relational knowledge distillation for semantic segmentation", CVPR 2022.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from srkd.errors import ConfigError
from srkd.losses._checks import as_float, check_temperature, split_sizes

GatherFn = Callable[[list[torch.Tensor]], list[torch.Tensor]]
"""Local per-sample feature list -> global list (every rank's samples, in rank order).
Identity on one process; see srkd.losses.distributed.all_gather_with_grad for DDP."""


def _identity(feats: list[torch.Tensor]) -> list[torch.Tensor]:
    return feats


def _pair_log_softmax(affinity: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Row log-softmax of (n_i, M) taken separately over the columns of each sample j."""
    if len(set(sizes)) == 1:
        # equal sample sizes: one vectorised call over (n_i, B, n)
        rows = affinity.shape[0]
        return torch.log_softmax(affinity.view(rows, len(sizes), sizes[0]), dim=2).view(rows, -1)
    return torch.cat([torch.log_softmax(a, dim=1) for a in torch.split(affinity, sizes, dim=1)], 1)


def _row_block(
    s_i: torch.Tensor,
    s_all: torch.Tensor,
    t_i: torch.Tensor,
    t_all: torch.Tensor,
    sizes: list[int],
    tau: float,
) -> torch.Tensor:
    """sum_j mean_rows KL(teacher row || student row) for sample i against every sample j.

    s_i (n_i, Ds), s_all (M, Ds), t_i (n_i, Dt), t_all (M, Dt): L2-normalised, float32.
    Peak memory: a few (n_i, M) tensors, M = sum_j n_j.
    """
    # float32 affinities even under AMP: fp16 cosines carry ~1e-3 error, comparable to the
    # differences the loss is meant to see
    with torch.autocast(device_type=s_i.device.type, enabled=False):
        log_r = _pair_log_softmax(s_i @ s_all.T / tau, sizes)
        with torch.no_grad():
            log_q = _pair_log_softmax(t_i @ t_all.T / tau, sizes)
            q = log_q.exp()
        # every row of every pair j sums to a KL; /n_i averages over rows, the sum runs over j
        return (q * (log_q - log_r)).sum() / s_i.shape[0]


def relation_loss(
    t_feats: Sequence[torch.Tensor], s_feats: Sequence[torch.Tensor], tau: float = 2.0
) -> torch.Tensor:
    """Affinity relation KL over every ordered pair of samples (i, j), i = j included.

    With F_i the L2-normalised features of sample i's n_i points (rows), A_ij = F_i F_j^T
    (n_i x n_j cosine affinities), and row distributions q = softmax(A^t_ij[r] / tau) (teacher),
    r = softmax(A^s_ij[r] / tau) (student), each over the n_j columns of sample j:

        Relation_tau = 1/B^2 * sum_{i,j} 1/n_i * sum_r KL(q_ijr || r_ijr)

    Affinities are n x n, so teacher and student widths may differ. The teacher is detached.
    Memory is O(n_i * sum_j n_j) per row block: each block is recomputed in backward
    (activation checkpointing) instead of keeping all B^2 blocks alive; no N x N over all points.

    Args:
        t_feats: B float tensors (n_i, Dt), the teacher features at the sampled points.
        s_feats: B float tensors (n_i, Ds), the student features at the SAME points, same order.
        tau:     affinity temperature > 0 (2 on ScanNet, 1 on nuScenes).
    Returns:
        float32 scalar >= 0. With one sample only the self pair exists (no cross-sample term).
    """
    check_temperature("tau", tau)
    if len(t_feats) != len(s_feats) or len(s_feats) == 0:
        raise ConfigError(
            f"relation loss needs the same number (>= 1) of teacher and student samples, got "
            f"{len(t_feats)} teacher and {len(s_feats)} student"
        )
    for i, (t, s) in enumerate(zip(t_feats, s_feats)):
        if t.ndim != 2 or s.ndim != 2 or t.shape[0] != s.shape[0] or t.shape[0] == 0:
            raise ConfigError(
                f"relation loss: sample {i} has teacher features {tuple(t.shape)} and student "
                f"features {tuple(s.shape)}; both must be (n_i, D) with the same n_i >= 1"
            )
    sizes = [s.shape[0] for s in s_feats]
    s_norm = [F.normalize(as_float(s), dim=1) for s in s_feats]
    t_norm = [F.normalize(as_float(t.detach()), dim=1) for t in t_feats]
    s_all, t_all = torch.cat(s_norm), torch.cat(t_norm)
    recompute = torch.is_grad_enabled() and s_all.requires_grad
    total = s_all.new_zeros(())
    for s_i, t_i in zip(s_norm, t_norm):
        if recompute:
            block = checkpoint(
                _row_block, s_i, s_all, t_i, t_all, sizes, float(tau), use_reentrant=False
            )
        else:
            block = _row_block(s_i, s_all, t_i, t_all, sizes, float(tau))
        total = total + block
    return total / (len(sizes) ** 2)


def sample_relation_indices(
    offset: torch.Tensor, n_points: int, generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """Draw up to `n_points` distinct points per sample, uniformly without replacement.

    Args:
        offset:    int64 (B,) cumulative end index of each sample.
        n_points:  n >= 1; a sample with fewer points uses all of them.
        generator: CPU torch.Generator (None = torch's global RNG, which the training loop
                   seeds and checkpoints).
    Returns:
        B int64 tensors (n_i,) of sorted GLOBAL point indices (into the batch's N points), on
        `offset`'s device.
    """
    if int(n_points) < 1:
        raise ConfigError(f"n_relation_points must be >= 1, got {n_points}")
    ends = offset.tolist()
    sizes = split_sizes(offset, int(ends[-1]) if ends else 0)
    out = []
    for start, size in zip([0, *ends[:-1]], sizes):
        if size <= n_points:
            local = torch.arange(size)
        else:
            local = torch.randperm(size, generator=generator)[:n_points].sort().values
        out.append((local + int(start)).to(offset.device))
    return out


def sampled_relation_loss(
    teacher_feature: torch.Tensor | Sequence[torch.Tensor],
    student_feature: torch.Tensor,
    offset: torch.Tensor,
    n_points: int,
    tau: float = 2.0,
    *,
    indices: Sequence[torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    gather_fn: GatherFn | None = None,
) -> torch.Tensor:
    """`relation_loss` on n sampled points per sample, shared by teacher and student.

    Args:
        teacher_feature: float (N, Dt) for every point of the batch, or B tensors (n_i, Dt)
                         already taken at `indices` (e.g. read from the teacher cache).
        student_feature: float (N, Ds).
        offset:          int64 (B,) cumulative end index of each sample.
        n_points:        points per sample when sampling here.
        tau:             affinity temperature.
        indices:         B int64 tensors of global point indices; None = sample them once here.
        generator:       CPU torch.Generator for the sampling (None = global RNG).
        gather_fn:       local per-sample list -> global list, applied to both sides (DDP);
                         default identity.
    Returns:
        float32 scalar.
    """
    split_sizes(offset, student_feature.shape[0])
    precomputed = not torch.is_tensor(teacher_feature)
    if precomputed and indices is None:
        raise ConfigError(
            "relation loss: teacher features were given per sample (already sampled) but no "
            "indices; pass the indices they were taken at so the student uses the same points"
        )
    if indices is None:
        indices = sample_relation_indices(offset, n_points, generator)
    if len(indices) != len(offset):
        raise ConfigError(f"relation loss: {len(indices)} index tensors for {len(offset)} samples")
    s_feats = [student_feature[idx] for idx in indices]
    if precomputed:
        t_feats = list(teacher_feature)
    else:
        if teacher_feature.shape[0] != student_feature.shape[0]:
            raise ConfigError(
                f"relation loss: teacher features cover {teacher_feature.shape[0]} points, the "
                f"student {student_feature.shape[0]}"
            )
        t_feats = [teacher_feature[idx] for idx in indices]
    gather = gather_fn or _identity
    return relation_loss(gather(t_feats), gather(s_feats), tau)
