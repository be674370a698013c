"""The run log: flat log.jsonl rows, curves.png, TensorBoard event files (read back), and the
rows of older srkd versions rewritten on resume. Tiny model, no spconv."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import pytest

from srkd.distill.run_log import LOG_FILE, normalise_row
from srkd.errors import ConfigError
from tests.test_train import read_rows, run

PNG = b"\x89PNG\r\n\x1a\n"


def scalars(log_dir):
    """{tag: [(step, value), ...]} of every event file under `log_dir`, as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_rows_are_flat_with_time_kind_epoch_and_step(tmp_path):
    before = datetime.now(UTC)
    scores = iter([{"mIoU": 0.2, "mAcc": 0.3, "allAcc": 0.6, "scenes": 1, "iou": {"wall": 0.5}},
                   {"mIoU": 0.4, "mAcc": 0.5, "allAcc": 0.7, "scenes": 1, "iou": {"wall": 0.6}}])
    run(tmp_path, epochs=2, evaluate=lambda m: next(scores))
    rows = read_rows(tmp_path)
    assert [(r["kind"], r["epoch"], r["step"]) for r in rows] == [
        ("train", 1, 1), ("train", 1, 2), ("train", 1, 3), ("val", 1, 3),
        ("train", 2, 4), ("train", 2, 5), ("train", 2, 6), ("val", 2, 6)]
    for r in rows:
        assert not any(isinstance(v, dict | list) for v in r.values()), r  # flat
        when = datetime.fromisoformat(r["time"])
        assert when.utcoffset() == timedelta(0) and before <= when <= datetime.now(UTC)
    elapsed = [r["elapsed_s"] for r in rows]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0
    train = rows[0]
    assert set(train) >= {"loss", "ce", "lr", "points_per_s", "step_s"}
    assert train["points_per_s"] == pytest.approx(40 / train["step_s"], rel=1e-6)  # 2 x 20 points
    val = rows[3]
    assert {k: val[k] for k in ("miou", "macc", "allacc", "scenes", "iou_wall")} == {
        "miou": 0.2, "macc": 0.3, "allacc": 0.6, "scenes": 1, "iou_wall": 0.5}
    assert isinstance(val["scenes"], int)
    assert val["val_s"] >= 0


def test_curves_png_after_a_run_and_after_a_crash(tmp_path):
    scores = iter([0.2, 0.5, 0.4])
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, crash_at=5, evaluate=lambda m: {"mIoU": next(scores)})
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG)  # the stopped run's curves
    first = (tmp_path / "curves.png").stat().st_mtime_ns
    run(tmp_path, resume=True, evaluate=lambda m: {"mIoU": next(scores)})
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG)
    assert (tmp_path / "curves.png").stat().st_mtime_ns > first
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_a_resume_continues_elapsed_time_and_keeps_each_step_once(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, crash_at=5)  # state at step 4, step 5 logged and trained again
    last_kept = [r for r in read_rows(tmp_path) if r["step"] == 4][0]["elapsed_s"]
    run(tmp_path, resume=True)
    rows = read_rows(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 10))
    assert rows[4]["elapsed_s"] >= last_kept  # a resumed session continues the clock


def test_tensorboard_mirrors_the_log_once_per_step_across_a_resume(tmp_path):
    from srkd.distill.tensorboard import TensorBoardSink

    scores = iter([0.2, 0.5, 0.4])
    evaluate = lambda m: {"mIoU": next(scores), "mAcc": 0.5, "allAcc": 0.9}  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, crash_at=5, evaluate=evaluate, sinks=[TensorBoardSink(tmp_path)])
    run(tmp_path, resume=True, evaluate=evaluate, sinks=[TensorBoardSink(tmp_path)])
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 1
    got = scalars(tmp_path / "tensorboard")
    assert {"train/loss", "train/ce", "train/lr", "train/points_per_s", "val/miou", "val/macc",
            "val/allacc"} <= set(got)
    rows = read_rows(tmp_path)
    for tag in ("train/loss", "train/lr"):
        want = [(r["step"], r[tag.split("/")[1]]) for r in rows if r["kind"] == "train"]
        assert [s for s, _ in got[tag]] == list(range(1, 10))
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in want], rel=1e-6)
    assert got["val/miou"] == [(3, pytest.approx(0.2)), (6, pytest.approx(0.5)), (9, pytest.approx(0.4))]


def test_tensorboard_turned_on_at_resume_gets_the_whole_history(tmp_path):
    from srkd.distill.tensorboard import TensorBoardSink

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, crash_at=5)
    run(tmp_path, resume=True, sinks=[TensorBoardSink(tmp_path)])
    assert [s for s, _ in scalars(tmp_path / "tensorboard")["train/ce"]] == list(range(1, 10))


def test_a_fresh_run_removes_the_last_runs_curves_and_events(tmp_path):
    from srkd.distill.tensorboard import TensorBoardSink

    run(tmp_path, epochs=1, sinks=[TensorBoardSink(tmp_path)])
    old = set((tmp_path / "tensorboard").iterdir())
    run(tmp_path, epochs=1)  # without TensorBoard: the old events would describe another run
    assert not set((tmp_path / "tensorboard").iterdir()) & old


def test_missing_tensorboard_is_one_error_saying_how_to_install(monkeypatch):
    from srkd.distill.tensorboard import require_tensorboard

    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith(("tensorboard.",
                                                                               "torch.utils.tensorboard"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    with pytest.raises(ConfigError, match=r"--tensorboard needs the tensorboard package.*"
                                          r'pip install -e "\.\[tensorboard\]"'):
        require_tensorboard()


def test_rows_of_older_srkd_are_rewritten_on_resume(tmp_path):
    """srkd <= 0.1 wrote 0-based train epochs and nested val rows; a resume rewrites them."""
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, crash_at=5)
    old = [{k: v for k, v in r.items() if k not in ("time", "elapsed_s", "kind")} | {"epoch": r["epoch"] - 1}
           for r in read_rows(tmp_path)]
    old.insert(3, {"step": 3, "epoch": 1, "val": {"mIoU": 0.25, "mAcc": 0.5}})
    (tmp_path / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in old))
    run(tmp_path, resume=True)
    rows = read_rows(tmp_path)
    assert [(r["kind"], r["epoch"], r["step"]) for r in rows[:5]] == [
        ("train", 1, 1), ("train", 1, 2), ("train", 1, 3), ("val", 1, 3), ("train", 2, 4)]
    assert rows[3]["miou"] == 0.25 and rows[0]["time"] is None and rows[-1]["time"]
    assert normalise_row(rows[-1]) == rows[-1]
