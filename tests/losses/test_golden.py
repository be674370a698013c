"""Every term against stored golden numbers computed by the loop references in reference.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from srkd.losses import (
    FeatMSE,
    cross_entropy_loss,
    cwd_loss,
    kl_distill_loss,
    lovasz_softmax_loss,
    recipe,
    relation_loss,
    sampled_relation_loss,
)
from tests.losses.reference import FIXTURE, make_inputs, reference_values
from tests.losses.reference import Out as ModelOutput

GOLDEN = json.loads(FIXTURE.read_text())
VALUES = GOLDEN["values"]


def _t(name: str, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(GOLDEN["inputs"][name], dtype=dtype)


@pytest.fixture
def inp():
    return {
        "s_log": _t("student_logits"),
        "t_log": _t("teacher_logits"),
        "s_f": _t("student_feature"),
        "t_f": _t("teacher_feature"),
        "seg": _t("segment", torch.int64),
        "off": _t("offset", torch.int64),
        "idx": [torch.tensor(i) for i in GOLDEN["inputs"]["relation_index"]],
    }


def close(value: torch.Tensor, key: str) -> None:
    assert float(value.detach()) == pytest.approx(VALUES[key], rel=1e-5, abs=1e-7), key


def test_fixture_matches_the_loop_references():
    # the stored numbers are what the independent references give on the stored inputs
    assert make_inputs() == GOLDEN["inputs"]
    for key, value in reference_values(GOLDEN["inputs"]).items():
        assert value == pytest.approx(VALUES[key], rel=1e-12), key


def test_ce_lovasz_kl_cwd(inp):
    close(cross_entropy_loss(inp["s_log"], inp["seg"]), "ce")
    close(lovasz_softmax_loss(inp["s_log"], inp["seg"]), "lovasz")
    close(kl_distill_loss(inp["s_log"], inp["t_log"], inp["seg"], 2.0), "kl_T2")
    close(kl_distill_loss(inp["s_log"], inp["t_log"], inp["seg"], 1.0), "kl_T1")
    close(cwd_loss(inp["s_log"], inp["t_log"], inp["off"], 2.0), "cwd_T2")


def test_feat_mse(inp):
    m = FeatMSE(4, 6)
    with torch.no_grad():
        m.proj.weight.copy_(_t("proj_weight"))
        m.proj.bias.copy_(_t("proj_bias"))
    close(m(inp["s_f"], inp["t_f"]), "feat_mse")


def test_relation(inp):
    sizes = np.diff(np.r_[0, GOLDEN["inputs"]["offset"]]).tolist()
    # n larger than every sample: all points, unequal sample sizes
    close(sampled_relation_loss(inp["t_f"], inp["s_f"], inp["off"], 100, 2.0), "relation_all_tau2")
    close(relation_loss(torch.split(inp["t_f"], sizes), torch.split(inp["s_f"], sizes), 2.0), "relation_all_tau2")
    for tau in (2.0, 1.0):
        got = sampled_relation_loss(inp["t_f"], inp["s_f"], inp["off"], 8, tau, indices=inp["idx"])
        close(got, f"relation_sub_tau{int(tau)}")
    # precomputed teacher features at the indices (what the cache provides)
    t_pre = [inp["t_f"][i] for i in inp["idx"]]
    close(sampled_relation_loss(t_pre, inp["s_f"], inp["off"], 8, 2.0, indices=inp["idx"]), "relation_sub_tau2")


def test_combined_srkd_total(inp):
    loss = recipe("srkd-release").build(student_dim=4, teacher_dim=6)  # the golden total uses 1e-3
    with torch.no_grad():
        loss.feat_mse.proj.weight.copy_(_t("proj_weight"))
        loss.feat_mse.proj.bias.copy_(_t("proj_bias"))
    student = ModelOutput(inp["s_log"], inp["s_f"])
    teacher = ModelOutput(inp["t_log"], inp["t_f"])
    total, terms = loss(student, teacher, inp["seg"], inp["off"], relation_index=inp["idx"])
    close(total, "total_srkd")
    close(terms["relation"], "relation_sub_tau2")
    close(terms["kl"], "kl_T2")
