"""Common subexpression elimination.

Algebra: two nodes with the same op, the same operands (the same nodes, in order), the
same attrs and the same type compute the same value (every IR op is pure), so the
later one is replaced by the earlier. Constants with the same value and dtype merge;
weights merge when their data is the very same array or equal element for element.
Graph inputs never merge.
"""

from __future__ import annotations

import hashlib

import numpy as np

from compiler.pass_manager import Pass, PassResult
from ir import Graph, Node


def _freeze(value):
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, float):  # by bits: 0.0 == -0.0 but x / -0.0 is -inf, and
        return ("float", value.hex())  # nan != nan, yet two nan attrs mean the same
    return (type(value).__name__, value)


def _weight_key(graph: Graph, node: Node):
    data = graph.weights.get(node.name)
    if data is None:
        return None  # no data (parsed from text): cannot tell two weights apart
    data = np.ascontiguousarray(data)
    return ("weight", node.type, hashlib.sha1(data.tobytes()).hexdigest())


def node_key(graph: Graph, node: Node):
    """What makes two nodes compute the same value; ``None`` when never merged."""
    if node.op == "input":
        return None
    if node.op == "weight":
        return _weight_key(graph, node)
    attrs = tuple(sorted((k, _freeze(v)) for k, v in node.attrs.items()))
    return (node.op, tuple(id(i) for i in node.inputs), attrs, node.type)


class CommonSubexpressionElimination(Pass):
    name = "cse"

    def run(self, graph: Graph) -> PassResult:
        seen: dict = {}
        modified = False
        for node in list(graph.nodes):
            key = node_key(graph, node)
            if key is None:
                continue
            first = seen.setdefault(key, node)
            if first is node:
                continue
            if node.op == "weight" and not np.array_equal(graph.weights[first.name],
                                                          graph.weights[node.name]):
                continue  # a hash collision; keep both
            graph.replace_all_uses(node, first)
            graph.erase(node)
            modified = True
        return PassResult(graph, modified)


PASS = CommonSubexpressionElimination
