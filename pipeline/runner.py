"""`srkd run`: execute stages in dependency order, skipping those whose fingerprint is unchanged."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.lock import HashCache, fingerprint, output_hashes, read_lock, why_run, write_lock
from pipeline.params import ENV_OVERRIDES, ENV_STAGES_FILE, apply_overrides
from pipeline.spec import PipelineSpec, Stage
from srkd.errors import SrkdError


class StageFailed(SrkdError, RuntimeError):
    """A stage's command exited non-zero."""


@dataclass
class StageResult:
    """What happened to one stage in a run."""

    name: str
    ran: bool
    reasons: list[str]


def stage_argv(cmd: str) -> list[str]:
    """The argv for a stage command; `srkd ...` runs with this interpreter (python -m cli)."""
    argv = shlex.split(cmd)
    if argv and argv[0] == "srkd":
        return [sys.executable, "-m", "cli", *argv[1:]]
    return argv


def run_pipeline(
    spec: PipelineSpec,
    targets: list[str] | None = None,
    force: bool = False,
    overrides: dict[str, Any] | None = None,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> list[StageResult]:
    """Run the stages needed for `targets` (default: all); returns what ran and why.

    The lock entry of a stage is written only after its command succeeded, so a killed run
    resumes at the first unfinished stage. Non-persistent outputs are deleted before a stage
    runs, so a half-written output never passes for a finished one.
    """
    root = spec.path.parent.resolve()
    lock_path = root / "stages.lock"
    lock = read_lock(lock_path)
    hashes = HashCache(lock.get("hashes"))
    overrides = overrides or {}
    params = apply_overrides(spec.params, overrides)
    env = dict(os.environ)
    env[ENV_OVERRIDES] = json.dumps(overrides)
    env[ENV_STAGES_FILE] = str(spec.path.resolve())
    results = []
    for stage in spec.order(targets):
        current = fingerprint(stage, params, root, hashes)
        reasons = why_run(stage, current, lock["stages"].get(stage.name), root, hashes)
        if force and (not targets or stage.name in targets):
            reasons = reasons or ["--force"]
        if not reasons:
            log(f"[dim]stage {stage.name}: up to date, skipped[/dim]")
            results.append(StageResult(stage.name, False, []))
            continue
        log(f"[bold]stage {stage.name}[/bold] runs because " + "; ".join(reasons))
        results.append(StageResult(stage.name, True, reasons))
        if dry_run:
            continue
        locked = lock["stages"].get(stage.name)
        inputs_changed = locked is not None and any(
            locked.get(k) != v for k, v in current.to_json().items()
        )
        # a persistent output (a resumable cache) is kept across crashes and first runs, but not
        # when the stage's cmd, deps, params or version changed: it was built from other inputs
        _clear_outputs(stage, root, include_persistent=inputs_changed)
        log(f"[dim]$ {stage.cmd}[/dim]")
        proc = subprocess.run(stage_argv(stage.cmd), cwd=root, env=env)
        if proc.returncode != 0:
            raise StageFailed(
                f"stage {stage.name!r} failed (exit code {proc.returncode}): {stage.cmd}"
            )
        missing = [o.path for o in stage.outs if not (root / o.path).exists()]
        if missing:
            raise StageFailed(f"stage {stage.name!r} finished but did not write {missing}")
        lock["stages"][stage.name] = {**current.to_json(), "outs": output_hashes(stage, root, hashes)}
        lock["hashes"] = hashes.entries
        write_lock(lock_path, lock)
    return results


def _clear_outputs(stage: Stage, root: Path, include_persistent: bool = False) -> None:
    for out in stage.outs:
        target = root / out.path
        if (out.persist and not include_persistent) or not target.exists():
            continue
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
