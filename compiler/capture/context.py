"""The state one capture attempt shares with every converter: the IR graph being built,
the torch node being converted (its name, source line and recorded type) and the rules
that turn Python scalars and constant tensors into IR operands.

Converters receive values of three kinds: an ``ir.Node`` (a tensor computed in the
graph), a ``torch.Tensor`` (a constant known at capture, made a weight on first use)
and plain Python values (ints from static shapes, dtypes, lists).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ir import DTYPES, Graph, Node, TensorType
from ir.types import is_float


class Unsupported(Exception):
    """A converter declines a node; the frontend records it and carries on."""

    def __init__(self, op: str | None = None, why: str = ""):
        self.op = op
        self.why = why
        super().__init__(f"{op or ''} {why}".strip())


def ir_dtype(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise Unsupported(why=f"(dtype {name} is not an IR dtype)")
    return name


def torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def tensor_type(t: torch.Tensor) -> TensorType:
    return TensorType(tuple(int(d) for d in t.shape), ir_dtype(t.dtype))


def scalar_dtype(value: bool | int | float, like: str) -> str:
    """Torch promotion for a Python scalar next to a tensor of dtype ``like``: the scalar
    takes the tensor's dtype unless it is of a higher category (float with an int tensor)."""
    if isinstance(value, bool):
        return like
    if isinstance(value, int):
        return like if like != "bool" else "int64"
    return like if is_float(like) else "float32"


def python_value(value: Any, dtype: str) -> bool | int | float:
    """``value`` as the Python type a constant of ``dtype`` holds."""
    if dtype == "bool":
        return bool(value)
    return float(value) if is_float(dtype) else int(value)


class Context:
    """Builds one ``ir.Graph``; every node it emits carries the current torch node's
    source line, and is named after the torch node."""

    def __init__(self) -> None:
        self.graph = Graph()
        self.name = "v"
        self.source: str | None = None
        self.expected: Any = None  # TensorType (or a tuple of them) recorded for the node
        self.value: Any = None  # the recorded value, for results that are not tensors
        self._weights: dict[Any, Node] = {}
        self.known: dict[int, torch.Tensor] = {}  # id(node) -> its value, when input-free
        self.tensor_names: dict[int, str] = {}  # id(constant tensor) -> the node it came from

    def concrete(self, value: Any) -> torch.Tensor | None:
        """The value of a tensor operand when it does not depend on the inputs, else None."""
        if isinstance(value, torch.Tensor):
            return value
        return self.known.get(id(value)) if isinstance(value, Node) else None

    def begin(self, name: str, source: str | None, expected: Any, value: Any = None) -> None:
        self.name, self.source, self.expected, self.value = name, source, expected, value

    @property
    def out_type(self) -> TensorType:
        """The recorded type of the current node's (single tensor) result."""
        if not isinstance(self.expected, TensorType):
            raise Unsupported(why="(no recorded tensor type)")
        return self.expected

    # ----- emitting --------------------------------------------------------------
    def emit(self, op: str, inputs: list[Node] | tuple[Node, ...], **attrs: Any) -> Node:
        meta = {"source": self.source} if self.source else None
        attrs = {k: _dims(v) for k, v in attrs.items()}  # symbolic sizes as IR dims
        return self.graph.call(op, inputs, attrs, name=self.name, meta=meta)

    def constant(self, value: bool | int | float, dtype: str) -> Node:
        node = self.graph.add_constant(python_value(value, dtype), dtype, name=f"{self.name}_c")
        if self.source:
            node.meta["source"] = self.source
        return node

    def weight(self, tensor: torch.Tensor, torch_name: str, key: Any = None) -> Node:
        """A weight for ``tensor``, one per ``key`` (default: the tensor's identity)."""
        key = ("id", id(tensor)) if key is None else key
        if key not in self._weights:
            data = _to_numpy(tensor)
            self._weights[key] = self.graph.add_weight(torch_name, data,
                                                       meta={"torch_name": torch_name})
        return self._weights[key]

    def array_weight(self, data: np.ndarray, torch_name: str) -> Node:
        """A new weight holding an array computed at capture (a transposed weight, say)."""
        return self.graph.add_weight(torch_name, np.asarray(data, order="C"),
                                     meta={"torch_name": torch_name})

    # ----- operands --------------------------------------------------------------
    def tensor(self, value: Any, like: str = "float32") -> Node:
        """``value`` as an IR operand: a node as is, a constant tensor as a weight, a
        Python scalar as a constant whose dtype follows torch promotion next to ``like``."""
        if isinstance(value, Node):
            return value
        if isinstance(value, torch.Tensor):
            if value.dim() == 0 and value.dtype in _SCALAR_DTYPES:
                return self.constant(value.item(), ir_dtype(value.dtype))
            return self.weight(value, self.tensor_names.get(id(value), f"{self.name}_const"))
        if isinstance(value, (bool, int, float)):
            return self.constant(value, scalar_dtype(value, like))
        raise Unsupported(why=f"(operand of type {type(value).__name__})")

    def operands(self, *values: Any) -> list[Node]:
        """Several operands of one elementwise op; scalars take the tensors' dtype."""
        nodes = [v for v in values if isinstance(v, Node)]
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        like = nodes[0].dtype if nodes else (ir_dtype(tensors[0].dtype) if tensors else None)
        if like is None:
            raise Unsupported(why="(no tensor operand)")
        return [self.tensor(v, like) for v in values]


_SCALAR_DTYPES = (torch.float32, torch.float64, torch.int64, torch.int32, torch.bool)


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's data as numpy, sharing the parameter's memory where it can (a second
    copy of every weight would cost as much as the model). The graph never writes to its
    weight arrays, and ``CompiledModule`` refuses calls once a parameter of the model was
    changed in place (``compiler.frozen.FrozenState``)."""
    if tensor.dtype == torch.bfloat16:
        raise Unsupported(why="(bfloat16 weights cannot be held as numpy arrays)")
    ir_dtype(tensor.dtype)
    data = tensor.detach()
    if data.device.type != "cpu" or not data.is_contiguous() or data.is_neg() or \
            data.is_conj():
        return data.cpu().contiguous().numpy().copy()
    return data.numpy()


def contains_node(value: Any) -> bool:
    """Whether a (nested) converter value holds an IR node."""
    if isinstance(value, Node):
        return True
    if isinstance(value, (list, tuple)):
        return any(contains_node(v) for v in value)
    if isinstance(value, dict):
        return any(contains_node(v) for v in value.values())
    return False


def _dims(value: Any) -> Any:
    """Attr values with ``SymDim`` (symbolic sizes) spelled as IR dims."""
    from compiler.dynamic import SymDim

    if isinstance(value, SymDim):
        return value.dim
    if isinstance(value, (list, tuple)):
        return type(value)(_dims(v) for v in value)
    return value
