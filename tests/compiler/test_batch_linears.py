"""batch_linears: independent same-shaped linears become one batched matmul; where it
fires, the stacked weights, the numbers, and where it must not fire."""

import numpy as np
import torch
from torch import nn

from compiler import dscompile
from compiler.passes.batch_linears import BatchIndependentLinears
from compiler.passes.testing import check_pass, graph_from_text, random_weights

TWO_BRANCHES = """graph(%a : f32[2,16], %b : f32[2,16]) {
  %wa : f32[8,16] = weight()
  %ba : f32[8] = weight()
  %wb : f32[8,16] = weight()
  %bb : f32[8] = weight()
  %ra : f32[2,16] = relu(%a)
  %ha : f32[2,8] = linear(%ra, %wa, %ba)
  %ta : f32[2,8] = tanh(%ha)
  %rb : f32[2,16] = sigmoid(%b)
  %hb : f32[2,8] = linear(%rb, %wb, %bb)
  %out : f32[2,8] = add(%ta, %hb)
  return (%out)
}"""

# %ta (a user of the first linear) moves after the batched matmul; the old weights are
# left for dead code elimination.
TWO_BRANCHES_EXPECTED = """graph(%a : f32[2,16], %b : f32[2,16]) {
  %wa : f32[8,16] = weight()
  %ba : f32[8] = weight()
  %wb : f32[8,16] = weight()
  %bb : f32[8] = weight()
  %ra : f32[2,16] = relu(%a)
  %rb : f32[2,16] = sigmoid(%b)
  %ha_in : f32[1,2,16] = reshape(%ra, shape=[1,2,16])
  %hb_in : f32[1,2,16] = reshape(%rb, shape=[1,2,16])
  %ha_batched_w : f32[2,16,8] = weight()
  %batched_in : f32[2,2,16] = concat(%ha_in, %hb_in, dim=0)
  %ha_batched_b : f32[2,1,8] = weight()
  %batched : f32[2,2,8] = matmul(%batched_in, %ha_batched_w)
  %batched_bias : f32[2,2,8] = add(%batched, %ha_batched_b)
  %ha_out : f32[1,2,8] = slice(%batched_bias, dim=0, start=0, end=1)
  %ha : f32[2,8] = reshape(%ha_out, shape=[2,8])
  %ta : f32[2,8] = tanh(%ha)
  %hb_out : f32[1,2,8] = slice(%batched_bias, dim=0, start=1, end=2)
  %hb : f32[2,8] = reshape(%hb_out, shape=[2,8])
  %out : f32[2,8] = add(%ta, %hb)
  return (%out)
}"""


def test_two_independent_linears_become_one_batched_matmul():
    check_pass(BatchIndependentLinears(), TWO_BRANCHES, TWO_BRANCHES_EXPECTED)
    g = graph_from_text(TWO_BRANCHES)
    w = random_weights(g)
    after = BatchIndependentLinears()(g).graph
    np.testing.assert_array_equal(after.weights["ha_batched_w"],
                                  np.stack([w["wa"].T, w["wb"].T]))
    np.testing.assert_array_equal(after.weights["ha_batched_b"][:, 0],
                                  np.stack([w["ba"], w["bb"]]))


def test_not_batched_when_dependent_sharing_an_input_or_of_other_shapes():
    # inputs computed from one value are still independent linears: batched
    sibling = graph_from_text(TWO_BRANCHES.replace("sigmoid(%b)", "sigmoid(%ra)"))
    random_weights(sibling)
    assert BatchIndependentLinears()(sibling).modified
    chained = """graph(%a : f32[2,8]) {
  %wa : f32[8,8] = weight()
  %wb : f32[8,8] = weight()
  %ha : f32[2,8] = linear(%a, %wa)
  %r : f32[2,8] = relu(%ha)
  %hb : f32[2,8] = linear(%r, %wb)
  return (%hb)
}"""
    shared = """graph(%a : f32[2,8]) {
  %wa : f32[8,8] = weight()
  %wb : f32[8,8] = weight()
  %ha : f32[2,8] = linear(%a, %wa)
  %hb : f32[2,8] = linear(%a, %wb)
  return (%ha, %hb)
}"""
    other_shapes = """graph(%a : f32[2,8], %b : f32[3,8]) {
  %wa : f32[4,8] = weight()
  %wb : f32[4,8] = weight()
  %ha : f32[2,4] = linear(%a, %wa)
  %hb : f32[3,4] = linear(%b, %wb)
  return (%ha, %hb)
}"""
    for text in (chained, shared, other_shapes):
        check_pass(BatchIndependentLinears(), text, None)


class Towers(nn.Module):
    """Three per-feature towers of the same shape, then a sum: the batched case."""

    def __init__(self):
        super().__init__()
        self.towers = nn.ModuleList(nn.Linear(12, 6) for _ in range(3))

    def forward(self, a, b, c):
        return sum(torch.relu(t(x)) for t, x in zip(self.towers, (a, b, c)))


def test_towers_match_eager_with_one_gemm_kernel():
    model = Towers().eval()
    args = tuple(torch.randn(5, 12) for _ in range(3))
    compiled = dscompile(model, args, cache=False)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*args), model(*args), rtol=1e-4, atol=1e-5)
    anchors = [k.anchor_op for k in compiled.kernels if k.anchor_op in ("linear", "matmul")]
    assert anchors == ["matmul"]
