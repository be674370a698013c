"""Locks on output directories: two srkd processes never write one output at once.

`locked_dir(path, what, error)` holds an OS lock (`flock`) on the directory itself, not on a file
in it, so the output's contents are untouched and nothing stale is left behind: the kernel
releases the lock when the holder exits, however it exits (SIGKILL included). A second writer is
refused at once with one line naming the directory. Writers (`srkd cache-teacher` on its cache,
`srkd distill` / `train-teacher` on their run folder, `srkd run` on its project folder) take it
exclusively; readers of a cache (`distill`, `evaluate`) take it shared, so a cache is never
overwritten or repaired while a run reads it. POSIX only (`fcntl`), like spconv itself.

The lock is only as good as the filesystem's `flock`: exact on local filesystems; on NFS, Linux
keeps directory locks per host, so two hosts do not see each other's; where the filesystem has no
`flock` at all (some FUSE mounts, Lustre without `-o flock`) srkd warns and goes on unlocked.

The directory must stay the same inode while locked: code holding the lock may empty it, but must
not delete and recreate it (zarr's `LocalStore.clear` does; see srkd.cache.writer).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from srkd.errors import SrkdError

_UNSUPPORTED = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL}
"""flock errors that mean "this filesystem cannot lock", not "someone else holds it"."""


@contextlib.contextmanager
def locked_dir(
    path: str | os.PathLike, what: str, error: type[SrkdError], shared: bool = False
) -> Iterator[Path]:
    """Hold a lock on directory `path` for the `with` block (exclusive, or `shared` for readers).

    what:  how the directory is named in messages (e.g. "teacher cache", "run folder").
    error: the SrkdError subclass raised when `path` is a file, cannot be created or opened, or
           is locked by another process in a conflicting mode (the message says what to do).
    An exclusive lock creates `path` if needed, and removes it again on exit if this call created
    it and it is still empty (a command that failed on bad input leaves nothing behind). A shared
    lock needs `path` to exist.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise error(f"{what} {path} is a file; it must be a directory (choose another path)")
    created = not shared and not path.exists()
    try:
        if not shared:
            path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise error(f"cannot create or open {what} {path}: {exc.strerror or exc}; choose a writable location") from None
    locked = False
    try:
        locked = _flock(fd, path, what, error, shared)
        yield path
    finally:
        if created and locked:  # only the holder may remove it, and only while it still holds it
            with contextlib.suppress(OSError):  # succeeds only while empty
                path.rmdir()
        os.close(fd)  # closing the descriptor releases the lock


def _flock(fd: int, path: Path, what: str, error: type[SrkdError], shared: bool) -> bool:
    """Take the lock without waiting; True if held, False where the filesystem cannot lock."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        raise error(_busy_message(what, path, shared)) from None
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise error(f"cannot lock {what} {path}: {exc.strerror or exc}") from None
        warnings.warn(f"{path}: this filesystem cannot lock directories ({exc.strerror}); "
                      f"srkd cannot stop two processes from writing {what} {path} at once", stacklevel=4)
        return False
    return True


def _busy_message(what: str, path: Path, shared: bool) -> str:
    """A shared lock is refused by a writer; an exclusive one by a writer or by readers."""
    user = "written" if shared else "written (or read)"
    return (f"{what} {path} is being {user} by another srkd process; wait for it to finish (or "
            "stop it), then run this command again")
