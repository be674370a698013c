"""The JSON spec `srkd export` writes next to the network (`student.json`): standard library only.

It says everything a runtime needs besides the network file: the voxel size, the input features
and their normalisation, the classes, the index plan (levels, kernel sizes, curves, strides,
patch sizes), the network's inputs in order with their symbolic shapes, and where the weights
came from (srkd version, checkpoint file name and sha256).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from srkd.errors import ConfigError
from srkd.runtime.indices import IndexPlan

SPEC_NAME = "student.json"
SPEC_FORMAT = "srkd-student"
SPEC_VERSION = 1
NETWORK_FILES = {"onnx": "network.onnx", "pt2": "network.pt2"}
FEATURE_WIDTHS = {"coord": 3, "color": 3, "normal": 3, "strength": 1}
"""Per-point fields a runtime can feed, and their channels (as srkd.types.FEATURE_WIDTHS)."""


@dataclass(frozen=True)
class StudentSpec:
    """What `student.json` holds (see the module docstring).

    color_scale, color_shift: the network sees ``color * color_scale + color_shift`` (colours in
    0..255). inputs: {name: symbolic shape} in the network's argument order; output "logits"
    float32 (n, len(classes)).
    """

    network: str
    network_format: str
    grid_size: float
    features: tuple[str, ...]
    color_norm: str
    color_scale: float
    color_shift: float
    classes: tuple[str, ...]
    dataset: str
    plan: IndexPlan
    inputs: dict[str, tuple[str, ...]]
    model_name: str
    model_args: dict
    srkd_version: str
    checkpoint_name: str
    checkpoint_sha256: str
    opset: int | None = None
    check: dict = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return sum(FEATURE_WIDTHS[f] for f in self.features)

    def to_json(self) -> dict:
        d = asdict(self)
        d["plan"] = self.plan.to_json()
        return {"format": SPEC_FORMAT, "version": SPEC_VERSION, **d}

    def write(self, folder: Path) -> Path:
        path = Path(folder) / SPEC_NAME
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path


def read_spec(folder: str | Path) -> StudentSpec:
    """The StudentSpec of an export folder; ConfigError naming the folder when it is not one."""
    path = Path(folder) / SPEC_NAME
    if not path.is_file():
        raise ConfigError(f"{folder} is not an srkd export: it has no {SPEC_NAME} (write one with `srkd export`)")
    try:
        d = json.loads(path.read_text())
        if d.get("format") != SPEC_FORMAT:
            raise ConfigError(f"{path} is not an srkd student spec (format {d.get('format')!r})")
        if int(d.get("version", 0)) > SPEC_VERSION:
            raise ConfigError(f"{path} has spec version {d['version']}; this srkd reads up to {SPEC_VERSION}: upgrade srkd")
        unknown = [f for f in d["features"] if f not in FEATURE_WIDTHS]
        if unknown:
            raise ConfigError(f"{path}: unknown input feature(s) {unknown}")
        return StudentSpec(
            network=str(d["network"]), network_format=str(d["network_format"]), grid_size=float(d["grid_size"]),
            features=tuple(d["features"]), color_norm=str(d["color_norm"]), color_scale=float(d["color_scale"]),
            color_shift=float(d["color_shift"]), classes=tuple(d["classes"]), dataset=str(d["dataset"]),
            plan=IndexPlan.from_json(d["plan"]), inputs={k: tuple(v) for k, v in d["inputs"].items()},
            model_name=str(d["model_name"]), model_args=dict(d["model_args"]), srkd_version=str(d["srkd_version"]),
            checkpoint_name=str(d["checkpoint_name"]), checkpoint_sha256=str(d["checkpoint_sha256"]),
            opset=d.get("opset"), check=dict(d.get("check", {})),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{path} is damaged or incomplete ({type(exc).__name__}: {exc}); export again") from None
