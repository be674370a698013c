"""Serialized patch attention of Point Transformer V3 (Wu et al., CVPR 2024, Sec. 3.3).

Points are sorted along a space-filling curve and cut into patches of `patch_size` consecutive
points; attention runs inside each patch. Sample sizes are rarely multiples of the patch size, so
we follow Pointcept's padding scheme (facts from `SerializedAttention.get_padding_and_inverse`):

- a sample of n <= K points is one patch of n points;
- a sample of n > K points is padded to ceil(n / K) * K slots; the missing slots of its last patch
  are filled with the points that sit one patch earlier, so the last patch holds the sample's last
  K points. Duplicated slots are computed and discarded: every real point reads its output from
  its own (first) slot.

The same patches are used on every device: with flash-attn's variable-length kernel on CUDA when
it is importable, with srkd's fused CPU kernel (srkd/models/cpu_attention.py) on CPU at head
width 8, and with torch's scaled_dot_product_attention (a key mask for patches shorter
than K) otherwise. Pointcept's own non-flash path instead shrinks K to the smallest sample of the
batch; we keep the flash semantics everywhere so CPU and GPU agree on one checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from srkd.errors import DataError
from srkd.models import cpu_attention

try:  # optional: only used on CUDA when installed
    import flash_attn  # type: ignore[import-not-found]
except (ImportError, OSError, RuntimeError):  # pragma: no cover - a broken build counts as absent
    flash_attn = None


def flash_available() -> bool:
    """True when flash-attn can be imported (it is never required)."""
    return flash_attn is not None


@dataclass
class PatchLayout:
    """Where each serialized point goes in the padded, patch-aligned sequence.

    pad:        int64 (P,) for each padded slot, the serialized position it reads (P >= N).
    unpad:      int64 (N,) for each serialized position, its own slot in the padded sequence.
    cu_seqlens: int32 (S + 1,) start of every patch in the padded sequence, then P.
    patch_size: the longest patch, min(K, largest sample).
    """

    pad: torch.Tensor
    unpad: torch.Tensor
    cu_seqlens: torch.Tensor
    patch_size: int
    grid_pos: torch.Tensor | None = None
    row_of_pos: torch.Tensor | None = None
    key_mask: torch.Tensor | None = None
    patch_lengths: torch.Tensor | None = None

    @property
    def num_patches(self) -> int:
        """Number of patches S."""
        return len(self.cu_seqlens) - 1

    def __post_init__(self) -> None:
        # The (S, L) grid that SDPA runs on (L = patch_size), derived once per layout:
        #   grid_pos   int64 (S * L,) serialized position read by each grid cell (cells past a
        #              short patch's end read its last slot and are masked out),
        #   row_of_pos int64 (N,) grid cell (row of the (S * L, C) output) of each position,
        #   key_mask   bool (S, 1, 1, L) valid keys, or None when every patch is full,
        #   patch_lengths int32 (S,) valid slots per patch, or None when every patch is full.
        if self.grid_pos is not None:
            return
        bounds = self.cu_seqlens.long()
        lengths = bounds[1:] - bounds[:-1]
        steps = torch.arange(self.patch_size, device=bounds.device)
        valid = steps[None, :] < lengths[:, None]  # (S, L)
        slot = (bounds[:-1, None] + steps[None, :]).clamp(max=int(self.pad.numel()) - 1)
        self.grid_pos = self.pad[slot.reshape(-1)]
        row_of_slot = torch.nonzero(valid.reshape(-1)).reshape(-1)  # row-major = packed order
        self.row_of_pos = row_of_slot[self.unpad]
        full = bool(valid.all())
        self.key_mask = None if full else valid[:, None, None, :]
        self.patch_lengths = None if full else lengths.to(torch.int32)


def counts_from_offset(offset: torch.Tensor) -> torch.Tensor:
    """int64 (B,) points per sample from cumulative end offsets (B,)."""
    return torch.diff(offset.long(), prepend=offset.new_zeros(1).long())


def patch_layout(offset: torch.Tensor, patch_size: int) -> PatchLayout:
    """Pointcept's padding of a serialized batch into patches of `patch_size` points.

    offset: int64 (B,) cumulative end index of each sample in serialized order.
    """
    if patch_size < 1:
        raise DataError(f"patch_size must be >= 1, got {patch_size}")
    device = offset.device
    k = int(patch_size)
    counts = counts_from_offset(offset)
    if bool((counts <= 0).any()):
        raise DataError(f"every sample needs at least one point; points per sample: {counts.tolist()}")
    padded = torch.where(counts > k, (counts + k - 1) // k * k, counts)
    start = torch.cumsum(counts, 0) - counts  # first serialized position of each sample
    pstart = torch.cumsum(padded, 0) - padded  # first padded slot of each sample

    # slot -> (sample, local index); slots past the sample's end copy from one patch earlier
    sample_of_slot = torch.repeat_interleave(torch.arange(len(counts), device=device), padded)
    local = torch.arange(int(padded.sum()), device=device) - pstart[sample_of_slot]
    local = torch.where(local < counts[sample_of_slot], local, local - k)
    pad = start[sample_of_slot] + local

    sample_of_point = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    unpad = torch.arange(int(counts.sum()), device=device) + (pstart - start)[sample_of_point]

    n_patches = (padded + k - 1) // k
    sample_of_patch = torch.repeat_interleave(torch.arange(len(counts), device=device), n_patches)
    first_patch = torch.cumsum(n_patches, 0) - n_patches
    within = torch.arange(int(n_patches.sum()), device=device) - first_patch[sample_of_patch]
    starts = pstart[sample_of_patch] + within * k
    total = padded.sum().reshape(1)
    cu_seqlens = torch.cat([starts, total]).to(torch.int32)
    longest = int(torch.clamp(counts.max(), max=k))  # samples smaller than K shorten every patch
    return PatchLayout(pad=pad, unpad=unpad, cu_seqlens=cu_seqlens, patch_size=longest)


class SerializedAttention(nn.Module):
    """Multi-head attention within patches of the serialized sequence.

    Parameters follow Pointcept's `SerializedAttention` (qkv: Linear(C, 3C), proj: Linear(C, C));
    the qkv output is laid out as (3, heads, C / heads) per point.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        patch_size: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        order_index: int = 0,
        enable_flash: bool = True,
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise DataError(f"channels {channels} must be divisible by num_heads {num_heads}")
        self.channels = channels
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.scale = qk_scale or (channels // num_heads) ** -0.5
        self.order_index = order_index
        self.enable_flash = enable_flash
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(channels, channels * 3, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self,
        feat: torch.Tensor,
        order: torch.Tensor,
        inverse: torch.Tensor,
        layout: PatchLayout,
        patch_index: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """feat: (N, C); order/inverse: int64 (N,) one curve's serialized order and its inverse;
        layout: `patch_layout(offset, self.patch_size)`; patch_index: optional
        `patch_gather_index(order, inverse, layout)` (a level caches it per curve).
        Returns (N, C) in input point order."""
        return self.proj_drop(self.proj(self.attend(self.qkv(feat), order, inverse, layout, patch_index)))

    def attend(
        self,
        qkv: torch.Tensor,
        order: torch.Tensor,
        inverse: torch.Tensor,
        layout: PatchLayout,
        patch_index: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attention within the patches: qkv (N, 3C) laid out as (3, heads, C / heads) per point
        (query, key, value); the other arguments as in `forward`. Returns (N, C) in input point
        order, before the output projection."""
        c = qkv.shape[1] // 3
        h = self.num_heads
        dropout_p = self.attn_drop if self.training else 0.0
        if self.enable_flash and flash_attn is not None and qkv.is_cuda:
            slot_order = order[layout.pad]  # padded slot -> point index
            half = qkv.dtype if qkv.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
            out = flash_attn.flash_attn_varlen_qkvpacked_func(
                qkv[slot_order].reshape(-1, 3, h, c // h).to(half),
                layout.cu_seqlens,
                max_seqlen=layout.patch_size,
                dropout_p=dropout_p,
                softmax_scale=self.scale,
            ).to(qkv.dtype)
            out = out.reshape(-1, c)[layout.unpad[inverse]]
        else:
            # one gather in (point -> (S, L) grid cell), attention on the grid (the fused CPU kernel
            # or SDPA), one gather out
            grid_point, point_row = patch_index or patch_gather_index(order, inverse, layout)
            grid = qkv[grid_point].view(layout.num_patches, -1, 3, h, c // h)  # (S, L, 3, H, D)
            if cpu_attention.usable(grid, dropout_p):
                out = cpu_attention.patch_attention(grid, layout.patch_lengths, self.scale)  # (S, L, H, D)
            else:
                q, k, v = grid.permute(2, 0, 3, 1, 4).unbind(0)
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=layout.key_mask, dropout_p=dropout_p, scale=self.scale
                ).transpose(1, 2)  # (S, H, L, D) -> (S, L, H, D)
            out = out.reshape(-1, c)[point_row]
        return out


def patch_gather_index(
    order: torch.Tensor, inverse: torch.Tensor, layout: PatchLayout
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather maps between points and the (S, L) SDPA grid of one curve.

    order, inverse: int64 (N,) the curve's serialized order and its inverse permutation.
    Returns (grid_point int64 (S * L,): the point each grid cell reads; point_row int64 (N,):
    the grid cell each point's output is read from).
    """
    return order[layout.grid_pos], layout.row_of_pos[inverse]
