"""`srkd train-teacher`: train any registered model with CE + Lovasz (no teacher)."""

from __future__ import annotations

from typing import Any

from pipeline.commands import options as O
from pipeline.commands._common import user_errors
from srkd.distill.config import TeacherConfig


@O.with_options(TeacherConfig)
def train_teacher(**cli: Any) -> None:
    """Train a model on ground truth alone (CE + Lovasz), e.g. a teacher for the demo."""
    with user_errors():
        from dataclasses import replace

        from pipeline.commands._training import run_with_progress
        from pipeline.params import command_defaults, resolve

        config = resolve(TeacherConfig, "teacher", cli)
        if config.data_root is None:  # the pipeline's dataset, as generate-synthetic writes it
            root = command_defaults("data").get("root")
            config = replace(config, data_root=root)
        run_with_progress(config.run_config(), "train-teacher")
