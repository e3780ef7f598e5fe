"""The blocked layout (NCHWc) between CPU conv kernels (backends.tvm.blocked_layout): which kernels
store their value blocked, that they compute it with the blocked rule and no extra
kernel, and numerics against torch wherever blocked and NCHW values meet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from backend_helpers import run_exported

from backends.tvm.blocked_layout import LAYOUT, blocked_roots
from backends.tvm.build import build
from backends.tvm.tuning import TuningOptions
from backends.tvm.tuning import library as lib
from backends.tvm.tuning.database import TuningDatabase
from backends.tvm.tuning.measure import static_shape
from compiler import dscompile
from compiler.kernels import kernel_groups
from ir import Graph
from ir.types import TensorType


class ResNetStem(nn.Module):
    """A stem over the image (3 channels, NCHW input), a max pool, a bottleneck with a
    residual add, a strided conv, then global pooling: every place a blocked value meets
    an NCHW one."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, 2, 3, bias=False)
        self.bn = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.reduce = nn.Conv2d(32, 16, 1)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.expand = nn.Conv2d(16, 32, 1)
        self.down = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.stem(x))))
        y = torch.relu(self.expand(torch.relu(self.conv(torch.relu(self.reduce(x))))) + x)
        return self.fc(torch.relu(self.down(y)).mean((2, 3)))


def eval_model() -> nn.Module:
    torch.manual_seed(0)
    model = ResNetStem().eval()
    model.bn.running_mean.normal_()
    model.bn.running_var.uniform_(0.5, 2.0)
    return model


def test_conv_chain_computes_blocked_and_matches_torch(monkeypatch):
    model, x = eval_model(), torch.randn(1, 3, 64, 64)
    compiled = dscompile(model, (x,), cache=False, check="off")
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    # every conv and the max pool store NCHWc; the mean reads it through a view and
    # returns NCHW to the linear
    blocked = [k for k in compiled.kernels if k.layout == LAYOUT]
    assert sorted(k.schedule for k in blocked) == ["conv2d_blocked"] * 5 + ["reduction"]
    assert {k.anchor_op for k in compiled.kernels if k.layout is None} == {"mean", "linear"}
    mean = next(k for k in compiled.kernels if k.anchor_op == "mean")
    assert mean.reads_blocked
    stem = compiled.kernels[0]
    assert stem.layout == LAYOUT and not stem.reads_blocked  # the image comes NCHW
    report = compiled.report()  # the inspect table says which kernels store blocked
    assert [r.layout for r in report.rows] == [k.layout or "" for k in compiled.kernels]
    assert "layout" in str(report).splitlines()[0]

    # the views cost no kernel: the same count as the program without the layout
    monkeypatch.setattr("backends.tvm.lower.blocked_roots", lambda graph, kernels: set())
    nchw = dscompile(model, (x,), cache=False, check="off")
    assert all(k.layout is None for k in nchw.kernels)
    assert nchw.num_kernels == compiled.num_kernels


def test_a_blocked_kernel_writes_whole_blocks_of_channels():
    model, x = eval_model(), torch.randn(1, 3, 64, 64)
    program = build(dscompile(model, (x,), cache=False, check="off").ir, "cpu")
    shapes = {}
    for k in program.kernels:
        shapes[k.name] = list(static_shape(program.mod[k.name].params[-1]))  # its output
    stem, pool = program.kernels[:2]
    assert shapes[stem.name] == [1, 2, 32, 32, 16]  # 32 channels as 2 blocks of 16
    assert shapes[pool.name] == [1, 2, 16, 16, 16]
    assert all(len(shapes[k.name]) == 5 for k in program.kernels if k.layout == LAYOUT)


def conv(g: Graph, x, oc: int, k: int = 1, groups: int = 1, name: str | None = None):
    ic = x.shape[1]
    w = g.add_weight(f"w_{name or len(g.weights)}",
                     np.random.randn(oc, ic // groups, k, k).astype("float32"))
    return g.call("conv2d", [x, w], {"padding": (k // 2, k // 2), "groups": groups},
                  name=name)


def roots(g: Graph) -> set[str]:
    return {n.name for n in blocked_roots(g, kernel_groups(g))}


def test_which_values_are_stored_blocked():
    g = Graph()
    x = g.add_input("x", TensorType((1, 16, 8, 8), "float32"))
    a = conv(g, x, 32, name="a")  # read by the three kernels below that cannot: NCHW
    b = conv(g, a, 32, 3, name="b")  # read by a blocked conv: blocked
    c = conv(g, b, 32, name="c")  # read by a mean, through the NCHW view: blocked
    d = conv(g, a, 32, 3, groups=32, name="d")  # depthwise: never blocked
    e = conv(g, a, 20, name="e")  # 20 channels: not whole blocks of 16 or 8
    pool = g.call("max_pool2d", [a], {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0)},
                  name="pool")  # over an NCHW value: NCHW
    h = conv(g, pool, 32, name="h")  # a conv reads NCHW itself: blocked
    means = [g.call("mean", [v], {"dims": (2, 3)}) for v in (c, h)]
    g.outputs = [*means, d, e]
    assert roots(g) == {"b", "c", "h"}


def test_a_producer_is_dropped_when_its_reader_is():
    g = Graph()
    x = g.add_input("x", TensorType((1, 16, 8, 8), "float32"))
    a = conv(g, x, 16, name="a")
    b = conv(g, a, 16, name="b")
    pool = g.call("max_pool2d", [b], {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0)},
                  name="pool")
    g.outputs = [g.call("mean", [conv(g, pool, 16, name="c")], {"dims": (2, 3)}, name="m")]
    assert roots(g) == {"a", "b", "pool", "c"}
    g.outputs = [g.outputs[0], pool]  # the pool is now an output: NCHW, and so are b,
    assert roots(g) == {"c"}  # whose reader is no longer blocked, and a; c reads it NCHW


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (2, 0)])
def test_max_pool_over_a_blocked_value_matches_torch(stride, padding):
    g = Graph()
    x = g.add_input("x", TensorType((1, 16, 15, 15), "float32"))
    a = conv(g, x, 32, 3, name="a")
    pool = g.call("max_pool2d", [a], {"kernel": (3, 3), "stride": (stride, stride),
                                      "padding": (padding, padding)}, name="pool")
    g.outputs = [g.call("mean", [conv(g, pool, 16, name="b")], {"dims": (2, 3)}, name="m")]
    assert roots(g) == {"a", "pool", "b"}
    program = build(g, "cpu")
    data = torch.randn(1, 16, 15, 15)
    weights = {k: torch.from_numpy(v) for k, v in g.weights.items()}
    ref = torch.nn.functional.conv2d(data, weights["w_a"], padding=1)
    ref = torch.nn.functional.max_pool2d(ref, 3, stride, padding)
    ref = torch.nn.functional.conv2d(ref, weights["w_b"]).mean((2, 3))
    torch.testing.assert_close(program(data)[0], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not lib.available(), reason="torch built without oneDNN")
def test_the_library_is_no_candidate_for_a_blocked_kernel(tmp_path):
    # oneDNN's kernel takes and returns NCHW: given a blocked value it would compute garbage
    model, x = eval_model(), torch.randn(1, 3, 64, 64)
    g = dscompile(model, (x,), cache=False, check="off").ir
    options = TuningOptions(trials=0, database=TuningDatabase(tmp_path),
                            measure=lambda c: 0.0 if c.name == lib.NAME else 1.0)
    program = build(g, "cpu", tuning=options)
    assert all(k.schedule != lib.NAME for k in program.kernels if k.layout or k.reads_blocked)
    torch.testing.assert_close(program(x)[0], model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ic, oc, pixels_outermost", [(256, 64, True), (64, 256, False),
                                                      (2048, 512, False)])
def test_a_conv_that_reduces_channels_walks_pixels_outermost(ic, oc, pixels_outermost):
    # 256 -> 64: each thread reads half the input once; 64 -> 256: channel planes one
    # after the other (pixels outermost wrote 16 planes at once); 2048 -> 512: its 4 MB
    # of weights would be read again per pixel tile, past L2
    from tvm import s_tir

    from backends.tvm.lower import lower_graph
    from backends.tvm.schedules.cpu import BlockedConv2d
    from backends.tvm.target import resolve_target

    g = Graph()
    x = g.add_input("x", TensorType((1, ic, 7, 7), "float32"))
    g.outputs = [g.call("mean", [conv(g, x, oc, name="c")], {"dims": (2, 3)})]
    lowered = lower_graph(g, resolve_target("cpu"))
    func = lowered.mod[lowered.kernels[0].name]
    sch = s_tir.Schedule(func)
    assert BlockedConv2d.pixels_outermost(sch.get(sch.get_sblock("T_conv2d_blocked"))) \
        == pixels_outermost


@pytest.mark.parametrize("stride, pads", [(1, (1, 1, 1, 1)), (2, (0, 1, 0, 1)), (2, (1, 1, 1, 1))])
def test_a_depthwise_conv_with_its_prologue_pad_computes_blocked(stride, pads):
    # MobileNetV2's TF-style pad fused before the depthwise conv (compiler.passes.fuse)
    g = Graph()
    x = g.add_input("x", TensorType((1, 16, 14, 14), "float32"))
    a = conv(g, x, 32, name="a")
    wd = g.add_weight("wd", np.random.randn(32, 1, 3, 3).astype("float32"))
    padded = g.call("pad", [a], {"pads": pads}, meta={"group": 1}, name="p")
    d = g.call("conv2d", [padded, wd], {"stride": (stride, stride), "groups": 32},
               meta={"group": 1}, name="d")
    d = g.call("clamp", [d], {"min": 0.0, "max": 6.0}, meta={"group": 1}, name="relu6")
    g.outputs = [g.call("mean", [conv(g, d, 16, name="b")], {"dims": (2, 3)}, name="m")]
    assert roots(g) == {"a", "relu6", "b"}
    program = build(g, "cpu")
    assert [k.schedule for k in program.kernels] == \
        ["conv2d_blocked", "depthwise_blocked", "conv2d_blocked", "reduction"]
    data = torch.randn(1, 16, 14, 14)
    w = {k: torch.from_numpy(v) for k, v in g.weights.items()}
    F = torch.nn.functional
    ref = F.pad(F.conv2d(data, w["w_a"]), pads)
    ref = F.conv2d(ref, w["wd"], stride=stride, groups=32).clamp(0, 6)
    ref = F.conv2d(ref, w["w_b"]).mean((2, 3))
    torch.testing.assert_close(program(data)[0], ref, rtol=1e-4, atol=1e-4)


def test_channels_in_blocks_of_8_where_16_do_not_divide_them():
    # MobileNetV2's 24-channel stage: without blocks of 8, every conv before it stayed NCHW
    g = Graph()
    x = g.add_input("x", TensorType((1, 16, 14, 14), "float32"))
    a = conv(g, x, 24, name="a")
    b = conv(g, a, 32, 3, name="b")
    c = conv(g, b, 24, name="c")
    c.meta["group"] = 0
    added = g.call("add", [c, a], meta={"group": 0})  # a residual in blocks of 8
    g.outputs = [g.call("mean", [added], {"dims": (2, 3)})]
    program = build(g, "cpu")
    shapes = [list(static_shape(program.mod[k.name].params[-1])) for k in program.kernels]
    assert shapes[:3] == [[1, 3, 14, 14, 8], [1, 2, 14, 14, 16], [1, 3, 14, 14, 8]]
    data = torch.randn(1, 16, 14, 14)
    w = {k: torch.from_numpy(v) for k, v in g.weights.items()}
    F = torch.nn.functional
    ref_a = F.conv2d(data, w["w_a"])
    ref = F.conv2d(F.conv2d(ref_a, w["w_b"], padding=1), w["w_c"]) + ref_a
    torch.testing.assert_close(program(data)[0], ref.mean((2, 3)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("value, blocked", [(0.0, True), (1.0, False)])
def test_a_conv_folds_only_a_zero_prologue_pad(value, blocked):
    from backends.tvm.blocked_layout import computes_blocked

    g = Graph()
    x = g.add_input("x", TensorType((1, 16, 8, 8), "float32"))
    padded = g.call("pad", [x], {"pads": (1, 1, 1, 1), "value": value}, meta={"group": 0})
    w = g.add_weight("w", np.random.randn(16, 16, 3, 3).astype("float32"))
    y = g.call("conv2d", [padded, w], meta={"group": 0})
    assert computes_blocked([padded, y]) == blocked


def test_an_exported_blocked_program_runs_on_the_runtime_alone(tmp_path):
    # its weights are saved packed (OIHW16o and OIHW8o) for the loader, which has no
    # dscompile to pack them
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.ReLU6(),
                          nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.ReLU6(),
                          nn.Conv2d(24, 32, 1), nn.AdaptiveAvgPool2d(1)).eval()
    x = torch.randn(1, 3, 16, 16)
    compiled = dscompile(model, (x,), cache=False, check="off")
    assert sum(k.layout == LAYOUT for k in compiled.kernels) == 3
    compiled.export_library(str(tmp_path / "lib.so"))
    torch.testing.assert_close(run_exported(tmp_path, x), model(x), rtol=1e-4, atol=1e-5)
