"""Fixtures of the cache conformance suite: the same tests run on a directory and an in-memory store."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.core.buffer import cpu

from srkd.cache import CacheSpec, CodecSpec, ViewTargets

K, D = 20, 64


def teacher_like(n: int, rng: np.random.Generator, k: int = K, d: int = D) -> tuple[np.ndarray, np.ndarray]:
    """Outputs shaped like a trained teacher's: class-clustered features, logits = linear head.

    Returns logits float32 (n, k) and feature float32 (n, d).
    """
    labels = rng.integers(0, k, n)
    prototypes = rng.normal(size=(k, 12))
    latent = prototypes[labels] + 0.35 * rng.normal(size=(n, 12))
    hidden = latent @ rng.normal(size=(12, d))
    feature = np.maximum(hidden, 0.1 * hidden)  # leaky activation: not Gaussian noise
    head = rng.normal(size=(d, k)) / np.sqrt(d)
    logits = 3.0 * (feature @ head) + 4.0 * np.eye(k)[labels]
    return logits.astype(np.float32), feature.astype(np.float32)


def make_spec(**changes: Any) -> CacheSpec:
    base = CacheSpec(
        dataset="synthetic",
        data_root="/data/synthetic",
        split="train",
        class_names=tuple(f"class{i}" for i in range(K)),
        teacher_name="test_teacher",
        teacher_args={"channels": [8, 16], "depth": 2},
        teacher_sha256="0" * 64,
        feature_dim=D,
        codec=CodecSpec.create("int8"),
        views=2,
        ensemble=True,
        view_settings={"augment": ["rotate_z", "scale"], "seeds": [1, 2]},
        grid_size=0.02,
    )
    return dataclasses.replace(base, **changes)


def make_views(n: int, spec: CacheSpec, seed: int = 0) -> list[ViewTargets]:
    """Views of one scene: the same teacher outputs, perturbed a little per view (as an
    augmented view perturbs a real teacher's outputs)."""
    rng = np.random.default_rng(seed)
    logits, feature = teacher_like(n, rng, spec.num_classes, spec.feature_dim)
    out = []
    for v in range(spec.views):
        view_logits = logits + 0.5 * rng.normal(size=logits.shape).astype(np.float32)
        view_feature = feature * (1 + 0.05 * rng.normal(size=feature.shape)).astype(np.float32)
        out.append(ViewTargets(view_logits, view_feature, {"view": v, "rotate_z": 0.5 * v, "seed": seed}))
    return out


@dataclasses.dataclass
class StoreCase:
    """One backend: `location` is what CacheWriter/CacheReader accept; `corrupt`/`delete` damage
    the stored bytes of the first key containing a substring (like a disk fault would)."""

    kind: str
    location: Any
    schema: int
    keys: Callable[[], list[str]]
    corrupt: Callable[[str, bytes], str]
    delete: Callable[[str], str]


def _local_case(root: Path) -> StoreCase:
    def keys() -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def find(part: str) -> Path:
        return root / next(k for k in keys() if part in k and not k.endswith("zarr.json"))

    def corrupt(part: str, data: bytes) -> str:
        path = find(part)
        path.write_bytes(data)
        return str(path)

    def delete(part: str) -> str:
        path = find(part)
        path.unlink()
        return str(path)

    return StoreCase("local", root, 3, keys, corrupt, delete)


def _memory_case() -> StoreCase:
    backing: dict = {}
    store = zarr.storage.MemoryStore(store_dict=backing)

    def find(part: str) -> str:
        return next(k for k in sorted(backing) if part in k and not k.endswith("zarr.json"))

    def corrupt(part: str, data: bytes) -> str:
        key = find(part)
        backing[key] = cpu.Buffer.from_bytes(data)
        return key

    def delete(part: str) -> str:
        key = find(part)
        del backing[key]
        return key

    return StoreCase("memory", store, 3, lambda: sorted(backing), corrupt, delete)


@pytest.fixture(params=["local", "memory", "local-schema2"])
def store_case(request: pytest.FixtureRequest, tmp_path: Path) -> StoreCase:
    """The conformance backends: a LocalStore directory and a MemoryStore holding caches of the
    current schema (3), and a directory holding schema 2 (still read, resumed and repaired)."""
    if request.param == "memory":
        return _memory_case()
    case = _local_case(tmp_path / "cache")
    return dataclasses.replace(case, schema=2) if request.param == "local-schema2" else case
