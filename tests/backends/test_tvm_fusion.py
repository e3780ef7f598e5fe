"""Fusion groups become one PrimFunc each; views, odd outputs, symbolic dims."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from backend_helpers import assert_close, run_exported
from tvm import tirx

from backends.tvm.build import build
from ir import Graph
from ir.types import TensorType


def primfuncs(module) -> list[str]:
    return [gv.name_hint for gv, f in module.mod.functions.items()
            if isinstance(f, tirx.PrimFunc)]


def weight(g: Graph, name: str, *shape: int, low: float = -1.0, high: float = 1.0):
    return g.add_weight(name, np.random.uniform(low, high, shape).astype("float32"))


def t(g: Graph, name: str) -> torch.Tensor:
    return torch.from_numpy(g.weights[name])


def test_conv_batch_norm_relu_is_one_kernel():
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 17, 15), "float32"))
    w, b = weight(g, "w", 8, 3, 3, 3), weight(g, "b", 8)
    mean, var = weight(g, "mean", 8), weight(g, "var", 8, low=0.5, high=2.0)
    gamma, beta = weight(g, "gamma", 8), weight(g, "beta", 8)
    c = g.call("conv2d", [x, w, b], {"padding": (1, 1)}, meta={"group": 0})
    n = g.call("batch_norm", [c, mean, var, gamma, beta], meta={"group": 0})
    g.outputs = [g.call("relu", [n], meta={"group": 0})]
    m = build(g, "cpu")
    assert m.num_kernels == 1 and len(primfuncs(m)) == 1
    assert m.kernels[0].schedule == "conv2d"
    assert m.kernels[0].node_names == [c.name, n.name, g.outputs[0].name]
    xt = torch.randn(2, 3, 17, 15)
    ref = F.relu(F.batch_norm(F.conv2d(xt, t(g, "w"), t(g, "b"), padding=1), t(g, "mean"),
                              t(g, "var"), t(g, "gamma"), t(g, "beta")))
    assert_close(m(xt)[0], ref)


def test_linear_gelu_is_one_kernel():
    g = Graph()
    x = g.add_input("x", TensorType((3, 7, 33), "float32"))
    w, b = weight(g, "w", 65, 33), weight(g, "b", 65)
    lin = g.call("linear", [x, w, b], meta={"group": 4})
    g.outputs = [g.call("gelu", [lin], meta={"group": 4})]
    m = build(g, "cpu")
    assert m.num_kernels == 1 and len(primfuncs(m)) == 1
    assert m.kernels[0].schedule == "matmul" and m.kernels[0].anchor_op == "linear"
    xt = torch.randn(3, 7, 33)
    assert_close(m(xt)[0], F.gelu(F.linear(xt, t(g, "w"), t(g, "b"))))


def test_conv_add_residual_relu_is_one_kernel():
    g = Graph()
    x = g.add_input("x", TensorType((1, 16, 12, 12), "float32"))
    w = weight(g, "w", 16, 16, 3, 3)
    c = g.call("conv2d", [x, w], {"padding": (1, 1)}, meta={"group": 1})
    a = g.call("add", [c, x], meta={"group": 1})
    g.outputs = [g.call("relu", [a], meta={"group": 1})]
    m = build(g, "cpu")
    assert m.num_kernels == 1 and len(primfuncs(m)) == 1
    assert m.kernels[0].schedule == "conv2d_packed"  # 16 output channels: packed weight
    xt = torch.randn(1, 16, 12, 12)
    assert_close(m(xt)[0], F.relu(F.conv2d(xt, t(g, "w"), padding=1) + xt))


def test_ungrouped_ops_are_a_kernel_each_and_reshape_is_a_view():
    g = Graph()
    x = g.add_input("x", TensorType((2, 4, 6), "float32"))
    e = g.call("exp", [x])
    r = g.call("reshape", [e], {"shape": (8, 6)})
    r2 = g.call("reshape", [r], {"shape": (48,)}, meta={"group": 7})  # reshape-only group
    g.outputs = [g.call("neg", [r2]), r]
    m = build(g, "cpu")
    assert [k.anchor_op for k in m.kernels] == ["exp", "neg"]
    assert len(primfuncs(m)) == 2  # the reshapes are views, not kernels
    assert m.lowered.views == [r.name, r2.name]
    xt = torch.randn(2, 4, 6)
    out, view = m(xt)
    assert_close(out, -xt.exp().reshape(48))
    assert_close(view, xt.exp().reshape(8, 6))


def test_outputs_that_are_inputs_weights_or_constants():
    g = Graph()
    x = g.add_input("x", TensorType((3,), "float32"))
    w = weight(g, "w", 3)
    c = g.add_constant(2.0, "float32")
    s = g.call("add", [x, w])
    g.outputs = [x, w, s, c, s]
    m = build(g, "cpu")
    xt = torch.randn(3)
    out = m(xt)
    assert out[0] is xt
    assert_close(out[1], t(g, "w"))
    assert_close(out[2], xt + t(g, "w"))
    assert_close(out[3], torch.tensor(2.0))
    assert_close(out[4], out[2])
    out[1].zero_()  # a caller writing to a returned weight does not change the program
    assert_close(m(xt)[1], t(g, "w"))


def test_non_contiguous_inputs_and_symbolic_batch():
    g = Graph()
    x = g.add_input("x", TensorType(("batch", 8), "float32"))
    w = weight(g, "w", 5, 8)
    lin = g.call("linear", [x, w], meta={"group": 0})
    g.outputs = [g.call("relu", [lin], meta={"group": 0})]
    m = build(g, "cpu")
    for batch in (1, 6):
        xt = torch.randn(8, batch).T  # not contiguous
        assert_close(m(xt)[0], F.relu(F.linear(xt, t(g, "w"))))


def test_weights_are_parameters_bound_once():
    g = Graph()
    x = g.add_input("x", TensorType((4, 8), "float32"))
    w = weight(g, "w", 8, 8)
    b = weight(g, "b", 8)
    h = g.call("linear", [x, w])
    g.outputs = [g.call("add", [g.call("linear", [h, w]), b])]
    m = build(g, "cpu")
    main = m.mod["main"]
    # one parameter per (weight, layout) the kernels read, after the graph's inputs
    assert [p.name for p in main.params] == ["x", "w_w_KN", "w_b"]
    assert m.lowered.weights == [("w", "KN"), ("b", None)]
    xt = torch.randn(4, 8)
    assert_close(m(xt)[0], F.linear(F.linear(xt, t(g, "w")), t(g, "w")) + t(g, "b"))
    first = m.weight_arguments()
    m(xt)
    assert all(a is b for a, b in zip(first, m.weight_arguments()))  # made once
    packed, bias = first
    np.testing.assert_array_equal(packed.numpy(), g.weights["w"].T)
    # a weight in the IR's own layout is the graph's array itself, not a copy
    if g.weights["b"].ctypes.data % 64 == 0:
        assert torch.from_dlpack(bias).data_ptr() == g.weights["b"].ctypes.data


def test_kernel_sources_and_export(tmp_path):
    g = Graph()
    x = g.add_input("x", TensorType((4, 16), "float32"))
    w, b = weight(g, "w", 32, 16), weight(g, "b", 32)
    g.outputs = [g.call("relu", [g.call("linear", [x, w, b], meta={"group": 0})],
                        meta={"group": 0})]
    m = build(g, "cpu")
    (name, source), = m.kernel_sources().items()
    assert name == m.kernels[0].name and source.startswith("# schedule: matmul")
    library = tmp_path / "lib.so"
    m.export_library(str(library))
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["lib.json", "lib.so", "lib.weights.npz", "lib_loader.py"]
    # the loader runs the program with tvm and torch alone, weights read from the npz
    xt = torch.randn(4, 16)
    assert_close(run_exported(tmp_path, xt), F.relu(F.linear(xt, t(g, "w"), t(g, "b"))))


def test_conv_with_a_pad_epilogue():
    # mobilenet's stem: conv2d + relu6 + pad in one group; the pad's border is outside
    # every conv tile and must still be written
    g = Graph()
    x = g.add_input("x", TensorType((1, 3, 17, 17), "float32"))
    w, b = weight(g, "w", 16, 3, 3, 3), weight(g, "b", 16)
    c = g.call("conv2d", [x, w, b], {"stride": (2, 2)}, meta={"group": 0})
    r = g.call("relu6", [c], meta={"group": 0})
    g.outputs = [g.call("pad", [r], {"pads": (1, 1, 1, 1)}, meta={"group": 0})]
    m = build(g, "cpu")
    assert m.num_kernels == 1 and m.kernels[0].schedule == "conv2d_packed"
    xt = torch.randn(1, 3, 17, 17)
    ref = F.pad(F.relu6(F.conv2d(xt, t(g, "w"), t(g, "b"), stride=2)), (1, 1, 1, 1))
    assert_close(m(xt)[0], ref)


BOOL_OUT = ("eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not")


def operand_reads(op: str) -> int:
    """How many times the lowering of ``op`` reads its first operand, counted in the
    TIR of a kernel made of that op alone."""
    from tvm import te

    from backends.tvm.op_table import OP_TABLE, OutType
    from ir.registry import get_op

    arity = get_op(op).arity if isinstance(get_op(op).arity, int) else get_op(op).arity[0]
    x = te.placeholder((8,), "bool" if op == "where" else "float32", name="first")
    others = [te.placeholder((8,), "float32", name=f"other{i}") for i in range(arity - 1)]
    attrs = {"min": 0.0, "max": 6.0} if op == "clamp" else {"dtype": "float16"} \
        if op == "cast" else {}
    out = OutType((8,), "bool" if op in BOOL_OUT else "float16" if op == "cast" else "float32")
    func = te.create_prim_func([x, *others, OP_TABLE[op]([x, *others], attrs, out)])
    return func.script().split("T.writes")[1].count("first[")


def test_fusion_knows_how_often_each_lowering_reads_its_operand():
    # FuseOps bounds a chain's inlined expression by these counts; one that undercounts
    # lets a chain grow until TVM's passes hang (a fuzz case: sigmoid -> exp -> gelu).
    from compiler.passes.fuse import OPERAND_READS
    from ir.registry import OPS

    for op in sorted(n for n, d in OPS.items() if d.kind == "elementwise"):
        if op == "batch_norm":  # folded into its conv, or lowered with its statistics
            continue
        assert operand_reads(op) <= OPERAND_READS.get(op, 1), op


def test_a_long_transcendental_chain_builds_quickly():
    g = Graph()
    x = g.add_input("x", TensorType((1, 3, 8), "float32"))
    y = x
    for op in ("sigmoid", "exp", "gelu", "silu", "exp", "sigmoid"):
        y = g.call(op, [y])
    g.outputs = [y]
    from compiler.pipelines import optimize

    graph, _ = optimize(g, opt_level=2)
    # [sigmoid, exp], [gelu, silu], [exp, sigmoid]: 29, 30, 29 copies each
    assert len({n.meta['group'] for n in graph.ops()}) == 3
    xt = torch.randn(1, 3, 8)
    expected = torch.sigmoid(torch.exp(F.silu(F.gelu(torch.exp(torch.sigmoid(xt))))))
    assert_close(build(graph, "cpu")(xt)[0], expected)
