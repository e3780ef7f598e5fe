"""Memory planning on sample graphs and (when capture is available) the model zoo.

    python benchmarks/bench_memory.py

Prints a markdown table: kernels, naive bytes (each intermediate its own buffer), the
planned arena, its lower bound (most bytes live at any step), their ratio, and the peak
live bytes in the captured order against the memory-aware order. The arena columns are
for the captured order; ``arena (mem)`` plans the memory-aware order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compiler.planning import MemoryPlan, memory_aware_order, plan_memory  # noqa: E402
from compiler.planning.sample_graphs import BRANCHING, CHAINS  # noqa: E402
from ir import Graph  # noqa: E402

HEADER = ("model", "kernels", "naive B", "arena B", "lower bound B", "arena/bound",
          "peak captured B", "peak mem-aware B", "order", "arena mem-aware B",
          "arena/bound mem-aware")


def row(name: str, graph: Graph) -> tuple:
    plan = plan_memory(graph)
    ordering = memory_aware_order(graph)
    reordered = plan_memory(graph, order=ordering.steps)
    return (name, len(plan.steps), plan.naive_bytes, plan.arena_bytes, plan.lower_bound_bytes,
            _ratio(plan), ordering.captured_peak_bytes, ordering.peak_bytes, ordering.method,
            reordered.arena_bytes, _ratio(reordered))


def _ratio(plan: MemoryPlan) -> str:
    return f"{plan.arena_bytes / plan.lower_bound_bytes if plan.lower_bound_bytes else 1:.3f}"


def fused_sample_graphs() -> dict[str, Callable[[], Graph]]:
    """The sample graphs unfused, then through the O2 pipeline (its own fusion groups)."""
    try:
        from compiler.pipelines import optimize
    except ImportError as err:
        print(f"(O2 sample graphs skipped: {err})\n")
        return {}

    def build(factory: Callable[[], Graph]) -> Callable[[], Graph]:
        def make() -> Graph:
            graph = factory()
            for node in graph.nodes:
                node.meta.pop("group", None)
            return optimize(graph, opt_level=2)[0]
        return make

    return {f"{name} (O2)": build(f) for name, f in {**CHAINS, **BRANCHING}.items()}


def zoo_graphs() -> dict[str, Callable[[], Graph]]:
    """The example models captured and optimized at O2 (fused), if capture exists yet."""
    try:
        from compiler.capture import capture
        from compiler.pipelines import optimize
        from examples.models import ZOO
    except ImportError as err:
        print(f"(zoo models skipped: {err})\n")
        return {}

    def build(factory: Callable) -> Callable[[], Graph]:
        def make() -> Graph:
            model, args = factory()
            graph, _ = optimize(capture(model, args, {}).graph, opt_level=2)
            return graph
        return make

    return {f"zoo:{name}": build(factory) for name, factory in ZOO.items()}


def main() -> None:
    rows = [HEADER]
    graphs = {**CHAINS, **BRANCHING, **fused_sample_graphs(), **zoo_graphs()}
    for name, make in graphs.items():
        try:
            rows.append(row(name, make()))
        except Exception as err:  # one model failing to capture should not hide the rest
            print(f"({name} skipped: {type(err).__name__}: {err})")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for r in rows[1:]:
        print("| " + " | ".join(str(c) for c in r) + " |")


if __name__ == "__main__":
    main()
