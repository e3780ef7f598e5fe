"""Per-kernel tuning: every candidate's measured time on ResNet-50 / MobileNetV2 / BERT
kernel shapes (``bench_kernels.CASES``), which one the chooser kept, and how long tuning
took, next to torch eager on the same kernel.

    python benchmarks/bench_tuning.py [--trials 16] [--cases "r50 conv3x3 256 @14" ...]

Uses a fresh tuning database in a temporary folder (every case is measured); the times
are the chooser's own medians (``backends/tvm/tuning/measure.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kernels import CASES  # noqa: E402

from backends.tvm.build import build  # noqa: E402
from backends.tvm.tuning import TuningOptions  # noqa: E402
from backends.tvm.tuning.database import TuningDatabase  # noqa: E402
from compiler.cost import node_flops  # noqa: E402
from compiler.report import candidates_text  # noqa: E402
from compiler.timing import median_ms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="MetaSchedule samples/kernel")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    print(f"torch threads: {torch.get_num_threads()}, MetaSchedule trials: {args.trials}")
    header = (f"{'kernel':28s} {'chosen':14s} {'GFLOP/s':>8s} {'torch ms':>9s} {'tune s':>7s}"
              f"  candidates (ms)")
    print(header + "\n" + "-" * (len(header) + 30))
    total = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as tmp:
        for name in args.cases:
            graph, inputs, reference = CASES[name]()
            options = TuningOptions(trials=args.trials, database=TuningDatabase(tmp))
            start = time.perf_counter()
            module = build(graph, "cpu", tuning=options)
            spent = time.perf_counter() - start
            total += spent
            torch.testing.assert_close(module(*inputs)[0], reference(*inputs), rtol=1e-3,
                                       atol=1e-3)
            with torch.no_grad():
                torch_ms = median_ms(lambda: reference(*inputs), reps=30)  # noqa: B023
            (kernel, *_) = module.kernels
            chosen_ms = kernel.timings.get(kernel.schedule)
            flops = sum(node_flops(n) for n in graph.ops())
            rate = f"{flops / chosen_ms / 1e6:8.1f}" if chosen_ms else f"{'-':>8s}"
            print(f"{name:28s} {kernel.schedule:14s} {rate} {torch_ms:9.3f} {spent:7.1f}  "
                  f"{candidates_text(kernel.schedule, kernel.timings)}", flush=True)
    print(f"tuning took {total:.0f} s for {len(args.cases)} kernels")


if __name__ == "__main__":
    main()
