"""Each schedule rule fires on the kernels it is for, across awkward shapes (tails, batch
1, odd sizes), and keeps the numerics; a failing rule falls through to the next."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from backend_helpers import In, W, check_op

from backends.tvm.build import build
from backends.tvm.schedules import cpu
from ir import Graph
from ir.types import TensorType

MATMUL = [((17, 33), (33, 65)), ((1, 64), (64, 10)), ((2, 3, 5, 7), (7, 9)),
          ((4, 1, 31, 16), (3, 16, 48)), ((128, 128), (128, 128))]
LINEAR = [((1, 33), (65, 33)), ((17, 33), (65, 33)), ((2, 9, 48), (100, 48)), ((5, 3), (1, 3)),
          ((3, 40), (64, 40)), ((2, 7, 24), (96, 24))]  # the last two: packed weight panels
CONV = [((1, 3, 17, 33), (8, 3, 3, 3), {"padding": (1, 1)}),
        ((2, 16, 14, 14), (32, 16, 1, 1), {}),
        ((1, 8, 15, 15), (12, 8, 3, 3), {"stride": (2, 2), "padding": (1, 1)}),
        ((1, 4, 9, 20), (5, 4, 5, 3), {"dilation": (1, 2), "padding": (2, 0)}),
        ((1, 8, 10, 10), (16, 4, 3, 3), {"groups": 2, "padding": (1, 1)})]
DEPTHWISE = [((1, 8, 17, 33), (8, 1, 3, 3), {"padding": (1, 1), "groups": 8}),
             ((2, 6, 14, 14), (6, 1, 5, 5), {"stride": (2, 2), "padding": (2, 2), "groups": 6}),
             ((1, 4, 23, 37), (4, 1, 3, 3),  # one column plane: stride 2 with dilation
              {"stride": (2, 2), "padding": (2, 1), "dilation": (2, 2), "groups": 4}),
             ((1, 4, 9, 140), (4, 1, 3, 3), {"padding": (1, 1), "groups": 4})]  # wide rows
SOFTMAX = [((1, 65), -1), ((3, 17, 33), -1), ((2, 5, 9), 1)]
LAYER_NORM = [((1, 65), 1), ((3, 17, 33), 1), ((2, 5, 9), 2)]


def kernel_rule(module) -> str:
    (kernel,) = module.kernels
    return kernel.schedule


@pytest.mark.parametrize("a, b", MATMUL)
def test_matmul_rule(a, b):
    m = check_op("matmul", [In(a), In(b)], {}, torch.matmul)
    assert kernel_rule(m) == "matmul"


@pytest.mark.parametrize("x, w", LINEAR)
def test_linear_rule(x, w):
    m = check_op("linear", [In(x), W(w), W(w[:1])], {}, F.linear)
    assert kernel_rule(m) == "matmul"


@pytest.mark.parametrize("x, w, attrs", CONV + DEPTHWISE)
def test_conv_rules(x, w, attrs):
    def reference(xt, wt):
        return F.conv2d(xt, wt, **attrs)

    m = check_op("conv2d", [In(x), W(w)], attrs, reference, rtol=1e-4, atol=1e-4)
    assert m.kernels[0].schedule == expected_conv_rule(x[1], w[0], attrs.get("groups", 1))


def expected_conv_rule(in_channels: int, out_channels: int, groups: int) -> str:
    """Depthwise has its rule; a dense conv with whole vectors of output channels has its
    weight packed OIHW16o (``lower.CONV_PACKED``) and the packed rule; the rest the NCHW
    rule."""
    if groups == in_channels == out_channels:
        return "depthwise_conv2d"
    if groups == 1 and out_channels % 16 == 0:
        return "conv2d_packed"
    return "conv2d"


@pytest.mark.parametrize("x, dim", SOFTMAX)
def test_softmax_rule(x, dim):
    m = check_op("softmax", [In(x)], {"dim": dim}, lambda t: t.softmax(dim))
    assert kernel_rule(m) == "reduction"


@pytest.mark.parametrize("x, n", LAYER_NORM)
def test_layer_norm_rule(x, n):
    shape = x[len(x) - n:]
    m = check_op("layer_norm", [In(x), W(shape), W(shape)], {"normalized_ndim": n},
                 lambda t, w, b: F.layer_norm(t, shape, w, b))
    assert kernel_rule(m) == "reduction"


def test_layer_norm_with_an_epilogue_of_another_rank_computes_each_row_once():
    # GPT-2: layer_norm [1, 128, 768] viewed as [128, 768] for its Conv1D. Parallel over
    # every output element, each row's mean and variance were recomputed 768 times.
    g = Graph()
    x = g.add_input("x", TensorType((1, 16, 64), "float32"))
    w = g.add_weight("w", np.random.randn(64).astype("float32"))
    b = g.add_weight("b", np.random.randn(64).astype("float32"))
    ln = g.call("layer_norm", [x, w, b], {"normalized_ndim": 1}, meta={"group": 0})
    flat = g.call("reshape", [ln], {"shape": (16, 64)}, meta={"group": 0})
    g.outputs = [g.call("relu", [flat], meta={"group": 0})]
    m = build(g, "cpu")
    assert kernel_rule(m) == "reduction"
    text = m.mod[m.kernels[0].name].script()
    assert "T.parallel(T.int64(16))" in text  # one iteration per row, not per element
    xt = torch.randn(1, 16, 64)
    expected = F.relu(F.layer_norm(xt, (64,), torch.from_numpy(g.weights["w"]),
                                   torch.from_numpy(g.weights["b"])).view(16, 64))
    torch.testing.assert_close(m(xt)[0], expected, rtol=1e-4, atol=1e-5)


def test_a_matmul_with_a_prime_width_is_padded_to_whole_tiles():
    # ViT's attention scores [12, 197, 64] x [12, 64, 197]: tiles with a lane tail ran
    # scalar (13.6 ms). Padded, the tile loops carry no predicate.
    m = check_op("matmul", [In((2, 37, 16)), In((2, 16, 37))], {}, torch.matmul)
    assert kernel_rule(m) == "matmul"
    text = m.mod[m.kernels[0].name].script()
    assert "_pad" in text
    update = text[text.index('T.sblock("T_matmul_update")'):].split("T.sblock(")[1]
    assert "T.where" not in update


def test_a_linear_with_a_row_tail_computes_whole_row_tiles():
    # ViT's 197 tokens: the 8-row register tile's 5-row tail was predicated inside the
    # reduction loop (260 GFLOP/s against 440 at 128 rows). The rows are padded to 40 by
    # reading the last row again; only the 37 real rows are written, with the epilogue.
    g = Graph()
    x = g.add_input("x", TensorType((1, 37, 48), "float32"))
    w = g.add_weight("w", np.random.randn(64, 48).astype("float32"))
    b = g.add_weight("b", np.random.randn(64).astype("float32"))
    lin = g.call("linear", [x, w, b], meta={"group": 0})
    g.outputs = [g.call("gelu", [lin], meta={"group": 0})]
    m = build(g, "cpu")
    assert kernel_rule(m) == "matmul"
    text = m.mod[m.kernels[0].name].script()
    assert "T.int64(40)" in text and "T.min(" in text  # 40 rows, reads clamped to row 36
    update = text[text.index('T.sblock("T_linear_update")'):].split("T.sblock(")[1]
    assert "T.where" not in update
    xt = torch.randn(1, 37, 48)
    expected = F.gelu(F.linear(xt, torch.from_numpy(g.weights["w"]),
                               torch.from_numpy(g.weights["b"])))
    torch.testing.assert_close(m(xt)[0], expected, rtol=1e-4, atol=1e-5)


def test_a_row_that_is_not_whole_vectors_splits_off_its_tail():
    # ViT's softmax rows of 197: with the lane predicate of the last partial vector in
    # it, TVM ran each row's exp and divide scalar (10x slower than 128-wide rows).
    m = check_op("softmax", [In((3, 7, 37))], {"dim": -1}, lambda t: t.softmax(-1))
    text = m.mod[m.kernels[0].name].script()
    assert "_partition" in text  # 32 elements in vectors, the last 5 in a loop of their own
    assert "T.where" not in text
    m = check_op("add", [In((3, 17, 37)), In((37,))], {}, torch.add)
    assert "_partition" in m.mod[m.kernels[0].name].script()


def test_a_softmax_row_with_a_partial_vector_reduces_the_whole_vectors_apart():
    # ViT's 197-wide rows: max and sum as one reduction each stayed scalar loops (0.28 ms
    # a softmax); over the 192 in whole vectors (rfactored into 16 lanes) and the 5 after,
    # combined, 0.11 ms.
    m = check_op("softmax", [In((2, 5, 53))], {"dim": -1}, lambda t: t.softmax(-1))
    text = m.mod[m.kernels[0].name].script()
    assert "T_softmax_maxelem_vectors_rf" in text and "T_softmax_expsum_tail" in text
    m = check_op("softmax", [In((2, 53, 5))], {"dim": 1}, lambda t: t.softmax(1))
    assert "_tail" not in m.mod[m.kernels[0].name].script()  # not the contiguous axis


def test_a_depthwise_conv_tiles_output_rows_that_share_each_weight():
    # rows per tile as measured on MobileNetV2's planes: (height, vectors a row, lanes)
    # -> rows; a 7x7 plane's rows are half vectors, fastest a row at a time (its 960
    # channels: 20% faster than a tile of all 7 rows, now that a tile's accumulators are
    # on the stack), inside one channel's parallel iteration
    planes = {(14, 1, 16): 7, (28, 2, 16): 4, (56, 4, 16): 2, (112, 7, 16): 2, (7, 1, 8): 1}
    assert {p: cpu.DepthwiseConv2d.tile_rows(*p) for p in planes} == planes
    attrs = {"padding": (1, 1), "groups": 32}
    m = check_op("conv2d", [In((1, 32, 7, 7)), W((32, 1, 3, 3))], attrs,
                 lambda x, w: F.conv2d(x, w, **attrs), rtol=1e-4, atol=1e-4)
    assert kernel_rule(m) == "depthwise_conv2d"
    text = m.mod[m.kernels[0].name].script()
    assert "T.parallel(T.int64(32))" in text  # one channel per iteration
    assert "for i_0 in range(T.int64(7)):" in text and "T.unroll(T.int64(1))" in text
    attrs = {"padding": (1, 1), "groups": 16}
    m = check_op("conv2d", [In((1, 16, 14, 14)), W((16, 1, 3, 3))], attrs,
                 lambda x, w: F.conv2d(x, w, **attrs), rtol=1e-4, atol=1e-4)
    update = m.mod[m.kernels[0].name].script().split('T.sblock("DepthwiseConv2d_update")')[1]
    assert "T.where" not in update.split("T.sblock(")[0]  # 7 rows of 14: no row tail


def test_a_max_pool_computes_its_padding_once():
    # ResNet-50's max pool: the padding inlined put a bounds test on every window element
    # and TVM ran the window loop scalar (0.6 ms, against 0.07 in ONNX Runtime). It is
    # computed like a depthwise conv: padded planes per channel (even and odd columns
    # apart at stride 2, the one if_then_else left picks a tap's plane), whole-vector rows.
    m = check_op("max_pool2d", [In((1, 4, 16, 16))],
                 {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)},
                 lambda t: F.max_pool2d(t, 3, 2, 1))
    assert kernel_rule(m) == "depthwise_conv2d"
    text = m.mod[m.kernels[0].name].script()
    update = text.split('T.sblock("T_max_pool2d_update")')[1].split("T.sblock(")[0]
    assert "T.where" not in update and "<=" not in update  # no bounds test
    assert update.count("if_then_else(v_dj % T.int64(2) == T.int64(0)") == \
        update.count("if_then_else")
    assert 'T.sblock("PaddedInput_0' in text.split("T.parallel(T.int64(4))")[1]
    x = torch.randn(1, 4, 16, 16)
    x[0, 1, 3, 4] = float("nan")
    got = m(x)[0]
    assert torch.isnan(got[0, 1, 1:3, 2]).all() and not torch.isnan(got[0, 0]).any()


def test_elementwise_rule_with_tail():
    m = check_op("add", [In((3, 17, 33)), In((33,))], {}, torch.add)
    assert kernel_rule(m) == "injective"


def test_pooling_and_mean_use_the_reduction_rule():
    # max pools take the depthwise conv's rule (test_a_max_pool_computes_its_padding_once)
    m = check_op("avg_pool2d", [In((1, 3, 17, 17))],
                 {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)},
                 lambda t: F.avg_pool2d(t, 3, 2, 1))
    assert kernel_rule(m) == "reduction"
    m = check_op("mean", [In((2, 8, 7, 7))], {"dims": (2, 3), "keepdim": True},
                 lambda t: t.mean((2, 3), keepdim=True))
    assert kernel_rule(m) == "reduction"


def test_every_kernel_gets_parallel_and_vectorized_loops():
    g = Graph()
    x = g.add_input("x", TensorType((4, 64), "float32"))
    g.outputs = [g.call("sigmoid", [x])]
    m = build(g, "cpu")
    text = m.mod[m.kernels[0].name].script()
    assert "T.parallel" in text and "T.vectorized" in text


class _Broken:
    name = "broken"

    def apply(self, func, target):
        raise RuntimeError("a bug in a rule")


def test_a_rule_that_throws_falls_through(monkeypatch):
    monkeypatch.setattr(cpu, "RULES", [_Broken(), *cpu.RULES])
    m = check_op("matmul", [In((9, 10)), In((10, 11))], {}, torch.matmul)
    assert kernel_rule(m) == "matmul"
    monkeypatch.setattr(cpu, "RULES", [_Broken()])
    m = check_op("relu", [In((9, 10))], {}, torch.relu)
    assert kernel_rule(m) == "fallback"


def test_unscheduled_build_still_runs():
    g = Graph()
    x = g.add_input("x", TensorType((5, 6), "float32"))
    g.outputs = [g.call("tanh", [x])]
    m = build(g, "cpu", schedule=False)
    assert kernel_rule(m) == "none"
    xt = torch.randn(5, 6)
    torch.testing.assert_close(m(xt)[0], xt.tanh())


NAN_OPS = [("sigmoid", {}, torch.sigmoid), ("gelu", {}, F.gelu),
           ("softmax", {"dim": -1}, lambda t: t.softmax(-1))]


@pytest.mark.parametrize("op, attrs, reference", NAN_OPS, ids=[c[0] for c in NAN_OPS])
def test_nan_tests_keep_the_loop_vectorized(op, attrs, reference):
    # TVM's vectorizer runs a loop calling tirx.isnan one lane at a time: the exp of every
    # softmax and the erf of every GELU epilogue were scalar. On the CPU the test is on
    # the bits, and a NaN still comes out as one.
    g = Graph()
    x = g.add_input("x", TensorType((4, 64), "float32"))
    g.outputs = [g.call(op, [x], attrs)]
    m = build(g, "cpu")
    assert "isnan" not in m.mod[m.kernels[0].name].script()
    xt = torch.randn(4, 64)
    xt[0, 3], xt[1, 40], xt[2, 17] = float("nan"), 90.0, float("-inf")  # torch: gelu(inf) NaN
    torch.testing.assert_close(m(xt)[0], reference(xt), rtol=1e-5, atol=1e-6, equal_nan=True)


def test_stride_two_vector_loads_become_one_load_and_a_shuffle():
    import tvm
    import tvm.tirx.compilation_pipeline as pipelines
    from tvm import s_tir, te

    from backends.tvm import strided_loads
    from backends.tvm.pipeline import tir_pipeline
    from backends.tvm.target import resolve_target

    x = te.placeholder((8, 64), name="x")
    y = te.compute((8, 32), lambda i, j: x[i, 2 * j] + x[i, 2 * j + 1], name="y")
    sch = s_tir.Schedule(te.create_prim_func([x, y]))
    i, j = sch.get_loops(sch.get_sblock("y"))
    sch.vectorize(sch.split(j, [None, 16])[1])
    lowered = []

    def capture():
        lower, host, device = pipelines.get_tir_pipeline("default")
        keep = tvm.transform.module_pass(lambda mod, ctx: lowered.append(mod) or mod,
                                         opt_level=0)
        return tvm.transform.Sequential([lower, keep]), host, device

    pipelines.register_tir_pipeline("test_capture", capture)
    target = resolve_target("cpu")
    tvm.compile(sch.mod, target=target, tir_pipeline="test_capture")
    text = strided_loads.strided_loads_as_shuffles(lowered[-1])["main"].script()
    assert "T.Shuffle" in text and "T.Ramp(" in text and ", 2, 16)" not in text

    lib = tvm.compile(sch.mod, target=target, tir_pipeline=tir_pipeline(target))
    xs = np.random.randn(8, 64).astype("float32")
    out = tvm.runtime.tensor(np.zeros((8, 32), "float32"))
    lib(tvm.runtime.tensor(xs), out)
    np.testing.assert_allclose(out.numpy(), xs[:, 0::2] + xs[:, 1::2], rtol=1e-6)


@pytest.mark.parametrize("x, w, attrs", [
    ((1, 64, 7, 7), (64, 1, 3, 3), {"padding": (1, 1), "groups": 64}),  # MobileNetV2's 7x7
    ((1, 64, 56, 56), (256, 64, 1, 1), {}),  # 16-vector accumulator tiles: exactly 1 KiB
])
def test_per_tile_scratch_buffers_live_on_the_stack(x, w, attrs):
    # TVM puts a CPU buffer on the stack only when it is "global" and under 1 KiB; the
    # rest became a workspace allocation and free per channel or output tile
    m = check_op("conv2d", [In(x), W(w)], attrs, lambda xt, wt: F.conv2d(xt, wt, **attrs),
                 rtol=1e-4, atol=1e-4)
    (llvm_module,) = m.executable.mod.imports
    assert "TVMBackendAllocWorkspace" not in llvm_module.inspect_source("ll")


def test_a_1x1_conv_over_many_pixels_is_a_matmul_over_them():
    # ResNet-50's and MobileNetV2's 1x1 convs at 56x56 and 112x112: the packed conv's
    # channel-last tile made every write-back a transpose; over H*W flattened the conv
    # is w @ x, whose tiles write whole vectors. Its epilogue operands are views too.
    g = Graph()
    x = g.add_input("x", TensorType((2, 16, 16, 16), "float32"))
    r = g.add_input("r", TensorType((2, 32, 16, 16), "float32"))
    w = g.add_weight("w", np.random.randn(32, 16, 1, 1).astype("float32"))
    b = g.add_weight("b", np.random.randn(32).astype("float32"))
    s = g.add_weight("s", np.random.randn(32, 1, 1).astype("float32"))
    y = g.call("conv2d", [x, w, b], {}, meta={"group": 0})
    y = g.call("mul", [y, s], meta={"group": 0})
    y = g.call("add", [y, r], meta={"group": 0})
    g.outputs = [g.call("relu", [y], meta={"group": 0})]
    m = build(g, "cpu")
    assert kernel_rule(m) == "matmul" and m.num_kernels == 1
    xt, rt = torch.randn(2, 16, 16, 16), torch.randn(2, 32, 16, 16)
    weight = {n: torch.from_numpy(g.weights[n]) for n in "wbs"}
    expected = F.relu(F.conv2d(xt, weight["w"], weight["b"]) * weight["s"] + rt)
    torch.testing.assert_close(m(xt, rt)[0], expected, rtol=1e-4, atol=1e-4)
    # few pixels (14 x 14) keep the packed conv, whose tile spans columns and channels
    m = check_op("conv2d", [In((1, 16, 14, 14)), W((32, 16, 1, 1))], {}, F.conv2d,
                 rtol=1e-4, atol=1e-4)
    assert kernel_rule(m) == "conv2d_packed"


@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (0, 1, 0, 1), (2, 0, 0, 3)])
def test_a_padding_is_cut_where_its_bounds_test_changes(pads):
    # MobileNetV2's padded conv outputs: the in-bounds test of each element varies per
    # lane, and TVM ran the whole padding block scalar. Cut into border and interior
    # pieces, the interior needs no test and is one vector per row.
    m = check_op("pad", [In((2, 3, 20, 24))], {"pads": pads, "value": -2.0},
                 lambda t: F.pad(t, pads, value=-2.0))
    text = m.mod[m.kernels[0].name].script()
    assert "_partition" in text and "T.vectorized" in text


def test_a_flat_1x1_conv_may_end_in_a_pad():
    # MobileNetV2's expansion conv + relu6, padded for the stride-2 depthwise conv after it
    g = Graph()
    x = g.add_input("x", TensorType((1, 8, 16, 16), "float32"))
    w = g.add_weight("w", np.random.randn(32, 8, 1, 1).astype("float32"))
    y = g.call("conv2d", [x, w], {}, meta={"group": 0})
    y = g.call("clamp", [y], {"min": 0.0, "max": 6.0}, meta={"group": 0})
    g.outputs = [g.call("pad", [y], {"pads": (0, 1, 0, 1)}, meta={"group": 0})]
    m = build(g, "cpu")
    assert kernel_rule(m) == "matmul" and m.num_kernels == 1
    xt = torch.randn(1, 8, 16, 16)
    expected = F.pad(F.conv2d(xt, torch.from_numpy(g.weights["w"])).clamp(0, 6), (0, 1, 0, 1))
    torch.testing.assert_close(m(xt)[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size, stride, pads", [(56, 1, (1, 1, 1, 1)), (56, 2, (0, 1, 0, 1)),
                                                (7, 1, (1, 1, 1, 1)), (32, 1, (2, 0, 1, 3))])
def test_a_depthwise_conv_pads_its_input_plane_by_plane_in_whole_vector_rows(size, stride,
                                                                             pads):
    # MobileNetV2's depthwise convs read a pad fused before them (compiler.passes.fuse):
    # each channel's padded plane is computed inside the channel's parallel iteration,
    # and rows of 56 columns are computed as 64 (a partial vector ran lane by lane).
    channels = 16
    g = Graph()
    x = g.add_input("x", TensorType((1, channels, size, size), "float32"))
    w = g.add_weight("w", np.random.randn(channels, 1, 3, 3).astype("float32"))
    p = g.call("pad", [x], {"pads": pads}, meta={"group": 0})
    y = g.call("conv2d", [p, w], {"stride": (stride, stride), "groups": channels},
               meta={"group": 0})
    g.outputs = [g.call("clamp", [y], {"min": 0.0, "max": 6.0}, meta={"group": 0})]
    m = build(g, "cpu")
    assert kernel_rule(m) == "depthwise_conv2d"
    text = m.mod[m.kernels[0].name].script()
    assert "T_pad" not in text  # folded into the conv's own padding
    parallel, rest = text.split(f"T.parallel(T.int64({channels}))")
    assert 'T.sblock("PaddedInput' not in parallel and 'T.sblock("PaddedInput' in rest
    if stride == 2:  # even and odd columns in planes of their own: each tap reads one
        update = text.split('T.sblock("DepthwiseConv2d_update")')[1].split("T.sblock(")[0]
        assert "PaddedInput_0[" in update and "PaddedInput_1[" in update
        assert "v_j * T.int64(2)" not in update
    out_w = (size + pads[0] + pads[1] - 3) // stride + 1
    assert f"DepthwiseConv2d_local = T.sblock_alloc_buffer((T.int64(1), T.int64({channels}), " \
           f"T.int64({(size + pads[2] + pads[3] - 3) // stride + 1}), " \
           f"T.int64({-(-out_w // 16) * 16 if out_w > 8 else 8}))" in text
    xt = torch.randn(1, channels, size, size)
    wt = torch.from_numpy(g.weights["w"])
    expected = F.conv2d(F.pad(xt, pads), wt, stride=stride, groups=channels).clamp(0, 6)
    torch.testing.assert_close(m(xt)[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("in_channels, out_channels, padded", [(32, 192, False),
                                                               (128, 512, True)])
def test_a_matmul_of_whole_vectors_pads_its_columns_only_when_large(in_channels,
                                                                    out_channels, padded):
    # A 1x1 conv at 28x28 lowered flat: 784 columns are 49 vectors, no whole two-vector
    # tiles. Small (MobileNetV2's 32 -> 192) it runs 2 rows x 7 vectors with its relu in
    # the tile; large (ResNet-50's 128 -> 512) padded to 800 columns.
    g = Graph()
    x = g.add_input("x", TensorType((1, in_channels, 28, 28), "float32"))
    w = g.add_weight("w", np.random.randn(out_channels, in_channels, 1, 1).astype("float32"))
    y = g.call("conv2d", [x, w], {}, meta={"group": 0})
    g.outputs = [g.call("relu", [y], meta={"group": 0})]
    m = build(g, "cpu")
    assert kernel_rule(m) == "matmul"
    text = m.mod[m.kernels[0].name].script()
    assert ("T_matmul_pad" in text) == padded
    assert ("T.int64(800)" in text) == padded
    xt = torch.randn(1, in_channels, 28, 28)
    expected = F.conv2d(xt, torch.from_numpy(g.weights["w"])).relu()
    torch.testing.assert_close(m(xt)[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("in_channels, out_channels, blocks", [
    (192, 32, (3, 64)), (144, 32, (3, 48)), (512, 64, (8, 64)), (32, 192, None)])
def test_a_seven_vector_tile_over_a_long_reduction_walks_it_in_blocks(in_channels,
                                                                       out_channels, blocks):
    # MobileNetV2's 192 -> 32 1x1 conv at 28x28 (tiles of 2 rows x 7 vectors): the tile's
    # panel of the input is 192 x 112 floats, past L1; in blocks of 64 reduction values
    # each block's slice stays in L1 for all the row tiles (144 values: blocks of 48). A
    # short reduction (32) has no blocks.
    g = Graph()
    x = g.add_input("x", TensorType((1, in_channels, 28, 28), "float32"))
    r = g.add_input("r", TensorType((1, out_channels, 28, 28), "float32"))
    w = g.add_weight("w", np.random.randn(out_channels, in_channels, 1, 1).astype("float32"))
    y = g.call("conv2d", [x, w], {}, meta={"group": 0})
    g.outputs = [g.call("add", [y, r], meta={"group": 0})]
    m = build(g, "cpu")
    assert kernel_rule(m) == "matmul"
    text = m.mod[m.kernels[0].name].script()
    # the reduction's outer loop (k_0) runs outside the row tiles, its inner one (k_1) in
    grid = re.search(r"for k_0, \w+, k_1 in T.grid\(T.int64\((\d+)\), T.int64\(\d+\), "
                     r"T.int64\((\d+)\)\)", text)
    if blocks is None:
        assert grid is None and "k_0" not in text
    else:
        assert grid is not None and (int(grid[1]), int(grid[2])) == blocks
        assert re.findall(r"T.parallel\(T.int64\((\d+)\)\)", text) == ["14"]  # 7 x 2 halves
    xt, rt = torch.randn(1, in_channels, 28, 28), torch.randn(1, out_channels, 28, 28)
    expected = F.conv2d(xt, torch.from_numpy(g.weights["w"])) + rt
    torch.testing.assert_close(m(xt, rt)[0], expected, rtol=1e-4, atol=1e-4)
