"""The settings of one training job (`srkd distill`, `srkd train-teacher`): `RunConfig` and the
optimiser's `OptimConfig`. A checkpoint records a RunConfig as its train_params."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from srkd.data.transforms.color import DEFAULT_COLOR_NORM


@dataclass(frozen=True)
class OptimConfig:
    """AdamW + OneCycle as released (METHOD.md "Training recipe"); parameters whose name contains
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
    train_split: str = "train"
    val_split: str | None = "val"
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
    max_points: int = 102400
    mix3d_prob: float = 0.8
    augment: bool = True
    repeats: int = 1
    val_max_scenes: int | None = None
    amp: bool = True
    device: str = "auto"
    resume: bool = False
    tensorboard: bool = False

    def train_params(self) -> dict[str, Any]:
        """Plain, JSON-able values for the checkpoint (paths as strings)."""
        out = {}
        for key, value in asdict(self).items():
            out[key] = str(value) if isinstance(value, Path) else value
        return out
