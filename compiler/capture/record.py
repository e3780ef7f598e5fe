"""Run a torch.fx graph once on the example inputs and record, per node, the type of its
result and, when the result does not depend on the inputs (or is not a tensor, such as a
size), the value itself, so converters can use static shapes and fold constants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree
from torch.fx.passes.shape_prop import ShapeProp

from compiler.capture.context import Unsupported, tensor_type


@dataclass
class Recording:
    types: dict[str, Any] = field(default_factory=dict)  # node name -> TensorType tree
    values: dict[str, Any] = field(default_factory=dict)  # node name -> value (see above)
    dependent: set[str] = field(default_factory=set)  # nodes whose value reads an input

    def is_static(self, node: torch.fx.Node) -> bool:
        return node.name not in self.dependent and node.name in self.values


class _Recorder(ShapeProp):
    def __init__(self, module: torch.fx.GraphModule, input_names: set[str]):
        super().__init__(module)
        self.input_names = input_names
        self.recording = Recording()

    def run_node(self, n: torch.fx.Node) -> Any:
        result = super().run_node(n)
        rec = self.recording
        dependent = n.name in self.input_names if n.op == "placeholder" else \
            any(a.name in rec.dependent for a in n.all_input_nodes)
        if dependent:
            rec.dependent.add(n.name)
        rec.types[n.name] = pytree.tree_map(_type_or_none, result)
        holds_tensor = any(isinstance(v, torch.Tensor) for v in pytree.tree_leaves(result))
        if not dependent or not holds_tensor:
            # call results are cloned: an in-place op later in the run must not change them
            rec.values[n.name] = result if n.op in ("placeholder", "get_attr") else \
                pytree.tree_map(_clone, result)
        return result


def _type_or_none(value: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return None
    try:
        return tensor_type(value)
    except Unsupported:
        return None


def _clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def record(module: torch.fx.GraphModule, inputs: list[Any], input_names: set[str]) -> Recording:
    """Run ``module`` on ``inputs`` (one per placeholder); ``input_names`` are the
    placeholders that carry the user's inputs (the rest are parameters and buffers)."""
    recorder = _Recorder(module, input_names)
    with torch.no_grad():
        recorder.propagate(*inputs)
    return recorder.recording
