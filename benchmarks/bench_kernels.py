"""Single-kernel timings: our scheduled TVM kernel vs torch eager, medians of many runs.

    python benchmarks/bench_kernels.py [--reps 50] [--threads N] [--no-schedule]

Each case is a one-op IR graph built for the host CPU; the timing includes the Relax VM
call and the DLPack crossing (a few microseconds), as a user sees it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.tvm.build import build  # noqa: E402
from ir import Graph  # noqa: E402
from ir.types import TensorType  # noqa: E402


def median_ms(fn: Callable[[], object], reps: int) -> float:
    for _ in range(max(3, reps // 10)):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def matmul_case():
    g = Graph()
    a = g.add_input("a", TensorType((512, 512), "float32"))
    b = g.add_input("b", TensorType((512, 512), "float32"))
    g.outputs = [g.call("matmul", [a, b])]
    return g, [torch.randn(512, 512), torch.randn(512, 512)], torch.matmul


def linear_case():
    g = Graph()
    x = g.add_input("x", TensorType((128, 768), "float32"))
    w = g.add_weight("w", np.random.randn(3072, 768).astype("float32") * 0.02)
    b = g.add_weight("b", np.random.randn(3072).astype("float32"))
    lin = g.call("linear", [x, w, b], meta={"group": 0})
    g.outputs = [g.call("gelu", [lin], meta={"group": 0})]
    wt, bt = torch.from_numpy(g.weights["w"]), torch.from_numpy(g.weights["b"])
    return g, [torch.randn(128, 768)], lambda x: F.gelu(F.linear(x, wt, bt))


def conv_case(channels: int, size: int, groups: int = 1, relu: bool = False):
    def case():
        g = Graph()
        x = g.add_input("x", TensorType((1, channels, size, size), "float32"))
        w = g.add_weight("w", np.random.randn(channels, channels // groups, 3, 3)
                         .astype("float32") * 0.1)
        out = g.call("conv2d", [x, w], {"padding": (1, 1), "groups": groups},
                     meta={"group": 0})
        if relu:
            out = g.call("relu", [out], meta={"group": 0})
        g.outputs = [out]
        wt = torch.from_numpy(g.weights["w"])

        def reference(x):
            y = F.conv2d(x, wt, padding=1, groups=groups)
            return F.relu(y) if relu else y

        return g, [torch.randn(1, channels, size, size)], reference

    return case


def softmax_case():
    g = Graph()
    x = g.add_input("x", TensorType((12, 128, 128), "float32"))
    g.outputs = [g.call("softmax", [x], {"dim": -1})]
    return g, [torch.randn(12, 128, 128)], lambda x: x.softmax(-1)


CASES = {
    "matmul 512x512x512": matmul_case,
    "linear+gelu 128x768->3072": linear_case,
    "conv3x3 1x64x56x56 ->64": conv_case(64, 56),
    "conv3x3+relu 1x128x28x28": conv_case(128, 28, relu=True),
    "depthwise3x3 1x128x56x56": conv_case(128, 56, groups=128),
    "softmax 12x128x128": softmax_case,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both torch and TVM (default: all cores)")
    parser.add_argument("--no-schedule", action="store_true")
    args = parser.parse_args()
    if args.threads:  # TVM reads this when its thread pool starts, on the first kernel run
        os.environ["TVM_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    print(f"torch threads: {torch.get_num_threads()}")
    header = f"{'kernel':28s} {'rule':18s} {'ours ms':>9s} {'torch ms':>9s} {'ours/torch':>10s}"
    print(header + "\n" + "-" * len(header))
    for name, make in CASES.items():
        graph, inputs, reference = make()
        module = build(graph, "cpu", schedule=not args.no_schedule)
        torch.testing.assert_close(module(*inputs)[0], reference(*inputs), rtol=1e-3, atol=1e-3)
        with torch.no_grad():
            ref_ms = median_ms(lambda: reference(*inputs), args.reps)  # noqa: B023
        ours_ms = median_ms(lambda: module(*inputs), args.reps)  # noqa: B023
        rule = ",".join(k.schedule for k in module.kernels)
        print(f"{name:28s} {rule:18s} {ours_ms:9.3f} {ref_ms:9.3f} {ours_ms / ref_ms:10.2f}")


if __name__ == "__main__":
    main()
