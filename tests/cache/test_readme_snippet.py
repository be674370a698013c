"""The README's "Reading a cache without srkd" block, run as printed, decodes what srkd decodes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from srkd.cache import CacheReader, CacheWriter, CodecSpec
from tests.cache.conftest import make_spec, make_views

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(heading: str) -> str:
    """The first ```python block after `heading` in the README."""
    text = README.read_text()
    start = text.index(heading)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_reading_a_cache_without_srkd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec(codec=CodecSpec.create("int8"), views=1, ensemble=False)
    writer = CacheWriter.create(tmp_path / "cache", spec)
    views = make_views(500, spec)
    writer.write_scene("synthetic_0000", views[:1])
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(readme_block("### Reading a cache without srkd"), names)  # noqa: S102 (the README's own code)
    logits, feature = CacheReader(tmp_path / "cache").read_all("synthetic_0000", 0)
    assert names["logits"].dtype == np.float32 and names["feature"].dtype == np.float32
    np.testing.assert_allclose(names["logits"], logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(names["feature"], feature, rtol=1e-5, atol=1e-6)
