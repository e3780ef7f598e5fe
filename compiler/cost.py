"""FLOPs and bytes per IR node: the numbers behind the inspect table and rooflines.

FLOPs count a multiply-add as two. Bytes count what a kernel must read and write at
least once: its operands and its result (weights included).
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

from ir import Node, get_op


def _numel(node: Node) -> int:
    return prod(node.shape) if node.type.is_static else 0


def _conv2d(node: Node) -> int:
    w = node.inputs[1]
    per_output = 2 * w.shape[1] * w.shape[2] * w.shape[3]  # in-channels/group * kh * kw
    return _numel(node) * per_output


def _linear(node: Node) -> int:
    return 2 * _numel(node) * node.inputs[0].shape[-1]


def _matmul(node: Node) -> int:
    return 2 * _numel(node) * node.inputs[0].shape[-1]


def _sdpa(node: Node) -> int:
    q, k = node.inputs[0], node.inputs[1]
    scores = prod(q.shape[:-1]) * k.shape[-2]
    return 2 * scores * q.shape[-1] + 2 * scores * node.shape[-1] + 5 * scores


def _per_input_element(factor: int) -> Callable[[Node], int]:
    return lambda node: factor * _numel(node.inputs[0])


def _pool(node: Node) -> int:
    k = node.attrs["kernel"]
    return _numel(node) * k[0] * k[1]


_FLOPS: dict[str, Callable[[Node], int]] = {
    "conv2d": _conv2d,
    "linear": _linear,
    "matmul": _matmul,
    "sdpa": _sdpa,
    "softmax": _per_input_element(5),
    "log_softmax": _per_input_element(6),
    "layer_norm": _per_input_element(8),
    "batch_norm": _per_input_element(2),
    "sum": _per_input_element(1),
    "mean": _per_input_element(1),
    "amax": _per_input_element(1),
    "amin": _per_input_element(1),
    "max_pool2d": _pool,
    "avg_pool2d": _pool,
    "adaptive_avg_pool2d": _per_input_element(1),
    "gelu": lambda n: 8 * _numel(n),
    "silu": lambda n: 4 * _numel(n),
    "hardswish": lambda n: 4 * _numel(n),
}


def node_flops(node: Node) -> int:
    """Floating-point operations of one node (0 for layout ops and leaves)."""
    if node.op in _FLOPS:
        return _FLOPS[node.op](node)
    kind = get_op(node.op).kind
    return _numel(node) if kind == "elementwise" else 0


def node_bytes(node: Node) -> int:
    """Bytes a standalone kernel for this node reads and writes at least once."""
    if not node.type.is_static:
        return 0
    return node.type.nbytes() + sum(i.type.nbytes() for i in node.inputs if i.type.is_static)
