"""Regenerate the Pointcept PTv3 equivalence fixtures (tests/models/fixtures/pointcept_v3m{1,2}_*.pt).

Not a test: a one-off script that runs Pointcept's OWN `PT-v3m1` and `PT-v3m2` code on fixed inputs
and stores their logits, so srkd's re-implementation (srkd/models/ptv3.py) can be checked against
them without Pointcept installed. Run from the repository root:

    PYTHONPATH=. python tests/models/make_pointcept_fixtures.py \\
        --pointcept /path/to/Pointcept --out tests/models/fixtures

`--pointcept` is a checkout of https://github.com/Pointcept/Pointcept (the fixtures were made at
commit d74c646); nothing of it is copied here, its modules are imported from that path. Only the
modules PT-v3m1 / PT-v3m2 need are loaded (point_transformer_v3m{1_base,2_sonata}.py, modules.py, builder.py,
utils/{structure,misc,serialization}, point_prompt_training/prompt_driven_normalization.py,
engines/hooks/default.py, utils/{registry,comm,misc}.py): the package `__init__`s that import every
model (and with them CUDA-only or missing dependencies) are replaced by empty stub packages.

What is set up, and why (each stand-in is minimal and used only when the real package is absent):
- `torch_scatter`: PT-v3m1's pooling calls `torch_scatter.segment_csr` (a compiled CUDA/CPU
  extension that pip cannot install against this torch). The stand-in computes the same
  sum/mean/max/min over CSR segments with torch's scatter_reduce (empty segments give 0, as in
  torch_scatter).
- `timm.layers.DropPath`: timm would pull in torchvision and replace the installed torch. The
  stand-in is stochastic depth per sample (timm's semantics, scale_by_keep=True); it is the
  identity in eval mode, which is all the fixtures use.
- `addict` is a small pure-Python package: `pip install addict`.
- `flash_attn` is not needed: the model is built with enable_flash=False.
- spconv on a CPU-only torch: `import srkd.models.sparse` patches spconv's CUDA stream getter, and
  Pointcept's `spconv.SubMConv3d` is replaced (in PT-v3m1's module namespace only) by srkd's
  `srkd.models.sparse.SubMConv3d`, a subclass of spconv's class with the same parameters
  (weight (out, k, k, k, in), bias (out,)) that runs spconv's Native algorithm on CPU and adds the
  bias after the conv (spconv's eval-mode fused-bias kernel is CUDA-only). Being a spconv module,
  Pointcept's PointSequential treats it exactly like the original (checked below).

Pointcept behaviour neutralised for determinism:
- PT-v3m1 (PT-v3m2) builds its SerializedPooling (GridPooling) modules with their default
  shuffle_orders=True, so every pooling permutes the curve orders with torch.randperm even in
  eval mode. srkd permutes orders only in training, so the fixtures switch it off on every pooling
  module (and pass shuffle_orders=False to the model for the input serialization).
- PT-v3m2 inputs have 9 channels, Sonata's feat_keys (coord, color, normal): the fixture's coord
  (centred in x and y) followed by colour / 255 and the normal.

Attention patches: with enable_flash=False Pointcept attends within patches of
K = min(smallest sample at that level, patch_size) points, whereas flash attention (which srkd
follows on every device) uses K = patch_size and lets samples smaller than K form one shorter
patch. The two agree when every sample has >= patch_size rows at every level (SMALL: checked by
counting the occupied cells at strides 1, 2, 4, 8, and again from the K each Pointcept attention
module used), or when the batch holds a single sample (BASE: K = min(its size, patch_size) is then
exactly the flash patch at every level).

Weights: `generated_weights` for every tensor (both configs), so the test can rebuild the BASE
weights (46M parameters, not stored) from their names; the SMALL state dict is stored in the
fixture under a real Pointcept checkpoint's keys (`module.backbone.*`, `module.seg_head.*`).
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tests.models.pointcept_fixture import (
    BASE_CONFIG,
    SMALL_CONFIG,
    V3M2_BASE_CONFIG,
    V3M2_SMALL_CONFIG,
    generated_weights,
)

GRID_SIZE = 0.05
PV3M1 = "pointcept.models.point_transformer_v3.point_transformer_v3m1_base"
PV3M2 = "pointcept.models.point_transformer_v3.point_transformer_v3m2_sonata"
# PT-v3m1 settings that are not part of the shared config (see module docstring); at d74c646
# PT-v3m1 has `enc_mode` (encoder only) where later models have `cls_mode`; the default norms
# (BatchNorm1d eps 1e-3 momentum 0.01, LayerNorm) are used with pdnorm off.
POINTCEPT_FIXED = {
    "pre_norm": True, "shuffle_orders": False, "enable_rpe": False, "enable_flash": False,
    "upcast_attention": True, "upcast_softmax": True, "enc_mode": False, "pdnorm_bn": False,
    "pdnorm_ln": False,
}
# PT-v3m2 (Sonata semseg configs): no PDNorm; traceable, mask_token and layer_scale as in
# configs/sonata/semseg-sonata-v1m1-0c-scannet-ft.py
POINTCEPT_V3M2_FIXED = {
    "pre_norm": True, "shuffle_orders": False, "enable_rpe": False, "enable_flash": False,
    "upcast_attention": True, "upcast_softmax": True, "enc_mode": False, "traceable": False,
    "mask_token": False, "layer_scale": None, "freeze_encoder": False,
}
SMALL_SCENES = ((5, 0, 900), (5, 1, 800))  # (dataset seed, scene index, voxels kept) per sample
BASE_SCENES = ((5, 2, 2000),)
SCENE_POINTS = 60_000  # points per generated room before cropping (dense enough for 5 cm voxels)


# ---- stand-ins for packages Pointcept imports ------------------------------------------------


def _segment_csr(src: torch.Tensor, indptr: torch.Tensor, out=None, reduce: str = "sum") -> torch.Tensor:
    """torch_scatter.segment_csr for a 1-D indptr: reduce src rows [indptr[i], indptr[i+1])."""
    if out is not None or indptr.ndim != 1:
        raise NotImplementedError("stand-in segment_csr supports only a 1-D indptr and no out=")
    ops = {"sum": "sum", "add": "sum", "mean": "mean", "max": "amax", "min": "amin"}
    lengths = torch.diff(indptr)
    seg = torch.repeat_interleave(torch.arange(len(lengths), device=src.device), lengths)
    src = src[: int(indptr[-1])]
    index = seg.reshape(-1, *([1] * (src.ndim - 1))).expand_as(src)
    res = src.new_zeros((len(lengths),) + src.shape[1:])
    return res.scatter_reduce(0, index, src, reduce=ops[reduce], include_self=False)


class _DropPath(nn.Module):
    """timm.layers.DropPath: zero whole samples (rows) with probability p in training, scaling the
    kept ones by 1/(1-p); the identity in eval mode or with p == 0."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        if keep > 0.0 and self.scale_by_keep:
            mask.div_(keep)
        return x * mask


def install_standins() -> list[str]:
    """Put stand-ins for missing third-party packages into sys.modules; returns their names."""
    used = []
    try:
        import torch_scatter  # noqa: F401
    except ImportError:
        mod = types.ModuleType("torch_scatter")
        mod.__doc__ = "srkd stand-in: segment_csr only (see make_pointcept_fixtures.py)"
        mod.segment_csr = _segment_csr
        sys.modules["torch_scatter"] = mod
        used.append("torch_scatter")
    try:
        from timm.layers import DropPath  # noqa: F401
    except ImportError:
        timm = types.ModuleType("timm")
        timm.__path__ = []  # a package, so `from timm.layers import ...` works
        layers = types.ModuleType("timm.layers")
        layers.__doc__ = "srkd stand-in: DropPath only (see make_pointcept_fixtures.py)"
        layers.DropPath = _DropPath
        timm.layers = layers
        models = types.ModuleType("timm.models")  # the older path, timm.models.layers.DropPath
        models.__path__ = []
        models.layers = layers
        timm.models = models
        sys.modules["timm"], sys.modules["timm.layers"] = timm, layers
        sys.modules["timm.models"], sys.modules["timm.models.layers"] = models, layers
        used.append("timm.layers")
    try:
        import addict  # noqa: F401
    except ImportError as exc:
        raise SystemExit("Pointcept needs addict: pip install addict") from exc
    return used


def _stub_package(name: str, path: Path) -> types.ModuleType:
    """An empty package `name` whose submodules are found in `path` (its __init__ is not run)."""
    mod = types.ModuleType(name)
    mod.__path__ = [str(path)]
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, mod)
    return mod


def import_model_module(checkout: Path, module: str) -> types.ModuleType:
    """Import `module` (e.g. Pointcept's point_transformer_v3m1_base) from the checkout `checkout`
    of Pointcept (or a fork with its layout), set up to run on CPU."""
    root = checkout.resolve()
    pkg = root / "pointcept"
    if not (root / (module.replace(".", "/") + ".py")).is_file():
        raise SystemExit(f"{root} has no {module.replace('.', '/')}.py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import spconv.pytorch as spconv

        import srkd.models.sparse as srkd_sparse  # patches spconv's stream getter for CPU torch
    sys.path.insert(0, str(root))
    importlib.import_module("pointcept")  # empty __init__

    # Stubs for packages whose __init__ imports every model / every hook (and their deps).
    _stub_package("pointcept.models", pkg / "models")
    _stub_package("pointcept.models.point_transformer_v3", pkg / "models" / "point_transformer_v3")
    _stub_package("pointcept.models.losses", pkg / "models" / "losses")
    ppt = _stub_package(
        "pointcept.models.point_prompt_training", pkg / "models" / "point_prompt_training"
    )
    importlib.import_module("pointcept.engines")  # empty __init__
    hooks = _stub_package("pointcept.engines.hooks", pkg / "engines" / "hooks")
    # modules.py needs HookBase; PT-v3m1 needs PDNorm (built only with pdnorm_bn/ln, both off)
    hooks.HookBase = importlib.import_module("pointcept.engines.hooks.default").HookBase
    ppt.PDNorm = importlib.import_module(
        "pointcept.models.point_prompt_training.prompt_driven_normalization"
    ).PDNorm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m1 = importlib.import_module(module)
    if not str(m1.__file__).startswith(str(root)):
        raise SystemExit(f"imported {m1.__file__}, not the checkout's {module}")

    class PointceptSubMConv3d(srkd_sparse.SubMConv3d):
        """srkd's CPU-capable SubMConv3d, called with Pointcept's keyword arguments."""

        def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                     bias=True, indice_key=None):
            if stride != 1:
                raise ValueError("a submanifold conv has stride 1")
            # padding (Pointcept's stem passes padding=1) does not change a submanifold conv's
            # output rows or values; it is passed on unchanged anyway.
            super().__init__(in_channels, out_channels, kernel_size, indice_key=indice_key, bias=bias,
                             padding=padding, dilation=dilation)

    # PointSequential must route it through its spconv branch, as it does spconv.SubMConv3d
    if not spconv.modules.is_spconv_module(PointceptSubMConv3d(4, 4, 3)):
        raise SystemExit("srkd's SubMConv3d is not recognised as a spconv module")

    class SpconvForPointcept(types.ModuleType):
        """spconv.pytorch as PT-v3m1 sees it: every name unchanged except SubMConv3d."""

        def __getattr__(self, name):
            return getattr(spconv, name)

    proxy = SpconvForPointcept("spconv.pytorch")
    proxy.SubMConv3d = PointceptSubMConv3d
    m1.spconv = proxy  # only PT-v3m1's module global; spconv itself is untouched
    return m1


# ---- inputs ----------------------------------------------------------------------------------


def make_sample(seed: int, index: int, voxels: int) -> dict[str, np.ndarray]:
    """One grid-sampled crop of a synthetic room: `voxels` rows, one point per occupied 5 cm voxel.

    The room (scene `index` of synthetic dataset `seed`) is cropped to the points nearest a fixed
    centre (30% along x and y, 0.8 m up: floor, a wall side and furniture; like Pointcept's
    SphereCrop), grid-sampled at GRID_SIZE keeping the point nearest the centre in each voxel, and
    the `voxels` voxels whose kept point is nearest the centre remain. grid_coord is
    floor((coord - min) / GRID_SIZE) of the crop, shifted to start at 0; coord is shifted as by
    Pointcept's CenterShift(apply_z=False): x and y centred, z unchanged (any fixed values work).
    """
    from srkd.data.synthetic.rooms import generate_scene

    scene = generate_scene(seed, index, SCENE_POINTS)
    coord = scene["coord"].astype(np.float64)
    lo, hi = coord.min(0), coord.max(0)
    centre = np.array([lo[0] + 0.3 * (hi[0] - lo[0]), lo[1] + 0.3 * (hi[1] - lo[1]), 0.8])
    dist = np.linalg.norm(coord - centre, axis=1)
    near = np.argsort(dist, kind="stable")[: voxels * 8]  # generous crop, cut to `voxels` below
    grid = np.floor((coord[near] - coord[near].min(0)) / GRID_SIZE).astype(np.int64)
    _, first = np.unique(grid, axis=0, return_index=True)
    first = np.sort(first)  # one point per voxel, in distance order
    if len(first) < voxels:
        raise SystemExit(f"scene {seed}/{index}: only {len(first)} voxels in the crop, need {voxels}")
    keep = near[first[:voxels]]
    grid = grid[first[:voxels]]
    grid -= grid.min(0)
    c = coord[keep]
    shift = np.array([(c[:, 0].min() + c[:, 0].max()) / 2, (c[:, 1].min() + c[:, 1].max()) / 2, 0.0])
    feat = np.concatenate([scene["color"][keep] / 255.0, scene["normal"][keep]], axis=1)
    return {"coord": (c - shift).astype(np.float32), "grid_coord": grid, "feat": feat.astype(np.float32)}


def make_batch(scenes) -> dict[str, torch.Tensor]:
    """Concatenate samples into Pointcept's input dict (coord, grid_coord, feat, offset)."""
    samples = [make_sample(*s) for s in scenes]
    out = {k: torch.from_numpy(np.concatenate([s[k] for s in samples]))
           for k in ("coord", "grid_coord", "feat")}
    out["offset"] = torch.cumsum(torch.tensor([len(s["coord"]) for s in samples]), 0)
    return out


def rows_per_level(grid_coord: torch.Tensor, offset: torch.Tensor, levels: int) -> list[list[int]]:
    """[level][sample] number of occupied cells at stride 2**level (what serialized pooling keeps
    with stride 2: the code of a cell is its children's code >> 3)."""
    start = 0
    per_sample = []
    for end in offset.tolist():
        g = grid_coord[start:end]
        per_sample.append([len(torch.unique(g >> d, dim=0)) for d in range(levels)])
        start = end
    return [[s[d] for s in per_sample] for d in range(levels)]


# ---- Pointcept model -------------------------------------------------------------------------


def with_coord_feature(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sonata's 9-channel input: feat = (coord, colour, normal)."""
    return {**batch, "feat": torch.cat([batch["coord"], batch["feat"]], dim=1)}


def build_pointcept(module: types.ModuleType, config: dict, fixed: dict) -> tuple[nn.Module, nn.Module]:
    """Pointcept's PTv3 (`module`: PT-v3m1 or PT-v3m2) + Linear seg head (DefaultSegmentorV2),
    generated weights, eval mode, order shuffling off everywhere."""
    if any(s != 2 for s in config["stride"]):
        raise SystemExit("rows_per_level assumes stride 2 poolings")
    kwargs = {k: v for k, v in config.items() if k != "num_classes"}
    torch.manual_seed(0)
    backbone = module.PointTransformerV3(**kwargs, **fixed)
    head = nn.Linear(config["dec_channels"][0], config["num_classes"])
    for sub in backbone.modules():  # see module docstring: Pointcept shuffles at every pooling
        if hasattr(sub, "shuffle_orders") and sub is not backbone:
            sub.shuffle_orders = False
    shapes = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    shapes.update({f"seg_head.{k}": tuple(v.shape) for k, v in head.state_dict().items()})
    weights = generated_weights(shapes)
    # strict=True: any name or shape the model has that generated_weights lacks (or vice versa) raises
    head_prefix = "seg_head."
    backbone.load_state_dict({k: v for k, v in weights.items() if not k.startswith(head_prefix)},
                             strict=True)
    head.load_state_dict({k[len(head_prefix):]: v for k, v in weights.items() if k.startswith(head_prefix)},
                         strict=True)
    backbone.eval()
    head.eval()
    return backbone, head


def check_patches(module: types.ModuleType, backbone: nn.Module, batch: dict) -> None:
    """Each non-flash attention module keeps the patch size it last used: min(smallest sample,
    max). With several samples it must be the max everywhere (see module docstring)."""
    attns = [m for m in backbone.modules() if isinstance(m, module.SerializedAttention)]
    used = {(m.patch_size, m.patch_size_max) for m in attns}
    if len(batch["offset"]) > 1 and any(k != kmax for k, kmax in used):
        raise SystemExit(f"a sample was smaller than a patch at some level: (used, max) {sorted(used)}")


@torch.no_grad()
def pointcept_logits(module, backbone: nn.Module, head: nn.Module, batch: dict, config: dict) -> torch.Tensor:
    """float32 (N, num_classes) logits of Pointcept's model for the rows of `batch`, in row order."""
    point = backbone({k: v.clone() for k, v in batch.items()})
    n = batch["coord"].shape[0]
    same_rows = torch.equal(point.grid_coord, batch["grid_coord"])
    if point.feat.shape != (n, config["dec_channels"][0]) or not same_rows:
        raise SystemExit("Pointcept's output rows are not the input rows")
    check_patches(module, backbone, batch)
    return head(point.feat).float()


def commit_of(checkout: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"{checkout} is not a git checkout; pass --commit") from exc


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def check_sample_sizes(name: str, batch: dict, config: dict) -> None:
    """A multi-sample batch needs every sample to hold >= patch rows at every level."""
    counts = rows_per_level(batch["grid_coord"], batch["offset"], len(config["enc_depths"]))
    print(f"{name}: rows per level x sample {counts}")
    if len(batch["offset"]) > 1:
        smallest = min(min(c) for c in counts)
        patch = min(min(config["enc_patch_size"]), min(config["dec_patch_size"]))
        if smallest < patch:
            raise SystemExit(f"{name}: a sample has {smallest} < {patch} rows at some level; use more points")


def save_fixture(path: Path, fixture: dict, state: dict[str, torch.Tensor] | None) -> Path:
    """torch.save `fixture` (+ `state` as its state_dict, keyed as a DDP Pointcept checkpoint) and
    check that it loads back with weights_only."""
    if state is not None:
        fixture["state_dict"] = {k: v.detach().clone().contiguous() for k, v in state.items()}
    torch.save(fixture, path)
    back = torch.load(path, weights_only=True)
    assert set(back) == set(fixture) and torch.equal(back["logits"], fixture["logits"])
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB), {fixture['logits'].shape[0]} rows, "
          f"offset {fixture['offset'].tolist()}")
    return path


def make_fixture(
    module, family: str, name: str, config: dict, scenes, store_weights: bool, commit: str, out: Path
) -> Path:
    """Run Pointcept's `family` ("v3m1" or "v3m2") on the batch of `scenes` and save the fixture
    `out/pointcept_<family>_<name>.pt`."""
    batch = make_batch(scenes)
    if family == "v3m2":
        batch = with_coord_feature(batch)
    check_sample_sizes(name, batch, config)
    fixed = POINTCEPT_V3M2_FIXED if family == "v3m2" else POINTCEPT_FIXED
    backbone, head = build_pointcept(module, config, fixed)
    logits = pointcept_logits(module, backbone, head, batch, config)
    fixture = {
        "config": {k: _plain(v) for k, v in config.items()},
        "coord": batch["coord"].float().contiguous(),
        "grid_coord": batch["grid_coord"].long().contiguous(),
        "feat": batch["feat"].float().contiguous(),
        "offset": batch["offset"].long(),
        "logits": logits.contiguous(),
        "pointcept_commit": commit,
    }
    state = None
    if store_weights:
        state = {f"module.backbone.{k}": v for k, v in backbone.state_dict().items()}
        state.update({f"module.seg_head.{k}": v for k, v in head.state_dict().items()})
    return save_fixture(out / f"pointcept_{family}_{name}.pt", fixture, state)


FIXTURES = {  # (family, name): (module, config, scenes, store the state dict)
    ("v3m1", "small"): (PV3M1, SMALL_CONFIG, SMALL_SCENES, True),
    ("v3m1", "base"): (PV3M1, BASE_CONFIG, BASE_SCENES, False),
    ("v3m2", "small"): (PV3M2, V3M2_SMALL_CONFIG, SMALL_SCENES, True),
    ("v3m2", "base"): (PV3M2, V3M2_BASE_CONFIG, BASE_SCENES, False),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pointcept", type=Path, required=True, help="Pointcept checkout")
    parser.add_argument("--out", type=Path, default=Path("tests/models/fixtures"))
    parser.add_argument("--commit", help="Pointcept commit (default: the checkout's git HEAD)")
    parser.add_argument("--only", choices=("small", "base"), help="make one size only")
    parser.add_argument("--family", choices=("v3m1", "v3m2"), help="make one family only")
    args = parser.parse_args(argv)
    used = install_standins()
    print(f"stand-ins: {', '.join(used) or 'none'}")
    commit = commit_of(args.pointcept, args.commit)
    args.out.mkdir(parents=True, exist_ok=True)
    for (family, name), (module_name, config, scenes, store) in FIXTURES.items():
        if args.only not in (None, name) or args.family not in (None, family):
            continue
        module = import_model_module(args.pointcept, module_name)
        make_fixture(module, family, name, config, scenes, store, commit, args.out)


if __name__ == "__main__":
    main()
