"""The library candidate on CPU: large conv2d and linear kernels run by oneDNN / MKL
through PyTorch, with the weights prepacked once into the library's blocked layout.

This is how Inductor with ``freezing=True`` reaches its ResNet speed
(``torch/_inductor/fx_passes/mkldnn_fusion.py``): ``mkldnn._convolution_pointwise`` with a
weight from ``mkldnn._reorder_convolution_weight``, with relu fused as a post-op and a
residual add as a binary post-op, and MKL's packed sgemm (``mkl._mkl_linear``).

Which kernels: conv2d(+bias) or linear(+bias) as the anchor, then optionally relu or
gelu, then optionally ``add`` of another activation, then optionally relu; float32, static shapes,
at least ``MIN_FLOPS``.

How the program calls one: each call site gets an id; its kernel is a PrimFunc that calls
the packed function ``dscompile.library.run(id, inputs..., out)`` (``library_calls.py``).
The function is registered when this module is imported, which ``backends.tvm.build``
does: a program loaded from the compile cache finds it. The prepacked weights live in a
``LibraryKernel`` per id, built from the graph's weights by ``bind`` when a
``BuiltModule`` is created (after a build and after a load from the cache alike) and
kept alive by that module; the registry holds them weakly.
"""

from __future__ import annotations

import ctypes
import threading
import uuid
import weakref
from dataclasses import asdict, dataclass, field
from math import prod
from typing import Any

import numpy as np
import torch
import tvm_ffi

from compiler.cost import node_flops
from compiler.errors import DeviceError
from compiler.kernels import kernel_inputs
from ir import Graph, Node

FUNC = "dscompile.library.run"
NAME = "onednn"  # the candidate's name in decisions and the report
MIN_FLOPS = 4_000_000  # below this the Python call (tens of microseconds) costs too much
_LEAVES = ("weight", "constant")


@dataclass
class LibrarySpec:
    """What one library kernel computes. ``inputs`` are the kernel's activations in the
    order its PrimFunc takes them; ``x``/``other`` index into them."""

    op: str  # "conv2d" or "linear"
    weight: str  # weight node names
    bias: str | None
    attrs: dict[str, Any]
    x: int
    inputs: list[list[int]]  # shapes of the activations
    out: list[int]
    unary: str | None = None  # relu or gelu after the anchor
    algorithm: str = ""  # gelu's approximation ("none" or "tanh")
    other: int | None = None  # the activation added after it
    post_unary: str | None = None  # relu after the add
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LibrarySpec:
        return cls(**data)


def available() -> bool:
    return torch.backends.mkldnn.is_available()


def match(members: list[Node]) -> LibrarySpec | None:
    """The spec of a kernel the library can compute, or None."""
    anchor = members[0]
    if anchor.op not in ("conv2d", "linear") or not available():
        return None
    if not all(n.type.is_static and n.dtype == "float32" for n in members):
        return None
    if node_flops(anchor) < MIN_FLOPS:
        return None
    x, w, *bias = anchor.inputs
    if x.op in _LEAVES or w.op != "weight" or any(b.op != "weight" for b in bias):
        return None
    acts = [n for n in kernel_inputs(members) if n.op not in _LEAVES]
    spec = LibrarySpec(op=anchor.op, weight=w.name, bias=bias[0].name if bias else None,
                       attrs=_anchor_attrs(anchor), x=acts.index(x),
                       inputs=[list(n.shape) for n in acts], out=list(members[-1].shape))
    previous = anchor
    for node in members[1:]:
        if previous not in node.inputs:
            return None
        if node.op in ("relu", "gelu") and spec.other is None and spec.unary is None:
            spec.unary = node.op
            spec.algorithm = node.attrs.get("approximate", "none") if node.op == "gelu" else ""
        elif node.op == "relu" and spec.other is not None and spec.post_unary is None:
            spec.post_unary = "relu"
        elif node.op == "add" and spec.other is None and len(node.inputs) == 2:
            other = node.inputs[1] if node.inputs[0] is previous else node.inputs[0]
            if other.op in _LEAVES or other is previous or other.shape != node.shape \
                    or node.shape != anchor.shape:
                return None
            spec.other = acts.index(other)
        else:
            return None
        previous = node
    return spec


def _anchor_attrs(anchor: Node) -> dict[str, Any]:
    if anchor.op == "linear":
        return {}
    a = anchor.attrs
    return {"stride": list(a.get("stride", (1, 1))), "padding": list(a.get("padding", (0, 0))),
            "dilation": list(a.get("dilation", (1, 1))), "groups": int(a.get("groups", 1))}


class LibraryKernel:
    """One call site: its prepacked weights and the library call."""

    def __init__(self, spec: LibrarySpec, weights: dict[str, np.ndarray]):
        self.spec = spec
        self.weight = torch.from_numpy(np.ascontiguousarray(weights[spec.weight]).copy())
        self.bias = None if spec.bias is None else \
            torch.from_numpy(np.ascontiguousarray(weights[spec.bias]).copy())
        with torch.no_grad():
            self.packed = self._prepack()

    def _prepack(self) -> torch.Tensor:
        s = self.spec
        if s.op == "conv2d":
            a = s.attrs
            return torch.ops.mkldnn._reorder_convolution_weight(
                self.weight, a["padding"], a["stride"], a["dilation"], a["groups"],
                s.inputs[s.x])
        if torch._C.has_mkl:
            return torch.ops.mkl._mkl_reorder_linear_weight(self.weight, self.rows)
        return self.weight

    @property
    def rows(self) -> int:
        return prod(self.spec.inputs[self.spec.x][:-1])

    def compute(self, acts: list[torch.Tensor]) -> torch.Tensor:
        """The kernel's result for its activations (a new tensor)."""
        s = self.spec
        x = acts[s.x]
        other = None if s.other is None else acts[s.other]
        with torch.no_grad():
            if s.op == "conv2d":
                y = self._conv(x, other)
            else:
                y = self._linear(x)
                if s.unary == "relu":
                    y.relu_()
                elif s.unary == "gelu":
                    y = torch.nn.functional.gelu(y, approximate=s.algorithm)
                if other is not None:
                    y = y.view(other.shape).add_(other)
                if s.post_unary:
                    y.relu_()
        return y

    def _conv(self, x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        s, a, mk = self.spec, self.spec.attrs, torch.ops.mkldnn
        conv = (a["padding"], a["stride"], a["dilation"], a["groups"])
        if other is None:
            return mk._convolution_pointwise(x, self.packed, self.bias, *conv,
                                             s.unary or "none", [], s.algorithm)
        if s.unary is None:  # conv + add (+ relu): the add and relu fused as post-ops
            return mk._convolution_pointwise.binary(x, other, self.packed, self.bias, *conv,
                                                    "add", None, s.post_unary, [], "")
        y = mk._convolution_pointwise(x, self.packed, self.bias, *conv, s.unary, [],
                                      s.algorithm)
        y = y.add_(other)
        return y.relu_() if s.post_unary else y

    def _linear(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(self.rows, x.shape[-1])
        if torch._C.has_mkl:
            return torch.ops.mkl._mkl_linear(x2, self.packed, self.weight, self.bias, self.rows)
        return torch.nn.functional.linear(x2, self.weight, self.bias)

    def run(self, acts: list[torch.Tensor], out: torch.Tensor) -> None:
        """Compute into ``out`` (the program's buffer, possibly over an input: the result
        is complete before it is written)."""
        acts = [a.view(shape) for a, shape in zip(acts, self.spec.inputs)]  # flat views
        out.copy_(self.compute(acts).reshape(out.shape))


# ----- the registry and the packed function ------------------------------------------

_lock = threading.Lock()
_kernels: weakref.WeakValueDictionary[str, LibraryKernel] = weakref.WeakValueDictionary()


def bind(kernels: list[Any], graph: Graph) -> list[LibraryKernel]:
    """A ``LibraryKernel`` for every kernel with a library spec (``KernelInfo.library``),
    registered by id; the caller keeps the returned list alive as long as its program."""
    bound = []
    for k in kernels:
        data = getattr(k, "library", None)
        if not data:
            continue
        spec = LibrarySpec.from_dict(data)
        with _lock:
            kernel = _kernels.get(spec.id)
            if kernel is None:
                kernel = _kernels[spec.id] = LibraryKernel(spec, graph.weights)
        bound.append(kernel)
    return bound


def torch_view(t: Any) -> torch.Tensor:
    """A torch tensor over a TVM tensor's memory, without DLPack (the tensors a TIR
    ``call_packed`` passes are stack views that DLPack export cannot handle)."""
    shape = tuple(int(d) for d in t.shape)
    if str(t.dtype) != "float32":
        raise TypeError(f"library kernels take float32, got {t.dtype}")
    n = prod(shape)
    if n == 0:
        return torch.empty(shape)
    buffer = (ctypes.c_float * n).from_address(t.data_ptr())
    return torch.frombuffer(buffer, dtype=torch.float32, count=n).view(shape)


@tvm_ffi.register_global_func(FUNC, override=True)
def _run(kernel_id: str, *tensors: Any) -> None:
    kernel = _kernels.get(str(kernel_id))
    if kernel is None:
        raise DeviceError(f"library kernel {kernel_id} is not bound: a dscompile program "
                          f"that calls oneDNN must be loaded through dscompile (its "
                          f"prepacked weights are rebuilt from the graph)")
    *acts, out = [torch_view(t) for t in tensors]
    kernel.run(acts, out)
