"""Parse the text IR written by ``ir.printer`` back into a ``Graph``.

Errors are ``IRParseError`` with the line and column of the offending token, so a
hand-edited dump points at its own mistake. Types are taken as written; run
``ir.verify`` afterwards to check them against the op registry.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ir.graph import Graph, Node
from ir.registry import OPS
from ir.types import TensorType, long_dtype

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>\#.*)
  | (?P<ref>%[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\.\d+|\d+)|-inf)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[()\[\]{},:=+])
""", re.VERBOSE)


class IRParseError(ValueError):
    def __init__(self, message: str, line: int, col: int, text: str = ""):
        self.line, self.col = line, col
        where = f"line {line}, column {col}"
        snippet = f"\n    {text.rstrip()}\n    {' ' * (col - 1)}^" if text else ""
        super().__init__(f"{where}: {message}{snippet}")


class _Line:
    """Tokens of one source line with a cursor."""

    def __init__(self, text: str, lineno: int):
        self.text, self.lineno = text, lineno
        self.tokens: list[tuple[str, str, int]] = []
        self.comment: str | None = None
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise IRParseError(f"unexpected character {text[pos]!r}", lineno, pos + 1, text)
            kind = m.lastgroup
            if kind == "comment":
                self.comment = m.group()[1:].strip()
            elif kind != "ws":
                self.tokens.append((kind, m.group(), pos + 1))
            pos = m.end()
        self.i = 0

    def error(self, message: str) -> IRParseError:
        col = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text) + 1
        return IRParseError(message, self.lineno, col, self.text)

    def peek(self) -> tuple[str, str]:
        if self.i < len(self.tokens):
            return self.tokens[self.i][:2]
        return ("end", "")

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        k, v = self.peek()
        if (kind and k != kind) or (value and v != value) or k == "end":
            want = value or kind or "a token"
            raise self.error(f"expected {want!r}, found {v or 'end of line'!r}")
        self.i += 1
        return v

    def accept(self, value: str) -> bool:
        if self.peek()[1] == value:
            self.i += 1
            return True
        return False

    def done(self) -> None:
        if self.i != len(self.tokens):
            raise self.error(f"unexpected {self.peek()[1]!r}")


def _parse_type(ln: _Line) -> TensorType:
    name = ln.take("name")
    try:
        dtype = long_dtype(name)
    except ValueError as e:
        ln.i -= 1
        raise ln.error(str(e)) from None
    ln.take(value="[")
    dims: list = []
    while not ln.accept("]"):
        if dims:
            ln.take(value=",")
        k, v = ln.peek()
        if k == "number":
            dims.append(int(ln.take()))
        elif k == "name":
            dims.append(_parse_symbol(ln))
        else:
            raise ln.error("expected a dimension")
    return TensorType(tuple(dims), dtype)


def _parse_symbol(ln: _Line) -> str:
    parts = [ln.take("name")]
    while ln.accept("+"):
        parts.append(ln.take())
    return "+".join(parts)


def _parse_value(ln: _Line) -> Any:
    k, v = ln.peek()
    if v == "[":
        ln.take()
        items = []
        while not ln.accept("]"):
            if items:
                ln.take(value=",")
            items.append(_parse_value(ln))
        return tuple(items)
    ln.take()
    if k == "string":
        return json.loads(v)
    if k == "number":
        if v == "-inf":
            return float("-inf")
        return float(v) if any(c in v for c in ".eE") else int(v)
    if k == "name":
        consts = {"True": True, "False": False, "None": None, "inf": float("inf"),
                  "nan": float("nan")}
        if v in consts:
            return consts[v]
    ln.i -= 1
    raise ln.error(f"expected an attribute value, found {v!r}")


def parse(text: str) -> Graph:
    """Parse text IR into a ``Graph`` (weights without data)."""
    lines = [(i + 1, s) for i, s in enumerate(text.splitlines()) if s.strip()]
    if not lines:
        raise IRParseError("empty input: expected 'graph(...) {'", 1, 1)
    graph = Graph()
    by_name: dict[str, Node] = {}

    lineno, src = lines[0]
    head = _Line(src, lineno)
    head.take(value="graph")
    head.take(value="(")
    while not head.accept(")"):
        if graph.inputs:
            head.take(value=",")
        name = head.take("ref")[1:]
        head.take(value=":")
        by_name[name] = graph.add_input(name, _parse_type(head))
        if graph.inputs[-1].name != name:
            raise IRParseError(f"duplicate name %{name}", lineno, 1, src)
    head.take(value="{")
    head.done()

    body = lines[1:]
    for idx, (lineno, src) in enumerate(body):
        ln = _Line(src, lineno)
        if ln.peek() == ("punct", "}"):
            raise IRParseError("missing 'return (...)' before '}'", lineno, 1, src)
        if ln.peek() == ("name", "return"):
            ln.take()
            ln.take(value="(")
            while not ln.accept(")"):
                if graph.outputs:
                    ln.take(value=",")
                graph.outputs.append(_lookup(ln, by_name))
            ln.done()
            rest = body[idx + 1:]
            if not rest or rest[0][1].strip() != "}":
                at = rest[0] if rest else (lineno + 1, "")
                raise IRParseError("expected '}' after return", at[0], 1, at[1])
            if len(rest) > 1:
                raise IRParseError("text after the closing '}'", rest[1][0], 1, rest[1][1])
            return graph
        _parse_node(ln, graph, by_name)
    last = body[-1] if body else lines[0]
    raise IRParseError("missing 'return (...)' line", last[0], len(last[1]) + 1, last[1])


def _lookup(ln: _Line, by_name: dict[str, Node]) -> Node:
    ref = ln.take("ref")
    if ref[1:] not in by_name:
        ln.i -= 1
        raise ln.error(f"{ref} is used before it is defined")
    return by_name[ref[1:]]


def _parse_node(ln: _Line, graph: Graph, by_name: dict[str, Node]) -> None:
    name = ln.take("ref")[1:]
    if name in by_name:
        ln.i -= 1
        raise ln.error(f"%{name} is defined twice")
    ln.take(value=":")
    type = _parse_type(ln)
    ln.take(value="=")
    op = ln.take("name")
    if op not in OPS:
        ln.i -= 1
        raise ln.error(f"unknown op {op!r}")
    ln.take(value="(")
    inputs: list[Node] = []
    attrs: dict[str, Any] = {}
    while not ln.accept(")"):
        if inputs or attrs:
            ln.take(value=",")
        if ln.peek()[0] == "ref":
            if attrs:
                raise ln.error("operands must come before attributes")
            inputs.append(_lookup(ln, by_name))
        else:
            key = ln.take("name")
            ln.take(value="=")
            attrs[key] = _parse_value(ln)
    ln.done()
    meta = {"source": ln.comment} if ln.comment else None
    if op == "weight":
        node = graph.add_weight(name, None, type, meta=meta)
    elif op == "constant":
        node = graph.add_constant(attrs.get("value"), type.dtype, name=name)
        node.meta.update(meta or {})
    elif op == "input":
        raise ln.error("inputs are declared in the graph(...) header")
    else:
        node = graph.call(op, inputs, attrs, name=name, type=type, meta=meta)
    if node.name != name:  # fresh_name changed it: only on a clash, which we ruled out
        raise ln.error(f"name %{name} is not a valid identifier")
    by_name[name] = node
