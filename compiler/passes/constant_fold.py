"""Constant folding.

Algebra: an op whose operands are all compile-time values (weights with data, scalar
constants) equals the weight holding its result: ``f(c1, ..., cn) -> c``. The result
becomes a new weight (a ``constant`` when it is a 0-d scalar). Operands left unused
are removed by ``dce``.

Size guard: a fold may grow the graph's constants (``expand`` of a scalar to a huge
tensor, ``full``, ``arange``): it is done only when the result is no larger than its
operands together, or at most ``max_bytes`` (64 KiB by default).
"""

from __future__ import annotations

import numpy as np

from compiler.pass_manager import Pass, PassResult, derived_meta
from compiler.passes.evaluate import OPS, eval_node
from ir import Graph, Node

UNFOLDABLE_DTYPES = ("bfloat16",)  # numpy has no bfloat16


def operand_value(graph: Graph, node: Node) -> np.ndarray | None:
    if node.op == "constant":
        return np.array(node.attrs["value"], dtype=node.dtype)
    if node.op == "weight":
        return graph.weights.get(node.name)
    return None


class ConstantFold(Pass):
    name = "constant_fold"

    def __init__(self, max_bytes: int = 64 * 1024) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def foldable(self, node: Node, values: list) -> bool:
        if node.op not in OPS or any(v is None for v in values):
            return False
        types = [node.type] + [i.type for i in node.inputs]
        if not all(t.is_static and t.dtype not in UNFOLDABLE_DTYPES for t in types):
            return False
        grown = node.type.nbytes() > sum(v.nbytes for v in values)
        return not grown or node.type.nbytes() <= self.max_bytes

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for node in list(graph.ops()):
            values = [operand_value(graph, i) for i in node.inputs]
            if not self.foldable(node, values):
                continue
            result = eval_node(node, values)
            if node.shape == ():
                new = graph.add_constant(result.item(), node.dtype, before=node,
                                         name=node.name)
                new.meta.update(derived_meta(node, self.name))
            else:
                new = graph.add_weight(node.name, result, node.type, before=node,
                                       meta=derived_meta(node, self.name))
            graph.replace_all_uses(node, new)
            graph.erase(node)
            graph.rename(new, node.name)  # the folded value keeps its name
            modified = True
        return PassResult(graph, modified)


PASS = ConstantFold
