"""Build and run one training job (`srkd distill` or `srkd train-teacher`) from a typed config.

This is the glue between the data path, the models, the teacher targets, the loss recipes and
the training loop; the loop itself (srkd.distill.loop) knows none of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srkd.data.collate import PointBatch
from srkd.data.dataset import SceneDataset, make_loader
from srkd.data.scannet import DatasetSpec, get_dataset_spec
from srkd.data.sources import open_scenes
from srkd.data.transforms import (
    CenterShift,
    Compose,
    check_color_norm,
    outdoor_student_transforms,
    outdoor_train_transforms,
    student_transforms,
    train_transforms,
)
from srkd.device import resolve_device
from srkd.distill.config import RunConfig
from srkd.distill.loop import TrainConfig, TrainResult, train
from srkd.distill.state import STATE_FILE, prepare_run_dir
from srkd.distill.targets import (
    CachedTargets,
    CachedViewProvider,
    OnlineTeacher,
    check_cache_data,
    make_loss_fn,
)
from srkd.distill.tensorboard import TensorBoardSink, require_tensorboard
from srkd.errors import CacheError, ConfigError
from srkd.locking import locked_dir
from srkd.losses.combined import TEACHER_TERMS
from srkd.losses.recipes import recipe
from srkd.models import create_model, save_checkpoint
from srkd.scoring import score_model


@dataclass
class Distributed:
    """This process's place in a torchrun job (world 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): nccl on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def _open_cache(cfg: RunConfig):
    from srkd.cache import CacheReader

    reader = CacheReader(cfg.cache)
    spec = reader.spec
    if cfg.dataset is not None and cfg.dataset != spec.dataset:
        raise ConfigError(
            f"--dataset {cfg.dataset} does not match the cache {cfg.cache}, which was built for "
            f"{spec.dataset!r} ({spec.num_classes} classes); drop --dataset or use a matching cache"
        )
    # the cache decides dataset, data root and split unless the user overrides them explicitly;
    # its data root is only a hint (the data is checked by content, scene by scene)
    if cfg.data_root is None and not Path(spec.data_root).is_dir():
        raise ConfigError(
            f"the cache {cfg.cache} was built from {spec.data_root}, which does not exist here; "
            "pass --data-root with the same data at its new location"
        )
    cfg = replace(
        cfg,
        dataset=spec.dataset,
        data_root=cfg.data_root or Path(spec.data_root),
        train_split=spec.split,
    )
    return reader, cfg


def _teacher_targets(cfg: RunConfig, ds: DatasetSpec, device: torch.device, reader):
    """(targets_fn, teacher feature dim) from the open cache `reader` or the online teacher."""
    if cfg.cache is not None and cfg.online_teacher is not None:
        raise ConfigError("give either --cache or --online-teacher, not both")
    if reader is not None:
        if reader.spec.num_classes != ds.num_classes:
            raise ConfigError(
                f"the cache {cfg.cache} holds {reader.spec.num_classes} classes but dataset "
                f"{ds.name!r} has {ds.num_classes}"
            )
        if cfg.targets == "ensemble" and not reader.spec.ensemble:
            raise ConfigError(
                f"--targets ensemble: the cache {cfg.cache} holds no ensemble entry; rebuild it "
                "with several --views and --ensemble, or use --targets view|canonical"
            )
        return CachedTargets(reader, cfg.targets), reader.spec.feature_dim
    if cfg.online_teacher is not None:
        from srkd.models.teacher import TeacherRef, load_teacher

        ref = TeacherRef(cfg.online_teacher, cfg.teacher_model, color_norm=cfg.teacher_color_norm)
        teacher, info = load_teacher(ref, ds, device)
        online = OnlineTeacher(teacher.to(device), amp=cfg.amp, feature_names=ds.feature_names,
                               color_norms=(cfg.color_norm, info.color_norm))
        return online, teacher.feature_dim
    return (lambda batch: None), None


def run(cfg: RunConfig, on_step: Callable[[dict[str, Any]], None] | None = None,
        on_start: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train `cfg.model` as configured; writes `cfg.out`/model.pt (best), model_last.pt,
    train_state.pt (for --resume), log.jsonl and curves.png (srkd.distill.run_log), and with
    cfg.tensorboard the event files in tensorboard/.

    The main process holds a lock on the run folder while it trains (srkd.locking): a second run
    into the same --out (or a re-run racing a leftover process) is refused with one line."""
    with contextlib.ExitStack() as held:
        return _run(cfg, on_step, on_start, held)


def _run(cfg: RunConfig, on_step: Callable[[dict[str, Any]], None] | None,
         on_start: Callable[[dict[str, Any]], None] | None, held: contextlib.ExitStack) -> TrainResult:
    check_color_norm(cfg.color_norm)
    if cfg.tensorboard:  # a missing package is an error now, not after the data is loaded
        require_tensorboard()
    reader = None
    if cfg.cache is not None:
        reader, cfg = _open_cache(cfg)
    elif cfg.dataset is None:
        cfg = replace(cfg, dataset="scannet")
    if cfg.data_root is None:
        raise ConfigError(
            "no data root: pass --data-root DIR or set params.data.root in stages.yaml "
            "(srkd distill also takes it from --cache's metadata)"
        )
    device = resolve_device(cfg.device)
    dist_info = init_distributed(device)
    # --resume with nothing to resume starts a new run (job scripts that always pass --resume
    # work on their first launch); the start info says so
    fresh_resume = cfg.resume and not (Path(cfg.out) / STATE_FILE).is_file()
    cfg = replace(cfg, resume=cfg.resume and not fresh_resume)
    if dist_info.is_main:  # a read-only --out fails before any work
        prepare_run_dir(Path(cfg.out), cfg.resume)
        held.enter_context(locked_dir(Path(cfg.out), "run folder", ConfigError))
        if reader is not None:  # read under its shared lock: never rebuilt while a run reads it
            held.enter_context(locked_dir(Path(cfg.cache), "teacher cache", CacheError, shared=True))
    if device.type == "cuda":
        if dist_info.world > 1 or device.index is None:  # torchrun: one GPU per local rank
            device = torch.device("cuda", dist_info.local_rank if dist_info.world > 1 else 0)
        torch.cuda.set_device(device)
    ds = get_dataset_spec(cfg.dataset)
    if cfg.grid_size is None:
        cfg = replace(cfg, grid_size=ds.grid_size)
    if cfg.optim.weight_decay is None:  # None: the dataset's recipe value
        cfg = replace(cfg, optim=replace(cfg.optim, weight_decay=ds.weight_decay))
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=ds.num_classes, in_channels=ds.feature_dim,
                         **cfg.model_args).to(device)
    rec = recipe(cfg.method, dataset=cfg.dataset, **cfg.loss_overrides)
    needs_teacher = bool(rec.weights.active().keys() & set(TEACHER_TERMS))
    if needs_teacher:
        targets_fn, teacher_dim = _teacher_targets(cfg, ds, device, reader)
    else:  # training alone: never read the cache or run a teacher
        targets_fn, teacher_dim, reader = (lambda batch: None), None, None
    if needs_teacher and teacher_dim is None:
        raise ConfigError(
            f"--method {cfg.method} needs a teacher: pass --cache DIR (or --online-teacher CKPT), "
            "or use --method ce to train the model alone"
        )
    gather_fn = None
    if dist_info.world > 1:
        from srkd.losses.distributed import all_gather_with_grad

        gather_fn = all_gather_with_grad
    loss = rec.build(student_dim=model.feature_dim, teacher_dim=teacher_dim,
                     gather_fn=gather_fn).to(device)

    train_source = open_scenes(ds, cfg.data_root, cfg.train_split)
    if reader is not None:  # fail before training, not in the middle of an epoch
        cached = set(reader.scene_ids)
        missing = [s for s in train_source.scene_ids if s not in cached]
        if missing:
            raise CacheError(
                f"{len(missing)} of {len(train_source.scene_ids)} scenes of {cfg.data_root}/"
                f"{cfg.train_split} are not in the cache {cfg.cache} (e.g. {', '.join(missing[:3])}); "
                "run `srkd cache-teacher` again to add them"
            )
        check_cache_data(reader, train_source, train_source.scene_ids)
    view_mode = reader is not None and cfg.targets == "view"
    chain = _train_chain(cfg, ds, view_mode)
    dataset = SceneDataset(
        train_source, chain, grid_size=cfg.grid_size, feature_names=ds.feature_names,
        seed=cfg.seed, repeats=cfg.repeats,
        # without view replay the provider only checks each scene against the cache
        view_provider=(CachedViewProvider(reader, replay=view_mode, canonical_only=not cfg.augment)
                       if reader is not None else None),
    )
    sampler = None
    if dist_info.world > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, dist_info.world, dist_info.rank, shuffle=True,
                                     seed=cfg.seed, drop_last=True)
    loader = make_loader(dataset, cfg.batch_size, workers=cfg.workers, shuffle=True,
                         seed=cfg.seed, mix3d_prob=cfg.mix3d_prob if cfg.augment else 0.0,
                         drop_last=True, sampler=sampler)
    # Each new DataLoader iterator draws its base seed from a generator; by default that is
    # torch's global RNG, which also drives DropPath and relation sampling. A run resumed
    # mid-epoch creates its iterator after restoring the RNG, an uninterrupted one before the
    # epoch's steps, so the global stream would shift. A private generator keeps the two equal
    # (samples draw from their own per-item numpy streams, so nothing else depends on it).
    loader.generator = torch.Generator().manual_seed(cfg.seed)
    steps = len(loader)
    if steps == 0:
        raise ConfigError(
            f"split {cfg.train_split!r} has {len(dataset)} samples per epoch, fewer than "
            f"--batch-size {cfg.batch_size} x {dist_info.world} process(es); lower the batch size"
        )

    def batches_for_epoch(epoch: int, first: int) -> Iterator[PointBatch]:
        loader.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i >= first:  # a resumed run skips the batches it already trained on
                yield batch

    evaluate_fn = None
    if cfg.val_split:
        val_source = open_scenes(ds, cfg.data_root, cfg.val_split)
        ids = val_source.scene_ids[: cfg.val_max_scenes] if cfg.val_max_scenes else val_source.scene_ids
        val_scenes = [val_source.load(s) for s in ids]

        def evaluate_fn(m: nn.Module) -> dict[str, Any]:
            scores = score_model(m, val_scenes, ds.num_classes, cfg.grid_size,
                                       ds.feature_names, device, color_norm=cfg.color_norm,
                                       domain=ds.domain)
            return {"mIoU": scores.miou, "mAcc": scores.macc, "allAcc": scores.allacc,
                    "scenes": len(val_scenes)}

    train_params = cfg.train_params()
    train_params.update(recipe=rec.as_dict(), dataset=cfg.dataset,
                        data_root=str(Path(cfg.data_root).resolve()),
                        grid_size=cfg.grid_size, world_size=dist_info.world)
    if reader is not None:
        train_params["cache_fingerprint"] = reader.fingerprint

    def save_model(path: Path, m: nn.Module, meta: dict[str, Any]) -> None:
        save_checkpoint(path, m, class_names=ds.class_names, feature_names=ds.feature_names,
                        color_norm=cfg.color_norm, train_params=train_params, extra=_plain(meta))

    step_loss: nn.Module = loss
    if dist_info.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                    find_unused_parameters=False)
        if any(p.requires_grad for p in loss.parameters()):
            # the FeatMSE projection trains with the student: without DDP its gradients would
            # stay per rank and every rank would end up with a different projection
            # (device_ids None: its inputs are already on the device, leave them untouched)
            step_loss = nn.parallel.DistributedDataParallel(loss, device_ids=None)
    tcfg = TrainConfig(epochs=cfg.epochs, steps_per_epoch=steps, optim=cfg.optim, amp=cfg.amp,
                       eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every,
                       seed=cfg.seed)
    if on_start:
        on_start({"steps": tcfg.total_steps, "steps_per_epoch": steps, "device": str(device),
                  "world": dist_info.world, "dataset": cfg.dataset, "data_root": str(cfg.data_root),
                  "losses": list(rec.weights.active()),
                  "resume_note": (f"--resume: no {STATE_FILE} in {cfg.out}, starting a new run"
                                  if fresh_resume else None)})
    return train(
        model, make_loss_fn(step_loss), batches_for_epoch, tcfg, Path(cfg.out), save_model,
        targets_fn=targets_fn, evaluate_fn=evaluate_fn if dist_info.is_main else None,
        extra_modules=[loss], resume=cfg.resume, on_step=on_step, device=device,
        is_main=dist_info.is_main, run_info=_resume_identity(train_params),
        log_sinks=[TensorBoardSink(Path(cfg.out))] if cfg.tensorboard and dist_info.is_main else [],
    )


def _train_chain(cfg: RunConfig, ds: DatasetSpec, view_mode: bool) -> Compose:
    """The training chain of `ds.domain`; with `view_mode` only the part after a replayed view.
    Without augmentation: the scene as stored (indoors centre-shifted like every view and like
    validation), grid-sampled."""
    assert cfg.grid_size is not None
    if ds.domain == "outdoor":
        if not cfg.augment:
            return outdoor_student_transforms(cfg.grid_size, jitter=(0.0, 0.0))
        if view_mode:
            return outdoor_student_transforms(cfg.grid_size)
        return outdoor_train_transforms(cfg.grid_size)
    if not cfg.augment:
        chain = student_transforms(cfg.grid_size, cfg.max_points, dropout=(0.0, 0.0),
                                   jitter=(0.0, 0.0), elastic=False, chromatic=False,
                                   color_norm=cfg.color_norm)
        if not view_mode:  # a replayed view 0 already starts with the centre shift
            chain = Compose([CenterShift(apply_z=True)]) + chain
        return chain
    if view_mode:
        return student_transforms(cfg.grid_size, cfg.max_points, color_norm=cfg.color_norm)
    return train_transforms(cfg.grid_size, cfg.max_points, color_norm=cfg.color_norm)


RESUMABLE_CHANGES = ("out", "resume", "device", "workers", "eval_every", "checkpoint_every",
                     "cache", "data_root", "tensorboard")
"""RunConfig fields a `--resume` may change: where things run and files lie, not what is
trained (a moved cache is still matched by its fingerprint, moved data by the cache's check)."""


def _resume_identity(train_params: dict[str, Any]) -> dict[str, Any]:
    """What a resumed run must share with the run that saved train_state.pt: every recorded
    train parameter (model and args, data, loss recipe, optimiser, epochs, ...) but
    RESUMABLE_CHANGES, as plain values."""
    return _plain({k: v for k, v in train_params.items() if k not in RESUMABLE_CHANGES})


def _plain(value: Any) -> Any:
    """Nested dicts/lists of plain values only (checkpoint `extra` must load weights_only)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    return float(value)


