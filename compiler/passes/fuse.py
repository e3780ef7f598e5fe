"""Fusion-group formation by op kind (TVM FuseOps-style); sets ``node.meta["group"]``.

The contract (docs/architecture.md) this pass establishes and ``check_partition`` asserts:
a group is convex, its only value used outside it (or returned) is its root, the last
member in order; it holds at most one ``anchor``/``reduction`` op, placed first or after a
prologue pad (``is_prologue_pad``); the other members are ``elementwise``/``injective``
and, when there is an anchor, form its epilogue (each reads the anchor or a member that
does). Operands from outside (weights, a
residual, a bias) are kernel parameters.

Greedy, in execution order: every anchor (conv2d, linear, matmul), reduction,
elementwise and injective op not yet in a group starts one and absorbs the chain of
consumers after it while the current root has a single user that is
  - elementwise with the root's shape (its other operands may come from outside), or
  - injective with one operand (reshape, permute, slice, ...).
Since each absorbed root had exactly one user, no member but the last is seen outside:
the group is convex by construction. A layout chain such as slice -> reshape -> permute
(attention heads) is one copy kernel. One injective producer is fused *before* an anchor:
a zero ``pad`` of H and W read only by a conv2d (TF-style "same" padding, as in
MobileNetV2) starts the conv's group, its prologue, instead of ending its producer's:
the conv pads inside its kernel (a CPU depthwise conv one channel plane at a time, in
cache) and the producer writes its value unpadded, without a pass of its own. Opaque ops
stay ungrouped, and a lone ``reshape`` stays ungrouped so the backend can make it a
no-copy view.

A chain also stops where inlining it would copy the head's expression too often: each
fused op's expression repeats its operand's (a NaN-keeping relu reads it twice, the
vectorizable exp 29 times), so a chain's expression grows with the product of those
counts. Past ``MAX_EXPRESSION_COPIES`` (exp of a sigmoid, 841 copies) TVM's passes take
minutes or never finish; the next op starts a kernel of its own instead.
"""

from __future__ import annotations

from compiler.pass_manager import Pass, PassResult
from compiler.pattern import has_single_user
from ir import LEAF_OPS, Graph, Node
from ir.registry import get_op

STARTS = ("anchor", "reduction", "elementwise", "injective")
HEADS = ("anchor", "reduction")

# How many times an op's lowering (backends/tvm/op_table.py) reads its operand, where
# more than once; every other op reads each operand once. A test holds the backend to it.
OPERAND_READS = {"relu": 2, "leaky_relu": 3, "clamp": 4, "relu6": 4, "hardsigmoid": 4,
                 "hardswish": 5, "maximum": 3, "minimum": 3, "exp": 29, "sigmoid": 29,
                 "silu": 30, "erf": 23, "tanh": 43, "pow": 4,
                 "gelu": 173}  # its tanh form; the erf form reads 24 times
MAX_EXPRESSION_COPIES = 256


def expression_copies(root: Node, user: Node) -> int:
    """How many copies of ``root``'s expression ``user``'s expression holds when the
    root is inlined into it."""
    return OPERAND_READS.get(user.op, 1) * sum(1 for i in user.inputs if i is root)


def kind(node: Node) -> str:
    return get_op(node.op).kind


def is_prologue_pad(graph: Graph, node: Node) -> bool:
    """A zero pad of the last two dims of a 4-D value whose one user is a conv2d reading it
    as its input: it joins the conv's group, before it."""
    if node.op != "pad" or len(node.inputs[0].shape) != 4 or not has_single_user(node, graph):
        return False
    pads = tuple(node.attrs["pads"])
    user = node.users[0]
    return len(pads) == 4 and min(pads) >= 0 and node.attrs.get("value", 0.0) == 0.0 \
        and user.op == "conv2d" and user.inputs[0] is node and node not in user.inputs[1:]


def can_absorb(graph: Graph, root: Node, user: Node) -> bool:
    """Whether ``user``, the single user of the group root ``root``, may join its group."""
    if "group" in user.meta or is_prologue_pad(graph, user):
        return False
    k = kind(user)
    if k == "elementwise":
        return user.shape == root.shape
    return k == "injective" and len(user.inputs) == 1


class FuseOps(Pass):
    name = "fuse"

    def run(self, graph: Graph) -> PassResult:
        had = {id(n): n.meta.pop("group") for n in graph.nodes if "group" in n.meta}
        next_id = 0
        for node in list(graph.ops()):
            if "group" in node.meta or kind(node) not in STARTS:
                continue
            node.meta["group"] = next_id
            root, copies = node, 1
            if is_prologue_pad(graph, node):  # the conv it pads joins, then its epilogue
                root = node.users[0]
                root.meta["group"] = next_id
            while has_single_user(root, graph) and can_absorb(graph, root, root.users[0]):
                copies *= expression_copies(root, root.users[0])
                if copies > MAX_EXPRESSION_COPIES:
                    break
                root = root.users[0]
                root.meta["group"] = next_id
            if root is node and node.op == "reshape":  # a lone reshape: a view, no kernel
                del node.meta["group"]
                continue
            next_id += 1
        now = {id(n): n.meta["group"] for n in graph.nodes if "group" in n.meta}
        return PassResult(graph, now != had)

    def ensures(self, graph: Graph) -> None:
        check_partition(graph)


PASS = FuseOps


# ----- the contract ---------------------------------------------------------------------


class PartitionError(AssertionError):
    """Fusion groups that break the contract; lists every problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("fusion groups break the contract:\n  " + "\n  ".join(problems))


def groups(graph: Graph) -> dict[int, list[Node]]:
    """Group id -> member nodes in execution order."""
    out: dict[int, list[Node]] = {}
    for node in graph.nodes:
        if "group" in node.meta:
            out.setdefault(node.meta["group"], []).append(node)
    return out


def check_partition(graph: Graph) -> None:
    """Raise ``PartitionError`` unless every group keeps the contract (module docstring)."""
    problems: list[str] = []
    outputs = {id(o) for o in graph.outputs}
    for node in graph.nodes:
        if node.op in LEAF_OPS and "group" in node.meta:
            problems.append(f"{node.describe()}: a {node.op} cannot belong to a group")
        elif "group" in node.meta and not isinstance(node.meta["group"], int):
            problems.append(f"{node.describe()}: group id {node.meta['group']!r} is not an int")
    for gid, members in groups(graph).items():
        problems += _check_group(gid, members, outputs)
    if problems:
        raise PartitionError(problems)


def _check_group(gid: int, members: list[Node], outputs: set[int]) -> list[str]:
    problems = []
    inside = {id(n) for n in members}
    escaping = [n for n in members
                if id(n) in outputs or any(id(u) not in inside for u in n.users)]
    names = ", ".join(f"%{n.name}" for n in escaping)
    if len(escaping) != 1:
        problems.append(f"group {gid}: {len(escaping)} values escape it ({names}); "
                        f"exactly one (its root) may")
    elif escaping[0] is not members[-1]:
        problems.append(f"group {gid}: escaping value {names} is not its last member "
                        f"%{members[-1].name}")
    heads = [n for n in members if kind(n) in HEADS]
    first = 1 if len(members) > 1 and members[0].op == "pad" \
        and members[1].op == "conv2d" and members[1].inputs[0] is members[0] else 0
    if len(heads) > 1:
        problems.append(f"group {gid}: more than one anchor/reduction "
                        f"({', '.join(n.op for n in heads)})")
    elif heads and heads[0] is not members[first]:
        problems.append(f"group {gid}: anchor {heads[0].describe()} is not its first member "
                        f"(or second, after the pad it reads)")
    if len(heads) == 1 and heads[0] is members[first]:
        reached = {id(members[first])}
        for n in members[first + 1:]:  # members are in execution order
            if any(id(i) in reached for i in n.inputs):
                reached.add(id(n))
            else:
                problems.append(f"group {gid}: {n.describe()} does not read the anchor's "
                                f"value, so it is no epilogue of it")
    for n in members:
        if kind(n) not in ("elementwise", "injective", *HEADS):
            problems.append(f"group {gid}: {n.describe()} is {kind(n)}, which cannot be fused")
    if _leaves_and_returns(members, inside):
        problems.append(f"group {gid}: not convex (a path leaves the group and comes back)")
    return problems


def _leaves_and_returns(members: list[Node], inside: set[int]) -> bool:
    """Whether some path goes member -> outside node(s) -> member."""
    work = [u for n in members for u in n.users if id(u) not in inside]
    seen: set[int] = set()
    while work:
        node = work.pop()
        if id(node) in inside:
            return True
        if id(node) in seen:
            continue
        seen.add(id(node))
        work.extend(node.users)
    return False
