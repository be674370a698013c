"""Gathering per-sample features across DDP ranks for the cross-sample relation loss.

Every rank gathers every rank's sampled features and computes the SAME global relation loss
over all B_global^2 sample pairs. Gradients reach only the rank's own (local) student features.
Because DDP then averages parameter gradients over the W ranks, the local features' gradient is
multiplied by W on the way back (`scale_grad`), so that the averaged gradient equals the
gradient of the global loss: (1/W) * sum_r W * dL/dS_r * dS_r/dtheta = dL/dtheta.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from srkd.errors import ConfigError


class _ScaleGrad(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by `factor`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad * ctx.factor, None


def world_size(group: dist.ProcessGroup | None = None) -> int:
    """Number of ranks, 1 when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(group)
    return 1


def all_gather_with_grad(
    tensors: list[torch.Tensor],
    group: dist.ProcessGroup | None = None,
    scale_grad: bool = True,
) -> list[torch.Tensor]:
    """Gather a per-sample list of (n_i, D) tensors from every rank, keeping local gradients.

    Ranks may hold different numbers of samples and different n_i; all must share D, dtype and
    device type (CPU tensors for gloo, CUDA for NCCL). Internally: all_gather of the per-rank
    sample counts, of the zero-padded size vectors, and of the zero-padded concatenated rows;
    then the rows are split back per sample. Remote samples come back detached; this rank's
    slots are replaced by the local tensors themselves so autograd reaches them.

    Args:
        tensors:    this rank's B_r tensors (n_i, D), B_r >= 1.
        group:      process group (None = default).
        scale_grad: multiply local gradients by the world size W (see the module docstring);
                    set False when every rank does NOT compute the same global loss.
    Returns:
        The B_global tensors in rank order (rank 0's samples first). Without an initialised
        process group, or with W = 1, the input list itself.
    """
    w = world_size(group)
    if w == 1:
        return list(tensors)
    if not tensors:
        raise ConfigError("all_gather_with_grad: this rank has no samples; every rank needs >= 1")
    width = tensors[0].shape[1]
    if any(t.ndim != 2 or t.shape[1] != width for t in tensors):
        raise ConfigError(
            "all_gather_with_grad: every tensor must be (n_i, D) with one D, got "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    device, dtype = tensors[0].device, tensors[0].dtype
    rank = dist.get_rank(group)

    count = torch.tensor([len(tensors)], dtype=torch.int64, device=device)
    counts = [torch.zeros_like(count) for _ in range(w)]
    dist.all_gather(counts, count, group=group)
    counts_py = [int(c.item()) for c in counts]
    max_count = max(counts_py)

    sizes = torch.zeros(max_count, dtype=torch.int64, device=device)
    sizes[: len(tensors)] = torch.tensor([t.shape[0] for t in tensors], dtype=torch.int64)
    all_sizes = [torch.zeros_like(sizes) for _ in range(w)]
    dist.all_gather(all_sizes, sizes, group=group)
    per_rank = [s[:c].tolist() for s, c in zip(all_sizes, counts_py)]
    max_rows = max(sum(s) for s in per_rank)

    flat = torch.zeros(max_rows, width, dtype=dtype, device=device)
    local = torch.cat([t.detach() for t in tensors])
    flat[: local.shape[0]] = local
    gathered = [torch.empty_like(flat) for _ in range(w)]
    dist.all_gather(gathered, flat, group=group)

    out: list[torch.Tensor] = []
    for r, (rows, sizes_r) in enumerate(zip(gathered, per_rank)):
        if r == rank:
            out.extend(_ScaleGrad.apply(t, float(w)) if scale_grad else t for t in tensors)
        else:
            out.extend(torch.split(rows[: sum(sizes_r)], sizes_r))
    return out
