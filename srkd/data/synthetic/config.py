"""The settings of `srkd generate-synthetic`: `SyntheticConfig`, one field per option (field =
option name; stages.yaml params.data names `--out` as `root`), the only home of the command's
defaults. numpy-level imports only (the CLI imports it before torch)."""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srkd.data.synthetic.lidar import LidarConfig
from srkd.settings import setting

ROOM_POINTS = 30_000
"""Points per generated room (--points)."""
KEYFRAMES = 4
"""Lidar keyframes per simulated drive (--keyframes)."""
SWEEPS = 0
"""Extra lidar sweeps written between keyframes (--sweeps)."""
VAL_FRACTION = 0.25
"""Share of the generated scenes written to the val split (--val-fraction)."""
INDOOR_SCENES = 24
"""Rooms generated when neither --scenes nor params.data.scenes is given."""
OUTDOOR_SCENES = 8
"""Drives generated with --kind outdoor when neither --scenes nor params.data.scenes is given."""


@dataclass(frozen=True)
class SyntheticConfig:
    """`srkd generate-synthetic`'s settings. Only out (root), scenes, seed, val_fraction and
    points can come from stages.yaml; the generator's shape options are command-line only."""

    out: Path | None = setting(None, key="root", note="stages.yaml data.root")
    scenes: int | None = setting(None, note=f"{INDOOR_SCENES} indoor, {OUTDOOR_SCENES} outdoor")
    seed: int = setting(0)
    val_fraction: float = setting(VAL_FRACTION)
    points: int = setting(ROOM_POINTS)
    workers: int = setting(1, cli_only=True)
    kind: str = setting("indoor", cli_only=True)
    fmt: str = setting("nuscenes", cli_only=True)
    keyframes: int = setting(KEYFRAMES, cli_only=True)
    sweeps: int = setting(SWEEPS, cli_only=True)
    beams: int = setting(LidarConfig.beams, cli_only=True)
    azimuth_steps: int = setting(LidarConfig.azimuth_steps, cli_only=True)

    def scene_count(self) -> int:
        """--scenes, else the kind's default."""
        if self.scenes is not None:
            return int(self.scenes)
        return OUTDOOR_SCENES if self.kind == "outdoor" else INDOOR_SCENES
