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
from srkd.models.base import ModelOutput


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

    Raises ConfigError when the recipe needs a teacher the run does not have."""
    if needs_teacher(rec) and teacher_dim is None:
        raise ConfigError(
            f"--method {cfg.method} needs a teacher: pass --cache DIR (or --online-teacher CKPT), "
            "or use --method ce to train the model alone"
        )
    return rec.build(student_dim=student_dim, teacher_dim=teacher_dim, gather_fn=gather_fn)


def make_loss_fn(loss: nn.Module) -> Callable:
    """Adapt a DistillLoss (or its DDP wrapper) to the training loop's (output, batch, targets)
    signature. The returned terms hold each term's unweighted value plus its weighted
    contribution and share of the total (see LossWeights.contributions), for the run log."""
    weights = getattr(loss, "module", loss).weights

    def loss_fn(out: ModelOutput, batch: PointBatch, targets: ModelOutput | None):
        total, terms = loss(out, targets, batch.segment, batch.offset)
        return total, {**terms, **weights.contributions(terms)}

    return loss_fn
