"""Memory plans for symbolic shapes: one per size class.

A call's sizes (a value per symbol) fall in a class: each value rounded up to a power of
two (``compiler.dynamic.size_class``). A class is planned once, at its upper bounds, and
the plan serves every call in it: buffer sizes grow with the symbols, so at smaller sizes
each buffer only shrinks at its offset and no two come to share a byte. That is checked
for each new set of sizes, not assumed: a buffer larger than at the bound (a size that
is not monotone) gets the call a plan at its exact sizes instead.

One compiled program serves every class: the kernel order is fixed, liveness depends on
the order alone, and whether a kernel may overwrite an input is decided on the symbolic
shapes, so the in-place pairs (which decide the kernels' ``noalias``) are those of any
class. Only the arena size and the offsets change; the program takes them as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from compiler.dynamic import DimSpec, size_class, symbols_of
from compiler.planning.plan import MemoryPlan, plan_memory
from compiler.planning.steps import node_bytes
from ir import Graph
from ir.ops import sym_dim


def graph_symbols(graph: Graph) -> list[str]:
    """The names of the symbols in ``graph``'s types, sorted."""
    names = {s.name for n in graph.nodes for d in n.shape if isinstance(d, str)
             for s in sym_dim(d).free_symbols}
    return sorted(names)


class SizeClassPlanner:
    """Plans of ``graph`` (symbolic shapes, kernels in the order they will run) per size
    class, made on first use and kept. ``reference`` is the plan at every symbol 1: its
    buffers, in-place pairs and kernel order are every class's."""

    def __init__(self, graph: Graph, ranges: Mapping[str, DimSpec] | None = None) -> None:
        self.graph = graph
        self.ranges = dict(ranges or {})
        self.symbols = graph_symbols(graph)
        self.plans: dict[tuple[int, ...], MemoryPlan] = {}
        self._layouts: dict[tuple[tuple[int, ...], tuple[str, ...]], tuple[int, ...]] = {}
        self.reference = self.plan_for(dict.fromkeys(self.symbols, 1))

    def sizes_of(self, flat_inputs: Sequence[Any]) -> dict[str, int]:
        """The symbols' values in one call's inputs."""
        return symbols_of(self.graph, list(flat_inputs))

    def bound(self, sizes: Mapping[str, int]) -> dict[str, int]:
        """The upper bounds of ``sizes``' class."""
        return size_class(dict(sizes), self.ranges)

    def plan_for(self, sizes: Mapping[str, int]) -> MemoryPlan:
        """The plan of ``sizes``' class (made at the class's bounds)."""
        bound = self.bound(sizes)
        key = tuple(bound[s] for s in self.symbols)
        if key not in self.plans:
            self.plans[key] = plan_memory(self.graph, sizes=bound)
        return self.plans[key]

    def layout(self, sizes: Mapping[str, int], buffers: Sequence[str]) -> tuple[int, ...]:
        """``(arena bytes, offset of each of buffers)`` valid at ``sizes``."""
        key = (tuple(sizes[s] for s in self.symbols), tuple(buffers))
        if key not in self._layouts:
            plan = self.plan_for(sizes)
            if any(node_bytes(step.root, sizes) > step.nbytes for step in plan.steps):
                plan = plan_memory(self.graph, sizes=sizes)  # not monotone: exact sizes
            self._layouts[key] = (plan.arena_bytes, *(plan.offset_of(b) for b in buffers))
        return self._layouts[key]

    def table(self) -> list[dict[str, Any]]:
        """One row per class planned so far: its bounds and the plan's numbers."""
        return [{"class": dict(zip(self.symbols, key)), "arena_bytes": p.arena_bytes,
                 "lower_bound_bytes": p.lower_bound_bytes, "naive_bytes": p.naive_bytes}
                for key, p in sorted(self.plans.items())]
