"""Conversion tables for torch.fx graphs from ``symbolic_trace``: one entry per torch
function (``FUNCTIONS``), Tensor method (``METHODS``, by name) and nn.Module type
(``MODULES``). Functions and methods take torch's own arguments, so aliases share one
converter; a module converter also gets the module and its qualified name."""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from compiler.capture import emit as E
from compiler.capture.context import Context, Unsupported
from compiler.capture.indexing import gather, getitem, index_select
from ir import Node


def _unary(op: str) -> Callable:
    return lambda ctx, x, *args, **kwargs: E.unary(ctx, op, x)


def _binary(op: str) -> Callable:
    return lambda ctx, a, b: E.binary(ctx, op, a, b)


def _reflected(op: str) -> Callable:
    return lambda ctx, a, b: E.binary(ctx, op, b, a)


def _reduce(op: str) -> Callable:
    return lambda ctx, x, *args, **kwargs: E.reduce(ctx, op, x, *args, **kwargs)


def _getattr(ctx: Context, x: Any, name: str) -> Any:
    if isinstance(x, Node) and name in ("T", "mT"):
        return E.transpose(ctx, x, -2, -1) if name == "mT" else E.permute(
            ctx, x, tuple(reversed(range(len(x.shape)))))
    if name in ("shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout"):
        return ctx.value
    raise Unsupported(f"Tensor.{name}")


# Shared by torch.* functions and Tensor methods of the same name.
_COMMON: dict[str, Callable] = {
    **{name: _unary(name) for name in ("relu", "sigmoid", "tanh", "exp", "log", "sqrt",
                                       "rsqrt", "erf", "sin", "cos", "reciprocal", "neg",
                                       "abs")},
    "logical_not": lambda ctx, x: E.logical_not(ctx, x),
    "bitwise_not": lambda ctx, x: E.logical_not(ctx, x),
    "add": E.add, "sub": E.sub, "subtract": E.sub, "mul": _binary("mul"),
    "multiply": _binary("mul"), "div": E.div, "divide": E.div, "true_divide": E.div,
    "pow": _binary("pow"), "maximum": _binary("maximum"), "minimum": _binary("minimum"),
    "rsub": lambda ctx, a, b, alpha=1: E.sub(ctx, b, a, alpha),
    **{name: _binary(name) for name in ("eq", "ne", "lt", "le", "gt", "ge")},
    "greater": _binary("gt"), "less": _binary("lt"),
    "logical_and": lambda ctx, a, b: E.logical(ctx, "logical_and", a, b),
    "logical_or": lambda ctx, a, b: E.logical(ctx, "logical_or", a, b),
    "bitwise_and": lambda ctx, a, b: E.logical(ctx, "logical_and", a, b),
    "bitwise_or": lambda ctx, a, b: E.logical(ctx, "logical_or", a, b),
    "clamp": E.clamp, "clip": E.clamp,
    "clamp_min": lambda ctx, x, m: E.clamp(ctx, x, min=m),
    "clamp_max": lambda ctx, x, m: E.clamp(ctx, x, max=m),
    "where": E.where, "masked_fill": E.masked_fill,
    "sum": _reduce("sum"), "mean": _reduce("mean"), "amax": _reduce("amax"),
    "amin": _reduce("amin"),
    "max": lambda ctx, x, other=None, keepdim=False: E.max_or_min(ctx, "max", x, other),
    "min": lambda ctx, x, other=None, keepdim=False: E.max_or_min(ctx, "min", x, other),
    "softmax": lambda ctx, x, dim=None, dtype=None, **kw: E.softmax(ctx, "softmax", x, dim,
                                                                     dtype),
    "log_softmax": lambda ctx, x, dim=None, dtype=None, **kw: E.softmax(ctx, "log_softmax",
                                                                         x, dim, dtype),
    "matmul": E.matmul, "mm": E.matmul, "bmm": E.matmul,
    "addmm": lambda ctx, b, m1, m2, *, beta=1, alpha=1: E.addmm(ctx, b, m1, m2, beta, alpha),
    "reshape": E.reshape_like_result, "view": E.reshape_like_result,
    "flatten": E.reshape_like_result, "unflatten": E.reshape_like_result,
    "squeeze": E.reshape_like_result, "unsqueeze": E.reshape_like_result,
    "view_as": E.reshape_like_result, "reshape_as": E.reshape_like_result,
    "permute": E.permute, "transpose": E.transpose, "swapaxes": E.transpose, "t": E.t,
    "expand": E.expand, "expand_as": E.expand, "broadcast_to": E.expand,
    "split": E.split, "chunk": E.chunk, "unbind": E.unbind, "narrow": E.narrow,
    "select": E.select, "index_select": index_select, "gather": gather,
    "cumsum": E.cumsum, "tril": lambda ctx, x, diagonal=0: E.tri(ctx, "tril", x, diagonal),
    "triu": lambda ctx, x, diagonal=0: E.tri(ctx, "triu", x, diagonal),
    "contiguous": E.alias, "clone": E.alias, "detach": E.alias,
    "to": E.cast_to_result, "type_as": E.cast_to_result,
    "size": E.recorded, "dim": E.recorded, "numel": E.recorded,
    "is_floating_point": E.recorded, "element_size": E.recorded,
}

FUNCTIONS: dict[Any, Callable] = {
    **{getattr(torch, name): fn for name, fn in _COMMON.items() if hasattr(torch, name)},
    torch.concat: E.concat, torch.cat: E.concat, torch.concatenate: E.concat,
    torch.stack: E.stack, torch.flatten: E.reshape_like_result,
    torch.arange: E.arange, torch.ones: E.full_of(1), torch.zeros: E.full_of(0),
    torch.full: E.full_of(None), torch.ones_like: E.full_of(1),
    torch.zeros_like: E.full_of(0), torch.full_like: E.full_of(None),
    # torch.nn.functional
    F.relu: _unary("relu"), F.relu6: _unary("relu6"), F.silu: _unary("silu"),
    F.sigmoid: _unary("sigmoid"), F.tanh: _unary("tanh"), F.hardswish: _unary("hardswish"),
    F.hardsigmoid: _unary("hardsigmoid"), F.gelu: E.gelu, F.leaky_relu: E.leaky_relu,
    F.hardtanh: E.hardtanh, F.softmax: _COMMON["softmax"], F.log_softmax: _COMMON["log_softmax"],
    F.linear: E.linear, F.conv2d: E.conv2d, F.conv1d: E.conv1d,
    F.max_pool2d: E.max_pool2d, F.avg_pool2d: E.avg_pool2d,
    F.adaptive_avg_pool2d: E.adaptive_avg_pool2d, F.layer_norm: E.layer_norm,
    F.batch_norm: E.batch_norm, F.scaled_dot_product_attention: E.sdpa,
    F.embedding: E.embedding, F.dropout: E.dropout, F.pad: E.pad,
    # Python operators on tensors (and on static sizes, which fold)
    operator.add: E.add, operator.sub: E.sub, operator.mul: _binary("mul"),
    operator.truediv: E.div, operator.pow: _binary("pow"), operator.matmul: E.matmul,
    operator.iadd: E.add, operator.isub: E.sub, operator.imul: _binary("mul"),
    operator.itruediv: E.div,
    operator.neg: _unary("neg"), operator.invert: lambda ctx, x: E.logical_not(ctx, x),
    operator.and_: _COMMON["logical_and"], operator.or_: _COMMON["logical_or"],
    **{getattr(operator, name): _binary(name) for name in ("eq", "ne", "lt", "le", "gt", "ge")},
    operator.getitem: getitem, builtins.getattr: _getattr,
}

METHODS: dict[str, Callable] = {
    **_COMMON,
    "float": E.cast_to_result, "half": E.cast_to_result, "double": E.cast_to_result,
    "int": E.cast_to_result, "long": E.cast_to_result, "bool": E.cast_to_result,
    "type": E.cast_to_result, "cpu": E.alias, "cuda": E.alias,
    "__getitem__": getitem, "__and__": _COMMON["logical_and"], "__or__": _COMMON["logical_or"],
    "__rsub__": _reflected("sub"), "__rtruediv__": lambda ctx, a, b: E.div(ctx, b, a),
    "new_ones": E.full_of(1), "new_zeros": E.full_of(0), "new_full": E.full_of(None),
    "relu6": _unary("relu6"),
}


# ----- nn.Module types -------------------------------------------------------------------


def _param(ctx: Context, module: nn.Module, path: str, name: str) -> Node | None:
    tensor = getattr(module, name, None)
    return None if tensor is None else ctx.weight(tensor, f"{path}.{name}")


def _linear(ctx, m: nn.Linear, path, x):
    return E.linear(ctx, x, _param(ctx, m, path, "weight"), _param(ctx, m, path, "bias"))


def _conv(convert: Callable) -> Callable:
    def run(ctx, m, path, x):
        if m.padding_mode != "zeros":
            raise Unsupported(why=f"(padding_mode={m.padding_mode!r})")
        return convert(ctx, x, _param(ctx, m, path, "weight"), _param(ctx, m, path, "bias"),
                       m.stride, m.padding, m.dilation, m.groups)
    return run


def _batch_norm(ctx, m: nn.modules.batchnorm._BatchNorm, path, x):
    return E.batch_norm(ctx, x, _param(ctx, m, path, "running_mean"),
                        _param(ctx, m, path, "running_var"), _param(ctx, m, path, "weight"),
                        _param(ctx, m, path, "bias"), eps=m.eps)


def _layer_norm(ctx, m: nn.LayerNorm, path, x):
    return E.layer_norm(ctx, x, m.normalized_shape, _param(ctx, m, path, "weight"),
                        _param(ctx, m, path, "bias"), m.eps)


def _embedding(ctx, m: nn.Embedding, path, x):
    return E.embedding(ctx, x, _param(ctx, m, path, "weight"), max_norm=m.max_norm)


def _module_unary(op: str) -> Callable:
    return lambda ctx, m, path, x: E.unary(ctx, op, x)


MODULES: dict[type, Callable] = {
    nn.Linear: _linear, nn.Conv2d: _conv(E.conv2d), nn.Conv1d: _conv(E.conv1d),
    nn.BatchNorm1d: _batch_norm, nn.BatchNorm2d: _batch_norm, nn.LayerNorm: _layer_norm,
    nn.Embedding: _embedding,
    nn.ReLU: _module_unary("relu"), nn.ReLU6: _module_unary("relu6"),
    nn.SiLU: _module_unary("silu"), nn.Sigmoid: _module_unary("sigmoid"),
    nn.Tanh: _module_unary("tanh"), nn.Hardswish: _module_unary("hardswish"),
    nn.Hardsigmoid: _module_unary("hardsigmoid"),
    nn.GELU: lambda ctx, m, path, x: E.gelu(ctx, x, m.approximate),
    nn.LeakyReLU: lambda ctx, m, path, x: E.leaky_relu(ctx, x, m.negative_slope),
    nn.Hardtanh: lambda ctx, m, path, x: E.hardtanh(ctx, x, m.min_val, m.max_val),
    nn.Softmax: lambda ctx, m, path, x: E.softmax(ctx, "softmax", x, m.dim),
    nn.LogSoftmax: lambda ctx, m, path, x: E.softmax(ctx, "log_softmax", x, m.dim),
    nn.Identity: lambda ctx, m, path, x, *a, **k: x,
    nn.Dropout: lambda ctx, m, path, x: x, nn.Dropout1d: lambda ctx, m, path, x: x,
    nn.Dropout2d: lambda ctx, m, path, x: x,
    nn.Flatten: lambda ctx, m, path, x: E.reshape_like_result(ctx, x),
    nn.Unflatten: lambda ctx, m, path, x: E.reshape_like_result(ctx, x),
    nn.MaxPool2d: lambda ctx, m, path, x: E.max_pool2d(ctx, x, m.kernel_size, m.stride,
                                                       m.padding, m.dilation, m.ceil_mode,
                                                       m.return_indices),
    nn.AvgPool2d: lambda ctx, m, path, x: E.avg_pool2d(ctx, x, m.kernel_size, m.stride,
                                                       m.padding, m.ceil_mode,
                                                       m.count_include_pad, m.divisor_override),
    nn.AdaptiveAvgPool2d: lambda ctx, m, path, x: E.adaptive_avg_pool2d(ctx, x, m.output_size),
}
