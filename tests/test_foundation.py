"""Layout writer, registry, collate and the CLI shell."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from srkd.data.collate import VoxelSample, collate
from srkd.data.scannet.layout import check_scene_id, write_scene
from srkd.errors import ConfigError, DataError
from srkd.registry import Registry

from .conftest import REPO


def test_write_scene_is_atomic_and_complete(tmp_path):
    arrays = {"coord": np.zeros((4, 3), np.float32), "segment20": np.arange(4)}
    final = write_scene(tmp_path, "train", "scene_a", arrays)
    assert sorted(p.name for p in final.iterdir()) == ["coord.npy", "segment20.npy"]
    assert [p.name for p in (tmp_path / "train").iterdir()] == ["scene_a"]  # no temp leftovers
    with pytest.raises(DataError, match="lengths"):
        write_scene(tmp_path, "train", "b", {"coord": np.zeros((4, 3)), "segment20": np.arange(3)})


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", ".hidden"])
def test_scene_id_must_be_a_plain_name(bad):
    with pytest.raises(DataError):
        check_scene_id(bad)


def test_registry_lists_known_names():
    reg: Registry[int] = Registry("widget")

    @reg.register
    def one() -> int:
        return 1

    assert reg.get("one")() == 1 and "one" in reg
    with pytest.raises(ConfigError, match="known: one"):
        reg.get("two")
    with pytest.raises(ConfigError, match="twice"):
        reg.register(one)


def test_collate_offsets_and_batch_index():
    def sample(n: int, sid: str) -> VoxelSample:
        return VoxelSample(
            coord=np.zeros((n, 3), np.float32), grid_coord=np.zeros((n, 3), np.int32),
            feat=np.zeros((n, 6), np.float32), origin_index=np.arange(n),
            segment=np.zeros(n, np.int64), scene_id=sid,
        )

    batch = collate([sample(3, "a"), sample(5, "b")])
    assert batch.offset.tolist() == [3, 8] and batch.batch_size == 2
    assert batch.batch_index.tolist() == [0] * 3 + [1] * 5
    assert batch.origin_index.tolist() == [0, 1, 2, 0, 1, 2, 3, 4]
    assert batch.to("cpu").feat.dtype == torch.float32


def test_cli_help_lists_commands_without_heavy_imports():
    # `srkd --help` must stay fast: no command module may import torch, spconv, zarr or dask.
    code = (
        "import sys; from typer.testing import CliRunner; import cli; "
        "res = CliRunner().invoke(cli.app, ['--help']); assert res.exit_code == 0, res.output; "
        "heavy = [m for m in ('torch', 'spconv', 'zarr', 'dask', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy; print(res.output)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import cli

    for name, _ in cli.COMMANDS:
        assert name in out.stdout


def test_cli_version():
    from typer.testing import CliRunner

    import cli
    import srkd

    res = CliRunner().invoke(cli.app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"srkd {srkd.__version__}"
