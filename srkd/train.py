"""The training loop shared by `srkd distill` and `srkd train-teacher` (read it top to bottom).

Everything that differs between the two (where teacher targets come from, which loss terms are
on, how validation scores a model, how a checkpoint describes itself) is passed in as a function,
so this module knows nothing about caches, teachers or datasets.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srkd.data.collate import PointBatch
from srkd.errors import ConfigError
from srkd.models.base import ModelOutput
from srkd.train_state import (
    STATE_FILE,
    atomic_write,
    check_state_fits,
    load_state,
    prepare_run_dir,
    read_state,
    save_model_file,
    save_state,
    write_error,
)

LOG_FILE = "log.jsonl"


@dataclass(frozen=True)
class OptimConfig:
    """AdamW + OneCycle as released (METHOD.md "Training recipe"); parameters whose name contains
    `block_keyword` (the transformer / residual blocks) train at `block_lr_scale` x lr."""

    lr: float = 0.002
    weight_decay: float = 0.05
    block_lr_scale: float = 0.1
    block_keyword: str = "block"
    pct_start: float = 0.5
    div_factor: float = 10.0
    final_div_factor: float = 1000.0
    grad_clip: float | None = None


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


LossFn = Callable[[ModelOutput, PointBatch, ModelOutput | None], tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""(student output, batch, teacher targets or None) -> (total loss, {term name: value})."""


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
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int):
    """OneCycle (cosine), stepped once per iteration, peak = each group's own lr.

    torch's OneCycleLR divides by (pct_start * total_steps - 1), so runs shorter than
    1 / pct_start + 1 steps get a schedule of that length (they stop before it ends).
    """
    if not 0.0 < cfg.pct_start < 1.0:
        raise ConfigError(f"pct_start must be in (0, 1), got {cfg.pct_start}")
    return torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=[g["lr"] for g in opt.param_groups],
        total_steps=max(total_steps, math.floor(1.0 / cfg.pct_start) + 1),
        pct_start=cfg.pct_start,
        anneal_strategy="cos",
        div_factor=cfg.div_factor,
        final_div_factor=cfg.final_div_factor,
    )


def train(
    model: nn.Module,
    loss_fn: LossFn,
    batches_for_epoch: Callable[[int, int], Iterable[PointBatch]],
    cfg: TrainConfig,
    out_dir: Path,
    save_model: Callable[[Path, nn.Module, dict[str, Any]], None],
    targets_fn: Callable[[PointBatch], ModelOutput | None] = lambda batch: None,
    evaluate_fn: Callable[[nn.Module], dict[str, Any]] | None = None,
    extra_modules: list[nn.Module] | None = None,
    resume: bool = False,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    device: torch.device | str = "cpu",
    is_main: bool = True,
    run_info: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train `model` for cfg.epochs; returns the final step and the best validation mIoU.

    Args:
        batches_for_epoch: (epoch, first_batch) -> the epoch's batches from `first_batch` on;
            must be deterministic in (epoch, batch position) so a resumed run sees the same data.
        save_model: writes a self-describing checkpoint (model.pt = best by val mIoU, or the last
            one when there is no validation; model_last.pt = last).
        extra_modules: trainable modules besides the model (e.g. the FeatMSE projection).
        resume: continue from out_dir/train_state.pt, which must exist and belong to this run.
        is_main: only the main process (rank 0) writes files.
        run_info: plain values that identify the run (model name and args, data, loss, ...);
            saved in train_state.pt, and a resume refuses a state saved with other values.

    Raises CheckpointError when the state to resume is unreadable or belongs to another run, or
    when a file of the run cannot be written (disk full, ...; every file is replaced atomically,
    so the last complete train state stays); ConfigError when out_dir cannot hold the run.
    """
    device = torch.device(device)
    if is_main:
        prepare_run_dir(out_dir, resume)
    extra = extra_modules or []
    core = model.module if hasattr(model, "module") else model  # unwrap DDP for saving
    opt = build_optimizer([model, *extra], cfg.optim)
    sched = build_scheduler(opt, cfg.optim, cfg.total_steps)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step, best, last_metrics = 0, None, {}
    state_path = out_dir / STATE_FILE
    identity = {**(run_info or {}), "epochs": cfg.epochs, "steps_per_epoch": cfg.steps_per_epoch}
    if resume:
        state = read_state(state_path)
        check_state_fits(state, state_path, identity)
        step, best = load_state(state, state_path, core, extra, opt, sched, scaler)
        if is_main:  # the steps after the checkpoint are trained again: log them once
            _truncate_log(out_dir, step)
    else:  # a fresh run replaces whatever an earlier run left to resume from
        torch.manual_seed(cfg.seed)
        if is_main:
            (out_dir / LOG_FILE).unlink(missing_ok=True)
            state_path.unlink(missing_ok=True)

    while step < cfg.total_steps:
        epoch, first = divmod(step, cfg.steps_per_epoch)
        model.train()
        for batch in batches_for_epoch(epoch, first):
            t0 = time.perf_counter()
            batch = batch.to(device, non_blocking=True)
            with torch.no_grad():
                targets = targets_fn(batch)  # the teacher side never gets gradients
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                out = model(batch)
                loss, terms = loss_fn(out, batch, targets)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}: {terms}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]],
                                         cfg.optim.grad_clip)
            lr = opt.param_groups[0]["lr"]  # the rate this step used
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            dt = time.perf_counter() - t0
            record = {
                "step": step, "epoch": epoch, "loss": loss.item(),
                **{k: float(v) for k, v in terms.items()},
                "lr": lr, "points_per_s": len(batch.coord) / dt,
                "step_s": dt,
            }
            if is_main:
                _append_log(out_dir, record)
            if on_step:
                on_step(record)
            epoch_end = step % cfg.steps_per_epoch == 0 or step >= cfg.total_steps
            # at an evaluated epoch end the state is saved after validation instead, so that a
            # run killed during validation validates again when resumed
            if is_main and (step % cfg.checkpoint_every == 0 or step == cfg.total_steps) and not (
                epoch_end and _evaluates(cfg, step, evaluate_fn)
            ):
                save_state(state_path, core, extra, opt, sched, scaler, step, best, identity)
            if epoch_end:
                break
        epoch_done = step // cfg.steps_per_epoch
        if _evaluates(cfg, step, evaluate_fn):
            model.eval()
            last_metrics = evaluate_fn(core)
            miou = float(last_metrics["mIoU"])
            if is_main:
                _append_log(out_dir, {"step": step, "epoch": epoch_done, "val": last_metrics})
            if best is None or miou > best:
                best = miou
                if is_main:
                    save_model_file(save_model, out_dir / "model.pt", core,
                                    {"step": step, "val": last_metrics})
            if is_main:  # persist `best` so a resumed run does not overwrite a better model
                save_state(state_path, core, extra, opt, sched, scaler, step, best, identity)
    if is_main:
        meta = {"step": step, "val": last_metrics}
        save_model_file(save_model, out_dir / "model_last.pt", core, meta)
        if evaluate_fn is None or best is None:
            save_model_file(save_model, out_dir / "model.pt", core, meta)
    return TrainResult(step=step, best_metric=best, last_metrics=last_metrics)


def _evaluates(cfg: TrainConfig, step: int, evaluate_fn: Callable | None) -> bool:
    """Whether the loop validates after the epoch that ends at `step`."""
    epoch_done = step // cfg.steps_per_epoch
    return bool(evaluate_fn) and bool(cfg.eval_every) and (
        epoch_done % cfg.eval_every == 0 or step >= cfg.total_steps
    )


def _truncate_log(out_dir: Path, step: int) -> None:
    """Drop log records of steps after `step` (written before a crash, trained again now)."""
    path = out_dir / LOG_FILE
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                keep.append(line)
        except (ValueError, AttributeError, TypeError):
            break  # a torn last line from the crash
    atomic_write(path, lambda f: f.write("".join(f"{line}\n" for line in keep).encode()))


def _append_log(out_dir: Path, record: dict[str, Any]) -> None:
    path = out_dir / LOG_FILE
    try:  # a torn last line (disk full, crash) is dropped by _truncate_log on resume
        with path.open("a") as f:
            f.write(json.dumps(record, default=float) + "\n")
    except OSError as e:
        raise write_error(path, e) from None
