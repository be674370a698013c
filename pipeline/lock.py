"""Stage fingerprints and stages.lock.

A stage's fingerprint is its cmd, the content hash of each dep, the values of its declared params
and the srkd version. stages.lock records the fingerprint of each stage's last successful run;
`why_run` compares the current state against it and says, in words, what changed.

stages.lock is written atomically (a temporary sibling, fsync, then os.replace), so a crash or an
interrupt leaves the previous lock or the new one, never a torn file. A lock that is nevertheless
unreadable (edited by hand, a merge conflict, a disk fault) is an error, not "no lock": treating
it as absent would silently re-run every stage, hours of training included, so the user decides
(restore it, e.g. from version control, or delete it to re-run every stage).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.spec import Stage, lookup
from srkd import __version__
from srkd.errors import DataError
from srkd.io import atomic_write_json

LOCK_VERSION = 1


class LockError(DataError):
    """stages.lock exists but cannot be read as a lock file."""


@dataclass(frozen=True)
class Fingerprint:
    """What determines a stage's outputs."""

    cmd: str
    deps: dict[str, str]
    params: dict[str, Any]
    version: str

    def to_json(self) -> dict[str, Any]:
        return {"cmd": self.cmd, "deps": self.deps, "params": self.params, "version": self.version}


class HashCache:
    """Content hashes of files, reused while a file's (size, mtime) is unchanged, so large
    deps (a dataset, a cache) are not re-read on every `srkd run`."""

    def __init__(self, entries: dict[str, Any] | None = None) -> None:
        self.entries: dict[str, Any] = dict(entries or {})

    def file(self, path: Path) -> str:
        st = path.stat()
        key = str(path)
        stamp = [st.st_size, st.st_mtime_ns]
        hit = self.entries.get(key)
        if isinstance(hit, list) and len(hit) == 2 and hit[0] == stamp:
            return hit[1]
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        self.entries[key] = [stamp, digest]
        return digest

    def path(self, path: Path) -> str:
        """sha256 of a file, or of a folder's sorted (relative path, file hash) list; 'missing'."""
        if path.is_file():
            return self.file(path)
        if not path.is_dir():
            return "missing"
        h = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(f"{p.relative_to(path).as_posix()}\0{self.file(p)}\n".encode())
        return "dir:" + h.hexdigest()


def fingerprint(stage: Stage, params: dict[str, Any], root: Path, hashes: HashCache) -> Fingerprint:
    """The current fingerprint of `stage` (deps resolved relative to `root`)."""
    return Fingerprint(
        cmd=stage.cmd,
        deps={d: hashes.path(root / d) for d in stage.deps},
        params={k: lookup(params, k) for k in stage.params},
        version=__version__,
    )


def why_run(
    stage: Stage, current: Fingerprint, locked: dict[str, Any] | None, root: Path, hashes: HashCache
) -> list[str]:
    """Reasons the stage must run; empty when it is up to date."""
    if locked is None:
        return ["it has not run before (no entry in stages.lock)"]
    reasons = []
    if locked.get("cmd") != current.cmd:
        reasons.append("its cmd changed")
    if locked.get("version") != current.version:
        reasons.append(f"srkd version changed ({locked.get('version')} -> {current.version})")
    old_params = locked.get("params", {})
    for key, value in current.params.items():
        if key not in old_params:
            reasons.append(f"param {key} is new")
        elif old_params[key] != value:
            reasons.append(f"param {key} changed ({old_params[key]!r} -> {value!r})")
    old_deps = locked.get("deps", {})
    for dep, digest in current.deps.items():
        if old_deps.get(dep) != digest:
            reasons.append(f"dep {dep} {'is missing' if digest == 'missing' else 'changed'}")
    old_outs = locked.get("outs", {})
    for out in stage.outs:
        if not (root / out.path).exists():
            reasons.append(f"output {out.path} is missing")
        elif out.path in old_outs and old_outs[out.path] != hashes.path(root / out.path):
            reasons.append(f"output {out.path} was modified after the stage ran")
    return reasons


def output_hashes(stage: Stage, root: Path, hashes: HashCache) -> dict[str, str]:
    """Content hashes of a stage's outputs, recorded after it ran."""
    return {o.path: hashes.path(root / o.path) for o in stage.outs}


def read_lock(path: Path) -> dict[str, Any]:
    """stages.lock as a dict (an empty lock when absent or from another lock version).

    Raises LockError naming the file and what to do when it is not a readable lock.
    """
    if not path.is_file():
        return _empty_lock()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LockError(f"{path}: not a readable stages.lock ({exc}); restore it (e.g. from "
                        f"version control) or delete it to re-run every stage") from None
    if not isinstance(data, dict):
        raise LockError(f"{path}: not a stages.lock (a JSON object was expected); "
                        "delete it to re-run every stage")
    if data.get("version") != LOCK_VERSION:
        return _empty_lock()
    for key, entry_type in (("stages", dict), ("hashes", list)):
        entries = data.get(key)
        if not isinstance(entries, dict) or not all(isinstance(v, entry_type) for v in entries.values()):
            raise LockError(f"{path}: its {key!r} entry is damaged; restore the file (e.g. from "
                            f"version control) or delete it to re-run every stage")
    return data


def write_lock(path: Path, data: dict[str, Any]) -> None:
    """Write stages.lock atomically (srkd.io.atomic_write_json: a temporary sibling, removed on any
    failure, an interrupt included, flushed to disk, then renamed over the old lock)."""
    atomic_write_json(path, data, indent=1, sort_keys=True)


def _empty_lock() -> dict[str, Any]:
    return {"version": LOCK_VERSION, "stages": {}, "hashes": {}}
