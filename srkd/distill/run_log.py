"""The run log of a training job: log.jsonl (one flat JSON object per row), the sinks that mirror
it (TensorBoard) and curves.png, all written by the main process only.

Every row of log.jsonl is a flat object of plain values (no nesting):

    time        ISO-8601 UTC wall-clock time the row was written ("2026-11-30T10:15:02.123+00:00")
    elapsed_s   wall-clock seconds of training (steps and validations) since the run began,
                summed over its sessions: a --resume continues from the last kept row's value;
                setup before a session's first step and time between sessions are not counted
    kind        "train" (one per optimiser step) or "val" (one per validation)
    epoch       the epoch the row belongs to, counted from 1
    step        optimiser steps done (a val row: the step it validated after)
    train rows: loss (the weighted total), every loss term by name and its `<term>_weighted` and
                `<term>_share` (see srkd.distill.targets.make_loss_fn), lr (the rate the step used),
                points_per_s (input points of the batch / step seconds), step_s
    val rows:   the validation metrics, lower-case (miou, macc, allacc, scenes), nested values
                joined with "_", and val_s (seconds the validation took)

log.jsonl is the run's record: a --resume drops the rows of steps after the resumed state
(trained again) and rewrites rows of the earlier format (nested "val", no kind or time) in
this format, with time and elapsed_s null; the sinks and curves.png are rebuilt from it.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import time
from array import array
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from srkd.distill.state import write_error, write_run_file

LOG_FILE = "log.jsonl"
CURVES_FILE = "curves.png"
TENSORBOARD_DIR = "tensorboard"
EVENTS_PREFIX = "events.out.tfevents."
META_KEYS = ("time", "elapsed_s", "kind", "epoch", "step")
"""Keys every row has; the rest are values (losses, lr, metrics)."""


class LogSink(Protocol):
    """Something that mirrors log.jsonl (e.g. TensorBoard event files)."""

    def start(self) -> None:
        """Open, replacing what an earlier session wrote: the rows log.jsonl keeps from earlier
        sessions follow through write(), oldest first, then the new ones."""

    def write(self, row: Mapping[str, Any]) -> None:
        """Record one row."""

    def close(self) -> None:
        """Flush and close (also after a failed run)."""


def utc_now(timestamp: float) -> str:
    """ISO-8601 UTC time of a `time.time()` value, to the millisecond."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def flat_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"mIoU": .5, "iou": {"wall": .7}} -> {"miou": .5, "iou_wall": .7}: lower-case keys, nested
    mappings joined with "_", integers as int, other numbers as float (bools, strings kept)."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{str(key).lower()}"
        if isinstance(value, Mapping):
            flat.update(flat_metrics(value, f"{name}_"))
        elif isinstance(value, bool | str) or value is None:
            flat[name] = value
        elif isinstance(value, numbers.Integral):  # counts (scenes) stay integers
            flat[name] = int(value)
        else:
            flat[name] = float(value)
    return flat


def normalise_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of this format unchanged; a row of the earlier format (train rows without kind, 0-based
    epoch; val rows {"step", "epoch", "val": {...}}) in this format, with time and elapsed_s null."""
    if "kind" in row:
        return dict(row)
    if isinstance(row.get("val"), Mapping):
        return {"time": None, "elapsed_s": None, "kind": "val", "epoch": row.get("epoch"),
                "step": row.get("step"), **flat_metrics(row["val"])}
    rest = {k: v for k, v in row.items() if k not in ("step", "epoch")}
    epoch = row.get("epoch")
    return {"time": None, "elapsed_s": None, "kind": "train",
            "epoch": epoch + 1 if isinstance(epoch, int) else epoch, "step": row.get("step"), **rest}


def iter_log(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a log.jsonl one by one (older formats normalised), up to a torn last line."""
    if not Path(path).is_file():
        return
    with Path(path).open() as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                return  # a torn last line (crash, full disk): what came before is complete
            if not isinstance(row, dict):
                return
            yield normalise_row(row)


class RunLog:
    """log.jsonl, its sinks and curves.png for one run; every method is a no-op unless `enabled`
    (the main process). Use as: open(resume, step) -> train_row/val_row ... -> close()."""

    def __init__(self, out_dir: Path, sinks: Sequence[LogSink] = (), enabled: bool = True) -> None:
        self.out_dir, self.sinks, self.enabled = Path(out_dir), list(sinks), enabled
        self.path = self.out_dir / LOG_FILE
        self.curves = Curves()
        self._started = time.time()
        self._offset = 0.0

    def open(self, resume: bool, step: int) -> None:
        """Fresh run: remove the log, curves and event files an earlier run left. Resume: keep the
        rows up to `step` (the resumed state), rewritten in this format; sinks get them too."""
        if not self.enabled:
            return
        self._started = time.time()
        if not resume:
            for stale in (self.path, self.out_dir / CURVES_FILE):
                stale.unlink(missing_ok=True)
            for stale in (self.out_dir / TENSORBOARD_DIR).glob(f"{EVENTS_PREFIX}*"):
                stale.unlink(missing_ok=True)
        for sink in self.sinks:
            sink.start()
        if resume:  # one pass over the old log, row by row: a long run's log is never all in memory
            write_run_file(self.path, lambda f: self._replay(f, step))

    def _replay(self, f: BinaryIO, step: int) -> None:
        """Write the rows of the current log.jsonl up to `step` to `f`, and to the curves and sinks."""
        for row in iter_log(self.path):
            if _step_of(row) > step:
                break  # rows are in step order: the rest were trained after the saved state
            f.write(_line(row).encode())
            if row.get("elapsed_s") is not None:
                self._offset = max(self._offset, float(row["elapsed_s"]))
            self.curves.add(row)
            for sink in self.sinks:
                sink.write(row)

    def train_row(self, step: int, epoch: int, loss: float, terms: Mapping[str, float], lr: float,
                  points: int, seconds: float) -> dict[str, Any]:
        """Write (main process) and return the row of one optimiser step; `epoch` counts from 1."""
        row = self._meta("train", epoch, step)
        row.update(loss=float(loss), **{k: float(v) for k, v in terms.items()}, lr=float(lr),
                   points_per_s=points / max(seconds, 1e-9), step_s=seconds)
        self._write(row)
        return row

    def val_row(self, step: int, epoch: int, metrics: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        """Write (main process) and return the row of one validation (metrics flattened), then
        redraw curves.png so that it is current however the run ends."""
        row = {**self._meta("val", epoch, step), **flat_metrics(metrics), "val_s": seconds}
        self._write(row)
        self.write_curves()
        return row

    def close(self, failed: bool = False) -> None:
        """Draw curves.png over the whole history and close the sinks. After a failure (`failed`)
        nothing raised here hides the run's own error."""
        if not self.enabled:
            return
        try:
            if failed:
                with contextlib.suppress(Exception):
                    self.write_curves()
            else:
                self.write_curves()
        finally:
            for sink in self.sinks:
                with contextlib.suppress(Exception) if failed else contextlib.nullcontext():
                    sink.close()

    def write_curves(self) -> None:
        """curves.png (atomic): loss terms and lr per step, validation mIoU per epoch; nothing
        before the first logged row (a run that failed at its start leaves no empty picture)."""
        if not self.enabled or not self.curves.has_rows():
            return
        from srkd.distill.curves import plot_training_curves

        path = self.out_dir / CURVES_FILE
        try:
            plot_training_curves(path, self.curves.losses, self.curves.lr, self.curves.miou)
        except OSError as e:
            raise write_error(path, e) from None

    def _meta(self, kind: str, epoch: int, step: int) -> dict[str, Any]:
        now = time.time()
        return {"time": utc_now(now), "elapsed_s": round(self._offset + now - self._started, 3),
                "kind": kind, "epoch": int(epoch), "step": int(step)}

    def _write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:  # a torn last line (disk full, crash) is dropped by the next --resume
            with self.path.open("a") as f:
                f.write(_line(row))
        except OSError as e:
            raise write_error(self.path, e) from None
        self.curves.add(row)
        for sink in self.sinks:
            sink.write(row)


class Curves:
    """What curves.png draws, as compact columns (a long run has ~10^5 rows): per loss term and
    for lr (steps int64, values float64), validation mIoU per epoch."""

    def __init__(self) -> None:
        self.losses: dict[str, tuple[array, array]] = {}
        self.lr: tuple[array, array] = (array("q"), array("d"))
        self.miou: tuple[array, array] = (array("q"), array("d"))

    def has_rows(self) -> bool:
        """True once a training step or a validation has been added."""
        return len(self.lr[0]) > 0 or len(self.miou[0]) > 0 or any(len(s) for s, _ in self.losses.values())

    def add(self, row: Mapping[str, Any]) -> None:
        """Take the drawn values of one log row (rows without a step are skipped)."""
        step, kind = row.get("step"), row.get("kind")
        if not isinstance(step, int):
            return
        if kind == "val" and isinstance(row.get("miou"), int | float):
            _append(self.miou, int(row.get("epoch") or 0), float(row["miou"]))
        if kind != "train":
            return
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                if key == "lr":
                    _append(self.lr, step, float(value))
                elif _is_loss_key(key):
                    _append(self.losses.setdefault(key, (array("q"), array("d"))), step, float(value))


def _append(series: tuple[array, array], x: int, y: float) -> None:
    series[0].append(x)
    series[1].append(y)


def _is_loss_key(key: str) -> bool:
    return key not in (*META_KEYS, "lr", "points_per_s", "step_s") and not key.endswith(
        ("_weighted", "_share"))


def _step_of(row: Mapping[str, Any]) -> int:
    try:
        return int(row.get("step") or 0)
    except (TypeError, ValueError):
        return 0


def _line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, default=float) + "\n"
