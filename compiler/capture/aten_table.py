"""Conversion table for ``torch.export`` graphs: one entry per ATen op (keyed by its
overload packet, so ``aten.add.Tensor`` and ``aten.add.Scalar`` share one), taking the
op's own schema arguments. ``DECOMPOSITION_KEEPS`` are the packets that stay whole when
the exported program is decomposed: everything this table maps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from compiler.capture import emit as E
from compiler.capture.context import Context, Unsupported
from compiler.capture.indexing import gather, index_select, index_tensor

aten = torch.ops.aten


class NotComputed:
    """A secondary result the IR does not compute (batch-norm's saved mean, max-pool's
    indices); using it as an operand is reported as unsupported."""

    def __init__(self, what: str):
        self.what = what

    def __repr__(self) -> str:
        return f"<{self.what} not computed>"


def _unary(op: str) -> Callable:
    return lambda ctx, x, *args, **kwargs: E.unary(ctx, op, x)


def _binary(op: str) -> Callable:
    return lambda ctx, a, b: E.binary(ctx, op, a, b)


def _logical(op: str) -> Callable:
    return lambda ctx, a, b: E.logical(ctx, op, a, b)


def _reduce(op: str) -> Callable:
    return lambda ctx, x, *args, **kwargs: E.reduce(ctx, op, x, *args, **kwargs)


def _with_unused(convert: Callable, *what: str) -> Callable:
    """Multi-output ATen ops whose first result is the only one the IR computes."""
    def run(ctx: Context, *args: Any, **kwargs: Any) -> tuple:
        return (convert(ctx, *args, **kwargs), *(NotComputed(w) for w in what))
    return run


def _convolution(ctx, x, weight, bias, stride, padding, dilation, transposed, output_padding,
                 groups):
    if transposed:
        raise Unsupported(why="(transposed convolution)")
    convert = {4: E.conv2d, 3: E.conv1d}.get(len(ctx.tensor(x).shape))
    if convert is None:
        raise Unsupported(why="(convolution other than 1-D or 2-D)")
    return convert(ctx, x, weight, bias, stride, padding, dilation, groups)


def _no_training_batch_norm(ctx, x, weight, bias, mean, var, momentum, eps):
    return E.batch_norm(ctx, x, mean, var, weight, bias, False, momentum, eps)


def _aten_batch_norm(ctx, x, weight, bias, mean, var, training, momentum, eps, *rest):
    return E.batch_norm(ctx, x, mean, var, weight, bias, training, momentum, eps)


def _nothing(ctx: Context, *args: Any, **kwargs: Any) -> None:
    """Runtime assertions on metadata: no value, no node."""
    return None


ATEN: dict[Any, Callable] = {
    **{getattr(aten, name): _unary(name) for name in (
        "relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "exp", "log", "sqrt",
        "rsqrt", "erf", "sin", "cos", "reciprocal", "neg", "abs")},
    aten.relu6: _unary("relu6"), aten.gelu: E.gelu, aten.leaky_relu: E.leaky_relu,
    aten.hardtanh: E.hardtanh, aten.clamp: E.clamp,
    aten.clamp_min: lambda ctx, x, m: E.clamp(ctx, x, min=m),
    aten.clamp_max: lambda ctx, x, m: E.clamp(ctx, x, max=m),
    aten.logical_not: lambda ctx, x: E.logical_not(ctx, x),
    aten.bitwise_not: lambda ctx, x: E.logical_not(ctx, x),
    aten.add: E.add, aten.sub: E.sub, aten.rsub: lambda ctx, a, b, alpha=1: E.sub(ctx, b, a,
                                                                                   alpha),
    aten.mul: _binary("mul"), aten.div: E.div, aten.pow: _binary("pow"),
    aten.maximum: _binary("maximum"), aten.minimum: _binary("minimum"),
    **{getattr(aten, name): _binary(name) for name in ("eq", "ne", "lt", "le", "gt", "ge")},
    **{getattr(aten, name): _logical(op) for name, op in (
        ("logical_and", "logical_and"), ("logical_or", "logical_or"),
        ("bitwise_and", "logical_and"), ("bitwise_or", "logical_or"),
        ("__and__", "logical_and"), ("__or__", "logical_or"))},
    aten.where: E.where, aten.masked_fill: E.masked_fill,
    # reductions and normalization
    aten.sum: _reduce("sum"), aten.mean: _reduce("mean"), aten.amax: _reduce("amax"),
    aten.amin: _reduce("amin"),
    aten.softmax: lambda ctx, x, dim, dtype=None: E.softmax(ctx, "softmax", x, dim, dtype),
    aten._softmax: lambda ctx, x, dim, half: E.softmax(ctx, "softmax", x, dim),
    aten.log_softmax: lambda ctx, x, dim, dtype=None: E.softmax(ctx, "log_softmax", x, dim,
                                                                dtype),
    aten._log_softmax: lambda ctx, x, dim, half: E.softmax(ctx, "log_softmax", x, dim),
    aten.layer_norm: lambda ctx, x, shape, w=None, b=None, eps=1e-5, *rest: E.layer_norm(
        ctx, x, shape, w, b, eps),
    aten.native_layer_norm: _with_unused(E.layer_norm, "layer_norm mean", "layer_norm rstd"),
    aten.batch_norm: _aten_batch_norm,
    aten._native_batch_norm_legit_no_training: _with_unused(
        _no_training_batch_norm, "batch_norm mean", "batch_norm invstd"),
    # anchors and opaque ops
    aten.conv2d: E.conv2d, aten.conv1d: E.conv1d, aten.convolution: _convolution,
    aten.linear: E.linear, aten.addmm: E.addmm, aten.mm: E.matmul, aten.bmm: E.matmul,
    aten.matmul: E.matmul, aten.scaled_dot_product_attention: E.sdpa,
    aten.embedding: lambda ctx, weight, indices, *rest: E.embedding(ctx, indices, weight),
    aten.max_pool2d: E.max_pool2d,
    aten.max_pool2d_with_indices: _with_unused(E.max_pool2d, "max_pool2d indices"),
    aten.avg_pool2d: E.avg_pool2d, aten.adaptive_avg_pool2d: E.adaptive_avg_pool2d,
    aten._adaptive_avg_pool2d: E.adaptive_avg_pool2d,
    aten.cumsum: E.cumsum,
    # layout
    **{getattr(aten, name): E.reshape_like_result for name in (
        "view", "_unsafe_view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze",
        "view_as", "reshape_as")},
    aten.permute: lambda ctx, x, dims: E.permute(ctx, x, tuple(dims)),
    aten.transpose: E.transpose, aten.t: E.t, aten.expand: E.expand, aten.expand_as: E.expand,
    aten.slice: E.slice_dim, aten.select: E.select, aten.narrow: E.narrow,
    aten.cat: E.concat, aten.concat: E.concat, aten.stack: E.stack,
    aten.split: E.split, aten.split_with_sizes: E.split, aten.chunk: E.chunk,
    aten.unbind: E.unbind, aten.index: index_tensor, aten.index_select: index_select,
    aten.gather: gather,
    aten.constant_pad_nd: lambda ctx, x, pads, value=0: E.pad(ctx, x, pads, value=value),
    aten.pad: E.pad, aten.tril: lambda ctx, x, diagonal=0: E.tri(ctx, "tril", x, diagonal),
    aten.triu: lambda ctx, x, diagonal=0: E.tri(ctx, "triu", x, diagonal),
    # no-ops in an inference graph
    **{getattr(aten, name): E.alias for name in (
        "clone", "alias", "detach", "lift_fresh_copy", "contiguous")},
    aten.dropout: E.dropout,
    **{getattr(aten, name): E.cast_to_result for name in ("to", "_to_copy", "type_as")},
    aten._assert_tensor_metadata: _nothing, aten._assert_scalar: _nothing,
    aten.sym_constrain_range_for_size: _nothing,
    # constant sources
    aten.arange: E.arange, aten.full: E.full_of(None), aten.ones: E.full_of(1),
    aten.zeros: E.full_of(0), aten.ones_like: E.full_of(1), aten.zeros_like: E.full_of(0),
    aten.full_like: E.full_of(None), aten.new_ones: E.full_of(1), aten.new_zeros: E.full_of(0),
    aten.new_full: E.full_of(None), aten.scalar_tensor: E.full_of(None),
}

DECOMPOSITION_KEEPS = tuple(ATEN)


def decomposition_table() -> dict:
    """torch.export's default decompositions, minus the ops the table maps whole (conv,
    linear, layer_norm, sdpa, softmax... decomposed they would be many small ops)."""
    table = torch.export.default_decompositions()
    for packet in DECOMPOSITION_KEEPS:
        for overload in packet.overloads():
            op = getattr(packet, overload)
            if op in table:
                del table[op]
    return table
