"""`srkd run`: execute stages in dependency order, skipping those whose fingerprint is unchanged.

The runner owns the processes it starts (POSIX). Each stage command runs under a small
supervisor (pipeline/supervise.py, run as `python -c ... supervise_main()`) that leads a new session, so
the command and everything it starts (DataLoader workers, dask worker processes, a shell's
children) share one process group:
- SIGINT, SIGTERM or SIGHUP to the runner stop the whole group (SIGTERM, then SIGKILL after
  STOP_GRACE_S) and `srkd run` exits with 128 + the signal number; the stage is not locked.
- SIGKILL of the runner cannot be caught. On Linux the supervisor asks the kernel for SIGTERM
  when the runner dies (prctl PR_SET_PDEATHSIG) and then stops the group the same way. Other
  POSIX systems lack that call; there the supervisor polls its parent every second instead.
- When the supervisor exits, the runner kills what is left of the group, so nothing a finished
  or stopped stage started keeps writing once the runner moves on.
A process that leaves the group on purpose (setsid, a daemon) is outside this guarantee, and so
is a stage of a runner that is itself killed together with its supervisor. Signals that were
ignored when `srkd run` started (SIGHUP under nohup) stay ignored. POSIX only: there is no
Windows version of process groups and signals used here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, Self

from pipeline.lock import (
    HashCache,
    fingerprint,
    output_hashes,
    read_lock,
    why_run,
    write_lock,
)
from pipeline.params import (
    ENV_OVERRIDES,
    ENV_STAGES_FILE,
    apply_overrides,
    check_params,
)
from pipeline.spec import PipelineSpec, Stage
from pipeline.supervise import (
    STOP_GRACE_S,
    STOP_SIGNALS,
    killpg,
    not_ignored,
    supervisor_argv,
)
from srkd.errors import SrkdError
from srkd.locking import locked_dir


class StageFailed(SrkdError, RuntimeError):
    """A stage's command exited non-zero."""


class RunInterrupted(SrkdError, RuntimeError):
    """`srkd run` received SIGINT, SIGTERM or SIGHUP; the running stage was stopped."""

    def __init__(self, signum: int, stage: str | None) -> None:
        name = signal.Signals(signum).name
        if stage is None:
            message = f"srkd run stopped by {name}"
        else:
            message = (f"srkd run stopped by {name} while stage {stage!r} ran; the stage was "
                       "stopped and is not recorded in stages.lock, so the next run re-runs it")
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
        """The shell's convention for 'ended by signal N' (130 for SIGINT, 143 for SIGTERM)."""


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
    runs, so a half-written output never passes for a finished one. Every params section an
    srkd command reads is checked before anything runs. Raises RunInterrupted on SIGINT,
    SIGTERM or SIGHUP (from the main thread; see the module docstring). One `srkd run` per
    project folder at a time (srkd.locking; a second is refused in one line), and an output
    folder still held by another srkd process is never cleared.
    """
    check_params(spec)
    root = spec.path.parent.resolve()
    if dry_run:
        return _run_stages(spec, root, targets, force, overrides or {}, dry_run, log)
    with locked_dir(root, "pipeline folder", StageFailed):
        return _run_stages(spec, root, targets, force, overrides or {}, dry_run, log)


def _run_stages(
    spec: PipelineSpec, root: Path, targets: list[str] | None, force: bool, overrides: dict[str, Any],
    dry_run: bool, log: Callable[[str], None],
) -> list[StageResult]:  # fmt: skip
    lock_path = root / "stages.lock"
    lock = read_lock(lock_path)
    hashes = HashCache(lock.get("hashes"))
    params = apply_overrides(spec.params, overrides)
    env = dict(os.environ)
    env[ENV_OVERRIDES] = json.dumps(overrides)
    env[ENV_STAGES_FILE] = str(spec.path.resolve())
    results = []
    with _SignalGuard() as guard:
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
            returncode = guard.run(stage.name, stage_argv(stage.cmd), cwd=root, env=env)
            if returncode != 0:
                raise StageFailed(
                    f"stage {stage.name!r} failed ({_exit_status(returncode)}): {stage.cmd}"
                )
            missing = [o.path for o in stage.outs if not (root / o.path).exists()]
            if missing:
                raise StageFailed(f"stage {stage.name!r} finished but did not write {missing}")
            lock["stages"][stage.name] = {**current.to_json(), "outs": output_hashes(stage, root, hashes)}
            lock["hashes"] = hashes.entries
            write_lock(lock_path, lock)
    return results


def _exit_status(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


class StageProcess:
    """A stage command running under its supervisor, which leads a new session: the supervisor,
    the command and everything the command starts share the process group `pgid`."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(supervisor_argv(argv), cwd=cwd, env=env,
                                     start_new_session=True)
        self.pgid = self.proc.pid
        self.returncode: int | None = None

    def wait(self) -> int:
        """Wait for the stage; kill what is left of its group; its exit status (-N: signal N)."""
        _wait_exited(self.proc)
        return self._reap()

    def stop(self, grace: float = STOP_GRACE_S) -> int:
        """Ask the supervisor to stop the group (SIGTERM, then SIGKILL after `grace` seconds);
        kill the group ourselves if the supervisor does not finish in time."""
        if self.returncode is None:
            # os.kill, not Popen.send_signal: that would reap an exited supervisor first
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            _wait_exited(self.proc, timeout=grace + 2.0)
        return self._reap()

    def kill(self) -> int:
        """SIGKILL the whole group now (nothing once the stage has been waited for)."""
        return self._reap()

    def _reap(self) -> int:
        if self.returncode is None:
            # the supervisor is not reaped yet (see _wait_exited), so its pid still names this
            # group and cannot have been reused: the group kill cannot hit a stranger
            killpg(self.pgid, signal.SIGKILL)
            self.returncode = self.proc.wait()
        return self.returncode


class _SignalGuard:
    """Runs stages; on SIGINT/SIGTERM/SIGHUP stops the running one and raises RunInterrupted.

    Outside the main thread (where Python cannot install handlers) stages still run in their
    own group, but a signal to the process is not turned into a stop."""

    def __init__(self) -> None:
        self.stage: tuple[str, StageProcess] | None = None
        self.stopping = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for signum in not_ignored(STOP_SIGNALS):  # `nohup srkd run` keeps ignoring SIGHUP
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def run(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]) -> int:
        """Run one stage command to its end; its exit status."""
        # blocked while the stage starts and is recorded, so a stop never misses it; the
        # supervisor inherits the mask and unblocks once its own handlers are in place
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            proc = StageProcess(argv, cwd, env)
            self.stage = (name, proc)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        try:
            return proc.wait()
        finally:
            proc.kill()  # a no-op after wait(); otherwise an error is on its way out
            self.stage = None

    def _handle(self, signum: int, frame: FrameType | None) -> NoReturn:
        current = self.stage
        if current is not None:
            if self.stopping:  # a second signal: no more grace
                current[1].kill()
            else:
                self.stopping = True
                current[1].stop()
        raise RunInterrupted(signum, current[0] if current else None)


def _wait_exited(proc: subprocess.Popen[bytes], timeout: float | None = None) -> bool:
    """Wait until `proc` has exited, without reaping it where the system allows; False on
    timeout. (Without os.waitid it is reaped: a later group kill then has a tiny pid-reuse race.)"""
    if not hasattr(os, "waitid"):
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    flags = os.WEXITED | os.WNOWAIT
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while os.waitid(os.P_PID, proc.pid, flags | (0 if deadline is None else os.WNOHANG)) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
    except ChildProcessError:  # already reaped (only by an interrupted _reap)
        pass
    return True


def _clear_outputs(stage: Stage, root: Path, include_persistent: bool = False) -> None:
    """Delete the stage's outputs (persistent ones only with `include_persistent`); a folder is
    deleted under its srkd lock, so one a leftover process still writes (or reads) is refused."""
    for out in stage.outs:
        target = root / out.path
        if (out.persist and not include_persistent) or not target.exists():
            continue
        if target.is_dir():
            with locked_dir(target, f"stage {stage.name!r} output", StageFailed):
                shutil.rmtree(target)
        else:
            target.unlink()

