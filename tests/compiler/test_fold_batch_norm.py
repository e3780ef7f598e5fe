"""fold_batch_norm: conv2d/linear followed by an eval batch norm become one op whose
weights carry the normalization; checked structurally and by value."""

import numpy as np

from compiler.passes.fold_batch_norm import FoldBatchNorm
from compiler.passes.testing import check_pass, graph_from_text, random_weights

BEFORE = """graph(%x : f32[2,3,8,8], %v : f32[4,6]) {
  %w : f32[4,3,3,3] = weight()
  %b : f32[4] = weight()
  %mean : f32[4] = weight()
  %var : f32[4] = weight()
  %gamma : f32[4] = weight()
  %beta : f32[4] = weight()
  %conv : f32[2,4,8,8] = conv2d(%x, %w, %b, padding=[1,1])
  %bn : f32[2,4,8,8] = batch_norm(%conv, %mean, %var, %gamma, %beta, eps=0.001)
  %relu : f32[2,4,8,8] = relu(%bn)
  %lw : f32[5,6] = weight()
  %lmean : f32[5] = weight()
  %lvar : f32[5] = weight()
  %lin : f32[4,5] = linear(%v, %lw)
  %lbn : f32[4,5] = batch_norm(%lin, %lmean, %lvar)
  return (%relu, %lbn)
}"""

EXPECTED = """graph(%x : f32[2,3,8,8], %v : f32[4,6]) {
  %w : f32[4,3,3,3] = weight()
  %b : f32[4] = weight()
  %mean : f32[4] = weight()
  %var : f32[4] = weight()
  %gamma : f32[4] = weight()
  %beta : f32[4] = weight()
  %w_bn : f32[4,3,3,3] = weight()
  %conv_bn_bias : f32[4] = weight()
  %conv : f32[2,4,8,8] = conv2d(%x, %w_bn, %conv_bn_bias, padding=[1,1])
  %relu : f32[2,4,8,8] = relu(%conv)
  %lw : f32[5,6] = weight()
  %lmean : f32[5] = weight()
  %lvar : f32[5] = weight()
  %lw_bn : f32[5,6] = weight()
  %lin_bn_bias : f32[5] = weight()
  %lin : f32[4,5] = linear(%v, %lw_bn, %lin_bn_bias)
  return (%relu, %lin)
}"""


def test_fold_conv_and_linear_batch_norm():
    after = check_pass(FoldBatchNorm(), BEFORE, EXPECTED)
    assert after.node("conv").meta["provenance"] == ["fold_batch_norm"]


def test_folded_values():
    g = graph_from_text(BEFORE)
    weights = random_weights(g)
    after = FoldBatchNorm()(g.copy()).graph
    s = weights["gamma"] / np.sqrt(weights["var"] + 1e-3)
    np.testing.assert_allclose(after.weights["w_bn"], weights["w"] * s[:, None, None, None],
                               rtol=1e-6)
    np.testing.assert_allclose(after.weights["conv_bn_bias"],
                               (weights["b"] - weights["mean"]) * s + weights["beta"],
                               rtol=1e-5, atol=1e-6)
    ls = 1 / np.sqrt(weights["lvar"] + 1e-5)
    np.testing.assert_allclose(after.weights["lw_bn"], weights["lw"] * ls[:, None], rtol=1e-6)
    np.testing.assert_allclose(after.weights["lin_bn_bias"], -weights["lmean"] * ls,
                               rtol=1e-5)
    for name in weights:  # the originals are untouched (dce drops them later)
        np.testing.assert_array_equal(after.weights[name], weights[name])


def test_no_fold_when_the_conv_output_has_a_second_user():
    text = BEFORE.replace("return (%relu, %lbn)", "return (%relu, %lbn, %conv)")
    check_pass(FoldBatchNorm(), text.replace("%lbn : f32[4,5] = batch_norm(%lin, %lmean, "
                                             "%lvar)", "%lbn : f32[4,5] = relu(%lin)"), None)


def test_no_fold_for_linear_on_rank_3_or_non_constant_statistics():
    # BatchNorm1d on [N, C, L] normalizes axis 1, which is not the linear's output axis.
    rank3 = """graph(%v : f32[2,5,6]) {
  %lw : f32[3,6] = weight()
  %lmean : f32[5] = weight()
  %lvar : f32[5] = weight()
  %lin : f32[2,5,3] = linear(%v, %lw)
  %lbn : f32[2,5,3] = batch_norm(%lin, %lmean, %lvar)
  return (%lbn)
}"""
    check_pass(FoldBatchNorm(), rank3, None)
    runtime_stats = """graph(%v : f32[4,6], %mean : f32[5]) {
  %lw : f32[5,6] = weight()
  %lvar : f32[5] = weight()
  %lin : f32[4,5] = linear(%v, %lw)
  %lbn : f32[4,5] = batch_norm(%lin, %mean, %lvar)
  return (%lbn)
}"""
    check_pass(FoldBatchNorm(), runtime_stats, None)
