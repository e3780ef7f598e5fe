"""Dynamic shapes: symbolic dims from the user's ``dynamic=`` spec down to TIR.

A dim of our IR is an ``int`` or a ``str``: a name (``"seq"``) or a polynomial of names
(``"batch*seq"``, ``"seq+1"``) in the canonical spelling of ``ir.ops.canonical_dim``.
This module holds what the stages share about them:

- ``DimSpec`` / ``normalize_dynamic``: ``dynamic={"x": {0: "batch", 1: ("seq", 1, 512)}}``
  (input name -> axis -> name or ``(name, min, max)``) checked and normalized;
- ``SymDim``: a symbolic size while converters run (``x.size(1)``, ``b * t``);
- ``tir_dim``: a dim as a TIR expression over ``tirx.Var`` per name (lowering);
- ``size_class`` / ``symbols_of``: memory planning per size class
  (``compiler.planning.size_classes``); ``concrete_graph``, a graph's static twin.

Memory planning with symbolic sizes is done **per size class**: each symbol's value is
rounded up to a power of two (clipped to its max), and the graph is planned at those
bounds (``plan_memory(graph, sizes=...)``). Every buffer size is a polynomial with
non-negative coefficients in the symbols, hence monotone, so a plan made at a class's
upper bound is valid for every size inside the class (each buffer only shrinks at its
offset; checked per new size, not assumed), and at most log2(max) plans exist per symbol.
Symbolic offsets were the alternative; they need comparisons of polynomials to decide
which buffers may share bytes, which have no answer for all sizes (``a*b`` vs ``4*a``),
so the planner would have to give up reuse exactly where it matters.

The compiled program honours it: its Relax ``main`` takes one more argument,
``R.Shape([arena_bytes, offset_0, ...])``, and allocates the arena and places each
planned output with those symbolic values; ``CompiledModule`` passes the values of the
call's class (planned on first use, then cached). One program serves every class because
what the kernels are compiled for does not depend on the sizes: the kernel order is
fixed, and in-place pairs are decided on the symbolic shapes (see
``compiler.planning.steps``). Without a range, a symbol's classes go on doubling; each
class's arena stays in the VM's memory pool once used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy

from ir import Graph, TensorType
from ir.ops import canonical_dim, sym_dim
from ir.types import Dim

DEFAULT_MAX = 1 << 16  # a symbol without a max is planned and range-checked up to this


@dataclass(frozen=True)
class DimSpec:
    """One symbolic size: its name and the range of values it may take."""

    name: str
    min: int = 1
    max: int | None = None


def normalize_dynamic(dynamic: dict | None) -> dict[str, dict[int, DimSpec]]:
    """``{"x": {0: "batch"}}`` -> ``{"x": {0: DimSpec("batch")}}``; one name has one range."""
    out: dict[str, dict[int, DimSpec]] = {}
    ranges: dict[str, DimSpec] = {}
    for input_name, axes in (dynamic or {}).items():
        if not isinstance(axes, dict):
            raise ValueError(f"dynamic[{input_name!r}] must map axis -> name, got {axes!r}")
        out[input_name] = {}
        for axis, spec in axes.items():
            if isinstance(spec, str):
                spec = DimSpec(spec)
            elif isinstance(spec, (tuple, list)):
                spec = DimSpec(*spec)
            elif not isinstance(spec, DimSpec):
                raise ValueError(f"dynamic[{input_name!r}][{axis}]: a name or (name, min, max),"
                                 f" got {spec!r}")
            if not spec.name.isidentifier():
                raise ValueError(f"symbolic dim name {spec.name!r} is not an identifier")
            seen = ranges.setdefault(spec.name, spec)
            if (seen.min, seen.max) != (spec.min, spec.max):
                raise ValueError(f"symbolic dim {spec.name!r} given two ranges")
            out[input_name][int(axis)] = spec
    return out


def symbol_ranges(dynamic: dict[str, dict[int, DimSpec]]) -> dict[str, DimSpec]:
    return {spec.name: spec for axes in dynamic.values() for spec in axes.values()}


# ----- symbolic values while converting ------------------------------------------------


class SymDim:
    """A size that is only known at run time, as converters see it (``x.size(1)``).
    Arithmetic with ints and other ``SymDim`` stays symbolic; a constant result is an int."""

    __slots__ = ("expr",)

    def __init__(self, expr: Any):
        self.expr = sympy.sympify(expr)

    @staticmethod
    def of(dim: Dim | sympy.Expr) -> SymDim | int:
        expr = sym_dim(dim) if isinstance(dim, (int, str)) else sympy.expand(dim)
        return int(expr) if expr.is_Integer else SymDim(expr)

    @property
    def dim(self) -> Dim:
        """The IR spelling."""
        return canonical_dim(self.expr)

    def _op(self, other: Any, fn: Any) -> SymDim | int:
        if isinstance(other, SymDim):
            other = other.expr
        elif not isinstance(other, int):
            return NotImplemented
        return SymDim.of(fn(self.expr, sympy.Integer(other) if isinstance(other, int)
                            else other))

    def __add__(self, o):
        return self._op(o, lambda a, b: a + b)

    def __radd__(self, o):
        return self._op(o, lambda a, b: b + a)

    def __sub__(self, o):
        return self._op(o, lambda a, b: a - b)

    def __rsub__(self, o):
        return self._op(o, lambda a, b: b - a)

    def __mul__(self, o):
        return self._op(o, lambda a, b: a * b)

    def __rmul__(self, o):
        return self._op(o, lambda a, b: b * a)

    def __floordiv__(self, o):
        def div(a, b):
            q = sympy.cancel(a / b)
            if not q.is_polynomial() or any(c.q != 1 for c in sympy.Poly(q).coeffs()):
                raise ValueError(f"{a} // {b} is not exact")
            return q
        return self._op(o, div)

    def __eq__(self, o: object) -> bool:
        return isinstance(o, SymDim) and sympy.simplify(self.expr - o.expr) == 0

    def __hash__(self) -> int:
        return hash(self.expr)

    def __repr__(self) -> str:
        return f"SymDim({self.dim})"


def dim_of(value: Any) -> Dim:
    """A size argument (int or ``SymDim``) as an IR dim."""
    return value.dim if isinstance(value, SymDim) else int(value)


# ----- lowering -------------------------------------------------------------------------


def tir_dim(dim: Dim, symbols: dict[str, Any]) -> Any:
    """``dim`` as a TIR int64 expression; ``symbols`` maps names to ``tirx.Var`` and is
    filled with new names as they appear."""
    from tvm import tirx

    def build(e: sympy.Expr) -> Any:
        if e.is_Integer:
            return tirx.IntImm("int64", int(e))
        if e.is_Symbol:
            return symbols.setdefault(e.name, tirx.Var(e.name, "int64"))
        if e.is_Add or e.is_Mul:
            parts = [build(a) for a in e.args]
            out = parts[0]
            for p in parts[1:]:
                out = out + p if e.is_Add else out * p
            return out
        if e.is_Pow and e.exp.is_Integer and int(e.exp) > 0:
            base = build(e.base)
            out = base
            for _ in range(int(e.exp) - 1):
                out = out * base
            return out
        raise ValueError(f"symbolic dim {dim!r}: cannot lower {e}")

    if isinstance(dim, int):
        return tirx.IntImm("int64", dim)
    return build(sym_dim(dim))


# ----- memory planning per size class ---------------------------------------------------


def size_class(sizes: dict[str, int], ranges: dict[str, DimSpec]) -> dict[str, int]:
    """Each symbol's value rounded up to a power of two, clipped to its max."""
    out = {}
    for name, value in sizes.items():
        bound = 1 << max(0, int(value) - 1).bit_length()
        spec = ranges.get(name)
        if spec is not None and spec.max is not None:
            bound = min(bound, spec.max)
        out[name] = max(bound, int(value))
    return out


def eval_dim(dim: Dim, sizes: dict[str, int]) -> int:
    if isinstance(dim, int):
        return dim
    expr = sym_dim(dim)
    return int(expr.subs({s: sizes[s.name] for s in expr.free_symbols}))


def concrete_graph(graph: Graph, sizes: dict[str, int]) -> Graph:
    """A copy of ``graph`` with every symbolic dim evaluated at ``sizes`` (types only:
    attrs keep their symbols, which planning does not read)."""
    import copy

    concrete = copy.copy(graph)
    mapping = {}
    for node in graph.nodes:
        twin = copy.copy(node)
        twin.type = TensorType(tuple(eval_dim(d, sizes) for d in node.shape), node.dtype)
        mapping[id(node)] = twin
    for twin in mapping.values():
        twin.inputs = tuple(mapping[id(i)] for i in twin.inputs)
        twin.users = [mapping[id(u)] for u in twin.users]
    concrete.nodes = [mapping[id(n)] for n in graph.nodes]
    concrete.inputs = [mapping[id(n)] for n in graph.inputs]
    concrete.outputs = [mapping[id(n)] for n in graph.outputs]
    return concrete


def symbols_of(graph: Graph, flat_inputs: list[Any]) -> dict[str, int]:
    """The value of each plain symbol of the graph's input types in one call's inputs."""
    sizes: dict[str, int] = {}
    for node, tensor in zip(graph.inputs, flat_inputs):
        for dim, size in zip(node.shape, tensor.shape):
            if isinstance(dim, str) and dim.isidentifier():
                sizes[dim] = int(size)
    return sizes
