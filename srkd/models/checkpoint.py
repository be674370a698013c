"""Self-describing model checkpoints: everything needed to rebuild and safely reuse a model.

A checkpoint is one ``torch.save`` file holding a dict of plain values and tensors only, so it loads
with ``torch.load(weights_only=True)`` (no pickled code runs):

    format          "srkd-checkpoint"
    format_version  int (FORMAT_VERSION)
    srkd_version    str, the library version that wrote it
    model_name      str, a registered preset (``srkd.models.list_models()``)
    model_args      dict, the ``create_model`` overrides (constructor arguments), always
                    including the model's ``recorded_args`` (e.g. PTv3's ``unpooling``)
    class_names     list[str], K names in logit order
    feature_spec    {"names": list[str] (e.g. ["color", "normal"]), "channels": int (C),
                     "color_norm": str (srkd.data.transforms.COLOR_NORMS key)}
    train_params    dict of plain values (lr, epochs, loss weights, cache fingerprint, ...)
    extra           dict of plain values (free-form: metrics, epoch, ...)
    state_dict      {parameter/buffer name: tensor} on CPU

The model is rebuilt as ``create_model(model_name, **model_args)`` and loaded strictly.

Format 1 (srkd 0.1) recorded neither the colour normalisation nor PTv3's unpooling; such files
are read with what srkd 0.1 computed: colour "legacy" (color / 127.5 - 1) and unpooling "v3m2"
(V1_DEFAULTS).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import srkd
from srkd.data.transforms.color import LEGACY_COLOR_NORM, check_color_norm
from srkd.errors import CheckpointError, ConfigError
from srkd.io import atomic_write_stream, to_plain
from srkd.models._registry import MODELS, create_model  # filled by the srkd.models package
from srkd.models.base import SegmentationModel, recorded_values

FORMAT = "srkd-checkpoint"
FORMAT_VERSION = 2
V1_DEFAULTS: dict[str, Any] = {"unpooling": "v3m2"}
"""Values of recorded model arguments that format-1 files do not state (what srkd 0.1 built)."""


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about itself (everything but the weights)."""

    path: Path
    format_version: int
    srkd_version: str
    model_name: str
    model_args: dict[str, Any]
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    in_channels: int
    color_norm: str = LEGACY_COLOR_NORM
    train_params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """K, the number of classes."""
        return len(self.class_names)


def _plain(value: Mapping[str, Any], where: str) -> Any:
    """``value`` as plain Python that weights_only accepts (srkd.io.to_plain; tuples stay tuples)."""
    return to_plain(dict(value), where=where, keep_tuples=True, error=CheckpointError)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    model_name: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    class_names: Sequence[str],
    feature_names: Sequence[str],
    color_norm: str,
    train_params: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    storage_dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` and its description to ``path`` atomically (srkd.io.atomic_write_stream).

    color_norm: the colour normalisation the model's inputs had (COLOR_NORMS key); evaluate,
    cache-teacher and online distillation feed the model the same.

    storage_dtype: e.g. torch.float16 stores floating-point tensors at that precision (half the
    file size); loading casts them back to the model's dtype. Integer buffers are kept as they are.

    model_name / model_args default to what ``create_model`` recorded on the model
    (``model.srkd_name`` / ``model.srkd_args``). A DDP/DataParallel wrapper is unwrapped.
    Raises CheckpointError when the name is not a registered preset or the class count differs
    from the model's. Returns the path written.
    """
    model = getattr(model, "module", model)
    path = Path(path)
    model_name = model_name if model_name is not None else getattr(model, "srkd_name", None)
    if model_args is None:
        model_args = getattr(model, "srkd_args", {})
    model_args = {**model_args, **recorded_values(model)}
    color_norm, class_names = _checked_description(path, model, model_name, color_norm, class_names)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "srkd_version": srkd.__version__,
        "model_name": model_name,
        "model_args": _plain(model_args, "model_args"),
        "class_names": class_names,
        "feature_spec": {
            "names": [str(n) for n in feature_names],
            "channels": int(getattr(model, "in_channels", -1)),
            "color_norm": color_norm,
        },
        "train_params": _plain(train_params or {}, "train_params"),
        "extra": _plain(extra or {}, "extra"),
        "state_dict": {k: _stored(v.detach().cpu(), storage_dtype) for k, v in model.state_dict().items()},
    }
    # readers see the old file or the complete new one, never a torn one; torch.save writes into
    # an open file, so an OSError of the write (e.g. ENOSPC) reaches the caller
    return atomic_write_stream(path, lambda f: torch.save(payload, f))


def _checked_description(path: Path, model: nn.Module, model_name: str | None, color_norm: str,
                         class_names: Sequence[str]) -> tuple[str, list[str]]:
    """(colour normalisation, class names as str) to record for `model`; CheckpointError naming
    `path` for an unknown colour normalisation or model name, or a class count the model lacks."""
    try:
        color_norm = check_color_norm(color_norm)
    except ConfigError as e:
        raise CheckpointError(f"cannot save {path}: {e}") from None
    if not model_name or model_name not in MODELS:
        raise CheckpointError(
            f"cannot save {path}: model name {model_name!r} is not a registered preset; build the "
            f"model with srkd.models.create_model or pass model_name (known: {', '.join(MODELS.names())})"
        )
    names = [str(c) for c in class_names]
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and num_classes != len(names):
        raise CheckpointError(
            f"cannot save {path}: the model has {num_classes} classes but {len(names)} class "
            "names were given"
        )
    return color_norm, names


def _stored(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def compact_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy the srkd checkpoint ``src`` to ``dst`` with float16 weights (for shipping a model in a
    repository; e.g. the demo teacher). Metadata is kept; ``extra.storage_dtype`` says "float16"."""
    model, meta = load_checkpoint(src)
    return save_checkpoint(
        dst, model, model_name=meta.model_name, model_args=meta.model_args,
        class_names=meta.class_names, feature_names=meta.feature_names,
        color_norm=meta.color_norm, train_params=meta.train_params, extra={**meta.extra, "storage_dtype": "float16"},
        storage_dtype=torch.float16,
    )


def _read(path: Path, map_location: str | torch.device) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises pickle/runtime/zip errors of many kinds
        raise CheckpointError(
            f"checkpoint {path} cannot be read as a torch file with weights_only=True "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        hint = ""
        if isinstance(data, dict) and ("state_dict" in data or "model" in data or "epoch" in data):
            hint = (
                " It looks like a Pointcept/other training checkpoint: load it with "
                "srkd.models.load_pointcept_checkpoint(path, model)."
            )
        raise CheckpointError(f"{path} is not an srkd checkpoint (no format={FORMAT!r} entry).{hint}")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this srkd reads up to "
            f"{FORMAT_VERSION}: upgrade srkd"
        )
    required = ("model_name", "model_args", "class_names", "feature_spec", "state_dict")
    missing = [k for k in required if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    return data


def _describe_difference(kind: str, have: Sequence[str], want: Sequence[str]) -> str:
    if len(have) != len(want):
        return f"{len(have)} {kind} in the checkpoint, {len(want)} expected"
    diffs = [f"#{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(have, want)) if a != b]
    more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
    return f"{kind} differ (checkpoint vs expected) at " + ", ".join(diffs[:3]) + more


def _meta(data: dict, path: Path) -> CheckpointMeta:
    spec = data["feature_spec"]
    try:
        color_norm = check_color_norm(spec.get("color_norm", LEGACY_COLOR_NORM))
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from None
    return CheckpointMeta(
        path=path,
        format_version=data["format_version"],
        srkd_version=str(data.get("srkd_version", "?")),
        model_name=data["model_name"],
        model_args=dict(data["model_args"]),
        class_names=tuple(data["class_names"]),
        feature_names=tuple(spec.get("names", ())),
        in_channels=int(spec.get("channels", -1)),
        color_norm=color_norm,
        train_params=dict(data.get("train_params", {})),
        extra=dict(data.get("extra", {})),
    )


def load_checkpoint(
    path: str | os.PathLike,
    *,
    expect_classes: int | Sequence[str] | None = None,
    expect_features: Sequence[str] | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[SegmentationModel, CheckpointMeta]:
    """Rebuild the model saved at ``path`` and load its weights (strictly).

    expect_classes:  a class count K or the class names in logit order; refused if different.
    expect_features: the input feature names (e.g. ("color", "normal")); refused if different.
    Returns (model on ``map_location``, in eval mode; its CheckpointMeta).
    Raises CheckpointError: missing/unreadable file, not an srkd checkpoint, unknown model name,
    different classes or feature spec, weights that do not fit the rebuilt model.
    """
    path = Path(path)
    data = _read(path, map_location)  # read once: teacher checkpoints are hundreds of MB
    meta = _meta(data, path)
    if expect_classes is not None:
        if isinstance(expect_classes, int):
            if expect_classes != meta.num_classes:
                raise CheckpointError(
                    f"checkpoint {path} predicts {meta.num_classes} classes, {expect_classes} expected"
                )
        elif tuple(expect_classes) != meta.class_names:
            diff = _describe_difference("class names", meta.class_names, tuple(expect_classes))
            raise CheckpointError(f"checkpoint {path} was trained for other classes: {diff}")
    if expect_features is not None and tuple(expect_features) != meta.feature_names:
        raise CheckpointError(
            f"checkpoint {path} expects input features {list(meta.feature_names)} "
            f"({meta.in_channels} channels), the data provides {list(expect_features)}"
        )
    if meta.model_name not in MODELS:
        raise CheckpointError(
            f"checkpoint {path} is for model {meta.model_name!r}, which this srkd does not know "
            f"(known: {', '.join(MODELS.names())})"
        )
    model = create_model(meta.model_name, **meta.model_args)
    unstated = {k: V1_DEFAULTS[k] for k in getattr(model, "recorded_args", ()) if k not in meta.model_args}
    if unstated and meta.format_version < 2:
        model = create_model(meta.model_name, **meta.model_args, **unstated)
    try:
        result = model.load_state_dict(data["state_dict"], strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"checkpoint {path} does not fit model {meta.model_name!r}: {e}") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint {path} does not fit model {meta.model_name!r}: missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return model.to(map_location).eval(), meta


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes (the teacher-cache fingerprint uses it)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"cannot fingerprint {path}: no such file")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()
