"""The loss of a run: its recipe (srkd.losses.recipes) built into a DistillLoss for the student
and teacher at hand, and the adapter to the training loop's loss function."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from srkd.data.collate import PointBatch
from srkd.distill.config import RunConfig
from srkd.errors import ConfigError
from srkd.losses.combined import TEACHER_TERMS
from srkd.losses.recipes import Recipe, recipe
from srkd.losses.relation import relation_target_stats
from srkd.models.base import ModelOutput
from srkd.types import IGNORE_INDEX


def run_recipe(cfg: RunConfig) -> Recipe:
    """The loss recipe of `cfg.method` for `cfg.dataset`, with the run's overrides."""
    return recipe(cfg.method, dataset=cfg.dataset, **cfg.loss_overrides)


def needs_teacher(rec: Recipe) -> bool:
    """Whether any term the recipe switches on compares the student with a teacher."""
    return bool(rec.weights.active().keys() & set(TEACHER_TERMS))


def build_loss(rec: Recipe, cfg: RunConfig, student_dim: int, teacher_dim: int | None,
               gather_fn: Callable[[torch.Tensor], torch.Tensor] | None) -> nn.Module:
    """The recipe's DistillLoss for a student of feature width `student_dim` (and a teacher of
    `teacher_dim`; None without a teacher). `gather_fn` gathers features across ranks (DDP).

    Raises ConfigError when the recipe needs a teacher the run does not have, or teacher
    features that --targets labels cannot give."""
    feature_terms = sorted(rec.weights.active().keys() & {"relation", "feat_mse"})
    if cfg.targets == "labels" and feature_terms:
        raise ConfigError(
            f"--targets labels gives one-hot logits and no features, but --method {cfg.method} "
            f"has {', '.join(feature_terms)}; use kd, cwd or ce with it (or set those weights to 0)"
        )
    if cfg.targets == "labels":
        return rec.build(student_dim=student_dim, teacher_dim=None, gather_fn=gather_fn)
    if needs_teacher(rec) and teacher_dim is None:
        raise ConfigError(
            f"--method {cfg.method} needs a teacher: pass --cache DIR (or --online-teacher CKPT), "
            "or use --method ce to train the model alone"
        )
    return rec.build(student_dim=student_dim, teacher_dim=teacher_dim, gather_fn=gather_fn)


def make_loss_fn(loss: nn.Module) -> Callable:
    """Adapt a DistillLoss (or its DDP wrapper) to the training loop's (output, batch, targets)
    signature. The returned terms hold each term's unweighted value plus its weighted
    contribution and share of the total (see LossWeights.contributions), for the run log.

    The relation term pairs the batch's SOURCE scenes (`PointBatch.sample_offset`): a Mix3D
    sample holds two scenes, which still make a cross-sample pair. The first step's row also
    holds the relation targets' diagnostics (`relation_diagnostics`)."""
    core = getattr(loss, "module", loss)
    weights = core.weights
    first = [True]

    def loss_fn(out: ModelOutput, batch: PointBatch, targets: ModelOutput | None):
        total, terms = loss(out, targets, batch.segment, batch.offset,
                            relation_offset=batch.sample_offset)
        row = {**terms, **weights.contributions(terms)}
        if first[0]:
            first[0] = False
            if weights.relation > 0 and targets is not None and targets.feature is not None:
                row.update(relation_diagnostics(core, batch, targets))
        return total, row

    return loss_fn


def relation_diagnostics(loss: nn.Module, batch: PointBatch, targets: ModelOutput) -> dict[str, float]:
    """srkd.losses.relation.relation_target_stats of the batch's teacher features, at the
    loss's tau and points per scene, with a class per point: its label, or the teacher's argmax
    where it has none. Drawn from a private generator: the run's random streams are untouched."""
    classes = batch.segment.clone()
    unlabelled = classes == IGNORE_INDEX
    if targets.logits is not None:
        classes[unlabelled] = targets.logits[unlabelled].argmax(dim=1)
    stats = relation_target_stats(targets.feature, classes, batch.sample_offset, loss.n_relation_points,
                                  loss.tau, torch.Generator().manual_seed(0))
    return {k: v for k, v in stats.items() if v == v}  # NaN (a one-point sample): not logged
