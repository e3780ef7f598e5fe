"""The IR's own guarantees: types infer, text round-trips, JSON keeps weights, the
verifier rejects malformed graphs, the parser points at the broken line and column."""

import numpy as np
import pytest

import ir
from ir import Graph, IRParseError, IRTypeError, IRVerifyError, TensorType


def small_graph() -> Graph:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 8, 8), "float32"))
    w = g.add_weight("conv.weight", np.ones((4, 3, 3, 3), "float32"))
    b = g.add_weight("conv.bias", np.zeros(4, "float32"))
    conv = g.call("conv2d", [x, w, b], {"padding": [1, 1], "stride": (2, 2)},
                  meta={"source": "model.py:12 in forward"})
    half = g.add_constant(0.5, "float32")
    scaled = g.call("mul", [conv, half])
    flat = g.call("reshape", [scaled], {"shape": (2, -1)})
    g.outputs = [g.call("gelu", [flat], {"approximate": "tanh"}), x]
    return g


def test_types_are_inferred():
    g = small_graph()
    conv = g.node("conv2d")
    assert conv.type == TensorType((2, 4, 4, 4), "float32")
    assert g.node("reshape").shape == (2, 64)
    assert g.node("mul").dtype == "float32"


def test_text_round_trip_keeps_structure_and_source():
    g = small_graph()
    text = str(g)
    assert "%conv2d : f32[2,4,4,4] = conv2d(%x, %conv_weight, %conv_bias, padding=[1,1], " \
           "stride=[2,2])  # model.py:12 in forward" in text
    parsed = ir.parse(text)
    assert parsed == g
    assert str(parsed) == text
    assert parsed.node("conv2d").source == "model.py:12 in forward"
    ir.verify(parsed)


def test_attr_values_round_trip():
    g = Graph()
    x = g.add_input("x", TensorType((4,), "float32"))
    g.outputs = [g.call("clamp", [x], {"min": float("-inf"), "max": 6.0})]
    g.outputs.append(g.call("gelu", [x], {"approximate": "none"}))
    assert ir.parse(str(g)) == g


def test_json_keeps_weights_and_meta(tmp_path):
    g = small_graph()
    path = tmp_path / "g.json"
    ir.save(g, path)
    loaded = ir.load(path)
    assert loaded == g
    np.testing.assert_array_equal(loaded.weights["conv_weight"], g.weights["conv_weight"])
    assert loaded.node("conv2d").meta["source"] == "model.py:12 in forward"


def test_corrupted_json_is_a_clear_error(tmp_path):
    g = small_graph()
    text = ir.to_json(g)
    with pytest.raises(ir.IRFileError, match="truncated or corrupted"):
        ir.from_json(text[: len(text) // 2])
    with pytest.raises(ir.IRFileError, match="not a dscompile IR file"):
        ir.from_json('{"hello": 1}')


def test_symbolic_dims_print_and_broadcast():
    g = Graph()
    x = g.add_input("x", TensorType(("batch", 8), "float32"))
    b = g.add_weight("b", np.zeros(8, "float32"))
    g.outputs = [g.call("add", [x, b])]
    assert g.outputs[0].shape == ("batch", 8)
    assert ir.parse(str(g)) == g


def test_bad_types_are_rejected_at_construction():
    g = Graph()
    x = g.add_input("x", TensorType((2, 3), "float32"))
    y = g.add_input("y", TensorType((4, 5), "float32"))
    with pytest.raises(IRTypeError, match="inner dims differ"):
        g.call("matmul", [x, y])
    with pytest.raises(IRTypeError, match="do not broadcast"):
        g.call("add", [x, y])
    with pytest.raises(IRTypeError, match="needs attribute 'dim'"):
        g.call("softmax", [x])
    with pytest.raises(IRTypeError, match="no attribute"):
        g.call("relu", [x], {"inplace": True})


def test_verifier_reports_every_problem():
    g = small_graph()
    g.node("mul").type = TensorType((1,), "float32")  # a pass that forgot to re-infer
    g.node("gelu").users.append(g.node("mul"))  # a stale users list
    with pytest.raises(IRVerifyError) as err:
        ir.verify(g)
    assert len(err.value.problems) == 3  # the bad type also breaks the reshape after it
    assert "%mul (mul)" in str(err.value) and "recorded type f32[1]" in str(err.value)
    assert "does not read it" in str(err.value)


def test_verifier_catches_use_before_definition():
    g = small_graph()
    conv = g.node("conv2d")
    g.nodes.remove(conv)
    g.nodes.append(conv)
    with pytest.raises(IRVerifyError, match="not defined before it"):
        ir.verify(g)


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ("graph(%x : f32[2]) {\n  %y : f32[2] = relu(%z)\n  return (%y)\n}", 2, 22,
         "%z is used before it is defined"),
        ("graph(%x : f32[2]) {\n  %y : f32[2] = frobnicate(%x)\n  return (%y)\n}", 2, 17,
         "unknown op 'frobnicate'"),
        ("graph(%x : q7[2]) {\n  return (%x)\n}", 1, 12, "unknown dtype 'q7'"),
        ("graph(%x : f32[2]) {\n  %y : f32[2] = relu(%x\n  return (%y)\n}", 2, 24,
         "expected"),
        ("graph(%x : f32[2]) {\n  %y : f32[2] = relu(%x)\n}", 3, 1, "missing 'return"),
    ],
)
def test_parse_errors_name_line_and_column(text, line, col, message):
    with pytest.raises(IRParseError) as err:
        ir.parse(text)
    assert (err.value.line, err.value.col) == (line, col)
    assert message in str(err.value)


def test_graph_edits_keep_users_right():
    g = small_graph()
    mul, gelu = g.node("mul"), g.node("reshape")
    relu = g.call("relu", [g.node("conv2d")], after=g.node("conv2d"))
    g.replace_all_uses(g.node("conv2d"), relu)
    g.set_inputs(relu, [g.node("conv2d")])
    assert mul.inputs[0] is relu and relu in g.node("conv2d").users
    with pytest.raises(ValueError, match="still has users"):
        g.erase(relu)
    ir.verify(g)
    assert gelu.users == [g.node("gelu")]


def test_networkx_view():
    nxg = ir.to_networkx(small_graph())
    assert nxg.nodes["conv2d"]["op"] == "conv2d"
    assert nxg.has_edge("conv_weight", "conv2d")
    assert nxg.edges["conv_weight", "conv2d"]["index"] == 1
