"""bench/distill_quality.py: job planning, variant parsing and the summary (the training itself is
the library's, tested elsewhere; the benchmark is not run here)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from ..conftest import REPO

_spec = importlib.util.spec_from_file_location("distill_quality", REPO / "bench" / "distill_quality.py")
dq = importlib.util.module_from_spec(_spec)
sys.modules["distill_quality"] = dq  # dataclasses look their module up there
_spec.loader.exec_module(dq)


def test_variants_parse_with_overrides_and_bad_names_stop():
    base, overrides = dq.parse_variant("srkd+relation=10+n_relation_points=256")
    assert base["method"] == "srkd" and overrides == {"relation": 10.0, "n_relation_points": 256}
    with pytest.raises(SystemExit, match="unknown variant 'fitnet'"):
        dq.parse_variant("fitnet")
    with pytest.raises(SystemExit, match="NAME\\+key=value"):
        dq.parse_variant("srkd+relation")


def test_plan_runs_core_for_every_seed_extras_and_curve_for_the_first(tmp_path):
    args = dq.parse_args(["--variants", "alone,srkd", "--seeds", "3,4", "--extra-variants", "kd",
                          "--curve-epochs", "5,20", "--epochs", "20", "--out", str(tmp_path / "r.json")])
    keys = [j.key for j in dq.plan_jobs(args)]
    assert keys == ["alone|seed=3|epochs=20", "srkd|seed=3|epochs=20", "alone|seed=4|epochs=20",
                    "srkd|seed=4|epochs=20", "kd|seed=3|epochs=20", "alone|seed=3|epochs=5",
                    "srkd|seed=3|epochs=5"]  # the curve point at --epochs is the core job itself
    assert args.work == tmp_path / "work-r"


def test_summary_gives_mean_std_and_per_seed_gain_over_alone(tmp_path):
    args = dq.parse_args(["--variants", "alone,srkd", "--seeds", "0,1", "--extra-variants", "",
                          "--curve-epochs", "", "--epochs", "2", "--out", str(tmp_path / "r.json")])

    def row(variant, seed, miou):
        job = dq.Job("core", variant, seed, 2)
        terms = {"ce": 1.0, "ce_share": 0.5, "relation": 0.02, "relation_share": 0.5}
        return {"variant": variant, "seed": seed, "epochs": 2, "key": job.key, "steps": 8, "wall_s": 10.0,
                "mIoU": miou, "mAcc": miou, "allAcc": miou, "first_step_terms": terms,
                "last_tenth_terms": {**terms, "relation": 0.01}}

    rows = [row("alone", 0, 0.10), row("srkd", 0, 0.15), row("alone", 1, 0.20), row("srkd", 1, 0.19)]
    table = {e["variant"]: e for e in dq.summarise(rows, args)["table"]}
    assert table["srkd"]["gain_mIoU_per_seed"] == pytest.approx([5.0, -1.0])
    mean, std = table["srkd"]["mIoU"]
    assert mean == pytest.approx(17.0) and std == pytest.approx(2.828427, rel=1e-5)
    assert table["srkd"]["relation_first_last"] == pytest.approx([0.02, 0.01])


def test_loss_terms_of_a_log_row_are_its_loss_numbers_only():
    # a flat log.jsonl row (srkd.distill.run_log): time and kind are strings, the rest numbers
    row = {"time": "2026-11-30T13:36:31.433+00:00", "elapsed_s": 3.3, "kind": "train", "epoch": 1,
           "step": 1, "loss": 4.3, "ce": 3.4, "ce_weighted": 3.4, "ce_share": 0.78, "lr": 1e-3,
           "points_per_s": 6381.5, "step_s": 3.1}
    assert dq.loss_terms(row) == ["loss", "ce", "ce_weighted", "ce_share"]
