"""Sparse convolution and patch attention as plain tensor ops on host-built indices.

Each function reads the parameters of an srkd module (an spconv conv, a SerializedAttention) and
applies it with gather / matmul / softmax only, given the index arrays of
`srkd.runtime.indices`, so the same weights run under torch.export and in ONNX Runtime. Shapes:
M rows at the conv's level, C_in / C_out channels, k**3 kernel offsets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GEMM_DEPTH = 1024
"""Kernel offsets are gathered in groups of about GEMM_DEPTH / C_in, one matmul per group: one
deep GEMM is fast on CPUs, and the gathered (M, group, C_in) block stays small."""


def _kernel(conv: nn.Module) -> torch.Tensor:
    """float (k**3, C_in, C_out) from spconv's (C_out, k, k, k, C_in) weight (x-major offsets)."""
    w = conv.weight
    return w.reshape(w.shape[0], -1, w.shape[-1]).permute(1, 2, 0)


def _with_bias(conv: nn.Module, out: torch.Tensor) -> torch.Tensor:
    return out if conv.bias is None else out + conv.bias


def take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[index] for x (M, ...) and an int64 index of any shape, as one row gather (ONNX Gather;
    advanced indexing with a 2-D index exports as the much slower GatherND)."""
    return x.index_select(0, index.reshape(-1)).reshape(*index.shape, *x.shape[1:])


def _zero_row(x: torch.Tensor) -> torch.Tensor:
    """x float (M, C) with a zero row appended: (M + 1, C); index M reads zeros."""
    return torch.cat([x, x.new_zeros((1, x.shape[1]))], dim=0)


def gather_conv(conv: nn.Module, x: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
    """Sparse conv as gather + matmul: out[i] = sum_j W[j] x[nbr[i, j]] (+ bias).

    x float (M_in, C_in); nbr int64 (M_out, K) rows of x per kernel offset, M_in = none
    (a submanifold map, or a strided conv's child table); returns float (M_out, C_out)."""
    w = _kernel(conv)
    offsets, c_in, c_out = w.shape
    if offsets == 1:  # spconv computes a 1x1x1 conv as x @ weight.view(C_in, C_out): the same here
        return _with_bias(conv, x @ conv.weight.reshape(c_in, c_out))
    padded = _zero_row(x)
    group = max(1, min(offsets, GEMM_DEPTH // c_in))
    out = None
    for start in range(0, offsets, group):
        part = take(padded, nbr[:, start : start + group])  # (M_out, g, C_in)
        part = part.reshape(part.shape[0], -1) @ w[start : start + group].reshape(-1, c_out)
        out = part if out is None else out + part
    return _with_bias(conv, out)


def inverse_conv(conv: nn.Module, x: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Inverse of a kernel-2 stride-2 conv: fine row i gets W[j] x[p] for its parent p and child
    offset j (up[i] = p * 8 + j). x float (M_coarse, C_in); returns float (M_fine, C_out)."""
    w = _kernel(conv)  # (8, C_in, C_out)
    every = x @ w.permute(1, 0, 2).reshape(w.shape[1], -1)  # (M_coarse, 8 * C_out)
    return _with_bias(conv, take(every.reshape(-1, w.shape[2]), up))


def patch_attention(attn: nn.Module, x: torch.Tensor, grid_point: torch.Tensor, point_row: torch.Tensor,
                    mask: torch.Tensor | None) -> torch.Tensor:
    """`SerializedAttention` (qkv, softmax attention inside padded patches, proj) on gathered
    patches. x float (M, C); grid_point int64 (S, L) row of each patch slot; point_row int64 (M,)
    the flattened slot each row reads; mask float (S, L) 0 / -inf per key slot, or None when
    every patch is full (one sample)."""
    c, h = x.shape[1], attn.num_heads
    qkv = take(attn.qkv(x), grid_point)  # (S, L, 3C)
    qkv = qkv.reshape(qkv.shape[0], qkv.shape[1], 3, h, c // h).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]  # (S, H, L, D)
    # a full (S, 1, L, L) view of the key mask: ONNX's Attention op (opset 23) does not broadcast
    # over queries; SDPA becomes that one fused op in ONNX Runtime, matmul + softmax before 23
    bias = None if mask is None else mask[:, None, None, :].expand(-1, 1, q.shape[2], -1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attn.scale)
    out = out.transpose(1, 2).reshape(-1, c)  # (S * L, C)
    return attn.proj(take(out, point_row))


def voxel_mean(feat: torch.Tensor, voxel_of_point: torch.Tensor, voxel_count: torch.Tensor) -> torch.Tensor:
    """float (M, C): the mean of the points' feat (N, C) per voxel (voxel_count float (M, 1))."""
    total = feat.new_zeros((voxel_count.shape[0], feat.shape[1])).index_add(0, voxel_of_point, feat)
    return total / voxel_count
