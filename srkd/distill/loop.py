"""The training loop shared by `srkd distill` and `srkd train-teacher` (read it top to bottom).

Everything that differs between the two (where teacher targets come from, which loss terms are
on, how validation scores a model, how a checkpoint describes itself) is passed in as a function,
so this module knows nothing about caches, teachers or datasets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srkd.data.collate import PointBatch
from srkd.distill.config import OptimConfig
from srkd.distill.run_log import LOG_FILE, LogSink, RunLog
from srkd.distill.state import (
    STATE_FILE,
    Segment,
    check_state_fits,
    load_state,
    prepare_run_dir,
    read_state,
    resume_schedule,
    save_model_file,
    save_state,
)
from srkd.errors import ConfigError
from srkd.models.base import ModelOutput

__all__ = ["LOG_FILE", "STATE_FILE", "TrainConfig", "TrainResult", "build_optimizer",
           "build_scheduler", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """Loop settings. `eval_every` is in epochs (0 = never), `checkpoint_every` in steps."""

    epochs: int
    steps_per_epoch: int
    optim: OptimConfig = field(default_factory=OptimConfig)
    amp: bool = True
    eval_every: int = 1
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.steps_per_epoch < 1:
            raise ConfigError(
                f"need epochs >= 1 and at least one batch per epoch, got epochs={self.epochs}, "
                f"steps_per_epoch={self.steps_per_epoch} (is the split smaller than the batch?)"
            )
        if self.checkpoint_every < 1 or self.eval_every < 0:
            raise ConfigError(
                f"need checkpoint_every >= 1 (steps) and eval_every >= 0 (epochs, 0 = never), got "
                f"{self.checkpoint_every} and {self.eval_every}"
            )

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass
class TrainResult:
    """What the loop ended with."""

    step: int
    best_metric: float | None
    last_metrics: dict[str, Any]
    lr_schedule: list[list[int]] = field(default_factory=list)
    """[[first step, end step], ...]: the one-cycle segments (several after an extension)."""


LossFn = Callable[[ModelOutput, PointBatch, ModelOutput | None], tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""(student output, batch, teacher targets or None) -> (total loss, {term name: value})."""
SaveFn = Callable[[Path, nn.Module, dict[str, Any]], None]
"""(path, model, metadata) -> writes a self-describing checkpoint."""
EvaluateFn = Callable[[nn.Module], dict[str, Any]]
"""model -> validation metrics ({"mIoU": float, ...})."""


def build_optimizer(modules: list[nn.Module], cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with two groups: block parameters at lr * block_lr_scale, the rest at lr."""
    blocks, rest = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if p.requires_grad:
                (blocks if cfg.block_keyword in name else rest).append(p)
    groups = [{"params": rest, "lr": cfg.lr}]
    if blocks:
        groups.append({"params": blocks, "lr": cfg.lr * cfg.block_lr_scale})
    if cfg.weight_decay is None:
        raise ConfigError("OptimConfig.weight_decay is None: resolve it from the dataset first "
                          "(srkd.distill.run does) or give a number")
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int,
                    extension: bool = False) -> torch.optim.lr_scheduler.OneCycleLR:
    """One one-cycle segment (cosine) of `total_steps`, stepped once per iteration, peaking at
    each group's own lr (Smith & Topin 2019, "Super-convergence", arXiv:1708.07120).

    The run's first segment warms up from peak / div_factor to the peak over pct_start of its
    steps, then anneals to the floor peak / (div_factor * final_div_factor). An `extension`
    segment (a finished run resumed with more epochs) starts at that floor, where the run ended,
    and anneals back to it: a warm restart (Loshchilov & Hutter 2017, "SGDR", arXiv:1608.03983).

    torch's OneCycleLR divides by (pct_start * total_steps - 1), so segments shorter than
    1 / pct_start + 1 steps get a schedule of that length (they stop before it ends).
    """
    if not 0.0 < cfg.pct_start < 1.0:
        raise ConfigError(f"pct_start must be in (0, 1), got {cfg.pct_start}")
    div, final = cfg.div_factor, cfg.final_div_factor
    if extension:
        div, final = div * final, 1.0
    return torch.optim.lr_scheduler.OneCycleLR(
        opt,
        # OneCycleLR records each group's peak as max_lr, and the optimizer's state keeps it:
        # after a resume the groups' lr is wherever the schedule left it, not the peak
        max_lr=[g.get("max_lr", g["lr"]) for g in opt.param_groups],
        total_steps=max(total_steps, math.floor(1.0 / cfg.pct_start) + 1),
        pct_start=cfg.pct_start,
        anneal_strategy="cos",
        div_factor=div,
        final_div_factor=final,
    )


def train(
    model: nn.Module,
    loss_fn: LossFn,
    batches_for_epoch: Callable[[int, int], Iterable[PointBatch]],
    cfg: TrainConfig,
    out_dir: Path,
    save_model: SaveFn,
    targets_fn: Callable[[PointBatch], ModelOutput | None] = lambda batch: None,
    evaluate_fn: EvaluateFn | None = None,
    extra_modules: list[nn.Module] | None = None,
    resume: bool = False,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    device: torch.device | str = "cpu",
    is_main: bool = True,
    run_info: Mapping[str, Any] | None = None,
    log_sinks: Sequence[LogSink] = (),
) -> TrainResult:
    """Train `model` for cfg.epochs; returns the final step and the best validation mIoU.

    Args:
        batches_for_epoch: (epoch, first_batch) -> the epoch's batches from `first_batch` on;
            must be deterministic in (epoch, batch position) so a resumed run sees the same data.
        save_model: writes a self-describing checkpoint (model.pt = best by val mIoU, or the last
            one when there is no validation; model_last.pt = last).
        targets_fn: batch (already on `device`) -> teacher targets (None: no teacher), called
            without grad on the step's critical path; a cached run's targets travel in the batch
            (gathered by the DataLoader workers), so its targets_fn only takes them
            (srkd.distill.targets.batch_targets).
        extra_modules: trainable modules besides the model (e.g. the FeatMSE projection).
        resume: continue from out_dir/train_state.pt, which must exist and belong to this run; a
            finished run resumed with more epochs is extended (train_state.resume_schedule).
        on_step: called with every step's log row (srkd.distill.run_log), on every process.
        is_main: only the main process (rank 0) writes files.
        run_info: plain values that identify the run (model name and args, data, loss, ...);
            saved in train_state.pt, and a resume refuses a state saved with other values.
        log_sinks: mirrors of log.jsonl (e.g. srkd.distill.tensorboard.TensorBoardSink), main process.

    Raises CheckpointError when the state to resume is unreadable or belongs to another run, or
    when a file of the run cannot be written (disk full, ...; every file is replaced atomically,
    so the last complete train state stays); ConfigError when out_dir cannot hold the run.
    """
    device = torch.device(device)
    if is_main:
        prepare_run_dir(out_dir, resume)
    loop = _Loop.create(cfg, model, extra_modules or [], out_dir / STATE_FILE, device, run_info)
    loop.start(resume)
    log = RunLog(out_dir, log_sinks, enabled=is_main)
    log.open(resume, loop.step)
    if not resume and is_main:  # a fresh run replaces whatever an earlier run left to resume from
        loop.state_path.unlink(missing_ok=True)
    try:
        last_metrics = loop.run(loss_fn, batches_for_epoch, targets_fn, evaluate_fn, save_model,
                                log, on_step)
        if is_main:
            loop.save_final(save_model, last_metrics, validated=evaluate_fn is not None)
    except BaseException:
        log.close(failed=True)  # curves.png of what the run did (errors here stay hidden)
        raise
    log.close()
    return TrainResult(step=loop.step, best_metric=loop.best, last_metrics=last_metrics,
                       lr_schedule=loop.schedule_record)


class _Loop:
    """The loop's moving parts (model, optimizer, schedule, step, best) and what it does with them.

    The lr schedule is a list of one-cycle segments [first step, end step) (one unless the run
    was extended; train_state.resume_schedule); `sched` is the current segment's scheduler."""

    def __init__(self, cfg: TrainConfig, model: nn.Module, core: nn.Module, extra: list[nn.Module],
                 opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, identity: dict[str, Any],
                 state_path: Path, device: torch.device, use_amp: bool) -> None:
        self.cfg, self.model, self.core, self.extra = cfg, model, core, extra
        self.opt, self.scaler, self.identity, self.state_path = opt, scaler, identity, state_path
        self.device, self.use_amp = device, use_amp
        self.step, self.best = 0, None
        self.segments: list[Segment] = [(0, cfg.total_steps)]
        self.segment = 0
        self.sched: Any = None

    @classmethod
    def create(cls, cfg: TrainConfig, model: nn.Module, extra: list[nn.Module], state_path: Path,
               device: torch.device, run_info: Mapping[str, Any] | None) -> _Loop:
        """The loop of `model` (possibly DDP-wrapped) and the `extra` trainable modules: AdamW
        over both, a gradient scaler (AMP on CUDA only), the run's identity for train_state.pt."""
        core = model.module if hasattr(model, "module") else model  # unwrap DDP for saving
        opt = build_optimizer([model, *extra], cfg.optim)
        use_amp = cfg.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        identity = {**(run_info or {}), "epochs": cfg.epochs, "steps_per_epoch": cfg.steps_per_epoch}
        return cls(cfg, model, core, extra, opt, scaler, identity, state_path, device, use_amp)

    @property
    def schedule_record(self) -> list[list[int]]:
        """The lr schedule's segments as plain lists (checkpoint metadata)."""
        return [[a, b] for a, b in self.segments]

    def start(self, resume: bool) -> None:
        """Fresh: seed and the run's one-cycle. Resume: the saved state, with its schedule (plus
        a new segment when a finished run is given more epochs)."""
        if not resume:
            torch.manual_seed(self.cfg.seed)
            self.sched = build_scheduler(self.opt, self.cfg.optim, self.cfg.total_steps)
            return
        state = read_state(self.state_path)
        check_state_fits(state, self.state_path, self.identity)
        self.segments = resume_schedule(state, self.state_path, self.cfg.total_steps,
                                        self.cfg.steps_per_epoch)
        saved = int(state["step"])  # the saved scheduler is the one of the segment `saved` is in
        self.segment = max(i for i, (a, _) in enumerate(self.segments) if a < saved or i == 0)
        self.sched = self._scheduler(self.segment)
        self.step, self.best = load_state(state, self.state_path, self.core, self.extra, self.opt,
                                          self.sched, self.scaler)

    def _scheduler(self, index: int) -> torch.optim.lr_scheduler.OneCycleLR:
        first, end = self.segments[index]
        return build_scheduler(self.opt, self.cfg.optim, end - first, extension=index > 0)

    def run(self, loss_fn: LossFn, batches_for_epoch: Callable[[int, int], Iterable[PointBatch]],
            targets_fn: Callable[[PointBatch], ModelOutput | None], evaluate_fn: EvaluateFn | None,
            save_model: SaveFn, log: RunLog, on_step: Callable[[dict[str, Any]], None] | None
            ) -> dict[str, Any]:
        """Train from self.step to the end; returns the last validation's metrics ({} if none)."""
        cfg, last_metrics = self.cfg, {}
        while self.step < cfg.total_steps:
            if self.step >= self.segments[self.segment][1]:  # an extension starts here
                self.segment += 1
                self.sched = self._scheduler(self.segment)
            epoch, first = divmod(self.step, cfg.steps_per_epoch)
            self.model.train()
            for batch in batches_for_epoch(epoch, first):
                record = self._train_step(batch, loss_fn, targets_fn, epoch, log)
                if on_step:
                    on_step(record)
                epoch_end = self.step % cfg.steps_per_epoch == 0 or self.step >= cfg.total_steps
                # at an evaluated epoch end the state is saved after validation instead, so that
                # a run killed during validation validates again when resumed
                due = self.step % cfg.checkpoint_every == 0 or self.step == cfg.total_steps
                if log.enabled and due and not (epoch_end and _evaluates(cfg, self.step, evaluate_fn)):
                    self.save_state()
                if epoch_end:
                    break
            if _evaluates(cfg, self.step, evaluate_fn):
                last_metrics = self._validate(evaluate_fn, save_model, log)
        return last_metrics

    def _train_step(self, batch: PointBatch, loss_fn: LossFn,
                    targets_fn: Callable[[PointBatch], ModelOutput | None], epoch: int,
                    log: RunLog) -> dict[str, Any]:
        """One optimiser step on `batch` (of 0-based `epoch`); returns its log row."""
        t0 = time.perf_counter()
        batch = batch.to(self.device, non_blocking=True)
        with torch.no_grad():
            targets = targets_fn(batch)  # the teacher side never gets gradients
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            out = self.model(batch)
            loss, terms = loss_fn(out, batch, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {self.step}: {terms}")
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]],
                                     self.cfg.optim.grad_clip)
        lr = self.opt.param_groups[0]["lr"]  # the rate this step used
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self.step += 1
        return log.train_row(self.step, epoch + 1, loss.item(), terms, lr, len(batch.coord),
                             time.perf_counter() - t0)

    def _validate(self, evaluate_fn: EvaluateFn, save_model: SaveFn, log: RunLog) -> dict[str, Any]:
        """Score the model after an epoch; model.pt is replaced when it is the best so far."""
        t0 = time.perf_counter()
        self.model.eval()
        metrics = evaluate_fn(self.core)
        miou = float(metrics["mIoU"])
        log.val_row(self.step, self.step // self.cfg.steps_per_epoch, metrics,
                    time.perf_counter() - t0)
        if self.best is None or miou > self.best:
            self.best = miou
            if log.enabled:
                meta = {"step": self.step, "val": metrics, "lr_schedule": self.schedule_record}
                save_model_file(save_model, self.state_path.parent / "model.pt", self.core, meta)
        if log.enabled:  # persist `best` so a resumed run does not overwrite a better model
            self.save_state()
        return metrics

    def save_final(self, save_model: SaveFn, last_metrics: dict[str, Any], validated: bool) -> None:
        """model_last.pt at the end of training; also model.pt when no validation chose a best."""
        meta = {"step": self.step, "val": last_metrics, "lr_schedule": self.schedule_record}
        out_dir = self.state_path.parent
        save_model_file(save_model, out_dir / "model_last.pt", self.core, meta)
        if not validated or self.best is None:
            save_model_file(save_model, out_dir / "model.pt", self.core, meta)

    def save_state(self) -> None:
        """train_state.pt of this moment (atomic)."""
        save_state(self.state_path, self.core, self.extra, self.opt, self.sched, self.scaler,
                   self.step, self.best, self.identity, self.segments)


def _evaluates(cfg: TrainConfig, step: int, evaluate_fn: Callable | None) -> bool:
    """Whether the loop validates after the epoch that ends at `step`."""
    epoch_done = step // cfg.steps_per_epoch
    return bool(evaluate_fn) and bool(cfg.eval_every) and (
        epoch_done % cfg.eval_every == 0 or step >= cfg.total_steps
    )
