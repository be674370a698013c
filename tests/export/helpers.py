"""Shared helpers of the export tests: scenes, models with non-trivial statistics, agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from srkd.data.synthetic.rooms import generate_scene
from srkd.models import create_model


def room(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic room: coord float32 (n, 3) metres, feat float32 (n, 6) = colour / 255 + normal."""
    sc = generate_scene(seed, 0, n)
    feat = np.concatenate([sc["color"] / 255.0, sc["normal"]], axis=1).astype(np.float32)
    return sc["coord"].astype(np.float32), feat


def real_crop(root: Path, scene: str, side: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """The points of a real scan within a side x side metre square around its centre (x, y)."""
    folder = next(root.glob(f"*/{scene}"))
    coord = np.load(folder / "coord.npy").astype(np.float32)
    centre = np.median(coord[:, :2], axis=0)
    keep = (np.abs(coord[:, :2] - centre) < side / 2).all(axis=1)
    feat = np.concatenate([np.load(folder / "color.npy") / 255.0, np.load(folder / "normal.npy")], axis=1)
    return coord[keep], feat[keep].astype(np.float32)


def model_with_stats(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """`name` in eval mode with random weights and random BatchNorm statistics (so a wrong
    normalisation or a swapped layer shows in the logits)."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=20, in_channels=6, **overrides).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1.0, 0.2)
            m.bias.data.normal_(0.0, 0.2)
    return model


def assert_agree(got: np.ndarray, want: np.ndarray, rel: float = 1e-4, labels: float = 0.999) -> None:
    """max |got - want| <= rel * max |want| and argmax agreement >= `labels`."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    diff = float(np.abs(got - want).max())
    assert diff <= rel * float(np.abs(want).max()), f"max |diff| {diff:.3g} vs max |logit| {np.abs(want).max():.3g}"
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    assert agree >= labels, f"argmax agreement {agree:.5f}"


def save_student(path: Path, name: str, **overrides) -> Path:
    """An srkd checkpoint of `name` (random weights and BatchNorm statistics, ScanNet-20 classes,
    colour + normal input, 0.02 m grid)."""
    from srkd.data.scannet import get_dataset_spec
    from srkd.models import save_checkpoint

    model = model_with_stats(name, **overrides)
    return save_checkpoint(path, model, class_names=get_dataset_spec("scannet").class_names,
                           feature_names=("color", "normal"), color_norm="pointcept",
                           train_params={"grid_size": 0.02})  # fmt: skip


def write_room_ply(path: Path, seed: int, n: int) -> Path:
    """A synthetic room as a PLY point cloud with colours and normals."""
    from srkd.data.scannet.ply import write_ply

    sc = generate_scene(seed, 0, n)
    write_ply(path, sc["coord"].astype(np.float32), sc["color"].astype(np.uint8), None,
              normals=sc["normal"].astype(np.float32))
    return path
