"""The settings of `srkd generate-synthetic`: `SyntheticConfig`, one field per option (field =
option name; stages.yaml params.data names `--out` as `root`), the only home of the command's
defaults. numpy-level imports only (the CLI imports it before torch)."""

# ruff: noqa: RUF009  (setting() returns a dataclasses.Field, like field())
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srkd.data.synthetic.lidar import LidarConfig
from srkd.settings import Flag, setting

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

    out: Path | None = setting(None, "Output root; scenes go to <out>/{train,val}/synthetic_NNNN/.",
                               key="root", note="stages.yaml data.root")
    scenes: int | None = setting(None, "Number of scenes (>= 1).",
                                 note=f"{INDOOR_SCENES} indoor, {OUTDOOR_SCENES} outdoor")
    seed: int = setting(0, "Dataset seed (>= 0); same seed, same files.")
    val_fraction: float = setting(VAL_FRACTION, "Share of scenes in the val split, in [0, 1).")
    points: int = setting(ROOM_POINTS, "Points per scene (>= 1000; indoor only).")
    workers: int = setting(1, Flag("Scenes generated in parallel (processes; indoor only).", min=1),
                           cli_only=True)
    kind: str = setting("indoor", Flag(
        "indoor: furnished rooms (ScanNet layout); outdoor: simulated 32-beam lidar drives.",
        choices=("indoor", "outdoor")), cli_only=True)
    fmt: str = setting("nuscenes", Flag(
        "Outdoor only: write the nuScenes-lidarseg release format (--dataset nuscenes) or "
        "SemanticKITTI's (--dataset semantickitti).", name="--format",
        choices=("nuscenes", "semantickitti")), cli_only=True)
    keyframes: int = setting(KEYFRAMES, Flag("Outdoor only: labelled scans per drive, 0.5 s apart.", min=1),
                             cli_only=True)
    sweeps: int = setting(SWEEPS, Flag(
        "Outdoor nuScenes only: unlabelled 20 Hz sweeps written before each keyframe (for "
        "multi-sweep reading).", min=0), cli_only=True)
    beams: int = setting(LidarConfig.beams, Flag("Outdoor only: lidar beams (nuScenes' HDL-32E has 32).", min=1),
                         cli_only=True)
    azimuth_steps: int = setting(LidarConfig.azimuth_steps, Flag(
        "Outdoor only: returns per beam and revolution.", min=8), cli_only=True)

    def scene_count(self) -> int:
        """--scenes, else the kind's default."""
        if self.scenes is not None:
            return int(self.scenes)
        return OUTDOOR_SCENES if self.kind == "outdoor" else INDOOR_SCENES
