"""The models `srkd evaluate` scores: an srkd checkpoint loaded as an `EvalModel`, its row name,
its kind, and the check that it predicts the dataset's classes in the dataset's order.

Settings recorded in a checkpoint's ``train_params`` that are read here (all optional):
    grid_size  voxel edge in metres the model was trained with
    role       what the model is ("student", "teacher", ...), shown as the row's kind; without
               it the kind comes from method / cache / online_teacher (e.g. "student (srkd)")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from srkd.data.registry import DatasetSpec
from srkd.data.transforms import DEFAULT_COLOR_NORM
from srkd.errors import CheckpointError, ConfigError
from srkd.run_config import RunConfig
from srkd.types import FEATURE_WIDTHS

_GENERIC_STEMS = {"model", "best", "last", "checkpoint", "model_best", "model_last", "final"}


@dataclass
class EvalModel:
    """A model ready to be scored.

    model:         nn.Module mapping a PointBatch to ModelOutput (logits (M, K)); any device.
    feature_names: PointCloud fields that form its input, e.g. ("color", "normal").
    grid_size:     voxel edge (metres) of its test-mode voxelisation; None = the dataset's
                   (DatasetSpec.grid_size), filled in by `evaluate_models`.
    color_norm:    its input colour normalisation (srkd.data.transforms.COLOR_NORMS key).
    run_config:    how it was trained (`RunConfig.from_train_params` of the checkpoint's record);
                   `train_params` keeps the raw record, which says which keys were recorded at all.
    """

    name: str
    model: nn.Module
    feature_names: tuple[str, ...]
    grid_size: float | None
    kind: str = "model"
    source: str = ""
    params: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None  # logit order; None = not recorded (unchecked)
    train_params: dict[str, Any] = field(default_factory=dict)  # as recorded (which keys exist)
    color_norm: str = DEFAULT_COLOR_NORM
    run_config: RunConfig | None = None  # train_params read back typed; None = none recorded


def display_name(path: Path, taken: Sequence[str] = ()) -> str:
    """A short unique row name for a checkpoint: its stem, or its folder for generic stems
    ("runs/student/model.pt" -> "student"); "-2", "-3"... appended on collisions."""
    path = Path(path)
    stem = path.stem
    base = path.parent.name if stem in _GENERIC_STEMS and path.parent.name else stem
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def load_eval_model(path: Path, *, grid_size: float | None = None, name: str | None = None) -> EvalModel:
    """Load an srkd checkpoint (on CPU) as an EvalModel; check it against a dataset with
    `check_model`. Grid size: `grid_size`, else train_params["grid_size"], else None (the
    dataset's, filled in by `evaluate_models`)."""
    from srkd.models import count_parameters, load_checkpoint

    model, meta = load_checkpoint(path, map_location="cpu")
    unknown = [f for f in meta.feature_names if f not in FEATURE_WIDTHS]
    width = sum(FEATURE_WIDTHS.get(f, 0) for f in meta.feature_names)
    if unknown or not meta.feature_names or (meta.in_channels > 0 and width != meta.in_channels):
        raise CheckpointError(
            f"checkpoint {path} has input features {list(meta.feature_names)} for "
            f"{meta.in_channels} channels; evaluation builds inputs from {sorted(FEATURE_WIDTHS)}"
        )
    tp = dict(meta.train_params)
    run = _recorded_run(path, tp)
    grid = grid_size if grid_size is not None else (run.grid_size if run is not None else None)
    if grid is not None and (isinstance(grid, bool) or not isinstance(grid, int | float)
                             or not (math.isfinite(grid) and grid > 0)):
        raise ConfigError(f"grid size for {path} must be a positive number of metres, got {grid!r}")
    extra = {"model_name": meta.model_name, "srkd_version": meta.srkd_version}
    return EvalModel(
        name=name or display_name(path), model=model, feature_names=tuple(meta.feature_names),
        grid_size=None if grid is None else float(grid), kind=_kind(tp), source=str(path),
        params=count_parameters(model), extra=extra, class_names=tuple(meta.class_names),
        train_params=tp, color_norm=meta.color_norm, run_config=run,
    )


def _recorded_run(path: Path, train_params: dict[str, Any]) -> RunConfig | None:
    """The checkpoint's training settings read back typed (None when it records none)."""
    if not train_params:
        return None
    try:
        return RunConfig.from_train_params(train_params)
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path}: its recorded train_params do not read back: {exc}") from None


def _kind(tp: dict[str, Any]) -> str:
    """The row's kind from train_params: how the model was trained."""
    method = f" ({tp['method']})" if tp.get("method") else ""
    if tp.get("cache") or tp.get("online_teacher"):
        return "student" + method
    return "trained" + method if method else "checkpoint"


def check_model(m: EvalModel, spec: DatasetSpec) -> None:
    """CheckpointError unless a loaded model predicts the dataset's classes in its label order."""
    if m.class_names is None:
        return
    if len(m.class_names) != spec.num_classes:
        raise CheckpointError(
            f"checkpoint {m.source} predicts {len(m.class_names)} classes but dataset "
            f"{spec.name!r} has {spec.num_classes}; evaluate it on the dataset it was trained "
            "for (--dataset)"
        )
    if tuple(m.class_names) != tuple(spec.class_names):
        diff = [f"#{i}: {a!r} vs {b!r}" for i, (a, b) in
                enumerate(zip(m.class_names, spec.class_names)) if a != b]  # fmt: skip
        raise CheckpointError(
            f"checkpoint {m.source} orders its classes differently from dataset {spec.name!r} "
            f"(checkpoint vs dataset at {', '.join(diff[:3])})"
        )
