"""`srkd train-teacher`: train any registered model with CE + Lovasz (no teacher)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.commands import _training as T
from pipeline.commands._common import user_errors


def train_teacher(
    model: Annotated[Optional[str], typer.Option("--model", help="Model preset to train (see README).")] = None,
    dataset: T.Dataset = None,
    data_root: T.DataRoot = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Training split.")] = None,
    out: T.Out = None,
    epochs: T.Epochs = None,
    batch_size: T.BatchSize = None,
    lr: T.Lr = None,
    weight_decay: T.WeightDecay = None,
    grad_clip: T.GradClip = None,
    block_lr_scale: T.BlockLrScale = None,
    grid_size: T.GridSize = None,
    workers: T.Workers = None,
    seed: T.Seed = None,
    eval_every: T.EvalEvery = None,
    checkpoint_every: T.CheckpointEvery = None,
    max_points: T.MaxPoints = None,
    mix3d: T.Mix3d = None,
    augment: T.Augment = None,
    amp: T.Amp = None,
    device: T.Device = None,
    val_split: T.ValSplit = None,
    val_max_scenes: T.ValMaxScenes = None,
    repeats: T.Repeats = None,
    color_norm: T.ColorNormOption = None,
    tensorboard: T.Tensorboard = None,
    resume: T.Resume = False,
) -> None:
    """Train a model on ground truth alone (CE + Lovasz), e.g. a teacher for the demo."""
    with user_errors():
        from pipeline.params import command_defaults
        from srkd.distill.config import RunConfig

        d = command_defaults("teacher")
        cli = dict(locals())
        fields = {**T.COMMON_FIELDS, "model": ("model", "ptv3_base"), "split": ("train_split", "train"),
                  "out": ("out", "runs/teacher")}
        values = T.config_values("teacher", cli, fields)
        root = data_root or d.get("data_root") or command_defaults("data").get("root")
        cfg = RunConfig(
            **values, method="ce", data_root=Path(root) if root else None, resume=resume,
            optim=T.optim_config("teacher", lr, weight_decay, grad_clip, block_lr_scale),
        )
        T.run_with_progress(cfg, "train-teacher")
