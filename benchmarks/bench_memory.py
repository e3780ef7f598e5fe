"""Memory planning: the plans, what the compiled programs allocate, and peak RSS.

    python benchmarks/bench_memory.py                 # sample graphs and the test zoo
    python benchmarks/bench_memory.py --hf            # + HF ResNet-50 and BERT-base
    python benchmarks/bench_memory.py --plans-only    # the first table alone (seconds)

Three markdown tables, printed and written to ``benchmarks/results/memory.md``:

1. Plans (no build): kernels, naive bytes (each intermediate its own buffer), the arena,
   its lower bound (most bytes live at any step), their ratio, and the peak live bytes of
   the captured order against the memory-aware order (``arena (mem)`` plans the latter).
2. Programs: each model compiled by ``dscompile`` (O2, CPU): the planned arena, what its
   final Relax allocates for intermediates, what TVM's own planner
   (StaticPlanBlockMemory, the same program built without our plan) allocates, and
   whether the kernels' output addresses, read inside the VM over 3 calls, sit at the
   planned offsets of one reused block.
3. Peak RSS of a process that only loads and runs the model ``--calls`` times: eager
   (torch), ONNX Runtime (the ``.onnx`` of ``torch.onnx.export(dynamo=True)``) and
   dscompile (the program's exported library on ``libtvm_runtime.so`` alone, without the
   compiler library or torch, as a deployment would load it).
   ``import`` is the RSS once the runtime is imported, ``loaded`` the RSS added by the
   time the first call returns (the steady state), ``peak`` the process's high-water RSS
   (``VmHWM``: ``ru_maxrss`` would carry over the parent's across ``exec``), ``model``
   peak less import (weights + activations + workspace; ``weights`` is the model's own
   parameter bytes), and ``growth`` the RSS added between the first and the last call
   (an arena reused across calls adds none). Exports and compiles run in processes of
   their own first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
# Nothing of dscompile (which imports torch) at module level: the RSS children import
# only their own runtime.

ZOO_NAMES = ("mlp", "resnet_block", "mobilenet_block", "transformer_block", "gpt_block",
             "sdpa_block")
HF_NAMES = ("resnet50", "bert")
SYSTEMS = ("eager", "onnxruntime", "dscompile")
RESULTS = ROOT / "benchmarks" / "results" / "memory.md"
TIMEOUT = 900  # seconds per child process
ENV = {"OMP_NUM_THREADS": "2", "TVM_NUM_THREADS": "2", "TRANSFORMERS_VERBOSITY": "error"}

PLAN_HEADER = ("model", "kernels", "naive B", "arena B", "lower bound B", "arena/bound",
               "peak captured B", "peak mem-aware B", "order", "arena mem-aware B",
               "arena/bound mem-aware")
PROGRAM_HEADER = ("model", "kernels", "naive B", "lower bound B", "planned arena B",
                  "program allocates B", "TVM planner alone B", "outputs B",
                  "in-place kernels", "offsets honoured, arena reused")
RSS_HEADER = ("model", "system", "weights MB", "import MB", "loaded MB", "peak MB",
              "model MB", "growth MB", "max abs err")


# ----- 1. plans --------------------------------------------------------------------------


def plan_row(name: str, graph: Any) -> tuple:
    from compiler.planning import memory_aware_order, plan_memory

    plan = plan_memory(graph)
    ordering = memory_aware_order(graph)
    reordered = plan_memory(graph, order=ordering.steps)
    return (name, len(plan.steps), plan.naive_bytes, plan.arena_bytes, plan.lower_bound_bytes,
            _ratio(plan), ordering.captured_peak_bytes, ordering.peak_bytes, ordering.method,
            reordered.arena_bytes, _ratio(reordered))


def _ratio(plan: Any) -> str:
    return f"{plan.arena_bytes / plan.lower_bound_bytes if plan.lower_bound_bytes else 1:.3f}"


def fused_sample_graphs() -> dict[str, Callable[[], Any]]:
    """The sample graphs unfused, then through the O2 pipeline (its own fusion groups)."""
    from compiler.pipelines import optimize
    from compiler.planning.sample_graphs import BRANCHING, CHAINS

    def build(factory: Callable[[], Any]) -> Callable[[], Any]:
        def make() -> Any:
            graph = factory()
            for node in graph.nodes:
                node.meta.pop("group", None)
            return optimize(graph, opt_level=2)[0]
        return make

    return {f"{name} (O2)": build(f) for name, f in {**CHAINS, **BRANCHING}.items()}


def zoo_graphs() -> dict[str, Callable[[], Any]]:
    """The example models captured and optimized at O2 (fused)."""
    from compiler.capture import capture
    from compiler.pipelines import optimize
    from examples.models import ZOO

    def build(factory: Callable) -> Callable[[], Any]:
        def make() -> Any:
            model, args = factory()
            return optimize(capture(model, args, {}).graph, opt_level=2)[0]
        return make

    return {f"zoo:{name}": build(factory) for name, factory in ZOO.items()}


def plan_table() -> list[tuple]:
    from compiler.planning.sample_graphs import BRANCHING, CHAINS

    rows = []
    for name, make in {**CHAINS, **BRANCHING, **fused_sample_graphs(), **zoo_graphs()}.items():
        try:
            rows.append(plan_row(name, make()))
        except Exception as err:  # one model failing to capture should not hide the rest
            print(f"({name} skipped: {type(err).__name__}: {err})", file=sys.stderr)
    return rows


# ----- children: each step in a process of its own -----------------------------------------


def model_name(name: str) -> str:
    return name if name in HF_NAMES else f"zoo:{name}"


def child_prepare(name: str, workdir: Path) -> dict:
    """Eager's inputs and outputs, the ONNX file, and the dscompile program's library and
    memory numbers (with TVM's planner alone for comparison)."""
    import numpy as np
    import torch
    from run_models import load_model
    from systems import flat_inputs, tensor_leaves

    from backends.tvm.build import build
    from backends.tvm.memory import trace_kernel_outputs
    from compiler import dscompile
    from compiler.api import split_example_inputs
    from compiler.capture import capture
    from compiler.pipelines import optimize
    from compiler.planning import plan_memory

    model, inputs = load_model(model_name(name))
    args, kwargs = split_example_inputs(inputs, None)
    flat = flat_inputs(args, kwargs)
    with torch.no_grad():
        expected = tensor_leaves(model(*args, **kwargs))
    np.savez(workdir / "inputs.npz", *[t.numpy() for t in flat])
    np.savez(workdir / "outputs.npz", *[t.numpy() for t in expected])
    weights = sum(t.numel() * t.element_size()
                  for t in [*model.parameters(), *model.buffers()])
    result: dict = {"weights": weights}
    try:
        torch.onnx.export(model, args, kwargs=kwargs, dynamo=True).save(
            str(workdir / "model.onnx"))
    except Exception as err:
        result["onnx_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    compiled = dscompile(model, args, example_kwargs=kwargs, check="off", cache=False)
    program, plan, memory = compiled._program, compiled.plan, compiled.memory
    program.export_library(str(workdir / "program.so"))
    planned = {b.name: b.offset for b in plan.buffers
               if b.offset is not None and b.alias_of is None}
    trace = trace_kernel_outputs(program, flat, planned, calls=3)
    captured = optimize(capture(model, args, kwargs).graph, opt_level=2)[0]
    tvm_alone = build(compiled.ir, program.target, schedule=False).memory  # no plan
    result.update(
        outputs=[kind for kind, _ in program.lowered.outputs], kernels=compiled.num_kernels,
        naive=plan.naive_bytes, bound=plan.lower_bound_bytes, planned=plan.arena_bytes,
        captured_order_arena=plan_memory(captured).arena_bytes, route=memory.route,
        allocated=memory.allocated_bytes, tvm_alone=tvm_alone.allocated_bytes,
        output_bytes=memory.output_bytes, inplace=memory.inplace_kernels,
        honoured=trace.honours_plan, reused=trace.arena_reused)
    return result


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmHWM``: its high-water mark) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_run(system: str, name: str, workdir: Path, calls: int) -> dict:
    """Load and run one system ``calls`` times; RSS at import, after one call, at the end."""
    import numpy as np

    if system == "eager":
        import torch
        from run_models import load_model
        from systems import tensor_leaves
    elif system == "onnxruntime":
        import onnxruntime as ort
    else:  # TVM's runtime library alone; its Python package imports torch if it can
        os.environ["TVM_USE_RUNTIME_LIB"] = "1"
        sys.modules["torch"] = None  # type: ignore[assignment]
        import tvm
        from tvm.runtime.vm import VirtualMachine
    imported = rss_mb()
    feed = [a for _, a in sorted(np.load(workdir / "inputs.npz").items(),
                                 key=lambda kv: int(kv[0].split("_")[1]))]
    if system == "eager":
        model, inputs = load_model(model_name(name))
        args, kwargs = ((), inputs) if isinstance(inputs, dict) else (tuple(inputs), {})

        def run() -> list:
            with torch.no_grad():
                return [t.numpy() for t in tensor_leaves(model(*args, **kwargs))]
    elif system == "onnxruntime":
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
        session = ort.InferenceSession(str(workdir / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        run = lambda: session.run(None, dict(zip(names, feed)))
    else:
        vm = VirtualMachine(tvm.runtime.load_module(str(workdir / "program.so")), tvm.cpu())
        with np.load(workdir / "program.weights.npz") as saved:  # main's weight arguments
            weights = [tvm.runtime.tensor(saved[f"w{i}"]) for i in range(len(saved.files))]
        main, args = vm["main"], [tvm.runtime.tensor(a) for a in feed] + weights

        def run() -> list:
            results = main(*args)
            return [results[i].numpy() for i in range(len(results))]
    got = run()
    after_first = rss_mb()
    for _ in range(calls - 1):
        got = run()
    expected = [a for _, a in sorted(np.load(workdir / "outputs.npz").items(),
                                     key=lambda kv: int(kv[0].split("_")[1]))]
    error = max((float(np.abs(g - e).max()) for g, e in zip(got, expected)), default=0.0)
    return {"import": imported, "loaded": after_first - imported, "peak": rss_mb("VmHWM"),
            "growth": rss_mb() - after_first, "error": error}


def spawn(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, **ENV})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["?"]
        return {"failed": f"exit {proc.returncode}: {tail[0][:200]}"}
    return json.loads(lines[-1][len("RESULT "):])


# ----- 2. and 3. ---------------------------------------------------------------------------


def program_and_rss_tables(names: list[str], calls: int) -> tuple[list[tuple], list[tuple]]:
    programs, rss = [], []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
            print(f"[{name}] exporting and compiling", file=sys.stderr, flush=True)
            prep = spawn("prepare", name, tmp)
            if "failed" in prep:
                programs.append((name, prep["failed"], *[""] * 8))
                continue
            programs.append((
                name, prep["kernels"], prep["naive"], prep["bound"], prep["planned"],
                prep["allocated"], prep["tvm_alone"], prep["output_bytes"], prep["inplace"],
                "yes" if prep["honoured"] and prep["reused"] else "NO"))
            for system in SYSTEMS:
                weights = f"{prep['weights'] / 2**20:.1f}"
                if system == "onnxruntime" and "onnx_error" in prep:
                    rss.append((name, system, weights, prep["onnx_error"], *[""] * 5))
                    continue
                print(f"[{name}] {system}: {calls} calls", file=sys.stderr, flush=True)
                cell = spawn("run", system, name, tmp, str(calls))
                if "failed" in cell:
                    rss.append((name, system, weights, cell["failed"], *[""] * 5))
                    continue
                rss.append((name, system, weights, f"{cell['import']:.0f}",
                            f"{cell['loaded']:.1f}", f"{cell['peak']:.0f}",
                            f"{cell['peak'] - cell['import']:.1f}", f"{cell['growth']:.1f}",
                            f"{cell['error']:.1e}"))
    return programs, rss


def markdown(header: tuple, rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hf", action="store_true", help="add HF ResNet-50 and BERT-base")
    p.add_argument("--plans-only", action="store_true", help="table 1 only, nothing built")
    p.add_argument("--calls", type=int, default=200, help="calls per RSS process (zoo)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.child:
        kind, *rest = opts.child
        result = child_prepare(rest[0], Path(rest[1])) if kind == "prepare" else \
            child_run(rest[0], rest[1], Path(rest[2]), int(rest[3]))
        print("RESULT " + json.dumps(result))
        return
    text = ["## Plans (no build)", "", markdown(PLAN_HEADER, plan_table())]
    if not opts.plans_only:
        programs, rss = program_and_rss_tables(list(ZOO_NAMES), opts.calls)
        if opts.hf:
            hf_programs, hf_rss = program_and_rss_tables(list(HF_NAMES), max(10, opts.calls // 10))
            programs, rss = programs + hf_programs, rss + hf_rss
        text += ["", "## Compiled programs (O2, CPU)", "", markdown(PROGRAM_HEADER, programs),
                 "", f"## Peak RSS of a process running the model ({opts.calls} calls; HF "
                 f"models {max(10, opts.calls // 10)})", "", markdown(RSS_HEADER, rss)]
    print("\n".join(text))
    if opts.plans_only:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("# Memory benchmark\n\nMade by `python benchmarks/bench_memory.py"
                       + (" --hf" if opts.hf else "") + "`.\n\n" + "\n".join(text) + "\n")


if __name__ == "__main__":
    main()
