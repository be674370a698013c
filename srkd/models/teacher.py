"""The frozen teacher, shared by both stages that run one: `srkd cache-teacher` (once per cache)
and `srkd distill --online-teacher` (in every step).

`TeacherRef` says where a teacher comes from (an srkd checkpoint, or a Pointcept checkpoint plus
the preset it fits), `load_teacher` loads it frozen and checks it against the dataset, and
`TeacherInfo` is what a cache records about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srkd.data.registry import DatasetSpec
from srkd.data.transforms.color import DEFAULT_COLOR_NORM, check_color_norm
from srkd.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class TeacherInfo:
    """What the cache records about the teacher."""

    name: str
    args: dict[str, Any]
    sha256: str
    feature_dim: int
    checkpoint: str
    color_norm: str = DEFAULT_COLOR_NORM


@dataclass(frozen=True)
class TeacherRef:
    """Where the teacher comes from.

    checkpoint: an srkd self-describing checkpoint, or, when `pointcept_model` is given, a
        Pointcept training checkpoint loaded into `create_model(pointcept_model, num_classes=K,
        in_channels=C, **model_args)` by parameter name.
    color_norm: the teacher's input colour normalisation (COLOR_NORMS key). An srkd checkpoint
        records its own (None = use it; a different value is refused); a Pointcept checkpoint
        does not (None = DEFAULT_COLOR_NORM, what Pointcept >= 1.6 trains with).
    """

    checkpoint: Path
    pointcept_model: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    color_norm: str | None = None


def checkpoint_sha256(ref: TeacherRef) -> str:
    """sha256 of the teacher checkpoint, or CheckpointError when the file is missing."""
    from srkd.models import file_sha256

    path = Path(ref.checkpoint)
    if not path.is_file():
        raise CheckpointError(
            f"teacher checkpoint {path} does not exist (or is not a file); pass --teacher with the "
            "path of a checkpoint saved by srkd (or a Pointcept .pth together with --teacher-model)"
        )
    return file_sha256(path)


def load_teacher(ref: TeacherRef, dataset: DatasetSpec, device: torch.device | str = "cpu") -> tuple[nn.Module, TeacherInfo]:
    """Load the frozen teacher (eval mode, requires_grad off) on `device`.

    Raises CheckpointError: missing file, not a checkpoint, another class count or input features
    than `dataset` provides, weights that do not fit the model.
    """
    from srkd.models import create_model, load_checkpoint, load_pointcept_checkpoint
    from srkd.models.base import recorded_values

    sha = checkpoint_sha256(ref)
    path = Path(ref.checkpoint)
    if ref.pointcept_model is None:
        model, meta = load_checkpoint(
            path, expect_classes=dataset.num_classes, expect_features=dataset.feature_names, map_location="cpu"
        )
        name, args, color_norm = meta.model_name, dict(meta.model_args), meta.color_norm
        if ref.color_norm is not None and ref.color_norm != color_norm:
            raise ConfigError(
                f"teacher {path} was trained with colour normalisation {color_norm!r} (recorded in "
                f"the checkpoint); drop --color-norm {ref.color_norm} or pass {color_norm}"
            )
    else:
        color_norm = check_color_norm(ref.color_norm or DEFAULT_COLOR_NORM)
        args = {"num_classes": dataset.num_classes, "in_channels": dataset.feature_dim, **ref.model_args}
        model = create_model(ref.pointcept_model, **args)
        load_pointcept_checkpoint(path, model, strict=True)
        name = ref.pointcept_model
        args.update(recorded_values(model))
    if int(getattr(model, "num_classes", dataset.num_classes)) != dataset.num_classes:
        raise CheckpointError(
            f"teacher {path} predicts {model.num_classes} classes, dataset {dataset.name!r} has "
            f"{dataset.num_classes}"
        )
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info = TeacherInfo(name, args, sha, int(model.feature_dim), str(path.resolve()), color_norm)
    return model, info
