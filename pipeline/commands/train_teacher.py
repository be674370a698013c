"""`srkd train-teacher`: train any registered model with CE + Lovasz (no teacher)."""

from __future__ import annotations

from pipeline.commands import options as O
from pipeline.commands._common import user_errors


def train_teacher(
    model: O.Model = None,
    dataset: O.Dataset = None,
    data_root: O.TrainDataRoot = None,
    split: O.TrainSplit = None,
    out: O.TrainOut = None,
    epochs: O.Epochs = None,
    batch_size: O.BatchSize = None,
    lr: O.Lr = None,
    weight_decay: O.WeightDecay = None,
    grad_clip: O.GradClip = None,
    block_lr_scale: O.BlockLrScale = None,
    grid_size: O.GridSize = None,
    workers: O.TrainWorkers = None,
    seed: O.TrainSeed = None,
    eval_every: O.EvalEvery = None,
    checkpoint_every: O.CheckpointEvery = None,
    max_points: O.MaxPoints = None,
    mix3d: O.Mix3d = None,
    augment: O.Augment = None,
    amp: O.Amp = None,
    device: O.Device = None,
    val_split: O.ValSplit = None,
    val_max_scenes: O.ValMaxScenes = None,
    repeats: O.Repeats = None,
    color_norm: O.ModelColorNorm = None,
    tensorboard: O.Tensorboard = None,
    resume: O.Resume = None,
) -> None:
    """Train a model on ground truth alone (CE + Lovasz), e.g. a teacher for the demo."""
    cli = dict(locals())
    with user_errors():
        from dataclasses import replace

        from pipeline.commands._training import run_with_progress
        from pipeline.params import command_defaults, resolve
        from srkd.distill.config import TeacherConfig

        config = resolve(TeacherConfig, "teacher", cli)
        if config.data_root is None:  # the pipeline's dataset, as generate-synthetic writes it
            root = command_defaults("data").get("root")
            config = replace(config, data_root=root)
        run_with_progress(config.run_config(), "train-teacher")
