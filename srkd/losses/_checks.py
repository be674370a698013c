"""Shared input validation for the loss terms (one clear ConfigError per bad input)."""

from __future__ import annotations

import torch

from srkd.errors import ConfigError


def check_logits(name: str, logits: torch.Tensor) -> None:
    """`logits` must be a float (N, K) tensor with K >= 1."""
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ConfigError(f"{name} must have shape (N, K), got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ConfigError(f"{name} must be a floating-point tensor, got dtype {logits.dtype}")


def check_segment(segment: torch.Tensor, n: int, num_classes: int, ignore_index: int) -> None:
    """`segment` must be an integer (N,) tensor with labels in [0, K) or `ignore_index`."""
    if segment.ndim != 1 or segment.shape[0] != n:
        raise ConfigError(
            f"segment must have shape ({n},) to match the logits, got {tuple(segment.shape)}"
        )
    if segment.dtype.is_floating_point or segment.dtype == torch.bool:
        raise ConfigError(f"segment must hold integer labels, got dtype {segment.dtype}")
    bad = (segment != ignore_index) & ((segment < 0) | (segment >= num_classes))
    if bool(bad.any()):
        value = int(segment[bad][0])
        raise ConfigError(
            f"segment holds label {value}; labels must be in [0, {num_classes - 1}] or "
            f"{ignore_index} (ignore): does the model's class count match the dataset?"
        )


def check_pair(name: str, student: torch.Tensor, teacher: torch.Tensor, same_width: bool) -> None:
    """Student and teacher per-point tensors must have the same number of points (and width)."""
    if student.ndim != 2 or teacher.ndim != 2:
        raise ConfigError(
            f"{name}: student and teacher must be 2-D (N, C), got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}"
        )
    if student.shape[0] != teacher.shape[0]:
        raise ConfigError(
            f"{name}: student has {student.shape[0]} points but teacher targets have "
            f"{teacher.shape[0]}; targets must be gathered for exactly the student's points"
        )
    if same_width and student.shape[1] != teacher.shape[1]:
        raise ConfigError(
            f"{name}: student has {student.shape[1]} channels but teacher has {teacher.shape[1]}; "
            "student and teacher must predict the same classes"
        )


def check_temperature(name: str, value: float) -> None:
    """Temperatures must be finite and > 0."""
    if not (float(value) > 0.0 and float(value) < float("inf")):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


def split_sizes(offset: torch.Tensor, n: int) -> list[int]:
    """Per-sample point counts from cumulative `offset` (B,), checked against N.

    Raises ConfigError when offsets are not increasing or do not end at N.
    """
    if offset.ndim != 1 or offset.numel() == 0:
        raise ConfigError(f"offset must have shape (B,) with B >= 1, got {tuple(offset.shape)}")
    ends = [int(v) for v in offset.tolist()]
    sizes = [b - a for a, b in zip([0, *ends[:-1]], ends)]
    if any(s <= 0 for s in sizes):
        raise ConfigError(
            f"offset {ends} must be strictly increasing cumulative point counts (every sample "
            "needs at least one point)"
        )
    if ends[-1] != n:
        raise ConfigError(f"offset ends at {ends[-1]} but the batch has {n} points")
    return sizes


def zero_like_graph(t: torch.Tensor) -> torch.Tensor:
    """A 0-valued float scalar still attached to `t`'s graph (so backward() works everywhere)."""
    return t.sum() * 0.0


def as_float(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (half/bfloat16 under AMP are upcast; float64 stays float64)."""
    return t if t.dtype == torch.float64 else t.float()


def class_balanced_mean(values: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean of float (N,) `values` per class of int64 (N,) `classes` in [0, num_classes), then
    the plain mean over the classes present: every present class weighs the same, however many
    points it has (the per-batch form of inverse-frequency weighting). N must be >= 1."""
    sums = values.new_zeros(num_classes).index_add(0, classes, values)
    counts = torch.bincount(classes, minlength=num_classes).to(values.dtype)
    present = counts > 0
    return (sums[present] / counts[present]).mean()
