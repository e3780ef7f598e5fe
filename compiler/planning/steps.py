"""Kernels as planning steps: what each kernel reads and which buffer it writes.

A step is one kernel in execution order: a fusion group (``meta["group"]``) or an
ungrouped op. Only the kernel's root is materialized, so group intermediates take no
memory. Leaves (inputs, weights, constants) belong to the caller and are not planned.
An ungrouped ``reshape`` is a *view*: it is not a step, takes no bytes, and its readers
read (and keep alive) its source buffer instead.

Symbolic shapes are planned at given ``sizes`` (one value per symbol, see
``compiler.planning.size_classes``): byte sizes are evaluated there, but whether a kernel
may overwrite an input is decided on the symbolic shapes, so that it holds at every size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import prod
from typing import Any

from compiler.dynamic import eval_dim
from compiler.kernels import kernel_groups
from ir import LEAF_OPS, Graph, Node, get_op, itemsize
from ir.ops import sym_dim

VIEW_OPS = ("reshape",)  # row-major reshapes keep every element's linear index


class PlanInvariantError(AssertionError):
    """A memory-planning invariant failed: a bug in the planner, not in the model."""


@dataclass(frozen=True)
class Step:
    """One kernel: its members (root last), the buffers it reads, the buffer it writes
    (``nbytes``: the root's bytes, at the planned sizes where shapes are symbolic).

    ``reads`` are buffer names (views resolved to their source; leaves left out) in
    first-use order. ``overwritable`` are the reads the kernel could write its output
    over: every member is elementwise, the read has the output's byte size and no
    member broadcasts it, so output element i only ever needs input element i.
    """

    members: tuple[Node, ...]
    reads: tuple[str, ...]
    overwritable: tuple[str, ...]
    nbytes: int

    @property
    def root(self) -> Node:
        return self.members[-1]

    @property
    def name(self) -> str:
        return self.root.name

    def __repr__(self) -> str:
        reads = ", ".join(f"%{r}" for r in self.reads)
        return f"Step(%{self.name} <- [{reads}], {len(self.members)} node(s))"


def is_view(node: Node) -> bool:
    """An ungrouped reshape: it aliases its source instead of taking bytes."""
    return node.op in VIEW_OPS and node.meta.get("group") is None


def buffer_of(node: Node) -> Node | None:
    """The node whose buffer holds ``node``'s bytes; ``None`` for leaves (not planned)."""
    while is_view(node):
        node = node.inputs[0]
    return None if node.op in LEAF_OPS else node


def output_buffers(graph: Graph) -> set[str]:
    """Buffers the program returns to the user (graph outputs, seen through views)."""
    return {b.name for b in map(buffer_of, graph.outputs) if b is not None}


def kernel_steps(graph: Graph, sizes: Mapping[str, int] | None = None) -> list[Step]:
    """The graph's kernels in its node order, views left out (see the module docstring);
    symbolic shapes need ``sizes``."""
    kernels = [members for members in kernel_groups(graph)
               if not (len(members) == 1 and is_view(members[0]))]
    if sizes is None:
        check_static(kernels)
    steps = [_make_step(members, sizes or {}) for members in kernels]
    check_topological(steps)
    return steps


def node_bytes(node: Node, sizes: Mapping[str, int]) -> int:
    """``node``'s bytes, its symbols evaluated at ``sizes``."""
    if node.type.is_static:
        return node.type.nbytes()
    missing = {s.name for d in node.shape for s in sym_dim(d).free_symbols} - set(sizes)
    if missing:
        raise ValueError(f"{node.describe()} has type {node.type}: no size given for "
                         f"{', '.join(sorted(missing))}")
    return prod(eval_dim(d, dict(sizes)) for d in node.shape) * itemsize(node.dtype)


def symbolic_numel(shape: tuple) -> Any:
    """The element count: an int, or an expanded polynomial of the shape's symbols."""
    if all(isinstance(d, int) for d in shape):
        return prod(shape)
    import sympy

    return sympy.expand(prod(sym_dim(d) for d in shape))


def _make_step(members: list[Node], sizes: Mapping[str, int]) -> Step:
    inside = set(members)
    reads: dict[str, None] = {}  # ordered set
    for node in members:
        for operand in node.inputs:
            source = buffer_of(operand) if operand not in inside else None
            if source is not None and source not in inside:
                reads[source.name] = None
    root = members[-1]
    elementwise = all(get_op(n.op).kind == "elementwise" for n in members)
    overwritable = tuple(r for r in reads if elementwise and _reads_whole(members, r, root))
    return Step(tuple(members), tuple(reads), overwritable, node_bytes(root, sizes))


def _reads_whole(members: list[Node], buffer: str, root: Node) -> bool:
    """Every read of ``buffer`` is element-for-element with the root (no broadcast) and
    the buffer has the root's byte size, for every value of the symbols."""
    root_numel = symbolic_numel(root.shape)
    for node in members:
        for operand in node.inputs:
            source = buffer_of(operand)
            if source is None or source.name != buffer:
                continue
            if symbolic_numel(source.shape) * itemsize(source.dtype) != \
                    root_numel * itemsize(root.dtype):
                return False
            if not symbolic_numel(operand.shape) == symbolic_numel(node.shape) == root_numel:
                return False
    return True


# ----- invariant checks ----------------------------------------------------------------


def check_static(kernels: list[list[Node]]) -> None:
    """Planning needs byte sizes: a symbolic dim without ``sizes`` is refused, naming the
    node."""
    for node in (n for members in kernels for n in members):
        if not node.type.is_static:
            raise NotImplementedError(
                f"memory planning needs static shapes or sizes for the symbols; "
                f"{node.describe()} has type {node.type} (plan per size class: "
                f"compiler.planning.size_classes)")


def check_topological(steps: list[Step]) -> None:
    """Every buffer a step reads is written by an earlier step."""
    written: set[str] = set()
    known = {s.name for s in steps}
    for step in steps:
        for r in step.reads:
            if r not in written:
                where = "later" if r in known else "no"
                raise PlanInvariantError(
                    f"kernel {step.root.describe()} reads %{r}, written by {where} kernel")
        written.add(step.name)
