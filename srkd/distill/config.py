"""The settings of the two training commands (`srkd distill`, `srkd train-teacher`).

`DistillConfig` and `TeacherConfig` hold one field per option, named as the option
(`--batch-size` -> `batch_size`), with the command's defaults; their `run_config()` builds the
`RunConfig` (srkd.run_config: the run record a checkpoint keeps; re-exported here with
`OptimConfig`). Every default lives once: a shared training default is RunConfig's (or
OptimConfig's) and the command classes refer to it.

Why the option names and RunConfig's field names differ in four places (`--student`/`--model`
-> model, `--mix3d` -> mix3d_prob, `--split` -> train_split, `--weight` -> loss_overrides):
checkpoints written so far record train_params under RunConfig's names, and `--resume` compares
them key by key, so RunConfig keeps its names and the command classes keep the names users type;
RUN_FIELDS is the one place that maps one onto the other. Every other option sets the RunConfig
(or OptimConfig) field of its own name, so a new training option is a field here plus, when it
changes the run, the RunConfig field that records it.

Standard library and light srkd modules only (no torch): the CLI imports this to resolve options.
"""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from srkd.data.registry import DATASET_FLAG, per_dataset
from srkd.data.transforms.color import COLOR_NORMS, DEFAULT_COLOR_NORM
from srkd.run_config import OLD_KEYS, OptimConfig, RunConfig
from srkd.settings import DEVICE, GRID_SIZE, TEACHER_MODEL, Flag, setting
from srkd.types import DEFAULT_DATASET, LOSS_METHODS, TARGET_MODES

__all__ = ["OLD_KEYS", "DistillConfig", "OptimConfig", "RunConfig", "TeacherConfig", "TrainingOptions"]


_RUN = RunConfig
_OPTIM = OptimConfig
GRID_NOTE = per_dataset("grid_size")
WEIGHT_DECAY_NOTE = per_dataset("weight_decay")
RUN_FOLDER = Flag("Run folder (model.pt, log.jsonl, curves.png, train_state.pt).")
DATA_ROOT = Flag("Dataset root in the Pointcept layout.")

RUN_FIELDS: dict[str, str] = {"student": "model", "split": "train_split", "mix3d": "mix3d_prob",
                              "weight": "loss_overrides"}
"""Option name -> the RunConfig field it sets, where they differ (see the module docstring;
srkd.run_config.OLD_KEYS reads these names back from a record)."""
OPTIM_OPTIONS: tuple[str, ...] = ("lr", "weight_decay", "grad_clip", "block_lr_scale")
"""The options that set OptimConfig's fields of the same name."""


@dataclass(frozen=True)
class TrainingOptions:
    """The options `srkd distill` and `srkd train-teacher` share (field = option name); each
    command class sets its own `out`, `dataset` (and train-teacher's `data_root`)."""

    out: Path | None = setting(None, RUN_FOLDER)
    dataset: str | None = setting(None, DATASET_FLAG)
    data_root: Path | None = setting(None, DATA_ROOT)
    epochs: int = setting(_RUN.epochs, "Passes over the training split.")
    batch_size: int = setting(_RUN.batch_size, "Samples per step (per process under torchrun).")
    lr: float = setting(_OPTIM.lr, "Peak learning rate (blocks get --block-lr-scale x lr).")
    weight_decay: float | None = setting(None, "AdamW weight decay.", note=WEIGHT_DECAY_NOTE)
    grad_clip: float | None = setting(_OPTIM.grad_clip, "Clip the gradient norm.", note="off")
    block_lr_scale: float = setting(
        _OPTIM.block_lr_scale, "Learning-rate factor of transformer/residual blocks (release: 0.1).")
    grid_size: float | None = setting(_RUN.grid_size, GRID_SIZE, note=GRID_NOTE)
    workers: int = setting(_RUN.workers, "DataLoader worker processes.")
    seed: int = setting(_RUN.seed, "Seed of model init, data order and augmentation.")
    eval_every: int = setting(_RUN.eval_every, "Validate every E epochs (0 = never); the best model is kept.")
    checkpoint_every: int = setting(_RUN.checkpoint_every, "Write the resumable train state every K steps.")
    max_points: int = setting(_RUN.max_points, "Sphere-crop size of a training sample.")
    mix3d: float = setting(_RUN.mix3d_prob, "Mix3D probability per batch.")
    augment: bool = setting(_RUN.augment, "Use the ScanNet training augmentations.")
    amp: bool = setting(_RUN.amp, "Mixed precision on CUDA.")
    device: str = setting(_RUN.device, DEVICE)
    val_split: str | None = setting(_RUN.val_split, "Split scored during training ('' = none).")
    val_max_scenes: int | None = setting(
        _RUN.val_max_scenes, "Score only the first N val scenes during training.", note="all")
    repeats: int = setting(_RUN.repeats, "Each scene appears this many times per epoch.")
    color_norm: str = setting(_RUN.color_norm, Flag(
        "Input colour normalisation of the trained model, recorded in its checkpoint: pointcept = "
        "color/255 (Pointcept >= 1.6), legacy = color/127.5-1.", choices=tuple(COLOR_NORMS)))
    tensorboard: bool = setting(_RUN.tensorboard, (
        "Also write TensorBoard event files to OUT/tensorboard (needs the optional tensorboard "
        "package: srkd's tensorboard extra, or pip install tensorboard)."))
    resume: bool = setting(_RUN.resume, Flag(
        "Continue from OUT/train_state.pt, written by a run with the same settings; a finished run "
        "given more --epochs is extended by a new one-cycle segment (warm restart from where its lr "
        "ended).", negatable=False), cli_only=True)

    def run_config(self) -> RunConfig:
        """The RunConfig these settings describe: each option sets RunConfig's field of its name
        (RUN_FIELDS where the names differ; OPTIM_OPTIONS set OptimConfig's), '' as val_split
        means no validation. A field RunConfig lacks is a ConfigError (RunConfig.from_json), so
        an option cannot be lost on the way to the checkpoint's record."""
        values = {RUN_FIELDS.get(f.name, f.name): getattr(self, f.name) for f in fields(self)}
        values["optim"] = {name: values.pop(name) for name in OPTIM_OPTIONS}
        values["val_split"] = values["val_split"] or None
        return RunConfig.from_json(values)


@dataclass(frozen=True)
class DistillConfig(TrainingOptions):
    """`srkd distill`'s settings (stages.yaml params.distill): field = option name.

    dataset None = the cache's (scannet without one). `weight` is the mapping of loss settings
    (stages.yaml key `weights`; each `--weight name=value` replaces one entry)."""

    cache: Path | None = setting(None, "Teacher cache from `srkd cache-teacher`.")
    out: Path = setting(Path("runs/student"), RUN_FOLDER)
    student: str = setting("ptv3_half", "Student model preset (see docs/models.md).")
    method: str = setting("srkd", Flag(
        "Loss recipe: srkd (calibrated relation weight), srkd-scarce (srkd for limited labels: KL "
        "weight 30), srkd-release (the release's weights), kd, "
        "mse, cwd, relation or ce (alone).", choices=LOSS_METHODS))
    targets: str = setting(_RUN.targets, Flag(
        "view (replay cached views), canonical (view 0, the student's own augmentation) or "
        "ensemble (the mean over views).", choices=TARGET_MODES))
    weight: dict[str, Any] | None = setting({}, (
        "Override a loss setting: name=value (ce, lovasz, kl, relation, feat_mse, cwd, temperature, "
        "tau, n_relation_points); repeatable. stages.yaml: the mapping distill.weights."),
        key="weights", note="the method's recipe")
    online_teacher: Path | None = setting(
        None, "Run this teacher checkpoint in every step instead of reading a cache.")
    teacher_model: str | None = setting(_RUN.teacher_model, TEACHER_MODEL)
    teacher_color_norm: str | None = setting(_RUN.teacher_color_norm, Flag(
        "Colour normalisation a Pointcept --online-teacher was trained with (an srkd checkpoint "
        "records its own).", choices=tuple(COLOR_NORMS)), note=DEFAULT_COLOR_NORM)
    labelled_points: int | None = setting(_RUN.labelled_points, Flag(
        "Limited annotations (ScanNet Data-Efficient LA): keep N labels per training scene, drawn by "
        "--label-seed; the other points train on the teacher's targets only.", min=1), note="every label")
    labelled_scenes: float | None = setting(_RUN.labelled_scenes, Flag(
        "Limited scenes (Data-Efficient LR): the fraction of training scenes that keep their labels, "
        "drawn by --label-seed.", min=0.0, max=1.0), note="every scene")
    la_file: Path | None = setting(_RUN.la_file, (
        "The Data-Efficient benchmark's LA file (torch-saved dict scene -> labelled point indices; "
        "read without running code) instead of --labelled-points."))
    lr_file: Path | None = setting(_RUN.lr_file, (
        "The Data-Efficient benchmark's LR file (labelled scene names, one per line) instead of "
        "--labelled-scenes."))
    label_seed: int = setting(_RUN.label_seed, Flag("Seed of --labelled-points and --labelled-scenes.", min=0))
    dataset: str | None = setting(None, DATASET_FLAG, note="the cache's, else scannet")


@dataclass(frozen=True)
class TeacherConfig(TrainingOptions):
    """`srkd train-teacher`'s settings (stages.yaml params.teacher): field = option name. It
    trains with CE + Lovasz alone (method ce). data_root None = stages.yaml data.root."""

    model: str = setting("ptv3_base", "Model preset to train (see docs/models.md).")
    split: str = setting(_RUN.train_split, "Training split.")
    out: Path = setting(Path("runs/teacher"), RUN_FOLDER)
    dataset: str | None = setting(DEFAULT_DATASET, DATASET_FLAG)
    data_root: Path | None = setting(None, DATA_ROOT, note="stages.yaml data.root")

    def run_config(self) -> RunConfig:
        """The RunConfig these settings describe (method ce: no teacher)."""
        return replace(super().run_config(), method="ce")
