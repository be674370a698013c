"""Regenerate the CDSegNet equivalence fixture (tests/models/fixtures/cdsegnet_small.pt).

Not a test: a one-off script that runs CDSegNet's OWN code (its PT-v3m1 backbone and
`DefaultSegmentorV2.inference`, the single-step test-time inference) on a fixed input and stores its
logits, so srkd.models.cdsegnet can be checked without CDSegNet installed. Run from the
repository root, in a separate process from make_pointcept_fixtures.py (both forks are packages
named `pointcept`):

    PYTHONPATH=. python tests/models/make_cdsegnet_fixtures.py \\
        --cdsegnet /path/to/CDSegNet --out tests/models/fixtures

`--cdsegnet` is a checkout of https://github.com/QWTforGithub/CDSegNet (the fixture was made at
commit 87b603d); its modules are imported from that path with the stand-ins and stub packages of
make_pointcept_fixtures.py, plus:
- `Tensor.cuda` returns the tensor itself: CDSegNet's segmentor moves its schedules and its noise to
  the GPU unconditionally; this machine has none. The noise is drawn on the CPU generator either
  way (torch.normal(...).cuda()), so the draw after `torch.manual_seed(NOISE_SEED)` is the one
  srkd's generator seeded with NOISE_SEED makes.
- `pointcept.models.losses` is a stub package holding only `build_criteria` (no criteria are built).
Determinism: every module's shuffle_orders is switched off (see make_pointcept_fixtures.py).
One sample only: CDSegNet without flash-attn shrinks patches to the smallest sample, which with one
sample is exactly the flash patch srkd uses.

Weights are `generated_weights` of CDSegNet's own state-dict names and shapes; the fixture stores
those names and shapes (not the tensors), and the test builds srkd's model, checks it has exactly
them, and regenerates the same weights.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import torch

from tests.models.make_pointcept_fixtures import (
    commit_of,
    import_model_module,
    install_standins,
    make_batch,
    save_fixture,
)
from tests.models.pointcept_fixture import (
    CDSEGNET_SMALL,
    CDSEGNET_SMALL_SCENES,
    NOISE_SEED,
    generated_weights,
)

MODULE = "pointcept.models.point_transformer_v3.point_transformer_v3m1_base"


def backbone_config(small: dict) -> dict:
    """CDSegNet's PT-v3m1 keyword arguments for srkd's TEST_CDSEGNET-shaped config."""
    cfg = {"c_in_channels": small["c_in_channels"], "n_in_channels": small["in_channels"],
           "order": ("z", "z-trans", "hilbert", "hilbert-trans"), "num_classes": small["num_classes"],
           "T_dim": small["t_dim"]}  # fmt: skip
    for b in ("n", "c"):
        cfg.update({f"{b}_{k}": tuple(v) for k, v in small[b].items()})
    cfg.update(
        mlp_ratio=4, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0, drop_path=0.0,
        pre_norm=True, shuffle_orders=False, enable_rpe=False, enable_flash=False,
        upcast_attention=True, upcast_softmax=True, cls_mode=False, pdnorm_bn=False, pdnorm_ln=False,
        tm_bidirectional=False, tm_feat=1.0, tm_restomer=False, condition=True,
        skip_connection_mode="cat", b_factor=[1.0] * 4, s_factor=[1.0] * 4,
        skip_connection_scale=True, skip_connection_scale_i=False,
    )  # as configs/scannet/CDSegNet.py
    return cfg


def build_segmentor(checkout: Path) -> torch.nn.Module:
    import_model_module(checkout, MODULE)  # registers "PT-v3m1"
    losses = importlib.import_module("pointcept.models.losses")
    losses.build_criteria = importlib.import_module("pointcept.models.losses.builder").build_criteria
    default = importlib.import_module("pointcept.models.default")
    torch.Tensor.cuda = lambda self, *a, **k: self  # see module docstring
    seg = default.DefaultSegmentorV2(
        backbone=dict(type="PT-v3m1", **backbone_config(CDSEGNET_SMALL)), criteria=None,
        loss_type="GLS", task_num=2, num_classes=CDSEGNET_SMALL["num_classes"], T=CDSEGNET_SMALL["T"],
        beta_start=0, beta_end=1000, noise_schedule="cosine", T_dim=CDSEGNET_SMALL["t_dim"], dm=True,
        dm_input="xt", dm_target="noise", dm_min_snr=None, condition=True,
        c_in_channels=CDSEGNET_SMALL["c_in_channels"],
    )  # fmt: skip
    for sub in seg.modules():
        if hasattr(sub, "shuffle_orders"):
            sub.shuffle_orders = False
    shapes = {k: tuple(v.shape) for k, v in seg.backbone.state_dict().items()}
    seg.backbone.load_state_dict(generated_weights(shapes), strict=True)
    return seg.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdsegnet", type=Path, required=True, help="CDSegNet checkout")
    parser.add_argument("--out", type=Path, default=Path("tests/models/fixtures"))
    parser.add_argument("--commit", help="CDSegNet commit (default: the checkout's git HEAD)")
    args = parser.parse_args(argv)
    print(f"stand-ins: {', '.join(install_standins()) or 'none'}")
    seg = build_segmentor(args.cdsegnet)
    batch = make_batch(CDSEGNET_SMALL_SCENES)
    with torch.no_grad():
        torch.manual_seed(NOISE_SEED)
        logits = seg.inference({k: v.clone() for k, v in batch.items()}, eval=False)["seg_logits"].float()
        torch.manual_seed(NOISE_SEED + 1)
        other = seg.inference({k: v.clone() for k, v in batch.items()}, eval=False)["seg_logits"].float()
    moved = float((logits.argmax(1) != other.argmax(1)).float().mean())
    print(f"argmax moved on {moved:.1%} of rows between noise seeds {NOISE_SEED} and {NOISE_SEED + 1}")
    fixture = {
        "shapes": {k: list(v.shape) for k, v in seg.backbone.state_dict().items()},
        "noise_seed": NOISE_SEED,
        "coord": batch["coord"].float().contiguous(),
        "grid_coord": batch["grid_coord"].long().contiguous(),
        "feat": batch["feat"].float().contiguous(),
        "offset": batch["offset"].long(),
        "logits": logits.contiguous(),
        "logits_next_seed": other.contiguous(),
        "cdsegnet_commit": commit_of(args.cdsegnet, args.commit),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    save_fixture(args.out / "cdsegnet_small.pt", fixture, None)


if __name__ == "__main__":
    main()
