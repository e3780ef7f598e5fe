"""Emitters shared by the fx and the export frontends: each takes torch-style arguments
(already mapped to IR values) and emits the IR ops with torch's semantics.

Shapes are static, so every view-like op (view, flatten, squeeze, unsqueeze, select)
becomes one ``reshape`` to the shape recorded when the model ran on the example inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from compiler.capture.context import Context, Unsupported, ir_dtype
from compiler.dynamic import SymDim
from ir import Node
from ir.types import is_float

# ----- small helpers -----------------------------------------------------------------


def pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def dims_arg(dims: Any) -> tuple[int, ...] | None:
    """``dim`` arguments come as an int, a list, a tuple or ``None`` (all axes)."""
    if dims is None:
        return None
    return (dims,) if isinstance(dims, int) else tuple(dims)


def norm_dim(dim: int, rank: int) -> int:
    return dim % rank if rank else 0


def varargs(args: tuple) -> tuple:
    """``x.permute(0, 2, 1)`` and ``x.permute((0, 2, 1))`` mean the same."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else args


# ----- elementwise -------------------------------------------------------------------


def unary(ctx: Context, op: str, x: Any, **attrs: Any) -> Node:
    return ctx.emit(op, [ctx.tensor(x)], **attrs)


def binary(ctx: Context, op: str, a: Any, b: Any) -> Any:
    if not isinstance(a, (Node, torch.Tensor)) and not isinstance(b, (Node, torch.Tensor)):
        raise Unsupported(why="(binary op on two Python values)")
    x, y = ctx.operands(a, b)
    if op == "div" and not is_float(x.dtype) and not is_float(y.dtype):  # true division
        x, y = cast(ctx, x, "float32"), cast(ctx, y, "float32")
    return ctx.emit(op, [x, y])


def add(ctx: Context, a: Any, b: Any, alpha: Any = 1) -> Node:
    if alpha != 1:
        b = binary(ctx, "mul", b, alpha)
    return binary(ctx, "add", a, b)


def sub(ctx: Context, a: Any, b: Any, alpha: Any = 1) -> Node:
    if alpha != 1:
        b = binary(ctx, "mul", b, alpha)
    return binary(ctx, "sub", a, b)


def div(ctx: Context, a: Any, b: Any, rounding_mode: str | None = None) -> Node:
    if rounding_mode is not None:
        raise Unsupported(why=f"(rounding_mode={rounding_mode!r}: the IR has no floor/trunc)")
    return binary(ctx, "div", a, b)


def logical(ctx: Context, op: str, a: Any, b: Any) -> Node:
    """``&``/``|`` are logical on bool tensors; bitwise ints have no IR op."""
    x, y = ctx.operands(a, b)
    if x.dtype != "bool" or y.dtype != "bool":
        raise Unsupported(why="(bitwise op on integer tensors)")
    return ctx.emit(op, [x, y])


def logical_not(ctx: Context, x: Any) -> Node:
    x = ctx.tensor(x)
    if x.dtype != "bool":
        raise Unsupported(why="(bitwise not on integer tensors)")
    return ctx.emit("logical_not", [x])


def clamp(ctx: Context, x: Any, min: Any = None, max: Any = None) -> Node:
    x = ctx.tensor(x)
    if isinstance(min, (Node, torch.Tensor)) or isinstance(max, (Node, torch.Tensor)):
        if min is not None:
            x = binary(ctx, "maximum", x, min)
        if max is not None:
            x = binary(ctx, "minimum", x, max)
        return x
    return ctx.emit("clamp", [x], min=min, max=max)


def hardtanh(ctx: Context, x: Any, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Node:
    if min_val == 0 and max_val == 6:
        return unary(ctx, "relu6", x)
    return clamp(ctx, x, min_val, max_val)


def gelu(ctx: Context, x: Any, approximate: str = "none") -> Node:
    return unary(ctx, "gelu", x, approximate=approximate)


def leaky_relu(ctx: Context, x: Any, negative_slope: float = 0.01, inplace: bool = False) -> Node:
    return unary(ctx, "leaky_relu", x, negative_slope=float(negative_slope))


def where(ctx: Context, cond: Any, a: Any, b: Any) -> Node:
    cond = ctx.tensor(cond, "bool")
    x, y = ctx.operands(a, b)
    return ctx.emit("where", [cond, x, y])


def masked_fill(ctx: Context, x: Any, mask: Any, value: Any) -> Node:
    """masked_fill(x, mask, v) = where(mask, v, x), with v in x's dtype."""
    x = ctx.tensor(x)
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        value = value.item()
    value = ctx.tensor(value, x.dtype)
    if value.dtype != x.dtype:
        value = cast(ctx, value, x.dtype)
    return ctx.emit("where", [ctx.tensor(mask, "bool"), value, x])


def cast(ctx: Context, x: Any, dtype: str) -> Node:
    """A cast, dropped when it would not change the dtype."""
    x = ctx.tensor(x, dtype)
    return x if x.dtype == dtype else ctx.emit("cast", [x], dtype=dtype)


def cast_to_result(ctx: Context, x: Any, *args: Any, **kwargs: Any) -> Node:
    """``to``/``float``/``type_as``/``_to_copy``...: whatever the arguments, the recorded
    result dtype says what the cast is (device moves are no-ops here)."""
    return cast(ctx, x, ctx.out_type.dtype)


def alias(ctx: Context, x: Any, *args: Any, **kwargs: Any) -> Any:
    """contiguous, clone, detach, eval-mode dropout: no node, the value itself."""
    return x


def dropout(ctx: Context, x: Any, p: float = 0.5, training: bool = False,
            inplace: bool = False) -> Any:
    if training:
        raise Unsupported(why="(dropout with training=True is random)")
    return x


# ----- reductions --------------------------------------------------------------------


def reduce(ctx: Context, op: str, x: Any, dim: Any = None, keepdim: bool = False, *,
           dtype: torch.dtype | None = None) -> Node:
    x = ctx.tensor(x)
    if dtype is not None:
        x = cast(ctx, x, ir_dtype(dtype))
    dims = dims_arg(dim)
    if dims is not None:
        dims = tuple(norm_dim(d, len(x.shape)) for d in dims) or None  # (): every axis
    return ctx.emit(op, [x], dims=dims, keepdim=bool(keepdim))


def max_or_min(ctx: Context, op: str, x: Any, other: Any = None, keepdim: bool = False) -> Node:
    """torch.max(x) reduces; torch.max(a, b) is elementwise; torch.max(x, dim) also returns
    indices, which the IR has no op for."""
    if other is None:
        return reduce(ctx, "amax" if op == "max" else "amin", x)
    if isinstance(other, int) and not isinstance(other, bool):
        raise Unsupported(why=f"(torch.{op} over a dim returns indices)")
    return binary(ctx, "maximum" if op == "max" else "minimum", x, other)


def softmax(ctx: Context, op: str, x: Any, dim: int | None = None, dtype: Any = None,
            **_: Any) -> Node:
    x = ctx.tensor(x)
    if isinstance(dtype, torch.dtype):
        x = cast(ctx, x, ir_dtype(dtype))
    if dim is None:
        raise Unsupported(why="(softmax without dim)")
    return ctx.emit(op, [x], dim=norm_dim(dim, len(x.shape)))


def layer_norm(ctx: Context, x: Any, normalized_shape: Sequence[int], weight: Any = None,
               bias: Any = None, eps: float = 1e-5) -> Node:
    inputs = [ctx.tensor(x)]
    if weight is None and bias is not None:
        weight = torch.ones(tuple(normalized_shape), dtype=torch.float32)
    if weight is not None:
        inputs.append(ctx.tensor(weight))
    if bias is not None:
        inputs.append(ctx.tensor(bias))
    return ctx.emit("layer_norm", inputs, normalized_ndim=len(normalized_shape), eps=float(eps))


def batch_norm(ctx: Context, x: Any, running_mean: Any, running_var: Any, weight: Any = None,
               bias: Any = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5) -> Node:
    if training or running_mean is None or running_var is None:
        raise Unsupported(why="(batch norm with batch statistics; eval mode with running "
                              "stats is supported)")
    inputs = [ctx.tensor(x), ctx.tensor(running_mean), ctx.tensor(running_var)]
    if weight is None and bias is not None:
        weight = torch.ones(inputs[1].shape, dtype=torch.float32)
    if weight is not None:
        inputs.append(ctx.tensor(weight))
    if bias is not None:
        inputs.append(ctx.tensor(bias))
    return ctx.emit("batch_norm", inputs, eps=float(eps))


# ----- anchors -----------------------------------------------------------------------


def linear(ctx: Context, x: Any, weight: Any, bias: Any = None) -> Node:
    inputs = [ctx.tensor(x), ctx.tensor(weight)]
    if bias is not None:
        inputs.append(ctx.tensor(bias))
    return ctx.emit("linear", inputs)


def matmul(ctx: Context, a: Any, b: Any) -> Node:
    """torch.matmul: 1-D operands are reshaped to 2-D around a ``matmul``."""
    a, b = ctx.tensor(a), ctx.tensor(b)
    if len(a.shape) == 1:
        a = ctx.emit("reshape", [a], shape=(1, a.shape[0]))
    if len(b.shape) == 1:
        b = ctx.emit("reshape", [b], shape=(b.shape[0], 1))
    return reshape_to(ctx, ctx.emit("matmul", [a, b]), ctx.out_type.shape)


def addmm(ctx: Context, bias: Any, m1: Any, m2: Any, beta: Any = 1, alpha: Any = 1) -> Node:
    """addmm(b, x, w) = x @ w + b: a ``linear`` with w transposed at capture when w is a
    weight (GPT-2's Conv1D), else matmul + add."""
    if beta != 1 or alpha != 1:
        raise Unsupported(why="(addmm with beta/alpha other than 1)")
    m2 = ctx.tensor(m2)
    if m2.op == "weight" and ctx.graph.weights.get(m2.name) is not None:
        name = m2.meta.get("torch_name", m2.name)
        weight_t = ctx.array_weight(ctx.graph.weights[m2.name].T, f"{name}.T")
        bias_node = ctx.tensor(bias)
        if bias_node.shape == (weight_t.shape[0],):
            return linear(ctx, m1, weight_t, bias_node)
        return binary(ctx, "add", linear(ctx, m1, weight_t), bias_node)
    return binary(ctx, "add", ctx.emit("matmul", [ctx.tensor(m1), m2]), bias)


def conv2d(ctx: Context, x: Any, weight: Any, bias: Any = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Node:
    x, w = ctx.tensor(x), ctx.tensor(weight)
    if len(x.shape) != 4:
        raise Unsupported(why="(conv2d on an unbatched input)")
    stride, dilation = pair(stride), pair(dilation)
    if isinstance(padding, str):
        padding, x = _string_padding(ctx, x, w.shape[2:], stride, dilation, padding)
    inputs = [x, w] + ([ctx.tensor(bias)] if bias is not None else [])
    return ctx.emit("conv2d", inputs, stride=stride, padding=pair(padding), dilation=dilation,
                    groups=int(groups))


def _string_padding(ctx: Context, x: Node, kernel: Sequence[int], stride: tuple,
                    dilation: tuple, mode: str) -> tuple[tuple[int, int], Node]:
    """padding='valid' is 0; 'same' pads d*(k-1) per axis, the odd one at the end, which
    needs a ``pad`` op when it is asymmetric."""
    if mode == "valid":
        return (0, 0), x
    if mode != "same" or stride != (1, 1):
        raise Unsupported(why=f"(conv padding={mode!r} with stride {stride})")
    totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
    before = [t // 2 for t in totals]
    if all(t % 2 == 0 for t in totals):
        return (before[0], before[1]), x
    pads = (before[1], totals[1] - before[1], before[0], totals[0] - before[0])
    return (0, 0), ctx.emit("pad", [x], pads=pads, value=0.0)


def conv1d(ctx: Context, x: Any, weight: Any, bias: Any = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Node:
    """A conv2d over a height of 1: [N, C, L] -> [N, C, 1, L]."""
    x, w = ctx.tensor(x), ctx.tensor(weight)
    if len(x.shape) != 3 or isinstance(padding, str):
        raise Unsupported(why="(conv1d on an unbatched input or with string padding)")
    x4 = ctx.emit("reshape", [x], shape=(x.shape[0], x.shape[1], 1, x.shape[2]))
    w4 = ctx.emit("reshape", [w], shape=(w.shape[0], w.shape[1], 1, w.shape[2]))
    out = conv2d(ctx, x4, w4, bias, (1, _one(stride)), (0, _one(padding)),
                 (1, _one(dilation)), groups)
    return reshape_to(ctx, out, ctx.out_type.shape)


def _one(v: Any) -> int:
    return v if isinstance(v, int) else tuple(v)[0]


def max_pool2d(ctx: Context, x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Node:
    if return_indices:
        raise Unsupported(why="(max_pool2d with return_indices)")
    kernel = pair(kernel_size)
    stride = pair(stride) if stride not in (None, []) else kernel
    return _pool(ctx, "max_pool2d", x, kernel=kernel, stride=stride, padding=pair(padding),
                 dilation=pair(dilation), ceil_mode=bool(ceil_mode))


def avg_pool2d(ctx: Context, x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Node:
    if divisor_override is not None:
        raise Unsupported(why="(avg_pool2d with divisor_override)")
    kernel = pair(kernel_size)
    stride = pair(stride) if stride not in (None, []) else kernel
    return _pool(ctx, "avg_pool2d", x, kernel=kernel, stride=stride, padding=pair(padding),
                 ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad))


def _pool(ctx: Context, op: str, x: Any, **attrs: Any) -> Node:
    x = ctx.tensor(x)
    if len(x.shape) != 4:
        raise Unsupported(why=f"({op} on an unbatched input)")
    return ctx.emit(op, [x], **attrs)


def adaptive_avg_pool2d(ctx: Context, x: Any, output_size: Any) -> Node:
    x = ctx.tensor(x)
    if len(x.shape) != 4:
        raise Unsupported(why="(adaptive_avg_pool2d on an unbatched input)")
    size = pair(output_size) if not isinstance(output_size, int) else (output_size,) * 2
    size = tuple(x.shape[2 + i] if s is None else s for i, s in enumerate(size))
    return ctx.emit("adaptive_avg_pool2d", [x], output_size=size)


def sdpa(ctx: Context, q: Any, k: Any, v: Any, attn_mask: Any = None, dropout_p: float = 0.0,
         is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False) -> Node:
    if dropout_p:
        raise Unsupported(why="(attention dropout_p > 0 is random even in eval mode)")
    q, k, v = ctx.tensor(q), ctx.tensor(k), ctx.tensor(v)
    if enable_gqa and q.shape[-3] != k.shape[-3]:
        raise Unsupported(why="(grouped-query attention)")
    inputs = [q, k, v] + ([ctx.tensor(attn_mask, q.dtype)] if attn_mask is not None else [])
    return ctx.emit("sdpa", inputs, is_causal=bool(is_causal),
                    scale=None if scale is None else float(scale))


def embedding(ctx: Context, indices: Any, table: Any, padding_idx: Any = None,
              max_norm: Any = None, *rest: Any, **kwargs: Any) -> Node:
    """padding_idx only matters for gradients, so it is a plain lookup in eval."""
    if max_norm is not None:
        raise Unsupported(why="(embedding with max_norm renormalizes the table)")
    return ctx.emit("embedding", [ctx.tensor(table), ctx.tensor(indices)])


# ----- layout ------------------------------------------------------------------------


def reshape_to(ctx: Context, x: Any, shape: Sequence[int]) -> Node:
    x = ctx.tensor(x)
    shape = tuple(shape)
    return x if x.shape == shape else ctx.emit("reshape", [x], shape=shape)


def reshape_like_result(ctx: Context, x: Any, *args: Any, **kwargs: Any) -> Node:
    """view/reshape/flatten/unflatten/squeeze/unsqueeze/select: the recorded shape."""
    return reshape_to(ctx, x, ctx.out_type.shape)


def permute(ctx: Context, x: Any, *dims: Any) -> Node:
    x = ctx.tensor(x)
    rank = len(x.shape)
    dims = tuple(norm_dim(d, rank) for d in varargs(dims))
    return x if dims == tuple(range(rank)) else ctx.emit("permute", [x], dims=dims)


def transpose(ctx: Context, x: Any, dim0: int, dim1: int) -> Node:
    x = ctx.tensor(x)
    dims = list(range(len(x.shape)))
    a, b = norm_dim(dim0, len(dims)), norm_dim(dim1, len(dims))
    dims[a], dims[b] = dims[b], dims[a]
    return permute(ctx, x, tuple(dims))


def t(ctx: Context, x: Any) -> Node:
    x = ctx.tensor(x)
    return x if len(x.shape) < 2 else transpose(ctx, x, 0, 1)


def expand(ctx: Context, x: Any, *sizes: Any) -> Node:
    x = ctx.tensor(x)
    shape = ctx.out_type.shape
    return x if x.shape == shape else ctx.emit("expand", [x], shape=shape)


def slice_dim(ctx: Context, x: Any, dim: int = 0, start: Any = None, end: Any = None,
              step: int = 1) -> Node:
    x = ctx.tensor(x)
    dim = norm_dim(dim, len(x.shape))
    size = x.shape[dim]
    if isinstance(size, str) or isinstance(end, SymDim) or isinstance(start, SymDim):
        return _symbolic_slice(ctx, x, dim, start, end, step)
    start, end, step = slice(start, end, step).indices(size)
    end = max(end, start)
    if (start, end, step) == (0, size, 1):
        return x
    return ctx.emit("slice", [x], dim=dim, start=start, end=end, step=step)


def _symbolic_slice(ctx: Context, x: Node, dim: int, start: Any, end: Any, step: int) -> Node:
    """x[start:end] where the axis or the end is a symbolic size: ``x[:, :seq]`` or
    ``x[:, 1:]``; negative or data-dependent bounds are not supported."""
    start = 0 if start is None else start
    if end is None or (isinstance(end, int) and end >= 2**62):
        end = SymDim.of(x.shape[dim])
    if isinstance(start, SymDim) or step != 1 or start < 0 or (isinstance(end, int) and end < 0):
        raise Unsupported(why=f"(slice {start}:{end}:{step} of a symbolic size)")
    if start == 0 and SymDim.of(x.shape[dim]) == end:
        return x
    return ctx.emit("slice", [x], dim=dim, start=start, end=end, step=1)


def select(ctx: Context, x: Any, dim: int, index: int) -> Node:
    x = ctx.tensor(x)
    dim = norm_dim(dim, len(x.shape))
    if isinstance(x.shape[dim], str):  # a symbolic axis: x[:, 0] works, x[:, -1] needs
        if not isinstance(index, int) or index < 0:  # a symbolic start
            raise Unsupported(why=f"(select of index {index} on symbolic axis "
                                  f"{x.shape[dim]!r})")
    else:
        index = index % x.shape[dim]
    return reshape_to(ctx, slice_dim(ctx, x, dim, index, index + 1), ctx.out_type.shape)


def narrow(ctx: Context, x: Any, dim: int, start: int, length: int) -> Node:
    return slice_dim(ctx, x, dim, start, start + length)


def split(ctx: Context, x: Any, split_size_or_sections: Any, dim: int = 0) -> list[Node]:
    x = ctx.tensor(x)
    dim = norm_dim(dim, len(x.shape))
    size = x.shape[dim]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sizes = [min(step, size - s) for s in range(0, size, step)] or [0]
    else:
        sizes = list(split_size_or_sections)
    outs, start = [], 0
    for n in sizes:
        outs.append(slice_dim(ctx, x, dim, start, start + n))
        start += n
    return outs


def chunk(ctx: Context, x: Any, chunks: int, dim: int = 0) -> list[Node]:
    x = ctx.tensor(x)
    size = x.shape[norm_dim(dim, len(x.shape))]
    return split(ctx, x, max(1, math.ceil(size / chunks)), dim)


def unbind(ctx: Context, x: Any, dim: int = 0) -> list[Node]:
    x = ctx.tensor(x)
    dim = norm_dim(dim, len(x.shape))
    shape = x.shape[:dim] + x.shape[dim + 1:]
    return [reshape_to(ctx, slice_dim(ctx, x, dim, i, i + 1), shape)
            for i in range(x.shape[dim])]


def concat(ctx: Context, tensors: Sequence[Any], dim: int = 0) -> Node:
    nodes = ctx.operands(*tensors)
    nodes = [n for n in nodes if n.shape != (0,)]  # torch allows empty 1-D tensors in cat
    if len(nodes) == 1:
        return nodes[0]
    return ctx.emit("concat", nodes, dim=norm_dim(dim, len(nodes[0].shape)))


def stack(ctx: Context, tensors: Sequence[Any], dim: int = 0) -> Node:
    nodes = ctx.operands(*tensors)
    rank = len(nodes[0].shape) + 1
    dim = norm_dim(dim, rank)
    shape = nodes[0].shape[:dim] + (1,) + nodes[0].shape[dim:]
    return concat(ctx, [reshape_to(ctx, n, shape) for n in nodes], dim)


def pad(ctx: Context, x: Any, pads: Sequence[int], mode: str = "constant",
        value: float | None = None) -> Node:
    if mode != "constant" or any(p < 0 for p in pads):
        raise Unsupported(why=f"(pad mode {mode!r} or negative padding)")
    x = ctx.tensor(x)
    if not any(pads):
        return x
    return ctx.emit("pad", [x], pads=tuple(pads), value=float(value or 0.0))


def tri(ctx: Context, op: str, x: Any, diagonal: int = 0) -> Node:
    return ctx.emit(op, [ctx.tensor(x)], diagonal=int(diagonal))


def cumsum(ctx: Context, x: Any, dim: int, dtype: torch.dtype | None = None) -> Node:
    x = ctx.tensor(x)
    if dtype is not None:
        x = cast(ctx, x, ir_dtype(dtype))
    return ctx.emit("cumsum", [x], dim=norm_dim(dim, len(x.shape)))


# ----- sources -----------------------------------------------------------------------


def arange(ctx: Context, *args: Any, **kwargs: Any) -> Node:
    """torch.arange(end) / (start, end) / (start, end, step), in the recorded dtype."""
    numbers = [a for a in args if isinstance(a, (int, float, SymDim)) and
               not isinstance(a, bool)]
    for key in ("start", "end", "step"):
        if key in kwargs:
            numbers.append(kwargs[key])
    start, end, step = (0, numbers[0], 1) if len(numbers) == 1 else (*numbers[:2], 1) \
        if len(numbers) == 2 else numbers[:3]
    return ctx.emit("arange", [], start=start, end=end, step=step, dtype=ctx.out_type.dtype)


def full_of(value: Any) -> Any:
    """ones/zeros/full and their _like/new_ variants: a ``full`` of the recorded type."""

    def convert(ctx: Context, *args: Any, **kwargs: Any) -> Node:
        fill = kwargs.get("fill_value", value)
        if fill is None:  # torch.full(size, fill_value) / x.new_full(size, fill_value)
            fill = next(a for a in reversed(args) if isinstance(a, (bool, int, float)))
        return full(ctx, fill)

    return convert


def full(ctx: Context, value: Any) -> Node:
    t = ctx.out_type
    return ctx.emit("full", [], shape=t.shape, value=_python_scalar(value, t.dtype),
                    dtype=t.dtype)


def _python_scalar(value: Any, dtype: str) -> bool | int | float:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if dtype == "bool":
        return bool(value)
    return float(value) if is_float(dtype) else int(value)


def recorded(ctx: Context, *args: Any, **kwargs: Any) -> Any:
    """size()/dim()/numel()/shape/dtype: the value recorded on the example inputs (shapes
    are static, so it is a Python constant of the capture)."""
    return ctx.value
