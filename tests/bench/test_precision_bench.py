"""bench/precision.py on a tiny model and room: a row per (model, scene) and the JSON (timings unchecked)."""

from __future__ import annotations

import importlib.util
import json
import sys

from ..conftest import REPO


def test_tiny_run_measures_agreement_and_writes_json(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # precision.py imports bench/deploy.py
    spec = importlib.util.spec_from_file_location("precision_bench", REPO / "bench" / "precision.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "p.json"
    argv = ["--models", "test_ptv3", "--points", "2000", "--real-scenes", "0", "--out", str(out)]
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["model"] == "test_ptv3" and row["scene"] == "synthetic room" and row["points"] == 2000
    assert 0.9 <= row["argmax_agreement"] <= 1.0 and 0 < row["max_abs_prob_diff"] < 0.1  # bf16 really ran
    assert data["env"]["threads"] == 1 and "test_ptv3" in capsys.readouterr().out
    sys.modules.pop("deploy", None)
