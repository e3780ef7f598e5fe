"""Our memory plan in the Relax program: every planned kernel output at its arena offset.

Route: after ``CallTIRRewrite`` each kernel call reads ``alloc = R.builtin.alloc_tensor(
shape)`` then ``kernel(args..., alloc)``. ``ArenaLowering`` rewrites the allocation of
every kernel output the plan placed in the arena into

    arena = R.memory.alloc_storage(R.shape([arena_bytes]), 0, "global", "uint8")
    alloc = R.memory.ensure_zero_offset(R.memory.alloc_tensor(arena, offset, shape, dtype))

with one ``arena`` at the top of ``main``. ``StaticPlanBlockMemory`` only plans
``R.builtin.alloc_tensor``, so it leaves ours alone and still handles what the plan does
not cover (graph outputs are returned, so they keep allocations of their own). The VM's
pooled allocator keeps the arena's block between calls (freed to its pool after the last
use, handed back on the next ``alloc_storage`` of the same size), so the arena is
allocated once per input shape; ``trace_kernel_outputs`` measures it.

Symbolic shapes: ``main`` takes one more argument, ``R.Shape([arena_bytes, o_0, ...])``,
whose values are TIR vars used as the arena size and the offsets; ``SizeClassArena``
computes them per call from the plan of the call's size class (``compiler.planning.
size_classes``).

In place: an elementwise kernel the plan writes over its dying input gets the input's
offset, so its input and output buffers alias. TVM marks PrimFunc params ``noalias``
(LLVM may then move a load after a store to the same address), so in-place PrimFuncs
lose ``tir.noalias``.

CPU only: ``ensure_zero_offset`` turns an offset into a pointer only where the device API
does host pointer arithmetic, and copies otherwise (``vm.builtin.ensure_zero_offset``);
in this TVM only the CPU device API says it does, so GPU programs keep TVM's planner.

``MemoryStats`` is measured on ``main`` right after ``StaticPlanBlockMemory``: the bytes
of every ``alloc_storage`` (our arena plus what TVM still plans) and of every
``R.builtin.alloc_tensor`` left (the returned outputs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import tvm
from tvm import relax, tirx

ALLOC_TENSOR = tvm.ir.Op.get("relax.builtin.alloc_tensor")
ALLOC_STORAGE = tvm.ir.Op.get("relax.memory.alloc_storage")
ARENA = "dscompile_arena"
LAYOUT = "dscompile_memory"  # the R.Shape parameter of a size-class program


@dataclass
class MemoryStats:
    """What the compiled program allocates, read from its final Relax.

    ``route``: ``"arena"`` (our offsets), ``"size-class arena"`` (our offsets, per size
    class at run time) or ``"tvm"`` (TVM's StaticPlanBlockMemory alone; ``reason`` says
    why). ``allocated_bytes``: all ``alloc_storage`` bytes (the intermediates), ``None``
    where a size is symbolic. ``planned_bytes`` etc.: our plan's numbers.
    """

    route: str = "tvm"
    reason: str = ""
    planned_bytes: int | None = None
    naive_bytes: int | None = None
    lower_bound_bytes: int | None = None
    allocated_bytes: int | None = None
    arena_storage_bytes: int | None = 0
    tvm_storage_bytes: int | None = 0  # storages TVM's planner made next to our arena
    output_bytes: int | None = 0  # R.builtin.alloc_tensor left: returned outputs
    # the largest kernel's buffers in TVM's workspace pool (stack_buffers.workspace_bytes)
    scratch_bytes: int | None = 0
    inplace_kernels: int = 0
    buffers: list[str] = field(default_factory=list)  # a size-class program's offset order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        head = f"memory route: {self.route}" + (f" ({self.reason})" if self.reason else "")
        if self.planned_bytes is not None:
            head += (f"\nplanned arena {size_text(self.planned_bytes)} (lower bound "
                     f"{size_text(self.lower_bound_bytes)}, naive "
                     f"{size_text(self.naive_bytes)}), {self.inplace_kernels} kernel(s) "
                     f"in place")
        elif self.route == "size-class arena":
            head += "\nplanned arena: per size class, at run time"
        return (f"{head}\nallocated by the program: {size_text(self.allocated_bytes)} of "
                f"intermediates (arena {size_text(self.arena_storage_bytes)}, TVM's planner "
                f"{size_text(self.tvm_storage_bytes)}), outputs {size_text(self.output_bytes)}, "
                f"kernel scratch {size_text(self.scratch_bytes)} (TVM's workspace pool)")


def size_text(n: int | None) -> str:
    """``40 B``, ``80.0 KiB``, ``16.3 MiB``; ``symbolic`` for ``None``."""
    if n is None:
        return "symbolic"
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class ArenaLowering:
    """The Relax passes our pipeline runs around ``StaticPlanBlockMemory``: ``place``
    (before it: our offsets, when there is a plan) and ``measure`` (after it: fills
    ``stats``).

    ``plan``: a ``MemoryPlan`` (static shapes: offsets are constants), a
    ``SizeClassPlanner`` (symbolic shapes: offsets are a parameter) or ``None``.
    ``kernels``: the lowered kernels (``KernelInfo``) in the order ``main`` calls them.
    """

    def __init__(self, plan: Any, kernels: list, reason: str = "") -> None:
        self.plan = plan
        self.kernels = list(kernels)
        self.symbolic = hasattr(plan, "layout")
        self.stats = MemoryStats(reason=reason if plan is None else "")
        # the plan whose buffers, in-place pairs and order ``main`` is checked against
        self.reference = plan.reference if self.symbolic else plan
        if plan is not None and not self.symbolic:
            self.stats.planned_bytes = plan.arena_bytes
            self.stats.naive_bytes = plan.naive_bytes
            self.stats.lower_bound_bytes = plan.lower_bound_bytes

    @classmethod
    def for_target(cls, plan: Any, kernels: list, kind: str) -> ArenaLowering:
        """Our arena on CPU; elsewhere TVM's planner (see the module docstring)."""
        if plan is None:
            return cls(None, kernels, "no memory plan given")
        if kind != "cpu":
            return cls(None, kernels, f"arena offsets need host pointer arithmetic, which "
                                      f"TVM's {kind} device API does not declare")
        return cls(plan, kernels)

    def before_static_planning(self) -> list[tvm.transform.Pass]:
        if self.plan is None:
            return []

        @tvm.transform.module_pass(opt_level=0, name="dscompile_place_in_arena")
        def place(mod: tvm.IRModule, _ctx: Any) -> tvm.IRModule:
            return self.place(mod)

        return [place]

    def after_static_planning(self) -> list[tvm.transform.Pass]:
        @tvm.transform.module_pass(opt_level=0, name="dscompile_measure_memory")
        def measure(mod: tvm.IRModule, _ctx: Any) -> tvm.IRModule:
            measure_allocations(mod["main"], self.stats)
            return mod

        return [measure]

    # ----- placing -------------------------------------------------------------------
    def place(self, mod: tvm.IRModule) -> tvm.IRModule:
        """``mod`` with planned outputs in the arena, or unchanged (``stats.reason``)."""
        main = mod["main"]
        outputs, problem = self.kernel_outputs(main)
        if problem:
            self.stats.route, self.stats.reason = "tvm", problem
            return mod
        arena_buffers = [b.name for b in self.reference.buffers
                         if b.offset is not None and b.alias_of is None]
        if not arena_buffers:  # every kernel writes a graph output: nothing to place
            self.stats.route, self.stats.reason = "arena", ""
            return mod
        params = list(main.params)
        if self.symbolic:
            size = tirx.Var("arena_bytes", "int64")
            slots = {name: tirx.Var(f"offset_{i}", "int64")
                     for i, name in enumerate(arena_buffers)}
            params.append(relax.Var(LAYOUT, relax.ShapeType([size, *slots.values()])))
            offset_of = slots
            self.stats.route, self.stats.buffers = "size-class arena", arena_buffers
        else:
            size = self.reference.arena_bytes
            offset_of = {name: self.reference.offset_of(name) for name in arena_buffers}
            self.stats.route = "arena"
        offsets = {alloc: offset_of[root] for alloc, root in outputs.items() if root in offset_of}
        arena_call = relax.op.memory.alloc_storage(relax.ShapeExpr([size]), 0, "global",
                                                   "uint8")
        mod = mod.clone()  # the caller's module (BuiltModule.mod) stays as it was
        mod["main"] = _rewrite(main, params, arena_call, offsets)
        for name in self.inplace_kernels(outputs):
            mod[name] = mod[name].with_attr("tir.noalias", False)
        self.stats.reason = ""
        self.stats.inplace_kernels = sum(b.inplace_of is not None
                                         for b in self.reference.buffers)
        return mod

    def kernel_outputs(self, main: relax.Function) -> tuple[dict[relax.Var, str], str]:
        """``{alloc var: root name}`` for each call of one of our kernels, matched to
        ``self.kernels`` in order; or a reason why the plan cannot be applied."""
        outputs: dict[relax.Var, str] = {}
        pending = iter(self.kernels)
        kernel = next(pending, None)
        for gvar, out in _kernel_calls(main):  # other PrimFuncs (a reshape copy) are TVM's
            if kernel is not None and gvar.name_hint == kernel.name:
                outputs[out] = kernel.node_names[-1]
                kernel = next(pending, None)
        if kernel is not None:
            return {}, f"kernel {kernel.name} (%{kernel.node_names[-1]}) not found in main"
        lowered = set(outputs.values())
        order = [s for s in self.reference.kernel_order if s in lowered]
        if order != list(outputs.values()):
            return {}, "main calls the kernels in an order other than the plan's"
        for buffer in self.reference.buffers:
            if buffer.offset is not None and buffer.alias_of is None \
                    and buffer.name not in lowered:
                return {}, f"planned %{buffer.name} is not a kernel output in main"
        return outputs, ""

    def inplace_kernels(self, outputs: dict[relax.Var, str]) -> set[str]:
        """PrimFuncs called with an output over one of their inputs."""
        inplace = {b.name for b in self.reference.buffers if b.inplace_of is not None}
        lowered = set(outputs.values())
        return {k.name for k in self.kernels
                if k.node_names[-1] in inplace and k.node_names[-1] in lowered}


def _bindings(func: relax.Function) -> Iterator[relax.Binding]:
    for block in func.body.blocks:
        yield from block.bindings


def _kernel_calls(main: relax.Function) -> Iterator[tuple[tvm.ir.GlobalVar, relax.Expr]]:
    """``(PrimFunc, output argument)`` of each PrimFunc call in ``main``, in order."""
    for b in _bindings(main):
        if isinstance(b.value, relax.Call) and isinstance(b.value.op, tvm.ir.GlobalVar):
            yield b.value.op, b.value.args[-1]


def _rewrite(main: relax.Function, params: list[relax.Var], arena_call: relax.Call,
             offsets: dict[relax.Var, Any]) -> relax.Function:
    arena = relax.Var(ARENA, relax.BlockBuilder().normalize(arena_call).ty)
    blocks = []
    for i, block in enumerate(main.body.blocks):
        bindings = [relax.VarBinding(arena, arena_call)] if i == 0 else []
        for b in block.bindings:
            if b.var in offsets and isinstance(b.value, relax.Call) \
                    and b.value.op.same_as(ALLOC_TENSOR):
                shape, dtype = b.value.args[0], b.value.args[1]
                offset = relax.prim_value(offsets[b.var])
                raw = relax.Var(f"{b.var.name}_at", b.var.ty)
                bindings.append(relax.VarBinding(
                    raw, relax.op.memory.alloc_tensor(arena, offset, shape, dtype)))
                b = relax.VarBinding(b.var, relax.op.memory.ensure_zero_offset(raw))
            bindings.append(b)
        blocks.append(relax.BindingBlock(bindings))
    body = relax.SeqExpr(blocks, main.body.body)
    return relax.Function(params, body, main.ret_ty, main.is_pure, main.attrs, main.span)


# ----- measuring ----------------------------------------------------------------------


def measure_allocations(main: relax.Function, stats: MemoryStats) -> MemoryStats:
    """Fill ``stats`` from ``main`` as ``StaticPlanBlockMemory`` left it."""
    arena: int | None = 0
    others: list[int | None] = []
    outputs: list[int | None] = []
    for b in _bindings(main):
        if not isinstance(b.value, relax.Call):
            continue
        if b.value.op.same_as(ALLOC_STORAGE):
            size = _static_int(b.value.args[0].values[0])
            if b.var.name == ARENA:
                arena = size
            else:
                others.append(size)
        elif b.value.op.same_as(ALLOC_TENSOR):
            outputs.append(_tensor_bytes(b.value))
    stats.arena_storage_bytes = arena
    stats.tvm_storage_bytes = _sum(others)
    stats.allocated_bytes = _sum([arena, *others])
    stats.output_bytes = _sum(outputs)
    return stats


def _sum(sizes: list[int | None]) -> int | None:
    return None if None in sizes else sum(sizes)


def _static_int(expr: Any) -> int | None:
    return int(expr.value) if isinstance(expr, tirx.IntImm) else None


def _tensor_bytes(call: relax.Call) -> int | None:
    dims = [_static_int(d) for d in call.args[0].values] \
        if isinstance(call.args[0], relax.ShapeExpr) else [None]
    if None in dims:
        return None
    dtype = tvm.runtime.DataType(call.args[1].value)
    count = 1
    for d in dims:
        count *= d
    return count * ((dtype.bits * dtype.lanes + 7) // 8)


# ----- at run time --------------------------------------------------------------------


class SizeClassArena:
    """The extra argument of a size-class program: ``(arena bytes, offset of each arena
    buffer)`` for the call's sizes, from ``planner`` (cached per distinct sizes)."""

    def __init__(self, planner: Any, buffers: list[str]) -> None:
        self.planner = planner
        self.buffers = list(buffers)

    def __call__(self, inputs: list[Any]) -> list[Any]:
        layout = self.planner.layout(self.planner.sizes_of(inputs), self.buffers)
        return [tvm.runtime.ShapeTuple(layout)]


@dataclass
class KernelTrace:
    """Where each planned kernel wrote, seen from inside the VM over several calls."""

    offsets: list[dict[str, int]]  # per call: root name -> output address - arena base
    bases: list[int]  # per call: the arena's address
    planned: dict[str, int]

    @property
    def honours_plan(self) -> bool:
        return all(seen == self.planned for seen in self.offsets)

    @property
    def arena_reused(self) -> bool:
        return len(set(self.bases)) == 1


def trace_kernel_outputs(program: Any, inputs: list[Any], planned: dict[str, int],
                         calls: int = 3) -> KernelTrace:
    """Run ``program`` ``calls`` times on a VM of its own with an instrument that records
    the address of each kernel's output argument; ``planned``: root name -> offset.
    A call's base is the lowest ``address - planned offset``: every output sits at its
    planned offset from one base exactly when ``offsets`` equal ``planned``."""
    import torch

    names = [k.name for k in program.kernels]
    roots = [k.node_names[-1] for k in program.kernels]
    seen: list[tuple[str, int]] = []

    def instrument(_func: Any, name: str, before: bool, _ret: Any, *args: Any) -> int:
        if before and name in names:
            seen.append((name, torch.from_dlpack(args[-1]).data_ptr()))
        return 0

    vm = relax.VirtualMachine(program.executable, program.device)
    vm.set_instrument(instrument)
    main = vm["main"]
    args = program.vm_arguments(inputs)
    offsets, bases = [], []
    for _ in range(calls):
        seen.clear()
        main(*args)
        by_root = dict(zip(roots, (ptr for _, ptr in seen)))
        at = {root: by_root[root] for root in planned}
        base = min((at[r] - planned[r] for r in planned), default=0)
        offsets.append({root: ptr - base for root, ptr in at.items()})
        bases.append(base)
    return KernelTrace(offsets, bases, dict(planned))
