"""Random-graph differential testing at scale: generate models, compile each, compare with
eager torch (on the example inputs, random ones, and with NaN/Inf planted), count the
outcomes, and shrink and save every failure.

    python benchmarks/fuzz.py --count 1000 --opt-level 2 [--start 0] [--no-shrink]

Prints a line per failure as it happens and, at the end, the counts of ok, mismatch,
crash, cleanly refused (and invalid specs, which should be 0), the refusal reasons, and
the paths of the shrunk failures saved under ``tests/fuzz/regressions/``.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "fuzz")]

from fuzz_oracle import (  # noqa: E402
    REGRESSIONS,
    format_spec,
    run_case,
    save_regression,
    shrink_failure,
)
from graph_gen import generate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="graphs to try")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--opt-level", type=int, default=2)
    parser.add_argument("--max-nodes", type=int, default=None, help="default: 6-30 by seed")
    parser.add_argument("--no-shrink", action="store_true", help="save failures unshrunk")
    parser.add_argument("--shrink-budget", type=float, default=300.0, help="seconds each")
    parser.add_argument("--save-dir", type=Path, default=REGRESSIONS)
    parser.add_argument("--cache", action="store_true",
                        help="store each build in the compile cache (off: thousands of "
                             "one-off entries would fill the disk)")
    args = parser.parse_args(argv)
    if not args.cache:
        os.environ["DSCOMPILE_CACHE"] = "0"
    warnings.filterwarnings("ignore")

    counts: collections.Counter[str] = collections.Counter()
    refusals: collections.Counter[str] = collections.Counter()
    saved: list[str] = []
    began = time.monotonic()
    for seed in range(args.start, args.start + args.count):
        spec = generate(seed, args.max_nodes)
        outcome = run_case(spec, args.opt_level)
        counts[outcome.kind] += 1
        if outcome.kind == "refused":
            refusals[outcome.reason or outcome.detail.splitlines()[0][:120]] += 1
        if outcome.failed:
            print(f"seed {seed}: {outcome.kind}: {outcome.detail.splitlines()[0][:300]}",
                  flush=True)
            if not args.no_shrink:
                spec, outcome = shrink_failure(spec, outcome, args.opt_level,
                                               args.shrink_budget, print)
            path = save_regression(spec, outcome, args.opt_level, seed, args.save_dir)
            saved.append(str(path))
            print(f"  saved {path} ({len(spec)} nodes):\n{format_spec(spec)}", flush=True)
        done = seed - args.start + 1
        if done % 50 == 0:
            print(f"[{done}/{args.count}] {dict(counts)} ({time.monotonic() - began:.0f} s)",
                  flush=True)

    print(f"\n{args.count} graphs at opt_level {args.opt_level}, seeds {args.start}.."
          f"{args.start + args.count - 1}, {time.monotonic() - began:.0f} s")
    for kind, label in (("ok", "ok"), ("mismatch", "mismatch"), ("crash", "crash"),
                        ("refused", "cleanly refused"), ("invalid", "invalid spec")):
        print(f"  {label:16s} {counts[kind]}")
    if refusals:
        print("refusals:")
        for reason, n in refusals.most_common():
            print(f"  {n:4d}  {reason}")
    for path in saved:
        print(f"saved {path}")
    return 1 if counts["mismatch"] or counts["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
