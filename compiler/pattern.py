"""Pattern-matching rewrites: rules as data, tinygrad-style.

A ``Pat`` describes a node: its op (or ops), its operands (sub-patterns), an optional
predicate, and a capture name. A ``RewriteRule`` pairs a pattern with a function that
receives a ``Rewriter`` and the captures as keyword arguments and returns the
replacement node, or ``None`` to decline:

    # x * sigmoid(x) -> silu(x)
    RewriteRule(Pat("mul", Any("x"), Pat("sigmoid", Any("x")), commutative=True),
                lambda rw, x: rw.call("silu", [x]), "x*sigmoid(x) -> silu(x)")

Two captures with the same name must bind the same node. ``PatternRewritePass`` applies
a table of rules until nothing matches; it rewires users with ``replace_all_uses`` and
erases what became dead.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any as AnyType

from compiler.pass_manager import Pass, PassResult, derived_meta
from ir import Graph, Node
from ir.registry import get_op

Predicate = Callable[..., bool]


class Pat:
    """A pattern over one node.

    Parameters
    ----------
    op : str, tuple of str, or None
        The op name(s) the node may have; ``None`` matches any node.
    *operands : Pat
        Patterns for the node's operands, all of them (the arity must match). With none
        given, operands are not looked at.
    name : str, optional
        Capture the node under this name; a name used twice must bind the same node.
    predicate : callable or list of callables, optional
        ``pred(node)`` or ``pred(node, graph)`` returning bool; all must hold.
    commutative : bool
        For a two-operand pattern, also try the operands swapped.
    attrs : dict, optional
        Attribute values the node must have (a callable value is a test on the value).
    """

    def __init__(self, op: str | Sequence[str] | None = None, *operands: Pat,
                 name: str | None = None, predicate: Predicate | Sequence[Predicate] | None = None,
                 commutative: bool = False, attrs: dict[str, AnyType] | None = None) -> None:
        self.ops = None if op is None else ((op,) if isinstance(op, str) else tuple(op))
        for o in operands:
            if not isinstance(o, Pat):
                raise TypeError(f"operand pattern {o!r} is not a Pat (use Any('name'))")
        self.operands = operands
        self.name = name
        preds = [] if predicate is None else \
            (list(predicate) if isinstance(predicate, (list, tuple)) else [predicate])
        self.predicates = [_two_arg(p) for p in preds]
        if commutative and len(operands) != 2:
            raise ValueError("commutative patterns need exactly two operand patterns")
        self.commutative = commutative
        self.attrs = dict(attrs or {})

    @staticmethod
    def any(name: str | None = None, predicate: Predicate | None = None) -> Pat:
        """A wildcard: any node, optionally captured and tested."""
        return Pat(None, name=name, predicate=predicate)

    def match(self, node: Node, graph: Graph | None = None) -> dict[str, Node] | None:
        """The captures if ``node`` matches, else ``None``."""
        return self._match(node, graph, {})

    def _match(self, node: Node, graph, bound: dict[str, Node]) -> dict[str, Node] | None:
        if self.ops is not None and node.op not in self.ops:
            return None
        if self.name is not None and self.name in bound and bound[self.name] is not node:
            return None
        for key, want in self.attrs.items():
            have = node.attrs.get(key, _default_attr(node.op, key))
            if not (want(have) if callable(want) else have == want):
                return None
        if not all(p(node, graph) for p in self.predicates):
            return None
        if self.name is not None:
            bound = {**bound, self.name: node}
        if not self.operands:
            return bound
        if len(node.inputs) != len(self.operands):
            return None
        orders = [self.operands]
        if self.commutative:
            orders.append(self.operands[::-1])
        for pats in orders:
            result = bound
            for pat, operand in zip(pats, node.inputs):
                result = pat._match(operand, graph, result)
                if result is None:
                    break
            if result is not None:
                return result
        return None

    def __repr__(self) -> str:
        head = "any" if self.ops is None else "|".join(self.ops)
        args = ", ".join(map(repr, self.operands))
        cap = f" as {self.name}" if self.name else ""
        return f"{head}({args}){cap}" if self.operands else f"{head}{cap}"


def Any(name: str | None = None, predicate: Predicate | None = None) -> Pat:  # noqa: N802
    """A wildcard pattern (``Pat.any``)."""
    return Pat.any(name, predicate)


def _two_arg(pred: Predicate) -> Callable[[Node, Graph | None], bool]:
    """Let predicates take ``(node)`` or ``(node, graph)``."""
    try:
        params = [p for p in inspect.signature(pred).parameters.values()
                  if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                         p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = [None]
    if len(params) >= 2:
        return pred
    return lambda node, graph: pred(node)


def _default_attr(op: str, key: str) -> AnyType:
    try:
        return get_op(op).optional_attrs.get(key)
    except ValueError:
        return None


# ----- predicates ---------------------------------------------------------------------


def is_weight(node: Node, graph: Graph | None = None) -> bool:
    """A ``weight`` node (its data known at compile time when the graph has it)."""
    return node.op == "weight"


def is_constant(value: float | int | bool | None = None) -> Callable[[Node, Graph | None], bool]:
    """A scalar ``constant`` node, or a one-element weight, equal to ``value`` if given."""

    def pred(node: Node, graph: Graph | None = None) -> bool:
        if node.op == "constant":
            have = node.attrs["value"]
        elif node.op == "weight" and graph is not None and node.type.is_static \
                and node.type.numel() == 1 and graph.weights.get(node.name) is not None:
            have = graph.weights[node.name].reshape(()).item()
        else:
            return False
        return value is None or have == value

    return pred


def has_single_user(node: Node, graph: Graph | None = None) -> bool:
    """Exactly one user, and not a graph output (its value is used in one place only)."""
    if len(node.users) != 1:
        return False
    return graph is None or node not in graph.outputs


def has_dtype(*dtypes: str) -> Callable[[Node], bool]:
    return lambda node: node.dtype in dtypes


def op_kind(*kinds: str) -> Callable[[Node], bool]:
    """The op's registry kind is one of ``kinds`` (elementwise, injective, ...)."""
    return lambda node: get_op(node.op).kind in kinds


# ----- rules and the rewrite pass -----------------------------------------------------


class RewriteRule:
    """A pattern and its rewrite. ``name`` states the algebra (``"x*1 -> x"``)."""

    def __init__(self, pattern: Pat, fn: Callable[..., Node | None], name: str) -> None:
        self.pattern, self.fn, self.name = pattern, fn, name

    def __repr__(self) -> str:
        return f"RewriteRule({self.name!r})"


class RewriteError(ValueError):
    pass


class Rewriter:
    """What a rule function gets as its first argument: builds nodes in the right place
    (just before the matched node) with the matched node's source and provenance."""

    def __init__(self, graph: Graph, root: Node, pass_name: str) -> None:
        self.graph, self.root, self.pass_name = graph, root, pass_name
        self.created: list[Node] = []

    def call(self, op: str, inputs: Iterable[Node], attrs: dict | None = None,
             name: str | None = None) -> Node:
        node = self.graph.call(op, inputs, attrs, name=name or op, before=self.root,
                               meta=self._meta())
        self.created.append(node)
        return node

    def weight(self, data, name: str = "w") -> Node:
        """A new weight holding ``data`` (a fresh array; never edit existing ones)."""
        node = self.graph.add_weight(name, data, before=self.root, meta=self._meta())
        self.created.append(node)
        return node

    def constant(self, value: float | int | bool, dtype: str) -> Node:
        node = self.graph.add_constant(value, dtype, before=self.root)
        node.meta.update(self._meta())
        self.created.append(node)
        return node

    def _meta(self) -> dict:
        return derived_meta(self.root, self.pass_name)


class PatternRewritePass(Pass):
    """Apply ``rules`` to every op node, in order, until none fires (a fixpoint).

    The first rule whose pattern matches and whose function returns a node wins; the
    matched node's users (and graph outputs) are pointed at the replacement, and nodes
    left without users are erased (graph inputs are kept).
    """

    def __init__(self, rules: Sequence[RewriteRule], name: str = "pattern_rewrite",
                 max_sweeps: int = 100) -> None:
        super().__init__(name)
        self.rules = list(rules)
        self.max_sweeps = max_sweeps
        self.fired: dict[str, int] = {}

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for _ in range(self.max_sweeps):
            if not self.sweep(graph):
                return PassResult(graph, modified)
            modified = True
        raise RewriteError(f"{self.name}: no fixpoint after {self.max_sweeps} sweeps "
                           f"(rules keep rewriting each other: {self.fired})")

    def sweep(self, graph: Graph) -> bool:
        changed = False
        erased: set[int] = set()
        for node in list(graph.ops()):
            if id(node) in erased:
                continue
            found = self.rewrite_one(graph, node)
            if found is None:
                continue
            new, created = found
            changed = True
            graph.replace_all_uses(node, new)
            erased |= erase_dead(graph, [node, *created[::-1]])
            if any(new is c for c in created) and id(node) in erased \
                    and node.name not in {n.name for n in graph.nodes}:
                graph.rename(new, node.name)  # dumps and diffs keep the name readers know
        return changed

    def rewrite_one(self, graph: Graph, node: Node) -> tuple[Node, list[Node]] | None:
        """The first rule's replacement for ``node`` and the nodes it built, if any."""
        for rule in self.rules:
            captures = rule.pattern.match(node, graph)
            if captures is None:
                continue
            rw = Rewriter(graph, node, self.name)
            new = rule.fn(rw, **captures)
            if new is None or new is node:
                erase_dead(graph, rw.created[::-1])
                continue
            if new.type != node.type:
                raise RewriteError(f"rule {rule.name!r} replaced {node.describe()} of type "
                                   f"{node.type} by %{new.name} of type {new.type}")
            self.fired[rule.name] = self.fired.get(rule.name, 0) + 1
            return new, rw.created
        return None


def erase_dead(graph: Graph, nodes: Iterable[Node]) -> set[int]:
    """Erase ``nodes`` that have no users and are not outputs, then their operands that
    became dead in turn (never graph inputs). Returns the ids of the erased nodes."""
    erased: set[int] = set()
    work = list(nodes)
    outputs = {id(o) for o in graph.outputs}
    while work:
        node = work.pop()
        if id(node) in erased or node.users or id(node) in outputs or node.op == "input":
            continue
        operands = list(node.inputs)
        graph.erase(node)
        erased.add(id(node))
        work.extend(operands)
    return erased
