"""Where a compiled model's time goes: each kernel's time inside the program, slowest first,
with its GFLOP/s against the machine's sgemm rate (the roofline the model benchmark uses).

    python benchmarks/profile_model.py gpt2 [--opt-level 2] [--top 15]

MODEL is a ``run_models.py`` name (``resnet50``, ``bert-tiny``, ``zoo:mlp``). The kernel
times come from ``CompiledModule.profile`` (a VM instrument around every kernel call).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--opt-level", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=8, help="at --opt-level 3")
    opts = parser.parse_args(argv)

    import torch
    from roofline import sgemm_gflops
    from run_models import THREADS, load_call

    from compiler import dscompile
    from compiler.timing import median_ms

    torch.set_num_threads(THREADS)
    model, args, kwargs = load_call(opts.model)
    tuning = {"trials": opts.trials} if opts.opt_level == 3 else {}
    with torch.no_grad():
        compiled = dscompile(model, args, example_kwargs=kwargs, check="off",
                             opt_level=opts.opt_level, **tuning)
        whole = median_ms(lambda: compiled(*args, **kwargs), warmup=3, reps=opts.runs)
        report = compiled.profile(*args, runs=opts.runs, **kwargs)
    peak = sgemm_gflops(threads=THREADS)
    rows = sorted((r for r in report.rows if r.ms is not None), key=lambda r: -r.ms)
    kernels_ms = sum(r.ms for r in rows)
    print(f"{opts.model} at O{opts.opt_level}: {whole:.2f} ms a call, {kernels_ms:.2f} ms in "
          f"{len(rows)} kernels; sgemm {peak:.0f} GFLOP/s\n")
    print("| kernel | ops | schedule | ms | share | GFLOP/s | % sgemm | output |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for r in rows[:opts.top]:
        rate = r.gflops or 0.0
        print(f"| {r.kernel} | {r.ops} | {r.schedule} | {r.ms:.3f} | "
              f"{100 * r.ms / kernels_ms:.1f}% | {rate:.1f} | {100 * rate / peak:.1f} | "
              f"{r.output} |")


if __name__ == "__main__":
    main()
