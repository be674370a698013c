"""stages.lock: written atomically; a damaged one is one clear error, never a traceback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.lock import LockError, read_lock, write_lock
from pipeline.runner import run_pipeline
from pipeline.spec import load_spec

PY = sys.executable
SPEC = f"""\
stages:
  one:
    cmd: {PY} -c "open('one.txt', 'w').write('1')"
    outs: [one.txt]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A one-stage project that has run once (so stages.lock exists), as working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stages.yaml").write_text(SPEC)
    run_pipeline(load_spec(tmp_path / "stages.yaml"))
    return tmp_path


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"",  # empty
        lambda data: b"<<<<<<< HEAD\n" + data,  # a merge conflict
        lambda data: b"\xff\xfe" + data,  # not UTF-8
        lambda data: b"[1, 2]",  # JSON, but not a lock
        lambda data: json.dumps({**json.loads(data), "stages": {"one": 3}}).encode(),  # an entry
    ],
)
def test_a_damaged_lock_is_one_clear_error(project, damage):
    lock = project / "stages.lock"
    lock.write_bytes(damage(lock.read_bytes()))
    with pytest.raises(LockError, match="delete it to re-run every stage") as info:
        read_lock(lock)
    assert str(lock) in str(info.value)
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 1
    assert "stages.lock" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    lock.unlink()  # what the message says: then every stage runs again
    assert CliRunner().invoke(app, ["run"]).exit_code == 0


def test_lock_writes_are_atomic(project, monkeypatch):
    lock = project / "stages.lock"
    before = lock.read_text()
    with pytest.raises(TypeError):  # fails half way through writing the temporary file
        write_lock(lock, {"version": 1, "stages": {}, "hashes": {}, "bad": {1, 2}})
    assert lock.read_text() == before

    def no_rename(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="disk on fire"):
        write_lock(lock, {"version": 1, "stages": {}, "hashes": {}})
    assert lock.read_text() == before
    assert sorted(p.name for p in project.iterdir()) == ["one.txt", "stages.lock", "stages.yaml"]
