"""Capture with ``torch.export`` (non-strict): for models fx cannot trace. The exported
program is decomposed, keeping whole the ATen ops the table maps, then run once on the
example inputs to record types and static values, and converted through ``ATEN``."""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree
from torch.export._tree_utils import reorder_kwargs
from torch.export.graph_signature import InputKind

from compiler.capture.aten_table import ATEN, decomposition_table
from compiler.capture.context import Unsupported
from compiler.capture.convert import Converter, Frontend
from compiler.capture.indexing import getitem
from compiler.capture.inputs import Inputs
from compiler.capture.record import record
from compiler.capture.source import source_from_stack_trace
from compiler.capture.symbolic import SIZE_OPS, SymbolMap, export_dynamic_shapes
from compiler.dynamic import DimSpec, SymDim
from ir import Graph

_WEIGHT_KINDS = (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)


def capture_export(model: torch.nn.Module, inputs: Inputs,
                   dynamic: dict[str, dict[int, DimSpec]] | None = None) -> Graph:
    """Export ``model`` and convert it; raises ``UnsupportedOpError`` or export's error.
    With ``dynamic`` (input name -> axis -> ``DimSpec``) those sizes stay symbolic."""
    shapes = export_dynamic_shapes(model, inputs, dynamic) if dynamic else None
    program = torch.export.export(model, inputs.args, inputs.kwargs, strict=False,
                                  dynamic_shapes=shapes)
    program = program.run_decompositions(decomposition_table())
    kwargs = reorder_kwargs(inputs.kwargs, program.call_spec.in_spec) if inputs.kwargs else {}
    user_values = iter(pytree.tree_leaves((inputs.args, kwargs)))
    values: dict[str, Any] = {}  # placeholder name -> what it holds
    torch_names: dict[str, str] = {}  # weight placeholder -> its torch name
    for spec in program.graph_signature.input_specs:
        name = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            values[name] = next(user_values)
        elif spec.kind in _WEIGHT_KINDS:
            store = program.state_dict if spec.target in program.state_dict else \
                program.constants
            values[name] = store[spec.target]
            torch_names[name] = spec.target
        else:
            raise Unsupported(why=f"(exported input of kind {spec.kind.name})")
    module = program.graph_module
    placeholders = [n for n in module.graph.nodes if n.op == "placeholder"]
    user_names = {s.arg.name for s in program.graph_signature.input_specs
                  if s.kind == InputKind.USER_INPUT}
    recording = record(module, [values[p.name] for p in placeholders], user_names)
    symbols = None
    if dynamic:
        symbols = SymbolMap()
        leaf_names = {id(leaf): name for leaf, name in zip(inputs.leaves, inputs.names)}
        for p in placeholders:
            if p.name in user_names and isinstance(values[p.name], torch.Tensor):
                symbols.bind(p.meta["val"], dynamic.get(leaf_names[id(values[p.name])], {}))
        recording.types.update(symbols.types(module))
    return _ExportFrontend(module, recording, inputs, values, torch_names, symbols).run()


class _ExportFrontend(Frontend):
    def __init__(self, module: torch.fx.GraphModule, recording, inputs: Inputs,
                 values: dict[str, Any], torch_names: dict[str, str],
                 symbols: SymbolMap | None = None):
        super().__init__(module, recording)
        self.symbols = symbols
        types = None
        if symbols is not None:  # the inputs' types over the symbolic dims
            types = {id(values[p]): recording.types[p] for p in values
                     if p not in torch_names and isinstance(values[p], torch.Tensor)}
        self.input_nodes = inputs.add_to(self.ctx.graph, types)
        self.values = values
        self.torch_names = torch_names

    def placeholder(self, node: torch.fx.Node) -> Any:
        value = self.values[node.name]
        if node.name in self.torch_names:
            return self.ctx.weight(value, self.torch_names[node.name])
        return self.input_nodes[id(value)] if isinstance(value, torch.Tensor) else value

    def get_attr(self, node: torch.fx.Node) -> Any:
        value: Any = self.module
        for part in node.target.split("."):
            value = getattr(value, part)
        return self.ctx.weight(value, node.target) if isinstance(value, torch.Tensor) else value

    def lookup(self, node: torch.fx.Node) -> Converter | None:
        if self.symbols is not None and node.target in SIZE_OPS:
            return SIZE_OPS[node.target]
        if node.target is operator.getitem:
            return getitem
        packet = getattr(node.target, "overloadpacket", None)
        return ATEN.get(packet)

    def op_name(self, node: torch.fx.Node) -> str:
        return str(node.target)

    def source(self, node: torch.fx.Node) -> str | None:
        return source_from_stack_trace(node.meta.get("stack_trace"))

    def _foldable(self, node: torch.fx.Node, args: Any, kwargs: Any) -> bool:
        """A value computed from symbolic sizes is never folded to its example value."""
        if self.symbols is not None and any(
                isinstance(v, SymDim) for v in pytree.tree_leaves((args, kwargs))):
            return False
        return super()._foldable(node, args, kwargs)

    def is_random(self, node: torch.fx.Node) -> bool:
        tags = getattr(node.target, "tags", ())
        return torch.Tag.nondeterministic_seeded in tags
