"""simplify, cse and dce: Before/Expected IR text, compared structurally."""

import numpy as np

from compiler.passes.cse import CommonSubexpressionElimination
from compiler.passes.dce import DeadCodeElimination
from compiler.passes.simplify import RULES, Simplify
from compiler.passes.testing import check_pass, graph_from_text, run_pass

SIMPLIFY_BEFORE = """graph(%x : f32[2,3,4], %y : f32[], %i : i64[4]) {
  %zero : f32[] = constant(value=0.0)
  %one : f32[] = constant(value=1)
  %a : f32[2,3,4] = add(%zero, %x)
  %b : f32[2,3,4] = mul(%a, %one)
  %c : f32[2,3,4] = div(%b, %one)
  %d : f32[2,3,4] = sub(%c, %zero)
  %n1 : f32[2,3,4] = neg(%d)
  %n2 : f32[2,3,4] = neg(%n1)
  %r1 : f32[6,4] = reshape(%n2, shape=[6,4])
  %r2 : f32[24] = reshape(%r1, shape=[-1])
  %r3 : f32[24] = reshape(%r2, shape=[24])
  %p1 : f32[4,2,3] = permute(%n2, dims=[2,0,1])
  %p2 : f32[3,4,2] = permute(%p1, dims=[2,0,1])
  %p3 : f32[2,3,4] = permute(%n2, dims=[0,1,2])
  %cast : f32[2,3,4] = cast(%p3, dtype="float32")
  %s : f32[2,3,4] = slice(%cast, dim=2, start=0, end=100)
  %relu : f32[2,3,4] = relu(%s)
  %relu2 : f32[2,3,4] = relu(%relu)
  %zw : f32[1,1] = weight()
  %grow : f32[1,1] = add(%y, %zw)
  %promote : f32[4] = add(%i, %zero)
  %half : f32[2,3,2] = slice(%x, dim=2, start=0, end=4, step=2)
  return (%r3, %p2, %relu2, %grow, %promote, %half)
}"""

# x+0, x*1, x/1, x-0, -(-x), cast to its own dtype, identity permute, a whole-axis slice
# and relu(relu) vanish; reshape chains and permute chains collapse into one. Not
# simplified: y + 0 that broadcasts y to [1,1] and i + 0.0 that promotes int64 to float.
SIMPLIFY_EXPECTED = """graph(%x : f32[2,3,4], %y : f32[], %i : i64[4]) {
  %zero : f32[] = constant(value=0.0)
  %r2 : f32[24] = reshape(%x, shape=[-1])
  %p2 : f32[3,4,2] = permute(%x, dims=[1,2,0])
  %relu : f32[2,3,4] = relu(%x)
  %zw : f32[1,1] = weight()
  %grow : f32[1,1] = add(%y, %zw)
  %promote : f32[4] = add(%i, %zero)
  %half : f32[2,3,2] = slice(%x, dim=2, start=0, end=4, step=2)
  return (%r2, %p2, %relu, %grow, %promote, %half)
}"""


def test_simplify():
    after = check_pass(Simplify(), SIMPLIFY_BEFORE, SIMPLIFY_EXPECTED)
    assert after.node("p2").meta["provenance"] == ["simplify"]


def test_every_rule_states_its_algebra():
    assert all("->" in rule.name for rule in RULES)


def test_simplify_leaves_a_simple_graph_alone():
    check_pass(Simplify(), """graph(%x : f32[4]) {
  %two : f32[] = constant(value=2.0)
  %m : f32[4] = mul(%x, %two)
  %r : f32[2,2] = reshape(%m, shape=[2,2])
  return (%r)
}""", None)


CSE_BEFORE = """graph(%x : f32[4,8], %y : f32[4,8]) {
  %w1 : f32[8] = weight()
  %w2 : f32[8] = weight()
  %c1 : f32[] = constant(value=2.0)
  %c2 : f32[] = constant(value=2.0)
  %c3 : f32[] = constant(value=3.0)
  %a : f32[4,8] = add(%x, %w1)
  %b : f32[4,8] = add(%x, %w2)
  %m1 : f32[4,8] = mul(%a, %c1)
  %m2 : f32[4,8] = mul(%b, %c2)
  %m3 : f32[4,8] = mul(%b, %c3)
  %s1 : f32[4,8] = softmax(%x, dim=1)
  %s2 : f32[4,8] = softmax(%x, dim=0)
  %s3 : f32[4,8] = softmax(%x, dim=1)
  %r : f32[4,8] = add(%y, %x)
  return (%m1, %m2, %m3, %s1, %s2, %s3, %r)
}"""

# w1 and w2 hold equal data, so a == b and m1 == m2; softmax over another dim, a
# different constant and add with another input are different values.
CSE_EXPECTED = """graph(%x : f32[4,8], %y : f32[4,8]) {
  %w1 : f32[8] = weight()
  %c1 : f32[] = constant(value=2.0)
  %c3 : f32[] = constant(value=3.0)
  %a : f32[4,8] = add(%x, %w1)
  %m1 : f32[4,8] = mul(%a, %c1)
  %m3 : f32[4,8] = mul(%a, %c3)
  %s1 : f32[4,8] = softmax(%x, dim=1)
  %s2 : f32[4,8] = softmax(%x, dim=0)
  %r : f32[4,8] = add(%y, %x)
  return (%m1, %m1, %m3, %s1, %s2, %s1, %r)
}"""


def test_cse():
    w = np.arange(8, dtype="float32")
    check_pass(CommonSubexpressionElimination(), CSE_BEFORE, CSE_EXPECTED,
               weights={"w1": w, "w2": w.copy()})


def test_cse_keeps_weights_with_different_data():
    after = check_pass(CommonSubexpressionElimination(), CSE_BEFORE, CSE_DIFFERENT_EXPECTED,
                       weights={"w1": np.zeros(8, "float32"), "w2": np.ones(8, "float32")})
    assert [n.name for n in after.nodes if n.op == "weight"] == ["w1", "w2"]


CSE_DIFFERENT_EXPECTED = """graph(%x : f32[4,8], %y : f32[4,8]) {
  %w1 : f32[8] = weight()
  %w2 : f32[8] = weight()
  %c1 : f32[] = constant(value=2.0)
  %c3 : f32[] = constant(value=3.0)
  %a : f32[4,8] = add(%x, %w1)
  %b : f32[4,8] = add(%x, %w2)
  %m1 : f32[4,8] = mul(%a, %c1)
  %m2 : f32[4,8] = mul(%b, %c1)
  %m3 : f32[4,8] = mul(%b, %c3)
  %s1 : f32[4,8] = softmax(%x, dim=1)
  %s2 : f32[4,8] = softmax(%x, dim=0)
  %r : f32[4,8] = add(%y, %x)
  return (%m1, %m2, %m3, %s1, %s2, %s1, %r)
}"""


def test_cse_never_merges_inputs_or_dataless_weights():
    text = """graph(%x : f32[4], %y : f32[4]) {
  %w1 : f32[4] = weight()
  %w2 : f32[4] = weight()
  %a : f32[4] = add(%x, %w1)
  %b : f32[4] = add(%y, %w2)
  return (%a, %b)
}"""
    graph = graph_from_text(text)
    after, modified = run_pass(CommonSubexpressionElimination(), graph)
    assert not modified and after == graph


DCE_BEFORE = """graph(%x : f32[4], %unused_input : f32[4]) {
  %w : f32[4] = weight()
  %dead_w : f32[4] = weight()
  %dead_c : f32[] = constant(value=1.0)
  %a : f32[4] = add(%x, %w)
  %dead1 : f32[4] = mul(%a, %dead_w)
  %dead2 : f32[4] = add(%dead1, %dead_c)
  %r : f32[4] = relu(%a)
  return (%r, %a)
}"""

DCE_EXPECTED = """graph(%x : f32[4], %unused_input : f32[4]) {
  %w : f32[4] = weight()
  %a : f32[4] = add(%x, %w)
  %r : f32[4] = relu(%a)
  return (%r, %a)
}"""


def test_dce_removes_dead_ops_weights_and_constants_but_keeps_inputs():
    after = check_pass(DeadCodeElimination(), DCE_BEFORE, DCE_EXPECTED)
    assert set(after.weights) == {"w"}


def test_dce_on_a_live_graph_changes_nothing():
    check_pass(DeadCodeElimination(), DCE_EXPECTED, None)
