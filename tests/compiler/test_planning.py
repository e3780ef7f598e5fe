"""Memory planning: properties over random graphs, and an arena that really runs.

Each random graph is planned, every plan property is checked from the buffers alone
(not through the planner's own checks), and then the graph is *executed* by a small
numpy interpreter that keeps every planned value in one byte arena at its offset: a
buffer clobbered while still live would change the outputs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import ir
from compiler.dynamic import concrete_graph
from compiler.planning import (
    ALIGNMENT,
    MemoryPlan,
    PlanInvariantError,
    SizeClassPlanner,
    apply_order,
    check_no_overlap,
    kernel_steps,
    memory_aware_order,
    plan_memory,
    reorder,
)
from compiler.planning.plan import Buffer
from compiler.planning.sample_graphs import mlp, mobilenet_chain, resnet_chain
from ir import Graph, Node, TensorType, get_op

F32 = "float32"
N_RANDOM_GRAPHS = 200

# ----- a random DAG generator -------------------------------------------------------


def random_graph(seed: int) -> Graph:
    """Elementwise (unary, binary, broadcasting), linear, concat, reshape and sum nodes on
    rank-2 float32 tensors, reading mostly recent values so that branches form and join.
    Half the graphs get fusion groups."""
    rng = np.random.default_rng(seed)
    g = Graph()
    values = [g.add_input("x", TensorType((int(rng.choice([1, 2, 4, 8])),
                                           int(rng.choice([4, 8, 16]))), F32))]
    for _ in range(int(rng.integers(3, 41))):
        a = values[-1 - int(rng.integers(min(len(values), 4)))]
        values.append(_random_node(g, rng, a, values))
    sinks = [v for v in values[1:] if not v.users]
    extra = [values[int(i)] for i in rng.integers(1, len(values), size=int(rng.integers(0, 2)))]
    g.outputs = list(dict.fromkeys([values[-1], *sinks[: int(rng.integers(0, 3))], *extra]))
    if rng.random() < 0.5:
        _random_groups(g, rng)
    ir.verify(g)
    return g


def _random_node(g: Graph, rng: np.random.Generator, a: Node, values: list[Node]) -> Node:
    kind = rng.choice(["unary", "binary", "linear", "concat", "reshape", "sum"])
    rows, cols = a.shape
    if kind == "unary":
        return g.call(str(rng.choice(["relu", "sigmoid", "neg"])), [a])
    if kind == "binary":
        same = [v for v in values if v.shape == a.shape]
        rows_like = [v for v in values if v.shape == (1, cols)]
        pool = same + rows_like + [g.add_weight("bias", rng.standard_normal(cols, np.float32))]
        b = pool[int(rng.integers(len(pool)))]
        return g.call(str(rng.choice(["add", "mul"])), [a, b] if rng.random() < 0.5 else [b, a])
    if kind == "linear":
        w = rng.standard_normal((int(rng.choice([4, 8, 16, 32])), cols), np.float32) / cols
        return g.call("linear", [a, g.add_weight("w", w)])
    if kind == "concat":
        same_rows = [v for v in values if v.shape[0] == rows]
        b = same_rows[int(rng.integers(len(same_rows)))]
        return g.call("concat", [a, b], {"dim": 1})
    if kind == "reshape":
        width = int(rng.choice([d for d in (1, 2, 4, 8, 16) if (rows * cols) % d == 0]))
        return g.call("reshape", [a], {"shape": (-1, width)})
    return g.call("sum", [a], {"dims": (0,), "keepdim": True})


def _random_groups(g: Graph, rng: np.random.Generator) -> None:
    """Fuse an elementwise node into its producer's group when it is the producer's only
    user: groups stay convex and their root is their only value used outside."""
    next_group = iter(range(1, 1 << 20))
    for node in list(g.ops()):
        producer = node.inputs[0] if node.inputs else None
        if (get_op(node.op).kind != "elementwise" or producer is None
                or producer.op in ir.LEAF_OPS or set(producer.users) != {node}
                or producer in g.outputs or rng.random() < 0.3):
            continue
        if "group" not in producer.meta:
            producer.meta["group"] = next(next_group)
        node.meta["group"] = producer.meta["group"]


# ----- the properties, checked from the buffers alone ---------------------------------


def check_properties(graph: Graph, plan: MemoryPlan) -> None:
    arena = [b for b in plan.buffers if b.offset is not None and b.alias_of is None]
    by_name = {b.name: b for b in plan.buffers}
    # no two buffers live at a common step share a byte (in-place hand-over excepted)
    for i, a in enumerate(arena):
        for b in arena[i + 1:]:
            live_together = a.start <= b.end and b.start <= a.end
            share_bytes = a.offset < b.offset + b.size and b.offset < a.offset + a.size
            if live_together and share_bytes and a.size and b.size:
                assert b.inplace_of == a.name and a.end == b.start, (a, b)
    # bounds, alignment
    assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.naive_bytes
    assert all(b.offset % ALIGNMENT == 0 and b.offset + b.size <= plan.arena_bytes
               for b in arena)
    assert plan.naive_bytes == sum(-(-b.size // ALIGNMENT) * ALIGNMENT for b in arena)
    # in-place only where an all-elementwise kernel's input dies at it
    steps = {s.name: s for s in plan.steps}
    for b in arena:
        if b.inplace_of:
            src = by_name[b.inplace_of]
            assert all(get_op(m.op).kind == "elementwise" for m in steps[b.name].members)
            assert b.inplace_of in steps[b.name].reads
            assert src.end == b.start and src.size == b.size and src.offset == b.offset
            assert not src.is_output
    # views take no bytes and sit on their source
    for b in plan.buffers:
        if b.alias_of:
            assert b.size == 0 and by_name[b.alias_of].alias_of is None
            assert b.offset == by_name[b.alias_of].offset
    # one buffer per kernel root; group intermediates take none; outputs outside
    roots = {s.name for s in plan.steps}
    for node in graph.ops():
        if node.meta.get("group") is not None and node.name not in roots:
            assert node.name not in by_name
    assert all((b.offset is None) == b.is_output for b in plan.buffers if b.alias_of is None)
    # the timeline, recounted: live blocks at each step (an in-place pair counted once)
    for step, total in enumerate(plan.timeline()):
        live = [b for b in arena if b.start <= step <= b.end]
        names = {b.name for b in live}
        recount = sum(-(-b.size // ALIGNMENT) * ALIGNMENT for b in live
                      if not (b.inplace_of in names and b.start == step))
        assert recount == total
    assert plan.lower_bound_bytes == max(plan.timeline(), default=0)


# ----- a numpy interpreter that keeps planned values in the arena ----------------------


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    a = args[0] if args else None
    ops = {
        "relu": lambda: np.maximum(a, 0), "sigmoid": lambda: 0.5 + 0.5 * np.tanh(a / 2),
        "neg": lambda: -a, "add": lambda: a + args[1], "mul": lambda: a * args[1],
        "linear": lambda: a @ args[1].T,
        "concat": lambda: np.concatenate(args, axis=node.attrs["dim"]),
        "reshape": lambda: a.reshape(node.shape),
        "sum": lambda: a.sum(axis=node.attrs["dims"], keepdims=True),
    }
    return np.asarray(ops[node.op](), np.float32).reshape(node.shape)


def run_reference(graph: Graph, x: np.ndarray) -> list[np.ndarray]:
    env: dict[Node, np.ndarray] = {}
    for node in graph.nodes:
        if node.op == "input":
            env[node] = x
        elif node.op == "weight":
            env[node] = graph.weights[node.name]
        else:
            env[node] = _evaluate(node, [env[i] for i in node.inputs])
    return [env[o] for o in graph.outputs]


def run_in_arena(graph: Graph, plan: MemoryPlan, x: np.ndarray) -> list[np.ndarray]:
    """Run kernel by kernel in the plan's order: each root is written into the arena at
    its offset (outputs into arrays of their own), every operand read back from there.
    ``graph`` may be a concrete twin of the planned one (``concrete_graph``): its nodes,
    found by name, give the shapes, which may be smaller than the plan's."""
    arena = np.random.default_rng(1).integers(0, 255, plan.arena_bytes, np.uint8)
    returned: dict[str, np.ndarray] = {}

    def read(node: Node) -> np.ndarray:
        if node.op == "input":
            return x
        if node.op == "weight":
            return graph.weights[node.name]
        if node.op == "reshape" and "group" not in node.meta:  # a view: no buffer of its own
            return read(node.inputs[0]).reshape(node.shape)
        buf = plan.buffer(node.name)
        if buf.is_output:
            return returned[node.name]
        assert node.type.nbytes() <= buf.size
        raw = arena[buf.offset:buf.offset + node.type.nbytes()]
        return raw.view(np.float32).reshape(node.shape).copy()

    for step in plan.steps:
        local: dict[Node, np.ndarray] = {}
        for node in (graph.node(m.name) for m in step.members):
            local[node] = _evaluate(node, [local[i] if i in local else read(i)
                                           for i in node.inputs])
        buf, value = plan.buffer(step.name), local[graph.node(step.name)]
        if buf.is_output:
            returned[step.name] = value
        else:
            arena[buf.offset:buf.offset + value.nbytes] = value.view(np.uint8).ravel()
    return [read(o) for o in graph.outputs]


# ----- tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", range(4))
def test_random_graphs_plan_and_run(chunk: int) -> None:
    """~200 random graphs, in the captured and the memory-aware order."""
    inplace_pairs = views = 0
    for seed in range(chunk, N_RANDOM_GRAPHS, 4):
        graph = random_graph(seed)
        x = np.random.default_rng(seed).standard_normal(graph.inputs[0].shape, np.float32)
        expected = run_reference(graph, x)
        for order in ("graph", "memory"):
            plan = plan_memory(graph, order=order)
            check_properties(graph, plan)
            for got, want in zip(run_in_arena(graph, plan, x), expected):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            inplace_pairs += sum(b.inplace_of is not None for b in plan.buffers)
            views += sum(b.alias_of is not None for b in plan.buffers)
    assert inplace_pairs > 20 and views > 10  # the generator does exercise both


@pytest.mark.parametrize("seed", range(0, N_RANDOM_GRAPHS, 10))
def test_reordered_graph_is_valid_and_no_worse(seed: int) -> None:
    graph = random_graph(seed)
    ordering = memory_aware_order(graph)
    assert ordering.peak_bytes <= ordering.captured_peak_bytes
    new = reorder(graph)
    ir.verify(new)
    assert [s.name for s in kernel_steps(new)] == [s.name for s in ordering.steps]
    plan = plan_memory(graph, order="memory")
    assert apply_order(graph, plan).signature()[1:] == graph.signature()[1:]
    assert plan_memory(new).arena_bytes == plan.arena_bytes


def test_check_no_overlap_raises_on_a_clash() -> None:
    a = Buffer("a", 256, 0, 0, 2)
    b = Buffer("b", 256, 128, 1, 3)
    with pytest.raises(PlanInvariantError, match="overlaps"):
        check_no_overlap([a, b])
    check_no_overlap([a, Buffer("c", 256, 0, 3, 4)])  # disjoint in time
    check_no_overlap([a, Buffer("d", 256, 0, 2, 4, inplace_of="a")])  # hand-over
    with pytest.raises(PlanInvariantError):
        check_no_overlap([a, Buffer("e", 256, 0, 1, 4, inplace_of="a")])


def test_inplace_chain_and_views() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((4, 16), F32))
    w = g.add_weight("w", np.zeros((16, 16), np.float32))
    h = g.call("linear", [x, w], name="h")
    r = g.call("relu", [h], name="r")  # h dies here: in place
    v = g.call("reshape", [r], {"shape": (8, 8)}, name="v")  # a view of r
    s = g.call("sigmoid", [v], name="s")  # r (through v) dies here: in place again
    g.outputs = [g.call("linear", [g.call("reshape", [s], {"shape": (4, 16)}), w], name="y")]
    plan = plan_memory(g)
    assert plan.buffer("r").inplace_of == "h" and plan.buffer("s").inplace_of == "r"
    assert plan.buffer("v").alias_of == "r" and plan.buffer("v").size == 0
    assert plan.buffer("v").end == plan.buffer("s").start  # the view kept r alive to s
    assert plan.arena_bytes == plan.lower_bound_bytes == 256
    assert plan.naive_bytes == 3 * 256 and plan.output_bytes == 256
    assert plan.buffer("y").is_output and plan.offset_of("y") is None


def test_no_inplace_over_a_broadcast_input() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((4, 16), F32))
    row = g.call("sum", [x], {"dims": (0,), "keepdim": True})  # (1, 16)
    col = g.call("reshape", [row], {"shape": (16, 1)})
    big = g.call("add", [col, row])  # (16, 16): reads row broadcast
    g.outputs = [g.call("relu", [big])]
    plan = plan_memory(g)
    assert plan.buffer("add").inplace_of is None


def test_no_inplace_when_equal_bytes_hide_a_broadcast() -> None:
    # row: f32[1,16] = 64 B; gt(row, x): bool[4,16] = 64 B, but reads row broadcast, so
    # writing output byte k would clobber row's element k // 4 still needed by later rows.
    g = Graph()
    x = g.add_input("x", TensorType((4, 16), F32))
    row = g.call("sum", [x], {"dims": (0,), "keepdim": True})
    g.outputs = [g.call("logical_not", [g.call("gt", [row, x])])]
    plan = plan_memory(g)
    assert plan.buffer("gt").inplace_of is None
    assert plan.buffer("gt").size == plan.buffer("sum").size


def test_groups_take_no_bytes_inside() -> None:
    fused, unfused = resnet_chain(grouped=True), resnet_chain(grouped=False)
    plan = plan_memory(fused)
    kernels = {s.name for s in plan.steps}
    intermediates = [n.name for n in fused.ops() if n.name not in kernels]
    assert intermediates and not any(b.name in intermediates for b in plan.buffers)
    assert len(plan.steps) == 4 * 4  # two conv kernels, add, relu per block
    assert plan.naive_bytes < plan_memory(unfused).naive_bytes


@pytest.mark.parametrize("build", [resnet_chain, mobilenet_chain, mlp,
                                   lambda: resnet_chain(grouped=False)])
def test_arena_within_five_percent_of_the_lower_bound_on_chains(build) -> None:
    plan = plan_memory(build())
    assert plan.arena_bytes <= 1.05 * plan.lower_bound_bytes
    assert plan.arena_bytes < plan.naive_bytes / 2


def test_symbolic_shapes_are_refused_by_name() -> None:
    g = Graph()
    x = g.add_input("x", TensorType(("batch", 8), F32))
    g.outputs = [g.call("relu", [g.call("neg", [x], name="negated")])]
    with pytest.raises(NotImplementedError, match="%negated"):
        plan_memory(g)
    with pytest.raises(ValueError, match="no size given for batch"):
        plan_memory(g, sizes={"seq": 4})


def test_inplace_is_decided_on_symbolic_shapes() -> None:
    # s: f32[1,8] and y = s + a: f32[n,8] have equal bytes at n = 1 only; writing y over s
    # would clobber s at any larger n, so the symbolic plan never does, at any size.
    g = Graph()
    x = g.add_input("x", TensorType(("n", 8), F32))
    a = g.call("neg", [x], name="a")
    s = g.call("sum", [a], {"dims": (0,), "keepdim": True}, name="s")
    g.outputs = [a, g.call("relu", [g.call("add", [s, a], name="y")])]
    assert plan_memory(concrete_graph(g, {"n": 1})).buffer("y").inplace_of == "s"
    for n in (1, 2, 64):
        assert plan_memory(g, sizes={"n": n}).buffer("y").inplace_of is None


def symbolic_graph() -> Graph:
    """Rows ``n``: a linear, in-place relu and broadcast add, a view, a concat."""
    rng = np.random.default_rng(0)
    g = Graph()
    x = g.add_input("x", TensorType(("n", 16), F32))
    h = g.call("linear", [x, g.add_weight("w1", rng.standard_normal((32, 16), np.float32))])
    r = g.call("relu", [h])  # in place of h
    row = g.call("sum", [r], {"dims": (0,), "keepdim": True})
    b = g.call("add", [r, row])  # in place of r, not of the broadcast row
    v = g.call("reshape", [b], {"shape": ("2*n", 16)})  # a view of b
    c = g.call("concat", [v, g.call("sigmoid", [v])], {"dim": 1})
    g.outputs = [g.call("linear", [c, g.add_weight("w2", rng.standard_normal(
        (8, 32), np.float32) / 8)])]
    ir.verify(g)
    return g


def test_size_class_plans_hold_at_every_size_in_their_class() -> None:
    """Each size runs in its class's arena (planned at the class's upper bound) with the
    actual, smaller buffers at the class's offsets, and gives the reference result."""
    graph = symbolic_graph()
    planner = SizeClassPlanner(graph)
    pairs = {(b.name, b.inplace_of) for b in planner.reference.buffers if b.inplace_of}
    assert pairs == {("relu", "linear"), ("add", "relu")}
    for n in range(1, 40):
        concrete = concrete_graph(graph, {"n": n})
        plan = planner.plan_for({"n": n})
        assert planner.bound({"n": n}) == {"n": 1 << (n - 1).bit_length()}
        assert {(b.name, b.inplace_of) for b in plan.buffers if b.inplace_of} == pairs
        actual = [replace(b, size=concrete.node(b.name).type.nbytes()) for b in plan.buffers
                  if b.alias_of is None]
        check_no_overlap(actual)
        assert max(b.offset + b.size for b in actual if b.offset is not None) <= \
            planner.layout({"n": n}, [b.name for b in actual if b.offset is not None])[0]
        x = np.random.default_rng(n).standard_normal((n, 16), np.float32)
        for got, want in zip(run_in_arena(concrete, plan, x), run_reference(concrete, x)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert [row["class"]["n"] for row in planner.table()] == [1, 2, 4, 8, 16, 32, 64]


def test_summary_and_timeline() -> None:
    plan = plan_memory(mlp())
    text = plan.summary()
    assert "%fc0" in text and "lower bound" in text and "output" in text
    assert len(plan.timeline()) == len(plan.steps)
    assert max(plan.timeline()) == plan.lower_bound_bytes
