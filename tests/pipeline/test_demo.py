"""The shipped stages.yaml runs end to end on a tiny setting, then a second run does nothing."""

from __future__ import annotations

import json

import pytest

from pipeline.runner import run_pipeline
from pipeline.spec import load_spec

from ..conftest import REPO

TEACHER = "srkd/assets/demo_teacher.pt"

TINY = {
    "data.scenes": 4,
    "data.points": 2000,
    "data.val_fraction": 0.5,
    "cache.grid_size": 0.1,
    "distill.student": "test_ptv3",
    "distill.epochs": 1,
    "distill.grid_size": 0.1,
    "distill.eval_every": 1,
    "distill.weights": {"n_relation_points": 64},
}


@pytest.mark.slow
def test_demo_pipeline_runs_end_to_end(tmp_path):
    # the shipped teacher by absolute path (a folder named srkd/ here would shadow the package)
    text = (REPO / "stages.yaml").read_text()
    assert TEACHER in text
    (tmp_path / "stages.yaml").write_text(text.replace(TEACHER, str(REPO / TEACHER)))
    spec = load_spec(tmp_path / "stages.yaml")
    results = run_pipeline(spec, overrides=TINY, jobs=2)  # as the README runs it
    # everything but the manual stages that retrain the teacher
    assert sorted(r.name for r in results if r.ran) == sorted(
        n for n, s in spec.stages.items() if not s.manual)
    assert {"teacher_data", "train_teacher"} <= {n for n, s in spec.stages.items() if s.manual}
    metrics = json.loads((tmp_path / "reports/demo/metrics.json").read_text())
    names = sorted(m["name"] for m in metrics["models"])
    assert len(names) == 3 and "student" in names and "baseline" in names
    for png in ("class_iou.png",):
        assert (tmp_path / "reports/demo" / png).stat().st_size > 1000
    again = run_pipeline(spec, overrides=TINY)
    assert not any(r.ran for r in again)
    # a changed distill parameter would re-run the two students, nothing upstream (a dry run: what
    # their new outputs then re-run is test_runner's, with stages that need no torch import)
    third = run_pipeline(spec, overrides={**TINY, "distill.seed": 1}, dry_run=True)
    assert {"baseline", "distill"} <= {r.name for r in third if r.ran}
    assert not {"generate", "cache_teacher", "cache_teacher_val"} & {r.name for r in third if r.ran}
