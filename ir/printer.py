"""Text form of a graph: one line per node, readable and parsed back by ``ir.parser``.

    graph(%x : f32[1,3,8,8]) {
      %w : f32[4,3,3,3] = weight()
      %conv2d : f32[1,4,8,8] = conv2d(%x, %w, padding=[1,1])  # model.py:12
      %relu : f32[1,4,8,8] = relu(%conv2d)
      return (%relu)
    }

Weight data is not part of the text (see ``ir.serialize`` for files that carry it).
The grammar is documented in docs/ir-format.md.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ir.graph import Graph, Node


def format_value(v: Any) -> str:
    if v is None or isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(format_value(x) for x in v) + "]"
    raise TypeError(f"attribute value {v!r} of type {type(v).__name__} cannot be printed")


def format_node(node: Node) -> str:
    args = [f"%{i.name}" for i in node.inputs]
    args += [f"{k}={format_value(v)}" for k, v in node.attrs.items()]
    line = f"%{node.name} : {node.type} = {node.op}({', '.join(args)})"
    if node.source:
        line += f"  # {node.source}"
    return line


def print_graph(graph: Graph) -> str:
    params = ", ".join(f"%{n.name} : {n.type}" for n in graph.inputs)
    lines = [f"graph({params}) {{"]
    lines += ["  " + format_node(n) for n in graph.nodes if n.op != "input"]
    lines.append(f"  return ({', '.join('%' + n.name for n in graph.outputs)})")
    lines.append("}")
    return "\n".join(lines) + "\n"
