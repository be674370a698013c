"""`srkd export`: write a checkpoint's network as ONNX (or a torch.export program) plus its spec.

The exported program is `TensorNetwork(model, masks=False)`: inputs feat float32 (n, C) and the
index arrays of `srkd.runtime.indices` of ONE sample (every point, voxel, patch and pool count
dynamic; a single sample's patches are full, so no key masks), output logits float32 (n, K).
It is traced with torch.export on a two-room example (two samples, so every
level has at least two patches) and then checked: the saved program is reloaded and run on a
room of another size, and its logits must agree with srkd's own (spconv) inference. The folder
appears complete or not at all: it is written beside the target and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import srkd
from srkd.errors import CheckpointError, ConfigError
from srkd.export.config import DEFAULT_OPSET, MIN_OPSET
from srkd.export.network import TensorNetwork, network_inputs
from srkd.runtime.indices import IndexPlan
from srkd.runtime.spec import FEATURE_WIDTHS, NETWORK_FILES, SPEC_NAME, StudentSpec

FORMATS = tuple(NETWORK_FILES)
CHECK_TOLERANCE = 1e-4  # max |diff| relative to max |logit|, as the tests require
CHECK_AGREEMENT = 0.999  # argmax agreement


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and how its check came out."""

    folder: Path
    network: Path
    spec: StudentSpec
    max_rel_diff: float
    agreement: float
    points_checked: int


def example_cloud(grid_size: float, seed: int, points: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic room scaled to `grid_size` voxels: coord float32 (points, 3), feat float32
    (points, channels) uniform in [-1, 1] (only shapes and neighbourhoods matter for tracing)."""
    from srkd.data.synthetic.rooms import generate_scene

    coord = generate_scene(seed, 0, points)["coord"].astype(np.float64) / 0.02 * grid_size
    feat = np.random.default_rng(seed).uniform(-1, 1, size=(points, channels))
    return coord.astype(np.float32), feat.astype(np.float32)


def _dynamic_shapes(plan: IndexPlan) -> tuple:
    dims: dict[str, torch.export.Dim] = {}
    shapes = []
    for shape in plan.dims().values():
        spec = {}
        for axis, name in enumerate(shape):
            if not name.isdigit() and name != "c":
                spec[axis] = dims.setdefault(name, torch.export.Dim(name.replace("-", "_"), min=1))
        shapes.append(spec or None)
    return (shapes[0], tuple(shapes[1:]))  # forward(feat, *indices)


def _trace(net: TensorNetwork, example: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    shapes = _dynamic_shapes(net.plan)
    with torch.no_grad():
        return torch.export.export(net, example, dynamic_shapes=shapes, strict=False)


def _check_refusals(fmt: str, opset: int, features: tuple[str, ...]) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "onnx" and opset < MIN_OPSET:
        raise ConfigError(f"ONNX opset {opset} is too old: srkd exports opset {MIN_OPSET} or newer")
    unknown = [f for f in features if f not in FEATURE_WIDTHS]
    if unknown:
        raise CheckpointError(f"the checkpoint's input features {unknown} are not ones a runtime can feed "
                              f"({', '.join(FEATURE_WIDTHS)})")  # fmt: skip


def _save(ep: torch.export.ExportedProgram, net: TensorNetwork, fmt: str, opset: int, path: Path) -> None:
    if fmt == "pt2":
        torch.export.save(ep, str(path))
        return
    names = list(net.plan.dims())
    import logging
    import warnings

    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(ep, (), input_names=names, output_names=["logits"], opset_version=opset,
                                    dynamo=True, optimize=False, verbose=False)  # fmt: skip
    quiet.setLevel(level)
    program.save(str(path))


def _run_saved(fmt: str, path: Path, inputs: tuple[torch.Tensor, ...], names: list[str]) -> np.ndarray:
    if fmt == "pt2":
        with torch.no_grad():
            return torch.export.load(str(path)).module()(*inputs).numpy()
    from srkd.runtime.student import session_for

    return session_for(path, threads=1).run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]


def _check(fmt: str, path: Path, model: torch.nn.Module, plan: IndexPlan, grid: float, channels: int) -> tuple[float, float, int]:
    """(max |diff| / max |logit|, argmax agreement, points) of the saved program against srkd's
    own inference on a room the trace did not see."""
    from srkd.models.deploy import PlainSegmenter

    coord, feat = example_cloud(grid, 7, 5000, channels)
    offset = np.array([len(coord)])
    with torch.no_grad():
        want = PlainSegmenter(model, grid)(torch.from_numpy(coord), torch.from_numpy(feat), torch.from_numpy(offset)).numpy()
    got = _run_saved(fmt, path, network_inputs(plan, coord, feat, offset, grid), list(plan.dims()))
    rel = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))
    return rel, float((got.argmax(1) == want.argmax(1)).mean()), len(coord)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(p.name != SPEC_NAME and p.name not in NETWORK_FILES.values()
                                                  for p in out.iterdir())):  # fmt: skip
        raise ConfigError(f"{out} exists and is not an srkd export folder; choose a new --out (an earlier "
                          "export there is replaced)")  # fmt: skip


def export_checkpoint(checkpoint: Path, out: Path, *, fmt: str = "onnx", opset: int = DEFAULT_OPSET,
                      grid_size: float | None = None) -> ExportResult:
    """Export the srkd checkpoint at `checkpoint` into the folder `out` (network + student.json).

    Raises CheckpointError / ConfigError for what cannot be exported (an unknown format, a model
    other than PTv3 / SpUNet, input features no runtime feeds), and RuntimeError when the saved
    program does not reproduce srkd's logits (nothing is left at `out` then)."""
    from srkd.data.transforms.color import COLOR_NORMS
    from srkd.models.checkpoint import file_sha256
    from srkd.models.deploy import load_plain_segmenter
    from srkd.predict.run import class_palette

    out = Path(out)
    _check_out(out)
    seg, meta = load_plain_segmenter(checkpoint, grid_size=grid_size)
    model, grid = seg.model.eval(), seg.grid_size
    _check_refusals(fmt, opset, tuple(meta.feature_names))
    net = TensorNetwork(model, masks=False).eval()
    channels = int(model.in_channels)
    rooms = [example_cloud(grid, s, n, channels) for s, n in ((1, 6000), (2, 3000))]
    coord = np.concatenate([rooms[0][0], rooms[1][0] + 1000 * grid])
    feat = np.concatenate([rooms[0][1], rooms[1][1]])
    example = network_inputs(net.plan, coord, feat, np.array([6000, 9000]), grid)
    ep = _trace(net, example)
    scale, shift = COLOR_NORMS[meta.color_norm]
    spec = StudentSpec(
        network=NETWORK_FILES[fmt], network_format=fmt, grid_size=grid, features=tuple(meta.feature_names),
        color_norm=meta.color_norm, color_scale=scale, color_shift=shift, classes=tuple(meta.class_names),
        dataset=class_palette(meta.class_names)[0], plan=net.plan, inputs=net.plan.dims(),
        model_name=meta.model_name, model_args=dict(meta.model_args), srkd_version=srkd.__version__,
        checkpoint_name=Path(checkpoint).name, checkpoint_sha256=file_sha256(checkpoint),
        opset=opset if fmt == "onnx" else None,
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        _save(ep, net, fmt, opset, tmp / spec.network)
        rel, agree, points = _check(fmt, tmp / spec.network, model, net.plan, grid, channels)
        if not (rel <= CHECK_TOLERANCE and agree >= CHECK_AGREEMENT):
            raise RuntimeError(f"the exported network does not reproduce srkd's logits (max |diff| {rel:.2g} "
                               f"of the largest logit, argmax agreement {agree:.4f}); please report this")  # fmt: skip
        spec = StudentSpec(**{**spec.__dict__, "check": {"max_rel_diff": rel, "argmax_agreement": agree,
                                                           "points": points}})  # fmt: skip
        spec.write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp made it private
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return ExportResult(out, out / spec.network, spec, rel, agree, points)
