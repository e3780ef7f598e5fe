"""Capture with ``torch.fx.symbolic_trace``: trace with stack traces recorded, run once on
the example inputs to record types and static values, convert through the fx tables.

Non-tensor arguments (``None`` masks, flags) are passed to the tracer as concrete
values, so ``if mask is not None`` traces; tensor arguments become the graph inputs.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import operator
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree
from torch.fx.node import _get_qualified_name

from compiler.capture.context import Unsupported
from compiler.capture.convert import Converter, Frontend
from compiler.capture.fx_tables import FUNCTIONS, METHODS, MODULES
from compiler.capture.inputs import Inputs
from compiler.capture.record import record
from compiler.capture.source import source_from_stack_trace
from ir import Graph

_INPLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}
_FACTORIES = ("ones", "zeros", "full", "arange")
_RANDOM = {"rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "normal",
           "bernoulli", "multinomial", "randperm", "dropout", "alpha_dropout"}


class _Tracer(torch.fx.Tracer):
    """The default tracer with each node's stack trace kept, for source locations."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True


def capture_fx(model: torch.nn.Module, inputs: Inputs) -> Graph:
    """Trace ``model`` and convert it; raises ``UnsupportedOpError`` or the tracer's error."""
    signature = inspect.signature(model.forward)
    bound = signature.bind(*inputs.args, **inputs.kwargs)
    bound.apply_defaults()
    concrete = {name: value for name, value in bound.arguments.items()
                if not _holds_tensor(value)
                and signature.parameters[name].kind != inspect.Parameter.VAR_POSITIONAL}
    tracer = _Tracer()
    with _traced_factories(tracer):
        graph = tracer.trace(model, concrete_args=concrete or None)
    module = torch.fx.GraphModule(tracer.root, graph)

    placeholder_values, run_args = [], []
    for name, param in signature.parameters.items():
        value = bound.arguments.get(name, param.default)
        if param.kind == inspect.Parameter.VAR_KEYWORD:
            raise TypeError("fx capture does not handle **kwargs in forward()")
        placeholder_values.append(value)
        run_args += list(value) if param.kind == inspect.Parameter.VAR_POSITIONAL else [value]
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    input_names = {p.name for p, v in zip(placeholders, placeholder_values) if _holds_tensor(v)}
    recording = record(module, run_args, input_names)
    return _FxFrontend(module, recording, inputs, dict(zip([p.name for p in placeholders],
                                                           placeholder_values))).run()


@contextlib.contextmanager
def _traced_factories(tracer: torch.fx.Tracer) -> Iterator[None]:
    """``torch.ones(t, t)`` with ``t`` from ``x.shape`` is a traced size, which torch's
    factories reject; while tracing they record such calls as graph nodes instead."""
    import torch._dynamo  # noqa: F401  (imported while torch.arange is patched, Dynamo's
    # tables would keep our wrapper and later refuse to trace the real factory)

    originals = {name: getattr(torch, name) for name in _FACTORIES}

    def traced(factory: Any) -> Any:
        @functools.wraps(factory)
        def call(*args: Any, **kwargs: Any) -> Any:
            if any(isinstance(a, torch.fx.Proxy) for a in pytree.tree_leaves((args, kwargs))):
                return tracer.create_proxy("call_function", factory, args, kwargs)
            return factory(*args, **kwargs)
        return call

    try:
        for name, factory in originals.items():
            setattr(torch, name, traced(factory))
        yield
    finally:
        for name, factory in originals.items():
            setattr(torch, name, factory)


def _holds_tensor(value: Any) -> bool:
    return any(isinstance(v, torch.Tensor) for v in pytree.tree_leaves(value))


class _FxFrontend(Frontend):
    def __init__(self, module: torch.fx.GraphModule, recording, inputs: Inputs,
                 placeholder_values: dict[str, Any]):
        super().__init__(module, recording)
        self.input_nodes = inputs.add_to(self.ctx.graph)
        self.placeholder_values = placeholder_values
        self.order = {n: i for i, n in enumerate(module.graph.nodes)}

    def placeholder(self, node: torch.fx.Node) -> Any:
        value = self.placeholder_values[node.name]
        return pytree.tree_map(
            lambda v: self.input_nodes[id(v)] if isinstance(v, torch.Tensor) else v, value)

    def get_attr(self, node: torch.fx.Node) -> Any:
        value: Any = self.module
        for part in node.target.split("."):
            value = getattr(value, part)
        return self.ctx.weight(value, node.target) if isinstance(value, torch.Tensor) else value

    def lookup(self, node: torch.fx.Node) -> Converter | None:
        if self._mutates_input(node) and self._read_after(node):
            raise Unsupported(why="(in-place op on a value that is read again afterwards)")
        if node.op == "call_module":
            module = self.module.get_submodule(node.target)
            convert = MODULES.get(type(module))
            if convert is None:
                return None
            return lambda ctx, *args, **kwargs: convert(ctx, module, node.target, *args, **kwargs)
        if node.op == "call_method":
            name = node.target
            if name not in METHODS and name.endswith("_") and not name.startswith("__"):
                name = name[:-1]  # add_ -> add; _read_after checked the mutation is unseen
            return METHODS.get(name)
        return FUNCTIONS.get(node.target)

    def _mutates_input(self, node: torch.fx.Node) -> bool:
        if node.op == "call_method":
            return node.target.endswith("_") and not node.target.startswith("__")
        if node.op == "call_module":
            return bool(getattr(self.module.get_submodule(node.target), "inplace", False))
        return node.target in _INPLACE_OPERATORS or node.kwargs.get("inplace") is True

    def _read_after(self, node: torch.fx.Node) -> bool:
        target = node.args[0] if node.args else None
        return isinstance(target, torch.fx.Node) and any(
            self.order[user] > self.order[node] for user in target.users if user is not node)

    def op_name(self, node: torch.fx.Node) -> str:
        if node.op == "call_module":
            cls = type(self.module.get_submodule(node.target))
            public = getattr(torch.nn, cls.__name__, None) is cls
            return f"torch.nn.{cls.__name__}" if public else f"{cls.__module__}.{cls.__qualname__}"
        if node.op == "call_method":
            return f"Tensor.{node.target}"
        try:
            return _get_qualified_name(node.target)
        except Exception:
            return str(node.target)

    def source(self, node: torch.fx.Node) -> str | None:
        return source_from_stack_trace(node.stack_trace)

    def is_random(self, node: torch.fx.Node) -> bool:
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        return name.rstrip("_") in _RANDOM
