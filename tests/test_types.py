"""PointCloud: validation, select() keeps every per-point field aligned, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from srkd.errors import DataError
from srkd.types import PointCloud


def make(n: int = 10, **kw) -> PointCloud:
    rng = np.random.default_rng(1)
    args = dict(
        coord=rng.normal(size=(n, 3)),
        origin_index=np.arange(n),
        color=rng.integers(0, 255, size=(n, 3), dtype=np.uint8),
        normal=np.tile([0.0, 0.0, 1.0], (n, 1)),
        segment=rng.integers(-1, 20, size=n),
        instance=np.full(n, -1),
        scene_id="s0",
        num_classes=20,
    )
    args.update(kw)
    return PointCloud(**args)


def test_dtypes_are_normalised():
    pc = make()
    assert pc.coord.dtype == np.float32 and pc.color.dtype == np.float32
    assert pc.segment.dtype == np.int64 and pc.origin_index.dtype == np.int64
    assert pc.feature().shape == (10, 6)


def test_select_moves_every_field_together():
    pc = make()
    idx = np.array([3, 3, 0, 9])
    sub = pc.select(idx)
    for name, value in sub.fields().items():
        np.testing.assert_array_equal(value, getattr(pc, name)[idx])
    np.testing.assert_array_equal(sub.origin_index, idx)
    mask = np.zeros(10, dtype=bool)
    mask[[1, 4]] = True
    assert sub.select(np.array([0])).num_points == 1
    np.testing.assert_array_equal(pc.select(mask).origin_index, [1, 4])


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (dict(segment=np.full(10, 57)), ["s0", "'segment'", "57"]),
        (dict(coord=np.full((10, 3), np.nan)), ["s0", "'coord'", "non-finite"]),
        (dict(normal=np.zeros((9, 3))), ["'normal'", "9"]),
        (dict(coord=np.zeros((0, 3)), origin_index=np.zeros(0, int), color=None, normal=None,
              segment=None, instance=None), ["no points"]),
        (dict(segment=np.full(10, 1.5)), ["'segment'", "integers"]),
        (dict(color=np.zeros((10, 4))), ["'color'", "(N, 3)"]),
    ],
)
def test_bad_fields_raise_one_clear_error(change, words):
    with pytest.raises(DataError) as info:
        make(**change)
    for word in words:
        assert word in str(info.value)


def test_bad_mask_shape():
    with pytest.raises(DataError, match="mask"):
        make().select(np.ones(3, dtype=bool))


def test_missing_feature_named():
    with pytest.raises(DataError, match="normal"):
        make(normal=None).feature()
