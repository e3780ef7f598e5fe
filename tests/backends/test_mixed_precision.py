"""dscompile(dtype="bfloat16"|"float16"): weights and compute in the low precision with
float32 accumulation, float32 in and out; numerics checked on CPU against eager float32,
and compiled for both GPUs."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backends.tvm.build import build
from compiler import dscompile
from compiler.guard import tolerance
from compiler.passes.mixed_precision import MixedPrecision
from compiler.pipelines import build_pipeline
from examples.models import ZOO
from ir import Graph, verify
from ir.types import TensorType


def linear_relu_graph(k: int = 16, n: int = 8) -> Graph:
    g = Graph()
    x = g.add_input("x", TensorType((2, k), "float32"))
    w = g.add_weight("w", np.random.randn(n, k).astype(np.float32))
    idx = g.add_input("idx", TensorType((2,), "int64"))
    y = g.call("relu", [g.call("linear", [x, w])])
    g.outputs = [y, idx]
    return g


def test_pass_lowers_weights_and_compute_and_keeps_the_signature():
    g = linear_relu_graph()
    original = g.weights["w"].copy()
    result = MixedPrecision("bfloat16")(g)
    assert result.modified
    verify(g)
    ops = {n.op: n for n in g.nodes}
    assert [n.op for n in g.ops()] == ["cast", "linear", "relu", "cast"]
    assert g.node("w").dtype == "bfloat16"  # the weight keeps its name
    assert g.weights["w"].dtype == ml_dtypes.bfloat16
    assert np.array_equal(g.weights["w"], original.astype(ml_dtypes.bfloat16))
    assert ops["linear"].dtype == ops["relu"].dtype == "bfloat16"
    assert [o.dtype for o in g.outputs] == ["float32", "int64"]  # the int input untouched
    assert g.inputs[0].dtype == "float32"


def test_pass_is_in_every_pipeline_only_when_asked():
    for level in (0, 1, 2):
        names = [p.name for p in build_pipeline(level, dtype="bfloat16")]
        assert names.count("mixed_precision") == 1
        assert "mixed_precision" not in [p.name for p in build_pipeline(level)]
        assert "mixed_precision" not in [p.name for p in build_pipeline(level, dtype="float32")]
    o2 = [p.name for p in build_pipeline(2, dtype="float16")]
    assert o2.index("mixed_precision") < o2.index("fuse")


def test_long_dot_products_accumulate_in_float32():
    """A 4096-term dot product of values near 1 summed in float16 stalls near 2048 (the
    spacing of float16 there is 2); accumulated in float32 and rounded once, it is within
    one float16 step of the exact result of the same float16 operands."""
    k = 4096
    g = Graph()
    x = g.add_input("x", TensorType((4, k), "float32"))
    w = g.add_weight("w", (np.random.rand(16, k) + 0.5).astype(np.float32))
    g.outputs = [g.call("linear", [x, w])]
    MixedPrecision("float16")(g)
    program = build(g, "cpu")
    xt = torch.rand(4, k) + 0.5
    (got,) = program(xt)
    exact = F.linear(xt.half().double(), torch.from_numpy(g.weights["w"]).double())
    step = 2.0 ** -10 * float(exact.abs().max())  # one float16 step at the output's scale
    assert float((got.double() - exact).abs().max()) <= step


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_in_bfloat16_matches_eager_float32(name):
    model, inputs = ZOO[name]()
    compiled = dscompile(model, inputs, dtype="bfloat16", cache=False)  # the guard checks too
    assert any(r.name == "mixed_precision" and r.modified for r in compiled.records)
    assert {w.dtype for w in compiled.ir.nodes if w.op == "weight"} <= {"bfloat16", "bool",
                                                                        "int64"}
    with torch.no_grad():
        expected = model(*inputs)
    actual = compiled(*inputs)
    assert actual.dtype == torch.float32
    rtol, atol = tolerance(torch.bfloat16)
    error = float((actual - expected).abs().max())
    assert error <= atol + rtol * float(expected.abs().max())
    assert error > 0  # it did compute in bf16


def test_float16_transformer_matches_eager_float32():
    model, inputs = ZOO["transformer_block"]()
    compiled = dscompile(model, inputs, dtype="float16", cache=False)
    with torch.no_grad():
        expected = model(*inputs)
    rtol, atol = tolerance(torch.float16)
    assert float((compiled(*inputs) - expected).abs().max()) <= \
        atol + rtol * float(expected.abs().max())


@pytest.mark.parametrize("target", [{"kind": "cuda", "arch": "sm_80"},
                                    {"kind": "rocm", "mcpu": "gfx90a"}])
def test_bfloat16_compiles_for_both_gpus(target):
    model, inputs = ZOO["gpt_block"]()  # masks with -inf, layer norms, softmax, gelu
    compiled = dscompile(model, inputs, target=target, dtype="bfloat16", check="off")
    code = compiled.device_code
    assert sum(n.dtype == "bfloat16" for n in compiled.ir.ops()) > 10
    assert len(code.binary_kernels()) == len({k.name for k in compiled.kernels})
    if target["kind"] == "cuda":
        assert "nv_bfloat16" in code.source and "__float2bfloat16_rn" in code.source
