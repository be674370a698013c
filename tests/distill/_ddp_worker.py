"""One rank of the 2-process gloo test of `srkd.distill.run.run` (test_ddp.py).

A module without pytest, so the spawned processes import little. The rank joins the process
group through a file:// rendezvous (no TCP port to collide with) BEFORE calling run(); run()
sees WORLD_SIZE=2 and an initialised group, exactly as under torchrun. The rank trains through
the commands' own runner (run_with_progress, which prints the header, progress and "done"), with
its stdout and stderr (file descriptors 1 and 2) sent to `rank<N>.out`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def worker(rank: int, rendezvous: str, cfg_values: dict, report_dir: str) -> None:
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=2)
    with open(Path(report_dir) / f"rank{rank}.out", "w") as out:  # what the rank prints from here
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    try:
        import srkd.distill.run as experiment
        import srkd.losses.distributed as distributed
        from srkd.distill.config import RunConfig

        gathers: list[tuple[int, int, int]] = []
        real_gather = distributed.all_gather_with_grad

        def spy_gather(tensors, *args, **kwargs):
            out = real_gather(tensors, *args, **kwargs)
            gathers.append((len(tensors), len(out), distributed.world_size()))
            return out

        distributed.all_gather_with_grad = spy_gather  # run() imports it from the module
        seen: dict = {}
        real_train = experiment.train

        def spy_train(model, *args, **kwargs):
            seen["model"], seen["extra"] = model, kwargs["extra_modules"]
            return real_train(model, *args, **kwargs)

        experiment.train = spy_train
        records: list[dict] = []
        real_run, results = experiment.run, []

        def spy_run(cfg, on_step=None, on_start=None):
            def both(record):
                records.append(record)
                if on_step:
                    on_step(record)

            results.append(real_run(cfg, on_step=both, on_start=on_start))
            return results[-1]

        experiment.run = spy_run  # run_with_progress imports it from the module when called
        from pipeline.commands._training import run_with_progress

        run_with_progress(RunConfig(**cfg_values), "distill")
        result = results[0]
        core = seen["model"].module if hasattr(seen["model"], "module") else seen["model"]
        torch.save({
            "step": result.step,
            "records": records,
            "gathers": gathers,
            "wrapped": type(seen["model"]).__name__,
            "model": core.state_dict(),
            "params": {k: v.detach() for k, v in core.named_parameters()},
            "extra": [m.state_dict() for m in seen["extra"]],
        }, Path(report_dir) / f"rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while its peer is still in a collective
    finally:
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)  # skip the C++ teardown where gloo sometimes aborts (see tests/losses/_ddp_worker.py)
