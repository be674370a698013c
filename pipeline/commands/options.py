"""Every option of srkd's configurable commands, declared once as an `Annotated` alias.

A command's signature lists the aliases it takes (`epochs: O.Epochs = None`). Every default in a
signature is None, meaning "not given": the value then comes from stages.yaml or the command's
settings dataclass (`pipeline.params.resolve`), which is the only home of the defaults.
`SrkdCommand` adds each option's effective default and its source to `--help`.

Choices are enums built from the library's own name lists (numpy-only modules), so typer refuses
a bad value at once, before any command body imports torch or spconv.
"""

from __future__ import annotations

import enum
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from srkd.data.registry import DATASETS
from srkd.data.transforms.color import COLOR_NORMS
from srkd.types import CODEC_NAMES, LOSS_METHODS, TARGET_MODES, UNPOOLING_MODES

ColorNorm = enum.StrEnum("ColorNorm", {name: name for name in COLOR_NORMS})
"""Choices of --color-norm (srkd.data.transforms.color.COLOR_NORMS)."""
Unpooling = enum.StrEnum("Unpooling", {name: name for name in UNPOOLING_MODES})
"""Choices of --unpooling (PTv3 decoder semantics, srkd.models.ptv3_blocks.SerializedUnpooling)."""
Method = enum.StrEnum("Method", {name: name for name in LOSS_METHODS})
"""Choices of --method (srkd.types.LOSS_METHODS; weights in srkd.losses.recipes)."""
Targets = enum.StrEnum("Targets", {name: name for name in TARGET_MODES})
"""Choices of --targets (srkd.types.TARGET_MODES)."""
DatasetName = enum.StrEnum("DatasetName", {name: name for name in DATASETS.names()})
"""Choices of --dataset (the registered srkd.data.scannet.DATASETS)."""
Codec = enum.StrEnum("Codec", {name: name for name in CODEC_NAMES})
"""Choices of --codec (srkd.types.CODEC_NAMES; their parameters: srkd.cache.codecs)."""
Kind = enum.StrEnum("Kind", {"indoor": "indoor", "outdoor": "outdoor"})
"""Choices of generate-synthetic --kind."""
LidarFormat = enum.StrEnum("LidarFormat", {"nuscenes": "nuscenes", "semantickitti": "semantickitti"})
"""Choices of generate-synthetic --format."""

_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


def _check_device(value: Optional[str]) -> Optional[str]:
    if value is not None and not _DEVICE.match(value):
        raise typer.BadParameter(f"{value!r} is not a device: use auto, cpu, cuda or cuda:N")
    return value


def _opt(*names: str, **kwargs: Any) -> Any:
    return typer.Option(*names, **kwargs)


P = Optional[Path]
# -- shared by several commands ------------------------------------------------------------------
Device = Annotated[Optional[str], _opt("--device", callback=_check_device, help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N.")]
Dataset = Annotated[Optional[DatasetName], _opt("--dataset", help="scannet, scannet200, nuscenes or semantickitti; picks the reader, classes, input features, grid size and view chain (lidar: coord + strength input, grid 0.05 m, weight decay 0.005, 10-view TTA).")]
GridSize = Annotated[Optional[float], _opt("--grid-size", min=1e-6, help="Voxel size in metres.")]
SequenceSamples = Annotated[Optional[int], _opt("--sequence-samples", min=1, help="Most scenes packed into one sequence of the cache (one build task; whole recordings stay together where they fit).")]
MaxScenes = Annotated[Optional[int], _opt("--max-scenes", min=1, help="Only the first N scenes of the split (sorted).")]
TeacherModel = Annotated[Optional[str], _opt("--teacher-model", help="Registered preset a Pointcept teacher checkpoint is loaded into (e.g. ptv3_base); an srkd checkpoint records its own.")]
# -- training: distill and train-teacher ---------------------------------------------------------
TrainOut = Annotated[P, _opt("--out", help="Run folder (model.pt, log.jsonl, curves.png, train_state.pt).")]
TrainDataRoot = Annotated[P, _opt("--data-root", help="Dataset root in the Pointcept layout.")]
Epochs = Annotated[Optional[int], _opt("--epochs", help="Passes over the training split.")]
BatchSize = Annotated[Optional[int], _opt("--batch-size", help="Samples per step (per process under torchrun).")]
Lr = Annotated[Optional[float], _opt("--lr", help="Peak learning rate (blocks get --block-lr-scale x lr).")]
WeightDecay = Annotated[Optional[float], _opt("--weight-decay", help="AdamW weight decay.")]
GradClip = Annotated[Optional[float], _opt("--grad-clip", help="Clip the gradient norm.")]
BlockLrScale = Annotated[Optional[float], _opt("--block-lr-scale", help="Learning-rate factor of transformer/residual blocks (release: 0.1).")]
TrainWorkers = Annotated[Optional[int], _opt("--workers", help="DataLoader worker processes.")]
TrainSeed = Annotated[Optional[int], _opt("--seed", help="Seed of model init, data order and augmentation.")]
EvalEvery = Annotated[Optional[int], _opt("--eval-every", help="Validate every E epochs (0 = never); the best model is kept.")]
CheckpointEvery = Annotated[Optional[int], _opt("--checkpoint-every", help="Write the resumable train state every K steps.")]
MaxPoints = Annotated[Optional[int], _opt("--max-points", help="Sphere-crop size of a training sample.")]
Mix3d = Annotated[Optional[float], _opt("--mix3d", help="Mix3D probability per batch.")]
Augment = Annotated[Optional[bool], _opt("--augment/--no-augment", help="Use the ScanNet training augmentations.")]
Amp = Annotated[Optional[bool], _opt("--amp/--no-amp", help="Mixed precision on CUDA.")]
ValSplit = Annotated[Optional[str], _opt("--val-split", help="Split scored during training ('' = none).")]
ValMaxScenes = Annotated[Optional[int], _opt("--val-max-scenes", help="Score only the first N val scenes during training.")]
Repeats = Annotated[Optional[int], _opt("--repeats", help="Each scene appears this many times per epoch.")]
ModelColorNorm = Annotated[Optional[ColorNorm], _opt("--color-norm", help="Input colour normalisation of the trained model, recorded in its checkpoint: pointcept = color/255 (Pointcept >= 1.6), legacy = color/127.5-1.")]
Tensorboard = Annotated[Optional[bool], _opt("--tensorboard/--no-tensorboard", help="Also write TensorBoard event files to OUT/tensorboard (needs the optional tensorboard package: srkd's tensorboard extra, or pip install tensorboard).")]
Resume = Annotated[Optional[bool], _opt("--resume", help="Continue from OUT/train_state.pt, written by a run with the same settings; a finished run given more --epochs is extended by a new one-cycle segment (warm restart from where its lr ended).")]
# -- distill -------------------------------------------------------------------------------------
TRAINING_OPTIONS: dict[str, Any] = {
    "dataset": Dataset, "data_root": TrainDataRoot, "epochs": Epochs, "batch_size": BatchSize,
    "lr": Lr, "weight_decay": WeightDecay, "grad_clip": GradClip, "block_lr_scale": BlockLrScale,
    "grid_size": GridSize, "workers": TrainWorkers, "seed": TrainSeed, "eval_every": EvalEvery,
    "checkpoint_every": CheckpointEvery, "max_points": MaxPoints, "mix3d": Mix3d,
    "augment": Augment, "amp": Amp, "device": Device, "val_split": ValSplit,
    "val_max_scenes": ValMaxScenes, "repeats": Repeats, "color_norm": ModelColorNorm,
    "tensorboard": Tensorboard, "resume": Resume,
}
"""The options `srkd distill` and `srkd train-teacher` share (TrainingOptions' fields), in the
order `--help` lists them after each command's own."""


def with_training_options(command: Callable[..., None]) -> Callable[..., None]:
    """Declare TRAINING_OPTIONS once for a command written as `def command(own..., **options)`:
    its signature (what typer reads) becomes its own parameters followed by these, all
    defaulting to None; typer then passes them as keyword arguments into `options`."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=alias)
              for name, alias in TRAINING_OPTIONS.items()]
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared, return_annotation=None)
    command.__annotations__ = {p.name: p.annotation for p in own + shared}
    return command


DistillCache = Annotated[P, _opt("--cache", help="Teacher cache from `srkd cache-teacher`.")]
Student = Annotated[Optional[str], _opt("--student", help="Student model preset (see docs/models.md).")]
MethodOption = Annotated[Optional[Method], _opt("--method", help="Loss recipe: srkd (calibrated relation weight), srkd-release (the release's weights), kd, mse, cwd, relation or ce (alone).")]
TargetsOption = Annotated[Optional[Targets], _opt("--targets", help="view (replay cached views), canonical (view 0, the student's own augmentation) or ensemble (the mean over views).")]
Weight = Annotated[Optional[list[str]], _opt("--weight", help="Override a loss setting: name=value (ce, lovasz, kl, relation, feat_mse, cwd, temperature, tau, n_relation_points); repeatable. stages.yaml: the mapping distill.weights.")]
LabelledPoints = Annotated[Optional[int], _opt("--labelled-points", min=1, help="Limited annotations (ScanNet Data-Efficient LA): keep N labels per training scene, drawn by --label-seed; the other points train on the teacher's targets only.")]
LabelledScenes = Annotated[Optional[float], _opt("--labelled-scenes", min=0.0, max=1.0, help="Limited scenes (Data-Efficient LR): the fraction of training scenes that keep their labels, drawn by --label-seed.")]
LaFile = Annotated[P, _opt("--la-file", help="The Data-Efficient benchmark's LA file (torch-saved dict scene -> labelled point indices; read without running code) instead of --labelled-points.")]
LrFile = Annotated[P, _opt("--lr-file", help="The Data-Efficient benchmark's LR file (labelled scene names, one per line) instead of --labelled-scenes.")]
LabelSeed = Annotated[Optional[int], _opt("--label-seed", min=0, help="Seed of --labelled-points and --labelled-scenes.")]
OnlineTeacher = Annotated[P, _opt("--online-teacher", help="Run this teacher checkpoint in every step instead of reading a cache.")]
TeacherColorNorm = Annotated[Optional[ColorNorm], _opt("--teacher-color-norm", help="Colour normalisation a Pointcept --online-teacher was trained with (an srkd checkpoint records its own).")]
# -- train-teacher -------------------------------------------------------------------------------
Model = Annotated[Optional[str], _opt("--model", help="Model preset to train (see docs/models.md).")]
TrainSplit = Annotated[Optional[str], _opt("--split", help="Training split.")]
# -- cache-teacher -------------------------------------------------------------------------------
Teacher = Annotated[P, _opt("--teacher", help="Teacher checkpoint: an srkd checkpoint, or a Pointcept .pth with --teacher-model.")]
CacheColorNorm = Annotated[Optional[ColorNorm], _opt("--color-norm", help="Colour normalisation the teacher was trained with: pointcept = color/255 (Pointcept >= 1.6), legacy = color/127.5-1 (older Pointcept). An srkd checkpoint records its own.")]
NoiseSeed = Annotated[Optional[int], _opt("--noise-seed", help="Seed of a CDSegNet teacher's test-time noise draw (its output depends on it; the cache records it).")]
UnpoolingOption = Annotated[Optional[Unpooling], _opt("--unpooling", help="PTv3 decoder semantics of a --teacher-model checkpoint: v3m1 (Pointcept PT-v3m1) or v3m2.")]
CacheDataRoot = Annotated[P, _opt("--data-root", help="Dataset root: <split>/<scene>/ folders for ScanNet, the release's top folder for nuScenes / SemanticKITTI.")]
CacheSplit = Annotated[Optional[str], _opt("--split", help="Split folder to cache.")]
CacheOut = Annotated[P, _opt("--out", help="Cache directory (Zarr v3).")]
Views = Annotated[Optional[int], _opt("--views", min=1, help="Views per scene; view 0 is the scene as stored.")]
ViewSeed = Annotated[Optional[int], _opt("--seed", min=0, help="Seed of the augmented views 1..V-1.")]
CodecOption = Annotated[Optional[Codec], _opt("--codec", help="Target encoding.")]
Ensemble = Annotated[Optional[bool], _opt("--ensemble/--no-ensemble", help="Also store the mean over views.")]
DaskWorkers = Annotated[Optional[int], _opt("--workers", min=0, help="Dask worker processes; 0 = in this process, no dask.")]
Scheduler = Annotated[Optional[str], _opt("--scheduler", help="Address of a running dask scheduler (e.g. tcp://host:8786) instead of a local cluster.")]
Overwrite = Annotated[Optional[bool], _opt("--overwrite", help="Replace a cache built with other settings.")]
# -- evaluate ------------------------------------------------------------------------------------
Checkpoints = Annotated[Optional[list[Path]], _opt("--checkpoint", "-c", help="srkd checkpoint to score; repeat to compare several models in one table.")]
EvalCache = Annotated[P, _opt("--cache", help="Teacher cache directory: score the cached teacher's predictions without running it.")]
EvalDataRoot = Annotated[P, _opt("--data-root", help="Dataset root with <split>/<scene>/ folders.")]
EvalSplit = Annotated[Optional[str], _opt("--split", help="Split folder to score.")]
Tta = Annotated[Optional[bool], _opt("--tta/--no-tta", help="The release's test-time views (ScanNet: 13 = 4 rotations x 3 scales + flip; nuScenes / SemanticKITTI: 10 = 5 scales x flip) or one view.")]
EvalOut = Annotated[P, _opt("--out", help="Output folder for metrics.json, report.md and PNGs.")]
RenderScene = Annotated[Optional[str], _opt("--render-scene", help="Scene drawn top-down and used for latency.")]
LatencyRuns = Annotated[Optional[int], _opt("--latency-runs", min=0, help="Timed runs per model (after 2 warm-up runs); 0 skips latency.")]
# -- predict -------------------------------------------------------------------------------------
INPUTS_HELP = (
    "Scans to label: a .ply (a mesh such as ScanNet's scene*_vh_clean_2.ply, whose vertices are "
    "the points, or a point cloud), or a folder holding coord.npy (N, 3) metres plus, as the model "
    "needs, color.npy (N, 3) 0..255 and normal.npy (N, 3) (a Pointcept scene folder; other files "
    "such as labels are ignored). Colour must be present when the model takes colour; missing "
    "normals are computed (mesh: area-weighted face normals; point cloud: PCA over k nearest "
    "neighbours, oriented towards the scan's centroid)."
)
Inputs = Annotated[list[Path], typer.Argument(help=INPUTS_HELP, show_default=False)]
Checkpoint = Annotated[P, _opt("--checkpoint", "-c", help="srkd checkpoint (a student from `srkd distill`, or srkd/assets/demo_teacher.pt); not with --runtime onnx.")]
Runtime = enum.StrEnum("Runtime", {"torch": "torch", "onnx": "onnx"})
PredictRuntime = Annotated[Optional[Runtime], _opt("--runtime", help="torch: the checkpoint in srkd (spconv); onnx: an `srkd export` folder (--model) run by ONNX Runtime.")]
DeployModel = Annotated[P, _opt("--model", help="Folder written by `srkd export` (with --runtime onnx).")]
PredictOut = Annotated[P, _opt("--out", help="Output folder: <name>.labels.npy (int64 class id per input point, input order) and <name>.ply (the points coloured by class, with a 'label' property).")]
PredictTta = Annotated[Optional[bool], _opt("--tta/--no-tta", help="13 test-time views (4 rotations x 3 scales + flip, as `srkd evaluate`) or one view (13x faster).")]
Neighbours = Annotated[Optional[int], _opt("--normal-neighbours", min=3, help="k of the PCA normals of point clouds without normals.")]
KeepGoing = Annotated[Optional[bool], _opt("--keep-going", help="A bad input file is reported and skipped, the others are labelled (exit code 1 at the end); otherwise the first bad file stops the run. Missing inputs always stop it before the model runs.")]
# -- export --------------------------------------------------------------------------------------
ExportFormat = enum.StrEnum("ExportFormat", {"onnx": "onnx", "pt2": "pt2"})
ExportCheckpoint = Annotated[P, _opt("--checkpoint", "-c", help="srkd checkpoint of a PTv3 or SpUNet model (a student from `srkd distill`); required.")]
ExportOut = Annotated[P, _opt("--out", help="Output folder: network.onnx (or network.pt2) and student.json; an earlier export there is replaced.")]
ExportFormatOpt = Annotated[Optional[ExportFormat], _opt("--format", help="onnx (run by ONNX Runtime, srkd.runtime) or pt2 (a torch.export program).")]
Opset = Annotated[Optional[int], _opt("--opset", min=18, help="ONNX opset version.")]
# -- generate-synthetic --------------------------------------------------------------------------
SyntheticOut = Annotated[P, _opt("--out", help="Output root; scenes go to <out>/{train,val}/synthetic_NNNN/.")]
Scenes = Annotated[Optional[int], _opt("--scenes", help="Number of scenes (>= 1).")]
DatasetSeed = Annotated[Optional[int], _opt("--seed", help="Dataset seed (>= 0); same seed, same files.")]
ValFraction = Annotated[Optional[float], _opt("--val-fraction", help="Share of scenes in the val split, in [0, 1).")]
Points = Annotated[Optional[int], _opt("--points", help="Points per scene (>= 1000; indoor only).")]
ProcessWorkers = Annotated[Optional[int], _opt("--workers", min=1, help="Scenes generated in parallel (processes; indoor only).")]
KindOption = Annotated[Optional[Kind], _opt("--kind", help="indoor: furnished rooms (ScanNet layout); outdoor: simulated 32-beam lidar drives.")]
FormatOption = Annotated[Optional[LidarFormat], _opt("--format", help="Outdoor only: write the nuScenes-lidarseg release format (--dataset nuscenes) or SemanticKITTI's (--dataset semantickitti).")]
Keyframes = Annotated[Optional[int], _opt("--keyframes", min=1, help="Outdoor only: labelled scans per drive, 0.5 s apart.")]
Sweeps = Annotated[Optional[int], _opt("--sweeps", min=0, help="Outdoor nuScenes only: unlabelled 20 Hz sweeps written before each keyframe (for multi-sweep reading).")]
Beams = Annotated[Optional[int], _opt("--beams", min=1, help="Outdoor only: lidar beams (nuScenes' HDL-32E has 32).")]
AzimuthSteps = Annotated[Optional[int], _opt("--azimuth-steps", min=8, help="Outdoor only: returns per beam and revolution.")]

# -- commands without a settings config (their defaults are the flags' own: off, 1, stages.yaml) --
InspectCacheDir = Annotated[Path, typer.Argument(help="Teacher cache directory (written by `srkd cache-teacher`).")]
Verify = Annotated[bool, _opt("--verify", help="Decode every scene, check it against the data it was built from, and score the cached teacher against ground truth.")]
Repair = Annotated[bool, _opt("--repair", help="With --verify: mark damaged scenes as uncommitted, so the next `srkd cache-teacher` with the same settings rebuilds them.")]
InspectDataRoot = Annotated[P, _opt("--data-root", help="Dataset root for the labels of --verify's mIoU (default: the root recorded in the cache).")]
AsJson = Annotated[bool, _opt("--json", help="Print the summary (and verification) as JSON instead of tables.")]
Upgrade = Annotated[bool, _opt("--upgrade", help="Add the Zarr dimension names and decode attributes that caches written by older srkd versions lack (so xarray opens them); only array metadata changes, never a chunk or the fingerprint.")]
Migrate = Annotated[P, _opt("--migrate", help="Rewrite the cache (any schema) as a schema-3 cache (samples packed per sequence) in this new directory: encoded arrays copied, decoded values checked bit-identical; resumable.")]
RawScanNet = Annotated[Path, _opt("--raw", help="ScanNet release folder: scans/, labels tsv and split lists (in it or in meta/).")]
PrepareOut = Annotated[Path, _opt("--out", help="Output root; scenes go to <out>/<split>/<scene>/.")]
PrepareWorkers = Annotated[int, _opt("--workers", min=1, help="Scenes converted in parallel (processes).")]
Splits = Annotated[Optional[list[str]], _opt("--splits", help="Split to convert (train, val, test); repeatable or comma-separated. Default: every split with a list file.")]
Stage = Annotated[Optional[list[str]], _opt("--stage", help="Run only this stage (and what it needs); repeatable.")]
Force = Annotated[bool, _opt("--force", help="Run the named stages (or all) even if up to date.")]
SetParam = Annotated[Optional[list[str]], _opt("--set", help="Override a parameter: key=value, e.g. distill.epochs=3; repeatable.")]
StagesFile = Annotated[Path, _opt("--file", help="The pipeline file.")]
DryRun = Annotated[bool, _opt("--dry-run", help="Say what would run and why, run nothing.")]


class SrkdCommand(TyperCommand):
    """A typer command whose `--help` shows each option's effective default and its source:
    '[default: 40 (stages.yaml)]', '[default: 100]' or what a None default becomes."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from pipeline.params import COMMAND_CONFIGS, describe_defaults

        if self.name in COMMAND_CONFIGS:
            shown = describe_defaults(self.name)
            bracket = "\\[" if self.rich_markup_mode == "rich" else "["  # "[" opens rich markup
            for param in self.params:
                if param.name in shown and getattr(param, "help", None) is not None:
                    param.help = f"{param.help} {bracket}default: {shown[param.name]}]"
                    param.show_default = False
        super().format_help(ctx, formatter)
