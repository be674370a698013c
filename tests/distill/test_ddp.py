"""`srkd.distill.run.run` under DDP: 2 CPU processes on gloo, cached SRKD targets; only rank 0
prints and writes files."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.distill._ddp_worker import worker


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
@pytest.mark.slow  # two spawned processes import torch and spconv: ~10-20 s on 2 busy cores
def test_two_gloo_ranks_distill_over_the_global_batch(tmp_path, cache_dir):
    out = tmp_path / "run"
    cfg = dict(model="test_ptv3", out=out, cache=cache_dir, method="srkd", epochs=2, batch_size=1,
               grid_size=0.1, device="cpu", mix3d_prob=0.0, val_max_scenes=1,
               loss_overrides={"n_relation_points": 64}, tensorboard=True)
    mp.spawn(worker, args=(f"file://{tmp_path / 'rendezvous'}", cfg, str(tmp_path)), nprocs=2,
             join=True)
    reports = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    # 4 train scenes split over 2 ranks, 1 sample per rank and step: 2 steps per epoch
    for rep in reports:
        assert rep["step"] == 4 and rep["wrapped"] == "DistributedDataParallel"
        assert [r["step"] for r in rep["records"]] == [1, 2, 3, 4]
        assert all(math.isfinite(r["loss"]) for r in rep["records"])
        # relation: teacher and student sides gathered every step, 1 local -> 2 global samples
        assert rep["gathers"] == [(1, 2, 2)] * 8
    # every rank computed the same global relation over the same 2 x 2 sample pairs, although
    # their local samples (and so their local CE, KL, ...) differ
    for a, b in zip(reports[0]["records"], reports[1]["records"]):
        assert a["relation"] == pytest.approx(b["relation"], rel=1e-5, abs=1e-9)
        assert a["ce"] != b["ce"]
    # DDP kept the ranks in sync: the same student weights and the same FeatMSE projection
    # everywhere (BatchNorm running statistics stay per rank, as in any DDP run without SyncBN)
    for key, value in reports[0]["params"].items():
        assert torch.equal(value, reports[1]["params"][key]), key
    for m0, m1 in zip(reports[0]["extra"], reports[1]["extra"]):
        assert m0.keys() and all(torch.equal(m0[k], m1[k]) for k in m0)
    # only rank 0 writes files
    for name in ("model.pt", "model_last.pt", "log.jsonl", "train_state.pt", "curves.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "tensorboard").iterdir())) == 1  # one event file: rank 0's
    # only rank 0 prints: the header, the loss shares, the progress and "done"; rank 1 nothing
    printed = [(tmp_path / f"rank{r}.out").read_text() for r in range(2)]
    for needle in ("distill: 4 steps (2/epoch) on cpu x2", "loss shares at step 1:", "done: 4 steps"):
        assert needle in " ".join(printed[0].split()), printed[0]
    assert printed[1].strip() == "", printed[1]
    saved = torch.load(out / "model_last.pt", weights_only=False)
    assert saved["train_params"]["world_size"] == 2
    for key, value in reports[0]["model"].items():
        assert torch.equal(saved["state_dict"][key], value), key
