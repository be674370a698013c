"""The shared training loop: schedule, logging, checkpoints, exact resume after a crash, and
resume with more epochs (a new one-cycle segment)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from srkd.data.collate import VoxelSample, collate
from srkd.distill.config import OptimConfig
from srkd.distill.loop import STATE_FILE, TrainConfig, build_optimizer, train
from srkd.errors import CheckpointError
from srkd.models.base import ModelOutput, SegmentationModel


class TinyModel(SegmentationModel):
    def __init__(self) -> None:
        super().__init__()
        self.num_classes, self.in_channels, self.feature_dim = 3, 6, 4
        self.block0 = nn.Linear(6, 4)
        self.head = nn.Linear(4, 3)
        self.drop = nn.Dropout(0.3)  # uses torch RNG: resume must restore it

    def forward(self, batch):
        feat = self.drop(torch.relu(self.block0(batch.feat)))
        return ModelOutput(logits=self.head(feat), feature=feat)


def batches(epoch: int, first: int, steps: int = 3):
    for i in range(first, steps):
        rng = np.random.default_rng([epoch, i])
        samples = []
        for s in range(2):
            n = 20
            samples.append(VoxelSample(
                coord=rng.normal(size=(n, 3)).astype(np.float32),
                grid_coord=np.zeros((n, 3), np.int32),
                feat=rng.normal(size=(n, 6)).astype(np.float32),
                origin_index=np.arange(n), segment=rng.integers(0, 3, n), scene_id=f"s{s}",
            ))
        yield collate(samples)


def ce(out, batch, targets):
    loss = nn.functional.cross_entropy(out.logits, batch.segment)
    return loss, {"ce": loss.detach()}


def saver(path, model, meta):
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)


def run(tmp_path, resume=False, crash_at=None, evaluate=None, epochs=3, run_info=None, sinks=()):
    torch.manual_seed(0)
    model = TinyModel()

    def on_step(record):
        if crash_at is not None and record["step"] == crash_at:
            raise KeyboardInterrupt

    cfg = TrainConfig(epochs=epochs, steps_per_epoch=3, checkpoint_every=2, amp=False)
    result = train(model, ce, batches, cfg, tmp_path, saver, resume=resume, on_step=on_step,
                   evaluate_fn=evaluate, run_info=run_info, log_sinks=sinks)
    return model, result


def read_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_trains_logs_and_saves(tmp_path):
    scores = iter([0.2, 0.5, 0.4])
    model, result = run(tmp_path, evaluate=lambda m: {"mIoU": next(scores)})
    assert result.step == 9 and result.best_metric == 0.5
    log = read_rows(tmp_path)
    steps = [r for r in log if r["kind"] == "train"]
    assert [r["step"] for r in steps] == list(range(1, 10))
    assert [r["epoch"] for r in steps] == [1, 1, 1, 2, 2, 2, 3, 3, 3]  # counted from 1
    assert all(np.isfinite(r["ce"]) and r["lr"] > 0 and r["points_per_s"] > 0 for r in steps)
    vals = [r for r in log if r["kind"] == "val"]
    assert [(r["epoch"], r["step"], r["miou"]) for r in vals] == [(1, 3, 0.2), (2, 6, 0.5), (3, 9, 0.4)]
    best = torch.load(tmp_path / "model.pt", weights_only=True)
    assert best["meta"]["step"] == 6  # the best epoch, not the last
    assert (tmp_path / "model_last.pt").exists()


def test_resume_after_crash_matches_uninterrupted_run(tmp_path):
    clean, _ = run(tmp_path / "clean")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "crash", crash_at=5)  # last checkpoint at step 4
    resumed, result = run(tmp_path / "crash", resume=True)
    assert result.step == 9
    for a, b in zip(clean.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_block_parameters_get_a_tenth_of_the_lr():
    opt = build_optimizer([TinyModel()], OptimConfig(lr=0.01))
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == pytest.approx([0.001, 0.01])
    assert sum(p.numel() for p in opt.param_groups[1]["params"]) == 6 * 4 + 4


def test_resume_refuses_the_state_of_another_run_naming_each_difference(tmp_path):
    info = {"model": "tiny", "model_args": {"width": 4}, "lr": 0.1}
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, crash_at=5, run_info=info)
    before = (tmp_path / STATE_FILE).read_bytes()
    other = {"model": "tiny2", "model_args": {"width": 8}, "lr": 0.1}
    with pytest.raises(CheckpointError, match=r"belongs to another run \(saved -> now: model: "
                                              r"'tiny' -> 'tiny2'; model_args.width: 4 -> 8\)"):
        run(tmp_path, resume=True, run_info=other)
    assert (tmp_path / STATE_FILE).read_bytes() == before


def test_resume_with_other_epochs_mid_run_is_refused(tmp_path):
    """A one-cycle rate depends on its segment's length: it cannot change before the run ends."""
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, crash_at=5)  # saved at step 4 of 9
    with pytest.raises(CheckpointError, match=r"a 3-epoch run \(stopped at step 4 of 9\).*resume "
                                              r"with --epochs 3 to finish it, then --resume --epochs 4 "
                                              r"extends it"):
        run(tmp_path, resume=True, epochs=4)


def test_fewer_epochs_than_a_finished_run_trained_is_refused(tmp_path):
    run(tmp_path, epochs=2)
    with pytest.raises(CheckpointError, match=r"already trained 2 epochs, more than --epochs 1"):
        run(tmp_path, resume=True, epochs=1)


def one_cycle(steps, peak, start_div, end_div, pct=0.5):
    """The rate of each step of a cosine one-cycle (Smith & Topin 2019), written out:
    warm-up start -> peak over pct * steps - 1 steps, then peak -> end over the rest."""
    start, end, up = peak / start_div, peak / start_div / end_div, pct * steps - 1
    out = []
    for i in range(steps):
        a, b, frac = (start, peak, i / up) if i <= up else (peak, end, (i - up) / (steps - 1 - up))
        out.append(b + (a - b) * (1 + math.cos(math.pi * frac)) / 2)
    return out


def test_a_finished_run_resumed_with_more_epochs_is_extended(tmp_path):
    """2 epochs (6 steps), then --resume --epochs 3: epoch 3 runs with a new one-cycle segment
    that starts at the floor where the run ended (a warm restart), recorded in the state."""
    scores = iter([0.1, 0.3, 0.2])
    run(tmp_path, epochs=2, evaluate=lambda m: {"mIoU": next(scores)})
    _, result = run(tmp_path, resume=True, epochs=3, evaluate=lambda m: {"mIoU": next(scores)})
    assert result.step == 9 and result.best_metric == 0.3
    rows = read_rows(tmp_path)
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, 10))
    assert [r["epoch"] for r in rows if r["kind"] == "val"] == [1, 2, 3]
    lrs = [r["lr"] for r in train_rows]
    cfg = OptimConfig()
    assert lrs[:6] == pytest.approx(one_cycle(6, cfg.lr, cfg.div_factor, cfg.final_div_factor))
    floor = cfg.lr / (cfg.div_factor * cfg.final_div_factor)
    assert lrs[6:] == pytest.approx(one_cycle(3, cfg.lr, cfg.div_factor * cfg.final_div_factor, 1.0))
    assert lrs[5] == pytest.approx(floor) and lrs[6] == pytest.approx(floor)  # no jump at the seam
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert state["schedule"] == [[0, 6], [6, 9]] and state["run"]["epochs"] == 3
    assert state["format_version"] == 2
    best = torch.load(tmp_path / "model.pt", weights_only=True)
    assert best["meta"]["step"] == 6  # the best over the whole history, not the extension's
    assert best["meta"]["lr_schedule"] == [[0, 6]]  # what that model was trained with
    last = torch.load(tmp_path / "model_last.pt", weights_only=True)
    assert last["meta"]["lr_schedule"] == [[0, 6], [6, 9]]


def test_an_extension_crashed_and_resumed_replays_its_schedule(tmp_path):
    """A second resume of an extended run uses the recorded segments: it ends with the model of
    the uninterrupted extension."""
    run(tmp_path / "clean", epochs=2)
    clean, _ = run(tmp_path / "clean", resume=True, epochs=3)
    run(tmp_path / "crash", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "crash", resume=True, epochs=3, crash_at=9)  # last state at step 8
    assert torch.load(tmp_path / "crash" / STATE_FILE, weights_only=True)["step"] == 8
    resumed, result = run(tmp_path / "crash", resume=True, epochs=3)
    assert result.step == 9
    for a, b in zip(clean.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    want = [r["lr"] for r in read_rows(tmp_path / "clean") if r["kind"] == "train"]
    assert [r["lr"] for r in read_rows(tmp_path / "crash") if r["kind"] == "train"] == want
    _, again = run(tmp_path / "crash", resume=True, epochs=4)  # and a second extension
    state = torch.load(tmp_path / "crash" / STATE_FILE, weights_only=True)
    assert again.step == 12 and state["schedule"] == [[0, 6], [6, 9], [9, 12]]


def test_a_state_without_a_run_record_still_resumes(tmp_path):
    """train_state.pt files written before the run record existed resume as before."""
    clean, _ = run(tmp_path / "clean")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "old", crash_at=5)
    path = tmp_path / "old" / STATE_FILE
    state = torch.load(path, weights_only=True)
    torch.save({k: v for k, v in state.items() if k not in ("format", "format_version", "run")}, path)
    resumed, result = run(tmp_path / "old", resume=True)
    assert result.step == 9
    for a, b in zip(clean.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
