"""`srkd distill`: train a student against the cached teacher (or an online one)."""

from __future__ import annotations

from typing import Any

from pipeline.commands import options as O
from pipeline.commands._common import user_errors


@O.with_training_options
def distill(
    cache: O.DistillCache = None,
    out: O.TrainOut = None,
    student: O.Student = None,
    method: O.MethodOption = None,
    targets: O.TargetsOption = None,
    weight: O.Weight = None,
    online_teacher: O.OnlineTeacher = None,
    teacher_model: O.TeacherModel = None,
    teacher_color_norm: O.TeacherColorNorm = None,
    labelled_points: O.LabelledPoints = None,
    labelled_scenes: O.LabelledScenes = None,
    la_file: O.LaFile = None,
    lr_file: O.LrFile = None,
    label_seed: O.LabelSeed = None,
    **options: Any,
) -> None:
    """Distil a small student from the teacher cache (SRKD losses by default)."""
    cli = {**{k: v for k, v in locals().items() if k != "options"}, **options}
    with user_errors():
        from dataclasses import replace

        from pipeline.commands._training import run_with_progress
        from pipeline.params import parse_overrides, resolve
        from srkd.distill.config import DistillConfig
        from srkd.errors import ConfigError

        config = resolve(DistillConfig, "distill", {**cli, "weight": None})
        if cache is not None or online_teacher is not None:  # the CLI picks the teacher's side
            config = replace(config, cache=cache, online_teacher=online_teacher)
        elif config.online_teacher is not None:  # stages.yaml's online teacher wins over its cache
            config = replace(config, cache=None)
        if config.cache is None and config.online_teacher is None and config.method != "ce":
            raise ConfigError("srkd distill needs --cache DIR (from `srkd cache-teacher`) or "
                              "--online-teacher CKPT; or pass --method ce to train alone")
        config = replace(config, weight={**(config.weight or {}), **parse_overrides(weight or [])})
        run_with_progress(config.run_config(), "distill")
