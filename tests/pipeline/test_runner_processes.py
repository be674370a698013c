"""`srkd run` owns its stages: a killed or interrupted runner leaves no stage process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.runner import RunInterrupted, StageFailed, _SignalGuard, run_pipeline
from pipeline.spec import load_spec
from pipeline.supervise import _Stop, _wait_child

PY = sys.executable

# The stage starts a child (standing in for DataLoader or dask workers); both append to a
# heartbeat file every 0.1 s until a file `go` exists. `out/partial.txt` is a half-written output.
# Both give up after 90 s, so a regression cannot leave them running for ever.
WORKER = """\
import os, subprocess, sys, time
give_up = time.monotonic() + 90
if sys.argv[1] == "child":
    while time.monotonic() < give_up:
        with open("hb_child", "a") as f:
            f.write("c")
        time.sleep(0.1)
    sys.exit(1)
child = subprocess.Popen([sys.executable, __file__, "child"])
os.makedirs("out", exist_ok=True)
open("out/partial.txt", "w").write("half")
open("pids", "w").write(f"{os.getpid()} {child.pid}")
while not os.path.exists("go"):
    with open("hb_stage", "a") as f:
        f.write("s")
    time.sleep(0.1)
    if time.monotonic() > give_up:
        sys.exit(1)
child.terminate()
child.wait()
os.remove("out/partial.txt")
open("out/result.txt", "w").write("done")
"""

SPEC = f"""\
stages:
  work:
    cmd: {PY} worker.py stage
    outs: [out]
  report:
    cmd: {PY} -c "open('report.txt','w').write(open('out/result.txt').read().upper())"
    deps: [out]
    outs: [report.txt]
"""


def project(folder: Path, script: str = "worker.py", code: str = WORKER, spec: str = SPEC) -> Path:
    """A project folder holding the stage script and stages.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / script).write_text(code)
    (folder / "stages.yaml").write_text(spec)
    return folder


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():  # Linux: read the state letter
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _default_stop_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def start_runner(folder: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """`srkd run` in a subprocess (its own session), once the stage and its child beat."""
    # SIGINT and SIGHUP start at their defaults, as in a terminal: a test run in the background
    # (`cmd &`, nohup) inherits them ignored, and the runner rightly keeps ignoring them
    runner = subprocess.Popen([PY, "-m", "cli", "run"], cwd=folder, start_new_session=True,
                              stderr=subprocess.PIPE, text=True, preexec_fn=_default_stop_signals)  # noqa: PLW1509
    wait_for(lambda: size(folder / "hb_stage") >= 3 and size(folder / "hb_child") >= 3,
             what="the stage and its child to start")
    return runner, [int(p) for p in (folder / "pids").read_text().split()]


def assert_stopped(folder: Path, pids: list[int]) -> None:
    """Every stage process is gone within a few seconds, and the heartbeats stand still."""
    wait_for(lambda: not any(alive(p) for p in pids), timeout=20.0, what="the stage to stop")
    before = size(folder / "hb_stage"), size(folder / "hb_child")
    time.sleep(0.5)
    assert (size(folder / "hb_stage"), size(folder / "hb_child")) == before


def assert_rerun_matches_clean_run(folder: Path, tmp_path: Path) -> None:
    """After `go`, a re-run finishes both stages with the outputs of an undisturbed run."""
    (folder / "go").write_text("")
    results = run_pipeline(load_spec(folder / "stages.yaml"))
    assert [r.name for r in results if r.ran] == ["work", "report"]
    clean = tmp_path / "clean"
    project(clean)
    (clean / "go").write_text("")
    run_pipeline(load_spec(clean / "stages.yaml"))
    for name in ("report.txt",):
        assert (folder / name).read_text() == (clean / name).read_text() == "DONE"
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["result.txt"]


def test_sigkill_of_the_runner_stops_the_stage_and_its_children(tmp_path):
    # nothing can catch SIGKILL: the stage's supervisor gets the parent-death signal (Linux) or
    # notices its parent is gone, and stops the stage's whole process group
    folder = project(tmp_path / "run")
    runner, pids = start_runner(folder)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=30)
    assert_stopped(folder, pids)
    assert_rerun_matches_clean_run(folder, tmp_path)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_runner_stops_the_stage_and_exits_nonzero(tmp_path, signum):
    folder = project(tmp_path / "run")
    runner, pids = start_runner(folder)
    # SIGINT as a terminal's Ctrl-C sends it (to the foreground group); the stage has its own
    os.killpg(runner.pid, signum)
    _, stderr = runner.communicate(timeout=60)
    assert runner.returncode == 128 + signum
    assert f"stopped by {signal.Signals(signum).name} while stage 'work' ran" in stderr
    assert "Traceback" not in stderr
    assert_stopped(folder, pids)
    assert not (folder / "stages.lock").exists()  # the interrupted stage is not recorded
    assert_rerun_matches_clean_run(folder, tmp_path)


def test_processes_a_finished_stage_leaves_behind_are_killed(tmp_path):
    # a stage that exits but leaves a background process (still writing) does not outlive
    # its turn: the runner kills what is left of the stage's process group
    leak = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(90)']); open('bg.pid', 'w').write(str(p.pid)); "
            "open('done.txt', 'w').write('x')")
    (tmp_path / "stages.yaml").write_text(
        f'stages:\n  leaky:\n    cmd: {PY} -c "{leak}"\n    outs: [done.txt]\n')
    run_pipeline(load_spec(tmp_path / "stages.yaml"))
    background = int((tmp_path / "bg.pid").read_text())
    wait_for(lambda: not alive(background), timeout=10.0, what="the left-behind process to die")


def test_stage_exit_status_is_reported(tmp_path):
    cases = {
        "killed": (f'{PY} -c "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"',
                   "killed by SIGKILL"),
        "missing": ("no-such-program-srkd --x", "exit code 127"),
    }
    for name, (cmd, words) in cases.items():
        (tmp_path / "stages.yaml").write_text(f"stages:\n  {name}:\n    cmd: {cmd}\n")
        with pytest.raises(StageFailed, match=words):
            run_pipeline(load_spec(tmp_path / "stages.yaml"))


def test_in_process_run_turns_sigterm_into_run_interrupted(tmp_path):
    # run_pipeline called from Python (the main thread): the same stop, as an exception
    folder = project(tmp_path / "run")

    def sigterm_once_beating() -> None:  # a thread: SIGALRM belongs to pytest-timeout
        wait_for(lambda: size(folder / "hb_stage") >= 3 and size(folder / "hb_child") >= 3)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=sigterm_once_beating, daemon=True)
    sender.start()
    with pytest.raises(RunInterrupted, match="while stage 'work' ran") as info:
        run_pipeline(load_spec(folder / "stages.yaml"))
    sender.join()
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the runner's handlers are gone
    assert_stopped(folder, [int(p) for p in (folder / "pids").read_text().split()])


def test_signals_ignored_at_start_stay_ignored():
    # `nohup srkd run`: a hangup must not stop the run
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with _SignalGuard():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_supervisor_notices_a_dead_runner_by_polling():
    # where there is no parent-death signal (not Linux) the supervisor polls its parent pid
    child = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(_Stop):
            _wait_child(child, runner_pid=-1, poll=0.1)  # -1 is nobody's parent
        assert _wait_child(subprocess.Popen([PY, "-c", "pass"]), os.getppid(), poll=0.1) == 0
    finally:
        child.kill()
        child.wait()


# Two stages that can only finish together: each marks that it started, then waits (at most 30 s)
# for the other's mark, so `--jobs 2` passes only when they really run side by side. `left`
# exits 3 instead when `fail` exists; `right` then waits for a `go` that never comes.
PAIR = """\
import os, sys, time
me, other = sys.argv[1], sys.argv[2]
open(f"{me}.pid", "w").write(str(os.getpid()))
open(f"{me}.started", "w").write(os.environ.get("SRKD_THREADS", "unset"))
print(f"{me} waits for {other}", flush=True)
give_up = time.monotonic() + 30
while not os.path.exists(f"{other}.started") or (me == "right" and os.path.exists("fail")):
    if time.monotonic() > give_up or os.path.exists("go"):
        sys.exit(1)
    time.sleep(0.05)
if me == "left" and os.path.exists("fail"):
    sys.exit(3)
open(f"{me}.txt", "w").write(me)
"""

PAIR_SPEC = f"""\
stages:
  left:
    cmd: {PY} pair.py left right
    outs: [left.txt]
  right:
    cmd: {PY} pair.py right left
    outs: [right.txt]
  both:
    cmd: {PY} -c "open('both.txt','w').write(open('left.txt').read() + open('right.txt').read())"
    deps: [left.txt, right.txt]
    outs: [both.txt]
"""


def pair_project(folder: Path) -> Path:
    return project(folder, "pair.py", PAIR, PAIR_SPEC)


def test_jobs_run_independent_stages_side_by_side(tmp_path, monkeypatch, capfd):
    folder = pair_project(tmp_path / "run")
    monkeypatch.delenv("SRKD_THREADS")
    results = run_pipeline(load_spec(folder / "stages.yaml"), jobs=2)
    assert [r.name for r in results if r.ran] == ["left", "right", "both"]
    assert (folder / "both.txt").read_text() == "leftright"
    # each of the two gets its share of half the cores; the output is prefixed by stage
    assert (folder / "left.started").read_text() == str(max(1, (os.cpu_count() or 2) // 2 // 2))
    assert "[left] left waits for right" in capfd.readouterr().err
    assert run_pipeline(load_spec(folder / "stages.yaml"), jobs=2)[0].ran is False  # recorded


def test_a_failing_stage_stops_the_stage_beside_it(tmp_path):
    folder = pair_project(tmp_path / "run")
    (folder / "fail").write_text("")
    with pytest.raises(StageFailed, match="'left' failed .exit code 3.*stopped 'right'"):
        run_pipeline(load_spec(folder / "stages.yaml"), jobs=2)
    right = int((folder / "right.pid").read_text())
    wait_for(lambda: not alive(right), timeout=20.0, what="the stage beside it to stop")
    assert not (folder / "stages.lock").exists()  # neither is recorded
    (folder / "fail").unlink()
    for mark in folder.glob("*.started"):
        mark.unlink()
    results = run_pipeline(load_spec(folder / "stages.yaml"), jobs=2)
    assert [r.name for r in results if r.ran] == ["left", "right", "both"]


def test_interrupted_run_stops_every_stage_running(tmp_path):
    folder = pair_project(tmp_path / "run")
    (folder / "fail").write_text("")  # `right` keeps waiting, `left` for `right`'s mark
    (folder / "pair.py").write_text(PAIR.replace("sys.exit(3)", "time.sleep(30)"))

    def sigterm_once_both_started() -> None:  # a thread: SIGALRM belongs to pytest-timeout
        wait_for(lambda: (folder / "left.pid").exists() and (folder / "right.pid").exists())
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=sigterm_once_both_started, daemon=True)
    sender.start()
    with pytest.raises(RunInterrupted, match="while stages 'left', 'right' ran"):
        run_pipeline(load_spec(folder / "stages.yaml"), jobs=2)
    sender.join()
    pids = [int((folder / f"{n}.pid").read_text()) for n in ("left", "right")]
    wait_for(lambda: not any(alive(p) for p in pids), timeout=20.0, what="both stages to stop")
    assert not (folder / "stages.lock").exists()


def test_a_stage_that_finished_beside_a_failing_one_stays_recorded(tmp_path, monkeypatch):
    # both have exited when the runner next looks (every 5 s here), and it sees the failing one
    # first: `quick` still counts as done and is recorded, and only `slow` re-runs
    monkeypatch.setattr(_SignalGuard, "POLL_S", 5.0)
    done = "open('quick.txt', 'w').write('q')"
    fail = ("import os, sys, time; deadline = time.monotonic() + 30\n"
            "while not os.path.exists('quick.txt') and time.monotonic() < deadline: time.sleep(0.05)\n"
            "time.sleep(0.2); sys.exit(0 if os.path.exists('fixed') else 4)")
    (tmp_path / "slow.py").write_text(fail)
    (tmp_path / "stages.yaml").write_text(
        f"stages:\n  slow:\n    cmd: {PY} slow.py\n    outs: [slow.txt]\n"
        f'  quick:\n    cmd: {PY} -c "{done}"\n    outs: [quick.txt]\n')
    with pytest.raises(StageFailed, match="'slow' failed .exit code 4.") as info:
        run_pipeline(load_spec(tmp_path / "stages.yaml"), jobs=2)
    assert "stopped" not in str(info.value)
    (tmp_path / "fixed").write_text("")
    (tmp_path / "slow.py").write_text(fail.replace("sys.exit(0", "open('slow.txt', 'w').write('s'); sys.exit(0"))
    results = run_pipeline(load_spec(tmp_path / "stages.yaml"), jobs=2)
    assert [r.name for r in results if r.ran] == ["slow"]


def test_a_dep_inside_another_stages_output_waits_for_it(tmp_path):
    # `use` reads data/x.txt, inside `make`'s output folder `data`: it must wait, whatever --jobs
    make = "import os, time; os.makedirs('data'); time.sleep(0.5); open('data/x.txt', 'w').write('x')"
    use = "open('y.txt', 'w').write(open('data/x.txt').read())"
    (tmp_path / "stages.yaml").write_text(
        f'stages:\n  use:\n    cmd: {PY} -c "{use}"\n    deps: [data/x.txt]\n    outs: [y.txt]\n'
        f'  make:\n    cmd: {PY} -c "{make}"\n    outs: [data]\n')
    spec = load_spec(tmp_path / "stages.yaml")
    assert spec.upstream()["use"] == ["make"]
    results = run_pipeline(spec, jobs=2)
    assert [r.name for r in results if r.ran] == ["make", "use"]
    assert (tmp_path / "y.txt").read_text() == "x"
