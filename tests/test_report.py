"""metrics.json, report.md and the PNG pictures are written, complete and readable back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srkd.data.scannet.classes import SCANNET20_CLASSES, SCANNET20_COLORS
from srkd.errors import ConfigError, DataError
from srkd.evaluate.report import (
    OWNED_FILES,
    Latency,
    ReportRow,
    SplitInfo,
    render_markdown_table,
    write_metrics_json,
    write_report,
)
from srkd.metrics import SegmentationScores, confusion_matrix

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOW = "median of 5 runs after 2 warm-up, batch 1, no TTA"
SPLIT = SplitInfo(dataset="synthetic", split="val", num_scenes=3, tta_views=13)


def _row(name: str, target: np.ndarray, pred: np.ndarray, k: int, **kw) -> ReportRow:
    scores = SegmentationScores.from_confusion(confusion_matrix(pred, target, k))
    return ReportRow(name=name, kind=kw.pop("kind", "student"), scores=scores, split=SPLIT, **kw)


@pytest.fixture
def rows(rng) -> list[ReportRow]:
    k = 20
    target = rng.integers(-1, 18, size=20_000)  # classes 18, 19 never labelled
    wrong = rng.integers(0, 18, target.size)
    noisy = np.where(rng.random(target.size) < 0.8, np.clip(target, 0, None), wrong)
    fp = noisy.copy()
    fp[:50] = 18  # the second model also predicts class 18: false-positive-only, IoU 0
    return [
        _row("teacher|cache", target, np.clip(target, 0, None), k, kind="teacher-cache",
             source="cache/"),  # fmt: skip
        _row("student-srkd", target, noisy, k, params=11_600_000,
             latency=Latency(41.25, "cpu", HOW)),  # fmt: skip
        _row("student-alone", target, fp, k, params=11_600_000,
             latency=Latency(40.0, "cpu", HOW)),  # fmt: skip
    ]


def _png_ok(path, min_bytes: int = 5_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > min_bytes, (path, len(data))


def test_write_report_writes_everything(tmp_path, rows):
    out = tmp_path / "eval"
    written = write_report(out, rows)
    confusions = {f"confusion:{r.name}" for r in rows}
    assert set(written) == {"metrics", "report", "class_iou"} | confusions
    for key, path in written.items():
        assert path.parent == out and path.stat().st_size > 0
        if path.suffix == ".png":
            _png_ok(path, 20_000 if key == "class_iou" else 10_000)
    # the first model's name has a '|': its file name is sanitised, and no temp files remain
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["metrics.json", "report.md", "class_iou.png", "confusion_teacher_cache.png",
         "confusion_student-srkd.png", "confusion_student-alone.png", OWNED_FILES]  # fmt: skip
    )
    md = written["report"].read_text()
    assert "![IoU per class](class_iou.png)" in md
    assert "confusion_student-alone.png" in md


def test_a_new_report_removes_only_the_previous_reports_files(tmp_path, rows):
    """Reporting fewer models into the same folder removes the other models' pictures (no stale
    PNG next to the new report) but keeps files srkd did not write; files are 0644, not 0600."""
    import os

    old_umask = os.umask(0o022)
    try:
        out = tmp_path / "eval"
        write_report(out, rows)
        (out / "notes.txt").write_text("mine")
        (out / "confusion_by_hand.png").write_bytes(PNG_MAGIC)
        written = write_report(out, rows[1:2], plots=True)
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["metrics.json", "report.md", "class_iou.png", "confusion_student-srkd.png", OWNED_FILES,
         "notes.txt", "confusion_by_hand.png"]  # fmt: skip
    )
    assert json.loads((out / OWNED_FILES).read_text())["files"] == sorted(
        p.name for p in written.values()
    )
    for path in written.values():
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_markdown_has_every_model_and_class(rows):
    md = render_markdown_table(rows, SCANNET20_CLASSES)
    lines = md.splitlines()
    for r in rows:
        name = r.name.replace("|", "\\|")
        summary = [ln for ln in lines if ln.startswith(f"| {name} |")]
        assert len(summary) == 1, r.name
        assert f"{100 * r.scores.miou:.1f}" in summary[0]
    # classes 18/19: absent for the first two models; student-alone predicts 18 -> 19/20 in mean
    assert "| 18/20 |" in md and "| 19/20 |" in md
    bathtub = next(ln for ln in lines if ln.startswith("| bathtub |"))
    assert bathtub.split("|")[2:5] == [" absent ", " absent ", " 0.0 "]
    for name in SCANNET20_CLASSES:
        assert sum(ln.startswith(f"| {name} |") for ln in lines) == 1
    assert "11.60M" in md and "41.2" in md and "13 TTA views" in md
    assert "median of 5 runs after 2 warm-up, batch 1, no TTA on cpu" in md


def test_metrics_json_is_strict_and_complete(tmp_path, rows):
    path = write_metrics_json(tmp_path / "m.json", rows)
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert data["format"] == "srkd-metrics" and data["class_names"] == list(SCANNET20_CLASSES)
    first = data["models"][0]
    assert first["kind"] == "teacher-cache" and first["params"] is None and first["latency"] is None
    assert first["scores"]["miou"] == 1.0 and first["scores"]["per_class"][19]["iou"] is None
    assert data["models"][1]["latency"]["ms_per_scene"] == 41.25
    assert data["models"][1]["split"]["tta_views"] == 13
    assert [m["name"] for m in data["models"]] == [r.name for r in rows]
    for m, r in zip(data["models"], rows, strict=True):
        assert m["scores"]["confusion"] == r.scores.confusion.tolist()
        assert m["params"] == r.params and m["split"] == vars(r.split)


def test_bad_reports_are_refused(tmp_path, rows, rng):
    with pytest.raises(ConfigError, match="at least one"):
        render_markdown_table([])
    other = _row("three-class", np.array([0, 1, 2]), np.array([0, 1, 1]), 3)
    with pytest.raises(ConfigError, match="different class counts"):
        render_markdown_table([rows[0], other])
    with pytest.raises(ConfigError, match="unique"):
        render_markdown_table([rows[1], rows[1]])
    with pytest.raises(ConfigError, match="2 class names"):
        render_markdown_table([other], ["a", "b"])
    with pytest.raises(ConfigError, match="as JSON"):
        write_metrics_json(tmp_path / "x.json", [_row("m", np.array([0]), np.array([0]), 1,
                                                        extra={"when": object()})])  # fmt: skip
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(ConfigError, match="non-empty model name"):
        _row("", np.array([0]), np.array([0]), 1)
    with pytest.raises(ConfigError, match="latency"):
        Latency(float("nan"), "cpu", "x")


def test_confusion_plot_linear_and_log(tmp_path, rng):
    from srkd.evaluate.plots import plot_confusion

    cm = confusion_matrix(rng.integers(0, 5, 500), rng.integers(-1, 4, 500), 5)  # row 4 empty
    names = ["a", "b", "c", "d", "e"]
    _png_ok(plot_confusion(cm, names, tmp_path / "log.png"))
    _png_ok(plot_confusion(cm, names, tmp_path / "lin.png", log=False))
    with pytest.raises(ConfigError):
        plot_confusion(cm, names[:4], tmp_path / "bad.png")


def test_scene_topdown_render(tmp_path, rng):
    from srkd.evaluate.plots import plot_scene_topdown

    n = 5000
    coord = np.column_stack([rng.uniform(0, 6, n), rng.uniform(0, 4, n), rng.uniform(0, 2.5, n)])
    gt = rng.integers(-1, 20, n)
    preds = {"student": np.clip(gt, 0, None), "teacher": rng.integers(0, 20, n)}
    path = plot_scene_topdown(coord, gt, preds, SCANNET20_COLORS, tmp_path / "scene.png",
                              "scene0000_00", max_points=2000)  # fmt: skip
    _png_ok(path, 20_000)
    with pytest.raises(DataError, match="'student' labels"):
        plot_scene_topdown(coord, gt, {"student": gt[:10]}, None, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="colour table has 2"):
        plot_scene_topdown(coord, gt, {}, [(0, 0, 0), (1, 1, 1)], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_bf16_rows_say_their_agreement_and_when_to_keep_fp32(rows):
    import dataclasses

    ok = dataclasses.replace(rows[1], extra={"precision": "bf16", "argmax_agreement_with_fp32": 0.9987})
    low = dataclasses.replace(rows[2], extra={"precision": "bf16", "argmax_agreement_with_fp32": 0.9901})
    md = render_markdown_table([rows[0], ok, low], SCANNET20_CLASSES)
    assert "student-srkd ran in bf16: its argmax equals fp32's on 99.87% of the points." in md
    assert "student-alone ran in bf16: its argmax equals fp32's on 99.01% of the points; below 99.5%, keep fp32" in md
    assert "ran in" not in render_markdown_table(rows, SCANNET20_CLASSES)
