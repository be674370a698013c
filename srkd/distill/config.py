"""The settings of the two training commands (`srkd distill`, `srkd train-teacher`).

`DistillConfig` and `TeacherConfig` hold one field per option, named as the option
(`--batch-size` -> `batch_size`), with the command's defaults; their `run_config()` builds the
`RunConfig` (srkd.run_config: the run record a checkpoint keeps; re-exported here with
`OptimConfig`). Every default lives once: a shared training default is RunConfig's (or
OptimConfig's) and the command classes refer to it.

Why the option names and RunConfig's field names differ in three places (`--student`/`--model`
-> model, `--mix3d` -> mix3d_prob, `--split` -> train_split): checkpoints written so far record
train_params under RunConfig's names, and `--resume` compares them key by key, so RunConfig keeps
its names and the command classes keep the names users type; `run_config()` is the one place
that maps one onto the other.

Standard library and light srkd modules only (no torch): the CLI imports this to resolve options.
"""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srkd.data.registry import per_dataset
from srkd.data.transforms.color import DEFAULT_COLOR_NORM
from srkd.run_config import OLD_KEYS, OptimConfig, RunConfig
from srkd.settings import setting
from srkd.types import DEFAULT_DATASET

__all__ = ["OLD_KEYS", "DistillConfig", "OptimConfig", "RunConfig", "TeacherConfig", "TrainingOptions"]


_RUN = RunConfig
_OPTIM = OptimConfig
GRID_NOTE = per_dataset("grid_size")
WEIGHT_DECAY_NOTE = per_dataset("weight_decay")


@dataclass(frozen=True)
class TrainingOptions:
    """The options `srkd distill` and `srkd train-teacher` share (field = option name); each
    command class sets its own `out` and `dataset`."""

    out: Path | None = setting(None)
    dataset: str | None = setting(None)
    data_root: Path | None = setting(None)
    epochs: int = setting(_RUN.epochs)
    batch_size: int = setting(_RUN.batch_size)
    lr: float = setting(_OPTIM.lr)
    weight_decay: float | None = setting(None, note=WEIGHT_DECAY_NOTE)
    grad_clip: float | None = setting(_OPTIM.grad_clip, note="off")
    block_lr_scale: float = setting(_OPTIM.block_lr_scale)
    grid_size: float | None = setting(_RUN.grid_size, note=GRID_NOTE)
    workers: int = setting(_RUN.workers)
    seed: int = setting(_RUN.seed)
    eval_every: int = setting(_RUN.eval_every)
    checkpoint_every: int = setting(_RUN.checkpoint_every)
    max_points: int = setting(_RUN.max_points)
    mix3d: float = setting(_RUN.mix3d_prob)
    augment: bool = setting(_RUN.augment)
    amp: bool = setting(_RUN.amp)
    device: str = setting(_RUN.device)
    val_split: str | None = setting(_RUN.val_split)
    val_max_scenes: int | None = setting(_RUN.val_max_scenes, note="all")
    repeats: int = setting(_RUN.repeats)
    color_norm: str = setting(_RUN.color_norm)
    tensorboard: bool = setting(_RUN.tensorboard)
    resume: bool = setting(_RUN.resume, cli_only=True)

    def optim_config(self) -> OptimConfig:
        """The optimiser: these options over the release's recipe (OptimConfig)."""
        return OptimConfig(lr=float(self.lr), block_lr_scale=float(self.block_lr_scale),
                           weight_decay=None if self.weight_decay is None else float(self.weight_decay),
                           grad_clip=None if self.grad_clip is None else float(self.grad_clip))

    def _shared(self) -> dict[str, Any]:
        """RunConfig keyword values of the shared options ('' as val_split = no validation)."""
        return {
            "out": Path(self.out), "dataset": self.dataset,
            "data_root": Path(self.data_root) if self.data_root is not None else None,
            "val_split": self.val_split or None, "optim": self.optim_config(),
            "grid_size": None if self.grid_size is None else float(self.grid_size),
            "mix3d_prob": self.mix3d, "color_norm": self.color_norm, "epochs": self.epochs,
            "batch_size": self.batch_size, "workers": self.workers, "seed": self.seed,
            "eval_every": self.eval_every, "checkpoint_every": self.checkpoint_every,
            "max_points": self.max_points, "augment": self.augment, "repeats": self.repeats,
            "val_max_scenes": self.val_max_scenes, "amp": self.amp, "device": self.device,
            "resume": self.resume, "tensorboard": self.tensorboard,
        }  # fmt: skip


@dataclass(frozen=True)
class DistillConfig(TrainingOptions):
    """`srkd distill`'s settings (stages.yaml params.distill): field = option name.

    dataset None = the cache's (scannet without one). `weight` is the mapping of loss settings
    (stages.yaml key `weights`; each `--weight name=value` replaces one entry)."""

    out: Path = setting(Path("runs/student"))
    cache: Path | None = setting(None)
    student: str = setting("ptv3_half")
    method: str = setting("srkd")
    targets: str = setting(_RUN.targets)
    weight: dict[str, Any] | None = setting({}, key="weights", note="the method's recipe")
    online_teacher: Path | None = setting(None)
    teacher_model: str | None = setting(_RUN.teacher_model)
    teacher_color_norm: str | None = setting(_RUN.teacher_color_norm, note=DEFAULT_COLOR_NORM)
    dataset: str | None = setting(None, note="the cache's, else scannet")
    labelled_points: int | None = setting(_RUN.labelled_points, note="every label")
    labelled_scenes: float | None = setting(_RUN.labelled_scenes, note="every scene")
    la_file: Path | None = setting(_RUN.la_file)
    lr_file: Path | None = setting(_RUN.lr_file)
    label_seed: int = setting(_RUN.label_seed)

    def run_config(self) -> RunConfig:
        """The RunConfig these settings describe."""
        return RunConfig(
            **self._shared(), model=self.student, method=self.method, targets=self.targets,
            labelled_points=self.labelled_points, labelled_scenes=self.labelled_scenes,
            la_file=Path(self.la_file) if self.la_file is not None else None,
            lr_file=Path(self.lr_file) if self.lr_file is not None else None,
            label_seed=self.label_seed,
            loss_overrides=dict(self.weight or {}),
            cache=Path(self.cache) if self.cache is not None else None,
            online_teacher=Path(self.online_teacher) if self.online_teacher is not None else None,
            teacher_model=self.teacher_model, teacher_color_norm=self.teacher_color_norm,
        )  # fmt: skip


@dataclass(frozen=True)
class TeacherConfig(TrainingOptions):
    """`srkd train-teacher`'s settings (stages.yaml params.teacher): field = option name. It
    trains with CE + Lovasz alone (method ce). data_root None = stages.yaml data.root."""

    model: str = setting("ptv3_base")
    split: str = setting(_RUN.train_split)
    out: Path = setting(Path("runs/teacher"))
    dataset: str | None = setting(DEFAULT_DATASET)
    data_root: Path | None = setting(None, note="stages.yaml data.root")

    def run_config(self) -> RunConfig:
        """The RunConfig these settings describe."""
        return RunConfig(**self._shared(), model=self.model, train_split=self.split, method="ce")
