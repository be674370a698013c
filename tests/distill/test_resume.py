"""Kill a distillation run, `--resume` it, and get exactly the uninterrupted run's model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from srkd.distill.loop import STATE_FILE
from srkd.distill.run import run
from srkd.distill.state import read_state
from srkd.errors import CheckpointError

from .conftest import tiny_run_config as config

# one xdist worker runs this module, so the uninterrupted reference run is made once
pytestmark = pytest.mark.xdist_group("distill_resume")


class Killed(Exception):
    """Stands in for a crash: raised from the step callback, so nothing after it runs."""


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if r["kind"] == "train"]
    assert steps == sorted(set(steps)), f"steps logged twice or out of order: {steps}"
    return {r["step"]: r["loss"] for r in lines if r["kind"] == "train"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("resume") / "full"
    result = run(config(out, cache_dir))
    assert result.step == 4  # 4 train scenes / batch 2 = 2 steps per epoch, 2 epochs
    return out


@pytest.mark.parametrize("kill_at", [2, 3])  # at an evaluated epoch end / in the middle of one
def test_killed_then_resumed_run_equals_the_uninterrupted_one(kill_at, uninterrupted, cache_dir, tmp_path):
    out = tmp_path / "run"

    def kill(record):
        if record["step"] == kill_at:
            raise Killed

    with pytest.raises(Killed):
        run(config(out, cache_dir), on_step=kill)
    saved = torch.load(out / STATE_FILE, map_location="cpu", weights_only=False)["step"]
    assert 1 <= saved < kill_at  # a checkpoint exists, and steps after it are lost
    assert not (out / "model_last.pt").exists()

    result = run(config(out, cache_dir, resume=True))
    assert result.step == 4
    got = losses(out)
    assert sorted(got) == [1, 2, 3, 4] and all(math.isfinite(v) for v in got.values())
    assert got == losses(uninterrupted)
    want = state_dict(uninterrupted / "model_last.pt")
    have = state_dict(out / "model_last.pt")
    assert want.keys() == have.keys()
    differ = [k for k in want if not torch.equal(want[k], have[k])]
    assert not differ, f"resumed model differs in {len(differ)} tensors, e.g. {differ[:3]}"
    assert val_scores(out) == val_scores(uninterrupted)


def val_scores(run_dir: Path) -> list[dict]:
    """The validation rows of a run's log without their timing (time, elapsed_s, val_s)."""
    rows = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "elapsed_s", "val_s")}
            for r in rows if r["kind"] == "val"]


def test_resume_without_state_starts_fresh(cache_dir, tmp_path):
    # job scripts that always pass --resume (cluster requeue) must work on their first launch
    notes = []
    result = run(config(tmp_path / "fresh", cache_dir, resume=True, epochs=1, val_split=None),
                 on_start=lambda info: notes.append(info["resume_note"]))
    assert result.step == 2 and (tmp_path / "fresh" / "model.pt").is_file()
    assert notes == [f"--resume: no train_state.pt in {tmp_path / 'fresh'}, starting a new run"]


def test_resume_with_other_model_args_names_them(cache_dir, tmp_path):
    out = tmp_path / "run"
    run(config(out, cache_dir, model="test_spunet", epochs=1, val_split=None))
    with pytest.raises(CheckpointError, match=r"belongs to another run.*model_args\.base_channels: "
                                              r"\(absent\) -> 12"):
        run(config(out, cache_dir, model="test_spunet", model_args={"base_channels": 12}, epochs=1,
                   val_split=None, resume=True))
    assert not list(out.glob("*.tmp")) and read_state(out / STATE_FILE)["step"] == 2
