"""bench/attention.py on one tiny shape: the table and the JSON (its timings are not checked)."""

from __future__ import annotations

import importlib.util
import json

from srkd.models import cpu_attention

from ..conftest import REPO

_spec = importlib.util.spec_from_file_location("attention_bench", REPO / "bench" / "attention.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_tiny_run_prints_a_row_per_shape_and_writes_json(tmp_path, capsys):
    out = tmp_path / "a.json"
    assert bench.main(["--shapes", "2x1x40x8", "3x2x16x16", "--repeats", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["shape"] for r in rows] == ["2x1x40x8", "3x2x16x16"]
    assert rows[0]["sdpa"]["forward_err"] < 1e-5 and "fused" not in rows[1]  # width 16: SDPA only
    if cpu_attention.load_library() is not None:
        assert rows[0]["fused"]["forward_err"] < 1e-5 and rows[0]["fused"]["grad_err"] < 1e-4
    printed = capsys.readouterr().out
    assert "| 2x1x40x8 |" in printed and "| 3x2x16x16 |" in printed
