"""Patch attention on CPU: torch's SDPA against srkd's fused kernel (srkd/models/cpu_attention.py).

    PYTHONPATH=$PWD python bench/attention.py --threads 1

For each (S patches, H heads, L slots, D width) shape: forward and forward + backward times (best of
`--repeats`, after one warm-up) of `F.scaled_dot_product_attention` on (S, H, L, D) views of one
(S, L, 3, H, D) grid (exactly how srkd calls it) and of `cpu_attention.patch_attention` on the
grid, their ratio, and each one's largest error against float64 SDPA (forward output and input
gradient). The default shapes are a ptv3_half level-0 call at 100k points (49 patches of 1024,
2 heads of width 8) and a smaller one. Widths the kernel is not built for show SDPA only.
Prints a markdown table and writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from srkd.models import cpu_attention

DEFAULT_SHAPES = ("49x2x1024x8", "12x4x1024x8", "100x2x128x8", "100x2x1024x16")


def sdpa(grid: torch.Tensor, scale: float) -> torch.Tensor:
    """(S, L, 3, H, D) -> (S, L, H, D) through SDPA, as SerializedAttention calls it."""
    q, k, v = grid.permute(2, 0, 3, 1, 4).unbind(0)
    return F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2)


def fused(grid: torch.Tensor, scale: float) -> torch.Tensor:
    return cpu_attention.patch_attention(grid, None, scale)


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(impl, grid: torch.Tensor, grad: torch.Tensor, scale: float, repeats: int) -> dict:
    """Forward and forward + backward seconds of `impl`, and its errors against float64 SDPA."""
    with torch.no_grad():
        forward = best_time(lambda: impl(grid, scale), repeats)
    x = grid.clone().requires_grad_()
    train = best_time(lambda: torch.autograd.grad(impl(x, scale), x, grad), repeats)
    ref_x = grid.double().requires_grad_()
    ref = sdpa(ref_x, scale)
    (ref_grad,) = torch.autograd.grad(ref, ref_x, grad.double())
    out = impl(x, scale)
    (g,) = torch.autograd.grad(out, x, grad)
    out, ref = out.detach(), ref.detach()
    return {"forward_s": forward, "train_s": train,
            "forward_err": float((out.double() - ref).abs().max()),
            "grad_err": float((g.double() - ref_grad).abs().max())}  # fmt: skip


def bench_shape(shape: str, repeats: int) -> dict:
    s, h, length, d = (int(v) for v in shape.split("x"))
    gen = torch.Generator().manual_seed(0)
    grid = torch.randn(s, length, 3, h, d, generator=gen)
    grad = torch.randn(s, length, h, d, generator=gen)
    scale = d**-0.5
    row: dict = {"shape": shape, "scores": s * h * length * length, "sdpa": measure(sdpa, grid, grad, scale, repeats)}
    if cpu_attention.usable(grid, 0.0):
        row["fused"] = measure(fused, grid, grad, scale, repeats)
        row["speedup_forward"] = row["sdpa"]["forward_s"] / row["fused"]["forward_s"]
        row["speedup_train"] = row["sdpa"]["train_s"] / row["fused"]["train_s"]
    return row


def table(rows: list[dict]) -> str:
    header = ("| S x H x L x D | SDPA fwd (ms) | fused fwd (ms) | ratio | SDPA fwd+bwd (ms) | fused fwd+bwd (ms) "
              "| ratio | fused ns/score fwd | max err fwd SDPA / fused |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["sdpa"], r.get("fused")
        if b is None:
            lines.append(f"| {r['shape']} | {a['forward_s'] * 1e3:.1f} | - | - | {a['train_s'] * 1e3:.1f} | - | - | - "
                         f"| {a['forward_err']:.1e} / - |")  # fmt: skip
            continue
        lines.append(
            f"| {r['shape']} | {a['forward_s'] * 1e3:.1f} | {b['forward_s'] * 1e3:.1f} | {r['speedup_forward']:.2f}x "
            f"| {a['train_s'] * 1e3:.1f} | {b['train_s'] * 1e3:.1f} | {r['speedup_train']:.2f}x "
            f"| {b['forward_s'] / r['scores'] * 1e9:.2f} | {a['forward_err']:.1e} / {b['forward_err']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="*", default=list(DEFAULT_SHAPES), help="SxHxLxD, e.g. 49x2x1024x8")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (and the kernel's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("bench/results/attention.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if cpu_attention.load_library() is None:
        print("the fused kernel could not be built here: SDPA rows only", file=sys.stderr)
    rows = [bench_shape(shape, args.repeats) for shape in args.shapes]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"patch attention, cpu, {args.threads} thread(s), best of {args.repeats}, load {load}")
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "attention", "command": " ".join(sys.argv), "torch": torch.__version__,
                                    "machine": platform.processor() or platform.machine(), "threads": args.threads,
                                    "loadavg": load, "rows": rows}, indent=1))  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
