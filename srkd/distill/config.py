"""The settings of one training job (`srkd distill`, `srkd train-teacher`).

`RunConfig` (+ the optimiser's `OptimConfig`) is what the library runs and what a checkpoint
records as its train_params (`RunConfig.to_json`, read back typed with `from_train_params`).
`DistillConfig` and `TeacherConfig` are the two commands' settings: one field per option, named
as the option (`--batch-size` -> `batch_size`), holding the command's defaults; their
`run_config()` builds the RunConfig. Every default lives once: a shared training default is
RunConfig's (or OptimConfig's) and the command classes refer to it.

Why the option names and RunConfig's field names differ in three places (`--student`/`--model`
-> model, `--mix3d` -> mix3d_prob, `--split` -> train_split): checkpoints written so far record
train_params under RunConfig's names, and `--resume` compares them key by key, so RunConfig keeps
its names and the command classes keep the names users type; `run_config()` is the one place
that maps one onto the other.

Standard library and light srkd modules only (no torch): the CLI imports this to resolve options.
"""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from srkd.data.registry import per_dataset
from srkd.data.transforms.color import DEFAULT_COLOR_NORM
from srkd.data.transforms.sampling import SPHERE_CROP_POINTS
from srkd.errors import ConfigError
from srkd.settings import DEFAULT_DEVICE, setting
from srkd.types import DEFAULT_DATASET, TRAIN_SPLIT, VAL_SPLIT


@dataclass(frozen=True)
class OptimConfig:
    """AdamW + OneCycle as released (docs/method.md, "Training recipe"); parameters whose name contains
    `block_keyword` (the transformer / residual blocks) train at `block_lr_scale` x lr.
    weight_decay None = the dataset's (DatasetSpec.weight_decay: 0.05 indoors, 0.005 for lidar),
    filled in by srkd.distill.run before the optimiser is built."""

    lr: float = 0.002
    weight_decay: float | None = 0.05
    block_lr_scale: float = 0.1
    block_keyword: str = "block"
    pct_start: float = 0.5
    div_factor: float = 10.0
    final_div_factor: float = 1000.0
    grad_clip: float | None = None


@dataclass(frozen=True)
class RunConfig:
    """Everything one training job depends on (what the checkpoint records as train_params).

    model / model_args:  the student (or the model to train alone), a registered preset.
    dataset, data_root:  where scenes come from; with `cache` they default to the cache's own
                         (dataset None = the cache's, or "scannet" without a cache).
    method:              loss recipe: srkd | kd | mse | cwd | ce (see srkd.losses.recipes).
    loss_overrides:      per-term weights etc. replacing the recipe's values.
    targets:             view | canonical | ensemble (cached teacher only).
    color_norm:          the model's input colour normalisation (srkd.data.transforms.COLOR_NORMS);
                         the checkpoint records it and evaluation feeds the model the same.
    cache / online_teacher (+ teacher_model, teacher_color_norm for a Pointcept checkpoint): the
                         teacher's side.
    tensorboard:         also write TensorBoard event files to out/tensorboard (main process;
                         needs the optional tensorboard package, srkd.distill.tensorboard).
    """

    model: str
    out: Path
    dataset: str | None = None
    data_root: Path | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    train_split: str = TRAIN_SPLIT
    val_split: str | None = VAL_SPLIT
    grid_size: float | None = None  # None: the dataset's (DatasetSpec.grid_size)
    color_norm: str = DEFAULT_COLOR_NORM
    method: str = "ce"
    loss_overrides: dict[str, Any] = field(default_factory=dict)
    targets: str = "view"
    cache: Path | None = None
    online_teacher: Path | None = None
    teacher_model: str | None = None
    teacher_color_norm: str | None = None
    epochs: int = 100
    batch_size: int = 8
    optim: OptimConfig = field(default_factory=OptimConfig)
    workers: int = 0
    seed: int = 0
    eval_every: int = 1
    checkpoint_every: int = 50
    max_points: int = SPHERE_CROP_POINTS
    mix3d_prob: float = 0.8
    augment: bool = True
    repeats: int = 1
    val_max_scenes: int | None = None
    amp: bool = True
    device: str = DEFAULT_DEVICE
    resume: bool = False
    tensorboard: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain, JSON-able values (paths as strings, optim as a mapping): the checkpoint's
        train_params before srkd.distill.run adds what it learns (recipe, cache fingerprint)."""
        return {key: str(value) if isinstance(value, Path) else value
                for key, value in asdict(self).items()}

    def train_params(self) -> dict[str, Any]:
        """The checkpoint's train_params: `to_json()`."""
        return self.to_json()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunConfig:
        """The RunConfig `to_json` wrote; ConfigError naming the key when one is unknown or
        `model` / `out` is missing (use `from_train_params` for a checkpoint's record)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"run config: unknown key(s) {unknown}; known: {sorted(names)}")
        missing = [k for k in ("model", "out") if data.get(k) is None]
        if missing:
            raise ConfigError(f"run config: {', '.join(missing)} missing")
        return cls(**_typed(data))

    @classmethod
    def from_train_params(cls, data: dict[str, Any]) -> RunConfig:
        """A checkpoint's train_params read back typed, tolerant of every version so far.

        Keys RunConfig does not have (recipe, cache_fingerprint, world_size, ...) are left out;
        missing keys take RunConfig's defaults (old checkpoints lack color_norm,
        teacher_color_norm and tensorboard: the checkpoint's feature_spec, not train_params, is
        the authority on its colour normalisation); an option name recorded instead of a field
        name (student, mix3d, split, weights) is read as the field; a missing `out` becomes "."
        and a missing model "unknown". A value of the wrong kind raises ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {OLD_KEYS.get(k, k): v for k, v in data.items() if k not in names}
        values = {k: v for k, v in values.items() if k in names}
        values.update({k: v for k, v in data.items() if k in names})
        values.setdefault("model", "unknown")
        if values.get("out") is None:
            values["out"] = "."
        return cls(**_typed(values))


OLD_KEYS: dict[str, str] = {"student": "model", "mix3d": "mix3d_prob", "split": "train_split",
                            "weights": "loss_overrides"}
"""Option names a train_params record might hold instead of RunConfig's field names."""


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """RunConfig keyword values from plain JSON values (paths, optim, mappings)."""
    out = dict(values)
    try:
        for key in ("out", "data_root", "cache", "online_teacher"):
            if out.get(key) is not None:
                out[key] = Path(out[key])
        if isinstance(out.get("optim"), dict):
            fields = {f.name for f in dataclasses.fields(OptimConfig)}
            out["optim"] = OptimConfig(**{k: v for k, v in out["optim"].items() if k in fields})
        for key in ("model_args", "loss_overrides"):
            if key in out:
                out[key] = dict(out[key] or {})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"run config: a value has the wrong type ({exc})") from None
    return out


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

    def run_config(self) -> RunConfig:
        """The RunConfig these settings describe."""
        return RunConfig(
            **self._shared(), model=self.student, method=self.method, targets=self.targets,
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
