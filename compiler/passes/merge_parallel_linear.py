"""Merge linears that read the same input into one wide linear and slices.

Rewrite: linear(x, W1, b1)|linear(x, W2, b2) ==> slice(linear(x, concat(W1, W2),
concat(b1, b2))) along the last dim - the Q/K/V projections of attention become one
GEMM. Algebra: the rows of concat(W1, W2) are W1's then W2's, so output columns
[0, out1) are x @ W1.T and [out1, out1 + out2) are x @ W2.T.

When: two or more linears read the same node as their input, every weight and bias is
a weight with data (a linear with non-constant weights is left alone), and they share
dtypes. Linears without bias get zeros where others have one.

Not implemented (yet): the second form, independent same-shaped linears on different
inputs -> one batched matmul over stacked weights.
"""

from __future__ import annotations

import numpy as np

from compiler.pass_manager import Pass, PassResult, derived_meta
from ir import Graph, Node


def _constant_params(graph: Graph, linear: Node) -> bool:
    return all(p.op == "weight" and graph.weights.get(p.name) is not None
               for p in linear.inputs[1:])


def parallel_linears(graph: Graph, x: Node) -> list[Node]:
    """The linears reading ``x`` (as their input operand) that can merge, in order."""
    found = [u for u in x.users if u.op == "linear" and u.inputs[0] is x
             and _constant_params(graph, u)]
    unique = list(dict.fromkeys(found))
    dtypes = {(u.dtype, u.inputs[1].dtype) for u in unique}
    return unique if len(unique) >= 2 and len(dtypes) == 1 else []


class ParallelLinearToConcatSlice(Pass):
    """linear(x, W1)|linear(x, W2) ==> slice(linear(x, concat(W1, W2)))"""

    name = "merge_parallel_linear"
    rewrite = "linear(x, W1)|linear(x, W2) ==> slice(linear(x, concat(W1, W2)))"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for x in list(graph.nodes):
            group = parallel_linears(graph, x)
            if group:
                self.merge(graph, x, group)
                modified = True
        return PassResult(graph, modified)

    def merge(self, graph: Graph, x: Node, linears: list[Node]) -> None:
        order = {id(n): i for i, n in enumerate(graph.nodes)}
        linears = sorted(linears, key=lambda n: order[id(n)])
        first = linears[0]
        meta = derived_meta(first, self.name)
        weights = [graph.weights[n.inputs[1].name] for n in linears]
        w = graph.add_weight("_".join(n.name for n in linears[:3]) + "_w",
                             np.concatenate(weights, axis=0), before=first, meta=meta)
        operands = [x, w]
        if any(len(n.inputs) > 2 for n in linears):
            biases = [graph.weights[n.inputs[2].name] if len(n.inputs) > 2
                      else np.zeros(n.inputs[1].shape[0], graph.weights[n.inputs[1].name].dtype)
                      for n in linears]
            operands.append(graph.add_weight(w.name[:-2] + "_b", np.concatenate(biases),
                                             before=first, meta=meta))
        merged = graph.call("linear", operands, name="linear", before=first, meta=meta)
        start, anchor, pieces = 0, merged, []
        for n in linears:
            size = n.shape[-1]
            piece = graph.call("slice", [merged], {"dim": -1, "start": start,
                                                   "end": start + size},
                               name=n.name, after=anchor, meta=derived_meta(n, self.name))
            anchor, start = piece, start + size
            graph.replace_all_uses(n, piece)
            pieces.append(piece)
        for n, piece in zip(linears, pieces):
            graph.erase(n)
            graph.rename(piece, n.name)  # readers of %q still read %q


PASS = ParallelLinearToConcatSlice
