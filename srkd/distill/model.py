"""The model of a run and what its files record about the run: the student built from the
config, the train parameters every checkpoint carries, the checkpoint writer the loop calls, and
the identity a --resume must match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from srkd.data.scannet import DatasetSpec
from srkd.distill.config import RunConfig
from srkd.distill.loop import SaveFn
from srkd.io import to_plain
from srkd.losses.recipes import Recipe
from srkd.models import create_model, save_checkpoint

RESUMABLE_CHANGES = ("out", "resume", "device", "workers", "eval_every", "checkpoint_every",
                     "cache", "data_root", "tensorboard")
"""RunConfig fields a `--resume` may change: where things run and files lie, not what is
trained (a moved cache is still matched by its fingerprint, moved data by the cache's check)."""


def build_model(cfg: RunConfig, ds: DatasetSpec, device: torch.device) -> nn.Module:
    """The model to train: `cfg.model` for the dataset's classes and input channels, on `device`,
    initialised from the global torch RNG (seeded by the caller)."""
    return create_model(cfg.model, num_classes=ds.num_classes, in_channels=ds.feature_dim,
                        **cfg.model_args).to(device)


def run_train_params(cfg: RunConfig, rec: Recipe, world: int,
                     cache_fingerprint: str | None) -> dict[str, Any]:
    """What every checkpoint of the run records as train_params: the RunConfig's values plus
    the loss recipe, the dataset, the resolved data root, the grid size, the number of
    processes and (with a cache) the cache's fingerprint."""
    train_params = cfg.train_params()
    train_params.update(recipe=rec.as_dict(), dataset=cfg.dataset,
                        data_root=str(Path(cfg.data_root).resolve()),
                        grid_size=cfg.grid_size, world_size=world)
    if cache_fingerprint is not None:
        train_params["cache_fingerprint"] = cache_fingerprint
    return train_params


def checkpoint_writer(cfg: RunConfig, ds: DatasetSpec, train_params: dict[str, Any]) -> SaveFn:
    """The loop's `save_model`: a self-describing checkpoint (srkd.models.save_checkpoint) with
    the dataset's classes and features, the run's colour normalisation and train_params, and
    the loop's metadata (step, validation metrics, lr schedule) as `extra`."""

    def save_model(path: Path, m: nn.Module, meta: dict[str, Any]) -> None:
        save_checkpoint(path, m, class_names=ds.class_names, feature_names=ds.feature_names,
                        color_norm=cfg.color_norm, train_params=train_params,
                        extra=to_plain(meta, lenient=True))

    return save_model


def resume_identity(train_params: dict[str, Any]) -> dict[str, Any]:
    """What a resumed run must share with the run that saved train_state.pt: every recorded
    train parameter (model and args, data, loss recipe, optimiser, epochs, ...) but
    RESUMABLE_CHANGES, as plain values (tuples as lists, numbers as int or float)."""
    kept = {k: v for k, v in train_params.items() if k not in RESUMABLE_CHANGES}
    return to_plain(kept, lenient=True)
