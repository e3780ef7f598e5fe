"""Batch independent same-shaped linears into one batched matmul.

Rewrite: linear(x1, W1, b1)|linear(x2, W2, b2) ==> unstack(stack(x1, x2) @ stack(W1.T,
W2.T) + stack(b1, b2)), when x1 and x2 are different values of one shape and neither
linear depends on the other (the heads of a multi-branch model, per-feature towers).
Algebra: batch i of the batched matmul is x_i @ W_i.T, and its bias row is b_i.

In IR ops: each x_i is reshaped to [1, M, K] and concatenated into [N, M, K]; the weights
become one constant [N, K, O] and the biases one [N, 1, O]; ``matmul`` + ``add`` (one
kernel after fusion), then a slice and a reshape per original linear. N small kernels
become one kernel (and N - 1 fewer weight loads per call) at the cost of copying the
inputs, so only inputs of at most ``MAX_INPUT_ELEMENTS`` elements are batched: past that,
the copy costs more than the kernel launches it saves.

When: at least two linears of that shape with constant weights and the same bias use
(all or none), static shapes, and no path between any two of them. Linears that share
their input are ``merge_parallel_linear``'s (one GEMM, no copy) and are left alone.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from compiler.pass_manager import Pass, PassResult, derived_meta
from ir import Graph, Node

MAX_INPUT_ELEMENTS = 1 << 16


def _candidate_key(graph: Graph, linear: Node) -> tuple | None:
    """Linears that may batch together share this key; None for one that may not."""
    x, w, *bias = linear.inputs
    params = (w, *bias)
    if not all(p.op == "weight" and graph.weights.get(p.name) is not None for p in params):
        return None
    if not all(isinstance(d, int) for d in x.shape) or x.type.rank < 1:
        return None
    if math.prod(x.shape) > MAX_INPUT_ELEMENTS:
        return None
    return x.shape, w.shape, bool(bias), x.dtype, w.dtype


def _ancestors(node: Node, memo: dict[Node, frozenset]) -> frozenset:
    """Every node ``node`` depends on (iteratively: graphs are deep)."""
    stack = [node]
    while stack:
        top = stack[-1]
        if top in memo:
            stack.pop()
            continue
        pending = [i for i in top.inputs if i not in memo]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        memo[top] = frozenset().union(*(memo[i] | {i} for i in top.inputs))
    return memo[node]


def independent_groups(graph: Graph) -> list[list[Node]]:
    """Groups of two or more linears that can be batched, each in graph order."""
    by_key: dict[tuple, list[Node]] = defaultdict(list)
    for node in graph.ops():
        if node.op == "linear":
            key = _candidate_key(graph, node)
            if key is not None:
                by_key[key].append(node)
    memo: dict[Node, frozenset] = {}
    groups = []
    for linears in by_key.values():
        group: list[Node] = []
        for candidate in linears:
            ancestors = _ancestors(candidate, memo)
            if any(g in ancestors or candidate in _ancestors(g, memo) or
                   g.inputs[0] is candidate.inputs[0] for g in group):
                continue
            group.append(candidate)
        if len(group) >= 2:
            groups.append(group)
    return groups


class BatchIndependentLinears(Pass):
    """linear(x1, W1)|linear(x2, W2) ==> unstack(stack(x1, x2) @ stack(W1.T, W2.T))"""

    name = "batch_linears"
    rewrite = "linear(x1, W1)|linear(x2, W2) ==> unstack(stack(x1, x2) @ stack(W1.T, W2.T))"

    def run(self, graph: Graph) -> PassResult:
        groups = independent_groups(graph)
        for group in groups:
            self.batch(graph, group)
        if groups:
            stable_topological_order(graph)
        return PassResult(graph, bool(groups))

    def batch(self, graph: Graph, linears: list[Node]) -> None:
        order = {n: i for i, n in enumerate(graph.nodes)}
        last_input = max((n.inputs[0] for n in linears), key=order.__getitem__)
        first = linears[0]
        meta = derived_meta(first, self.name)
        x_shape, (out_features, in_features) = first.inputs[0].shape, first.inputs[1].shape
        rows = math.prod(x_shape[:-1])
        anchor = last_input
        stacked = []
        for n in linears:
            anchor = graph.call("reshape", [n.inputs[0]], {"shape": (1, rows, in_features)},
                                name=f"{n.name}_in", after=anchor, meta=meta)
            stacked.append(anchor)
        xs = graph.call("concat", stacked, {"dim": 0}, name="batched_in", after=anchor,
                        meta=meta)
        weights = np.stack([graph.weights[n.inputs[1].name].T for n in linears])
        w = graph.add_weight(f"{first.name}_batched_w", np.ascontiguousarray(weights),
                             before=xs, meta=meta)
        out = graph.call("matmul", [xs, w], name="batched", after=xs, meta=meta)
        if len(first.inputs) > 2:
            biases = np.stack([graph.weights[n.inputs[2].name] for n in linears])[:, None, :]
            b = graph.add_weight(f"{first.name}_batched_b", np.ascontiguousarray(biases),
                                 before=out, meta=meta)
            out = graph.call("add", [out, b], name="batched_bias", after=out, meta=meta)
        anchor = out
        for i, n in enumerate(linears):
            piece = graph.call("slice", [out], {"dim": 0, "start": i, "end": i + 1},
                               name=f"{n.name}_out", after=anchor,
                               meta=derived_meta(n, self.name))
            anchor = graph.call("reshape", [piece], {"shape": (*x_shape[:-1], out_features)},
                                name=f"{n.name}_batched", after=piece,
                                meta=derived_meta(n, self.name))
            graph.replace_all_uses(n, anchor)
            graph.erase(n)
            graph.rename(anchor, n.name)  # readers of %head_a still read %head_a


def stable_topological_order(graph: Graph) -> None:
    """Reorder ``graph.nodes`` so every node follows its inputs, keeping the current
    order wherever it is already valid (Kahn's algorithm, earliest position first)."""
    import heapq

    position = {n: i for i, n in enumerate(graph.nodes)}
    waiting = {n: len(set(n.inputs)) for n in graph.nodes}
    ready = [(position[n], id(n), n) for n in graph.nodes if waiting[n] == 0]
    heapq.heapify(ready)
    ordered = []
    while ready:
        _, _, node = heapq.heappop(ready)
        ordered.append(node)
        for user in dict.fromkeys(node.users):
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, (position[user], id(user), user))
    assert len(ordered) == len(graph.nodes), "the graph has a cycle"
    graph.nodes[:] = ordered


PASS = BatchIndependentLinears
