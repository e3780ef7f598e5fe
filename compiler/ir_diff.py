"""What changed between two graphs, node by node, for ``dscompile diff``.

Nodes are matched by name (passes keep names of nodes they leave alone); the result
lists removed, added and changed nodes, then a unified diff of the text for context.
"""

from __future__ import annotations

import difflib

from ir import Graph
from ir.printer import format_node


def diff_graphs(a: Graph, b: Graph) -> str:
    """Empty when the graphs are structurally equal."""
    if a == b:
        return ""
    lines_a = {n.name: format_node(n) for n in a.nodes}
    lines_b = {n.name: format_node(n) for n in b.nodes}
    out = [f"nodes: {len(a.nodes)} -> {len(b.nodes)}"]
    removed = [n for n in lines_a if n not in lines_b]
    added = [n for n in lines_b if n not in lines_a]
    changed = [n for n in lines_a if n in lines_b and lines_a[n] != lines_b[n]]
    out += [f"- {lines_a[n]}" for n in removed]
    out += [f"+ {lines_b[n]}" for n in added]
    out += [f"~ {lines_a[n]}\n  {lines_b[n]}" for n in changed]
    out.append(f"summary: {len(removed)} removed, {len(added)} added, {len(changed)} changed")
    out.append("")
    out += difflib.unified_diff(str(a).splitlines(), str(b).splitlines(), "a", "b", lineterm="")
    return "\n".join(out)
