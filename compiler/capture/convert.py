"""The node-by-node conversion loop both frontends share: map each torch.fx node's
arguments to IR values, call the node's converter from a table, check the result against
the type recorded on the example inputs, and collect every unsupported op before raising.

A node without a converter is still fine when its value does not depend on the inputs
(a causal mask, a gather over buffers): it is folded into a constant from the recording.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree

from compiler.capture.context import Context, Unsupported, contains_node
from compiler.capture.record import Recording
from compiler.errors import UnsupportedOp, UnsupportedOpError
from ir import Graph, Node, TensorType
from ir.graph import sanitize_name

Converter = Callable[..., Any]  # (ctx, *args, **kwargs) -> IR value


class _Poison:
    """The value of a node that could not be converted; its users are skipped quietly."""

    def __repr__(self) -> str:
        return "<unconverted>"


POISON = _Poison()


class Frontend:
    """Converts one fx graph; subclasses say what placeholders, get_attr and call targets
    mean (``placeholder``, ``get_attr``, ``lookup``, ``op_name``, ``source``)."""

    def __init__(self, module: torch.fx.GraphModule, recording: Recording):
        self.module = module
        self.recording = recording
        self.ctx = Context()
        self.env: dict[str, Any] = {}
        self.unsupported: list[UnsupportedOp] = []

    # ----- to be provided --------------------------------------------------------------
    def placeholder(self, node: torch.fx.Node) -> Any:
        raise NotImplementedError

    def get_attr(self, node: torch.fx.Node) -> Any:
        raise NotImplementedError

    def lookup(self, node: torch.fx.Node) -> Converter | None:
        raise NotImplementedError

    def op_name(self, node: torch.fx.Node) -> str:
        raise NotImplementedError

    def source(self, node: torch.fx.Node) -> str | None:
        raise NotImplementedError

    def is_random(self, node: torch.fx.Node) -> bool:
        return False

    # ----- the loop ----------------------------------------------------------------------
    def run(self) -> Graph:
        """The IR graph with its outputs in pytree order; raises ``UnsupportedOpError``."""
        outputs: list[Node] = []
        for node in self.module.graph.nodes:
            self.ctx.begin(sanitize_name(node.name), self.source(node),
                           self.recording.types.get(node.name),
                           self.recording.values.get(node.name))
            if node.op == "output":
                outputs = self._outputs(node)
                continue
            try:
                value = self._convert(node)
            except Unsupported as e:
                op = e.op or self.op_name(node)
                self.unsupported.append(UnsupportedOp(f"{op} {e.why}".strip(), node.name,
                                                      self.ctx.source))
                value = POISON
            self.env[node.name] = value
            if isinstance(value, Node) and self.recording.is_static(node):
                self.ctx.known[id(value)] = self.recording.values[node.name]
        if self.unsupported:
            raise UnsupportedOpError(self.unsupported)
        graph = self.ctx.graph
        graph.outputs = outputs
        _drop_dead_nodes(graph)
        return graph

    def _convert(self, node: torch.fx.Node) -> Any:
        if node.op == "placeholder":
            return self.placeholder(node)
        if node.op == "get_attr":
            return self.get_attr(node)
        args = torch.fx.node.map_arg(node.args, lambda n: self.env[n.name])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: self.env[n.name])
        if any(v is POISON for v in pytree.tree_leaves((args, kwargs))):
            return POISON  # already reported at the node that made it
        converter = self.lookup(node)
        if converter is not None:
            try:
                return self._checked(node, converter(self.ctx, *args, **kwargs))
            except Unsupported:
                if not self._foldable(node, args, kwargs):
                    raise
        if self._foldable(node, args, kwargs):
            return self._fold(node)
        raise Unsupported()

    def _foldable(self, node: torch.fx.Node, args: Any, kwargs: Any) -> bool:
        """Input-free values fold; so do non-tensor results (sizes) of non-IR arguments."""
        if node.name not in self.recording.values or self.is_random(node):
            return False
        value = self.recording.values[node.name]
        tensors = any(isinstance(v, torch.Tensor) for v in pytree.tree_leaves(value))
        return self.recording.is_static(node) or (not tensors and not contains_node((args,
                                                                                      kwargs)))

    def _fold(self, node: torch.fx.Node) -> Any:
        value = self.recording.values[node.name]
        for leaf in pytree.tree_leaves(value):
            if isinstance(leaf, torch.Tensor):
                self.ctx.tensor_names[id(leaf)] = sanitize_name(node.name)
        return value

    def _checked(self, node: torch.fx.Node, value: Any) -> Any:
        """Compare with the recorded result: a wrong shape is our bug (reported as
        unsupported, so export gets a try); a differing dtype gets a cast."""
        expected = self.recording.types.get(node.name)
        if isinstance(value, Node) and isinstance(expected, TensorType):
            if value.shape != expected.shape:
                raise Unsupported(why=f"(captured as {value.type}, torch gives {expected})")
            if value.dtype != expected.dtype:
                value = self.ctx.emit("cast", [value], dtype=expected.dtype)
        return value

    def _outputs(self, node: torch.fx.Node) -> list[Node]:
        result = torch.fx.node.map_arg(node.args[0], lambda n: self.env[n.name])
        outputs = []
        for leaf in pytree.tree_leaves(result):
            if leaf is POISON:
                continue
            if not isinstance(leaf, (Node, torch.Tensor)):
                self.unsupported.append(UnsupportedOp(
                    f"non-tensor output {leaf!r} (graphs return tensors only)", node.name,
                    self.ctx.source))
                continue
            outputs.append(self.ctx.tensor(leaf))
        return outputs


def _drop_dead_nodes(graph: Graph) -> None:
    """Nodes nothing reads: unused buffers, weights replaced by their transpose, index
    tensors that capture resolved into slices, results of torch ops the model ignored."""
    outputs = set(map(id, graph.outputs))
    for node in reversed(list(graph.nodes)):
        if node.op != "input" and not node.users and id(node) not in outputs:
            graph.erase(node)
