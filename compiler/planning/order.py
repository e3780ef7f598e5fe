"""A memory-aware execution order: among the topological orders of the kernels, one with
a lower peak of live bytes than the captured order.

The cost of an order: during each step, the buffers already written and still needed
(graph outputs stay to the end) plus the step's own output. In-place reuse is left out
of this cost (the arena may do better than it, never worse). The live set after a set of
scheduled kernels depends only on that set, so on small graphs an exact search over the
sets (memoized, a downset at a time) finds the best order; larger graphs get a greedy
order with a short look-ahead. The captured order is always a candidate, so the result
is never worse than it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
WIDE_FRONTIER = 12  # more ready kernels than this: look one step ahead, not LOOKAHEAD


@dataclass(frozen=True)
class Ordering:
    """A kernel order with its peak live bytes, and the captured order's for comparison."""

    steps: list[Step]
    peak_bytes: int
    captured_peak_bytes: int
    method: str  # "exact", "greedy" or "captured" (when nothing beat it)


class _Problem:
    """Kernels as bit positions: sizes, operand and reader lists, outputs. A *state* is
    ``(done, ready, live)``: the scheduled set, the set whose operands are all done (both
    bitmasks) and the bytes held; ``run`` advances it by one kernel in time linear in
    that kernel's edges, so searches never rescan the graph."""

    def __init__(self, steps: list[Step], outputs: set[str]) -> None:
        index = {s.name: i for i, s in enumerate(steps)}
        self.n = len(steps)
        self.full = (1 << self.n) - 1
        self.size = [s.nbytes for s in steps]
        self.operands = [[index[r] for r in s.reads] for s in steps]
        self.preds = [sum(1 << j for j in ops) for ops in self.operands]
        self.readers: list[list[int]] = [[] for _ in steps]
        for i, ops in enumerate(self.operands):
            for j in ops:
                self.readers[j].append(i)
        self.reader_mask = [sum(1 << i for i in rs) for rs in self.readers]
        self.keep = [s.name in outputs for s in steps]
        self.start = (0, sum(1 << k for k in range(self.n) if not self.preds[k]), 0)

    def ready(self, state: tuple[int, int, int]) -> Iterator[int]:
        ready = state[1]
        while ready:
            low = ready & -ready
            yield low.bit_length() - 1
            ready ^= low

    def run(self, state: tuple[int, int, int], k: int) -> tuple[int, tuple[int, int, int]]:
        """Bytes live during kernel ``k`` (held ones plus its output), and the next state."""
        done, ready, live = state
        during = live + self.size[k]
        done |= 1 << k
        ready &= ~(1 << k)
        for r in self.readers[k]:
            if self.preds[r] & ~done == 0:
                ready |= 1 << r
        if self.keep[k] or self.reader_mask[k] & ~done:
            live += self.size[k]
        for j in set(self.operands[k]):  # operands read for the last time are freed
            if not self.keep[j] and self.reader_mask[j] & ~done == 0:
                live -= self.size[j]
        return during, (done, ready, live)

    def peak(self, order: list[int]) -> int:
        state, peak = self.start, 0
        for k in order:
            during, state = self.run(state, k)
            peak = max(peak, during)
        return peak


class _TooManyStates(Exception):
    pass


def exact_order(problem: _Problem, max_states: int = EXACT_MAX_STATES) -> list[int]:
    """The order of least peak, by memoized search over scheduled sets. Ties go to the
    order holding fewer bytes summed over its steps: buffers made just in time leave an
    arena fewer holes than ones made early."""
    memo: dict[int, tuple[int, int, int]] = {}  # done -> (peak, byte-steps, next kernel)

    def best(state: tuple[int, int, int]) -> tuple[int, int]:
        done = state[0]
        if done == problem.full:
            return 0, 0
        if done not in memo:
            if len(memo) >= max_states:
                raise _TooManyStates
            options = []
            for k in problem.ready(state):
                during, after = problem.run(state, k)
                peak, byte_steps = best(after)
                options.append((max(during, peak), during + byte_steps, k))
            memo[done] = min(options)
        return memo[done][:2]

    best(problem.start)
    order, state = [], problem.start
    while state[0] != problem.full:
        k = memo[state[0]][2]
        order.append(k)
        state = problem.run(state, k)[1]
    return order


def greedy_order(problem: _Problem, lookahead: int = LOOKAHEAD) -> list[int]:
    """Repeatedly run the ready kernel whose best ``lookahead``-step continuation has the
    lowest peak, then the fewest bytes left live."""
    order, state = [], problem.start
    while state[0] != problem.full:
        ready = list(problem.ready(state))
        depth = lookahead if len(ready) <= WIDE_FRONTIER else min(lookahead, 1)
        k = min(ready, key=lambda k: (*_window(problem, state, k, depth), k))
        order.append(k)
        state = problem.run(state, k)[1]
    return order


def _window(problem: _Problem, state: tuple[int, int, int], k: int,
            depth: int) -> tuple[int, int]:
    """(peak, live bytes at the end) of running ``k`` and then the best ``depth`` more."""
    during, after = problem.run(state, k)
    if depth == 0 or after[0] == problem.full:
        return during, after[2]
    peak, live = min(_window(problem, after, j, depth - 1) for j in problem.ready(after))
    return max(during, peak), live


def memory_aware_order(graph: Graph, exact_max_kernels: int = EXACT_MAX_KERNELS,
                       sizes: Mapping[str, int] | None = None) -> Ordering:
    """The kernels of ``graph`` in an order of low peak memory (see the module docstring);
    ``sizes`` for symbolic shapes."""
    steps = kernel_steps(graph, sizes)
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
    new_steps = [Step(tuple(by_name[m.name] for m in s.members), s.reads, s.overwritable,
                      s.nbytes) for s in steps]
    new.nodes = nodes_in_order(new, new_steps)
    return new


def reorder(graph: Graph) -> Graph:
    """``graph`` in a memory-aware kernel order (a copy; ``graph`` is left as it is)."""
    return apply_steps(graph, memory_aware_order(graph).steps)
