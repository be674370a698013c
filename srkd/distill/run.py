"""Build and run one training job (`srkd distill` or `srkd train-teacher`) from a typed config.

This is the glue, read top to bottom in `_run`: settings -> run folder -> model -> teacher
targets -> loss -> data -> validation -> the loop. Each piece lives in its own module:

    teacher.py  the cache (opened, checked) or the online teacher     targets.py  per-batch targets
    loss.py     recipe -> DistillLoss -> the loop's loss function     data.py     chains, dataset, loader
    model.py    the model, train_params, checkpoints, resume identity ddp.py      torchrun / DDP
The loop itself (srkd.distill.loop) knows none of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srkd.data.labels import LimitedLabels
from srkd.data.registry import DatasetSpec, dataset_default, get_dataset_spec
from srkd.data.sources import open_scenes
from srkd.data.transforms import check_color_norm
from srkd.device import resolve_device
from srkd.distill.config import RunConfig
from srkd.distill.data import train_batches, train_dataset
from srkd.distill.ddp import (
    Distributed,
    feature_gather,
    init_distributed,
    rank_device,
    wrap_ddp,
)
from srkd.distill.loop import EvaluateFn, TrainConfig, TrainResult, train
from srkd.distill.loss import build_loss, make_loss_fn, needs_teacher, run_recipe
from srkd.distill.model import (
    build_model,
    checkpoint_writer,
    resume_identity,
    run_train_params,
)
from srkd.distill.state import STATE_FILE, prepare_run_dir
from srkd.distill.teacher import (
    check_cache_covers,
    no_targets,
    open_cache,
    teacher_targets,
)
from srkd.distill.tensorboard import TensorBoardSink, require_tensorboard
from srkd.errors import CacheError, ConfigError
from srkd.locking import locked_dir
from srkd.scoring import score_model
from srkd.types import DEFAULT_DATASET

StepHook = Callable[[dict[str, Any]], None]


def run(cfg: RunConfig, on_step: StepHook | None = None, on_start: StepHook | None = None) -> TrainResult:
    """Train `cfg.model` as configured; writes `cfg.out`/model.pt (best), model_last.pt,
    train_state.pt (for --resume), log.jsonl and curves.png (srkd.distill.run_log), and with
    cfg.tensorboard the event files in tensorboard/.

    on_start gets {steps, steps_per_epoch, device, world, dataset, data_root, losses,
    resume_note} once the run is set up; on_step every step's log row (srkd.distill.run_log).

    The main process holds a lock on the run folder while it trains (srkd.locking): a second run
    into the same --out (or a re-run racing a leftover process) is refused with one line."""
    with contextlib.ExitStack() as held:
        return _run(cfg, on_step, on_start, held)


def _run(cfg: RunConfig, on_step: StepHook | None, on_start: StepHook | None,
         held: contextlib.ExitStack) -> TrainResult:
    cfg, reader = _settings(cfg)
    device = resolve_device(cfg.device)
    dist_info = init_distributed(device)
    # --resume with nothing to resume starts a new run (job scripts that always pass --resume
    # work on their first launch); the start info says so
    fresh_resume = cfg.resume and not (Path(cfg.out) / STATE_FILE).is_file()
    cfg = replace(cfg, resume=cfg.resume and not fresh_resume)
    if dist_info.is_main:  # a read-only --out fails before any work
        _hold_folders(cfg, reader, held)
    device = rank_device(device, dist_info)
    ds = get_dataset_spec(cfg.dataset)
    cfg = _dataset_defaults(cfg, ds)
    torch.manual_seed(cfg.seed)  # the order below fixes what the seed initialises
    model = build_model(cfg, ds, device)
    rec = run_recipe(cfg)
    if needs_teacher(rec) or cfg.targets == "labels":
        targets_fn, teacher_dim = teacher_targets(cfg, ds, device, reader)
    else:  # training alone: never read the cache or run a teacher
        targets_fn, teacher_dim, reader = no_targets, None, None
    loss = build_loss(rec, cfg, model.feature_dim, teacher_dim, feature_gather(dist_info)).to(device)
    budget = cfg.label_budget()
    # with a label budget, scenes without a label file are welcome: the teacher labels them
    source = open_scenes(ds, cfg.data_root, cfg.train_split, require_labels=not budget.active)
    if reader is not None:  # fail before training, not in the middle of an epoch
        check_cache_covers(reader, source, cfg)
    labels = LimitedLabels(source.scene_ids, budget) if budget.active else None
    dataset = train_dataset(cfg, ds, source, reader, labels)
    batches_for_epoch, steps = train_batches(cfg, dataset, dist_info, pin_memory=device.type == "cuda")
    evaluate_fn = _validation_fn(cfg, ds, device)
    train_params = run_train_params(cfg, rec, dist_info.world,
                                    reader.fingerprint if reader is not None else None)
    model, step_loss = wrap_ddp(model, loss, device, dist_info)
    tcfg = TrainConfig(epochs=cfg.epochs, steps_per_epoch=steps, optim=cfg.optim, amp=cfg.amp,
                       eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every,
                       seed=cfg.seed)
    if on_start:
        on_start(_start_info(cfg, tcfg, device, dist_info, list(rec.weights.active()), fresh_resume,
                             budget.describe()))
    return train(
        model, make_loss_fn(step_loss), batches_for_epoch, tcfg, Path(cfg.out),
        checkpoint_writer(cfg, ds, train_params), targets_fn=targets_fn,
        evaluate_fn=evaluate_fn if dist_info.is_main else None, extra_modules=[loss],
        resume=cfg.resume, on_step=on_step, device=device, is_main=dist_info.is_main,
        run_info=resume_identity(train_params),
        log_sinks=[TensorBoardSink(Path(cfg.out))] if cfg.tensorboard and dist_info.is_main else [],
    )


def _settings(cfg: RunConfig) -> tuple[RunConfig, Any]:
    """(cfg with dataset and data root resolved, the open cache reader or None); every check
    that needs no data or model runs here, before any work."""
    check_color_norm(cfg.color_norm)
    if cfg.tensorboard:  # a missing package is an error now, not after the data is loaded
        require_tensorboard()
    reader = None
    if cfg.cache is not None:
        reader, cfg = open_cache(cfg)
    elif cfg.dataset is None:
        cfg = replace(cfg, dataset=DEFAULT_DATASET)
    if cfg.data_root is None:
        raise ConfigError(
            "no data root: pass --data-root DIR or set params.data.root in stages.yaml "
            "(srkd distill also takes it from --cache's metadata)"
        )
    return cfg, reader


def _hold_folders(cfg: RunConfig, reader: Any, held: contextlib.ExitStack) -> None:
    """Check the run folder and lock it for this run; read the cache under its shared lock, so
    it is never rebuilt while the run reads it (main process)."""
    prepare_run_dir(Path(cfg.out), cfg.resume)
    held.enter_context(locked_dir(Path(cfg.out), "run folder", ConfigError))
    if reader is not None:
        held.enter_context(locked_dir(Path(cfg.cache), "teacher cache", CacheError, shared=True))


def _dataset_defaults(cfg: RunConfig, ds: DatasetSpec) -> RunConfig:
    """cfg with the dataset's grid size and weight decay where the config leaves them None."""
    optim = replace(cfg.optim, weight_decay=dataset_default("weight_decay", cfg.optim.weight_decay, ds))
    return replace(cfg, grid_size=dataset_default("grid_size", cfg.grid_size, ds), optim=optim)


def _validation_fn(cfg: RunConfig, ds: DatasetSpec, device: torch.device) -> EvaluateFn | None:
    """Validation after an epoch: the first cfg.val_max_scenes scenes of cfg.val_split (all when
    None), scored over every original point; None without a validation split or with
    eval_every 0 (validation never runs: its scenes are not loaded)."""
    if not cfg.val_split or cfg.eval_every <= 0:
        return None
    val_source = open_scenes(ds, cfg.data_root, cfg.val_split)
    ids = val_source.scene_ids[: cfg.val_max_scenes] if cfg.val_max_scenes else val_source.scene_ids
    val_scenes = [val_source.load(s) for s in ids]

    def evaluate_fn(m: nn.Module) -> dict[str, Any]:
        scores = score_model(m, val_scenes, ds.num_classes, cfg.grid_size, ds.feature_names,
                             device, color_norm=cfg.color_norm, domain=ds.domain)
        return {"mIoU": scores.miou, "mAcc": scores.macc, "allAcc": scores.allacc,
                "scenes": len(val_scenes)}

    return evaluate_fn


def _start_info(cfg: RunConfig, tcfg: TrainConfig, device: torch.device, dist_info: Distributed,
                losses: list[str], fresh_resume: bool, labels: str) -> dict[str, Any]:
    """What on_start reports about the run about to train."""
    return {"steps": tcfg.total_steps, "steps_per_epoch": tcfg.steps_per_epoch,
            "device": str(device), "world": dist_info.world, "dataset": cfg.dataset,
            "data_root": str(cfg.data_root), "losses": losses, "labels": labels,
            "resume_note": (f"--resume: no {STATE_FILE} in {cfg.out}, starting a new run"
                            if fresh_resume else None)}
