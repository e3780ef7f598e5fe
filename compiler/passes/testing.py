"""Helpers for testing passes the TVM Relax way: a ``Before`` graph and an ``Expected``
graph written as IR text, compared structurally after the pass runs.

    after = check_pass(Simplify(), BEFORE, EXPECTED, weights={"w": w})

``check_pass`` also verifies the result, checks ``parse(str(g)) == g`` and, when every
weight has data, that the graph computes the same numbers before and after.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import ir
from compiler.pass_manager import Pass
from ir import Graph


def graph_from_text(text: str, weights: dict[str, np.ndarray] | None = None) -> Graph:
    """Parse IR text and attach weight data by name; checks shapes against the text."""
    graph = ir.parse(text)
    for name, data in (weights or {}).items():
        graph.weights[name] = np.asarray(data)
    ir.verify(graph)
    return graph


def random_weights(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Random data for every weight of ``graph`` that has none (floats in [-1, 1),
    variances positive so a batch norm stays defined)."""
    rng = np.random.default_rng(seed)
    out = {}
    for node in graph.nodes:
        if node.op == "weight" and graph.weights.get(node.name) is None:
            data = rng.uniform(-1, 1, node.shape)
            if any(u.op == "batch_norm" and u.inputs.index(node) == 2 for u in node.users):
                data = np.abs(data) + 0.1
            out[node.name] = data.astype(node.dtype)
            graph.weights[node.name] = out[node.name]
    return out


def random_inputs(graph: Graph, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n.shape).astype(n.dtype) for n in graph.inputs]


def run(graph: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The project's reference interpreter when capture provides one, else ours."""
    try:
        from compiler.capture.interpret import run_graph_numpy
    except ImportError:
        from compiler.passes.evaluate import run_graph as run_graph_numpy
    return [np.asarray(v) for v in run_graph_numpy(graph, list(inputs))]


def assert_same_numerics(before: Graph, after: Graph, rtol: float = 1e-4,
                         atol: float = 1e-5) -> None:
    inputs = random_inputs(before)
    for want, got in zip(run(before, inputs), run(after, inputs), strict=True):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def assert_round_trips(graph: Graph) -> None:
    ir.verify(graph)
    text = str(graph)
    assert ir.parse(text) == graph, f"parse(str(g)) != g for:\n{text}"


def run_pass(pass_: Pass, graph: Graph) -> tuple[Graph, bool]:
    """Run ``pass_`` on a copy; verify and round-trip the result."""
    result = pass_(graph.copy())
    assert_round_trips(result.graph)
    return result.graph, result.modified


def check_pass(pass_: Pass, before: str, expected: str | None,
               weights: dict[str, np.ndarray] | None = None, numerics: bool = True) -> Graph:
    """Run ``pass_`` on ``before`` (IR text) and compare with ``expected`` (IR text;
    ``None``: the pass must not fire and the graph must not change)."""
    graph = graph_from_text(before, weights)
    if numerics:
        random_weights(graph)
    after, modified = run_pass(pass_, graph)
    want = graph if expected is None else ir.parse(expected)
    assert after == want, f"after {pass_.name}:\n{after}\nexpected:\n{want}"
    assert modified == (expected is not None), f"{pass_.name} reported modified={modified}"
    if numerics:
        assert_same_numerics(graph, after)
    return after
