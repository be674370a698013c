"""Report pictures: per-class IoU bars, confusion matrix, top-down scene render (PNG).

Figures are built as `matplotlib.figure.Figure` objects on an Agg canvas, never through pyplot,
so no GUI backend is touched, no global figure list grows, and this works in threads and on
headless machines. Import this module lazily: matplotlib takes a moment to load.
Every file is written atomically (temporary sibling, then rename).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from srkd.errors import ConfigError, DataError
from srkd.io import atomic_write
from srkd.metrics import check_class_names, check_confusion_matrix, default_class_names
from srkd.types import IGNORE_INDEX

if TYPE_CHECKING:
    from srkd.evaluate.rows import ReportRow

IGNORE_COLOR = (0.6, 0.6, 0.6)
"""Grey used for points whose label is IGNORE_INDEX (-1)."""

_MODEL_CMAP = "tab10"


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    FigureCanvasAgg(fig)  # attach an Agg canvas: no pyplot, no backend switch
    return atomic_write(
        Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    )


def plot_class_iou(
    rows: Sequence[ReportRow], class_names: Sequence[str] | None, path: Path, dpi: int = 110
) -> Path:
    """Grouped bars: IoU (%) of every class, one bar per compared model; dashed line = mIoU.

    Absent classes (no ground truth, no prediction) get no bar and an "x" on the axis.
    Returns the PNG path.
    """
    if not rows:
        raise ConfigError("plot_class_iou needs at least one model row")
    k = rows[0].scores.num_classes  # rows as srkd.evaluate.rows.check_rows leaves them: one class count
    names = check_class_names(default_class_names(k) if class_names is None else class_names, k)
    m = len(rows)
    width = 0.8 / m
    fig = Figure(figsize=(min(max(8.0, 0.32 * k * max(1.0, m / 2) + 2.0), 120.0), 4.8))
    ax = fig.add_subplot()
    x = np.arange(k)
    cmap = matplotlib.colormaps[_MODEL_CMAP]
    for j, r in enumerate(rows):
        iou = 100.0 * np.asarray(r.scores.iou, dtype=np.float64)
        color = cmap(j % cmap.N)
        shown = ~np.isnan(iou)
        ax.bar(x[shown] + (j - (m - 1) / 2) * width, iou[shown], width, color=color,
               label=f"{r.name} (mIoU {100 * r.scores.miou:.1f})")  # fmt: skip
        absent = ~shown
        if absent.any():
            ax.plot(x[absent] + (j - (m - 1) / 2) * width, np.full(absent.sum(), 1.0), "x",
                    color=color, markersize=5)  # fmt: skip
        if not np.isnan(r.scores.miou):
            ax.axhline(100 * r.scores.miou, color=color, linestyle="--", linewidth=0.8)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel("IoU (%)")
    ax.set_title("IoU per class (x = class absent: no ground truth and no prediction)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path, dpi)


def plot_confusion(
    cm: Any,
    class_names: Sequence[str],
    path: Path,
    *,
    log: bool = True,
    title: str = "Confusion matrix",
    dpi: int = 110,
) -> Path:
    """Row-normalised confusion matrix: cell (t, p) = share of class t's points predicted as p.

    Args:
        cm: int (K, K) counts, rows = ground truth, columns = prediction.
        class_names: K names.
        path: PNG to write.
        log: logarithmic colour scale (1e-3 .. 1) so rare confusions stay visible; zeros blank.
        title: figure title.
    Returns the PNG path. Rows without ground truth are left blank. Cells are annotated with
    percentages when K <= 25.
    """
    counts = check_confusion_matrix(cm)
    k = counts.shape[0]
    names = check_class_names(class_names, k)
    gt = counts.sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(gt > 0, counts / np.where(gt > 0, gt, 1.0), np.nan)
    shown = np.ma.masked_where(~(share > 0), share) if log else np.ma.masked_invalid(share)
    norm = LogNorm(vmin=1e-3, vmax=1.0, clip=True) if log else Normalize(vmin=0.0, vmax=1.0)
    size = min(max(5.0, 0.42 * k + 2.0), 60.0)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="viridis", norm=norm, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="share of ground-truth row" + (" (log)" if log else ""))  # fmt: skip
    ticks = np.arange(k)
    fontsize = 8 if k <= 40 else 4
    ax.set_xticks(ticks, names, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, names, fontsize=fontsize)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title)
    if k <= 25:
        for t in range(k):
            for p in range(k):
                v = share[t, p]
                if v > 0:
                    dark = norm(v) < 0.6  # white text on the dark end of viridis
                    label = f"{100 * v:.0f}" if v >= 0.01 else "<1"
                    ax.text(p, t, label, ha="center", va="center", fontsize=6,
                            color="white" if dark else "black")  # fmt: skip
    return _save(fig, path, dpi)


def _class_rgb(class_colors: Sequence[Sequence[float]] | None, k_needed: int) -> np.ndarray:
    """float (K, 3) colours in [0, 1]; the table may be 0..255 ints or 0..1 floats."""
    if class_colors is None:
        from srkd.data.scannet.classes import SCANNET20_COLORS

        class_colors = SCANNET20_COLORS
    table = np.asarray(class_colors, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 3:
        raise ConfigError(f"class colours must be (K, 3) RGB triples, got shape {table.shape}")
    if len(table) < k_needed:
        raise ConfigError(
            f"the colour table has {len(table)} colours but label {k_needed - 1} occurs; "
            "pass one colour per class"
        )
    return table / 255.0 if table.max() > 1.0 else table


def plot_scene_topdown(
    coord: np.ndarray,
    gt: np.ndarray,
    preds: Mapping[str, np.ndarray],
    class_colors: Sequence[Sequence[float]] | None,
    path: Path,
    title: str = "",
    *,
    max_points: int = 200_000,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    dpi: int = 110,
) -> Path:
    """Top-down (x, y) render of one scene: ground truth, then each model's prediction.

    Args:
        coord: float (N, 3) point positions in metres.
        gt: int (N,) ground-truth labels, -1 = ignore (drawn grey).
        preds: model name -> int (N,) predicted labels for the same points.
        class_colors: (K, 3) RGB per class (0..255 or 0..1); None = SCANNET20_COLORS.
        path: PNG to write.
        title: figure title (e.g. the scene id).
        max_points: draw a random subset of at most this many points (same subset in every panel).
        seed: seed of that subset.
        class_names: legend names per class; None = ScanNet names for a 20/200-colour table.
    Points are drawn lowest first so the top-down view shows what a camera above would see.
    Returns the PNG path.
    """
    coord = np.asarray(coord)
    panels = _scene_panels(coord, gt, preds)
    k_needed = max(int(lab.max()) for lab in panels.values()) + 1
    rgb = _class_rgb(class_colors, max(k_needed, 1))
    keep = _drawn_points(coord, max_points, seed)
    palette = np.vstack([rgb, np.asarray(IGNORE_COLOR)[None]])  # index -1 -> last row = grey
    fig = _draw_panels(coord[keep, :2].astype(np.float64), {n: lab[keep] for n, lab in panels.items()},
                       palette)  # fmt: skip
    used = np.unique(np.concatenate([lab[keep] for lab in panels.values()]))
    handles = [
        Patch(color=palette[c], label=_legend_name(int(c), len(rgb), class_names)) for c in used
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=7,
               frameon=False)  # fmt: skip
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def _scene_panels(coord: np.ndarray, gt: np.ndarray, preds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """"ground truth" then each prediction, as int (N,) labels checked against coord (N, 3)."""
    if coord.ndim != 2 or coord.shape[1] != 3 or len(coord) == 0:
        raise DataError(f"coord must be a non-empty float (N, 3) array, got shape {coord.shape}")
    n = len(coord)
    panels = {"ground truth": np.asarray(gt)}
    panels.update({str(name): np.asarray(p) for name, p in preds.items()})
    for name, labels in panels.items():
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"{name!r} labels must be int ({n},) like coord, got {labels.dtype} {labels.shape}"
            )
        if labels.size and labels.min() < IGNORE_INDEX:
            raise DataError(f"{name!r} has label {int(labels.min())}; labels must be >= -1")
    return panels


def _drawn_points(coord: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Indices of the points drawn: a seeded subset of at most `max_points`, lowest z first (so
    the top-down view shows what a camera above would see)."""
    n = len(coord)
    keep = np.arange(n)
    if n > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    return keep[np.argsort(coord[keep, 2], kind="stable")]


def _draw_panels(xy: np.ndarray, panels: Mapping[str, np.ndarray], palette: np.ndarray) -> Figure:
    """One square-marker scatter per panel of the points xy float64 (M, 2) coloured by
    palette[labels] (labels int (M,), -1 = the palette's last row)."""
    span = np.ptp(xy, axis=0) + 1e-6
    aspect = float(np.clip(span[1] / span[0], 0.3, 3.0))
    cols = len(panels)
    panel_in = 4.2
    fig = Figure(figsize=(panel_in * cols, panel_in * aspect + 1.2), layout="constrained")
    # marker area (pt^2) so the kept points roughly tile a panel: dense but not blotted
    panel_pt2 = (panel_in * 72.0) ** 2 * aspect
    marker_size = float(np.clip(1.5 * panel_pt2 / len(xy), 0.3, 20.0))
    for i, (name, labels) in enumerate(panels.items()):
        ax = fig.add_subplot(1, cols, i + 1)
        ax.scatter(xy[:, 0], xy[:, 1], c=palette[labels], s=marker_size, marker="s",
                   linewidths=0, rasterized=True)  # fmt: skip
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def _legend_name(label: int, k: int, class_names: Sequence[str] | None) -> str:
    if label == IGNORE_INDEX:
        return "ignored (-1)"
    if class_names is not None and label < len(class_names):
        return str(class_names[label])
    return default_class_names(k)[label] if k in (20, 200) else str(label)
