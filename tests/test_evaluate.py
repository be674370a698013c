"""`srkd evaluate`: precise evaluation on every original point, the cached teacher, reports, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from srkd.data.collate import PointBatch
from srkd.data.scannet import ScanNetScenes
from srkd.data.scannet.classes import SCANNET20_CLASSES
from srkd.data.scannet.layout import write_scene
from srkd.data.transforms import replay
from srkd.data.voxelize import grid_sample
from srkd.device import resolve_device
from srkd.errors import CheckpointError, ConfigError
from srkd.evaluate.data import resolve_data
from srkd.evaluate.latency import measure_latency
from srkd.evaluate.models import EvalModel, display_name
from srkd.evaluate.run import evaluate_models, write_evaluation
from srkd.inference import infer_scene, infer_view, precise_views
from srkd.models import SegmentationModel, create_model, save_checkpoint
from srkd.models.base import ModelOutput
from srkd.scoring import cached_teacher_prediction

K = 20
GRID = 0.1
SCENES = ("scene0000_00", "scene0001_00", "scene0002_00")


def _scene_arrays(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """A small room: floor (1), walls (0), a table (6) and a chair (4); some points unlabelled.
    Every point has a near twin, so voxels hold several points and test mode makes fragments."""
    half = n // 2
    coord = rng.uniform([0, 0, 0], [3.0, 2.0, 1.5], size=(half, 3))
    coord[: half // 4, 2] = 0.0  # floor
    coord[half // 4 : half // 2, 0] = 0.0  # a wall
    coord = np.concatenate([coord, coord + rng.normal(0, 0.004, coord.shape)]).astype(np.float32)
    seg = np.full(len(coord), 0, np.int64)
    seg[coord[:, 2] < 0.02] = 1
    seg[(coord[:, 0] > 1.0) & (coord[:, 0] < 2.0) & (coord[:, 2] > 0.6) & (coord[:, 2] < 0.8)] = 6
    seg[(coord[:, 0] > 2.3) & (coord[:, 1] < 0.6) & (coord[:, 2] < 0.5) & (coord[:, 2] > 0.02)] = 4
    seg[rng.random(len(coord)) < 0.05] = -1
    normal = rng.normal(size=coord.shape)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    color = rng.integers(0, 256, size=coord.shape).astype(np.uint8)
    return {"coord": coord, "color": color, "normal": normal.astype(np.float32), "segment20": seg}


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A ScanNet-layout dataset with a 3-scene val split of ~2-3 thousand points each."""
    rng = np.random.default_rng(7)
    root = tmp_path / "data"
    for i, scene in enumerate(SCENES):
        write_scene(root, "val", scene, _scene_arrays(rng, 2000 + 400 * i))
    return root


class GroundTruthModel(SegmentationModel):
    """Test double: returns the ground truth by looking labels up through batch.origin_index.

    Also counts the points it was asked about, so tests can check every prediction is used."""

    def __init__(self, labels: dict[str, np.ndarray], num_classes: int = K) -> None:
        super().__init__()
        self.num_classes, self.in_channels, self.feature_dim = num_classes, 6, 4
        self.labels = {s: torch.as_tensor(np.maximum(v, 0)) for s, v in labels.items()}
        self.points_seen = 0

    def forward(self, batch: PointBatch) -> ModelOutput:
        assert batch.batch_size == 1 and not self.training and not torch.is_grad_enabled()
        label = self.labels[batch.scene_ids[0]].to(batch.origin_index.device)[batch.origin_index]
        self.points_seen += len(label)
        logits = 10.0 * torch.nn.functional.one_hot(label, self.num_classes).float()
        return ModelOutput(logits=logits, feature=torch.zeros(len(label), self.feature_dim))


def _gt_model(scenes: ScanNetScenes) -> GroundTruthModel:
    return GroundTruthModel({s: scenes.load(s).segment for s in scenes.scene_ids})


def test_ground_truth_model_scores_one_on_every_point(data_root: Path) -> None:
    scenes = ScanNetScenes(data_root, "val", "scannet")
    model = _gt_model(scenes)
    m = EvalModel("oracle", model, ("color", "normal"), GRID)
    ev = evaluate_models(scenes, [m], tta=True, latency_runs=0)
    row = ev.rows[0]
    labelled = sum(int((scenes.load(s).segment >= 0).sum()) for s in SCENES)
    total = sum(scenes.load(s).num_points for s in SCENES)
    assert row.scores.num_points == labelled  # every labelled original point was scored
    assert row.scores.miou == 1.0 and row.scores.allacc == 1.0 and row.scores.macc == 1.0
    assert row.scores.classes_in_mean == 4  # absent classes are left out of the mean
    assert row.split.tta_views == 13 and row.split.num_scenes == 3
    assert row.extra["votes_per_point_min"] >= 13
    # every prediction the model made was counted as a vote of some original point
    assert model.points_seen == pytest.approx(row.extra["votes_per_point_mean"] * total)


def test_every_view_and_fragment_votes(data_root: Path) -> None:
    scenes = ScanNetScenes(data_root, "val", "scannet")
    pc = scenes.load(SCENES[0])
    model = _gt_model(scenes).eval()
    views = precise_views(pc, tta=True)
    assert len(views) == 13
    expected = np.zeros(pc.num_points, np.int64)
    fragment_points = 0
    for record in views:
        view = replay(pc, record)
        frags = grid_sample(view.coord, GRID, mode="test").fragments
        fragment_points += sum(len(f) for f in frags)
        per_view = np.zeros(pc.num_points, np.int64)
        for f in frags:
            np.add.at(per_view, view.origin_index[f], 1)
        got = infer_view(model, view, GRID, ("color", "normal"), num_points=pc.num_points, color_norm="pointcept")
        assert (got.votes >= 1).all()  # each view covers every point
        np.testing.assert_array_equal(got.votes, per_view)
        expected += per_view
    assert max(len(grid_sample(pc.coord, GRID, mode="test").fragments), 1) > 1  # fragments exist
    total = infer_scene(model, pc, views, GRID, ("color", "normal"), color_norm="pointcept")
    np.testing.assert_array_equal(total.votes, expected)
    assert total.votes.sum() == fragment_points
    np.testing.assert_array_equal(total.predictions()[pc.segment >= 0], pc.segment[pc.segment >= 0])


def test_report_and_pictures_written(data_root: Path, tmp_path: Path) -> None:
    scenes = ScanNetScenes(data_root, "val", "scannet")
    oracle = EvalModel("oracle", _gt_model(scenes), ("color", "normal"), GRID, kind="test")
    net = create_model("test_spunet", num_classes=K, in_channels=6)
    student = EvalModel("student", net, ("color", "normal"), GRID, params=123)
    ev = evaluate_models(scenes, [oracle, student], tta=False, max_scenes=2,
                         render_scene=SCENES[1], latency_warmup=0, latency_runs=2)  # fmt: skip
    assert ev.render is not None and ev.render.scene_id == SCENES[1]
    assert set(ev.render.preds) == {"oracle", "student"}
    written = write_evaluation(ev, tmp_path / "out")
    names = {p.name for p in written.values()}
    assert {"metrics.json", "report.md", "class_iou.png", "confusion_oracle.png",
            "confusion_student.png", f"scene_{SCENES[1]}.png"} <= names  # fmt: skip
    for p in written.values():
        assert p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| oracle |" in report and "| student |" in report and f"scene_{SCENES[1]}.png" in report
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    rows = data["models"]
    assert data["class_names"] == list(SCANNET20_CLASSES)
    assert rows[0]["scores"]["miou"] == 1.0 and rows[0]["split"]["num_scenes"] == 2
    assert rows[1]["latency"] is not None and rows[1]["latency"]["ms_per_scene"] > 0
    assert rows[1]["latency"]["device"].startswith("cpu")


def _write_cache(root: Path, scenes: ScanNetScenes, ensemble: bool, split: str = "val") -> Path:
    from srkd.cache import CacheSpec, CacheWriter, CodecSpec, ViewTargets, ensemble_of

    spec = CacheSpec(dataset="scannet", data_root=str(root), split=split,
                     class_names=SCANNET20_CLASSES, teacher_name="oracle_teacher", teacher_args={},
                     teacher_sha256="0" * 64, feature_dim=4, codec=CodecSpec.create("float16"),
                     views=3, ensemble=ensemble)  # fmt: skip
    path = root.parent / f"cache_{ensemble}"
    writer = CacheWriter.create(path, spec)
    for s in scenes.scene_ids:
        label = np.maximum(scenes.load(s).segment, 0)
        wrong = (label + 1) % K
        n = len(label)
        # view 0 is confidently wrong, views 1 and 2 mildly right: the mean of probabilities is
        # right (mean of logits would be wrong), so this checks how the views are combined
        views = []
        for v, (cls, height) in enumerate([(wrong, 10.0), (label, 3.0), (label, 3.0)]):
            logits = np.full((n, K), -20.0, np.float32)
            logits[np.arange(n), label] = 0.0
            logits[np.arange(n), wrong] = 0.0
            logits[np.arange(n), cls] = height
            views.append(ViewTargets(logits, np.zeros((n, 4), np.float32), {"view": v}))
        writer.write_scene(s, views, ensemble_of(views) if ensemble else None)
    return path


@pytest.mark.parametrize("ensemble", [True, False])
def test_cached_teacher_scored_without_running_it(data_root: Path, ensemble: bool) -> None:
    from srkd.cache import CacheReader

    scenes = ScanNetScenes(data_root, "val", "scannet")
    reader = CacheReader(_write_cache(data_root, scenes, ensemble))
    pred = cached_teacher_prediction(reader, SCENES[0])
    seg = scenes.load(SCENES[0]).segment
    np.testing.assert_array_equal(pred[seg >= 0], seg[seg >= 0])
    ev = evaluate_models(scenes, [], cache=reader, tta=False)
    (row,) = ev.rows
    assert row.kind == "teacher-cache" and row.latency is None and row.params is None
    assert row.scores.miou == 1.0 and row.split.tta_views == 3


def test_cache_missing_scenes_is_a_clear_error(data_root: Path) -> None:
    from srkd.cache import CacheReader
    from srkd.errors import CacheError

    scenes = ScanNetScenes(data_root, "val", "scannet")
    other = data_root.parent / "other"
    write_scene(other, "train", "sceneX", _scene_arrays(np.random.default_rng(1), 500))
    reader = CacheReader(_write_cache(other, ScanNetScenes(other, "train", "scannet"), True, "train"))
    with pytest.raises(CacheError, match="lacks 3 of the 3 evaluated scenes"):
        evaluate_models(scenes, [], cache=reader)


def test_settings_precedence_and_names(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    tp = {"dataset": "scannet200", "data_root": "/d", "grid_size": 0.05}
    assert resolve_data([(a, tp)]) == ("scannet200", Path("/d"), "val")
    assert resolve_data([(a, tp)], dataset="scannet", data_root=tmp_path, split="train") == (
        "scannet", tmp_path, "train")  # fmt: skip
    assert resolve_data([(a, {**tp, "val_split": "test"})])[2] == "test"
    with pytest.raises(ConfigError, match="different data_root"):
        resolve_data([(a, tp), (b, {**tp, "data_root": "/e"})])
    with pytest.raises(ConfigError, match="--data-root"):
        resolve_data([(a, {})])
    assert display_name(Path("runs/student/model.pt")) == "student"
    assert display_name(Path("x/student.pt"), ["student"]) == "student-2"


def test_latency_is_a_median_of_timed_runs_within_a_budget(data_root: Path) -> None:
    scenes = ScanNetScenes(data_root, "val", "scannet")
    model = _gt_model(scenes).eval()
    pc = scenes.load(SCENES[0])
    m = EvalModel("oracle", model, ("color", "normal"), GRID)
    lat = measure_latency(m, pc, torch.device("cpu"), warmup=1, runs=2)
    assert lat.ms_per_scene > 0 and "median of 2 runs after 1 warm-up" in lat.method
    assert lat.device == f"cpu ({torch.get_num_threads()} threads)"
    # warm-up runs plus timed runs, each one view over every point (1 vote per fragment point)
    per_pass = infer_scene(model, pc, precise_views(pc, tta=False), GRID, ("color", "normal"),
                           color_norm="pointcept").votes.sum()
    model.points_seen = 0
    lat = measure_latency(m, pc, torch.device("cpu"), warmup=1, runs=8, budget_s=0.0)
    assert "median of 3 runs" in lat.method and model.points_seen == 4 * per_pass
    with pytest.raises(ConfigError):
        measure_latency(m, pc, torch.device("cpu"), runs=0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_model_with_wrong_class_count_is_refused(data_root: Path) -> None:
    scenes = ScanNetScenes(data_root, "val", "scannet")
    bad = EvalModel("bad", GroundTruthModel({}, num_classes=13), ("color", "normal"), GRID)
    bad.model.labels = _gt_model(scenes).labels
    with pytest.raises(CheckpointError, match="13 class scores"):
        evaluate_models(scenes, [bad], tta=False, latency_runs=0)


# ---------------------------------------------------------------- command line


def _checkpoint(path: Path, data_root: Path, classes: tuple[str, ...] = SCANNET20_CLASSES) -> Path:
    torch.manual_seed(0)
    model = create_model("test_spunet", num_classes=len(classes), in_channels=6)
    return save_checkpoint(path, model, class_names=classes, feature_names=("color", "normal"), color_norm="pointcept",
                           train_params={"dataset": "scannet", "data_root": str(data_root),
                                         "grid_size": GRID, "cache": "teacher_cache"})  # fmt: skip


@pytest.fixture
def cli_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the CLI in an empty folder (no stages.yaml unless a test writes one)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    monkeypatch.delenv("SRKD_SET", raising=False)
    return work


def test_cli_compares_checkpoints_end_to_end(data_root: Path, cli_dir: Path) -> None:
    a = _checkpoint(cli_dir / "runs" / "a" / "model.pt", data_root)
    b = _checkpoint(cli_dir / "runs" / "b" / "model.pt", data_root)
    result = CliRunner().invoke(app, ["evaluate", "-c", str(a), "-c", str(b), "--no-tta",
                                      "--out", "ev", "--device", "cpu", "--latency-runs", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| a | student |" in result.output and "| b | student |" in result.output
    data = json.loads((cli_dir / "ev" / "metrics.json").read_text())
    assert [m["name"] for m in data["models"]] == ["a", "b"]
    first = data["models"][0]
    assert first["split"]["num_scenes"] == 3 and first["split"]["tta_views"] == 1
    assert first["params"] > 0 and first["latency"]["device"].startswith("cpu")
    assert first["extra"]["grid_size"] == GRID
    assert (cli_dir / "ev" / f"scene_{SCENES[0]}.png").stat().st_size > 0


def test_cli_bf16_scores_in_bf16_and_reports_agreement_with_fp32(data_root: Path, cli_dir: Path) -> None:
    """--precision bf16: the row says so, and measures its argmax against fp32 on the same points."""
    torch.manual_seed(0)
    model = create_model("test_ptv3", num_classes=K, in_channels=6)
    ckpt = save_checkpoint(cli_dir / "ptv3.pt", model, class_names=SCANNET20_CLASSES,
                           feature_names=("color", "normal"), color_norm="pointcept",
                           train_params={"dataset": "scannet", "data_root": str(data_root), "grid_size": GRID})  # fmt: skip
    result = CliRunner().invoke(app, ["evaluate", "-c", str(ckpt), "--no-tta", "--out", "ev", "--device", "cpu",
                                      "--max-scenes", "1", "--latency-runs", "1", "--precision", "bf16"])  # fmt: skip
    assert result.exit_code == 0, result.output
    extra = json.loads((cli_dir / "ev" / "metrics.json").read_text())["models"][0]["extra"]
    assert extra["precision"] == "bf16" and 0.9 <= extra["argmax_agreement_with_fp32"] <= 1.0
    assert "ptv3 ran in bf16: its argmax equals fp32's on" in result.output
    assert "bf16" in json.loads((cli_dir / "ev" / "metrics.json").read_text())["models"][0]["latency"]["method"]
    fp32 = CliRunner().invoke(app, ["evaluate", "-c", str(ckpt), "--no-tta", "--out", "ev32", "--device", "cpu",
                                    "--max-scenes", "1", "--latency-runs", "0"])  # fmt: skip
    assert fp32.exit_code == 0, fp32.output
    row = json.loads((cli_dir / "ev32" / "metrics.json").read_text())["models"][0]
    assert row["extra"]["precision"] == "fp32" and "argmax_agreement_with_fp32" not in row["extra"]


def test_cli_defaults_to_the_distill_student(data_root: Path, cli_dir: Path) -> None:
    _checkpoint(cli_dir / "runs" / "student" / "model.pt", data_root)
    (cli_dir / "stages.yaml").write_text(
        "params:\n  distill:\n    out: runs/student\n  evaluate:\n    out: reports/ev\n"
        "    tta: false\nstages:\n  evaluate:\n    cmd: srkd evaluate\n    params: [evaluate.tta]\n"
    )
    result = CliRunner().invoke(app, ["evaluate", "--max-scenes", "1", "--latency-runs", "0"])
    assert result.exit_code == 0, result.output
    rows = json.loads((cli_dir / "reports" / "ev" / "metrics.json").read_text())["models"]
    assert rows[0]["name"] == "student" and rows[0]["split"]["tta_views"] == 1
    assert rows[0]["split"]["num_scenes"] == 1


def test_cli_scores_a_cached_teacher_next_to_a_checkpoint(data_root: Path, cli_dir: Path) -> None:
    scenes = ScanNetScenes(data_root, "val", "scannet")
    cache = _write_cache(data_root, scenes, ensemble=False)
    ckpt = _checkpoint(cli_dir / "student.pt", data_root)
    result = CliRunner().invoke(app, ["evaluate", "--cache", str(cache), "-c", str(ckpt), "--no-tta",
                                      "--max-scenes", "1", "--latency-runs", "0", "--out", "ev"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((cli_dir / "ev" / "metrics.json").read_text())["models"]
    assert [r["name"] for r in rows] == ["student", "oracle_teacher (cache)"]
    assert rows[1]["scores"]["miou"] == 1.0 and rows[1]["kind"] == "teacher-cache"
    assert "mean of 3 views" in rows[1]["split"]["scope"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("classes", "predicts 13 classes but dataset 'scannet' has 20"),
        ("split", "split folder"),
        ("missing", "does not exist"),
        ("nothing", "--checkpoint"),
        ("cache", "no teacher cache"),
    ],
)
def test_cli_bad_input_is_one_clear_error(data_root: Path, cli_dir: Path, case: str, message: str) -> None:
    good = _checkpoint(cli_dir / "good.pt", data_root)
    args = {
        "classes": ["-c", str(_checkpoint(cli_dir / "c13.pt", data_root, SCANNET20_CLASSES[:13]))],
        "split": ["-c", str(good), "--split", "test"],
        "missing": ["-c", str(good), "-c", str(cli_dir / "nope.pt")],
        "nothing": [],
        "cache": ["-c", str(good), "--cache", str(cli_dir / "no_cache")],
    }[case]
    result = CliRunner().invoke(app, ["evaluate", "--no-tta", "--latency-runs", "0", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_validation_and_evaluate_share_one_scorer(data_root: Path) -> None:
    from srkd.scoring import score_model

    scenes = ScanNetScenes(data_root, "val", "scannet")
    model = GroundTruthModel({s: np.where(np.arange(len(v)) % 3 == 0, 2, v) for s, v in
                              ((s, scenes.load(s).segment) for s in scenes.scene_ids)})  # fmt: skip
    row = evaluate_models(scenes, [EvalModel("m", model, ("color", "normal"), GRID)], tta=False,
                          latency_runs=0).rows[0]  # fmt: skip
    val = score_model(model, [scenes.load(s) for s in scenes.scene_ids], K, GRID, ("color", "normal"),
                      color_norm="pointcept")  # fmt: skip
    np.testing.assert_array_equal(val.confusion, row.scores.confusion)
    assert 0.3 < val.miou < 1.0  # a third of the points are wrong: the matrices are not trivial


def test_a_checkpoint_without_a_recorded_grid_takes_the_datasets(tmp_path):
    from srkd.evaluate.models import load_eval_model

    torch.manual_seed(0)
    model = create_model("test_spunet", num_classes=len(SCANNET20_CLASSES), in_channels=6)
    path = save_checkpoint(tmp_path / "bare.pt", model, class_names=SCANNET20_CLASSES,
                           feature_names=("color", "normal"), color_norm="pointcept")  # fmt: skip
    m = load_eval_model(path)
    assert m.grid_size is None and m.run_config is None  # filled in by evaluate_models
    assert load_eval_model(path, grid_size=0.05).grid_size == 0.05
