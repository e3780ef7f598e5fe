"""Fold an eval-mode batch norm into the conv2d or linear before it.

Algebra, per output channel c, with s = gamma / sqrt(var + eps):
    bn(conv(x, w, b)) = conv(x, w * s[:, None, None, None], (b - mean) * s + beta)
    bn(linear(x, W, b)) = linear(x, W * s[:, None], (b - mean) * s + beta)   (x of rank 2)
(a missing b is 0, gamma 1, beta 0). Fires only when the conv/linear output feeds the
batch norm alone (a second user would still need the unnormalized value) and every
parameter is a weight with data. New weights are new arrays; the old ones are left
for ``dce``.
"""

from __future__ import annotations

import numpy as np

from compiler.pass_manager import Pass, PassResult, derived_meta
from compiler.pattern import has_single_user
from ir import Graph, Node
from ir.registry import attr
from ir.types import is_float


def _weights(graph: Graph, nodes) -> list[np.ndarray] | None:
    values = []
    for n in nodes:
        if n.op != "weight" or graph.weights.get(n.name) is None:
            return None
        values.append(graph.weights[n.name].astype(np.float64))
    return values


def foldable_anchor(graph: Graph, bn: Node) -> Node | None:
    """The conv2d/linear under ``bn`` when the fold is valid, else ``None``."""
    anchor = bn.inputs[0]
    if anchor.op not in ("conv2d", "linear") or not has_single_user(anchor, graph):
        return None
    if anchor.op == "linear" and anchor.type.rank != 2:
        return None  # BatchNorm1d normalizes axis 1, linear's output axis only at rank 2
    if not is_float(anchor.dtype) or anchor.dtype != bn.dtype:
        return None
    if _weights(graph, anchor.inputs[1:]) is None or _weights(graph, bn.inputs[1:]) is None:
        return None
    return anchor


class FoldBatchNorm(Pass):
    name = "fold_batch_norm"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for bn in list(graph.ops()):
            if bn.op == "batch_norm" and (anchor := foldable_anchor(graph, bn)) is not None:
                self.fold(graph, bn, anchor)
                modified = True
        return PassResult(graph, modified)

    def fold(self, graph: Graph, bn: Node, anchor: Node) -> None:
        w, *bias = _weights(graph, anchor.inputs[1:])
        mean, var, *affine = _weights(graph, bn.inputs[1:])
        channels = w.shape[0]
        gamma = affine[0] if len(affine) > 0 else np.ones(channels)
        beta = affine[1] if len(affine) > 1 else np.zeros(channels)
        b = bias[0] if bias else np.zeros(channels)
        scale = gamma / np.sqrt(var + attr(bn.attrs, "eps", "batch_norm"))
        new_w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        new_b = (b - mean) * scale + beta
        wdtype = anchor.inputs[1].dtype
        bdtype = anchor.inputs[2].dtype if bias else wdtype
        meta = derived_meta(anchor, self.name)
        w_node = graph.add_weight(anchor.inputs[1].name + "_bn", new_w.astype(wdtype),
                                  before=anchor, meta=meta)
        b_node = graph.add_weight(anchor.name + "_bn_bias", new_b.astype(bdtype),
                                  before=anchor, meta=meta)
        new = graph.call(anchor.op, [anchor.inputs[0], w_node, b_node], anchor.attrs,
                         name=anchor.name, before=bn, meta=derived_meta(bn, self.name))
        graph.replace_all_uses(bn, new)
        graph.erase(bn)
        graph.erase(anchor)
        graph.rename(new, anchor.name)  # the folded op keeps the name readers know


PASS = FoldBatchNorm
