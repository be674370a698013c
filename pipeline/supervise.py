"""The supervisor of a `srkd run` stage: a process between the runner and the stage command.

It leads its own session, so the command and everything the command starts share one process
group, and it stops that whole group (SIGTERM, then SIGKILL after STOP_GRACE_S) when the runner
asks (a signal) or dies (Linux: the kernel's parent-death signal, PR_SET_PDEATHSIG; elsewhere it
polls its parent every second). See pipeline/runner.py for the runner's side. POSIX only.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

STOP_GRACE_S = 5.0
"""Seconds a stopped stage's processes get between SIGTERM and SIGKILL."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals on which the runner (and a stage's supervisor) stop the stage."""

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def not_ignored(signals: tuple[int, ...]) -> list[int]:
    """The signals whose disposition is not SIG_IGN (ignoring was someone's explicit wish)."""
    return [s for s in signals if signal.getsignal(s) is not signal.SIG_IGN]


def killpg(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def supervisor_argv(argv: list[str]) -> list[str]:
    """Run `supervise_main` from this very copy of the code (not whatever `pipeline` the stage's
    folder or sys.path would find first), with the runner's pid and the stage's argv."""
    package_root = str(Path(__file__).resolve().parent.parent)
    code = f"import sys; sys.path.insert(0, {package_root!r}); import pipeline.supervise as s; s.supervise_main()"
    return [sys.executable, "-P", "-c", code, str(os.getpid()), *argv]


def supervise_main() -> NoReturn:
    """Entry point of the supervisor: argv = [runner pid, stage command...]."""
    runner_pid, argv = int(sys.argv[1]), sys.argv[2:]
    sys.exit(supervise(runner_pid, argv))


class _Stop(BaseException):
    """Raised by the supervisor's signal handler to leave whatever it was waiting in."""


def supervise(runner_pid: int, argv: list[str]) -> int:
    """Run `argv` in this process group; stop the whole group when the runner asks (a signal)
    or dies; the command's exit status otherwise (a command killed by signal N kills us with N,
    so the runner sees what the command saw)."""
    armed = set_parent_death_signal(signal.SIGTERM)

    # SIGTERM is how the runner and the kernel (parent death) reach us: always handled
    handled = {signal.SIGTERM, *not_ignored(STOP_SIGNALS)}

    def request_stop(signum: int, frame: FrameType | None) -> NoReturn:
        for other in handled:  # a second signal must not interrupt the stop it asks for
            signal.signal(other, signal.SIG_IGN)
        raise _Stop

    for signum in handled:
        signal.signal(signum, request_stop)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the runner
        if os.getppid() != runner_pid:  # the runner died before the death signal was armed
            raise _Stop
        try:
            # preexec_fn is safe here: the supervisor never starts a thread
            child = subprocess.Popen(argv, preexec_fn=functools.partial(_die_with, os.getpid()))  # noqa: PLW1509
        except OSError as exc:  # e.g. no such program: one line, the shell's exit code
            print(f"srkd run: cannot start {argv[0]!r}: {exc.strerror or exc}", file=sys.stderr)
            return 127
        returncode = _wait_child(child, runner_pid, poll=None if armed else 1.0)
        for signum in handled:  # the command is over; what it left behind, the runner kills
            signal.signal(signum, signal.SIG_IGN)
    except _Stop:
        _stop_own_group()
    if returncode < 0:  # die the same way (SIGKILL cannot be given a handler: EINVAL)
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
        return 128 - returncode  # a signal whose default action is not to terminate
    return returncode


def _wait_child(child: subprocess.Popen[bytes], runner_pid: int, poll: float | None) -> int:
    """The child's exit status; _Stop if the runner is gone (checked every `poll` seconds;
    never where the parent-death signal does that job)."""
    while True:
        try:
            return child.wait(timeout=poll)
        except subprocess.TimeoutExpired:
            if os.getppid() != runner_pid:
                raise _Stop from None


def _stop_own_group(grace: float = STOP_GRACE_S) -> NoReturn:
    """SIGTERM everything in this group, wait for our children up to `grace` seconds, then
    SIGKILL the group, ourselves included."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.05)
        except ChildProcessError:  # every child has exited
            break
    killpg(0, signal.SIGKILL)
    os._exit(128 + signal.SIGKILL)  # not reached


def _die_with(parent: int) -> None:
    """preexec_fn of the stage command: SIGKILL when the supervisor dies (Linux)."""
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send `signum` to this process when its parent dies (Linux only).

    Returns False where that is not available (other systems, or a libc without prctl). The
    signal follows the parent *thread* that started us: start children from the main thread.
    """
    prctl = _prctl()
    return prctl is not None and prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0


@functools.cache
def _prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
