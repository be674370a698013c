"""Bad run folders through the CLI: every case is one red `error:` line naming the file or value
and what to do, exit code 1, and nothing half-written left behind (no *.tmp, no torn
train_state.pt; the last complete state still loads and resumes)."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from srkd.distill.config import OptimConfig
from srkd.distill.loop import STATE_FILE
from srkd.distill.state import read_state
from srkd.io import temp_sibling
from tests.conftest import WIDE


def invoke(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], env=WIDE)


def teacher_args(data_root: Path, out: Path, *extra, epochs: int = 1, model: str = "test_spunet") -> list:
    """`srkd train-teacher` of a tiny model: 4 train scenes / batch 2 = 2 steps per epoch."""
    return ["train-teacher", "--model", model, "--data-root", data_root, "--out", out,
            "--epochs", epochs, "--batch-size", 2, "--grid-size", 0.1, "--device", "cpu",
            "--val-max-scenes", 1, "--checkpoint-every", 1, *extra]


def distill_args(cache: Path, out: Path, *extra, epochs: int = 1) -> list:
    return ["distill", "--cache", cache, "--out", out, "--student", "test_spunet", "--epochs",
            epochs, "--batch-size", 2, "--grid-size", 0.1, "--device", "cpu", "--val-max-scenes",
            1, "--checkpoint-every", 1, "--weight", "n_relation_points=64", *extra]


def one_error(res, *needles: str) -> str:
    """The single `error:` line of a failed command, checked for exit code 1 and `needles`."""
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, res.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temp and probe files anywhere under `folder` (there must be none)."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name or "probe" in p.name)


def logged_steps(run_dir: Path) -> list[int]:
    lines = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r["step"] for r in lines if r["kind"] == "train"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_root) -> Path:
    """A finished 1-epoch train-teacher run (test_spunet), copied by the tests that break it."""
    work = tmp_path_factory.mktemp("run_folder")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # no stages.yaml: built-in defaults + flags only
        res = invoke(teacher_args(data_root, work / "done"))
    assert res.exit_code == 0, res.output
    return work / "done"


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "run"))


class RunsCode:
    """Pickles as a call of builtins.open, which would create `marker` if it were ever run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ---- case 1: the state to resume --------------------------------------------------------------


@pytest.mark.parametrize("content", ["garbage", "empty", "truncated"])
def test_unreadable_train_state(content, run_copy, data_root):
    state = run_copy / STATE_FILE
    data = state.read_bytes()
    state.write_bytes({"garbage": b"\x80\x02not a torch file" * 50, "empty": b"",
                       "truncated": data[: len(data) // 2]}[content])
    before = state.read_bytes()
    res = invoke(teacher_args(data_root, run_copy, "--resume"))
    one_error(res, f"{state} is not a readable train state", "--out elsewhere")
    assert state.read_bytes() == before and not leftovers(run_copy)


def test_train_state_that_names_code_is_refused_unrun(run_copy, data_root, tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"step": RunsCode(marker), "model": {}}, run_copy / STATE_FILE)
    res = invoke(teacher_args(data_root, run_copy, "--resume"))
    one_error(res, "refers to Python code (", "refused without running it")
    assert not marker.exists()  # weights_only=True: the file was never unpickled as code


def test_train_state_of_another_model_names_it(run_copy, data_root):
    before = (run_copy / STATE_FILE).read_bytes()
    res = invoke(teacher_args(data_root, run_copy, "--resume", model="test_ptv3"))
    one_error(res, "belongs to another run", "model: 'test_spunet' -> 'test_ptv3'",
              "resume with the saved settings")
    assert (run_copy / STATE_FILE).read_bytes() == before


@pytest.mark.parametrize(("option", "expected"), [
    (["--student", "test_ptv3"], "model: 'test_spunet' -> 'test_ptv3'"),
    (["--method", "kd"], "method: 'srkd' -> 'kd'"),
    (["--weight", "kl=2"], "loss_overrides.kl: (absent) -> 2"),
])
def test_distill_resume_of_another_run_names_what_differs(option, expected, cache_dir, tmp_path):
    out = tmp_path / "student"
    assert invoke(distill_args(cache_dir, out)).exit_code == 0
    res = invoke(distill_args(cache_dir, out, "--resume", *option))
    one_error(res, f"{out / STATE_FILE} belongs to another run", expected)
    assert read_state(out / STATE_FILE)["step"] == 2 and not leftovers(out)


def test_more_epochs_after_a_finished_run_extend_it(run_copy, data_root):
    """`--resume --epochs 2` after a finished 1-epoch run trains epoch 2 with a new one-cycle
    segment that starts where the run's lr ended, and says so; no traceback."""
    res = invoke(teacher_args(data_root, run_copy, "--resume", epochs=2))
    assert res.exit_code == 0, res.output
    assert "lr schedule: one-cycle segments over steps 0-2, 2-4 (extended by --resume)" in res.output
    rows = [json.loads(x) for x in (run_copy / "log.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [(r["epoch"], r["step"]) for r in train] == [(1, 1), (1, 2), (2, 3), (2, 4)]
    assert [r["epoch"] for r in rows if r["kind"] == "val"] == [1, 2]
    optim = OptimConfig()  # the built-in lr: no stages.yaml here
    floor = optim.lr / (optim.div_factor * optim.final_div_factor)
    lrs = [r["lr"] for r in train]
    assert lrs[2] == pytest.approx(floor) and lrs[3] > 10 * floor  # from the floor, warming up
    assert read_state(run_copy / STATE_FILE)["schedule"] == [[0, 2], [2, 4]]
    params = torch.load(run_copy / "model_last.pt", weights_only=False)["train_params"]
    assert params["epochs"] == 2
    res = invoke(teacher_args(data_root, run_copy, "--resume", epochs=1))  # fewer: refused
    one_error(res, "the run already trained 2 epochs, more than --epochs 1")


def test_resume_without_a_train_state_starts_a_new_run_and_says_so(data_root, tmp_path):
    out = tmp_path / "never_ran"
    res = invoke(teacher_args(data_root, out, "--resume"))
    assert res.exit_code == 0, res.output
    assert f"--resume: no train_state.pt in {out}, starting a new run" in res.output, res.output
    assert (out / "model.pt").is_file()


# ---- case 2: a folder that cannot hold the run ------------------------------------------------


def test_out_below_a_regular_file(data_root, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "run"
    res = invoke(teacher_args(data_root, out))
    one_error(res, f"--out {out}: cannot write the run's files there (Not a directory")
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_read_only_out(run_copy, data_root):
    """Root ignores chmod, so a read-only folder is simulated: creating or writing any file in
    it raises PermissionError, as the OS would."""
    real_open, real_mkdir = builtins.open, os.mkdir

    def refuse(path) -> None:
        if Path(path).resolve().is_relative_to(run_copy.resolve()):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def ro_open(file, mode="r", *args, **kwargs):
        if isinstance(file, str | os.PathLike) and set(mode) & set("wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def ro_mkdir(path, *args, **kwargs):
        refuse(path)
        return real_mkdir(path, *args, **kwargs)

    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
    with pytest.MonkeyPatch.context() as mp:  # (monkeypatch.undo would also undo the chdir)
        mp.setattr(builtins, "open", ro_open)
        mp.setattr(io, "open", ro_open)
        mp.setattr(os, "mkdir", ro_mkdir)
        res = invoke(teacher_args(data_root, run_copy))
    one_error(res, f"--out {run_copy}: cannot write the run's files there (Permission denied",
              "choose another --out")
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before


# ---- case 3: a full disk while the run writes -------------------------------------------------


def fail_saves(mp: pytest.MonkeyPatch, fmt: str, at_step: int | None = None) -> None:
    """Make torch.save of a `fmt` dict ("srkd-train-state" / "srkd-checkpoint") write a few bytes
    and then fail with ENOSPC, as a full disk does (only at `at_step` for train states)."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("format") == fmt and at_step in (None, obj.get("step")):
            f.write(b"PK\x03\x04 the first bytes")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    mp.setattr(torch, "save", save)


def test_disk_full_while_distill_saves_its_state(cache_dir, tmp_path):
    out = tmp_path / "student"
    with pytest.MonkeyPatch.context() as mp:
        fail_saves(mp, "srkd-train-state", at_step=3)
        res = invoke(distill_args(cache_dir, out, epochs=2))
    one_error(res, f"cannot write {out / STATE_FILE}: No space left on device; free space and "
              "re-run with --resume (the last complete state is kept)")
    assert not leftovers(out)
    assert read_state(out / STATE_FILE)["step"] == 2  # the last complete state
    res = invoke(distill_args(cache_dir, out, "--resume", epochs=2))
    assert res.exit_code == 0, res.output
    assert logged_steps(out) == [1, 2, 3, 4] and read_state(out / STATE_FILE)["step"] == 4
    assert (out / "model_last.pt").is_file()


def test_disk_full_while_a_model_is_saved(data_root, tmp_path):
    out = tmp_path / "teacher"
    with pytest.MonkeyPatch.context() as mp:
        fail_saves(mp, "srkd-checkpoint")
        res = invoke(teacher_args(data_root, out))
    one_error(res, f"cannot write {out / 'model.pt'}: No space left on device",
              "re-run with --resume")
    assert not leftovers(out) and not (out / "model.pt").exists()
    assert read_state(out / STATE_FILE)["step"] == 1  # step 2 ends the epoch: saved after model.pt
    res = invoke(teacher_args(data_root, out, "--resume"))
    assert res.exit_code == 0, res.output
    assert logged_steps(out) == [1, 2] and (out / "model.pt").is_file()


@pytest.mark.skipif(not (os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)),
                    reason="needs /dev/full")
def test_real_enospc_from_the_os(data_root, tmp_path):
    """The real OS path: the state's temp file is a link to /dev/full, whose every write fails
    with ENOSPC (torch.save then hides the errno behind a RuntimeError; the error still names it)."""
    out = tmp_path / "teacher"
    out.mkdir()
    temp_sibling(out / STATE_FILE).symlink_to("/dev/full")  # the file the state is written to
    res = invoke(teacher_args(data_root, out))
    one_error(res, f"cannot write {out / STATE_FILE}: No space left on device; free space and "
              "re-run (no train state was saved yet)")
    assert not leftovers(out) and not (out / STATE_FILE).exists()


def test_a_second_run_into_a_folder_being_written_is_refused(data_root, tmp_path):
    """What a re-run racing a leftover training process meets: the run folder's lock."""
    from srkd.errors import ConfigError
    from srkd.locking import locked_dir

    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text("{}\n")  # the other run's files stay untouched
    with locked_dir(out, "run folder", ConfigError):
        one_error(invoke(teacher_args(data_root, out)), f"run folder {out} is being written (or read) by another srkd process")
    assert (out / "log.jsonl").read_text() == "{}\n"
    assert invoke(teacher_args(data_root, out)).exit_code == 0  # free once its holder is gone
