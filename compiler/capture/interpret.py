"""The reference interpreter: runs an ``ir.Graph`` on CPU with eager PyTorch, one table
entry per IR op. It is the oracle for capture tests, numerics bisection and constant
folding, so each entry is the plainest torch call with the op's semantics.

``run_graph_numpy(graph, inputs)`` runs a whole graph; ``eval_op(op, args, attrs)`` one op
(attrs missing from ``attrs`` take the registry's defaults).

Op           Torch reference
-----------  ---------------------------------------------------------------
relu ... reciprocal, neg, abs, logical_not   the torch function of the same name
gelu         F.gelu(x, approximate)          leaky_relu  F.leaky_relu(x, negative_slope)
clamp        torch.clamp(x, min, max)        cast        x.to(dtype)
add ... minimum, eq ... logical_or            torch binary ops (broadcasting, promotion)
where        torch.where(cond, a, b)         batch_norm  F.batch_norm(training=False)
sum/mean/amax/amin  over dims (None: all)    softmax/log_softmax  over dim
layer_norm   F.layer_norm over the last normalized_ndim dims
max_pool2d/avg_pool2d/adaptive_avg_pool2d/conv2d/linear   F.* of the same name
matmul       torch.matmul                    sdpa        F.scaled_dot_product_attention
embedding    F.embedding(indices, table)     reshape/permute/expand   Tensor methods
slice        x[..., start:end:step] on dim   concat      torch.cat
pad          F.pad(x, pads, value=value)     tril/triu   torch.tril/triu(x, diagonal)
cumsum       torch.cumsum                    arange/full torch.arange/torch.full
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ir import Graph, Node
from ir.registry import get_op

OpFn = Callable[[list[torch.Tensor], dict[str, Any]], torch.Tensor]


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _unary(fn: Callable) -> OpFn:
    return lambda a, at: fn(a[0])


def _binary(fn: Callable) -> OpFn:
    return lambda a, at: fn(a[0], a[1])


def _reduce(fn: Callable) -> OpFn:
    def run(a: list[torch.Tensor], at: dict) -> torch.Tensor:
        x = a[0]
        dims = tuple(range(x.dim())) if at["dims"] is None else tuple(at["dims"])
        if not dims:
            return x
        if fn is torch.mean and not x.is_floating_point():
            x = x.float()
        return fn(x, dim=dims, keepdim=at["keepdim"])
    return run


def _optional(a: list[torch.Tensor], i: int) -> torch.Tensor | None:
    return a[i] if len(a) > i else None


def _batch_norm(a: list[torch.Tensor], at: dict) -> torch.Tensor:
    return F.batch_norm(a[0], a[1], a[2], _optional(a, 3), _optional(a, 4), training=False,
                        eps=at["eps"])


def _layer_norm(a: list[torch.Tensor], at: dict) -> torch.Tensor:
    x = a[0]
    return F.layer_norm(x, x.shape[x.dim() - at["normalized_ndim"]:], _optional(a, 1),
                        _optional(a, 2), at["eps"])


def _slice(a: list[torch.Tensor], at: dict) -> torch.Tensor:
    index = [slice(None)] * a[0].dim()
    index[at["dim"]] = slice(at["start"], at["end"], at["step"])
    return a[0][tuple(index)]


def _sdpa(a: list[torch.Tensor], at: dict) -> torch.Tensor:
    return F.scaled_dot_product_attention(a[0], a[1], a[2], attn_mask=_optional(a, 3),
                                          is_causal=at["is_causal"], scale=at["scale"])


def _promoted(fn: Callable) -> OpFn:
    """Ops whose torch kernels do not promote mixed dtypes themselves."""
    def run(a: list[torch.Tensor], at: dict) -> torch.Tensor:
        dtype = torch.result_type(a[0], a[1])
        return fn(a[0].to(dtype), a[1].to(dtype))
    return run


OPS: dict[str, OpFn] = {
    # elementwise
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
    "cast": lambda a, at: a[0].to(_dtype(at["dtype"])),
    "add": _binary(torch.add), "sub": _binary(torch.sub), "mul": _binary(torch.mul),
    "div": _binary(torch.div), "pow": _binary(torch.pow),
    "maximum": _promoted(torch.maximum), "minimum": _promoted(torch.minimum),
    "eq": _binary(torch.eq), "ne": _binary(torch.ne), "lt": _binary(torch.lt),
    "le": _binary(torch.le), "gt": _binary(torch.gt), "ge": _binary(torch.ge),
    "logical_and": _binary(torch.logical_and), "logical_or": _binary(torch.logical_or),
    "where": lambda a, at: torch.where(a[0].bool(), a[1], a[2]),
    "batch_norm": _batch_norm,
    # reductions
    "sum": _reduce(torch.sum), "mean": _reduce(torch.mean), "amax": _reduce(torch.amax),
    "amin": _reduce(torch.amin),
    "softmax": lambda a, at: torch.softmax(a[0].float() if not a[0].is_floating_point()
                                           else a[0], at["dim"]),
    "log_softmax": lambda a, at: torch.log_softmax(a[0].float() if not
                                                   a[0].is_floating_point() else a[0],
                                                   at["dim"]),
    "layer_norm": _layer_norm,
    "max_pool2d": lambda a, at: F.max_pool2d(a[0], at["kernel"], at["stride"], at["padding"],
                                             at["dilation"], ceil_mode=at["ceil_mode"]),
    "avg_pool2d": lambda a, at: F.avg_pool2d(a[0], at["kernel"], at["stride"], at["padding"],
                                             at["ceil_mode"], at["count_include_pad"]),
    "adaptive_avg_pool2d": lambda a, at: F.adaptive_avg_pool2d(a[0], at["output_size"]),
    # anchors and opaque ops
    "conv2d": lambda a, at: F.conv2d(a[0], a[1], _optional(a, 2), at["stride"],
                                     at["padding"], at["dilation"], at["groups"]),
    "linear": lambda a, at: F.linear(a[0], a[1], _optional(a, 2)),
    "matmul": _promoted(torch.matmul),
    "sdpa": _sdpa,
    "embedding": lambda a, at: F.embedding(a[1].long(), a[0]),
    "gather": lambda a, at: torch.gather(a[0], at["dim"], a[1].long()),
    "index": lambda a, at: a[0][(slice(None),) * at["first"] + tuple(i.long() for i in a[1:])],
    "cumsum": lambda a, at: torch.cumsum(a[0], at["dim"]),
    # layout
    "reshape": lambda a, at: a[0].reshape(at["shape"]),
    "permute": lambda a, at: a[0].permute(at["dims"]),
    "expand": lambda a, at: a[0].expand(at["shape"]),
    "slice": _slice,
    "concat": lambda a, at: torch.cat(a, at["dim"]),
    "pad": lambda a, at: F.pad(a[0], at["pads"], value=at["value"]),
    "tril": lambda a, at: torch.tril(a[0], at["diagonal"]),
    "triu": lambda a, at: torch.triu(a[0], at["diagonal"]),
    # sources
    "arange": lambda a, at: torch.arange(at["start"], at["end"], at["step"],
                                         dtype=_dtype(at["dtype"])),
    "full": lambda a, at: torch.full(at["shape"], at["value"], dtype=_dtype(at["dtype"])),
}


def eval_op(op: str, args: Sequence[torch.Tensor], attrs: dict[str, Any]) -> torch.Tensor:
    """One IR op on torch tensors; attrs default as the registry says."""
    if op not in OPS:
        raise NotImplementedError(f"the reference interpreter has no entry for op {op!r}")
    return OPS[op](list(args), {**get_op(op).optional_attrs, **attrs})


def eval_node(node: Node, args: Sequence[torch.Tensor]) -> torch.Tensor:
    """``node`` on torch operands, cast to the node's dtype and checked against its shape."""
    out = eval_op(node.op, args, node.attrs).to(_dtype(node.dtype))
    if tuple(out.shape) != tuple(node.shape):
        raise ValueError(f"interpreting {node.describe()} gave shape {tuple(out.shape)}, "
                         f"its type says {node.type}")
    return out


def run_graph_values(graph: Graph, inputs: Sequence[Any]) -> dict[Node, torch.Tensor]:
    """Every node's value when ``graph`` runs on ``inputs`` (numpy arrays or torch tensors,
    one per ``graph.inputs``), as torch tensors: bfloat16 has no numpy dtype."""
    if len(inputs) != len(graph.inputs):
        raise ValueError(f"graph takes {len(graph.inputs)} inputs, got {len(inputs)}")
    values: dict[Node, torch.Tensor] = {}
    for node, value in zip(graph.inputs, inputs):
        tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        values[node] = tensor.detach().cpu().to(_dtype(node.dtype))
    for node in graph.nodes:
        if node.op == "input":
            continue
        if node.op == "weight":
            values[node] = torch.from_numpy(np.asarray(graph.weight_data(node), order="C"))
        elif node.op == "constant":
            values[node] = torch.tensor(node.attrs["value"], dtype=_dtype(node.dtype))
        else:
            values[node] = eval_node(node, [values[i] for i in node.inputs])
    return values


def run_graph_numpy(graph: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run ``graph`` on numpy (or torch) ``inputs``, one per ``graph.inputs``; returns the
    outputs as numpy arrays."""
    values = run_graph_values(graph, inputs)
    return [values[o].numpy() for o in graph.outputs]
