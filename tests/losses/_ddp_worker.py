"""The 2-process gloo worker of test_distributed.py (a module of its own, without pytest, so
the spawned processes import little)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from srkd.losses import all_gather_with_grad, relation_loss

SIZES = [6, 9, 5]  # rank 0 holds samples 0 and 1, rank 1 holds sample 2 (uneven on purpose)
OWNER = [0, 0, 1]


def data():
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(n, 4, generator=g, dtype=torch.float64) for n in SIZES]
    ts = [torch.randn(n, 6, generator=g, dtype=torch.float64) for n in SIZES]
    torch.manual_seed(1)
    student = torch.nn.Linear(4, 3).double()
    return xs, ts, student


def reference():
    xs, ts, student = data()
    loss = relation_loss(ts, [student(x) for x in xs], 2.0)
    loss.backward()
    return float(loss.detach()), student.weight.grad.clone()


def worker(rank: int, init_method: str, want_loss: float, want_grad: torch.Tensor) -> None:
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        xs, ts, student = data()
        mine = [i for i, r in enumerate(OWNER) if r == rank]
        local_s = [student(xs[i]) for i in mine]
        global_t = all_gather_with_grad([ts[i] for i in mine])
        global_s = all_gather_with_grad(local_s)
        assert [t.shape[0] for t in global_s] == SIZES
        for i in range(len(SIZES)):
            assert torch.equal(global_t[i], ts[i])
            assert torch.allclose(global_s[i].detach(), student(xs[i]).detach())
            assert global_s[i].requires_grad == (OWNER[i] == rank)
        loss = relation_loss(global_t, global_s, 2.0)
        assert abs(float(loss.detach()) - want_loss) < 1e-12
        loss.backward()
        grad = student.weight.grad
        dist.all_reduce(grad)  # what DDP does: average parameter gradients over ranks
        grad /= 2
        assert torch.allclose(grad, want_grad, rtol=1e-10, atol=1e-14), (grad, want_grad)
        dist.barrier()  # both ranks leave their collectives before either tears gloo down
    finally:
        dist.destroy_process_group()
    # Checks passed: leave without the interpreter's C++ teardown, where gloo's threads
    # sometimes abort the process ("terminate called without an active exception", SIGABRT),
    # which mp.spawn reports as a failure although every assertion held.
    os._exit(0)
