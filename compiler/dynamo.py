"""``torch.compile(model, backend="dscompile")``: a TorchDynamo backend.

Dynamo splits the program at graph breaks and hands each captured fx graph here; each
goes through ``dscompile`` with the options given as
``torch.compile(..., options={"target": "cpu", "opt_level": 2})``. The backend is
registered by name on import of ``compiler`` and, for installed packages, through the
``torch_dynamo_backends`` entry point in pyproject.toml.

A Dynamo graph takes more than the user's tensors: the module's parameters and buffers
(Dynamo inlines ``nn.Module`` calls and lifts their state to graph inputs), float
attributes as 0-d tensors read by ``.item()`` (``dropout.p``, ``eps`` under
``dynamic=True``), and one ``SymInt`` per symbolic size. ``DynamoGraph`` rewrites it
into a module over the user's tensors alone:

- module state is **frozen** into the graph as constants (inference only, as inductor's
  ``freezing``), so folding, fusion and weight packing see real weights; a later edit
  of a parameter is not seen by the compiled graph (recompile, as with ``freezing``);
- ``.item()`` of a frozen scalar becomes its Python number;
- each size input becomes ``x.size(axis)`` of a user tensor that carries it, and the
  axes whose size is symbolic are compiled as dynamic dims (``dscompile(dynamic=...)``),
  so one compilation serves every size Dynamo's guards admit.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

log = logging.getLogger(__name__)


def dscompile_backend(gm: torch.fx.GraphModule, example_inputs: list,
                      options: dict[str, Any] | None = None, mode: str | None = None):
    """Compile one Dynamo graph; returns the callable Dynamo runs in its place."""
    from compiler.api import dscompile

    options = dict(options or {})
    options.setdefault("check", "off")  # Dynamo graphs are checked by the caller's tests
    graph = DynamoGraph(gm, list(example_inputs))
    if graph.unsupported:
        log.warning("dscompile backend: running a Dynamo graph eagerly: %s", graph.unsupported)
        return gm.forward
    positions = graph.user_positions
    compiled: list = []  # built on the first call, outside Dynamo's tracing context
    lock = threading.Lock()  # (torch.export cannot run inside a backend call)

    def run(*args: Any):
        if not compiled:
            with lock:
                if not compiled:
                    compiled.append(dscompile(graph.module, tuple(graph.user_examples),
                                              dynamic=graph.dynamic or None, **options))
        user = [args[i] for i in positions]
        return graph.outputs_with_sizes(compiled[0](*user), user)

    run.graph = graph  # type: ignore[attr-defined]
    run.compiled = compiled  # type: ignore[attr-defined]
    return run


@dataclass
class _Placeholder:
    node: torch.fx.Node
    value: Any  # the example input Dynamo passed
    fake: Any  # meta["example_value"]: a FakeTensor with symbolic sizes, or a SymInt
    frozen: bool  # module state (not one of the user's locals)


@dataclass
class DynamoGraph:
    """A Dynamo graph as a module over the user's tensors (see the module docstring).

    ``module``: the rewritten ``GraphModule``; ``user_examples`` its example inputs;
    ``user_positions``: where they sit among Dynamo's inputs; ``dynamic``: the
    ``dscompile(dynamic=...)`` spec; ``unsupported``: why the graph must run eagerly.
    """

    gm: torch.fx.GraphModule
    example_inputs: list
    module: torch.fx.GraphModule | None = None
    user_examples: list = field(default_factory=list)
    user_positions: list[int] = field(default_factory=list)
    dynamic: dict[str, dict[int, tuple]] = field(default_factory=dict)
    unsupported: str = ""
    # outputs that are sizes, not tensors (a graph break hands a SymInt on): their
    # position among the outputs and how to compute them from the user tensors' shapes
    size_outputs: list[tuple[int, Any]] = field(default_factory=list)
    symbol_axes: dict[Any, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.unsupported = self._rewrite()

    def _placeholders(self) -> list[_Placeholder]:
        nodes = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        out = []
        for node, value in zip(nodes, self.example_inputs):
            grapharg = node.meta.get("grapharg")
            source = getattr(grapharg, "source", None)
            fake = node.meta.get("example_value", value)
            out.append(_Placeholder(node, value, fake, frozen=_is_module_state(source, value)))
        return out

    def _rewrite(self) -> str:
        gm = torch.fx.GraphModule(self.gm, self.gm.graph.__deepcopy__())
        graph = gm.graph
        placeholders = self._placeholders()
        nodes = {n.name: n for n in graph.nodes if n.op == "placeholder"}
        body = next(n for n in graph.nodes if n.op != "placeholder")  # sizes, constants here
        tensors = [p for p in placeholders if not p.frozen and isinstance(p.value, torch.Tensor)]
        sizes = {}  # torch's symbol -> (the first user tensor of that size, axis)
        symbolic = []  # (user tensor, axis, SymInt) of every symbolic size
        for p in tensors:
            for axis, size in enumerate(getattr(p.fake, "shape", ())):
                if isinstance(size, torch.SymInt) and size.node.expr.is_Symbol:
                    sizes.setdefault(size.node.expr, (p.node.name, axis))
                    symbolic.append((p.node.name, axis, size))
        for i, p in enumerate(placeholders):
            node = nodes[p.node.name]
            if isinstance(p.fake, torch.SymInt) or isinstance(p.value, torch.SymInt):
                expr = getattr(getattr(p.fake, "node", None), "expr", None)
                if expr is None or not expr.free_symbols <= set(sizes):
                    return f"size input {node.name} is not computed from input tensor sizes"
                try:
                    with graph.inserting_before(body):
                        size = _size_expression(graph, expr, sizes, nodes)
                except ValueError as e:
                    return f"size input {node.name}: {e}"
                node.replace_all_uses_with(size)
                graph.erase_node(node)
            elif p.frozen:
                if not isinstance(p.value, torch.Tensor):
                    return f"module state {node.name} is a {type(p.value).__name__}"
                _freeze(gm, node, p.value, body)
            elif isinstance(p.value, torch.Tensor):
                self.user_positions.append(i)
                self.user_examples.append(p.value)
            else:
                return f"input {node.name} is a {type(p.value).__name__}, not a tensor"
        self.dynamic = _dynamic_axes(symbolic)
        problem = self._split_size_outputs(graph, sizes)
        if problem:
            return problem
        graph.lint()
        gm.recompile()
        self.module = gm.eval()
        return ""


    def _split_size_outputs(self, graph: torch.fx.Graph, sizes: dict) -> str:
        """Take the outputs that are sizes (SymInts, ints) out of the compiled graph;
        ``outputs_with_sizes`` puts them back, evaluated from the call's shapes."""
        output = next(n for n in graph.nodes if n.op == "output")
        values = output.args[0]
        if not isinstance(values, (tuple, list)):
            return ""
        names = [n.name for n in graph.nodes if n.op == "placeholder"]
        kept = []
        for i, value in enumerate(values):
            example = value.meta.get("example_value") if isinstance(value, torch.fx.Node) \
                else value
            if isinstance(example, torch.SymInt):
                expr = example.node.expr
                if not expr.free_symbols <= set(sizes):
                    return f"output {i} is a size that no input tensor carries"
                self.size_outputs.append((i, expr))
            elif isinstance(example, int) and not isinstance(example, bool):
                self.size_outputs.append((i, example))
            else:
                kept.append(value)
        if self.size_outputs:
            for symbol, (owner, axis) in sizes.items():
                self.symbol_axes[symbol] = (names.index(owner), axis)
            output.args = (tuple(kept),)
        return ""

    def outputs_with_sizes(self, outputs: Any, user_inputs: list) -> Any:
        """The compiled graph's outputs with the size outputs put back in place."""
        if not self.size_outputs:
            return outputs
        values = {s: user_inputs[i].shape[axis] for s, (i, axis) in self.symbol_axes.items()}
        merged = list(outputs)
        for position, expr in self.size_outputs:
            size = expr if isinstance(expr, int) else int(expr.xreplace(values))
            merged.insert(position, size)
        return tuple(merged)


def _size_expression(graph: torch.fx.Graph, expr: Any, sizes: dict,
                     nodes: dict[str, torch.fx.Node]) -> Any:
    """fx nodes computing ``expr`` (a polynomial of torch's size symbols, e.g. ``2*s27``
    after a graph break) from ``x.size(axis)`` of the tensors that carry each symbol."""
    import operator

    if expr.is_Integer:
        return int(expr)
    if expr.is_Symbol:
        owner, axis = sizes[expr]
        return graph.call_function(torch.ops.aten.sym_size.int, (nodes[owner], axis))
    if expr.is_Pow and expr.exp.is_Integer and int(expr.exp) > 0:
        base = _size_expression(graph, expr.base, sizes, nodes)
        out = base
        for _ in range(int(expr.exp) - 1):
            out = graph.call_function(operator.mul, (out, base))
        return out
    if expr.is_Add or expr.is_Mul:
        combine = operator.add if expr.is_Add else operator.mul
        parts = [_size_expression(graph, a, sizes, nodes) for a in expr.args]
        out = parts[0]
        for part in parts[1:]:
            out = graph.call_function(combine, (out, part))
        return out
    raise ValueError(f"size {expr} is not a polynomial of the input sizes")


def _freeze(gm: torch.fx.GraphModule, node: torch.fx.Node, value: torch.Tensor,
            body: torch.fx.Node) -> None:
    """Make placeholder ``node`` a constant of ``gm`` (read before ``body``, the first
    node of the graph's body); ``.item()`` of a 0-d one becomes its number."""
    for user in list(node.users):
        if user.op == "call_method" and user.target == "item" and value.dim() == 0:
            user.replace_all_uses_with(value.item())  # type: ignore[arg-type]
            gm.graph.erase_node(user)
    if node.users:
        attr = f"_frozen_{node.name}"
        gm.register_buffer(attr, value.detach(), persistent=False)
        with gm.graph.inserting_before(body):
            node.replace_all_uses_with(gm.graph.get_attr(attr))
    gm.graph.erase_node(node)


def _dynamic_axes(symbolic: list[tuple[str, int, Any]]) -> dict[str, dict[int, tuple]]:
    """``{input name: {axis: (symbol, min, max)}}`` for every symbolic size of a user
    tensor, with the range Dynamo's shape environment gave it (the guards it installed:
    ``seq <= 512`` from a position table)."""
    out: dict[str, dict[int, tuple]] = {}
    for owner, axis, size in symbolic:
        expr = size.node.expr
        low, high = 1, None
        shape_env = getattr(size.node, "shape_env", None)
        bounds = shape_env.var_to_range.get(expr) if shape_env is not None else None
        if bounds is not None:
            low = max(1, _finite(bounds.lower) or 1)
            high = _finite(bounds.upper)
        out.setdefault(owner, {})[axis] = (str(expr), low, high)
    return out


def _finite(bound: Any) -> int | None:
    """A bound of torch's value ranges as an int; None for its infinities (int_oo)."""
    try:
        return int(bound)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None


def _is_module_state(source: Any, value: Any) -> bool:
    """Parameters, buffers and attributes reached through ``self`` (not the user's
    locals): Dynamo names them by an attribute or dict-item source."""
    if isinstance(value, torch.nn.Parameter):
        return True
    if source is None:
        return False
    name = getattr(source, "name", "")
    name = name() if callable(name) else name
    return type(source).__name__ != "LocalSource" and "L['self']" in str(name) \
        and isinstance(value, torch.Tensor)


def register() -> None:
    from torch._dynamo import list_backends, register_backend

    if "dscompile" not in list_backends(exclude_tags=()):
        register_backend(compiler_fn=dscompile_backend, name="dscompile")
