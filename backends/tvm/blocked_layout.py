"""The blocked channel layout (NCHWc) between CPU conv kernels.

A conv kernel of the CPU rules vectorizes 16 output channels and register-tiles output
columns, so its accumulators are channel-last. Written back to NCHW, every tile is a
transpose (a quarter of the instructions of a 1x1 conv with 64 input channels), and a
residual add reads 16 rows of another NCHW tensor per tile. Stored as [N, C / 16, H, W,
16], the value a tile computes is contiguous: the write-back is whole vectors, a residual
is read as whole vectors, and the next conv broadcasts 16 consecutive input channels of a
pixel from one cache line; a depthwise conv or a max pool loads each tap as one vector
at any stride. Measured kernel by kernel on ResNet-50's shapes, in one process: 1x1 convs
4-18% faster, 3x3 convs 1-7%; MobileNetV2's depthwise convs 1.6-3x. Channel counts that
16 does not divide are blocked in 8s (``block_size``).

The layout is the backend's business: the IR keeps NCHW, and the lowering
(``backends.tvm.lower``) decides which kernels store their value blocked
(``blocked_roots``). A kernel that computes blocked reads an NCHW operand through a view
(``to_blocked``), and a kernel that does not reads a blocked value through the inverse
view (``to_nchw``); the schedule rules inline both, so neither is a copy.
"""

from __future__ import annotations

from tvm import te, tirx

from backends.tvm.weights import CONV_LANES, CONV_PACKED, CONV_PACKED8
from compiler.kernels import anchor_op, kernel_inputs
from ir import Graph, Node
from ir.registry import get_op

BLOCK = CONV_LANES  # channels per block: the conv rule's vector of output channels
HALF_BLOCK = 8  # for channel counts that are not whole blocks of 16 (MobileNetV2's 24)
LAYOUT = "NCHWc"
# kernels that read a blocked value through the NCHW view at no cost worth a copy: each
# reads every input element once (a conv kernel reads its input many times; a depthwise
# conv's padded channel planes would gather lanes 64 bytes apart)
VIEW_READERS = ("adaptive_avg_pool2d", "avg_pool2d", "mean", "sum", "amax")


def block_size(channels: int) -> int | None:
    """Channels per block of a value with ``channels``: 16 (one AVX-512 vector), 8 where
    16 do not divide them (MobileNetV2's 24: without it, every conv before its 24-channel
    stage stayed NCHW), else None (not blocked)."""
    for lanes in (BLOCK, HALF_BLOCK):
        if channels % lanes == 0:
            return lanes
    return None


def weight_layout(out_channels: int) -> str:
    """The packed layout of a blocked conv's weight: its blocks of output channels."""
    return CONV_PACKED if block_size(out_channels) == BLOCK else CONV_PACKED8


def blocked_shape(shape: tuple) -> tuple:
    """[N, C, H, W] as [N, C / b, H, W, b], b = ``block_size(C)``."""
    n, c, h, w = shape
    lanes = block_size(c)
    return (n, c // lanes, h, w, lanes)


def to_blocked(t: te.Tensor) -> te.Tensor:
    """An NCHW tensor read as blocked (inlined by the rules: no copy)."""
    lanes = int(blocked_shape(tuple(t.shape))[-1])
    return te.compute(blocked_shape(tuple(t.shape)),
                      lambda n, c, i, j, k: t[n, c * lanes + k, i, j], name="T_to_blocked")


def to_nchw(t: te.Tensor) -> te.Tensor:
    """A blocked tensor read as NCHW (inlined by the rules: no copy)."""
    n, c, h, w, lanes = t.shape
    return te.compute((n, c * lanes, h, w),
                      lambda b, ch, i, j: t[b, tirx.floordiv(ch, lanes), i, j,
                                            tirx.floormod(ch, lanes)], name="T_to_nchw")


def blocked_roots(graph: Graph, kernels: list[list[Node]]) -> set[Node]:
    """The kernel roots whose value is stored blocked: of the kernels that can compute
    blocked (``computes_blocked``), those whose readers all can too, or read it once
    (``VIEW_READERS``); never a graph output; a max pool or a depthwise conv only over
    a blocked input (``reads_per_tap``). Dropping one kernel can leave a
    producer with a reader that cannot, so the rule is applied until nothing changes."""
    kernel_of = {n: members for members in kernels for n in members}
    readers: dict[Node, list[list[Node]]] = {}
    for members in kernels:
        for i in kernel_inputs(members):
            if i in kernel_of and members not in readers.setdefault(i, []):
                readers[i].append(members)
    blocked = {members[-1]: members for members in kernels if computes_blocked(members)}
    outputs = set(graph.outputs)

    def stays(root: Node, members: list[Node]) -> bool:
        if root in outputs:
            return False
        if reads_per_tap(members) and data_input(members) not in blocked:
            return False
        return all(r[-1] in blocked or anchor_op(r) in VIEW_READERS
                   for r in readers.get(root, []))

    changed = True
    while changed:
        dropped = [root for root, members in blocked.items() if not stays(root, members)]
        for root in dropped:
            del blocked[root]
        changed = bool(dropped)
    return set(blocked)


def computes_blocked(members: list[Node]) -> bool:
    """Whether a kernel can compute its value blocked: a conv2d, dense or depthwise,
    (perhaps after its prologue pad, ``compiler.passes.fuse``) or a max pool, over static
    fp32 shapes with channels in whole blocks (``block_size``), then only elementwise ops
    of its shape whose other operands have that shape too or are scalars (a [C, 1, 1]
    operand would need its own blocked view)."""
    head = conv_or_pool(members)
    if head.dtype != "float32" or not _static_4d(head) or block_size(head.shape[1]) is None:
        return False
    if head.op == "conv2d":
        x, w = head.inputs[:2]
        if head is not members[0] and (x is not members[0] or not _zero_pad(members[0])):
            return False
        if w.op != "weight" or x.dtype != "float32" or not _static_4d(x):
            return False
        if head.attrs.get("groups", 1) not in (1, x.shape[1]) or \
                (head.attrs.get("groups", 1) != 1 and w.shape[0] != x.shape[1]):
            return False  # grouped, or a depthwise channel multiplier
    elif head.op != "max_pool2d" or len(members) > 1:
        return False
    inside = set(members)
    for node in members[members.index(head) + 1:]:
        if get_op(node.op).kind != "elementwise" or tuple(node.shape) != tuple(head.shape):
            return False
        for i in node.inputs:
            if i not in inside and i.op != "constant" and tuple(i.shape) != tuple(head.shape):
                return False
    return True


def reads_per_tap(members: list[Node]) -> bool:
    """Whether a kernel loads its input once per window tap and channel (a max pool, a
    depthwise conv): over NCHW its blocked view would gather 16 lanes a plane apart, so
    it computes blocked only over a blocked input. A dense conv broadcasts one input
    value at a time from either layout."""
    head = conv_or_pool(members)
    return head.op == "max_pool2d" or head.attrs.get("groups", 1) != 1


def data_input(members: list[Node]) -> Node:
    """The activation a blocked kernel's conv or pool reads (before its prologue pad)."""
    return members[0].inputs[0]


def conv_or_pool(members: list[Node]) -> Node:
    """The conv or pool a kernel is about: after its prologue pad where it has one."""
    return members[1] if members[0].op == "pad" and len(members) > 1 else members[0]


def _zero_pad(pad: Node) -> bool:
    """A pad of H and W by zeros (``compiler.passes.fuse.is_prologue_pad``), which the
    conv folds into its own padding."""
    pads = tuple(pad.attrs["pads"])
    return len(pads) == 4 and min(pads) >= 0 and pad.attrs.get("value", 0.0) == 0.0


def _static_4d(node: Node) -> bool:
    return len(node.shape) == 4 and all(isinstance(d, int) for d in node.shape)
