"""The manual's cache-reading snippets (plain zarr, dask, xarray), run as printed, decode exactly
what srkd decodes (float32, bit for bit).

Each snippet is the ```python block right after an HTML comment `<!-- snippet: NAME -->` in
docs/cache.md; a missing marker fails (the page and this test must not drift apart).
`SRKD_README=path` runs the snippets of another markdown file (a draft).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from srkd.cache import CacheReader, CacheWriter, CodecSpec, ensemble_of
from srkd.cache.schema import SampleTargets
from tests.cache.conftest import make_spec, make_views

README = Path(os.environ.get("SRKD_README") or Path(__file__).resolve().parents[2] / "docs" / "cache.md")
SNIPPETS = ("cache-zarr", "cache-dask", "cache-xarray")


def readme_snippet(name: str) -> str:
    """The ```python block that directly follows `<!-- snippet: name -->` in the page."""
    marker = f"<!-- snippet: {name} -->"
    text = README.read_text()
    if marker not in text:
        pytest.fail(f"{README} has no {marker!r} marker before its {name} code block; put it back "
                    "(this test runs the page's snippets) or update SNIPPETS here")  # fmt: skip
    found = re.match(r"\s*```python\n(.*?)```", text[text.index(marker) + len(marker) :], re.DOTALL)
    if found is None:
        pytest.fail(f"{README}: {marker!r} is not followed by a ```python block")
    return found.group(1)


@pytest.fixture(scope="module")
def demo_like_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache shaped like the demo's (int8, 2 views + ensemble) whose first scene is
    synthetic_0000; some features are all zero (as ReLU features can be)."""
    folder = tmp_path_factory.mktemp("readme")
    spec = make_spec(codec=CodecSpec.create("int8"), views=2, ensemble=True)
    writer = CacheWriter.create(folder / "cache", spec, schema_version=2)
    for i in range(2):
        views = make_views(500 + i, spec, seed=i)
        views[0].feature[::50] = 0
        writer.write_scene(f"synthetic_{i:04d}", views, ensemble_of(views), data_sha256="0" * 64)
    return folder


@pytest.mark.parametrize("name", SNIPPETS)
def test_readme_snippet_decodes_what_srkd_decodes(name: str, demo_like_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = readme_snippet(name)
    monkeypatch.chdir(demo_like_cache)
    names: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a snippet that warns (e.g. about consolidation) is not "as written"
        exec(compile(code, f"{README.name} {name}", "exec"), names)
    logits, feature = CacheReader(demo_like_cache / "cache").read_all("synthetic_0000", 0)
    got_l, got_f = np.asarray(names["logits"]), np.asarray(names["feature"])
    assert got_l.dtype == np.float32 and got_f.dtype == np.float32
    np.testing.assert_array_equal(got_l, logits)
    np.testing.assert_array_equal(got_f, feature)


@pytest.mark.parametrize("schema", [2, 3])
def test_the_whole_cache_dataset_snippet_reads_what_srkd_reads(schema: int, demo_like_cache: Path,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The srkd one-Dataset snippet on the demo-like schema-2 cache and on a schema-3 cache of
    the default codec."""
    pytest.importorskip("xarray")
    folder = demo_like_cache
    if schema == 3:
        folder = tmp_path
        spec = make_spec(codec=CodecSpec(), views=2, ensemble=True)
        writer = CacheWriter.create(folder / "cache", spec)
        views = [make_views(300 + i, spec, seed=i) for i in range(2)]
        writer.write_sequence("seq-synthetic_0000", [writer.encode_sample(SampleTargets(
            f"synthetic_{i:04d}", v, ensemble_of(v), "0" * 64)) for i, v in enumerate(views)])  # fmt: skip
    monkeypatch.chdir(folder)
    names: dict = {}
    exec(compile(readme_snippet("cache-srkd-dataset"), f"{README.name} cache-srkd-dataset", "exec"), names)
    logits, feature = CacheReader(folder / "cache").read_all("synthetic_0000", 0)
    np.testing.assert_array_equal(names["logits"], logits)
    np.testing.assert_array_equal(names["feature"], feature)
