"""The run folder of a training job: checked before training, every file replaced atomically, and
train_state.pt (what `--resume` continues from) refused when unreadable or another run's.

train_state.pt is one ``torch.save`` dict of tensors and plain values, so it loads with
``torch.load(weights_only=True)`` (a file that names Python code is refused unread):

    format, format_version   "srkd-train-state", 1 (or 2 when `schedule` has several segments)
    run                      {key: plain value}: what the run was configured as (the caller's
                             run_info + epochs + steps_per_epoch); a resume must match it, except
                             for more epochs once the run has finished (an extension)
    model, extra             state dicts of the model and the extra trainable modules
    optimizer, scheduler, scaler   their state dicts (scheduler: the current segment's one-cycle)
    schedule                 [[first step, end step], ...]: the one-cycle segments of the lr
                             schedule; one for a run never extended (absent in older files)
    step, best               int steps done, float | None best validation mIoU
    rng_torch, rng_numpy, rng_python (+ rng_cuda)   every random stream, to continue exactly

Files written before this format (srkd 0.1) lack format and run; they load without the run check.
A format-2 file is refused by an srkd that reads only format 1 (it would misread the schedule).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import random
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from srkd.errors import CheckpointError, ConfigError
from srkd.io import atomic_write_stream

STATE_FILE = "train_state.pt"
STATE_FORMAT = "srkd-train-state"
STATE_VERSION = 2
_STATE_KEYS = ("model", "extra", "optimizer", "scheduler", "scaler", "step", "best", "rng_torch",
               "rng_numpy", "rng_python")
_ABSENT = type("Absent", (), {"__repr__": lambda self: "(absent)"})()
Segment = tuple[int, int]
"""[first step, end step) of one one-cycle segment of the lr schedule."""
_REDO = "start a new run with --out elsewhere (or without --resume to replace this one)"


# ---- the run folder ---------------------------------------------------------------------------


def prepare_run_dir(out_dir: Path, resume: bool) -> None:
    """Check, before any training work, that `out_dir` can hold the run: with `resume` its
    train_state.pt must exist (and nothing is created when it does not); the folder is created
    and a probe file written and removed, so a read-only or misplaced folder fails now rather
    than at the first checkpoint.

    Raises ConfigError naming the folder (or the missing train_state.pt) and what to do.
    """
    out_dir = Path(out_dir)
    state = out_dir / STATE_FILE
    if resume and not state.is_file():
        raise ConfigError(f"--resume: there is no {state} (nothing to resume); check --out, or "
                          "drop --resume to start a new run there")
    probe = out_dir / f".srkd-write-probe-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
    except OSError as e:
        raise ConfigError(f"--out {out_dir}: cannot write the run's files there ({_os_reason(e)}); "
                          "choose another --out or make the folder writable") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)


def write_run_file(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write `path` atomically (srkd.io.atomic_write_stream: a temporary sibling, fsync, rename),
    so readers (and a --resume) see the old complete file or the new complete one, never a torn
    one; an OSError (full disk, read-only folder, ...) becomes one CheckpointError naming `path`
    (write_error)."""
    try:
        atomic_write_stream(path, write)
    except OSError as e:
        raise write_error(path, e) from None


def write_error(path: Path, exc: BaseException) -> CheckpointError:
    """One line for a run file that could not be written: the file, the OS's reason, and how to
    go on (the last complete train_state.pt, if any, is still in place)."""
    fix = "free space" if isinstance(exc, OSError) and exc.errno == errno.ENOSPC else "fix the cause"
    then = ("re-run with --resume (the last complete state is kept)"
            if (path.parent / STATE_FILE).is_file() else "re-run (no train state was saved yet)")
    return CheckpointError(f"cannot write {path}: {_os_reason(exc)}; {fix} and {then}")


def save_model_file(save_model: Callable[[Path, nn.Module, dict[str, Any]], None], path: Path,
                    model: nn.Module, meta: dict[str, Any]) -> None:
    """Call the caller's checkpoint writer (itself atomic); a failed write becomes write_error."""
    try:
        save_model(path, model, meta)
    except OSError as e:
        raise write_error(path, e) from None
    except RuntimeError as e:  # torch.save's zip writer reports a failed write as this
        if "inline_container" not in str(e):
            raise
        raise write_error(path, e) from None


def _os_reason(exc: BaseException) -> str:
    """'No space left on device' / 'Not a directory: /a/file' from an OSError, else its first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


# ---- train_state.pt ---------------------------------------------------------------------------


def save_state(path: Path, model: nn.Module, extra: list[nn.Module], opt: torch.optim.Optimizer,
               sched: Any, scaler: torch.amp.GradScaler, step: int, best: float | None,
               run: Mapping[str, Any], schedule: Sequence[Segment]) -> None:
    """Everything needed to continue exactly (module docstring), written atomically."""
    state = {
        "format": STATE_FORMAT,
        "format_version": 1 if len(schedule) == 1 else 2,  # format 1 readers handle one segment
        "schedule": [[int(a), int(b)] for a, b in schedule],
        "run": dict(run),
        "model": model.state_dict(),
        "extra": [m.state_dict() for m in extra],
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "step": step,
        "best": best,
        "rng_torch": torch.get_rng_state(),
        "rng_numpy": json.dumps(np.random.get_state(legacy=False), default=_np_default),
        "rng_python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    write_run_file(path, lambda f: torch.save(state, f))


def _np_default(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else int(value)


def read_state(path: Path) -> dict[str, Any]:
    """train_state.pt as a dict, loaded with weights_only=True (nothing in the file runs).

    Raises CheckpointError for a missing, unreadable, foreign, incomplete or newer file.
    """
    if not path.is_file():
        raise CheckpointError(f"--resume: there is no {path} (nothing to resume); check --out, "
                              "or drop --resume to start a new run there")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, OSError, ValueError, TypeError,
            KeyError, IndexError, AttributeError) as e:  # torch raises errors of many kinds
        raise CheckpointError(f"{path} is not a readable train state: {_load_reason(e)}; {_REDO}") from None
    missing = [k for k in _STATE_KEYS if k not in state] if isinstance(state, dict) else ["all"]
    if missing or state.get("format", STATE_FORMAT) != STATE_FORMAT:
        raise CheckpointError(f"{path} is not an srkd train state (missing "
                              f"{', '.join(missing) or 'its format entry'}); {_REDO}")
    version = state.get("format_version", 1)
    if not isinstance(version, int) or version > STATE_VERSION:
        raise CheckpointError(f"{path} has train-state format {version!r}; this srkd reads up to "
                              f"{STATE_VERSION}: upgrade srkd to resume it")
    return state


def _load_reason(exc: BaseException) -> str:
    """Why torch.load refused a file, in a few words (torch's own text is a paragraph)."""
    text = str(exc)
    code = re.search(r"GLOBAL ([\w.]+)", text)
    if isinstance(exc, pickle.UnpicklingError) and code:
        return (f"it refers to Python code ({code.group(1)}), which a train state never does; "
                "refused without running it")
    if isinstance(exc, EOFError) or (isinstance(exc, RuntimeError) and "zip archive" in text):
        return "the file is empty, truncated or not a torch file"
    if isinstance(exc, pickle.UnpicklingError):
        return "its bytes are not a torch file (damaged or foreign)"
    return _os_reason(exc)


def check_state_fits(state: Mapping[str, Any], path: Path, run: Mapping[str, Any]) -> None:
    """Refuse a train state saved by another run: `run` (the caller's run_info + epochs and
    steps_per_epoch) must equal what the state recorded; the error names each differing key.

    Another number of epochs alone passes here: resume_schedule decides whether it extends the
    run or is refused.
    """
    saved = state.get("run")
    if saved is None:  # srkd <= 0.2: load_state still refuses weights that do not fit
        return
    diffs = _differences(dict(saved), dict(run))
    if diffs and [key for key, _ in diffs] != ["epochs"]:
        shown = "; ".join(text for _, text in diffs[:6])
        more = f" (+{len(diffs) - 6} more)" if len(diffs) > 6 else ""
        raise CheckpointError(f"{path} belongs to another run (saved -> now: {shown}{more}); "
                              f"resume with the saved settings, or {_REDO}")


def resume_schedule(state: Mapping[str, Any], path: Path, total_steps: int,
                    steps_per_epoch: int) -> list[Segment]:
    """The lr schedule's one-cycle segments for resuming `state` into a run of `total_steps`.

    The saved segments when the total is unchanged. A finished run given more epochs is extended:
    a new segment covers the extra steps, so a second resume (or a later extension) replays the
    same schedule. A one-cycle rate is a function of step / segment length, so the length of an
    unfinished segment is fixed: changing --epochs mid-run, or asking for fewer epochs than the
    run already trained, is refused with one line saying what to do.
    """
    segments = saved_schedule(state)
    end, step = segments[-1][1], int(state["step"])
    if total_steps == end:
        return segments
    was, now = end // steps_per_epoch, total_steps // steps_per_epoch
    new_run = f"start a new {now}-epoch run with --out elsewhere (or without --resume to replace this one)"
    if step < end:
        raise CheckpointError(
            f"{path} belongs to a {was}-epoch run (stopped at step {step} of {end}) and the length "
            f"of its one-cycle schedule is fixed until it ends: resume with --epochs {was} to "
            f"finish it, then --resume --epochs {now} extends it by a new one-cycle segment; or "
            f"{new_run}")
    if total_steps < end:
        raise CheckpointError(
            f"{path}: the run already trained {_epochs(was)}, more than --epochs {now}; its models "
            f"are in {path.parent} (resume with more epochs to extend it), or {new_run}")
    return [*segments, (end, total_steps)]


def saved_schedule(state: Mapping[str, Any]) -> list[Segment]:
    """The state's recorded segments; for older files without them, one segment over the
    run's recorded total (or its scheduler's)."""
    if state.get("schedule"):
        return [(int(a), int(b)) for a, b in state["schedule"]]
    run = state.get("run")
    if run and "epochs" in run and "steps_per_epoch" in run:
        return [(0, int(run["epochs"]) * int(run["steps_per_epoch"]))]
    return [(0, int(state["scheduler"]["total_steps"]))]


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, str]]:
    """[(top-level key, "a.b: saved -> now")] for every differing (nested) value, `now`'s order.

    Only top-level keys both records have are compared (a field added or dropped by another srkd
    version says nothing about the run); inside them every nested key counts.
    """
    common = saved.keys() & now.keys()
    flat_saved = _flatten({k: v for k, v in saved.items() if k in common})
    flat_now = _flatten({k: v for k, v in now.items() if k in common})
    out = []
    for key in [*flat_now, *(k for k in flat_saved if k not in flat_now)]:
        a, b = flat_saved.get(key, _ABSENT), flat_now.get(key, _ABSENT)
        if a != b:
            out.append((key.split(".")[0], f"{key}: {_short(a)} -> {_short(b)}"))
    return out


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; tuples compare as lists (a saved tuple may load as either)."""
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for k, v in value.items():
            flat.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return flat
    return {prefix: list(value) if isinstance(value, tuple) else value}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_state(state: dict[str, Any], path: Path, model: nn.Module, extra: list[nn.Module],
               opt: torch.optim.Optimizer, sched: Any, scaler: torch.amp.GradScaler
               ) -> tuple[int, float | None]:
    """Restore weights, optimizer, schedule and every RNG stream; returns (step, best).

    Raises CheckpointError when the saved tensors or schedule do not fit this run (a file of
    srkd <= 0.2 has no run record to check before)."""
    saved_total = state["scheduler"].get("total_steps", sched.total_steps)
    if saved_total != sched.total_steps:
        raise CheckpointError(f"{path} was saved with a {saved_total}-step schedule, this run has "
                              f"{sched.total_steps} steps; resume with the saved --epochs and "
                              f"--batch-size, or {_REDO}")
    try:
        model.load_state_dict(state["model"])
        for module, sd in zip(extra, state["extra"], strict=True):
            module.load_state_dict(sd)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} does not fit this run's model or optimizer ({first[:200]}); "
                              f"{_REDO}") from None
    torch.set_rng_state(state["rng_torch"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    np.random.set_state(json.loads(state["rng_numpy"]))
    py_state = json.loads(state["rng_python"])
    random.setstate((py_state[0], tuple(py_state[1]), py_state[2]))
    return int(state["step"]), state["best"]
