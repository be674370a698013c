"""One settings dataclass per command: its fields are the options, its defaults the only ones;
one resolver (CLI > stages.yaml > default); `--help` shows the effective default and its source;
bad choices are refused before torch is imported; RunConfig round-trips through JSON and reads
the train_params of checkpoints written by earlier versions."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline import params as P
from srkd.distill.config import DistillConfig, OptimConfig, RunConfig, TeacherConfig
from srkd.errors import ConfigError

from .conftest import REPO, WIDE


# the train_params of the demo teacher shipped up to commit c7fd241, as srkd 0.1 wrote them (no
# color_norm, teacher_color_norm or tensorboard; run.py's additions recipe and world_size)
DEMO_TEACHER_TRAIN_PARAMS = {
    "model": "demo_teacher", "out": "runs/teacher", "dataset": "scannet",
    "data_root": "/work/exp/data/teacher_rooms", "model_args": {}, "train_split": "train",
    "val_split": "val", "grid_size": 0.05, "method": "ce", "loss_overrides": {}, "targets": "view",
    "cache": None, "online_teacher": None, "teacher_model": None, "epochs": 30, "batch_size": 2,
    "optim": {"lr": 0.01, "weight_decay": 0.05, "block_lr_scale": 1.0, "block_keyword": "block",
              "pct_start": 0.5, "div_factor": 10.0, "final_div_factor": 1000.0, "grad_clip": None},
    "workers": 0, "seed": 0, "eval_every": 5, "checkpoint_every": 100, "max_points": 102400,
    "mix3d_prob": 0.8, "augment": True, "repeats": 1, "val_max_scenes": None, "amp": True,
    "device": "cpu", "resume": False,
    "recipe": {"method": "ce", "dataset": "scannet", "weights": {"ce": 1.0, "lovasz": 1.0},
               "temperature": 2.0, "tau": 2.0, "n_relation_points": 2048},
    "world_size": 1,
}  # fmt: skip


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_configs_and_a_refused_choice_import_no_torch():
    # one process: the configs import light, and typer refuses a bad choice before torch loads
    code = (
        "import sys\n"
        "import srkd.distill.config, srkd.cache_teacher.config, srkd.evaluate.config\n"
        "import srkd.predict.config, srkd.data.synthetic.config, pipeline.params\n"
        "heavy = lambda: sorted(m for m in ('torch', 'spconv', 'zarr') if m in sys.modules)\n"
        "print('configs', heavy())\n"
        "from cli import app\n"
        "for argv in (['distill', '--method', 'foo'], ['evaluate', '--device', 'gpu0'],\n"
        "             ['cache-teacher', '--codec', 'zip']):\n"
        "    try:\n"
        "        app(argv, prog_name='srkd')\n"
        "    except SystemExit as e:\n"
        "        print(argv[0], e.code, heavy())\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == [
        "configs []", "distill 2 []", "evaluate 2 []", "cache-teacher 2 []"], result.stdout + result.stderr
    assert "'foo' is not one of" in result.stderr and "'gpu0' is not a device" in result.stderr


@pytest.mark.parametrize("command", sorted(P.COMMAND_CONFIGS))
def test_config_fields_are_the_command_options(command):
    import importlib

    from cli import COMMANDS

    module, attr = dict(COMMANDS)[command].split(":")
    function = getattr(importlib.import_module(module), attr)
    options = set(inspect.signature(function).parameters) - {"inputs"}  # predict's arguments
    fields = {f.name for f in dataclasses.fields(P.config_class(command))}
    assert options == fields
    for name, parameter in inspect.signature(function).parameters.items():
        if command == "predict" and name in ("inputs", "checkpoint"):
            continue  # required: no default anywhere
        assert parameter.default is None, f"{command} --{name}: the default belongs in the config"


def test_resolver_precedence_cli_over_stages_over_default(project):
    (project / "stages.yaml").write_text(
        "params:\n  distill:\n    epochs: 40\n    student: s_yaml\n    weight_decay: 5e-3\n"
        "    weights: {kl: 2}\n  data:\n    root: rooms\nstages: {}\n")
    cfg = P.resolve(DistillConfig, "distill", {"epochs": 3, "student": None})
    assert (cfg.epochs, cfg.student, cfg.weight_decay, cfg.weight) == (3, "s_yaml", 0.005, {"kl": 2})
    assert cfg.batch_size == RunConfig.batch_size and cfg.method == "srkd"
    # a renamed key: generate-synthetic's --out is params.data.root
    from srkd.data.synthetic.config import SyntheticConfig

    assert P.resolve(SyntheticConfig, "data", {}).out == Path("rooms")
    # srkd run --set reaches the command through SRKD_SET
    os.environ["SRKD_SET"] = '{"distill.epochs": 7}'
    try:
        assert P.resolve(DistillConfig, "distill", {}).epochs == 7
    finally:
        del os.environ["SRKD_SET"]
    assert P.resolve(DistillConfig, "distill", {}).epochs == 40


def test_a_stages_value_of_the_wrong_type_names_file_line_and_key(project):
    (project / "stages.yaml").write_text("params:\n  cache:\n    views: two\nstages: {}\n")
    from srkd.cache_teacher.config import CacheTeacherConfig

    with pytest.raises(ConfigError, match=r"stages\.yaml:3: params\.cache\.views: 'two' is not a whole"):
        P.resolve(CacheTeacherConfig, "cache", {})


def test_stages_yaml_is_read_once(project, monkeypatch):
    import pipeline.spec

    (project / "stages.yaml").write_text("params:\n  distill:\n    epochs: 4\nstages: {}\n")
    calls = []
    real = pipeline.spec.load_spec
    monkeypatch.setattr(pipeline.spec, "load_spec", lambda path: calls.append(path) or real(path))
    for section in ("distill", "data", "distill", "evaluate"):
        P.command_defaults(section)
    P.resolve(TeacherConfig, "teacher", {})
    assert len(calls) == 1
    (project / "stages.yaml").write_text("params:\n  distill:\n    epochs: 44\nstages: {}\n")
    assert P.command_defaults("distill")["epochs"] == 44 and len(calls) == 2  # a changed file


def test_help_shows_the_effective_default_and_its_source(project):
    runner = CliRunner()
    out = runner.invoke(app, ["distill", "--help"], env=WIDE).output
    assert "[default: 100]" in out and "[default: ptv3_half]" in out
    assert "the dataset's:" in out and "0.02 scannet / scannet200" in out  # --grid-size: per dataset
    (project / "stages.yaml").write_text("params:\n  distill:\n    epochs: 40\nstages: {}\n")
    out = runner.invoke(app, ["distill", "--help"], env=WIDE).output
    assert "[default: 40 (stages.yaml)]" in out and "[default: 100]" not in out
    (project / "stages.yaml").write_text("params:\n  distill:\n    epoch: 40\nstages: {}\n")
    result = runner.invoke(app, ["distill", "--help"], env=WIDE)  # invalid: built-ins shown
    assert result.exit_code == 0 and "[default: 100]" in result.output
    out = runner.invoke(app, ["cache-teacher", "--help"], env=WIDE).output
    from srkd.types import DEFAULT_CODEC

    assert f"[default: {DEFAULT_CODEC}]" in out and "[default: on when --views > 1]" in out


def test_distill_defaults_build_the_release_run_config():
    expected = RunConfig(model="ptv3_half", out=Path("runs/student"), method="srkd",
                         optim=OptimConfig(weight_decay=None))
    assert DistillConfig().run_config() == expected
    teacher = TeacherConfig(split="trainval", mix3d=0.5, val_split="").run_config()
    assert (teacher.model, teacher.out, teacher.method, teacher.dataset) == (
        "ptv3_base", Path("runs/teacher"), "ce", "scannet")
    assert (teacher.train_split, teacher.mix3d_prob, teacher.val_split) == ("trainval", 0.5, None)


def test_run_config_round_trips_through_json():
    cfg = DistillConfig(cache=Path("c"), weight={"kl": 2.0}, lr=0.01).run_config()
    assert RunConfig.from_json(cfg.to_json()) == cfg
    assert cfg.train_params() == cfg.to_json()
    with pytest.raises(ConfigError, match="unknown key"):
        RunConfig.from_json({**cfg.to_json(), "recipe": {}})


def test_old_checkpoints_train_params_read_back_typed():
    cfg = RunConfig.from_train_params(DEMO_TEACHER_TRAIN_PARAMS)
    assert cfg.model == "demo_teacher" and cfg.data_root == Path("/work/exp/data/teacher_rooms")
    assert cfg.optim.lr == 0.01 and cfg.grid_size == 0.05 and cfg.eval_every == 5
    assert cfg.tensorboard is False and cfg.color_norm == RunConfig.color_norm  # absent: default
    # RunConfig's field names are what checkpoints record: a run started by the previous version
    # resumes (srkd.distill.run compares train_params key by key)
    new_keys = {"color_norm", "teacher_color_norm", "tensorboard", "labelled_points",
                "labelled_scenes", "la_file", "lr_file", "label_seed"}
    assert set(cfg.to_json()) == set(DEMO_TEACHER_TRAIN_PARAMS) - {"recipe", "world_size"} | new_keys
    # option names instead of field names; unknown keys left out
    old = RunConfig.from_train_params({"student": "s", "mix3d": 0.1, "split": "t", "foo": 1})
    assert (old.model, old.mix3d_prob, old.train_split, old.out) == ("s", 0.1, "t", Path("."))
    with pytest.raises(ConfigError, match="wrong type"):
        RunConfig.from_train_params({"model": "m", "optim": {"nope": 1, "lr": 0.1}, "out": 3})


def test_codec_names_are_the_codecs_the_cache_implements():
    from srkd.cache.codecs import _CODECS, _DEFAULT_PARAMS
    from srkd.types import CODEC_NAMES, DEFAULT_CODEC

    assert tuple(_CODECS) == CODEC_NAMES == tuple(_DEFAULT_PARAMS)
    assert DEFAULT_CODEC in CODEC_NAMES


def test_an_empty_list_key_in_stages_yaml_means_no_entries():
    from pipeline.coerce import coerce
    from srkd.evaluate.config import EvalConfig

    assert coerce(None, EvalConfig, "checkpoint", "stages.yaml:9: params.evaluate.checkpoints") == []
