"""The settings of `srkd predict`: `PredictConfig`, one field per option (field = option name),
the only home of the command's defaults. Standard library and numpy only (the CLI imports it before torch).
`srkd predict` reads no stages.yaml section: its values are the options' or these defaults."""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srkd.data.normals import DEFAULT_NEIGHBOURS
from srkd.data.registry import per_dataset
from srkd.settings import DEFAULT_DEVICE, DEVICE, GRID_SIZE, PRECISION, PRECISIONS, Flag, setting


@dataclass(frozen=True)
class PredictConfig:
    """`srkd predict`'s settings (the scans to label are its arguments, not settings)."""

    checkpoint: Path | None = setting(None, Flag(  # required with runtime "torch"
        "srkd checkpoint (a student from `srkd distill`, or srkd/assets/demo_teacher.pt); not with "
        "--runtime onnx.", short="-c"))
    runtime: str = setting("torch", Flag(
        "torch: the checkpoint in srkd (spconv); onnx: an `srkd export` folder (--model) run by ONNX "
        "Runtime.", choices=("torch", "onnx")))
    model: Path | None = setting(None, (  # required with runtime "onnx"
        "Folder written by `srkd export` (with --runtime onnx)."))
    out: Path = setting(Path("predictions"), (
        "Output folder: <name>.labels.npy (int64 class id per input point, input order) and "
        "<name>.ply (the points coloured by class, with a 'label' property)."))
    tta: bool = setting(True, (
        "13 test-time views (4 rotations x 3 scales + flip, as `srkd evaluate`) or one view (13x "
        "faster)."))
    device: str = setting(DEFAULT_DEVICE, DEVICE)
    precision: str = setting(PRECISIONS[0], PRECISION)
    grid_size: float | None = setting(None, GRID_SIZE,
                                      note="the checkpoint's recorded grid size, else " + per_dataset("grid_size"))
    neighbours: int | None = setting(None, Flag(
        "k of the PCA normals of point clouds without normals.", name="--normal-neighbours", min=3),
        note=f"{DEFAULT_NEIGHBOURS} (srkd.data.normals.DEFAULT_NEIGHBOURS)")
    keep_going: bool = setting(False, Flag(
        "A bad input file is reported and skipped, the others are labelled (exit code 1 at the end); "
        "otherwise the first bad file stops the run. Missing inputs always stop it before the model "
        "runs.", negatable=False))
