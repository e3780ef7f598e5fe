"""Tensor indexing: ``x[...]`` with ints, slices, None and Ellipsis becomes slices and a
reshape. Advanced indexing with integer tensors on adjacent axes becomes, where the index
tensors are known at capture and each steps evenly along one axis (the ``arange``s of HF
masks), a strided view; otherwise (indices computed from the inputs, or in no order) the
``index`` op, a gather. ``torch.gather`` is the ``gather`` op.
"""

from __future__ import annotations

from typing import Any

import torch

from compiler.capture.context import Context, Unsupported
from compiler.capture.emit import norm_dim, permute, reshape_to, slice_dim
from ir import Node
from ir.ops import broadcast_shapes


def getitem(ctx: Context, x: Any, index: Any) -> Any:
    """operator.getitem: Python containers (split outputs, sizes) index directly."""
    if not isinstance(x, (Node, torch.Tensor)):
        return x[index]
    items = index if isinstance(index, tuple) else (index,)
    if any(_is_tensor_index(ctx, i) for i in items):
        return _advanced_from_items(ctx, ctx.tensor(x), items)
    return _basic(ctx, ctx.tensor(x), items)


def _is_tensor_index(ctx: Context, item: Any) -> bool:
    return isinstance(item, (Node, torch.Tensor, list))


def _basic(ctx: Context, x: Node, items: tuple) -> Node:
    consumed = sum(1 for i in items if i is not None and i is not Ellipsis)
    expanded: list[Any] = []
    for item in items:
        if item is Ellipsis:
            expanded += [slice(None)] * (len(x.shape) - consumed)
        else:
            expanded.append(item)
    dim = 0
    for item in expanded:
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, (int, slice)):
            raise Unsupported(why=f"(index of type {type(item).__name__})")
        if isinstance(item, int):
            start = item % x.shape[dim]
            x = slice_dim(ctx, x, dim, start, start + 1)
        else:
            if item.step is not None and item.step <= 0:
                raise Unsupported(why="(slice with a non-positive step)")
            x = slice_dim(ctx, x, dim, item.start, item.stop, item.step or 1)
        dim += 1
    return reshape_to(ctx, x, ctx.out_type.shape)


def _advanced_from_items(ctx: Context, x: Node, items: tuple) -> Node:
    """``x[:, idx]``: leading full slices become ``None`` in aten.index's list form."""
    indices: list[Any] = []
    for item in items:
        if isinstance(item, slice) and item == slice(None):
            indices.append(None)
        elif _is_tensor_index(ctx, item):
            indices.append(torch.tensor(item) if isinstance(item, list) else item)
        else:
            raise Unsupported(why="(advanced indexing mixed with ints, None or partial slices)")
    return index_tensor(ctx, x, indices)


def index_tensor(ctx: Context, x: Any, indices: list[Any]) -> Node:
    """aten.index.Tensor(x, [None, I1, I2, None...]) for adjacent index tensors known at
    capture, each an arithmetic progression along one broadcast axis (or one value)."""
    x = ctx.tensor(x)
    positions = [i for i, idx in enumerate(indices) if idx is not None]
    if not positions or positions != list(range(positions[0], positions[-1] + 1)):
        raise Unsupported(why="(non-adjacent index tensors)")
    known = [ctx.concrete(indices[i]) for i in positions]
    dtypes = [(k if k is not None else ctx.tensor(indices[i])).dtype for i, k in
              zip(positions, known)]
    if any(d in (torch.bool, "bool") for d in dtypes) or \
            any(k is not None and k.is_floating_point() for k in known):
        raise Unsupported(why="(boolean mask indexing has a data-dependent shape)")
    if any(k is None for k in known):
        return _gather_index(ctx, x, indices, positions)
    try:
        return _strided_view(ctx, x, positions, known)
    except _NeedsGather:
        return _gather_index(ctx, x, indices, positions)


class _NeedsGather(Exception):
    """The index tensors are not a strided view of ``x``."""


def _gather_index(ctx: Context, x: Node, indices: list[Any], positions: list[int]) -> Node:
    return ctx.emit("index", [x, *(ctx.tensor(indices[i]) for i in positions)],
                    first=positions[0])


def _strided_view(ctx: Context, x: Node, positions: list[int], known: list) -> Node:
    first = positions[0]
    batch = broadcast_shapes(*(tuple(k.shape) for k in known))
    axes: list[tuple[int, int]] = []  # (broadcast axis, dim of x); -1 axis for one value
    for dim, k in zip(positions, known):
        axis, start, step, count = _progression(k, len(batch), x.shape[dim])
        x = slice_dim(ctx, x, dim, start, start + step * (count - 1) + 1, step)
        axes.append((axis, dim))
    if len({a for a, _ in axes if a >= 0}) != sum(1 for a, _ in axes if a >= 0):
        raise _NeedsGather  # two index tensors vary along the same axis
    block = [d for _, d in sorted(axes, key=lambda ad: (ad[0] < 0, ad[0]))]
    order = list(range(first)) + block + list(range(positions[-1] + 1, len(x.shape)))
    x = permute(ctx, x, tuple(order))
    shape = x.shape[:first] + tuple(batch) + x.shape[first + len(positions):]
    return reshape_to(ctx, x, shape)


def _progression(index: torch.Tensor, rank: int, size: int) -> tuple[int, int, int, int]:
    """(axis, start, step, count) of an index tensor that steps evenly along one axis."""
    shape = (1,) * (rank - index.dim()) + tuple(index.shape)
    varying = [a for a, n in enumerate(shape) if n != 1]
    values = index.reshape(-1).to(torch.int64) % size
    if not varying:
        return -1, int(values[0]), 1, 1
    if len(varying) > 1:
        raise _NeedsGather  # an index tensor varying along several axes
    steps = values[1:] - values[:-1]
    step = int(steps[0]) if len(steps) else 1
    if step <= 0 or bool((steps != step).any()):
        raise _NeedsGather  # index values that are not an increasing progression
    return varying[0], int(values[0]), step, len(values)


def index_select(ctx: Context, x: Any, dim: int, index: Any) -> Node:
    x = ctx.tensor(x)
    dim = norm_dim(dim, len(x.shape))
    return index_tensor(ctx, x, [None] * dim + [index])


def gather(ctx: Context, x: Any, dim: int, index: Any, *, sparse_grad: bool = False) -> Node:
    """torch.gather(x, dim, index)."""
    x = ctx.tensor(x)
    return ctx.emit("gather", [x, ctx.tensor(index)], dim=norm_dim(dim, len(x.shape)))
