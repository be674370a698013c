"""`srkd distill`: train a student against the cached teacher (or an online one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.commands import _training as T
from pipeline.commands._common import ColorNorm, Method, Targets, user_errors


def distill(
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Teacher cache from `srkd cache-teacher`.")] = None,
    out: T.Out = None,
    student: Annotated[Optional[str], typer.Option("--student", help="Student model preset (see README).")] = None,
    method: Annotated[Optional[Method], typer.Option("--method", help="Loss recipe: srkd (calibrated relation weight), srkd-release (the release's weights), kd, mse, cwd, relation or ce (alone).")] = None,
    targets: Annotated[Optional[Targets], typer.Option("--targets", help="view (replay cached views), canonical (view 0, the student's own augmentation) or ensemble (the mean over views). (default: view)")] = None,
    weight: Annotated[Optional[list[str]], typer.Option("--weight", help="Override a loss setting: name=value (ce, lovasz, kl, relation, feat_mse, cwd, temperature, tau, n_relation_points); repeatable.")] = None,
    online_teacher: Annotated[Optional[Path], typer.Option("--online-teacher", help="Run this teacher checkpoint in every step instead of reading a cache.")] = None,
    teacher_model: Annotated[Optional[str], typer.Option("--teacher-model", help="Preset of a Pointcept --online-teacher checkpoint.")] = None,
    teacher_color_norm: Annotated[Optional[ColorNorm], typer.Option("--teacher-color-norm", help="Colour normalisation a Pointcept --online-teacher was trained with (an srkd checkpoint records its own). (default: pointcept)")] = None,
    data_root: T.DataRoot = None,
    dataset: T.Dataset = None,
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
    """Distil a small student from the teacher cache (SRKD losses by default)."""
    with user_errors():
        from pipeline.params import command_defaults, parse_overrides
        from srkd.distill.config import RunConfig
        from srkd.errors import ConfigError

        d = command_defaults("distill")
        cli = dict(locals())
        fields = {**T.COMMON_FIELDS, "student": ("model", "ptv3_half"), "method": ("method", "srkd"),
                  "targets": ("targets", "view"), "out": ("out", "runs/student"),
                  "teacher_model": ("teacher_model", None),
                  "teacher_color_norm": ("teacher_color_norm", None),
                  "dataset": ("dataset", None)}  # None: the cache's dataset (scannet without one)
        values = T.config_values("distill", cli, fields)
        if cache is None and online_teacher is None:  # stages.yaml's teacher, unless the CLI gave one
            online_teacher = Path(d["online_teacher"]) if d.get("online_teacher") else None
        if cache is None and online_teacher is None:
            cache = d.get("cache")
        if cache is None and online_teacher is None and values["method"] != "ce":
            raise ConfigError("srkd distill needs --cache DIR (from `srkd cache-teacher`) or "
                              "--online-teacher CKPT; or pass --method ce to train alone")
        overrides = dict(d.get("weights") or {})
        overrides.update(parse_overrides(weight or []))
        cfg = RunConfig(
            **values, cache=Path(cache) if cache else None, online_teacher=online_teacher,
            data_root=data_root or (Path(d["data_root"]) if d.get("data_root") else None),
            loss_overrides=overrides, resume=resume,
            optim=T.optim_config("distill", lr, weight_decay, grad_clip, block_lr_scale),
        )
        T.run_with_progress(cfg, "distill")
