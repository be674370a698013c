"""`srkd distill`: train a student against the cached teacher (or an online one)."""

from __future__ import annotations

from pipeline.commands import options as O
from pipeline.commands._common import user_errors


def distill(
    cache: O.DistillCache = None,
    out: O.TrainOut = None,
    student: O.Student = None,
    method: O.MethodOption = None,
    targets: O.TargetsOption = None,
    weight: O.Weight = None,
    online_teacher: O.OnlineTeacher = None,
    teacher_model: O.TeacherModel = None,
    teacher_color_norm: O.TeacherColorNorm = None,
    data_root: O.TrainDataRoot = None,
    dataset: O.Dataset = None,
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
    """Distil a small student from the teacher cache (SRKD losses by default)."""
    cli = dict(locals())
    with user_errors():
        from dataclasses import replace

        from pipeline.commands._training import run_with_progress
        from pipeline.params import parse_overrides, resolve
        from srkd.distill.config import DistillConfig
        from srkd.errors import ConfigError

        config = resolve(DistillConfig, "distill", {**cli, "weight": None})
        if cache is not None or online_teacher is not None:  # the CLI picks the teacher's side
            config = replace(config, cache=cache, online_teacher=online_teacher)
        elif config.online_teacher is not None:  # stages.yaml's online teacher wins over its cache
            config = replace(config, cache=None)
        if config.cache is None and config.online_teacher is None and config.method != "ce":
            raise ConfigError("srkd distill needs --cache DIR (from `srkd cache-teacher`) or "
                              "--online-teacher CKPT; or pass --method ce to train alone")
        config = replace(config, weight={**(config.weight or {}), **parse_overrides(weight or [])})
        run_with_progress(config.run_config(), "distill")
