"""Which network a Pointcept-style checkpoint holds, read from its tensor names and shapes.

`recognize(state)` tells Pointcept PT-v3m1, PT-v3m2 (Sonata family) and CDSegNet apart and reads
their widths, depths, input channels and class count; `preset_for(arch)` names the srkd preset
(plus overrides) that loads it. What srkd cannot compute is refused with one line naming it
(`CheckpointError`): pretraining and encoder-only checkpoints (no segmentation head or decoder),
relative position encoding (`enable_rpe`), PDNorm (point prompt training), layer scale, and
CDSegNet options other than the released ones.

Attention head counts are not visible in a state dict (qkv is (3C, C) whatever the heads): every
released Pointcept and CDSegNet config uses channels / 16 heads per stage, and so does a
recognised checkpoint. A checkpoint trained with other head counts needs `--teacher-model` and
matching model arguments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from srkd.errors import CheckpointError
from srkd.models.cdsegnet import BRANCH_KEYS, CDSEGNET_SCANNET
from srkd.models.ptv3 import PTV3_BASE, SONATA_SEMSEG

FAMILIES: tuple[str, ...] = ("PT-v3m1", "PT-v3m2", "CDSegNet")
HEAD_WIDTH = 16  # channels per attention head in every released config


@dataclass(frozen=True)
class PointceptArch:
    """A recognised network: `family` (one of FAMILIES), input channels, classes, and per branch
    (`""` for PTv3, `"_n"` and `"_c"` for CDSegNet's noise and conditional branches) the encoder
    and decoder widths and depths."""

    family: str
    in_channels: int
    num_classes: int
    branches: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)
    extra: dict[str, int] = field(default_factory=dict)  # CDSegNet: c_in_channels, t_dim


_REFUSED: tuple[tuple[str, str], ...] = (
    (r"(^|\.)rpe\.rpe_table$", "relative position encoding (enable_rpe=True)"),
    # PDNorm holds one norm per dataset condition (`<norm>.norm.<k>`) and, adaptive, a modulation
    (r"\.modulation\.|\.\d+\.norm\.(weight|bias|\d)|\.norm\.norm\.|\.norm\.[1-9]\d*\.",
     "PDNorm (point prompt training, pdnorm_bn/pdnorm_ln)"),
    (r"\.ls[12]\.\d+\.gamma$", "layer scale (layer_scale set)"),
    (r"cross_block1\.", "CDSegNet with tm_bidirectional=True"),
    (r"feat_scale$", "CDSegNet with a learned tm_feat scale"),
    (r"_n_dec\.dec\d+\.up\.proj_cat\.", "CDSegNet with skip_connection_mode='cat_all'"),
)


def _refuse(state: Mapping[str, torch.Tensor], name: str) -> None:
    """CheckpointError naming the first feature srkd cannot compute, if any."""
    keys = list(state)
    if any(k.startswith(("student.", "teacher.")) for k in keys):
        raise CheckpointError(
            f"checkpoint {name} is a self-supervised pretraining checkpoint (student/teacher "
            "encoders, no segmentation head): fine-tune it with a semseg config first"
        )
    for pattern, what in _REFUSED:
        hit = next((k for k in keys if re.search(pattern, k)), None)
        if hit is not None:
            raise CheckpointError(f"checkpoint {name} uses {what} (e.g. {hit}), which srkd does not implement")


def _stages(state: Mapping[str, torch.Tensor], prefix: str, part: str) -> dict[str, tuple[int, ...]]:
    """Widths and depths of `prefix``part` (e.g. "enc", "_n_dec"): {channels, depths} ordered by
    stage index (0 = finest)."""
    depth: dict[int, int] = {}
    width: dict[int, int] = {}
    pat = re.compile(rf"^{re.escape(prefix + part)}\.{part[-3:]}(\d+)\.block(\d+)\.cpe\.1\.weight$")
    for key, value in state.items():
        m = pat.match(key)
        if m:
            s, b = int(m.group(1)), int(m.group(2))
            depth[s] = max(depth.get(s, 0), b + 1)
            width[s] = int(value.shape[0])
    if sorted(depth) != list(range(len(depth))):
        raise CheckpointError(f"stages {sorted(depth)} of {prefix}{part} are not 0..{len(depth) - 1}")
    order = sorted(depth)
    return {"channels": tuple(width[s] for s in order), "depths": tuple(depth[s] for s in order)}


def _branch(state: Mapping[str, torch.Tensor], prefix: str, name: str, decoder: bool = True) -> dict:
    enc = _stages(state, prefix, "_enc" if prefix else "enc")
    out = {"enc_channels": enc["channels"], "enc_depths": enc["depths"]}
    if not enc["depths"]:
        raise CheckpointError(f"checkpoint {name} has no encoder blocks ({prefix or ''}enc.*)")
    if decoder:
        dec = _stages(state, prefix, "_dec" if prefix else "dec")
        if len(dec["depths"]) != len(enc["depths"]) - 1:
            raise CheckpointError(
                f"checkpoint {name} has {len(enc['depths'])} encoder stages but {len(dec['depths'])} "
                "decoder stages: an encoder-only (enc_mode / cls_mode) network, which srkd does not load"
            )
        out.update(dec_channels=dec["channels"], dec_depths=dec["depths"])
    return out


def recognize(state: Mapping[str, torch.Tensor], name: str = "<state_dict>", required: bool = True) -> PointceptArch | None:
    """The network held by `state` (tensors with wrapper prefixes already stripped, see
    srkd.models.pointcept.read_state_dict). CheckpointError (one line) when it uses something
    srkd cannot compute; when it is no PTv3 / CDSegNet at all (no embedding stem tensors), also
    CheckpointError, or None with required=False (e.g. a SpUNet, loaded into a named preset)."""
    _refuse(state, name)
    if "_n_embedding.stem.conv.weight" in state:
        if "_n_head.weight" not in state or "_c_embedding.stem.conv.weight" not in state:
            raise CheckpointError(f"checkpoint {name} is a CDSegNet without its segmentation head "
                                  "(_n_head) or conditional branch (_c_embedding): srkd loads the released configs")
        return PointceptArch(
            "CDSegNet", int(state["_n_embedding.stem.conv.weight"].shape[-1]),
            int(state["_n_head.weight"].shape[0]),
            {"_n": _branch(state, "_n", name), "_c": _branch(state, "_c", name)},
            {"c_in_channels": int(state["_c_embedding.stem.conv.weight"].shape[-1]),
             "t_dim": int(state["fc_t1.weight"].shape[1]) if "fc_t1.weight" in state else 0},
        )  # fmt: skip
    if "embedding.stem.conv.weight" in state:
        family, in_channels = "PT-v3m1", int(state["embedding.stem.conv.weight"].shape[-1])
    elif "embedding.stem.linear.weight" in state:
        family, in_channels = "PT-v3m2", int(state["embedding.stem.linear.weight"].shape[1])
    elif not required:
        return None
    else:
        raise CheckpointError(
            f"checkpoint {name} is not a Pointcept PTv3 or CDSegNet network (no embedding.stem "
            "tensors); pass --teacher-model with the srkd preset it fits"
        )
    if "seg_head.weight" not in state:
        raise CheckpointError(
            f"checkpoint {name} has no segmentation head (seg_head.weight): an encoder-only or "
            "pretraining checkpoint; fine-tune it with a semseg config first"
        )
    return PointceptArch(family, in_channels, int(state["seg_head.weight"].shape[0]), {"": _branch(state, "", name)})


def _heads(channels: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(1, c // HEAD_WIDTH) for c in channels)


def ptv3_args(branch: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """PointTransformerV3 arguments for one branch's widths and depths (heads = channels / 16)."""
    return dict(
        enc_channels=branch["enc_channels"], enc_depths=branch["enc_depths"],
        enc_num_head=_heads(branch["enc_channels"]), dec_channels=branch["dec_channels"],
        dec_depths=branch["dec_depths"], dec_num_head=_heads(branch["dec_channels"]),
        stride=(2,) * (len(branch["enc_channels"]) - 1), enc_patch_size=(1024,) * len(branch["enc_channels"]),
        dec_patch_size=(1024,) * len(branch["dec_channels"]),
    )  # fmt: skip


def preset_for(arch: PointceptArch) -> tuple[str, dict[str, Any]]:
    """(srkd preset, overrides) that build `arch`: the family's preset when the shapes are its
    own (only num_classes / in_channels given), else that preset with the read shapes."""
    preset = {"PT-v3m1": "ptv3_base", "PT-v3m2": "sonata_semseg", "CDSegNet": "cdsegnet"}[arch.family]
    base = {"num_classes": arch.num_classes, "in_channels": arch.in_channels}
    if arch.family == "CDSegNet":
        if not arch.extra["t_dim"]:
            raise CheckpointError("a CDSegNet checkpoint without a time embedding (fc_t1, T_dim=-1) is not supported")
        base.update(c_in_channels=arch.extra["c_in_channels"])
        if arch.extra["t_dim"] != CDSEGNET_SCANNET.get("t_dim", 128):
            base["t_dim"] = arch.extra["t_dim"]
    if preset_shapes(preset) == arch.branches:
        return preset, base
    if arch.family == "CDSegNet":
        return preset, {**base, **cdsegnet_args(arch.branches)}
    extra = {"variant": "v3m2", "unpooling": "v3m2"} if arch.family == "PT-v3m2" else {"unpooling": "v3m1"}
    return preset, {**base, **ptv3_args(arch.branches[""]), **extra}


def preset_shapes(preset: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """The branches (as in PointceptArch) of a registered preset, read from its constructor
    arguments without building it."""
    tables = {"ptv3_base": {"": PTV3_BASE}, "sonata_semseg": {"": SONATA_SEMSEG}}
    if preset == "cdsegnet":
        return cdsegnet_branches(CDSEGNET_SCANNET)
    keys = ("enc_channels", "enc_depths", "dec_channels", "dec_depths")
    return {b: {k: tuple(cfg[k]) for k in keys} for b, cfg in tables[preset].items()}


def cdsegnet_branches(config: dict[str, Any]) -> dict[str, dict[str, tuple[int, ...]]]:
    """Widths and depths per branch ("_n", "_c") as `PointceptArch.branches` holds them."""
    keys = ("enc_channels", "enc_depths", "dec_channels", "dec_depths")
    return {f"_{b}": {k: tuple(config[b][k]) for k in keys} for b in ("n", "c")}


def cdsegnet_args(branches: dict[str, dict[str, tuple[int, ...]]]) -> dict[str, Any]:
    """CDSegNet arguments for read widths and depths (heads = channels / 16, patches 1024, the
    conditional branch's poolings as CDSegNet's: stride 4)."""
    out = {}
    for b in ("n", "c"):
        args = {k: v for k, v in ptv3_args(branches[f"_{b}"]).items() if k in BRANCH_KEYS}
        if b == "c":
            args["stride"] = (4,) * (len(args["enc_channels"]) - 1)
        out[b] = args
    return out
