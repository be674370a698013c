"""Loss recipes, selected by `--method` (docs/method.md, "The loss").

| method       | ce | lovasz | kl  | relation        | feat_mse | cwd | T | tau |
|--------------|----|--------|-----|-----------------|----------|-----|---|-----|
| srkd         | 1  | 1      | 0.3 | RELATION_WEIGHT | 0.1      | 0   | 2 | 2   |
| srkd-scarce  | 1  | 1      | 30  | RELATION_WEIGHT | 0.1      | 0   | 2 | 2   |
| srkd-release | 1  | 1      | 0.3 | 1e-3            | 0.1      | 0   | 2 | 2   |
| kd           | 1  | 1      | 0.3 | 0               | 0        | 0   | 2 | 2   |
| mse          | 1  | 1      | 0.3 | 0               | 0.1      | 0   | 2 | 2   |
| cwd          | 1  | 1      | 0.3 | 0               | 0        | 1e3 | 2 | 2   |
| relation     | 1  | 1      | 0   | RELATION_WEIGHT | 0        | 0   | 2 | 2   |
| ce           | 1  | 1      | 0   | 0               | 0        | 0   | 2 | 2   |

`srkd-release` is the released configuration as written. `srkd` differs in one number: the
relation weight. Our relation term is a mean (over the rows of each affinity block and over the
B^2 sample pairs; see srkd.losses.relation), so its value is the KL of ONE row distribution, about
1e-2 at tau = 2; at the release's 1e-3 it is ~1e-5 of the total and does nothing. The release's
reduction is not published. RELATION_WEIGHT was chosen by the relation-weight sweep of
bench/distill_quality.py on a tuning set of synthetic rooms (its own seed, never the reported
split); docs/distillation.md gives the sweep's numbers.

`srkd-scarce` is `srkd` for limited labels (a label budget, or scenes without labels): the KL
term is the main supervision of every unlabelled point, so it weighs SCARCE_KL_WEIGHT instead of
0.3. At 0.3 a student with 20 labels per room never fits the teacher (KL_T stalls); the weight
was chosen by the KL-weight sweep of bench/distill_quality.py at 20 labelled points per room on
the tuning rooms (0.3, 3, 10, 30, 100) and confirmed on rooms fixed beforehand
(docs/benchmarks.md, "Limited labels").

nuScenes (dataset="nuscenes"): kl weight 0.1, T = 1, tau = 1 for every method that has a KL
(`srkd-scarce` keeps its KL weight and takes the dataset's T and tau).
SemanticKITTI (dataset="semantickitti") reuses the nuScenes numbers: the release publishes no
SemanticKITTI recipe, and both are lidar scans at the same 0.05 m grid (OUTDOOR_DATASETS).
Our choices where the release is silent: the KD/MSE/CWD baselines reuse SRKD's KL weight and
temperature, CWD uses the KL's temperature, and n_relation_points defaults to 2048. Every
method but `srkd-release` averages KL_T over every point with a teacher target (`kl_points`
"all"): the release averages over labelled points, which leaves the teacher silent on every
unlabelled point of a limited-annotation run; with dense labels the two differ only on the
ignored points.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from srkd.errors import ConfigError
from srkd.losses.combined import DistillLoss, LossWeights
from srkd.losses.kl import KL_POINTS
from srkd.losses.relation import GatherFn
from srkd.types import DEFAULT_DATASET, LOSS_METHODS

METHODS: tuple[str, ...] = LOSS_METHODS
DATASETS: tuple[str, ...] = ("scannet", "scannet200", "nuscenes", "semantickitti")
OUTDOOR_DATASETS: tuple[str, ...] = ("nuscenes", "semantickitti")
"""Datasets that take the release's nuScenes loss numbers (kl 0.1, T = 1, tau = 1)."""
DEFAULT_RELATION_POINTS = 2048
RELEASE_RELATION_WEIGHT = 1e-3
RELATION_WEIGHT = 100.0
"""The calibrated relation weight of `--method srkd` (see the module docstring)."""
SCARCE_KL_WEIGHT = 30.0
"""The KL weight of `--method srkd-scarce` (see the module docstring)."""

FLAG_NAMES: tuple[str, ...] = ("balanced_kl", "balanced_ce")
"""Recipe settings that are switches (true / false)."""

_KD = dict(ce=1.0, lovasz=1.0, kl=0.3)
_WEIGHTS: dict[str, dict[str, float]] = {
    "srkd": {**_KD, "relation": RELATION_WEIGHT, "feat_mse": 0.1},
    "srkd-scarce": {**_KD, "kl": SCARCE_KL_WEIGHT, "relation": RELATION_WEIGHT, "feat_mse": 0.1},
    "srkd-release": {**_KD, "relation": RELEASE_RELATION_WEIGHT, "feat_mse": 0.1},
    "kd": dict(_KD),
    "mse": {**_KD, "feat_mse": 0.1},
    "cwd": {**_KD, "cwd": 1e3},
    "relation": dict(ce=1.0, lovasz=1.0, relation=RELATION_WEIGHT),
    "ce": dict(ce=1.0, lovasz=1.0),
}


@dataclass(frozen=True)
class Recipe:
    """A named loss configuration: weights plus temperatures.

    method/dataset: where the numbers came from. temperature: T of KL_T and CWD. tau: the
    relation's affinity temperature. n_relation_points: points sampled per source scene.
    kl_points: "all" (KL_T over every point with a teacher target) or "labelled" (only points
    with a valid label, the release's definition; `srkd-release` keeps it). balanced_kl /
    balanced_ce: class-balanced means (srkd.losses.kl, srkd.losses.ce).
    """

    method: str
    dataset: str
    weights: LossWeights
    temperature: float
    tau: float
    n_relation_points: int = DEFAULT_RELATION_POINTS
    kl_points: str = "all"
    balanced_kl: bool = False
    balanced_ce: bool = False

    def build(
        self,
        student_dim: int | None = None,
        teacher_dim: int | None = None,
        gather_fn: GatherFn | None = None,
        generator: Any = None,
    ) -> DistillLoss:
        """The DistillLoss module for this recipe (feature widths are needed when feat_mse > 0)."""
        return DistillLoss(
            self.weights,
            temperature=self.temperature,
            tau=self.tau,
            n_relation_points=self.n_relation_points,
            kl_points=self.kl_points,
            balanced_kl=self.balanced_kl,
            balanced_ce=self.balanced_ce,
            student_dim=student_dim,
            teacher_dim=teacher_dim,
            gather_fn=gather_fn,
            generator=generator,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for checkpoints and run logs). `kl_points` only when KL is on and the
        balanced means only when set, so the record of a recipe that does not use them is the
        one earlier versions wrote (a run they started still resumes)."""
        out: dict[str, Any] = {
            "method": self.method,
            "dataset": self.dataset,
            "weights": self.weights.active(),
            "temperature": self.temperature,
            "tau": self.tau,
            "n_relation_points": self.n_relation_points,
        }
        if self.weights.kl > 0:
            out["kl_points"] = self.kl_points
        out.update({k: True for k in FLAG_NAMES if getattr(self, k)})
        return out


def recipe(name: str, dataset: str = DEFAULT_DATASET, **overrides: Any) -> Recipe:
    """The release's recipe `name` for `dataset`, with optional overrides.

    Args:
        name:      one of METHODS.
        dataset:   one of DATASETS; the OUTDOOR_DATASETS use kl 0.1, T = 1, tau = 1.
        overrides: any LossWeights field (ce, lovasz, kl, relation, feat_mse, cwd), or
                   temperature, tau, n_relation_points, kl_points, balanced_kl, balanced_ce.
                   None values are ignored (so CLI options can be passed through unchanged).
    Raises:
        ConfigError naming the known methods, datasets or override keys.
    """
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    if dataset not in DATASETS:
        raise ConfigError(
            f"unknown dataset {dataset!r} for loss recipes; known: {', '.join(DATASETS)}"
        )
    weights = dict(_WEIGHTS[name])
    temperature, tau = 2.0, 2.0
    if dataset in OUTDOOR_DATASETS:
        temperature, tau = 1.0, 1.0
        if weights.get("kl") == _KD["kl"]:  # the release's KL weight takes its nuScenes value
            weights["kl"] = 0.1
    base = Recipe(name, dataset, LossWeights(**weights), temperature, tau,
                  kl_points="labelled" if name == "srkd-release" else "all")

    weight_names = set(LossWeights.names())
    other_names = {"temperature", "tau", "n_relation_points", *FLAG_NAMES, "kl_points"}
    unknown = sorted(set(overrides) - weight_names - other_names)
    if unknown:
        known = ", ".join(sorted(weight_names | other_names))
        raise ConfigError(f"unknown loss override(s) {unknown}; known: {known}")
    given = {k: v for k, v in overrides.items() if v is not None}
    new_weights = {k: v for k, v in given.items() if k in weight_names}
    changes = {k: v for k, v in given.items() if k in other_names}
    if new_weights:
        current = {f.name: getattr(base.weights, f.name) for f in fields(LossWeights)}
        changes["weights"] = LossWeights(**{**current, **new_weights})
    for key in ("temperature", "tau"):
        if key in changes:
            try:
                changes[key] = float(changes[key])
            except (TypeError, ValueError):
                raise ConfigError(f"{key} must be a number, got {changes[key]!r}") from None
            if not changes[key] > 0:
                raise ConfigError(f"{key} must be > 0, got {changes[key]!r}")
    if "kl_points" in changes and changes["kl_points"] not in KL_POINTS:
        raise ConfigError(f"kl_points must be one of {KL_POINTS}, got {changes['kl_points']!r}")
    for key in FLAG_NAMES:
        if key in changes and not isinstance(changes[key], bool):
            raise ConfigError(f"{key} must be true or false, got {changes[key]!r}")
    if "n_relation_points" in changes:
        n = changes["n_relation_points"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n_relation_points must be an integer >= 1, got {n!r}")
    return replace(base, **changes)
