"""The IR verifier: structural and type invariants every pass must keep.

Run after each pass in tests and in debug mode (``DSCOMPILE_VERIFY=1``). It
collects every problem before raising, so one run shows all that a pass broke.
"""

from __future__ import annotations

from ir.graph import LEAF_OPS, Graph
from ir.registry import OPS, IRTypeError, infer_type


class IRVerifyError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("IR verification failed:\n  " + "\n  ".join(problems))


def verify(graph: Graph) -> None:
    """Raise ``IRVerifyError`` listing every broken invariant of ``graph``."""
    problems: list[str] = []
    seen: set[int] = set()
    names: set[str] = set()
    for node in graph.nodes:
        where = node.describe()
        if node.name in names:
            problems.append(f"{where}: name defined twice")
        names.add(node.name)
        if node.op not in OPS:
            problems.append(f"{where}: unknown op {node.op!r}")
            seen.add(id(node))
            continue
        for i in node.inputs:
            if id(i) not in seen:
                problems.append(f"{where}: operand %{i.name} is not defined before it")
            if sum(u is node for u in i.users) != sum(x is i for x in node.inputs):
                problems.append(f"{where}: users list of %{i.name} is out of date")
        for u in node.users:
            if not any(x is node for x in u.inputs):
                problems.append(f"{where}: lists %{u.name} as a user, which does not read it")
        if node.op in LEAF_OPS:
            problems += _check_leaf(graph, node)
        else:
            try:
                expected = infer_type(node.op, [i.type for i in node.inputs], node.attrs)
                if expected != node.type:
                    problems.append(f"{where}: recorded type {node.type}, inferred {expected}")
            except IRTypeError as e:
                problems.append(f"{where}: {e}")
        seen.add(id(node))
    inputs = [n for n in graph.nodes if n.op == "input"]
    if inputs != graph.inputs:
        problems.append("graph.inputs does not list exactly the input nodes in order")
    for out in graph.outputs:
        if id(out) not in seen:
            problems.append(f"output %{out.name} is not a node of the graph")
    if not graph.outputs:
        problems.append("graph has no outputs")
    if problems:
        raise IRVerifyError(problems)


def _check_leaf(graph: Graph, node) -> list[str]:
    where = node.describe()
    if node.inputs:
        return [f"{where}: a {node.op} takes no operands"]
    if node.op == "weight":
        if node.name not in graph.weights:
            return [f"{where}: no entry in graph.weights"]
        data = graph.weights[node.name]
        if data is not None and (tuple(data.shape) != node.shape or str(data.dtype) != node.dtype):
            return [f"{where}: data is {data.dtype}{list(data.shape)}, type says {node.type}"]
    if node.op == "constant":
        if node.shape != () or not isinstance(node.attrs.get("value"), (int, float, bool)):
            return [f"{where}: a constant is a scalar with a 'value' attribute"]
    return []
