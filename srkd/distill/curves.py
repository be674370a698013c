"""curves.png of a training run: loss terms and learning rate per step, validation mIoU per epoch.

Drawn by srkd.distill.run_log from the rows of log.jsonl. Figures are built as
`matplotlib.figure.Figure` objects on an Agg canvas, never through pyplot (no GUI backend, no
global figure list; safe on headless machines). matplotlib is imported here, so import this
module lazily. The file is written atomically (srkd.io.atomic_write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from srkd.io import atomic_write

_TERM_CMAP = "tab10"

Series = tuple[Sequence[float], Sequence[float]]
"""(x values, y values) of one curve, equal lengths."""

_CURVE_POINTS = 1000
"""Long curves are drawn as this many bins (mean line + min..max band): a 10^5-step run plots in
about the time of a short one."""


def plot_training_curves(path: Path, losses: Mapping[str, Series], lr: Series, miou: Series,
                         dpi: int = 90) -> Path:
    """A training run's curves (curves.png): loss terms per step (thin or band: every step, or
    each bin's min..max for long runs; thick: the running mean over ~2% of the steps), learning
    rate per step, validation mIoU (%) per epoch.

    Args:
        losses: term name -> (steps, float values); "loss" is the weighted total.
        lr: (steps, the rate each step used).
        miou: (epochs counted from 1, validation mIoU in [0, 1]); empty = no validation.
    Returns the PNG path (written atomically).
    """
    fig = Figure(figsize=(15.0, 4.2))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.13, top=0.92, wspace=0.25)
    ax_loss, ax_lr, ax_val = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    cmap = matplotlib.colormaps[_TERM_CMAP]
    lows, highs = [], []
    for i, (name, (steps, values)) in enumerate(sorted(losses.items(), key=lambda kv: kv[0] != "loss")):
        x, mean, lo, hi = _bins(np.array(steps, np.float64), np.array(values, np.float64))
        lows.append(np.nanmin(lo) if np.isfinite(lo).any() else np.nan)
        highs.append(np.nanmax(hi) if np.isfinite(hi).any() else np.nan)
        color = "black" if name == "loss" else cmap(i % cmap.N)
        if len(x) < len(steps):
            ax_loss.fill_between(x, lo, hi, color=color, alpha=0.15, linewidth=0)
        else:
            ax_loss.plot(x, mean, color=color, linewidth=0.5, alpha=0.35)
        ax_loss.plot(x, _running_mean(mean, max(1, len(mean) // 50)), color=color, linewidth=1.6,
                     label="loss (total)" if name == "loss" else name)
    if lows and np.nanmin(lows) > 0 and np.nanmax(highs) > 10 * np.nanmin(lows):
        ax_loss.set_yscale("log")  # terms of different magnitudes (or a long fall) stay readable
    ax_loss.set(xlabel="step", ylabel="value (terms unweighted)", title="loss terms")
    if losses:
        ax_loss.legend(fontsize=8)
    x, mean, _, _ = _bins(np.array(lr[0], np.float64), np.array(lr[1], np.float64))
    ax_lr.plot(x, mean, color="tab:blue", linewidth=1.2)
    ax_lr.set(xlabel="step", ylabel="learning rate (first parameter group)", title="learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    _plot_miou(ax_val, np.array(miou[0], np.float64), 100.0 * np.array(miou[1], np.float64))
    for ax in (ax_loss, ax_lr, ax_val):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and epochs are counts
    FigureCanvasAgg(fig)
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def _plot_miou(ax: Any, epochs: np.ndarray, values: np.ndarray) -> None:
    """Validation mIoU (%) per epoch, the best one annotated; a note when there is none yet."""
    if len(epochs):
        ax.plot(epochs, values, "o-", color="tab:green", markersize=3)
        if np.isfinite(values).any():
            best = int(np.nanargmax(values))
            late = len(epochs) > 1 and best >= len(epochs) / 2  # keep the text inside the axes
            ax.annotate(f"best {values[best]:.1f} (epoch {int(epochs[best])})",
                        (epochs[best], values[best]), textcoords="offset points", xytext=(0, 8),
                        ha="right" if late else "left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no validation yet", ha="center", va="center", transform=ax.transAxes)
    ax.margins(y=0.15)  # room for the annotation
    ax.set(xlabel="epoch", ylabel="mIoU (%)", title="validation mIoU")


def _bins(x: np.ndarray, y: np.ndarray, bins: int = _CURVE_POINTS
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, min, max) of `bins` consecutive groups of points; the points themselves (mean =
    min = max = y) when there are no more than `bins`. NaNs are ignored within a bin."""
    if len(x) <= bins:
        return x, y, y, y
    starts = np.linspace(0, len(x), bins, endpoint=False).astype(np.int64)
    finite = np.isfinite(y)
    counts = np.add.reduceat(finite.astype(np.float64), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.add.reduceat(np.where(finite, y, 0.0), starts) / counts
    lo = np.fmin.reduceat(np.where(finite, y, np.nan), starts)
    hi = np.fmax.reduceat(np.where(finite, y, np.nan), starts)
    return np.add.reduceat(x, starts) / np.diff(np.append(starts, len(x))), mean, lo, hi


def _running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each position (fewer at the start); NaNs skipped."""
    finite = np.isfinite(y)
    sums = np.cumsum(np.where(finite, y, 0.0))
    counts = np.cumsum(finite)
    lag = np.concatenate([np.zeros(window), sums[:-window]]) if window < len(y) else np.zeros_like(sums)
    lag_n = np.concatenate([np.zeros(window), counts[:-window]]) if window < len(y) else np.zeros_like(sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums - lag) / (counts - lag_n)
