"""What a compiled program is planned with: the order its kernels run in, and the arena.

Static shapes: the captured order and the memory-aware one (``order.py``) are both
planned and the smaller arena wins (the captured order on a tie: it keeps the code's own
order where reordering buys nothing); the graph comes back with its nodes in the winner's
order, so that lowering, which emits kernels in node order, runs them as planned.

Symbolic shapes keep the captured order (the best order depends on the sizes, and one
program serves them all) and get a ``SizeClassPlanner``.
"""

from __future__ import annotations

from compiler.planning.plan import MemoryPlan, apply_order, plan_memory
from compiler.planning.size_classes import SizeClassPlanner
from ir import Graph


def plan_program(graph: Graph) -> tuple[Graph, MemoryPlan | SizeClassPlanner]:
    """``(graph in the planned order, its plan)``; ``graph`` itself is left as it is."""
    if not all(n.type.is_static for n in graph.nodes):
        return graph, SizeClassPlanner(graph)
    captured = plan_memory(graph)
    aware = plan_memory(graph, order="memory")
    if aware.arena_bytes >= captured.arena_bytes:
        return graph, captured
    reordered = apply_order(graph, aware)
    return reordered, plan_memory(reordered)
