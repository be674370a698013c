"""Options and plumbing shared by `srkd distill` and `srkd train-teacher`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pipeline.commands._common import (
    ColorNorm,
    DatasetName,
    DeviceOption,
    optional_float,
)
from srkd.data.transforms.color import DEFAULT_COLOR_NORM

Epochs = Annotated[Optional[int], typer.Option("--epochs", help="Passes over the training split.")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", help="Samples per step (per process under torchrun).")]
Lr = Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (blocks get 1/10).")]
WeightDecay = Annotated[Optional[float], typer.Option("--weight-decay", help="AdamW weight decay. (default: the dataset's: 0.05 ScanNet, 0.005 nuScenes / SemanticKITTI)")]
GridSize = Annotated[Optional[float], typer.Option("--grid-size", help="Voxel size in metres. (default: the dataset's: 0.02 ScanNet, 0.05 nuScenes / SemanticKITTI)")]
Workers = Annotated[Optional[int], typer.Option("--workers", help="DataLoader worker processes.")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Seed of model init, data order and augmentation.")]
EvalEvery = Annotated[Optional[int], typer.Option("--eval-every", help="Validate every E epochs (0 = never); the best model is kept.")]
CheckpointEvery = Annotated[Optional[int], typer.Option("--checkpoint-every", help="Write the resumable train state every K steps.")]
MaxPoints = Annotated[Optional[int], typer.Option("--max-points", help="Sphere-crop size of a training sample.")]
Mix3d = Annotated[Optional[float], typer.Option("--mix3d", help="Mix3D probability per batch.")]
Augment = Annotated[Optional[bool], typer.Option("--augment/--no-augment", help="Use the ScanNet training augmentations.")]
Amp = Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Mixed precision on CUDA.")]
Device = DeviceOption
Resume = Annotated[bool, typer.Option("--resume", help="Continue from OUT/train_state.pt, written by a run with the same settings; a finished run given more --epochs is extended by a new one-cycle segment (warm restart from where its lr ended).")]
Tensorboard = Annotated[Optional[bool], typer.Option("--tensorboard/--no-tensorboard", help="Also write TensorBoard event files to OUT/tensorboard (needs the optional tensorboard package: srkd's tensorboard extra, or pip install tensorboard). (default: off)")]
DataRoot = Annotated[Optional[Path], typer.Option("--data-root", help="Dataset root in the Pointcept layout.")]
Dataset = Annotated[Optional[DatasetName], typer.Option("--dataset", help="scannet, scannet200, nuscenes or semantickitti (lidar: coord + strength input, grid 0.05 m, weight decay 0.005, 10-view TTA).")]
ValSplit = Annotated[Optional[str], typer.Option("--val-split", help="Split scored during training ('' = none).")]
ValMaxScenes = Annotated[Optional[int], typer.Option("--val-max-scenes", help="Score only the first N val scenes during training.")]
Out = Annotated[Optional[Path], typer.Option("--out", help="Run folder (model.pt, log.jsonl, curves.png, train_state.pt).")]
BlockLrScale = Annotated[Optional[float], typer.Option("--block-lr-scale", help="Learning-rate factor of transformer/residual blocks (release: 0.1).")]
GradClip = Annotated[Optional[float], typer.Option("--grad-clip", help="Clip the gradient norm (off by default).")]
Repeats = Annotated[Optional[int], typer.Option("--repeats", help="Each scene appears this many times per epoch.")]
ColorNormOption = Annotated[Optional[ColorNorm], typer.Option("--color-norm", help=f"Input colour normalisation of the trained model, recorded in its checkpoint: pointcept = color/255 (Pointcept >= 1.6), legacy = color/127.5-1. (default: {DEFAULT_COLOR_NORM})")]

RUNCONFIG_DEFAULT = object()
"""A COMMON_FIELDS fallback meaning: leave the field out, RunConfig's own default applies."""

# option name -> (RunConfig field, built-in default); stages.yaml values sit between the two
COMMON_FIELDS: dict[str, tuple[str, Any]] = {
    "epochs": ("epochs", 100),
    "batch_size": ("batch_size", 8),
    "grid_size": ("grid_size", None),  # None: the dataset's (DatasetSpec.grid_size)
    "workers": ("workers", 0),
    "seed": ("seed", 0),
    "eval_every": ("eval_every", 1),
    "checkpoint_every": ("checkpoint_every", 50),
    "max_points": ("max_points", 102400),
    "mix3d": ("mix3d_prob", 0.8),
    "augment": ("augment", True),
    "amp": ("amp", True),
    "device": ("device", "auto"),
    "val_split": ("val_split", "val"),
    "val_max_scenes": ("val_max_scenes", None),
    "repeats": ("repeats", 1),
    "dataset": ("dataset", "scannet"),
    "color_norm": ("color_norm", DEFAULT_COLOR_NORM),
    "tensorboard": ("tensorboard", RUNCONFIG_DEFAULT),
}


def config_values(section: str, cli: dict[str, Any], fields: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """RunConfig keyword values: explicit CLI option > stages.yaml params.<section> > default."""
    from pipeline.params import command_defaults

    defaults = command_defaults(section)
    values: dict[str, Any] = {}
    for option, (field, fallback) in fields.items():
        value = cli.get(option)
        if value is None:
            value = defaults.get(option, fallback)
        if value is RUNCONFIG_DEFAULT:
            continue
        values[field] = value.value if isinstance(value, Enum) else value
    if values.get("val_split") == "":
        values["val_split"] = None
    return values


def optim_config(section: str, lr: float | None, weight_decay: float | None, grad_clip: float | None,
                 block_lr_scale: float | None = None):
    """OptimConfig from options > stages.yaml > the release's recipe."""
    from pipeline.params import command_defaults
    from srkd.distill.config import OptimConfig

    d = command_defaults(section)
    base = OptimConfig()
    return OptimConfig(
        lr=float(lr if lr is not None else d.get("lr", base.lr)),
        weight_decay=optional_float(weight_decay if weight_decay is not None else d.get("weight_decay")),
        grad_clip=grad_clip if grad_clip is not None else d.get("grad_clip", base.grad_clip),
        block_lr_scale=float(block_lr_scale if block_lr_scale is not None
                             else d.get("block_lr_scale", base.block_lr_scale)),
    )


def launch_rank() -> int:
    """This process's rank in a torchrun job (its RANK when WORLD_SIZE > 1), else 0."""
    import os

    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def run_quietly(cfg) -> None:
    """Train as a rank other than 0: print nothing, show no warnings (rank 0 shows the ones every
    rank would); an error still reaches the command's error line."""
    import logging
    import warnings

    from srkd.distill.run import run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            run(cfg)
        finally:
            logging.disable(logging.NOTSET)


def run_with_progress(cfg, title: str) -> None:
    """Run a training job with a rich progress bar, then print where the model went.

    Under torchrun only rank 0 prints (header, progress bar, loss shares, "done") and warns."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from srkd.device import configure_threads
    from srkd.distill.run import run

    configure_threads()
    if launch_rank() != 0:
        run_quietly(cfg)
        return
    console = Console(stderr=True)
    progress = Progress(
        TextColumn(f"[bold]{title}[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console,
    )
    state: dict[str, Any] = {}

    def on_start(info: dict[str, Any]) -> None:
        console.print(
            f"{title}: {info['steps']} steps ({info['steps_per_epoch']}/epoch) on {info['device']}"
            f" x{info['world']}, dataset {info['dataset']} at {info['data_root']}, "
            f"loss terms: {', '.join(info['losses'])}"
        )
        if info.get("resume_note"):
            console.print(info["resume_note"])
        state["task"] = progress.add_task(title, total=info["steps"], info="")

    def on_step(record: dict[str, Any]) -> None:
        if "shares_shown" not in state:  # once per run: what each term weighs in the total
            state["shares_shown"] = True
            console.print(f"loss shares at step {record['step']}: {format_shares(record)}")
        progress.update(state["task"], completed=record["step"],
                        info=f"loss {record['loss']:.3f}  {record['points_per_s']:.0f} pts/s")

    with progress:
        result = run(cfg, on_step=on_step, on_start=on_start)
    best = f", best val mIoU {result.best_metric:.4f}" if result.best_metric is not None else ""
    if len(result.lr_schedule) > 1:  # a --resume with more epochs extended the run
        segments = ", ".join(f"{a}-{b}" for a, b in result.lr_schedule)
        console.print(f"lr schedule: one-cycle segments over steps {segments} (extended by --resume)")
    console.print(f"done: {result.step} steps{best}; model in {Path(cfg.out) / 'model.pt'}, "
                  f"curves in {Path(cfg.out) / 'curves.png'}")


def format_shares(record: dict[str, Any]) -> str:
    """'ce 0.41 (48.2%), kl 0.12 (14.1%), ...': each term's weighted value and share of the total."""
    parts = [f"{key[:-len('_share')]} {record[key[:-len('_share')] + '_weighted']:.4g} "
             f"({100 * record[key]:.1f}%)" for key in record if key.endswith("_share")]
    return ", ".join(parts) or "(no loss terms logged)"
