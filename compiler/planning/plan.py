"""``plan_memory``: liveness, in-place reuse and a static arena for one execution order.

The plan, read top to bottom: kernels as steps (in the graph's order, a memory-aware
order, or one given) -> live intervals -> in-place pairs -> blocks -> arena offsets ->
the checks (no two live buffers share a byte; lower bound <= arena <= naive).

What is planned: each kernel's output (its group root). Graph outputs are returned to
the user, so they cannot sit in a reused arena: they are allocated on their own and
reported as ``output_bytes``. Views (ungrouped ``reshape``) alias their source and take
no bytes. Byte totals count each buffer at its ``ALIGNMENT``-rounded size, as an arena
of aligned offsets must.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from compiler.planning.arena import (
    ALIGNMENT,
    align,
    allocate,
    check_no_overlap,
    choose_inplace,
    merge_inplace_chains,
)
from compiler.planning.liveness import Span, live_bytes, live_intervals
from compiler.planning.order import apply_steps, check_order, memory_aware_order
from compiler.planning.steps import (
    PlanInvariantError,
    Step,
    buffer_of,
    is_view,
    kernel_steps,
    output_buffers,
)
from ir import Graph


@dataclass(frozen=True)
class Buffer:
    """One value's storage. ``offset`` is into the arena; ``None`` for graph outputs
    (allocated on their own). A view has ``size`` 0 and ``alias_of`` its source."""

    name: str
    size: int
    offset: int | None
    start: int
    end: int
    inplace_of: str | None = None
    alias_of: str | None = None
    is_output: bool = False


@dataclass
class MemoryPlan:
    """Where every kernel output lives, and the numbers that judge the plan."""

    buffers: list[Buffer]
    steps: list[Step]
    arena_bytes: int
    naive_bytes: int  # every planned intermediate in a buffer of its own
    lower_bound_bytes: int  # the most bytes live at any step
    output_bytes: int  # graph outputs, outside the arena
    live_per_step: list[int] = field(repr=False, default_factory=list)
    alignment: int = ALIGNMENT

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(f"no planned buffer %{name}")

    def offset_of(self, name: str) -> int | None:
        """The arena offset of the value ``name`` (a view's is its source's)."""
        return self.buffer(name).offset

    @property
    def kernel_order(self) -> list[str]:
        """Root names of the kernels in planned execution order."""
        return [s.name for s in self.steps]

    def timeline(self) -> list[int]:
        """Arena bytes live at each step (the lower bound is its maximum)."""
        return list(self.live_per_step)

    def summary(self) -> str:
        rows = [("buffer", "bytes", "offset", "steps", "note")]
        for b in self.buffers:
            note = ("output" if b.is_output else "") or \
                (f"in place of %{b.inplace_of}" if b.inplace_of else "") or \
                (f"view of %{b.alias_of}" if b.alias_of else "")
            offset = "-" if b.offset is None else str(b.offset)
            rows.append((f"%{b.name}", str(b.size), offset, f"{b.start}..{b.end}", note))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                 for row in rows]
        ratio = self.arena_bytes / self.lower_bound_bytes if self.lower_bound_bytes else 1.0
        lines.append(f"naive {self.naive_bytes} B, arena {self.arena_bytes} B, lower bound "
                     f"{self.lower_bound_bytes} B (arena/bound {ratio:.3f}), outputs "
                     f"{self.output_bytes} B, {len(self.steps)} kernels")
        return "\n".join(lines)


def plan_memory(graph: Graph, order: str | Sequence[Step] = "graph",
                sizes: Mapping[str, int] | None = None) -> MemoryPlan:
    """Plan every kernel output of ``graph`` into one arena.

    Parameters
    ----------
    graph : Graph
        Fusion groups in ``meta["group"]`` (or none: one kernel per op).
    order : {"graph", "memory"} or list of Step
        The execution order: the graph's node order, a memory-aware one
        (``memory_aware_order``), or given. Emit kernels in ``plan.steps``' order
        (``apply_order``) for the offsets to hold.
    sizes : dict, optional
        A value for each symbol, where shapes are symbolic: the plan holds for those
        sizes and for any smaller (see ``compiler.planning.size_classes``).
    """
    steps = _ordered_steps(graph, order, sizes)
    outputs = output_buffers(graph)
    sizes = {s.name: s.nbytes for s in steps}
    spans = live_intervals(steps, outputs)
    planned = set(sizes) - outputs
    inplace = choose_inplace(steps, spans, planned)
    block_of, block_spans = merge_inplace_chains({n: spans[n] for n in planned}, sizes, inplace)
    block_offsets, arena = allocate(block_spans, sizes)
    offsets = {name: block_offsets[block] for name, block in block_of.items()}
    aligned = {block: align(sizes[block]) for block in block_spans}
    timeline = live_bytes(block_spans, aligned, len(steps))
    plan = MemoryPlan(
        buffers=_buffers(graph, steps, spans, sizes, offsets, inplace, outputs),
        steps=steps,
        arena_bytes=arena,
        naive_bytes=sum(align(sizes[n]) for n in planned),
        lower_bound_bytes=max(timeline, default=0),
        output_bytes=sum(sizes[n] for n in outputs),
        live_per_step=timeline,
    )
    check_plan(plan)
    return plan


def apply_order(graph: Graph, plan: MemoryPlan) -> Graph:
    """A copy of ``graph`` whose nodes are in the plan's kernel order."""
    return apply_steps(graph, plan.steps)


def _ordered_steps(graph: Graph, order: str | Sequence[Step],
                   sizes: Mapping[str, int] | None) -> list[Step]:
    if order == "graph":
        return kernel_steps(graph, sizes)
    if order == "memory":
        return memory_aware_order(graph, sizes=sizes).steps
    if isinstance(order, str):
        raise ValueError(f"order must be 'graph', 'memory' or a list of steps, not {order!r}")
    steps = list(order)
    if sorted(s.name for s in steps) != sorted(s.name for s in kernel_steps(graph, sizes)):
        raise ValueError("the given order does not list each kernel of the graph once")
    check_order(steps)
    return steps


def _buffers(graph: Graph, steps: list[Step], spans: dict[str, Span], sizes: dict[str, int],
             offsets: dict[str, int], inplace: dict[str, str], outputs: set[str]) -> list[Buffer]:
    buffers = [Buffer(s.name, sizes[s.name], offsets.get(s.name), *spans[s.name],
                      inplace_of=inplace.get(s.name), is_output=s.name in outputs)
               for s in steps]
    for node in graph.nodes:
        source = buffer_of(node) if is_view(node) else None
        if source is not None:
            buffers.append(Buffer(node.name, 0, offsets.get(source.name), *spans[source.name],
                                  alias_of=source.name, is_output=source.name in outputs))
    return buffers


def check_plan(plan: MemoryPlan) -> None:
    """No two live buffers share a byte; aligned offsets inside the arena;
    lower bound <= arena <= naive."""
    check_no_overlap(plan.buffers)
    for b in plan.buffers:
        if b.offset is not None and (b.offset % plan.alignment or
                                     b.offset + b.size > plan.arena_bytes):
            raise PlanInvariantError(f"%{b.name} at offset {b.offset} in a "
                                     f"{plan.arena_bytes}-byte arena")
    if not plan.lower_bound_bytes <= plan.arena_bytes <= plan.naive_bytes:
        raise PlanInvariantError(f"arena {plan.arena_bytes} B outside [lower bound "
                                 f"{plan.lower_bound_bytes}, naive {plan.naive_bytes}]")
