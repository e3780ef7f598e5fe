"""Merge two linears in a row into one.

Algebra: linear(linear(x, W1, b1), W2, b2) = linear(x, W2 @ W1, W2 @ b1 + b2), also
through reshapes that keep the last dim (they move whole rows, which a linear maps one
by one): linear(R(linear(x, W1, b1)), W2, b2) = R'(linear(x, W2 @ W1, W2 @ b1 + b2)),
R' the same reshape with the last dim out2.

When: the first linear's output (and each reshape's) has one user, all of W1, b1, W2, b2
are weights with data, and the merge does not add work. Per row the chain costs
in1*out1 + out1*out2 multiply-adds and the merged linear in1*out2, so we fold only when
    out2 * in1 <= out1 * in1 + out2 * out1
(a bottleneck W1: in1 -> small out1 -> out2 large would cost more merged, and its
weights would grow from (in1 + out2) * out1 to in1 * out2 elements).
"""

from __future__ import annotations

import numpy as np

from compiler.pass_manager import Pass, PassResult, derived_meta
from compiler.pattern import has_single_user
from ir import Graph, Node
from ir.types import is_float


def _data(graph: Graph, node: Node) -> np.ndarray | None:
    return graph.weights.get(node.name) if node.op == "weight" else None


def keeps_last_dim(node: Node) -> bool:
    return node.op == "reshape" and node.type.rank >= 1 and node.inputs[0].type.rank >= 1 \
        and node.shape[-1] == node.inputs[0].shape[-1]


def mergeable_chain(graph: Graph, second: Node) -> tuple[Node, list[Node]] | None:
    """``(first linear, reshapes between)`` when ``second`` can absorb them."""
    reshapes: list[Node] = []
    value = second.inputs[0]
    while keeps_last_dim(value) and has_single_user(value, graph):
        reshapes.append(value)
        value = value.inputs[0]
    first = value
    if first.op != "linear" or not has_single_user(first, graph):
        return None
    params = [*first.inputs[1:], *second.inputs[1:]]
    if any(_data(graph, p) is None for p in params):
        return None
    if not (is_float(first.dtype) and first.dtype == second.dtype == first.inputs[0].dtype):
        return None
    out1, in1 = first.inputs[1].shape
    out2 = second.inputs[1].shape[0]
    if out2 * in1 > out1 * in1 + out2 * out1:
        return None  # merging would add FLOPs (see the module docstring)
    return first, reshapes[::-1]


class MergeLinearChain(Pass):
    name = "merge_linear_chain"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for node in list(graph.ops()):
            if node.op == "linear" and (found := mergeable_chain(graph, node)) is not None:
                self.merge(graph, found[0], found[1], node)
                modified = True
        return PassResult(graph, modified)

    def merge(self, graph: Graph, first: Node, reshapes: list[Node], second: Node) -> None:
        w1, w2 = (_data(graph, n.inputs[1]).astype(np.float64) for n in (first, second))
        b1 = _data(graph, first.inputs[2]).astype(np.float64) if len(first.inputs) > 2 \
            else np.zeros(w1.shape[0])
        b2 = _data(graph, second.inputs[2]).astype(np.float64) if len(second.inputs) > 2 \
            else np.zeros(w2.shape[0])
        dtype = second.inputs[1].dtype
        meta = derived_meta(second, self.name)
        w = graph.add_weight(second.name + "_w", (w2 @ w1).astype(dtype), before=second,
                             meta=meta)
        operands = [first.inputs[0], w]
        if len(first.inputs) > 2 or len(second.inputs) > 2:
            operands.append(graph.add_weight(second.name + "_b", (w2 @ b1 + b2).astype(dtype),
                                             before=second, meta=meta))
        new = graph.call("linear", operands, name="linear", before=second, meta=meta)
        if new.shape != second.shape:
            new = graph.call("reshape", [new], {"shape": second.shape}, name="reshape",
                             before=second, meta=meta)
        graph.replace_all_uses(second, new)
        for dead in [second, *reversed(reshapes), first]:
            graph.erase(dead)
        graph.rename(new, second.name)  # readers of the second linear's value keep its name


PASS = MergeLinearChain
