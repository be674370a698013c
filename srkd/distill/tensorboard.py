"""TensorBoard event files of a training run (`--tensorboard`), a mirror of its log.jsonl.

Every numeric value of a log.jsonl row becomes one scalar, tagged `<kind>/<key>` at the row's
step and wall time: train/loss, train/<term> (+ train/<term>_weighted, train/<term>_share),
train/lr, train/points_per_s, train/step_s; val/miou, val/macc, val/allacc, val/scenes, val/val_s.

The files are a view of log.jsonl, not a second record: each session (a fresh run or a --resume)
removes the event files in `<run>/tensorboard/` and writes one new file that starts with the
rows log.jsonl kept, so the event files always hold each step once, also when a crashed session
had logged steps that the resume trains again, or when --tensorboard is first given on a resume.
Needs the optional `tensorboard` package (`pip install -e ".[tensorboard]"`); torch's own
SummaryWriter writes the files.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from srkd.distill.run_log import EVENTS_PREFIX, META_KEYS, TENSORBOARD_DIR
from srkd.errors import ConfigError

INSTALL_HINT = 'pip install -e ".[tensorboard]" (or pip install tensorboard)'


def require_tensorboard() -> None:
    """Raise one ConfigError saying how to install TensorBoard unless torch can write its files.

    Call it before any training work: a missing package must not cost a run's first epochs."""
    try:
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError("no module named 'tensorboard'")
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (raises without it)
    except (ImportError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--tensorboard needs the tensorboard package, which cannot be imported "
                          f"here ({reason}): {INSTALL_HINT}, or run without --tensorboard") from None


class TensorBoardSink:
    """Writes the rows of a run's log into `<out_dir>/tensorboard/` (a srkd.distill.run_log.LogSink)."""

    def __init__(self, out_dir: Path) -> None:
        require_tensorboard()
        self.log_dir = Path(out_dir) / TENSORBOARD_DIR
        self._writer = None

    def start(self) -> None:
        """Replace the folder's event files by a new, empty one (the kept rows follow, see the
        module docs)."""
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.log_dir.glob(f"{EVENTS_PREFIX}*"):
            stale.unlink(missing_ok=True)
        # a deep queue: the training thread does not wait for the writer thread's checksums
        self._writer = SummaryWriter(log_dir=str(self.log_dir), max_queue=1000)

    def write(self, row: Mapping[str, Any]) -> None:
        """One scalar per numeric value of `row` (bools, strings and nulls are skipped), all in
        one event: SummaryWriter.add_scalar writes an event per value, ~8x slower per scalar
        (its record checksums run in Python; bench/run_log.py measures a row)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        step, kind = row.get("step"), row.get("kind")
        if self._writer is None or not isinstance(step, int) or not isinstance(kind, str):
            return
        values = [Summary.Value(tag=f"{kind}/{key}", simple_value=float(value))
                  for key, value in row.items()
                  if key not in META_KEYS and isinstance(value, int | float) and not isinstance(value, bool)]
        # the writer's own file writer (what add_scalar uses), given the whole row at once
        self._writer._get_file_writer().add_summary(Summary(value=values), step,
                                                    _timestamp(row.get("time")))
        if kind == "val":  # a validation is rare and worth seeing at once
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _timestamp(iso: Any) -> float | None:
    """Seconds since the epoch of a row's ISO-8601 time; None (= now) for rows without one."""
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
