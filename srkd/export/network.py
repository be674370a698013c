"""The export-friendly network path: an srkd model's own modules run on host-built indices.

`TensorNetwork(model)` wraps a PointTransformerV3 or SpUNet without copying it: it holds the model
(so it loads the same state dict, under the prefix ``model.``) and walks its modules, running
each sparse conv and attention with `srkd.export.ops` on the index arrays of
`srkd.runtime.indices` and every other module (Linear, LayerNorm, BatchNorm, GELU, ReLU, MLP)
as it is. forward(feat, *indices) -> logits:

    feat     float32 (N, C_in) the points' input features
    indices  the arrays named by `plan.dims()` after "feat", in that order
    logits   float32 (N, K), one row per point

Nothing in forward depends on data values: it is traceable by torch.export and exportable to
ONNX with every point and voxel count dynamic. Eval mode only (no dropout, drop-path or batch
statistics).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from srkd.errors import ConfigError
from srkd.export.ops import gather_conv, inverse_conv, patch_attention, take, voxel_mean
from srkd.models.ptv3 import PointTransformerV3
from srkd.models.ptv3_blocks import Block
from srkd.models.spunet import SpUNet
from srkd.runtime.indices import IndexPlan


def plan_for(model: nn.Module) -> IndexPlan:
    """The IndexPlan of an srkd PTv3 or SpUNet; ConfigError naming anything else."""
    if isinstance(model, PointTransformerV3):
        stages = len(model.enc)
        patches: list[set] = [set() for _ in range(stages)]
        for name, part in (("enc", model.enc), ("dec", model.dec)):
            for key, stage in part.items():
                level = int(key[len(name):])
                for module in stage.values():
                    if isinstance(module, Block):
                        patches[level].add((module.attn.patch_size, module.order_index % len(model.order)))
        strides = [model.enc[f"enc{s}"]["down"].stride for s in range(1, stages)]
        kernels = [((5,) if s == 0 else ()) + ((3,) if patches[s] else ()) for s in range(stages)]
        return IndexPlan("ptv3", tuple(kernels), tuple(model.order), tuple(strides),
                         tuple(tuple(sorted(p)) for p in patches))  # fmt: skip
    if isinstance(model, SpUNet):
        return IndexPlan("spunet", ((5, 3),) + ((3,),) * model.num_stages)
    raise ConfigError(
        f"{type(model).__name__} cannot be exported: srkd exports its PTv3 (ptv3_*, demo_student) "
        "and SpUNet (spunet_*) models"
    )


class TensorNetwork(nn.Module):
    """forward(feat, *indices) -> logits for `model` (see the module docstring). masks=False:
    the network takes no patch key masks and one sample per call (what `srkd export` writes)."""

    def __init__(self, model: nn.Module, masks: bool = True) -> None:
        super().__init__()
        self.plan = dataclasses.replace(plan_for(model), masks=masks)
        self.model = model
        self.index_names = tuple(self.plan.dims())[1:]

    def forward(self, feat: torch.Tensor, *indices: torch.Tensor) -> torch.Tensor:
        idx = dict(zip(self.index_names, indices, strict=True))
        x = voxel_mean(feat, idx["voxel_of_point"], idx["voxel_count"])
        run = self._ptv3 if self.plan.kind == "ptv3" else self._spunet
        return take(run(x, idx), idx["voxel_of_point"])

    # ---- PTv3 --------------------------------------------------------------------------

    def _block(self, block: Block, x: torch.Tensor, cpe_in: torch.Tensor, level: int, idx: dict) -> torch.Tensor:
        conv, linear, norm = block.cpe
        x = x + norm(linear(gather_conv(conv, cpe_in, idx[f"nbr{level}_k3"])))
        size, curve = block.attn.patch_size, block.order_index % len(self.model.order)
        key = f"{level}_p{size}_c{curve}"
        x = x + patch_attention(block.attn, block.norm1(x), idx[f"patch{key}"], idx[f"unpatch{key}"],
                                idx.get(f"mask{level}_p{size}"))  # fmt: skip
        return x + block.mlp(block.norm2(x))

    def _stage(self, stage: nn.ModuleDict, x: torch.Tensor, level: int, idx: dict,
               cpe_in: torch.Tensor | None = None) -> torch.Tensor:
        for name, module in stage.items():
            if name in ("down", "up"):
                continue
            x = self._block(module, x, x if cpe_in is None else cpe_in, level, idx)
            cpe_in = None
        return x

    def _ptv3(self, x: torch.Tensor, idx: dict) -> torch.Tensor:
        m = self.model
        stem = m.embedding.stem
        x = stem["act"](stem["norm"](gather_conv(stem["conv"], x, idx["nbr0_k5"])))
        skips = []
        for level, stage in enumerate(m.enc.values()):
            if level:
                down = stage["down"]
                x = take(down.proj(x), idx[f"pool{level}"]).amax(dim=1)
                x = down.act(down.norm(x))
            x = self._stage(stage, x, level, idx)
            skips.append(x)
        for key, stage in m.dec.items():
            level = int(key[3:])
            up = stage["up"]
            skip = up.proj_skip(skips[level])
            x = skip + take(up.proj(x), idx[f"unpool{level + 1}"])
            x = self._stage(stage, x, level, idx, cpe_in=skip if up.mode == "v3m1" else None)
        return m.seg_head(x)

    # ---- SpUNet ------------------------------------------------------------------------

    @staticmethod
    def _residual(block: nn.Module, x: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        out = block.relu(block.bn1(gather_conv(block.conv1, x, nbr)))
        out = block.bn2(gather_conv(block.conv2, out, nbr))
        proj = block.proj
        shortcut = x if isinstance(proj[0], nn.Identity) else proj[1](gather_conv(proj[0], x, nbr))
        return block.relu(out + shortcut)

    def _blocks(self, blocks: nn.Module, x: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            x = self._residual(block, x, nbr)
        return x

    def _spunet(self, x: torch.Tensor, idx: dict) -> torch.Tensor:
        m = self.model
        conv, norm, act = m.conv_input
        x = act(norm(gather_conv(conv, x, idx["nbr0_k5"])))
        skips = [x]
        for s, (down, enc) in enumerate(zip(m.down, m.enc)):
            conv, norm, act = down
            x = act(norm(gather_conv(conv, x, idx[f"down{s + 1}"])))
            x = self._blocks(enc, x, idx[f"nbr{s + 1}_k3"])
            skips.append(x)
        x = skips.pop()
        for s in reversed(range(m.num_stages)):
            conv, norm, act = m.up[s]
            x = act(norm(inverse_conv(conv, x, idx[f"up{s + 1}"])))
            x = self._blocks(m.dec[s], torch.cat((x, skips.pop()), dim=1), idx[f"nbr{s}_k3"])
        return gather_conv(m.final, x, idx["nbr0_k3"])


def network_inputs(plan: IndexPlan, coord, feat, offset, grid_size: float) -> tuple[torch.Tensor, ...]:
    """(feat, *indices) as torch tensors for TensorNetwork: coord float (N, 3) metres, feat float
    (N, C), offset int (B,) sample ends (numpy arrays or tensors)."""
    import numpy as np

    from srkd.runtime.indices import build_indices

    as_np = [t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t) for t in (coord, feat, offset)]
    built = build_indices(plan, as_np[0], as_np[2], grid_size)
    names = tuple(plan.dims())[1:]
    return (torch.from_numpy(np.ascontiguousarray(as_np[1], dtype=np.float32)),
            *(torch.from_numpy(built[n]) for n in names))  # fmt: skip
