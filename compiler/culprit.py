"""The culprit search behind the numerics guard: which pass, or which kernel, changed the
numbers, and the smallest IR that shows it.

1. Passes: re-optimize with each pass of the pipeline turned off in turn; the first whose
   removal makes the numbers agree is named, with what it changed (the nodes it removed
   and added, as IR) and whether the IR itself already computes other numbers.
2. Kernels: build the final graph with every kernel's result as an output and compare
   each with the reference interpreter on the same IR and inputs. The first kernel that
   differs (all before it agree) is named: its fusion group, PrimFunc and schedule rule.
3. Within that kernel (bisecting the fused group): each member built with only the group
   members it depends on, as one kernel; the first that differs is the smallest fused
   kernel showing it. Built unfused, one op per kernel: an op that differs alone has a
   wrong lowering; if all agree, the fusion is at fault. Built unscheduled: a kernel that
   agrees without our schedule rule was broken by the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ir import Graph, Node

MAX_DIFF_NODES = 12  # a pass that rewrote more sites shows the first ones


@dataclass
class Culprit:
    """What the search found. ``ir`` is the smallest graph that shows the mismatch."""

    pass_name: str | None = None
    kernel: str | None = None  # the PrimFunc name
    group: int | None = None
    ops: list[str] = field(default_factory=list)
    # "ir" (a pass changed what the IR computes), "lowering", "fusion", "schedule",
    # "context" (a kernel right alone, wrong in the program), "capture", "memory plan"
    reason: str = ""
    ir: Graph | None = None
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = "\n".join(self.lines) or "no single pass or kernel could be blamed"
        if self.ir is not None:
            text += f"\nsmallest IR that shows it:\n{self.ir}"
        return text


def find_culprit(model: Any, compiled: Any, trial: tuple, options: Any) -> Culprit:
    """Search passes, then kernels; a search that fails says so and never hides the
    mismatch itself."""
    culprit = Culprit()
    try:
        bisect_passes(model, trial, options, culprit)
    except Exception as e:
        culprit.lines.append(f"(pass bisection failed: {type(e).__name__}: {e})")
    if culprit.reason != "ir":  # the IR computes what the compiled module does: look deeper
        try:
            bisect_kernels(model, compiled, trial, culprit)
        except Exception as e:
            culprit.lines.append(f"(kernel bisection failed: {type(e).__name__}: {e})")
    return culprit


# ----- passes --------------------------------------------------------------------------


def bisect_passes(model: Any, trial: tuple, options: Any, culprit: Culprit) -> None:
    """Re-optimize with one pass off at a time; the first fix names the pass."""
    from backends.tvm.target import resolve_target
    from compiler.api import build_module
    from compiler.capture import capture
    from compiler.guard import find_mismatch
    from compiler.pipelines import build_pipeline, run_passes

    args, kwargs = trial
    graph = capture(model, args, kwargs).graph
    pipeline = build_pipeline(options.opt_level, options.passes)
    target = resolve_target(options.target)
    unbuildable = []
    for skip, suspect in enumerate(pipeline):
        try:
            without, _ = run_passes(graph, pipeline[:skip] + pipeline[skip + 1:])
            candidate = build_module(without, None, target, options)  # as dscompile builds
            agrees = not find_mismatch(model, candidate, args, kwargs, options.dtype)[0]
        except Exception as e:  # a later pass may need this one; try the others
            unbuildable.append(f"{suspect.name} ({type(e).__name__})")
            continue
        if agrees:
            culprit.pass_name = suspect.name
            culprit.lines.append(
                f"culprit pass: {suspect.name} (pass {skip + 1} of {len(pipeline)}): with it "
                f"turned off the numbers agree; work around it with a lower opt_level or "
                f"without the pass")
            _explain_pass(graph, pipeline, skip, trial, culprit)
            return
    names = ", ".join(p.name for p in pipeline) or "none at this opt_level"
    culprit.lines.append(f"no pass to blame: turning off each pass in turn ({names}) did not "
                         f"make the numbers agree")
    if unbuildable:
        culprit.lines.append(f"  (without {', '.join(unbuildable)} the model did not compile)")


def _explain_pass(graph: Graph, pipeline: list, index: int, trial: tuple,
                  culprit: Culprit) -> None:
    """What the pass changed, and whether the IR itself computes other numbers after it
    (a wrong rewrite) or only the compiled module does (IR the backend gets wrong)."""
    from compiler.capture.interpret import run_graph_values
    from compiler.guard import compare
    from compiler.pipelines import run_passes

    before, _ = run_passes(graph, pipeline[:index])
    after, _ = run_passes(before, pipeline[index:index + 1])
    flat = _flat(trial)
    want = run_graph_values(before, flat)
    got = run_graph_values(after, flat)
    bad = compare([got[o] for o in after.outputs], [want[o] for o in before.outputs])
    removed, added = _changed_nodes(before, after)
    if bad:
        culprit.reason = "ir"
        culprit.lines.append(f"  the IR after {pipeline[index].name} already computes other "
                             f"numbers than before it ({bad[0]}): the rewrite is wrong")
    else:
        culprit.lines.append(f"  the IR after {pipeline[index].name} still computes the same "
                             f"numbers: the backend gets the IR it produces wrong")
    if not removed and not added:
        culprit.lines.append("  it changed no node's text, only meta (fusion groups)")
        return
    culprit.lines.append(f"  it removed {len(removed)} and added {len(added)} node(s):")
    culprit.lines += [f"  - {line}" for line in removed[:MAX_DIFF_NODES]]
    culprit.lines += [f"  + {line}" for line in added[:MAX_DIFF_NODES]]
    if max(len(removed), len(added)) > MAX_DIFF_NODES:
        culprit.lines.append("  ... (DSCOMPILE_DUMP_DIR=dir dumps the IR after every pass)")
    if bad:
        old = {_key(n) for n in before.nodes}
        members = [n for n in after.ops() if _key(n) not in old]
        if members:
            culprit.ir = _region(after, members)


def _line(node: Node) -> str:
    from ir.printer import format_node

    return format_node(node).strip()


def _key(node: Node) -> tuple:
    """A node's identity apart from its operands' names: a user only rewired to a
    replacement is not a change of its own."""
    return node.name, node.op, tuple(sorted(node.attrs.items())), node.type


def _changed_nodes(before: Graph, after: Graph) -> tuple[list[str], list[str]]:
    """The lines of the nodes the pass removed (or changed) and added (or changed)."""
    old, new = {_key(n) for n in before.nodes}, {_key(n) for n in after.nodes}
    return ([_line(n) for n in before.nodes if _key(n) not in new],
            [_line(n) for n in after.nodes if _key(n) not in old])


def _region(graph: Graph, members: list[Node]) -> Graph:
    """``members`` as a graph of their own; every member read outside them is an output."""
    from compiler.kernels import kernel_graph

    sub = kernel_graph(members, graph.weights)
    inside = set(members)
    escaping = [m.name for m in members
                if m in graph.outputs or any(u not in inside for u in m.users)]
    sub.outputs = [sub.node(n) for n in escaping] or sub.outputs
    return sub


# ----- kernels -------------------------------------------------------------------------


def bisect_kernels(model: Any, compiled: Any, trial: tuple, culprit: Culprit) -> None:
    """Name the first kernel whose output differs from the interpreter's on the same IR
    (built without a memory plan, every kernel result an output); then bisect its group.
    If every kernel agrees, tell a capture error from a memory-plan error."""
    from compiler.capture.interpret import run_graph_values
    from compiler.kernels import kernel_groups

    graph = compiled.ir.copy()
    kernels = kernel_groups(graph)
    final = list(graph.outputs)
    graph.outputs = [members[-1] for members in kernels]
    flat = _flat(trial, compiled)
    reference = run_graph_values(graph, flat)
    actual = _build(graph, compiled.options)(*flat)
    for members, got in zip(kernels, actual):
        bad = _differs(got, reference[members[-1]], compiled.options)
        if bad is None:
            continue
        info = {k.node_names[-1]: k for k in compiled.kernels}.get(members[-1].name)
        culprit.kernel = info.name if info else None
        culprit.group = members[-1].meta.get("group")
        culprit.ops = [n.op for n in members]
        what = f"fused group {culprit.group}" if culprit.group is not None else "lone op"
        schedule = f", schedule {info.schedule!r}" if info and info.schedule else ""
        culprit.lines.append(
            f"culprit kernel: {info.name if info else '?'} ({what}: "
            f"{'+'.join(culprit.ops)}{schedule}) computing {members[-1].describe()}: max "
            f"error {bad.max_error:.3g} > allowed {bad.allowed:.3g}{bad.note}; every kernel "
            f"before it agrees")
        bisect_group(graph, members, reference, compiled.options, culprit)
        return
    _blame_outside_kernels(model, compiled, trial, [reference[o] for o in final], culprit)


def _blame_outside_kernels(model: Any, compiled: Any, trial: tuple,
                           final: list[torch.Tensor], culprit: Culprit) -> None:
    """Every kernel is right: the IR is wrong (capture), or how the program places values
    in memory is."""
    from compiler.guard import compare, eager_outputs

    culprit.lines.append("every kernel agrees with the interpreter on the same IR")
    bad = compare(final, eager_outputs(model, *trial))
    if bad:
        culprit.reason = "capture"
        culprit.lines.append(f"  but the IR itself computes other numbers than eager ({bad[0]})"
                             f": the capture (compiler/capture) or a pass is wrong")
        return
    plain = _build(compiled.ir, compiled.options)(*_flat(trial, compiled))
    if not compare(plain, final):
        culprit.reason = "memory plan"
        culprit.lines.append("  and built without the memory plan the program agrees: the "
                             "memory plan (compiler/planning, backends/tvm/memory.py) is wrong")


def bisect_group(graph: Graph, members: list[Node], reference: dict[Node, torch.Tensor],
                 options: Any, culprit: Culprit) -> None:
    """Inside one kernel: the smallest fused prefix that differs, then unfused and
    unscheduled builds of it to tell a wrong lowering from a wrong fusion or schedule."""
    smallest = members
    for member in members[:-1]:
        part = _closure(member, members)
        if _kernel_differs(graph, part, reference, options, fused=True):
            smallest = part
            break
    for node in smallest:
        if _kernel_differs(graph, [node], reference, options, fused=False):
            culprit.ops = [node.op]
            culprit.ir = _isolated(graph, [node], fused=False)
            where = "" if node is smallest[-1] else f" (inside the {len(smallest)}-op group)"
            verdict = _verdict(graph, [node], reference, options, False, culprit, "lowering")
            culprit.lines.append(
                f"  {node.op} built alone, as a kernel of its own, differs{where}: its "
                f"lowering (backends/tvm/op_table.py OP_TABLE[{node.op!r}]) {verdict}")
            return
    culprit.ir = _isolated(graph, smallest, fused=True)
    ops = "+".join(n.op for n in smallest)
    if len(smallest) == 1:
        culprit.reason = "context"
        culprit.lines.append(f"  {ops} differs only inside the program (alone, on the same "
                             f"inputs, it agrees)")
        return
    verdict = _verdict(graph, smallest, reference, options, True, culprit, "fusion")
    culprit.lines.append(f"  the fused kernel {ops} differs while each of its ops agrees as a "
                         f"kernel of its own: the fusion {verdict}")


def _verdict(graph: Graph, members: list[Node], reference: dict, options: Any, fused: bool,
             culprit: Culprit, reason: str) -> str:
    """Blame ``reason`` (the lowering, the fusion), or the schedule rule where the same
    kernel built without it agrees."""
    culprit.reason = reason
    if not options.schedule:
        return "is wrong (built without schedule rules)"
    if _kernel_differs(graph, members, reference, options, fused, schedule=False):
        return "is wrong: it differs without our schedule rules too"
    culprit.reason = "schedule"
    return "is right, and our schedule rule breaks it (it agrees with schedule=False)"


def _closure(member: Node, members: list[Node]) -> list[Node]:
    """``member`` and the group members it depends on, in order: a convex group whose
    root is ``member``."""
    inside, need, stack = set(members), {member}, [member]
    while stack:
        for i in stack.pop().inputs:
            if i in inside and i not in need:
                need.add(i)
                stack.append(i)
    return [n for n in members if n in need]


def _isolated(graph: Graph, members: list[Node], fused: bool) -> Graph:
    """``members`` as a program of their own: one kernel (``fused``) or one per op."""
    from compiler.kernels import kernel_graph

    sub = kernel_graph(members, graph.weights)
    group = 0 if fused and len(members) > 1 else None
    for node in sub.ops():
        node.meta = {k: v for k, v in node.meta.items() if k != "group"}
        if group is not None:
            node.meta["group"] = group
    return sub


def _kernel_differs(graph: Graph, members: list[Node], reference: dict, options: Any,
                    fused: bool, schedule: bool | None = None) -> bool:
    from compiler.kernels import kernel_inputs

    sub = _isolated(graph, members, fused)
    program = _build(sub, options, schedule)
    feeds = [reference[i].to(program.torch_device) for i in kernel_inputs(members)
             if i.op not in ("weight", "constant")]
    got = program(*feeds)[0]
    return _differs(got, reference[members[-1]], options) is not None


# ----- helpers -------------------------------------------------------------------------


def _differs(actual: torch.Tensor, expected: torch.Tensor, options: Any) -> Any:
    from compiler.guard import compare

    bad = compare([actual], [expected], getattr(options, "dtype", None))
    return bad[0] if bad else None


def _flat(trial: tuple, compiled: Any = None) -> list[torch.Tensor]:
    from torch.utils import _pytree as pytree

    if compiled is not None:  # checked, on the module's device
        moved = pytree.tree_map_only(torch.Tensor, lambda t: t.to(compiled.device), trial)
        return compiled.check_inputs(*moved)
    return [x for x in pytree.tree_leaves(trial) if isinstance(x, torch.Tensor)]


def _build(graph: Graph, options: Any, schedule: bool | None = None) -> Any:
    """A program built for ``options.target`` that is never cached: the search builds
    graphs nobody will ask for again."""
    from backends.tvm.build import build
    from backends.tvm.target import resolve_target

    return build(graph, resolve_target(options.target),
                 schedule=options.schedule if schedule is None else schedule)
