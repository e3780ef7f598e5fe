"""The kernels of a fused graph: each fusion group, and each ungrouped op, is one.

Shared by the guard, the report and the planner's callers so that "what is a kernel"
is decided in one place (the contract is in docs/architecture.md).
"""

from __future__ import annotations

from ir import Graph, Node
from ir.registry import get_op


def kernel_groups(graph: Graph) -> list[list[Node]]:
    """Member nodes of each kernel in execution order; a kernel's root is its last member."""
    by_group: dict[int, list[Node]] = {}
    kernels: list[list[Node]] = []
    for node in graph.ops():
        gid = node.meta.get("group")
        if gid is None:
            kernels.append([node])
        elif gid in by_group:
            by_group[gid].append(node)
        else:
            by_group[gid] = [node]
            kernels.append(by_group[gid])
    order = {n: i for i, n in enumerate(graph.nodes)}
    return sorted(kernels, key=lambda members: order[members[-1]])


def anchor_op(members: list[Node]) -> str:
    """The op a kernel is named after: its anchor/reduction/opaque op, else its first op."""
    for n in members:
        if get_op(n.op).kind in ("anchor", "reduction", "opaque"):
            return n.op
    return members[0].op


def kernel_inputs(members: list[Node]) -> list[Node]:
    """Values a kernel reads from outside itself, in first-use order."""
    inside = set(members)
    seen: list[Node] = []
    for node in members:
        for i in node.inputs:
            if i not in inside and i not in seen:
                seen.append(i)
    return seen


def kernel_graph(members: list[Node], weights: dict | None = None) -> Graph:
    """A kernel as a graph of its own: outside operands become inputs (weights stay
    weights, with their data when ``weights``, the source graph's, is given), the root is
    the output. The smallest program that shows what one kernel computes."""
    sub = Graph()
    mapping: dict[Node, Node] = {}
    for i in kernel_inputs(members):
        if i.op == "weight":
            mapping[i] = sub.add_weight(i.name, (weights or {}).get(i.name), i.type)
        elif i.op == "constant":
            mapping[i] = sub.add_constant(i.attrs["value"], i.dtype, name=i.name)
        else:
            mapping[i] = sub.add_input(i.name, i.type)
    for node in members:
        mapping[node] = sub.call(node.op, [mapping[i] for i in node.inputs], node.attrs,
                                 name=node.name, type=node.type, meta=node.meta)
    sub.outputs = [mapping[members[-1]]]
    return sub
