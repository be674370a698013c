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
    """What the cache records about the teacher.

    family: for a Pointcept-style checkpoint, the network it holds ("PT-v3m1", "PT-v3m2" or
        "CDSegNet", see srkd.models.pointcept_arch); None for an srkd checkpoint.
    feature_names: the per-point fields concatenated into the teacher's input, in order (e.g.
        ("coord", "color", "normal") for a Sonata network); () = the dataset's.
    """

    name: str
    args: dict[str, Any]
    sha256: str
    feature_dim: int
    checkpoint: str
    color_norm: str = DEFAULT_COLOR_NORM
    family: str | None = None
    feature_names: tuple[str, ...] = ()

    def cache_args(self) -> dict[str, Any]:
        """The teacher arguments a cache records: the model's, plus for a Pointcept-style
        checkpoint its `family` and `input_features`."""
        if self.family is None:
            return dict(self.args)
        return {**self.args, "family": self.family, "input_features": list(self.feature_names)}


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


def teacher_features(in_channels: int, dataset: DatasetSpec, source: str) -> tuple[str, ...]:
    """The input fields of a Pointcept-style teacher with `in_channels` channels: the dataset's
    features, or (as Sonata's configs do, feat_keys coord + colour + normal) "coord" followed by
    them when the network takes 3 channels more. CheckpointError otherwise."""
    names = tuple(dataset.feature_names)
    if in_channels == dataset.feature_dim:
        return names
    if in_channels == dataset.feature_dim + 3 and "coord" not in names:
        return ("coord", *names)
    raise CheckpointError(
        f"teacher {source} takes {in_channels} input channels; dataset {dataset.name!r} provides "
        f"{dataset.feature_dim} ({' + '.join(names)}) or {dataset.feature_dim + 3} with coord first"
    )


def _pointcept_model(ref: TeacherRef, checkpoint: object, dataset: DatasetSpec) -> tuple[nn.Module, str, dict[str, Any], str | None]:
    """Build and load a Pointcept-style teacher: the network is recognised from the checkpoint
    (srkd.models.pointcept_arch) and built from `ref.pointcept_model` when given (its family
    must match), else from the preset that fits. `checkpoint`: the file's content (see
    `_read_teacher`). Returns (model, preset, args, family; None for a network srkd does not
    recognise, such as a SpUNet, loaded into the named preset)."""
    from srkd.models import create_model, load_pointcept_checkpoint
    from srkd.models.pointcept import read_state_dict
    from srkd.models.pointcept_arch import preset_for, recognize

    state, _, _ = read_state_dict(checkpoint)  # type: ignore[arg-type]
    name = str(ref.checkpoint)
    arch = recognize(state, name, required=ref.pointcept_model is None)
    preset, args = preset_for(arch) if arch is not None else (None, {})
    if ref.pointcept_model is not None and ref.pointcept_model != preset:
        preset = ref.pointcept_model  # the named preset, with the file's classes and inputs
        args = ({"num_classes": dataset.num_classes, "in_channels": dataset.feature_dim} if arch is None
                else {"num_classes": arch.num_classes, "in_channels": arch.in_channels})
    args.update(ref.model_args)
    model = create_model(preset, **args)
    family = getattr(model, "pointcept_family", None)
    if arch is not None and family != arch.family:
        raise CheckpointError(
            f"checkpoint {name} holds a {arch.family} network, --teacher-model {preset} builds "
            f"{family or 'another network'}: use --teacher-model {preset_for(arch)[0]} or leave it out"
        )
    load_pointcept_checkpoint(state, model, strict=True)
    return model, preset, args, None if arch is None else arch.family


def load_teacher(ref: TeacherRef, dataset: DatasetSpec, device: torch.device | str = "cpu") -> tuple[nn.Module, TeacherInfo]:
    """Load the frozen teacher (eval mode, requires_grad off) on `device`.

    An srkd checkpoint rebuilds itself; any other checkpoint is read as a Pointcept-style one
    (PT-v3m1, PT-v3m2 / Sonata, CDSegNet), recognised from its tensors (see `_pointcept_model`).
    Raises CheckpointError: missing file, not a checkpoint, a network srkd cannot compute, another
    class count or input features than `dataset` provides, weights that do not fit the model.
    """
    from srkd.models import load_checkpoint
    from srkd.models.base import recorded_values
    from srkd.models.checkpoint import FORMAT

    sha = checkpoint_sha256(ref)
    path = Path(ref.checkpoint)
    family = None
    content = _read_teacher(path)
    if ref.pointcept_model is None and isinstance(content, dict) and content.get("format") == FORMAT:
        model, meta = load_checkpoint(
            path, expect_classes=dataset.num_classes, expect_features=dataset.feature_names, map_location="cpu"
        )
        name, args, color_norm = meta.model_name, dict(meta.model_args), meta.color_norm
        if ref.color_norm is not None and ref.color_norm != color_norm:
            raise ConfigError(
                f"teacher {path} was trained with colour normalisation {color_norm!r} (recorded in "
                f"the checkpoint); drop --color-norm {ref.color_norm} or pass {color_norm}"
            )
        features = tuple(dataset.feature_names)
    else:
        color_norm = check_color_norm(ref.color_norm or DEFAULT_COLOR_NORM)
        model, name, args, family = _pointcept_model(ref, content, dataset)
        features = teacher_features(int(model.in_channels), dataset, str(path))
        args.update(recorded_values(model))
    if int(getattr(model, "num_classes", dataset.num_classes)) != dataset.num_classes:
        raise CheckpointError(
            f"teacher {path} predicts {model.num_classes} classes, dataset {dataset.name!r} has "
            f"{dataset.num_classes}"
        )
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info = TeacherInfo(name, args, sha, int(model.feature_dim), str(path.resolve()), color_norm, family, features)
    return model, info


def _read_teacher(path: Path) -> object:
    """The checkpoint file's content, read on CPU without running anything in it (an srkd
    checkpoint says so in its `format` entry and is then rebuilt by load_checkpoint)."""
    from srkd.models.pointcept import load_checkpoint_file

    return load_checkpoint_file(path)[0]
