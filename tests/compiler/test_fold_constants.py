"""constant_fold: compile-time values become weights; the size guard keeps blow-ups out."""

import numpy as np

from compiler.passes.constant_fold import ConstantFold
from compiler.passes.testing import check_pass

BEFORE = """graph(%x : f32[4,8]) {
  %w : f32[8,4] = weight()
  %two : f32[] = constant(value=2.0)
  %three : f32[] = constant(value=3.0)
  %six : f32[] = mul(%two, %three)
  %wt : f32[4,8] = permute(%w, dims=[1,0])
  %ws : f32[4,8] = mul(%wt, %six)
  %big : f32[1024,1024] = expand(%two, shape=[1024,1024])
  %ar : i64[8] = arange(start=0, end=8, dtype="int64")
  %arf : f32[8] = cast(%ar, dtype="float32")
  %y : f32[4,8] = add(%x, %ws)
  %z : f32[4,8] = add(%y, %arf)
  %s : f32[] = sum(%big)
  %o : f32[4,8] = mul(%z, %s)
  return (%o)
}"""

# Scalars fold to constants, tensors to weights (under their old names); the 4 MiB
# expand of a scalar is left alone (and so is the sum reading it). The operands left
# unused (w, three) are dce's to remove.
EXPECTED = """graph(%x : f32[4,8]) {
  %w : f32[8,4] = weight()
  %two : f32[] = constant(value=2.0)
  %three : f32[] = constant(value=3.0)
  %six : f32[] = constant(value=6.0)
  %wt : f32[4,8] = weight()
  %ws : f32[4,8] = weight()
  %big : f32[1024,1024] = expand(%two, shape=[1024,1024])
  %ar : i64[8] = weight()
  %arf : f32[8] = weight()
  %y : f32[4,8] = add(%x, %ws)
  %z : f32[4,8] = add(%y, %arf)
  %s : f32[] = sum(%big)
  %o : f32[4,8] = mul(%z, %s)
  return (%o)
}"""


def test_constant_fold():
    w = np.arange(32, dtype="float32").reshape(8, 4)
    after = check_pass(ConstantFold(), BEFORE, EXPECTED, weights={"w": w})
    np.testing.assert_array_equal(after.weights["ws"], w.T * 6)
    np.testing.assert_array_equal(after.weights["arf"], np.arange(8, dtype="float32"))
    assert after.weights["ws"].dtype == np.float32
    assert after.node("ws").meta["provenance"] == ["constant_fold"]


def test_the_size_limit_is_a_parameter():
    after = check_pass(ConstantFold(max_bytes=1 << 23), BEFORE,
                       EXPECTED.replace("%big : f32[1024,1024] = expand(%two, shape=[1024,1024])",
                                        "%big : f32[1024,1024] = weight()")
                               .replace("%s : f32[] = sum(%big)", "%s : f32[] = constant("
                                        "value=2097152.0)"),
                       weights={"w": np.ones((8, 4), "float32")})
    assert after.weights["big"].shape == (1024, 1024)


def test_nothing_to_fold_without_data_or_with_inputs():
    text = """graph(%x : f32[4]) {
  %w : f32[4] = weight()
  %n : f32[4] = neg(%w)
  %a : f32[4] = add(%x, %n)
  return (%a)
}"""
    check_pass(ConstantFold(), text, None, numerics=False)  # %w has no data


def test_weights_are_never_mutated():
    w = np.ones((8, 4), "float32")
    check_pass(ConstantFold(), BEFORE, EXPECTED, weights={"w": w})
    np.testing.assert_array_equal(w, np.ones((8, 4), "float32"))
