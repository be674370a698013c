"""`srkd distill`: train a student against the cached teacher (or an online one)."""

from __future__ import annotations

from typing import Any

from pipeline.commands import options as O
from pipeline.commands._common import user_errors
from srkd.distill.config import DistillConfig


@O.with_options(DistillConfig)
def distill(**cli: Any) -> None:
    """Distil a small student from the teacher cache (SRKD losses by default)."""
    with user_errors():
        from dataclasses import replace

        from pipeline.commands._training import run_with_progress
        from pipeline.params import parse_overrides, resolve
        from srkd.errors import ConfigError

        config = resolve(DistillConfig, "distill", {**cli, "weight": None})
        if cli["cache"] is not None or cli["online_teacher"] is not None:  # the CLI picks the teacher's side
            config = replace(config, cache=cli["cache"], online_teacher=cli["online_teacher"])
        elif config.online_teacher is not None:  # stages.yaml's online teacher wins over its cache
            config = replace(config, cache=None)
        if config.cache is None and config.online_teacher is None and config.method != "ce":
            raise ConfigError("srkd distill needs --cache DIR (from `srkd cache-teacher`) or "
                              "--online-teacher CKPT; or pass --method ce to train alone")
        config = replace(config, weight={**(config.weight or {}), **parse_overrides(cli["weight"] or [])})
        run_with_progress(config.run_config(), "distill")
