"""srkd.io's atomic writes: the old complete file or the new complete one, never a torn one, and
no temporary file left behind, whatever the writer does."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from srkd.io import atomic_write, atomic_write_stream, atomic_write_text, temp_sibling


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = atomic_write_text(tmp_path / "a.txt", "old")

    def torn(f) -> None:
        f.write(b"half of the new")
        raise KeyboardInterrupt  # an interrupt too

    with pytest.raises(KeyboardInterrupt):
        atomic_write_stream(target, torn)
    def fails_after_writing(tmp: Path) -> None:
        tmp.write_text("new")
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        atomic_write(target, fails_after_writing)
    assert target.read_text() == "old" and _files(tmp_path) == ["a.txt"]


@pytest.mark.skipif(not (os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)),
                    reason="needs /dev/full")
def test_the_write_errno_surfaces_even_when_the_writer_hides_it(tmp_path):
    """torch.save reports a failed write as RuntimeError; the OSError behind it is what comes out.
    The temporary file is a link to /dev/full, whose every write fails with ENOSPC."""
    target = tmp_path / "s.pt"
    temp_sibling(target).symlink_to("/dev/full")

    def hiding_writer(f) -> None:
        try:
            f.write(b"x" * (1 << 20))  # larger than any buffer: written now
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None

    with pytest.raises(OSError, match="No space left") as info:
        atomic_write_stream(target, hiding_writer)
    assert info.value.errno == errno.ENOSPC and _files(tmp_path) == []


def test_new_files_are_readable_by_others_and_replace_atomically(tmp_path):
    old_umask = os.umask(0o022)
    try:
        path = atomic_write_stream(tmp_path / "sub" / "b.bin", lambda f: f.write(b"\x00\x01"))
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert temp_sibling(path).name == f".b.bin.{os.getpid()}.tmp"
    atomic_write_stream(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and _files(path.parent) == ["b.bin"]
