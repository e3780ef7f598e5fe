"""IR graph -> TVM IRModule: a Relax ``main`` calling one TIR PrimFunc per kernel.

A kernel is a fusion group (``node.meta["group"]``) or a lone op (``compiler.kernels``
decides). Its members' TE computes (``op_table``) are composed inside one ``call_te`` so
the group becomes one PrimFunc. A kernel made only of ``reshape`` becomes a Relax
reshape, which TVM's pipeline turns into a no-copy view. Weights are parameters of
``main`` after the graph inputs, one per (weight, layout) a kernel reads
(``LoweredModule.weights``; ``backends.tvm.weights`` says why they are not constants).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tvm
from tvm import relax, te, tirx

from backends.tvm import fastmath, winograd
from backends.tvm.blocked_layout import LAYOUT as BLOCKED
from backends.tvm.blocked_layout import (
    block_size,
    blocked_roots,
    blocked_shape,
    conv_or_pool,
    to_blocked,
    to_nchw,
    weight_layout,
)
from backends.tvm.op_table import OP_TABLE, OutType, const, conv1x1_flat
from backends.tvm.weights import (
    CONV_LANES,
    CONV_PACKED,
    FLAT,
    KN,
    OI,
    PACKED,
    PANEL,
    flat_shape,
    packed_shape,
)
from compiler.dynamic import tir_dim
from compiler.errors import LoweringError
from compiler.kernels import anchor_op, kernel_groups
from ir import Graph, Node
from ir.registry import get_op

__all__ = ["CONV_PACKED", "KN", "PACKED", "KernelInfo", "LoweredModule", "lower_graph"]


@dataclass
class KernelInfo:
    """One generated kernel: the PrimFunc ``name`` and the IR nodes it computes
    (``node_names[-1]`` is the root it writes)."""

    name: str
    group_id: int | None
    node_names: list[str]
    anchor_op: str
    schedule: str = ""  # the schedule rule that fired, filled in by build
    timings: dict[str, float] = field(default_factory=dict)  # ms per measured candidate
    library: dict | None = None  # a library kernel's spec (backends.tvm.tuning.library)
    layout: str | None = None  # "NCHWc" where it computes blocked (blocked_layout)
    reads_blocked: bool = False  # whether an operand comes blocked


@dataclass
class LoweredModule:
    """``mod``: Relax ``main`` + PrimFuncs. ``outputs[i]`` says where graph output ``i``
    comes from: ``("result", k)`` (the k-th value main returns), ``("input", k)``,
    ``("weight", name)`` or ``("constant", (value, dtype))``. ``weights``: ``main``'s
    parameters after the graph inputs, as (weight name, layout)."""

    mod: tvm.IRModule
    kernels: list[KernelInfo]
    views: list[str] = field(default_factory=list)  # nodes lowered to no-copy reshapes
    outputs: list[tuple[str, Any]] = field(default_factory=list)
    weights: list[tuple[str, str | None]] = field(default_factory=list)


def describe_nodes(nodes: list[Node]) -> str:
    return "\n  ".join(n.describe() for n in nodes)


def tvm_message(error: BaseException, lines: int = 4) -> str:
    """The first meaningful lines of a TVM error (its traceback is noise for users)."""
    text = [ln for ln in str(error).splitlines() if ln.strip() and not ln.startswith("  File")]
    return "\n    ".join(text[:lines])


def check_supported(graph: Graph) -> None:
    """Raise one ``LoweringError`` naming every op without a lowering."""
    missing = [n for n in graph.ops() if n.op not in OP_TABLE]
    if missing:
        raise LoweringError(f"{len(missing)} op(s) have no TVM lowering:\n  "
                            f"{describe_nodes(missing)}")


def lower_graph(graph: Graph, target: Any = None) -> LoweredModule:
    """Lower ``graph`` to an IRModule with one PrimFunc per kernel (unscheduled)."""
    check_supported(graph)
    lowered = _Lowerer(graph, pack_conv=_is_cpu(target)).run()
    if _is_cpu(target):
        for name in {k.name for k in lowered.kernels}:
            lowered.mod[name] = fastmath.vectorizable_isnan(lowered.mod[name])
    return lowered


def _is_cpu(target: Any) -> bool:
    """Whether conv weights are packed for the CPU rule (GPU rules read torch's layout)."""
    return getattr(getattr(target, "kind", None), "name", None) == "llvm"


class _Lowerer:
    def __init__(self, graph: Graph, pack_conv: bool = False):
        self.graph = graph
        self.pack_conv = pack_conv
        self.symbols: dict[str, tirx.Var] = {}
        self.values: dict[Node, relax.Expr] = {}
        self.weight_params: dict[tuple[str, str | None], relax.Var] = {}
        self.kernels: list[KernelInfo] = []
        self.views: list[str] = []
        self.flat: Node | None = None  # the 1x1 conv of the kernel being lowered flat
        self.flat_views: dict[Node, relax.Expr] = {}
        self.blocked: set[Node] = set()  # kernel roots stored blocked (blocked_layout)
        self.computing_blocked = False  # whether the kernel being lowered is one of them
        self.winograd_tile: int | None = None  # its conv's Winograd tile (``winograd``)

    # ----- types ---------------------------------------------------------------------
    def dim(self, d: int | str) -> tirx.PrimExpr:
        """A dim as TIR: names become one ``tirx.Var`` each, expressions of them
        ("batch*seq") TIR arithmetic over those vars."""
        try:
            return tir_dim(d, self.symbols)
        except ValueError as e:
            raise LoweringError(str(e)) from None

    def out_type(self, node: Node) -> OutType:
        shape = flat_shape(node.shape) if self.flat is not None and node.op != "pad" \
            else node.shape
        if self.computing_blocked:
            shape = blocked_shape(tuple(node.shape))
        return OutType(tuple(self.dim(d) for d in shape), node.dtype)

    def tensor_type(self, node: Node) -> relax.TensorType:
        return relax.TensorType([self.dim(d) for d in node.shape], node.dtype)

    # ----- operands ------------------------------------------------------------------
    def weight(self, node: Node, layout: str | None) -> relax.Expr:
        """The parameter of ``main`` that passes weight ``node`` in ``layout``."""
        key = (node.name, layout)
        if key not in self.weight_params:
            shape = [self.dim(d) for d in packed_shape(node.shape, layout)]
            suffix = f"_{layout}" if layout else ""
            self.weight_params[key] = relax.Var(f"w_{node.name}{suffix}",
                                                relax.TensorType(shape, node.dtype))
        return self.weight_params[key]

    def operand(self, node: Node, layout: str | None) -> relax.Expr:
        if node.op == "weight":
            return self.weight(node, layout)
        if layout == FLAT:  # a view of the value with H*W as one dim
            return self.flat_views[node]
        return self.values[node]

    def layout(self, user: Node, position: int) -> str | None:
        operand = user.inputs[position]
        if self.flat is not None:
            if user is self.flat and position == 1:
                return OI
            return FLAT if len(operand.shape) >= 2 else None
        if user.op == "linear" and position == 1 and operand.op == "weight":
            return PACKED if operand.shape[0] % PANEL == 0 else KN
        if self.computing_blocked and user.op == "conv2d" and position == 1:
            if self.winograd_tile:
                return winograd.layout(self.winograd_tile, block_size(operand.shape[0]))
            return weight_layout(operand.shape[0])  # a depthwise conv's too: [C / 16, 1, ..]
        if self.pack_conv and user.op == "conv2d" and position == 1 and operand.op == "weight" \
                and user.attrs.get("groups", 1) == 1 and operand.shape[0] % CONV_LANES == 0:
            return CONV_PACKED
        return None

    # ----- lowering ------------------------------------------------------------------
    def run(self) -> LoweredModule:
        bb = relax.BlockBuilder()
        params = [relax.Var(n.name, self.tensor_type(n)) for n in self.graph.inputs]
        self.values.update(zip(self.graph.inputs, params))
        kernels = kernel_groups(self.graph)
        if self.pack_conv:
            self.blocked = blocked_roots(self.graph, kernels)
        with bb.function("main"):
            with bb.dataflow():
                for members in kernels:
                    self.lower_kernel(bb, members)
                results, outputs = self.collect_outputs()
                out = bb.emit_output(relax.Tuple(results))
            bb.emit_func_output(out, params=params + list(self.weight_params.values()))
        return LoweredModule(bb.get(), self.kernels, self.views, outputs,
                             list(self.weight_params))

    def lower_kernel(self, bb: relax.BlockBuilder, members: list[Node]) -> None:
        root = members[-1]
        self.computing_blocked = root in self.blocked
        self.flat = flat_conv(members) if self.pack_conv and not self.computing_blocked \
            else None
        if all(n.op == "reshape" for n in members):  # a view, no kernel
            source = members[0].inputs[0]
            shape = [self.dim(d) for d in root.shape]
            self.values[root] = bb.emit(relax.op.reshape(self.operand(source, None), shape))
            self.views.append(root.name)
            return
        folded = self.folded_pad(members)
        self.winograd_tile = self.winograd_conv(members, folded)
        keys: list[tuple[Node, str | None]] = []
        inside = set(members)
        for node in members:
            for pos, i in enumerate(node.inputs):
                key = (i, self.layout(node, pos))
                if i not in inside and i.op != "constant" and key not in keys:
                    keys.append(key)

        def compose(*tensors):
            env: dict[tuple[Node, str | None], Any] = dict(zip(keys, tensors))
            for node in members:
                if node is folded:  # the depthwise conv after it pads its input itself
                    env[(node, None)] = env[(node.inputs[0], None)]
                    continue
                args = []
                for pos, i in enumerate(node.inputs):
                    if i.op == "constant":
                        args.append(const(i.attrs["value"], i.dtype))
                    elif i in inside:
                        args.append(env[(i, None)])
                    else:
                        args.append(self.as_read(env[(i, self.layout(node, pos))], i, node))
                attrs = dict(node.attrs)
                if self.computing_blocked and node.op in ("conv2d", "max_pool2d"):
                    attrs["layout"] = BLOCKED
                if len(node.inputs) > 1 and self.layout(node, 1):
                    attrs["weight_layout"] = self.layout(node, 1)
                if self.pack_conv and node.op in ("linear", "matmul", "conv2d", "max_pool2d"):
                    attrs["cpu_tiles"] = True  # to whole register tiles of the CPU rule
                if self.pack_conv and node.op == "softmax":
                    attrs["vector_rows"] = True
                if folded is not None and node.inputs[0] is folded:
                    attrs["prologue_pads"] = tuple(folded.attrs["pads"])
                lowering = conv1x1_flat if node is self.flat else OP_TABLE[node.op]
                if self.flat is not None and node.op == "pad":  # pads [N, C, H, W]
                    args = [unflatten(args[0], node.inputs[0].shape)]
                env[(node, None)] = lowering(args, attrs, self.out_type(node))
            return env[(root, None)]

        hint = kernel_name(members)
        for node, layout in keys:
            if layout == FLAT and node.op != "weight" and node not in self.flat_views:
                shape = [self.dim(d) for d in flat_shape(node.shape)]
                self.flat_views[node] = bb.emit(relax.op.reshape(self.values[node], shape))
        try:
            call = bb.call_te(compose, *[self.operand(n, lay) for n, lay in keys],
                              primfunc_name_hint=hint)
            self.values[root] = bb.emit(call)
            if self.flat is not None and root.op != "pad":  # back to [N, C, H, W]: a view
                shape = [self.dim(d) for d in root.shape]
                self.values[root] = bb.emit(relax.op.reshape(self.values[root], shape))
        except LoweringError:
            raise
        except Exception as e:  # TVM's or our TE code failing on this group
            raise LoweringError(f"cannot lower the kernel of:\n  {describe_nodes(members)}\n"
                                f"  TVM says: {tvm_message(e)}") from None
        self.kernels.append(KernelInfo(
            call.args[0].name_hint, root.meta.get("group"), [n.name for n in members],
            anchor_op(members), layout=BLOCKED if self.computing_blocked else None,
            reads_blocked=any(n in self.blocked for n, _ in keys)))

    def as_read(self, value: Any, source: Node, user: Node) -> Any:
        """An operand from another kernel as ``user`` reads it: a blocked value through
        the NCHW view where the kernel computes in NCHW, an NCHW activation through the
        blocked view where it computes blocked (a conv reads either itself)."""
        stored_blocked = source in self.blocked
        if stored_blocked and not self.computing_blocked:
            return to_nchw(value)
        if self.computing_blocked and not stored_blocked and user.op != "conv2d" \
                and source.op != "constant" and len(source.shape) == 4:
            return to_blocked(value)
        return value

    def folded_pad(self, members: list[Node]) -> Node | None:
        """A kernel's prologue pad (``compiler.passes.fuse``) that its depthwise conv reads
        unpadded, padding each channel plane itself (CPU): the pad computed apart was a
        pass over the whole padded tensor before the conv. A blocked conv, dense or
        depthwise, folds its prologue pad the same way (``blocked_layout``)."""
        if not self.pack_conv or len(members) < 2 or members[0].op != "pad":
            return None
        if self.computing_blocked:  # blocked_layout.computes_blocked checked the pattern
            return members[0]
        pad, conv = members[:2]
        if conv.op != "conv2d" or conv.inputs[0] is not pad or conv.dtype != "float32":
            return None  # e.g. a pad of a 2-D value and an elementwise op after it
        channels = conv.inputs[0].shape[1]
        if conv.attrs.get("groups", 1) != channels or conv.inputs[1].shape[0] != channels:
            return None
        return pad if all(isinstance(d, int) for d in (*pad.shape, *conv.shape)) else None

    def winograd_conv(self, members: list[Node], folded: Node | None) -> int | None:
        """The Winograd output tile of the kernel's conv (``winograd.output_tile``), or
        None: a blocked kernel (``blocked_layout.computes_blocked`` checked its static fp32
        shapes, constant weight and the elementwise ops after the conv, which the output
        transform computes per element) whose conv is dense, 3x3 and stride 1, with
        padding 1 on every side (its own and its folded prologue pad's)."""
        if not self.computing_blocked:
            return None
        conv = conv_or_pool(members)
        if conv.op != "conv2d":
            return None
        attrs = conv.attrs
        left, right, top, bottom = folded.attrs["pads"] if folded is not None else (0, 0, 0, 0)
        ph, pw = attrs.get("padding", (0, 0))
        if tuple(conv.inputs[1].shape[2:]) != (3, 3) or attrs.get("groups", 1) != 1 \
                or tuple(attrs.get("stride", (1, 1))) != (1, 1) \
                or tuple(attrs.get("dilation", (1, 1))) != (1, 1) \
                or (top + ph, bottom + ph, left + pw, right + pw) != (1, 1, 1, 1):
            return None
        batch, out_channels, height, width = conv.shape
        return winograd.output_tile(conv.inputs[1].shape[1], out_channels,
                                    block_size(out_channels), height, width, batch)

    def collect_outputs(self) -> tuple[list[relax.Expr], list[tuple[str, Any]]]:
        results: list[relax.Expr] = []
        outputs: list[tuple[str, Any]] = []
        for node in self.graph.outputs:
            if node.op == "input":
                outputs.append(("input", self.graph.inputs.index(node)))
            elif node.op == "weight":
                outputs.append(("weight", node.name))
            elif node.op == "constant":
                outputs.append(("constant", (node.attrs["value"], node.dtype)))
            else:
                outputs.append(("result", len(results)))
                results.append(self.values[node])
        return results, outputs


FLAT_MIN_PIXELS = 256  # below, the packed conv's tile (columns x channels) does better


def flat_conv(members: list[Node]) -> Node | None:
    """The conv of a kernel to lower as a matmul over H*W (``op_table.conv1x1_flat``), or
    None: a 1x1, stride-1, unpadded, ungrouped fp32 conv with a constant weight, first in
    its kernel, over at least FLAT_MIN_PIXELS pixels in whole vectors, followed only by
    elementwise ops of its shape whose other operands are [.., H, W] or [.., 1, 1] (they
    are viewed flat too), and at the end perhaps a pad (of [N, C, H, W] again)."""
    conv = members[0]
    if conv.op != "conv2d" or any(n.op == "conv2d" for n in members[1:]):
        return None
    x, w = conv.inputs[:2]
    attrs = conv.attrs
    if w.op != "weight" or tuple(w.shape[2:]) != (1, 1) or conv.dtype != "float32" \
            or tuple(attrs.get("stride", (1, 1))) != (1, 1) \
            or tuple(attrs.get("padding", (0, 0))) != (0, 0) \
            or tuple(attrs.get("dilation", (1, 1))) != (1, 1) or attrs.get("groups", 1) != 1:
        return None
    if not all(isinstance(d, int) for d in conv.shape) or x.dtype != "float32":
        return None
    _, _, h, wd = conv.shape
    if h * wd < FLAT_MIN_PIXELS or (h * wd) % 16:
        return None
    inside = set(members)
    padded = len(members) > 1 and members[-1].op == "pad" \
        and members[-1].inputs[0] is members[-2]  # padded for the next conv
    for node in members[1:len(members) - padded]:
        if get_op(node.op).kind != "elementwise" or tuple(node.shape) != tuple(conv.shape):
            return None
        for i in node.inputs:
            if i in inside or i.op == "constant":
                continue
            if len(i.shape) < 2 or tuple(i.shape[-2:]) not in ((h, wd), (1, 1)):
                return None
    return conv


def unflatten(t: te.Tensor, shape: tuple) -> te.Tensor:
    """A flat [N, C, H * W] TE tensor read as [N, C, H, W]."""
    width = shape[-1]
    return te.compute(shape, lambda *i: t(*i[:-2], i[-2] * width + i[-1]), name="T_unflatten")


def kernel_name(members: list[Node]) -> str:
    ops: list[str] = []
    for n in members:
        if n.op not in ops:
            ops.append(n.op)
    return "_".join(ops[:4]) + ("_etc" if len(ops) > 4 else "")
