"""stages.yaml parsing, fingerprints and `srkd run` re-running exactly what changed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.params import apply_overrides, parse_overrides
from pipeline.runner import StageFailed, run_pipeline
from pipeline.spec import load_spec
from srkd.errors import ConfigError

PY = sys.executable

# Each stage appends its name to runs.log, so a test can see exactly which stages ran.
SPEC = f"""\
params:
  gen: {{n: 3}}
  train: {{steps: 2, lr: 0.1}}
stages:
  gen:
    cmd: {PY} -c "import sys; open('data.txt','w').write('x'*3); open('runs.log','a').write('gen\\n')"
    params: [gen.n]
    outs: [data.txt]
  train:
    cmd: {PY} -c "open('model.txt','w').write(open('data.txt').read()); open('runs.log','a').write('train\\n')"
    deps: [data.txt]
    params: [train.steps]
    outs: [model.txt]
  report:
    cmd: {PY} -c "open('report.txt','w').write('r'); open('runs.log','a').write('report\\n')"
    deps: [model.txt]
    outs: [report.txt]
"""


def write_spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "stages.yaml"
    path.write_text(text)
    return path


def runs(tmp_path: Path) -> list[str]:
    log = tmp_path / "runs.log"
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_second_run_runs_nothing(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    run_pipeline(spec)
    assert runs(tmp_path) == ["gen", "train", "report"]
    results = run_pipeline(spec)
    assert runs(tmp_path) == [] and not any(r.ran for r in results)


def test_param_change_reruns_only_dependants(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    run_pipeline(spec)
    runs(tmp_path)
    results = run_pipeline(spec, overrides=parse_overrides(["train.steps=5"]))
    assert runs(tmp_path) == ["train"]  # model.txt content is unchanged, so report is skipped
    assert results[1].reasons == ["param train.steps changed (2 -> 5)"]
    # lr is not a declared param of any stage
    run_pipeline(spec, overrides={"train.steps": 5, "train.lr": 9})
    assert runs(tmp_path) == []


def test_dep_change_and_missing_output(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    run_pipeline(spec)
    runs(tmp_path)
    (tmp_path / "data.txt").write_text("changed")
    res = run_pipeline(spec)
    # gen re-creates its edited output; train sees data.txt as it last saw it and is skipped
    assert runs(tmp_path) == ["gen"]
    assert res[0].reasons == ["output data.txt was modified after the stage ran"]
    (tmp_path / "report.txt").unlink()
    res = run_pipeline(spec)
    assert runs(tmp_path) == ["report"]
    assert res[2].reasons == ["output report.txt is missing"]


def test_failed_stage_is_not_locked_and_run_resumes(tmp_path):
    text = SPEC.replace("open('report.txt','w').write('r');", "import os; os._exit(3);")
    spec = load_spec(write_spec(tmp_path, text))
    with pytest.raises(StageFailed, match="report"):
        run_pipeline(spec)
    assert runs(tmp_path) == ["gen", "train"]
    spec = load_spec(write_spec(tmp_path))  # fixed command
    run_pipeline(spec)
    assert runs(tmp_path) == ["report"]  # finished stages are not redone


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("stages:\n  a:\n    cmd: x\n    outz: [y]\n", [":4:", "stages.a", "outz"]),
        ("stages:\n  a:\n    deps: [y]\n", [":3:", "missing 'cmd'"]),
        ("params: {a: 1}\nstages:\n  a:\n    cmd: x\n    params: [b.c]\n", [":5:", "'b.c'"]),
        ("stages:\n  a:\n    cmd: x\n  a:\n    cmd: y\n", [":4:", "twice"]),
        ("stages: [1, 2\n", ["not valid YAML"]),
        (
            "stages:\n  a: {cmd: x, deps: [b.out], outs: [a.out]}\n"
            "  b: {cmd: y, deps: [a.out], outs: [b.out]}\n",
            ["cycle"],
        ),
    ],
)
def test_malformed_spec_names_key_and_line(tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        load_spec(write_spec(tmp_path, textwrap.dedent(text)))
    for word in words:
        assert word in str(info.value)


def test_manual_stage_runs_only_when_named(tmp_path):
    # `retrain` is manual: the default run skips it; naming a stage that needs it runs both
    text = SPEC + f"""\
  retrain_data:
    cmd: {PY} -c "open('big.txt','w').write('b'); open('runs.log','a').write('retrain_data\\n')"
    outs: [big.txt]
    manual: true
  retrain:
    cmd: {PY} -c "open('teacher.txt','w').write('t'); open('runs.log','a').write('retrain\\n')"
    deps: [big.txt]
    outs: [teacher.txt]
    manual: true
"""
    spec = load_spec(write_spec(tmp_path, text))
    assert spec.stages["retrain"].manual and not spec.stages["train"].manual
    run_pipeline(spec)
    assert runs(tmp_path) == ["gen", "train", "report"]
    run_pipeline(spec, targets=["retrain"])
    assert runs(tmp_path) == ["retrain_data", "retrain"]
    run_pipeline(spec)  # still nothing to do by default
    assert runs(tmp_path) == []
    with pytest.raises(ConfigError, match=r":\d+: stages.a.manual must be true or false"):
        load_spec(write_spec(tmp_path, "stages:\n  a:\n    cmd: x\n    manual: sometimes\n"))


def test_overrides_must_name_existing_params():
    params = {"distill": {"epochs": 3}}
    assert apply_overrides(params, {"distill.epochs": 5})["distill"]["epochs"] == 5
    assert params["distill"]["epochs"] == 3
    with pytest.raises(ConfigError, match="no such parameter"):
        apply_overrides(params, {"distill.epoch": 5})
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["distill.epochs"])


def test_killed_run_resumes_at_the_unfinished_stage(tmp_path):
    # `train` sleeps while no file `go` exists, so the runner is SIGKILLed while it runs
    wait = "__import__('time').sleep(0 if __import__('os').path.exists('go') else 60); "
    spec_path = write_spec(tmp_path, SPEC.replace("open('model.txt','w')", wait + "open('model.txt','w')"))
    proc = subprocess.Popen([PY, "-m", "cli", "run", "--file", str(spec_path)], cwd=tmp_path,
                            start_new_session=True)
    lock = tmp_path / "stages.lock"
    deadline = time.time() + 60
    while time.time() < deadline and not (lock.exists() and "gen" in json.loads(lock.read_text())["stages"]):
        time.sleep(0.1)
    time.sleep(0.5)  # `train` has started and is sleeping
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert runs(tmp_path) == ["gen"]
    assert not (tmp_path / "model.txt").exists()
    (tmp_path / "go").write_text("")
    results = run_pipeline(load_spec(spec_path))
    assert [r.name for r in results if r.ran] == ["train", "report"]
    assert runs(tmp_path) == ["train", "report"]


def test_persistent_output_survives_a_crash_but_not_a_param_change(tmp_path):
    # the stage appends to cache/log, like a resumable cache adding scenes
    text = f"""\
params:
  cache: {{views: 1}}
stages:
  cache:
    cmd: {PY} -c "import os; os.makedirs('cache', exist_ok=True); open('cache/log','a').write('x'); os.path.exists('fail') and os._exit(1)"
    params: [cache.views]
    outs:
      - cache: {{persist: true}}
"""
    spec = load_spec(write_spec(tmp_path, text))
    (tmp_path / "fail").write_text("")
    with pytest.raises(StageFailed):
        run_pipeline(spec)
    (tmp_path / "fail").unlink()
    run_pipeline(spec)  # first run after a crash: the partial output is kept and resumed
    assert (tmp_path / "cache/log").read_text() == "xx"
    run_pipeline(spec, overrides={"cache.views": 2})  # other inputs: start from scratch
    assert (tmp_path / "cache/log").read_text() == "x"


def test_one_run_per_project_folder_and_held_outputs_are_not_cleared(tmp_path):
    from srkd.errors import CacheError
    from srkd.locking import locked_dir

    spec = load_spec(write_spec(tmp_path))
    with (locked_dir(tmp_path, "pipeline folder", CacheError),  # as another `srkd run` holds it
          pytest.raises(StageFailed, match=r"pipeline folder .* by another srkd process")):
        run_pipeline(spec)
    assert runs(tmp_path) == []
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "partial.txt").write_text("being written")
    dir_spec = load_spec(write_spec(tmp_path, f"""\
stages:
  writer:
    cmd: {PY} -c "import os; os.makedirs('out', exist_ok=True); open('out/done.txt','w').write('x')"
    outs: [out]
"""))
    with (locked_dir(out_dir, "run folder", CacheError),  # a leftover process still writes it
          pytest.raises(StageFailed, match=r"stage 'writer' output .* by another srkd process")):
        run_pipeline(dir_spec)
    assert (out_dir / "partial.txt").read_text() == "being written"  # not cleared under it
    run_pipeline(dir_spec)
    assert sorted(p.name for p in out_dir.iterdir()) == ["done.txt"]
