"""Limited annotations: train on a split where only some points or some scenes carry labels.

The ScanNet Data-Efficient benchmark (Hou et al., "Exploring data-efficient 3D scene
understanding with contrastive scene contexts", CVPR 2021), which Pointcept also runs (e.g. its
Sonata configs `semseg-sonata-v1m1-0e*-scannet-ft-la20` ... `-lr20`), has two settings:

- LA, limited annotations: N labelled points per scene (20, 50, 100, 200); every other point's
  label is set to ignore (-1). The benchmark's own file (`la_file`) is a torch-saved dict
  scene name -> indices of the labelled points.
- LR, limited reconstructions: only a fraction of the scenes is labelled (1%, 5%, 10%, 20%);
  the benchmark's file (`lr_file`) is a text list of the labelled scenes, one per line.

`LabelBudget` describes either (or both: LR picks the scenes, LA the points inside them), drawn
reproducibly from a seed or read from the benchmark's files; `LimitedLabels` applies it to
each scene the training dataset loads. Scenes and points without a
label still train: a distillation run gives them the teacher's targets (srkd.losses.recipes,
`kl_points`). Validation and evaluation never go through this: they score the full labels.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from srkd.errors import ConfigError, DataError
from srkd.types import IGNORE_INDEX, PointCloud

LABEL_SEED = 0
"""Default seed of the drawn label budget (points per scene and labelled scenes)."""


@dataclass(frozen=True)
class LabelBudget:
    """Which training labels a run may see (all fields None = every label, the dense setting).

    points_per_scene: LA, N >= 1 labelled points per labelled scene, drawn uniformly from the
                      scene's points that have a label, by `seed` and the scene's name.
    scene_fraction:   LR, the fraction (0, 1] of the split's scenes that are labelled, drawn by
                      `seed` (at least one scene).
    la_file:          the benchmark's LA file instead of points_per_scene (a torch-saved dict
                      scene -> int indices; read with weights_only, so nothing in it runs). A
                      scene it does not list has no labelled point.
    lr_file:          the benchmark's LR file instead of scene_fraction (scene names, one per
                      line; blank lines and lines starting with '#' are skipped).
    seed:             seed of the drawn budgets.
    """

    points_per_scene: int | None = None
    scene_fraction: float | None = None
    la_file: Path | None = None
    lr_file: Path | None = None
    seed: int = LABEL_SEED

    def __post_init__(self) -> None:
        if self.points_per_scene is not None and self.la_file is not None:
            raise ConfigError("give either --labelled-points or --la-file, not both")
        if self.scene_fraction is not None and self.lr_file is not None:
            raise ConfigError("give either --labelled-scenes or --lr-file, not both")
        n = self.points_per_scene
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"--labelled-points must be an integer >= 1, got {n!r}")
        f = self.scene_fraction
        if f is not None and not (isinstance(f, (int, float)) and 0.0 < float(f) <= 1.0):
            raise ConfigError(f"--labelled-scenes must be a fraction in (0, 1], got {f!r}")
        for name in ("la_file", "lr_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} {path}: no such file")

    @property
    def active(self) -> bool:
        """Whether any label is withheld."""
        return any(v is not None for v in (self.points_per_scene, self.scene_fraction,
                                            self.la_file, self.lr_file))

    def describe(self) -> str:
        """One line for logs: 'dense labels' or e.g. '20 labelled points per scene, 10% of scenes'."""
        if not self.active:
            return "dense labels"
        parts = []
        if self.points_per_scene is not None:
            parts.append(f"{self.points_per_scene} labelled points per scene (seed {self.seed})")
        if self.la_file is not None:
            parts.append(f"labelled points from {self.la_file}")
        if self.scene_fraction is not None:
            parts.append(f"{100 * self.scene_fraction:g}% of scenes labelled (seed {self.seed})")
        if self.lr_file is not None:
            parts.append(f"labelled scenes from {self.lr_file}")
        return ", ".join(parts)


def _array_globals() -> list[Any]:
    """What a torch-saved numpy integer array needs under weights_only (no code runs)."""
    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    dtypes = [type(np.dtype(t)) for t in (np.int64, np.int32, np.uint32, np.int16, np.uint16)]
    return [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray,
            np.dtype, *dtypes]


def read_la_file(path: Path) -> dict[str, np.ndarray]:
    """The benchmark's LA file: scene name -> int64 (n,) labelled point indices.

    Read with torch.load(weights_only=True) (numpy arrays allowed, nothing else that could run
    code). DataError naming the file when it is not such a dict."""
    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals(_array_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise DataError(
            f"--la-file {path}: cannot read it as a torch-saved dict of point indices "
            f"({exc.__class__.__name__}: {first[:200]})"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"--la-file {path}: expected a dict scene -> point indices, got "
                        f"{type(data).__name__}")
    out: dict[str, np.ndarray] = {}
    for scene, idx in data.items():
        values = idx.numpy() if hasattr(idx, "numpy") else np.asarray(idx)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise DataError(f"--la-file {path}: scene {scene!r} holds {values.dtype} "
                            f"{values.shape}, expected 1-d integer point indices")
        out[str(scene)] = values.astype(np.int64)
    return out


def read_lr_file(path: Path) -> list[str]:
    """The benchmark's LR file: the labelled scene names, in file order."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"--lr-file {path}: cannot read it as text ({exc})") from None
    names = [line.strip() for line in text.splitlines()]
    return [n for n in names if n and not n.startswith("#")]


class LimitedLabels:
    """The labels a `LabelBudget` keeps of each scene of a split: `apply(scene_id, pc)`.

    The training dataset applies it to every scene it loads (srkd.data.dataset.SceneDataset,
    `labels`), after the scene was matched against the teacher cache (whose content hash covers
    the full labels) and before any transform; withheld labels become IGNORE_INDEX. A scene
    without a label file (segment None) stays unlabelled. Deterministic: the same budget, seed
    and scene always keep the same points.

    Args:
        scene_ids: the training split's scene names.
        budget:    the LabelBudget.
    Raises ConfigError when an LR file names no scene of the split, or names scenes the split
    does not hold (a likely typo; the first few are listed).
    """

    def __init__(self, scene_ids: list[str], budget: LabelBudget) -> None:
        self.scene_ids, self.budget = list(scene_ids), budget
        self.labelled_scenes = self._labelled_scenes()
        self.la = read_la_file(budget.la_file) if budget.la_file is not None else None

    def __repr__(self) -> str:
        return f"LimitedLabels({len(self.scene_ids)} scenes, {self.budget.describe()})"

    def _labelled_scenes(self) -> set[str]:
        b, ids = self.budget, self.scene_ids
        if b.lr_file is not None:
            listed, known = read_lr_file(b.lr_file), set(ids)
            unknown = [s for s in listed if s not in known]
            if unknown or not listed:
                shown = ", ".join(unknown[:3]) or "(the file lists none)"
                raise ConfigError(
                    f"--lr-file {b.lr_file}: {len(unknown)} of {len(listed)} listed scenes are "
                    f"not in the training split ({shown}); is it the file of this dataset?"
                )
            return set(listed)
        if b.scene_fraction is not None:
            k = max(1, round(float(b.scene_fraction) * len(ids)))
            order = np.random.default_rng([int(b.seed), _LR_STREAM]).permutation(len(ids))
            ordered = sorted(ids)
            return {ordered[i] for i in order[:k]}
        return set(ids)

    def keep_mask(self, scene_id: str, segment: np.ndarray) -> np.ndarray:
        """bool (N,): the points of `scene_id` whose label the budget keeps."""
        n = len(segment)
        keep = np.zeros(n, dtype=bool)
        if scene_id not in self.labelled_scenes:
            return keep
        if self.la is not None:
            idx = self.la.get(scene_id)
            if idx is None:
                return keep
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise DataError(
                    f"--la-file {self.budget.la_file}: scene {scene_id!r} lists point indices "
                    f"in [{idx.min()}, {idx.max()}] but the scene has {n} points; is it the "
                    "file of this dataset's preprocessing?"
                )
            keep[idx] = True
            return keep & (segment != IGNORE_INDEX)
        labelled = np.flatnonzero(segment != IGNORE_INDEX)
        n_keep = self.budget.points_per_scene
        if n_keep is None or labelled.size <= n_keep:
            keep[labelled] = True
            return keep
        rng = np.random.default_rng([int(self.budget.seed), zlib.crc32(scene_id.encode())])
        keep[rng.choice(labelled, n_keep, replace=False)] = True
        return keep

    def apply(self, scene_id: str, pc: PointCloud) -> PointCloud:
        """`pc` (scene `scene_id` as loaded) with only the budgeted labels."""
        if pc.segment is None:
            return pc
        segment = np.where(self.keep_mask(scene_id, pc.segment), pc.segment, IGNORE_INDEX)
        return dataclasses.replace(pc, segment=segment.astype(np.int64))


_LR_STREAM = 0x4C52  # "LR": keeps the scene draw apart from any other stream of the same seed
