"""Dead code elimination.

Invariant: afterwards every node reaches a graph output, except graph inputs (they are
the signature and stay even when unused). Unused weights and constants go too.
"""

from __future__ import annotations

from compiler.pass_manager import Pass, PassResult
from ir import Graph


def live_nodes(graph: Graph) -> set[int]:
    """Ids of the nodes some graph output depends on."""
    live: set[int] = set()
    work = list(graph.outputs)
    while work:
        node = work.pop()
        if id(node) not in live:
            live.add(id(node))
            work.extend(node.inputs)
    return live


class DeadCodeElimination(Pass):
    name = "dce"

    def run(self, graph: Graph) -> PassResult:
        live = live_nodes(graph)
        dead = [n for n in graph.nodes if id(n) not in live and n.op != "input"]
        for node in reversed(dead):  # users before their operands
            graph.erase(node)
        return PassResult(graph, bool(dead))


PASS = DeadCodeElimination
