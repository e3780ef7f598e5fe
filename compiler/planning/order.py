"""A memory-aware execution order: among the topological orders of the kernels, one with
a lower peak of live bytes than the captured order.

The cost of an order: during each step, the buffers already written and still needed
(graph outputs stay to the end) plus the step's own output. The live set after a set of
scheduled kernels depends only on that set, so on small graphs an exact search over the
sets (memoized, a downset at a time) finds the best order; larger graphs get a greedy
order with a short look-ahead. The captured order is always a candidate, so the result
is never worse than it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from compiler.planning.steps import (
    PlanInvariantError,
    Step,
    is_view,
    kernel_steps,
    output_buffers,
)
from ir import LEAF_OPS, Graph, Node

EXACT_MAX_KERNELS = 64  # bitmask search; the state cap is what bounds its time
EXACT_MAX_STATES = 100_000
LOOKAHEAD = 2


@dataclass(frozen=True)
class Ordering:
    """A kernel order with its peak live bytes, and the captured order's for comparison."""

    steps: list[Step]
    peak_bytes: int
    captured_peak_bytes: int
    method: str  # "exact", "greedy" or "captured" (when nothing beat it)


class _Problem:
    """Kernels as bit positions: sizes, predecessor and reader masks, outputs."""

    def __init__(self, steps: list[Step], outputs: set[str]) -> None:
        index = {s.name: i for i, s in enumerate(steps)}
        self.n = len(steps)
        self.full = (1 << self.n) - 1
        self.size = [s.nbytes for s in steps]
        self.preds = [sum(1 << index[r] for r in s.reads) for s in steps]
        self.readers = [0] * self.n
        for i, s in enumerate(steps):
            for r in s.reads:
                self.readers[index[r]] |= 1 << i
        self.keep = [s.name in outputs for s in steps]

    def ready(self, done: int) -> Iterator[int]:
        for k in range(self.n):
            if not done >> k & 1 and self.preds[k] & ~done == 0:
                yield k

    def live(self, done: int) -> int:
        """Bytes held after the kernels in ``done``: outputs, and buffers still to be read."""
        return sum(self.size[j] for j in range(self.n)
                   if done >> j & 1 and (self.keep[j] or self.readers[j] & ~done))

    def peak(self, order: list[int]) -> int:
        done, peak = 0, 0
        for k in order:
            peak = max(peak, self.live(done) + self.size[k])
            done |= 1 << k
        return peak


class _TooManyStates(Exception):
    pass


def exact_order(problem: _Problem, max_states: int = EXACT_MAX_STATES) -> list[int]:
    """The order of least peak, by memoized search over scheduled sets. Ties go to the
    order holding fewer bytes summed over its steps: buffers made just in time leave an
    arena fewer holes than ones made early."""
    memo: dict[int, tuple[int, int, int]] = {}  # done -> (peak, byte-steps, next kernel)

    def best(done: int) -> tuple[int, int]:
        if done == problem.full:
            return 0, 0
        if done not in memo:
            if len(memo) >= max_states:
                raise _TooManyStates
            base = problem.live(done)
            memo[done] = min(_extend(base + problem.size[k], best(done | 1 << k), k)
                             for k in problem.ready(done))
        return memo[done][:2]

    best(0)
    order, done = [], 0
    while done != problem.full:
        k = memo[done][2]
        order.append(k)
        done |= 1 << k
    return order


def _extend(during: int, rest: tuple[int, int], k: int) -> tuple[int, int, int]:
    return max(during, rest[0]), during + rest[1], k


def greedy_order(problem: _Problem, lookahead: int = LOOKAHEAD) -> list[int]:
    """Repeatedly run the ready kernel whose best ``lookahead``-step continuation has the
    lowest peak, then the fewest bytes left live."""
    order, done = [], 0
    while done != problem.full:
        k = min(problem.ready(done), key=lambda k: (*_window(problem, done, k, lookahead), k))
        order.append(k)
        done |= 1 << k
    return order


def _window(problem: _Problem, done: int, k: int, depth: int) -> tuple[int, int]:
    """(peak, live bytes at the end) of running ``k`` and then the best ``depth`` more."""
    here = problem.live(done) + problem.size[k]
    after = done | 1 << k
    if depth == 0 or after == problem.full:
        return here, problem.live(after)
    peak, live = min(_window(problem, after, j, depth - 1) for j in problem.ready(after))
    return max(here, peak), live


def memory_aware_order(graph: Graph, exact_max_kernels: int = EXACT_MAX_KERNELS) -> Ordering:
    """The kernels of ``graph`` in an order of low peak memory (see the module docstring)."""
    steps = kernel_steps(graph)
    problem = _Problem(steps, output_buffers(graph))
    captured = list(range(problem.n))
    candidates = {"captured": captured}
    try:
        if problem.n <= exact_max_kernels:
            candidates["exact"] = exact_order(problem)
    except _TooManyStates:
        pass
    if "exact" not in candidates:
        candidates["greedy"] = greedy_order(problem)
    peaks = {method: problem.peak(order) for method, order in candidates.items()}
    method = min(peaks, key=lambda m: (peaks[m], m != "captured"))
    ordering = Ordering([steps[k] for k in candidates[method]], peaks[method],
                        peaks["captured"], method)
    check_order(ordering.steps)
    return ordering


def check_order(steps: list[Step]) -> None:
    """Every kernel comes after the kernels whose buffers it reads."""
    seen: set[str] = set()
    for step in steps:
        missing = [r for r in step.reads if r not in seen]
        if missing:
            raise PlanInvariantError(f"{step.root.describe()} runs before %{missing[0]}")
        seen.add(step.name)


# ----- node order ---------------------------------------------------------------------


def nodes_in_order(graph: Graph, steps: list[Step]) -> list[Node]:
    """All of ``graph``'s nodes with kernels in ``steps``' order, each group contiguous:
    leaves first (as they were), a view right after its operand."""
    position = {n: i for i, n in enumerate(graph.nodes)}
    placed: set[Node] = set()
    order: list[Node] = []

    def emit(node: Node) -> None:
        order.append(node)
        placed.add(node)
        for user in sorted(node.users, key=position.__getitem__):  # views follow their source
            if user not in placed and is_view(user):
                emit(user)

    for node in graph.nodes:
        if node.op in LEAF_OPS:
            emit(node)
    for step in steps:
        for node in sorted(step.members, key=position.__getitem__):
            emit(node)
    check_node_order(graph, order)
    return order


def check_node_order(graph: Graph, order: list[Node]) -> None:
    """A permutation of the graph's nodes, operands before users, groups contiguous."""
    if len(order) != len(graph.nodes) or set(order) != set(graph.nodes):
        raise PlanInvariantError("reordered nodes are not a permutation of the graph's")
    seen: set[Node] = set()
    closed: set[int] = set()
    current = None
    for node in order:
        if any(i not in seen for i in node.inputs):
            raise PlanInvariantError(f"{node.describe()} placed before one of its operands")
        group = node.meta.get("group")
        if group != current:
            if current is not None:
                closed.add(current)
            if group in closed:
                raise PlanInvariantError(f"group {group} is split by the new order")
            current = group
        seen.add(node)


def apply_steps(graph: Graph, steps: list[Step]) -> Graph:
    """A copy of ``graph`` whose nodes run in ``steps``' kernel order."""
    new = graph.copy()
    by_name = {n.name: n for n in new.nodes}
    new_steps = [Step(tuple(by_name[m.name] for m in s.members), s.reads, s.overwritable)
                 for s in steps]
    new.nodes = nodes_in_order(new, new_steps)
    return new


def reorder(graph: Graph) -> Graph:
    """``graph`` in a memory-aware kernel order (a copy; ``graph`` is left as it is)."""
    return apply_steps(graph, memory_aware_order(graph).steps)
