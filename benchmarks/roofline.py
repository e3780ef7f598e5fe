"""The machine's fp32 matrix-multiply rate, the ceiling the model table is read against.

    python benchmarks/roofline.py [--n 2048] [--threads 2]

Times ``torch.mm`` on ``n x n`` fp32 matrices (MKL/oneDNN sgemm) with the benchmark's
thread count and prints GFLOP/s. A model's achieved GFLOP/s (its FLOPs over its latency)
divided by this is the fraction of the machine's compute the model uses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compiler.timing import median_ms  # noqa: E402


def sgemm_gflops(n: int = 2048, threads: int = 2, reps: int = 10) -> float:
    """Median-time GFLOP/s of one ``n^3`` fp32 matmul (2 n^3 FLOPs) on ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        ms = median_ms(lambda: torch.mm(a, b, out=out), warmup=2, reps=reps)
    finally:
        torch.set_num_threads(before)
    return 2 * n**3 / (ms * 1e-3) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    opts = parser.parse_args()
    gflops = sgemm_gflops(opts.n, opts.threads)
    print(f"sgemm {opts.n}^3 fp32, {opts.threads} threads: {gflops:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
