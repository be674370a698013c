"""Raw ScanNet -> layout conversion: label logic, alignment, normals, resume, errors, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from srkd.data.scannet import get_dataset_spec, load_scene
from srkd.data.scannet.classes import (
    SCANNET20_CLASSES,
    SCANNET200_CLASSES,
    VALID_CLASS_IDS_200,
)
from srkd.data.scannet.prepare import (
    LabelMap,
    load_label_map,
    nyu40_to_segment20,
    prepare_scannet,
    prepare_scene,
    scannet200_id_to_segment200,
    scene_labels,
)
from srkd.errors import ConfigError, DataError

from .test_ply import write_ply

TSV = (
    "id\traw_category\tcategory\tcount\tnyu40id\n"
    "1\twall\twall\t100\t1\n"
    "2\tchair\tchair\t10\t5\n"
    "2\tstack of chairs\tchair\t3\t5\n"
    "41\tceiling\tceiling\t5\t22\n"
    "1300\tweird thing\tobject\t1\t40\n"
)
CEILING_200 = VALID_CLASS_IDS_200.index(41)
# vertices 0-3: a unit square in the x=0 plane facing +x; 4-7: a square in z=0 facing +z
VERTS = np.array(
    [[0, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [2, 0, 0], [3, 0, 0], [3, 1, 0], [2, 1, 0]],
    np.float32,
)
FACES = [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]]
ROT_Z90 = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], np.float64)
SHIFT = np.array([10.0, 20.0, 30.0])
SEG_INDICES = [10, 10, 20, 20, 30, 40, 50, 60]
GROUPS = [
    {"id": 0, "objectId": 0, "label": "chair", "segments": [10, 999]},  # 999: no such segment
    {"id": 1, "objectId": 1, "label": "stack of chairs", "segments": [20]},
    {"id": 2, "objectId": 2, "label": "weird thing", "segments": [30]},  # NYU40 otherprop
    {"id": 3, "objectId": 3, "label": "ceiling", "segments": [40]},  # ScanNet200 only
    {"id": 4, "objectId": 4, "label": "mystery", "segments": [50]},  # not in the tsv
]  # segment 60: in no group
EXPECTED = {
    "segment20": [4, 4, 4, 4, -1, -1, -1, -1],
    "segment200": [1, 1, 1, 1, -1, CEILING_200, -1, -1],
    "instance": [0, 0, 1, 1, 2, 3, 4, -1],
}


def write_scan(scans: Path, scene_id: str, labelled: bool = True, seed: int = 0) -> Path:
    """One raw scan folder as in the ScanNet release."""
    folder = scans / scene_id
    folder.mkdir(parents=True)
    colors = np.random.default_rng(seed).integers(0, 256, size=(len(VERTS), 3), dtype=np.uint8)
    write_ply(folder / f"{scene_id}_vh_clean_2.ply", VERTS, colors, FACES, alpha=True)
    align = np.eye(4)
    align[:3, :3], align[:3, 3] = ROT_Z90, SHIFT
    info = ["colorHeight = 968"]
    if labelled:  # test scans come without an alignment or annotations
        info.append("axisAlignment = " + " ".join(f"{x:f}" for x in align.ravel()))
        (folder / f"{scene_id}_vh_clean_2.0.010000.segs.json").write_text(
            json.dumps({"sceneId": scene_id, "segIndices": SEG_INDICES})
        )
        (folder / f"{scene_id}.aggregation.json").write_text(
            json.dumps({"sceneId": scene_id, "segGroups": GROUPS})
        )
    (folder / f"{scene_id}.txt").write_text("\n".join(info) + "\n")
    return folder


def make_raw(root: Path) -> Path:
    """A tiny release: 2 labelled scans (train, val), 1 test scan, one listed scan absent."""
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "scannetv2-labels.combined.tsv").write_text(TSV)
    (root / "meta" / "scannetv2_train.txt").write_text("scene0001_00\nscene0009_00\n")
    (root / "meta" / "scannetv2_val.txt").write_text("scene0002_00\n")
    (root / "meta" / "scannetv2_test.txt").write_text("scene0707_00\n")
    write_scan(root / "scans", "scene0001_00", seed=1)
    write_scan(root / "scans", "scene0002_00", seed=2)
    write_scan(root / "scans_test", "scene0707_00", labelled=False, seed=3)
    return root


def test_id_lookup_tables():
    nyu40 = np.array([0, 1, 2, 3, 14, 39, 40, 24, 1000, -5])
    assert nyu40_to_segment20(nyu40).tolist() == [-1, 0, 1, 2, 12, 19, -1, 14, -1, -1]
    ids = np.array([1, 2, 1191, 12, 0, 5000])
    assert scannet200_id_to_segment200(ids).tolist() == [0, 1, 199, -1, -1, -1]


@pytest.fixture
def label_map(tmp_path) -> LabelMap:
    path = tmp_path / "labels.tsv"
    path.write_text(TSV)
    return load_label_map(path)


def test_scene_labels_later_group_wins(label_map):
    groups = GROUPS + [{"objectId": 7, "label": "wall", "segments": [20, 60]}]
    s20, s200, inst = scene_labels(np.array(SEG_INDICES), groups, label_map)
    assert s20.tolist() == [4, 4, 0, 0, -1, -1, -1, 0]
    assert s200.tolist() == [1, 1, 0, 0, -1, CEILING_200, -1, 0]
    assert inst.tolist() == [0, 0, 7, 7, 2, 3, 4, 7] and inst.dtype == np.int64
    with pytest.raises(DataError, match=r"segGroups\[0\] needs"):
        scene_labels(np.array(SEG_INDICES), [{"label": "wall"}], label_map, "agg.json")


def test_prepare_end_to_end(tmp_path):
    raw, out = make_raw(tmp_path / "raw"), tmp_path / "out"
    events = []
    report = prepare_scannet(
        raw, out, workers=1, progress_callback=lambda r, d, t: events.append((r.scene_id, d, t))
    )
    assert [e[1:] for e in events] == [(1, 3), (2, 3), (3, 3)]
    assert report.count("converted") == 3
    assert report.listed_missing == {"train": 1, "val": 0, "test": 0}
    scene = out / "train" / "scene0001_00"
    assert sorted(p.name for p in scene.iterdir()) == sorted(
        f"{s}.npy" for s in ("coord", "color", "normal", "segment20", "segment200", "instance")
    )
    coord = np.load(scene / "coord.npy")
    assert coord.dtype == np.float32
    np.testing.assert_allclose(coord, VERTS @ ROT_Z90.T + SHIFT, atol=1e-5)  # axis-aligned
    normal = np.load(scene / "normal.npy")
    np.testing.assert_allclose(normal[:4], np.tile([0, 1, 0], (4, 1)), atol=1e-6)  # +x rotated
    np.testing.assert_allclose(normal[4:], np.tile([0, 0, 1], (4, 1)), atol=1e-6)
    color = np.load(scene / "color.npy")
    assert color.dtype == np.uint8 and color.shape == (8, 3)
    for stem, expected in EXPECTED.items():
        arr = np.load(scene / f"{stem}.npy")
        assert arr.dtype == np.int64 and arr.tolist() == expected, stem
    test_scene = out / "test" / "scene0707_00"
    assert sorted(p.name for p in test_scene.iterdir()) == ["color.npy", "coord.npy", "normal.npy"]
    np.testing.assert_allclose(np.load(test_scene / "coord.npy"), VERTS)  # no alignment given
    # the reader takes the converter's output as is
    pc = load_scene(out, "val", "scene0002_00", get_dataset_spec("scannet200"))
    assert pc.segment.tolist() == EXPECTED["segment200"]
    spec = get_dataset_spec("scannet")
    assert load_scene(out, "test", "scene0707_00", spec, require_labels=False).segment is None


def test_resume_skips_finished_scenes_and_workers_agree(tmp_path):
    raw, out = make_raw(tmp_path / "raw"), tmp_path / "out"
    report = prepare_scannet(raw, out, workers=2, splits=["train", "val"])
    assert sorted(r.scene_id for r in report.results if r.status == "converted") == [
        "scene0001_00", "scene0002_00",
    ]
    stamp = (out / "train/scene0001_00/coord.npy").stat().st_mtime_ns
    again = prepare_scannet(raw, out, workers=2, splits=["train", "val"])
    assert again.count("skipped") == 2 and again.count("converted") == 0
    assert (out / "train/scene0001_00/coord.npy").stat().st_mtime_ns == stamp
    shutil.rmtree(out / "val/scene0002_00")
    third = prepare_scannet(raw, out, workers=1, splits=["train", "val"])
    assert [(r.scene_id, r.status) for r in third.results if r.status == "converted"] == [
        ("scene0002_00", "converted")
    ]
    serial = prepare_scannet(raw, tmp_path / "serial", workers=1, splits=["train"])
    assert serial.count("converted") == 1
    for stem in ("coord", "normal", "segment20", "instance"):
        np.testing.assert_array_equal(
            np.load(out / f"train/scene0001_00/{stem}.npy"),
            np.load(tmp_path / f"serial/train/scene0001_00/{stem}.npy"),
        )


def test_bad_raw_inputs(tmp_path):
    raw = make_raw(tmp_path / "raw")
    segs = raw / "scans/scene0001_00/scene0001_00_vh_clean_2.0.010000.segs.json"
    segs.write_text(json.dumps({"segIndices": [1, 2, 3]}))
    with pytest.raises(DataError, match=r"segIndices has shape \(3,\).*\(8\)"):
        prepare_scannet(raw, tmp_path / "o1", splits=["train"])
    segs.write_text('{"segIndices": [1, 2')
    with pytest.raises(DataError, match="not valid JSON"):
        prepare_scannet(raw, tmp_path / "o1", splits=["train"])
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        prepare_scannet(raw, tmp_path / "o1", splits=["dev"])
    with pytest.raises(ConfigError, match="workers"):
        prepare_scannet(raw, tmp_path / "o1", workers=0)
    (raw / "meta/scannetv2_val.txt").unlink()
    with pytest.raises(DataError, match="scannetv2_val.txt not found"):
        prepare_scannet(raw, tmp_path / "o1", splits=["val"])
    with pytest.raises(ConfigError, match="needs a label map"):
        prepare_scene(raw / "scans/scene0002_00", tmp_path / "o1", "val", None)


def test_cli_converts_and_reports_errors(tmp_path):
    raw, out = make_raw(tmp_path / "raw"), tmp_path / "out"

    def prepare(*args: str):
        return CliRunner().invoke(app, ["prepare", "scannet", "--raw", str(raw), *args])

    ok = prepare("--out", str(out), "--splits", "train,val")
    assert ok.exit_code == 0, ok.output
    assert "converted 2 scenes" in ok.output and "train 1" in ok.output
    assert (out / "val/scene0002_00/segment200.npy").is_file()

    ply = raw / "scans/scene0002_00/scene0002_00_vh_clean_2.ply"
    ply.write_bytes(ply.read_bytes()[:-7])  # truncated mesh
    bad = prepare("--out", str(tmp_path / "o2"), "--workers", "2")
    assert bad.exit_code == 1
    assert "error:" in bad.output and "scene0002_00_vh_clean_2.ply" in bad.output
    assert "Traceback" not in bad.output

    (raw / "meta/scannetv2-labels.combined.tsv").unlink()
    no_tsv = prepare("--out", str(tmp_path / "o3"))
    assert no_tsv.exit_code == 1 and "scannetv2-labels.combined.tsv not found" in no_tsv.output


def test_real_label_table(scannet_raw_sample):
    label_map = load_label_map(scannet_raw_sample / "meta/scannetv2-labels.combined.tsv")
    assert label_map.labels("chair") == (4, 1) and label_map.labels("stack of chairs") == (4, 1)
    assert label_map.labels("no such category") == (-1, -1)
    # every ScanNet200 class name is a raw category mapped to its own label
    assert [label_map.segment200[name] for name in SCANNET200_CLASSES] == list(range(200))
    present = [(i, n) for i, n in enumerate(SCANNET20_CLASSES) if n in label_map.segment20]
    assert len(present) >= 18
    assert all(label_map.segment20[n] == i for i, n in present)


def test_real_scan_matches_the_layout_scan_and_its_labels(
    tmp_path, label_map, scannet_raw_sample, scannet_real
):
    from scipy.spatial import cKDTree

    scan = scannet_raw_sample / "scans/scene0000_00"
    # no segs/aggregation in the sample: convert the geometry only (as for a test scan)
    with pytest.raises(DataError, match="segs.json"):
        prepare_scene(scan, tmp_path, "train", label_map)
    assert prepare_scene(scan, tmp_path, "test", None) == 81369
    folder = tmp_path / "test/scene0000_00"
    coord, color = np.load(folder / "coord.npy"), np.load(folder / "color.npy")
    normal = np.load(folder / "normal.npy")
    np.testing.assert_allclose(np.linalg.norm(normal, axis=1), 1.0, atol=1e-5)

    # scannet_real's scene0000_00 is a subsample of the same aligned mesh: join by position
    real = scannet_real / "train/scene0000_00"
    dist, idx = cKDTree(coord).query(np.load(real / "coord.npy"))
    assert dist.max() < 1e-5
    np.testing.assert_array_equal(color[idx], np.load(real / "color.npy"))
    nyu40 = np.load(scannet_raw_sample / "scene0000_00_nyu40_per_vertex.npy")
    np.testing.assert_array_equal(nyu40_to_segment20(nyu40[idx]), np.load(real / "segment20.npy"))
    # the layout's normals were fitted to 16 neighbours; mesh normals must mostly agree
    agree = np.abs(np.sum(normal[idx] * np.load(real / "normal.npy"), axis=1))
    assert np.median(agree) > 0.9
    floor = nyu40 == 2
    assert np.median(normal[floor, 2]) > 0.95  # aligned frame: the floor faces up
