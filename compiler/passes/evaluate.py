"""A small reference evaluator for IR ops over torch (CPU, eager), used by constant
folding and by the pass tests to check numerics before/after a pass.

One table entry per op, ``fn(args: list[Tensor], attrs: dict) -> Tensor``, with attrs
defaults filled from the registry. ``compiler.capture.interpret.run_graph_numpy`` is the
project's reference interpreter; this table exists so that the passes do not depend on
capture (and it is preferred there when present, see ``eval_node``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ir import Graph, Node
from ir.registry import get_op

Fn = Callable[[list, dict], torch.Tensor]


def _torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _unary(f: Callable) -> Fn:
    return lambda a, attrs: f(a[0])


def _binary(f: Callable) -> Fn:
    return lambda a, attrs: f(a[0], a[1])


def _reduce(f: Callable) -> Fn:
    def run(a, attrs):
        dims = attrs["dims"]
        x = a[0]
        if dims is None:
            dims = tuple(range(x.dim()))
        return f(x, dim=tuple(dims), keepdim=attrs["keepdim"]) if dims else x
    return run


def _batch_norm(a, attrs):
    x, mean, var, *rest = a
    w = rest[0] if len(rest) > 0 else None
    b = rest[1] if len(rest) > 1 else None
    return F.batch_norm(x, mean, var, w, b, training=False, eps=attrs["eps"])


def _layer_norm(a, attrs):
    x = a[0]
    shape = x.shape[x.dim() - attrs["normalized_ndim"]:]
    w = a[1] if len(a) > 1 else None
    b = a[2] if len(a) > 2 else None
    return F.layer_norm(x, shape, w, b, attrs["eps"])


def _slice(a, attrs):
    index = [slice(None)] * a[0].dim()
    index[attrs["dim"]] = slice(attrs["start"], attrs["end"], attrs["step"])
    return a[0][tuple(index)]


def _sdpa(a, attrs):
    mask = a[3] if len(a) > 3 else None
    return F.scaled_dot_product_attention(a[0], a[1], a[2], attn_mask=mask,
                                          is_causal=attrs["is_causal"], scale=attrs["scale"])


OPS: dict[str, Fn] = {
    "relu": _unary(torch.relu), "relu6": _unary(F.relu6), "silu": _unary(F.silu),
    "sigmoid": _unary(torch.sigmoid), "tanh": _unary(torch.tanh),
    "hardswish": _unary(F.hardswish), "hardsigmoid": _unary(F.hardsigmoid),
    "exp": _unary(torch.exp), "log": _unary(torch.log), "sqrt": _unary(torch.sqrt),
    "rsqrt": _unary(torch.rsqrt), "erf": _unary(torch.erf), "sin": _unary(torch.sin),
    "cos": _unary(torch.cos), "reciprocal": _unary(torch.reciprocal),
    "neg": _unary(torch.neg), "abs": _unary(torch.abs),
    "logical_not": _unary(torch.logical_not),
    "gelu": lambda a, at: F.gelu(a[0], approximate=at["approximate"]),
    "leaky_relu": lambda a, at: F.leaky_relu(a[0], at["negative_slope"]),
    "clamp": lambda a, at: torch.clamp(a[0], at["min"], at["max"]),
    "cast": lambda a, at: a[0].to(_torch_dtype(at["dtype"])),
    "add": _binary(torch.add), "sub": _binary(torch.sub), "mul": _binary(torch.mul),
    "div": _binary(torch.div), "pow": _binary(torch.pow),
    "maximum": _binary(torch.maximum), "minimum": _binary(torch.minimum),
    "eq": _binary(torch.eq), "ne": _binary(torch.ne), "lt": _binary(torch.lt),
    "le": _binary(torch.le), "gt": _binary(torch.gt), "ge": _binary(torch.ge),
    "logical_and": _binary(torch.logical_and), "logical_or": _binary(torch.logical_or),
    "where": lambda a, at: torch.where(a[0], a[1], a[2]),
    "batch_norm": _batch_norm,
    "sum": _reduce(torch.sum), "mean": _reduce(torch.mean), "amax": _reduce(torch.amax),
    "amin": _reduce(torch.amin),
    "softmax": lambda a, at: torch.softmax(a[0], at["dim"]),
    "log_softmax": lambda a, at: torch.log_softmax(a[0], at["dim"]),
    "layer_norm": _layer_norm,
    "max_pool2d": lambda a, at: F.max_pool2d(a[0], at["kernel"], at["stride"], at["padding"],
                                             at["dilation"], ceil_mode=at["ceil_mode"]),
    "avg_pool2d": lambda a, at: F.avg_pool2d(a[0], at["kernel"], at["stride"], at["padding"],
                                             at["ceil_mode"], at["count_include_pad"]),
    "adaptive_avg_pool2d": lambda a, at: F.adaptive_avg_pool2d(a[0], at["output_size"]),
    "conv2d": lambda a, at: F.conv2d(a[0], a[1], a[2] if len(a) > 2 else None, at["stride"],
                                     at["padding"], at["dilation"], at["groups"]),
    "linear": lambda a, at: F.linear(a[0], a[1], a[2] if len(a) > 2 else None),
    "matmul": _binary(torch.matmul),
    "sdpa": _sdpa,
    "embedding": lambda a, at: F.embedding(a[1], a[0]),
    "reshape": lambda a, at: a[0].reshape(at["shape"]),
    "permute": lambda a, at: a[0].permute(at["dims"]),
    "expand": lambda a, at: a[0].expand(at["shape"]),
    "slice": _slice,
    "concat": lambda a, at: torch.cat(a, at["dim"]),
    "pad": lambda a, at: F.pad(a[0], at["pads"], value=at["value"]),
    "tril": lambda a, at: torch.tril(a[0], at["diagonal"]),
    "triu": lambda a, at: torch.triu(a[0], at["diagonal"]),
    "cumsum": lambda a, at: torch.cumsum(a[0], at["dim"]),
    "arange": lambda a, at: torch.arange(at["start"], at["end"], at["step"],
                                         dtype=_torch_dtype(at["dtype"])),
    "full": lambda a, at: torch.full(at["shape"], at["value"], dtype=_torch_dtype(at["dtype"])),
}


def full_attrs(node: Node) -> dict:
    """The node's attrs with the registry's defaults filled in."""
    return {**get_op(node.op).optional_attrs, **node.attrs}


def eval_node(node: Node, args: Sequence[np.ndarray]) -> np.ndarray:
    """Compute ``node`` on numpy operands; the result has the node's dtype and shape."""
    if node.op not in OPS:
        raise NotImplementedError(f"no evaluator for op {node.op!r}")
    tensors = [torch.from_numpy(np.array(a, copy=True)) for a in args]  # never alias weights
    out = OPS[node.op](tensors, full_attrs(node))
    result = out.detach().numpy().astype(node.dtype, copy=False)
    if tuple(result.shape) != tuple(node.shape):
        raise ValueError(f"evaluating {node.describe()} gave shape {result.shape}, "
                         f"type says {node.type}")
    return result


def run_graph(graph: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run the whole graph on numpy inputs (tests use this to compare before/after)."""
    values: dict[int, np.ndarray] = {}
    for node, value in zip(graph.inputs, inputs):
        values[id(node)] = np.asarray(value)
    for node in graph.nodes:
        if node.op == "input":
            continue
        if node.op == "weight":
            values[id(node)] = graph.weight_data(node)
        elif node.op == "constant":
            values[id(node)] = np.array(node.attrs["value"], dtype=node.dtype)
        else:
            values[id(node)] = eval_node(node, [values[id(i)] for i in node.inputs])
    return [values[id(o)] for o in graph.outputs]
