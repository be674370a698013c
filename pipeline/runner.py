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
from typing import IO, Any, NoReturn, Self

from pipeline.lock import (
    Fingerprint,
    HashCache,
    fingerprint,
    output_hashes,
    read_lock,
    why_run,
    write_lock,
)
from pipeline.params import (
    DEFAULT_JOBS,
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
from srkd.errors import ConfigError, SrkdError
from srkd.locking import locked_dir
from srkd.settings import THREADS_ENV, default_cpu_threads


class StageFailed(SrkdError, RuntimeError):
    """A stage's command exited non-zero."""


class RunInterrupted(SrkdError, RuntimeError):
    """`srkd run` received SIGINT, SIGTERM or SIGHUP; the running stage was stopped."""

    def __init__(self, signum: int, stages: list[str]) -> None:
        name = signal.Signals(signum).name
        if not stages:
            message = f"srkd run stopped by {name}"
        elif len(stages) == 1:
            message = (f"srkd run stopped by {name} while stage {stages[0]!r} ran; the stage was "
                       "stopped and is not recorded in stages.lock, so the next run re-runs it")
        else:
            message = (f"srkd run stopped by {name} while stages {_names(stages)} ran; they were "
                       "stopped and are not recorded in stages.lock, so the next run re-runs them")
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
    jobs: int = DEFAULT_JOBS,
) -> list[StageResult]:
    """Run the stages needed for `targets` (default: all); returns what ran and why.

    `jobs` > 1 runs up to that many stages at once whose upstream stages have finished (their
    output lines prefixed with the stage's name), each with its share of the CPU threads
    (srkd.settings.default_cpu_threads) unless $SRKD_THREADS is set; when one fails, the others
    still running are stopped and not recorded.

    The lock entry of a stage is written only after its command succeeded, so a killed run
    resumes at the first unfinished stage. Non-persistent outputs are deleted before a stage
    runs, so a half-written output never passes for a finished one. Every params section an
    srkd command reads is checked before anything runs. Raises RunInterrupted on SIGINT,
    SIGTERM or SIGHUP (from the main thread; see the module docstring). One `srkd run` per
    project folder at a time (srkd.locking; a second is refused in one line), and an output
    folder still held by another srkd process is never cleared.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    check_params(spec)
    root = spec.path.parent.resolve()
    if dry_run:
        return _Run(spec, root, overrides or {}, log, 1).stages(targets, force, dry_run)
    with locked_dir(root, "pipeline folder", StageFailed):
        return _Run(spec, root, overrides or {}, log, jobs).stages(targets, force, dry_run)


class _Run:
    """One `srkd run`: decides which stages run and starts them, up to `jobs` at a time, each
    once every stage it waits for (PipelineSpec.upstream) has finished. Everything but the stage
    commands happens in this (main) thread: fingerprints, output hashes and stages.lock."""

    def __init__(self, spec: PipelineSpec, root: Path, overrides: dict[str, Any],
                 log: Callable[[str], None], jobs: int) -> None:  # fmt: skip
        self.spec, self.root, self.log, self.jobs = spec, root, log, jobs
        self.lock_path = root / "stages.lock"
        self.lock = read_lock(self.lock_path)
        self.hashes = HashCache(self.lock.get("hashes"))
        self.params = apply_overrides(spec.params, overrides)
        self.env = dict(os.environ)
        self.env[ENV_OVERRIDES] = json.dumps(overrides)
        self.env[ENV_STAGES_FILE] = str(spec.path.resolve())
        if jobs > 1:
            # a fixed share for the whole run, not one that follows how many stages happen to run
            # at a moment: a stage's thread count, and so its numbers, must not depend on timing
            self.env.setdefault(THREADS_ENV, str(default_cpu_threads(jobs)))
            self.env.setdefault("PYTHONUNBUFFERED", "1")  # piped output: every line as it comes
        self.fingerprints: dict[str, Fingerprint] = {}

    def stages(self, targets: list[str] | None, force: bool, dry_run: bool) -> list[StageResult]:
        waiting = self.spec.order(targets)
        upstream = self.spec.upstream()
        results: dict[str, StageResult] = {}
        with _SignalGuard() as guard:
            while waiting or guard.running:
                for stage in list(waiting):  # dependency order among the stages free to go
                    if len(guard.running) >= self.jobs:
                        break
                    if any(u not in results or u in guard.running for u in upstream[stage.name]):
                        continue
                    waiting.remove(stage)
                    results[stage.name] = self._begin(stage, targets, force, dry_run, guard)
                if guard.running:
                    name, returncode = guard.wait_any()
                    self._finish(self.spec.stages[name], returncode, guard)
                elif waiting and all(any(u not in results for u in upstream[s.name]) for s in waiting):
                    raise AssertionError(f"no stage can start: {[s.name for s in waiting]}")  # order() forbids it
        return [results[s.name] for s in self.spec.order(targets)]

    def _begin(self, stage: Stage, targets: list[str] | None, force: bool, dry_run: bool,
               guard: _SignalGuard) -> StageResult:  # fmt: skip
        """Skip `stage` (up to date) or clear its outputs and start it."""
        current = fingerprint(stage, self.params, self.root, self.hashes)
        reasons = why_run(stage, current, self.lock["stages"].get(stage.name), self.root, self.hashes)
        if force and (not targets or stage.name in targets):
            reasons = reasons or ["--force"]
        if not reasons:
            self.log(f"[dim]stage {stage.name}: up to date, skipped[/dim]")
            return StageResult(stage.name, False, [])
        self.log(f"[bold]stage {stage.name}[/bold] runs because " + "; ".join(reasons))
        if dry_run:
            return StageResult(stage.name, True, reasons)
        locked = self.lock["stages"].get(stage.name)
        inputs_changed = locked is not None and any(
            locked.get(k) != v for k, v in current.to_json().items()
        )
        # a persistent output (a resumable cache) is kept across crashes and first runs, but not
        # when the stage's cmd, deps, params or version changed: it was built from other inputs
        _clear_outputs(stage, self.root, include_persistent=inputs_changed)
        self.log(f"[dim]$ {stage.cmd}[/dim]")
        self.fingerprints[stage.name] = current
        label = stage.name if self.jobs > 1 else None
        guard.start(stage.name, stage_argv(stage.cmd), self.root, self.env, label)
        return StageResult(stage.name, True, reasons)

    def _finish(self, stage: Stage, returncode: int, guard: _SignalGuard) -> None:
        """Record a finished stage in stages.lock; if it failed, first record the stages beside it
        that have already finished well, then stop the others and raise StageFailed."""
        problem = self._problem(stage, returncode)
        if problem is None:
            self._record(stage)
            return
        for name, code in guard.reap_exited():
            other = self._problem(self.spec.stages[name], code)
            if other is None:
                self._record(self.spec.stages[name])
            else:
                problem += f"; {other}"
        stopped = guard.stop_all()
        if stopped:
            problem += (f"; stopped {_names(stopped)}, which ran beside it (not recorded in "
                        "stages.lock, so the next run re-runs them)")
        raise StageFailed(problem)

    def _problem(self, stage: Stage, returncode: int) -> str | None:
        """Why a finished stage does not count as done (None: it does)."""
        if returncode != 0:
            return f"stage {stage.name!r} failed ({_exit_status(returncode)}): {stage.cmd}"
        missing = [o.path for o in stage.outs if not (self.root / o.path).exists()]
        if missing:
            return f"stage {stage.name!r} finished but did not write {missing}"
        return None

    def _record(self, stage: Stage) -> None:
        current = self.fingerprints.pop(stage.name)
        self.lock["stages"][stage.name] = {**current.to_json(), "outs": output_hashes(stage, self.root, self.hashes)}
        self.lock["hashes"] = self.hashes.entries
        write_lock(self.lock_path, self.lock)


def _names(stages: list[str]) -> str:
    return ", ".join(repr(n) for n in stages)


def _exit_status(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


class StageProcess:
    """A stage command running under its supervisor, which leads a new session: the supervisor,
    the command and everything the command starts share the process group `pgid`."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], label: str | None = None) -> None:
        """`label`: copy the stage's stdout and stderr, line by line and prefixed `[label] `, to
        this process's stderr (stages that run side by side); None: they share ours."""
        pipe = subprocess.PIPE if label is not None else None
        self.proc = subprocess.Popen(supervisor_argv(argv), cwd=cwd, env=env, start_new_session=True,
                                     stdout=pipe, stderr=subprocess.STDOUT if pipe else None)  # fmt: skip
        self.pgid = self.proc.pid
        self.returncode: int | None = None
        self.stop_requested = False
        self.copier: _LineCopier | None = None
        if label is not None and self.proc.stdout is not None:
            self.copier = _LineCopier(self.proc.stdout, f"[{label}] ")

    def wait(self) -> int:
        """Wait for the stage; kill what is left of its group; its exit status (-N: signal N)."""
        _wait_exited(self.proc)
        return self._reap()

    def exited(self) -> bool:
        """True once the stage's supervisor has exited (it is not reaped: see _reap)."""
        return self.returncode is not None or _wait_exited(self.proc, timeout=0.0)

    def request_stop(self) -> None:
        """Ask the supervisor to stop the group (SIGTERM); `stop` then waits for it."""
        if self.returncode is None and not self.stop_requested:
            self.stop_requested = True
            # os.kill, not Popen.send_signal: that would reap an exited supervisor first
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, grace: float = STOP_GRACE_S) -> int:
        """Ask the supervisor to stop the group (SIGTERM, then SIGKILL after `grace` seconds);
        kill the group ourselves if the supervisor does not finish in time."""
        if self.returncode is None:
            self.request_stop()
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
            if self.copier is not None:
                self.copier.finish()
        return self.returncode


class _LineCopier:
    """Copies a stage's piped output to stderr, line by line with a prefix, in a daemon thread."""

    FINISH_S = 1.0
    """How long `finish` waits for the last lines once the stage's group is gone."""

    def __init__(self, stream: IO[bytes], prefix: str) -> None:
        self.stream, self.prefix, self.closed = stream, prefix, False
        self.thread = threading.Thread(target=self._copy, daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        for raw in self.stream:
            if self.closed:  # the stage is over; a process that left its group still writes
                return
            line = raw.decode(errors="replace").rstrip("\r\n").rsplit("\r", 1)[-1]
            sys.stderr.write(f"{self.prefix}{line}\n")
            sys.stderr.flush()

    def finish(self) -> None:
        """Wait for the end of the output (at most FINISH_S: a process that left the stage's group
        can hold the pipe open), then stop copying."""
        self.thread.join(timeout=self.FINISH_S)
        self.closed = True


class _SignalGuard:
    """Runs stages; on SIGINT/SIGTERM/SIGHUP stops every running one and raises RunInterrupted.

    Outside the main thread (where Python cannot install handlers) stages still run in their
    own group, but a signal to the process is not turned into a stop."""

    POLL_S = 0.05
    """How often `wait_any` looks at stages running side by side."""

    def __init__(self) -> None:
        self.running: dict[str, StageProcess] = {}
        self.stopping = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for signum in not_ignored(STOP_SIGNALS):  # `nohup srkd run` keeps ignoring SIGHUP
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.stopping:  # stopped already, or a second signal asked for no more grace
                for proc in self.running.values():
                    proc.kill()
                self.running.clear()
            self.stop_all()  # an error is on its way out: nothing outlives it
        finally:
            for signum, handler in self.previous.items():
                signal.signal(signum, handler)

    def start(self, name: str, argv: list[str], cwd: Path, env: dict[str, str], label: str | None = None) -> None:
        """Start one stage command (see StageProcess for `label`)."""
        # blocked while the stage starts and is recorded, so a stop never misses it; the
        # supervisor inherits the mask and unblocks once its own handlers are in place
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.running[name] = StageProcess(argv, cwd, env, label)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def wait_any(self) -> tuple[str, int]:
        """Wait until a running stage ends; (its name, its exit status). Blocks on the only one
        when one runs; polls every POLL_S seconds when several do."""
        while True:
            for name, proc in self.running.items():
                if len(self.running) == 1 or proc.exited():
                    returncode = proc.wait()
                    del self.running[name]
                    return name, returncode
            time.sleep(self.POLL_S)

    def reap_exited(self) -> list[tuple[str, int]]:
        """(name, exit status) of every running stage that has exited meanwhile, now reaped."""
        done = [(name, proc.wait()) for name, proc in self.running.items() if proc.exited()]
        for name, _ in done:
            del self.running[name]
        return done

    def stop_all(self) -> list[str]:
        """Stop every running stage (SIGTERM to all first, then wait for each); their names. A
        signal meanwhile kills them without more grace."""
        names = list(self.running)
        if names:
            self.stopping = True
        for proc in self.running.values():
            proc.request_stop()
        for proc in self.running.values():
            proc.stop()
        self.running.clear()
        return names

    def _handle(self, signum: int, frame: FrameType | None) -> NoReturn:
        names = list(self.running)
        if self.stopping:  # a second signal: no more grace
            for proc in self.running.values():
                proc.kill()
        else:
            self.stop_all()
        raise RunInterrupted(signum, names)


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

