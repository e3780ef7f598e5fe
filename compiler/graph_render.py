"""Pictures of a graph for ``dscompile graph`` and of a memory plan for ``dscompile plan``.

The graph is written as Graphviz DOT with each fused group boxed in a cluster; SVG and
PNG come from the ``dot`` program (Debian's graphviz). The HTML view embeds the SVG, and
each node shows its op, type, attributes and source line on hover.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

from compiler.errors import ToolchainError
from compiler.kernels import kernel_groups
from ir import Graph, Node

_COLORS = {"anchor": "#f4b183", "reduction": "#9dc3e6", "elementwise": "#c5e0b4",
           "injective": "#e2e2e2", "opaque": "#ffd966", "leaf": "#ffffff"}


def _label(node: Node) -> str:
    return f"{node.op}\\n{node.type}"


def _tooltip(node: Node) -> str:
    attrs = ", ".join(f"{k}={v}" for k, v in node.attrs.items())
    where = f" @ {node.source}" if node.source else ""
    return html.escape(f"%{node.name} = {node.op}({attrs}) : {node.type}{where}", quote=True)


def to_dot(graph: Graph, weights: bool = False) -> str:
    """DOT text; weights and constants are hidden unless ``weights``."""
    from ir import get_op

    lines = ["digraph dscompile {", '  rankdir=TB; node [shape=box, style="rounded,filled", '
             'fontname="Helvetica", fontsize=10];']

    def show(n: Node) -> bool:
        return weights or n.op not in ("weight", "constant")

    def node_line(n: Node) -> str:
        color = _COLORS[get_op(n.op).kind]
        return (f'  "{n.name}" [label="{_label(n)}", fillcolor="{color}", '
                f'tooltip="{_tooltip(n)}"];')

    grouped = set()
    for members in kernel_groups(graph):
        if len(members) < 2:
            continue
        gid = members[-1].meta.get("group")
        lines.append(f'  subgraph cluster_{gid} {{ label="group {gid}: '
                     f'{"+".join(m.op for m in members)}"; style=dashed; color="#c00000";')
        lines += ["  " + node_line(m) for m in members]
        lines.append("  }")
        grouped.update(members)
    for n in graph.nodes:
        if n not in grouped and show(n):
            lines.append(node_line(n))
    for n in graph.nodes:
        for i in n.inputs:
            if show(i):
                lines.append(f'  "{i.name}" -> "{n.name}";')
    for k, out in enumerate(graph.outputs):
        lines.append(f'  "out{k}" [label="output {k}", shape=oval, fillcolor="#ffffff"];')
        lines.append(f'  "{out.name}" -> "out{k}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _run_dot(dot: str, fmt: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise ToolchainError("the 'dot' program is needed for svg/png/html graphs: "
                             "apt-get install graphviz (or use --format dot)")
    return subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True,
                          check=True).stdout


def render(graph: Graph, fmt: str, out: str | Path) -> None:
    dot = to_dot(graph)
    out = Path(out)
    if fmt == "dot":
        out.write_text(dot)
    elif fmt in ("svg", "png"):
        out.write_bytes(_run_dot(dot, fmt))
    elif fmt == "html":
        svg = _run_dot(dot, "svg").decode()
        svg = svg[svg.index("<svg"):]
        rows = "".join(
            f"<tr><td>%{html.escape(n.name)}</td><td>{n.op}</td><td>{n.type}</td>"
            f"<td>{html.escape(str(n.attrs))}</td><td>{n.meta.get('group', '')}</td>"
            f"<td>{html.escape(n.source or '')}</td></tr>" for n in graph.nodes)
        out.write_text(
            "<!doctype html><html><head><meta charset='utf-8'><title>dscompile graph</title>"
            "<style>body{font-family:sans-serif} td{padding:2px 8px;border-bottom:1px solid #ddd}"
            "</style></head><body><h1>dscompile graph</h1><p>Hover a node for its attributes; "
            "dashed boxes are fused kernels.</p>" + svg +
            "<h2>Nodes</h2><table><tr><th>node</th><th>op</th><th>type</th><th>attrs</th>"
            "<th>group</th><th>source</th></tr>" + rows + "</table></body></html>")
    else:
        raise ValueError(f"unknown graph format {fmt!r}: svg, png, dot or html")


def plot_timeline(plan, out: str | Path) -> None:
    """PNG of live bytes per execution step, with the arena size and the lower bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    live = list(plan.timeline())
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    ax.fill_between(range(len(live)), [b / 1024 for b in live], step="mid", alpha=0.6,
                    label="live bytes")
    ax.axhline(plan.arena_bytes / 1024, color="#c00000", linestyle="--", label="arena")
    ax.axhline(plan.lower_bound_bytes / 1024, color="black", linestyle=":",
               label="lower bound")
    ax.set_xlabel("kernel step")
    ax.set_ylabel("KiB")
    ax.set_title(f"memory plan: arena {plan.arena_bytes / 1024:.1f} KiB, naive "
                 f"{plan.naive_bytes / 1024:.1f} KiB")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
