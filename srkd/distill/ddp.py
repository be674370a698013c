"""Distributed data parallel training under torchrun: the process group, the device of each
rank, the sampler that splits an epoch, and the DDP wrappers of the model and the loss.

Without torchrun (WORLD_SIZE unset or 1) every function here is the identity: world 1, rank 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class Distributed:
    """This process's place in a torchrun job (world 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): nccl on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def rank_device(device: torch.device, dist_info: Distributed) -> torch.device:
    """The device this rank trains on: under torchrun one GPU per local rank; a bare "cuda" is
    GPU 0. The CUDA device is made current; a CPU device is returned unchanged."""
    if device.type != "cuda":
        return device
    if dist_info.world > 1 or device.index is None:
        device = torch.device("cuda", dist_info.local_rank if dist_info.world > 1 else 0)
    torch.cuda.set_device(device)
    return device


def feature_gather(dist_info: Distributed) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The all-gather (with gradient) the cross-sample relation term uses across ranks; None
    in a single process."""
    if dist_info.world <= 1:
        return None
    from srkd.losses.distributed import all_gather_with_grad

    return all_gather_with_grad


def epoch_sampler(dataset: Any, dist_info: Distributed, seed: int) -> Any:
    """A DistributedSampler giving each rank its share of every epoch (shuffled by `seed` and the
    epoch, the last incomplete share dropped); None in a single process (the loader shuffles)."""
    if dist_info.world <= 1:
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, dist_info.world, dist_info.rank, shuffle=True, seed=seed,
                              drop_last=True)


def wrap_ddp(model: nn.Module, loss: nn.Module, device: torch.device,
             dist_info: Distributed) -> tuple[nn.Module, nn.Module]:
    """(model, loss) as the training step calls them: DDP-wrapped under torchrun, else as given.

    The loss is wrapped only when it has trainable parameters (the FeatMSE projection trains with
    the student): without DDP its gradients would stay per rank and every rank would end up with
    a different projection.
    """
    if dist_info.world <= 1:
        return model, loss
    ids = [device.index] if device.type == "cuda" else None
    model = nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)
    if any(p.requires_grad for p in loss.parameters()):
        # device_ids None: its inputs are already on the device, leave them untouched
        loss = nn.parallel.DistributedDataParallel(loss, device_ids=None)
    return model, loss
