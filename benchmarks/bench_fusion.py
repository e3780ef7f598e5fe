"""What fusion buys on CPU, as ratios measured in one run:

- a Conv+BN+ReLU block compiled at O2 (one kernel: BN folded, ReLU as the conv's
  epilogue) against the same block with fusion and folding off (O0: three kernels);
- a Q/K/V projection compiled at O2 (one GEMM over concatenated weights) against the
  same pipeline without the parallel-linear merge (three GEMMs).

    python benchmarks/bench_fusion.py [--reps 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends.tvm.target import resolve_target  # noqa: E402
from compiler.api import build_module, split_example_inputs  # noqa: E402
from compiler.capture import capture  # noqa: E402
from compiler.config import CompileOptions  # noqa: E402
from compiler.pipelines import build_pipeline, run_passes  # noqa: E402
from compiler.timing import median_ms  # noqa: E402


class QKV(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))

    def forward(self, x):
        return self.q(x), self.k(x), self.v(x)


def compile_with(model, inputs, opt_level: int, without: str | None = None):
    """Compile at ``opt_level``, optionally leaving out the pass named ``without``."""
    args, kwargs = split_example_inputs(inputs, None)
    captured = capture(model, args, kwargs)
    passes = [p for p in build_pipeline(opt_level) if p.name != without]
    graph, records = run_passes(captured.graph, passes)
    options = CompileOptions(opt_level=opt_level)
    return build_module(graph, captured.out_spec, resolve_target("cpu"), options, records)


def row(name: str, fused, unfused, inputs, reps: int) -> str:
    fused_ms = median_ms(lambda: fused(*inputs), reps=reps)
    unfused_ms = median_ms(lambda: unfused(*inputs), reps=reps)
    return (f"| {name} | {unfused.num_kernels} | {unfused_ms:.3f} | {fused.num_kernels} | "
            f"{fused_ms:.3f} | {unfused_ms / fused_ms:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)

    cbr = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU()).eval()
    cbr_in = (torch.randn(1, 64, 56, 56),)
    qkv = QKV(768).eval()
    qkv_in = (torch.randn(1, 128, 768),)

    print("| block | unfused kernels | unfused ms | fused kernels | fused ms | speedup |")
    print("|---|---|---|---|---|---|")
    print(row("Conv+BN+ReLU 64x56x56 (O0 vs O2)", compile_with(cbr, cbr_in, 2),
              compile_with(cbr, cbr_in, 0), cbr_in, args.reps), flush=True)
    print(row("Q/K/V 128x768 -> 3x768 (3 GEMMs vs 1)", compile_with(qkv, qkv_in, 2),
              compile_with(qkv, qkv_in, 2, without="merge_parallel_linear"), qkv_in,
              args.reps), flush=True)


if __name__ == "__main__":
    main()
