"""Read-only views of a graph for analyses: a networkx DiGraph and topological checks."""

from __future__ import annotations

import networkx as nx

from ir.graph import Graph


def to_networkx(graph: Graph) -> nx.DiGraph:
    """One networkx node per IR node (keyed by name) with ``op``, ``type``, ``attrs``;
    an edge per operand, labelled with the operand index."""
    g = nx.DiGraph()
    for n in graph.nodes:
        g.add_node(n.name, op=n.op, type=str(n.type), attrs=dict(n.attrs), meta=dict(n.meta))
    for n in graph.nodes:
        for idx, i in enumerate(n.inputs):
            g.add_edge(i.name, n.name, index=idx)
    return g
