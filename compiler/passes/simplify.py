"""Algebraic simplification: a table of local rewrites, one algebra line per rule.

Identities fire only when the result keeps the matched node's type exactly (``x + 0``
with a broadcasting or dtype-promoting ``0`` is not ``x``). ``x * 0 -> 0`` is absent on
purpose: it is wrong for inf and nan.
"""

from __future__ import annotations

from compiler.pattern import Any, Pat, PatternRewritePass, RewriteRule, is_constant
from ir import Node


def _same(root: Node, x: Node) -> Node | None:
    return x if x.type == root.type else None


def _identity(rw, root: Node, x: Node, **_) -> Node | None:
    return _same(root, x)


def _reshape_reshape(rw, root: Node, x: Node, **_) -> Node:
    return rw.call("reshape", [x], {"shape": root.attrs["shape"]}, name=root.name)


def _reshape_noop(rw, root: Node, x: Node) -> Node | None:
    return _same(root, x)


def _permute_permute(rw, root: Node, inner: Node, x: Node) -> Node:
    p, q = inner.attrs["dims"], root.attrs["dims"]
    return rw.call("permute", [x], {"dims": tuple(p[i] for i in q)}, name=root.name)


def _permute_identity(rw, root: Node, x: Node) -> Node | None:
    return x if tuple(root.attrs["dims"]) == tuple(range(x.type.rank)) else None


def _slice_whole(rw, root: Node, x: Node) -> Node | None:
    size = x.shape[root.attrs["dim"]]
    start, end, step = root.attrs["start"], root.attrs["end"], root.attrs.get("step", 1)
    if step != 1:
        return None
    if not isinstance(size, int) or not isinstance(end, int):  # symbolic: x[:, :seq]
        return x if start == 0 and end == size else None
    return x if slice(start, end).indices(size)[:2] == (0, size) else None


def _keep_inner(rw, root: Node, inner: Node) -> Node:
    return inner


x = Any("x")

RULES = [
    # x + 0 -> x
    RewriteRule(Pat("add", x, Any("c", is_constant(0)), name="root", commutative=True),
                _identity, "x+0 -> x"),
    # x - 0 -> x
    RewriteRule(Pat("sub", x, Any("c", is_constant(0)), name="root"), _identity, "x-0 -> x"),
    # x * 1 -> x
    RewriteRule(Pat("mul", x, Any("c", is_constant(1)), name="root", commutative=True),
                _identity, "x*1 -> x"),
    # x / 1 -> x
    RewriteRule(Pat("div", x, Any("c", is_constant(1)), name="root"), _identity, "x/1 -> x"),
    # x ** 1 -> x
    RewriteRule(Pat("pow", x, Any("c", is_constant(1)), name="root"), _identity, "x**1 -> x"),
    # -(-x) -> x
    RewriteRule(Pat("neg", Pat("neg", x), name="root"), _identity, "-(-x) -> x"),
    # relu(relu(x)) -> relu(x)
    RewriteRule(Pat("relu", Pat("relu", name="inner"), name="root"), _keep_inner,
                "relu(relu(x)) -> relu(x)"),
    # cast(x, dtype of x) -> x
    RewriteRule(Pat("cast", x, name="root"), _identity, "cast(x: T, T) -> x"),
    # reshape(x, shape of x) -> x
    RewriteRule(Pat("reshape", x, name="root"), _reshape_noop, "reshape(x, x.shape) -> x"),
    # reshape(reshape(x, s1), s2) -> reshape(x, s2)
    RewriteRule(Pat("reshape", Pat("reshape", x), name="root"), _reshape_reshape,
                "reshape(reshape(x, s1), s2) -> reshape(x, s2)"),
    # permute(x, identity) -> x
    RewriteRule(Pat("permute", x, name="root"), _permute_identity, "permute(x, 0..n-1) -> x"),
    # permute(permute(x, p), q) -> permute(x, [p[i] for i in q])
    RewriteRule(Pat("permute", Pat("permute", x, name="inner"), name="root"), _permute_permute,
                "permute(permute(x, p), q) -> permute(x, p[q])"),
    # expand(x, shape of x) -> x
    RewriteRule(Pat("expand", x, name="root"), _identity, "expand(x, x.shape) -> x"),
    # x[a:b] over the whole axis -> x
    RewriteRule(Pat("slice", x, name="root"), _slice_whole, "x[0:n] along an axis of n -> x"),
    # concat([x]) -> x
    RewriteRule(Pat("concat", x, name="root"), _identity, "concat([x]) -> x"),
]


class Simplify(PatternRewritePass):
    name = "simplify"

    def __init__(self) -> None:
        super().__init__(RULES, name="simplify")


PASS = Simplify
