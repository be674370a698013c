"""srkd.scoring: the one whole-split scorer (loop, accumulation, threads, progress, errors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from srkd.errors import ConfigError
from srkd.metrics import SegmentationScores, confusion_matrix
from srkd.scoring import LabelledScene, score_split

K = 5


def _split(n_scenes: int = 6) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """scene id -> (labels, predictions of source a, predictions of source b), int64 (N,)."""
    rng = np.random.default_rng(3)
    out = {}
    for i in range(n_scenes):
        n = 50 + 17 * i
        labels = rng.integers(-1, K, n)
        out[f"s{i}"] = (labels, rng.integers(0, K, n), np.where(rng.random(n) < 0.7, np.maximum(labels, 0), 0))
    return out


@pytest.mark.parametrize("threads", [1, 3, None])
def test_scores_are_the_split_level_confusion_of_each_source(threads: int | None) -> None:
    split = _split()
    seen: list[tuple[str, tuple[str, ...]]] = []
    events: list[tuple[int, int, str]] = []

    def load(scene_id: str) -> LabelledScene:
        return LabelledScene(scene_id, split[scene_id][0])

    sources = {"a": lambda s: split[s.scene_id][1], "b": lambda s: split[s.scene_id][2]}
    scores = score_split(sorted(split), load, sources, K, threads=threads,
                         progress=lambda d, t, m: events.append((d, t, m)),
                         on_scene=lambda s, p: seen.append((s.scene_id, tuple(p))))  # fmt: skip
    for i, name in enumerate(("a", "b"), start=1):
        cm = sum(confusion_matrix(v[i], v[0], K) for v in split.values())
        expected = SegmentationScores.from_confusion(cm)
        np.testing.assert_array_equal(scores[name].confusion, cm)
        assert scores[name].miou == expected.miou  # summed counts, not a mean of scene mIoUs
    assert seen == [(s, ("a", "b")) for s in sorted(split)]  # in order, every source
    assert events == [(i, 6, s) for i, s in enumerate(sorted(split))] + [(6, 6, "scored")]


def test_a_source_that_misses_points_is_one_error_naming_the_scene() -> None:
    def load(scene_id: str) -> LabelledScene:
        return LabelledScene(scene_id, np.zeros(10, np.int64))

    with pytest.raises(ConfigError, match="scene 'x0'.*every original point"):
        score_split(["x0"], load, {"short": lambda s: np.zeros(9, np.int64)}, K)


def test_an_empty_split_scores_nothing() -> None:
    scores = score_split([], lambda s: LabelledScene(s, np.zeros(0, np.int64)), {"a": lambda s: s.labels}, K)
    assert scores["a"].num_points == 0 and np.isnan(scores["a"].miou)


def test_scoring_a_cache_needs_no_torch() -> None:
    code = "import sys, srkd.scoring; assert 'torch' not in sys.modules, 'srkd.scoring imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
