"""The pattern API: operands, commutativity, predicates, same-name captures, declining."""

import numpy as np
import pytest

import ir
from compiler.passes.testing import assert_round_trips, assert_same_numerics, random_weights
from compiler.pattern import (
    Any,
    Pat,
    PatternRewritePass,
    RewriteError,
    RewriteRule,
    has_dtype,
    has_single_user,
    is_constant,
    is_weight,
    op_kind,
)

GRAPH = """graph(%x : f32[4,8], %y : f32[4,8]) {
  %s : f32[4,8] = sigmoid(%x)
  %a : f32[4,8] = mul(%x, %s)
  %b : f32[4,8] = mul(%s, %x)
  %c : f32[4,8] = mul(%y, %s)
  %w : f32[8] = weight()
  %one : f32[] = constant(value=1.0)
  %d : f32[4,8] = add(%a, %w)
  %e : f32[4,8] = mul(%d, %one)
  return (%b, %c, %e)
}"""

SILU = Pat("mul", Any("x"), Pat("sigmoid", Any("x")), commutative=True)


def silu_rule(rw, x):
    return rw.call("silu", [x])


@pytest.fixture
def g():
    return ir.parse(GRAPH)


def test_commutative_and_same_name_captures(g):
    assert SILU.match(g.node("a"), g) == {"x": g.node("x")}
    assert SILU.match(g.node("b"), g) == {"x": g.node("x")}  # operands swapped
    assert SILU.match(g.node("c"), g) is None  # y * sigmoid(x): the two x differ
    plain = Pat("mul", Any("x"), Pat("sigmoid", Any("x")))
    assert plain.match(g.node("b"), g) is None  # not commutative: order matters


def test_op_alternatives_and_arity(g):
    assert Pat(("add", "mul"), name="n").match(g.node("d")) == {"n": g.node("d")}
    assert Pat("mul", Any()).match(g.node("a")) is None  # one pattern for two operands


def test_predicates(g):
    assert Pat("add", Any(), Any("w", is_weight)).match(g.node("d"))["w"].name == "w"
    assert Pat("mul", Any(), Any("c", is_constant(1))).match(g.node("e"), g) is not None
    assert Pat("mul", Any(), Any("c", is_constant(2))).match(g.node("e"), g) is None
    assert Pat("add", Any(), Any(predicate=is_constant())).match(g.node("d"), g) is None
    assert Any(predicate=has_single_user).match(g.node("a"), g) is not None
    assert Any(predicate=has_single_user).match(g.node("s"), g) is None  # three users
    assert Any(predicate=has_single_user).match(g.node("e"), g) is None  # an output
    assert Any(predicate=has_dtype("float32")).match(g.node("e")) == {}  # no captures
    assert Any(predicate=has_dtype("float16")).match(g.node("e")) is None
    assert Any(predicate=op_kind("elementwise")).match(g.node("s")) is not None
    assert Any(predicate=[op_kind("elementwise"), lambda n: n.op == "relu"]).match(
        g.node("s")) is None


def test_one_element_weight_counts_as_constant():
    g = ir.parse("graph(%x : f32[4]) {\n  %w : f32[1] = weight()\n"
                 "  %m : f32[4] = mul(%x, %w)\n  return (%m)\n}")
    assert not is_constant(1.0)(g.node("w"), g)  # no data: unknown
    g.weights["w"] = np.ones(1, "float32")
    assert is_constant(1.0)(g.node("w"), g)
    g.weights["w"] = np.full(1, 3.0, "float32")
    assert not is_constant(1.0)(g.node("w"), g)


def test_attr_constraints(g):
    text = GRAPH.replace("%s : f32[4,8] = sigmoid(%x)",
                         "%s : f32[4,8] = leaky_relu(%x, negative_slope=0.2)")
    g2 = ir.parse(text)
    assert Pat("leaky_relu", attrs={"negative_slope": 0.2}).match(g2.node("s")) == {}
    assert Pat("leaky_relu", attrs={"negative_slope": lambda v: v > 0.5}).match(
        g2.node("s")) is None
    assert Pat("gelu", attrs={"approximate": "none"}).match(g2.node("s")) is None


def test_rewrite_pass_reaches_fixpoint_and_cleans_up(g):
    random_weights(g)
    pass_ = PatternRewritePass([RewriteRule(SILU, silu_rule, "x*sigmoid(x) -> silu(x)")],
                               name="silu")
    result = pass_(g.copy())
    after = result.graph
    assert result.modified
    assert [n.op for n in after.ops()] == ["sigmoid", "silu", "silu", "mul", "add", "mul"]
    assert after.outputs[0].op == "silu"
    assert after.node("b").op == "silu"  # the replacement keeps the old name
    assert after.node("b").meta["provenance"] == ["silu"]
    assert pass_.fired == {"x*sigmoid(x) -> silu(x)": 2}
    assert_round_trips(after)
    assert_same_numerics(g, after)
    assert not pass_(after).modified


def test_declining_leaves_the_graph_alone(g):
    created = []

    def decline(rw, x):
        created.append(rw.call("silu", [x]))  # built, then declined: must not linger
        return None

    result = PatternRewritePass([RewriteRule(SILU, decline, "never")], "p")(g.copy())
    assert not result.modified and created
    assert result.graph == g


def test_a_rule_that_changes_the_type_is_reported(g):
    bad = RewriteRule(Pat("sigmoid", Any("x")), lambda rw, x: rw.call("reshape", [x],
                      {"shape": (8, 4)}), "wrong")
    with pytest.raises(RewriteError, match="wrong"):
        PatternRewritePass([bad], "p")(g.copy())


def test_rules_that_undo_each_other_stop():
    g = ir.parse("graph(%x : f32[4]) {\n  %a : f32[4] = relu(%x)\n  return (%a)\n}")
    flip = [RewriteRule(Pat("relu", Any("x")), lambda rw, x: rw.call("relu6", [x]), "a"),
            RewriteRule(Pat("relu6", Any("x")), lambda rw, x: rw.call("relu", [x]), "b")]
    with pytest.raises(RewriteError, match="fixpoint"):
        PatternRewritePass(flip, "p", max_sweeps=5)(g)
