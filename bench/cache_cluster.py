"""A cache build on a dask.distributed cluster, rehearsed with failures: a scheduler and K workers
started as a user starts them (`dask scheduler`, `dask worker`), `srkd cache-teacher --scheduler`
as the driver, one worker SIGKILLed and then the driver SIGKILLed mid-build, the same command run
again; then `srkd inspect-cache --verify`. Reports lost and corrupt samples (both must be 0) and
writes the run-book (every command, in order) with the JSON.

    python bench/cache_cluster.py                              # 94 drives x 40 keyframes: ~3,000 train samples
    python bench/cache_cluster.py --drives 4 --keyframes 3 --workers 2 --sequence-samples 2

The data are simulated nuScenes-format lidar drives (`srkd generate-synthetic --kind outdoor`,
8 beams) and the teacher a randomly initialised tiny outdoor PTv3: what is rehearsed is the
store and the build, not the teacher.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class RunBook:
    """Runs commands (in the foreground or as background processes) and records each one."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.lines: list[str] = []
        self.env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "SRKD_STAGES": str(work / "none.yaml")}  # fmt: skip
        self.logs: list[Any] = []

    def note(self, line: str) -> None:
        self.lines.append(f"# {line}")

    def run(self, args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
        self.lines.append(shlex.join(args))
        return subprocess.run(args, env=self.env, cwd=self.work, capture_output=True, text=True, timeout=timeout)

    def start(self, args: list[str], name: str) -> subprocess.Popen:
        self.lines.append(shlex.join(args) + " &")
        log = open(self.work / f"{name}.log", "w")  # noqa: SIM115 (closed in close())
        self.logs.append(log)
        return subprocess.Popen(args, env=self.env, cwd=self.work, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

    def close(self) -> None:
        for log in self.logs:
            log.close()


def srkd(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "cli.py"), *args]


def committed(cache: Path) -> int:
    """Samples committed so far (a fresh reader: its index is built from what is on disk)."""
    from srkd.cache import CacheReader
    from srkd.errors import CacheError

    try:
        return len(CacheReader(cache, cache_bytes=0).scene_ids)
    except CacheError:
        return 0


def wait_for(cache: Path, count: int, driver: subprocess.Popen, timeout: float) -> int:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        done = committed(cache)
        if done >= count or driver.poll() is not None:
            return done
        time.sleep(0.5)
    raise TimeoutError(f"{count} samples not committed within {timeout:.0f} s")


def make_teacher(path: Path) -> None:
    import torch

    from srkd.data.scannet import get_dataset_spec
    from srkd.models import create_model, save_checkpoint

    ds = get_dataset_spec("nuscenes")
    torch.manual_seed(0)
    model = create_model("test_ptv3_outdoor", num_classes=ds.num_classes, in_channels=ds.feature_dim)
    save_checkpoint(path, model, class_names=ds.class_names, feature_names=ds.feature_names, color_norm="pointcept")


def rehearse(work: Path, drives: int, keyframes: int, workers: int, sequence_samples: int,
             timeout: float = 1800) -> dict[str, Any]:  # fmt: skip
    """The whole rehearsal in `work`; returns the report (lost, corrupt, run-book, timings)."""
    book = RunBook(work)
    (work / "none.yaml").write_text("params: {}\nstages: {}\n")
    out: dict[str, Any] = {"drives": drives, "keyframes": keyframes, "workers": workers,
                           "sequence_samples": sequence_samples}  # fmt: skip
    res = book.run(srkd("generate-synthetic", "--kind", "outdoor", "--format", "nuscenes", "--out", "data",
                        "--scenes", str(drives), "--keyframes", str(keyframes), "--beams", "8",
                        "--azimuth-steps", "180"))  # fmt: skip
    if res.returncode:
        raise RuntimeError(res.stdout + res.stderr)
    book.note("teacher.pt: a randomly initialised test_ptv3_outdoor saved with srkd.models.save_checkpoint")
    make_teacher(work / "teacher.pt")
    cache, sched_file = work / "cache", work / "scheduler.json"
    scheduler = book.start(["dask", "scheduler", "--scheduler-file", str(sched_file), "--port", "0",
                            "--no-dashboard"], "scheduler")  # fmt: skip
    procs = [scheduler]
    try:
        for _ in range(100):
            if sched_file.is_file() and json.loads(sched_file.read_text() or "{}").get("address"):
                break
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for i in range(workers):
            procs.append(book.start(["dask", "worker", "--scheduler-file", str(sched_file), "--nthreads", "1",
                                     "--no-nanny", "--no-dashboard", "--name", f"w{i}"], f"worker{i}"))  # fmt: skip
        build = srkd("cache-teacher", "--dataset", "nuscenes", "--teacher", "teacher.pt", "--data-root", "data",
                     "--out", "cache", "--scheduler", address, "--device", "cpu",
                     "--sequence-samples", str(sequence_samples))  # fmt: skip
        from srkd.data.sources import open_scenes

        total = out["samples"] = len(open_scenes("nuscenes", work / "data", "train", require_labels=False).scene_ids)
        start = time.perf_counter()
        driver = book.start(build, "driver1")
        first = wait_for(cache, max(1, total // 4), driver, timeout)
        book.note(f"after {first} committed samples: SIGKILL worker w0 (pid {procs[1].pid})")
        os.killpg(procs[1].pid, signal.SIGKILL)
        second = wait_for(cache, max(first + 1, total // 2), driver, timeout)
        book.note(f"after {second} committed samples: SIGKILL the driver (pid {driver.pid})")
        driver_alive = driver.poll() is None
        if driver_alive:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        out.update(killed_worker_at=first, killed_driver_at=second, driver_was_running=driver_alive)
        book.note("re-run the same command (the killed worker stays dead)")
        rerun = book.run(build, timeout=timeout)
        out["rerun_exit"] = rerun.returncode
        out["rerun_output"] = rerun.stdout[-2000:] + rerun.stderr[-2000:]
        said = rerun.stdout + rerun.stderr  # the re-run's plan and summary: equal when it counts right
        planned, wrote = re.search(r"(\d+) scene\(s\) to compute", said), re.search(r"wrote (\d+) scene\(s\)", said)
        out["rerun_planned"] = int(planned.group(1)) if planned else None
        out["rerun_wrote"] = int(wrote.group(1)) if wrote else None
        out["build_s"] = time.perf_counter() - start
        check = book.run(srkd("inspect-cache", "cache", "--verify", "--json"), timeout=timeout)
        report = json.loads(check.stdout[check.stdout.index("{"):]) if "{" in check.stdout else {}
        summary = report.get("summary", {})
        out["committed"] = summary.get("scenes", 0)
        out["lost"] = total - out["committed"]
        out["corrupt"] = len(report.get("problems", ["inspect-cache gave no report"]))
        out["problems"] = report.get("problems")
        out["bytes_per_point"] = summary.get("bytes_per_point")
    finally:
        for proc in procs:
            if proc.poll() is None:  # Ctrl-C: a nanny-less `dask worker` hangs on SIGTERM
                os.killpg(proc.pid, signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        book.close()
    out["runbook"] = book.lines
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drives", type=int, default=94, help="drives (the train split gets ~80%%)")
    parser.add_argument("--keyframes", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sequence-samples", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "srkd_bench" / "cache_cluster.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cache_cluster_", dir=args.workdir))
    result = rehearse(work, args.drives, args.keyframes, args.workers, args.sequence_samples)
    print("\n".join(result["runbook"]))
    print(f"\n{result['samples']} samples, {result['workers']} workers: worker killed at {result['killed_worker_at']}, "
          f"driver killed at {result['killed_driver_at']} committed samples; re-run exit {result['rerun_exit']}; "
          f"lost {result['lost']}, corrupt {result['corrupt']}; {result['build_s']:.0f} s")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**result, "workdir": str(work)}, indent=2))
    print(f"wrote {args.out} (work folder {work})")


if __name__ == "__main__":
    main()
