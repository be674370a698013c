"""Evaluation reports: `metrics.json` (machine-readable) and `report.md` (comparison tables).

One `ReportRow` per evaluated model (a checkpoint, or the teacher scored from its cache). All rows
of one report must share the class list. Files are written atomically (srkd.io: temporary sibling,
then `os.replace`; mode 0644 under the usual umask), so a crash never leaves a half-written report
that looks complete. A report folder lists the files srkd wrote there (OWNED_FILES); a new report
removes the previous report's files it does not rewrite and nothing else.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from srkd.errors import ConfigError
from srkd.evaluate.rows import Latency, ReportRow, SplitInfo, check_rows
from srkd.io import atomic_write_json, atomic_write_text
from srkd.settings import BF16_MIN_AGREEMENT

# the row types live in srkd.evaluate.rows and stay importable from here
__all__ = ["Latency", "ReportRow", "SplitInfo", "check_rows", "write_metrics_json", "write_report"]

METRICS_FORMAT = "srkd-metrics"
METRICS_VERSION = 1


OWNED_FILES = ".srkd-report.json"
"""The list, in a report folder, of the files the last `write_report` there wrote: the next report
into the same folder removes those it does not rewrite, so no stale picture of another model stays
next to a new report."""


def metrics_dict(
    rows: Sequence[ReportRow], class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """The content of metrics.json as a dict."""
    rows, names = check_rows(rows, class_names)
    return {
        "format": METRICS_FORMAT,
        "version": METRICS_VERSION,
        "class_names": names,
        "models": [r.to_dict(names) for r in rows],
    }


def write_metrics_json(
    path: Path, rows: Sequence[ReportRow], class_names: Sequence[str] | None = None
) -> Path:
    """Write every row (scores per class, params, latency, split) to a strict-JSON file."""
    try:
        text = json.dumps(metrics_dict(rows, class_names), indent=2, allow_nan=False)
    except (TypeError, ValueError) as e:  # e.g. a numpy value or NaN in a row's `extra`
        raise ConfigError(f"the report rows cannot be written as JSON to {path}: {e}") from e
    return atomic_write_text(Path(path), text + "\n")


def _pct(x: float) -> str:
    return "absent" if math.isnan(x) else f"{100.0 * x:.1f}"


def _params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 10_000 else str(n)


def _cell(text: str) -> str:
    # a '|' inside a name would split the markdown cell
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], body: Sequence[Sequence[str]], align: str) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in body]
    return lines


def render_markdown_table(
    rows: Sequence[ReportRow], class_names: Sequence[str] | None = None
) -> str:
    """Markdown: a comparison table (one line per model) then a per-class IoU table.

    Numbers are percentages with one decimal. A class with neither ground truth nor prediction
    is shown as "absent" and is not in that model's mIoU ("Classes in mean" counts the rest).
    """
    rows, names = check_rows(rows, class_names)
    k = len(names)
    summary = []
    for r in rows:
        s = r.scores
        summary.append(
            [
                r.name,
                r.kind,
                _params(r.params),
                "-" if r.latency is None else f"{r.latency.ms_per_scene:.1f}",
                "-" if r.latency is None else r.latency.device,
                _pct(s.miou),
                _pct(s.macc),
                _pct(s.allacc),
                f"{s.classes_in_mean}/{k}",
            ]
        )
    header = ["Model", "Kind", "Params", "Latency (ms/scene)", "Device", "mIoU", "mAcc", "allAcc",
              "Classes in mean"]  # fmt: skip
    lines = _table(header, summary, "lllrlrrrr")

    splits = {(r.split.dataset, r.split.split, r.split.num_scenes, r.split.tta_views, r.split.scope)
              for r in rows}  # fmt: skip
    lines.append("")
    for dataset, split, n, views, scope in sorted(splits):
        tta = "no TTA" if views == 1 else f"{views} TTA views"
        scenes = "1 scene" if n == 1 else f"{n} scenes"
        lines.append(f"Scored on {dataset} / {split}: {scenes}, {scope}, {tta}.")
    methods = sorted({f"{r.latency.method} on {r.latency.device}" for r in rows if r.latency})
    for m in methods:
        lines.append(f"Latency: {m}.")
    for r in rows:
        agreement = (r.extra or {}).get("argmax_agreement_with_fp32")
        if agreement is not None:
            verdict = ("" if agreement >= BF16_MIN_AGREEMENT else
                       f"; below {100 * BF16_MIN_AGREEMENT:.1f}%, keep fp32 for this model")
            lines.append(f"{r.name} ran in {r.extra['precision']}: its argmax equals fp32's on "
                         f"{100 * agreement:.2f}% of the points{verdict}.")
    lines.append(
        "mIoU averages IoU over the classes in the mean: every class with ground truth or a "
        "prediction in the split (a class predicted but never present scores 0). mAcc averages "
        "over classes with ground truth. Intersections and unions are summed over the split."
    )

    lines += ["", "### IoU per class (%)", ""]
    body = [[names[c]] + [_pct(r.scores.iou[c]) for r in rows] for c in range(k)]
    lines += _table(["Class"] + [r.name for r in rows], body, "l" + "r" * len(rows))
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: Path,
    rows: Sequence[ReportRow],
    class_names: Sequence[str] | None = None,
    *,
    plots: bool = True,
    images: Mapping[str, Path] | None = None,
) -> dict[str, Path]:
    """Write `metrics.json`, `report.md` and (if `plots`) the pictures into `out_dir`.

    Args:
        out_dir: created if missing.
        rows: evaluated models (same class count).
        class_names: one per class; defaults to the ScanNet names for 20/200 classes.
        plots: also draw `class_iou.png` and one `confusion_<model>.png` per model.
        images: further pictures already written (title -> path, e.g. a scene render) to link
            from the report.
    Returns:
        Name -> path of every file written ("metrics", "report", "class_iou", "confusion:<model>").
    """
    rows, names = check_rows(rows, class_names)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = _owned_files(out_dir)
    written = {"metrics": write_metrics_json(out_dir / "metrics.json", rows, names)}
    pictures: dict[str, Path] = {}
    if plots:
        from srkd.evaluate import (
            plots as plotting,  # matplotlib is imported only when pictures are drawn
        )

        written["class_iou"] = plotting.plot_class_iou(rows, names, out_dir / "class_iou.png")
        pictures["IoU per class"] = written["class_iou"]
        used: set[str] = set()
        for r in rows:
            stem = _file_stem(r.name)
            while stem in used:  # two names that sanitise alike must not overwrite each other
                stem += "_"
            used.add(stem)
            path = out_dir / f"confusion_{stem}.png"
            written[f"confusion:{r.name}"] = plotting.plot_confusion(
                r.scores.confusion, names, path, title=f"Confusion matrix: {r.name}"
            )
            pictures[f"Confusion matrix: {r.name}"] = path
    pictures.update(images or {})

    text = "# Evaluation report\n\n" + render_markdown_table(rows, names)
    if pictures:
        text += "\n## Pictures\n\n"
        for title, path in pictures.items():
            rel = os.path.relpath(Path(path).resolve(), out_dir.resolve())
            text += f"### {title}\n\n![{title}]({Path(rel).as_posix()})\n\n"
    written["report"] = atomic_write_text(out_dir / "report.md", text)
    _replace_owned(out_dir, previous, [*written.values(), *(images or {}).values()])
    return written


def _owned_files(out_dir: Path) -> list[str]:
    """Names of the files the previous report in `out_dir` wrote (its OWNED_FILES list); [] when
    there is none or it is unreadable (then nothing is cleared: only files srkd listed go)."""
    try:
        names = json.loads((out_dir / OWNED_FILES).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [n for n in names if isinstance(n, str) and n == Path(n).name and not n.startswith(".")]


def _replace_owned(out_dir: Path, previous: Sequence[str], written: Sequence[Path]) -> None:
    """Delete the previous report's files that this report did not rewrite (e.g. the confusion
    picture of a model no longer evaluated), then record this report's files in OWNED_FILES.
    Files srkd did not write (a user's notes, other tools' output) are never touched."""
    out = out_dir.resolve()
    mine = sorted({Path(p).name for p in written if Path(p).resolve().parent == out})
    for name in set(previous) - set(mine):
        (out_dir / name).unlink(missing_ok=True)
    atomic_write_json(out_dir / OWNED_FILES, {"written_by": "srkd evaluate", "files": mine})


def _file_stem(name: str) -> str:
    """A model name made safe as part of a file name."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._")
    return safe or "model"
