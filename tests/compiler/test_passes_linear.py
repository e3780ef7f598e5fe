"""merge_linear_chain and merge_parallel_linear: where they fire, the values of the new
weights, and where they must not fire."""

import numpy as np

from compiler.passes.merge_linear_chain import MergeLinearChain
from compiler.passes.merge_parallel_linear import ParallelLinearToConcatSlice
from compiler.passes.testing import check_pass, graph_from_text, random_weights

CHAIN = """graph(%x : f32[2,4,16]) {
  %w1 : f32[8,16] = weight()
  %b1 : f32[8] = weight()
  %w2 : f32[8,8] = weight()
  %b2 : f32[8] = weight()
  %l1 : f32[2,4,8] = linear(%x, %w1, %b1)
  %r : f32[8,8] = reshape(%l1, shape=[8,8])
  %l2 : f32[8,8] = linear(%r, %w2, %b2)
  %out : f32[8,8] = relu(%l2)
  return (%out)
}"""

# The reshape keeps the last dim, so it commutes with the linear and moves after it.
CHAIN_EXPECTED = """graph(%x : f32[2,4,16]) {
  %w1 : f32[8,16] = weight()
  %b1 : f32[8] = weight()
  %w2 : f32[8,8] = weight()
  %b2 : f32[8] = weight()
  %l2_w : f32[8,16] = weight()
  %l2_b : f32[8] = weight()
  %linear : f32[2,4,8] = linear(%x, %l2_w, %l2_b)
  %l2 : f32[8,8] = reshape(%linear, shape=[8,8])
  %out : f32[8,8] = relu(%l2)
  return (%out)
}"""


def test_merge_linear_chain():
    after = check_pass(MergeLinearChain(), CHAIN, CHAIN_EXPECTED)
    g = graph_from_text(CHAIN)
    w = random_weights(g)
    after = MergeLinearChain()(g.copy()).graph
    np.testing.assert_allclose(after.weights["l2_w"], w["w2"] @ w["w1"], rtol=1e-5)
    np.testing.assert_allclose(after.weights["l2_b"], w["w2"] @ w["b1"] + w["b2"], rtol=1e-5,
                               atol=1e-6)


def test_chain_without_biases_gets_none():
    text = """graph(%x : f32[3,16]) {
  %w1 : f32[8,16] = weight()
  %w2 : f32[4,8] = weight()
  %l1 : f32[3,8] = linear(%x, %w1)
  %l2 : f32[3,4] = linear(%l1, %w2)
  return (%l2)
}"""
    expected = """graph(%x : f32[3,16]) {
  %w1 : f32[8,16] = weight()
  %w2 : f32[4,8] = weight()
  %l2_w : f32[4,16] = weight()
  %l2 : f32[3,4] = linear(%x, %l2_w)
  return (%l2)
}"""
    check_pass(MergeLinearChain(), text, expected)


def test_chain_not_merged_when_the_middle_is_used_elsewhere():
    check_pass(MergeLinearChain(), CHAIN.replace("return (%out)", "return (%out, %l1)"), None)
    check_pass(MergeLinearChain(), CHAIN.replace("return (%out)", "return (%out, %r)"), None)


def test_chain_not_merged_through_a_nonlinearity_or_a_row_mixing_reshape():
    nonlinear = """graph(%x : f32[2,16]) {
  %w1 : f32[8,16] = weight()
  %w2 : f32[8,8] = weight()
  %l1 : f32[2,8] = linear(%x, %w1)
  %r : f32[2,8] = relu(%l1)
  %l2 : f32[2,8] = linear(%r, %w2)
  return (%l2)
}"""
    check_pass(MergeLinearChain(), nonlinear, None)
    mixing = """graph(%x : f32[2,16]) {
  %w1 : f32[8,16] = weight()
  %w2 : f32[4,4] = weight()
  %l1 : f32[2,8] = linear(%x, %w1)
  %r : f32[4,4] = reshape(%l1, shape=[4,4])
  %l2 : f32[4,4] = linear(%r, %w2)
  return (%l2)
}"""
    check_pass(MergeLinearChain(), mixing, None)


def test_chain_not_merged_when_it_adds_flops():
    # 64 -> 4 -> 64: merged it is 64*64 = 4096 MACs per row instead of 256 + 256.
    bottleneck = """graph(%x : f32[2,64]) {
  %w1 : f32[4,64] = weight()
  %w2 : f32[64,4] = weight()
  %l1 : f32[2,4] = linear(%x, %w1)
  %l2 : f32[2,64] = linear(%l1, %w2)
  return (%l2)
}"""
    check_pass(MergeLinearChain(), bottleneck, None)


QKV = """graph(%x : f32[2,4,16]) {
  %wq : f32[16,16] = weight()
  %bq : f32[16] = weight()
  %wk : f32[16,16] = weight()
  %bk : f32[16] = weight()
  %wv : f32[8,16] = weight()
  %q : f32[2,4,16] = linear(%x, %wq, %bq)
  %k : f32[2,4,16] = linear(%x, %wk, %bk)
  %v : f32[2,4,8] = linear(%x, %wv)
  %kt : f32[2,16,4] = permute(%k, dims=[0,2,1])
  %s : f32[2,4,4] = matmul(%q, %kt)
  %o : f32[2,4,8] = matmul(%s, %v)
  return (%o)
}"""

QKV_EXPECTED = """graph(%x : f32[2,4,16]) {
  %wq : f32[16,16] = weight()
  %bq : f32[16] = weight()
  %wk : f32[16,16] = weight()
  %bk : f32[16] = weight()
  %wv : f32[8,16] = weight()
  %q_k_v_w : f32[40,16] = weight()
  %q_k_v_b : f32[40] = weight()
  %linear : f32[2,4,40] = linear(%x, %q_k_v_w, %q_k_v_b)
  %q : f32[2,4,16] = slice(%linear, dim=-1, start=0, end=16)
  %k : f32[2,4,16] = slice(%linear, dim=-1, start=16, end=32)
  %v : f32[2,4,8] = slice(%linear, dim=-1, start=32, end=40)
  %kt : f32[2,16,4] = permute(%k, dims=[0,2,1])
  %s : f32[2,4,4] = matmul(%q, %kt)
  %o : f32[2,4,8] = matmul(%s, %v)
  return (%o)
}"""


def test_merge_parallel_linear_qkv():
    g = graph_from_text(QKV)
    w = random_weights(g)
    after = check_pass(ParallelLinearToConcatSlice(), QKV, QKV_EXPECTED, weights=w)
    np.testing.assert_array_equal(after.weights["q_k_v_w"],
                                  np.concatenate([w["wq"], w["wk"], w["wv"]]))
    np.testing.assert_array_equal(after.weights["q_k_v_b"],
                                  np.concatenate([w["bq"], w["bk"], np.zeros(8)]))
    assert "==>" in ParallelLinearToConcatSlice.rewrite


def test_parallel_linears_with_runtime_weights_are_left_alone():
    text = """graph(%x : f32[2,16], %wk : f32[16,16]) {
  %wq : f32[16,16] = weight()
  %q : f32[2,16] = linear(%x, %wq)
  %k : f32[2,16] = linear(%x, %wk)
  %a : f32[2,16] = add(%q, %k)
  return (%a)
}"""
    check_pass(ParallelLinearToConcatSlice(), text, None)


def test_linears_on_different_inputs_or_alone_are_left_alone():
    text = """graph(%x : f32[2,16], %y : f32[2,16]) {
  %wq : f32[16,16] = weight()
  %wk : f32[16,16] = weight()
  %q : f32[2,16] = linear(%x, %wq)
  %k : f32[2,16] = linear(%y, %wk)
  %a : f32[2,16] = add(%q, %k)
  return (%a)
}"""
    check_pass(ParallelLinearToConcatSlice(), text, None)
