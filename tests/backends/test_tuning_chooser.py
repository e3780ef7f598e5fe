"""The chooser picks the faster candidate by measurement; the driver, with a measuring
function of known costs injected, puts the chosen candidate in the program (no timing
noise, no MetaSchedule). Options: O3 means tuning on."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backends.tvm.build import build
from backends.tvm.tuning import TuningOptions
from backends.tvm.tuning.chooser import choose, fastest
from backends.tvm.tuning.database import TuningDatabase
from backends.tvm.tuning.progress import Progress, format_seconds
from compiler.config import CompileOptions
from compiler.report import build_report
from ir import Graph
from ir.types import TensorType


@dataclass
class Fake:
    name: str
    cost: float


def test_chooser_picks_the_faster_of_two():
    chosen, decision = choose([Fake("rule", 2.0), Fake("metaschedule", 1.0)], lambda c: c.cost)
    assert chosen.name == decision.chosen == "metaschedule"
    assert decision.times_ms == {"rule": 2.0, "metaschedule": 1.0}


def test_chooser_keeps_the_rule_when_the_other_is_slower_or_within_tolerance():
    assert choose([Fake("rule", 1.0), Fake("onednn", 3.0)], lambda c: c.cost)[0].name == "rule"
    assert choose([Fake("rule", 1.0), Fake("onednn", 0.99)], lambda c: c.cost)[0].name == "rule"
    assert fastest({"rule": 1.0, "onednn": 0.9}, "rule") == "onednn"


def test_chooser_skips_a_candidate_that_fails_and_reports_why():
    def measure(c):
        if c.name == "broken":
            raise RuntimeError("does not build\nTVM traceback ...")
        return c.cost

    chosen, decision = choose([Fake("broken", 0.1), Fake("rule", 1.0)], measure)
    assert chosen.name == "rule"
    assert decision.errors == {"broken": "does not build"}
    with pytest.raises(ValueError, match="no candidate could be measured"):
        choose([Fake("broken", 0.1)], measure)


def conv_graph(channels: int = 32, size: int = 24) -> tuple[Graph, list[torch.Tensor], object]:
    """conv2d + bias + add + relu, big enough for the library candidate."""
    g = Graph()
    x = g.add_input("x", TensorType((1, channels, size, size), "float32"))
    r = g.add_input("r", TensorType((1, channels, size, size), "float32"))
    w = g.add_weight("w", np.random.randn(channels, channels, 3, 3).astype("float32") * 0.1)
    b = g.add_weight("b", np.random.randn(channels).astype("float32"))
    attrs = {"padding": (1, 1), "stride": (1, 1), "dilation": (1, 1), "groups": 1}
    c = g.call("conv2d", [x, w, b], attrs, meta={"group": 0})
    a = g.call("add", [r, c], meta={"group": 0})  # the residual first: order must not matter
    g.outputs = [g.call("relu", [a], meta={"group": 0})]
    wt, bt = torch.from_numpy(g.weights["w"]), torch.from_numpy(g.weights["b"])
    inputs = [torch.randn(1, channels, size, size), torch.randn(1, channels, size, size)]
    return g, inputs, lambda x, r: F.relu(F.conv2d(x, wt, bt, padding=1) + r)


@pytest.mark.parametrize("library_cost, expected", [(0.5, "onednn"), (5.0, "conv2d_packed")])
def test_driver_builds_the_candidate_with_the_smaller_known_cost(tmp_path, library_cost,
                                                                 expected):
    costs = {"conv2d_packed": 1.0, "onednn": library_cost}
    calls = []

    def measure(candidate):
        calls.append(candidate.name)
        return costs[candidate.name]

    graph, inputs, reference = conv_graph()
    options = TuningOptions(trials=0, database=TuningDatabase(tmp_path), measure=measure)
    module = build(graph, "cpu", tuning=options)
    (kernel,) = module.kernels
    assert sorted(calls) == ["conv2d_packed", "onednn"]
    assert kernel.schedule == expected
    assert kernel.timings == costs
    assert bool(kernel.library) == (expected == "onednn")
    torch.testing.assert_close(module(*inputs)[0], reference(*inputs), rtol=1e-4, atol=1e-4)
    row = build_report(graph, module.kernels).rows[0]
    assert row.schedule == expected and row.timings == costs
    assert f"{expected}*" in str(build_report(graph, module.kernels))


def test_opt_level_3_means_tuning():
    assert CompileOptions(opt_level=3).tune is True
    assert CompileOptions(opt_level=2).tune is False
    assert CompileOptions(opt_level=3, tune=False).tune is False
    assert CompileOptions(opt_level=2, tune=True, trials=4).trials == 4
    with pytest.raises(ValueError, match="trials"):
        CompileOptions(tune=True, trials=-1)
    with pytest.raises(ValueError, match="key@host:port"):
        TuningOptions(rpc="localhost")


def test_progress_bar_shows_an_estimate_and_is_silent_off_a_terminal():
    stream = io.StringIO()
    progress = Progress(4, "tuning", stream=stream, enabled=True)
    progress.start -= 10.0  # 10 s spent on the first unit: 30 s left for three
    progress.advance(1, "conv2d_relu")
    assert "1/4" in stream.getvalue() and "ETA 30s" in stream.getvalue()
    quiet = io.StringIO()
    Progress(4, stream=quiet).advance(1)  # a StringIO is not a terminal
    assert quiet.getvalue() == ""
    assert format_seconds(125) == "2m05s" and format_seconds(7300) == "2h01m"
