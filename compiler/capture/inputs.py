"""The example inputs as the graph sees them: the flattened ``(args, kwargs)`` tensors in
pytree order, each named after the ``forward`` parameter it is passed as."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree

from compiler.capture.context import tensor_type
from ir import Graph, Node, TensorType


@dataclass
class Inputs:
    args: tuple
    kwargs: dict
    leaves: list[Any]  # every leaf of (args, kwargs), tensors or not
    names: list[str]  # one per leaf
    spec: pytree.TreeSpec

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [x for x in self.leaves if isinstance(x, torch.Tensor)]

    def add_to(self, graph: Graph, types: dict[int, TensorType] | None = None
               ) -> dict[int, Node]:
        """Add one graph input per tensor leaf; maps id(tensor) -> its input node. Its type
        is the tensor's, or ``types[id(tensor)]`` (symbolic dims) where given."""
        nodes: dict[int, Node] = {}
        for leaf, name in zip(self.leaves, self.names):
            if isinstance(leaf, torch.Tensor) and id(leaf) not in nodes:
                t = (types or {}).get(id(leaf)) or tensor_type(leaf)
                nodes[id(leaf)] = graph.add_input(name, t)
        return nodes


def bind_inputs(model: torch.nn.Module, args: tuple, kwargs: dict) -> Inputs:
    leaves_with_paths, spec = pytree.tree_flatten_with_path((args, kwargs))
    positional = _positional_names(model)
    names = []
    for path, _ in leaves_with_paths:
        top = path[1]
        if path[0].idx == 0:  # an element of args
            i = top.idx
            base = positional[i] if i < len(positional) else f"args_{i}"
        else:
            base = str(top.key)
        rest = "_".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                        for k in path[2:])
        names.append(f"{base}_{rest}" if rest else base)
    return Inputs(args, kwargs, [leaf for _, leaf in leaves_with_paths], names, spec)


def _positional_names(model: torch.nn.Module) -> list[str]:
    if isinstance(model, torch.fx.GraphModule):  # Dynamo's graphs: forward(self, *args)
        return [n.name for n in model.graph.nodes if n.op == "placeholder"]
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds]
