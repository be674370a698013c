"""`srkd cache-teacher` and srkd.cache_teacher.views: views, targets, determinism, resume, refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from typer.testing import CliRunner

from srkd.cache import CacheReader, CodecSpec
from srkd.cache.inspect import verify
from srkd.types import DEFAULT_CODEC
from srkd.cache_teacher.build import build_cache
from srkd.cache_teacher.config import CacheJob
from srkd.cache_teacher.plan import plan_cache
from srkd.cache_teacher.views import ViewSettings, spec_view_settings
from srkd.data.scannet import get_dataset_spec, load_scene
from srkd.data.transforms import CenterShift, Compose, replay
from srkd.errors import CacheError, CheckpointError, ConfigError
from srkd.inference import infer_view
from srkd.models import file_sha256
from srkd.models.teacher import TeacherRef, load_teacher

from .conftest import GRID, SCENES, make_teacher

DATASET = get_dataset_spec("scannet")


def job_for(root: Path, ckpt: Path, out: Path, **changes) -> CacheJob:
    base = CacheJob(
        dataset="scannet", data_root=root, split="train", teacher=TeacherRef(ckpt), out=out,
        views=ViewSettings(views=3, seed=7), grid_size=GRID, ensemble=True, device="cpu",
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def built(dataset_root: Path, teacher_ckpt: Path, tmp_path_factory: pytest.TempPathFactory):
    """A 3-view + ensemble int8 cache of the three tiny scenes, built in-process."""
    job = job_for(dataset_root, teacher_ckpt, tmp_path_factory.mktemp("built") / "cache")
    report = build_cache(job, workers=0)
    return job, report


def test_built_cache_verifies_with_every_scene_and_view(built, teacher_ckpt: Path) -> None:
    job, report = built
    assert sorted(report.written) == list(SCENES) and report.skipped == []
    assert verify(job.out) == []
    reader = CacheReader(job.out)
    assert reader.scene_ids == SCENES
    for scene in SCENES:
        assert reader.entries(scene) == [0, 1, 2, "ensemble"]
        n = reader.num_points(scene)
        logits, feature = reader.read_all(scene, 2)
        assert logits.shape == (n, 20) and feature.shape == (n, 8)
    spec = reader.spec
    assert spec.teacher_sha256 == file_sha256(teacher_ckpt)
    assert spec.teacher_name == "test_spunet" and spec.dataset == "scannet" and spec.split == "train"
    assert Path(spec.data_root).is_absolute() and spec.views == 3 and spec.ensemble
    assert spec.class_names == DATASET.class_names and spec.grid_size == GRID
    assert spec_view_settings(spec) == job.views


def test_view0_is_canonical_and_replay_reproduces_teacher_geometry(built, dataset_root: Path) -> None:
    job, _ = built
    reader = CacheReader(job.out)
    for scene in SCENES[:2]:
        raw = load_scene(dataset_root, "train", scene, DATASET)
        p0 = reader.view_params(scene, 0)
        assert p0["canonical"] is True and [e["name"] for e in p0["record"]] == ["center_shift"]
        canonical, _ = Compose([CenterShift(apply_z=True)])(raw, np.random.default_rng(123))
        np.testing.assert_array_equal(replay(raw, p0["record"]).coord, canonical.coord)
        for v in (1, 2):
            params = reader.view_params(scene, v)
            assert params["view"] == v and params["canonical"] is False
            teacher_view, _ = job.views.draw(raw, v)  # what the teacher saw
            replayed = replay(raw, params["record"])
            np.testing.assert_array_equal(replayed.coord, teacher_view.coord)
            np.testing.assert_array_equal(replayed.normal, teacher_view.normal)
        assert reader.view_params(scene, 1)["record"] != reader.view_params(scene, 2)["record"]


def test_view0_targets_match_direct_teacher_inference(built, dataset_root: Path, teacher_ckpt: Path) -> None:
    job, _ = built
    model, _ = load_teacher(TeacherRef(teacher_ckpt), DATASET)
    reader = CacheReader(job.out)
    scene = SCENES[1]
    raw = load_scene(dataset_root, "train", scene, DATASET)
    view = replay(raw, reader.view_params(scene, 0)["record"])
    assert reader.spec.color_norm == "legacy"  # what the teacher checkpoint records
    direct = infer_view(model, view, GRID, DATASET.feature_names, with_feature=True, num_points=raw.num_points,
                        color_norm="legacy")
    assert direct.votes.max() > 1  # the test exercises fragment averaging
    other = infer_view(model, view, GRID, DATASET.feature_names, with_feature=True, num_points=raw.num_points,
                       color_norm="pointcept")
    logits, feature = reader.read_all(scene, 0)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    assert np.abs(probs - direct.probs).max() < 0.02  # int8 codec error on probabilities
    cos = (feature * direct.features).sum(1) / (
        np.linalg.norm(feature, axis=1) * np.linalg.norm(direct.features, axis=1) + 1e-12
    )
    assert cos.min() > 0.98
    # the cache holds the teacher's view of legacy colours, not of colours scaled as new runs do
    err = np.abs(feature - direct.features).mean()
    assert err < 0.5 * np.abs(feature - other.features).mean(), (err, np.abs(feature - other.features).mean())
    ens_logits, _ = reader.read_all(scene, "ensemble")
    mean_p = np.mean([torch.softmax(torch.from_numpy(reader.read_all(scene, v)[0]), 1).numpy() for v in range(3)], 0)
    assert np.abs(torch.softmax(torch.from_numpy(ens_logits), 1).numpy() - mean_p).max() < 0.03


def test_rebuild_gives_identical_decoded_targets(built, tmp_path: Path) -> None:
    job, _ = built
    again = dataclasses.replace(job, out=tmp_path / "again")
    build_cache(again, workers=0)
    a, b = CacheReader(job.out), CacheReader(again.out)
    assert a.fingerprint == b.fingerprint
    for scene in SCENES:
        for view in a.entries(scene):
            for x, y in zip(a.read_all(scene, view), b.read_all(scene, view), strict=True):
                np.testing.assert_array_equal(x, y)
        assert [a.view_params(scene, v) for v in range(3)] == [b.view_params(scene, v) for v in range(3)]


def test_resume_skips_committed_and_redoes_uncommitted(dataset_root: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    job = job_for(dataset_root, teacher_ckpt, tmp_path / "cache", views=ViewSettings(views=1), ensemble=False,
                  schema_version=2)  # a group per scene (schema 3: tests/cache_teacher/test_packed_build.py)
    first = build_cache(job, workers=0, max_scenes=2)
    assert first.written == list(SCENES[:2])
    marker = tmp_path / "cache" / SCENES[0] / "zarr.json"
    stamp = marker.stat().st_mtime_ns
    # A crashed write: scene 1's marker never got set.
    zarr.open_group(tmp_path / "cache", mode="r+")[SCENES[1]].update_attributes({"committed": False})
    second = build_cache(job, workers=0)
    assert second.skipped == [SCENES[0]] and sorted(second.written) == sorted(SCENES[1:])
    assert marker.stat().st_mtime_ns == stamp  # the committed scene was not rewritten
    assert verify(job.out) == [] and CacheReader(job.out).scene_ids == SCENES
    third = build_cache(job, workers=0)
    assert third.written == [] and third.skipped == list(SCENES)


@pytest.mark.parametrize(
    ("change", "field"),
    [("checkpoint", "teacher_sha256"), ("views", "views"), ("codec", "codec.name"), ("seed", "view_settings.seed")],
)
def test_stale_cache_is_refused_naming_the_difference(
    built, tmp_path: Path, change: str, field: str
) -> None:
    job, _ = built
    if change == "checkpoint":
        other = job_for(job.data_root, make_teacher(tmp_path / "other.pt", seed=1), job.out)
    elif change == "views":
        other = dataclasses.replace(job, views=ViewSettings(views=2, seed=7))
    elif change == "codec":
        other = dataclasses.replace(job, codec=CodecSpec.create("float16"))
    else:
        other = dataclasses.replace(job, views=ViewSettings(views=3, seed=8))
    with pytest.raises(CacheError, match="--overwrite") as info:
        plan_cache(other)
    assert field in str(info.value)
    assert verify(job.out) == []  # the refused run touched nothing


def test_overwrite_replaces_a_cache_built_with_other_settings(dataset_root: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    job = job_for(dataset_root, teacher_ckpt, tmp_path / "c", views=ViewSettings(views=1), ensemble=False)
    build_cache(job, workers=0, max_scenes=1)
    changed = dataclasses.replace(job, codec=CodecSpec.create("float16"))
    report = build_cache(changed, workers=0, max_scenes=1, overwrite=True)
    assert report.written == [SCENES[0]] and CacheReader(job.out).spec.codec.name == "float16"


def test_refuses_to_create_a_cache_in_a_foreign_directory(dataset_root: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(CacheError, match="not a teacher cache"):
            plan_cache(job_for(dataset_root, teacher_ckpt, out), overwrite=overwrite)
    assert (out / "notes.txt").read_text() == "keep me"


def test_bad_settings_give_clear_errors(dataset_root: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--views >= 2"):
        plan_cache(job_for(dataset_root, teacher_ckpt, tmp_path / "c", views=ViewSettings(views=1)))
    with pytest.raises(ConfigError, match="views must be >= 1"):
        ViewSettings(views=0)
    with pytest.raises(CheckpointError, match="does not exist"):
        plan_cache(job_for(dataset_root, tmp_path / "missing.pt", tmp_path / "c"))


def test_pointcept_checkpoint_with_teacher_model(dataset_root: Path, tmp_path: Path) -> None:
    from srkd.models import create_model

    model = create_model("test_spunet", num_classes=20, in_channels=6)
    ckpt = tmp_path / "model_best.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    job = job_for(dataset_root, ckpt, tmp_path / "c", teacher=TeacherRef(ckpt, "test_spunet"))
    _, spec, todo, _, _ = plan_cache(job)
    assert spec.teacher_name == "test_spunet" and spec.teacher_args == {"num_classes": 20, "in_channels": 6}
    assert [s for _, samples in todo for s in samples] == list(SCENES)
    with pytest.raises(CheckpointError):  # another class count does not fit the head
        load_teacher(TeacherRef(make_teacher(tmp_path / "t13.pt", num_classes=13), "test_spunet"), DATASET)


@pytest.mark.slow
def test_two_dask_workers_writing_at_once_lose_nothing(built, tmp_path: Path) -> None:
    job, _ = built
    parallel = dataclasses.replace(job, out=tmp_path / "dask")
    done: list[str] = []
    report = build_cache(parallel, workers=2, on_scene=lambda e: done.append(e.scene_id))
    assert report.workers == 2
    assert sorted(done) == sorted(report.written) == list(SCENES)
    assert verify(parallel.out) == [] and CacheReader(parallel.out).scene_ids == SCENES
    a, b = CacheReader(parallel.out), CacheReader(job.out)
    for scene in SCENES:
        assert a.entries(scene) == b.entries(scene)
        for view in a.entries(scene):
            for x, y in zip(a.read_all(scene, view), b.read_all(scene, view), strict=True):
                # Equal in practice; a last-bit difference of a CPU GEMM kernel in another
                # process may move one int8 code (<= 24/127), never a whole row or scene.
                assert np.abs(x - y).max() <= 0.2 and (x != y).mean() < 1e-3


# ---- the CLI ---------------------------------------------------------------------------------


def _cli(args: list[str]):
    from cli import app

    return CliRunner().invoke(app, ["cache-teacher", *args])


def test_cli_builds_then_resumes(dataset_root: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    args = ["--teacher", str(teacher_ckpt), "--data-root", str(dataset_root), "--out", str(out),
            "--workers", "0", "--device", "cpu", "--grid-size", str(GRID), "--max-scenes", "2"]  # fmt: skip
    result = _cli(args)
    assert result.exit_code == 0, result.output
    assert "wrote 2 scene(s), skipped 0" in result.output and "bytes/point" in result.output
    again = _cli(args)
    assert again.exit_code == 0 and "wrote 0 scene(s), skipped 2" in again.output
    assert CacheReader(out).spec.codec == CodecSpec.create(DEFAULT_CODEC) and not CacheReader(out).spec.ensemble


def test_cli_takes_defaults_from_stages_yaml(
    dataset_root: Path, teacher_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "from_yaml"
    (tmp_path / "stages.yaml").write_text(
        f"params:\n  data:\n    root: {dataset_root}\n"
        f"  cache:\n    teacher: {teacher_ckpt}\n    out: {out}\n    views: 2\n    seed: 5\n"
        f"    codec: float16\n    grid_size: {GRID}\n    workers: 0\n"
        "stages:\n  cache:\n    cmd: srkd cache-teacher\n    params: [cache.views]\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    monkeypatch.delenv("SRKD_SET", raising=False)
    result = _cli(["--device", "cpu", "--max-scenes", "1"])
    assert result.exit_code == 0, result.output
    spec = CacheReader(out).spec
    assert (spec.views, spec.codec.name, spec.view_settings["seed"], spec.ensemble) == (2, "float16", 5, True)


def test_cli_missing_checkpoint_and_other_class_count(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no stages.yaml here: built-in defaults only
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    common = ["--data-root", str(dataset_root), "--out", str(tmp_path / "c"), "--workers", "0", "--device", "cpu"]
    missing = _cli(["--teacher", str(tmp_path / "nope.pt"), *common])
    assert missing.exit_code == 1 and "nope.pt does not exist" in missing.output
    other = _cli(["--teacher", str(make_teacher(tmp_path / "t13.pt", num_classes=13)), *common])
    assert other.exit_code == 1 and "13 classes, 20 expected" in other.output
    no_teacher = _cli(common)
    assert no_teacher.exit_code == 1 and "--teacher" in no_teacher.output
    assert not (tmp_path / "c").exists()  # nothing was created


def test_cli_pointcept_ptv3_teacher_records_decoder_and_colour(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from srkd.models import create_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    model = create_model("test_ptv3", num_classes=20, in_channels=6)
    ckpt = tmp_path / "model_best.pth"
    torch.save({"state_dict": {(f"module.{k}" if k.startswith("seg_head") else f"module.backbone.{k}"): v
                               for k, v in model.state_dict().items()}}, ckpt)
    common = ["--teacher", str(ckpt), "--teacher-model", "test_ptv3", "--data-root", str(dataset_root),
              "--workers", "0", "--device", "cpu", "--grid-size", str(GRID), "--max-scenes", "1"]  # fmt: skip
    result = _cli([*common, "--out", str(tmp_path / "c1")])
    assert result.exit_code == 0, result.output
    spec = CacheReader(tmp_path / "c1").spec
    assert spec.teacher_args["unpooling"] == "v3m1" and spec.color_norm == "pointcept"  # the defaults
    result = _cli([*common, "--out", str(tmp_path / "c2"), "--unpooling", "v3m2", "--color-norm", "legacy"])
    assert result.exit_code == 0, result.output
    spec = CacheReader(tmp_path / "c2").spec
    assert spec.teacher_args["unpooling"] == "v3m2" and spec.color_norm == "legacy"


def test_cli_refuses_decoder_and_colour_options_an_srkd_checkpoint_contradicts(
    dataset_root: Path, teacher_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRKD_STAGES", raising=False)
    common = ["--teacher", str(teacher_ckpt), "--data-root", str(dataset_root), "--out", str(tmp_path / "c"),
              "--workers", "0", "--device", "cpu"]  # fmt: skip
    unpool = _cli([*common, "--unpooling", "v3m1"])
    assert unpool.exit_code == 1 and "--teacher-model" in unpool.output
    colour = _cli([*common, "--color-norm", "pointcept"])
    assert colour.exit_code == 1 and "'legacy' (recorded in the checkpoint)" in colour.output
    assert not (tmp_path / "c").exists()


def test_one_scene_worker_per_process_loads_the_teacher_once(
    dataset_root: Path, teacher_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from srkd.cache_teacher import plan, worker

    loads: list[str] = []

    def counting(ref, dataset, device):  # type: ignore[no-untyped-def]
        loads.append(str(device))
        return load_teacher(ref, dataset, device)

    monkeypatch.setattr(worker, "load_teacher", counting)
    monkeypatch.setattr(plan, "load_teacher", counting)
    job = job_for(dataset_root, teacher_ckpt, tmp_path / "cache", views=ViewSettings(views=1, seed=7),
                  ensemble=False)  # fmt: skip
    assert len(build_cache(job, workers=0).written) == len(SCENES)
    assert loads == ["cpu"]  # planning loads it on the CPU; the in-process scene tasks reuse it
    first = worker.WORKERS.get()
    assert worker.WORKERS.get() is first
    with monkeypatch.context() as m:
        m.setattr(worker.os, "getpid", lambda: -1)  # as a forked child sees it
        assert worker.WORKERS.get() is not first  # never the parent's write thread
