"""Benchmark each distillation loss term alone: forward + backward process CPU time per step.

    PYTHONPATH=$PWD python bench/loss_terms.py                       # ptv3_large -> ptv3_half sizes
    PYTHONPATH=$PWD python bench/loss_terms.py --against main --rounds 2

The inputs are what one training step hands the loss at bench/distill_step.py's default sizes:
--batch samples of --points points, K = --classes logits, student features of width
--student-dim (ptv3_half: 32), teacher features of width --teacher-dim (ptv3_large: 64), random
values from a fixed seed (the time of these terms does not depend on the values). Each row is one
`srkd.losses.combined.DistillLoss` with a single active term at weight 1 (temperature 2, tau 2,
--relation-points per sample), plus the whole `ce` and `srkd` recipes; the time is the minimum
over --repeats of forward + backward (process CPU time, robust to other processes at one thread).

--against REV: `git archive REV` is unpacked into a temporary folder; workers for both trees run
in alternating subprocesses (--rounds times) and the table gives old / new ratios of the median
over rounds. Prints a table and writes JSON (default bench/results/loss_terms.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
RESULTS = HERE.parent / "results" / "loss_terms.json"
ROWS = ("ce", "lovasz", "kl", "relation", "feat_mse", "cwd", "recipe:ce", "recipe:srkd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2, help="samples per step")
    p.add_argument("--points", type=int, default=8000, help="points per sample")
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--student-dim", type=int, default=32, help="student feature width (ptv3_half: 32)")
    p.add_argument("--teacher-dim", type=int, default=64, help="teacher feature width (ptv3_large: 64)")
    p.add_argument("--relation-points", type=int, default=2048, help="relation points per sample")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per row (minimum)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--against", metavar="REV", help="also time the tree of git revision REV")
    p.add_argument("--rounds", type=int, default=1, help="worker runs per tree, alternating")
    p.add_argument("--timeout", type=float, default=900, help="seconds per worker")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _loss(row: str, args: argparse.Namespace):
    """The DistillLoss of one row: a single term at weight 1, or a whole recipe."""
    import torch

    from srkd.losses.combined import DistillLoss, LossWeights
    from srkd.losses.recipes import recipe

    if row.startswith("recipe:"):
        rec = recipe(row.split(":", 1)[1])
        weights, temperature, tau = rec.weights, rec.temperature, rec.tau
    else:
        weights = LossWeights(**{name: (1.0 if name == row else 0.0) for name in LossWeights.names()})
        temperature, tau = 2.0, 2.0
    return DistillLoss(weights, temperature, tau, args.relation_points, args.student_dim,
                       args.teacher_dim, generator=torch.Generator().manual_seed(0))  # fmt: skip


def measure(args: argparse.Namespace) -> dict[str, float]:
    """{row: minimum forward + backward process CPU seconds} in this process's srkd tree."""
    import torch

    from srkd.models.base import ModelOutput

    torch.set_num_threads(args.threads)
    n, k = args.batch * args.points, args.classes
    g = torch.Generator().manual_seed(0)
    segment = torch.randint(-1, k, (n,), generator=g)
    offset = torch.arange(1, args.batch + 1) * args.points
    teacher = ModelOutput(torch.randn(n, k, generator=g), torch.randn(n, args.teacher_dim, generator=g))
    out: dict[str, float] = {}
    for row in ROWS:
        loss = _loss(row, args)
        times = []
        for _ in range(args.repeats + 1):  # the first pass warms up allocations, untimed
            student = ModelOutput(torch.randn(n, k, generator=g).requires_grad_(),
                                  torch.randn(n, args.student_dim, generator=g).requires_grad_())  # fmt: skip
            start = time.process_time()
            total, _ = loss(student, teacher, segment, offset)
            total.backward()
            times.append(time.process_time() - start)
        out[row] = min(times[1:])
    return out


def _run_worker(tree: Path, args: argparse.Namespace) -> dict[str, float] | str:
    """One worker subprocess with `tree` first on PYTHONPATH: its row times, or an error line."""
    keep = ("--batch", "--points", "--classes", "--student-dim", "--teacher-dim", "--relation-points",
            "--repeats", "--threads")  # fmt: skip
    cmd = [sys.executable, str(HERE), "--_worker"]
    for option in keep:
        cmd += [option, str(getattr(args, option[2:].replace("-", "_")))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env,
                              cwd=tree, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"timeout {args.timeout} s"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._worker:
        print(json.dumps(measure(args)))
        return 0
    sys.path.insert(0, str(HERE.parent))
    from models import export_tree  # bench/models.py: git archive of a revision

    runs: dict[str, list[dict[str, float]]] = {"new": [], "old": []}
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="srkd-bench-loss-") as tmp:
        trees = [("new", REPO)] + ([("old", export_tree(args.against, Path(tmp)))] if args.against else [])
        for r in range(args.rounds):
            for label, tree in trees if r % 2 == 0 else trees[::-1]:
                result = _run_worker(tree, args)
                if isinstance(result, str):
                    errors.append(f"{label}: {result}")
                else:
                    runs[label].append(result)
    table = _table(runs)
    _print(args, table, errors)
    _write(args, table, runs, errors)
    return 1 if errors else 0


def _table(runs: dict[str, list[dict[str, float]]]) -> list[dict]:
    rows = []
    for row in ROWS:
        entry: dict = {"row": row}
        for label, results in runs.items():
            if results:
                entry[f"{label}_ms"] = 1000 * statistics.median(r[row] for r in results)
        if "old_ms" in entry and "new_ms" in entry:
            entry["speedup"] = entry["old_ms"] / entry["new_ms"]
        rows.append(entry)
    return rows


def _print(args: argparse.Namespace, table: list[dict], errors: list[str]) -> None:
    print(f"{args.batch} x {args.points} points, K {args.classes}, student {args.student_dim} / teacher "
          f"{args.teacher_dim} channels, {args.relation_points} relation points, {args.threads} thread(s); "
          "forward + backward, process CPU ms (min over repeats, median over rounds)")  # fmt: skip
    print(f"{'row':<14} {'new ms':>9} {'old ms':>9} {'old/new':>8}")
    for e in table:
        old = f"{e['old_ms']:>9.1f}" if "old_ms" in e else f"{'-':>9}"
        ratio = f"{e['speedup']:>7.2f}x" if "speedup" in e else f"{'-':>8}"
        print(f"{e['row']:<14} {e.get('new_ms', float('nan')):>9.1f} {old} {ratio}")
    for line in errors:
        print(f"ERROR {line}")


def _write(args: argparse.Namespace, table: list[dict], runs: dict, errors: list[str]) -> None:
    import torch

    payload = {
        "benchmark": "loss_terms", "command": " ".join([HERE.name, *sys.argv[1:]]),
        "against": args.against, "torch": torch.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "loadavg": os.getloadavg(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "_worker")},
        "table": table, "runs": runs, "errors": errors,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
