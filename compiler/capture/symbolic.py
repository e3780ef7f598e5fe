"""Symbolic capture: ``torch.export`` with ``dynamic_shapes`` keeps the marked sizes as
SymInts; this module maps torch's symbols (``s27``) to the user's names (``"seq"``), gives
every exported node a type over those names, and converts the size arithmetic of the
graph (``sym_size``, ``operator.mul``...) into ``SymDim`` values for the converters.

The recorded run on the example inputs still happens (it folds input-free values), but
types come from the exported node's ``meta["val"]``: they hold torch's own symbolic
shapes, so ``_checked`` compares our inference with torch's, symbol for symbol.
"""

from __future__ import annotations

import inspect
import operator
from typing import Any

import sympy
import torch
import torch.utils._pytree as pytree

from compiler.capture.context import Unsupported, ir_dtype
from compiler.capture.inputs import Inputs
from compiler.dynamic import DimSpec, SymDim
from ir import TensorType
from ir.ops import canonical_dim
from ir.types import Dim


def widen_examples(inputs: Inputs, dynamic: dict[str, dict[int, DimSpec]]) -> list[Any]:
    """Leaves of the example inputs with every dynamic axis of size 0 or 1 repeated to 2:
    torch specializes sizes 0 and 1, which would make the dim static."""
    leaves = []
    for leaf, name in zip(inputs.leaves, inputs.names):
        axes = dynamic.get(name, {})
        if isinstance(leaf, torch.Tensor):
            for axis in axes:
                if leaf.shape[axis] < 2:
                    reps = [1] * leaf.dim()
                    reps[axis] = 2 if leaf.shape[axis] == 1 else 0
                    leaf = leaf.repeat(*reps) if leaf.shape[axis] == 1 else leaf
        leaves.append(leaf)
    return leaves


def check_spec(inputs: Inputs, dynamic: dict[str, dict[int, DimSpec]]) -> None:
    tensors = {n: x for n, x in zip(inputs.names, inputs.leaves) if isinstance(x, torch.Tensor)}
    for name, axes in dynamic.items():
        if name not in tensors:
            raise ValueError(f"dynamic names input {name!r}; the tensor inputs are "
                             f"{', '.join(tensors) or 'none'}")
        for axis in axes:
            if not -tensors[name].dim() <= axis < tensors[name].dim():
                raise ValueError(f"dynamic[{name!r}]: axis {axis} out of range for a "
                                 f"{tensors[name].dim()}-d input")


def export_dynamic_shapes(model: torch.nn.Module, inputs: Inputs,
                          dynamic: dict[str, dict[int, DimSpec]]) -> dict[str, Any]:
    """The ``dynamic_shapes`` argument of ``torch.export.export``: one ``Dim`` per name
    (shared by every input axis that names it), keyed by ``forward``'s parameter names."""
    dims: dict[str, Any] = {}

    def dim(spec: DimSpec) -> Any:
        if spec.name not in dims:
            kwargs = {"min": spec.min} if spec.min > 1 else {}
            if spec.max is not None:
                kwargs["max"] = spec.max
            dims[spec.name] = torch.export.Dim(spec.name, **kwargs)
        return dims[spec.name]

    by_id = {id(leaf): dynamic.get(name, {}) for leaf, name in zip(inputs.leaves, inputs.names)}

    def leaf_spec(x: Any) -> Any:
        if not isinstance(x, torch.Tensor):
            return None
        axes = by_id.get(id(x), {})
        return {axis % x.dim(): dim(s) for axis, s in axes.items()} or None

    bound = inspect.signature(model.forward).bind(*inputs.args, **inputs.kwargs)
    shapes: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        shapes[name] = pytree.tree_map(leaf_spec, value)
    return shapes


class SymbolMap:
    """torch's symbols -> our names, read off the exported user inputs' shapes."""

    def __init__(self) -> None:
        self.names: dict[sympy.Symbol, sympy.Symbol] = {}

    def bind(self, fake: torch.Tensor, axes: dict[int, DimSpec]) -> None:
        for axis, spec in axes.items():
            size = fake.shape[axis]
            if not isinstance(size, torch.SymInt) or not size.node.expr.is_Symbol:
                raise Unsupported(why=f"(dim {spec.name!r} was specialized to {size} by "
                                      "torch.export: the model fixes that size)")
            self.names[size.node.expr] = sympy.Symbol(spec.name, integer=True, positive=True)

    def expr(self, value: Any) -> sympy.Expr:
        expr = sympy.sympify(value.node.expr if isinstance(value, torch.SymInt) else value)
        unknown = expr.free_symbols - set(self.names)
        if unknown:
            raise Unsupported(why=f"(size {expr} depends on data, not on the input shapes)")
        expr = expr.xreplace(self.names)
        if not expr.is_polynomial():
            raise Unsupported(why=f"(size {expr} is not a polynomial of the dynamic dims)")
        return sympy.expand(expr)

    def dim(self, value: Any) -> Dim:
        return canonical_dim(self.expr(value)) if isinstance(value, torch.SymInt) else \
            int(value)

    def value(self, value: Any) -> Any:
        """A SymInt as a ``SymDim`` (or an int when it is one)."""
        return SymDim.of(self.expr(value)) if isinstance(value, torch.SymInt) else value

    def tensor_type(self, fake: Any) -> TensorType | None:
        if not isinstance(fake, torch.Tensor):
            return None
        try:
            return TensorType(tuple(self.dim(d) for d in fake.shape), ir_dtype(fake.dtype))
        except Unsupported:
            return None

    def types(self, module: torch.fx.GraphModule) -> dict[str, Any]:
        """Each node's symbolic type (a tree like its value), from ``meta["val"]``."""
        return {n.name: pytree.tree_map(self.tensor_type, n.meta["val"])
                for n in module.graph.nodes if "val" in n.meta}


# ----- converters of size arithmetic -------------------------------------------------


def sym_size(ctx: Any, x: Any, dim: int) -> Any:
    """``x.size(dim)`` of an IR value: its dim, symbolic or not."""
    shape = ctx.tensor(x).shape
    return SymDim.of(shape[dim % len(shape)])


def _arith(fn: Any) -> Any:
    def convert(ctx: Any, a: Any, b: Any) -> Any:
        if not all(isinstance(v, (int, SymDim)) for v in (a, b)):
            raise Unsupported(why="(size arithmetic on non-sizes)")
        try:
            return fn(a, b)
        except ValueError as e:
            raise Unsupported(why=f"({e})") from None
    return convert


SIZE_OPS: dict[Any, Any] = {
    torch.ops.aten.sym_size.int: sym_size,
    operator.add: _arith(operator.add), operator.sub: _arith(operator.sub),
    operator.mul: _arith(operator.mul), operator.floordiv: _arith(operator.floordiv),
}

