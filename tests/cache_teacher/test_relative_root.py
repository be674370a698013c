"""A cache given by a short relative path (`c`, `0`) that recurs inside its own keys:
`srkd cache-teacher --out c` -> `srkd distill --cache c` -> `srkd inspect-cache c --verify` run in
the cache's parent folder, and a store whose listing is wrong is not called damaged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from cli import app
from srkd.cache import CacheReader, CacheWriter, ensemble_of
from srkd.cache.inspect import verify
from tests.cache.conftest import make_spec, make_views
from tests.cache_teacher.conftest import make_teacher


def invoke(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("name", ["c", "0"])
def test_cli_stages_on_a_cache_named_like_its_keys(name, tmp_path, monkeypatch):
    from srkd.data.synthetic.rooms import generate_dataset

    generate_dataset(tmp_path / "data", scenes=3, seed=0, val_fraction=0.34, n_points=1000)
    teacher = make_teacher(tmp_path / "teacher.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    monkeypatch.delenv("SRKD_SET", raising=False)
    res = invoke(["cache-teacher", "--teacher", teacher, "--data-root", "data", "--out", name,
                  "--grid-size", "0.1", "--workers", "0", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = invoke(["distill", "--cache", name, "--student", "test_ptv3", "--out", "run", "--epochs", "1",
                  "--batch-size", "2", "--grid-size", "0.1", "--device", "cpu", "--val-max-scenes", "1",
                  "--weight", "n_relation_points=64"])
    assert res.exit_code == 0, res.output
    res = invoke(["inspect-cache", name, "--verify", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{"):])
    assert report["problems"] == [] and report["summary"]["scenes"] == 2


def test_a_wrong_listing_is_cross_checked_before_a_scene_is_called_damaged(tmp_path, monkeypatch):
    spec = make_spec()
    views = make_views(300, spec)
    CacheWriter.create(tmp_path / "c", spec).write_scene("scene0", views, ensemble_of(views))
    monkeypatch.chdir(tmp_path)
    # zarr's own LocalStore on the relative root: its listing drops the "c/" of every chunk key
    store = zarr.storage.LocalStore("c", read_only=True)
    assert zarr.open_group(store, mode="r")["seq-scene0/view_0/logits_code"].nchunks_initialized == 0
    reader = CacheReader(store)
    logits, _ = reader.read_all("scene0", 0)
    assert np.array_equal(logits, CacheReader(tmp_path / "c").read_all("scene0", 0)[0])
    assert verify(store) == []
