"""Label new scans with a trained model: `srkd predict` (library part; no typer, no printing).

Each input (a scene folder of .npy files or a .ply, see `srkd.predict.inputs`) is scored on every
point with the protocol of `srkd evaluate` (`srkd.inference`): each test-time view (13 with TTA,
1 without) is voxelised in test mode into fragments that cover every point; each fragment runs
through the model -- here through the plain-tensor `srkd.models.deploy.PlainSegmenter` -- and
softmax probabilities are summed per input point; the argmax is the label. The model's input
colour scaling comes from its checkpoint (`CheckpointMeta.color_norm`), the voxel size from its
train_params (grid_size). Written per input, atomically:
    <out>/<name>.labels.npy  int64 (N,) class ids, input order
    <out>/<name>.ply         the input points (and faces, for a mesh) coloured by class with the
                             dataset's palette, plus an int `label` vertex property
Progress goes through a `progress(done, total, message)` callback counting views.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from srkd.data.dataset import make_fragments
from srkd.data.scannet.ply import write_ply
from srkd.data.transforms import Compose, replay
from srkd.data.transforms.color import NormalizeColor
from srkd.errors import CheckpointError, ConfigError, DataError
from srkd.inference import inference_autocast, precise_views
from srkd.io import atomic_write_stream
from srkd.models.deploy import PlainSegmenter, load_plain_segmenter
from srkd.predict.onnx import OnnxSegmenter, check_runtime_choice
from srkd.predict.inputs import ScanInput, check_input, input_name, read_input
from srkd.settings import DEFAULT_DEVICE
from srkd.types import FEATURE_WIDTHS, PointCloud

Progress = Callable[[int, int, str], None]
"""progress(done, total, message): `done` of `total` views scored (views x inputs)."""


@dataclass(frozen=True)
class Predictor:
    """A loaded model ready to label scans."""

    segmenter: PlainSegmenter | OnnxSegmenter
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    color_norm: str
    palette: np.ndarray  # uint8 (K, 3)
    dataset: str  # the registered dataset whose classes the model predicts, or "unknown"
    device: torch.device
    source: str
    precision: str = "fp32"  # "bf16": inference under srkd.inference.inference_autocast


@dataclass(frozen=True)
class PredictResult:
    """What one input got: histogram int64 (K,) counts points per predicted class."""

    name: str
    path: Path
    kind: str
    points: int
    normals: str
    seconds: float
    labels_path: Path
    ply_path: Path
    histogram: np.ndarray


@dataclass
class PredictRun:
    """Every input's outcome: results for the labelled ones, (path, message) for failures."""

    predictor: Predictor
    views: int
    results: list[PredictResult] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)


def class_palette(class_names: Sequence[str]) -> tuple[str, np.ndarray]:
    """(dataset name, uint8 (K, 3) colours) of the registered dataset with exactly these classes;
    ("unknown", generated distinct colours) when none matches."""
    from srkd.data.registry import dataset_for_classes
    from srkd.data.scannet.classes import spread_palette

    spec = dataset_for_classes(class_names)
    if spec is not None:
        return spec.name, np.asarray(spec.class_colors, dtype=np.uint8)
    return "unknown", np.asarray(spread_palette(len(class_names)), dtype=np.uint8)


def load_predictor(checkpoint: Path, *, grid_size: float | None = None, device: str = DEFAULT_DEVICE,
                   precision: str = "fp32") -> Predictor:
    """Load an srkd checkpoint for prediction (CheckpointError / ConfigError when it cannot be),
    to run in `precision` ("fp32" or "bf16")."""
    from srkd.device import resolve_device

    dev = resolve_device(device)
    segmenter, meta = load_plain_segmenter(checkpoint, grid_size=grid_size, map_location="cpu")
    names = tuple(meta.feature_names)
    width = sum(FEATURE_WIDTHS.get(f, 0) for f in names)
    if not names or any(f not in FEATURE_WIDTHS for f in names) or (meta.in_channels > 0 and width != meta.in_channels):
        raise CheckpointError(
            f"checkpoint {checkpoint} has input features {list(names)} for {meta.in_channels} "
            f"channels; srkd builds inputs from {sorted(FEATURE_WIDTHS)}"
        )
    if "strength" in names:
        raise ConfigError(
            f"checkpoint {checkpoint} is a lidar model (input features {list(names)}); srkd predict "
            "reads indoor scans (PLY, scene folders) with colour and normals. Score lidar scans with "
            "`srkd evaluate --dataset nuscenes|semantickitti`"
        )
    dataset, palette = class_palette(meta.class_names)
    return Predictor(segmenter.to(dev).eval(), tuple(meta.class_names), names, meta.color_norm,
                     palette, dataset, dev, str(checkpoint), precision)  # fmt: skip


def load_exported_predictor(folder: Path) -> Predictor:
    """An `srkd export` folder as a Predictor run by ONNX Runtime (ConfigError when it is not one)."""
    segmenter = OnnxSegmenter(Path(folder), threads=torch.get_num_threads())
    spec = segmenter.student.spec
    dataset, palette = class_palette(spec.classes)
    return Predictor(segmenter, tuple(spec.classes), tuple(spec.features), spec.color_norm, palette, dataset,
                     torch.device("cpu"), str(folder))  # fmt: skip


@torch.no_grad()
def predict_cloud(p: Predictor, cloud: PointCloud, tta: bool = True,
                  on_view: Callable[[], None] | None = None) -> np.ndarray:
    """float64 (N, K) summed softmax probabilities per point of `cloud` over views x fragments.

    Fragments are those of `srkd.inference.infer_view` (test-mode grid sample of each view); the
    PlainSegmenter gets each fragment's coordinates before the x/y centre shift, so it voxelises
    them exactly as evaluate's batches are, and the sums equal `infer_scene`'s prob_sum.
    """
    post = Compose([NormalizeColor(p.color_norm)])  # colour scaling as evaluate, no centre shift
    grid = p.segmenter.grid_size
    total = None
    for record in precise_views(cloud, tta):
        for sample in make_fragments(replay(cloud, record), grid, p.feature_names, post):
            coord = torch.from_numpy(sample.coord).to(p.device)
            feat = torch.from_numpy(sample.feat).to(p.device)
            offset = torch.tensor([len(coord)], dtype=torch.int64, device=p.device)
            with inference_autocast(p.device, p.precision):
                logits = p.segmenter(coord, feat, offset)
            prob = torch.softmax(logits.float(), dim=1).double().cpu().numpy()
            if total is None:
                total = np.zeros((cloud.num_points, prob.shape[1]), dtype=np.float64)
            total[sample.origin_index] += prob  # a fragment holds each point at most once
        if on_view is not None:
            on_view()
    assert total is not None  # a cloud has at least one point, hence one fragment
    return total


def write_outputs(p: Predictor, scan: ScanInput, labels: np.ndarray, out: Path) -> tuple[Path, Path]:
    """Write <out>/<name>.labels.npy and <out>/<name>.ply (each atomically); return both paths."""
    out.mkdir(parents=True, exist_ok=True)
    labels_path, ply_path = out / f"{scan.name}.labels.npy", out / f"{scan.name}.ply"
    atomic_write_stream(labels_path, lambda f: np.save(f, labels.astype(np.int64)))
    comments = [f"srkd predict: {scan.path.name} labelled by {Path(p.source).name}",
                f"classes ({p.dataset}): " + ",".join(n.replace(" ", "_") for n in p.class_names)]  # fmt: skip
    write_ply(ply_path, scan.cloud.coord, p.palette[labels], scan.faces,
              scalars={"label": labels.astype(np.int32)}, comments=comments)  # fmt: skip
    return labels_path, ply_path


def _check_inputs(inputs: Sequence[Path], out: Path) -> None:
    if not inputs:
        raise ConfigError("nothing to predict: give at least one input (a .ply or a scene folder)")
    seen: dict[str, Path] = {}
    for path in inputs:
        check_input(path)
        name = input_name(path)
        if name in seen:
            raise ConfigError(
                f"inputs {seen[name]} and {path} would both write {name}.labels.npy / {name}.ply; "
                "predict them into different --out folders"
            )
        seen[name] = Path(path)
        if (Path(out) / f"{name}.ply").resolve() == Path(path).resolve():
            raise ConfigError(f"the output {name}.ply would overwrite the input {path}; choose another --out")


def run_predict(
    checkpoint: Path | None,
    inputs: Sequence[Path],
    out: Path,
    *,
    runtime: str = "torch",
    model: Path | None = None,
    tta: bool = True,
    device: str = DEFAULT_DEVICE,
    precision: str = "fp32",
    grid_size: float | None = None,
    neighbours: int | None = None,
    keep_going: bool = False,
    progress: Progress | None = None,
) -> PredictRun:
    """Label every input and write its outputs. Every input path is checked (exists, is a folder
    with coord.npy or a PLY, no two write the same names) and the model loaded before any input
    is read (and no output may replace an input). A bad file then raises its DataError, unless
    `keep_going`, which records it in `failures` and goes on with the next input. runtime "onnx"
    runs the `srkd export` folder `model` with ONNX Runtime instead of a checkpoint (at the
    export's grid size, in fp32). `precision` "bf16" runs the checkpoint under a bfloat16
    autocast."""
    check_runtime_choice(runtime, checkpoint, model, precision)
    _check_inputs(inputs, out)
    if runtime == "onnx":
        if grid_size is not None:
            raise ConfigError("--grid-size cannot change an export's voxel size (it is in its student.json)")
        predictor = load_exported_predictor(model)
    else:
        predictor = load_predictor(checkpoint, grid_size=grid_size, device=device, precision=precision)
    one_point = PointCloud(coord=np.zeros((1, 3), np.float32), origin_index=np.zeros(1, np.int64))
    views = len(precise_views(one_point, tta))  # 13 ScanNet TTA views, or 1
    run = PredictRun(predictor, views)
    done = 0
    for path in inputs:
        began = time.perf_counter()
        try:
            kwargs = {} if neighbours is None else {"neighbours": neighbours}
            scan = read_input(Path(path), predictor.feature_names, **kwargs)
        except DataError as exc:
            if not keep_going:
                raise
            run.failures.append((Path(path), str(exc)))
            done += views
            continue

        def step(name: str = scan.name) -> None:
            nonlocal done
            done += 1
            if progress:
                progress(done, views * len(inputs), name)

        if progress:
            progress(done, views * len(inputs), scan.name)
        labels = predict_cloud(predictor, scan.cloud, tta, step).argmax(axis=1)
        paths = write_outputs(predictor, scan, labels, Path(out))
        hist = np.bincount(labels, minlength=len(predictor.class_names)).astype(np.int64)
        run.results.append(PredictResult(scan.name, scan.path, scan.kind, scan.cloud.num_points,
                                         scan.normals, time.perf_counter() - began, *paths, hist))  # fmt: skip
    return run
