"""PointTransformerV3's constructor, split into helpers (check_ptv3_args, build_encoder, build_decoder), builds
the same model as before: the same state_dict keys in the same order, and under a fixed seed the
same random initial weights (the order in which modules are created decides what each draws).

The digests were printed at commit 85da322 (the constructor in one piece) by the same
`_digest` (torch 2.13 CPU): sha256 over every (key, shape, tensor bytes) of the state_dict
after torch.manual_seed(0) and create_model(...).
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from srkd.errors import ConfigError
from srkd.models import create_model


def _digest(name: str, **overrides) -> tuple[str, int]:
    torch.manual_seed(0)
    state = create_model(name, **overrides).state_dict()
    h = hashlib.sha256()
    for key, value in state.items():
        h.update(key.encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest(), len(state)


@pytest.mark.parametrize(("name", "overrides", "expected"), [
    ("test_ptv3", {}, ("64de7a9a88539cab9a653ebb2dc49cb8674da4c7645b2cf702087184d710240d", 158)),
    ("test_ptv3_two_stage", {},
     ("2ba3330a5ad9926ea661aeb8aaa10fe97214a453bd5169bba676747f72d1f9b6", 119)),
    ("test_ptv3", {"num_classes": 13, "in_channels": 3, "enc_channels": (8, 16, 24), "order": "z"},
     ("c1589ee2fa33f9741ea9d117d445a993049843e60c90fff3fabc6aa060e05f16", 158)),
    ("ptv3_half", {}, ("8bcfafbaa265e62e90d3f3aabc81f33d4ad44679de2abfd0b3e22845c96b42f2", 488)),
], ids=["test_ptv3", "two_stage", "overrides", "ptv3_half"])
def test_keys_and_seeded_init_are_those_of_the_one_piece_constructor(name, overrides, expected):
    assert _digest(name, **overrides) == expected


@pytest.mark.parametrize(("overrides", "message"), [
    ({"order": ("z", "spiral")}, "unknown order 'spiral'"),
    ({"enc_depths": ()}, "at least one encoder stage"),
    ({"dec_channels": (16,)}, "dec_channels"),
    ({"enc_num_head": (1, 2)}, "enc_num_head"),
    ({"num_classes": 0}, r"num_classes \(0\) must be >= 1"),
])
def test_bad_arguments_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        create_model("test_ptv3", **overrides)
