"""The run record: the settings of one training job, as a checkpoint records them.

`RunConfig` (+ the optimiser's `OptimConfig`) is what `srkd distill` / `srkd train-teacher` run
and what every checkpoint and train state records as its train_params (`RunConfig.to_json`,
read back typed with `from_train_params`, tolerant of every srkd version so far). It lives apart
from the training code so that readers of a checkpoint's record (evaluate, predict, `--resume`)
depend on the record's type, not on the stage that wrote it. The two commands' settings
(`DistillConfig`, `TeacherConfig` in srkd.distill.config) build it.

Standard library and light srkd modules only (no torch): the CLI imports this through the
command configs to resolve options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from srkd.data.labels import LABEL_SEED, LabelBudget
from srkd.data.transforms.color import DEFAULT_COLOR_NORM
from srkd.data.transforms.sampling import SPHERE_CROP_POINTS
from srkd.errors import ConfigError
from srkd.settings import DEFAULT_DEVICE
from srkd.types import TRAIN_SPLIT, VAL_SPLIT


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
    method:              loss recipe, one of srkd.types.LOSS_METHODS (`--method`; the weights of
                         each are srkd.losses.recipes'; "ce" trains the model alone).
    loss_overrides:      per-term weights etc. replacing the recipe's values.
    targets:             view | canonical | ensemble (cached teacher only).
    color_norm:          the model's input colour normalisation (srkd.data.transforms.COLOR_NORMS);
                         the checkpoint records it and evaluation feeds the model the same.
    cache / online_teacher (+ teacher_model, teacher_color_norm for a Pointcept checkpoint): the
                         teacher's side.
    tensorboard:         also write TensorBoard event files to out/tensorboard (main process;
                         needs the optional tensorboard package, srkd.distill.tensorboard).
    labelled_points, labelled_scenes, la_file, lr_file, label_seed: the training labels the
                         run may see (srkd.data.labels.LabelBudget; all None = every label).
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
    labelled_points: int | None = None
    labelled_scenes: float | None = None
    la_file: Path | None = None
    lr_file: Path | None = None
    label_seed: int = LABEL_SEED

    def label_budget(self) -> LabelBudget:
        """The training labels this run may see (ConfigError for a contradictory budget)."""
        return LabelBudget(points_per_scene=self.labelled_points, scene_fraction=self.labelled_scenes,
                           la_file=self.la_file, lr_file=self.lr_file, seed=self.label_seed)

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
        """The RunConfig `to_json` wrote (or a command's settings give, DistillConfig.run_config);
        ConfigError naming the key when one is unknown or `model` / `out` is missing (use
        `from_train_params` for a checkpoint's record)."""
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
        for key in ("out", "data_root", "cache", "online_teacher", "la_file", "lr_file"):
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
