"""The ``dscompile`` command line: see what the compiler did to a model.

    dscompile inspect MODEL            a row per kernel: ops, shapes, FLOPs, bytes, schedule
                                       (--tune: every candidate's measured time)
    dscompile dump MODEL --after-each-pass DIR   the IR after each pass that changed it
    dscompile diff A B                 what changed between two IR dumps
    dscompile graph MODEL --format svg|png|dot|html --out FILE
    dscompile plan MODEL [--png FILE]  the memory plan, its live-bytes timeline, and what
                                       the built program allocates
    dscompile kernels MODEL --target cpu|cuda|rocm   generated kernels with their source

MODEL is ``path/to/file.py:factory`` or ``package.module:factory`` (a function returning
``(model, example_inputs)``), or a saved IR file (``.dsir`` text or ``.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from compiler.model_loader import ModelSpecError, load_model_spec


@dataclass
class Loaded:
    """What a MODEL argument turned into: an IR graph, and the torch model if any."""

    graph: Any
    model: Any = None
    inputs: Any = None
    out_spec: Any = None


class Progress:
    """One-line progress messages on stderr (silent with --quiet or --json)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr,
                  flush=True)


def load(spec: str, progress: Progress) -> Loaded:
    progress(f"loading {spec}")
    kind, value = load_model_spec(spec)
    if kind == "graph":
        return Loaded(graph=value)
    from compiler.api import split_example_inputs
    from compiler.capture import capture

    model, inputs = value
    args, kwargs = split_example_inputs(inputs, None)
    progress("capturing")
    captured = capture(model, args, kwargs)
    return Loaded(graph=captured.graph, model=model, inputs=(args, kwargs),
                  out_spec=captured.out_spec)


def optimized(loaded: Loaded, args: argparse.Namespace, instruments=()):
    from compiler.config import CompileOptions
    from compiler.pipelines import optimize

    options = CompileOptions(opt_level=args.opt_level)
    return optimize(loaded.graph, opt_level=options.opt_level, instruments=list(instruments),
                    verify=True)


def build_for(graph, target: str, progress: Progress, memory_plan=None, tuning=None):
    from backends.tvm.build import build
    from backends.tvm.target import resolve_target

    progress(f"building for {target}" + (" (tuning)" if tuning is not None else ""))
    if any(v is None for v in graph.weights.values()):
        fill_missing_weights(graph)
    return build(graph, resolve_target(target), memory_plan=memory_plan, tuning=tuning)


def tuning_for(args: argparse.Namespace):
    """Tuning options of ``inspect``: ``--tune`` or ``--opt-level 3`` turn it on."""
    from backends.tvm.tuning import options_from
    from compiler.config import CompileOptions

    tuning = options_from(CompileOptions(opt_level=args.opt_level, tune=args.tune or None,
                                         trials=args.trials, rpc=args.rpc))
    if tuning is not None and (args.quiet or args.json):
        tuning.progress = False  # no progress bar either
    return tuning


def fill_missing_weights(graph) -> None:
    """Text IR carries no weight data; zeros let it be built and inspected."""
    import numpy as np

    for node in graph.nodes:
        if node.op == "weight" and graph.weights.get(node.name) is None:
            graph.weights[node.name] = np.zeros(node.shape, dtype=node.dtype)


# ----- subcommands ---------------------------------------------------------------


def cmd_inspect(args, progress) -> int:
    from compiler.planning import MemoryPlan, plan_program
    from compiler.report import build_report

    loaded = load(args.model, progress)
    progress(f"optimizing at O{args.opt_level}")
    graph, _ = optimized(loaded, args)
    graph, memory_plan = plan_program(graph)
    program = None if args.no_build else build_for(graph, args.target, progress, memory_plan,
                                                   tuning_for(args))
    plan = memory_plan if isinstance(memory_plan, MemoryPlan) else None
    report = build_report(graph, getattr(program, "kernels", None), plan,
                          getattr(program, "memory", None), getattr(program, "validation", None))
    if args.profile and program is not None:
        progress("profiling each kernel in the program")
        from compiler.report import attach_profile

        attach_profile(report, program.profile(*example_tensors(loaded, graph)))
    print(json.dumps(report.to_dict(), indent=1) if args.json else report)
    return 0


def example_tensors(loaded: Loaded, graph) -> list:
    """The model's example inputs, flattened; random ones of the graph's input types for
    an IR file."""
    import torch
    from torch.utils import _pytree as pytree

    if loaded.inputs is not None:
        return [x for x in pytree.tree_leaves(loaded.inputs) if isinstance(x, torch.Tensor)]
    from backends.tvm.build import example_input

    return [example_input(node) for node in graph.inputs]


def cmd_dump(args, progress) -> int:
    from compiler.pass_manager import DumpIRInstrument

    loaded = load(args.model, progress)
    dump = DumpIRInstrument(args.after_each_pass)
    if args.passes:
        from compiler.pipelines import run_named_passes

        graph, records = run_named_passes(loaded.graph, args.passes.split(","), [dump])
    else:
        graph, records = optimized(loaded, args, [dump])
    rows = [{"pass": r.name, "nodes_before": r.nodes_before, "nodes_after": r.nodes_after,
             "seconds": round(r.seconds, 4), "changed": r.modified} for r in records]
    if args.json:
        print(json.dumps({"dir": args.after_each_pass, "passes": rows}, indent=1))
    else:
        for r in rows:
            mark = "*" if r["changed"] else " "
            print(f"{mark} {r['pass']:<28} {r['nodes_before']:>5} -> {r['nodes_after']:<5} "
                  f"{r['seconds'] * 1e3:8.2f} ms")
        print(f"IR dumps in {args.after_each_pass} (* = changed, dumped)")
    return 0


def cmd_diff(args, progress) -> int:
    import ir
    from compiler.ir_diff import diff_graphs

    a, b = ir.load(args.a), ir.load(args.b)
    text = diff_graphs(a, b)
    print(text or "no differences")
    return 0


def cmd_graph(args, progress) -> int:
    from compiler.graph_render import render

    loaded = load(args.model, progress)
    graph, _ = optimized(loaded, args)
    out = args.out or f"graph.{args.format}"
    render(graph, args.format, out)
    print(out)
    return 0


def cmd_plan(args, progress) -> int:
    from compiler.planning import memory_aware_order, plan_memory, plan_program

    loaded = load(args.model, progress)
    graph, _ = optimized(loaded, args)
    captured = plan_memory(graph)
    ordering = memory_aware_order(graph)
    graph, plan = plan_program(graph)
    program = None if args.no_build else build_for(graph, args.target, progress, plan)
    memory = getattr(program, "memory", None)
    if args.png:
        from compiler.graph_render import plot_timeline

        plot_timeline(plan, args.png)
    order = {"chosen": "captured" if plan.kernel_order == captured.kernel_order
             else "memory-aware", "method": ordering.method,
             "captured_peak_bytes": ordering.captured_peak_bytes,
             "memory_aware_peak_bytes": ordering.peak_bytes,
             "captured_arena_bytes": captured.arena_bytes}
    if args.json:
        print(json.dumps({"arena_bytes": plan.arena_bytes, "naive_bytes": plan.naive_bytes,
                          "lower_bound_bytes": plan.lower_bound_bytes,
                          "timeline": list(plan.timeline()), "order": order,
                          "program": memory.to_dict() if memory else None}, indent=1))
    else:
        print(plan.summary())
        print(f"order: {order['chosen']} (peak live {ordering.captured_peak_bytes} B "
              f"captured, {ordering.peak_bytes} B memory-aware ({ordering.method}); arena "
              f"{captured.arena_bytes} B in the captured order)")
        if memory is not None:
            print(memory)
        if args.png:
            print(f"timeline: {args.png}")
    return 0


def cmd_kernels(args, progress) -> int:
    loaded = load(args.model, progress)
    graph, _ = optimized(loaded, args)
    program = build_for(graph, args.target, progress)
    sources = program.kernel_sources()
    if args.json:
        print(json.dumps({"target": args.target, "kernels": sources}, indent=1))
        return 0
    for name, source in sources.items():
        print(f"==== {name} ====")
        print(source if args.source else source.splitlines()[0] if source else "")
    print(f"{len(sources)} kernels for {args.target}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dscompile", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help_text, model=True):
        s = sub.add_parser(name, help=help_text)
        if model:
            s.add_argument("model", help="file.py:factory, package.module:factory, or .dsir/.json")
            s.add_argument("--opt-level", type=int, default=2, choices=(0, 1, 2, 3))
        s.add_argument("--quiet", action="store_true", help="no progress messages")
        s.add_argument("--json", action="store_true", help="machine-readable output")
        s.set_defaults(fn=fn)
        return s

    s = add("inspect", cmd_inspect, "a table per kernel")
    s.add_argument("--target", default="cpu")
    s.add_argument("--no-build", action="store_true", help="IR only: no kernel names")
    s.add_argument("--tune", action="store_true",
                   help="choose schedules by measurement (on at --opt-level 3); shows each "
                        "kernel's candidates and their times")
    s.add_argument("--trials", type=int, help="MetaSchedule samples per kernel (default 32)")
    s.add_argument("--rpc", help="measure on an RPC tracker's machines: key@host:port")
    s.add_argument("--profile", action="store_true",
                   help="run the program on the example inputs and show each kernel's time "
                        "in it (ms, GFLOP/s)")
    s = add("dump", cmd_dump, "IR after each pass")
    s.add_argument("--after-each-pass", required=True, metavar="DIR")
    s.add_argument("--passes", help="comma-separated pass names instead of the pipeline")
    s = add("diff", cmd_diff, "difference of two IR dumps", model=False)
    s.add_argument("a")
    s.add_argument("b")
    s = add("graph", cmd_graph, "picture of the graph, fused groups boxed")
    s.add_argument("--format", default="svg", choices=("svg", "png", "dot", "html"))
    s.add_argument("--out")
    s = add("plan", cmd_plan, "the memory plan")
    s.add_argument("--png", help="write the live-bytes timeline here")
    s.add_argument("--target", default="cpu")
    s.add_argument("--no-build", action="store_true", help="plan only: no program built")
    s = add("kernels", cmd_kernels, "generated kernels and their source (scheduled TIR on "
            "cpu, CUDA C on cuda, AMDGPU assembly on rocm)")
    s.add_argument("--target", default="cpu")
    s.add_argument("--source", action="store_true", help="print each kernel's whole source")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    progress = Progress(args.quiet or args.json)
    try:
        return args.fn(args, progress)
    except ModelSpecError as e:
        print(f"dscompile: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        import ir
        from compiler.errors import DSCompileError

        if isinstance(e, (DSCompileError, ir.IRParseError, ir.IRFileError, ir.IRVerifyError)):
            print(f"dscompile: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
