"""The dscompile IR: a ``Graph`` of ``Node``s in execution order.

Every node produces exactly one tensor (multi-output torch ops such as ``split``
become several ``slice`` nodes at capture), so a node *is* its value, as in
torch.fx. Three ops are leaves: ``input`` (a graph argument), ``weight`` (a
parameter or buffer, its data in ``Graph.weights``) and ``constant`` (a scalar).

Edges are edited only through ``Graph`` methods, which keep every node's
``users`` list right; passes never assign ``node.inputs`` directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ir.types import TensorType

LEAF_OPS = ("input", "weight", "constant")

_NAME_RE = re.compile(r"[^A-Za-z0-9_]")


def sanitize_name(name: str) -> str:
    """A printable identifier: letters, digits and underscores, not starting with a digit."""
    name = _NAME_RE.sub("_", name) or "v"
    return name if not name[0].isdigit() else "v" + name


@dataclass(eq=False)
class Node:
    """One operation and the tensor it produces.

    ``meta`` holds what is not semantics: ``source`` (the user's ``file:line``),
    ``provenance`` (which passes touched the node), ``group`` (the fused kernel it
    belongs to). Structural equality ignores ``meta``.
    """

    name: str
    op: str
    inputs: tuple[Node, ...]
    attrs: dict[str, Any]
    type: TensorType
    meta: dict[str, Any] = field(default_factory=dict)
    users: list[Node] = field(default_factory=list, repr=False)

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def source(self) -> str | None:
        return self.meta.get("source")

    def describe(self) -> str:
        """``%name (op) at file:line`` for error messages."""
        where = f" at {self.source}" if self.source else ""
        return f"%{self.name} ({self.op}){where}"

    def __repr__(self) -> str:
        return f"Node(%{self.name} = {self.op})"


class Graph:
    """An ordered list of nodes with named inputs, outputs and weight data."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.inputs: list[Node] = []
        self.outputs: list[Node] = []
        self.weights: dict[str, np.ndarray | None] = {}
        self._names: set[str] = set()

    # ----- construction -------------------------------------------------
    def fresh_name(self, hint: str) -> str:
        base = sanitize_name(hint)
        name, i = base, 1
        while name in self._names:
            name = f"{base}_{i}"
            i += 1
        return name

    def add_input(self, name: str, type: TensorType, meta: dict | None = None) -> Node:
        node = self._make(name, "input", (), {}, type, meta)
        self.nodes.insert(len(self.inputs), node)
        self.inputs.append(node)
        return node

    def add_weight(self, name: str, data: np.ndarray | None, type: TensorType | None = None,
                   meta: dict | None = None, before: Node | None = None) -> Node:
        """A constant tensor. ``data`` may be ``None`` for graphs parsed from text."""
        if type is None:
            if data is None:
                raise ValueError("add_weight needs data or a type")
            type = TensorType(data.shape, _numpy_dtype_name(data))
        node = self._make(name, "weight", (), {}, type, meta)
        self._insert(node, before=before, after=None)
        self.weights[node.name] = data
        return node

    def add_constant(self, value: float | int | bool, dtype: str, before: Node | None = None,
                     name: str = "c") -> Node:
        """A scalar constant (shape ``()``), broadcast by the op that reads it."""
        node = self._make(name, "constant", (), {"value": value}, TensorType((), dtype), None)
        self._insert(node, before=before, after=None)
        return node

    def call(self, op: str, inputs: Iterable[Node], attrs: dict | None = None, *,
             name: str | None = None, type: TensorType | None = None, meta: dict | None = None,
             before: Node | None = None, after: Node | None = None) -> Node:
        """Append (or insert ``before``/``after`` a node) a new op node; infers its type."""
        from ir.registry import infer_type  # registry imports graph types only

        inputs = tuple(inputs)
        attrs = canonical_attrs(attrs or {})
        if type is None:
            type = infer_type(op, [i.type for i in inputs], attrs)
        node = self._make(name or op, op, inputs, attrs, type, meta)
        for i in inputs:
            i.users.append(node)
        self._insert(node, before=before, after=after)
        return node

    def _make(self, name, op, inputs, attrs, type, meta) -> Node:
        name = self.fresh_name(name)
        self._names.add(name)
        return Node(name, op, tuple(inputs), dict(attrs), type, dict(meta or {}))

    def _insert(self, node: Node, before: Node | None, after: Node | None) -> None:
        if before is not None:
            self.nodes.insert(self.nodes.index(before), node)
        elif after is not None:
            self.nodes.insert(self.nodes.index(after) + 1, node)
        else:
            self.nodes.append(node)

    # ----- editing ------------------------------------------------------
    def set_inputs(self, node: Node, inputs: Iterable[Node]) -> None:
        for old in node.inputs:
            old.users.remove(node)
        node.inputs = tuple(inputs)
        for new in node.inputs:
            new.users.append(node)

    def replace_all_uses(self, old: Node, new: Node) -> None:
        """Point every user of ``old`` (and the graph outputs) at ``new``."""
        for user in list(old.users):
            self.set_inputs(user, [new if i is old else i for i in user.inputs])
        self.outputs = [new if o is old else o for o in self.outputs]

    def erase(self, node: Node) -> None:
        if node.users or node in self.outputs:
            raise ValueError(f"cannot erase {node.describe()}: it still has users")
        self.set_inputs(node, ())
        self.nodes.remove(node)
        self._names.discard(node.name)
        if node.op == "weight":
            self.weights.pop(node.name, None)
        if node in self.inputs:
            self.inputs.remove(node)

    def move_before(self, node: Node, anchor: Node) -> None:
        self.nodes.remove(node)
        self.nodes.insert(self.nodes.index(anchor), node)

    def rename(self, node: Node, new_name: str) -> None:
        if new_name in self._names:
            raise ValueError(f"name %{new_name} already in use")
        self._names.discard(node.name)
        if node.op == "weight":
            self.weights[new_name] = self.weights.pop(node.name)
        node.name = new_name
        self._names.add(new_name)

    # ----- queries ------------------------------------------------------
    def ops(self) -> Iterator[Node]:
        """Nodes that compute (everything but inputs, weights and constants)."""
        return (n for n in self.nodes if n.op not in LEAF_OPS)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node %{name}")

    def weight_data(self, node: Node) -> np.ndarray:
        data = self.weights.get(node.name)
        if data is None:
            raise ValueError(f"weight {node.describe()} has no data (graph parsed from text?)")
        return data

    def copy(self) -> Graph:
        """A deep copy of the structure; weight arrays are shared (they are never mutated)."""
        new = Graph()
        mapping: dict[Node, Node] = {}
        for n in self.nodes:
            m = Node(n.name, n.op, tuple(mapping[i] for i in n.inputs), dict(n.attrs), n.type,
                     dict(n.meta))
            for i in m.inputs:
                i.users.append(m)
            mapping[n] = m
            new.nodes.append(m)
            new._names.add(m.name)
        new.inputs = [mapping[n] for n in self.inputs]
        new.outputs = [mapping[n] for n in self.outputs]
        new.weights = dict(self.weights)
        return new

    def structurally_equal(self, other: Graph) -> bool:
        return self.signature() == other.signature()

    def signature(self) -> tuple:
        """Everything semantic about the graph, as nested tuples (no weight data, no meta)."""
        nodes = tuple(
            (n.name, n.op, tuple(i.name for i in n.inputs), _freeze(n.attrs), n.type)
            for n in self.nodes
        )
        return (nodes, tuple(n.name for n in self.inputs), tuple(n.name for n in self.outputs))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self.structurally_equal(other)

    __hash__ = None  # mutable

    def __str__(self) -> str:
        from ir.printer import print_graph

        return print_graph(self)

    def __len__(self) -> int:
        return len(self.nodes)


def canonical_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Lists become tuples and numpy scalars Python ones, so attrs compare and print stably."""
    return {k: _canonical(v) for k, v in attrs.items()}


def _canonical(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_canonical(x) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _freeze(attrs: dict) -> tuple:
    return tuple(sorted(attrs.items()))


def _numpy_dtype_name(data: np.ndarray) -> str:
    name = str(data.dtype)
    return "bool" if name == "bool" else name
