"""Straightforward float64 reference implementations (plain loops over points, classes, samples
and pairs) and the fixed inputs behind fixtures/golden.json.

Regenerate the fixture (only when a definition deliberately changes) with
    python -m tests.losses.reference
The tests compare srkd.losses against the STORED numbers, and these references against them too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "golden.json"
IGNORE = -1


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def ref_ce(logits: np.ndarray, segment: np.ndarray) -> float:
    total, count = 0.0, 0
    for p in range(len(segment)):
        if segment[p] == IGNORE:
            continue
        total -= math.log(softmax(logits[p])[segment[p]])
        count += 1
    return total / count


def jaccard_loss_of_set(wrong: set[int], foreground: set[int]) -> float:
    """Delta_J(S) = |S| / |F u S|: the class's IoU loss when exactly the points in S are wrong."""
    if not wrong:
        return 0.0
    return len(wrong) / len(foreground | wrong)


def ref_lovasz(logits: np.ndarray, segment: np.ndarray) -> float:
    """Lovasz extension evaluated as a Choquet integral over the level sets of the errors:
    f(m) = sum_k (t_k - t_{k+1}) * Delta({p : m_p >= t_k}), t_1 > t_2 > ... distinct values."""
    valid = [p for p in range(len(segment)) if segment[p] != IGNORE]
    probs = {p: softmax(logits[p]) for p in valid}
    per_class = []
    for c in sorted({int(segment[p]) for p in valid}):
        fg = {p for p in valid if segment[p] == c}
        err = {p: abs((1.0 if p in fg else 0.0) - probs[p][c]) for p in valid}
        levels = sorted(set(err.values()), reverse=True) + [0.0]
        value = 0.0
        for k in range(len(levels) - 1):
            level_set = {p for p in valid if err[p] >= levels[k]}
            value += (levels[k] - levels[k + 1]) * jaccard_loss_of_set(level_set, fg)
        per_class.append(value)
    return sum(per_class) / len(per_class)


def ref_kl(student: np.ndarray, teacher: np.ndarray, segment: np.ndarray, t: float) -> float:
    total, count = 0.0, 0
    for p in range(len(segment)):
        if segment[p] == IGNORE:
            continue
        q, r = softmax(teacher[p] / t), softmax(student[p] / t)
        total += sum(q[k] * (math.log(q[k]) - math.log(r[k])) for k in range(len(q)))
        count += 1
    return t * t * total / count


def ref_cwd(student: np.ndarray, teacher: np.ndarray, offset: list[int], t: float) -> float:
    starts = [0, *offset[:-1]]
    k = student.shape[1]
    total = 0.0
    for a, b in zip(starts, offset):
        for c in range(k):
            q, r = softmax(teacher[a:b, c] / t), softmax(student[a:b, c] / t)
            total += sum(q[p] * (math.log(q[p]) - math.log(r[p])) for p in range(b - a))
    return t * t * total / (len(offset) * k)


def ref_feat_mse(student: np.ndarray, teacher: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> float:
    total = 0.0
    for p in range(len(student)):
        for d in range(teacher.shape[1]):
            proj = sum(weight[d, e] * student[p, e] for e in range(student.shape[1])) + bias[d]
            total += (proj - teacher[p, d]) ** 2
    return total / teacher.size


def ref_relation(t_feats: list[np.ndarray], s_feats: list[np.ndarray], tau: float) -> float:
    def unit(x):
        return x / np.linalg.norm(x)

    b = len(t_feats)
    total = 0.0
    for i in range(b):
        for j in range(b):
            pair = 0.0
            for r in range(len(t_feats[i])):
                a_t = np.array([unit(t_feats[i][r]) @ unit(v) for v in t_feats[j]])
                a_s = np.array([unit(s_feats[i][r]) @ unit(v) for v in s_feats[j]])
                q, rr = softmax(a_t / tau), softmax(a_s / tau)
                pair += sum(q[c] * (math.log(q[c]) - math.log(rr[c])) for c in range(len(q)))
            total += pair / len(t_feats[i])
    return total / (b * b)


def make_inputs(seed: int = 20250617) -> dict:
    """Fixed inputs: 3 samples of 15, 12 and 13 points, 5 classes (class 4 absent, some -1)."""
    rng = np.random.default_rng(seed)
    sizes = [15, 12, 13]
    n, k, ds, dt = sum(sizes), 5, 4, 6
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731 - values are stored as float32
    segment = rng.integers(0, 4, n)
    segment[rng.choice(n, 6, replace=False)] = IGNORE
    offset = np.cumsum(sizes)
    starts = [0, *offset[:-1]]
    relation_index = [
        sorted((rng.choice(size, 8, replace=False) + start).tolist())
        for start, size in zip(starts, sizes)
    ]
    return {
        "student_logits": f32(2.0 * rng.normal(size=(n, k))).tolist(),
        "teacher_logits": f32(3.0 * rng.normal(size=(n, k))).tolist(),
        "student_feature": f32(rng.normal(size=(n, ds))).tolist(),
        "teacher_feature": f32(rng.normal(size=(n, dt))).tolist(),
        "proj_weight": f32(0.5 * rng.normal(size=(dt, ds))).tolist(),
        "proj_bias": f32(0.1 * rng.normal(size=dt)).tolist(),
        "segment": segment.tolist(),
        "offset": offset.tolist(),
        "relation_index": relation_index,
    }


def reference_values(inp: dict) -> dict[str, float]:
    """Every golden number, from the loop references above (float64)."""
    s_log = np.asarray(inp["student_logits"], np.float64)
    t_log = np.asarray(inp["teacher_logits"], np.float64)
    s_f = np.asarray(inp["student_feature"], np.float64)
    t_f = np.asarray(inp["teacher_feature"], np.float64)
    seg = np.asarray(inp["segment"])
    off = list(inp["offset"])
    starts = [0, *off[:-1]]
    all_idx = [list(range(a, b)) for a, b in zip(starts, off)]
    sub_idx = inp["relation_index"]
    values = {
        "ce": ref_ce(s_log, seg),
        "lovasz": ref_lovasz(s_log, seg),
        "kl_T2": ref_kl(s_log, t_log, seg, 2.0),
        "kl_T1": ref_kl(s_log, t_log, seg, 1.0),
        "cwd_T2": ref_cwd(s_log, t_log, off, 2.0),
        "feat_mse": ref_feat_mse(
            s_f, t_f, np.asarray(inp["proj_weight"], np.float64), np.asarray(inp["proj_bias"], np.float64)
        ),
        "relation_all_tau2": ref_relation([t_f[i] for i in all_idx], [s_f[i] for i in all_idx], 2.0),
        "relation_sub_tau2": ref_relation([t_f[i] for i in sub_idx], [s_f[i] for i in sub_idx], 2.0),
        "relation_sub_tau1": ref_relation([t_f[i] for i in sub_idx], [s_f[i] for i in sub_idx], 1.0),
    }
    # the srkd-release recipe's total (relation weight 1e-3) on these inputs, relation on `relation_index`
    values["total_srkd"] = (
        values["ce"] + values["lovasz"] + 0.3 * values["kl_T2"]
        + 1e-3 * values["relation_sub_tau2"] + 0.1 * values["feat_mse"]
    )
    return values


def main() -> None:
    inp = make_inputs()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps({"inputs": inp, "values": reference_values(inp)}, indent=1) + "\n")


if __name__ == "__main__":
    main()


class Out:
    """Stand-in for srkd.models.base.ModelOutput (same fields; importing srkd.models pulls in
    spconv, which the loss tests do not need)."""

    def __init__(self, logits, feature) -> None:
        self.logits, self.feature = logits, feature
