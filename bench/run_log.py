"""What the run log costs a training run: per step, per validation (curves.png) and per resume.

    python bench/run_log.py                       # 1,000 / 10,000 / 100,000-step histories
    python bench/run_log.py --steps 1000,20000    # other history lengths

For each history length N it times, in one process and side by side:
  row          RunLog.train_row of one SRKD step row (5 terms x 3 values + loss, lr, points/s):
               log.jsonl alone, and log.jsonl + TensorBoard (microseconds per row, mean over N)
  curves       one curves.png over the N-step history (what every validation and the run's end
               draw), seconds
  resume       RunLog.open(resume=True) over the N-row log.jsonl: the rewrite of the kept rows,
               alone and with the TensorBoard replay of the history, seconds
Prints a table and writes JSON (default bench/results/run_log.json). Rows are synthetic (random
values of the real keys), written to a temporary folder on the current disk.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from srkd.distill.run_log import RunLog

TERMS = ("ce", "lovasz", "kl", "relation", "feat_mse")


def terms_of(rng: np.random.Generator) -> dict[str, float]:
    """One step's loss terms as make_loss_fn gives them: value, weighted value and share."""
    values = rng.uniform(0.05, 3.0, len(TERMS))
    shares = values / values.sum()
    out = {t: float(v) for t, v in zip(TERMS, values, strict=True)}
    out.update({f"{t}_weighted": float(v) for t, v in zip(TERMS, values, strict=True)})
    out.update({f"{t}_share": float(s) for t, s in zip(TERMS, shares, strict=True)})
    return out


def write_rows(log: RunLog, n: int, seed: int = 0) -> float:
    """Write n step rows (one val row per 100 steps, no curves); returns seconds per step row."""
    rng = np.random.default_rng(seed)
    log.write_curves = lambda: None  # timed separately
    spent = 0.0
    for step in range(1, n + 1):
        terms = terms_of(rng)
        t0 = time.perf_counter()
        log.train_row(step, 1 + (step - 1) // 100, sum(terms[t] for t in TERMS), terms, 1e-3,
                      80_000, 0.5)
        spent += time.perf_counter() - t0
        if step % 100 == 0:
            log.val_row(step, step // 100, {"mIoU": 0.5, "mAcc": 0.6, "allAcc": 0.8, "scenes": 312}, 1.0)
    return spent / n


def measure(n: int, root: Path) -> dict[str, float]:
    from srkd.distill.tensorboard import TensorBoardSink

    out: dict[str, float] = {"steps": n}
    for name, sinks in (("plain", lambda d: []), ("tensorboard", lambda d: [TensorBoardSink(d)])):
        run_dir = root / f"{name}-{n}"
        log = RunLog(run_dir, sinks(run_dir))
        run_dir.mkdir(parents=True)
        log.open(resume=False, step=0)
        out[f"row_us_{name}"] = 1e6 * write_rows(log, n)
        for sink in log.sinks:
            sink.close()
        t0 = time.perf_counter()
        again = RunLog(run_dir, sinks(run_dir))
        again.open(resume=True, step=n)
        out[f"resume_s_{name}"] = time.perf_counter() - t0
        if name == "plain":
            t0 = time.perf_counter()
            again.write_curves()
            out["curves_s"] = time.perf_counter() - t0
        for sink in again.sinks:
            sink.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="1000,10000,100000", help="history lengths, comma-separated")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "run_log.json")
    args = parser.parse_args()
    from srkd.distill.tensorboard import require_tensorboard

    require_tensorboard()
    import srkd.evaluate.plots  # noqa: F401  (matplotlib's import is not the curves' cost)

    results = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for n in (int(s) for s in args.steps.split(",")):
            results.append(measure(n, Path(tmp)))
    print(f"{'steps':>8} {'row us':>8} {'row us +TB':>11} {'curves s':>9} {'resume s':>9} "
          f"{'resume s +TB':>13}")
    for r in results:
        print(f"{r['steps']:>8} {r['row_us_plain']:>8.0f} {r['row_us_tensorboard']:>11.0f} "
              f"{r['curves_s']:>9.2f} {r['resume_s_plain']:>9.2f} {r['resume_s_tensorboard']:>13.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"bench": "run_log", "results": results}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
