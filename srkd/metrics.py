"""Semantic-segmentation metrics over a whole split: confusion matrix, IoU, mIoU, mAcc, allAcc.

Definitions (K classes, confusion matrix C with C[t, p] = number of labelled points whose ground
truth is t and whose prediction is p, summed over every scene of the split; label -1 is ignored):

    I_c = C[c, c]                         intersection (true positives)
    G_c = sum_p C[c, p]                   ground-truth points of class c   (row sum)
    P_c = sum_t C[t, c]                   points predicted as class c      (column sum)
    U_c = G_c + P_c - I_c                 union
    IoU_c = I_c / U_c                     Acc_c = I_c / G_c
    mIoU = mean of IoU_c over the classes in the mean
    mAcc = mean of Acc_c over the classes with ground truth (G_c > 0)
    allAcc = sum_c I_c / sum_c G_c

Intersections and unions are summed over the split first and divided once (never a mean of
per-scene IoUs), as in the ScanNet benchmark and Pointcept's testers.

Class presence (our choice, stated in every report):
- present:  G_c > 0 or P_c > 0. Its IoU is defined and it counts in mIoU.
- absent:   G_c == 0 and P_c == 0: nothing to score. IoU is NaN (None in JSON) and the class is
            left out of mIoU; `classes_in_mean` says how many classes the mean covers.
- A class with predictions but no ground truth (a false-positive-only class) has IoU 0 and counts
  in mIoU: predicting a class that is not there is an error the mean must show. Its accuracy is
  undefined (NaN) because accuracy is per ground-truth point, so it is left out of mAcc.
On ScanNet v2 val every one of the 20 classes has ground truth, so all 20 are in the mean.

Inputs may be numpy arrays or torch tensors (on any device); torch is never imported here, so
this module loads without it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from srkd.errors import ConfigError, DataError
from srkd.types import IGNORE_INDEX


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor can only exist if torch was already imported
    return torch is not None and isinstance(x, torch.Tensor)


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ConfigError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
    return int(num_classes)


def _check_labels(name: str, x: Any) -> tuple[tuple[int, ...], str]:
    """Shape and dtype name of a label array; raises DataError if it is not 1-D integer."""
    if _is_tensor(x):
        shape, floating = tuple(x.shape), bool(x.is_floating_point() or x.is_complex())
        dtype = str(x.dtype)
        integer = not floating and x.dtype != sys.modules["torch"].bool
    else:
        arr = np.asarray(x)
        shape, dtype = arr.shape, str(arr.dtype)
        integer = np.issubdtype(arr.dtype, np.integer)
    if not integer:
        raise DataError(f"{name} must hold integer class ids, got dtype {dtype}")
    if len(shape) != 1:
        raise DataError(f"{name} must be 1-D (N,), got shape {shape}")
    return shape, dtype


def confusion_matrix(
    pred: Any, target: Any, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Count (ground truth, prediction) pairs.

    Args:
        pred: int (N,) predicted class ids in [0, K); numpy array or torch tensor.
        target: int (N,) ground-truth class ids in [0, K) or `ignore_index`; same type family.
        num_classes: K.
        ignore_index: target value of points that are not scored (their prediction is not
            checked either).
    Returns:
        int64 (K, K) numpy array; rows = ground truth, columns = prediction.
    Raises:
        DataError: shapes differ, not 1-D integer, or a label/prediction is out of range.
    """
    k = _check_num_classes(num_classes)
    pshape, _ = _check_labels("pred", pred)
    tshape, _ = _check_labels("target", target)
    if pshape != tshape:
        raise DataError(
            f"pred has shape {pshape} but target has shape {tshape}; they must be the same points"
        )
    if _is_tensor(pred) or _is_tensor(target):
        return _confusion_torch(pred, target, k, ignore_index)
    pred = np.asarray(pred).astype(np.int64, copy=False)
    target = np.asarray(target).astype(np.int64, copy=False)
    valid = target != ignore_index
    if not valid.all():
        pred, target = pred[valid], target[valid]
    if target.size == 0:
        return np.zeros((k, k), dtype=np.int64)
    _check_range(
        int(target.min()), int(target.max()), int(pred.min()), int(pred.max()), k, ignore_index
    )
    counts = np.bincount(target * k + pred, minlength=k * k)
    return counts.reshape(k, k).astype(np.int64, copy=False)


def _confusion_torch(pred: Any, target: Any, k: int, ignore_index: int) -> np.ndarray:
    # Counting on the tensors' own device avoids copying N labels off the GPU; only K*K comes back.
    torch = sys.modules["torch"]
    if not (_is_tensor(pred) and _is_tensor(target)):
        raise DataError(
            "pred and target must both be torch tensors or both be numpy arrays, got "
            f"{type(pred).__name__} and {type(target).__name__}"
        )
    if pred.device != target.device:
        raise DataError(f"pred is on {pred.device} but target is on {target.device}")
    pred, target = pred.long(), target.long()
    valid = target != ignore_index
    pred, target = pred[valid], target[valid]
    if target.numel() == 0:
        return np.zeros((k, k), dtype=np.int64)
    lo_hi = torch.stack([target.min(), target.max(), pred.min(), pred.max()]).tolist()
    _check_range(*(int(v) for v in lo_hi), k, ignore_index)
    counts = torch.bincount(target * k + pred, minlength=k * k)
    return counts.reshape(k, k).cpu().numpy().astype(np.int64, copy=False)


def _check_range(tmin: int, tmax: int, pmin: int, pmax: int, k: int, ignore_index: int) -> None:
    if tmin < 0 or tmax >= k:
        bad = tmin if tmin < 0 else tmax
        raise DataError(
            f"target has label {bad}; labels must be in [0, {k - 1}] or {ignore_index} (ignore). "
            "Is num_classes right for this dataset?"
        )
    if pmin < 0 or pmax >= k:
        bad = pmin if pmin < 0 else pmax
        raise DataError(
            f"pred has class {bad} at a labelled point; predictions must be in [0, {k - 1}]. "
            "Does the model have the same number of classes as the dataset?"
        )


class ConfusionAccumulator:
    """A confusion matrix summed over many scenes (or ranks), for split-level metrics.

    Example:
        acc = ConfusionAccumulator(20)
        for pred, target in scenes:
            acc.add(pred, target)
        scores = acc.scores()
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = ignore_index
        self._matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def add(self, pred: Any, target: Any) -> None:
        """Count one scene (or any set of points): int (N,) predictions and ground truth."""
        self._matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def add_matrix(self, matrix: Any) -> None:
        """Add a (K, K) confusion matrix counted elsewhere (e.g. by another process)."""
        self._matrix += check_confusion_matrix(matrix, self.num_classes)

    def merge(self, other: ConfusionAccumulator) -> ConfusionAccumulator:
        """Add another accumulator's counts into this one (in place); returns self."""
        if not isinstance(other, ConfusionAccumulator):
            raise ConfigError(f"can only merge a ConfusionAccumulator, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ConfigError(
                f"cannot merge a {other.num_classes}-class accumulator into a "
                f"{self.num_classes}-class one"
            )
        self._matrix += other._matrix
        return self

    def reset(self) -> None:
        """Forget every count."""
        self._matrix[:] = 0

    @property
    def matrix(self) -> np.ndarray:
        """int64 (K, K) copy of the counts; rows = ground truth, columns = prediction."""
        return self._matrix.copy()

    @property
    def num_points(self) -> int:
        """Number of labelled points counted so far."""
        return int(self._matrix.sum())

    def scores(self) -> SegmentationScores:
        """Split-level metrics of everything counted so far."""
        return SegmentationScores.from_confusion(self._matrix)


def check_confusion_matrix(matrix: Any, num_classes: int | None = None) -> np.ndarray:
    """A validated int64 (K, K) copy of a confusion matrix; DataError if it is not one."""
    if _is_tensor(matrix):
        matrix = matrix.detach().cpu().numpy()
    cm = np.asarray(matrix)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 1:
        raise DataError(f"a confusion matrix must be square (K, K), got shape {cm.shape}")
    if num_classes is not None and cm.shape[0] != num_classes:
        raise DataError(
            f"confusion matrix is {cm.shape[0]}x{cm.shape[0]} but {num_classes} classes expected"
        )
    if not np.issubdtype(cm.dtype, np.integer):
        if not (np.issubdtype(cm.dtype, np.floating) and np.all(cm == np.round(cm))):
            raise DataError(f"a confusion matrix holds whole counts, got dtype {cm.dtype}")
    if (cm < 0).any():
        raise DataError("a confusion matrix holds counts; it has a negative entry")
    return cm.astype(np.int64)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


@dataclass(frozen=True, eq=False)
class SegmentationScores:
    """Split-level segmentation metrics, derived from one accumulated confusion matrix.

    Fields (K classes; per-class arrays are float64 (K,), NaN where undefined):
        confusion: int64 (K, K), rows = ground truth, columns = prediction.
        iou: IoU_c; NaN for absent classes (no ground truth and no prediction).
        acc: Acc_c; NaN for classes without ground truth.
        present: bool (K,), ground truth or prediction exists for the class.
        miou, macc, allacc: the means in [0, 1]; NaN when nothing was scored.
        classes_in_mean: number of classes mIoU averages over (= present.sum()).
        classes_with_gt: number of classes mAcc averages over.
    See the module docstring for the formulas and the absent / false-positive-only rules.
    """

    confusion: np.ndarray
    iou: np.ndarray
    acc: np.ndarray
    present: np.ndarray
    miou: float
    macc: float
    allacc: float
    classes_in_mean: int
    classes_with_gt: int

    @classmethod
    def from_confusion(cls, matrix: Any) -> SegmentationScores:
        """Compute every metric from an int (K, K) confusion matrix (rows = ground truth)."""
        cm = check_confusion_matrix(matrix)
        inter = np.diag(cm).astype(np.float64)
        gt = cm.sum(axis=1).astype(np.float64)
        pred = cm.sum(axis=0).astype(np.float64)
        union = gt + pred - inter
        present = union > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(present, inter / np.where(present, union, 1.0), np.nan)
            acc = np.where(gt > 0, inter / np.where(gt > 0, gt, 1.0), np.nan)
        total = gt.sum()
        for arr in (cm, iou, acc, present):
            arr.setflags(write=False)  # frozen means frozen: callers cannot edit the arrays
        return cls(
            confusion=cm,
            iou=iou,
            acc=acc,
            present=present,
            miou=_nanmean(iou),
            macc=_nanmean(acc),
            allacc=float(inter.sum() / total) if total > 0 else math.nan,
            classes_in_mean=int(present.sum()),
            classes_with_gt=int((gt > 0).sum()),
        )

    @property
    def num_classes(self) -> int:
        """K."""
        return int(self.confusion.shape[0])

    @property
    def num_points(self) -> int:
        """Labelled (non-ignored) points scored."""
        return int(self.confusion.sum())

    @property
    def intersection(self) -> np.ndarray:
        """int64 (K,) true positives per class."""
        return np.diag(self.confusion).copy()

    @property
    def union(self) -> np.ndarray:
        """int64 (K,) ground truth + predicted - intersection, per class."""
        return self.gt_points + self.pred_points - self.intersection

    @property
    def gt_points(self) -> np.ndarray:
        """int64 (K,) ground-truth points per class (row sums)."""
        return self.confusion.sum(axis=1)

    @property
    def pred_points(self) -> np.ndarray:
        """int64 (K,) points predicted as each class (column sums)."""
        return self.confusion.sum(axis=0)

    def to_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None). `class_names` must have K entries, in label order."""
        names = check_class_names(class_names, self.num_classes)
        inter, union = self.intersection, self.union
        gt, pred = self.gt_points, self.pred_points
        per_class = [
            {
                "name": names[c],
                "present": bool(self.present[c]),
                "iou": _json_float(self.iou[c]),
                "acc": _json_float(self.acc[c]),
                "intersection": int(inter[c]),
                "union": int(union[c]),
                "gt_points": int(gt[c]),
                "pred_points": int(pred[c]),
            }
            for c in range(self.num_classes)
        ]
        return {
            "miou": _json_float(self.miou),
            "macc": _json_float(self.macc),
            "allacc": _json_float(self.allacc),
            "classes_in_mean": self.classes_in_mean,
            "classes_with_gt": self.classes_with_gt,
            "num_classes": self.num_classes,
            "num_points": self.num_points,
            "per_class": per_class,
            "confusion": self.confusion.tolist(),
        }


def _json_float(x: float) -> float | None:
    return None if math.isnan(float(x)) else float(x)


def check_class_names(class_names: Sequence[str], k: int) -> list[str]:
    """`class_names` as a list of str; raises ConfigError unless there are exactly `k`."""
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise ConfigError(
            f"{len(names)} class names given for a {k}-class result; give one name per class"
        )
    return names


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """ScanNet-20 or ScanNet200 names when K is 20 or 200, otherwise "class_0", "class_1", ..."""
    from srkd.data.scannet import classes

    k = _check_num_classes(num_classes)
    if k == len(classes.SCANNET20_CLASSES):
        return classes.SCANNET20_CLASSES
    scannet200 = getattr(classes, "SCANNET200_CLASSES", ())
    if k == len(scannet200):
        return tuple(scannet200)
    return tuple(f"class_{i}" for i in range(k))
