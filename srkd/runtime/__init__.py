"""Run an exported srkd student with numpy and onnxruntime only (no torch, no spconv).

    from srkd.runtime import load_student
    student = load_student("deploy/")                 # a folder written by `srkd export`
    labels = student.label(coord, color=color, normal=normal)   # int64 (N,) class ids

Importing this package imports numpy only; onnxruntime is imported when a student is loaded.
See docs/deployment.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from srkd.runtime.student import Student

__all__ = ["load_student"]


def load_student(folder, threads: int | None = None) -> Student:
    """The exported student in `folder` (see `srkd.runtime.student.Student`)."""
    from srkd.runtime.student import load_student as _load

    return _load(folder, threads=threads)
