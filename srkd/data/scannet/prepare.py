"""Convert the raw ScanNet v2 release into the Pointcept scene layout (`srkd prepare scannet`).

Raw layout read (ScanNet v2 release):
    <raw>/scans/<scene>/<scene>_vh_clean_2.ply                 binary PLY mesh, vertex xyz + rgb
    <raw>/scans/<scene>/<scene>.txt                            `axisAlignment = <16 numbers>`
    <raw>/scans/<scene>/<scene>_vh_clean_2.0.010000.segs.json  `segIndices`: segment id per vertex
    <raw>/scans/<scene>/<scene>.aggregation.json               `segGroups`: objectId, label, segs
    <raw>/scans_test/<scene>/...                               test scans (mesh + txt only)
    <raw>[/meta]/scannetv2-labels.combined.tsv                 raw_category -> nyu40id, id (200)
    <raw>[/meta]/scannetv2_{train,val,test}.txt                split lists
Written per scene, `<out>/<split>/<scene>/`: coord float32 (axis-aligned), color uint8, normal
float32 (area-weighted from the faces of the aligned mesh), and for train/val segment20,
segment200, instance int64 (-1 = unannotated / not a benchmark class / no object).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srkd.data.scannet.classes import VALID_CLASS_IDS_20, VALID_CLASS_IDS_200
from srkd.data.scannet.layout import check_scene_id, write_scene
from srkd.data.scannet.ply import read_mesh, vertex_normals
from srkd.errors import ConfigError, DataError
from srkd.types import IGNORE_INDEX

SPLITS: tuple[str, ...] = ("train", "val", "test")
UNLABELLED_SPLITS: frozenset[str] = frozenset({"test"})
LABELS_TSV = "scannetv2-labels.combined.tsv"
SCAN_DIRS = ("scans", "scans_test")
_MESH = "{}_vh_clean_2.ply"
_SEGS = "{}_vh_clean_2.0.010000.segs.json"
_AGGREGATIONS = ("{}.aggregation.json", "{}_vh_clean.aggregation.json")


def _lookup(valid_ids: Sequence[int]) -> np.ndarray:
    lut = np.full(max(valid_ids) + 1, IGNORE_INDEX, dtype=np.int64)
    lut[list(valid_ids)] = np.arange(len(valid_ids))
    return lut


_LUT20 = _lookup(VALID_CLASS_IDS_20)
_LUT200 = _lookup(VALID_CLASS_IDS_200)


def _map_ids(ids: np.ndarray, lut: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    inside = (ids >= 0) & (ids < len(lut))
    return np.where(inside, lut[np.clip(ids, 0, len(lut) - 1)], IGNORE_INDEX)


def nyu40_to_segment20(nyu40: np.ndarray) -> np.ndarray:
    """NYU40 ids (any int shape; 0 = unannotated) -> ScanNet-20 labels int64, -1 elsewhere."""
    return _map_ids(nyu40, _LUT20)


def scannet200_id_to_segment200(ids: np.ndarray) -> np.ndarray:
    """ScanNet200 ids (the tsv `id` column) -> labels 0..199 int64, -1 for other ids."""
    return _map_ids(ids, _LUT200)


@dataclass(frozen=True)
class LabelMap:
    """raw_category -> (segment20 label, segment200 label), read from the labels tsv."""

    segment20: dict[str, int]
    segment200: dict[str, int]

    def labels(self, raw_category: str) -> tuple[int, int]:
        """(segment20, segment200) of a raw category; (-1, -1) if the tsv does not list it."""
        return (
            self.segment20.get(raw_category, IGNORE_INDEX),
            self.segment200.get(raw_category, IGNORE_INDEX),
        )


def load_label_map(tsv: Path) -> LabelMap:
    """Parse scannetv2-labels.combined.tsv (tab-separated; columns raw_category, nyu40id, id)."""
    tsv = Path(tsv)
    try:
        with tsv.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except OSError as exc:
        raise DataError(f"cannot read label table {tsv}: {exc.strerror or exc}") from None
    need = ("raw_category", "nyu40id", "id")
    if not rows or any(k not in rows[0] for k in need):
        raise DataError(
            f"{tsv} is not a ScanNet label table: it needs the columns {', '.join(need)}"
        )
    seg20: dict[str, int] = {}
    seg200: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        name = row["raw_category"]
        try:
            nyu40, sid = int(row["nyu40id"] or 0), int(row["id"])
        except (TypeError, ValueError):
            raise DataError(f"{tsv} line {line}: non-integer nyu40id/id in {row!r}") from None
        # first row wins for a repeated raw_category, as in ScanNet's own tools
        seg20.setdefault(name, int(nyu40_to_segment20(np.array(nyu40))))
        seg200.setdefault(name, int(scannet200_id_to_segment200(np.array(sid))))
    return LabelMap(seg20, seg200)


def find_meta_file(raw: Path, name: str) -> Path | None:
    """`<raw>/<name>` or `<raw>/meta/<name>`, whichever exists first."""
    for folder in (Path(raw), Path(raw) / "meta"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_axis_alignment(txt: Path) -> np.ndarray:
    """The 4x4 `axisAlignment` matrix of a scan's `<scene>.txt`; identity if the line is absent
    (test scans have none)."""
    try:
        lines = Path(txt).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read scan info {txt}: {exc.strerror or exc}") from None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "axisAlignment":
            try:
                numbers = [float(x) for x in value.split()]
            except ValueError:
                numbers = []
            if len(numbers) != 16:
                raise DataError(f"{txt}: axisAlignment must hold 16 numbers, got {value.strip()!r}")
            return np.asarray(numbers, dtype=np.float64).reshape(4, 4)
    return np.eye(4)


def _read_json(path: Path, key: str):
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} is not valid JSON ({exc}); the download may be truncated"
        ) from None
    if not isinstance(doc, dict) or key not in doc:
        raise DataError(f"{path} has no {key!r} entry")
    return doc[key]


def scene_labels(
    seg_indices: np.ndarray,
    seg_groups: list[dict],
    label_map: LabelMap,
    source: str = "aggregation",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-vertex labels from over-segmentation + object groups.

    Args:
        seg_indices: int (V,) segment id of every vertex (segs.json `segIndices`).
        seg_groups: aggregation `segGroups`: dicts with `label` (raw category), `segments` (ids)
            and `objectId` (or `id`), the 0-based object id.
        label_map: raw category -> labels.
        source: file name used in error messages.
    Returns:
        (segment20, segment200, instance), each int64 (V,); vertices in no group get -1, and a
        later group overrides an earlier one on shared segments (as ScanNet's tools do).
        instance is the object id of the group (0-based), even for classes outside the benchmark.
    """
    seg_indices = np.asarray(seg_indices, dtype=np.int64)
    unique, inverse = np.unique(seg_indices, return_inverse=True)
    per_seg = np.full((3, len(unique)), IGNORE_INDEX, dtype=np.int64)
    for g, group in enumerate(seg_groups):
        try:
            label = str(group["label"])
            segments = np.asarray(group["segments"], dtype=np.int64).reshape(-1)
            object_id = int(group["objectId"] if "objectId" in group else group["id"])
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{source}: segGroups[{g}] needs 'label', 'segments' and 'objectId' entries"
            ) from None
        pos = np.searchsorted(unique, segments)
        pos = pos[(pos < len(unique)) & (unique[np.minimum(pos, len(unique) - 1)] == segments)]
        s20, s200 = label_map.labels(label)
        per_seg[:, pos] = np.array([[s20], [s200], [object_id]])
    return per_seg[0][inverse], per_seg[1][inverse], per_seg[2][inverse]


def _find_aggregation(scene_dir: Path, scene_id: str) -> Path:
    for pattern in _AGGREGATIONS:
        path = scene_dir / pattern.format(scene_id)
        if path.is_file():
            return path
    return scene_dir / _AGGREGATIONS[0].format(scene_id)


def convert_scene(scene_dir: Path, label_map: LabelMap | None) -> dict[str, np.ndarray]:
    """Read one raw scan folder and return the layout arrays (not written).

    Args:
        scene_dir: `<raw>/scans/<scene_id>`.
        label_map: labels to attach; None for an unlabelled (test) scan.
    Returns:
        stem -> array: coord float32 (V, 3), color uint8 (V, 3), normal float32 (V, 3), and with
        labels segment20, segment200, instance int64 (V,).
    """
    scene_dir = Path(scene_dir)
    scene_id = check_scene_id(scene_dir.name)
    needed = [scene_dir / _MESH.format(scene_id), scene_dir / f"{scene_id}.txt"]
    if label_map is not None:
        needed += [scene_dir / _SEGS.format(scene_id), _find_aggregation(scene_dir, scene_id)]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise DataError(
            f"scan {scene_dir} lacks {', '.join(missing)}; a labelled scan needs the mesh "
            f"({_MESH.format(scene_id)}), {scene_id}.txt, the segs.json and the aggregation.json"
        )
    mesh = read_mesh(needed[0])
    if mesh.colors is None:
        raise DataError(f"{needed[0]}: the mesh has no red, green, blue vertex colours")
    align = read_axis_alignment(needed[1])
    # Normals of the aligned mesh equal the raw normals rotated by the alignment (rigid transform).
    coord = mesh.vertices.astype(np.float64) @ align[:3, :3].T + align[:3, 3]
    arrays = {
        "coord": coord.astype(np.float32),
        "color": mesh.colors,
        "normal": vertex_normals(coord, mesh.faces),
    }
    if label_map is not None:
        seg_indices = np.asarray(_read_json(needed[2], "segIndices"))
        if seg_indices.shape != (len(coord),) or not np.issubdtype(seg_indices.dtype, np.integer):
            raise DataError(
                f"{needed[2]}: segIndices has shape {seg_indices.shape}, expected one integer per "
                f"mesh vertex ({len(coord)})"
            )
        groups = _read_json(needed[3], "segGroups")
        s20, s200, inst = scene_labels(seg_indices, groups, label_map, str(needed[3]))
        arrays.update(segment20=s20, segment200=s200, instance=inst)
    return arrays


def _expected_stems(split: str) -> tuple[str, ...]:
    base = ("coord", "color", "normal")
    return base if split in UNLABELLED_SPLITS else base + ("segment20", "segment200", "instance")


def is_scene_done(out: Path, split: str, scene_id: str) -> bool:
    """True if `<out>/<split>/<scene_id>/` holds every file this split needs."""
    folder = Path(out) / split / scene_id
    return all((folder / f"{stem}.npy").is_file() for stem in _expected_stems(split))


def prepare_scene(scene_dir: Path, out: Path, split: str, label_map: LabelMap | None) -> int:
    """Convert one scan and write `<out>/<split>/<scene_id>/` atomically; returns its point count.

    Scans of the unlabelled splits (test) are written without label files; label_map may then be
    None. Any problem raises DataError naming the scan.
    """
    labelled = split not in UNLABELLED_SPLITS
    if labelled and label_map is None:
        raise ConfigError(f"split {split!r} is labelled: prepare_scene needs a label map")
    arrays = convert_scene(scene_dir, label_map if labelled else None)
    write_scene(Path(out), split, Path(scene_dir).name, arrays)
    return len(arrays["coord"])


@dataclass(frozen=True)
class SceneResult:
    """Outcome of one scene: status is "converted" or "skipped" (already complete)."""

    scene_id: str
    split: str
    status: str
    num_points: int = 0


@dataclass
class PrepareReport:
    """What `prepare_scannet` did; `listed_missing[split]` counts listed scans absent from raw."""

    results: list[SceneResult] = field(default_factory=list)
    listed_missing: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


ProgressCallback = Callable[[SceneResult, int, int], None]
"""Called in the calling process after each scene as (result, scenes done, scenes total)."""


def _read_split_list(raw: Path, split: str) -> list[str]:
    name = f"scannetv2_{split}.txt"
    path = find_meta_file(raw, name)
    if path is None:
        raise DataError(
            f"split list {name} not found in {raw} or {Path(raw) / 'meta'}; copy it from the "
            "ScanNet release (Tasks/Benchmark) or leave the split out"
        )
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def plan_scenes(
    raw: Path, splits: Sequence[str] | None = None
) -> tuple[list[tuple[str, Path]], dict[str, int]]:
    """The (split, scan folder) pairs to convert, and per split how many listed scans are absent.

    `splits=None` takes every split whose list file exists.
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(f"raw ScanNet folder {raw} does not exist")
    if splits is None:
        splits = [s for s in SPLITS if find_meta_file(raw, f"scannetv2_{s}.txt") is not None]
        if not splits:
            raise DataError(
                f"no split lists scannetv2_{{train,val,test}}.txt in {raw} or {raw / 'meta'}"
            )
    for split in splits:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    plan: list[tuple[str, Path]] = []
    missing: dict[str, int] = {}
    for split in splits:
        listed = _read_split_list(raw, split)
        missing[split] = 0
        for scene_id in listed:
            check_scene_id(scene_id)
            found = [raw / d / scene_id for d in SCAN_DIRS if (raw / d / scene_id).is_dir()]
            if found:
                plan.append((split, found[0]))
            else:
                missing[split] += 1
    if not plan:
        raise DataError(
            f"none of the scans listed for {', '.join(splits)} is under {raw}/scans or "
            f"{raw}/scans_test; point --raw at the ScanNet release folder"
        )
    return plan, missing


def prepare_scannet(
    raw: Path,
    out: Path,
    workers: int = 1,
    progress_callback: ProgressCallback | None = None,
    splits: Sequence[str] | None = None,
) -> PrepareReport:
    """Convert a raw ScanNet release into the layout under `out`, resumably and in parallel.

    Scenes whose output folder already holds every file are skipped (writes are atomic, so a
    folder that exists is complete). With `workers > 1` scenes are converted in a process pool.
    The first failing scene stops the run with its DataError; finished scenes stay done.
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    raw, out = Path(raw), Path(out)
    plan, missing = plan_scenes(raw, splits)
    label_map = None
    if any(split not in UNLABELLED_SPLITS for split, _ in plan):
        tsv = find_meta_file(raw, LABELS_TSV)
        if tsv is None:
            raise DataError(
                f"{LABELS_TSV} not found in {raw} or {raw / 'meta'}; it maps ScanNet's raw "
                "categories to NYU40 / ScanNet200 ids: copy it from the ScanNet release"
            )
        label_map = load_label_map(tsv)
    report = PrepareReport(listed_missing=missing)
    total = len(plan)

    def record(result: SceneResult) -> None:
        report.results.append(result)
        if progress_callback is not None:
            progress_callback(result, len(report.results), total)

    todo = []
    for split, scene_dir in plan:
        if is_scene_done(out, split, scene_dir.name):
            record(SceneResult(scene_dir.name, split, "skipped"))
        else:
            todo.append((split, scene_dir))
    if workers == 1 or len(todo) <= 1:
        for split, scene_dir in todo:
            n = prepare_scene(scene_dir, out, split, label_map)
            record(SceneResult(scene_dir.name, split, "converted", n))
        return report
    with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        pending = {
            pool.submit(prepare_scene, scene_dir, out, split, label_map): (split, scene_dir.name)
            for split, scene_dir in todo
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                split, scene_id = pending.pop(future)
                if future.exception() is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise future.exception()
                record(SceneResult(scene_id, split, "converted", future.result()))
    return report
