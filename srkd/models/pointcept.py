"""Load Pointcept checkpoints (e.g. PTv3 `model_best.pth`) into srkd models by parameter name.

A Pointcept training checkpoint is a dict with `state_dict` (plus epoch, optimizer, ...). Its keys
carry wrapper prefixes: `module.` from DistributedDataParallel and `backbone.` from the segmentor
(`DefaultSegmentorV2` keeps the head beside the backbone as `seg_head.`). srkd's
PointTransformerV3 holds `embedding.`, `enc.`, `dec.` and `seg_head.` at its top level, so loading
is: strip the wrappers, then match names and shapes.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from srkd.errors import CheckpointError

WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "backbone.")
_SHOW = 20  # names listed in an error message before "... and N more"


@dataclass
class LoadReport:
    """What `load_pointcept_checkpoint` did.

    loaded:     model keys that received a tensor.
    missing:    model keys the checkpoint lacks.
    unexpected: checkpoint keys (after prefix stripping) the model lacks.
    mismatched: (key, checkpoint shape, model shape) for keys present in both with other shapes.
    source:     the file path, or "<state_dict>".
    inert:      'module.name' of objects in the file that weights_only refuses (e.g. a pickled
                LR scheduler of torch < 2.4), read as inert stand-ins and never run.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    source: str = "<state_dict>"
    inert: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model key was loaded with the right shape."""
        return not self.missing and not self.mismatched

    def summary(self) -> str:
        """One line: counts of loaded / missing / mismatched / unexpected keys."""
        inert = f"; ignored (not run): {', '.join(self.inert)}" if self.inert else ""
        return (
            f"{self.source}: loaded {len(self.loaded)} tensors, {len(self.missing)} missing, "
            f"{len(self.mismatched)} with other shapes, {len(self.unexpected)} unexpected{inert}"
        )


def _numpy_scalar_globals() -> list:
    """numpy scalar/dtype constructors under their numpy 2 and numpy 1 pickle names."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32)]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def strip_prefixes(key: str, prefixes: tuple[str, ...] = WRAPPER_PREFIXES) -> str:
    """Remove leading wrapper prefixes (any order, repeated): 'module.backbone.enc.x' -> 'enc.x'."""
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def load_checkpoint_file(path: Path) -> tuple[object, list[str]]:
    """torch.load on CPU with weights_only=True; if the file names objects that weights_only
    refuses, read it again with every such object replaced by an inert stand-in (never run).
    Returns (the loaded object, the replaced globals)."""
    from srkd.models.inert_pickle import load_inert

    try:
        # Pointcept stores its best metric as a numpy float64 beside the tensors, so numpy's
        # scalar reconstruction is allowed too (it cannot run code).
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True), []
    except pickle.UnpicklingError:
        pass  # e.g. a torch < 2.4 OneCycleLR state: only the tensors are needed
    except Exception as exc:  # not a torch file at all: zip/EOF/runtime errors of several types
        raise _unreadable(path, exc) from exc
    try:
        return load_inert(path)
    except Exception as exc:
        raise _unreadable(path, exc) from exc


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return CheckpointError(
        f"cannot read checkpoint {path} as a torch file ({exc.__class__.__name__}: {first}); "
        "is it a Pointcept/srkd .pth file, completely downloaded?"
    )


def read_state_dict(
    source: str | Path | Mapping[str, object],
) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """The tensors of a Pointcept checkpoint, keys stripped of wrapper prefixes.

    source: a path to a `.pth` file (read on CPU without running anything in it, see
    `load_checkpoint_file`), a full checkpoint dict (its `state_dict` or `model` entry is used), or a
    state_dict itself. Returns (state_dict, source description, globals read as inert stand-ins).
    """
    name = "<state_dict>"
    obj: object = source
    inert: list[str] = []
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist (give the path of model_best.pth)")
        obj, inert = load_checkpoint_file(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {name} holds a {type(obj).__name__}, not a dict of tensors")
    for entry in ("state_dict", "model"):
        if entry in obj and isinstance(obj[entry], Mapping):
            obj = obj[entry]
            break
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not torch.is_tensor(value):
            continue  # e.g. metadata stored beside the tensors
        short = strip_prefixes(str(key))
        if short in state:
            raise CheckpointError(f"checkpoint {name}: two keys map to {short!r} after removing prefixes")
        state[short] = value
    if not state:
        raise CheckpointError(f"checkpoint {name} contains no tensors (expected a Pointcept state_dict)")
    return state, name, inert


def _hints(mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> str:
    keys = {k: (c, m) for k, c, m in mismatched}
    if "seg_head.weight" in keys:
        classes = keys["seg_head.weight"][0][0]
        return f" (the checkpoint has {classes} classes: create the model with num_classes={classes})"
    if "embedding.stem.conv.weight" in keys:
        return f" (the checkpoint expects {keys['embedding.stem.conv.weight'][0][-1]} input channels)"
    return " (is this checkpoint for another preset? compare enc_channels/dec_channels/depths)"


def load_pointcept_checkpoint(
    source: str | Path | Mapping[str, object], model: nn.Module, strict: bool = True
) -> LoadReport:
    """Copy a Pointcept checkpoint's tensors into `model` by name.

    source: path to `model_best.pth` (or any `.pth` with a `state_dict`), a checkpoint dict, or a
    state_dict; keys may carry `module.` / `backbone.` prefixes and the head is `seg_head.*`.
    strict: raise CheckpointError naming the missing keys and the keys whose shapes differ;
    with strict=False the matching tensors are loaded and the report lists the rest.
    Unexpected checkpoint keys never raise; they are listed in the report.
    """
    state, name, inert = read_state_dict(source)
    own = model.state_dict()
    report = LoadReport(source=name, inert=inert)
    to_load: dict[str, torch.Tensor] = {}
    for key, target in own.items():
        if key not in state:
            report.missing.append(key)
        elif tuple(state[key].shape) != tuple(target.shape):
            report.mismatched.append((key, tuple(state[key].shape), tuple(target.shape)))
        else:
            to_load[key] = state[key]
    report.unexpected = sorted(k for k in state if k not in own)
    report.loaded = sorted(to_load)
    if strict and not report.ok:
        parts = []
        if report.missing:
            parts.append(f"missing {len(report.missing)} keys: {_names(report.missing)}")
        if report.mismatched:
            shown = [f"{k} {c} vs model {m}" for k, c, m in report.mismatched]
            parts.append(f"{len(shown)} keys with other shapes: {_names(shown)}{_hints(report.mismatched)}")
        if report.unexpected:
            parts.append(f"unexpected {len(report.unexpected)} keys: {_names(report.unexpected)}")
        raise CheckpointError(f"checkpoint {name} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(to_load, strict=False)
    return report
