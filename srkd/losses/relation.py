"""Cross-sample affinity relation alignment (the SRKD relation loss).

SRKD, "Structure- and Relation-aware Knowledge Distillation" (arXiv 2506.17290, 2025):
"affinity matrix relation alignment" over a "cross-sample mini-batch". Related: CIRKD, Yang
et al., "Cross-image relational knowledge distillation for semantic segmentation", CVPR 2022.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from srkd.errors import ConfigError
from srkd.losses._checks import as_float, check_temperature, split_sizes

GatherFn = Callable[[list[torch.Tensor]], list[torch.Tensor]]
"""Local per-sample feature list -> global list (every rank's samples, in rank order).
Identity on one process; see srkd.losses.distributed.all_gather_with_grad for DDP."""


def _identity(feats: list[torch.Tensor]) -> list[torch.Tensor]:
    return feats


def _pairs(x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """The column blocks of (n_i, M) per sample j: one (n_i, B, n) view for equal sizes (one
    vectorised call per operation), else B views (n_i, n_j)."""
    if len(set(sizes)) == 1:
        return [x.view(x.shape[0], len(sizes), sizes[0])]
    return list(torch.split(x, sizes, dim=1))


def _softmax_and_lse(logits: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair row softmax p of (n_i, M) logits (each row of each sample j's columns sums to 1)
    and every (row, pair) log-sum-exp, float (n_i, B).

    One exponential per entry: lse = max - log(p at the max), since p_max = exp(max - lse)
    lies in [1/n_j, 1] and its log is exact to rounding."""
    probs, lses = [], []
    for block, p in ((b, torch.softmax(b, dim=-1)) for b in _pairs(logits, sizes)):
        top, where = block.max(dim=-1, keepdim=True)
        lses.append((top - p.gather(-1, where).log()).reshape(logits.shape[0], -1))
        probs.append(p)
    lse = lses[0] if len(lses) == 1 else torch.cat(lses, dim=1)
    if len(probs) == 1:
        return probs[0].view_as(logits), lse
    return torch.cat(probs, dim=1), lse


def _block_terms(
    s_rows: torch.Tensor, s_all: torch.Tensor, t_rows: torch.Tensor, t_all: torch.Tensor,
    sizes: list[int], tau: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Some rows of one sample's block: (kl, g) with kl = the sum over these rows and every pair j
    of KL(q || r), and g = r - q, float (rows, M); r, q are the student and teacher per-pair row
    softmaxes. Inputs L2-normalised, float32 (or float64).

    With A = s_rows s_all^T / tau, B = t_rows t_all^T / tau and per (row, pair) log-sum-exps,
    KL(q || r) = sum q (B - A) - lse(B) + lse(A) (because log q = B - lse(B), log r = A - lse(A)
    and q sums to 1), so no log-probability matrix is formed: two exponentials per entry."""
    a = (s_rows / tau) @ s_all.T
    b = (t_rows / tau) @ t_all.T
    r, lse_a = _softmax_and_lse(a, sizes)
    q, lse_b = _softmax_and_lse(b, sizes)
    cross = torch.dot(q.reshape(-1), b.sub_(a).reshape(-1))  # sum q (B - A)
    # lse(A) - lse(B) per (row, pair) before summing: each total alone is ~rows x B x log n,
    # where float32 rounding would swamp a small KL
    return cross + (lse_a - lse_b).sum(), r.sub_(q)


ROW_CHUNK = 128
"""Rows of a sample's block processed together on CPU: a (128, M) float32 block is 2 MB at
M = 4096, so the block's passes (affinities, softmaxes, difference, gradient products) stay in
the CPU's caches instead of streaming (n_i, M) matrices through memory (bench/loss_terms.py;
docs/benchmarks.md). On CUDA a sample's whole block is one chunk."""


class _FusedRelation(torch.autograd.Function):
    """sum_i loss_i over the row blocks of s_all, with its gradient computed in the same pass.

    With A = s_i s_all^T / tau and per-pair row softmaxes r = softmax(A), q (teacher; every
    (row, pair) of q sums to 1): d loss_i / d A = (r - q) / n_i, so
        d/d s_i   += (r - q) s_all / (n_i tau),    d/d s_all += (r - q)^T s_i / (n_i tau).
    The loss is a scalar, so the whole gradient is known after the forward pass: each block is
    built once, ROW_CHUNK rows at a time (no activation checkpoint recomputation, teacher side
    computed once), and backward only scales the stored (M, Ds) gradient by the incoming scalar.
    """

    @staticmethod
    def forward(ctx, s_all: torch.Tensor, t_all: torch.Tensor, sizes: list[int], tau: float):
        want_grad = ctx.needs_input_grad[0]
        grad = torch.zeros_like(s_all) if want_grad else None
        total = s_all.new_zeros(())
        start = 0
        for n_i in sizes:
            kl_i = s_all.new_zeros(())
            chunk = ROW_CHUNK if s_all.device.type == "cpu" else n_i  # a GPU wants whole blocks
            for lo in range(start, start + n_i, chunk):
                hi = min(lo + chunk, start + n_i)
                kl, g = _block_terms(s_all[lo:hi], s_all, t_all[lo:hi], t_all, sizes, tau)
                kl_i = kl_i + kl
                if grad is not None:  # g = d (n_i loss_i) / d A
                    scale = 1.0 / (n_i * tau)
                    grad[lo:hi].addmm_(g, s_all, alpha=scale)
                    grad.addmm_(g.T, s_all[lo:hi], alpha=scale)
            # every row of every pair j sums to a KL; /n_i averages over rows, the sum runs over j
            total = total + kl_i / n_i
            start += n_i
        ctx.save_for_backward(grad if grad is not None else s_all.new_zeros(()))
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None


class _NoGrad:
    """Stand-in for the autograd context when no gradient is wanted."""

    needs_input_grad = (False, False, False, False)

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        pass


def relation_loss(
    t_feats: Sequence[torch.Tensor], s_feats: Sequence[torch.Tensor], tau: float = 2.0
) -> torch.Tensor:
    """Affinity relation KL over every ordered pair of samples (i, j), i = j included.

    With F_i the L2-normalised features of sample i's n_i points (rows), A_ij = F_i F_j^T
    (n_i x n_j cosine affinities), and row distributions q = softmax(A^t_ij[r] / tau) (teacher),
    r = softmax(A^s_ij[r] / tau) (student), each over the n_j columns of sample j:

        Relation_tau = 1/B^2 * sum_{i,j} 1/n_i * sum_r KL(q_ijr || r_ijr)

    Affinities are n x n, so teacher and student widths may differ. The teacher is detached.
    Memory is O(n_i * sum_j n_j) per row block: the gradient is formed block by block in the
    forward pass (see _FusedRelation), so no block stays alive; no N x N over all points.

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
    s_all = torch.cat([F.normalize(as_float(s), dim=1) for s in s_feats])
    t_all = torch.cat([F.normalize(as_float(t.detach()), dim=1) for t in t_feats])
    # float32 affinities even under AMP: fp16 cosines carry ~1e-3 error, comparable to the
    # differences the loss is meant to see
    with torch.autocast(device_type=s_all.device.type, enabled=False):
        if torch.is_grad_enabled() and s_all.requires_grad:
            total = _FusedRelation.apply(s_all, t_all, sizes, float(tau))
        else:
            total = _FusedRelation.forward(_NoGrad(), s_all, t_all, sizes, float(tau))
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


@torch.no_grad()
def relation_target_stats(
    teacher_feature: torch.Tensor, classes: torch.Tensor, offset: torch.Tensor, n_points: int,
    tau: float, generator: torch.Generator | None = None,
) -> dict[str, float]:
    """How much structure the relation term's teacher targets carry (a diagnostic, no loss).

    On up to `n_points` points per sample (drawn with `generator`), for every ordered pair of
    samples (i, j) and every row r of the teacher's q_ij = softmax(A^t_ij[r] / tau):
    - `relation_target_entropy`: H(q) / log(n_j), averaged over rows and pairs: 1.0 is a
      uniform target (nothing to learn), lower is sharper;
    - `relation_same_class_mass`: the mass q puts on columns of the row's class;
    - `relation_same_class_chance`: the fraction of columns of the row's class (what a uniform
      q would put there). Mass well above chance means the target encodes class structure.

    Args:
        teacher_feature: float (N, Dt). classes: int64 (N,) a class per point (labels, or the
        teacher's argmax where there is none). offset: int64 (S,) sample ends.
    Returns:
        the three floats (NaN when a sample has a single point, where entropy is undefined).
    """
    indices = sample_relation_indices(offset.cpu(), n_points, generator)
    feats = [F.normalize(as_float(teacher_feature[idx.to(teacher_feature.device)]), dim=1) for idx in indices]
    cls = [classes[idx.to(classes.device)] for idx in indices]
    entropy, mass, chance, rows = 0.0, 0.0, 0.0, 0
    for f_i, c_i in zip(feats, cls):
        for f_j, c_j in zip(feats, cls):
            if f_j.shape[0] < 2:
                return {k: float("nan") for k in ("relation_target_entropy", "relation_same_class_mass",
                                                   "relation_same_class_chance")}
            q = torch.softmax((f_i @ f_j.T) / tau, dim=1)
            same = (c_i[:, None] == c_j[None, :]).to(q.dtype)
            h = -(q * q.clamp_min(1e-30).log()).sum(dim=1) / math.log(f_j.shape[0])
            entropy += float(h.sum())
            mass += float((q * same).sum())
            chance += float(same.mean(dim=1).sum())
            rows += q.shape[0]
    return {"relation_target_entropy": entropy / rows, "relation_same_class_mass": mass / rows,
            "relation_same_class_chance": chance / rows}
