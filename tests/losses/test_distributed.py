"""all_gather_with_grad on CPU with gloo and 2 processes: the DDP-averaged gradient of the
gathered relation loss equals the single-process gradient over the whole global batch."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from srkd.losses import all_gather_with_grad
from srkd.losses.distributed import world_size
from tests.losses._ddp_worker import reference, worker


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
@pytest.mark.slow  # two spawned processes import torch: ~4 s idle, more on a busy machine
def test_gather_with_grad_two_gloo_ranks(tmp_path):
    want_loss, want_grad = reference()
    # a FileStore rendezvous: no TCP port that another process on the machine could take
    store = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(worker, args=(store, want_loss, want_grad), nprocs=2, join=True)


def test_single_process_is_identity():
    feats = [torch.randn(3, 2, requires_grad=True)]
    assert world_size() == 1
    out = all_gather_with_grad(feats)
    assert out[0] is feats[0]
